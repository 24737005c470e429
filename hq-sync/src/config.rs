//! HQ's configuration: `config/hq.toml`, overridden by `HQ_SYNC__…` environment
//! variables (see `keliling_shared::config_env`).

use keliling_shared::config_env::{self, ConfigError};
use keliling_shared::tls::{BrokerTransport, ClientTlsFiles, TlsError};
use keliling_shared::Catalogue;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HqConfig {
    /// Holds `hq.sqlite` (records), `photos/` (verified blobs) and `staging/` (sled).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    pub catalogue: Option<PathBuf>,
    /// Where uploads in progress are staged (sled); `{data_dir}/staging` by default.
    /// Each worker needs its own: sled allows one process per directory.
    pub staging_dir: Option<PathBuf>,
    #[serde(default)]
    pub broker: BrokerConfig,
    #[serde(default)]
    pub embedded_broker: EmbeddedBrokerConfig,
    #[serde(default)]
    pub pki: PkiConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub fault: FaultConfig,
    #[serde(default)]
    pub signing: SigningConfig,
    #[serde(default)]
    pub staging: StagingConfig,
    #[serde(default)]
    pub console: ConsoleConfig,
    #[serde(default)]
    pub fleet: FleetConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub nats: NatsConfig,
}

/// `[nats]`: HQ's workers on a NATS cluster (`config/nats/`, README "A broker cluster").
/// Buses still speak MQTT to the cluster; HQ takes their messages from a JetStream work
/// queue instead of MQTT subscriptions (NATS has no shared subscriptions), so each goes to
/// one worker (`hq-sync/src/nats.rs`). HQ's answers still go out over MQTT (`[broker]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// The nodes' NATS client URLs, e.g. `["tls://nats-1.hq:4222", "tls://nats-2.hq:4222"]`,
    /// reached with HQ's certificate (`[broker.tls]`). Empty (the default): no NATS; buses'
    /// messages come by MQTT subscriptions (Mosquitto, the embedded broker).
    pub servers: Vec<String>,
    /// The work-queue stream (made by the first worker when missing).
    pub stream: String,
    /// The durable pull consumer every worker shares.
    pub consumer: String,
    /// Copies of the work queue kept by the cluster (3 survives the loss of one node).
    pub replicas: usize,
    /// A message a worker took and never acked (it died) goes to another after this.
    pub ack_wait_secs: u64,
    /// Messages taken and not yet acked, over all workers.
    pub max_ack_pending: i64,
    /// The work queue's size; when full, new messages are refused (the buses re-send).
    pub max_stream_mib: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            servers: Vec::new(),
            stream: "KELILING_UP".into(),
            consumer: "hq".into(),
            replicas: 3,
            ack_wait_secs: 30,
            max_ack_pending: 4096,
            max_stream_mib: 4096,
        }
    }
}

impl NatsConfig {
    /// Whether buses' messages come from a NATS work queue.
    pub fn enabled(&self) -> bool {
        !self.servers.is_empty()
    }
}

/// `[store]`: where HQ's records, review and audit tables live.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Unset: SQLite at `{data_dir}/hq.sqlite` (nothing to install; one HQ machine).
    /// `postgres://user@host:port/db`: PostgreSQL, which several HQ machines share (the
    /// database C-collated; see README). `HQ_SYNC__STORE__URL` in the environment.
    pub url: Option<String>,
    /// A file whose first line is the PostgreSQL password, so it is in neither the
    /// config nor the environment.
    pub password_file: Option<PathBuf>,
    /// Verified photos and scans, and uploads in progress, kept in the store itself
    /// (`blob_contents`, `staged_uploads`) rather than in files and sled on this machine:
    /// what lets several HQ machines share only the database and the broker (each chunk
    /// then goes to one worker of the shared group, as records do). Default: on with
    /// PostgreSQL, off with SQLite. Blobs stored earlier as files are still read.
    pub blobs_in_database: Option<bool>,
}

/// `[fleet]`: what HQ expects of the buses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// The buses' heartbeat period (`[sync] heartbeat_secs` in bus.toml): a bus not heard
    /// from for three of these (and half a minute) counts as offline, whatever it said
    /// last (HQ may have been down when its last will came).
    pub heartbeat_secs: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig { heartbeat_secs: 60 }
    }
}

/// `[console]`: the staff's web console (`hq-sync console`, `hq-sync run --console`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Loopback by default. Any other address needs `tls_cert` and `tls_key`, or
    /// `behind_tls_proxy = true` when a TLS reverse proxy forwards to it.
    pub listen: SocketAddr,
    /// A PEM certificate chain for HTTPS (e.g. one from the fleet PKI, or the
    /// organisation's), and its key.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// A TLS-terminating reverse proxy is in front: cookies get `Secure`.
    pub behind_tls_proxy: bool,
    /// A session ends after this long without a request.
    pub idle_timeout_mins: u64,
    /// And this long after login, whatever happens.
    pub session_hours: u64,
    /// HQ's time zone for the times pages show, in minutes east of UTC (WIB: 420).
    pub utc_offset_minutes: i32,
    /// Store connections the console's requests share.
    pub pool_size: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert: None,
            tls_key: None,
            behind_tls_proxy: false,
            idle_timeout_mins: 30,
            session_hours: 12,
            utc_offset_minutes: 7 * 60,
            pool_size: 4,
        }
    }
}

/// Bounds on uploads in progress (`staging.rs`), and the disk's free-space floor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StagingConfig {
    /// What one bus may have staged at once, in MiB.
    pub per_bus_mib: u64,
    /// What all buses together may have staged, in MiB.
    pub total_mib: u64,
    /// An upload nobody touched for this many hours is forgotten (the bus re-sends).
    pub max_idle_hours: u64,
    /// Below this much free space on the data or staging disk, HQ refuses new records
    /// and chunks (unanswered: the buses keep them and send again) instead of failing
    /// half-way on a full disk. Resumes by itself when space returns.
    pub min_free_mib: u64,
}

impl Default for StagingConfig {
    fn default() -> Self {
        StagingConfig {
            per_bus_mib: 64,
            total_mib: 4096,
            max_idle_hours: 72,
            min_free_mib: 256,
        }
    }
}

impl StagingConfig {
    pub fn limits(&self) -> crate::staging::Limits {
        crate::staging::Limits {
            per_bus_bytes: self.per_bus_mib.saturating_mul(1024 * 1024),
            total_bytes: self.total_mib.saturating_mul(1024 * 1024),
            max_idle: std::time::Duration::from_secs(self.max_idle_hours.saturating_mul(3600)),
        }
    }
    pub fn min_free_bytes(&self) -> u64 {
        self.min_free_mib.saturating_mul(1024 * 1024)
    }
}

/// The key ingest signs every down message with (`hq-sync pki init` makes it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    /// Default: `{pki.dir}/signing/current.key`. Only ingest reads it.
    pub key: Option<PathBuf>,
}

/// The broker HQ's ingest connects to: `[broker]`, the same as the bus's. Unset
/// `[broker.tls]` files default to the PKI directory's (see [`HqConfig::broker_transport`]).
pub use keliling_shared::mqtt::BrokerConfig;

/// `[pki]`: the fleet PKI (`hq-sync pki ...`). Keep the directory on HQ, readable by
/// HQ's operators only: `ca.key` signs every bus's identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PkiConfig {
    pub dir: PathBuf,
}

impl Default for PkiConfig {
    fn default() -> Self {
        PkiConfig {
            dir: PathBuf::from("var/pki"),
        }
    }
}

/// rumqttd inside `hq-sync`, behind a TLS front that enforces the fleet's topic ACL:
/// zero-install, no disk state. For the demo, development and tests; production uses
/// Mosquitto (config/mosquitto.conf).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedBrokerConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Allow a non-loopback `listen` address. Off: the embedded broker keeps nothing on
    /// disk (a restart loses queued messages), so it is not for a real fleet.
    pub expose: bool,
    /// Accept plain MQTT without client certificates: local experiments only.
    pub insecure_plaintext: bool,
}

impl Default for EmbeddedBrokerConfig {
    fn default() -> Self {
        EmbeddedBrokerConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8883)),
            expose: false,
            insecure_plaintext: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub topic_prefix: String,
    /// Distinguishes workers: `hq-1`, `hq-2`, ... It is the common name of this worker's
    /// certificate (`hq-sync pki provision-hq`) and so its MQTT client id.
    pub worker_id: String,
    /// With several workers: the MQTT shared-subscription groups they split messages in
    /// (`{shared_group}-{kind}`, one per kind of message). Chunks are shared too when
    /// uploads in progress are in the store (`[store] blobs_in_database`); otherwise each
    /// worker stages every chunk so that any worker can assemble any blob. See
    /// ARCHITECTURE.md.
    pub shared_group: Option<String>,
    /// Messages applied per batch (one staging flush and one round of acks per batch).
    pub batch: usize,
    /// Group commit: a batch's commits and photos are made durable together, with one
    /// WAL fsync and the photos' fsyncs in parallel, before anything of it is answered.
    /// Off: every commit and every photo waits for the disk on its own (for comparison).
    pub group_commit: bool,
    /// A batch that takes longer than this means storage is stuck: ingest exits, loudly,
    /// for its supervisor to restart it (config/hq-sync.service), rather than stay up
    /// doing nothing.
    pub stuck_after_secs: u64,
    /// New records one bus may add in 24 hours; past that its new records wait on the bus
    /// (unanswered) until the window moves on. A bus serves a few hundred citizens a day.
    pub max_records_per_bus_per_day: u32,
    /// Blobs one bus may ask about per minute; more are left unanswered (it asks again),
    /// so one bus's questions cannot crowd out everyone's answers.
    pub max_query_blobs_per_bus_per_minute: u32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            topic_prefix: keliling_shared::topics::DEFAULT_PREFIX.into(),
            worker_id: "hq-1".into(),
            shared_group: None,
            batch: 256,
            group_commit: true,
            stuck_after_secs: 120,
            max_records_per_bus_per_day: 5000,
            max_query_blobs_per_bus_per_minute: 1024,
        }
    }
}

/// Fault injection for tests: off unless set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Abort the process (as a `kill -9` would) after this many records were received
    /// from the broker and before the next one is committed: the broker has already
    /// PUBACKed it to the bus, HQ has not committed it.
    pub crash_before_commit_after_records: Option<u64>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("var/hq")
}

pub const ENV_PREFIX: &str = "HQ_SYNC";

impl HqConfig {
    pub fn load(path: Option<&Path>) -> Result<HqConfig, ConfigError> {
        let c: HqConfig = config_env::load(path, ENV_PREFIX)?;
        keliling_shared::topics::Topics::new(&c.ingest.topic_prefix)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if !cfg!(feature = "fault-injection") && c.fault.crash_before_commit_after_records.is_some()
        {
            return Err(ConfigError::Invalid(
                "[fault] settings are for tests: this hq-sync was built without fault injection"
                    .into(),
            ));
        }
        c.store_location()?;
        if c.nats.enabled() && c.embedded_broker.enabled {
            return Err(ConfigError::Invalid(
                "[nats] servers is set and so is [embedded_broker] enabled: on a NATS cluster \
                 the buses' broker is the cluster; turn the embedded broker off"
                    .into(),
            ));
        }
        if c.ingest.batch == 0 {
            return Err(ConfigError::Invalid(
                "ingest.batch must be at least 1".into(),
            ));
        }
        Ok(c)
    }

    /// A config for tests and the demo.
    pub fn for_dir(data_dir: PathBuf, broker_port: u16) -> HqConfig {
        HqConfig {
            data_dir,
            catalogue: None,
            staging_dir: None,
            broker: BrokerConfig {
                port: broker_port,
                ..BrokerConfig::default()
            },
            embedded_broker: EmbeddedBrokerConfig::default(),
            pki: PkiConfig::default(),
            ingest: IngestConfig::default(),
            fault: FaultConfig::default(),
            signing: SigningConfig::default(),
            staging: StagingConfig::default(),
            console: ConsoleConfig::default(),
            fleet: FleetConfig::default(),
            store: StoreConfig::default(),
            nats: NatsConfig::default(),
        }
    }

    /// The SQLite file, when the store is SQLite (see [`HqConfig::store_location`]).
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("hq.sqlite")
    }

    /// Where HQ's store is: `[store] url` or the SQLite file in the data directory.
    /// Whether blobs and uploads in progress live in the store (`[store] blobs_in_database`).
    pub fn blobs_in_database(&self) -> bool {
        self.store.blobs_in_database.unwrap_or_else(|| {
            self.store
                .url
                .as_deref()
                .is_some_and(|u| !u.trim().is_empty())
        })
    }

    pub fn store_location(&self) -> Result<crate::store::StoreLocation, ConfigError> {
        use crate::store::StoreLocation;
        let Some(url) = self
            .store
            .url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        else {
            return Ok(StoreLocation::Sqlite(self.db_path()));
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::Invalid(format!(
                "store.url must be a postgres:// URL (or unset for SQLite in the data directory), not {:?}",
                url.split("://").next().unwrap_or(url)
            )));
        }
        let password = match &self.store.password_file {
            None => None,
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    ConfigError::Invalid(format!("store.password_file {}: {e}", p.display()))
                })?;
                Some(text.lines().next().unwrap_or("").to_string())
            }
        };
        Ok(StoreLocation::Postgres {
            url: url.to_string(),
            password,
        })
    }
    pub fn photos_dir(&self) -> PathBuf {
        self.data_dir.join("photos")
    }
    pub fn staging_dir(&self) -> PathBuf {
        self.staging_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("staging"))
    }

    pub fn pki(&self) -> crate::pki::Pki {
        crate::pki::Pki::at(&self.pki.dir)
    }

    /// How ingest reaches the broker: TLS with this worker's certificate (from
    /// `[broker.tls]`, else the PKI directory's `hq/{worker_id}.pem`), or plain TCP when
    /// `insecure_plaintext` is set. A certificate whose common name is not the worker id
    /// is a start-up error: the broker would make the common name the client id.
    pub fn broker_transport(&self) -> Result<BrokerTransport, TlsError> {
        if self.broker.insecure_plaintext {
            return BrokerTransport::resolve(&self.broker.tls, true);
        }
        let pki = self.pki();
        let t = &self.broker.tls;
        let worker = &self.ingest.worker_id;
        let cert = t.cert.clone().unwrap_or_else(|| pki.hq_cert(worker));
        let key = t.key.clone().unwrap_or_else(|| pki.hq_key(worker));
        if cert.exists() {
            check_hq_cert(&cert, worker)?;
        }
        if key.exists() {
            crate::pki::check_key_mode(&key).map_err(|e| TlsError::Invalid {
                what: "HQ private key",
                path: key.clone(),
                reason: e.to_string(),
            })?;
        }
        let files = ClientTlsFiles {
            ca: Some(t.ca.clone().unwrap_or_else(|| pki.ca_cert())),
            cert: Some(cert),
            key: Some(key),
        };
        BrokerTransport::resolve(&files, false)
    }

    /// The key ingest signs down messages with.
    pub fn signing_key(
        &self,
    ) -> Result<keliling_shared::sign::SigningKey, crate::signing::SigningError> {
        let path = self
            .signing
            .key
            .clone()
            .unwrap_or_else(|| self.pki().signing().current());
        crate::signing::load(&path)
    }

    /// What the embedded broker asks of clients.
    pub fn embedded_security(&self) -> crate::broker::Security {
        if self.embedded_broker.insecure_plaintext {
            return crate::broker::Security::InsecurePlaintext;
        }
        let pki = self.pki();
        crate::broker::Security::MutualTls {
            ca: pki.ca_cert(),
            cert: pki.broker_cert(),
            key: pki.broker_key(),
            crl: pki.crl(),
            topics: keliling_shared::topics::Topics::new(&self.ingest.topic_prefix)
                .unwrap_or_default(),
        }
    }

    pub fn catalogue(&self) -> Result<Catalogue, ConfigError> {
        config_env::load_catalogue(self.catalogue.as_deref())
    }
}

/// The certificate at `path` must name `worker` (its common name).
fn check_hq_cert(path: &Path, worker: &str) -> Result<(), TlsError> {
    let invalid = |reason: String| TlsError::Invalid {
        what: "HQ certificate",
        path: path.to_owned(),
        reason,
    };
    let der = keliling_shared::tls::load_certs(path, "HQ certificate")?;
    let first = der
        .first()
        .ok_or_else(|| invalid("no certificate".into()))?;
    let (_, x) =
        x509_parser::parse_x509_certificate(first.as_ref()).map_err(|e| invalid(e.to_string()))?;
    let cn = x
        .subject()
        .iter_common_name()
        .next()
        .and_then(|n| n.as_str().ok())
        .unwrap_or("");
    if cn != worker {
        return Err(invalid(format!(
            "its common name is {cn:?} but [ingest] worker_id is {worker:?}; the broker uses the \
             common name as the client id, so they must match: set worker_id = {cn:?}, or make \
             this worker a certificate with `hq-sync pki provision-hq {worker}`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreLocation;

    #[test]
    fn the_store_is_sqlite_by_default_or_postgres_by_url_with_its_password_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = HqConfig::for_dir(dir.path().to_owned(), 1883);
        assert_eq!(
            cfg.store_location().unwrap(),
            StoreLocation::Sqlite(dir.path().join("hq.sqlite"))
        );
        cfg.store.url = Some("postgres://hq@db.local/keliling".into());
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "rahasia\nignored\n").unwrap();
        cfg.store.password_file = Some(pw);
        let at = cfg.store_location().unwrap();
        assert_eq!(
            at,
            StoreLocation::Postgres {
                url: "postgres://hq@db.local/keliling".into(),
                password: Some("rahasia".into())
            }
        );
        cfg.store.password_file = Some(dir.path().join("missing"));
        let e = cfg.store_location().unwrap_err().to_string();
        assert!(e.contains("store.password_file"), "{e}");
        cfg.store.password_file = None;
        cfg.store.url = Some("mysql://hq@db/keliling".into());
        let e = cfg.store_location().unwrap_err().to_string();
        assert!(e.contains("postgres://"), "{e}");
        // The URL's password never reaches a log line.
        let shown = StoreLocation::Postgres {
            url: "postgres://hq:rahasia@db/keliling".into(),
            password: None,
        }
        .to_string();
        assert_eq!(shown, "postgres://hq:***@db/keliling");
    }
}
