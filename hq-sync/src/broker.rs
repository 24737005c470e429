//! The embedded MQTT broker (rumqttd), for the zero-install demo, development and tests.
//!
//! rumqttd 0.20 has no shutdown API and `Broker::start()` blocks, so it runs on its own
//! thread for the life of the process. It keeps nothing on disk: a restart loses queued
//! messages and sessions, which by design (docs/DESIGN.md, Durability 5) costs only re-sends.
//!
//! Security: rumqttd itself speaks plain MQTT on a loopback port no one else is told
//! about; clients reach it only through [`crate::tls_front`], which terminates TLS 1.3,
//! requires a client certificate from the fleet CA and checks the fleet's CRL on every
//! handshake (rumqttd's own TLS cannot check revocation). rumqttd has no topic ACLs; the
//! front enforces the same ones as `config/mosquitto.acl` (client id = certificate name,
//! each bus confined to its own topics), and HQ's ingest checks every message against its
//! topic and the revocation list again. In plain-text mode there is no identity and so no
//! ACL at all.
//!
//! Invariants:
//! - Not on a non-loopback address unless the operator said so ([`Exposure::Public`]).
//! - Plain TCP to clients only when the operator asked for it ([`Security::InsecurePlaintext`]),
//!   with a warning at start.

use crate::tls_front::{self, FrontConfig};
use keliling_shared::topics::Topics;
use keliling_shared::wire::MAX_BROKER_PACKET_BYTES;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded broker cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded broker did not start listening on {0} in time")]
    NotListening(SocketAddr),
    #[error("embedded broker thread: {0}")]
    Thread(std::io::Error),
    #[error(
        "refusing to expose the embedded broker on {0}: it keeps nothing on disk and is meant for \
         development; use Mosquitto in production, or pass --expose (embedded_broker.expose = true) \
         if you really mean it"
    )]
    NotLoopback(SocketAddr),
    #[error("embedded broker TLS: {0}")]
    Tls(#[from] tls_front::FrontError),
}

/// What clients must present.
#[derive(Debug, Clone)]
pub enum Security {
    /// TLS 1.3 with client certificates from the fleet CA, checked against the CRL, and
    /// the fleet's topic ACL on `topics`.
    MutualTls {
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
        crl: PathBuf,
        topics: Topics,
    },
    /// Plain MQTT, no identity: local experiments only.
    InsecurePlaintext,
}

/// Whether a non-loopback listen address is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    LoopbackOnly,
    Public,
}

fn rumqttd_config(listen: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: MAX_BROKER_PACKET_BYTES - 1024,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "v4-1".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 200,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("v4-1".to_owned(), server)])),
        ..Config::default()
    }
}

/// Starts the broker for clients on `listen` and returns once it accepts connections.
pub fn start(
    listen: SocketAddr,
    security: Security,
    exposure: Exposure,
) -> Result<(), BrokerError> {
    if !listen.ip().is_loopback() && exposure != Exposure::Public {
        return Err(BrokerError::NotLoopback(listen));
    }
    match security {
        Security::InsecurePlaintext => {
            tracing::warn!(
                %listen,
                "INSECURE: the embedded broker accepts plain MQTT without client certificates; \
                 anyone who can reach {listen} can pose as any bus. For local experiments only."
            );
            start_rumqttd(listen)
        }
        Security::MutualTls {
            ca,
            cert,
            key,
            crl,
            topics,
        } => {
            // The front binds first, so a taken port is reported before anything starts.
            let front =
                std::net::TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
                    addr: listen,
                    source,
                })?;
            let internal = free_loopback_port()?;
            start_rumqttd(internal)?;
            tls_front::spawn(
                front,
                FrontConfig {
                    ca,
                    cert,
                    key,
                    crl,
                    upstream: internal,
                    topics,
                },
            )?;
            tracing::info!(%listen, "embedded MQTT broker listening: TLS 1.3, client certificates required, fleet topic ACL");
            Ok(())
        }
    }
}

fn free_loopback_port() -> Result<SocketAddr, BrokerError> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let l = TcpListener::bind(any).map_err(|source| BrokerError::Bind { addr: any, source })?;
    l.local_addr()
        .map_err(|source| BrokerError::Bind { addr: any, source })
}

fn start_rumqttd(listen: SocketAddr) -> Result<(), BrokerError> {
    // rumqttd only logs a failed bind from its server thread; probe first so the operator
    // gets a clear error instead of a broker that silently is not there.
    drop(
        TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
            addr: listen,
            source,
        })?,
    );
    let cfg = rumqttd_config(listen);
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(cfg);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok() {
            tracing::debug!(%listen, "rumqttd listening");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotListening(listen))
}
