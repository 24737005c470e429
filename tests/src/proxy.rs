//! A loopback TCP proxy that the harness uses to fake a bus's bad mobile link.
//!
//! The bus node and HQ talk to the broker through a [`LinkProxy`] instead of
//! directly, so a test can break the link the way the field breaks it without
//! touching either program:
//!
//! * [`LinkProxy::cut`] is the link going away abruptly (a modem reset, NAT
//!   state lost): open connections are reset at once and new ones are closed
//!   as soon as they are accepted, until [`LinkProxy::restore`].
//! * [`LinkProxy::stall`] is the nastier dead-but-open link: sockets stay up
//!   but no byte moves, so only keep-alives and timeouts can notice.
//! * [`LinkProxy::set_shape`] is a slow, far link: a rate limit and a delay
//!   applied to each direction separately.
//!
//! Each accepted connection gets one task that owns both sockets. The task
//! watches a "cut generation" channel, so a cut reaches it at once even while
//! it is blocked reading, and dropping the task's future is what closes the
//! sockets.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Size of one read from a socket. Also the largest unit that the delay is
/// applied to, so it is kept near a typical MQTT publish with a small photo.
const READ_BUF: usize = 16 * 1024;

/// Read buffers that may wait for their delay or their turn under the rate
/// limit, per direction. Bounded so that a stalled or throttled link pushes
/// back on the sender instead of swallowing everything into memory: together
/// with the kernel's socket buffers this is the "bufferbloat" of the link.
const QUEUED_READS: usize = 16;

/// How late the pacer may run before it stops making up for lost time. Timer
/// wake-ups are coarse (about 1 ms); a small tolerance keeps the mean rate
/// right without letting an idle link bank a big burst.
const PACING_TOLERANCE: Duration = Duration::from_millis(50);

/// Link shaping applied to each direction on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Bytes per second allowed through in each direction. 0 means unlimited
    /// (delay only).
    pub rate_bytes_per_sec: u64,
    /// Round-trip delay added by the link: each direction holds every read
    /// buffer back for half of it.
    pub latency: Duration,
}

/// Which way bytes flow through a connection.
#[derive(Debug, Clone, Copy)]
enum Dir {
    /// Client to upstream (the bus publishing to the broker).
    Up,
    /// Upstream to client.
    Down,
}

/// State shared by the handle, the accept loop and every connection task.
struct Shared {
    upstream: SocketAddr,
    /// A cluster's nodes (the first is `upstream`): a connection goes to the node the
    /// last one reached, or the next that accepts, as a load balancer in front of a
    /// cluster would.
    upstreams: Vec<SocketAddr>,
    current: std::sync::atomic::AtomicUsize,
    up: AtomicBool,
    /// Bumped by every cut and by shutdown; connection tasks end when it
    /// changes.
    cut_gen: watch::Sender<u64>,
    stalled: watch::Sender<bool>,
    shape: watch::Sender<Option<Shape>>,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    open_connections: AtomicU64,
    cuts: AtomicU64,
}

impl Shared {
    fn counter(&self, dir: Dir) -> &AtomicU64 {
        match dir {
            Dir::Up => &self.bytes_up,
            Dir::Down => &self.bytes_down,
        }
    }
}

/// A TCP proxy on `127.0.0.1` in front of one upstream (normally the broker),
/// whose link the test controls. See the module docs for what each fault
/// stands for.
///
/// Dropping it (or [`LinkProxy::shutdown`]) stops listening and closes every
/// connection.
pub struct LinkProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept_task: JoinHandle<()>,
}

impl LinkProxy {
    /// Starts a proxy on `127.0.0.1:<random port>` forwarding to `upstream`.
    ///
    /// The upstream is connected once per accepted client, so it may be down
    /// (a killed broker): the client then sees its connection closed, as it
    /// would with the broker itself unreachable.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<LinkProxy> {
        LinkProxy::start_many(vec![upstream]).await
    }

    /// Like [`LinkProxy::start`], in front of a cluster's nodes: each connection goes to
    /// the node the previous one reached, or the next one that accepts.
    pub async fn start_many(upstreams: Vec<SocketAddr>) -> anyhow::Result<LinkProxy> {
        let Some(&upstream) = upstreams.first() else {
            anyhow::bail!("a link proxy needs an upstream");
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding the link proxy on 127.0.0.1")?;
        let addr = listener
            .local_addr()
            .context("reading the link proxy's address")?;
        let shared = Arc::new(Shared {
            upstream,
            upstreams,
            current: std::sync::atomic::AtomicUsize::new(0),
            up: AtomicBool::new(true),
            cut_gen: watch::Sender::new(0),
            stalled: watch::Sender::new(false),
            shape: watch::Sender::new(None),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        tracing::debug!(%addr, %upstream, "link proxy started");
        Ok(LinkProxy {
            shared,
            addr,
            accept_task,
        })
    }

    /// The address clients should connect to instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients should connect to instead of the upstream's.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Takes the link down: every open connection is reset now (both sockets
    /// closed with `SO_LINGER` 0, so the client's next read fails at once
    /// rather than after a timeout), and connections accepted until
    /// [`LinkProxy::restore`] are closed straight away.
    pub fn cut(&self) {
        // Order matters: the accept loop subscribes to the generation and
        // then reads `up`, so a connection racing this call either sees the
        // link down or is woken by the bump below.
        if self.shared.up.swap(false, Ordering::SeqCst) {
            self.shared.cuts.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.cut_gen.send_modify(|gen| *gen += 1);
        tracing::debug!(addr = %self.addr, "link proxy cut");
    }

    /// Brings the link back up after [`LinkProxy::cut`]. Connections made
    /// from now on are forwarded; the ones that were cut stay closed.
    pub fn restore(&self) {
        self.shared.up.store(true, Ordering::SeqCst);
        tracing::debug!(addr = %self.addr, "link proxy restored");
    }

    /// Whether the link is up (not cut). A stalled link is still up.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::SeqCst)
    }

    /// While `on`, connections stay open but no byte is forwarded either way:
    /// the dead-but-open link that only keep-alives detect. Bytes read
    /// meanwhile are held (up to a bounded queue, then the sender is pushed
    /// back on) and delivered in order when the stall ends. A cut during a
    /// stall still closes everything; `restore` does not end a stall.
    pub fn stall(&self, on: bool) {
        self.shared.stalled.send_replace(on);
        tracing::debug!(addr = %self.addr, on, "link proxy stall");
    }

    /// Whether the link is stalled.
    pub fn is_stalled(&self) -> bool {
        *self.shared.stalled.borrow()
    }

    /// Sets or clears link shaping for both directions, applied from the next
    /// read buffer on, on open connections too.
    pub fn set_shape(&self, shape: Option<Shape>) {
        self.shared.shape.send_replace(shape);
        tracing::debug!(addr = %self.addr, ?shape, "link proxy shape");
    }

    /// Bytes delivered from clients to the upstream.
    pub fn bytes_up(&self) -> u64 {
        self.shared.bytes_up.load(Ordering::Relaxed)
    }

    /// Bytes delivered from the upstream to clients.
    pub fn bytes_down(&self) -> u64 {
        self.shared.bytes_down.load(Ordering::Relaxed)
    }

    /// Connections accepted while the link was up and forwarded (whether or
    /// not the upstream then answered).
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections_accepted.load(Ordering::Relaxed)
    }

    /// Connections closed on arrival because the link was cut: how often a
    /// client retried while the link was down.
    pub fn connections_refused(&self) -> u64 {
        self.shared.connections_refused.load(Ordering::Relaxed)
    }

    /// Connections being forwarded right now.
    pub fn open_connections(&self) -> u64 {
        self.shared.open_connections.load(Ordering::Relaxed)
    }

    /// How many times [`LinkProxy::cut`] took an up link down.
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::Relaxed)
    }

    /// Stops listening and closes every connection (same as dropping).
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        // The connection tasks hold `Shared` (and so the sender) themselves,
        // so the channel never closes on its own: bump it to end them.
        self.shared.cut_gen.send_modify(|gen| *gen += 1);
    }
}

impl std::fmt::Debug for LinkProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("up", &self.is_up())
            .field("stalled", &self.is_stalled())
            .finish_non_exhaustive()
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _peer)) => client,
            Err(err) => {
                // Typically EMFILE; back off instead of spinning.
                tracing::warn!(%err, "link proxy accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Subscribe before reading `up`; see `LinkProxy::cut`.
        let cut_rx = shared.cut_gen.subscribe();
        if !shared.up.load(Ordering::SeqCst) {
            shared.connections_refused.fetch_add(1, Ordering::Relaxed);
            abort(&client);
            continue;
        }
        shared.connections_accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(client, cut_rx, Arc::clone(&shared)));
    }
}

/// Makes the coming close send a reset instead of a FIN, as an abruptly
/// broken link would look to the peer.
fn abort(stream: &TcpStream) {
    if let Err(err) = stream.set_zero_linger() {
        tracing::debug!(%err, "setting SO_LINGER 0 failed; closing with FIN");
    }
}

/// Keeps `open_connections` right however the connection task ends.
/// The node the last connection reached, or the next one that accepts.
async fn connect_upstream(shared: &Shared) -> std::io::Result<TcpStream> {
    let n = shared.upstreams.len();
    let start = shared.current.load(Ordering::Relaxed);
    let mut last = None;
    for k in 0..n {
        let i = (start + k) % n;
        match TcpStream::connect(shared.upstreams[i]).await {
            Ok(s) => {
                shared.current.store(i, Ordering::Relaxed);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no upstream")))
}

struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve(mut client: TcpStream, mut cut_rx: watch::Receiver<u64>, shared: Arc<Shared>) {
    shared.open_connections.fetch_add(1, Ordering::Relaxed);
    let _open = OpenGuard(Arc::clone(&shared));
    // MQTT packets are small and latency-sensitive; the proxy must not add
    // Nagle delays the real link would not have.
    let _ = client.set_nodelay(true);

    let connected = tokio::select! {
        res = connect_upstream(&shared) => res,
        _ = cut_rx.changed() => {
            abort(&client);
            return;
        }
    };
    let mut upstream = match connected {
        Ok(upstream) => upstream,
        Err(err) => {
            // The client sees its connection closed, like a broker that is
            // down behind a working link.
            tracing::debug!(%err, upstream = %shared.upstream, "link proxy upstream connect failed");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);

    let reset = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let up = pipe(client_read, upstream_write, &shared, Dir::Up);
        let down = pipe(upstream_read, client_write, &shared, Dir::Down);
        tokio::select! {
            res = async { tokio::try_join!(up, down) } => match res {
                // Both sides closed cleanly; their FINs were passed on.
                Ok(_) => false,
                // One side reset or failed: pass the failure on as a reset.
                Err(err) => {
                    tracing::debug!(%err, "link proxy connection failed");
                    true
                }
            },
            _ = cut_rx.changed() => true,
        }
    };
    if reset {
        abort(&client);
        abort(&upstream);
    }
}

/// Forwards one direction until EOF (passed on as a half-close) or an error.
///
/// Reading and writing are separate futures joined by a bounded queue, so a
/// delay holds back each buffer by the same amount without also holding back
/// the reads behind it: the delay is latency, not a throughput cap.
async fn pipe<R, W>(mut reader: R, mut writer: W, shared: &Shared, dir: Dir) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUED_READS);

    let read_side = async move {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                // Dropping `tx` tells the write side to half-close.
                return Ok::<(), io::Error>(());
            }
            let delay = shared
                .shape
                .borrow()
                .map(|shape| shape.latency / 2)
                .unwrap_or_default();
            if tx
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
    };

    let write_side = async {
        let mut stalled = shared.stalled.subscribe();
        let mut pacer = Pacer::default();
        while let Some((release, data)) = rx.recv().await {
            if release > Instant::now() {
                tokio::time::sleep_until(release).await;
            }
            let mut rest = &data[..];
            while !rest.is_empty() {
                let shape = *shared.shape.borrow();
                let n = pacer.take(shape, rest.len()).await;
                // Checked last, right before writing, so a stall that began
                // during the pacing sleep still holds these bytes. The error
                // (sender gone) cannot happen while `shared` is alive.
                let _ = stalled.wait_for(|stalled| !*stalled).await;
                writer.write_all(&rest[..n]).await?;
                shared.counter(dir).fetch_add(n as u64, Ordering::Relaxed);
                rest = &rest[n..];
            }
        }
        writer.shutdown().await
    };

    tokio::try_join!(read_side, write_side).map(|_| ())
}

/// Paces writes to a byte rate: a token bucket whose depth is one slice, so
/// an idle link does not bank a burst (a real radio link doesn't either).
#[derive(Default)]
struct Pacer {
    /// When the link is free to send the next slice.
    next_free: Option<Instant>,
}

impl Pacer {
    /// Waits until part of `want` bytes may go out under `shape`, and returns
    /// how many.
    async fn take(&mut self, shape: Option<Shape>, want: usize) -> usize {
        let rate = match shape {
            Some(shape) if shape.rate_bytes_per_sec > 0 => shape.rate_bytes_per_sec,
            _ => {
                self.next_free = None;
                return want;
            }
        };
        // Slices of about 1/50 s of traffic keep the stream smooth, so a
        // keep-alive behind a big publish waits a slice, not the whole
        // publish.
        let slice = usize::try_from((rate / 50).clamp(64, READ_BUF as u64)).unwrap_or(READ_BUF);
        let n = want.min(slice);
        let now = Instant::now();
        let start = match self.next_free {
            Some(free) if free + PACING_TOLERANCE > now => free,
            _ => now,
        };
        if start > now {
            tokio::time::sleep_until(start).await;
        }
        self.next_free = Some(start + Duration::from_secs_f64(n as f64 / rate as f64));
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant as StdInstant;

    /// An upstream that echoes every byte back, one task per connection.
    async fn echo_server() -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        (addr, task)
    }

    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = StdInstant::now() + Duration::from_secs(3);
        while !check() {
            assert!(StdInstant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn echo_roundtrip(stream: &mut TcpStream, msg: &[u8]) {
        stream.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut got))
            .await
            .expect("echo timed out")
            .unwrap();
        assert_eq!(got, msg);
    }

    /// True when the connection is closed or reset within a second.
    async fn closes_promptly(stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) | Err(_) => false,
        }
    }

    #[tokio::test]
    async fn forwards_both_ways_and_counts() {
        let (echo, _server) = echo_server().await;
        let proxy = LinkProxy::start(echo).await.unwrap();
        assert_eq!(proxy.upstream(), echo);
        assert_eq!(proxy.addr().port(), proxy.port());

        let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
        echo_roundtrip(&mut a, b"hello").await;
        echo_roundtrip(&mut b, b"world!").await;
        eventually("byte counters", || {
            proxy.bytes_up() == 11 && proxy.bytes_down() == 11
        })
        .await;
        assert_eq!(proxy.connections_accepted(), 2);
        assert_eq!(proxy.open_connections(), 2);
        assert_eq!(proxy.cuts(), 0);

        drop(a);
        eventually("open connection count", || proxy.open_connections() == 1).await;
    }

    #[tokio::test]
    async fn half_close_is_passed_on() {
        let (echo, _server) = echo_server().await;
        let proxy = LinkProxy::start(echo).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        stream.write_all(b"last words").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"last words");
    }

    #[tokio::test]
    async fn cut_closes_open_connections_and_refuses_until_restore() {
        let (echo, _server) = echo_server().await;
        let proxy = LinkProxy::start(echo).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        echo_roundtrip(&mut stream, b"before").await;

        // The client is blocked in read when the cut comes.
        let reader = tokio::spawn(async move {
            let closed = closes_promptly(&mut stream).await;
            (closed, stream)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        proxy.cut();
        let (closed, _stream) = reader.await.unwrap();
        assert!(closed, "open connection survived the cut");
        assert!(!proxy.is_up());
        assert_eq!(proxy.cuts(), 1);
        proxy.cut();
        assert_eq!(proxy.cuts(), 1, "cutting a cut link counts once");

        // While down, a new connection either fails or is closed at once.
        match TcpStream::connect(proxy.addr()).await {
            Err(_) => {}
            Ok(mut fresh) => {
                let _ = fresh.write_all(b"anyone?").await;
                assert!(closes_promptly(&mut fresh).await, "connected while cut");
            }
        }
        assert_eq!(proxy.connections_accepted(), 1);
        eventually("refused count", || proxy.connections_refused() == 1).await;
        eventually("no open connections", || proxy.open_connections() == 0).await;

        proxy.restore();
        assert!(proxy.is_up());
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        echo_roundtrip(&mut again, b"after").await;
        assert_eq!(proxy.connections_accepted(), 2);
    }

    #[tokio::test]
    async fn stall_holds_bytes_and_releases_them_in_order() {
        let (echo, _server) = echo_server().await;
        let proxy = LinkProxy::start(echo).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        echo_roundtrip(&mut stream, b"x").await;
        eventually("first byte counted", || proxy.bytes_up() == 1).await;

        proxy.stall(true);
        assert!(proxy.is_stalled());
        assert!(proxy.is_up());
        stream.write_all(b"held ").await.unwrap();
        stream.write_all(b"back").await.unwrap();
        let mut buf = [0u8; 9];
        let waited =
            tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut buf)).await;
        assert!(waited.is_err(), "bytes crossed a stalled link");
        assert_eq!(proxy.bytes_up(), 1);
        assert_eq!(proxy.open_connections(), 1, "stall must not close");

        proxy.stall(false);
        tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut buf))
            .await
            .expect("stalled bytes never arrived")
            .unwrap();
        assert_eq!(&buf, b"held back");
        eventually("counters after stall", || proxy.bytes_up() == 10).await;
    }

    #[tokio::test]
    async fn cut_during_stall_still_closes() {
        let (echo, _server) = echo_server().await;
        let proxy = LinkProxy::start(echo).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        echo_roundtrip(&mut stream, b"x").await;
        proxy.stall(true);
        stream.write_all(b"stuck").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        proxy.cut();
        assert!(closes_promptly(&mut stream).await);
    }

    #[tokio::test]
    async fn shaping_throttles_to_the_rate() {
        let (echo, _server) = echo_server().await;
        let proxy = LinkProxy::start(echo).await.unwrap();
        proxy.set_shape(Some(Shape {
            rate_bytes_per_sec: 50_000,
            latency: Duration::from_millis(20),
        }));
        let stream = TcpStream::connect(proxy.addr()).await.unwrap();
        let (mut r, mut w) = stream.into_split();
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let expected = payload.clone();

        let started = StdInstant::now();
        let writer = tokio::spawn(async move { w.write_all(&payload).await });
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(Duration::from_secs(15), r.read_exact(&mut got))
            .await
            .expect("shaped transfer took far too long")
            .unwrap();
        let elapsed = started.elapsed();
        writer.await.unwrap().unwrap();

        assert!(got == expected, "shaped bytes corrupted");
        assert!(
            elapsed > Duration::from_millis(1500),
            "100 KB at 50 KB/s took only {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(6), "too slow: {elapsed:?}");
        assert_eq!(proxy.bytes_up(), 100_000);
    }

    #[tokio::test]
    async fn latency_delays_each_roundtrip() {
        let (echo, _server) = echo_server().await;
        let proxy = LinkProxy::start(echo).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        echo_roundtrip(&mut stream, b"fast").await;

        proxy.set_shape(Some(Shape {
            rate_bytes_per_sec: 0,
            latency: Duration::from_millis(200),
        }));
        let started = StdInstant::now();
        echo_roundtrip(&mut stream, b"slow").await;
        let rtt = started.elapsed();
        assert!(rtt >= Duration::from_millis(195), "rtt {rtt:?}");

        proxy.set_shape(None);
        let started = StdInstant::now();
        echo_roundtrip(&mut stream, b"fast again").await;
        assert!(started.elapsed() < Duration::from_millis(150));
    }

    #[tokio::test]
    async fn dead_upstream_closes_the_client() {
        let dead = SocketAddr::from((Ipv4Addr::LOCALHOST, crate::ports::free_port().unwrap()));
        let proxy = LinkProxy::start(dead).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(closes_promptly(&mut stream).await);
        assert_eq!(proxy.connections_accepted(), 1);
    }

    #[tokio::test]
    async fn shutdown_closes_everything() {
        let (echo, _server) = echo_server().await;
        let proxy = LinkProxy::start(echo).await.unwrap();
        let addr = proxy.addr();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        echo_roundtrip(&mut stream, b"bye").await;
        proxy.shutdown();
        assert!(closes_promptly(&mut stream).await);
        // The listener goes away with the aborted accept task.
        let deadline = StdInstant::now() + Duration::from_secs(3);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(
                StdInstant::now() < deadline,
                "still listening after shutdown"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
