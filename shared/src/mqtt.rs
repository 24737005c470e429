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
    /// The other nodes of a broker cluster, `host` or `host:port` (`[v6addr]:port`; the
    /// port defaults to `port`): after a failed or lost connection the client tries the
    /// next one, in turn. Each node's certificate must carry the name dialled.
    pub more_hosts: Vec<String>,
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
            more_hosts: Vec::new(),
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

/// A `more_hosts` entry that is not `host` or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broker.more_hosts: {0:?} is not host or host:port")]
pub struct BadHost(pub String);

impl BrokerConfig {
    /// Every broker address to try, `host:port` first, then `more_hosts` in order.
    pub fn addresses(&self) -> Result<Vec<(String, u16)>, BadHost> {
        let mut out = vec![(self.host.clone(), self.port)];
        for h in &self.more_hosts {
            let bad = || BadHost(h.clone());
            let h = h.trim();
            let (host, port) = if let Some(rest) = h.strip_prefix('[') {
                // [v6]:port or [v6]
                let (addr, tail) = rest.split_once(']').ok_or_else(bad)?;
                let port = match tail.strip_prefix(':') {
                    Some(p) => p.parse().map_err(|_| bad())?,
                    None if tail.is_empty() => self.port,
                    None => return Err(bad()),
                };
                (addr.to_owned(), port)
            } else {
                match h.rsplit_once(':') {
                    Some((host, p)) if !host.contains(':') => {
                        (host.to_owned(), p.parse().map_err(|_| bad())?)
                    }
                    Some(_) => return Err(bad()),
                    None => (h.to_owned(), self.port),
                }
            };
            if host.is_empty() || host.contains(char::is_whitespace) || port == 0 {
                return Err(bad());
            }
            out.push((host, port));
        }
        Ok(out)
    }
}

/// Builds the client and its event loop for `cfg`, over `transport` (already resolved, so a
/// missing key is a start-up error, not a reconnect loop; the caller warns about plain TCP).
/// It dials `host:port`; [`Brokers`] moves it along `more_hosts`.
pub fn client(
    cfg: &BrokerConfig,
    transport: BrokerTransport,
    side: ClientOptions,
) -> (AsyncClient, EventLoop) {
    let opts = options(cfg, &transport, &side, &cfg.host, cfg.port);
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

fn options(
    cfg: &BrokerConfig,
    transport: &BrokerTransport,
    side: &ClientOptions,
    host: &str,
    port: u16,
) -> MqttOptions {
    let mut opts = MqttOptions::new(side.client_id.clone(), host, port);
    opts.set_clean_session(side.clean_session)
        .set_manual_acks(side.manual_acks)
        .set_keep_alive(Duration::from_secs(cfg.keep_alive_secs.max(5)))
        // rumqttc's 10 KiB default would jam the link on the first photo chunk; incoming
        // up to what the broker allows, so an oversized message is quarantined, not a jam.
        .set_max_packet_size(MAX_BROKER_PACKET_BYTES, MAX_MESSAGE_BYTES + 1024)
        .set_inflight(side.inflight)
        .set_request_channel_capacity(side.request_channel_capacity);
    if let BrokerTransport::Tls(config) = transport {
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            config.clone(),
        )));
    }
    if let Some(will) = side.last_will.clone() {
        opts.set_last_will(will);
    }
    opts
}

/// The brokers of a cluster, in turn: after a failed or lost connection the event loop
/// dials the next (`rumqttc` keeps its session state and what is queued across the
/// switch; the broker cluster keeps the session). With one broker it does nothing.
#[derive(Clone)]
pub struct Brokers {
    addresses: Vec<(String, u16)>,
    at: usize,
    cfg: BrokerConfig,
    transport: BrokerTransport,
    side: ClientOptions,
}

impl Brokers {
    pub fn new(
        cfg: &BrokerConfig,
        transport: BrokerTransport,
        side: ClientOptions,
    ) -> Result<Brokers, BadHost> {
        Ok(Brokers {
            addresses: cfg.addresses()?,
            at: 0,
            cfg: cfg.clone(),
            transport,
            side,
        })
    }

    /// `host:port` of the broker dialled now.
    pub fn current(&self) -> String {
        let (h, p) = &self.addresses[self.at];
        match h.contains(':') {
            true => format!("[{h}]:{p}"),
            false => format!("{h}:{p}"),
        }
    }

    /// After a failure: the event loop dials the next broker; its address, or `None`
    /// when there is only one.
    pub fn next(&mut self, eventloop: &mut EventLoop) -> Option<String> {
        if self.addresses.len() < 2 {
            return None;
        }
        self.at = (self.at + 1) % self.addresses.len();
        let (host, port) = &self.addresses[self.at];
        eventloop.mqtt_options = options(&self.cfg, &self.transport, &self.side, host, *port);
        Some(self.current())
    }
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
    fn more_hosts_are_parsed_and_taken_in_turn() {
        let mut cfg = BrokerConfig {
            host: "mqtt-1.hq".into(),
            port: 8883,
            more_hosts: vec![
                "mqtt-2.hq".into(),
                "10.0.0.3:8884".into(),
                "[fd00::4]:8885".into(),
                "[fd00::5]".into(),
            ],
            ..BrokerConfig::default()
        };
        assert_eq!(
            cfg.addresses().unwrap(),
            vec![
                ("mqtt-1.hq".to_owned(), 8883),
                ("mqtt-2.hq".to_owned(), 8883),
                ("10.0.0.3".to_owned(), 8884),
                ("fd00::4".to_owned(), 8885),
                ("fd00::5".to_owned(), 8883),
            ]
        );
        let side = ClientOptions {
            client_id: "bus-ntt-01".into(),
            clean_session: false,
            manual_acks: false,
            inflight: 10,
            request_channel_capacity: 10,
            default_connection_timeout_secs: 60,
            last_will: None,
        };
        let (_c, mut el) = client(&cfg, BrokerTransport::InsecurePlaintext, side.clone());
        let mut b = Brokers::new(&cfg, BrokerTransport::InsecurePlaintext, side.clone()).unwrap();
        assert_eq!(b.current(), "mqtt-1.hq:8883");
        assert_eq!(b.next(&mut el).as_deref(), Some("mqtt-2.hq:8883"));
        assert_eq!(
            el.mqtt_options.broker_address(),
            ("mqtt-2.hq".to_owned(), 8883)
        );
        assert_eq!(el.mqtt_options.client_id(), "bus-ntt-01");
        assert!(!el.mqtt_options.clean_session());
        for _ in 0..3 {
            b.next(&mut el);
        }
        assert_eq!(
            b.next(&mut el).as_deref(),
            Some("mqtt-1.hq:8883"),
            "round again"
        );
        for bad in ["", "a b", "h:x", "h:0", "[fd00::1", "fd00::1:88", "[::1]x"] {
            cfg.more_hosts = vec![bad.into()];
            assert!(cfg.addresses().is_err(), "{bad:?}");
        }
        cfg.more_hosts.clear();
        let mut one = Brokers::new(&cfg, BrokerTransport::InsecurePlaintext, side).unwrap();
        assert_eq!(one.next(&mut el), None);
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
