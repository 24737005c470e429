//! `keliling-bench`: what Keliling costs on this machine, next to the tools it is judged by.
//!
//! ```text
//! cargo build --release -p bus-node   # the rss phase runs the real bus-node binary
//! cargo run --release -p keliling-e2e --bin keliling-bench -- [--quick] [--out FILE] [--only photo,capture,drain,ingest,limit,rss,console,station]
//! ```
//!
//! Seven benchmarks, each printed as rows of one markdown table:
//!
//! - **photo**: `keliling_photo::normalize` of a 12 MP camera JPEG (4000 x 3000, EXIF
//!   orientation 6, GPS) to the default 413 x 531 ID photo, side by side with libvips's
//!   `vipsthumbnail` and ImageMagick doing the same job on the same file (same size, centre
//!   crop, JPEG quality, metadata stripped): median wall time of whole processes and peak RSS
//!   (`/usr/bin/time -v`), ours in a child process (`--only photo-child FILE`), and the ratios.
//!   The peers are never installed from here: `apt-get install -y libvips-tools imagemagick`.
//! - **capture**: durable saves per second on the bus (`Store::save`: one SQLite transaction,
//!   WAL, `synchronous=FULL`) of applications with a ~58 KB ID photo each, and full `capture()`
//!   (parse, photo pipeline on a phone-size JPEG, catalogue check, save) per second.
//! - **drain**: the time to move a backlog of captured applications from a bus store to HQ,
//!   end to end (HQ durable, HQ's delivery ack back on the bus), through the embedded broker
//!   and through Mosquitto, both with TLS 1.3 and fleet client certificates as in production,
//!   the bytes that takes (payload, and TCP counted by a proxy), and `mosquitto_pub` publishing
//!   the same bytes at QoS 1 with a bus certificate through the same kind of Mosquitto.
//! - **ingest**: many buses (in-process bus daemons, each with its own certificate and
//!   backlog) draining at once into one HQ: applications per second made durable at HQ.
//! - **rss**: resident memory of the real `bus-node run` process, idle and with a large
//!   backlog (HQ down, offline, draining).
//! - **console**: the HQ console's queue and detail pages with a province's applications.
//! - **station**: the bus station in headless Chromium against the real `bus-node run` with
//!   a backlog: the capture screen's weight and time to interactive on a throttled link,
//!   the photo result for a 12 MP JPEG, the node's memory while the station is used.
//!
//! Every phase is bounded in time and fails with a clear message; a failed phase is reported
//! in the table and makes the exit status non-zero.

// The newer phases live in `bench/` (a file directly in src/bin/ would be a binary of its own).
#[path = "bench/brokers.rs"]
mod brokers;
#[path = "bench/bulk.rs"]
mod bulk;
#[path = "bench/console.rs"]
mod console;
#[path = "bench/ingest.rs"]
mod ingest;
#[path = "bench/limit.rs"]
mod limit;
#[path = "bench/rss.rs"]
mod rss;
#[path = "bench/station.rs"]
mod station;

use anyhow::{anyhow, bail, Context, Result};
use brokers::{BenchBroker, Kind, Security, Who};
use bus_node::capture::{capture, CaptureInput};
use bus_node::store::Store;
use bus_node::sync::SyncMetrics;
use bus_node::BusConfig;
use clap::{Parser, ValueEnum};
use hq_sync::ingest::IngestMetrics;
use keliling_e2e::field::copy_db;
use keliling_e2e::harness::{assert_exactly_once, init_bus_store, why_ended, InProcessHq};
use keliling_e2e::mosquitto::Mosquitto;
use keliling_e2e::procstat;
use keliling_e2e::proxy::LinkProxy;
use keliling_e2e::sample;
use keliling_photo::{fixtures, normalize, Limits, PhotoSpec};
use keliling_shared::application::MediaType;
use keliling_shared::catalogue::BackgroundColour;
use keliling_shared::topics::{Topics, UpKind};
use keliling_shared::wire::{chunk_count, chunk_range, Chunk, Up, UpEnvelope};
use keliling_shared::{
    Application, ApplicationId, Attachment, AttachmentKind, BusId, Catalogue, Sha256, UnixMillis,
};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The bus id every benchmark store uses.
const BUS: &str = "bus-bench-01";

#[derive(Parser, Debug)]
#[command(
    name = "keliling-bench",
    about = "Keliling benchmarks: photo pipeline, durable capture, backlog drain, HQ ingest, bus memory",
    after_help = "Peers and prerequisites (never installed by the benchmark):\n  \
        apt-get install -y libvips-tools imagemagick mosquitto mosquitto-clients\n  \
        cargo build --release -p bus-node    (the rss phase runs target/release/bus-node)"
)]
struct Args {
    /// A short run (fewer repetitions, smaller backlogs) to check that everything works.
    #[arg(long)]
    quick: bool,
    /// Also write the markdown report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run only these benchmarks (comma-separated, or the option repeated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Only>,
    /// Where scratch files (stores, photos, brokers) go; the system temp dir by default.
    /// Put it on the disk the bus would use: saves are fsync-bound.
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Experiment: the bus's chunk window for the drain and ingest (default: the bus's own).
    #[arg(long)]
    chunk_window: Option<usize>,
    /// Also run the drains and the mosquitto_pub peer over plain TCP (no TLS, no
    /// certificates), labelled PLAINTEXT, to show what TLS costs.
    #[arg(long)]
    plaintext: bool,
    /// Ingest: buses sending at once (50; 10 with --quick).
    #[arg(long)]
    buses: Option<usize>,
    /// Ingest: applications in each bus's backlog (40; 20 with --quick).
    #[arg(long)]
    per_bus: Option<usize>,
    /// Bus memory: applications in the backlog (10000; 1000 with --quick).
    #[arg(long)]
    rss_backlog: Option<usize>,
    /// Console: applications in HQ's store (50000; 5000 with --quick).
    #[arg(long)]
    console_apps: Option<usize>,
    /// Internal: the camera JPEG that `--only photo-child` normalizes.
    #[arg(hide = true)]
    file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Only {
    Photo,
    Capture,
    Drain,
    Ingest,
    /// HQ ingest at the disk's limit: pre-encoded loads from 50 and 1000 buses, group
    /// commit on and off, beside the disk's own fsyncs per second.
    Limit,
    Rss,
    /// The HQ console's queue and detail pages with a province's applications.
    Console,
    /// The bus station in Chromium: page weight, time to interactive on a throttled link,
    /// the photo result, the node's memory with a backlog.
    Station,
    /// Internal: one normalization in a fresh process, then print its peak RSS.
    #[value(hide = true)]
    PhotoChild,
}

/// How much each benchmark does.
struct Plan {
    /// The bus's sync settings the drain and ingest run with.
    sync: bus_node::config::SyncConfig,
    photo_runs: usize,
    peer_runs: usize,
    saves: usize,
    captures: usize,
    backlog: usize,
    plaintext: bool,
    ingest_buses: usize,
    ingest_per_bus: usize,
    rss_backlog: usize,
    /// How long the bus process runs (once connected) before its RSS is read.
    rss_settle: Duration,
    /// Console: applications in HQ's store, and requests per page kind.
    console_apps: usize,
    console_requests: usize,
}

impl Plan {
    fn new(args: &Args) -> Plan {
        let mut sync = bus_node::config::SyncConfig::default();
        if let Some(w) = args.chunk_window {
            sync.chunk_window = w.max(1);
        }
        let q = args.quick;
        let pick = |quick: usize, full: usize| if q { quick } else { full };
        Plan {
            sync,
            photo_runs: pick(3, 10),
            peer_runs: pick(3, 7),
            saves: pick(100, 500),
            captures: pick(20, 100),
            backlog: pick(300, 2000),
            plaintext: args.plaintext,
            ingest_buses: args.buses.unwrap_or(pick(10, 50)).max(1),
            ingest_per_bus: args.per_bus.unwrap_or(pick(20, 40)).max(1),
            rss_backlog: args.rss_backlog.unwrap_or(pick(1000, 10_000)).max(1),
            rss_settle: Duration::from_secs(if q { 5 } else { 20 }),
            console_apps: args.console_apps.unwrap_or(pick(5_000, 50_000)).max(200),
            console_requests: pick(70, 350),
        }
    }
}

struct Row {
    bench: &'static str,
    measure: String,
    value: String,
    notes: String,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    failures: Vec<String>,
}

impl Report {
    fn add(
        &mut self,
        bench: &'static str,
        measure: impl Into<String>,
        value: impl Into<String>,
        notes: impl Into<String>,
    ) {
        let row = Row {
            bench,
            measure: measure.into(),
            value: value.into(),
            notes: notes.into(),
        };
        eprintln!(
            "[{}] {}: {}   {}",
            row.bench, row.measure, row.value, row.notes
        );
        self.rows.push(row);
    }

    fn fail(&mut self, bench: &'static str, what: &str, err: &anyhow::Error) {
        let msg = format!("{err:#}");
        eprintln!("[{bench}] FAILED: {what}: {msg}");
        self.add(bench, what, "FAILED", msg.clone());
        self.failures.push(format!("{bench}: {what}: {msg}"));
    }

    fn table(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut t =
            String::from("| Benchmark | Measure | Value | Notes |\n| --- | --- | --- | --- |\n");
        for r in &self.rows {
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} |",
                r.bench,
                cell(&r.measure),
                cell(&r.value),
                cell(&r.notes)
            );
        }
        t
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.only.contains(&Only::PhotoChild) {
        let file = args
            .file
            .as_deref()
            .context("--only photo-child needs the camera JPEG's path")?;
        return photo_child(file);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error,rumqttd=off".into()),
        )
        .init();
    let plan = Plan::new(&args);
    let scratch_root = match &args.scratch {
        Some(p) => p.clone(),
        None => std::env::temp_dir(),
    };
    std::fs::create_dir_all(&scratch_root)
        .with_context(|| format!("creating {}", scratch_root.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("keliling-bench-")
        .tempdir_in(&scratch_root)
        .with_context(|| format!("creating a scratch dir in {}", scratch_root.display()))?;
    let header = header(&args, &plan, scratch.path());
    eprintln!("{header}");

    let mut report = Report::default();
    let wants = |o: Only| args.only.is_empty() || args.only.contains(&o);
    let mut phase_times: Vec<(&str, Duration)> = Vec::new();
    if wants(Only::Photo) {
        let t = Instant::now();
        if let Err(e) = bench_photo(&plan, scratch.path(), &mut report) {
            report.fail("photo", "photo benchmark", &e);
        }
        phase_times.push(("photo", t.elapsed()));
    }
    if wants(Only::Capture) {
        let t = Instant::now();
        if let Err(e) = bench_capture(&plan, scratch.path(), &mut report) {
            report.fail("capture", "capture benchmark", &e);
        }
        phase_times.push(("capture", t.elapsed()));
    }
    if wants(Only::Drain)
        || wants(Only::Ingest)
        || wants(Only::Rss)
        || wants(Only::Console)
        || wants(Only::Station)
        || wants(Only::Limit)
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting tokio")?;
        if wants(Only::Drain) {
            let t = Instant::now();
            if let Err(e) = runtime.block_on(bench_drain(&plan, scratch.path(), &mut report)) {
                report.fail("drain", "drain benchmark", &e);
            }
            phase_times.push(("drain", t.elapsed()));
        }
        if wants(Only::Ingest) {
            let t = Instant::now();
            let r = runtime.block_on(ingest::bench_ingest(&plan, scratch.path(), &mut report));
            if let Err(e) = r {
                report.fail("ingest", "ingest benchmark", &e);
            }
            phase_times.push(("ingest", t.elapsed()));
        }
        if wants(Only::Rss) {
            let t = Instant::now();
            if let Err(e) = runtime.block_on(rss::bench_rss(&plan, scratch.path(), &mut report)) {
                report.fail("rss", "bus memory benchmark", &e);
            }
            phase_times.push(("rss", t.elapsed()));
        }
        if wants(Only::Console) {
            let t = Instant::now();
            let r = runtime.block_on(console::bench_console(&plan, scratch.path(), &mut report));
            if let Err(e) = r {
                report.fail("console", "console benchmark", &e);
            }
            phase_times.push(("console", t.elapsed()));
        }
        if wants(Only::Station) {
            let t = Instant::now();
            let r = runtime.block_on(station::bench_station(&plan, scratch.path(), &mut report));
            if let Err(e) = r {
                report.fail("station", "station benchmark", &e);
            }
            phase_times.push(("station", t.elapsed()));
        }
        if wants(Only::Limit) {
            let t = Instant::now();
            let _ = hq_sync::fd_limit::raise_nofile();
            let r = runtime.block_on(limit::bench_limit(&plan, scratch.path(), &mut report));
            if let Err(e) = r {
                report.fail("limit", "ingest at the disk's limit", &e);
            }
            phase_times.push(("limit", t.elapsed()));
        }
        // The embedded brokers cannot be stopped; do not wait for their threads.
        runtime.shutdown_timeout(Duration::from_secs(2));
    }
    let times = phase_times
        .iter()
        .map(|(p, d)| format!("{p} {:.0} s", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ");
    let header = format!("{header}- Phase wall times (set-up included): {times}\n");

    let markdown = format!("{header}\n{}", report.table());
    println!("{markdown}");
    if let Some(out) = &args.out {
        std::fs::write(out, &markdown).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("report written to {}", out.display());
    }
    if !report.failures.is_empty() {
        bail!(
            "{} benchmark(s) failed:\n{}",
            report.failures.len(),
            report.failures.join("\n")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The machine and the run

fn header(args: &Args, plan: &Plan, scratch: &Path) -> String {
    let cmd: Vec<String> = std::env::args().collect();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = procstat::cpu_model().unwrap_or_else(|| "unknown CPU".into());
    let mem = procstat::mem_total_kib().map_or_else(
        || "unknown memory".into(),
        |kib| format!("{:.1} GiB RAM", kib as f64 / 1024.0 / 1024.0),
    );
    let kernel = procstat::kernel_release().unwrap_or_else(|| "?".into());
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".into());
    let mode = if args.quick { "quick" } else { "full" };
    format!(
        "# Keliling benchmarks\n\n\
         - Command: `{}`\n\
         - Commit: {}\n\
         - Date: {date}\n\
         - Machine: {nproc} CPUs ({cpu}), {mem}, Linux {kernel}\n\
         - Scratch: {} ({}; {})\n\
         - Mode: {mode} (photo {} runs, peers {} runs; {} saves, {} captures; drain backlog {} applications; ingest {} buses x {}; bus memory backlog {})\n\
         - Load when the run started: {}\n",
        cmd.join(" "),
        git_commit(),
        scratch.display(),
        fs_type(scratch),
        fsync_latency(scratch).map_or_else(
            |e| format!("fsync not measured: {e:#}"),
            |(med, p90)| format!(
                "fsync of a 4 KiB write, which saves and HQ commits wait on: median {}, p90 {}",
                ms(med),
                ms(p90)
            )
        ),
        plan.photo_runs,
        plan.peer_runs,
        plan.saves,
        plan.captures,
        plan.backlog,
        plan.ingest_buses,
        plan.ingest_per_bus,
        plan.rss_backlog,
        std::fs::read_to_string("/proc/loadavg").map_or_else(
            |_| "unknown".into(),
            |l| format!(
                "load average {} (1, 5, 15 min); keep the machine otherwise idle",
                l.split_whitespace().take(3).collect::<Vec<_>>().join(", ")
            )
        ),
    )
}

fn git_commit() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&dir)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev} (with uncommitted changes)")
            } else {
                rev
            }
        }
        None => "unknown (not a git checkout)".into(),
    }
}

/// Median and p90 of 50 fsyncs of a 4 KiB write in `dir`: what every durable commit waits for.
fn fsync_latency(dir: &Path) -> Result<(Duration, Duration)> {
    let path = dir.join("fsync-probe");
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let block = [0x5Au8; 4096];
    let mut times = Vec::with_capacity(50);
    for _ in 0..50 {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        times.push(t.elapsed());
    }
    drop(f);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Ok((median(&times), percentile(&times, 90.0)))
}

/// The file system type of the mount holding `path` (fsync costs differ wildly).
fn fs_type(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, mount, kind) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), kind.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown file system".into(), |(_, kind)| kind)
}

// ---------------------------------------------------------------------------------------
// Statistics and formatting

fn sorted(times: &[Duration]) -> Vec<Duration> {
    let mut v = times.to_vec();
    v.sort();
    v
}

fn median(times: &[Duration]) -> Duration {
    let v = sorted(times);
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

/// Nearest-rank percentile.
fn percentile(times: &[Duration], p: f64) -> Duration {
    let v = sorted(times);
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1000.0;
    if m >= 100.0 {
        format!("{m:.0} ms")
    } else if m >= 10.0 {
        format!("{m:.1} ms")
    } else {
        format!("{m:.2} ms")
    }
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

// ---------------------------------------------------------------------------------------
// Running other programs, with wall time and peak RSS

struct Measured {
    wall: Duration,
    max_rss_kb: Option<u64>,
    stdout: String,
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Reports the peak RSS of its child the way GNU time does, from getrusage(RUSAGE_CHILDREN):
/// the fallback where `/usr/bin/time` is missing.
const RUSAGE_WRAPPER: &str = "import resource, subprocess, sys\n\
r = subprocess.run(sys.argv[1:])\n\
sys.stderr.write('\\nMaximum resident set size (kbytes): %d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
sys.exit(r.returncode)\n";

/// How peak RSS of child processes is measured here.
fn rss_method() -> &'static str {
    if Path::new("/usr/bin/time").is_file() {
        "/usr/bin/time -v"
    } else if find_in_path("python3").is_some() {
        "getrusage(RUSAGE_CHILDREN) via python3"
    } else {
        "unavailable"
    }
}

/// Runs `program args` to completion (at most `timeout`), with its wall time and peak RSS.
fn run_measured(
    program: &Path,
    args: &[OsString],
    scratch: &Path,
    timeout: Duration,
) -> Result<Measured> {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    let out_path = scratch.join(format!("run-{n}.stdout"));
    let err_path = scratch.join(format!("run-{n}.stderr"));
    let mut cmd = if Path::new("/usr/bin/time").is_file() {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-v").arg(program).args(args);
        c
    } else if let Some(py) = find_in_path("python3") {
        let mut c = Command::new(py);
        c.arg("-c").arg(RUSAGE_WRAPPER).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    };
    let out = std::fs::File::create(&out_path)
        .with_context(|| format!("creating {}", out_path.display()))?;
    let err = std::fs::File::create(&err_path)
        .with_context(|| format!("creating {}", err_path.display()))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", program.display()))?;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for a child process")? {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} did not finish within {timeout:?}", program.display());
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let wall = start.elapsed();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    if !status.success() {
        bail!(
            "{} failed ({status}): {}",
            program.display(),
            stderr.lines().rev().take(8).collect::<Vec<_>>().join(" / ")
        );
    }
    let max_rss_kb = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok());
    Ok(Measured {
        wall,
        max_rss_kb,
        stdout,
    })
}

/// This process's peak RSS so far, in KiB.
fn vm_hwm_kb() -> Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    procstat::status_kib(&status, "VmHWM").context("no VmHWM in /proc/self/status")
}

/// CPU time of this process's live threads, in seconds (from each thread's schedstat).
fn process_cpu_secs() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum::<u64>() as f64
        / 1e9
}

// ---------------------------------------------------------------------------------------
// 1. Photo

/// `--only photo-child FILE`: one normalization in a fresh process, then its peak RSS.
fn photo_child(file: &Path) -> Result<()> {
    let input = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let start = Instant::now();
    let photo = normalize(&input, &PhotoSpec::default(), &Limits::default())?;
    let took = start.elapsed();
    println!("vm_hwm_kb={}", vm_hwm_kb()?);
    println!("normalize_ms={:.1}", took.as_secs_f64() * 1000.0);
    println!("output_bytes={}", photo.jpeg.len());
    Ok(())
}

fn child_value(stdout: &str, key: &str) -> Option<f64> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.trim().parse().ok())
}

/// Every executable called `name` on `PATH`, in `PATH` order.
fn all_in_path(name: &str) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(name))
        .filter(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .collect()
}

/// Whether `path` is a script (`#!`): e.g. a stand-in that forwards to the real tool, whose
/// interpreter would be timed and measured along with it.
fn is_script(path: &Path) -> bool {
    let mut head = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == b"#!"
}

/// The real ImageMagick binary: `magick` (7) or `convert` (6), symlinks resolved, never a
/// stand-in script that comes earlier on `PATH`.
fn find_imagemagick(scratch: &Path) -> Option<PathBuf> {
    ["magick", "convert"]
        .into_iter()
        .flat_map(all_in_path)
        .filter_map(|p| p.canonicalize().ok())
        .filter(|p| !is_script(p))
        .find(|p| {
            run_measured(p, &["-version".into()], scratch, Duration::from_secs(10))
                .is_ok_and(|m| m.stdout.contains("Version: ImageMagick"))
        })
}

/// A program's first line of `args` output (its version), for the report.
fn version_line(program: &Path, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "version unknown".into())
}

/// Whole-process runs of one command: wall times and the highest peak RSS.
struct ToolRuns {
    walls: Vec<Duration>,
    max_rss_kb: Option<u64>,
    stdouts: Vec<String>,
}

/// One warm-up run (page cache, dynamic linking), then `runs` measured ones.
fn measure_tool(
    program: &Path,
    args: &[OsString],
    runs: usize,
    scratch: &Path,
) -> Result<ToolRuns> {
    run_measured(program, args, scratch, Duration::from_secs(120))?;
    let mut out = ToolRuns {
        walls: Vec::with_capacity(runs),
        max_rss_kb: None,
        stdouts: Vec::with_capacity(runs),
    };
    for _ in 0..runs.max(1) {
        let m = run_measured(program, args, scratch, Duration::from_secs(120))?;
        out.walls.push(m.wall);
        if let Some(r) = m.max_rss_kb {
            out.max_rss_kb = Some(out.max_rss_kb.map_or(r, |p| p.max(r)));
        }
        out.stdouts.push(m.stdout);
    }
    Ok(out)
}

/// A peer doing our job: its name, program, arguments and output file.
struct Peer {
    name: &'static str,
    program: PathBuf,
    args: Vec<OsString>,
    out: PathBuf,
}

/// The peers that are installed, set up for the same job: `file` to `w` x `h`, upright
/// (EXIF orientation applied), scaled to cover and centre-cropped, metadata stripped, JPEG
/// at `quality`.
fn photo_peers(
    file: &Path,
    w: u32,
    h: u32,
    quality: u8,
    scratch: &Path,
) -> (Vec<Peer>, Vec<&'static str>) {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    match find_in_path("vipsthumbnail") {
        Some(program) => {
            let out = scratch.join("vips-out.jpg");
            found.push(Peer {
                name: "vipsthumbnail (libvips)",
                program,
                args: vec![
                    file.as_os_str().to_owned(),
                    "--size".into(),
                    format!("{w}x{h}").into(),
                    "--smartcrop".into(),
                    "centre".into(),
                    "-o".into(),
                    format!("{}[Q={quality},strip]", out.display()).into(),
                ],
                out,
            });
        }
        None => missing.push("vipsthumbnail (libvips)"),
    }
    match find_imagemagick(scratch) {
        Some(program) => {
            // `-define jpeg:size` lets libjpeg decode at a reduced scale (shrink-on-load,
            // as libvips does), at least twice the size needed in the stored orientation.
            let hint = {
                let (sw, sh) = (4000u32, 3000u32); // the camera file as stored (orientation 6)
                let scale = (f64::from(w) / f64::from(sh)).max(f64::from(h) / f64::from(sw));
                format!(
                    "jpeg:size={}x{}",
                    (f64::from(sw) * scale * 2.0).ceil(),
                    (f64::from(sh) * scale * 2.0).ceil()
                )
            };
            for (name, define) in [
                ("ImageMagick", None),
                ("ImageMagick with a jpeg:size hint", Some(hint)),
            ] {
                let out = scratch.join(format!("magick-out-{}.jpg", found.len()));
                let mut args: Vec<OsString> = Vec::new();
                if let Some(d) = define {
                    args.extend(["-define".into(), d.into()]);
                }
                args.extend([
                    file.as_os_str().to_owned(),
                    "-auto-orient".into(),
                    "-resize".into(),
                    format!("{w}x{h}^").into(),
                    "-gravity".into(),
                    "center".into(),
                    "-extent".into(),
                    format!("{w}x{h}").into(),
                    "-strip".into(),
                    "-quality".into(),
                    quality.to_string().into(),
                    out.clone().into_os_string(),
                ]);
                found.push(Peer {
                    name,
                    program: program.clone(),
                    args,
                    out,
                });
            }
        }
        None => missing.push("ImageMagick"),
    }
    (found, missing)
}

fn command_line(program: &Path, args: &[OsString]) -> String {
    let mut s = program.display().to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Decimal megabytes (10^6 bytes) from KiB, as the issue's "64 MB" is read here.
fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 * 1024.0 / 1e6)
}

fn bench_photo(plan: &Plan, scratch: &Path, report: &mut Report) -> Result<()> {
    let portrait = fixtures::load_portrait()?;
    let camera = fixtures::camera_jpeg(&portrait, 4000, 3000, 6, true, 90)?;
    let file = scratch.join("camera-12mp.jpg");
    std::fs::write(&file, &camera).with_context(|| format!("writing {}", file.display()))?;
    let spec = PhotoSpec::default();
    let limits = Limits::default();

    // In process: first-touch page faults and allocator growth are not what is measured.
    let first = normalize(&camera, &spec, &limits)?;
    let mut times = Vec::with_capacity(plan.photo_runs);
    for _ in 0..plan.photo_runs {
        let start = Instant::now();
        let photo = normalize(&camera, &spec, &limits)?;
        times.push(start.elapsed());
        std::hint::black_box(photo);
    }
    let ours = median(&times);
    report.add(
        "photo",
        "ours: normalize 12 MP JPEG to 413x531, in process, median",
        ms(ours),
        format!(
            "{} runs after a warm-up; p90 {}; input 4000x3000 q90 {} with EXIF orientation 6 + GPS; output {} B at quality {} (the highest that fits the {} B budget); one thread",
            times.len(),
            ms(percentile(&times, 90.0)),
            kib(camera.len() as f64),
            first.jpeg.len(),
            first.quality,
            spec.max_bytes,
        ),
    );

    // For reference: what a full-size decode alone costs, the step shrink-on-load skips.
    let mut decode_times = Vec::with_capacity(plan.photo_runs);
    let mut decoded_bytes = 0;
    for _ in 0..plan.photo_runs {
        let start = Instant::now();
        let img = image::load_from_memory_with_format(&camera, image::ImageFormat::Jpeg)?;
        decode_times.push(start.elapsed());
        decoded_bytes = img.as_bytes().len();
        std::hint::black_box(img);
    }
    report.add(
        "photo",
        "for reference: a full 12 MP decode (image crate, zune-jpeg), which the pipeline no longer does, median",
        ms(median(&decode_times)),
        format!(
            "{} runs; the decoded frame alone is {}; ours, libvips and ImageMagick with a jpeg:size hint decode at a reduced scale inside the DCT (shrink-on-load) instead: ours with libjpeg-turbo's decoder (`mozjpeg` crate) at the strongest M/8 that leaves twice the target",
            decode_times.len(),
            mib(decoded_bytes as u64 / 1024)
        ),
    );

    // As a whole process, measured exactly as the peers are.
    let exe = std::env::current_exe().context("locating this binary")?;
    let child_args: Vec<OsString> =
        vec!["--only".into(), "photo-child".into(), file.clone().into()];
    let ours_proc = measure_tool(&exe, &child_args, plan.peer_runs, scratch)?;
    let ours_wall = median(&ours_proc.walls);
    let child_hwm = ours_proc
        .stdouts
        .iter()
        .filter_map(|s| child_value(s, "vm_hwm_kb"))
        .map(|v| v as u64)
        .max()
        .context("the photo child printed no vm_hwm_kb")?;
    let inner: Vec<Duration> = ours_proc
        .stdouts
        .iter()
        .filter_map(|s| child_value(s, "normalize_ms"))
        .map(|v| Duration::from_secs_f64(v / 1000.0))
        .collect();
    let ours_rss = ours_proc.max_rss_kb.unwrap_or(child_hwm);
    report.add(
        "photo",
        "ours: one normalization as a whole process, median wall",
        ms(ours_wall),
        format!(
            "{} runs after a warm-up of `keliling-bench --only photo-child FILE` (start, read the file, normalize once, print, exit), timed like the peers; normalize alone took {} (median) inside",
            ours_proc.walls.len(),
            ms(median(&inner)),
        ),
    );
    report.add(
        "photo",
        "ours: peak RSS of that process",
        format!("{} ({})", mib(ours_rss), mb(ours_rss)),
        format!(
            "{} (highest of the runs); the child's own VmHWM says {}",
            rss_method(),
            mib(child_hwm),
        ),
    );

    // The peers, on the same file, for the same output.
    let (peers, missing) = photo_peers(&file, spec.width, spec.height, first.quality, scratch);
    for name in missing {
        report.add(
            "photo",
            format!("{name}, same file to 413x531"),
            "not installed",
            "apt-get install -y libvips-tools imagemagick (the benchmark never installs them)",
        );
    }
    let mut vips: Option<Duration> = None;
    for peer in peers {
        let measured = measure_tool(&peer.program, &peer.args, plan.peer_runs, scratch);
        let runs = match measured {
            Ok(r) => r,
            Err(e) => {
                report.fail("photo", &format!("{} comparison", peer.name), &e);
                continue;
            }
        };
        let wall = median(&runs.walls);
        if peer.name.starts_with("vipsthumbnail") {
            vips = Some(wall);
        }
        let out_dims = image::image_dimensions(&peer.out).map_or_else(
            |e| format!("unreadable output: {e}"),
            |(w, h)| format!("{w}x{h}"),
        );
        let out_len = std::fs::metadata(&peer.out).map_or(0, |m| m.len());
        let version = if peer.name.starts_with("vips") {
            version_line(&peer.program, &["--version"])
        } else {
            version_line(&peer.program, &["-version"])
                .trim_start_matches("Version: ")
                .to_owned()
        };
        report.add(
            "photo",
            format!("{}: same file to 413x531, median wall", peer.name),
            ms(wall),
            format!(
                "{} runs after a warm-up, whole process; {version}; output {out_dims}, {out_len} B; `{}`",
                runs.walls.len(),
                command_line(&peer.program, &peer.args)
            ),
        );
        report.add(
            "photo",
            format!("{}: peak RSS", peer.name),
            runs.max_rss_kb
                .map_or_else(|| "n/a".into(), |r| format!("{} ({})", mib(r), mb(r))),
            format!("{} (highest of the runs)", rss_method()),
        );
        report.add(
            "photo",
            format!("ours / {}", peer.name),
            format!(
                "time x{:.2}, memory {}",
                ours_wall.as_secs_f64() / wall.as_secs_f64(),
                runs.max_rss_kb
                    .map_or_else(|| "n/a".into(), |r| format!("x{:.2}", ours_rss as f64 / r as f64))
            ),
            format!(
                "whole process against whole process ({} vs {}), peak RSS against peak RSS; ours in process ({}) / theirs = x{:.2}; below 1 means ours is faster or smaller; ours uses one thread, the peers may use both cores",
                ms(ours_wall),
                ms(wall),
                ms(ours),
                ours.as_secs_f64() / wall.as_secs_f64()
            ),
        );
    }
    let budget_kb = 64_000_000 / 1024;
    let time_verdict = match vips {
        Some(v) if ours_wall <= v => format!("met ({} <= libvips {})", ms(ours_wall), ms(v)),
        Some(v) => format!("NOT met ({} > libvips {})", ms(ours_wall), ms(v)),
        None => "no libvips here to compare with (DESIGN.md quotes ~0.17 s)".into(),
    };
    report.add(
        "photo",
        "target (issue 4): time at or under libvips, peak memory at most 64 MB",
        format!(
            "time {}, memory {}",
            if vips.is_some_and(|v| ours_wall <= v) { "met" } else if vips.is_some() { "NOT met" } else { "n/a" },
            if ours_rss <= budget_kb { "met" } else { "NOT met" }
        ),
        format!(
            "time: {time_verdict}, whole process each; memory: ours {} against 64 MB read strictly as 64 x 10^6 bytes ({})",
            mb(ours_rss),
            mib(budget_kb)
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Capture

/// A phone-size camera JPEG (640 x 480 stored, EXIF orientation 6, GPS) of citizen `i`,
/// as `sample::camera_photo` makes it, but certainly unique: `sample::portrait_variant`'s mark
/// often falls outside the crops (to 480 x 640, then to the 413:531 aspect), which makes
/// different citizens' photos identical. So `i` is also drawn as 16 black or white squares
/// across the middle of the portrait, inside both crops.
fn unique_phone_photo(base: &image::RgbImage, i: usize) -> Result<Vec<u8>> {
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
    Ok(fixtures::camera_jpeg(&img, 640, 480, 6, true, 88)?)
}

/// The same JPEG with a comment segment after SOI: a different file (and hash) showing the
/// same picture.
fn with_comment(jpeg: &[u8], i: usize) -> Vec<u8> {
    let text = format!("keliling-bench {i}");
    let len = u16::try_from(text.len() + 2).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(jpeg.len() + text.len() + 4);
    out.extend_from_slice(&jpeg[..2.min(jpeg.len())]);
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&jpeg[2.min(jpeg.len())..]);
    out
}

type Prepared = (Application, Vec<(Attachment, Vec<u8>)>);

fn bench_capture(plan: &Plan, scratch: &Path, report: &mut Report) -> Result<()> {
    let portrait = fixtures::load_portrait()?;
    let dir = scratch.join("capture");
    let cfg = BusConfig::for_bus(BusId::parse(BUS)?, dir.join("warm"), "127.0.0.1", 1883);
    let settings = cfg.capture_settings();
    let catalogue = Catalogue::builtin();

    // Warm-up and template: a few real captures (phone-size camera JPEGs through the pipeline).
    let vault = init_bus_store(&cfg.db_path())?;
    let mut warm = Store::open(&cfg.db_path())?;
    let mut template: Option<Application> = None;
    for i in 0..5 {
        let photo = unique_phone_photo(&portrait, i)?;
        let receipt = capture(
            &mut warm,
            &catalogue,
            &settings,
            sample::sim_renewal(i, photo),
        )?;
        template.get_or_insert(receipt.application);
    }
    let template = template.context("no application captured")?;
    let att = template
        .id_photo()
        .context("the template application has no ID photo")?
        .clone();
    let photo = warm.read_chunk(&att.sha256, 0..att.size, &vault)?;
    drop(warm);

    // M applications, each with its own photo bytes, built before the clock starts.
    let prepared: Vec<Prepared> = (0..plan.saves)
        .map(|i| {
            let bytes = with_comment(&photo, i);
            let a = Attachment {
                kind: AttachmentKind::IdPhoto,
                sha256: Sha256::digest(&bytes),
                size: bytes.len() as u64,
                media_type: MediaType::Jpeg,
            };
            let mut app = template.clone();
            app.id = ApplicationId::new_v7();
            app.attachments = vec![a.clone()];
            app.captured_at = UnixMillis::now();
            (app, vec![(a, bytes)])
        })
        .collect();
    // Saves encrypt the record and the photo to the bus key (vault.rs): part of the cost.
    init_bus_store(&dir.join("saves").join("bus.sqlite"))?;
    let mut store = Store::open(&dir.join("saves").join("bus.sqlite"))?;
    let mut latencies = Vec::with_capacity(prepared.len());
    let started = Instant::now();
    for (app, blobs) in &prepared {
        let t = Instant::now();
        store.save(app, blobs, settings.chunk_size)?;
        latencies.push(t.elapsed());
    }
    let total = started.elapsed();
    report.add(
        "capture",
        "durable saves per second (Store::save)",
        format!("{:.0} apps/s", prepared.len() as f64 / total.as_secs_f64()),
        format!(
            "{} applications with a {} ID photo each, one transaction each (WAL, synchronous=FULL) on {}",
            prepared.len(),
            kib(photo.len() as f64),
            fs_type(&dir)
        ),
    );
    report.add(
        "capture",
        "save latency, median",
        ms(median(&latencies)),
        format!(
            "p90 {}, max {}",
            ms(percentile(&latencies, 90.0)),
            ms(sorted(&latencies).last().copied().unwrap_or_default())
        ),
    );

    // The photo pipeline alone on such a phone JPEG, to tell it apart from the rest of capture().
    let phone = unique_phone_photo(&portrait, 9_999)?;
    let mut spec = PhotoSpec::default();
    if let Some(rules) = catalogue.service(&template.service)?.photo.clone() {
        spec.width = rules.width;
        spec.height = rules.height;
        spec.max_bytes = rules.max_bytes;
        spec.background = rules
            .background
            .resolve(template.applicant.date_of_birth.year())
            .map(|c| match c {
                BackgroundColour::Red => keliling_photo::Background::Red,
                BackgroundColour::Blue => keliling_photo::Background::Blue,
                BackgroundColour::White => keliling_photo::Background::White,
            });
    }
    let mut photo_times = Vec::new();
    let mut out_len = 0;
    for _ in 0..plan.captures.min(20) {
        let t = Instant::now();
        let p = normalize(&phone, &spec, &settings.photo_limits)?;
        photo_times.push(t.elapsed());
        out_len = p.jpeg.len();
    }
    report.add(
        "capture",
        "normalize a 640x480 phone JPEG, median",
        ms(median(&photo_times)),
        format!(
            "{} runs; p90 {}; output {out_len} B (the service's {} B budget)",
            photo_times.len(),
            ms(percentile(&photo_times, 90.0)),
            spec.max_bytes
        ),
    );

    // Full capture(): parse, photo pipeline on a 640x480 phone JPEG, catalogue, save.
    let inputs: Vec<CaptureInput> = (0..plan.captures)
        .map(|i| {
            let n = 10_000 + i;
            unique_phone_photo(&portrait, n).map(|p| sample::sim_renewal(n, p))
        })
        .collect::<Result<_>>()?;
    init_bus_store(&dir.join("full").join("bus.sqlite"))?;
    let mut store = Store::open(&dir.join("full").join("bus.sqlite"))?;
    let mut times = Vec::with_capacity(inputs.len());
    let started = Instant::now();
    for input in inputs {
        let t = Instant::now();
        capture(&mut store, &catalogue, &settings, input)?;
        times.push(t.elapsed());
    }
    let total = started.elapsed();
    report.add(
        "capture",
        "full capture() per second",
        format!("{:.1} apps/s", times.len() as f64 / total.as_secs_f64()),
        format!(
            "{} captures incl. normalizing a 640x480 EXIF-6 phone JPEG; median {}, p90 {}",
            times.len(),
            ms(median(&times)),
            ms(percentile(&times, 90.0))
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. Drain

/// A captured backlog, and the payloads the bus would publish for it.
struct Backlog {
    db: PathBuf,
    n: usize,
    bus_id: BusId,
    distinct_blobs: usize,
    blob_bytes: u64,
    /// Encoded `Up::Record` envelopes, one per application.
    records: Vec<Vec<u8>>,
    /// Encoded `Up::Chunk` envelopes of every blob.
    chunks: Vec<Vec<u8>>,
    full_chunk_len: usize,
}

impl Backlog {
    fn payload_bytes(&self) -> (u64, u64) {
        let sum = |v: &[Vec<u8>]| v.iter().map(|p| p.len() as u64).sum::<u64>();
        (sum(&self.records), sum(&self.chunks))
    }
}

/// Captures `n` applications with unique phone photos into a bus store under `dir`.
fn build_backlog(n: usize, dir: &Path) -> Result<Backlog> {
    let bus_id = BusId::parse(BUS)?;
    let cfg = BusConfig::for_bus(bus_id.clone(), dir.to_path_buf(), "127.0.0.1", 1883);
    let settings = cfg.capture_settings();
    let catalogue = Catalogue::builtin();
    let portrait = fixtures::load_portrait()?;
    let vault = init_bus_store(&cfg.db_path())?;
    let mut store = Store::open(&cfg.db_path())?;
    // Making the camera JPEGs is half the work: a second thread does it while this one
    // captures.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<CaptureInput>>(8);
    std::thread::scope(|s| -> Result<()> {
        let portrait = &portrait;
        s.spawn(move || {
            for i in 0..n {
                let input = unique_phone_photo(portrait, i).map(|p| sample::sim_renewal(i, p));
                if tx.send(input).is_err() {
                    return;
                }
            }
        });
        for i in 0..n {
            let input = rx.recv().context("the photo thread stopped")??;
            capture(&mut store, &catalogue, &settings, input)
                .with_context(|| format!("capture {i}"))?;
        }
        Ok(())
    })?;

    // The envelopes the bus sends for this backlog, encoded as the bus encodes them.
    let mut records = Vec::with_capacity(n);
    let mut chunks = Vec::new();
    let mut blobs = BTreeSet::new();
    let mut blob_bytes = 0;
    let mut full_chunk_len = 0;
    for id in store.queued_records(n + 1)? {
        let app = store
            .application(&id, &vault)?
            .with_context(|| format!("record {id} missing"))?;
        for att in &app.attachments {
            if !blobs.insert(att.sha256) {
                continue;
            }
            blob_bytes += att.size;
            for index in 0..chunk_count(att.size, settings.chunk_size) {
                let data = store.read_chunk(
                    &att.sha256,
                    chunk_range(att.size, settings.chunk_size, index),
                    &vault,
                )?;
                let full = data.len() == settings.chunk_size as usize;
                let chunk = Chunk {
                    blob: att.sha256,
                    total_size: att.size,
                    chunk_size: settings.chunk_size,
                    index,
                    data,
                };
                let bytes = UpEnvelope::new(bus_id.clone(), Up::Chunk(chunk)).encode()?;
                if full {
                    full_chunk_len = full_chunk_len.max(bytes.len());
                }
                chunks.push(bytes);
            }
        }
        records.push(UpEnvelope::new(bus_id.clone(), Up::Record(Box::new(app))).encode()?);
    }
    if records.len() != n {
        bail!(
            "the backlog store holds {} queued applications, expected {n}",
            records.len()
        );
    }
    Ok(Backlog {
        db: cfg.db_path(),
        n,
        bus_id,
        distinct_blobs: blobs.len(),
        blob_bytes,
        records,
        chunks,
        full_chunk_len,
    })
}

struct DrainOutcome {
    secs: f64,
    bytes_published: u64,
    records_sent: u64,
    chunks_sent: u64,
    connects: u64,
    /// TCP bytes bus to broker and back, when run through the proxy.
    tcp: Option<(u64, u64)>,
    hq_chunks_duplicate: u64,
    hq_records_duplicate: u64,
    /// CPU time this process (bus, HQ and, when embedded, the broker) used during the drain.
    cpu_secs: f64,
}

/// Drains a copy of the backlog to a fresh HQ through the broker on `broker_port`.
async fn drain_once(
    backlog: &Backlog,
    sync: &bus_node::config::SyncConfig,
    broker: &BenchBroker,
    via_proxy: bool,
    dir: &Path,
    timeout: Duration,
) -> Result<DrainOutcome> {
    let n = backlog.n as u64;
    let bus_dir = dir.join("bus");
    let db = bus_dir.join("bus.sqlite");
    copy_db(&backlog.db, &db)?;
    let hq_dir = dir.join("hq");
    let InProcessHq {
        metrics: hq_metrics,
        stop: stop_tx,
        task: hq,
    } = InProcessHq::spawn(broker.hq_config(&hq_dir)).await?;
    let stop_rx = stop_tx.subscribe();
    // Its subscriptions go out right after the CONNACK; give the broker a moment to apply them.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let proxy = if via_proxy {
        Some(LinkProxy::start(([127, 0, 0, 1], broker.port()).into()).await?)
    } else {
        None
    };
    let port = proxy.as_ref().map_or(broker.port(), LinkProxy::port);
    // The bus's own certificate (provisioned in this broker's PKI), as in production.
    let mut cfg = broker.bus_config(&backlog.bus_id, bus_dir, port)?;
    cfg.sync = sync.clone();
    let metrics = Arc::new(SyncMetrics::default());
    let cpu_before = process_cpu_secs();
    let started = Instant::now();
    // The copy keeps the backlog's key (meta is copied with it): unlock it as a shift would.
    let vault = init_bus_store(&db)?;
    let mut bus = tokio::spawn(bus_node::daemon::run(
        cfg,
        vault,
        metrics.clone(),
        stop_rx.clone(),
    ));
    let deadline = started + timeout;
    loop {
        if SyncMetrics::get(&metrics.delivered) >= n {
            break;
        }
        if bus.is_finished() {
            let why = why_ended(&mut bus).await;
            bail!("the bus sync stopped before the backlog was delivered: {why}");
        }
        if hq.is_finished() {
            bail!("HQ ingest stopped before the backlog was delivered");
        }
        if Instant::now() > deadline {
            bail!(
                "drain timed out after {timeout:?}: {} of {n} delivered ({} records, {} chunks sent; HQ: {} new records, {} blobs stored)",
                SyncMetrics::get(&metrics.delivered),
                SyncMetrics::get(&metrics.records_sent),
                SyncMetrics::get(&metrics.chunks_sent),
                IngestMetrics::get(&hq_metrics.records_new),
                IngestMetrics::get(&hq_metrics.blobs_stored),
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_secs = process_cpu_secs() - cpu_before;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), bus).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), hq).await;
    let tcp = proxy.map(|p| {
        let counts = (p.bytes_up(), p.bytes_down());
        p.shutdown();
        counts
    });

    // Audit, as the e2e tests do: every application at HQ once, complete, same hashes.
    let status = Store::open(&db)?.status()?;
    if status.delivered != n {
        bail!("the bus store says {} of {n} delivered", status.delivered);
    }
    assert_exactly_once(&[&db], &hq_dir, backlog.n)
        .context("exactly-once audit after the drain")?;
    Ok(DrainOutcome {
        secs,
        bytes_published: SyncMetrics::get(&metrics.bytes_published),
        records_sent: SyncMetrics::get(&metrics.records_sent),
        chunks_sent: SyncMetrics::get(&metrics.chunks_sent),
        connects: SyncMetrics::get(&metrics.connects),
        tcp,
        hq_chunks_duplicate: IngestMetrics::get(&hq_metrics.chunks_duplicate),
        hq_records_duplicate: IngestMetrics::get(&hq_metrics.records_duplicate),
        cpu_secs,
    })
}

fn drain_notes(backlog: &Backlog, o: &DrainOutcome) -> String {
    let resent = o.records_sent.saturating_sub(backlog.n as u64)
        + o.chunks_sent.saturating_sub(backlog.chunks.len() as u64);
    format!(
        "{:.0} apps/s, {:.2} MB/s of payload; this process used {:.1} CPU-s ({:.2} cores); sent {} records + {} chunks (backlog: {} + {}; {} re-sent), {} connect(s); HQ saw {} duplicate records, {} duplicate chunks; audited exactly-once",
        backlog.n as f64 / o.secs,
        o.bytes_published as f64 / o.secs / 1e6,
        o.cpu_secs,
        o.cpu_secs / o.secs,
        o.records_sent,
        o.chunks_sent,
        backlog.n,
        backlog.chunks.len(),
        resent,
        o.connects,
        o.hq_records_duplicate,
        o.hq_chunks_duplicate,
    )
}

/// Our drain of a copy of the backlog through a fresh broker of `kind`.
async fn drain_on(
    kind: Kind,
    security: Security,
    via_proxy: bool,
    backlog: &Backlog,
    plan: &Plan,
    dir: &Path,
    timeout: Duration,
) -> Result<(DrainOutcome, String)> {
    let broker = BenchBroker::start(kind, security, &dir.join("broker")).await?;
    let o = drain_once(backlog, &plan.sync, &broker, via_proxy, dir, timeout).await?;
    Ok((o, broker.label()))
}

fn slug(kind: Kind, security: Security) -> String {
    let k = match kind {
        Kind::Embedded => "embedded",
        Kind::Mosquitto => "mosquitto",
    };
    match security {
        Security::MutualTls => k.to_owned(),
        Security::Plaintext => format!("{k}-plain"),
    }
}

async fn bench_drain(plan: &Plan, scratch: &Path, report: &mut Report) -> Result<()> {
    let dir = scratch.join("drain");
    let n = plan.backlog;
    let build_started = Instant::now();
    let backlog = {
        let d = dir.join("backlog");
        tokio::task::block_in_place(|| build_backlog(n, &d))?
    };
    let (record_bytes, chunk_bytes) = backlog.payload_bytes();
    eprintln!(
        "[drain] backlog of {n} captured in {:.1} s",
        build_started.elapsed().as_secs_f64()
    );
    report.add(
        "drain",
        "backlog",
        format!("{n} applications"),
        format!(
            "SIM renewals, each with its own phone photo, via capture(); {} distinct photo blobs, mean {} each; {} chunks of at most {} B (envelope {} B); bus sync settings: record_window {}, chunk_window {}, tick {} ms, resend after {} ms; every run on a fresh broker with a fresh fleet PKI: TLS 1.3, the bus and HQ each with its own client certificate (Mosquitto: require_certificate, use_identity_as_username, the shipped ACL, the CRL)",
            backlog.distinct_blobs,
            kib(backlog.blob_bytes as f64 / backlog.distinct_blobs.max(1) as f64),
            backlog.chunks.len(),
            plan.sync.chunk_bytes,
            backlog.full_chunk_len,
            plan.sync.record_window,
            plan.sync.chunk_window,
            plan.sync.tick_ms,
            plan.sync.resend_after_ms,
        ),
    );
    if backlog.distinct_blobs != n {
        bail!("only {} of the {n} photos in the backlog are distinct; every application must carry its own", backlog.distinct_blobs);
    }
    let timeout = Duration::from_secs(60) + Duration::from_millis(250) * n as u32;
    let securities: &[Security] = if plan.plaintext {
        &[Security::MutualTls, Security::Plaintext]
    } else {
        &[Security::MutualTls]
    };
    let mosquitto = Mosquitto::require()?.is_some();
    if !mosquitto {
        report.add(
            "drain",
            "Mosquitto runs",
            "not installed",
            "apt-get install -y mosquitto mosquitto-clients to compare",
        );
    }

    // Our drains: embedded broker, embedded through the counting proxy (mTLS only), Mosquitto.
    let mut ours_mosq: Vec<(Security, f64)> = Vec::new();
    let mut embedded_payload: Option<u64> = None;
    for &security in securities {
        let mut runs = vec![(Kind::Embedded, false)];
        if security == Security::MutualTls {
            runs.push((Kind::Embedded, true));
        }
        if mosquitto {
            runs.push((Kind::Mosquitto, false));
        }
        for (kind, via_proxy) in runs {
            let run_dir = dir.join(format!(
                "{}{}",
                slug(kind, security),
                if via_proxy { "-proxy" } else { "" }
            ));
            let result =
                drain_on(kind, security, via_proxy, &backlog, plan, &run_dir, timeout).await;
            let (o, label) = match result {
                Ok(r) => r,
                Err(e) => {
                    report.fail(
                        "drain",
                        &format!(
                            "drain via {}, {}{}",
                            kind.label(),
                            security.label(),
                            if via_proxy { ", through LinkProxy" } else { "" }
                        ),
                        &e,
                    );
                    continue;
                }
            };
            if !via_proxy {
                report.add(
                    "drain",
                    format!("{n} apps to HQ, {label}"),
                    format!("{:.2} s", o.secs),
                    drain_notes(&backlog, &o),
                );
                if kind == Kind::Mosquitto {
                    ours_mosq.push((security, o.secs));
                }
                if kind == Kind::Embedded && security == Security::MutualTls {
                    embedded_payload = Some(o.bytes_published);
                }
                continue;
            }
            report.add(
                "drain",
                format!("{n} apps to HQ, {label}, through LinkProxy"),
                format!("{:.2} s", o.secs),
                format!(
                    "the byte-counting run (an extra in-process TCP hop); {}",
                    drain_notes(&backlog, &o)
                ),
            );
            let per_app = |b: u64| b as f64 / n as f64;
            let payload = embedded_payload.unwrap_or(o.bytes_published);
            report.add(
                "wire",
                "payload bytes published per application",
                kib(per_app(payload)),
                format!(
                    "SyncMetrics::bytes_published / {n} (records + chunks + queries + heartbeats); of which records {} and chunks {} per application (the encoded envelopes)",
                    kib(per_app(record_bytes)),
                    kib(per_app(chunk_bytes)),
                ),
            );
            if let Some((up, down)) = o.tcp {
                report.add(
                    "wire",
                    "TCP bytes up per application (bus to broker), TLS 1.3",
                    kib(per_app(up)),
                    format!(
                        "counted by LinkProxy: TLS records carrying MQTT framing, PUBACKs to HQ's answers, pings, the handshake and connect; {:.2}% over the payload",
                        (up as f64 / o.bytes_published.max(1) as f64 - 1.0) * 100.0
                    ),
                );
                report.add(
                    "wire",
                    "TCP bytes down per application (broker to bus), TLS 1.3",
                    kib(per_app(down)),
                    "HQ's answers (record acks, progress, blob stored, delivered) and the broker's PUBACKs, in TLS records",
                );
            }
        }
    }

    // mosquitto_pub with the same bytes at QoS 1, each on a fresh Mosquitto of the same kind.
    if !mosquitto {
        return Ok(());
    }
    let Some(pub_bin) = find_in_path("mosquitto_pub") else {
        report.add(
            "drain",
            "mosquitto_pub",
            "not installed",
            "apt-get install -y mosquitto-clients to compare",
        );
        return Ok(());
    };
    let inflight = plan.sync.record_window + plan.sync.chunk_window;
    let tools = PeerTools {
        pub_bin,
        sub_bin: find_in_path("mosquitto_sub"),
        inflight,
    };
    for &security in securities {
        // Over TLS, stop-and-wait measures Nagle, not the broker: a 16449-byte chunk spans
        // two TLS records (16384 bytes at most each), and libmosquitto (no TCP_NODELAY)
        // holds the small second one until the broker's delayed ACK, ~45 ms per message.
        let modes: &[PeerMode] = match security {
            Security::MutualTls => &[PeerMode::Lines],
            Security::Plaintext => &[PeerMode::Lines, PeerMode::Repeat],
        };
        for &mode in modes {
            let run_dir = dir.join(format!(
                "peer-{}-{}",
                mode.slug(),
                slug(Kind::Mosquitto, security)
            ));
            let result = async {
                let broker =
                    BenchBroker::start(Kind::Mosquitto, security, &run_dir.join("broker")).await?;
                tokio::task::block_in_place(|| {
                    run_peer(&backlog, mode, &tools, &broker, &run_dir, timeout)
                })
            }
            .await;
            let what = format!(
                "mosquitto_pub, same bytes, Mosquitto, {}, {}",
                security.label(),
                mode.label(inflight)
            );
            match result {
                Ok(p) => {
                    let ratio = ours_mosq.iter().find(|(s, _)| *s == security).map_or_else(
                        || "n/a (our Mosquitto drain failed)".into(),
                        |(_, o)| format!("ours / mosquitto_pub = {:.2}", o / p.secs),
                    );
                    report.add(
                        "drain",
                        what,
                        format!("{:.2} s", p.secs),
                        format!(
                            "{ratio} (same broker kind and security; mosquitto_pub waits only for PUBACKs, ours for HQ's durable commit and delivery ack, end to end); {}; {}; {} messages, {:.1} MB; {}",
                            match security {
                                Security::MutualTls => "mosquitto_pub connects with the bus's certificate (--cafile --cert --key) and publishes under that bus's up/ topics, the subscriber with HQ's; the stop-and-wait mode (-f --repeat) runs only with --plaintext: over TLS a 16449-byte chunk spans two TLS records and libmosquitto, without TCP_NODELAY, holds the small second one until the broker's delayed ACK (~45 ms a message: Nagle, not the broker)",
                                Security::Plaintext => "plain TCP, anonymous",
                            },
                            mode.describe(inflight),
                            p.messages,
                            p.bytes as f64 / 1e6,
                            p.sub_secs.map_or_else(
                                || "no subscriber".into(),
                                |s| format!("a mosquitto_sub (QoS 1) subscriber had every message after {s:.2} s")
                            ),
                        ),
                    );
                }
                Err(e) => report.fail("drain", &what, &e),
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The mosquitto_pub peer

#[derive(Clone, Copy, Debug)]
enum PeerMode {
    /// One process, `-l`: every message with its exact size, pipelined.
    Lines,
    /// One process per size class, `-f FILE --repeat N`: stop-and-wait.
    Repeat,
}

impl PeerMode {
    fn slug(self) -> &'static str {
        match self {
            PeerMode::Lines => "lines",
            PeerMode::Repeat => "repeat",
        }
    }
    fn label(self, inflight: usize) -> String {
        match self {
            PeerMode::Lines => format!("-l (pipelined, -M {inflight})"),
            PeerMode::Repeat => "-f --repeat per size class".into(),
        }
    }
    fn describe(self, inflight: usize) -> String {
        match self {
            PeerMode::Lines => format!(
                "one `mosquitto_pub -q 1 -M {inflight} -l` process reads every record and chunk envelope as one stdin line, exact sizes, \
                 with bytes 0x00 and 0x0A rewritten (0x01, 0x0B) because -l splits at newlines and stops at NUL; \
                 -M {inflight} = the bus's record_window + chunk_window; mosquitto_pub's own 100 ms polls at start and end are included"
            ),
            PeerMode::Repeat => "one `mosquitto_pub -q 1 -f FILE --repeat N --repeat-delay 0` per size class (records, full chunks, last chunks): \
                 N messages of the class's mean size, same count and total bytes; --repeat sends the next message only after the \
                 PUBACK of the previous (one in flight)"
                .into(),
        }
    }
}

struct PeerOutcome {
    secs: f64,
    sub_secs: Option<f64>,
    messages: usize,
    bytes: u64,
}

/// A subscriber standing in for HQ: `mosquitto_sub` at QoS 1, its output counted. It prints
/// each payload and a newline, so the bytes it writes tell when everything has arrived.
struct Subscriber {
    child: std::process::Child,
    first_byte: std::sync::mpsc::Receiver<()>,
    done: std::sync::mpsc::Receiver<Instant>,
    /// Output bytes that mean "all arrived"; 0 until the publishers start.
    target: Arc<AtomicU64>,
    seen: Arc<AtomicU64>,
}

impl Subscriber {
    /// Subscribes to `filter`, connected with `connect` (host, port, TLS files).
    fn start(bin: &Path, connect: &[String], filter: &str) -> Result<Subscriber> {
        let mut child = Command::new(bin)
            .args(connect)
            .args(["-q", "1", "-i", hq_sync::pki::FIRST_HQ, "-t", filter])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let mut out = child.stdout.take().context("mosquitto_sub has no stdout")?;
        let (first_tx, first_byte) = std::sync::mpsc::channel();
        let (done_tx, done) = std::sync::mpsc::channel();
        let target = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(AtomicU64::new(0));
        let (t, s) = (target.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut finished = false;
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    return;
                }
                let total = s.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                let _ = first_tx.send(());
                let want = t.load(Ordering::Relaxed);
                if !finished && want > 0 && total >= want {
                    finished = true;
                    let _ = done_tx.send(Instant::now());
                }
            }
        });
        Ok(Subscriber {
            child,
            first_byte,
            done,
            target,
            seen,
        })
    }

    /// From now on, `more` further output bytes mean everything has arrived.
    fn expect_bytes(&self, more: u64) {
        self.target
            .store(self.seen.load(Ordering::Relaxed) + more, Ordering::Relaxed);
    }

    /// When the last expected byte arrived.
    fn wait(&self, timeout: Duration) -> Result<Instant> {
        self.done.recv_timeout(timeout).map_err(|_| {
            anyhow!(
                "mosquitto_sub had {} of {} bytes after {timeout:?}",
                self.seen.load(Ordering::Relaxed),
                self.target.load(Ordering::Relaxed)
            )
        })
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes once with mosquitto_pub and waits for it; fails on a non-zero exit.
fn mosquitto_pub_once(
    pub_bin: &Path,
    args: &[String],
    stdin: Option<&Path>,
    timeout: Duration,
) -> Result<()> {
    let mut cmd = Command::new(pub_bin);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    match stdin {
        Some(p) => {
            cmd.stdin(std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?)
        }
        None => cmd.stdin(Stdio::null()),
    };
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", pub_bin.display()))?;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("mosquitto_pub did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        bail!("mosquitto_pub failed ({status}): {}", err.trim());
    }
    Ok(())
}

/// The Mosquitto clients, and the QoS 1 window `-l` mode gets.
struct PeerTools {
    pub_bin: PathBuf,
    sub_bin: Option<PathBuf>,
    inflight: usize,
}

fn run_peer(
    backlog: &Backlog,
    mode: PeerMode,
    tools: &PeerTools,
    broker: &BenchBroker,
    dir: &Path,
    timeout: Duration,
) -> Result<PeerOutcome> {
    let (pub_bin, sub_bin, inflight) = (
        tools.pub_bin.as_path(),
        tools.sub_bin.as_deref(),
        tools.inflight,
    );
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let topics = Topics::default();
    let record_topic = topics.up(&backlog.bus_id, UpKind::Record);
    let chunk_topic = topics.up(&backlog.bus_id, UpKind::Chunk);
    // Connected as the bus (its certificate, with mTLS), publishing under its up/ topics.
    let as_bus = broker.mosquitto_client_args(&Who::Bus(backlog.bus_id.clone()))?;
    let base = |topic: &str, max_inflight: &str| -> Vec<String> {
        let mut args = as_bus.clone();
        args.extend(
            ["-q", "1", "-M", max_inflight, "-t", topic]
                .iter()
                .map(|s| s.to_string()),
        );
        args
    };
    let messages = backlog.records.len() + backlog.chunks.len();

    // Runs: (args, stdin file), prepared before the clock starts.
    let mut runs: Vec<(Vec<String>, Option<PathBuf>)> = Vec::new();
    let mut bytes = 0u64;
    match mode {
        PeerMode::Lines => {
            let path = dir.join("all.lines");
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?,
            );
            for p in backlog.records.iter().chain(&backlog.chunks) {
                let line: Vec<u8> = p
                    .iter()
                    .map(|&b| match b {
                        0x00 => 0x01,
                        b'\n' => 0x0B,
                        b => b,
                    })
                    .collect();
                f.write_all(&line)?;
                f.write_all(b"\n")?;
                bytes += line.len() as u64;
            }
            f.flush()?;
            let mut args = base(&chunk_topic, &inflight.to_string());
            args.push("-l".into());
            runs.push((args, Some(path)));
        }
        PeerMode::Repeat => {
            let full = backlog.full_chunk_len;
            let (full_chunks, last_chunks): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) =
                backlog.chunks.iter().partition(|c| c.len() == full);
            let classes: [(&str, &str, Vec<&Vec<u8>>); 3] = [
                ("records", &record_topic, backlog.records.iter().collect()),
                ("full-chunks", &chunk_topic, full_chunks),
                ("last-chunks", &chunk_topic, last_chunks),
            ];
            for (name, topic, class) in classes {
                if class.is_empty() {
                    continue;
                }
                let total: u64 = class.iter().map(|p| p.len() as u64).sum();
                let mean = usize::try_from(total.div_ceil(class.len() as u64))?;
                let mut payload = class[0].clone();
                payload.resize(mean, 0);
                let path = dir.join(format!("{name}.bin"));
                std::fs::write(&path, &payload)
                    .with_context(|| format!("writing {}", path.display()))?;
                bytes += (mean * class.len()) as u64;
                let mut args = base(topic, "1");
                args.extend([
                    "-f".into(),
                    path.display().to_string(),
                    "--repeat".into(),
                    class.len().to_string(),
                    "--repeat-delay".into(),
                    "0".into(),
                ]);
                runs.push((args, None));
            }
        }
    }

    // A subscriber, as HQ is one in our runs: the broker then forwards every message.
    let filter = format!("{}/bus/+/up/+", topics.prefix());
    let sub = match sub_bin {
        Some(bin) => {
            let sub = Subscriber::start(bin, &broker.mosquitto_client_args(&Who::Hq)?, &filter)?;
            // Probe messages prove the subscription is in place before the clock starts.
            let probe_topic = topics.up(&backlog.bus_id, UpKind::Status);
            let probe_deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let mut probe = base(&probe_topic, "1");
                probe.extend(["-m".into(), "probe".into()]);
                mosquitto_pub_once(pub_bin, &probe, None, Duration::from_secs(10))?;
                if sub
                    .first_byte
                    .recv_timeout(Duration::from_millis(500))
                    .is_ok()
                {
                    break;
                }
                if Instant::now() > probe_deadline {
                    bail!("mosquitto_sub never received the probe message");
                }
            }
            // Let any late probe copies arrive, then count from here: payload plus a newline
            // per message.
            std::thread::sleep(Duration::from_millis(300));
            sub.expect_bytes(bytes + messages as u64);
            Some(sub)
        }
        None => None,
    };

    let started = Instant::now();
    for (args, stdin) in &runs {
        let left = timeout.saturating_sub(started.elapsed());
        mosquitto_pub_once(pub_bin, args, stdin.as_deref(), left)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let sub_secs = match &sub {
        Some(s) => Some(
            s.wait(Duration::from_secs(60))?
                .duration_since(started)
                .as_secs_f64(),
        ),
        None => None,
    };
    Ok(PeerOutcome {
        secs,
        sub_secs,
        messages,
        bytes,
    })
}
