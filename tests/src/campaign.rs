//! The fault-injection campaign (`keliling-campaign`, `tests/tests/campaign.rs`): buses
//! capture and sync while faults land at random moments, then everything heals and the
//! result is audited.
//!
//! What runs: a broker (`hq-sync broker` or Mosquitto, each with a fresh fleet PKI), HQ
//! (`hq-sync run`) and one `bus-node run` per bus, all real processes, each bus behind its
//! own [`LinkProxy`]. Captures happen in this process through the `bus_node` library, into
//! each bus's store while its daemon runs (WAL SQLite), as the operator's screen would; an
//! application counts as receipted only when `capture` returned `Ok`.
//!
//! The faults, drawn from a seeded RNG (the first ones tour every kind once, so even a
//! short run has each):
//! - `kill -9` of a bus node, of HQ, of the broker; each restarted after a short random
//!   delay (the broker on the same port; Mosquitto from its persistence file, the embedded
//!   broker with nothing, by design);
//! - a bus's link cut (connections reset; one cut in four is a dead zone of 10 to 30 s, so
//!   a backlog builds), stalled (open, no byte moves) or slow (1.5 to 64 KB/s, with delay),
//!   through its proxy, and restored later;
//! - duplicate and reordered deliveries: a client holding the bus's own certificate (and,
//!   since brokers tie the client id to it, taking the bus's session over for a moment)
//!   publishes copies of the bus's real record and chunk envelopes (built from its store
//!   with the unlocked vault), shuffled. Chunks only of applications whose record HQ has
//!   acknowledged: before that, HQ rightly quarantines a chunk nobody announced;
//! - a full disk on the bus: the capturing connection may not grow the database
//!   ([`Store::simulate_full_disk`]), so a capture fails with `SQLITE_FULL` and must leave
//!   nothing behind; captures after the disk is freed succeed;
//! - a full disk at HQ: HQ's data lives on a small tmpfs of its own (where the campaign
//!   may mount one: root, as in CI), filled to just under HQ's free-space floor (HQ
//!   refuses new data and resumes by itself) or to the brim (sled meets ENOSPC and HQ
//!   exits loudly; the campaign restarts it as its supervisor would), then freed.
//!
//! Meanwhile HQ staff decide (through HQ's store, as the console does): approvals,
//! rejections (confirmed by a second person where the service needs it), requests for
//! more information, and changes of earlier decisions (new versions).
//!
//! After the storm everything heals, the buses drain (bounded), and the audit checks what
//! was promised: every decision's newest version is in force on its bus, confirmed at HQ,
//! and no bus holds a version HQ did not make; every receipted application is at HQ exactly once, complete, with the
//! attachment hashes of the receipt and photo files that verify; HQ holds nothing that got
//! no receipt; every bus holds exactly its receipted applications, each confirmed
//! delivered; no outbox waits; nothing was quarantined; no process died by itself.
//!
//! The schedule (kinds, targets, delays, shapes) follows from the seed; what the processes
//! do in between depends on timing, so a seed reproduces the storm, not every interleaving.

use crate::harness::{init_bus_store, BrokerKind, Daemon, Identity, StoreKind, TestBroker};
use crate::procstat;
use crate::proxy::{LinkProxy, Shape};
use crate::sample;
use anyhow::{bail, Context, Result};
use bus_node::capture::{capture, CaptureError, CaptureSettings};
use bus_node::store::{OutboxState, Store, StoreError};
use bus_node::UnlockedVault;
use hq_sync::photos::Blobs;
use hq_sync::store::HqStore;
use keliling_shared::topics::{Topics, UpKind};
use keliling_shared::wire::{chunk_count, chunk_range, Chunk, Up, UpEnvelope};
use keliling_shared::{ApplicationId, BusId, Catalogue, Sha256};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Chunk size of every attachment the campaign captures: small, so a photo is several
/// chunks and a document scan many, and cuts land mid-blob.
const CHUNK_BYTES: u32 = 16 * 1024;

/// At most this many violations of one kind are listed; the rest are counted.
const MAX_LISTED: usize = 12;

/// What a campaign run does.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    /// How long faults are injected (captures run as long); draining comes after.
    pub duration: Duration,
    pub buses: usize,
    pub broker: BrokerKind,
    /// Mean time between two faults (exponentially distributed).
    pub fault_every: Duration,
    /// Mean time between two captures on one bus.
    pub capture_every: Duration,
    /// How long the healed system may take to deliver everything.
    pub drain_timeout: Duration,
    /// Keep stores, logs and brokers here (kept afterwards); a temporary directory, removed
    /// unless the run failed, when `None`.
    pub work_dir: Option<PathBuf>,
    /// Print a progress line to stderr every this often.
    pub progress_every: Option<Duration>,
    /// HQ workers (`hq-1`, `hq-2`, ...) sharing the store; `kill -9 HQ` takes one.
    pub workers: usize,
    /// HQ's store. On PostgreSQL the campaign also drops HQ's database connections.
    pub store: StoreKind,
}

impl Options {
    /// The short schedule CI runs: 45 s of storm, a fault every 0.9 s on average (about 50).
    pub fn ci(broker: BrokerKind, seed: u64) -> Options {
        Options {
            seed,
            duration: Duration::from_secs(45),
            buses: 3,
            broker,
            fault_every: Duration::from_millis(900),
            capture_every: Duration::from_millis(400),
            drain_timeout: Duration::from_secs(150),
            work_dir: None,
            progress_every: None,
            workers: 1,
            store: crate::harness::default_store(),
        }
    }

    /// The country-scale set-up (issue 12): a 3-node NATS cluster, HQ on PostgreSQL with
    /// three workers, 20 buses; nodes, workers and PostgreSQL connections killed at random
    /// moments among the usual faults. CI's short schedule.
    pub fn ci_cluster(seed: u64) -> Options {
        Options {
            seed,
            duration: Duration::from_secs(40),
            buses: 20,
            broker: BrokerKind::NatsCluster,
            fault_every: Duration::from_millis(800),
            capture_every: Duration::from_millis(2500),
            drain_timeout: Duration::from_secs(240),
            work_dir: None,
            progress_every: None,
            workers: 3,
            store: StoreKind::Postgres,
        }
    }
}

/// A seed from the clock, for runs that were not given one (always printed).
pub fn seed_from_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32))
        .unwrap_or(0x6b656c696c696e67)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    KillBus,
    KillHq,
    KillBroker,
    LinkCut,
    LinkStall,
    LinkSlow,
    Replay,
    FullDisk,
    HqFullDisk,
    /// Every PostgreSQL connection of HQ's workers terminated by the server
    /// (`pg_terminate_backend`), as a failover or a restart of the database does.
    PgDrop,
}

impl FaultKind {
    pub const ALL: [FaultKind; 10] = [
        FaultKind::KillBus,
        FaultKind::KillHq,
        FaultKind::KillBroker,
        FaultKind::LinkCut,
        FaultKind::LinkStall,
        FaultKind::LinkSlow,
        FaultKind::Replay,
        FaultKind::FullDisk,
        FaultKind::HqFullDisk,
        FaultKind::PgDrop,
    ];

    /// The kinds a run with these options injects (dropped database connections only
    /// with HQ on PostgreSQL).
    pub fn of(opts: &Options) -> Vec<FaultKind> {
        FaultKind::ALL
            .into_iter()
            .filter(|k| *k != FaultKind::PgDrop || opts.store == StoreKind::Postgres)
            .collect()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::KillBus => "kill -9 bus node",
            FaultKind::KillHq => "kill -9 HQ",
            FaultKind::KillBroker => "kill -9 broker",
            FaultKind::LinkCut => "link cut",
            FaultKind::LinkStall => "link stall",
            FaultKind::LinkSlow => "slow link",
            FaultKind::Replay => "duplicate + reordered deliveries",
            FaultKind::FullDisk => "full disk on a bus",
            FaultKind::HqFullDisk => "full disk at HQ",
            FaultKind::PgDrop => "PostgreSQL connections dropped",
        }
    }

    /// Relative frequency in the random part of the schedule.
    fn weight(self) -> u32 {
        match self {
            FaultKind::KillBus => 3,
            FaultKind::KillHq => 2,
            FaultKind::KillBroker => 1,
            FaultKind::LinkCut => 3,
            FaultKind::LinkStall => 2,
            FaultKind::LinkSlow => 2,
            FaultKind::Replay => 3,
            FaultKind::FullDisk => 2,
            FaultKind::HqFullDisk => 1,
            FaultKind::PgDrop => 1,
        }
    }
}

/// One injected fault.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Since the storm began.
    pub at: Duration,
    pub kind: FaultKind,
    pub target: String,
    pub detail: String,
}

/// What happened, in numbers.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub capture_attempts: u64,
    pub receipted: u64,
    /// Captures refused with `SQLITE_FULL` during a full disk: no receipt, nothing saved.
    pub failed_full_disk: u64,
    /// Captures that failed for any other reason (each is a violation).
    pub failed_other: u64,
    /// Captures that succeeded while the disk was "full" (SQLite found room in free pages).
    pub receipted_while_full: u64,
    /// Applications the buses hold as delivered at the end.
    pub delivered: u64,
    /// Receipted applications missing or incomplete at HQ.
    pub lost: u64,
    /// Extra copies of one citizen's application at HQ.
    pub duplicated: u64,
    /// Applications at HQ that no capture receipted.
    pub unreceipted_at_hq: u64,
    pub hq_applications: u64,
    pub hq_blobs: u64,
    /// Record and chunk publishes a QoS 0 tap at the broker saw (a lower bound: it misses
    /// what arrives while its own connection is down).
    pub tap_records: u64,
    pub tap_distinct_records: u64,
    pub tap_chunks: u64,
    pub tap_distinct_chunks: u64,
    /// HQ's loud exits during full-disk faults at HQ, each restarted (as a supervisor
    /// would): its designed answer when its staging store meets ENOSPC.
    pub hq_supervisor_restarts: u64,
    /// Broker sessions the buses ended because HQ stayed silent on a live link
    /// (`reset_if_deaf`), counted in their logs.
    pub session_resets: u64,
    /// Copies published by the replay fault, and how many the broker acknowledged.
    pub replayed: u64,
    pub replay_acked: u64,
    /// Bus connections through the proxies, and those refused while cut.
    pub connections: u64,
    pub connections_refused: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Decisions HQ staff made during the storm (each a version), of which changes of an
    /// earlier decision; and how many are in force on their bus as HQ made them.
    pub decisions: u64,
    pub decisions_changed: u64,
    /// Applications with a decision, and how many of them have its newest version in
    /// force on their bus.
    pub decided_applications: u64,
    pub decisions_on_buses: u64,
    /// Decisions HQ's store refused (decided meanwhile, a photo still missing for an
    /// approval, its disk full): nothing was written for them.
    pub decisions_refused: u64,
}

impl Counts {
    /// Copies of a record or chunk published after the first (seen by the tap at the
    /// broker): the audit proves HQ kept exactly one of each.
    pub fn duplicates_at_hq(&self) -> u64 {
        (self.tap_records - self.tap_distinct_records)
            + (self.tap_chunks - self.tap_distinct_chunks)
    }

    /// Re-sends by the buses themselves: the duplicates minus the injected copies.
    pub fn resends(&self) -> u64 {
        self.duplicates_at_hq().saturating_sub(self.replay_acked)
    }
}

/// The outcome of one campaign run.
#[derive(Debug, Clone)]
pub struct Report {
    pub opts: Options,
    pub faults: Vec<Fault>,
    pub counts: Counts,
    pub violations: Vec<String>,
    pub storm: Duration,
    pub drain: Duration,
    pub total: Duration,
    /// Where the stores, logs and brokers are, if kept.
    pub kept_dir: Option<PathBuf>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn faults_by_kind(&self) -> BTreeMap<FaultKind, usize> {
        let mut m = BTreeMap::new();
        for f in &self.faults {
            *m.entry(f.kind).or_insert(0) += 1;
        }
        m
    }

    fn broker_name(&self) -> &'static str {
        match self.opts.broker {
            BrokerKind::Embedded => "embedded (hq-sync broker, rumqttd)",
            BrokerKind::Mosquitto => "Mosquitto",
            BrokerKind::NatsCluster => "NATS cluster (3 nodes of nats-server 2.10)",
        }
    }

    /// The command that re-runs this schedule.
    pub fn rerun_command(&self) -> String {
        format!(
            "keliling-campaign --seed {} --duration {} --buses {} --broker {} --fault-every {} --capture-every {} --workers {} --store {}",
            self.opts.seed,
            fmt_duration_arg(self.opts.duration),
            self.opts.buses,
            match self.opts.broker {
                BrokerKind::Embedded => "embedded",
                BrokerKind::Mosquitto => "mosquitto",
                BrokerKind::NatsCluster => "nats-cluster",
            },
            fmt_duration_arg(self.opts.fault_every),
            fmt_duration_arg(self.opts.capture_every),
            self.opts.workers,
            match self.opts.store {
                StoreKind::Sqlite => "sqlite",
                StoreKind::Postgres => "postgres",
            },
        )
    }

    /// A plain-text summary for a terminal or a test log.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "campaign, broker {}: seed {} ({} buses, storm {}, drain {}, total {})",
            self.broker_name(),
            self.opts.seed,
            self.opts.buses,
            human(self.storm),
            human(self.drain),
            human(self.total)
        );
        let _ = writeln!(s, "  faults injected: {}", self.faults.len());
        for (k, n) in self.faults_by_kind() {
            let _ = writeln!(s, "    {:<34} {n}", k.as_str());
        }
        let _ = writeln!(
            s,
            "  captures: {} attempted, {} receipted ({} while the disk was full), {} refused by a full disk, {} failed otherwise",
            c.capture_attempts, c.receipted, c.receipted_while_full, c.failed_full_disk, c.failed_other
        );
        let _ = writeln!(
            s,
            "  delivered (bus outboxes): {}; at HQ: {} applications, {} blobs; lost {}, duplicated {}, at HQ without a receipt {}",
            c.delivered, c.hq_applications, c.hq_blobs, c.lost, c.duplicated, c.unreceipted_at_hq
        );
        let _ = writeln!(
            s,
            "  duplicate records + chunks published (HQ kept one of each): {} ({} bus re-sends, {} injected copies acked by the broker of {} published)",
            c.duplicates_at_hq(),
            c.resends(),
            c.replay_acked,
            c.replayed
        );
        let _ = writeln!(
            s,
            "  HQ exits for its supervisor during full disks at HQ or dropped database connections (restarted): {}",
            c.hq_supervisor_restarts
        );
        let _ = writeln!(
            s,
            "  broker sessions the buses ended because HQ stayed silent on a live link: {}",
            c.session_resets
        );
        let _ = writeln!(
            s,
            "  decisions made at HQ during the storm: {} ({} of them changing an earlier one, {} refused by HQ's store); newest version in force on its bus: {} of {}",
            c.decisions, c.decisions_changed, c.decisions_refused, c.decisions_on_buses, c.decided_applications
        );
        let _ = writeln!(
            s,
            "  bus connections through the proxies: {} ({} refused while cut); {} up, {} down",
            c.connections,
            c.connections_refused,
            bytes(c.bytes_up),
            bytes(c.bytes_down)
        );
        if self.passed() {
            let _ = writeln!(s, "  RESULT: PASS: 0 lost, 0 duplicated, every check held");
        } else {
            let _ = writeln!(s, "  RESULT: FAIL: {} violation(s):", self.violations.len());
            for v in &self.violations {
                let _ = writeln!(s, "    - {v}");
            }
        }
        if let Some(d) = &self.kept_dir {
            let _ = writeln!(s, "  stores, logs and brokers kept in {}", d.display());
        }
        let _ = writeln!(s, "  re-run: {}", self.rerun_command());
        s
    }

    /// The report as markdown: summary tables, then every fault with its time.
    pub fn markdown(&self) -> String {
        let c = &self.counts;
        let mut s = String::new();
        let _ = writeln!(s, "## Fault campaign: {}\n", self.broker_name());
        let _ = writeln!(
            s,
            "- Result: **{}**",
            if self.passed() {
                "PASS: 0 lost, 0 duplicated"
            } else {
                "FAIL"
            }
        );
        let _ = writeln!(s, "- Seed: `{}`", self.opts.seed);
        let _ = writeln!(s, "- Command: `{}`", self.rerun_command());
        let _ = writeln!(
            s,
            "- Storm {} with a fault every {} on average, then drain {} (bound {}); total {}",
            human(self.storm),
            human(self.opts.fault_every),
            human(self.drain),
            human(self.opts.drain_timeout),
            human(self.total)
        );
        let _ = writeln!(
            s,
            "- {} buses, a capture every {} per bus on average; machine: {}",
            self.opts.buses,
            human(self.opts.capture_every),
            machine()
        );
        let _ = writeln!(s, "\n| Fault | Injected |\n| --- | ---: |");
        for (k, n) in self.faults_by_kind() {
            let _ = writeln!(s, "| {} | {n} |", k.as_str());
        }
        let _ = writeln!(s, "| **total** | **{}** |", self.faults.len());
        let _ = writeln!(s, "\n| Count | Value |\n| --- | ---: |");
        let rows: Vec<(&str, String)> = vec![
            ("captures attempted", c.capture_attempts.to_string()),
            ("receipted (capture returned Ok)", c.receipted.to_string()),
            (
                "of which while the disk was full",
                c.receipted_while_full.to_string(),
            ),
            (
                "refused by a full disk (no receipt, nothing saved)",
                c.failed_full_disk.to_string(),
            ),
            ("failed otherwise", c.failed_other.to_string()),
            ("delivered, per the bus outboxes", c.delivered.to_string()),
            ("applications at HQ", c.hq_applications.to_string()),
            ("verified blobs at HQ", c.hq_blobs.to_string()),
            ("lost (receipted, not complete at HQ)", c.lost.to_string()),
            (
                "duplicated (a citizen filed twice at HQ)",
                c.duplicated.to_string(),
            ),
            ("at HQ without a receipt", c.unreceipted_at_hq.to_string()),
            (
                "duplicate records + chunks published (HQ kept one of each)",
                c.duplicates_at_hq().to_string(),
            ),
            ("of which re-sent by the buses", c.resends().to_string()),
            (
                "of which injected copies (acked by the broker / published)",
                format!("{} / {}", c.replay_acked, c.replayed),
            ),
            (
                "record publishes seen at the broker (distinct)",
                format!("{} ({})", c.tap_records, c.tap_distinct_records),
            ),
            (
                "chunk publishes seen at the broker (distinct)",
                format!("{} ({})", c.tap_chunks, c.tap_distinct_chunks),
            ),
            (
                "bus connections through the proxies (refused while cut)",
                format!("{} ({})", c.connections, c.connections_refused),
            ),
            (
                "bytes through the proxies, up / down",
                format!("{} / {}", bytes(c.bytes_up), bytes(c.bytes_down)),
            ),
            (
                "broker sessions ended by a bus (HQ silent on a live link)",
                c.session_resets.to_string(),
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        if !self.violations.is_empty() {
            let _ = writeln!(s, "\n### Violations\n");
            for v in &self.violations {
                let _ = writeln!(s, "- {v}");
            }
        }
        let _ = writeln!(
            s,
            "\n<details><summary>Every fault ({})</summary>\n\n| At | Fault | Target | Detail |\n| ---: | --- | --- | --- |",
            self.faults.len()
        );
        for f in &self.faults {
            let _ = writeln!(
                s,
                "| {:.1} s | {} | {} | {} |",
                f.at.as_secs_f64(),
                f.kind.as_str(),
                f.target,
                f.detail
            );
        }
        let _ = writeln!(s, "\n</details>");
        s
    }
}

/// What a bus's capture thread promised, as the citizen's receipts show it.
#[derive(Debug, Default)]
struct Ledger {
    /// Receipted applications and their attachment hashes.
    receipted: BTreeMap<ApplicationId, BTreeSet<Sha256>>,
    attempts: u64,
    failed_full_disk: u64,
    receipted_while_full: u64,
    failed_other: Vec<String>,
}

/// What the tap at the broker saw: publishes per record and per chunk.
#[derive(Debug, Default)]
struct TapSeen {
    records: HashMap<ApplicationId, u32>,
    chunks: HashMap<(Sha256, u32), u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Healthy,
    Cut,
    Stalled,
    Slow,
}

struct Bus {
    id: BusId,
    db: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    daemon: Option<Daemon>,
    proxy: LinkProxy,
    link: Link,
    disk_full: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
    vault: Arc<UnlockedVault>,
    /// How the replay fault connects: as this bus (the broker ties the client id to the
    /// certificate), with a clean session, so each replay also takes over the bus's
    /// session and throws its broker-side state away.
    replay: rumqttc::MqttOptions,
    capture: Option<std::thread::JoinHandle<Result<()>>>,
}

/// What heals a fault, when its time comes.
#[derive(Debug, Clone, Copy)]
/// A process that died without being killed.
enum Died {
    Bus(usize),
    Worker(usize),
}

enum Heal {
    RestartBus(usize),
    RestartHq(usize),
    RestartBroker,
    RestoreLink(usize),
    FreeDisk(usize),
    FreeHqDisk,
}

struct World {
    opts: Options,
    dir: PathBuf,
    broker: TestBroker,
    broker_up: bool,
    /// HQ's workers (`None` while killed), each with its environment and log.
    hq: Vec<Option<Daemon>>,
    hq_env: Vec<Vec<(String, String)>>,
    hq_log: Vec<PathBuf>,
    /// Until then an exit of a worker follows dropped database connections.
    pg_dropped_until: Option<Instant>,
    hq_dir: PathBuf,
    /// HQ's data on a small disk of its own (where the campaign may mount one), for the
    /// full-disk fault at HQ.
    hq_disk: Option<crate::disk::SmallDisk>,
    hq_disk_full: bool,
    /// Until then an exit of HQ is its answer to a full disk (loud, for its supervisor,
    /// which the campaign plays), not a violation.
    hq_may_exit_until: Option<Instant>,
    /// How often HQ exited for its supervisor during full-disk faults.
    hq_supervisor_restarts: u64,
    buses: Vec<Bus>,
    topics: Topics,
    start: Instant,
    faults: Vec<Fault>,
    violations: Vec<String>,
    replayed: Arc<AtomicU64>,
    replay_acked: Arc<AtomicU64>,
    tap: Arc<Mutex<TapSeen>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    stop_captures: Arc<AtomicBool>,
    /// HQ staff deciding during the storm, as the console would (a supervisor, and a
    /// second person for checks).
    reviewer: hq_sync::staff::Staff,
    checker: hq_sync::staff::Staff,
    /// The staff's connection to HQ's store, held for the whole run as the console holds
    /// its pool: opening and closing it over and over would have SQLite remove the WAL
    /// files whenever HQ is down, and HQ could then not even start on a full disk.
    review: HqStore,
    /// Every decision made: (bus, application) → (newest version, its kind).
    decided: BTreeMap<(String, ApplicationId), (u32, String)>,
    decisions_made: u64,
    decisions_changed: u64,
    decisions_refused: u64,
}

/// Runs one campaign against one broker. `Err` means the harness itself could not run
/// (a process would not start, a directory could not be made); what the system under test
/// did wrong is in [`Report::violations`].
pub async fn run(opts: &Options) -> Result<Report> {
    if opts.buses == 0 {
        bail!("a campaign needs at least one bus");
    }
    let (tmp, dir) = match &opts.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            (None, d.clone())
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("keliling-campaign-")
                .tempdir()?;
            let p = t.path().to_owned();
            (Some(t), p)
        }
    };
    let begun = Instant::now();
    let mut world = World::start(opts, &dir).await?;
    let result = world.storm_drain_audit().await;
    let storm_drain = result?;
    world.shutdown().await;
    let mut report = Report {
        opts: opts.clone(),
        faults: std::mem::take(&mut world.faults),
        counts: storm_drain.counts,
        violations: std::mem::take(&mut world.violations),
        storm: storm_drain.storm,
        drain: storm_drain.drain,
        total: begun.elapsed(),
        kept_dir: None,
    };
    drop(world);
    report.kept_dir = match tmp {
        // A failed run keeps its evidence.
        Some(t) if !report.passed() => Some(t.keep()),
        Some(t) => {
            drop(t);
            None
        }
        None => Some(dir),
    };
    Ok(report)
}

struct Outcome {
    counts: Counts,
    storm: Duration,
    drain: Duration,
}

impl World {
    async fn start(opts: &Options, dir: &Path) -> Result<World> {
        let Some(mut broker) = TestBroker::start(opts.broker, dir).await? else {
            bail!("mosquitto is not installed (apt-get install -y mosquitto)");
        };
        let topics = Topics::default();
        let hq_dir = dir.join("hq");
        // HQ's data on its own 512 MiB disk, so the campaign can fill it; below 8 MiB free
        // HQ refuses new data, so the fault hits the floor or, filled to the brim, ENOSPC.
        let hq_disk = crate::disk::SmallDisk::mount(&hq_dir, 512)?;
        // After the mount: the store's URL lives in the data directory.
        if opts.store == StoreKind::Postgres && !crate::harness::use_postgres(&hq_dir, "campaign")?
        {
            bail!("HQ on PostgreSQL needs a server: set KELILING_TEST_PG_URL (.ci/postgres)");
        }
        let (mut hq, mut hq_envs, mut hq_logs) = (Vec::new(), Vec::new(), Vec::new());
        for w in 0..opts.workers.max(1) {
            let name = format!("hq-{}", w + 1);
            if w > 0 {
                broker.provision_hq(&name).await?;
            }
            let mut env = broker.hq_env(&hq_dir);
            env.push(("HQ_SYNC__STAGING__MIN_FREE_MIB".into(), "8".into()));
            if opts.workers > 1 {
                env.push(("HQ_SYNC__INGEST__WORKER_ID".into(), name.clone()));
                env.push(("HQ_SYNC__INGEST__SHARED_GROUP".into(), "hq".into()));
                // sled allows one process per directory.
                env.push((
                    "HQ_SYNC__STAGING_DIR".into(),
                    hq_dir.join(format!("staging-{name}")).display().to_string(),
                ));
            }
            let log = if opts.workers > 1 {
                dir.join(format!("{name}.log"))
            } else {
                dir.join("hq.log")
            };
            hq.push(Some(Daemon::spawn("hq-sync", &["run"], &env, &log).await?));
            hq_envs.push(env);
            hq_logs.push(log);
        }
        let replayed = Arc::new(AtomicU64::new(0));
        let replay_acked = Arc::new(AtomicU64::new(0));
        let tap = Arc::new(Mutex::new(TapSeen::default()));
        broker.provision_hq("hq-tap").await?;
        let background = vec![start_tap(&broker, &topics, tap.clone())?];
        let stop_captures = Arc::new(AtomicBool::new(false));
        let mut buses = Vec::with_capacity(opts.buses);
        for b in 0..opts.buses {
            let id = BusId::parse(&format!("bus-camp-{b:02}"))?;
            let bus_dir = dir.join(id.as_str());
            let db = bus_dir.join("bus.sqlite");
            std::fs::create_dir_all(&bus_dir)?;
            let vault = init_bus_store(&db)?;
            // In front of every node of a cluster: the bus's link, whichever node it reaches.
            let nodes: Vec<std::net::SocketAddr> = std::iter::once(broker.port())
                .chain(
                    broker
                        .more_hosts()
                        .iter()
                        .filter_map(|h| h.rsplit(':').next()?.parse().ok()),
                )
                .map(|p: u16| ([127, 0, 0, 1], p).into())
                .collect();
            let proxy = LinkProxy::start_many(nodes).await?;
            let mut env = broker.bus_env_via(id.as_str(), &bus_dir, proxy.port())?;
            // The proxy is the bus's one way in (it picks the node).
            env.retain(|(k, _)| k != "BUS_NODE__BROKER__MORE_HOSTS");
            let log = dir.join(format!("{id}.log"));
            let daemon = Daemon::spawn("bus-node", &["run"], &env, &log).await?;
            let mut replay = broker.mqtt_options(id.as_str(), &Identity::Bus(id.to_string()))?;
            replay.set_clean_session(true);
            let disk_full = Arc::new(AtomicBool::new(false));
            let ledger = Arc::new(Mutex::new(Ledger::default()));
            let capture = {
                let (db, id, stop, full, ledger) = (
                    db.clone(),
                    id.clone(),
                    stop_captures.clone(),
                    disk_full.clone(),
                    ledger.clone(),
                );
                let (seed, every, stride) = (
                    opts.seed ^ (0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(b as u64 + 1)),
                    opts.capture_every,
                    opts.buses,
                );
                std::thread::Builder::new()
                    .name(format!("capture-{id}"))
                    .spawn(move || {
                        capture_loop(CaptureLoop {
                            db,
                            bus: id,
                            seed,
                            first_citizen: b,
                            stride,
                            every,
                            stop,
                            disk_full: full,
                            ledger,
                        })
                    })?
            };
            buses.push(Bus {
                id,
                db,
                env,
                log,
                daemon: Some(daemon),
                proxy,
                link: Link::Healthy,
                disk_full,
                ledger,
                vault,
                replay,
                capture: Some(capture),
            });
        }
        // HQ's staff, in HQ's store (its process is up and has migrated it, or this does).
        let mut review = crate::harness::hq_store(&hq_dir)?;
        let (reviewer, checker) = {
            use hq_sync::staff::{Lang, NewStaff, Password, Role, Username};
            let store = &mut review;
            let agencies: Vec<String> = Catalogue::builtin()
                .agencies
                .iter()
                .map(|a| a.code.clone())
                .collect();
            let mut add = |user: &str| {
                store.add_staff(
                    &NewStaff {
                        username: Username::parse(user)?,
                        display_name: user.into(),
                        role: Role::Supervisor,
                        agencies: agencies.clone(),
                        language: Lang::Id,
                        password: Password::new("kata-sandi-kampanye".into()),
                    },
                    &agencies,
                    keliling_shared::UnixMillis::now(),
                )
            };
            (add("reviewer")?, add("checker")?)
        };
        Ok(World {
            reviewer,
            checker,
            review,
            decided: BTreeMap::new(),
            decisions_made: 0,
            decisions_changed: 0,
            decisions_refused: 0,
            opts: opts.clone(),
            dir: dir.to_owned(),
            broker,
            broker_up: true,
            hq,
            hq_env: hq_envs,
            hq_log: hq_logs,
            pg_dropped_until: None,
            hq_dir,
            hq_disk,
            hq_disk_full: false,
            hq_may_exit_until: None,
            hq_supervisor_restarts: 0,
            buses,
            topics,
            start: Instant::now(),
            faults: Vec::new(),
            violations: Vec::new(),
            replayed,
            replay_acked,
            tap,
            background,
            stop_captures,
        })
    }

    async fn storm_drain_audit(&mut self) -> Result<Outcome> {
        let mut rng = StdRng::seed_from_u64(self.opts.seed);
        // The first faults tour every kind once, in a seeded order.
        let mut tour = FaultKind::of(&self.opts);
        tour.shuffle(&mut rng);
        let mut heals: Vec<(Instant, Heal)> = Vec::new();
        self.start = Instant::now();
        let storm_end = self.start + self.opts.duration;
        let mut next_fault = self.start + interval(&mut rng, self.opts.fault_every);
        let mut next_progress = self.opts.progress_every.map(|p| self.start + p);
        let mut next_decision = self.start + Duration::from_millis(500);
        loop {
            let now = Instant::now();
            if now >= storm_end {
                break;
            }
            if now >= next_decision {
                self.decide_some(&mut rng);
                next_decision = now + Duration::from_millis(600);
            }
            // Heals that are due, oldest first.
            heals.sort_by_key(|(t, _)| *t);
            while heals.first().is_some_and(|(t, _)| *t <= now) {
                let (_, heal) = heals.remove(0);
                self.heal(heal).await?;
            }
            if now >= next_fault {
                if let Some((kind, target)) = self.pick(&mut rng, &mut tour) {
                    if let Some(h) = self.inject(&mut rng, kind, target).await? {
                        heals.push(h);
                    }
                }
                next_fault = Instant::now() + interval(&mut rng, self.opts.fault_every);
            }
            self.watch_processes().await?;
            if let Some(p) = next_progress.filter(|p| now >= *p) {
                eprintln!("{}", self.progress_line("storm"));
                next_progress = self.opts.progress_every.map(|e| p + e);
            }
            let wake = heals
                .iter()
                .map(|(t, _)| *t)
                .chain([next_fault, storm_end])
                .min()
                .unwrap_or(storm_end);
            let nap = wake
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            tokio::time::sleep(nap).await;
        }
        let storm = self.start.elapsed();

        // Captures end with the storm; then everything heals.
        self.stop_captures.store(true, Ordering::SeqCst);
        for bus in &mut self.buses {
            if let Some(t) = bus.capture.take() {
                match tokio::task::block_in_place(|| t.join()) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => bail!("capture thread of {} failed: {e:#}", bus.id),
                    Err(_) => bail!("capture thread of {} panicked", bus.id),
                }
            }
        }
        heals.sort_by_key(|(t, _)| *t);
        for (_, heal) in heals {
            self.heal(heal).await?;
        }
        let drain_start = Instant::now();
        let drained = self.drain().await?;
        let drain = drain_start.elapsed();
        if !drained {
            let mut waiting = Vec::new();
            for bus in &self.buses {
                let s = Store::open(&bus.db)?.status()?;
                waiting.push(format!(
                    "{}: {} queued, {} record_acked, {} rejected",
                    bus.id, s.queued, s.record_acked, s.rejected
                ));
            }
            self.violations.push(format!(
                "not drained within {}: {}",
                human(self.opts.drain_timeout),
                waiting.join("; ")
            ));
        }
        let counts = self.audit()?;
        Ok(Outcome {
            counts,
            storm,
            drain,
        })
    }

    /// Which fault next, and on what: the tour first, then by weight. Only targets the
    /// fault makes sense on (a running process, a healthy link).
    fn pick(&mut self, rng: &mut StdRng, tour: &mut Vec<FaultKind>) -> Option<(FaultKind, usize)> {
        if let Some(pos) = tour.iter().position(|k| self.eligible(*k).next().is_some()) {
            let kind = tour.remove(pos);
            let targets: Vec<usize> = self.eligible(kind).collect();
            return targets.choose(rng).map(|t| (kind, *t));
        }
        for _ in 0..8 {
            let kinds = FaultKind::of(&self.opts);
            let total: u32 = kinds.iter().map(|k| k.weight()).sum();
            let mut x = rng.gen_range(0..total);
            let mut kind = FaultKind::Replay;
            for k in kinds {
                if x < k.weight() {
                    kind = k;
                    break;
                }
                x -= k.weight();
            }
            let targets: Vec<usize> = self.eligible(kind).collect();
            if let Some(t) = targets.choose(rng) {
                return Some((kind, *t));
            }
        }
        None
    }

    /// The targets (bus indexes; 0 for HQ and the broker) a fault may hit now.
    fn eligible(&self, kind: FaultKind) -> Box<dyn Iterator<Item = usize> + '_> {
        let buses = self.buses.iter().enumerate();
        match kind {
            FaultKind::KillBus => {
                Box::new(buses.filter(|(_, b)| b.daemon.is_some()).map(|(i, _)| i))
            }
            FaultKind::KillHq => Box::new(
                self.hq
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| w.is_some())
                    .map(|(i, _)| i),
            ),
            FaultKind::PgDrop => Box::new(
                (self.opts.store == StoreKind::Postgres)
                    .then_some(0)
                    .into_iter(),
            ),
            FaultKind::KillBroker => Box::new(self.broker_up.then_some(0).into_iter()),
            FaultKind::LinkCut | FaultKind::LinkStall | FaultKind::LinkSlow => Box::new(
                buses
                    .filter(|(_, b)| b.link == Link::Healthy)
                    .map(|(i, _)| i),
            ),
            FaultKind::Replay => Box::new(
                buses
                    .filter(|(_, b)| {
                        self.broker_up
                            && b.ledger
                                .lock()
                                .map(|l| !l.receipted.is_empty())
                                .unwrap_or(false)
                    })
                    .map(|(i, _)| i),
            ),
            FaultKind::FullDisk => Box::new(
                buses
                    .filter(|(_, b)| !b.disk_full.load(Ordering::SeqCst))
                    .map(|(i, _)| i),
            ),
            FaultKind::HqFullDisk => Box::new(
                (self.hq_disk.is_some() && !self.hq_disk_full)
                    .then_some(0)
                    .into_iter(),
            ),
        }
    }

    /// Injects one fault; returns what heals it and when.
    async fn inject(
        &mut self,
        rng: &mut StdRng,
        kind: FaultKind,
        target: usize,
    ) -> Result<Option<(Instant, Heal)>> {
        let at = self.start.elapsed();
        let (target_name, detail, heal) = match kind {
            FaultKind::KillBus => {
                let d = secs(rng, 0.2, 3.0);
                let bus = &mut self.buses[target];
                if let Some(mut daemon) = bus.daemon.take() {
                    daemon.kill9().await?;
                }
                (
                    bus.id.to_string(),
                    format!("restarted after {}", human(d)),
                    Some((d, Heal::RestartBus(target))),
                )
            }
            FaultKind::KillHq => {
                let d = secs(rng, 0.2, 4.0);
                if let Some(mut hq) = self.hq[target].take() {
                    hq.kill9().await?;
                }
                (
                    format!("hq-sync run (hq-{})", target + 1),
                    format!("restarted after {}", human(d)),
                    Some((d, Heal::RestartHq(target))),
                )
            }
            FaultKind::KillBroker if self.opts.broker == BrokerKind::NatsCluster => {
                // One node; it stays down long enough for leaders to move and clients
                // to move to the other two, then comes back from its own store.
                let d = secs(rng, 3.0, 10.0);
                let node = match self.broker.nats() {
                    Some(c) => {
                        let i = c.kill_next().await?;
                        c.name(i).to_owned()
                    }
                    None => bail!("a cluster run without a cluster"),
                };
                self.broker_up = false;
                (
                    node,
                    format!("restarted after {}", human(d)),
                    Some((d, Heal::RestartBroker)),
                )
            }
            FaultKind::KillBroker => {
                let d = secs(rng, 0.2, 2.0);
                self.broker.kill().await?;
                self.broker_up = false;
                (
                    "broker".into(),
                    format!("restarted on the same port after {}", human(d)),
                    Some((d, Heal::RestartBroker)),
                )
            }
            FaultKind::PgDrop => {
                let n = self.drop_pg_connections()?;
                self.pg_dropped_until = Some(Instant::now() + Duration::from_secs(15));
                (
                    "PostgreSQL".into(),
                    format!("{n} connections of HQ's workers terminated by the server"),
                    None,
                )
            }
            FaultKind::LinkCut => {
                // Mostly a short drop; one in four a dead zone long enough for a backlog.
                let d = if rng.gen_bool(0.25) {
                    secs(rng, 10.0, 30.0)
                } else {
                    secs(rng, 0.5, 6.0)
                };
                let bus = &mut self.buses[target];
                bus.proxy.cut();
                bus.link = Link::Cut;
                (
                    bus.id.to_string(),
                    format!("restored after {}", human(d)),
                    Some((d, Heal::RestoreLink(target))),
                )
            }
            FaultKind::LinkStall => {
                let d = secs(rng, 1.0, 10.0);
                let bus = &mut self.buses[target];
                bus.proxy.stall(true);
                bus.link = Link::Stalled;
                (
                    bus.id.to_string(),
                    format!("released after {}", human(d)),
                    Some((d, Heal::RestoreLink(target))),
                )
            }
            FaultKind::LinkSlow => {
                let d = secs(rng, 3.0, 15.0);
                // From 2G-like (1.5 KB/s) to a fair 3G (64 KB/s), log-uniform.
                let rate = rng.gen_range(1_500f64.ln()..64_000f64.ln()).exp();
                let shape = Shape {
                    rate_bytes_per_sec: rate as u64,
                    latency: Duration::from_millis(rng.gen_range(20..800)),
                };
                let bus = &mut self.buses[target];
                bus.proxy.set_shape(Some(shape));
                bus.link = Link::Slow;
                (
                    bus.id.to_string(),
                    format!(
                        "{} B/s, {} ms round trip, for {}",
                        shape.rate_bytes_per_sec,
                        shape.latency.as_millis(),
                        human(d)
                    ),
                    Some((d, Heal::RestoreLink(target))),
                )
            }
            FaultKind::Replay => {
                let detail = self.replay(rng, target)?;
                (self.buses[target].id.to_string(), detail, None)
            }
            FaultKind::HqFullDisk => {
                let d = secs(rng, 2.0, 8.0);
                // Half the time just under HQ's floor (refused early), half to the brim.
                let leave = if rng.gen_bool(0.5) {
                    rng.gen_range(1u64..6) << 20
                } else {
                    0
                };
                if let Some(disk) = &self.hq_disk {
                    disk.fill(leave)?;
                }
                self.hq_disk_full = true;
                self.hq_may_exit_until = None;
                (
                    "HQ data disk".into(),
                    format!("filled to {} MiB free for {}", leave >> 20, human(d)),
                    Some((d, Heal::FreeHqDisk)),
                )
            }
            FaultKind::FullDisk => {
                let d = secs(rng, 1.0, 6.0);
                let bus = &self.buses[target];
                bus.disk_full.store(true, Ordering::SeqCst);
                (
                    bus.id.to_string(),
                    format!("freed after {}", human(d)),
                    Some((d, Heal::FreeDisk(target))),
                )
            }
        };
        self.faults.push(Fault {
            at,
            kind,
            target: target_name,
            detail,
        });
        Ok(heal.map(|(d, h)| (Instant::now() + d, h)))
    }

    async fn heal(&mut self, heal: Heal) -> Result<()> {
        match heal {
            Heal::RestartBus(i) => {
                let bus = &mut self.buses[i];
                if bus.daemon.is_none() {
                    bus.daemon =
                        Some(Daemon::spawn("bus-node", &["run"], &bus.env, &bus.log).await?);
                }
            }
            Heal::RestartHq(i) => {
                if self.hq[i].is_none() {
                    self.hq[i] = Some(
                        Daemon::spawn("hq-sync", &["run"], &self.hq_env[i], &self.hq_log[i])
                            .await?,
                    );
                }
            }
            Heal::RestartBroker => {
                if !self.broker_up {
                    self.broker
                        .restart()
                        .await
                        .context("restarting the broker")?;
                    self.broker_up = true;
                }
            }
            Heal::RestoreLink(i) => {
                let bus = &mut self.buses[i];
                match bus.link {
                    Link::Cut => bus.proxy.restore(),
                    Link::Stalled => bus.proxy.stall(false),
                    Link::Slow => bus.proxy.set_shape(None),
                    Link::Healthy => {}
                }
                bus.link = Link::Healthy;
            }
            Heal::FreeDisk(i) => self.buses[i].disk_full.store(false, Ordering::SeqCst),
            Heal::FreeHqDisk => {
                if let Some(disk) = &self.hq_disk {
                    disk.free_up()?;
                }
                self.hq_disk_full = false;
                // An exit already under way (a batch that met ENOSPC) may land just after.
                self.hq_may_exit_until = Some(Instant::now() + Duration::from_secs(10));
            }
        }
        Ok(())
    }

    /// Has PostgreSQL terminate every connection of HQ's workers (named by worker id,
    /// `hq-…`), as a database failover does; the staff's connection stays. Returns how many.
    fn drop_pg_connections(&self) -> Result<u64> {
        let hq_sync::store::StoreLocation::Postgres { url, password } =
            crate::harness::hq_store_location(&self.hq_dir)
        else {
            bail!("HQ is not on PostgreSQL");
        };
        let db = hq_sync::db::Db::connect_postgres(&url, password.as_deref(), "keliling-campaign")?;
        let n: i64 = db.query_row(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND application_name LIKE 'hq-%'",
            &[],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Copies of some of the bus's real envelopes, each sent once or twice, shuffled.
    fn replay(&mut self, rng: &mut StdRng, target: usize) -> Result<String> {
        let bus = &self.buses[target];
        let ids: Vec<ApplicationId> = {
            let ledger = bus
                .ledger
                .lock()
                .map_err(|_| anyhow::anyhow!("ledger poisoned"))?;
            ledger.receipted.keys().copied().collect()
        };
        let n = rng.gen_range(1..=6).min(ids.len());
        let pick: Vec<ApplicationId> = ids.choose_multiple(rng, n).copied().collect();
        let store = Store::open(&bus.db)?;
        let mut msgs: Vec<(UpKind, Vec<u8>)> = Vec::new();
        let (mut records, mut chunks) = (0usize, 0usize);
        for id in pick {
            let Some(app) = store.application(&id, &bus.vault)? else {
                continue;
            };
            let acked = matches!(
                store.state(&id)?,
                Some(OutboxState::RecordAcked | OutboxState::Delivered)
            );
            let record =
                UpEnvelope::new(bus.id.clone(), Up::Record(Box::new(app.clone()))).encode()?;
            for _ in 0..rng.gen_range(1..=2) {
                msgs.push((UpKind::Record, record.clone()));
                records += 1;
            }
            if !acked {
                continue;
            }
            for att in &app.attachments {
                for index in 0..chunk_count(att.size, CHUNK_BYTES) {
                    if !rng.gen_bool(0.7) {
                        continue;
                    }
                    let range = chunk_range(att.size, CHUNK_BYTES, index);
                    let data = store.read_chunk(&att.sha256, range, &bus.vault)?;
                    let chunk = UpEnvelope::new(
                        bus.id.clone(),
                        Up::Chunk(Chunk {
                            blob: att.sha256,
                            total_size: att.size,
                            chunk_size: CHUNK_BYTES,
                            index,
                            data,
                        }),
                    )
                    .encode()?;
                    for _ in 0..rng.gen_range(1..=2) {
                        msgs.push((UpKind::Chunk, chunk.clone()));
                        chunks += 1;
                    }
                }
            }
        }
        msgs.shuffle(rng);
        let queued = msgs.len() as u64;
        self.replayed.fetch_add(queued, Ordering::Relaxed);
        // Sent on a connection of the bus's own identity, which takes the bus's session
        // over for a moment (the broker ties the client id to the certificate): the bus
        // is dropped, reconnects to a lost session and sends again from its store.
        let (opts, topics, bus_id, acked) = (
            bus.replay.clone(),
            self.topics.clone(),
            bus.id.clone(),
            self.replay_acked.clone(),
        );
        self.background.push(tokio::spawn(async move {
            let (client, eventloop) = AsyncClient::new(opts, msgs.len() + 16);
            let poller = tokio::spawn(poll_replay(eventloop, acked));
            for (kind, payload) in msgs {
                if client
                    .publish(topics.up(&bus_id, kind), QoS::AtLeastOnce, false, payload)
                    .await
                    .is_err()
                {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = client.disconnect().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            poller.abort();
        }));
        Ok(format!(
            "{records} record and {chunks} chunk copies, shuffled, over a takeover of the bus's session ({queued} sent)"
        ))
    }

    /// A process that died without being killed is a violation (it is restarted, so the
    /// campaign goes on and the audit still runs).
    async fn watch_processes(&mut self) -> Result<()> {
        let mut died = Vec::new();
        for (i, bus) in self.buses.iter_mut().enumerate() {
            if let Some(d) = bus.daemon.as_mut() {
                if let Some(status) = d.exited()? {
                    died.push((
                        Died::Bus(i),
                        format!("bus-node {} exited by itself ({status})", bus.id),
                    ));
                }
            }
        }
        let hq_may_exit =
            self.hq_disk_full || self.hq_may_exit_until.is_some_and(|t| Instant::now() < t);
        let pg_dropped = self.pg_dropped_until.is_some_and(|t| Instant::now() < t);
        let mut dead_workers = Vec::new();
        for (w, slot) in self.hq.iter_mut().enumerate() {
            let Some(hq) = slot.as_mut() else { continue };
            if let Some(status) = hq.exited()? {
                let log = hq.log();
                let said_why = log.contains("exits for its supervisor to restart it")
                    || log.contains("No space left on device");
                let said_store = log.contains("supervisor restarts it");
                if (hq_may_exit && said_why) || (pg_dropped && said_store) {
                    // HQ's designed answer to a full disk or a store it lost in the
                    // middle of a batch: exit loudly, be restarted by its supervisor.
                    self.hq_supervisor_restarts += 1;
                    *slot = None;
                    dead_workers.push(w);
                } else {
                    died.push((
                        Died::Worker(w),
                        format!("hq-sync run (hq-{}) exited by itself ({status})", w + 1),
                    ));
                }
            }
        }
        for w in dead_workers {
            self.heal(Heal::RestartHq(w)).await?;
        }
        if self.broker_up && !self.broker.is_running() {
            self.violations
                .push("the broker exited by itself".to_string());
            self.broker.restart().await?;
        }
        for (bus, why) in died {
            let at = self.start.elapsed();
            self.violations
                .push(format!("{why} at {:.1} s", at.as_secs_f64()));
            match bus {
                Died::Worker(w) => {
                    self.hq[w] = None;
                    self.heal(Heal::RestartHq(w)).await?;
                }
                Died::Bus(i) => {
                    self.buses[i].daemon = None;
                    self.heal(Heal::RestartBus(i)).await?;
                }
            }
        }
        Ok(())
    }

    /// Waits until every bus has every receipted application confirmed; false on timeout.
    async fn drain(&mut self) -> Result<bool> {
        let deadline = Instant::now() + self.opts.drain_timeout;
        let mut next_progress = self.opts.progress_every.map(|p| Instant::now() + p);
        loop {
            let mut done = true;
            for bus in &self.buses {
                let receipted = bus
                    .ledger
                    .lock()
                    .map_err(|_| anyhow::anyhow!("ledger poisoned"))?
                    .receipted
                    .len() as u64;
                let s = Store::open(&bus.db)?.status()?;
                if s.waiting() != 0 || s.delivered < receipted {
                    done = false;
                    break;
                }
            }
            if done && !self.decisions_confirmed()? {
                done = false;
            }
            if done {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            self.watch_processes().await?;
            if let Some(p) = next_progress.filter(|p| Instant::now() >= *p) {
                eprintln!("{}", self.progress_line("drain"));
                next_progress = self.opts.progress_every.map(|e| p + e);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// HQ staff decide, as the console would: a supervisor approves, rejects with a
    /// catalogue reason (a second person confirms where the service needs it) or asks
    /// for more information, on applications complete at HQ; one decision in four changes
    /// an earlier one (a new version). A decision HQ's store refuses (its disk full) was
    /// not made. Faults keep landing meanwhile: only the newest version may win on the bus.
    fn decide_some(&mut self, rng: &mut StdRng) {
        use hq_sync::decisions::Action;
        use hq_sync::review::{QueueFilter, QueueStatus};
        use keliling_shared::decision::{Need, ReasonCode};
        let cat = Catalogue::builtin();
        let store = &mut self.review;
        let now = keliling_shared::UnixMillis::now();
        let change = !self.decided.is_empty() && rng.gen_bool(0.25);
        let target = if change {
            let keys: Vec<_> = self.decided.keys().cloned().collect();
            keys.choose(rng).cloned()
        } else {
            let f = QueueFilter {
                services: cat.services.iter().map(|s| s.code.clone()).collect(),
                status: Some(QueueStatus::Pending),
                limit: 50,
                ..QueueFilter::default()
            };
            match store.queue(&f, now) {
                Ok(p) => p.rows.choose(rng).map(|r| (r.bus_id.to_string(), r.id)),
                Err(e) => {
                    eprintln!("campaign: the review queue: {e}");
                    None
                }
            }
        };
        let Some((bus, id)) = target else {
            return;
        };
        let Ok(bus_id) = BusId::parse(&bus) else {
            return;
        };
        let text = |s: &str| keliling_shared::Text::parse(s).ok();
        let action = match rng.gen_range(0..3) {
            0 => Action::Approve {
                note: text("Silakan ambil di kantor"),
            },
            1 => Action::Reject {
                code: match ReasonCode::parse("DOCUMENT_MISSING") {
                    Ok(c) => c,
                    Err(_) => return,
                },
                note: text("Mohon dilengkapi"),
            },
            _ => Action::RequestInfo {
                message: match text("Mohon datang lagi dengan foto baru") {
                    Some(m) => m,
                    None => return,
                },
                needs: vec![Need::NewPhoto],
            },
        };
        match store.decide(&bus_id, &id, &action, &self.reviewer, &cat, now) {
            Ok(version) => {
                // A rejection of a service that needs a second person waits for it.
                if store
                    .application_review_state(&bus_id, &id)
                    .ok()
                    .flatten()
                    .as_deref()
                    == Some("awaiting_check")
                    && store
                        .check_decision(&bus_id, &id, true, &self.checker, &cat, now)
                        .is_err()
                {
                    // Left waiting: nothing for the bus (it keeps its earlier version).
                    self.decisions_refused += 1;
                    return;
                }
                if change {
                    self.decisions_changed += 1;
                }
                self.decisions_made += 1;
                let kind = match action {
                    Action::Approve { .. } => "approved",
                    Action::Reject { .. } => "rejected",
                    Action::RequestInfo { .. } => "info_requested",
                };
                self.decided.insert((bus, id), (version, kind.to_owned()));
            }
            // Refused (decided meanwhile, photo missing for an approval, HQ's disk full):
            // nothing was written.
            Err(_) => self.decisions_refused += 1,
        }
    }

    /// Whether HQ holds the newest version of every decision as confirmed by its bus.
    fn decisions_confirmed(&self) -> Result<bool> {
        if self.decided.is_empty() {
            return Ok(true);
        }
        for ((bus, id), (version, _)) in &self.decided {
            let rows = self.review.decisions_of(&BusId::parse(bus)?, id)?;
            let confirmed = rows.iter().any(|r| {
                r.version == *version && r.delivery == hq_sync::decisions::Delivery::Confirmed
            });
            if !confirmed {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn progress_line(&self, phase: &str) -> String {
        let (mut receipted, mut delivered, mut refused) = (0u64, 0u64, 0u64);
        for bus in &self.buses {
            if let Ok(l) = bus.ledger.lock() {
                receipted += l.receipted.len() as u64;
                refused += l.failed_full_disk;
            }
            if let Ok(s) = Store::open(&bus.db).and_then(|s| s.status()) {
                delivered += s.delivered;
            }
        }
        format!(
            "[{:>6.0} s {phase}] faults {}, receipted {receipted}, delivered {delivered}, refused by a full disk {refused}",
            self.start.elapsed().as_secs_f64(),
            self.faults.len()
        )
    }

    /// The auditor's pass over the bus stores, HQ's SQLite file and its photo files.
    fn audit(&mut self) -> Result<Counts> {
        let mut c = Counts::default();
        let mut v = Violations::default();
        // bus → (application → hashes), as receipted.
        let mut promised: BTreeMap<ApplicationId, (BusId, BTreeSet<Sha256>)> = BTreeMap::new();
        for bus in &self.buses {
            let ledger = bus
                .ledger
                .lock()
                .map_err(|_| anyhow::anyhow!("ledger poisoned"))?;
            c.capture_attempts += ledger.attempts;
            c.receipted += ledger.receipted.len() as u64;
            c.failed_full_disk += ledger.failed_full_disk;
            c.receipted_while_full += ledger.receipted_while_full;
            c.failed_other += ledger.failed_other.len() as u64;
            for f in &ledger.failed_other {
                v.add(
                    "capture failed without a full disk",
                    format!("{}: {f}", bus.id),
                );
            }
            for (id, hashes) in &ledger.receipted {
                promised.insert(*id, (bus.id.clone(), hashes.clone()));
            }

            let store = Store::open(&bus.db)?;
            let status = store.status()?;
            c.delivered += status.delivered;
            if status.waiting() != 0 || status.rejected != 0 || status.bytes_waiting != 0 {
                v.add(
                    "outbox not empty",
                    format!(
                        "{}: {} queued, {} record_acked, {} rejected, {} bytes waiting",
                        bus.id,
                        status.queued,
                        status.record_acked,
                        status.rejected,
                        status.bytes_waiting
                    ),
                );
            }
            let held = store.recent(usize::MAX >> 1, false)?;
            let mut on_bus = BTreeSet::new();
            for s in held {
                on_bus.insert(s.id);
                let Some(hashes) = ledger.receipted.get(&s.id) else {
                    v.add(
                        "a bus holds an application that got no receipt",
                        format!("{}: {} ({})", bus.id, s.id, s.state.as_str()),
                    );
                    continue;
                };
                if s.state != OutboxState::Delivered {
                    v.add(
                        "receipted but not confirmed on the bus",
                        format!("{}: {} is {}", bus.id, s.id, s.state.as_str()),
                    );
                }
                match store.application(&s.id, &bus.vault) {
                    Ok(Some(app)) => {
                        let stored: BTreeSet<Sha256> =
                            app.attachments.iter().map(|a| a.sha256).collect();
                        if &stored != hashes {
                            v.add(
                                "bus record differs from its receipt",
                                format!("{}: {}", bus.id, s.id),
                            );
                        }
                    }
                    Ok(None) => v.add("record missing on the bus", format!("{}: {}", bus.id, s.id)),
                    Err(e) => v.add(
                        "record unreadable on the bus",
                        format!("{}: {}: {e}", bus.id, s.id),
                    ),
                }
            }
            for id in ledger.receipted.keys() {
                if !on_bus.contains(id) {
                    v.add(
                        "receipted application missing from its bus",
                        format!("{}: {id}", bus.id),
                    );
                }
            }
        }

        let hq = crate::harness::hq_store(&self.hq_dir)?;
        let photos = Blobs::open(&self.hq_dir.join("photos"), false)?;
        let counts = hq.counts()?;
        c.hq_applications = counts.applications;
        c.hq_blobs = counts.blobs;
        let mut at_hq = BTreeSet::new();
        for (id, state, blobs) in hq.application_blobs()? {
            at_hq.insert(id);
            let Some((bus, hashes)) = promised.get(&id) else {
                c.unreceipted_at_hq += 1;
                v.add(
                    "HQ holds an application that got no receipt",
                    id.to_string(),
                );
                continue;
            };
            if state != "complete" {
                c.lost += 1;
                v.add("incomplete at HQ", format!("{id} is {state}"));
            }
            let blobs: BTreeSet<Sha256> = blobs.into_iter().collect();
            if &blobs != hashes {
                v.add("photo hashes differ between receipt and HQ", id.to_string());
            }
            for sha in &blobs {
                if let Err(e) = photos.read_verified(&hq, sha) {
                    v.add(
                        "photo file at HQ does not verify",
                        format!("{id}: {sha}: {e}"),
                    );
                }
            }
            match hq.application_bus(&id)? {
                Some(b) if b == bus.as_str() => {}
                other => v.add(
                    "application filed under the wrong bus at HQ",
                    format!("{id}: {other:?}, captured on {bus}"),
                ),
            }
        }
        for (id, (bus, _)) in &promised {
            if !at_hq.contains(id) {
                c.lost += 1;
                v.add("LOST: receipted but not at HQ", format!("{bus}: {id}"));
            }
        }
        // Every campaign citizen has a name of their own: the same name twice at HQ would
        // be one capture filed twice, whatever its ids.
        for (name, n) in hq.duplicate_applicant_names()? {
            c.duplicated += n - 1;
            v.add(
                "DUPLICATE: one citizen filed more than once at HQ",
                format!("{name} x{n}"),
            );
        }
        if counts.quarantined != 0 {
            let reasons: Vec<String> = hq.quarantined(5)?.into_iter().map(|q| q.reason).collect();
            v.add(
                "HQ quarantined messages",
                format!("{}: {reasons:?}", counts.quarantined),
            );
        }
        for bus in &self.buses {
            let q = Store::open(&bus.db)?.quarantine_count()?;
            if q != 0 {
                v.add(
                    "a bus quarantined HQ's messages",
                    format!("{}: {q}", bus.id),
                );
            }
        }
        // Decisions: on each bus, exactly HQ's versions, the newest in force, none twice.
        c.decisions = self.decisions_made;
        c.decisions_changed = self.decisions_changed;
        c.decided_applications = self.decided.len() as u64;
        c.decisions_refused = self.decisions_refused;
        for bus in &self.buses {
            let store = Store::open(&bus.db)?;
            let on_bus: BTreeMap<ApplicationId, (u32, String)> = store
                .decisions(100_000)?
                .into_iter()
                .map(|d| (d.application, (d.version, d.kind)))
                .collect();
            for ((b, id), (version, kind)) in &self.decided {
                if b != bus.id.as_str() {
                    continue;
                }
                match on_bus.get(id) {
                    Some((have, k)) if have == version && k == kind => c.decisions_on_buses += 1,
                    Some((have, k)) => v_add_decision(
                        &mut v,
                        format!(
                            "{b}/{id}: the bus has v{have} {k}, HQ's newest is v{version} {kind}"
                        ),
                    ),
                    None => v_add_decision(
                        &mut v,
                        format!("{b}/{id}: HQ's v{version} {kind} never reached the bus"),
                    ),
                }
            }
            for id in on_bus.keys() {
                if !self.decided.contains_key(&(bus.id.to_string(), *id)) {
                    v.add(
                        "a bus holds a decision HQ never made",
                        format!("{}/{id}", bus.id),
                    );
                }
            }
        }
        // Panics leave their mark in the logs even when the process went on.
        let mut logs: Vec<PathBuf> = self.buses.iter().map(|b| b.log.clone()).collect();
        logs.extend(self.hq_log.iter().cloned());
        logs.push(self.dir.join("broker.log"));
        for log in logs {
            if let Ok(text) = std::fs::read_to_string(&log) {
                c.session_resets += text.matches("broker session reset;").count() as u64;
                if let Some(line) = text.lines().find(|l| l.contains("panicked at")) {
                    v.add("a process panicked", format!("{}: {line}", log.display()));
                }
            }
        }

        let tap = self
            .tap
            .lock()
            .map_err(|_| anyhow::anyhow!("tap poisoned"))?;
        c.tap_records = tap.records.values().map(|n| u64::from(*n)).sum();
        c.tap_distinct_records = tap.records.len() as u64;
        c.tap_chunks = tap.chunks.values().map(|n| u64::from(*n)).sum();
        c.tap_distinct_chunks = tap.chunks.len() as u64;
        c.replayed = self.replayed.load(Ordering::Relaxed);
        c.replay_acked = self.replay_acked.load(Ordering::Relaxed);
        c.hq_supervisor_restarts = self.hq_supervisor_restarts;
        for bus in &self.buses {
            c.connections += bus.proxy.connections_accepted();
            c.connections_refused += bus.proxy.connections_refused();
            c.bytes_up += bus.proxy.bytes_up();
            c.bytes_down += bus.proxy.bytes_down();
        }
        self.violations.extend(v.finish());
        Ok(c)
    }

    async fn shutdown(&mut self) {
        for bus in &mut self.buses {
            if let Some(mut d) = bus.daemon.take() {
                let _ = d.kill9().await;
            }
        }
        for slot in &mut self.hq {
            if let Some(mut hq) = slot.take() {
                let _ = hq.kill9().await;
            }
        }
        for t in self.background.drain(..) {
            t.abort();
        }
        match self.broker.nats() {
            Some(c) => c.kill_all().await,
            None => {
                let _ = self.broker.kill().await;
            }
        }
    }
}

fn v_add_decision(v: &mut Violations, what: String) {
    v.add(
        "LOST or STALE: a decision is not in force on its bus as HQ made it",
        what,
    );
}

/// Violations grouped by what went wrong, each group listing at most [`MAX_LISTED`].
#[derive(Default)]
struct Violations {
    groups: BTreeMap<&'static str, Vec<String>>,
}

impl Violations {
    fn add(&mut self, what: &'static str, detail: String) {
        self.groups.entry(what).or_default().push(detail);
    }

    fn finish(self) -> Vec<String> {
        self.groups
            .into_iter()
            .map(|(what, details)| {
                let n = details.len();
                let mut listed = details
                    .into_iter()
                    .take(MAX_LISTED)
                    .collect::<Vec<_>>()
                    .join("; ");
                if n > MAX_LISTED {
                    let _ = write!(listed, "; and {} more", n - MAX_LISTED);
                }
                format!("{what} ({n}): {listed}")
            })
            .collect()
    }
}

struct CaptureLoop {
    db: PathBuf,
    bus: BusId,
    seed: u64,
    first_citizen: usize,
    stride: usize,
    every: Duration,
    stop: Arc<AtomicBool>,
    disk_full: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
}

/// The operator at the window: one citizen after another, until the storm ends. About one
/// application in eight is a family-card update with a document scan of many chunks.
fn capture_loop(l: CaptureLoop) -> Result<()> {
    let portrait = keliling_photo::fixtures::load_portrait()?;
    let catalogue = Catalogue::builtin();
    let settings = CaptureSettings {
        bus_id: l.bus.clone(),
        chunk_size: CHUNK_BYTES,
        photo_limits: Default::default(),
    };
    let mut store = Store::open(&l.db)?;
    let mut rng = StdRng::seed_from_u64(l.seed);
    let mut full = false;
    let mut citizen = l.first_citizen;
    while !l.stop.load(Ordering::SeqCst) {
        let want_full = l.disk_full.load(Ordering::SeqCst);
        if want_full != full {
            store.simulate_full_disk(want_full)?;
            full = want_full;
        }
        let input = if rng.gen_ratio(1, 8) {
            let size = rng.gen_range(40_000..250_000);
            sample::kk_update(citizen, sample::document_scan(citizen as u64, size)?)
        } else {
            sample::sim_renewal(citizen, sample::camera_photo(&portrait, citizen)?)
        };
        let result = capture(&mut store, &catalogue, &settings, input);
        {
            let mut ledger = l
                .ledger
                .lock()
                .map_err(|_| anyhow::anyhow!("ledger poisoned"))?;
            ledger.attempts += 1;
            match result {
                Ok(receipt) => {
                    let app = receipt.application;
                    if full {
                        ledger.receipted_while_full += 1;
                    }
                    ledger
                        .receipted
                        .insert(app.id, app.attachments.iter().map(|a| a.sha256).collect());
                }
                Err(e) if full && is_disk_full(&e) => ledger.failed_full_disk += 1,
                Err(e) => ledger.failed_other.push(format!("citizen {citizen}: {e}")),
            }
        }
        citizen += l.stride;
        let pause = l.every.mul_f64(rng.gen_range(0.5..1.5));
        let until = Instant::now() + pause;
        while Instant::now() < until && !l.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20).min(pause));
        }
    }
    Ok(())
}

fn is_disk_full(e: &CaptureError) -> bool {
    matches!(
        e,
        CaptureError::Store(StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)))
            if f.code == rusqlite::ErrorCode::DiskFull
    )
}

/// A client with HQ's identity that sees every record and chunk any bus publishes (QoS 0,
/// so the broker keeps nothing for it), for counting duplicates and re-sends.
fn start_tap(
    broker: &TestBroker,
    topics: &Topics,
    seen: Arc<Mutex<TapSeen>>,
) -> Result<tokio::task::JoinHandle<()>> {
    // Its own HQ identity (and client id): HQ's hq-1 session is the real HQ's.
    let mut opts = broker.client_options(&Identity::HqWorker("hq-tap".into()))?;
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let filters = [
        topics.up_filter(UpKind::Record),
        topics.up_filter(UpKind::Chunk),
    ];
    Ok(tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for f in &filters {
                        let _ = client.try_subscribe(f.clone(), QoS::AtMostOnce);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let Ok(env) = UpEnvelope::decode(&p.payload) else {
                        continue;
                    };
                    let Ok(mut seen) = seen.lock() else {
                        return;
                    };
                    match env.body {
                        Up::Record(app) => *seen.records.entry(app.id).or_insert(0) += 1,
                        Up::Chunk(c) => *seen.chunks.entry((c.blob, c.index)).or_insert(0) += 1,
                        _ => {}
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }))
}

/// Polls a replay client's event loop for as long as the campaign runs, counting the
/// broker's PUBACKs.
async fn poll_replay(mut eventloop: rumqttc::EventLoop, acked: Arc<AtomicU64>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            // Taken over in turn by the bus reconnecting: the replay is over.
            Err(_) => return,
        }
    }
}

/// An exponentially distributed wait with mean `mean`, kept within [mean/20, 4 mean].
fn interval(rng: &mut StdRng, mean: Duration) -> Duration {
    let u: f64 = rng.gen_range(0.0..1.0);
    let x = -(1.0 - u).ln();
    mean.mul_f64(x.clamp(0.05, 4.0))
}

fn secs(rng: &mut StdRng, lo: f64, hi: f64) -> Duration {
    Duration::from_secs_f64(rng.gen_range(lo..hi))
}

/// Parses `500ms`, `45s`, `30m`, `2h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("{s:?}: expected a number with ms, s, m or h"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => bail!("{s:?}: unknown unit {other:?} (ms, s, m or h)"),
    };
    if !secs.is_finite() || secs < 0.0 {
        bail!("{s:?}: not a duration");
    }
    Ok(Duration::from_secs_f64(secs))
}

fn fmt_duration_arg(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

fn bytes(b: u64) -> String {
    match b {
        b if b < 10 * 1024 => format!("{b} B"),
        b if b < 10 * 1024 * 1024 => format!("{} KiB", b / 1024),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// CPUs, model, memory and kernel, from /proc where there is one.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = procstat::cpu_model().unwrap_or_else(|| "unknown CPU".into());
    let mem = procstat::mem_total_kib().map_or_else(
        || "? GiB".into(),
        |kib| format!("{:.1} GiB", kib as f64 / 1048576.0),
    );
    let kernel = procstat::kernel_release()
        .map(|k| format!("Linux {k}"))
        .unwrap_or_else(|| std::env::consts::OS.into());
    format!("{cpus} CPUs ({model}), {mem} RAM, {kernel}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert_eq!(fmt_duration_arg(Duration::from_secs(1800)), "30m");
        assert_eq!(fmt_duration_arg(Duration::from_millis(1500)), "1500ms");
        assert_eq!(fmt_duration_arg(Duration::from_secs(45)), "45s");
    }

    #[test]
    fn intervals_follow_the_seed_and_the_mean() {
        let mean = Duration::from_secs(2);
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..2000)
                .map(|_| interval(&mut rng, mean))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let avg = draw(7).iter().sum::<Duration>() / 2000;
        assert!(
            avg > Duration::from_millis(1700) && avg < Duration::from_millis(2300),
            "{avg:?}"
        );
    }
}
