//! The MQTT client both sides build: `[broker]` in their configs and one rumqttc set-up.
//!
//! The bus and HQ reach the broker the same way (TLS 1.3 with a fleet certificate, packet
//! limits above the envelope limit, TCP_NODELAY, a long network timeout); what differs is
//! passed in [`ClientOptions`]: the client id (the bus id, or HQ's worker id), the session
//! (persistent on the bus), manual acks (HQ), the in-flight window, the request queue and
//! the last will (the bus's `up/status`). See docs/DESIGN.md, "Facts about the stack".

use std::time::Duration;

use rumqttc::{
    AsyncClient, EventLoop, LastWill, MqttOptions, NetworkOptions, TlsConfiguration, Transport,
};
use serde::Deserialize;

use crate::tls::{BrokerTransport, ClientTlsFiles};
use crate::wire::{MAX_BROKER_PACKET_BYTES, MAX_MESSAGE_BYTES};

/// `[broker]`: the broker a bus or an HQ worker connects to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    pub host: String,
    pub port: u16,
    pub keep_alive_secs: u64,
    /// Bounds connecting and each socket flush. rumqttc's default of 5 s loops on
    /// `FlushTimeout` on a slow link with a large publish (docs/DESIGN.md), so it is long.
    /// Unset: the side's default ([`ClientOptions::default_connection_timeout_secs`]: 60 s
    /// on the bus, where a 64 KiB chunk over 2G takes seconds; 30 s at HQ).
    pub connection_timeout_secs: Option<u64>,
    /// Plain TCP without a certificate: only for a local experiment, and loudly.
    pub insecure_plaintext: bool,
    /// This client's TLS identity: a bus's from `hq-sync pki provision-bus`; at HQ, unset
    /// files default to the PKI directory's `ca.pem`, `hq/{worker_id}.pem` and `.key`
    /// (whose common name must be `[ingest] worker_id`: brokers make it the client id).
    pub tls: ClientTlsFiles,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            host: "127.0.0.1".into(),
            port: 8883,
            keep_alive_secs: 30,
            connection_timeout_secs: None,
            insecure_plaintext: false,
            tls: ClientTlsFiles::default(),
        }
    }
}

/// What differs between the bus's client and HQ's.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The MQTT client id: the bus id, or HQ's worker id (each the certificate's name).
    pub client_id: String,
    /// `false` keeps the broker's session (and what it queued) across reconnects.
    pub clean_session: bool,
    /// Release the broker's copy of a message (PUBACK) only when the caller acks it.
    pub manual_acks: bool,
    /// Outgoing QoS 1 publishes in flight at once.
    pub inflight: u16,
    /// rumqttc's request queue (publishes, acks) between the client and the event loop.
    pub request_channel_capacity: usize,
    /// The network timeout when `[broker] connection_timeout_secs` is unset.
    pub default_connection_timeout_secs: u64,
    /// Published by the broker when the connection drops without a goodbye.
    pub last_will: Option<LastWill>,
}

/// Builds the client and its event loop for `cfg`, over `transport` (already resolved, so a
/// missing key is a start-up error, not a reconnect loop; the caller warns about plain TCP).
pub fn client(
    cfg: &BrokerConfig,
    transport: BrokerTransport,
    side: ClientOptions,
) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(side.client_id, cfg.host.clone(), cfg.port);
    opts.set_clean_session(side.clean_session)
        .set_manual_acks(side.manual_acks)
        .set_keep_alive(Duration::from_secs(cfg.keep_alive_secs.max(5)))
        // rumqttc's 10 KiB default would jam the link on the first photo chunk; incoming
        // up to what the broker allows, so an oversized message is quarantined, not a jam.
        .set_max_packet_size(MAX_BROKER_PACKET_BYTES, MAX_MESSAGE_BYTES + 1024)
        .set_inflight(side.inflight)
        .set_request_channel_capacity(side.request_channel_capacity);
    if let BrokerTransport::Tls(config) = transport {
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    }
    if let Some(will) = side.last_will {
        opts.set_last_will(will);
    }
    let (client, mut eventloop) = AsyncClient::new(opts, side.request_channel_capacity);
    let mut net = NetworkOptions::new();
    net.set_connection_timeout(
        cfg.connection_timeout_secs
            .unwrap_or(side.default_connection_timeout_secs)
            .max(1),
    );
    // rumqttc writes each MQTT packet whole, so Nagle only adds delay: a chunk larger than
    // one TLS record leaves a small tail that waits for the peer's delayed ACK (~40 ms per
    // message, measured by the drain bench). Off, as for any request/response protocol.
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    (client, eventloop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::QoS;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        broker: BrokerConfig,
    }

    #[test]
    fn keys_and_defaults() {
        let f: File = toml::from_str("").unwrap();
        assert_eq!((f.broker.host.as_str(), f.broker.port), ("127.0.0.1", 8883));
        assert_eq!(f.broker.keep_alive_secs, 30);
        assert_eq!(f.broker.connection_timeout_secs, None);
        assert!(!f.broker.insecure_plaintext);

        let f: File = toml::from_str(
            "[broker]\nhost = \"hq.example\"\nport = 1884\nkeep_alive_secs = 10\n\
             connection_timeout_secs = 90\ninsecure_plaintext = true\n\
             [broker.tls]\nca = \"ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(f.broker.host, "hq.example");
        assert_eq!(f.broker.port, 1884);
        assert_eq!(f.broker.keep_alive_secs, 10);
        assert_eq!(f.broker.connection_timeout_secs, Some(90));
        assert!(f.broker.insecure_plaintext);
        assert!(f.broker.tls.ca.is_some());

        let e = toml::from_str::<File>("[broker]\nhots = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    /// The shipped configs' `[broker]` sections, with an environment override on top.
    #[test]
    fn shipped_configs_and_env_overrides() {
        for (text, prefix, timeout) in [
            (include_str!("../../config/bus.toml"), "BUS_NODE", Some(60)),
            (include_str!("../../config/hq.toml"), "HQ_SYNC", None),
        ] {
            let mut t: toml::Table = toml::from_str(text).unwrap();
            let vars = [(format!("{prefix}__BROKER__PORT"), "1884".to_owned())];
            crate::config_env::apply_env(&mut t, prefix, vars.into_iter()).unwrap();
            let b: BrokerConfig = t["broker"].clone().try_into().unwrap();
            assert_eq!(b.port, 1884, "{prefix}");
            assert_eq!(b.connection_timeout_secs, timeout, "{prefix}");
        }
    }

    #[test]
    fn side_options_reach_rumqttc() {
        let cfg = BrokerConfig::default();
        let will = LastWill::new("k/bus/b/up/status", vec![1, 2], QoS::AtLeastOnce, true);
        let (_client, eventloop) = client(
            &cfg,
            BrokerTransport::InsecurePlaintext,
            ClientOptions {
                client_id: "bus-ntt-01".into(),
                clean_session: false,
                manual_acks: true,
                inflight: 42,
                request_channel_capacity: 77,
                default_connection_timeout_secs: 60,
                last_will: Some(will),
            },
        );
        let o = &eventloop.mqtt_options;
        assert_eq!(o.client_id(), "bus-ntt-01");
        assert!(!o.clean_session());
        assert!(o.manual_acks());
        assert_eq!(o.inflight(), 42);
        assert_eq!(o.keep_alive(), Duration::from_secs(30));
        assert_eq!(
            o.max_packet_size(),
            MAX_BROKER_PACKET_BYTES,
            "incoming: what the broker allows"
        );
        assert!(o.last_will().is_some());
        let net = eventloop.network_options();
        assert_eq!(net.connection_timeout(), 60);
    }
}
