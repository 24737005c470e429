//! Field conditions on one machine, for `keliling-field` (`src/bin/field.rs`):
//!
//! - [`run_2g`]: one bus with a captured backlog behind a [`LinkProxy`] shaped like rural
//!   2G (rate, delay, a cut every so often), HQ and its broker in this process. It reports
//!   how long the backlog takes against the ideal (the bytes that must cross / the link
//!   rate), what was sent again after cuts, and the bytes on the wire per application.
//! - [`run_fleet`]: a load generator. A thousand buses (each its own SQLite store, vault,
//!   certificate, MQTT client id and TLS connection; `bus_node::daemon::run` tasks in this
//!   process) drain their backlogs into one HQ (`hq-sync run`, its own process) through
//!   one broker (`hq-sync broker` or Mosquitto, its own process). It reports the time, the
//!   CPU seconds and peak memory of HQ and of the broker, and checks that every
//!   application arrived exactly once.
//!
//! Both audit the result as an auditor would (bus stores, HQ's SQLite file, photo files).

use crate::harness::{binary, init_bus_store, mosquitto_tls, why_ended, BrokerKind};
use crate::mosquitto::Mosquitto;
use crate::ports::{free_port, wait_for_port};
pub use crate::procstat::{
    cpu_model, loadavg, machine_cpu, mem_total_kib, nofile_limits, open_fds, others_cores,
    proc_sample, MachineCpu, ProcSample,
};
use crate::proxy::{LinkProxy, Shape};
use crate::sample;
use anyhow::{anyhow, bail, Context, Result};
use bus_node::capture::capture;
use bus_node::store::Store;
use bus_node::sync::SyncMetrics;
use bus_node::{BusConfig, UnlockedVault};
use hq_sync::ingest::IngestMetrics;
use hq_sync::photos::PhotoStore;
use hq_sync::pki::{BundleOptions, Pki};
use hq_sync::HqConfig;
use keliling_shared::tls::ClientTlsFiles;
use keliling_shared::wire::{chunk_count, chunk_range, Chunk, Up, UpEnvelope};
use keliling_shared::{ApplicationId, BusId, Catalogue, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::watch;

// ---------------------------------------------------------------------------------------
// Reports

/// A markdown report: a title, a table of measures and free notes.
#[derive(Debug, Default)]
pub struct Report {
    pub title: String,
    pub context: Vec<String>,
    rows: Vec<[String; 3]>,
    pub notes: Vec<String>,
    /// What failed (also in the table); the binary exits non-zero when any did.
    pub failures: Vec<String>,
}

impl Report {
    pub fn new(title: impl Into<String>) -> Report {
        Report {
            title: title.into(),
            ..Report::default()
        }
    }

    /// One row: what, value, how it was measured. Also printed to stderr as it comes.
    pub fn row(
        &mut self,
        what: impl Into<String>,
        value: impl Into<String>,
        how: impl Into<String>,
    ) {
        let r = [what.into(), value.into(), how.into()];
        eprintln!("  {}: {}   ({})", r[0], r[1], r[2]);
        self.rows.push(r);
    }

    /// A measure that could not be taken: a FAILED row with the error chain.
    pub fn fail(&mut self, what: impl Into<String>, err: &anyhow::Error) {
        let what = what.into();
        let msg = format!("{err:#}");
        self.failures.push(format!("{what}: {msg}"));
        self.row(what, "FAILED", msg);
    }

    pub fn markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut out = format!("### {}\n\n", self.title);
        for c in &self.context {
            let _ = writeln!(out, "- {c}");
        }
        if !self.context.is_empty() {
            out.push('\n');
        }
        out.push_str("| Measure | Value | How |\n| --- | --- | --- |\n");
        for [a, b, c] in &self.rows {
            let _ = writeln!(out, "| {} | {} | {} |", cell(a), cell(b), cell(c));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }
}

pub fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

pub fn secs(s: f64) -> String {
    if s >= 120.0 {
        format!("{s:.0} s ({:.1} min)", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}

// ---------------------------------------------------------------------------------------
// The machine and processes, from /proc

/// One line about the machine: CPUs, model, memory.
pub fn machine_line() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = cpu_model().unwrap_or_else(|| "?".into());
    let mem = mem_total_kib().map_or("?".into(), |kib| {
        format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0)
    });
    format!("{cpus} CPUs ({model}), {mem} RAM")
}

// ---------------------------------------------------------------------------------------
// Backlogs

/// A camera JPEG (640 x 480 as stored, EXIF orientation 6, GPS) of citizen `i`, certainly
/// unique after the photo pipeline: `i` is drawn as 16 black or white squares across the
/// middle of the portrait, inside every crop (the portrait variant's own mark may fall
/// outside them).
pub fn unique_phone_photo(base: &image::RgbImage, i: usize) -> Result<Vec<u8>> {
    let mut img = sample::portrait_variant(base, i);
    let (w, h) = img.dimensions();
    for bit in 0..16u32 {
        let c = if (i >> bit) & 1 == 1 { 255 } else { 0 };
        for y in 440..452 {
            for x in 96 + bit * 20..108 + bit * 20 {
                if x < w && y < h {
                    img.put_pixel(x, y, image::Rgb([c, c, c]));
                }
            }
        }
    }
    Ok(keliling_photo::fixtures::camera_jpeg(
        &img, 640, 480, 6, true, 88,
    )?)
}

/// A KTP-el booking for citizen `i`: a record without photo or scan, a few hundred bytes.
pub fn ktp_booking(i: usize) -> bus_node::capture::CaptureInput {
    let (nik, dob, sex) = sample::nik(i);
    bus_node::capture::CaptureInput {
        operator: "Petugas Yohanes".into(),
        village: "Desa Oelnasi".into(),
        gps: Some((-10.17, 123.6)),
        service: "KTP_EL".into(),
        full_name: format!("Pemesan Nomor {i}"),
        nik,
        date_of_birth: dob,
        sex: sex.into(),
        address: "RT 01 RW 03, Kupang".into(),
        phone: None,
        fields: vec![
            ("preferred_date".into(), "2026-12-15".into()),
            ("office".into(), "Disdukcapil Kota Kupang".into()),
        ],
        photo: None,
        documents: vec![],
        ..Default::default()
    }
}

/// What one bus saved: each application with its attachment hashes, and its blobs.
#[derive(Debug, Clone, Default)]
pub struct Saved {
    pub apps: Vec<(ApplicationId, BTreeSet<Sha256>)>,
    /// Distinct blobs: hash, size.
    pub blobs: Vec<(Sha256, u64)>,
    /// Chunks the bus must send for them.
    pub chunks: u64,
}

/// Captures applications `first..first + n` (SIM renewals with unique phone photos, through
/// `capture()`, so through the photo pipeline) into the store at `cfg.db_path()`, which
/// must be set up already.
pub fn capture_backlog(
    cfg: &BusConfig,
    portrait: &image::RgbImage,
    first: usize,
    n: usize,
) -> Result<Saved> {
    let settings = cfg.capture_settings();
    let catalogue = Catalogue::builtin();
    let mut store = Store::open(&cfg.db_path())?;
    let mut saved = Saved::default();
    let mut seen = BTreeSet::new();
    for i in first..first + n {
        let photo = unique_phone_photo(portrait, i)?;
        let receipt = capture(
            &mut store,
            &catalogue,
            &settings,
            sample::sim_renewal(i, photo),
        )
        .with_context(|| format!("capturing citizen {i} on {}", cfg.bus_id))?;
        let app = receipt.application;
        for a in &app.attachments {
            if seen.insert(a.sha256) {
                saved.blobs.push((a.sha256, a.size));
                saved.chunks += u64::from(chunk_count(a.size, settings.chunk_size));
            }
        }
        saved
            .apps
            .push((app.id, app.attachments.iter().map(|a| a.sha256).collect()));
    }
    Ok(saved)
}

/// The payload the bus must publish for a backlog: its record and chunk envelopes, encoded
/// as the sync encodes them. Returns (record bytes, chunk bytes, largest chunk envelope).
pub fn payload_bytes(
    db: &Path,
    bus: &BusId,
    vault: &UnlockedVault,
    saved: &Saved,
    chunk_size: u32,
) -> Result<(u64, u64, usize)> {
    let store = Store::open(db)?;
    let mut records = 0u64;
    let mut chunks = 0u64;
    let mut largest = 0usize;
    for (id, _) in &saved.apps {
        let app = store
            .application(id, vault)?
            .with_context(|| format!("record {id} missing"))?;
        records += UpEnvelope::new(bus.clone(), Up::Record(Box::new(app)))
            .encode()?
            .len() as u64;
    }
    for (sha, size) in &saved.blobs {
        for index in 0..chunk_count(*size, chunk_size) {
            let data = store.read_chunk(sha, chunk_range(*size, chunk_size, index), vault)?;
            let len = UpEnvelope::new(
                bus.clone(),
                Up::Chunk(Chunk {
                    blob: *sha,
                    total_size: *size,
                    chunk_size,
                    index,
                    data,
                }),
            )
            .encode()?
            .len();
            largest = largest.max(len);
            chunks += len as u64;
        }
    }
    Ok((records, chunks, largest))
}

/// A consistent copy of a SQLite file, whatever its WAL holds.
pub fn copy_db(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if to.exists() {
        std::fs::remove_file(to).with_context(|| format!("removing {}", to.display()))?;
    }
    let conn =
        rusqlite::Connection::open(from).with_context(|| format!("opening {}", from.display()))?;
    let target = to
        .to_str()
        .with_context(|| format!("{} is not UTF-8", to.display()))?;
    conn.execute("VACUUM INTO ?1", [target])
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn bundle_options(pki: &Pki, bus: &BusId, data_dir: &Path) -> BundleOptions {
    BundleOptions {
        broker_host: "127.0.0.1".into(),
        broker_port: 8883,
        install_dir: pki.bundle_dir(bus),
        data_dir: data_dir.to_owned(),
        renew: false,
    }
}

/// A bus's config for the broker (or proxy) on `port`, with its bundle's TLS files.
fn bus_config(pki: &Pki, bus: &BusId, data_dir: &Path, port: u16) -> BusConfig {
    let mut cfg = BusConfig::for_bus(bus.clone(), data_dir.to_owned(), "127.0.0.1", port);
    let tls = pki.bundle_dir(bus).join("tls");
    cfg.broker.tls = ClientTlsFiles {
        ca: Some(tls.join("ca.pem")),
        cert: Some(tls.join("bus.pem")),
        key: Some(tls.join("bus.key")),
    };
    cfg.trust.hq_keys = Some(pki.bundle_dir(bus).join("hq-keys.pub"));
    cfg
}

fn broker_name(kind: BrokerKind) -> &'static str {
    match kind {
        BrokerKind::Embedded => "embedded (rumqttd)",
        BrokerKind::Mosquitto => "Mosquitto",
        BrokerKind::NatsCluster => "NATS cluster",
    }
}

// ---------------------------------------------------------------------------------------
// 2G

/// The link and the backlog of a 2G run.
#[derive(Debug, Clone)]
pub struct TwoGOptions {
    pub apps: usize,
    /// Bytes per second, each direction.
    pub rate: u64,
    /// Round trip added by the link (half each way).
    pub rtt: Duration,
    /// The link is cut at every multiple of this since the bus started ...
    pub cut_every: Duration,
    /// ... for this long. Zero: no cuts.
    pub cut_for: Duration,
    /// The bus's `sync.chunk_window` (its default when `None`).
    pub chunk_window: Option<usize>,
    pub broker: BrokerKind,
    /// First a run without shaping or cuts, for the bytes a clean drain puts on the wire.
    pub baseline: bool,
    /// While the backlog drains, an operator takes a new booking (a record without photo)
    /// this often: how long it waits behind the chunks already in flight.
    pub probe_every: Option<Duration>,
    pub timeout: Duration,
    pub dir: PathBuf,
}

/// What one drain through the proxy measured.
#[derive(Debug, Clone, Default)]
pub struct DrainRun {
    pub secs: f64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub cuts: u64,
    pub down_secs: f64,
    pub refused: u64,
    pub connects: u64,
    pub records_sent: u64,
    pub chunks_sent: u64,
    pub bytes_published: u64,
    pub hq_messages: u64,
    pub hq_records_new: u64,
    pub hq_records_duplicate: u64,
    pub hq_chunks_new: u64,
    pub hq_chunks_duplicate: u64,
    pub cpu_secs: f64,
    pub others_cores: f64,
    /// Seconds from start until 25, 50, 75 and 100 % of the backlog were delivered.
    pub quartiles: [f64; 4],
    /// Each probe booking's time from capture to delivered (HQ's ack applied), seconds.
    pub probe_latency: Vec<f64>,
    /// The bus's chunk window (`bus_node::pace`), sampled every 20 ms of the drain.
    pub window_samples: Vec<u64>,
}

enum Broker2g {
    /// In this process (no shutdown API: it lives until the process ends).
    Embedded(u16),
    Mosquitto(Box<Mosquitto>),
}

impl Broker2g {
    async fn start(kind: BrokerKind, pki: &Pki, dir: &Path) -> Result<Broker2g> {
        match kind {
            BrokerKind::Embedded => {
                let port = free_port()?;
                let hq = HqConfig {
                    pki: hq_sync::config::PkiConfig {
                        dir: pki.dir().to_owned(),
                    },
                    ..HqConfig::for_dir(dir.to_owned(), port)
                };
                let security = hq.embedded_security();
                tokio::task::spawn_blocking(move || {
                    hq_sync::broker::start(
                        ([127, 0, 0, 1], port).into(),
                        security,
                        hq_sync::broker::Exposure::LoopbackOnly,
                    )
                })
                .await
                .context("embedded broker start-up task")??;
                Ok(Broker2g::Embedded(port))
            }
            BrokerKind::Mosquitto => Ok(Broker2g::Mosquitto(Box::new(
                Mosquitto::start_with(&dir.join("mosquitto"), Some(&mosquitto_tls(pki))).await?,
            ))),
            BrokerKind::NatsCluster => bail!("the field runs use one broker, not a cluster"),
        }
    }

    fn port(&self) -> u16 {
        match self {
            Broker2g::Embedded(p) => *p,
            Broker2g::Mosquitto(m) => m.port(),
        }
    }
}

/// One drain of a copy of the backlog to a fresh HQ and broker, through a proxy with
/// `shape` and, when `cuts` is set, a cut at every `cut_every` for `cut_for`.
#[allow(clippy::too_many_arguments)]
async fn drain_through_proxy(
    label: &str,
    opts: &TwoGOptions,
    pki: &Pki,
    bus: &BusId,
    template_db: &Path,
    shape: Option<Shape>,
    field: bool,
    dir: &Path,
) -> Result<DrainRun> {
    let n = opts.apps as u64;
    let broker = Broker2g::start(opts.broker, pki, dir).await?;
    let hq_dir = dir.join("hq");
    let (stop_tx, stop_rx) = watch::channel(false);
    let hq_metrics = Arc::new(IngestMetrics::default());
    let mut hq_cfg = HqConfig::for_dir(hq_dir.clone(), broker.port());
    hq_cfg.pki.dir = pki.dir().to_owned();
    let hq = tokio::spawn(hq_sync::ingest::run(
        hq_cfg,
        hq_metrics.clone(),
        stop_rx.clone(),
    ));
    wait_until("HQ ingest to connect", Duration::from_secs(30), || {
        hq_metrics.connected.load(Ordering::Relaxed)
    })
    .await?;
    // Its subscriptions go out right after the CONNACK.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let proxy = Arc::new(LinkProxy::start(([127, 0, 0, 1], broker.port()).into()).await?);
    proxy.set_shape(shape);
    let bus_dir = dir.join("bus");
    let db = bus_dir.join("bus.sqlite");
    copy_db(template_db, &db)?;
    let vault = init_bus_store(&db)?;
    let mut cfg = bus_config(pki, bus, &bus_dir, proxy.port());
    if let Some(w) = opts.chunk_window {
        cfg.sync.chunk_window = w.max(1);
    }
    let metrics = Arc::new(SyncMetrics::default());
    let machine_before = machine_cpu();
    let cpu_before = proc_sample(None)?.cpu_secs;
    let started = Instant::now();
    let mut bus_task = tokio::spawn(bus_node::daemon::run(
        cfg,
        vault,
        metrics.clone(),
        stop_rx.clone(),
    ));
    let down_ms = Arc::new(AtomicU64::new(0));
    let road = if field && !opts.cut_for.is_zero() {
        let (proxy, down_ms, every, len) =
            (proxy.clone(), down_ms.clone(), opts.cut_every, opts.cut_for);
        Some(tokio::spawn(async move {
            let mut k = 1u32;
            loop {
                tokio::time::sleep_until((started + every * k).into()).await;
                proxy.cut();
                let t = Instant::now();
                tokio::time::sleep(len).await;
                proxy.restore();
                down_ms.fetch_add(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                k += 1;
            }
        }))
    } else {
        None
    };

    // New bookings while the backlog drains, through their own connection to the store as
    // the operator's `bus-node capture` would, until the backlog is through.
    let probes_started = Arc::new(AtomicU64::new(0));
    let backlog_done = Arc::new(AtomicBool::new(false));
    let probes = opts.probe_every.filter(|_| field).map(|every| {
        let (db, bus, count, done) = (
            db.clone(),
            bus.clone(),
            probes_started.clone(),
            backlog_done.clone(),
        );
        let first_citizen = opts.apps;
        tokio::spawn(async move {
            let mut k = 1u32;
            loop {
                tokio::time::sleep_until((started + every * k).into()).await;
                k += 1;
                // Counted before it exists, so the run cannot end before it is delivered;
                // and not taken once the backlog is through.
                let i = count.fetch_add(1, Ordering::SeqCst) as usize;
                if done.load(Ordering::SeqCst) {
                    count.fetch_sub(1, Ordering::SeqCst);
                    return Ok::<(), anyhow::Error>(());
                }
                let (db, bus) = (db.clone(), bus.clone());
                tokio::task::spawn_blocking(move || -> Result<()> {
                    let mut store = Store::open(&db)?;
                    let cfg = BusConfig::for_bus(bus, PathBuf::new(), "127.0.0.1", 0);
                    capture(
                        &mut store,
                        &Catalogue::builtin(),
                        &cfg.capture_settings(),
                        ktp_booking(first_citizen + i),
                    )?;
                    Ok(())
                })
                .await??;
            }
        })
    });

    let deadline = started + opts.timeout;
    let mut quartiles = [0.0f64; 4];
    let mut next_print = started + Duration::from_secs(30);
    let mut window_samples = Vec::new();
    loop {
        window_samples.push(SyncMetrics::get(&metrics.chunk_window));
        // Delivered probes count too, so the quartiles are of the backlog only nearly.
        let delivered = SyncMetrics::get(&metrics.delivered);
        for (q, slot) in quartiles.iter_mut().enumerate() {
            if *slot == 0.0 && delivered * 4 >= n * (q as u64 + 1) {
                *slot = started.elapsed().as_secs_f64();
            }
        }
        if delivered >= n {
            backlog_done.store(true, Ordering::SeqCst);
        }
        if delivered >= n + probes_started.load(Ordering::SeqCst) {
            break;
        }
        if probes.as_ref().is_some_and(|p| p.is_finished()) && !backlog_done.load(Ordering::SeqCst)
        {
            bail!("{label}: capturing the probe bookings failed");
        }
        if bus_task.is_finished() {
            let why = why_ended(&mut bus_task).await;
            bail!("{label}: the bus sync stopped before its backlog was delivered: {why}");
        }
        if hq.is_finished() {
            bail!("{label}: HQ ingest stopped before the backlog was delivered");
        }
        if Instant::now() > deadline {
            bail!(
                "{label}: timed out after {:?}: {delivered} of {n} delivered, {} B up the link, {} connects; bus sent {} records, {} chunks; HQ: {} new and {} duplicate records, {} new and {} duplicate chunks",
                opts.timeout,
                proxy.bytes_up(),
                SyncMetrics::get(&metrics.connects),
                SyncMetrics::get(&metrics.records_sent),
                SyncMetrics::get(&metrics.chunks_sent),
                IngestMetrics::get(&hq_metrics.records_new),
                IngestMetrics::get(&hq_metrics.records_duplicate),
                IngestMetrics::get(&hq_metrics.chunks_new),
                IngestMetrics::get(&hq_metrics.chunks_duplicate),
            );
        }
        if Instant::now() >= next_print {
            next_print += Duration::from_secs(30);
            eprintln!(
                "  [{label} {:>5.0} s] delivered {delivered}/{n}, {} up / {} down the link, {} connects, {} cuts; bus sent {} chunks; HQ got {} new + {} duplicate chunks, {} messages",
                started.elapsed().as_secs_f64(),
                kib(proxy.bytes_up() as f64),
                kib(proxy.bytes_down() as f64),
                SyncMetrics::get(&metrics.connects),
                proxy.cuts(),
                SyncMetrics::get(&metrics.chunks_sent),
                IngestMetrics::get(&hq_metrics.chunks_new),
                IngestMetrics::get(&hq_metrics.chunks_duplicate),
                IngestMetrics::get(&hq_metrics.messages),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_secs = proc_sample(None)?.cpu_secs - cpu_before;
    let others = others_cores(machine_before, machine_cpu(), cpu_secs, secs);
    if let Some(r) = road {
        r.abort();
    }
    backlog_done.store(true, Ordering::SeqCst);
    if let Some(p) = probes {
        p.abort();
    }
    let probe_count = probes_started.load(Ordering::SeqCst) as usize;
    let probe_latency = tokio::task::block_in_place(|| -> Result<Vec<f64>> {
        let store = Store::open(&db)?;
        Ok(store
            .recent(usize::MAX >> 1, false)?
            .into_iter()
            .filter(|a| a.service == "KTP_EL")
            .filter_map(|a| Some((a.delivered_at?.0 - a.captured_at.0) as f64 / 1000.0))
            .collect())
    })?;
    let run = DrainRun {
        secs,
        bytes_up: proxy.bytes_up(),
        bytes_down: proxy.bytes_down(),
        cuts: proxy.cuts(),
        down_secs: down_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        refused: proxy.connections_refused(),
        connects: SyncMetrics::get(&metrics.connects),
        records_sent: SyncMetrics::get(&metrics.records_sent),
        chunks_sent: SyncMetrics::get(&metrics.chunks_sent),
        bytes_published: SyncMetrics::get(&metrics.bytes_published),
        hq_messages: IngestMetrics::get(&hq_metrics.messages),
        hq_records_new: IngestMetrics::get(&hq_metrics.records_new),
        hq_records_duplicate: IngestMetrics::get(&hq_metrics.records_duplicate),
        hq_chunks_new: IngestMetrics::get(&hq_metrics.chunks_new),
        hq_chunks_duplicate: IngestMetrics::get(&hq_metrics.chunks_duplicate),
        cpu_secs,
        others_cores: others,
        quartiles,
        probe_latency,
        window_samples,
    };
    proxy.restore();
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), bus_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), hq).await;
    drop(proxy);
    drop(broker);
    tokio::task::block_in_place(|| {
        crate::harness::assert_exactly_once(&[&db], &hq_dir, opts.apps + probe_count)
    })
    .with_context(|| format!("{label}: exactly-once audit"))?;
    Ok(run)
}

/// The 2G run: see the module docs. Returns the report.
pub async fn run_2g(opts: &TwoGOptions) -> Result<Report> {
    let mut report = Report::new(format!(
        "Rural 2G: {} applications over {} kbit/s, {} ms RTT, {}",
        opts.apps,
        opts.rate * 8 / 1000,
        opts.rtt.as_millis(),
        if opts.cut_for.is_zero() {
            "no cuts".to_owned()
        } else {
            format!(
                "a {} s cut every {} s",
                opts.cut_for.as_secs_f64(),
                opts.cut_every.as_secs_f64()
            )
        }
    ));
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("creating {}", opts.dir.display()))?;
    let pki = Pki::init(
        &opts.dir.join("pki"),
        &["localhost".into(), "127.0.0.1".into()],
    )?;
    let bus = BusId::parse("bus-ntt-2g")?;
    let template = opts.dir.join("backlog");
    pki.provision_bus(&bus, &bundle_options(&pki, &bus, &template))?;

    // The backlog, captured before the link comes up.
    let t = Instant::now();
    let cfg = bus_config(&pki, &bus, &template, 0);
    let vault = init_bus_store(&cfg.db_path())?;
    let portrait = keliling_photo::fixtures::load_portrait()?;
    let chunk_size = cfg.sync.chunk_bytes;
    let saved = tokio::task::block_in_place(|| capture_backlog(&cfg, &portrait, 0, opts.apps))?;
    let (record_bytes, chunk_bytes, largest_chunk) = tokio::task::block_in_place(|| {
        payload_bytes(&cfg.db_path(), &bus, &vault, &saved, chunk_size)
    })?;
    let blob_bytes: u64 = saved.blobs.iter().map(|(_, s)| s).sum();
    eprintln!(
        "[2g] backlog of {} captured in {:.1} s",
        opts.apps,
        t.elapsed().as_secs_f64()
    );
    let payload = record_bytes + chunk_bytes;
    let n = opts.apps as f64;
    let sync = {
        let mut s = cfg.sync.clone();
        if let Some(w) = opts.chunk_window {
            s.chunk_window = w.max(1);
        }
        s
    };
    let rate = opts.rate as f64;
    report.context = vec![
        format!("Machine: {}; load average at start {}", machine_line(), loadavg()),
        format!(
            "Backlog: {} SIM renewals captured through `capture()` before the link comes up, each with its own phone photo (640x480 camera JPEG through the photo pipeline): {} distinct photos, mean {}; {} chunks of at most {} B (largest chunk envelope {} B)",
            opts.apps,
            saved.blobs.len(),
            kib(blob_bytes as f64 / saved.blobs.len().max(1) as f64),
            saved.chunks,
            chunk_size,
            largest_chunk
        ),
        format!(
            "Link: `LinkProxy` between the bus and the broker, {} B/s ({} kbit/s) each way, {} ms added per round trip ({} ms each way); {}. HQ reaches the broker directly.",
            opts.rate,
            opts.rate * 8 / 1000,
            opts.rtt.as_millis(),
            opts.rtt.as_millis() / 2,
            if opts.cut_for.is_zero() {
                "never cut".to_owned()
            } else {
                format!(
                    "cut (connections reset, new ones refused) at every {} s mark since the bus started, for {} s each, so up {:.0} % of the time",
                    opts.cut_every.as_secs_f64(),
                    opts.cut_for.as_secs_f64(),
                    100.0 * (1.0 - opts.cut_for.as_secs_f64() / opts.cut_every.as_secs_f64())
                )
            }
        ),
        format!(
            "Bus: `bus_node::daemon::run` in this process with the default sync settings{}: record_window {}, chunk_window {} at most ({} in flight = {:.1} s of link time; the pace keeps fewer when chunks queue more than chunk_queue_ms {} behind others; the link's bandwidth-delay product is {} B), resend after {} ms, back-off {}..{} ms, keep-alive {} s; TLS 1.3 with its fleet certificate",
            if opts.chunk_window.is_some() { " except the chunk window" } else { "" },
            sync.record_window,
            sync.chunk_window,
            kib((sync.chunk_window as u64 * u64::from(chunk_size)) as f64),
            (sync.chunk_window as u64 * u64::from(chunk_size)) as f64 / rate,
            sync.chunk_queue_ms,
            (rate * opts.rtt.as_secs_f64()) as u64,
            sync.resend_after_ms,
            sync.backoff_min_ms,
            sync.backoff_max_ms,
            cfg.broker.keep_alive_secs
        ),
        format!(
            "HQ: `hq_sync::ingest::run` in this process; broker: {}; mutual TLS with the fleet PKI",
            match opts.broker {
                BrokerKind::Embedded => "the embedded rumqttd with its TLS front, in this process",
                BrokerKind::Mosquitto => "Mosquitto with the harness's config (the shipped ACL, CRL, persistence), its own process",
                BrokerKind::NatsCluster => "a NATS cluster",
            }
        ),
    ];

    let baseline = if opts.baseline {
        eprintln!("[2g] clean run (no shaping, no cuts) for the bytes a drain puts on the wire");
        let r = drain_through_proxy(
            "clean",
            opts,
            &pki,
            &bus,
            &cfg.db_path(),
            None,
            false,
            &opts.dir.join("clean"),
        )
        .await?;
        eprintln!(
            "[2g] clean: {:.1} s, {} up, {} down",
            r.secs,
            kib(r.bytes_up as f64),
            kib(r.bytes_down as f64)
        );
        Some(r)
    } else {
        None
    };

    eprintln!(
        "[2g] the 2G run: at least {:.0} s by physics",
        payload as f64 / rate
    );
    let shape = Shape {
        rate_bytes_per_sec: opts.rate,
        latency: opts.rtt,
    };
    let r = match drain_through_proxy(
        "2g",
        opts,
        &pki,
        &bus,
        &cfg.db_path(),
        Some(shape),
        true,
        &opts.dir.join("shaped"),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            report.row(
                "Ideal time: payload / rate",
                secs(payload as f64 / rate),
                format!(
                    "{payload} B of record and chunk envelopes / {} B/s",
                    opts.rate
                ),
            );
            if let Some(b) = &baseline {
                report.row(
                    "Ideal time: clean-run TCP bytes up / rate",
                    secs(b.bytes_up as f64 / rate),
                    format!("{} B up in a run without shaping or cuts", b.bytes_up),
                );
            }
            report.fail("2G drain", &e);
            return Ok(report);
        }
    };

    // Time.
    let ideal_payload = payload as f64 / rate;
    report.row(
        "Total time, backlog to HQ (all delivered, acks back on the bus)",
        secs(r.secs),
        format!(
            "25/50/75 % delivered after {:.0} / {:.0} / {:.0} s",
            r.quartiles[0], r.quartiles[1], r.quartiles[2]
        ),
    );
    report.row(
        "Ideal time: payload / rate",
        secs(ideal_payload),
        format!(
            "payload = the record and chunk envelopes the bus must publish ({} records + {} chunks = {} B, {} per application) / {} B/s; ratio measured / ideal = {:.2}",
            opts.apps,
            saved.chunks,
            payload,
            kib(payload as f64 / n),
            opts.rate,
            r.secs / ideal_payload
        ),
    );
    let up_fraction = if r.secs > 0.0 {
        1.0 - r.down_secs / r.secs
    } else {
        1.0
    };
    if let Some(b) = &baseline {
        let ideal_wire = b.bytes_up as f64 / rate;
        report.row(
            "Ideal time: clean-run TCP bytes up / rate",
            secs(ideal_wire),
            format!(
                "TCP bytes bus to broker counted by the proxy in a run without shaping or cuts ({} B: payload + MQTT framing + TLS records + one TLS/MQTT connect + PUBACKs to HQ's answers + heartbeats); ratio measured / ideal = {:.2}",
                b.bytes_up,
                r.secs / ideal_wire
            ),
        );
        report.row(
            "Ideal time with the cuts: the above / fraction of time the link was up",
            secs(ideal_wire / up_fraction),
            format!(
                "link up {:.1} % of the run ({} cuts, {:.0} s down in all); ratio measured / ideal = {:.2}",
                100.0 * up_fraction,
                r.cuts,
                r.down_secs,
                r.secs * up_fraction / ideal_wire
            ),
        );
    }
    report.row(
        "Link utilization while up (bytes up)",
        format!(
            "{:.0} %",
            100.0 * r.bytes_up as f64 / (rate * (r.secs - r.down_secs).max(1e-9))
        ),
        format!(
            "{} B up / ({} B/s x {:.0} s up)",
            r.bytes_up,
            opts.rate,
            r.secs - r.down_secs
        ),
    );

    // Cuts and what they cost.
    report.row(
        "Cuts survived / reconnects",
        format!("{} cuts, {} connects", r.cuts, r.connects),
        format!(
            "{} connection attempts refused while the link was down (back-off with jitter)",
            r.refused
        ),
    );
    let probes = r.probe_latency.len() as u64;
    let rec_resent = r.records_sent.saturating_sub(opts.apps as u64 + probes);
    let chunk_resent = r.chunks_sent.saturating_sub(saved.chunks);
    report.row(
        "Sent again by the bus's sync (pump)",
        format!("{rec_resent} records, {chunk_resent} chunks"),
        format!(
            "SyncMetrics: {} records and {} chunks published for a backlog of {} + {} and {} bookings; payload published {} B = {:.1} % over the backlog's {} B (bookings, queries and heartbeats included)",
            r.records_sent,
            r.chunks_sent,
            opts.apps,
            saved.chunks,
            probes,
            r.bytes_published,
            100.0 * (r.bytes_published as f64 / payload as f64 - 1.0),
            payload
        ),
    );
    let mean_chunk = chunk_bytes as f64 / saved.chunks.max(1) as f64;
    report.row(
        "Arrived at HQ twice",
        format!(
            "{} records, {} chunks (about {})",
            r.hq_records_duplicate,
            r.hq_chunks_duplicate,
            kib(r.hq_chunks_duplicate as f64 * mean_chunk)
        ),
        format!(
            "IngestMetrics: {} new records, {} new chunks, {} messages in all; a duplicate chunk crossed the link twice (re-sent by the pump or by rumqttc after a reconnect, before its PUBACK or HQ's progress came back)",
            r.hq_records_new, r.hq_chunks_new, r.hq_messages
        ),
    );
    if let Some(b) = &baseline {
        let extra = r.bytes_up as i64 - b.bytes_up as i64;
        report.row(
            "Extra TCP bytes up, 2G run over the clean run",
            format!(
                "{} ({:.1} %)",
                kib(extra as f64),
                100.0 * extra as f64 / b.bytes_up as f64
            ),
            format!(
                "proxy counters: {} B vs {} B; what the cuts cost on the wire: partial and duplicated chunks, {} more TLS+MQTT connects, queries after each reconnect, more heartbeats over a longer run",
                r.bytes_up,
                b.bytes_up,
                r.connects.saturating_sub(b.connects)
            ),
        );
    }

    // Bytes per application.
    report.row(
        "TCP bytes on the wire per application, up (bus to broker)",
        kib(r.bytes_up as f64 / n),
        format!(
            "proxy count / {}; {:.1} % over the payload{}",
            opts.apps,
            100.0 * (r.bytes_up as f64 / payload as f64 - 1.0),
            baseline.as_ref().map_or(String::new(), |b| format!(
                "; clean run: {} ({:.1} % over the payload)",
                kib(b.bytes_up as f64 / n),
                100.0 * (b.bytes_up as f64 / payload as f64 - 1.0)
            ))
        ),
    );
    report.row(
        "TCP bytes on the wire per application, down (broker to bus)",
        kib(r.bytes_down as f64 / n),
        format!(
            "HQ's answers, PUBACKs, TLS{}",
            baseline.as_ref().map_or(String::new(), |b| format!(
                "; clean run: {}",
                kib(b.bytes_down as f64 / n)
            ))
        ),
    );
    if !r.probe_latency.is_empty() {
        let mut l = r.probe_latency.clone();
        l.sort_by(f64::total_cmp);
        report.row(
            "A booking taken while the backlog drains: capture to HQ's ack on the bus",
            format!(
                "median {:.1} s, max {:.1} s",
                l[l.len() / 2],
                l[l.len() - 1]
            ),
            format!(
                "{} KTP-el bookings (a record of a few hundred bytes, no photo), one every {:.0} s while the backlog drained; records go before chunks, but behind the chunks already in flight (the chunk window, see its row) and any cut; all: {}",
                l.len(),
                opts.probe_every.map_or(0.0, |d| d.as_secs_f64()),
                l.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    if !r.window_samples.is_empty() {
        let mut w = r.window_samples.clone();
        w.sort_unstable();
        let at = |q: f64| w[((w.len() - 1) as f64 * q) as usize];
        let mean = w.iter().sum::<u64>() as f64 / w.len() as f64;
        report.row(
            "Chunk window kept by the pace (chunks in flight allowed)",
            format!(
                "median {}, mean {:.1} ({:.1} s of link time)",
                at(0.5),
                mean,
                mean * f64::from(chunk_size) / rate
            ),
            format!(
                "`bus_node::pace` sampled every 20 ms of the drain: p10 {}, p90 {}, max {} (configured at most {}); grows while HQ's confirmations come back without queueing, shrinks when chunks queue over {} ms, halves when chunks go unanswered",
                at(0.1),
                at(0.9),
                w[w.len() - 1],
                sync.chunk_window,
                sync.chunk_queue_ms
            ),
        );
    }
    report.row(
        "Exactly once",
        "yes",
        format!(
            "assert_exactly_once: all {} (+ {} bookings) at HQ once, complete, same photo hashes, every file verified, nothing quarantined; nothing waiting or rejected on the bus",
            opts.apps,
            r.probe_latency.len()
        ),
    );
    report.row(
        "CPU of this process during the 2G run / the rest of the machine",
        format!(
            "{:.1} CPU-s ({:.3} cores) / {:.2} cores",
            r.cpu_secs,
            r.cpu_secs / r.secs,
            r.others_cores
        ),
        "bus, HQ and (embedded) broker share this process; other processes from /proc/stat minus ours",
    );
    if let Some(b) = &baseline {
        report.notes.push(format!(
            "The clean run (same backlog, same proxy, no shaping or cuts) took {:.1} s with {} connect(s), {} re-sent records and {} re-sent chunks.",
            b.secs,
            b.connects,
            b.records_sent.saturating_sub(opts.apps as u64),
            b.chunks_sent.saturating_sub(saved.chunks)
        ));
    }
    report
        .notes
        .push(format!("Load average at the end: {}.", loadavg()));
    Ok(report)
}

// ---------------------------------------------------------------------------------------
// Fleet

#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub buses: usize,
    pub apps_per_bus: usize,
    pub brokers: Vec<BrokerKind>,
    pub timeout: Duration,
    /// A run that delivers nothing for this long has failed.
    pub stall: Duration,
    pub dir: PathBuf,
    /// Threads capturing the backlogs (the photo pipeline is the setup's cost).
    pub setup_threads: usize,
}

/// One bus of the fleet.
struct FleetBus {
    id: BusId,
    template_db: PathBuf,
    saved: Saved,
}

/// Provisions and captures the fleet once; each broker run drains copies.
fn setup_fleet(opts: &FleetOptions, pki: &Pki) -> Result<Vec<FleetBus>> {
    let t = Instant::now();
    let ids: Vec<BusId> = (1..=opts.buses)
        .map(|i| BusId::parse(&format!("bus-f{i:04}")))
        .collect::<Result<_, _>>()?;
    for id in &ids {
        let data = opts.dir.join("template").join(id.as_str());
        pki.provision_bus(id, &bundle_options(pki, id, &data))
            .with_context(|| format!("provisioning {id}"))?;
    }
    eprintln!(
        "[fleet] {} bus certificates issued in {:.1} s",
        ids.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let portrait = keliling_photo::fixtures::load_portrait()?;
    let threads = opts.setup_threads.max(1);
    let per = ids.len().div_ceil(threads);
    let apps = opts.apps_per_bus;
    let done = AtomicU64::new(0);
    let results: Vec<Result<Vec<FleetBus>>> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .chunks(per.max(1))
            .enumerate()
            .map(|(k, slice)| {
                let (portrait, dir, done) = (&portrait, &opts.dir, &done);
                s.spawn(move || -> Result<Vec<FleetBus>> {
                    let mut out = Vec::with_capacity(slice.len());
                    for (j, id) in slice.iter().enumerate() {
                        let b = k * per + j;
                        let data = dir.join("template").join(id.as_str());
                        let cfg = BusConfig::for_bus(id.clone(), data, "127.0.0.1", 8883);
                        init_bus_store(&cfg.db_path())?;
                        let saved = capture_backlog(&cfg, portrait, b * apps, apps)?;
                        out.push(FleetBus {
                            id: id.clone(),
                            template_db: cfg.db_path(),
                            saved,
                        });
                        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if d % 100 == 0 {
                            eprintln!("[fleet] {d} bus stores captured");
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a capture thread panicked")))
            })
            .collect()
    });
    let mut buses = Vec::with_capacity(ids.len());
    for r in results {
        buses.extend(r?);
    }
    eprintln!(
        "[fleet] {} applications captured on {} buses in {:.1} s ({} threads)",
        buses.len() * apps,
        buses.len(),
        t.elapsed().as_secs_f64(),
        threads
    );
    Ok(buses)
}

/// A child process that is killed when dropped.
struct Proc {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Proc {
    fn pid(&self) -> Result<u32> {
        self.child
            .id()
            .with_context(|| format!("{} has exited", self.name))
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "{} exited ({status}); log tail:\n{}",
                self.name,
                tail(&self.log, 20)
            )),
            _ => None,
        }
    }

    /// SIGINT (a clean stop), then SIGKILL after `grace`.
    async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

/// The last `lines` lines of a log, without terminal colour codes.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    strip_ansi(&all[all.len().saturating_sub(lines)..].join("\n"))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn spawn_hq_sync(
    args: &[&str],
    env: &[(String, String)],
    log: &Path,
    name: &'static str,
) -> Result<Proc> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd =
        Command::new(binary("hq-sync").context(
            "keliling-field starts the hq-sync binary: cargo build --release -p hq-sync",
        )?);
    cmd.args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(out)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("spawning hq-sync {args:?}"))?;
    Ok(Proc {
        child,
        name,
        log: log.to_owned(),
    })
}

enum FleetBroker {
    Embedded(Proc, u16),
    Mosquitto(Mosquitto),
}

impl FleetBroker {
    async fn start(kind: BrokerKind, pki: &Pki, dir: &Path) -> Result<FleetBroker> {
        match kind {
            BrokerKind::Embedded => {
                let port = free_port()?;
                let p = spawn_hq_sync(
                    &["broker", "--listen", &format!("127.0.0.1:{port}")],
                    &[
                        ("HQ_SYNC__PKI__DIR".into(), pki.dir().display().to_string()),
                        ("RUST_LOG".into(), "warn,rumqttd=off,rustls=error".into()),
                    ],
                    &dir.join("broker.log"),
                    "hq-sync broker",
                )?;
                wait_for_port(port, Duration::from_secs(20)).await?;
                Ok(FleetBroker::Embedded(p, port))
            }
            BrokerKind::Mosquitto => {
                if Mosquitto::require()?.is_none() {
                    bail!("mosquitto is not installed (apt-get install -y mosquitto)");
                }
                Ok(FleetBroker::Mosquitto(
                    Mosquitto::start_with(&dir.join("mosquitto"), Some(&mosquitto_tls(pki)))
                        .await?,
                ))
            }
            BrokerKind::NatsCluster => bail!("the fleet run uses one broker, not a cluster"),
        }
    }

    fn port(&self) -> u16 {
        match self {
            FleetBroker::Embedded(_, p) => *p,
            FleetBroker::Mosquitto(m) => m.port(),
        }
    }

    fn pid(&self) -> Result<u32> {
        match self {
            FleetBroker::Embedded(p, _) => p.pid(),
            FleetBroker::Mosquitto(m) => m.pid().context("mosquitto is not running"),
        }
    }

    fn exited(&mut self) -> Option<String> {
        match self {
            FleetBroker::Embedded(p, _) => p.exited(),
            FleetBroker::Mosquitto(m) => (!m.is_running()).then(|| {
                let log = m.log();
                let lines: Vec<&str> = log.lines().collect();
                format!(
                    "mosquitto exited; log tail:\n{}",
                    lines[lines.len().saturating_sub(20)..].join("\n")
                )
            }),
        }
    }

    async fn stop(self) {
        match self {
            FleetBroker::Embedded(p, _) => p.stop(Duration::from_secs(2)).await,
            FleetBroker::Mosquitto(mut m) => {
                let _ = m.kill().await;
            }
        }
    }
}

/// What one fleet run measured.
#[derive(Debug, Clone, Default)]
pub struct FleetRun {
    pub secs: f64,
    pub all_connected_secs: Option<f64>,
    pub first_delivered_secs: Option<f64>,
    /// Per-bus time until its whole backlog was delivered: p50, p90, max.
    pub bus_done: [f64; 3],
    pub hq_cpu: f64,
    pub hq_hwm_kib: u64,
    pub broker_cpu: f64,
    pub broker_hwm_kib: u64,
    pub gen_cpu: f64,
    pub gen_hwm_kib: u64,
    pub others_cores: f64,
    pub broker_fds: Option<usize>,
    pub gen_fds: Option<usize>,
    pub hq_nofile: Option<(String, String)>,
    pub broker_nofile: Option<(String, String)>,
    pub connects: u64,
    pub records_resent: u64,
    pub chunks_resent: u64,
    pub bytes_published: u64,
    pub verify_secs: f64,
}

async fn fleet_run(
    kind: BrokerKind,
    opts: &FleetOptions,
    pki: &Pki,
    fleet: &[FleetBus],
) -> Result<FleetRun> {
    let label = match kind {
        BrokerKind::Embedded => "embedded",
        BrokerKind::Mosquitto => "mosquitto",
        BrokerKind::NatsCluster => "nats-cluster",
    };
    let dir = opts.dir.join(format!("run-{label}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("wiping {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    // Fresh copies of every bus store, unlocked as a shift would.
    let t = Instant::now();
    let mut dbs = Vec::with_capacity(fleet.len());
    let mut vaults = Vec::with_capacity(fleet.len());
    tokio::task::block_in_place(|| -> Result<()> {
        for b in fleet {
            let db = dir.join("buses").join(b.id.as_str()).join("bus.sqlite");
            copy_db(&b.template_db, &db)?;
            vaults.push(init_bus_store(&db)?);
            dbs.push(db);
        }
        Ok(())
    })?;
    eprintln!(
        "[fleet {label}] {} stores copied and unlocked in {:.1} s",
        fleet.len(),
        t.elapsed().as_secs_f64()
    );

    let mut broker = FleetBroker::start(kind, pki, &dir).await?;
    let port = broker.port();
    let hq_dir = dir.join("hq");
    let hq_log = dir.join("hq.log");
    let mut hq = spawn_hq_sync(
        &["run"],
        &[
            ("HQ_SYNC__DATA_DIR".into(), hq_dir.display().to_string()),
            ("HQ_SYNC__BROKER__PORT".into(), port.to_string()),
            ("HQ_SYNC__PKI__DIR".into(), pki.dir().display().to_string()),
            ("RUST_LOG".into(), "info,rumqttd=off,rustls=error".into()),
        ],
        &hq_log,
        "hq-sync run",
    )?;
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::fs::read_to_string(&hq_log)
                .unwrap_or_default()
                .contains("HQ connected to broker")
            {
                break;
            }
            if let Some(why) = hq.exited() {
                bail!("{why}");
            }
            if Instant::now() > deadline {
                bail!(
                    "HQ did not connect to the broker in 30 s; its log:\n{}",
                    tail(&hq_log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let hq_pid = hq.pid()?;
    let broker_pid = broker.pid()?;
    let hq_before = proc_sample(Some(hq_pid))?;
    let broker_before = proc_sample(Some(broker_pid))?;
    let gen_before = proc_sample(None)?;
    let machine_before = machine_cpu();

    // Every bus at once, as after a fleet-wide outage.
    let (stop_tx, stop_rx) = watch::channel(false);
    let n = fleet.len();
    let apps = opts.apps_per_bus as u64;
    let total = n as u64 * apps;
    let mut metrics = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    let started = Instant::now();
    for ((b, db), vault) in fleet.iter().zip(&dbs).zip(vaults) {
        let data = db.parent().context("bus store without a directory")?;
        let cfg = bus_config(pki, &b.id, data, port);
        let m = Arc::new(SyncMetrics::default());
        tasks.push(tokio::spawn(bus_node::daemon::run(
            cfg,
            vault,
            m.clone(),
            stop_rx.clone(),
        )));
        metrics.push(m);
    }
    eprintln!(
        "[fleet {label}] {n} bus daemons started in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let deadline = started + opts.timeout;
    let mut run = FleetRun::default();
    let mut done_at: Vec<Option<f64>> = vec![None; n];
    let mut next_print = started + Duration::from_secs(5);
    let mut broker_fds_peak = 0usize;
    let mut gen_fds_peak = 0usize;
    // Progress is the delivered count; without any for this long, the run has stalled.
    let mut last_progress = (0u64, Instant::now());
    loop {
        let now = started.elapsed().as_secs_f64();
        let mut delivered = 0u64;
        let mut connected = 0usize;
        for (i, m) in metrics.iter().enumerate() {
            let d = SyncMetrics::get(&m.delivered);
            delivered += d;
            if m.connected.load(Ordering::Relaxed) {
                connected += 1;
            }
            if d >= apps && done_at[i].is_none() {
                done_at[i] = Some(now);
            }
        }
        if connected == n && run.all_connected_secs.is_none() {
            run.all_connected_secs = Some(now);
        }
        if delivered > 0 && run.first_delivered_secs.is_none() {
            run.first_delivered_secs = Some(now);
        }
        broker_fds_peak = broker_fds_peak.max(open_fds(Some(broker_pid)).unwrap_or(0));
        gen_fds_peak = gen_fds_peak.max(open_fds(None).unwrap_or(0));
        if delivered >= total {
            break;
        }
        if let Some(why) = hq.exited() {
            bail!("{why}");
        }
        if let Some(why) = broker.exited() {
            bail!("{why}");
        }
        if let Some(i) = tasks.iter().position(|t| t.is_finished()) {
            bail!("bus {} stopped its sync early", fleet[i].id);
        }
        if delivered != last_progress.0 {
            last_progress = (delivered, Instant::now());
        }
        let stalled = last_progress.1.elapsed() > opts.stall;
        if Instant::now() > deadline || stalled {
            let hqs = proc_sample(Some(hq_pid)).unwrap_or_default();
            let broker_log = match &broker {
                FleetBroker::Mosquitto(m) => m
                    .log()
                    .lines()
                    .filter(|l| l.contains(hq_sync::pki::FIRST_HQ))
                    .collect::<Vec<_>>()
                    .join("\n"),
                FleetBroker::Embedded(p, _) => tail(&p.log, 5),
            };
            bail!(
                "[fleet {label}] {} after {now:.0} s: {delivered} of {total} delivered, {connected} of {n} buses connected; HQ used {:.1} CPU-s so far, RSS {}, its log ends:\n{}\nthe broker's log about HQ / its tail:\n{broker_log}",
                if stalled {
                    format!("stalled (nothing delivered for {:?})", opts.stall)
                } else {
                    format!("timed out ({:?})", opts.timeout)
                },
                hqs.cpu_secs - hq_before.cpu_secs,
                mib(hqs.rss_kib as f64 * 1024.0),
                tail(&hq_log, 5)
            );
        }
        if Instant::now() >= next_print {
            next_print += Duration::from_secs(5);
            let hqs = proc_sample(Some(hq_pid)).unwrap_or_default();
            eprintln!(
                "  [fleet {label} {:>4.0} s] connected {connected}/{n}, delivered {delivered}/{total}, HQ {:.1} CPU-s {} RSS, broker fds {}",
                now,
                hqs.cpu_secs - hq_before.cpu_secs,
                mib(hqs.rss_kib as f64 * 1024.0),
                open_fds(Some(broker_pid)).unwrap_or(0)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run.secs = started.elapsed().as_secs_f64();
    let hq_after = proc_sample(Some(hq_pid))?;
    let broker_after = proc_sample(Some(broker_pid))?;
    let gen_after = proc_sample(None)?;
    run.hq_cpu = hq_after.cpu_secs - hq_before.cpu_secs;
    run.hq_hwm_kib = hq_after.hwm_kib;
    run.broker_cpu = broker_after.cpu_secs - broker_before.cpu_secs;
    run.broker_hwm_kib = broker_after.hwm_kib;
    run.gen_cpu = gen_after.cpu_secs - gen_before.cpu_secs;
    run.gen_hwm_kib = gen_after.hwm_kib;
    run.others_cores = others_cores(
        machine_before,
        machine_cpu(),
        run.hq_cpu + run.broker_cpu + run.gen_cpu,
        run.secs,
    );
    run.broker_fds = Some(broker_fds_peak);
    run.gen_fds = Some(gen_fds_peak);
    run.hq_nofile = nofile_limits(Some(hq_pid));
    run.broker_nofile = nofile_limits(Some(broker_pid));
    let mut done: Vec<f64> = done_at.iter().map(|d| d.unwrap_or(run.secs)).collect();
    done.sort_by(f64::total_cmp);
    let pick = |p: f64| done[((done.len() as f64 - 1.0) * p).round() as usize];
    run.bus_done = [pick(0.5), pick(0.9), pick(1.0)];
    for (b, m) in fleet.iter().zip(&metrics) {
        run.connects += SyncMetrics::get(&m.connects);
        run.records_resent += SyncMetrics::get(&m.records_sent).saturating_sub(apps);
        run.chunks_resent += SyncMetrics::get(&m.chunks_sent).saturating_sub(b.saved.chunks);
        run.bytes_published += SyncMetrics::get(&m.bytes_published);
    }
    eprintln!(
        "[fleet {label}] all {total} delivered in {:.1} s; stopping",
        run.secs
    );

    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    hq.stop(Duration::from_secs(5)).await;
    broker.stop().await;

    let t = Instant::now();
    tokio::task::block_in_place(|| verify_fleet(fleet, &dbs, &hq_dir, apps))
        .with_context(|| format!("[fleet {label}] exactly-once audit"))?;
    run.verify_secs = t.elapsed().as_secs_f64();
    Ok(run)
}

/// The exactly-once audit for a whole fleet, in one pass over each file: every bus says
/// each of its applications was delivered and holds nothing else; HQ holds each exactly
/// once, complete, from the bus that saved it, with the same photo hashes; every photo
/// file at HQ verifies; nothing quarantined on either side. Reads hashes where they are
/// kept in clear (no decryption needed), and HQ's tables with one query each.
fn verify_fleet(fleet: &[FleetBus], dbs: &[PathBuf], hq_dir: &Path, apps: u64) -> Result<()> {
    // What the buses saved, as captured.
    let mut expected: HashMap<ApplicationId, (&BusId, &BTreeSet<Sha256>)> = HashMap::new();
    for b in fleet {
        for (id, hashes) in &b.saved.apps {
            if expected.insert(*id, (&b.id, hashes)).is_some() {
                bail!("application id {id} was saved twice");
            }
        }
    }
    // What each bus store says now.
    for (b, db) in fleet.iter().zip(dbs) {
        let store = Store::open(db)?;
        let s = store.status()?;
        if s.delivered != apps || s.waiting() != 0 || s.rejected != 0 || s.total != apps {
            bail!(
                "bus {}: {} delivered, {} waiting, {} rejected of {} (expected {apps} delivered)",
                b.id,
                s.delivered,
                s.waiting(),
                s.rejected,
                s.total
            );
        }
        if store.quarantine_count()? != 0 {
            bail!("bus {} quarantined messages from HQ", b.id);
        }
        for summary in store.recent(usize::MAX >> 1, false)? {
            let hashes: BTreeSet<Sha256> =
                store.attachment_hashes(&summary.id)?.into_iter().collect();
            match expected.get(&summary.id) {
                Some((bus, want)) if *bus == &b.id && **want == hashes => {}
                _ => bail!(
                    "bus {} holds application {} that differs from what it saved",
                    b.id,
                    summary.id
                ),
            }
        }
    }
    // HQ, as its files say.
    let hq = rusqlite::Connection::open_with_flags(
        hq_dir.join("hq.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .context("opening HQ's database")?;
    let mut at_hq: HashMap<ApplicationId, (String, String, BTreeSet<Sha256>)> = HashMap::new();
    {
        let mut stmt = hq.prepare("SELECT id, bus_id, state FROM applications")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (id, bus, state) = row?;
            let id = ApplicationId::parse(&id).map_err(|e| anyhow!("HQ id {id}: {e}"))?;
            if at_hq.insert(id, (bus, state, BTreeSet::new())).is_some() {
                bail!("HQ holds application {id} twice");
            }
        }
        let mut stmt = hq.prepare("SELECT application_id, sha256 FROM app_blobs")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (id, sha) = row?;
            let id = ApplicationId::parse(&id).map_err(|e| anyhow!("HQ id {id}: {e}"))?;
            let sha = Sha256::parse_hex(&sha).map_err(|e| anyhow!("HQ blob {sha}: {e}"))?;
            at_hq
                .get_mut(&id)
                .with_context(|| format!("HQ has blobs for unknown application {id}"))?
                .2
                .insert(sha);
        }
    }
    if at_hq.len() != expected.len() {
        bail!(
            "HQ holds {} applications, the buses saved {}",
            at_hq.len(),
            expected.len()
        );
    }
    let mut blobs = BTreeSet::new();
    for (id, (bus, want)) in &expected {
        let (hq_bus, state, hashes) = at_hq
            .get(id)
            .with_context(|| format!("application {id} of {bus} is missing at HQ"))?;
        if hq_bus != bus.as_str() {
            bail!("application {id}: saved on {bus}, HQ says {hq_bus}");
        }
        if state != "complete" {
            bail!("application {id} is {state} at HQ");
        }
        if hashes != *want {
            bail!("application {id}: attachment hashes differ between bus and HQ");
        }
        blobs.extend(hashes.iter().copied());
    }
    let quarantined: i64 = hq.query_row("SELECT COUNT(*) FROM quarantine", [], |r| r.get(0))?;
    if quarantined != 0 {
        bail!("HQ quarantined {quarantined} messages");
    }
    let photos = PhotoStore::open(&hq_dir.join("photos"))?;
    for sha in &blobs {
        photos
            .read_verified(sha)
            .with_context(|| format!("photo {sha:?} at HQ"))?;
    }
    Ok(())
}

/// The fleet run: see the module docs. Returns the report.
/// A process's share of a fleet run, as its report row shows it: "12.3 CPU-s (0.41 cores)
/// / 45.6 MiB" (CPU over a run of `secs`, then peak RSS); one format for HQ, the broker
/// and the load generator so their rows compare.
fn cpu_and_peak(cpu_secs: f64, secs: f64, hwm_kib: u64) -> String {
    format!(
        "{:.1} CPU-s ({:.2} cores) / {}",
        cpu_secs,
        cpu_secs / secs,
        mib(hwm_kib as f64 * 1024.0)
    )
}

/// An open-file limit (soft, hard) as a report shows it: "1024 (hard 4096)", "?" if unknown.
fn nofile_text(limits: &Option<(String, String)>) -> String {
    limits
        .as_ref()
        .map_or("?".into(), |(s, h)| format!("{s} (hard {h})"))
}

pub async fn run_fleet(opts: &FleetOptions) -> Result<Report> {
    let limit = hq_sync::fd_limit::raise_nofile().context("raising the open-file limit")?;
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("creating {}", opts.dir.display()))?;
    let pki = Pki::init(
        &opts.dir.join("pki"),
        &["localhost".into(), "127.0.0.1".into()],
    )?;
    let t = Instant::now();
    let fleet = tokio::task::block_in_place(|| setup_fleet(opts, &pki))?;
    let setup_secs = t.elapsed().as_secs_f64();
    let total = fleet.len() * opts.apps_per_bus;
    let blobs: usize = fleet.iter().map(|b| b.saved.blobs.len()).sum();
    let chunks: u64 = fleet.iter().map(|b| b.saved.chunks).sum();

    let mut report = Report::new(format!(
        "Fleet on one machine: {} buses x {} applications",
        fleet.len(),
        opts.apps_per_bus
    ));
    report.context = vec![
        format!("Machine: {}; load average at start {}", machine_line(), loadavg()),
        format!(
            "Fleet: {} buses, each with its own fleet certificate (`hq_sync::pki`), SQLite store and vault, MQTT client id and TLS 1.3 connection: one `bus_node::daemon::run` task per bus in the load generator, default sync settings, all started at once (as after a fleet-wide outage)",
            fleet.len()
        ),
        format!(
            "Backlog: {total} SIM renewals captured through `capture()` ({} per bus), each with its own phone photo (640x480 camera JPEG through the photo pipeline): {blobs} photos, {chunks} chunks; setup (certificates and captures) took {:.0} s and is not timed",
            opts.apps_per_bus, setup_secs
        ),
        "HQ: `hq-sync run` (its own process; one ingest worker); broker: `hq-sync broker` (embedded rumqttd behind its TLS front, its own process) or Mosquitto 2 with the harness's config (mTLS, CRL, the shipped ACL, persistence)".to_owned(),
        format!(
            "Open files: the generator raised its soft limit from {} to {} (hard {}); `hq-sync` raises its own at start; Mosquitto inherits the generator's",
            limit.before,
            limit.after,
            limit.hard.map_or("unlimited".into(), |h| h.to_string())
        ),
    ];

    for &kind in &opts.brokers {
        let b = broker_name(kind);
        eprintln!("[fleet] run with the {b} broker");
        let r = match fleet_run(kind, opts, &pki, &fleet).await {
            Ok(r) => r,
            Err(e) => {
                report.fail(format!("{b}: all backlogs delivered"), &e);
                continue;
            }
        };
        let payload_mb = r.bytes_published as f64 / 1e6;
        report.row(
            format!("{b}: all backlogs delivered"),
            secs(r.secs),
            format!(
                "{:.0} applications/s, {:.2} MB/s of payload ({:.1} MB published); first delivery after {:.1} s; all {} connected after {}; per bus, whole backlog delivered after p50 {:.1} s, p90 {:.1} s, max {:.1} s",
                total as f64 / r.secs,
                payload_mb / r.secs,
                payload_mb,
                r.first_delivered_secs.unwrap_or(0.0),
                fleet.len(),
                r.all_connected_secs
                    .map_or("never all at once".into(), |s| format!("{s:.1} s")),
                r.bus_done[0],
                r.bus_done[1],
                r.bus_done[2]
            ),
        );
        report.row(
            format!("{b}: HQ (`hq-sync run`) CPU / peak RSS"),
            cpu_and_peak(r.hq_cpu, r.secs, r.hq_hwm_kib),
            format!(
                "utime+stime from /proc/<pid>/stat over the drain; VmHWM; open-file limit {}",
                nofile_text(&r.hq_nofile)
            ),
        );
        report.row(
            format!("{b}: broker CPU / peak RSS"),
            cpu_and_peak(r.broker_cpu, r.secs, r.broker_hwm_kib),
            format!(
                "{}; at most {} open files during the drain; open-file limit {}",
                match kind {
                    BrokerKind::Embedded => "`hq-sync broker` process (TLS front + rumqttd)",
                    BrokerKind::Mosquitto => "the mosquitto process",
                    BrokerKind::NatsCluster => "the NATS nodes",
                },
                r.broker_fds.unwrap_or(0),
                nofile_text(&r.broker_nofile)
            ),
        );
        report.row(
            format!("{b}: load generator ({} buses) CPU / peak RSS", fleet.len()),
            cpu_and_peak(r.gen_cpu, r.secs, r.gen_hwm_kib),
            format!(
                "this process (peak RSS includes the setup); at most {} open files; the rest of the machine used {:.2} cores meanwhile",
                r.gen_fds.unwrap_or(0),
                r.others_cores
            ),
        );
        report.row(
            format!("{b}: zero loss, no duplicates"),
            "yes",
            format!(
                "audited in {:.1} s: every bus store says all {} delivered, nothing waiting, rejected or quarantined; HQ holds each of the {total} once, complete, from the bus that saved it, same photo hashes, every photo file verified, nothing quarantined; {} connects for {} buses; re-sent by the buses: {} records, {} chunks",
                r.verify_secs,
                opts.apps_per_bus,
                r.connects,
                fleet.len(),
                r.records_resent,
                r.chunks_resent
            ),
        );
    }
    report
        .notes
        .push(format!("Load average at the end: {}.", loadavg()));
    Ok(report)
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
