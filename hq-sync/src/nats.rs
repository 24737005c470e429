//! HQ workers on a NATS cluster (`[nats] servers`; configs in `config/nats/`).
//!
//! NATS serves the buses over MQTT 3.1.1 as any broker does, but it has no MQTT shared
//! subscriptions: several HQ workers subscribed to `up/` would each get every message.
//! So on NATS the workers take buses' messages from a JetStream *work-queue* stream
//! (`[nats] stream`, on `{prefix}.bus.*.up.*`, the subjects NATS gives MQTT topics) through
//! one durable pull consumer (`[nats] consumer`): each message goes to one worker, and one
//! that a worker took but never acked (it died) goes to another after `ack_wait`. HQ's
//! answers, decisions and the fleet's retained catalogue still go out over MQTT, where
//! NATS queues them in the buses' persistent sessions.
//!
//! What a bus's PUBACK means here: NATS stores an MQTT QoS 1 publish in its own MQTT
//! stream before it PUBACKs, but the copy into the work queue is not waited for (lab
//! notes, `docs/research/nats-2.9-lab.md`): a message can be PUBACKed and never reach
//! the queue (during a leader election, or with the queue full). Nothing is lost by it:
//! only HQ's own answer after its commit counts as delivered, and the bus re-sends
//! until it has one (docs/DESIGN.md). A message acked to JetStream only after the batch
//! holding it is durable, like the MQTT path's PUBACK.
//!
//! Who may publish what is the cluster's per-user permissions, made from the PKI registry
//! by `hq-sync pki nats-auth` ([`auth_text`]): a bus only on its own `up` subjects, HQ's
//! workers on every bus's `down` and on `fleet`.

use crate::config::{HqConfig, NatsConfig};
use crate::ingest::IngestMetrics;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use keliling_shared::tls::BrokerTransport;
use rumqttc::{Publish, QoS};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("NATS: {0}")]
    Config(String),
    #[error("NATS: cannot reach the cluster: {0}")]
    Connect(String),
    #[error("NATS JetStream: {0}")]
    JetStream(String),
}

/// How a message taken for a batch is confirmed once the batch is durable.
pub enum Confirm {
    /// A PUBACK to the MQTT broker (rumqttc's manual ack of this publish).
    Mqtt,
    /// An ack to JetStream: the work queue then drops the message (boxed: an `Acker`
    /// is a whole client context, most messages come without one).
    Nats(Box<jetstream::message::Acker>),
}

/// A message for ingest, whichever way it came.
pub struct Incoming {
    pub publish: Publish,
    pub confirm: Confirm,
}

/// The NATS subject of MQTT topic (prefix) `topic`: NATS maps `/` to `.` (and refuses `.`
/// in MQTT topics, so the mapping is one to one).
pub fn subject_of(topic: &str) -> String {
    topic.replace('/', ".")
}

/// The MQTT topic of a work-queue message's subject, as ingest parses topics.
pub fn topic_of(subject: &str) -> String {
    subject.replace('.', "/")
}

/// The work queue's subjects: every bus's `up` kinds.
pub fn up_subjects(prefix: &str) -> String {
    format!("{}.bus.*.up.*", subject_of(prefix))
}

/// Connects to the cluster, creates the work queue and its consumer if they are missing
/// (each worker does; the first one makes them), and feeds ingest until `shutdown`.
/// Reconnects by itself (the client tries every node), and sets the queue up again when
/// it cannot use it (a consumer deleted by hand, a cluster that lost it).
pub async fn pull(
    cfg: HqConfig,
    tx: mpsc::UnboundedSender<Incoming>,
    metrics: Arc<IngestMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff =
        keliling_shared::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let run = pull_once(&cfg, &tx, &metrics, &mut backoff);
        let outcome = tokio::select! {
            _ = shutdown.changed() => return,
            r = run => r,
        };
        match outcome {
            Ok(()) => return,
            Err(e) => {
                let delay = backoff.next_delay();
                warn!(error = %e, ?delay, "HQ cannot take messages from the NATS work queue; trying again");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// One connection's life: `Ok` only when ingest is gone.
async fn pull_once(
    cfg: &HqConfig,
    tx: &mpsc::UnboundedSender<Incoming>,
    metrics: &IngestMetrics,
    backoff: &mut keliling_shared::backoff::Backoff,
) -> Result<(), NatsError> {
    let client = connect(cfg).await?;
    let js = jetstream::new(client);
    let consumer = work_queue(&js, &cfg.nats, &cfg.ingest.topic_prefix).await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(cfg.ingest.batch.max(1))
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| NatsError::JetStream(format!("cannot pull from the work queue: {e}")))?;
    info!(stream = %cfg.nats.stream, consumer = %cfg.nats.consumer, "HQ takes buses' messages from the NATS work queue");
    backoff.reset();
    while let Some(next) = messages.next().await {
        let m = match next {
            Ok(m) => m,
            Err(e) => {
                use consumer::pull::MessagesErrorKind as K;
                match e.kind() {
                    // The client reconnects and the stream pulls again by itself.
                    K::MissingHeartbeat | K::Pull => {
                        debug!(error = %e, "work queue: pull interrupted");
                        continue;
                    }
                    _ => return Err(NatsError::JetStream(format!("work queue: {e}"))),
                }
            }
        };
        let (msg, acker) = m.split();
        // NATS marks what came over MQTT with its QoS (`Nmqtt-Pub: 0|1`).
        let qos = match msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nmqtt-Pub"))
            .map(|v| v.as_str())
        {
            Some("0") => QoS::AtMostOnce,
            _ => QoS::AtLeastOnce,
        };
        if metrics.shed(qos) {
            debug!(subject = %msg.subject, "ingest is behind: QoS 0 message shed");
            let _ = acker.ack().await;
            continue;
        }
        let publish = Publish::from_bytes(topic_of(msg.subject.as_str()), qos, msg.payload);
        metrics.queued.fetch_add(1, Ordering::Relaxed);
        if tx
            .send(Incoming {
                publish,
                confirm: Confirm::Nats(Box::new(acker)),
            })
            .is_err()
        {
            return Ok(());
        }
    }
    Err(NatsError::JetStream(
        "the work queue's message stream ended".into(),
    ))
}

async fn connect(cfg: &HqConfig) -> Result<async_nats::Client, NatsError> {
    if cfg.nats.servers.is_empty() {
        return Err(NatsError::Config("[nats] servers is empty".into()));
    }
    let mut opts = async_nats::ConnectOptions::new()
        .name(&cfg.ingest.worker_id)
        .connection_timeout(Duration::from_secs(10))
        .retry_on_initial_connect()
        // Unbounded: a cluster that is down for an hour is waited for.
        .max_reconnects(None);
    match cfg
        .broker_transport()
        .map_err(|e| NatsError::Config(e.to_string()))?
    {
        BrokerTransport::Tls(tls) => {
            opts = opts.require_tls(true).tls_client_config((*tls).clone());
        }
        BrokerTransport::InsecurePlaintext => {
            warn!("INSECURE: HQ takes messages from NATS over plain TCP (broker.insecure_plaintext = true)");
        }
    }
    let servers: Vec<async_nats::ServerAddr> = cfg
        .nats
        .servers
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|e| NatsError::Config(format!("[nats] servers: {s:?}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    opts.connect(servers)
        .await
        .map_err(|e| NatsError::Connect(e.to_string()))
}

/// The work queue and its durable pull consumer, made when missing. An existing stream is
/// used as it is (an operator may have tuned it); its subjects must be ours.
async fn work_queue(
    js: &jetstream::Context,
    n: &NatsConfig,
    prefix: &str,
) -> Result<consumer::Consumer<consumer::pull::Config>, NatsError> {
    let subjects = up_subjects(prefix);
    let config = stream::Config {
        name: n.stream.clone(),
        subjects: vec![subjects.clone()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        num_replicas: n.replicas.max(1),
        // Full: new messages are refused (the bus re-sends later), never old ones dropped.
        discard: stream::DiscardPolicy::New,
        max_bytes: i64::try_from(n.max_stream_mib.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX),
        max_message_size: i32::try_from(keliling_shared::wire::MAX_BROKER_PACKET_BYTES)
            .unwrap_or(i32::MAX),
        ..Default::default()
    };
    let s = js
        .get_or_create_stream(config)
        .await
        .map_err(|e| NatsError::JetStream(format!("stream {}: {e}", n.stream)))?;
    let info = s.cached_info();
    if !info.config.subjects.iter().any(|x| x == &subjects) {
        return Err(NatsError::Config(format!(
            "stream {} exists with subjects {:?}, not {subjects:?}: set [nats] stream to another name or fix the stream",
            n.stream, info.config.subjects
        )));
    }
    let c = s
        .get_or_create_consumer(
            &n.consumer,
            consumer::pull::Config {
                durable_name: Some(n.consumer.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(n.ack_wait_secs.max(1)),
                max_ack_pending: n.max_ack_pending.max(1),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| NatsError::JetStream(format!("consumer {}: {e}", n.consumer)))?;
    Ok(c)
}

/// The cluster's `auth.conf` (included by `config/nats/keliling.conf`): one user per
/// certificate the PKI issued and has not revoked, named by the certificate's own URI SAN
/// (`urn:keliling:cert:<name>:<serial>`, which NATS's `verify_and_map` matches first).
/// NATS checks no CRL; with users by subject, a renewed certificate's subject would let its
/// revoked predecessor in too, so each certificate is its own user. Buses are MQTT only.
///
/// - a bus publishes only its own `up` kinds and subscribes only to its own `down` and
///   the fleet's subjects (`a/#` is two NATS subscriptions, `a` and `a.>`);
/// - an HQ worker (over MQTT and the NATS protocol) publishes every bus's `down` and the
///   fleet's, and uses the work queue (`[nats] stream`/`consumer`) through JetStream's API;
///   it may also subscribe to buses' `up` subjects (it reads them all from the queue
///   anyway), which tools watching the uplink use;
/// - `$MQTT.sub.>`: NATS delivers QoS 1 through such an internal subscription, checked
///   against the user's own permissions (without it every QoS 1 SUBSCRIBE fails).
pub fn auth_text(
    prefix: &str,
    buses: &[(String, String)],
    hq: &[(String, String)],
    n: &NatsConfig,
) -> String {
    use std::fmt::Write as _;
    let p = subject_of(prefix);
    let mut out = String::from(AUTH_HEADER);
    out.push_str("authorization {\n  timeout: 5\n  users = [\n");
    for (bus, user) in buses {
        let up: Vec<String> = keliling_shared::topics::UpKind::ALL
            .into_iter()
            .map(|k| format!("\"{p}.bus.{bus}.up.{}\"", k.as_str()))
            .collect();
        let _ = writeln!(
            out,
            "    # bus {bus}\n    {{ user: \"{user}\", allowed_connection_types: [\"MQTT\"], permissions: {{\n        publish: {{ allow: [{}] }}\n        subscribe: {{ allow: [\"{p}.bus.{bus}.down\", \"{p}.bus.{bus}.down.>\", \"{p}.fleet\", \"{p}.fleet.>\", \"$MQTT.sub.>\"] }}\n    }} }}",
            up.join(", ")
        );
    }
    let (s, c) = (&n.stream, &n.consumer);
    for (name, user) in hq {
        let _ = writeln!(
            out,
            "    # HQ worker {name}\n    {{ user: \"{user}\", allowed_connection_types: [\"MQTT\", \"STANDARD\"], permissions: {{\n        publish: {{ allow: [\"{p}.bus.*.down.>\", \"{p}.fleet\", \"{p}.fleet.>\", \"$JS.API.INFO\", \"$JS.API.STREAM.INFO.{s}\", \"$JS.API.STREAM.CREATE.{s}\", \"$JS.API.CONSUMER.INFO.{s}.{c}\", \"$JS.API.CONSUMER.CREATE.{s}.{c}\", \"$JS.API.CONSUMER.CREATE.{s}.{c}.>\", \"$JS.API.CONSUMER.DURABLE.CREATE.{s}.{c}\", \"$JS.API.CONSUMER.MSG.NEXT.{s}.{c}\", \"$JS.ACK.{s}.{c}.>\"] }}\n        subscribe: {{ allow: [\"_INBOX.>\", \"$MQTT.sub.>\", \"{p}.bus.*.up.*\"] }}\n    }} }}"
        );
    }
    out.push_str("  ]\n}\n");
    out
}

const AUTH_HEADER: &str = "\
# Keliling users for a NATS cluster (included by config/nats/keliling.conf on every node).
# Made by `hq-sync pki nats-auth` from the PKI registry; re-make it after provisioning or
# revoking, copy it to every node, then reload each node
# (`nats-server --signal reload=<pid>`). Edit the generator, not this file.
#
# A client's user is its certificate's own name, its URI SAN (verify_and_map): a revoked
# certificate has no user here, although its renewal has the same subject. NATS answers a denied
# MQTT publish with PUBACK and drops it: only HQ's own answer counts as delivered.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_topics_map_both_ways() {
        let t = "keliling/v1/bus/bus-ntt-01/up/record";
        assert_eq!(subject_of(t), "keliling.v1.bus.bus-ntt-01.up.record");
        assert_eq!(topic_of(&subject_of(t)), t);
        assert_eq!(up_subjects("keliling/v1"), "keliling.v1.bus.*.up.*");
    }

    #[test]
    fn a_bus_may_publish_only_its_own_up_subjects() {
        let text = auth_text(
            "keliling/v1",
            &[("bus-a".into(), "urn:keliling:cert:bus-a:01".into())],
            &[("hq-1".into(), "urn:keliling:cert:hq-1:02".into())],
            &NatsConfig::default(),
        );
        assert!(text.contains(
            "user: \"urn:keliling:cert:bus-a:01\", allowed_connection_types: [\"MQTT\"]"
        ));
        assert!(text.contains("\"keliling.v1.bus.bus-a.up.record\""));
        assert!(!text.contains("bus-a.up.*"), "no wildcard kinds for a bus");
        assert!(text.contains("\"keliling.v1.bus.bus-a.down.>\""));
        assert!(text.contains("user: \"urn:keliling:cert:hq-1:02\""));
        assert!(text.contains("$JS.API.CONSUMER.MSG.NEXT.KELILING_UP.hq"));
    }
}
