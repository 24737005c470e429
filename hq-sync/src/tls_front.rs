//! The embedded broker's front door: TLS 1.3 with client certificates, checked against the
//! fleet CA and its revocation list, in front of rumqttd on a private loopback port.
//!
//! Why not rumqttd's own TLS: it verifies client certificates but cannot check a CRL, so
//! a lost bus would keep connecting. Here the CRL is re-read when its file changes, new
//! handshakes of revoked certificates fail, and live connections of a certificate that
//! was just revoked are closed within about a second.
//!
//! Invariants:
//! - Nothing reaches rumqttd before a handshake with a valid, unrevoked fleet client
//!   certificate has completed.
//! - A CRL that cannot be read or parsed never loosens anything: the last good one stays.
//! - Handshakes are bounded in time and number, so a flood of half-open connections
//!   cannot starve real buses of the broker.

use keliling_shared::tls;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
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
    let mut upstream = TcpStream::connect(shared.cfg.upstream).await?;
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
    let mut tls = tls;
    let result = tokio::select! {
        r = tokio::io::copy_bidirectional(&mut tls, &mut upstream) => r.map(|_| ()),
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
