//! The embedded broker's front door: TLS 1.3 with client certificates, checked against the
//! fleet CA and its revocation list, in front of rumqttd on a private loopback port.
//!
//! Why not rumqttd's own TLS: it verifies client certificates but cannot check a CRL, so
//! a lost bus would keep connecting. Here the CRL is re-read when its file changes, new
//! handshakes of revoked certificates fail, and live connections of a certificate that
//! was just revoked are closed within about a second.
//!
//! rumqttd has no topic ACLs either, so the front also enforces what `config/mosquitto.acl`
//! enforces on Mosquitto. It frames the client-to-broker stream with rumqttc's MQTT 3.1.1
//! codec, decides on each packet ([`Session::check`]) and forwards the original bytes
//! unchanged; the broker-to-client direction is a plain copy.
//!
//! Invariants:
//! - Nothing reaches rumqttd before a handshake with a valid, unrevoked fleet client
//!   certificate has completed.
//! - The first packet is an MQTT 3.1.1 CONNECT whose client id is the certificate's common
//!   name: no certificate can take over another client's session (HQ's included).
//! - A bus publishes only on its own `up/{kind}` topics (its last will included) and
//!   subscribes only within its own `down/` and `fleet/`; an HQ worker (`hq-<n>`) reads
//!   every bus's `up/{kind}` (also inside `$share/<group>/`) and writes `down/` and
//!   `fleet/`. Any other name is refused. Anything else (a publish or subscribe outside
//!   that, a second CONNECT, a packet only a server sends, a malformed or oversized
//!   packet) closes the connection, logged with the identity and the topic; the broker
//!   never sees the offending packet.
//! - A CRL that cannot be read or parsed never loosens anything: the last good one stays.
//! - Handshakes are bounded in time and number, so a flood of half-open connections
//!   cannot starve real buses of the broker.

use crate::pki;
use bytes::BytesMut;
use keliling_shared::tls;
use keliling_shared::topics::{Topics, UpKind};
use keliling_shared::wire::MAX_BROKER_PACKET_BYTES;
use keliling_shared::BusId;
use rumqttc::mqttbytes::{self, v4::Packet, Protocol};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

/// Handshakes in progress at most; more wait in the kernel's accept queue.
const MAX_HANDSHAKES: usize = 256;
/// A 2G handshake takes a few seconds; one that takes longer than this is not a bus.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const CRL_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("server TLS config: {0}")]
    Config(String),
    #[error("revocation list {path}: {reason}")]
    Crl { path: PathBuf, reason: String },
    #[error("TLS front: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct FrontConfig {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub crl: PathBuf,
    /// rumqttd's private plain listener.
    pub upstream: SocketAddr,
    /// The topic tree the ACL is about (`[ingest] topic_prefix`).
    pub topics: Topics,
}

/// A TLS 1.3 server config that requires a fleet client certificate not on the CRL.
pub fn server_config(cfg: &FrontConfig) -> Result<Arc<ServerConfig>, FrontError> {
    let roots = Arc::new(tls::root_store(&cfg.ca)?);
    let crls = tls::load_crls(&cfg.crl)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, tls::provider())
        .with_crls(crls)
        .build()
        .map_err(|e| FrontError::Config(e.to_string()))?;
    let chain = tls::load_certs(&cfg.cert, "broker certificate")?;
    pki::check_shared_key_mode(&cfg.key).map_err(|e| FrontError::Config(e.to_string()))?;
    let key = tls::load_key(&cfg.key)?;
    let config = ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| FrontError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| FrontError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// Serials (big-endian bytes, no leading zeros) the CRL at `cfg.crl` lists.
fn revoked_serials(cfg: &FrontConfig) -> Result<HashSet<Vec<u8>>, FrontError> {
    let mut out = HashSet::new();
    for der in tls::load_crls(&cfg.crl)? {
        let (_, crl) = x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| FrontError::Crl {
            path: cfg.crl.clone(),
            reason: e.to_string(),
        })?;
        for r in crl.iter_revoked_certificates() {
            out.insert(r.user_certificate.to_bytes_be());
        }
    }
    Ok(out)
}

struct Live {
    serial: Vec<u8>,
    common_name: String,
    kill: oneshot::Sender<()>,
}

struct Shared {
    cfg: FrontConfig,
    acceptor: RwLock<TlsAcceptor>,
    live: Mutex<HashMap<u64, Live>>,
    next_id: AtomicU64,
    handshakes: Semaphore,
}

/// Starts the front on `listener` in its own thread and runtime. The TLS setup is
/// checked before this returns, so a bad certificate path is a start-up error.
pub fn spawn(listener: std::net::TcpListener, cfg: FrontConfig) -> Result<(), FrontError> {
    let acceptor = TlsAcceptor::from(server_config(&cfg)?);
    revoked_serials(&cfg)?;
    listener.set_nonblocking(true)?;
    let shared = Arc::new(Shared {
        cfg,
        acceptor: RwLock::new(acceptor),
        live: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        handshakes: Semaphore::new(MAX_HANDSHAKES),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("broker-tls")
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("broker-tls-front".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        error!(error = %e, "TLS front cannot use its listener");
                        return;
                    }
                };
                tokio::spawn(watch_crl(shared.clone()));
                accept_loop(listener, shared).await;
            })
        })?;
    Ok(())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                // EMFILE and friends: wait a little rather than spin.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(tcp, peer, shared).await {
                debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

async fn serve(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) -> std::io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let acceptor = match shared.acceptor.read() {
        Ok(a) => a.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let tls = {
        let Ok(_permit) = shared.handshakes.acquire().await else {
            return Ok(());
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                warn!(%peer, error = %e, "TLS handshake refused");
                return Ok(());
            }
            Err(_) => {
                warn!(%peer, "TLS handshake timed out");
                return Ok(());
            }
        }
    };
    let Some((serial, common_name)) = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| {
            let (_, x) = x509_parser::parse_x509_certificate(c.as_ref()).ok()?;
            let cn = x
                .subject()
                .iter_common_name()
                .next()
                .and_then(|n| n.as_str().ok())
                .unwrap_or("")
                .to_owned();
            Some((x.serial.to_bytes_be(), cn))
        })
    else {
        // The verifier requires a certificate, so this is unreachable in practice; refuse.
        warn!(%peer, "no readable client certificate after handshake");
        return Ok(());
    };
    let Some(identity) = Identity::from_common_name(&common_name) else {
        warn!(%peer, client = %common_name, "certificate names neither a bus nor an HQ worker: refused");
        return Ok(());
    };
    let upstream = TcpStream::connect(shared.cfg.upstream).await?;
    let _ = upstream.set_nodelay(true);
    let (kill, killed) = oneshot::channel();
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut live) = shared.live.lock() {
        live.insert(
            id,
            Live {
                serial,
                common_name: common_name.clone(),
                kill,
            },
        );
    }
    debug!(%peer, client = %common_name, "client connected");
    let (tls_read, mut tls_write) = tokio::io::split(tls);
    let (mut up_read, up_write) = upstream.into_split();
    let session = Session::new(identity, shared.cfg.topics.clone());
    let result = tokio::select! {
        r = client_to_broker(tls_read, up_write, session) => match r {
            Ok(()) => Ok(()),
            Err(Closed::Io(e)) => Err(e),
            Err(Closed::Violation(v)) => {
                warn!(%peer, client = %common_name, violation = %v, "ACL violation: connection closed");
                Ok(())
            }
        },
        r = tokio::io::copy(&mut up_read, &mut tls_write) => r.map(|_| ()),
        _ = killed => {
            info!(%peer, client = %common_name, "closed the connection of a revoked certificate");
            Ok(())
        }
    };
    if let Ok(mut live) = shared.live.lock() {
        live.remove(&id);
    }
    result
}

/// Who a client is: its certificate's common name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Bus(BusId),
    /// An HQ worker (`hq-1`, `hq-2`, ...).
    Hq(String),
}

impl Identity {
    /// `None` for a name that is neither an HQ worker name nor a bus id.
    pub fn from_common_name(cn: &str) -> Option<Identity> {
        if pki::is_hq_name(cn) {
            Some(Identity::Hq(cn.to_owned()))
        } else {
            BusId::parse(cn).ok().map(Identity::Bus)
        }
    }
    /// The name: the only client id this identity may use.
    pub fn name(&self) -> &str {
        match self {
            Identity::Bus(b) => b.as_str(),
            Identity::Hq(n) => n,
        }
    }
}

/// Why the front closed a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("first packet is not CONNECT")]
    NotConnect,
    #[error("a second CONNECT")]
    SecondConnect,
    #[error("not MQTT 3.1.1 (only protocol level 4 is spoken here)")]
    Protocol,
    #[error("client id {0:?} is not the certificate's name")]
    ClientId(String),
    #[error("publish on {0:?} is not allowed")]
    Publish(String),
    #[error("last will on {0:?} is not allowed")]
    Will(String),
    #[error("subscribe to {0:?} is not allowed")]
    Subscribe(String),
    #[error("a packet only a server sends: {0}")]
    ServerPacket(&'static str),
    #[error("malformed packet: {0}")]
    Malformed(String),
}

#[derive(Debug)]
enum Closed {
    Violation(Violation),
    Io(std::io::Error),
}

/// One client's ACL state: who it is and whether it has sent its CONNECT.
#[derive(Debug, Clone)]
pub struct Session {
    identity: Identity,
    topics: Topics,
    connected: bool,
}

impl Session {
    pub fn new(identity: Identity, topics: Topics) -> Session {
        Session {
            identity,
            topics,
            connected: false,
        }
    }

    /// Whether `packet`, the next one from the client, may go to the broker.
    pub fn check(&mut self, packet: &Packet) -> Result<(), Violation> {
        if !self.connected {
            let Packet::Connect(c) = packet else {
                return Err(Violation::NotConnect);
            };
            if c.protocol != Protocol::V4 {
                return Err(Violation::Protocol);
            }
            if c.client_id != self.identity.name() {
                return Err(Violation::ClientId(truncated(&c.client_id)));
            }
            if let Some(w) = &c.last_will {
                if !self.may_publish(&w.topic) {
                    return Err(Violation::Will(truncated(&w.topic)));
                }
            }
            self.connected = true;
            return Ok(());
        }
        match packet {
            Packet::Connect(_) => Err(Violation::SecondConnect),
            Packet::Publish(p) => {
                if self.may_publish(&p.topic) {
                    Ok(())
                } else {
                    Err(Violation::Publish(truncated(&p.topic)))
                }
            }
            Packet::Subscribe(s) => {
                for f in &s.filters {
                    if !self.may_subscribe(&f.path) {
                        return Err(Violation::Subscribe(truncated(&f.path)));
                    }
                }
                Ok(())
            }
            Packet::PubAck(_)
            | Packet::PubRec(_)
            | Packet::PubRel(_)
            | Packet::PubComp(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq
            | Packet::Disconnect => Ok(()),
            Packet::ConnAck(_) => Err(Violation::ServerPacket("CONNACK")),
            Packet::SubAck(_) => Err(Violation::ServerPacket("SUBACK")),
            Packet::UnsubAck(_) => Err(Violation::ServerPacket("UNSUBACK")),
            Packet::PingResp => Err(Violation::ServerPacket("PINGRESP")),
        }
    }

    /// A bus: exactly its own `up/{kind}` topics. HQ: any bus's `down/` and `fleet/`.
    pub fn may_publish(&self, topic: &str) -> bool {
        if topic.contains(['+', '#', '\0']) {
            return false;
        }
        let t = &self.topics;
        match &self.identity {
            Identity::Bus(bus) => UpKind::ALL.into_iter().any(|k| t.up(bus, k) == topic),
            Identity::Hq(_) => {
                let down = format!("{}/bus/+/down/#", t.prefix());
                filter_within(topic, &down) || filter_within(topic, &t.fleet_filter())
            }
        }
    }

    /// A bus: filters that match only its own `down/` topics or `fleet/` topics. HQ:
    /// filters within `{prefix}/bus/+/up/#`, also as `$share/<group>/...` (only the
    /// `up/{kind}` topics exist there: nobody may publish anything else under `up/`).
    pub fn may_subscribe(&self, filter: &str) -> bool {
        let t = &self.topics;
        match &self.identity {
            Identity::Bus(bus) => {
                filter_within(filter, &t.down_filter(bus))
                    || filter_within(filter, &t.fleet_filter())
            }
            Identity::Hq(_) => {
                let inner = match filter.strip_prefix("$share/") {
                    Some(rest) => match rest.split_once('/') {
                        Some((group, f)) if !group.is_empty() && !group.contains(['+', '#']) => f,
                        _ => return false,
                    },
                    None => filter,
                };
                filter_within(inner, &format!("{}/bus/+/up/#", t.prefix()))
            }
        }
    }
}

/// Whether every topic the MQTT filter `filter` can match is matched by `pattern` (a
/// filter of ours, with `+` and a trailing `#`). A topic name is a filter without
/// wildcards, so this is also "pattern matches topic". An invalid filter (`a#`, `#/b`,
/// `a+`) or one starting with `$` is within nothing.
pub fn filter_within(filter: &str, pattern: &str) -> bool {
    if filter.is_empty() || filter.starts_with('$') || filter.contains('\0') {
        return false;
    }
    let f: Vec<&str> = filter.split('/').collect();
    for (i, level) in f.iter().enumerate() {
        let bad_hash = level.contains('#') && (*level != "#" || i + 1 != f.len());
        let bad_plus = level.contains('+') && *level != "+";
        if bad_hash || bad_plus {
            return false;
        }
    }
    let p: Vec<&str> = pattern.split('/').collect();
    for (i, pl) in p.iter().enumerate() {
        if *pl == "#" {
            return true;
        }
        let Some(fl) = f.get(i) else {
            return false;
        };
        if *fl == "#" {
            return false;
        }
        if *pl != "+" && fl != pl {
            return false;
        }
    }
    f.len() == p.len()
}

fn truncated(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Frames the client's stream with rumqttc's MQTT 3.1.1 codec, checks each packet and
/// forwards its original bytes. Returns at the client's end of stream.
async fn client_to_broker<R, W>(mut from: R, mut to: W, mut session: Session) -> Result<(), Closed>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    const READ_CHUNK: usize = 16 * 1024;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        loop {
            // `check` refuses a packet longer than the limit before it is buffered, so the
            // buffer never holds more than one packet and one read.
            let header = match mqttbytes::check(buf.iter(), MAX_BROKER_PACKET_BYTES) {
                Ok(h) => h,
                Err(mqttbytes::Error::InsufficientBytes(_)) => break,
                Err(e) => return Err(Closed::Violation(Violation::Malformed(e.to_string()))),
            };
            let frame = buf.split_to(header.frame_length());
            let mut parse = frame.clone();
            let packet = Packet::read(&mut parse, MAX_BROKER_PACKET_BYTES)
                .map_err(|e| Closed::Violation(Violation::Malformed(e.to_string())))?;
            session.check(&packet).map_err(Closed::Violation)?;
            to.write_all(&frame).await.map_err(Closed::Io)?;
        }
        buf.reserve(READ_CHUNK);
        let n = from.read_buf(&mut buf).await.map_err(Closed::Io)?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
    }
}

/// Re-reads the CRL when its file changes: new handshakes use it at once, and live
/// connections of newly revoked certificates are closed.
async fn watch_crl(shared: Arc<Shared>) {
    let stamp = |p: &PathBuf| -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    let mut last = stamp(&shared.cfg.crl);
    loop {
        tokio::time::sleep(CRL_POLL).await;
        let now = stamp(&shared.cfg.crl);
        if now == last {
            continue;
        }
        let (config, revoked) = match (server_config(&shared.cfg), revoked_serials(&shared.cfg)) {
            (Ok(c), Ok(r)) => (c, r),
            (Err(e), _) | (_, Err(e)) => {
                // Possibly caught mid-write; the next poll tries again. Until then the
                // last good CRL stays in force.
                warn!(error = %e, "cannot reload the revocation list; keeping the last good one");
                continue;
            }
        };
        last = now;
        match shared.acceptor.write() {
            Ok(mut a) => *a = TlsAcceptor::from(config),
            Err(p) => *p.into_inner() = TlsAcceptor::from(config),
        }
        info!(revoked = revoked.len(), "revocation list reloaded");
        if let Ok(mut live) = shared.live.lock() {
            let doomed: Vec<u64> = live
                .iter()
                .filter(|(_, l)| revoked.contains(&l.serial))
                .map(|(id, _)| *id)
                .collect();
            for id in doomed {
                if let Some(l) = live.remove(&id) {
                    warn!(client = %l.common_name, "certificate revoked: closing its connection");
                    let _ = l.kill.send(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::v4::{Connect, LastWill, Publish, Subscribe, SubscribeFilter};
    use rumqttc::mqttbytes::QoS;

    fn session(cn: &str) -> Session {
        let id = Identity::from_common_name(cn).expect("a fleet name");
        let mut s = Session::new(id, Topics::default());
        s.check(&Packet::Connect(Connect::new(cn)))
            .expect("own CONNECT");
        s
    }

    fn publish(topic: &str) -> Packet {
        let mut p = Publish::new(topic, QoS::AtLeastOnce, vec![1u8]);
        p.pkid = 1;
        Packet::Publish(p)
    }

    fn subscribe(filter: &str) -> Packet {
        let mut s =
            Subscribe::new_many([SubscribeFilter::new(filter.to_owned(), QoS::AtLeastOnce)]);
        s.pkid = 2;
        Packet::Subscribe(s)
    }

    #[test]
    fn filters_within_patterns() {
        let down = "k/v1/bus/bus-a/down/#";
        for ok in [
            "k/v1/bus/bus-a/down/#",
            "k/v1/bus/bus-a/down/sync",
            "k/v1/bus/bus-a/down/+",
            "k/v1/bus/bus-a/down",
        ] {
            assert!(filter_within(ok, down), "{ok}");
        }
        for bad in [
            "k/v1/bus/+/down/#",
            "k/v1/bus/bus-b/down/#",
            "k/v1/bus/bus-a/#",
            "#",
            "k/#",
            "+/v1/bus/bus-a/down/sync",
            "k/v1/bus/bus-a/down/sy#",
            "k/v1/bus/bus-a/down/#/x",
            "k/v1/bus/bus-a/down/a+",
            "$share/hq/k/v1/bus/bus-a/down/#",
            "",
        ] {
            assert!(!filter_within(bad, down), "{bad}");
        }
        let up = "k/v1/bus/+/up/record";
        assert!(filter_within("k/v1/bus/+/up/record", up));
        assert!(filter_within("k/v1/bus/bus-b/up/record", up));
        assert!(!filter_within("k/v1/bus/+/up/+", up));
        assert!(!filter_within("k/v1/bus/+/up/#", up));
        assert!(!filter_within("k/v1/bus/+/up/record/x", up));
    }

    #[test]
    fn a_bus_is_confined_to_its_own_topics() {
        let t = Topics::default();
        let (a, b) = (
            BusId::parse("bus-a").unwrap(),
            BusId::parse("bus-b").unwrap(),
        );
        let mut s = session("bus-a");
        for kind in UpKind::ALL {
            assert_eq!(s.check(&publish(&t.up(&a, kind))), Ok(()));
            assert!(matches!(
                s.check(&publish(&t.up(&b, kind))),
                Err(Violation::Publish(_))
            ));
        }
        for bad in [
            t.down(&a),
            t.down(&b),
            t.fleet("catalogue"),
            format!("{}/bus/bus-a/up/other", t.prefix()),
            format!("{}/bus/bus-a/up/record/x", t.prefix()),
        ] {
            assert!(s.check(&publish(&bad)).is_err(), "{bad}");
        }
        assert_eq!(s.check(&subscribe(&t.down_filter(&a))), Ok(()));
        assert_eq!(s.check(&subscribe(&t.fleet_filter())), Ok(()));
        for bad in [
            t.down_filter(&b),
            format!("{}/bus/+/down/#", t.prefix()),
            format!("{}/bus/+/up/#", t.prefix()),
            format!("{}/bus/bus-b/up/record", t.prefix()),
            format!("$share/hq/{}", t.up_filter(UpKind::Record)),
            "#".to_owned(),
            "$SYS/#".to_owned(),
        ] {
            assert!(
                matches!(s.check(&subscribe(&bad)), Err(Violation::Subscribe(_))),
                "{bad}"
            );
        }
        assert_eq!(s.check(&Packet::PingReq), Ok(()));
        assert_eq!(
            s.check(&Packet::Connect(Connect::new("bus-a"))),
            Err(Violation::SecondConnect)
        );
    }

    #[test]
    fn hq_reads_every_up_topic_and_writes_down_and_fleet() {
        let t = Topics::default();
        let b = BusId::parse("bus-b").unwrap();
        let mut s = session("hq-2");
        for kind in UpKind::ALL {
            assert_eq!(s.check(&subscribe(&t.up_filter(kind))), Ok(()));
            let shared = format!("$share/hq/{}", t.up_filter(kind));
            assert_eq!(s.check(&subscribe(&shared)), Ok(()));
            assert!(s.check(&publish(&t.up(&b, kind))).is_err());
        }
        assert_eq!(s.check(&publish(&t.down(&b))), Ok(()));
        assert_eq!(s.check(&publish(&t.fleet("catalogue"))), Ok(()));
        assert_eq!(
            s.check(&subscribe(&format!("{}/bus/+/up/+", t.prefix()))),
            Ok(())
        );
        for bad in [
            "#".to_owned(),
            format!("{}/bus/#", t.prefix()),
            t.down_filter(&b),
            format!("$share//{}", t.up_filter(UpKind::Record)),
            format!("$share/h+/{}", t.up_filter(UpKind::Record)),
        ] {
            assert!(s.check(&subscribe(&bad)).is_err(), "{bad}");
        }
        assert!(s.check(&publish("other/topic")).is_err());
    }

    #[test]
    fn connect_must_come_first_and_name_the_certificate() {
        let fresh =
            |cn: &str| Session::new(Identity::from_common_name(cn).unwrap(), Topics::default());
        assert_eq!(
            fresh("bus-a").check(&Packet::PingReq),
            Err(Violation::NotConnect)
        );
        for id in ["bus-b", "hq-1", "keliling-bus-bus-a", ""] {
            assert!(matches!(
                fresh("bus-a").check(&Packet::Connect(Connect::new(id))),
                Err(Violation::ClientId(_))
            ));
        }
        let mut v5 = Connect::new("bus-a");
        v5.protocol = Protocol::V5;
        assert_eq!(
            fresh("bus-a").check(&Packet::Connect(v5)),
            Err(Violation::Protocol)
        );
        // The last will is a publish too.
        let t = Topics::default();
        let b = BusId::parse("bus-b").unwrap();
        let mut c = Connect::new("bus-a");
        c.last_will = Some(LastWill::new(
            t.up(&b, UpKind::Status),
            vec![0u8],
            QoS::AtLeastOnce,
            true,
        ));
        assert!(matches!(
            fresh("bus-a").check(&Packet::Connect(c)),
            Err(Violation::Will(_))
        ));
        assert!(Identity::from_common_name("keliling-broker").is_some()); // a valid bus id shape
        assert!(Identity::from_common_name("Bad Name").is_none());
        assert_eq!(
            Identity::from_common_name("hq-3"),
            Some(Identity::Hq("hq-3".into()))
        );
    }

    /// The framing loop: packets split across reads are forwarded byte for byte; a
    /// violation stops before the offending packet reaches the broker.
    #[tokio::test]
    async fn frames_forward_unchanged_and_stop_at_a_violation() {
        let t = Topics::default();
        let a = BusId::parse("bus-a").unwrap();
        let mut wire = BytesMut::new();
        for p in [
            Packet::Connect(Connect::new("bus-a")),
            publish(&t.up(&a, UpKind::Record)),
            subscribe(&t.down_filter(&a)),
        ] {
            p.write(&mut wire, MAX_BROKER_PACKET_BYTES).unwrap();
        }
        let good = wire.clone();
        publish(&t.up(&BusId::parse("bus-b").unwrap(), UpKind::Record))
            .write(&mut wire, MAX_BROKER_PACKET_BYTES)
            .unwrap();
        let (mut client, front_in) = tokio::io::duplex(7); // tiny: every packet is split
        let (front_out, mut broker) = tokio::io::duplex(1 << 20);
        let session = Session::new(Identity::Bus(a), t);
        let task = tokio::spawn(client_to_broker(front_in, front_out, session));
        let bytes = wire.to_vec();
        let writer = tokio::spawn(async move {
            let _ = client.write_all(&bytes).await;
        });
        let r = task.await.unwrap();
        assert!(
            matches!(r, Err(Closed::Violation(Violation::Publish(_)))),
            "{r:?}"
        );
        drop(writer);
        let mut got = Vec::new();
        broker.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, good.to_vec());
    }

    #[tokio::test]
    async fn oversized_or_garbage_input_is_refused() {
        for input in [
            // PUBLISH claiming 1 MiB.
            vec![0x30, 0x80, 0x80, 0x40],
            // Packet type 0 (reserved).
            vec![0x00, 0x00],
            // Remaining length of five bytes.
            vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x7f],
        ] {
            let (mut client, front_in) = tokio::io::duplex(64);
            let (front_out, _broker) = tokio::io::duplex(64);
            let session = Session::new(
                Identity::Bus(BusId::parse("bus-a").unwrap()),
                Topics::default(),
            );
            client.write_all(&input).await.unwrap();
            let r = client_to_broker(front_in, front_out, session).await;
            assert!(
                matches!(r, Err(Closed::Violation(Violation::Malformed(_)))),
                "{input:?}: {r:?}"
            );
        }
    }
}
