//! The pieces an end-to-end test starts: a real broker (the embedded rumqttd, run as
//! `hq-sync broker`, or Debian's Mosquitto), the real `hq-sync` and `bus-node` binaries,
//! and checks that read their SQLite files as an auditor would.

use crate::mosquitto::{Mosquitto, MosquittoTls};
use crate::ports::free_port;
use anyhow::{bail, Context, Result};
use bus_node::capture::{capture, CaptureInput, CaptureSettings};
use bus_node::store::Store;
use bus_node::BusConfig;
use hq_sync::ingest::{IngestError, IngestMetrics};
use hq_sync::photos::Blobs;
use hq_sync::pki::{BundleOptions, Pki};
use hq_sync::store::HqStore;
use hq_sync::HqConfig;
use keliling_shared::tls::ClientTlsFiles;
use keliling_shared::Sha256;
use keliling_shared::{Application, BusId, Catalogue};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Embedded,
    Mosquitto,
    /// Three nodes of NATS 2.10 (MQTT on JetStream) from `config/nats/keliling.conf`; HQ
    /// takes buses' messages from its work queue (`[nats]`).
    NatsCluster,
}

/// Path of a workspace binary next to the running test executable (`cargo test
/// --workspace` builds every member's binaries before running tests).
pub fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .context("test exe has no parent dir")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    if !p.exists() {
        bail!(
            "{} not found: build it first (cargo build --workspace)",
            p.display()
        );
    }
    Ok(p)
}

/// A broker under test, with the fleet PKI its clients use: every client connects with
/// TLS 1.3 and a certificate from that PKI, as in production.
pub struct TestBroker {
    pub kind: BrokerKind,
    server: Server,
    pki: Pki,
}

enum Server {
    Embedded {
        /// `None` while killed.
        child: Option<Child>,
        port: u16,
        log: PathBuf,
    },
    Mosquitto(Mosquitto),
    Nats(crate::nats::NatsCluster),
}

/// Who a raw test client connects as.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A provisioned bus's certificate.
    Bus(String),
    /// The first HQ worker's certificate (`hq-1`, made by `pki init`).
    Hq,
    /// Another HQ worker's certificate (`hq-2`, ...), provisioned on first use with
    /// [`TestBroker::provision_hq`] (which also gives it its Mosquitto ACL lines).
    HqWorker(String),
    /// TLS with the fleet CA trusted but no client certificate.
    NoCertificate,
    /// A client certificate from another CA (made in `dir`).
    ForeignCa(PathBuf),
    /// Plain TCP, no TLS at all.
    Plaintext,
}

impl Identity {
    /// The client id the brokers let this identity use: its certificate's name.
    pub fn client_id(&self) -> String {
        match self {
            Identity::Bus(b) => b.clone(),
            Identity::Hq => hq_sync::pki::FIRST_HQ.to_owned(),
            Identity::HqWorker(n) => n.clone(),
            Identity::NoCertificate => "no-certificate".into(),
            Identity::ForeignCa(_) => "bus-ntt-01".into(),
            Identity::Plaintext => "plaintext".into(),
        }
    }
}

impl TestBroker {
    /// Starts a broker of `kind` with a fresh fleet PKI in `dir/pki`; `Ok(None)` when
    /// Mosquitto is missing outside CI (the test then says it skipped). In CI a missing
    /// Mosquitto is an error.
    pub async fn start(kind: BrokerKind, dir: &Path) -> Result<Option<TestBroker>> {
        if kind == BrokerKind::Mosquitto && Mosquitto::require()?.is_none() {
            eprintln!("SKIPPED: mosquitto is not installed (apt-get install -y mosquitto)");
            return Ok(None);
        }
        let nats = match kind {
            BrokerKind::NatsCluster => match crate::nats::require()? {
                Some(bin) => Some(bin),
                None => return Ok(None),
            },
            _ => None,
        };
        let pki = Pki::init(&dir.join("pki"), &["localhost".into(), "127.0.0.1".into()])?;
        let server = match kind {
            BrokerKind::NatsCluster => {
                let bin = nats.context("nats-server")?;
                Server::Nats(crate::nats::NatsCluster::start(bin, dir, &pki, 3).await?)
            }
            BrokerKind::Embedded => {
                let port = free_port()?;
                let log = dir.join("broker.log");
                let child = spawn_embedded(pki.dir(), port, &log).await?;
                Server::Embedded {
                    child: Some(child),
                    port,
                    log,
                }
            }
            BrokerKind::Mosquitto => {
                let d = dir.join("mosquitto");
                std::fs::create_dir_all(&d)?;
                Server::Mosquitto(Mosquitto::start_with(&d, Some(&mosquitto_tls(&pki))).await?)
            }
        };
        Ok(Some(TestBroker { kind, server, pki }))
    }

    pub fn port(&self) -> u16 {
        match &self.server {
            Server::Embedded { port, .. } => *port,
            Server::Mosquitto(m) => m.port(),
            Server::Nats(c) => c.mqtt_ports()[0],
        }
    }

    /// The other nodes of a cluster (`[broker] more_hosts`): none for a single broker.
    pub fn more_hosts(&self) -> Vec<String> {
        match &self.server {
            Server::Nats(c) => c.mqtt_ports()[1..]
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn nats(&mut self) -> Option<&mut crate::nats::NatsCluster> {
        match &mut self.server {
            Server::Nats(c) => Some(c),
            _ => None,
        }
    }

    /// `kill -9` of the broker. The embedded one loses every session and queued message
    /// (it keeps nothing on disk, by design); Mosquitto keeps what its last autosave wrote.
    /// Of a cluster, one node: the next in turn (the others carry on).
    pub async fn kill(&mut self) -> Result<()> {
        match &mut self.server {
            Server::Nats(c) => c.kill_next().await.map(|_| ()),
            Server::Embedded { child, .. } => {
                if let Some(mut c) = child.take() {
                    c.start_kill()?;
                    c.wait().await?;
                }
                Ok(())
            }
            Server::Mosquitto(m) => m.kill().await,
        }
    }

    /// Starts a killed broker again on the same port (Mosquitto from its persistence
    /// file); a running one is killed first.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill().await?;
        let pki_dir = self.pki.dir().to_owned();
        match &mut self.server {
            Server::Embedded { child, port, log } => {
                *child = Some(spawn_embedded(&pki_dir, *port, log).await?);
                Ok(())
            }
            Server::Mosquitto(m) => m.restart().await,
            Server::Nats(c) => c.restart_all().await,
        }
    }

    /// Whether the broker process is alive.
    pub fn is_running(&mut self) -> bool {
        match &mut self.server {
            Server::Embedded { child, .. } => child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None))),
            Server::Mosquitto(m) => m.is_running(),
            Server::Nats(c) => (0..c.len()).all(|i| c.is_up(i)),
        }
    }

    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    pub fn mosquitto(&mut self) -> Option<&mut Mosquitto> {
        match &mut self.server {
            Server::Mosquitto(m) => Some(m),
            Server::Embedded { .. } | Server::Nats(_) => None,
        }
    }

    /// A bus's TLS files, provisioning the bus on first use.
    pub fn bus_tls(&self, bus_id: &str) -> Result<ClientTlsFiles> {
        let bus = BusId::parse(bus_id)?;
        let dir = self.pki.bundle_dir(&bus);
        if !dir.join("tls/bus.pem").exists() {
            self.pki
                .provision_bus(&bus, &local_bundle(self.port(), &dir))?;
            // A cluster learns of a new bus from its users file, as an operator reloads it.
            if let Server::Nats(c) = &self.server {
                c.reload_users(&self.pki)?;
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        Ok(ClientTlsFiles {
            ca: Some(dir.join("tls/ca.pem")),
            cert: Some(dir.join("tls/bus.pem")),
            key: Some(dir.join("tls/bus.key")),
        })
    }

    /// HQ's verifying keys (current, next), as every bundle pins them.
    pub fn hq_verifying_keys(&self) -> Result<keliling_shared::sign::VerifyingKeys> {
        Ok(keliling_shared::sign::VerifyingKeys::parse(
            &self.pki.signing().public_text()?,
        )?)
    }

    /// The HQ verifying keys pinned in a bus's bundle (provisioning the bus on first use).
    pub fn bus_hq_keys(&self, bus_id: &str) -> Result<PathBuf> {
        self.bus_tls(bus_id)?;
        Ok(self
            .pki
            .bundle_dir(&BusId::parse(bus_id)?)
            .join("hq-keys.pub"))
    }

    /// Makes HQ worker `name`'s certificate (if it has none) as `hq-sync pki provision-hq`
    /// does, and for Mosquitto re-writes the ACL from the registry (as `hq-sync pki acl`)
    /// and reloads it, as an operator adding a worker would.
    pub async fn provision_hq(&mut self, name: &str) -> Result<()> {
        if !self.pki.hq_cert(name).exists() {
            self.pki.provision_hq(name, false)?;
        }
        let acl = self
            .pki
            .mosquitto_acl(keliling_shared::topics::DEFAULT_PREFIX)?;
        if let Some(m) = self.mosquitto() {
            m.set_acl(&acl)?;
            // SIGHUP is handled asynchronously; give it a moment.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if let Server::Nats(c) = &self.server {
            c.reload_users(&self.pki)?;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(())
    }

    /// [`TestBroker::mqtt_options`] with the client id the identity is allowed.
    pub fn client_options(&self, who: &Identity) -> Result<rumqttc::MqttOptions> {
        self.mqtt_options(&who.client_id(), who)
    }

    /// `hq-sync run`'s environment for this broker.
    pub fn hq_env(&self, dir: &Path) -> Vec<(String, String)> {
        let mut env = hq_env(dir, self.port());
        env.push((
            "HQ_SYNC__PKI__DIR".into(),
            self.pki.dir().display().to_string(),
        ));
        if let Server::Nats(c) = &self.server {
            env.push((
                "HQ_SYNC__BROKER__MORE_HOSTS".into(),
                toml_list(&self.more_hosts()),
            ));
            env.push(("HQ_SYNC__NATS__SERVERS".into(), toml_list(&c.nats_urls())));
            // The test's queue acks go quickly to another worker after a kill.
            env.push(("HQ_SYNC__NATS__ACK_WAIT_SECS".into(), "10".into()));
        }
        env
    }

    /// `bus-node run`'s environment for this broker (the bus is provisioned if needed).
    pub fn bus_env(&self, bus_id: &str, dir: &Path) -> Result<Vec<(String, String)>> {
        self.bus_env_via(bus_id, dir, self.port())
    }

    /// Like [`TestBroker::bus_env`], dialing `port` (e.g. a [`crate::proxy::LinkProxy`]).
    pub fn bus_env_via(
        &self,
        bus_id: &str,
        dir: &Path,
        port: u16,
    ) -> Result<Vec<(String, String)>> {
        let tls = self.bus_tls(bus_id)?;
        let mut env = bus_env(bus_id, dir, port);
        if matches!(self.server, Server::Nats(_)) {
            env.push((
                "BUS_NODE__BROKER__MORE_HOSTS".into(),
                toml_list(&self.more_hosts()),
            ));
        }
        env.push((
            "BUS_NODE__TRUST__HQ_KEYS".into(),
            self.bus_hq_keys(bus_id)?.display().to_string(),
        ));
        for (k, v) in [("CA", &tls.ca), ("CERT", &tls.cert), ("KEY", &tls.key)] {
            if let Some(v) = v {
                env.push((
                    format!("BUS_NODE__BROKER__TLS__{k}"),
                    v.display().to_string(),
                ));
            }
        }
        Ok(env)
    }

    /// `hq-sync run` against this broker with its data in `hq_dir`, logging to `log`: the
    /// plain HQ most scenarios start (ones with extra settings use [`Daemon::spawn`]).
    pub async fn spawn_hq(&self, hq_dir: &Path, log: &Path) -> Result<Daemon> {
        Daemon::spawn("hq-sync", &["run"], &self.hq_env(hq_dir), log).await
    }

    /// `bus-node run` as `bus_id` against this broker, data in `dir`, logging to `log` (the
    /// bus is provisioned if needed).
    pub async fn spawn_bus(&self, bus_id: &str, dir: &Path, log: &Path) -> Result<Daemon> {
        Daemon::spawn("bus-node", &["run"], &self.bus_env(bus_id, dir)?, log).await
    }

    /// An in-process HQ config for this broker.
    pub fn hq_config(&self, dir: &Path) -> HqConfig {
        let mut cfg = HqConfig::for_dir(dir.to_owned(), self.port());
        cfg.pki.dir = self.pki.dir().to_owned();
        cfg.store.url = store_url(dir);
        if let Server::Nats(c) = &self.server {
            cfg.broker.more_hosts = self.more_hosts();
            cfg.nats.servers = c.nats_urls();
            cfg.nats.ack_wait_secs = 10;
        }
        cfg
    }

    /// An in-process bus config for this broker (the bus is provisioned if needed).
    pub fn bus_config(&self, bus_id: &str, dir: &Path) -> Result<BusConfig> {
        let mut cfg = BusConfig::for_bus(
            BusId::parse(bus_id)?,
            dir.to_owned(),
            "127.0.0.1",
            self.port(),
        );
        cfg.broker.tls = self.bus_tls(bus_id)?;
        cfg.trust.hq_keys = Some(self.bus_hq_keys(bus_id)?);
        Ok(cfg)
    }

    /// MQTT options for a raw test client connecting as `who`.
    pub fn mqtt_options(&self, client_id: &str, who: &Identity) -> Result<rumqttc::MqttOptions> {
        use rumqttc::{TlsConfiguration, Transport};
        let mut opts = rumqttc::MqttOptions::new(client_id, "127.0.0.1", self.port());
        opts.set_max_packet_size(512 * 1024, 512 * 1024);
        let ca = self.pki.ca_cert();
        let config = match who {
            Identity::Plaintext => return Ok(opts),
            Identity::Bus(id) => {
                let t = self.bus_tls(id)?;
                let (Some(c), Some(k)) = (t.cert, t.key) else {
                    bail!("no TLS files for {id}");
                };
                keliling_shared::tls::client_config(&ca, &c, &k)?
            }
            Identity::Hq => {
                let name = hq_sync::pki::FIRST_HQ;
                keliling_shared::tls::client_config(
                    &ca,
                    &self.pki.hq_cert(name),
                    &self.pki.hq_key(name),
                )?
            }
            Identity::HqWorker(name) => {
                if !self.pki.hq_cert(name).exists() {
                    bail!("HQ worker {name} has no certificate: TestBroker::provision_hq first");
                }
                keliling_shared::tls::client_config(
                    &ca,
                    &self.pki.hq_cert(name),
                    &self.pki.hq_key(name),
                )?
            }
            Identity::NoCertificate => std::sync::Arc::new(
                rustls::ClientConfig::builder_with_provider(keliling_shared::tls::provider())
                    .with_protocol_versions(&[&rustls::version::TLS13])?
                    .with_root_certificates(keliling_shared::tls::root_store(&ca)?)
                    .with_no_client_auth(),
            ),
            Identity::ForeignCa(dir) => {
                // A complete, valid PKI of someone else's: its bus certificate is well
                // formed and names a real bus, but no fleet CA signed it.
                let other = Pki::init(dir, &["127.0.0.1".into()])?;
                let bus = BusId::parse("bus-ntt-01")?;
                let b = other.provision_bus(&bus, &local_bundle(self.port(), dir))?;
                keliling_shared::tls::client_config(&ca, &b.cert, &b.key)?
            }
        };
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        Ok(opts)
    }
}

/// A TOML array of strings, as `config_env` takes a list from the environment.
fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A bus bundle for a broker on `127.0.0.1:port`, installed in `dir` (data in `dir/data`):
/// the one shape every test bus is provisioned with, for the fleet PKI and a foreign one.
fn local_bundle(port: u16, dir: &Path) -> BundleOptions {
    BundleOptions {
        broker_host: "127.0.0.1".into(),
        broker_port: port,
        install_dir: dir.to_owned(),
        data_dir: dir.join("data"),
        renew: false,
    }
}

/// Mosquitto's TLS set-up for the fleet PKI `pki`: its CA, the broker's certificate and
/// key, the CRL and the shipped ACL. The tests, the field runs and the benchmarks all run
/// Mosquitto as production does, so they share this one definition of "as production".
pub fn mosquitto_tls(pki: &Pki) -> MosquittoTls {
    MosquittoTls {
        ca: pki.ca_cert(),
        cert: pki.broker_cert(),
        key: pki.broker_key(),
        crl: pki.crl(),
        acl: SHIPPED_ACL.to_owned(),
    }
}

/// `hq-sync broker` on `127.0.0.1:port`, once it accepts connections. A restart may find
/// the port briefly held by the killed broker, so a broker that exits at start is retried.
async fn spawn_embedded(pki_dir: &Path, port: u16, log: &Path) -> Result<Child> {
    let mut attempt = 1;
    loop {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut child = Command::new(binary("hq-sync")?)
            .args(["broker", "--listen", &format!("127.0.0.1:{port}")])
            .env("HQ_SYNC__PKI__DIR", pki_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                if attempt >= 5 {
                    bail!(
                        "hq-sync broker exited at start ({status}); see {}",
                        log.display()
                    );
                }
                break;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(child);
            }
            if Instant::now() > deadline {
                bail!("hq-sync broker not listening on port {port} after 20 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The ACL file shipped in `config/`: the tests check the file operators deploy.
pub const SHIPPED_ACL: &str = include_str!("../../config/mosquitto.acl");

/// A real process (`hq-sync run` or `bus-node run`) configured by environment variables.
pub struct Daemon {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Daemon {
    pub async fn spawn(
        bin: &str,
        args: &[&str],
        env: &[(String, String)],
        log: &Path,
    ) -> Result<Daemon> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut cmd = Command::new(binary(bin)?);
        cmd.args(args)
            .env("RUST_LOG", "info,rumqttd=warn")
            .stdout(Stdio::null())
            .stderr(out)
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("spawning {bin}"))?;
        Ok(Daemon {
            child,
            name: bin.to_owned(),
            log: log.to_owned(),
        })
    }

    /// `kill -9`.
    pub async fn kill9(&mut self) -> Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// The exit status if the process has ended (by itself or killed), `None` while it runs.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits for the process to end by itself (e.g. an injected crash).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .with_context(|| format!("{} did not exit in {timeout:?}", self.name))?
            .map_err(Into::into)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the daemon's log holds `needle` (e.g. HQ's "subscribed" line).
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        let what = format!("{} logs {needle:?}", self.name);
        eventually(&what, timeout, || Ok(self.log().contains(needle)))
            .await
            .with_context(|| format!("{} log:\n{}", self.name, self.log()))
    }
}

pub fn hq_env(dir: &Path, broker_port: u16) -> Vec<(String, String)> {
    let mut env = vec![
        ("HQ_SYNC__DATA_DIR".into(), dir.display().to_string()),
        ("HQ_SYNC__BROKER__PORT".into(), broker_port.to_string()),
    ];
    if let Some(url) = store_url(dir) {
        env.push(("HQ_SYNC__STORE__URL".into(), url));
    }
    env
}

/// The environment that puts an `hq-sync` command on the store of the HQ in `hq_dir`
/// (nothing for SQLite in the data directory).
pub fn hq_store_env(hq_dir: &Path) -> Vec<(String, String)> {
    store_url(hq_dir)
        .map(|url| vec![("HQ_SYNC__STORE__URL".to_string(), url)])
        .unwrap_or_default()
}

/// Beside an HQ data directory, the PostgreSQL URL its store is at (see [`use_postgres`]).
const STORE_URL_FILE: &str = "store-url.test";

/// `KELILING_E2E_STORE=postgres`: every HQ this harness runs whose test did not choose a
/// store gets a fresh PostgreSQL database of its own, so the whole suite runs on
/// PostgreSQL (`.ci/run` makes that second pass).
pub const STORE_ENV: &str = "KELILING_E2E_STORE";

/// The store an HQ gets unless its test chose one.
pub fn default_store() -> StoreKind {
    match std::env::var(STORE_ENV).as_deref() {
        Ok("postgres") => StoreKind::Postgres,
        _ => StoreKind::Sqlite,
    }
}

fn store_url(hq_dir: &Path) -> Option<String> {
    static CHOOSING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let read = || {
        std::fs::read_to_string(hq_dir.join(STORE_URL_FILE))
            .ok()
            .map(|u| u.trim().to_string())
    };
    if let Some(url) = read() {
        return Some(url);
    }
    if default_store() != StoreKind::Postgres {
        return None;
    }
    let _one_at_a_time = CHOOSING.lock().unwrap_or_else(|p| p.into_inner());
    if read().is_none() {
        match use_postgres(hq_dir, "suite") {
            Ok(_) => {}
            Err(e) => panic!(
                "{STORE_ENV}=postgres: a database for {}: {e:#}",
                hq_dir.display()
            ),
        }
    }
    read()
}

/// Which store an end-to-end scenario's HQ runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

impl StoreKind {
    /// Puts the store of the HQ with data in `hq_dir` on this backend. `false`: skip the
    /// test (PostgreSQL without a server configured, outside CI).
    pub fn prepare(self, hq_dir: &Path, test: &str) -> Result<bool> {
        match self {
            StoreKind::Sqlite => Ok(true),
            StoreKind::Postgres => use_postgres(hq_dir, test),
        }
    }
}

/// Puts the HQ whose data is in `hq_dir` on a fresh PostgreSQL database (the server
/// `KELILING_TEST_PG_URL` names): every HQ this harness starts with that directory, and
/// [`hq_store`], use it. `false`: no server configured, the test is skipped (under
/// `CI=true` that panics instead: CI must test PostgreSQL).
pub fn use_postgres(hq_dir: &Path, test: &str) -> Result<bool> {
    let Some(admin) = hq_sync::testing::pg_admin_url(test) else {
        return Ok(false);
    };
    let hq_sync::store::StoreLocation::Postgres { url, .. } =
        hq_sync::testing::fresh_pg_database(&admin, test)?
    else {
        bail!("a fresh PostgreSQL database that is not on PostgreSQL");
    };
    // Over TLS when the test server offers it (`.ci/postgres` does): every HQ daemon,
    // console and check of the PostgreSQL runs then verifies the server as in production.
    let url = match std::env::var(hq_sync::testing::PG_CA_ENV) {
        Ok(ca) if !ca.trim().is_empty() => {
            format!("{url}?sslmode=verify-full&sslrootcert={}", ca.trim())
        }
        _ => url,
    };
    std::fs::create_dir_all(hq_dir)?;
    std::fs::write(hq_dir.join(STORE_URL_FILE), url)?;
    Ok(true)
}

/// Where the store of the HQ with data in `hq_dir` is: its SQLite file, or PostgreSQL
/// after [`use_postgres`].
pub fn hq_store_location(hq_dir: &Path) -> hq_sync::store::StoreLocation {
    match store_url(hq_dir) {
        Some(url) => hq_sync::store::StoreLocation::Postgres {
            url,
            password: None,
        },
        None => hq_sync::store::StoreLocation::Sqlite(hq_dir.join("hq.sqlite")),
    }
}

/// Opens the store of the HQ with data in `hq_dir`, as a test reads it.
pub fn hq_store(hq_dir: &Path) -> Result<HqStore> {
    Ok(HqStore::connect(&hq_store_location(hq_dir), "test")?)
}

/// Whether that HQ has made its store yet.
fn hq_store_exists(hq_dir: &Path) -> bool {
    store_url(hq_dir).is_some() || hq_dir.join("hq.sqlite").exists()
}

/// Test timings: re-send after 2 s, reconnect quickly.
pub fn bus_env(bus_id: &str, dir: &Path, broker_port: u16) -> Vec<(String, String)> {
    vec![
        ("BUS_NODE__BUS_ID".into(), bus_id.into()),
        ("BUS_NODE__DATA_DIR".into(), dir.display().to_string()),
        ("BUS_NODE__BROKER__PORT".into(), broker_port.to_string()),
        ("BUS_NODE__SYNC__RESEND_AFTER_MS".into(), "2000".into()),
        ("BUS_NODE__SYNC__BACKOFF_MIN_MS".into(), "100".into()),
        ("BUS_NODE__SYNC__BACKOFF_MAX_MS".into(), "1000".into()),
        ("BUS_NODE__SYNC__HEARTBEAT_SECS".into(), "2".into()),
        // A dead bus shows as offline (its last will) after 1.5 keep-alives.
        ("BUS_NODE__BROKER__KEEP_ALIVE_SECS".into(), "5".into()),
        // The station on a port of its own (several buses run on one machine).
        ("BUS_NODE__STATION__LISTEN".into(), "127.0.0.1:0".into()),
        // Unlocks the store `init_bus_store` set up (the env is for tests and automation).
        ("BUS_NODE_PASSPHRASE".into(), TEST_PASSPHRASE.into()),
    ]
}

/// Waits until `check` returns true, polling; fails with `what` after `timeout`.
pub async fn eventually(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn bus_delivered(db: &Path) -> Result<u64> {
    Ok(Store::open(db)?.status()?.delivered)
}

/// The passphrase of every test bus store; `bus_env` hands it to `bus-node run`.
pub const TEST_PASSPHRASE: &str = "kata sandi bus uji";

/// Sets up the bus store at `db` as `bus-node init` does (with cheap key derivation: tests
/// only), or unlocks it if that was done already. Call it before capturing into the store
/// or starting `bus-node run` on it.
pub fn init_bus_store(db: &Path) -> Result<std::sync::Arc<bus_node::UnlockedVault>> {
    let mut store = Store::open(db)?;
    let pass = TEST_PASSPHRASE.into();
    let vault = if store.is_initialised()? {
        store.unlock(&pass)?
    } else {
        store.init_vault(&pass, bus_node::KdfParams::INSECURE_FAST)?
    };
    Ok(std::sync::Arc::new(vault))
}

/// Capture settings of a test bus: 16 KiB chunks, so that one camera photo makes several
/// chunks and a sync has something to resume.
pub fn test_capture_settings(bus: &str) -> Result<CaptureSettings> {
    Ok(CaptureSettings {
        bus_id: BusId::parse(bus)?,
        chunk_size: 16 * 1024,
        photo_limits: Default::default(),
    })
}

/// Captures `input` into the bus store at `db`, setting the store up first if it is new
/// ([`init_bus_store`]), as the bus's capture screen would; returns the saved application.
/// Tests that need one particular citizen (an odd name, a scan) build `input` themselves.
pub fn capture_into(
    db: &Path,
    settings: &CaptureSettings,
    input: CaptureInput,
) -> Result<Application> {
    init_bus_store(db)?;
    let mut store = Store::open(db)?;
    Ok(capture(&mut store, &Catalogue::builtin(), settings, input)?.application)
}

/// Captures the sample licence renewals `range` (citizen `i` with a unique camera photo
/// of the fixture portrait, [`crate::sample::sim_renewal`]) into the bus store at `db`,
/// setting it up first if it is new. The portrait is decoded once for the whole range.
pub fn capture_renewals(
    db: &Path,
    settings: &CaptureSettings,
    range: std::ops::Range<usize>,
) -> Result<Vec<Application>> {
    let portrait = keliling_photo::fixtures::load_portrait()?;
    let catalogue = Catalogue::builtin();
    init_bus_store(db)?;
    let mut store = Store::open(db)?;
    let mut apps = Vec::with_capacity(range.len());
    for i in range {
        let photo = crate::sample::camera_photo(&portrait, i)?;
        let saved = capture(
            &mut store,
            &catalogue,
            settings,
            crate::sample::sim_renewal(i, photo),
        )
        .with_context(|| format!("capture {i}"))?;
        apps.push(saved.application);
    }
    Ok(apps)
}

/// Captures sample renewal `i` (see [`capture_renewals`]) into the bus store at `db`.
pub fn capture_renewal(db: &Path, settings: &CaptureSettings, i: usize) -> Result<Application> {
    capture_renewals(db, settings, i..i + 1)?
        .pop()
        .context("a capture returned no application")
}

/// HQ ingest (`hq_sync::ingest::run`) as a task of the test's own process, already
/// connected to its broker. Tests that need HQ's metrics, or that throw traffic at HQ
/// from raw clients, run it this way instead of as an `hq-sync run` process.
pub struct InProcessHq {
    pub metrics: Arc<IngestMetrics>,
    /// Sending `true` stops HQ and every bus daemon started with [`InProcessHq::stop_rx`].
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<Result<(), IngestError>>,
}

impl InProcessHq {
    /// Starts HQ ingest with `broker`'s config and its data in `hq_dir`, and waits (up to
    /// 20 s) until it is connected: messages sent before it subscribed would be lost.
    pub async fn start(broker: &TestBroker, hq_dir: &Path) -> Result<InProcessHq> {
        InProcessHq::spawn(broker.hq_config(hq_dir)).await
    }

    /// Like [`InProcessHq::start`], with any HQ config (the benchmarks' and field runs'
    /// brokers are not [`TestBroker`]s).
    pub async fn spawn(cfg: HqConfig) -> Result<InProcessHq> {
        let (stop, rx) = watch::channel(false);
        let metrics = Arc::new(IngestMetrics::default());
        let task = tokio::spawn(hq_sync::ingest::run(cfg, metrics.clone(), rx));
        let m = metrics.clone();
        eventually("HQ connected", Duration::from_secs(20), move || {
            Ok(m.connected.load(Ordering::Relaxed))
        })
        .await?;
        Ok(InProcessHq {
            metrics,
            stop,
            task,
        })
    }

    /// The stop signal, for in-process bus daemons that should end with HQ.
    pub fn stop_rx(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Signals stop and gives HQ 5 s to end.
    pub async fn shut_down(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Polls a raw test client's event loop in a task until aborted: rumqttc sends and
/// receives only while its event loop is polled, and the test body is busy publishing.
/// Every event goes to `on_event` (e.g. to count HQ's answers). An error (a refused or
/// dropped link) is logged with `label`, and polling resumes after 100 ms, which makes
/// rumqttc reconnect.
pub fn spawn_poller(
    label: &str,
    mut eventloop: rumqttc::EventLoop,
    mut on_event: impl FnMut(rumqttc::Event) + Send + 'static,
) -> JoinHandle<()> {
    let label = label.to_owned();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(event) => on_event(event),
                Err(e) => {
                    eprintln!("{label} link: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}

/// Why a finished task ended ("it returned", its error, or its panic), for the error of a
/// drain that waits on a bus or HQ task: it must say why the task stopped early, not only
/// that it did. Call it once the task `is_finished()`.
pub async fn why_ended<E: std::fmt::Display>(task: &mut JoinHandle<Result<(), E>>) -> String {
    match task.await {
        Ok(Ok(())) => "it returned".to_owned(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

/// HQ's fleet view of one bus: (online, last reported queue depth).
pub fn hq_bus(hq_dir: &Path, bus: &str) -> Result<Option<(bool, Option<u32>)>> {
    if !hq_store_exists(hq_dir) {
        return Ok(None);
    }
    Ok(hq_store(hq_dir)?
        .fleet()?
        .into_iter()
        .find(|b| b.bus_id == bus)
        .map(|b| (b.online, b.queue_depth)))
}

pub fn hq_complete(hq_dir: &Path) -> Result<u64> {
    if !hq_store_exists(hq_dir) {
        return Ok(0);
    }
    Ok(hq_store(hq_dir)?.counts()?.complete)
}

/// The core promise, checked as an auditor would: every application the bus saved is at
/// HQ exactly once, complete, with the same attachment hashes, every file there verifies,
/// and the bus knows HQ confirmed each one.
pub fn assert_exactly_once(bus_dbs: &[&Path], hq_dir: &Path, expected: usize) -> Result<()> {
    let mut bus_apps: BTreeMap<String, BTreeSet<Sha256>> = BTreeMap::new();
    for db in bus_dbs {
        let store = Store::open(db)?;
        let vault = store.unlock(&TEST_PASSPHRASE.into())?;
        let status = store.status()?;
        if status.waiting() != 0 || status.rejected != 0 {
            bail!(
                "bus {} still has {} waiting, {} rejected",
                db.display(),
                status.waiting(),
                status.rejected
            );
        }
        for s in store.recent(usize::MAX >> 1, false)? {
            let app = store
                .application(&s.id, &vault)?
                .context("summary without record")?;
            bus_apps.insert(
                s.id.to_string(),
                app.attachments.iter().map(|a| a.sha256).collect(),
            );
        }
    }
    if bus_apps.len() != expected {
        bail!(
            "buses hold {} applications, expected {expected}",
            bus_apps.len()
        );
    }
    let hq = hq_store(hq_dir)?;
    let rows = hq.application_blobs()?;
    if rows.len() != expected {
        bail!("HQ holds {} applications, expected {expected}", rows.len());
    }
    let photos = Blobs::open(&hq_dir.join("photos"), false)?;
    for (id, state, blobs) in rows {
        let on_bus = bus_apps
            .remove(&id.to_string())
            .with_context(|| format!("HQ has {id}, which no bus saved"))?;
        if state != "complete" {
            bail!("application {id} is {state} at HQ");
        }
        let at_hq: BTreeSet<Sha256> = blobs.into_iter().collect();
        if at_hq != on_bus {
            bail!("application {id}: attachment hashes differ between bus and HQ");
        }
        for sha in &at_hq {
            photos
                .read_verified(&hq, sha)
                .with_context(|| format!("blob {sha:?} of {id}"))?;
        }
    }
    let c = hq.counts()?;
    if c.quarantined != 0 {
        bail!(
            "HQ quarantined {} messages: {:?}",
            c.quarantined,
            hq.quarantined(5)?
        );
    }
    Ok(())
}
