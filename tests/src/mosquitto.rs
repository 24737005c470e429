//! A real Eclipse Mosquitto 2.x broker (Debian's `mosquitto` package) run as a
//! child process for end-to-end tests.
//!
//! The deployed system talks to Mosquitto, so the harness tests against the
//! same broker rather than only an in-process one: its limits (packet size,
//! queue depth, inflight window) and its persistence across restarts are part
//! of what is being tested. Each instance gets its own directory holding the
//! config, the persistence database and the logs, and listens on `127.0.0.1`
//! only.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::process::{Child, Command};

use crate::ports;

/// How long a starting broker may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a graceful [`Mosquitto::stop`] may take (it writes the
/// persistence database) before the broker is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest MQTT packet the broker accepts, in bytes. Larger packets get the
/// client disconnected, which is what the field broker does with an
/// oversized upload, so the sync code must chunk below it.
pub const MAX_PACKET_SIZE: u32 = 262_144;

/// QoS 1/2 messages queued per offline persistent client. Well above what a
/// test queues, so a test that loses messages is not hitting this limit.
pub const MAX_QUEUED_MESSAGES: u32 = 100_000;

/// Outgoing QoS 1/2 messages in flight per client.
pub const MAX_INFLIGHT_MESSAGES: u32 = 100;

/// Name of the broker's log file inside its directory.
const LOG_FILE: &str = "mosquitto.log";

/// Name of the file catching the broker's stdout and stderr, where it reports
/// config errors before its log file is open.
const STDERR_FILE: &str = "mosquitto.stderr";

/// Where Debian installs the broker; `/usr/sbin` is often not in a
/// non-root user's `PATH`.
const KNOWN_LOCATIONS: [&str; 2] = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"];

/// A running (or killed, awaiting restart) Mosquitto broker. Dropping it
/// kills the process.
#[derive(Debug)]
pub struct Mosquitto {
    bin: PathBuf,
    dir: PathBuf,
    conf: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Mosquitto {
    /// Whether a `mosquitto` binary can be found.
    pub fn available() -> bool {
        find_binary().is_some()
    }

    /// The broker binary's path, for tests that need the real broker.
    ///
    /// Outside CI a missing broker is `Ok(None)`, so a test can print a skip
    /// line instead of failing on a developer machine without it. In CI
    /// (`CI=true`) it is an error: CI must not go green by skipping the tests
    /// that matter most.
    pub fn require() -> anyhow::Result<Option<PathBuf>> {
        required(find_binary(), in_ci())
    }

    /// Starts a broker with its config, persistence database and logs in
    /// `dir` (created if missing), on a free port of `127.0.0.1`, and waits
    /// until it accepts connections.
    pub async fn start(dir: &Path) -> anyhow::Result<Mosquitto> {
        Self::start_with(dir, None).await
    }

    /// Like [`Mosquitto::start`], with an mTLS listener (fleet CA, CRL, the shipped ACL)
    /// instead of plain TCP when `tls` is given.
    pub async fn start_with(dir: &Path, tls: Option<&MosquittoTls>) -> anyhow::Result<Mosquitto> {
        let bin = Self::require()?
            .ok_or_else(|| anyhow!("mosquitto not found (apt-get install -y mosquitto)"))?;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating broker directory {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving broker directory {}", dir.display()))?;
        let path_text = dir
            .to_str()
            .ok_or_else(|| anyhow!("broker directory {} is not UTF-8", dir.display()))?;
        // mosquitto.conf splits values at whitespace.
        if path_text.chars().any(char::is_whitespace) {
            bail!("broker directory {path_text:?} contains whitespace, which mosquitto.conf cannot express");
        }
        let port = ports::free_port()?;
        let conf = dir.join("mosquitto.conf");
        let mut text = config_text(&dir, port);
        if let Some(tls) = tls {
            let acl = dir.join("mosquitto.acl");
            std::fs::write(&acl, &tls.acl).with_context(|| format!("writing {}", acl.display()))?;
            text = tls_config_text(&text, tls, &acl);
        }
        std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;

        let mut broker = Mosquitto {
            bin,
            dir,
            conf,
            port,
            child: None,
        };
        broker.spawn_and_wait().await?;
        tracing::debug!(port, dir = %broker.dir.display(), "mosquitto started");
        Ok(broker)
    }

    /// The port the broker listens on; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's address on `127.0.0.1`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The directory holding the config, persistence database and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id while the broker runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether the broker process is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the broker with SIGKILL, as a crash or power loss would: nothing
    /// written since the last autosave (every 60 s) survives, so in-flight
    /// and queued messages may be lost. Does nothing if it is not running.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await.context("killing mosquitto")?;
            tracing::debug!(port = self.port, "mosquitto killed");
        }
        Ok(())
    }

    /// Stops the broker with SIGTERM, as a clean service stop would: it saves
    /// its persistence database first, so persistent sessions and their
    /// queued messages survive a [`Mosquitto::restart`]. Falls back to
    /// SIGKILL if it has not exited within 10 s.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            // tokio only sends SIGKILL; the `kill` utility avoids a libc
            // dependency for one signal.
            let sent = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if matches!(sent, Ok(status) if status.success()) {
                if let Ok(waited) = tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
                    waited.context("waiting for mosquitto to stop")?;
                    tracing::debug!(port = self.port, "mosquitto stopped");
                    return Ok(());
                }
                tracing::warn!(port = self.port, "mosquitto ignored SIGTERM; killing it");
            }
        }
        child.kill().await.context("killing mosquitto")
    }

    /// Starts the broker again on the same port with the same persistence
    /// directory, killing it first (SIGKILL) if it is still running. Use
    /// [`Mosquitto::stop`] first for a clean restart.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await?;
        self.spawn_and_wait().await?;
        tracing::debug!(port = self.port, "mosquitto restarted");
        Ok(())
    }

    /// SIGHUP: Mosquitto re-reads its config, ACL and TLS files (the CRL included) and
    /// applies them to new connections.
    pub fn reload(&self) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("mosquitto is not running"))?;
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .context("running kill -HUP")?;
        if !status.success() {
            bail!("kill -HUP {pid} failed: {status}");
        }
        Ok(())
    }

    /// Replaces the ACL file (of a broker started with TLS) and reloads it (SIGHUP).
    pub fn set_acl(&self, text: &str) -> anyhow::Result<()> {
        let acl = self.dir.join("mosquitto.acl");
        std::fs::write(&acl, text).with_context(|| format!("writing {}", acl.display()))?;
        self.reload()
    }

    /// The broker's log so far (all runs in this directory), or an empty
    /// string if there is none yet.
    pub fn log(&self) -> String {
        read_lossy(&self.dir.join(LOG_FILE))
    }

    /// Spawns the broker on the configured port and waits for it to listen.
    ///
    /// A restart can find the port briefly unavailable, so a broker that
    /// exits during start-up is retried a few times before giving up.
    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        const ATTEMPTS: u32 = 5;
        let mut attempt = 1;
        loop {
            // The readiness probe cannot tell who answers on the port, so make
            // sure nobody else does before starting: otherwise a broker that
            // failed to bind would look started.
            if let Some(err) = listener_on(self.port) {
                if attempt < ATTEMPTS {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                bail!(
                    "cannot start mosquitto: port {} is already in use: {err}",
                    self.port
                );
            }
            let mut child = self.spawn()?;
            match self.wait_listening(&mut child).await {
                Ok(()) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Err(err)
                    if attempt < ATTEMPTS
                        && matches!(child.try_wait(), Ok(Some(_)))
                        && format!("{err}").contains("in use") =>
                {
                    tracing::debug!(%err, attempt, "mosquitto exited during start-up; retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => {
                    // Best effort: `kill_on_drop` covers it if this fails.
                    let _ = child.kill().await;
                    return Err(err);
                }
            }
        }
    }

    fn spawn(&self) -> anyhow::Result<Child> {
        let out_path = self.dir.join(STDERR_FILE);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .with_context(|| format!("opening {}", out_path.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("duplicating {}", out_path.display()))?;
        Command::new(&self.bin)
            .arg("-c")
            .arg(&self.conf)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))
    }

    async fn wait_listening(&self, child: &mut Child) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().context("polling mosquitto")? {
                bail!(
                    "mosquitto exited during start-up ({status}){}",
                    self.diagnostics()
                );
            }
            if tokio::net::TcpStream::connect(self.addr()).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "mosquitto not listening on {} after {START_TIMEOUT:?}{}",
                    self.addr(),
                    self.diagnostics()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The tails of the broker's output and log, for error messages.
    fn diagnostics(&self) -> String {
        let mut text = String::new();
        for name in [STDERR_FILE, LOG_FILE] {
            let content = read_lossy(&self.dir.join(name));
            let lines: Vec<&str> = content.lines().collect();
            let tail = &lines[lines.len().saturating_sub(20)..];
            if !tail.is_empty() {
                let _ = write!(text, "\n--- {name} ---\n{}", tail.join("\n"));
            }
        }
        text
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // `kill_on_drop` would too; being explicit keeps it true if the
            // child is ever moved out. Tokio reaps the process afterwards.
            let _ = child.start_kill();
        }
    }
}

/// The files of an mTLS listener, as `config/mosquitto.conf` names them.
#[derive(Debug, Clone)]
pub struct MosquittoTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub crl: PathBuf,
    /// The ACL file's text (the shipped `config/mosquitto.acl`).
    pub acl: String,
}

/// Turns the plain test config into the production shape: TLS 1.3 only, a client
/// certificate from the fleet CA required, its common name as the user name and the
/// client id (no session takeover), the CRL and the per-bus ACL.
fn tls_config_text(plain: &str, tls: &MosquittoTls, acl: &Path) -> String {
    let mut out = plain.replace("allow_anonymous true\n", "");
    out.push_str(&format!(
        "cafile {}\n\
         certfile {}\n\
         keyfile {}\n\
         crlfile {}\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         use_username_as_clientid true\n\
         tls_version tlsv1.3\n\
         acl_file {}\n",
        tls.ca.display(),
        tls.cert.display(),
        tls.key.display(),
        tls.crl.display(),
        acl.display()
    ));
    out
}

/// The test broker's config. Option names are those of Mosquitto 2.0's
/// `mosquitto.conf(5)`; `message_size_limit` is deprecated there in favour of
/// `max_packet_size`.
fn config_text(dir: &Path, port: u16) -> String {
    let dir = dir.display();
    format!(
        "# Written by the keliling-e2e harness for one test broker.\n\
         listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         # As root, mosquitto would otherwise switch to the `mosquitto` user,\n\
         # which cannot write this test-owned directory. Ignored when not root.\n\
         user root\n\
         persistence true\n\
         persistence_location {dir}/\n\
         autosave_interval 60\n\
         max_queued_messages {MAX_QUEUED_MESSAGES}\n\
         max_inflight_messages {MAX_INFLIGHT_MESSAGES}\n\
         max_packet_size {MAX_PACKET_SIZE}\n\
         set_tcp_nodelay true\n\
         log_dest file {dir}/{LOG_FILE}\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n"
    )
}

/// Why the port has a listener on `127.0.0.1`, or `None` if it is free.
///
/// Binds with `SO_REUSEADDR`, as mosquitto does, so connections of a killed
/// broker lingering in `TIME_WAIT` do not count, only a live listener does.
fn listener_on(port: u16) -> Option<std::io::Error> {
    let probe = || -> std::io::Result<()> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
        socket.listen(1).map(drop)
    };
    probe().err()
}

/// The policy of [`Mosquitto::require`], apart from the environment.
fn required(found: Option<PathBuf>, ci: bool) -> anyhow::Result<Option<PathBuf>> {
    match found {
        Some(bin) => Ok(Some(bin)),
        None if ci => bail!("mosquitto is required in CI (apt-get install -y mosquitto)"),
        None => Ok(None),
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("mosquitto"));
    on_path
        .chain(KNOWN_LOCATIONS.iter().map(PathBuf::from))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// The broker binary, or `None` after printing a skip line.
    fn broker_or_skip(test: &str) -> Option<PathBuf> {
        let found = Mosquitto::require().unwrap();
        if found.is_none() {
            println!("SKIP {test}: mosquitto not installed (apt-get install -y mosquitto)");
        }
        found
    }

    /// A minimal MQTT 3.1.1 CONNECT (keep-alive 60 s).
    fn connect_packet(client_id: &str, clean_session: bool) -> Vec<u8> {
        let id = client_id.as_bytes();
        let mut packet = vec![0x10, (10 + 2 + id.len()) as u8];
        packet.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4]);
        packet.push(if clean_session { 0x02 } else { 0x00 });
        packet.extend_from_slice(&[0, 60, 0, id.len() as u8]);
        packet.extend_from_slice(id);
        packet
    }

    async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
            .await
            .expect("broker did not answer")
            .unwrap();
        buf
    }

    /// Connects over raw TCP and returns the stream and the CONNACK.
    async fn mqtt_connect(port: u16, client_id: &str, clean: bool) -> (TcpStream, Vec<u8>) {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        stream
            .write_all(&connect_packet(client_id, clean))
            .await
            .unwrap();
        let connack = read_n(&mut stream, 4).await;
        (stream, connack)
    }

    #[test]
    fn config_uses_mosquitto_2_option_names() {
        let text = config_text(Path::new("/tmp/b"), 1883);
        for line in [
            "listener 1883 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            "persistence_location /tmp/b/",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            "max_packet_size 262144",
            "log_dest file /tmp/b/mosquitto.log",
            "autosave_interval 60",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?}");
        }
        assert!(!text.contains("message_size_limit"));
    }

    #[test]
    fn missing_broker_fails_only_in_ci() {
        let bin = PathBuf::from("/usr/sbin/mosquitto");
        assert_eq!(required(Some(bin.clone()), true).unwrap(), Some(bin));
        assert_eq!(required(None, false).unwrap(), None);
        let err = required(None, true).unwrap_err();
        assert!(err.to_string().contains("required in CI"), "{err}");
    }

    #[tokio::test]
    async fn starts_answers_mqtt_and_survives_kill_and_restart() {
        if broker_or_skip("starts_answers_mqtt_and_survives_kill_and_restart").is_none() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut broker = Mosquitto::start(dir.path()).await.unwrap();
        let port = broker.port();
        assert_eq!(broker.addr().port(), port);
        assert!(broker.is_running());
        assert!(broker.pid().is_some());

        let (mut stream, connack) = mqtt_connect(port, "e2e-probe", true).await;
        assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "CONNACK accepted");

        broker.kill().await.unwrap();
        assert!(!broker.is_running());
        let mut buf = [0u8; 16];
        let after_kill = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
        assert!(
            matches!(after_kill, Ok(Ok(0)) | Ok(Err(_))),
            "connection outlived the broker: {after_kill:?}"
        );
        assert!(TcpStream::connect(broker.addr()).await.is_err());

        broker.restart().await.unwrap();
        assert_eq!(broker.port(), port, "restart keeps the port");
        let (_stream, connack) = mqtt_connect(port, "e2e-probe", true).await;
        assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);

        // `notice` logs each client; both runs append to the same file.
        let log = broker.log();
        assert_eq!(
            log.matches("New client connected from 127.0.0.1").count(),
            2,
            "log: {log}"
        );
        assert!(log.contains(" as e2e-probe "), "log: {log}");
    }

    #[tokio::test]
    async fn queued_message_survives_clean_restart() {
        if broker_or_skip("queued_message_survives_clean_restart").is_none() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut broker = Mosquitto::start(dir.path()).await.unwrap();
        let port = broker.port();

        // A persistent session subscribes at QoS 1 to t/x, then goes away.
        let (mut sub, connack) = mqtt_connect(port, "e2e-sub", false).await;
        assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
        sub.write_all(&[0x82, 8, 0, 1, 0, 3, b't', b'/', b'x', 1])
            .await
            .unwrap();
        assert_eq!(
            read_n(&mut sub, 5).await,
            [0x90, 3, 0, 1, 1],
            "SUBACK QoS 1"
        );
        sub.write_all(&[0xE0, 0]).await.unwrap();
        drop(sub);

        // A QoS 1 message is queued for it.
        let (mut publisher, _) = mqtt_connect(port, "e2e-pub", true).await;
        publisher
            .write_all(&[0x32, 9, 0, 3, b't', b'/', b'x', 0, 7, b'h', b'i'])
            .await
            .unwrap();
        assert_eq!(read_n(&mut publisher, 4).await, [0x40, 2, 0, 7], "PUBACK");
        drop(publisher);

        broker.stop().await.unwrap();
        assert!(!broker.is_running());
        assert!(
            dir.path().join("mosquitto.db").exists(),
            "no database saved"
        );
        broker.restart().await.unwrap();

        let (mut sub, connack) = mqtt_connect(port, "e2e-sub", false).await;
        assert_eq!(connack, [0x20, 0x02, 0x01, 0x00], "session present");
        let publish = read_n(&mut sub, 11).await;
        assert_eq!(publish[0] & 0xF0, 0x30, "PUBLISH: {publish:?}");
        assert_eq!(&publish[2..7], &[0, 3, b't', b'/', b'x']);
        assert_eq!(&publish[9..], b"hi");
    }

    #[tokio::test]
    async fn restart_refuses_a_port_taken_meanwhile() {
        if broker_or_skip("restart_refuses_a_port_taken_meanwhile").is_none() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut broker = Mosquitto::start(dir.path()).await.unwrap();
        broker.kill().await.unwrap();
        // The killed broker's socket may take a moment to go, and a test running in
        // parallel may grab the freed port: retry, and give up quietly if it stays taken.
        let mut squatter = None;
        for _ in 0..50 {
            if let Ok(l) = std::net::TcpListener::bind(broker.addr()) {
                squatter = Some(l);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let Some(squatter) = squatter else {
            eprintln!(
                "port {} stayed taken by someone else; nothing to prove",
                broker.port()
            );
            return;
        };
        let err = broker.restart().await.unwrap_err();
        assert!(err.to_string().contains("already in use"), "{err:#}");
        assert!(!broker.is_running());
        drop(squatter);
        broker.restart().await.unwrap();
        assert!(broker.is_running());
    }

    #[tokio::test]
    async fn start_failure_reports_the_broker_output() {
        if broker_or_skip("start_failure_reports_the_broker_output").is_none() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut broker = Mosquitto::start(dir.path()).await.unwrap();
        broker.kill().await.unwrap();
        let mut conf = std::fs::read_to_string(&broker.conf).unwrap();
        conf.push_str("no_such_option 1\n");
        std::fs::write(&broker.conf, conf).unwrap();
        let err = broker.restart().await.unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("exited during start-up"), "{text}");
        assert!(text.contains("no_such_option"), "{text}");
    }
}
