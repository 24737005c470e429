//! The bus node's memory: resident size of the real `bus-node run` process, idle and with
//! a large backlog.

use crate::brokers::{BenchBroker, Kind, Security};
use crate::bulk::Templates;
use crate::{mib, Plan, Report};
use anyhow::{bail, Context, Result};
use hq_sync::ingest::IngestMetrics;
use keliling_e2e::harness::InProcessHq;
use keliling_e2e::ports::free_port;
use keliling_e2e::procstat::status_kib;
use keliling_shared::BusId;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How often /proc/<pid>/status is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

struct RssOutcome {
    /// At the end of the settling period.
    rss_kb: u64,
    anon_kb: u64,
    file_kb: u64,
    /// Highest VmRSS seen while sampling after the connection (or start).
    max_sampled_kb: u64,
    /// The kernel's peak for the whole process life (start-up included).
    hwm_kb: u64,
    threads: u64,
    connected_after: Option<f64>,
    settle: Duration,
}

/// Runs `bus-node run` with `env` until it has connected (when `expect_connect`), then for
/// `settle`, sampling its /proc status; then stops it.
async fn measure(
    bin: &Path,
    env: &[(String, String)],
    dir: &Path,
    expect_connect: bool,
    settle: Duration,
) -> Result<RssOutcome> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let log_path = dir.join("bus-node.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("run")
        // Not the repository's config/: only the environment configures this bus.
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let pid = child.id().context("bus-node has no pid")?;
    let status_path = PathBuf::from(format!("/proc/{pid}/status"));
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let started = Instant::now();
    let result = async {
        let mut connected_after = None;
        if expect_connect {
            loop {
                if read_log().contains("connected to broker") {
                    connected_after = Some(started.elapsed().as_secs_f64());
                    break;
                }
                if let Some(s) = child.try_wait()? {
                    bail!(
                        "bus-node exited ({s}) before connecting: {}",
                        tail(&read_log())
                    );
                }
                if started.elapsed() > Duration::from_secs(60) {
                    bail!(
                        "bus-node did not connect within 60 s: {}",
                        tail(&read_log())
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let until = Instant::now() + settle;
        let mut max_sampled_kb = 0;
        let mut last = String::new();
        while Instant::now() < until {
            if let Some(s) = child.try_wait()? {
                bail!(
                    "bus-node exited ({s}) while measured: {}",
                    tail(&read_log())
                );
            }
            last = std::fs::read_to_string(&status_path)
                .with_context(|| format!("reading {}", status_path.display()))?;
            max_sampled_kb = max_sampled_kb.max(status_kib(&last, "VmRSS").unwrap_or(0));
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
        let field = |k: &str| {
            status_kib(&last, k).with_context(|| format!("no {k} in {}", status_path.display()))
        };
        Ok(RssOutcome {
            rss_kb: field("VmRSS")?,
            anon_kb: field("RssAnon")?,
            file_kb: field("RssFile")?,
            hwm_kb: field("VmHWM")?,
            threads: last
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            max_sampled_kb,
            connected_after,
            settle,
        })
    }
    .await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    result
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" / ")
}

fn notes(o: &RssOutcome, what: &str) -> String {
    let when = match o.connected_after {
        Some(c) => format!(
            "{:.0} s after it connected ({c:.2} s after start)",
            o.settle.as_secs_f64()
        ),
        None => format!("{:.0} s after start", o.settle.as_secs_f64()),
    };
    format!(
        "{what}; VmRSS of the `bus-node run` process {when}: RssAnon {} + RssFile {} (+ shmem), {} threads; highest VmRSS sampled in that time {}; VmHWM (peak over the whole life, start-up included) {}",
        mib(o.anon_kb),
        mib(o.file_kb),
        o.threads,
        mib(o.max_sampled_kb),
        mib(o.hwm_kb),
    )
}

pub(crate) async fn bench_rss(plan: &Plan, scratch: &Path, report: &mut Report) -> Result<()> {
    let bin = keliling_e2e::harness::binary("bus-node").context(
        "the bus RSS benchmark runs the real bus-node binary: cargo build --release -p bus-node",
    )?;
    let dir = scratch.join("rss");
    let bus = BusId::parse(crate::BUS)?;
    let broker =
        BenchBroker::start(Kind::Embedded, Security::MutualTls, &dir.join("broker")).await?;

    // Idle: an empty (initialised) store, connected, HQ running.
    let idle_dir = dir.join("idle");
    let idle_db = idle_dir.join("bus.sqlite");
    tokio::task::block_in_place(|| keliling_e2e::harness::init_bus_store(&idle_db))?;
    let hq = InProcessHq::spawn(broker.hq_config(&dir.join("hq"))).await?;
    let env = broker.bus_env(&bus, &idle_dir, broker.port())?;
    match measure(&bin, &env, &idle_dir, true, plan.rss_settle).await {
        Ok(o) => report.add(
            "rss",
            "bus-node run, idle (empty store, connected, mTLS)",
            mib(o.rss_kb),
            notes(&o, "an initialised, empty store; connected to the embedded broker over TLS with its certificate; HQ ingest running; production sync settings (env only, no config file)"),
        ),
        Err(e) => report.fail("rss", "bus-node run, idle", &e),
    }
    hq.shut_down().await;

    // The backlog: built once, then the bus runs against a broker with HQ down, and offline.
    let n = plan.rss_backlog;
    let built = Instant::now();
    let backlog_dir = dir.join("backlog");
    let db = backlog_dir.join("bus.sqlite");
    let photo_bytes = tokio::task::block_in_place(|| -> Result<u64> {
        let templates = Templates::capture(20.min(n).max(1), &dir.join("templates"))?;
        templates.fill_store(&db, &bus, 0, n)
    })?;
    let db_size: u64 = ["bus.sqlite", "bus.sqlite-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(backlog_dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    let how = format!(
        "{n} queued applications ({} of sealed ID photos, {} on disk with the WAL), built in {:.0} s as copies of 20 captured applications, each with its own photo bytes (bulk.rs)",
        mib(photo_bytes / 1024),
        mib(db_size / 1024),
        built.elapsed().as_secs_f64()
    );
    eprintln!("[rss] {how}");
    let env = broker.bus_env(&bus, &backlog_dir, broker.port())?;
    match measure(&bin, &env, &backlog_dir, true, plan.rss_settle).await {
        Ok(o) => report.add(
            "rss",
            format!("bus-node run, {n}-application backlog, HQ down (broker up)"),
            mib(o.rss_kb),
            notes(&o, &format!("{how}; connected to the broker over TLS, no HQ: the bus publishes its record window ({} records) and waits for HQ's answers, which do not come (chunks go only for blobs HQ says it lacks)", plan.sync.record_window)),
        ),
        Err(e) => report.fail("rss", "bus-node run with a backlog, HQ down", &e),
    }
    // Nobody listens on this port: the bus retries with back-off.
    let dead_port = free_port()?;
    let env = broker.bus_env(&bus, &backlog_dir, dead_port)?;
    match measure(&bin, &env, &backlog_dir, false, plan.rss_settle).await {
        Ok(o) => report.add(
            "rss",
            format!("bus-node run, {n}-application backlog, offline (no broker)"),
            mib(o.rss_kb),
            notes(&o, "the same store; nothing listens at the broker's address, so the bus retries with back-off"),
        ),
        Err(e) => report.fail("rss", "bus-node run with a backlog, offline", &e),
    }
    // Last, as it changes the store: the same backlog draining to a running HQ.
    let hq = InProcessHq::spawn(broker.hq_config(&dir.join("hq-drain"))).await?;
    let env = broker.bus_env(&bus, &backlog_dir, broker.port())?;
    let result = measure(&bin, &env, &backlog_dir, true, plan.rss_settle).await;
    let delivered = IngestMetrics::get(&hq.metrics.delivered_acks);
    hq.shut_down().await;
    match result {
        Ok(o) => report.add(
            "rss",
            format!("bus-node run, {n}-application backlog, draining to HQ"),
            mib(o.rss_kb),
            notes(&o, &format!("the same store, HQ ingest running: the bus sends records and chunks (record_window {}, chunk_window {}) and applies HQ's answers; HQ confirmed {delivered} applications delivered in that time", plan.sync.record_window, plan.sync.chunk_window)),
        ),
        Err(e) => report.fail("rss", "bus-node run with a backlog, draining", &e),
    }
    Ok(())
}
