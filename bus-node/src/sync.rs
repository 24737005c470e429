//! The sync client: moves what the store holds to HQ over MQTT, whenever a link exists.
//!
//! Two tasks, because rumqttc's event loop must be polled without pause and publishing
//! from the polling task can deadlock (docs/DESIGN.md): the *poller* owns the event loop,
//! forwards incoming packets and connection changes over a channel, and sleeps the
//! back-off after an error (rumqttc itself would reconnect at once). The *pump* owns the
//! store, decides what to send, and applies HQ's answers.
//!
//! Invariants:
//! - Only HQ's application-level messages move the outbox forward; PUBACKs prove nothing.
//! - Records go before any chunk; ID photos before document scans (the store orders them).
//! - At most `record_window` records and `chunk_window` chunks are in flight, so a cut
//!   costs at most those in re-sends; after any reconnect or restart the bus resumes from
//!   the chunks HQ confirmed (`Progress` snapshots, persisted in `blob_sync`).
//! - `clean_session = false` with a stable client id, so HQ's answers queued at the broker
//!   while the bus was away arrive on reconnect. When the broker has lost the session,
//!   rumqttc drops what it had queued, so the pump forgets its in-flight sets and sends
//!   again from the store.

use crate::catalogues::Catalogues;
use crate::config::{BusConfig, BROKER_CONNECTION_TIMEOUT_SECS};
use crate::pace::ChunkPace;
use crate::store::{DecisionStored, Store, StoreError};
use crate::vault::UnlockedVault;
use keliling_shared::backoff::Backoff;
use keliling_shared::mqtt::{self, Brokers, ClientOptions};
use keliling_shared::sign::VerifyingKeys;
use keliling_shared::tls::BrokerTransport;
use keliling_shared::topics::{Topics, UpKind};
use keliling_shared::wire::{
    chunk_range, BlobQuery, BusStatus, Down, DownEnvelope, Fleet, FleetEnvelope, Heartbeat, Up,
    UpEnvelope, MAX_QUERY_BLOBS,
};
use keliling_shared::{ApplicationId, BusId, Sha256, UnixMillis};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, Packet, Publish, QoS, SubscribeFilter};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

const DAMAGED_ATTACHMENT: &str = "foto/dokumen rusak di disk bus: ambil ulang (attachment corrupted on the bus disk: capture it again)";
const DAMAGED_RECORD: &str =
    "catatan rusak di disk bus: ambil ulang (record corrupted on the bus disk: capture it again)";

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("config: {0}")]
    Config(String),
    #[error("encode: {0}")]
    Wire(keliling_shared::wire::WireError),
    #[error("broker connection: {0}")]
    Tls(#[from] keliling_shared::tls::TlsError),
    #[error("sync stopped: {0}")]
    Stopped(String),
}

// Not `#[from]`: that would make the inner error the `source` too, and an error chain
// (`{:#}`) would print it twice. The message above already carries it.
impl From<keliling_shared::wire::WireError> for SyncError {
    fn from(e: keliling_shared::wire::WireError) -> Self {
        SyncError::Wire(e)
    }
}

/// Counters a test, the demo or a benchmark can read while the client runs.
#[derive(Debug, Default)]
pub struct SyncMetrics {
    pub connected: AtomicBool,
    pub connects: AtomicU64,
    pub records_sent: AtomicU64,
    pub chunks_sent: AtomicU64,
    pub bytes_published: AtomicU64,
    pub delivered: AtomicU64,
    pub rejected: AtomicU64,
    /// HQ decisions received (each version once, re-sends included).
    pub decisions: AtomicU64,
    pub quarantined: AtomicU64,
    /// Chunks the pace allows in flight now (see `pace`).
    pub chunk_window: AtomicU64,
    /// Broker sessions ended because HQ stayed silent on a live link (`reset_if_deaf`).
    pub session_resets: AtomicU64,
}

impl SyncMetrics {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

enum Net {
    Connected { session_present: bool },
    Disconnected(String),
    Message(Publish),
}

/// Runs the sync client until `shutdown` turns true.
pub async fn run(
    cfg: BusConfig,
    vault: Arc<UnlockedVault>,
    metrics: Arc<SyncMetrics>,
    catalogues: Arc<Catalogues>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SyncError> {
    let topics =
        Topics::new(&cfg.sync.topic_prefix).map_err(|e| SyncError::Config(e.to_string()))?;
    let store = Store::open_for_sync(&cfg.db_path())?;
    store.check_vault(&vault)?;
    let keys = cfg
        .hq_keys()
        .map_err(|e| SyncError::Config(e.to_string()))?;
    let (client, eventloop, brokers) = connect_options(&cfg, &topics)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let backoff = Backoff::new(
        Duration::from_millis(cfg.sync.backoff_min_ms),
        Duration::from_millis(cfg.sync.backoff_max_ms),
    );
    let reset = Arc::new(tokio::sync::Notify::new());
    let poller = tokio::spawn(poll(
        eventloop,
        brokers,
        tx,
        backoff,
        reset.clone(),
        shutdown.clone(),
    ));
    let bus_id = cfg.bus_id.clone();
    let status_topic = topics.up(&bus_id, UpKind::Status);
    let trust = Trust { vault, keys };
    let mut pump = Pump::new(
        cfg,
        topics,
        store,
        trust,
        client.clone(),
        metrics,
        catalogues,
    );
    pump.reset = reset;
    let result = pump.run(rx, &mut shutdown).await;
    // A clean goodbye: the broker then does not publish the last will, so say it ourselves.
    publish_status(&client, &bus_id, status_topic, BusStatus::Offline);
    let _ = tokio::time::timeout(Duration::from_millis(500), client.disconnect()).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), poller).await;
    result
}

fn connect_options(
    cfg: &BusConfig,
    topics: &Topics,
) -> Result<(AsyncClient, EventLoop, Brokers), SyncError> {
    // TLS with the bus's certificate unless the config explicitly says otherwise; the
    // files are read here, so a missing key is a start-up error, not a reconnect loop.
    let transport = BrokerTransport::resolve(&cfg.broker.tls, cfg.broker.insecure_plaintext)?;
    if !transport.is_tls() {
        tracing::warn!(
            "INSECURE: this bus talks to the broker over plain TCP without a certificate \
             (broker.insecure_plaintext = true): citizens' data crosses the network readable. \
             For local experiments only."
        );
    }
    let will = UpEnvelope::new(cfg.bus_id.clone(), Up::Status(BusStatus::Offline)).encode()?;
    let window = cfg.sync.record_window + cfg.sync.chunk_window;
    let side = ClientOptions {
        // The broker keeps the session (and what it queued) while the bus is away.
        client_id: cfg.bus_id.to_string(),
        clean_session: false,
        manual_acks: false,
        inflight: u16::try_from(window + 16).unwrap_or(u16::MAX),
        request_channel_capacity: window + 64,
        default_connection_timeout_secs: BROKER_CONNECTION_TIMEOUT_SECS,
        last_will: Some(LastWill::new(
            topics.up(&cfg.bus_id, UpKind::Status),
            will,
            QoS::AtLeastOnce,
            true,
        )),
    };
    let brokers = Brokers::new(&cfg.broker, transport.clone(), side.clone())
        .map_err(|e| SyncError::Config(e.to_string()))?;
    let (client, eventloop) = mqtt::client(&cfg.broker, transport, side);
    Ok((client, eventloop, brokers))
}

/// Polls the event loop forever; never blocks on the pump (the channel is unbounded, and
/// what the pump has in flight bounds what HQ sends back).
async fn poll(
    mut eventloop: EventLoop,
    mut brokers: Brokers,
    tx: mpsc::UnboundedSender<Net>,
    mut backoff: Backoff,
    reset: Arc<tokio::sync::Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connected_at: Option<Instant> = None;
    // A session reset under way: the connection with a clean session that ends the
    // broker's old one (see `Pump::reset_if_deaf`).
    let mut resetting = false;
    loop {
        let event = tokio::select! {
            _ = shutdown.changed() => return,
            _ = reset.notified() => {
                resetting = true;
                eventloop.mqtt_options.set_clean_session(true);
                eventloop.clean();
                if tx.send(Net::Disconnected("a new broker session is being started".into())).is_err() {
                    return;
                }
                continue;
            }
            ev = eventloop.poll() => ev,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) if resetting => {
                // The broker dropped the old session (its subscriptions, its queue); now
                // a persistent one again, which it starts afresh: the pump subscribes
                // and sends again from its store as after any lost session.
                resetting = false;
                eventloop.mqtt_options.set_clean_session(false);
                eventloop.clean();
                info!("broker session reset; reconnecting with a new persistent session");
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                connected_at = Some(Instant::now());
                if tx
                    .send(Net::Connected {
                        session_present: ack.session_present,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if tx.send(Net::Message(p)).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                if connected_at
                    .take()
                    .is_some_and(|t| t.elapsed() > Duration::from_secs(10))
                {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                debug!(error = %e, ?delay, "link down; backing off");
                // A cluster: the next node is tried (the session lives in the cluster).
                if let Some(next) = brokers.next(&mut eventloop) {
                    info!(error = %e, broker = %next, "broker unreachable; trying the next one");
                }
                if resetting {
                    eventloop.mqtt_options.set_clean_session(true);
                }
                if tx.send(Net::Disconnected(e.to_string())).is_err() {
                    return;
                }
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// What trying to send one chunk came to.
enum ChunkSent {
    Sent,
    /// Unreadable on the bus disk: its applications were set aside for the operator.
    SetAside,
    /// rumqttc's queue is full: try again on the next tick.
    QueueFull,
}

/// Online/offline, retained, so HQ's fleet view knows.
fn publish_status(client: &AsyncClient, bus: &BusId, topic: String, status: BusStatus) {
    let env = UpEnvelope::new(bus.clone(), Up::Status(status));
    if let Ok(bytes) = env.encode() {
        let _ = client.try_publish(topic, QoS::AtLeastOnce, true, bytes);
    }
}

struct Pump {
    cfg: BusConfig,
    topics: Topics,
    store: Store,
    /// Decrypts records and chunks just before they are published.
    vault: Arc<UnlockedVault>,
    /// HQ's verifying keys: nothing on the down topic is believed without their signature.
    keys: VerifyingKeys,
    client: AsyncClient,
    metrics: Arc<SyncMetrics>,
    /// The service catalogue in use (shared with the station): HQ's newer ones replace it.
    catalogues: Arc<Catalogues>,
    connected: bool,
    /// Whether the subscription to our down topic was handed to rumqttc on this
    /// connection; a failed one is tried again on the next tick, not on the next connect.
    subscribed: bool,
    /// Whether the fleet topics are subscribed to in the broker's session (`subscribe`).
    fleet_subscribed: bool,
    records_in_flight: HashMap<ApplicationId, Instant>,
    chunks_in_flight: HashMap<(Sha256, u32), Instant>,
    /// How many chunks the link carries without queueing (`pace`).
    pace: ChunkPace,
    /// When the session last resumed: chunks in flight then got their clocks restarted,
    /// so their confirmation times say nothing about the link and the pace ignores them.
    resumed_at: Instant,
    /// Decisions stored here whose acknowledgement has not been handed to rumqttc yet.
    decision_acks: Vec<(ApplicationId, u32)>,
    /// Blobs whose chunks HQ has all confirmed, waiting for `BlobStored`.
    complete_since: HashMap<Sha256, Instant>,
    last_heartbeat: Option<Instant>,
    last_recheck: Instant,
    /// When HQ last said anything: while answers flow, in-flight items are merely queued
    /// behind others on a slow link, not lost.
    last_heard: Instant,
    /// When this connection came up.
    connected_at: Instant,
    /// Tells the poller to start a new broker session (`reset_if_deaf`).
    reset: Arc<tokio::sync::Notify>,
    /// Resets since HQ was last heard: each doubles the silence the next one needs.
    resets_unheard: u32,
}

/// What the pump opens and believes with: the unlocked vault and HQ's pinned keys.
struct Trust {
    vault: Arc<UnlockedVault>,
    keys: VerifyingKeys,
}

impl Pump {
    fn new(
        cfg: BusConfig,
        topics: Topics,
        store: Store,
        Trust { vault, keys }: Trust,
        client: AsyncClient,
        metrics: Arc<SyncMetrics>,
        catalogues: Arc<Catalogues>,
    ) -> Self {
        let pace = ChunkPace::new(
            cfg.sync.chunk_window,
            Duration::from_millis(cfg.sync.chunk_queue_ms),
        );
        Pump {
            pace,
            cfg,
            topics,
            store,
            vault,
            keys,
            client,
            metrics,
            catalogues,
            connected: false,
            subscribed: false,
            fleet_subscribed: false,
            records_in_flight: HashMap::new(),
            chunks_in_flight: HashMap::new(),
            complete_since: HashMap::new(),
            decision_acks: Vec::new(),
            last_heartbeat: None,
            last_recheck: Instant::now(),
            last_heard: Instant::now(),
            resumed_at: Instant::now(),
            connected_at: Instant::now(),
            reset: Arc::new(tokio::sync::Notify::new()),
            resets_unheard: 0,
        }
    }

    /// Drives the pump until shutdown. The loop only waits; applying HQ's answers and
    /// deciding what to send touch SQLite, so each wake-up runs on a blocking thread with
    /// the pump moved in and handed back (`keliling_shared::blocking::run_owned`).
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Net>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), SyncError> {
        let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.sync.tick_ms.max(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut nets = Vec::new();
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                msg = rx.recv() => match msg {
                    None => return Ok(()),
                    Some(net) => {
                        // Apply everything already waiting before deciding what to send.
                        nets.push(net);
                        while let Ok(net) = rx.try_recv() {
                            nets.push(net);
                        }
                    }
                },
                _ = tick.tick() => {}
            }
            let (pump, result) = match keliling_shared::blocking::run_owned(self, move |p| {
                for net in nets {
                    p.on_net(net);
                }
                if p.connected {
                    p.pump()
                } else {
                    Ok(())
                }
            })
            .await
            {
                Ok(v) => v,
                // A panic in the pump: its state is gone, so sync stops, loudly (what is
                // saved stays saved; the daemon's supervisor restarts it).
                Err(e) => return Err(SyncError::Stopped(e.to_string())),
            };
            self = pump;
            if let Err(e) = result {
                // A store error (disk full, locked) must not kill the daemon: what is
                // saved stays saved, and the next tick tries again.
                warn!(error = %e, "sync pump failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    fn on_net(&mut self, net: Net) {
        match net {
            Net::Connected { session_present } => {
                self.metrics.connects.fetch_add(1, Ordering::Relaxed);
                self.metrics.connected.store(true, Ordering::Relaxed);
                info!(session_present, "connected to broker");
                self.connected = true;
                if session_present {
                    // rumqttc re-sends what it had in flight now: restart their clocks so
                    // the pump does not send them a second time.
                    let now = Instant::now();
                    self.records_in_flight.values_mut().for_each(|t| *t = now);
                    self.chunks_in_flight.values_mut().for_each(|t| *t = now);
                    self.resumed_at = now;
                } else {
                    // rumqttc dropped everything it had queued: send it again from the store.
                    self.records_in_flight.clear();
                    self.chunks_in_flight.clear();
                    // And the broker has no subscription of ours: the fleet's too.
                    self.fleet_subscribed = false;
                }
                self.last_heard = Instant::now();
                self.connected_at = self.last_heard;
                self.subscribed = false;
                self.subscribe();
                self.publish_status(BusStatus::Online);
                self.last_heartbeat = None;
                if let Err(e) = self.query_needed_blobs() {
                    warn!(error = %e, "cannot ask HQ about partial uploads");
                }
            }
            Net::Disconnected(why) => {
                if self.connected {
                    info!(%why, "link lost");
                }
                self.connected = false;
                self.subscribed = false;
                self.metrics.connected.store(false, Ordering::Relaxed);
            }
            Net::Message(p) => {
                self.last_heard = Instant::now();
                if self.topics.fleet_name(&p.topic).is_none() {
                    // HQ answered on our own topic: the session delivers.
                    self.resets_unheard = 0;
                }
                if let Err(e) = self.on_message(&p) {
                    warn!(error = %e, topic = %p.topic, "cannot apply HQ's message; it will be re-sent");
                }
            }
        }
    }

    /// Subscribes to this bus's down topic and the fleet's (the retained catalogue comes
    /// at once); false when rumqttc's queue is full (the pump tries again on its next
    /// tick: until then the bus would hear nothing).
    ///
    /// The fleet topics are subscribed to once per process and again only when the broker
    /// lost the session: a broker answers every SUBSCRIBE with the retained catalogue
    /// (31 KB for a city's), which on 2G would cost seconds of signal at each reconnect,
    /// while a kept session already receives whatever HQ publishes there.
    fn subscribe(&mut self) -> bool {
        if self.subscribed {
            return true;
        }
        let mut filters = vec![self.topics.down_filter(&self.cfg.bus_id)];
        if !self.fleet_subscribed {
            filters.push(self.topics.fleet_filter());
        }
        let filters = filters
            .into_iter()
            .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce));
        match self.client.try_subscribe_many(filters) {
            Ok(()) => {
                self.subscribed = true;
                self.fleet_subscribed = true;
            }
            Err(e) => warn!(error = %e, "cannot subscribe to HQ's answers yet; trying again"),
        }
        self.subscribed
    }

    /// Sets a message aside that the bus does not believe or cannot use; it moves nothing.
    fn quarantine(&mut self, p: &Publish, why: &str) -> Result<(), StoreError> {
        self.metrics.quarantined.fetch_add(1, Ordering::Relaxed);
        warn!(topic = %p.topic, %why, "message from HQ quarantined");
        self.store.quarantine(&p.topic, why, &p.payload)
    }

    fn on_message(&mut self, p: &Publish) -> Result<(), StoreError> {
        if let Some(name) = self.topics.fleet_name(&p.topic) {
            return self.on_fleet_message(name, p);
        }
        // Believed only with HQ's signature, and only when meant for this bus: a broker
        // or another fleet certificate cannot make this bus move anything.
        let env = match DownEnvelope::decode_verified(&p.payload, &self.keys) {
            Ok(env) if env.bus_id == self.cfg.bus_id => env,
            Ok(env) => {
                let why = format!(
                    "message for bus {} arrived at bus {}",
                    env.bus_id, self.cfg.bus_id
                );
                return self.quarantine(p, &why);
            }
            Err(e) => return self.quarantine(p, &e.to_string()),
        };
        match env.body {
            Down::RecordAck {
                application,
                missing,
            } => {
                self.records_in_flight.remove(&application);
                self.store.on_record_ack(&application, &missing)?;
            }
            Down::Progress(progress) => {
                self.chunks_confirmed(|sha, i| *sha == progress.blob && progress.have.get(i));
                self.store.on_progress(&progress)?;
            }
            Down::BlobStored { blob } => {
                self.chunks_confirmed(|sha, _| *sha == blob);
                self.complete_since.remove(&blob);
                self.store.on_blob_stored(&blob)?;
            }
            Down::Delivered {
                application,
                hq_received_at,
                content_hash,
                blobs,
            } => {
                // HQ says what it holds; it must be exactly this bus's record, or the bus
                // would stop sending (and later purge) what HQ never got.
                match self.store.holds_as_delivered(
                    &application,
                    &content_hash,
                    &blobs,
                    &self.vault,
                ) {
                    Ok(Some(true)) => {}
                    Ok(Some(false)) => {
                        let why = format!(
                            "delivery ack for {application} names other content than this bus's record"
                        );
                        return self.quarantine(p, &why);
                    }
                    // Not ours: nothing to move.
                    Ok(None) => return Ok(()),
                    // Unreadable here: the record is set aside by the send path.
                    Err(e @ (StoreError::Vault(_) | StoreError::Corrupt(_))) => {
                        warn!(error = %e, %application, "cannot check a delivery ack against a damaged record");
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
                self.records_in_flight.remove(&application);
                if self.store.on_delivered(&application, hq_received_at)? {
                    self.metrics.delivered.fetch_add(1, Ordering::Relaxed);
                    debug!(%application, "delivered");
                }
            }
            Down::Rejected {
                application,
                blob,
                reason,
            } => {
                // HQ's words reach the operator's screen: no escape codes or direction tricks.
                let reason = keliling_shared::text::printable(&reason);
                self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                warn!(?application, ?blob, %reason, "HQ rejected");
                if let Some(id) = application {
                    self.records_in_flight.remove(&id);
                    self.store.on_rejected(&id, &reason)?;
                } else if let Some(blob) = blob {
                    // HQ gave up on a blob whose bytes never matched their hash. If our copy
                    // is damaged, say so on the applications that need it; if it is sound,
                    // the fault was on the way and sending again is right.
                    let note = format!("HQ rejected blob {blob:?}: {reason}");
                    self.store.quarantine(&p.topic, &note, &[])?;
                    if !self.store.blob_is_sound(&blob, &self.vault)? {
                        self.store
                            .reject_apps_with_blob(&blob, DAMAGED_ATTACHMENT)?;
                    }
                }
            }
            Down::Decision(d) => match self.store.on_decision(&d)? {
                DecisionStored::New | DecisionStored::Known => {
                    if !self.decision_acks.contains(&(d.application, d.version)) {
                        self.decision_acks.push((d.application, d.version));
                    }
                    info!(application = %d.application, version = d.version, kind = d.outcome.kind(), "HQ's decision received");
                    self.metrics.decisions.fetch_add(1, Ordering::Relaxed);
                }
                // Signed by HQ for this bus, but about nothing this store holds: kept
                // aside, not acknowledged (HQ's console keeps showing it as unconfirmed).
                DecisionStored::UnknownApplication => {
                    let why = format!(
                        "decision for {}, which this bus does not hold",
                        d.application
                    );
                    return self.quarantine(p, &why);
                }
            },
        }
        Ok(())
    }

    /// A message HQ published to every bus (retained: it comes again at each connect).
    fn on_fleet_message(&mut self, name: &str, p: &Publish) -> Result<(), StoreError> {
        let env = match FleetEnvelope::decode_verified(&p.payload, &self.keys) {
            Ok(env) if env.topic_name() == name => env,
            Ok(env) => {
                let why = format!("fleet message {} on topic {}", env.topic_name(), p.topic);
                return self.quarantine(p, &why);
            }
            Err(e) => return self.quarantine(p, &e.to_string()),
        };
        match env.body {
            Fleet::Catalogue(cat) => {
                let current = self.catalogues.current();
                if cat.version > current.version {
                    // Kept before it is used: a restart does not go back to an older one.
                    self.store
                        .keep_fleet_message(name, cat.version, &p.payload)?;
                    info!(
                        version = cat.version,
                        services = cat.services.len(),
                        was = current.version,
                        "HQ's new service catalogue is in use"
                    );
                    self.catalogues.offer(*cat);
                } else if cat.version == current.version && *cat != *current {
                    warn!(
                        version = cat.version,
                        "HQ's service catalogue differs from this bus's own of the same version: \
                         keeping this bus's (give a changed catalogue a higher version)"
                    );
                } else {
                    debug!(
                        version = cat.version,
                        current = current.version,
                        "HQ's service catalogue: nothing newer"
                    );
                }
            }
        }
        Ok(())
    }

    /// Tells HQ which decisions are stored here, once each (HQ re-sends what it does not
    /// hear about, and a re-sent one is acknowledged again).
    fn send_decision_acks(&mut self) -> Result<bool, SyncError> {
        while let Some(&(application, version)) = self.decision_acks.first() {
            let body = Up::DecisionAck {
                application,
                version,
            };
            if !self.publish(UpKind::Ack, body, QoS::AtLeastOnce)? {
                return Ok(false);
            }
            self.decision_acks.remove(0);
        }
        Ok(true)
    }

    /// Forgets the chunks HQ now holds, timing each for the pace.
    fn chunks_confirmed(&mut self, held: impl Fn(&Sha256, u32) -> bool) {
        let now = Instant::now();
        let pace = &mut self.pace;
        let resumed_at = self.resumed_at;
        self.chunks_in_flight.retain(|(sha, i), sent| {
            if held(sha, *i) {
                // A chunk from before the last resume may have reached HQ before the cut:
                // its answer comes right after the reconnect, and timing it would make
                // the link look faster than it is (measured on 2G: the window sat at one).
                if *sent > resumed_at {
                    pace.confirmed(now.duration_since(*sent), now);
                }
                false
            } else {
                true
            }
        });
        self.metrics
            .chunk_window
            .store(self.pace.window() as u64, Ordering::Relaxed);
    }

    /// Sends what the windows allow, most useful first.
    fn pump(&mut self) -> Result<(), SyncError> {
        if !self.subscribe() {
            // Sending before HQ's answers can reach us would only cost re-sends.
            return Ok(());
        }
        let now = Instant::now();
        // Acks of HQ's decisions are tiny and end HQ's re-sends: before anything else.
        if !self.send_decision_acks()? {
            return Ok(());
        }
        self.heartbeat_if_due(now)?;
        if self.reset_if_deaf(now) {
            return Ok(());
        }
        self.expire_unanswered(now);
        // Most useful first: records, then chunks, then records whose ack went missing.
        // Each step says whether the link can take more now.
        if !self.send_records()? {
            return Ok(());
        }
        if !self.send_chunks(now)? {
            return Ok(());
        }
        self.recheck_deliveries(now)
    }

    fn heartbeat_if_due(&mut self, now: Instant) -> Result<(), SyncError> {
        let every = Duration::from_secs(self.cfg.sync.heartbeat_secs.max(1));
        if self
            .last_heartbeat
            .is_none_or(|t| now.duration_since(t) >= every)
        {
            self.send_heartbeat()?;
            self.last_heartbeat = Some(now);
        }
        Ok(())
    }

    /// HQ silent for long on a live connection while we wait for answers: the broker's
    /// session for this bus no longer delivers (seen on a NATS cluster under load: a
    /// subscription's consumer lost in a failover, or stuck, nats-server PR #6807, while
    /// the session itself survives and every reconnect says "session present"). Nothing
    /// the bus re-sends can mend that, so the bus ends the session (one connection with a
    /// clean session) and starts a new one. Nothing is lost: only HQ's answers move the
    /// outbox, HQ answers every re-sent record and chunk, and it re-sends its decisions
    /// while the bus is online. True when a reset was asked for.
    fn reset_if_deaf(&mut self, now: Instant) -> bool {
        // HQ itself down looks the same from here, and each new session costs the
        // retained catalogue again: every reset in a row waits twice as long (to 32x).
        let deaf_after = (self.cfg.resend_after() * 4).max(Duration::from_secs(60))
            * (1u32 << self.resets_unheard.min(5));
        let waiting = !self.records_in_flight.is_empty() || !self.chunks_in_flight.is_empty();
        if !(self.connected
            && waiting
            && now.duration_since(self.last_heard) >= deaf_after
            && now.duration_since(self.connected_at) >= deaf_after)
        {
            return false;
        }
        warn!(
            silent_for = ?now.duration_since(self.last_heard),
            "HQ has not answered on a live link: the broker's session no longer delivers; starting a new one"
        );
        self.metrics.session_resets.fetch_add(1, Ordering::Relaxed);
        self.resets_unheard += 1;
        self.connected = false;
        self.subscribed = false;
        self.reset.notify_one();
        true
    }

    /// What HQ has not answered in time is eligible again. While HQ's answers still flow,
    /// an unanswered item is most likely queued behind others on a slow link, so it gets
    /// longer before it is sent again.
    fn expire_unanswered(&mut self, now: Instant) {
        let resend = self.cfg.resend_after();
        let quiet = now.duration_since(self.last_heard) >= resend / 2;
        let expired = |t: &Instant| {
            let age = now.duration_since(*t);
            age >= resend * 4 || (quiet && age >= resend)
        };
        self.records_in_flight.retain(|_, t| !expired(t));
        let before = self.chunks_in_flight.len();
        self.chunks_in_flight.retain(|_, t| !expired(t));
        if self.chunks_in_flight.len() < before {
            self.pace.lost();
        }
    }

    /// First: records HQ has not confirmed, within the record window. False while some wait
    /// (no chunk goes before every record is out).
    fn send_records(&mut self) -> Result<bool, SyncError> {
        let window = self.cfg.sync.record_window;
        let queued = self
            .store
            .queued_records(window + self.records_in_flight.len())?;
        for id in queued {
            if self.records_in_flight.contains_key(&id) {
                continue;
            }
            if self.records_in_flight.len() >= window || !self.send_record(&id)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Then: chunks of the blobs HQ asked for, within the pace's window; a query for blobs
    /// whose chunks HQ all confirmed without saying it stored them. False when the
    /// client's queue is full.
    fn send_chunks(&mut self, now: Instant) -> Result<bool, SyncError> {
        let resend = self.cfg.resend_after();
        let mut budget = self
            .pace
            .window()
            .saturating_sub(self.chunks_in_flight.len());
        let mut to_query = Vec::new();
        if budget > 0 {
            for plan in self.store.needed_blobs(32)? {
                let mut any_missing = false;
                for index in plan.have.missing(plan.chunk_count) {
                    any_missing = true;
                    if budget == 0 {
                        break;
                    }
                    if self.chunks_in_flight.contains_key(&(plan.sha256, index)) {
                        continue;
                    }
                    match self.send_chunk(&plan, index, now)? {
                        ChunkSent::Sent => budget -= 1,
                        ChunkSent::SetAside => break,
                        ChunkSent::QueueFull => return Ok(false),
                    }
                }
                if !any_missing {
                    // Every chunk confirmed, yet no BlobStored: ask, in case HQ lost them.
                    let since = *self.complete_since.entry(plan.sha256).or_insert(now);
                    if now.duration_since(since) >= resend {
                        to_query.push(plan.sha256);
                        self.complete_since.insert(plan.sha256, now);
                    }
                }
                if budget == 0 {
                    break;
                }
            }
        }
        if !to_query.is_empty() {
            self.publish(
                UpKind::Query,
                Up::Query(BlobQuery { blobs: to_query }),
                QoS::AtLeastOnce,
            )?;
        }
        Ok(true)
    }

    /// One chunk, read and decrypted just before it goes out.
    fn send_chunk(
        &mut self,
        plan: &crate::store::BlobPlan,
        index: u32,
        now: Instant,
    ) -> Result<ChunkSent, SyncError> {
        let range = chunk_range(plan.size, plan.chunk_size, index);
        let data = match self.store.read_chunk(&plan.sha256, range, &self.vault) {
            Ok(data) => data,
            Err(e @ (StoreError::Vault(_) | StoreError::Corrupt(_))) => {
                // Damaged or tampered with on the bus disk: sending it again would not
                // help, so the operator is told, and the link moves on.
                warn!(error = %e, blob = ?plan.sha256, "attachment cannot be read");
                self.store
                    .reject_apps_with_blob(&plan.sha256, DAMAGED_ATTACHMENT)?;
                return Ok(ChunkSent::SetAside);
            }
            Err(e) => return Err(e.into()),
        };
        let chunk = keliling_shared::wire::Chunk {
            blob: plan.sha256,
            total_size: plan.size,
            chunk_size: plan.chunk_size,
            index,
            data,
        };
        if !self.publish(UpKind::Chunk, Up::Chunk(chunk), QoS::AtLeastOnce)? {
            return Ok(ChunkSent::QueueFull);
        }
        self.metrics.chunks_sent.fetch_add(1, Ordering::Relaxed);
        self.chunks_in_flight.insert((plan.sha256, index), now);
        Ok(ChunkSent::Sent)
    }

    /// Last: records whose delivery ack went missing, asked about again once per resend.
    fn recheck_deliveries(&mut self, now: Instant) -> Result<(), SyncError> {
        if now.duration_since(self.last_recheck) < self.cfg.resend_after() {
            return Ok(());
        }
        self.last_recheck = now;
        for id in self
            .store
            .acked_records_without_delivery(self.cfg.sync.record_window)?
        {
            if !self.records_in_flight.contains_key(&id) && !self.send_record(&id)? {
                break;
            }
        }
        Ok(())
    }

    fn send_record(&mut self, id: &ApplicationId) -> Result<bool, SyncError> {
        let app = match self.store.application(id, &self.vault) {
            Ok(Some(app)) => app,
            Ok(None) => return Ok(true),
            Err(e @ (StoreError::Vault(_) | StoreError::Corrupt(_))) => {
                // Unreadable on the bus disk: it would jam the queue, so it is set aside
                // for the operator, and the rest goes on.
                warn!(error = %e, application = %id, "record cannot be read; marked for the operator");
                self.store.on_rejected(id, DAMAGED_RECORD)?;
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        };
        let notes = self.store.record_notes(id)?;
        let body = if notes.is_empty() {
            Up::Record(Box::new(app))
        } else {
            Up::RecordWithNotes {
                app: Box::new(app),
                notes,
            }
        };
        if !self.publish(UpKind::Record, body, QoS::AtLeastOnce)? {
            return Ok(false);
        }
        self.metrics.records_sent.fetch_add(1, Ordering::Relaxed);
        self.records_in_flight.insert(*id, Instant::now());
        Ok(true)
    }

    fn query_needed_blobs(&mut self) -> Result<(), SyncError> {
        let blobs = self.store.needed_blob_hashes()?;
        for batch in blobs.chunks(MAX_QUERY_BLOBS) {
            self.publish(
                UpKind::Query,
                Up::Query(BlobQuery {
                    blobs: batch.to_vec(),
                }),
                QoS::AtLeastOnce,
            )?;
        }
        Ok(())
    }

    fn send_heartbeat(&mut self) -> Result<(), SyncError> {
        let s = self.store.status()?;
        let hb = Heartbeat {
            queue_depth: u32::try_from(s.waiting()).unwrap_or(u32::MAX),
            bytes_waiting: s.bytes_waiting,
            oldest_unsynced: s.oldest_waiting,
            last_sync: s.last_sync,
            position: None,
            software: env!("CARGO_PKG_VERSION").to_owned(),
            bus_clock: UnixMillis::now(),
        };
        // A heartbeat is stale by the next one: QoS 0, never queued for later.
        self.publish(UpKind::Heartbeat, Up::Heartbeat(hb), QoS::AtMostOnce)?;
        Ok(())
    }

    fn publish_status(&mut self, status: BusStatus) {
        let topic = self.topics.up(&self.cfg.bus_id, UpKind::Status);
        publish_status(&self.client, &self.cfg.bus_id, topic, status);
    }

    /// Returns false when the client's queue is full: try again on the next tick.
    fn publish(&mut self, kind: UpKind, body: Up, qos: QoS) -> Result<bool, SyncError> {
        let bytes = UpEnvelope::new(self.cfg.bus_id.clone(), body).encode()?;
        let len = bytes.len() as u64;
        match self
            .client
            .try_publish(self.topics.up(&self.cfg.bus_id, kind), qos, false, bytes)
        {
            Ok(()) => {
                self.metrics
                    .bytes_published
                    .fetch_add(len, Ordering::Relaxed);
                Ok(true)
            }
            Err(e) => {
                debug!(error = %e, "client queue full");
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::KdfParams;
    use keliling_shared::sign::SigningKey;
    use rumqttc::Request;

    /// A pump on a client whose request queue the test holds (capacity one, as a full
    /// rumqttc queue would be), over a fresh bus store.
    fn pump_on_queue(dir: &std::path::Path) -> (Pump, flume::Receiver<Request>) {
        let bus = BusId::parse("bus-test-01").unwrap();
        let cfg = BusConfig::for_bus(bus, dir.to_path_buf(), "localhost", 1883);
        let mut store = Store::open(&dir.join("bus.sqlite")).unwrap();
        let vault = store
            .init_vault(&"kata sandi percobaan".into(), KdfParams::INSECURE_FAST)
            .unwrap();
        let keys = VerifyingKeys::new(vec![SigningKey::generate().verifying_key()]).unwrap();
        let (tx, rx) = flume::bounded(1);
        let pump = Pump::new(
            cfg,
            Topics::default(),
            store,
            Trust {
                vault: Arc::new(vault),
                keys,
            },
            AsyncClient::from_senders(tx),
            Arc::default(),
            Arc::new(Catalogues::new(keliling_shared::Catalogue::builtin())),
        );
        (pump, rx)
    }

    fn is_down_subscription(r: &Request) -> bool {
        matches!(r, Request::Subscribe(s)
            if s.filters.iter().any(|f| f.path == "keliling/v1/bus/bus-test-01/down/#"))
    }

    #[test]
    fn a_failed_subscribe_is_tried_again_on_the_next_tick() {
        let dir = tempfile::tempdir().unwrap();
        let (mut pump, rx) = pump_on_queue(dir.path());
        // The queue is full when the link comes up: the subscription cannot be handed over.
        pump.client
            .try_publish("x", QoS::AtMostOnce, false, Vec::new())
            .unwrap();
        pump.on_net(Net::Connected {
            session_present: false,
        });
        assert!(!pump.subscribed);
        let queued: Vec<Request> = rx.drain().collect();
        assert!(!queued.iter().any(is_down_subscription));

        // The next tick, with room in the queue, subscribes: no new connect needed.
        pump.pump().unwrap();
        assert!(pump.subscribed);
        let queued: Vec<Request> = rx.drain().collect();
        assert!(
            queued.first().is_some_and(is_down_subscription),
            "the first request after the retry is the subscription: {queued:?}"
        );

        // A lost link forgets it, so the next connection subscribes again; with the
        // session kept, to its down topic only (the fleet's would bring the retained
        // catalogue again).
        pump.on_net(Net::Disconnected("cut".into()));
        assert!(!pump.subscribed);
        pump.on_net(Net::Connected {
            session_present: true,
        });
        let queued: Vec<Request> = rx.drain().collect();
        assert!(queued.iter().any(is_down_subscription));
        assert!(!queued.iter().any(is_fleet_subscription), "{queued:?}");
        // A broker that lost the session gets both again.
        pump.on_net(Net::Disconnected("broker restarted".into()));
        pump.on_net(Net::Connected {
            session_present: false,
        });
        let queued: Vec<Request> = rx.drain().collect();
        assert!(queued.iter().any(is_fleet_subscription), "{queued:?}");
    }

    /// A live link on which HQ stays silent while answers are due: the session is
    /// ended once, then the next needs twice the silence; HQ's answer on our own topic
    /// (not the fleet's retained catalogue) resets that.
    #[test]
    fn a_deaf_session_is_reset_with_growing_patience() {
        let dir = tempfile::tempdir().unwrap();
        let (mut pump, _rx) = pump_on_queue(dir.path());
        pump.on_net(Net::Connected {
            session_present: true,
        });
        let start = Instant::now();
        let deaf = (pump.cfg.resend_after() * 4).max(Duration::from_secs(60));
        // Nothing in flight: silence is normal.
        assert!(!pump.reset_if_deaf(start + deaf * 3));
        pump.records_in_flight
            .insert(ApplicationId::new_v7(), start);
        pump.last_heard = start;
        pump.connected_at = start;
        assert!(
            !pump.reset_if_deaf(start + deaf / 2),
            "not silent long enough"
        );
        assert!(pump.reset_if_deaf(start + deaf));
        assert_eq!(SyncMetrics::get(&pump.metrics.session_resets), 1);
        assert!(!pump.connected);
        // Reconnected, still deaf: twice as long this time.
        pump.on_net(Net::Connected {
            session_present: false,
        });
        pump.records_in_flight
            .insert(ApplicationId::new_v7(), start);
        let (heard, up) = (pump.last_heard, pump.connected_at);
        assert!(!pump.reset_if_deaf(up.max(heard) + deaf));
        assert!(pump.reset_if_deaf(up.max(heard) + deaf * 2));
        // The fleet's catalogue says nothing about our topic; HQ's own answer does.
        let fleet = Publish::new("keliling/v1/fleet/catalogue", QoS::AtLeastOnce, vec![1]);
        pump.on_net(Net::Message(fleet));
        assert_eq!(pump.resets_unheard, 2);
        let own = Publish::new("keliling/v1/bus/bus-t/down/sync", QoS::AtLeastOnce, vec![1]);
        pump.on_net(Net::Message(own));
        assert_eq!(pump.resets_unheard, 0);
    }

    fn is_fleet_subscription(r: &Request) -> bool {
        matches!(r, Request::Subscribe(s)
            if s.filters.iter().any(|f| f.path == "keliling/v1/fleet/#"))
    }
}
