//! HQ ingest: MQTT in, durable records and photos, application-level acks out.
//!
//! A poller task owns rumqttc's event loop and hands publishes to the ingest loop, which
//! applies them in batches. rumqttc runs with manual acks: the broker's copy of a message
//! is released (PUBACK to the broker) only after HQ has applied it, so a crash of HQ
//! between receiving and committing makes the broker deliver it again; and even if the
//! broker forgets, the bus re-sends whatever HQ has not acknowledged.
//!
//! The poller never waits on the ingest loop. The ingest loop's replies and acks go
//! through rumqttc's request channel, which only the poller drains; had the poller also
//! waited for room in a bounded queue towards the ingest loop, a flood (1000 buses coming
//! back at once, measured with `keliling-field fleet` against Mosquitto) filled both, each
//! side waited on the other, no keep-alive went out and the broker dropped HQ. So the queue
//! to the ingest loop is unbounded, and bounded in practice: QoS 1 messages by the broker's
//! in-flight window towards HQ (HQ acks only after applying), QoS 0 messages (heartbeats)
//! by [`MAX_QUEUED_BEST_EFFORT`], past which they are shed.
//!
//! Invariants:
//! - `Delivered` is sent only after the record and every blob it references are committed
//!   (record and blob rows in SQLite, blob files fsynced and verified).
//! - `Progress` is sent only after the staged chunks it reports are flushed.
//! - A message that cannot be understood or is not allowed is quarantined with its reason,
//!   acked to the broker (so it is not redelivered forever) and never stops ingest. A
//!   message that fails for a transient reason (disk full, database locked) is *not
//!   answered*: the bus re-sends whatever HQ has not answered, so it will come again.
//! - Every message is acked to the broker, once, in the order it arrived, after its batch's
//!   effects are committed. rumqttd disconnects a client whose PUBACKs come out of order,
//!   and a broker redelivers an un-acked message only on a new session, so skipping the
//!   ack of a failed message would cost a reconnect (rumqttd) or, a window's worth of them
//!   later, stop delivery to HQ altogether (Mosquitto's `max_inflight_messages`).

use crate::catalogues::Catalogues;
use crate::config::HqConfig;
use crate::nats::{Confirm, Incoming};
use crate::photos::{BlobAt, Blobs, PhotoStoreError};
use crate::replies::{self, Replies, Window, REPLY_WINDOW};
use crate::shared_staging::SharedStaging;
use crate::staging::{Staging, StagingError, Stored};
use crate::store::{FleetUpdate, HqStore, HqStoreError, RecordOutcome, WorkerRow};
use keliling_shared::mqtt::ClientOptions;
use keliling_shared::sign::SigningKey;
use keliling_shared::topics::{Topics, UpKind};
use keliling_shared::wire::{
    BlobProgress, BusStatus, Chunk, Down, Fleet, FleetEnvelope, RecordNotes, Up, UpEnvelope,
};
use keliling_shared::{Application, ApplicationId, BusId, Catalogue, Sha256, UnixMillis};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, Publish, QoS};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] HqStoreError),
    #[error(transparent)]
    Staging(#[from] StagingError),
    #[error(transparent)]
    Photos(#[from] PhotoStoreError),
    #[error("config: {0}")]
    Config(String),
    #[error("broker connection: {0}")]
    Tls(#[from] keliling_shared::tls::TlsError),
    #[error(transparent)]
    Signing(#[from] crate::signing::SigningError),
    #[error("HQ disk below its free-space floor")]
    DiskLow,
    #[error("staging store unavailable (reopening)")]
    StagingDown,
    #[error("ingest worker stopped: {0}")]
    Worker(String),
    #[error("HQ ingest cannot go on and exits for its supervisor to restart it: {0}")]
    Stuck(String),
}

/// QoS 0 messages (heartbeats) allowed to wait for the ingest loop; more are dropped, as
/// QoS 0 allows: the bus sends a fresh heartbeat every minute.
pub const MAX_QUEUED_BEST_EFFORT: usize = 2048;

/// Blob hash mismatches tolerated before HQ gives up on a blob and says so.
const MAX_BLOB_MISMATCHES: u32 = 3;

#[derive(Debug, Default)]
pub struct IngestMetrics {
    pub connected: AtomicBool,
    /// Sessions opened with the broker (1 while the first connection holds).
    pub connects: AtomicU64,
    pub messages: AtomicU64,
    pub records_new: AtomicU64,
    pub records_duplicate: AtomicU64,
    pub chunks_new: AtomicU64,
    pub chunks_duplicate: AtomicU64,
    pub blobs_stored: AtomicU64,
    pub delivered_acks: AtomicU64,
    pub quarantined: AtomicU64,
    /// Bad messages past a bus's quarantine budget: acked and dropped, not stored.
    pub quarantine_suppressed: AtomicU64,
    pub transient_errors: AtomicU64,
    /// QoS 0 messages (heartbeats) dropped because the ingest loop was behind.
    pub shed_best_effort: AtomicU64,
    /// Messages received from the broker and not yet taken by the ingest loop.
    pub queued: AtomicU64,
    /// Replies dropped because too many waited for the broker (the buses ask again).
    pub replies_dropped: AtomicU64,
    /// Chunks not staged because a bus's or everyone's staging quota was full.
    pub over_quota: AtomicU64,
    /// Queries left unanswered because their bus asked about too many blobs this minute.
    pub queries_over_budget: AtomicU64,
    /// New records left unanswered because their bus reached its daily quota.
    pub records_over_quota: AtomicU64,
    /// Staff decisions signed and handed to the reply lane (re-sends included).
    pub decisions_sent: AtomicU64,
    /// Decisions a bus confirmed it stored.
    pub decisions_confirmed: AtomicU64,
}

/// New quarantine rows one claimed bus may add per minute. A broken or hostile device
/// sending distinct garbage as fast as it can must not fill HQ's disk; replays of the
/// same payload are stored once and do not count.
pub const QUARANTINE_ROWS_PER_BUS_PER_MINUTE: u32 = 120;

impl IngestMetrics {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Whether a message of `qos` is shed rather than queued for ingest (and counted so):
    /// best effort only, when [`MAX_QUEUED_BEST_EFFORT`] are waiting. One rule for the MQTT
    /// poller and the NATS work queue.
    pub fn shed(&self, qos: QoS) -> bool {
        let queued = self.queued.load(Ordering::Relaxed) as usize;
        let shed = qos == QoS::AtMostOnce && queued >= MAX_QUEUED_BEST_EFFORT;
        if shed {
            self.shed_best_effort.fetch_add(1, Ordering::Relaxed);
        }
        shed
    }
}

/// How often ingest reports its staging and disk to the store, and sweeps staging.
const REPORT_EVERY: Duration = Duration::from_secs(10);
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Runs ingest until `shutdown` turns true.
///
/// The loop itself only waits: each batch is applied on a blocking thread
/// (`spawn_blocking`, the state moved in and back), because applying means SQLite
/// transactions, sled writes and fsyncs. Acks and replies are sent from here afterwards.
pub async fn run(
    cfg: HqConfig,
    metrics: Arc<IngestMetrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    // Read before connecting: without it no answer could be believed by a bus.
    let key = Arc::new(cfg.signing_key()?);
    let topics =
        Topics::new(&cfg.ingest.topic_prefix).map_err(|e| IngestError::Config(e.to_string()))?;
    let mut ingest = tokio::task::spawn_blocking({
        let (cfg, metrics) = (cfg.clone(), metrics.clone());
        move || Ingest::open(&cfg, metrics)
    })
    .await
    .map_err(|e| IngestError::Worker(e.to_string()))??;
    let fleet = fleet_messages(&topics, ingest.catalogues.current(), &key)?;
    let (client, dial) = mqtt(&cfg)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Incoming>();
    let window = Arc::new(Window::default());
    // On a NATS cluster buses' messages come from its work queue; the MQTT connection
    // only carries HQ's answers, decisions and the fleet's catalogue.
    let puller = cfg.nats.enabled().then(|| {
        tokio::spawn(crate::nats::pull(
            cfg.clone(),
            tx.clone(),
            metrics.clone(),
            shutdown.clone(),
        ))
    });
    let filters = if cfg.nats.enabled() {
        Vec::new()
    } else {
        subscriptions(&cfg, &topics)
    };
    let poller = tokio::spawn(poll(
        dial,
        client.clone(),
        filters,
        tx,
        window.clone(),
        metrics,
        shutdown.clone(),
    ));
    let announcer = tokio::spawn(replies::announce(
        client.clone(),
        window.clone(),
        fleet,
        shutdown.clone(),
    ));
    let (replies, lane) = replies::lane();
    let sender = tokio::spawn(replies::send(
        lane,
        client.clone(),
        key,
        topics,
        window,
        shutdown.clone(),
    ));
    info!(worker = %cfg.ingest.worker_id, broker = %format!("{}:{}", cfg.broker.host, cfg.broker.port), data = %cfg.data_dir.display(), "HQ ingest running");
    let stuck_after = Duration::from_secs(cfg.ingest.stuck_after_secs.max(1));
    // Every second: staff's decisions leave within a second of being made, and a report
    // due is never a whole period late.
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(REPORT_EVERY / 2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        let batch = tokio::select! {
            _ = shutdown.changed() => break Ok(()),
            _ = tick.tick() => Vec::new(),
            p = rx.recv() => match p {
                Some(first) => {
                    let mut batch = vec![first];
                    while batch.len() < cfg.ingest.batch {
                        match rx.try_recv() {
                            Ok(p) => batch.push(p),
                            Err(_) => break,
                        }
                    }
                    batch
                }
                None => break Ok(()),
            },
        };
        let (batch, confirms): (Vec<Publish>, Vec<Confirm>) =
            batch.into_iter().map(|i| (i.publish, i.confirm)).unzip();
        ingest.taken(&batch);
        // A panic on the blocking thread loses the state: ingest stops with an error and
        // the process exits, loudly, for its supervisor to restart; never a zombie.
        let work = keliling_shared::blocking::run_owned(ingest, move |i| {
            let out = i.apply_batch(&batch);
            (batch, out)
        });
        let (back, (batch, out)) = match tokio::time::timeout(stuck_after, work).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => break Err(IngestError::Worker(e.to_string())),
            // A storage call that never returns: a zombie HQ that looks alive is the worst
            // outcome, so stop, loudly, for the supervisor to restart this process.
            Err(_) => {
                let why = format!("a batch has not finished in {stuck_after:?}: storage is stuck");
                error!(%why, "HQ ingest stops; its supervisor restarts it (nothing is lost: buses re-send)");
                break Err(IngestError::Stuck(why));
            }
        };
        ingest = back;
        if let Some(why) = ingest.fatal.clone() {
            error!(%why, "HQ ingest stops; its supervisor restarts it (nothing is lost: buses re-send)");
            // Closing sled after an I/O error can hang (see `note_error`): leave it open.
            std::mem::forget(ingest);
            break Err(IngestError::Stuck(why));
        }
        // Acks first, then the replies go to their own lane (`replies`): HQ's acks must
        // never wait behind its replies. Everything the batch changed is committed by now.
        for (p, confirm) in batch.iter().zip(confirms) {
            match confirm {
                Confirm::Mqtt => {
                    if let Err(e) = client.ack(p).await {
                        warn!(error = %e, "cannot ack to broker");
                    }
                }
                // Not awaited for a reply: one lost is a redelivery after `ack_wait`,
                // which ingest takes as the duplicate it is.
                Confirm::Nats(acker) => {
                    if let Err(e) = acker.ack().await {
                        warn!(error = %e, "cannot ack to the NATS work queue");
                    }
                }
            }
        }
        ingest.hand_over(out, &replies);
    };
    drop(replies);
    announcer.abort();
    let _ = tokio::time::timeout(Duration::from_millis(500), sender).await;
    let _ = tokio::time::timeout(Duration::from_millis(500), client.disconnect()).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), poller).await;
    if let Some(puller) = puller {
        let _ = tokio::time::timeout(Duration::from_secs(1), puller).await;
    }
    result
}

/// HQ's fleet-wide messages, signed, for [`replies::announce`]: the service catalogue.
/// One too large for a message stops HQ here, loudly: buses would never hear of it.
fn fleet_messages(
    topics: &Topics,
    catalogue: &Catalogue,
    key: &SigningKey,
) -> Result<Vec<(String, Vec<u8>)>, IngestError> {
    let env = FleetEnvelope::new(Fleet::Catalogue(Box::new(catalogue.clone())));
    let bytes = env.encode_signed(key).map_err(|e| {
        IngestError::Config(format!(
            "the service catalogue (version {}) cannot be sent to the fleet: {e}",
            catalogue.version
        ))
    })?;
    info!(
        version = catalogue.version,
        services = catalogue.services.len(),
        bytes = bytes.len(),
        "service catalogue for the fleet"
    );
    Ok(vec![(topics.fleet(env.topic_name()), bytes)])
}

/// HQ's connection to the broker: its event loop, and the cluster's nodes to take in turn.
struct Dial {
    eventloop: EventLoop,
    brokers: keliling_shared::mqtt::Brokers,
}

fn mqtt(cfg: &HqConfig) -> Result<(AsyncClient, Dial), IngestError> {
    let transport = cfg.broker_transport()?;
    if !transport.is_tls() {
        warn!(
            "INSECURE: HQ connects to the broker over plain TCP without a certificate \
             (broker.insecure_plaintext = true); for local experiments only"
        );
    }
    let side = ClientOptions {
        client_id: cfg.ingest.worker_id.clone(),
        // One worker keeps a persistent session so the broker holds buses' messages while
        // HQ restarts. Workers in a shared group use clean sessions (docs/DESIGN.md: an
        // offline worker's share would otherwise wait for it).
        // On NATS the worker subscribes to nothing (its messages come from the work queue).
        clean_session: cfg.ingest.shared_group.is_some() || cfg.nats.enabled(),
        manual_acks: true,
        // Twice the reply window: rumqttc must always have room, so that it keeps reading
        // its request queue, where HQ's acks to the broker wait (see `replies`).
        inflight: (REPLY_WINDOW * 2) as u16,
        request_channel_capacity: 4096,
        default_connection_timeout_secs: 30,
        last_will: None,
    };
    let brokers = keliling_shared::mqtt::Brokers::new(&cfg.broker, transport.clone(), side.clone())
        .map_err(|e| IngestError::Config(e.to_string()))?;
    let (client, eventloop) = keliling_shared::mqtt::client(&cfg.broker, transport, side);
    Ok((client, Dial { eventloop, brokers }))
}

/// The topic filters HQ subscribes to on every new session.
fn subscriptions(cfg: &HqConfig, topics: &Topics) -> Vec<String> {
    UpKind::ALL
        .into_iter()
        .map(|kind| {
            let filter = topics.up_filter(kind);
            // Chunks are shared too when uploads in progress are where every worker sees
            // them (`[store] blobs_in_database`); else each worker needs every chunk.
            let shared = kind != UpKind::Chunk || cfg.blobs_in_database();
            // One group per kind (`{group}-record`, ...): rumqttd 0.20 keys a shared
            // group by its name alone, with one cursor for all its filters, so several
            // filters in one group lose messages (three workers got nothing at all).
            match &cfg.ingest.shared_group {
                Some(g) if shared => format!("$share/{g}-{}/{filter}", kind.as_str()),
                _ => filter,
            }
        })
        .collect()
}

async fn poll(
    Dial {
        mut eventloop,
        mut brokers,
    }: Dial,
    client: AsyncClient,
    filters: Vec<String>,
    tx: mpsc::UnboundedSender<Incoming>,
    window: Arc<Window>,
    metrics: Arc<IngestMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff =
        keliling_shared::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let ev = tokio::select! {
            _ = shutdown.changed() => return,
            ev = eventloop.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if !ack.session_present {
                    window.reset();
                }
                backoff.reset();
                metrics.connected.store(true, Ordering::Relaxed);
                metrics.connects.fetch_add(1, Ordering::Relaxed);
                info!("HQ connected to broker");
                for filter in &filters {
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        warn!(error = %e, "subscribe failed");
                    }
                }
                window.connected();
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if metrics.shed(p.qos) {
                    debug!(topic = %p.topic, "ingest is behind: QoS 0 message shed");
                    continue;
                }
                metrics.queued.fetch_add(1, Ordering::Relaxed);
                let incoming = Incoming {
                    publish: p,
                    confirm: Confirm::Mqtt,
                };
                if tx.send(incoming).is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => window.acked(),
            Ok(_) => {}
            Err(e) => {
                metrics.connected.store(false, Ordering::Relaxed);
                let delay = backoff.next_delay();
                warn!(error = %e, ?delay, "HQ lost the broker; reconnecting");
                if let Some(next) = brokers.next(&mut eventloop) {
                    info!(broker = %next, "trying the next broker of the cluster");
                }
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

struct Ingest {
    store: HqStore,
    /// `None` after sled failed (it refuses everything after an I/O error, e.g. a full
    /// disk, until reopened): reopened on the next use, so HQ resumes by itself.
    staging: Option<Staging>,
    /// Uploads in progress in the store (`[store] blobs_in_database`), not in sled.
    staging_in_store: bool,
    staging_dir: std::path::PathBuf,
    staging_limits: crate::staging::Limits,
    last_reopen: Option<Instant>,
    blobs: Blobs,
    /// HQ's catalogue and every version it published, to check each record against the
    /// version its bus used.
    catalogues: Catalogues,
    /// `[ingest] group_commit`: a batch is made durable at once (`apply_batch`).
    group_commit: bool,
    topics: Topics,
    metrics: Arc<IngestMetrics>,
    floor: crate::disk::Floor,
    records_seen: u64,
    crash_after: Option<u64>,
    quarantine_budget: QuarantineBudget,
    worker: String,
    last_report: Option<Instant>,
    last_sweep: Option<Instant>,
    /// Set when this process cannot go on (see `note_error`): ingest stops and exits.
    fatal: Option<String>,
    known: KnownBuses,
    /// Blobs each bus asked about in the current minute, and how many it may.
    query_budget: PerBusMinute,
    max_query_blobs: u32,
    /// New records a bus may add in 24 hours (`[ingest] max_records_per_bus_per_day`).
    daily_quota: u32,
    /// The buses' heartbeat period (`[fleet] heartbeat_secs`): decisions are re-sent on
    /// the timer only to buses heard from within its online window.
    heartbeat: Duration,
    /// Fault injection: every staging flush fails as sled's does on an I/O error.
    #[cfg(feature = "fault-injection")]
    fail_staging_flush: bool,
    /// This batch's chunks of uploads nothing was staged for yet: one whose last chunk
    /// comes in the same batch (a bus sends a photo's chunks back to back) is assembled
    /// from memory and never staged; what is left at the batch's end is staged then,
    /// before anything of it is confirmed. An upload is either all here or all staged.
    pending: HashMap<(BusId, Sha256), Pending>,
    /// Reads that hold for a batch: whether a bus is revoked, and the sizes a bus's
    /// records declare for a blob (only found ones: a record in the batch may add one).
    batch_revoked: HashMap<BusId, Option<String>>,
    batch_expected: HashMap<(BusId, Sha256), Vec<u64>>,
}

/// One upload's chunks held in memory within a batch ([`Ingest::pending`]).
struct Pending {
    total_size: u64,
    chunk_size: u32,
    chunks: BTreeMap<u32, Chunk>,
    /// The message of its latest chunk (what a refused blob is quarantined as).
    last: Publish,
}

impl Pending {
    fn same_shape(&self, c: &Chunk) -> bool {
        self.total_size == c.total_size && self.chunk_size == c.chunk_size
    }
}

/// Bus ids the fleet PKI has issued (`registry.toml`), re-read when the file changes. A
/// topic can name any id; what was never issued is refused before anything is stored
/// under its name. Revoked buses are refused separately (`revoked_buses`).
struct KnownBuses {
    pki: crate::pki::Pki,
    ids: std::collections::HashSet<BusId>,
    stamp: Option<(std::time::SystemTime, u64)>,
}

impl KnownBuses {
    fn load(pki: crate::pki::Pki) -> Result<KnownBuses, IngestError> {
        let mut k = KnownBuses {
            pki,
            ids: Default::default(),
            stamp: None,
        };
        k.read().map_err(|e| {
            IngestError::Config(format!(
                "HQ accepts only buses the fleet PKI issued, and cannot read its registry: {e}"
            ))
        })?;
        Ok(k)
    }

    fn read(&mut self) -> Result<(), crate::pki::PkiError> {
        let path = self.pki.dir().join("registry.toml");
        let stamp = std::fs::metadata(&path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp.is_some() && stamp == self.stamp {
            return Ok(());
        }
        self.ids = self
            .pki
            .issued()?
            .into_iter()
            .filter(|c| c.kind == crate::pki::Kind::Bus)
            .filter_map(|c| BusId::parse(&c.common_name).ok())
            .collect();
        self.stamp = stamp;
        Ok(())
    }

    /// Whether `bus` was ever issued. An id not in the list makes the registry be looked
    /// at again first (a bus provisioned a moment ago), which costs a `stat` unless the
    /// file changed.
    fn contains(&mut self, bus: &BusId) -> bool {
        if self.ids.contains(bus) {
            return true;
        }
        if let Err(e) = self.read() {
            // The last good list stays in force.
            warn!(error = %e, "cannot re-read the PKI registry");
        }
        self.ids.contains(bus)
    }
}

/// A per-bus counter that starts afresh every minute.
#[derive(Default)]
struct PerBusMinute {
    window_start: Option<Instant>,
    used: HashMap<BusId, u32>,
}

impl PerBusMinute {
    /// Takes `n` from `bus`'s allowance of `limit`; false when it does not fit.
    fn take(&mut self, bus: &BusId, n: u32, limit: u32) -> bool {
        if self
            .window_start
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            self.window_start = Some(Instant::now());
            self.used.clear();
        }
        let used = self.used.entry(bus.clone()).or_insert(0);
        if used.saturating_add(n) > limit {
            return false;
        }
        *used += n;
        true
    }
}

/// Per claimed bus, how many quarantine rows it added in the current minute.
#[derive(Default)]
struct QuarantineBudget {
    window_start: Option<Instant>,
    used: HashMap<Option<BusId>, u32>,
}

impl QuarantineBudget {
    fn roll(&mut self) {
        let now = Instant::now();
        match self.window_start {
            Some(t) if now.duration_since(t) < Duration::from_secs(60) => {}
            _ => {
                // Cleared every minute, so the map stays as small as one minute's senders.
                self.window_start = Some(now);
                self.used.clear();
            }
        }
    }
    fn allows(&mut self, bus: Option<&BusId>) -> bool {
        self.roll();
        self.used.get(&bus.cloned()).copied().unwrap_or(0) < QUARANTINE_ROWS_PER_BUS_PER_MINUTE
    }
    /// Counts one new row; true when that used up the budget.
    fn spend(&mut self, bus: Option<&BusId>) -> bool {
        let n = self.used.entry(bus.cloned()).or_insert(0);
        *n += 1;
        *n == QUARANTINE_ROWS_PER_BUS_PER_MINUTE
    }
}

/// What applying one message produced.
#[derive(Default)]
struct Effects {
    replies: Vec<(BusId, Down)>,
    /// Heartbeats and online/offline, committed together after the batch.
    fleet: Vec<FleetUpdate>,
    /// Uploads whose chunks arrived: a progress snapshot goes out after the flush.
    touched: BTreeMap<(BusId, Sha256), ()>,
    /// Buses that said they are online: what they have not confirmed goes again.
    came_online: Vec<BusId>,
    /// Blobs assembled and verified in this batch, made durable together at its end.
    blobs: Vec<Assembled>,
}

/// A blob whose upload is whole and checked, written but not yet durable.
struct Assembled {
    bus: BusId,
    sha: Sha256,
    size: u64,
    now: UnixMillis,
    written: Written,
}

/// A verified blob's bytes on their way into the blob store.
enum Written {
    /// In a temp file of the photo store, made durable with the batch's others.
    File(crate::photos::Unsynced),
    /// Going into the store, with its row (`[store] blobs_in_database`).
    Database(Vec<u8>),
}

/// Uploads in progress, wherever they are kept.
enum Uploads<'a> {
    /// This worker's sled.
    Local(&'a mut Staging),
    /// HQ's store, which every worker sees.
    Shared(SharedStaging<'a>),
}

fn shared(e: HqStoreError) -> StagingError {
    match e {
        HqStoreError::Corrupt(why) => StagingError::Corrupt(why),
        e => StagingError::Store(e),
    }
}

impl Uploads<'_> {
    fn put(&mut self, bus: &BusId, c: &Chunk, now: UnixMillis) -> Result<Stored, StagingError> {
        match self {
            Uploads::Local(s) => s.put(bus, c, now),
            Uploads::Shared(s) => s.put(bus, c, now).map_err(shared),
        }
    }
    fn flush(&mut self) -> Result<(), StagingError> {
        match self {
            Uploads::Local(s) => s.flush(),
            // Durable with the batch's end, before any answer (`apply_batch`).
            Uploads::Shared(_) => Ok(()),
        }
    }
    fn progress(&mut self, bus: &BusId, sha: &Sha256) -> Result<BlobProgress, StagingError> {
        match self {
            Uploads::Local(s) => s.progress(bus, sha),
            Uploads::Shared(s) => s.progress(bus, sha).map_err(shared),
        }
    }
    fn complete_size(&mut self, bus: &BusId, sha: &Sha256) -> Result<Option<u64>, StagingError> {
        match self {
            Uploads::Local(s) => s.complete_size(bus, sha),
            Uploads::Shared(s) => s.complete_size(bus, sha).map_err(shared),
        }
    }
    fn pieces(&mut self, bus: &BusId, sha: &Sha256) -> Result<Vec<Vec<u8>>, StagingError> {
        match self {
            Uploads::Local(s) => Ok(s.pieces(bus, sha)?.iter().map(|v| v.to_vec()).collect()),
            Uploads::Shared(s) => s.pieces(bus, sha).map_err(shared),
        }
    }
    fn reject(&mut self, bus: &BusId, sha: &Sha256, now: UnixMillis) -> Result<u32, StagingError> {
        match self {
            Uploads::Local(s) => s.reject(bus, sha, now),
            Uploads::Shared(s) => s.reject(bus, sha, now).map_err(shared),
        }
    }
    fn discard(&mut self, bus: &BusId, sha: &Sha256) -> Result<(), StagingError> {
        match self {
            Uploads::Local(s) => s.discard(bus, sha),
            Uploads::Shared(s) => s.discard(bus, sha).map_err(shared),
        }
    }
    fn sweep(&mut self, now: UnixMillis) -> Result<usize, StagingError> {
        match self {
            Uploads::Local(s) => s.sweep(now),
            Uploads::Shared(s) => s.sweep(now).map_err(shared),
        }
    }
    fn uploads(&mut self) -> Result<Vec<(BusId, Sha256)>, StagingError> {
        match self {
            Uploads::Local(s) => s.uploads(),
            Uploads::Shared(s) => s.uploads().map_err(shared),
        }
    }
    fn usage(&mut self) -> Result<crate::staging::Usage, StagingError> {
        match self {
            Uploads::Local(s) => Ok(s.usage()),
            Uploads::Shared(s) => s.usage().map_err(shared),
        }
    }
}

/// The delivery ack for an application HQ holds whole.
fn delivered(
    application: ApplicationId,
    hq_received_at: UnixMillis,
    content_hash: Sha256,
    mut blobs: Vec<Sha256>,
) -> Down {
    blobs.sort();
    blobs.dedup();
    Down::Delivered {
        application,
        hq_received_at,
        content_hash,
        blobs,
    }
}

/// Ingest without a broker: applies messages as if they came off the broker, in batches
/// of one, and returns HQ's answers. For tests and fuzzing of the apply path with decoded
/// values (everything after the decoder: store, staging, photos, budgets).
pub struct Offline {
    ingest: Ingest,
}

impl Offline {
    pub fn open(cfg: &HqConfig) -> Result<Offline, IngestError> {
        Ok(Offline {
            ingest: Ingest::open(cfg, Arc::default())?,
        })
    }

    /// A fresh HQ in `dir` with a fleet PKI that has issued `buses` (bundles and all, as
    /// `pki init` and `pki provision-bus` make them), and no free-space floor.
    pub fn for_fleet(dir: &std::path::Path, buses: &[BusId]) -> Result<Offline, IngestError> {
        Self::for_fleet_on(dir, buses, None)
    }

    /// [`Offline::for_fleet`] with its store at `store` (SQLite in `dir` when `None`).
    pub fn for_fleet_on(
        dir: &std::path::Path,
        buses: &[BusId],
        store: Option<&crate::store::StoreLocation>,
    ) -> Result<Offline, IngestError> {
        Self::for_fleet_with(dir, buses, store, None)
    }

    /// [`Offline::for_fleet_on`] with `[store] blobs_in_database` set (`None`: the
    /// backend's default).
    pub fn for_fleet_with(
        dir: &std::path::Path,
        buses: &[BusId],
        store: Option<&crate::store::StoreLocation>,
        blobs_in_database: Option<bool>,
    ) -> Result<Offline, IngestError> {
        use crate::pki::{BundleOptions, Pki};
        let fleet = |e: crate::pki::PkiError| IngestError::Config(format!("fleet PKI: {e}"));
        let pki = Pki::init(&dir.join("pki"), &[]).map_err(fleet)?;
        for b in buses {
            pki.provision_bus(
                b,
                &BundleOptions {
                    broker_host: "127.0.0.1".into(),
                    broker_port: 8883,
                    install_dir: pki.bundle_dir(b),
                    data_dir: dir.join("data"),
                    renew: false,
                },
            )
            .map_err(fleet)?;
        }
        let mut cfg = HqConfig::for_dir(dir.join("hq"), 0);
        cfg.pki.dir = pki.dir().to_owned();
        cfg.staging.min_free_mib = 0;
        cfg.store.blobs_in_database = blobs_in_database;
        match store {
            None | Some(crate::store::StoreLocation::Sqlite(_)) => {}
            Some(crate::store::StoreLocation::Postgres { url, .. }) => {
                cfg.store.url = Some(url.clone());
            }
        }
        Offline::open(&cfg)
    }

    /// Fault injection: makes every staging flush fail (as on a disk I/O error) or not.
    #[cfg(feature = "fault-injection")]
    pub fn fail_staging_flushes(&mut self, on: bool) {
        self.ingest.fail_staging_flush = on;
    }

    /// Why this ingest has stopped taking messages, if it has (its process would exit).
    pub fn fatal(&self) -> Option<&str> {
        self.ingest.fatal.as_deref()
    }

    /// Applies one message published on `topic`; the answers HQ would send.
    pub fn apply(&mut self, topic: &str, payload: &[u8]) -> Vec<(BusId, Down)> {
        let p = Publish::new(topic, QoS::AtLeastOnce, payload.to_vec());
        self.ingest.apply_batch(std::slice::from_ref(&p))
    }

    /// Applies several messages as one batch (as they would come off the broker
    /// together); HQ's answers to all of them.
    pub fn apply_many(&mut self, messages: &[(String, Vec<u8>)]) -> Vec<(BusId, Down)> {
        let batch: Vec<Publish> = messages
            .iter()
            .map(|(t, b)| Publish::new(t, QoS::AtLeastOnce, b.clone()))
            .collect();
        self.ingest.apply_batch(&batch)
    }

    /// Chunks ingest has counted as new and as re-sent so far.
    pub fn chunk_counts(&self) -> (u64, u64) {
        let m = &self.ingest.metrics;
        (
            m.chunks_new.load(Ordering::Relaxed),
            m.chunks_duplicate.load(Ordering::Relaxed),
        )
    }

    pub fn store(&self) -> &HqStore {
        &self.ingest.store
    }
}

impl Ingest {
    fn open(cfg: &HqConfig, metrics: Arc<IngestMetrics>) -> Result<Ingest, IngestError> {
        let catalogue = cfg
            .catalogue()
            .map_err(|e| IngestError::Config(e.to_string()))?;
        let topics = Topics::new(&cfg.ingest.topic_prefix)
            .map_err(|e| IngestError::Config(e.to_string()))?;
        let limits = cfg.staging.limits();
        let staging_dir = cfg.staging_dir();
        let in_store = cfg.blobs_in_database();
        let at = cfg
            .store_location()
            .map_err(|e| IngestError::Config(e.to_string()))?;
        let mut store = HqStore::connect(&at, &cfg.ingest.worker_id)?;
        let catalogues = Catalogues::load(&mut store, catalogue)
            .map_err(|e| IngestError::Config(e.to_string()))?;
        let mut ingest = Ingest {
            store,
            staging: match in_store {
                true => None,
                false => Some(Staging::open_or_reset(&staging_dir, limits)?),
            },
            staging_in_store: in_store,
            staging_dir: staging_dir.clone(),
            staging_limits: limits,
            last_reopen: None,
            blobs: Blobs::open(&cfg.photos_dir(), in_store)?,
            catalogues,
            topics,
            metrics,
            floor: crate::disk::Floor::new(
                match in_store {
                    true => vec![cfg.data_dir.clone()],
                    false => vec![cfg.data_dir.clone(), staging_dir],
                },
                cfg.staging.min_free_bytes(),
            ),
            records_seen: 0,
            quarantine_budget: QuarantineBudget::default(),
            crash_after: cfg.fault.crash_before_commit_after_records,
            worker: cfg.ingest.worker_id.clone(),
            last_report: None,
            last_sweep: None,
            fatal: None,
            known: KnownBuses::load(cfg.pki())?,
            query_budget: PerBusMinute::default(),
            max_query_blobs: cfg.ingest.max_query_blobs_per_bus_per_minute,
            daily_quota: cfg.ingest.max_records_per_bus_per_day,
            heartbeat: Duration::from_secs(cfg.fleet.heartbeat_secs),
            group_commit: cfg.ingest.group_commit,
            #[cfg(feature = "fault-injection")]
            fail_staging_flush: false,
            pending: HashMap::new(),
            batch_revoked: HashMap::new(),
            batch_expected: HashMap::new(),
        };
        match ingest.store.resend_all_unconfirmed_decisions() {
            Ok(0) => {}
            Ok(n) => info!(decisions = n, "sending unconfirmed decisions again"),
            Err(e) => warn!(error = %e, "cannot queue unconfirmed decisions again"),
        }
        ingest.maintain();
        Ok(ingest)
    }

    /// Makes the batch's staged chunks durable, before any snapshot of them goes out.
    fn flush_staging(&mut self) -> Result<(), IngestError> {
        #[cfg(feature = "fault-injection")]
        if self.fail_staging_flush {
            return Err(IngestError::Staging(StagingError::Sled(sled::Error::Io(
                std::io::Error::other("fault injection: staging flush fails"),
            ))));
        }
        Ok(self.staging()?.flush()?)
    }

    /// Uploads in progress: in the store, or in sled, reopened if sled failed before (at
    /// most once a second).
    fn staging(&mut self) -> Result<Uploads<'_>, IngestError> {
        if self.staging_in_store {
            return Ok(Uploads::Shared(SharedStaging {
                store: &self.store,
                limits: &self.staging_limits,
            }));
        }
        if self.staging.is_none() {
            if self
                .last_reopen
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
            {
                return Err(IngestError::StagingDown);
            }
            self.last_reopen = Some(Instant::now());
            let s = Staging::open_or_reset(&self.staging_dir, self.staging_limits)?;
            info!(dir = %self.staging_dir.display(), "staging store reopened");
            self.staging = Some(s);
        }
        self.staging
            .as_mut()
            .map(Uploads::Local)
            .ok_or(IngestError::StagingDown)
    }

    /// After an I/O error sled refuses every operation until it is opened again, and
    /// closing it (its `Drop` flushes) can then wait forever: measured on a full disk, the
    /// ingest thread hung in sled's flush, HQ stayed up and moved nothing until restarted
    /// by hand. So an I/O error in staging is fatal to this process: ingest stops, says
    /// why, and exits for its supervisor to restart it (the free-space floor makes this
    /// rare: HQ refuses new data before the disk is full). Nothing is lost: what was
    /// committed stays committed, the rest is re-sent.
    fn note_error(&mut self, e: &IngestError) {
        if let IngestError::Staging(StagingError::Sled(sled::Error::Io(io))) = e {
            if self.fatal.is_none() {
                self.fatal = Some(format!("staging store I/O error: {io}"));
            }
        }
    }

    /// Periodic work: report staging and disk to the store, sweep staging.
    fn maintain(&mut self) {
        let now = UnixMillis::now();
        if self.last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
            self.last_sweep = Some(Instant::now());
            match self.staging().and_then(|mut s| Ok(s.sweep(now)?)) {
                Ok(0) => {}
                Ok(n) => info!(expired = n, "staging: forgot uploads nobody touched"),
                Err(e) => {
                    warn!(error = %e, "staging sweep failed");
                    self.note_error(&e);
                }
            }
        }
        if self.last_report.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return;
        }
        self.last_report = Some(Instant::now());
        // Uploads of blobs stored meanwhile (by another worker, or from another bus's
        // upload) will get no more chunks: forget them now, not at expiry.
        if let Err(e) = self.forget_stored_uploads() {
            debug!(error = %e, "cannot look for uploads of stored blobs");
            self.note_error(&e);
        }
        let disk_low = self.floor.is_low();
        let usage = match self.staging_in_store || self.staging.is_some() {
            true => self
                .staging()
                .and_then(|mut s| Ok(s.usage()?))
                .unwrap_or_default(),
            false => Default::default(),
        };
        let row = WorkerRow {
            worker_id: self.worker.clone(),
            updated_at: now,
            staging_uploads: usage.uploads,
            staging_bytes: usage.bytes,
            disk_free_bytes: self.floor.free(),
            disk_low,
        };
        if let Err(e) = self.store.report_worker(&row) {
            debug!(error = %e, "cannot record worker status");
        }
        // What this worker holds of uploads in progress, for the console ("photo
        // expected: 3 of 4 chunks received").
        match self.upload_progress() {
            Ok(p) => {
                if let Err(e) = self.store.report_uploads(&self.worker, &p, now) {
                    debug!(error = %e, "cannot record upload progress");
                }
            }
            Err(e) => debug!(error = %e, "cannot read upload progress"),
        }
    }

    fn upload_progress(&mut self) -> Result<Vec<crate::store::UploadProgress>, IngestError> {
        let mut staging = self.staging()?;
        let mut out = Vec::new();
        for (bus, blob) in staging.uploads()? {
            let p = staging.progress(&bus, &blob)?;
            if p.chunk_count > 0 {
                out.push(crate::store::UploadProgress {
                    bus,
                    blob,
                    have: p.have.count(),
                    chunk_count: p.chunk_count,
                });
            }
        }
        Ok(out)
    }

    fn forget_stored_uploads(&mut self) -> Result<(), IngestError> {
        let uploads = self.staging()?.uploads()?;
        for (bus, blob) in uploads {
            if self.store.has_blob(&blob)? {
                self.staging()?.discard(&bus, &blob)?;
            }
        }
        Ok(())
    }

    /// The ingest loop took `batch` off the poller's queue.
    fn taken(&self, batch: &[Publish]) {
        self.metrics
            .queued
            .fetch_sub(batch.len() as u64, Ordering::Relaxed);
    }

    /// Applies a batch (blocking work: run it off the async threads). Returns the replies,
    /// to be handed over only after the batch is acked to the broker.
    /// Applies a batch as one group commit: its SQLite commits are not each fsynced, its
    /// blobs are made durable together, and one fsync at the end makes all of it durable
    /// ([`HqStore::end_batch`]) before any answer leaves (the caller acks after this).
    fn apply_batch(&mut self, batch: &[Publish]) -> Vec<(BusId, Down)> {
        let mut fx = Effects::default();
        self.batch_revoked.clear();
        self.batch_expected.clear();
        let begun = match self.group_commit {
            true => self.store.begin_batch().map(Some),
            false => Ok(None),
        };
        let changes = match begun {
            Ok(c) => c,
            Err(e) => {
                // Nothing applied, nothing answered: the buses send it all again.
                error!(error = %e, "cannot start a batch");
                self.note_error(&e.into());
                return Vec::new();
            }
        };
        for p in batch {
            if self.fatal.is_some() {
                // Not applied, so not answered: the buses send these again.
                break;
            }
            self.metrics.messages.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.apply(p, &mut fx) {
                // Transient: not answered, so its bus sends it again.
                self.metrics
                    .transient_errors
                    .fetch_add(1, Ordering::Relaxed);
                self.note_error(&e);
                match e {
                    IngestError::DiskLow | IngestError::StagingDown => {
                        debug!(topic = %p.topic, "not taken now; its bus will send it again")
                    }
                    e => {
                        error!(error = %e, topic = %p.topic, "cannot apply message now; its bus will send it again")
                    }
                }
            }
        }
        self.stage_pending(&mut fx);
        self.store_blobs(&mut fx);
        if let Err(e) = self.store.apply_fleet_updates(&fx.fleet) {
            // The fleet view only: the next heartbeat (every minute) puts it right.
            self.metrics
                .transient_errors
                .fetch_add(1, Ordering::Relaxed);
            error!(error = %e, updates = fx.fleet.len(), "cannot record heartbeats and statuses now");
        }
        self.send_decisions(&mut fx);
        if !fx.touched.is_empty() && self.fatal.is_none() {
            if let Err(e) = self.flush_staging() {
                // Not durable, so not confirmed: no snapshot of staging from this batch
                // goes out (a record ack carries one too). The bus sends again what HQ
                // did not confirm; the records themselves are committed in SQLite.
                error!(error = %e, "staging flush failed; not confirming chunks");
                self.note_error(&e);
                fx.touched.clear();
                fx.replies
                    .retain(|(_, d)| !matches!(d, Down::Progress(_) | Down::RecordAck { .. }));
            }
        }
        for ((bus, blob), ()) in std::mem::take(&mut fx.touched) {
            match self
                .staging()
                .and_then(|mut s| Ok(s.progress(&bus, &blob)?))
            {
                Ok(p) if p.chunk_count > 0 => fx.replies.push((bus, Down::Progress(p))),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot read staging progress"),
            }
        }
        self.maintain();
        let ended = match changes {
            Some(c) => self
                .store
                .end_batch(c, &self.worker, !fx.replies.is_empty()),
            None => Ok(()),
        };
        if let Err(e) = ended {
            // Committed but perhaps not durable: nothing may be answered or acked. The
            // process stops (as on any storage failure) and the buses send it again.
            let why = format!("cannot make a batch durable: {e}");
            error!(%why);
            self.fatal = Some(why);
            return Vec::new();
        }
        fx.replies
    }

    /// Stages what is left of this batch's in-memory uploads (their last chunks are still
    /// to come), before the flush and before any progress of them is answered.
    fn stage_pending(&mut self, fx: &mut Effects) {
        let now = UnixMillis::now();
        let keys: Vec<_> = self.pending.keys().cloned().collect();
        for key in keys {
            if self.fatal.is_some() {
                // Not staged, not confirmed: the bus sends them again.
                self.pending.clear();
                return;
            }
            if let Err(e) = self.stage_one(&key, now, fx) {
                // Not staged, so not confirmed (their progress shows them missing).
                self.metrics
                    .transient_errors
                    .fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, bus = %key.0, blob = ?key.1, "cannot stage chunks now; the bus sends them again");
                self.note_error(&e);
            }
        }
    }

    /// Moves one in-memory upload into staging.
    fn stage_one(
        &mut self,
        key: &(BusId, Sha256),
        now: UnixMillis,
        fx: &mut Effects,
    ) -> Result<(), IngestError> {
        let Some(up) = self.pending.remove(key) else {
            return Ok(());
        };
        let mut staging = self.staging()?;
        let mut over = 0;
        for c in up.chunks.values() {
            if staging.put(&key.0, c, now)? == Stored::OverQuota {
                over += 1;
            }
        }
        if over > 0 {
            self.metrics.over_quota.fetch_add(over, Ordering::Relaxed);
            debug!(bus = %key.0, blob = ?key.1, chunks = over, "staging quota full: chunks not taken (the bus sends them again)");
        }
        fx.touched.insert(key.clone(), ());
        // Other workers may have staged the rest meanwhile (chunks of one upload are
        // split between workers): then it is whole now, and this worker assembles it.
        if let Some(size) = self.staging()?.complete_size(&key.0, &key.1)? {
            if self.chunk_refusal_for(&key.0, &key.1, size)?.is_none() {
                self.assemble(&up.last, &key.0, key.1, size, now, fx)?;
            }
        }
        Ok(())
    }

    /// Makes the blobs the batch assembled durable together, then records them.
    fn store_blobs(&mut self, fx: &mut Effects) {
        let assembled = std::mem::take(&mut fx.blobs);
        if assembled.is_empty() {
            return;
        }
        if self.fatal.is_some() {
            for a in assembled {
                self.discard_written(a.written);
            }
            return;
        }
        // Files are made durable together first (their fsyncs in parallel); bytes that go
        // into the store are made durable by the batch's end, with their rows.
        let mut unsynced = Vec::new();
        let mut meta = Vec::with_capacity(assembled.len());
        for a in assembled {
            let inline = match a.written {
                Written::File(f) => {
                    unsynced.push(f);
                    None
                }
                Written::Database(bytes) => Some(bytes),
            };
            meta.push((a.bus, a.sha, a.size, a.now, inline));
        }
        let files = self.blobs.files();
        let mut persisted = match self.group_commit {
            true => files.persist(unsynced),
            false => unsynced
                .into_iter()
                .flat_map(|w| files.persist(vec![w]))
                .collect(),
        }
        .into_iter();
        for (bus, blob, size, now, inline) in meta {
            let r = match inline {
                Some(bytes) => {
                    self.record_stored(&bus, blob, size, BlobAt::Database(&bytes), now, fx)
                }
                None => match persisted.next() {
                    Some((_, Ok(path))) => {
                        self.record_stored(&bus, blob, size, BlobAt::File(&path), now, fx)
                    }
                    Some((_, Err(e))) => Err(e.into()),
                    None => Err(IngestError::Worker(
                        "a written blob was not persisted".into(),
                    )),
                },
            };
            if let Err(e) = r {
                // Not stored, so not answered: the bus asks again.
                self.metrics
                    .transient_errors
                    .fetch_add(1, Ordering::Relaxed);
                error!(error = %e, %bus, ?blob, "cannot store a verified blob now; its bus will ask again");
                self.note_error(&e);
            }
        }
    }

    /// Drops a written blob that will not be stored.
    fn discard_written(&self, w: Written) {
        match w {
            Written::File(f) => self.blobs.files().discard(f),
            Written::Database(_) => {}
        }
    }

    /// A blob is verified (and durable, when a file): record it, complete what waited for it.
    fn record_stored(
        &mut self,
        bus: &BusId,
        blob: Sha256,
        size: u64,
        at: BlobAt<'_>,
        now: UnixMillis,
        fx: &mut Effects,
    ) -> Result<(), IngestError> {
        let completed = self.store.commit_blob(&blob, size, at, bus, now)?;
        self.metrics.blobs_stored.fetch_add(1, Ordering::Relaxed);
        self.staging()?.discard(bus, &blob)?;
        fx.touched.remove(&(bus.clone(), blob));
        debug!(?blob, completed = completed.len(), "blob stored");
        fx.replies.push((bus.clone(), Down::BlobStored { blob }));
        for done in completed {
            fx.replies.push((
                done.bus_id,
                delivered(done.id, done.hq_received_at, done.content_hash, done.blobs),
            ));
        }
        Ok(())
    }

    /// Staff's decisions from the outbox, to be signed and sent with this batch's replies
    /// (the console only commits them; only ingest holds the signing key).
    fn send_decisions(&mut self, fx: &mut Effects) {
        for bus in std::mem::take(&mut fx.came_online) {
            match self.store.resend_decisions_to(&bus) {
                Ok(0) => {}
                Ok(n) => {
                    info!(%bus, decisions = n, "bus back online: sending its unconfirmed decisions again")
                }
                Err(e) => warn!(error = %e, %bus, "cannot queue decisions again"),
            }
        }
        let now = UnixMillis::now();
        let window = crate::fleet::online_window(self.heartbeat).as_millis() as i64;
        match self
            .store
            .take_due_decisions(now, UnixMillis(now.0.saturating_sub(window)))
        {
            Ok(due) => {
                for (bus, d) in due {
                    self.metrics.decisions_sent.fetch_add(1, Ordering::Relaxed);
                    fx.replies.push((bus, Down::Decision(Box::new(d))));
                }
            }
            Err(e) => warn!(error = %e, "cannot read the decision outbox"),
        }
    }

    /// Queues the replies of an acked batch for the reply lane.
    fn hand_over(&self, out: Vec<(BusId, Down)>, replies: &Replies) {
        for (bus, body) in out {
            if matches!(body, Down::Delivered { .. }) {
                self.metrics.delivered_acks.fetch_add(1, Ordering::Relaxed);
            }
            replies.push(bus, body);
        }
        self.metrics
            .replies_dropped
            .store(replies.dropped(), Ordering::Relaxed);
    }

    fn quarantine(
        &mut self,
        p: &Publish,
        bus: Option<&BusId>,
        reason: &str,
    ) -> Result<(), IngestError> {
        self.metrics.quarantined.fetch_add(1, Ordering::Relaxed);
        if !self.quarantine_budget.allows(bus) {
            self.metrics
                .quarantine_suppressed
                .fetch_add(1, Ordering::Relaxed);
            debug!(topic = %p.topic, bus = ?bus, %reason, "quarantine budget spent: dropped");
            return Ok(());
        }
        warn!(topic = %p.topic, bus = ?bus, %reason, "quarantined");
        let new = self
            .store
            .quarantine(&p.topic, bus.map(BusId::as_str), reason, &p.payload)?;
        if new && self.quarantine_budget.spend(bus) {
            warn!(bus = ?bus, "flood of bad messages: further ones from this bus are dropped, not stored, for the rest of the minute");
        }
        Ok(())
    }

    /// Applies one message. `Err` means a transient failure: nothing was answered.
    fn apply(&mut self, p: &Publish, fx: &mut Effects) -> Result<(), IngestError> {
        let (topic_bus, kind) = match self.topics.parse_up(&p.topic) {
            Ok(v) => v,
            Err(e) => return self.quarantine(p, None, &e.to_string()),
        };
        // A revoked bus (lost, stolen) may still reach a broker that has not reloaded its
        // CRL, or have messages queued there: nothing it sends is accepted.
        let revoked = match self.batch_revoked.get(&topic_bus) {
            Some(r) => r.clone(),
            None => {
                let r = self.store.revoked(&topic_bus)?;
                self.batch_revoked.insert(topic_bus.clone(), r.clone());
                r
            }
        };
        if let Some(reason) = revoked {
            let why = format!("bus {topic_bus} is revoked ({reason})");
            return self.quarantine(p, Some(&topic_bus), &why);
        }
        if !self.known.contains(&topic_bus) {
            // One quarantine budget for all unknown ids (`None`), or a sender could make
            // up ids to get a budget each.
            let why = format!("bus {topic_bus} was never issued by the fleet PKI");
            return self.quarantine(p, None, &why);
        }
        // What grows the disk waits while the disk is nearly full (unanswered: resent).
        if matches!(kind, UpKind::Record | UpKind::Chunk) && self.floor.is_low() {
            return Err(IngestError::DiskLow);
        }
        let env = match UpEnvelope::decode(&p.payload) {
            Ok(env) => env,
            Err(e) => return self.quarantine(p, Some(&topic_bus), &e.to_string()),
        };
        // The topic's bus id is what the broker's ACL ties to the sender's certificate;
        // the payload must agree with it.
        if env.bus_id != topic_bus {
            let why = format!(
                "payload claims bus {} on the topic of bus {}",
                env.bus_id, topic_bus
            );
            return self.quarantine(p, Some(&topic_bus), &why);
        }
        if env.body.kind() != kind {
            let why = format!(
                "{} message on the {} topic",
                env.body.kind().as_str(),
                kind.as_str()
            );
            return self.quarantine(p, Some(&topic_bus), &why);
        }
        let now = UnixMillis::now();
        match env.body {
            Up::Record(app) => self.apply_record(p, *app, &RecordNotes::default(), now, fx),
            Up::RecordNoted { app, notes } => self.apply_record(p, *app, &notes.into(), now, fx),
            Up::RecordWithNotes { app, notes } => self.apply_record(p, *app, &notes, now, fx),
            Up::Chunk(c) => self.apply_chunk(p, &topic_bus, c, now, fx),
            Up::Query(q) => self.apply_query(p, &topic_bus, q.blobs, now, fx),
            Up::Heartbeat(hb) => {
                fx.fleet.push(FleetUpdate::Heartbeat {
                    bus: topic_bus,
                    hb,
                    hq_now: now,
                });
                Ok(())
            }
            Up::Status(s) => {
                if s == BusStatus::Online {
                    fx.came_online.push(topic_bus.clone());
                }
                fx.fleet.push(FleetUpdate::Online {
                    bus: topic_bus,
                    online: s == BusStatus::Online,
                    hq_now: now,
                });
                Ok(())
            }
            Up::DecisionAck {
                application,
                version,
            } => {
                // Only this bus's own decisions move: the topic's bus is the sender.
                if self
                    .store
                    .on_decision_ack(&topic_bus, &application, version, now)?
                {
                    self.metrics
                        .decisions_confirmed
                        .fetch_add(1, Ordering::Relaxed);
                } else {
                    debug!(bus = %topic_bus, %application, version, "ack of no unconfirmed decision of this bus");
                }
                Ok(())
            }
        }
    }

    /// "What do you hold of these blobs?": stored, or what this bus's upload holds. An
    /// upload that is whole but not stored (its assembly failed for a transient reason,
    /// e.g. a full disk, after its last chunk was confirmed) is assembled now: the bus
    /// has nothing left to send, so only its question can finish it.
    fn apply_query(
        &mut self,
        p: &Publish,
        bus: &BusId,
        blobs: Vec<Sha256>,
        now: UnixMillis,
        fx: &mut Effects,
    ) -> Result<(), IngestError> {
        let n = u32::try_from(blobs.len()).unwrap_or(u32::MAX);
        if !self.query_budget.take(bus, n, self.max_query_blobs) {
            self.metrics
                .queries_over_budget
                .fetch_add(1, Ordering::Relaxed);
            debug!(%bus, blobs = n, "query budget spent for this minute: not answered (the bus asks again)");
            return Ok(());
        }
        for blob in blobs {
            if self.store.has_blob(&blob)? {
                fx.replies.push((bus.clone(), Down::BlobStored { blob }));
                continue;
            }
            if self.floor.is_low() {
                return Err(IngestError::DiskLow);
            }
            // Chunks of it in this batch's memory are staged first, so the answer counts
            // them (and an upload they made whole is assembled there).
            self.stage_one(&(bus.clone(), blob), now, fx)?;
            if fx.blobs.iter().any(|a| a.bus == *bus && a.sha == blob) {
                continue;
            }
            match self.staging()?.complete_size(bus, &blob)? {
                Some(size) if self.chunk_refusal_for(bus, &blob, size)?.is_none() => {
                    self.assemble(p, bus, blob, size, now, fx)?;
                }
                _ => {
                    let progress = self.progress_or_reset(bus, &blob)?;
                    fx.replies.push((bus.clone(), Down::Progress(progress)));
                }
            }
        }
        Ok(())
    }

    /// What `bus`'s upload holds; a corrupt entry is reset and answered as empty.
    fn progress_or_reset(
        &mut self,
        bus: &BusId,
        blob: &Sha256,
    ) -> Result<BlobProgress, IngestError> {
        let mut staging = self.staging()?;
        match staging.progress(bus, blob) {
            Ok(p) => Ok(p),
            Err(StagingError::Corrupt(why)) => {
                warn!(%why, ?blob, %bus, "corrupt upload in staging: reset");
                staging.discard(bus, blob)?;
                Ok(staging.progress(bus, blob)?)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn apply_record(
        &mut self,
        p: &Publish,
        app: Application,
        notes: &RecordNotes,
        now: UnixMillis,
        fx: &mut Effects,
    ) -> Result<(), IngestError> {
        self.records_seen += 1;
        self.fault_crash_before_commit();
        let bus = app.bus_id.clone();
        let (catalogue, named) = self.catalogues.for_version(notes.catalogue_version);
        if !named {
            debug!(application = %app.id, %bus, version = ?notes.catalogue_version, current = catalogue.version, "a catalogue version HQ never published: checked against the current one");
        }
        if let Err(e) = catalogue.check(&app) {
            let reason = format!(
                "record refused by service catalogue version {}: {e}",
                catalogue.version
            );
            return self.reject_record(p, bus, &app, reason, fx);
        }
        let ingested = self
            .store
            .ingest_record(&app, now, &self.worker, self.daily_quota)?;
        if !notes.is_empty()
            && !matches!(
                ingested.outcome,
                RecordOutcome::Conflict { .. } | RecordOutcome::OverQuota { .. }
            )
        {
            // Beside the record, first notes win (a re-send after a crash fills them in).
            self.store.set_record_notes(&bus, &app.id, notes)?;
        }
        if let Some(first) = &ingested.collides_with {
            // Both kept: staff decide which is genuine (`hq-sync status`, the console).
            warn!(application = %app.id, %bus, first_bus = %first, "the same tracking number from two buses: recorded for staff, neither refused");
        }
        let counter = match (&ingested.outcome, ingested.new) {
            (RecordOutcome::Conflict { .. } | RecordOutcome::OverQuota { .. }, _) => None,
            (_, true) => Some(&self.metrics.records_new),
            (_, false) => Some(&self.metrics.records_duplicate),
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        match ingested.outcome {
            RecordOutcome::Complete { hq_received_at } => {
                let blobs = app.attachments.iter().map(|a| a.sha256).collect();
                fx.replies.push((
                    bus,
                    delivered(app.id, hq_received_at, app.content_hash(), blobs),
                ));
            }
            RecordOutcome::AwaitingBlobs { missing } => {
                let missing = missing
                    .iter()
                    .map(|b| self.progress_or_reset(&bus, b))
                    .collect::<Result<Vec<_>, _>>()?;
                fx.replies.push((
                    bus,
                    Down::RecordAck {
                        application: app.id,
                        missing,
                    },
                ));
            }
            RecordOutcome::OverQuota { in_last_day } => {
                // Not stored and not answered: the bus keeps it and sends it again later.
                // A bus's day is a few hundred citizens; this bounds a broken or hostile
                // one without ever refusing an application for good.
                self.metrics
                    .records_over_quota
                    .fetch_add(1, Ordering::Relaxed);
                debug!(%bus, in_last_day, quota = self.daily_quota, "daily record quota reached: not taken now");
            }
            RecordOutcome::Conflict { stored, received } => {
                let reason = format!(
                    "integrity: application {} already committed with other content (stored {}, received {})",
                    app.id,
                    stored.short(),
                    received.short()
                );
                self.reject_record(p, bus, &app, reason, fx)?;
            }
        }
        Ok(())
    }

    /// Fault injection for the e2e tests (HQ crash between PUBACK and commit): only in
    /// builds with the `fault-injection` feature, which only the test crate enables.
    #[cfg(feature = "fault-injection")]
    fn fault_crash_before_commit(&self) {
        if self.crash_after.is_some_and(|n| self.records_seen > n) {
            error!("fault injection: aborting before commit");
            std::process::abort();
        }
    }
    #[cfg(not(feature = "fault-injection"))]
    fn fault_crash_before_commit(&self) {
        let _ = (self.crash_after, self.records_seen);
    }

    /// Quarantines a record and tells its bus why, so the operator sees the reason.
    fn reject_record(
        &mut self,
        p: &Publish,
        bus: BusId,
        app: &Application,
        reason: String,
        fx: &mut Effects,
    ) -> Result<(), IngestError> {
        self.quarantine(p, Some(&bus), &reason)?;
        fx.replies.push((
            bus,
            Down::Rejected {
                application: Some(app.id),
                blob: None,
                reason,
            },
        ));
        Ok(())
    }

    /// One chunk: check that this bus may send it, stage it, and when the upload is
    /// whole, assemble, verify and commit the blob.
    fn apply_chunk(
        &mut self,
        p: &Publish,
        bus: &BusId,
        c: Chunk,
        now: UnixMillis,
        fx: &mut Effects,
    ) -> Result<(), IngestError> {
        let blob = c.blob;
        if self.store.has_blob(&blob)? {
            // Stored already (by another worker, or from another bus's upload): whatever
            // this bus staged of it is of no use any more.
            self.staging()?.discard(bus, &blob)?;
            self.metrics
                .chunks_duplicate
                .fetch_add(1, Ordering::Relaxed);
            fx.replies.push((bus.clone(), Down::BlobStored { blob }));
            return Ok(());
        }
        if let Some(why) = self.chunk_refusal(bus, &c)? {
            return self.quarantine(p, Some(bus), &why);
        }
        let key = (bus.clone(), blob);
        let in_memory = match self.pending.get(&key) {
            Some(up) if up.same_shape(&c) => true,
            // The bus changed its chunk size: staged from here on, as staging restarts it.
            Some(_) => {
                self.stage_one(&key, now, fx)?;
                false
            }
            None => self.progress_or_reset(bus, &blob)?.chunk_count == 0,
        };
        if in_memory {
            let up = self.pending.entry(key.clone()).or_insert_with(|| Pending {
                total_size: c.total_size,
                chunk_size: c.chunk_size,
                chunks: BTreeMap::new(),
                last: p.clone(),
            });
            up.last = p.clone();
            let whole = c.count();
            let counter = match up.chunks.insert(c.index, c) {
                None => &self.metrics.chunks_new,
                Some(_) => &self.metrics.chunks_duplicate,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if up.chunks.len() as u32 != whole {
                fx.touched.insert(key, ());
                return Ok(());
            }
            let Some(up) = self.pending.remove(&key) else {
                return Ok(());
            };
            let (size, chunk_size) = (up.total_size, up.chunk_size);
            let pieces = up.chunks.into_values().map(|c| c.data).collect();
            return self.assemble_pieces(p, bus, blob, size, now, fx, Some((chunk_size, pieces)));
        }
        match self.staging()?.put(bus, &c, now)? {
            Stored::New => {
                self.metrics.chunks_new.fetch_add(1, Ordering::Relaxed);
            }
            Stored::Duplicate => {
                self.metrics
                    .chunks_duplicate
                    .fetch_add(1, Ordering::Relaxed);
            }
            Stored::OverQuota => {
                self.metrics.over_quota.fetch_add(1, Ordering::Relaxed);
                debug!(%bus, ?blob, "staging quota full: chunk not taken (the bus sends it again)");
                return Ok(());
            }
        }
        let Some(size) = self.staging()?.complete_size(bus, &blob)? else {
            fx.touched.insert((bus.clone(), blob), ());
            return Ok(());
        };
        self.assemble(p, bus, blob, size, now, fx)
    }

    /// Why `bus` may not send this chunk, if it may not: only a blob its own records
    /// reference, at the size they declare.
    fn chunk_refusal(&mut self, bus: &BusId, c: &Chunk) -> Result<Option<String>, IngestError> {
        self.chunk_refusal_for(bus, &c.blob, c.total_size)
    }

    fn chunk_refusal_for(
        &mut self,
        bus: &BusId,
        blob: &Sha256,
        total_size: u64,
    ) -> Result<Option<String>, IngestError> {
        let key = (bus.clone(), *blob);
        let sizes = match self.batch_expected.get(&key) {
            Some(s) => s.clone(),
            None => {
                let s = self.store.blob_expected(bus, blob)?;
                if !s.is_empty() {
                    self.batch_expected.insert(key, s.clone());
                }
                s
            }
        };
        Ok(if sizes.is_empty() {
            Some("chunk of a blob that none of this bus's committed records references".into())
        } else if !sizes.contains(&total_size) {
            Some(format!(
                "chunk says the blob has {} bytes, this bus's records say {}",
                total_size,
                sizes
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))
        } else {
            None
        })
    }

    /// The upload is whole: assemble, verify, check the content, make it durable and
    /// reference it; then answer.
    fn assemble(
        &mut self,
        p: &Publish,
        bus: &BusId,
        blob: Sha256,
        size: u64,
        now: UnixMillis,
        fx: &mut Effects,
    ) -> Result<(), IngestError> {
        self.assemble_pieces(p, bus, blob, size, now, fx, None)
    }

    /// [`Ingest::assemble`] from `held` (the chunk size and every chunk, in order, from
    /// this batch's memory) or, for `None`, from staging.
    #[allow(clippy::too_many_arguments)]
    fn assemble_pieces(
        &mut self,
        p: &Publish,
        bus: &BusId,
        blob: Sha256,
        size: u64,
        now: UnixMillis,
        fx: &mut Effects,
        held: Option<(u32, Vec<Vec<u8>>)>,
    ) -> Result<(), IngestError> {
        if fx.blobs.iter().any(|a| a.bus == *bus && a.sha == blob) {
            // Whole already in this batch (a chunk or a query again): stored at its end.
            return Ok(());
        }
        let chunk_size = held.as_ref().map(|(n, _)| *n);
        let staged = match held {
            Some((_, pieces)) => Ok(pieces),
            None => self.staging()?.pieces(bus, &blob),
        };
        let pieces = match staged {
            Ok(pieces) => pieces,
            Err(StagingError::Corrupt(why)) => {
                // Reset and answer "nothing held": the bus sends the blob again.
                warn!(%why, ?blob, %bus, "corrupt upload in staging: reset");
                self.staging()?.discard(bus, &blob)?;
                fx.touched.remove(&(bus.clone(), blob));
                fx.replies.push((
                    bus.clone(),
                    Down::Progress(self.progress_or_reset(bus, &blob)?),
                ));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        if chunk_size.is_none() && pieces.is_empty() && size > 0 {
            // Shared staging: between this worker seeing the upload whole and reading it,
            // another worker stored the blob and discarded the upload (found by the cluster
            // campaign). That worker's batch answers the bus; nothing to verify here.
            debug!(?blob, %bus, "upload finished by another worker meanwhile");
            fx.touched.remove(&(bus.clone(), blob));
            return Ok(());
        }
        let bytes: Vec<u8> = pieces.concat();
        drop(pieces);
        // The hash and size first (written to a temp file, or checked in memory for the
        // store), then the content.
        let written = match self.blobs.in_database() {
            true => crate::photos::verify(&blob, size, &bytes).map(|()| None),
            false => self
                .blobs
                .files()
                .write(&blob, size, std::iter::once(&bytes[..]))
                .map(Some),
        };
        match written {
            Ok(file) => {
                // The hash says these are the bytes the bus meant; now check they are what
                // its records declared (an image within limits, not a bomb or a lie).
                let declared = self.store.blob_declarations(bus, &blob)?;
                if let Err(why) = crate::content::check(&bytes, &declared) {
                    if let Some(f) = file {
                        self.blobs.files().discard(f);
                    }
                    self.staging()?.discard(bus, &blob)?;
                    fx.touched.remove(&(bus.clone(), blob));
                    let reason = format!("blob {blob} refused: {why}");
                    self.quarantine(p, Some(bus), &reason)?;
                    // Sending the same bytes again cannot help: every application of this
                    // bus that needs them is rejected, so its operator sees why.
                    for (application, owner) in self.store.applications_with_blob(bus, &blob)? {
                        fx.replies.push((
                            owner,
                            Down::Rejected {
                                application: Some(application),
                                blob: Some(blob),
                                reason: reason.clone(),
                            },
                        ));
                    }
                    return Ok(());
                }
                // Made durable with the batch's other blobs, then recorded (`store_blobs`).
                fx.blobs.push(Assembled {
                    bus: bus.clone(),
                    sha: blob,
                    size,
                    now,
                    written: match file {
                        Some(f) => Written::File(f),
                        None => Written::Database(bytes),
                    },
                });
            }
            Err(
                e @ (PhotoStoreError::HashMismatch { .. } | PhotoStoreError::SizeMismatch { .. }),
            ) => {
                if let Some(chunk_size) = chunk_size {
                    // Assembled from memory: staged first, so the mismatch is counted
                    // with the upload as for one assembled from staging.
                    for (index, data) in bytes.chunks(chunk_size.max(1) as usize).enumerate() {
                        let c = Chunk {
                            blob,
                            total_size: size,
                            chunk_size,
                            index: index as u32,
                            data: data.to_vec(),
                        };
                        self.staging()?.put(bus, &c, now)?;
                    }
                }
                let n = self.staging()?.reject(bus, &blob, now)?;
                let reason = format!("assembled blob failed verification ({e}); attempt {n}");
                self.quarantine(p, Some(bus), &reason)?;
                if n >= MAX_BLOB_MISMATCHES {
                    fx.replies.push((
                        bus.clone(),
                        Down::Rejected {
                            application: None,
                            blob: Some(blob),
                            reason,
                        },
                    ));
                } else {
                    // The progress snapshot now says "nothing held": the bus sends it all again.
                    fx.touched.insert((bus.clone(), blob), ());
                }
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bus_spends_its_own_minute_of_queries() {
        let mut b = PerBusMinute::default();
        let (a, c) = (
            BusId::parse("bus-a").unwrap(),
            BusId::parse("bus-c").unwrap(),
        );
        assert!(b.take(&a, 64, 100));
        assert!(!b.take(&a, 64, 100), "past its allowance");
        assert!(b.take(&a, 36, 100));
        assert!(b.take(&c, 64, 100), "another bus has its own");
        b.window_start = Some(Instant::now() - Duration::from_secs(61));
        assert!(b.take(&a, 64, 100), "a new minute");
    }

    #[test]
    fn only_buses_the_pki_issued_are_known_and_new_ones_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::Pki::init(dir.path(), &[]).unwrap();
        let opts = |id: &BusId| crate::pki::BundleOptions {
            broker_host: "127.0.0.1".into(),
            broker_port: 8883,
            install_dir: pki.bundle_dir(id),
            data_dir: dir.path().join("data"),
            renew: false,
        };
        let (one, two) = (
            BusId::parse("bus-one").unwrap(),
            BusId::parse("bus-two").unwrap(),
        );
        pki.provision_bus(&one, &opts(&one)).unwrap();
        let mut known = KnownBuses::load(pki.clone()).unwrap();
        assert!(known.contains(&one));
        assert!(!known.contains(&two), "never issued");
        pki.provision_bus(&two, &opts(&two)).unwrap();
        assert!(known.contains(&two), "seen as soon as the registry changed");
        assert!(KnownBuses::load(crate::pki::Pki::at(&dir.path().join("none"))).is_err());
    }
}
