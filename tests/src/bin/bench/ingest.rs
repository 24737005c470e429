//! HQ ingest under many buses at once: applications per second made durable at HQ.

use crate::brokers::{BenchBroker, Kind, Security};
use crate::bulk::Templates;
use crate::{copy_db, kib, process_cpu_secs, Plan, Report};
use anyhow::{bail, Context, Result};
use bus_node::sync::SyncMetrics;
use hq_sync::ingest::IngestMetrics;
use keliling_e2e::harness::{assert_exactly_once, init_bus_store, InProcessHq};
use keliling_e2e::mosquitto::Mosquitto;
use keliling_shared::BusId;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often HQ's committed count is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

struct Fleet {
    /// Each bus's id and its backlog store.
    buses: Vec<(BusId, PathBuf)>,
    per_bus: usize,
    templates: usize,
    photo_bytes: u64,
}

impl Fleet {
    fn total(&self) -> usize {
        self.buses.len() * self.per_bus
    }
}

fn build_fleet(buses: usize, per_bus: usize, dir: &Path) -> Result<Fleet> {
    let templates = Templates::capture(20.min(buses * per_bus).max(1), &dir.join("templates"))?;
    let mut out = Vec::with_capacity(buses);
    let mut photo_bytes = 0;
    for b in 0..buses {
        let bus = BusId::parse(&format!("bus-ingest-{:03}", b + 1))?;
        let db = dir.join(bus.as_str()).join("bus.sqlite");
        photo_bytes += templates.fill_store(&db, &bus, b * per_bus, per_bus)?;
        out.push((bus, db));
    }
    Ok(Fleet {
        buses: out,
        per_bus,
        templates: templates.items.len(),
        photo_bytes,
    })
}

struct IngestOutcome {
    /// (seconds since the buses started, applications complete at HQ).
    samples: Vec<(f64, u64)>,
    /// When HQ had every application committed.
    hq_secs: f64,
    /// When every bus had HQ's delivery ack for every application.
    e2e_secs: f64,
    cpu_secs: f64,
    /// Mosquitto's own CPU time in the same interval.
    broker_cpu_secs: Option<f64>,
    connect_secs: f64,
    hq_messages: u64,
    hq_chunks_duplicate: u64,
    hq_records_duplicate: u64,
    records_sent: u64,
    chunks_sent: u64,
}

impl IngestOutcome {
    /// Seconds at which HQ's count first reached `n`.
    fn time_of(&self, n: u64) -> f64 {
        self.samples
            .iter()
            .find(|(_, c)| *c >= n)
            .map_or(self.hq_secs, |(t, _)| *t)
    }

    /// The best rate over any window of about one second; `None` for a shorter run.
    fn peak_rate(&self) -> Option<f64> {
        let mut best: Option<f64> = None;
        for (i, (t0, c0)) in self.samples.iter().enumerate() {
            if let Some((t1, c1)) = self.samples[i..].iter().find(|(t, _)| *t - t0 >= 1.0) {
                let r = (c1 - c0) as f64 / (t1 - t0);
                best = Some(best.map_or(r, |b| b.max(r)));
            }
        }
        best
    }
}

/// HQ's committed applications, read as an auditor would (a separate read-only
/// connection; WAL readers do not block HQ's writer).
fn hq_complete(db: &rusqlite::Connection) -> Result<u64> {
    let n: i64 = db.query_row(
        "SELECT COUNT(*) FROM applications WHERE state = 'complete'",
        [],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

async fn ingest_once(
    fleet: &Fleet,
    kind: Kind,
    sync: &bus_node::config::SyncConfig,
    dir: &Path,
    timeout: Duration,
) -> Result<IngestOutcome> {
    let total = fleet.total() as u64;
    let broker = BenchBroker::start(kind, Security::MutualTls, &dir.join("broker")).await?;
    // Everything before the clock: stores copied, buses provisioned and unlocked.
    let mut buses = Vec::with_capacity(fleet.buses.len());
    tokio::task::block_in_place(|| -> Result<()> {
        for (bus, db) in &fleet.buses {
            let bus_dir = dir.join("buses").join(bus.as_str());
            let mut cfg = broker.bus_config(bus, bus_dir, broker.port())?;
            cfg.sync = sync.clone();
            copy_db(db, &cfg.db_path())?;
            let vault = init_bus_store(&cfg.db_path())?;
            buses.push((cfg, vault));
        }
        Ok(())
    })?;

    let hq_dir = dir.join("hq");
    let InProcessHq {
        metrics: hq_metrics,
        stop: stop_tx,
        task: hq,
    } = InProcessHq::spawn(broker.hq_config(&hq_dir)).await?;
    let stop_rx = stop_tx.subscribe();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hq_db = rusqlite::Connection::open_with_flags(
        hq_dir.join("hq.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .context("opening HQ's store to watch it")?;

    let metrics: Vec<Arc<SyncMetrics>> = buses
        .iter()
        .map(|_| Arc::new(SyncMetrics::default()))
        .collect();
    let cpu_before = process_cpu_secs();
    let broker_cpu_before = broker.child_cpu_secs();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(buses.len());
    for ((cfg, vault), m) in buses.into_iter().zip(&metrics) {
        tasks.push(tokio::spawn(bus_node::daemon::run(
            cfg,
            vault,
            m.clone(),
            stop_rx.clone(),
        )));
    }
    let sum = |f: fn(&SyncMetrics) -> &std::sync::atomic::AtomicU64| -> u64 {
        metrics.iter().map(|m| SyncMetrics::get(f(m))).sum()
    };
    let mut samples = vec![(0.0, 0)];
    let mut connect_secs = None;
    let mut hq_secs = None;
    let deadline = started + timeout;
    let e2e_secs = loop {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let t = started.elapsed().as_secs_f64();
        if connect_secs.is_none() && metrics.iter().all(|m| m.connected.load(Ordering::Relaxed)) {
            connect_secs = Some(t);
        }
        if hq_secs.is_none() {
            let c = tokio::task::block_in_place(|| hq_complete(&hq_db))?;
            samples.push((t, c));
            if c >= total {
                hq_secs = Some(t);
            }
        }
        if hq_secs.is_some() && sum(|m| &m.delivered) >= total {
            break t;
        }
        if let Some(i) = tasks.iter().position(|t| t.is_finished()) {
            bail!(
                "bus {} stopped its sync before its backlog was delivered",
                i + 1
            );
        }
        if hq.is_finished() {
            bail!("HQ ingest stopped before the backlog was delivered");
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {timeout:?}: HQ has {} of {total} complete, buses have {} delivered",
                samples.last().map_or(0, |s| s.1),
                sum(|m| &m.delivered)
            );
        }
    };
    let cpu_secs = process_cpu_secs() - cpu_before;
    let broker_cpu_secs = broker
        .child_cpu_secs()
        .zip(broker_cpu_before)
        .map(|(after, before)| after - before);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), hq).await;
    drop(hq_db);

    let dbs: Vec<PathBuf> = fleet
        .buses
        .iter()
        .map(|(bus, _)| dir.join("buses").join(bus.as_str()).join("bus.sqlite"))
        .collect();
    let db_refs: Vec<&Path> = dbs.iter().map(PathBuf::as_path).collect();
    tokio::task::block_in_place(|| assert_exactly_once(&db_refs, &hq_dir, fleet.total()))
        .context("exactly-once audit after the ingest run")?;
    Ok(IngestOutcome {
        hq_secs: hq_secs.unwrap_or(e2e_secs),
        samples,
        e2e_secs,
        cpu_secs,
        broker_cpu_secs,
        connect_secs: connect_secs.unwrap_or(f64::NAN),
        hq_messages: IngestMetrics::get(&hq_metrics.messages),
        hq_chunks_duplicate: IngestMetrics::get(&hq_metrics.chunks_duplicate),
        hq_records_duplicate: IngestMetrics::get(&hq_metrics.records_duplicate),
        records_sent: sum(|m| &m.records_sent),
        chunks_sent: sum(|m| &m.chunks_sent),
    })
}

pub(crate) async fn bench_ingest(plan: &Plan, scratch: &Path, report: &mut Report) -> Result<()> {
    let dir = scratch.join("ingest");
    let (buses, per_bus) = (plan.ingest_buses, plan.ingest_per_bus);
    let started = Instant::now();
    let fleet = tokio::task::block_in_place(|| build_fleet(buses, per_bus, &dir.join("fleet")))?;
    let total = fleet.total();
    eprintln!(
        "[ingest] {buses} bus stores of {per_bus} applications built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    report.add(
        "ingest",
        "fleet",
        format!("{buses} buses x {per_bus} applications"),
        format!(
            "{total} applications, each with its own ID photo (mean {}; copies of {} captured applications with a comment segment making each photo's bytes unique, saved with Store::save: see bulk.rs); every bus its own certificate and an in-process bus daemon (bus_node::daemon::run, default sync settings: record_window {}, chunk_window {}), all started at once against one HQ ingest worker (in process, batch {}) on the same machine",
            kib(fleet.photo_bytes as f64 / total.max(1) as f64),
            fleet.templates,
            plan.sync.record_window,
            plan.sync.chunk_window,
            hq_sync::HqConfig::for_dir(PathBuf::new(), 0).ingest.batch,
        ),
    );
    let timeout = Duration::from_secs(60) + Duration::from_millis(100) * total as u32;
    for kind in [Kind::Embedded, Kind::Mosquitto] {
        if kind == Kind::Mosquitto && Mosquitto::require()?.is_none() {
            report.add(
                "ingest",
                "Mosquitto run",
                "not installed",
                "apt-get install -y mosquitto mosquitto-clients to compare",
            );
            continue;
        }
        let run_dir = dir.join(match kind {
            Kind::Embedded => "embedded",
            Kind::Mosquitto => "mosquitto",
        });
        match ingest_once(&fleet, kind, &plan.sync, &run_dir, timeout).await {
            Ok(o) => {
                let n = total as u64;
                let (t10, t90) = (o.time_of(n / 10), o.time_of(n * 9 / 10));
                let steady = if t90 > t10 {
                    (n * 9 / 10 - n / 10) as f64 / (t90 - t10)
                } else {
                    f64::NAN
                };
                report.add(
                    "ingest",
                    format!("applications made durable per second, {buses} buses, {}, mTLS", kind.label()),
                    format!("{:.0} apps/s", n as f64 / o.hq_secs),
                    format!(
                        "{total} applications complete in HQ's SQLite (record + verified, fsynced photo) {:.2} s after {buses} bus daemons started at once (all connected after {:.2} s); steady rate between 10 % and 90 % committed: {steady:.0} apps/s; best 1-s window: {}; first commit at {:.2} s; every bus had HQ's delivery ack for all after {:.2} s; HQ's count read every {} ms from a read-only connection",
                        o.hq_secs,
                        o.connect_secs,
                        o.peak_rate().map_or_else(
                            || "n/a (the run was shorter)".to_owned(),
                            |r| format!("{r:.0} apps/s")
                        ),
                        o.time_of(1),
                        o.e2e_secs,
                        SAMPLE_EVERY.as_millis(),
                    ),
                );
                report.add(
                    "ingest",
                    format!("{}: CPU used", kind.label()),
                    format!(
                        "{:.1} CPU-s",
                        o.cpu_secs + o.broker_cpu_secs.unwrap_or(0.0)
                    ),
                    format!(
                        "this process (HQ ingest, {buses} bus daemons{}) used {:.1} CPU-s{}, over {:.1} s: {:.2} of the machine's {} cores busy; HQ took {} messages ({} records and {} chunks sent by the buses; HQ saw {} duplicate records, {} duplicate chunks); audited exactly-once",
                        if o.broker_cpu_secs.is_some() { "" } else { ", the broker and its TLS front" },
                        o.cpu_secs,
                        o.broker_cpu_secs.map_or_else(String::new, |b| format!(", Mosquitto {b:.1} CPU-s")),
                        o.e2e_secs,
                        (o.cpu_secs + o.broker_cpu_secs.unwrap_or(0.0)) / o.e2e_secs,
                        std::thread::available_parallelism().map_or(0, |n| n.get()),
                        o.hq_messages,
                        o.records_sent,
                        o.chunks_sent,
                        o.hq_records_duplicate,
                        o.hq_chunks_duplicate,
                    ),
                );
            }
            Err(e) => report.fail("ingest", &format!("ingest via {}", kind.label()), &e),
        }
    }
    Ok(())
}
