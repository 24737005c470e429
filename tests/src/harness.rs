//! The pieces an end-to-end test starts: a real broker (the embedded rumqttd, run as
//! `hq-sync broker`, or Debian's Mosquitto), the real `hq-sync` and `bus-node` binaries,
//! and checks that read their SQLite files as an auditor would.

use crate::mosquitto::Mosquitto;
use crate::ports::{free_port, wait_for_port};
use anyhow::{bail, Context, Result};
use bus_node::store::Store;
use hq_sync::photos::PhotoStore;
use hq_sync::store::HqStore;
use keliling_shared::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Embedded,
    Mosquitto,
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

pub enum TestBroker {
    Embedded { child: Child, port: u16 },
    Mosquitto(Mosquitto),
}

impl TestBroker {
    /// Starts a broker of `kind`; `Ok(None)` when Mosquitto is missing outside CI (the test
    /// then says it skipped). In CI a missing Mosquitto is an error.
    pub async fn start(kind: BrokerKind, dir: &Path) -> Result<Option<TestBroker>> {
        match kind {
            BrokerKind::Embedded => {
                let port = free_port()?;
                let log = std::fs::File::create(dir.join("broker.log"))?;
                let child = Command::new(binary("hq-sync")?)
                    .args(["broker", "--listen", &format!("127.0.0.1:{port}")])
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(log)
                    .kill_on_drop(true)
                    .spawn()?;
                wait_for_port(port, Duration::from_secs(20)).await?;
                Ok(Some(TestBroker::Embedded { child, port }))
            }
            BrokerKind::Mosquitto => {
                if Mosquitto::require()?.is_none() {
                    eprintln!("SKIPPED: mosquitto is not installed (apt-get install -y mosquitto)");
                    return Ok(None);
                }
                let d = dir.join("mosquitto");
                std::fs::create_dir_all(&d)?;
                Ok(Some(TestBroker::Mosquitto(Mosquitto::start(&d).await?)))
            }
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            TestBroker::Embedded { port, .. } => *port,
            TestBroker::Mosquitto(m) => m.port(),
        }
    }
}

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
}

pub fn hq_env(dir: &Path, broker_port: u16) -> Vec<(String, String)> {
    vec![
        ("HQ_SYNC__DATA_DIR".into(), dir.display().to_string()),
        ("HQ_SYNC__BROKER__PORT".into(), broker_port.to_string()),
    ]
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

/// HQ's fleet view of one bus: (online, last reported queue depth).
pub fn hq_bus(hq_dir: &Path, bus: &str) -> Result<Option<(bool, Option<u32>)>> {
    let p = hq_dir.join("hq.sqlite");
    if !p.exists() {
        return Ok(None);
    }
    Ok(HqStore::open(&p)?
        .fleet()?
        .into_iter()
        .find(|b| b.bus_id == bus)
        .map(|b| (b.online, b.queue_depth)))
}

pub fn hq_complete(hq_dir: &Path) -> Result<u64> {
    let p = hq_dir.join("hq.sqlite");
    if !p.exists() {
        return Ok(0);
    }
    Ok(HqStore::open(&p)?.counts()?.complete)
}

/// The core promise, checked as an auditor would: every application the bus saved is at
/// HQ exactly once, complete, with the same attachment hashes, every file there verifies,
/// and the bus knows HQ confirmed each one.
pub fn assert_exactly_once(bus_dbs: &[&Path], hq_dir: &Path, expected: usize) -> Result<()> {
    let mut bus_apps: BTreeMap<String, BTreeSet<Sha256>> = BTreeMap::new();
    for db in bus_dbs {
        let store = Store::open(db)?;
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
                .application(&s.id)?
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
    let hq = HqStore::open(&hq_dir.join("hq.sqlite"))?;
    let rows = hq.application_blobs()?;
    if rows.len() != expected {
        bail!("HQ holds {} applications, expected {expected}", rows.len());
    }
    let photos = PhotoStore::open(&hq_dir.join("photos"))?;
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
                .read_verified(sha)
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
