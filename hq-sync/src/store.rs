//! HQ's record store (SQLite or PostgreSQL, through [`crate::db`]): applications, which blobs they reference, verified blobs,
//! quarantine, and the fleet's last heartbeats; the review side (staff, sessions, claims,
//! decisions and their outbox, the audit log, API tokens) lives in the same file, with its
//! queries in `staff.rs`, `review.rs`, `decisions.rs`, `audit.rs`, `fleet.rs` and
//! `api_tokens.rs`.
//!
//! Invariants:
//! - An application's record is written once, keyed by (bus, id); a re-sent record with
//!   the same content changes nothing, one with different content is a conflict for
//!   quarantine. Only decisions change its `review_state`.
//! - An application is `complete` only when every blob it references has a row in
//!   `blobs`, and a blob row exists only after its file is durable and verified.
//!   Completing is decided inside the same write transaction that adds the record or the
//!   blob, so two workers racing on a record and its last blob cannot both miss it.
//! - Every write transaction is `BEGIN IMMEDIATE` with a busy timeout on SQLite (so
//!   several `hq-sync` workers may share the file) and uses unique keys. On PostgreSQL
//!   (READ COMMITTED) writers run side by side, so each transaction takes what it needs
//!   in one global order, which rules out deadlocks: migrations (advisory class 4), an
//!   application id (class 2), blobs by sorted key (class 1), application rows (`FOR
//!   UPDATE`, by (bus, id)), decision rows, and the audit chain last (class 3).
//!   `ingest_record` takes its id and every blob it names before its first read;
//!   `commit_blob` takes its blob, inserts it, then locks the waiting applications, so of
//!   two workers completing the same application the second sees the first's commit.

use crate::db::{Backend, Db, DbError, OptionalExt};
use crate::vals;
use keliling_shared::wire::Heartbeat;
use keliling_shared::{Application, ApplicationId, BusId, Sha256, UnixMillis};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HqStoreError {
    #[error("HQ database: {0}")]
    Db(DbError),
    #[error("HQ database holds a corrupt value: {0}")]
    Corrupt(String),
    #[error("cannot create {0}: {1}")]
    Dir(String, std::io::Error),
    #[error("HQ database has schema version {found}, newer than this build's {supported}: run a newer hq-sync")]
    TooNew { found: i64, supported: i64 },
}

// Not `#[from]`: that would make the inner error the `source` too, and an error chain
// (`{:#}`) would print it twice. The message above already carries it.
impl From<DbError> for HqStoreError {
    fn from(e: DbError) -> Self {
        HqStoreError::Db(e)
    }
}

impl HqStoreError {
    /// A transaction that lost to another worker (PostgreSQL) and may simply run again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, HqStoreError::Db(e) if e.is_retryable())
    }
}

/// Where HQ's store is: an SQLite file (the default, nothing to install) or a PostgreSQL
/// database, shared by several HQ machines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    /// A `postgres://` URL, and the password if it is kept apart from it.
    Postgres {
        url: String,
        password: Option<String>,
    },
}

impl std::fmt::Display for StoreLocation {
    /// The file, or the URL without its password (it goes to logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sqlite(p) => write!(f, "{}", p.display()),
            StoreLocation::Postgres { url, .. } => f.write_str(&redact_password(url)),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            ),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// What ingesting a record came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Record and every blob committed: the delivery ack may go out.
    Complete { hq_received_at: UnixMillis },
    /// Record committed; these blobs are still missing.
    AwaitingBlobs { missing: Vec<Sha256> },
    /// The same id was committed earlier with other content. Nothing was written.
    Conflict { stored: Sha256, received: Sha256 },
    /// A new record from a bus that reached its daily quota. Nothing was written.
    OverQuota { in_last_day: u32 },
}

/// An application that became complete when a blob arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub id: ApplicationId,
    pub bus_id: BusId,
    pub hq_received_at: UnixMillis,
    /// What the delivery ack names: the record's content hash, its blobs (sorted).
    pub content_hash: Sha256,
    pub blobs: Vec<Sha256>,
}

/// What ingesting a record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    pub outcome: RecordOutcome,
    /// This call inserted the record (false for a re-send).
    pub new: bool,
    /// Another bus sent a record with the same id first (a collision for staff).
    pub collides_with: Option<BusId>,
}

/// One line of HQ's fleet view.
#[derive(Debug, Clone)]
pub struct BusRow {
    pub bus_id: String,
    pub online: bool,
    pub last_seen: Option<UnixMillis>,
    pub queue_depth: Option<u32>,
    pub bytes_waiting: Option<u64>,
    pub oldest_unsynced: Option<UnixMillis>,
    pub last_sync: Option<UnixMillis>,
    pub software: Option<String>,
    pub clock_skew_ms: Option<i64>,
}

/// What an ingest worker reports of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRow {
    pub worker_id: String,
    pub updated_at: UnixMillis,
    pub staging_uploads: u64,
    pub staging_bytes: u64,
    pub disk_free_bytes: Option<u64>,
    /// Below the free-space floor: new records and chunks are refused until space returns.
    pub disk_low: bool,
}

/// How far one upload in progress is, in one worker's staging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadProgress {
    pub bus: BusId,
    pub blob: Sha256,
    pub have: u32,
    pub chunk_count: u32,
}

/// One quarantined message, as HQ staff see it.
#[derive(Debug, Clone)]
pub struct QuarantineEntry {
    pub received_at: UnixMillis,
    pub topic: String,
    pub claimed_bus: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub applications: u64,
    pub complete: u64,
    pub awaiting_blobs: u64,
    pub blobs: u64,
    pub quarantined: u64,
    pub buses: u64,
    /// Tracking numbers sent by more than one bus (`id_collisions`).
    pub id_collisions: u64,
}

/// A change to HQ's fleet view, from a bus's heartbeat or its online/offline status.
#[derive(Clone, Debug)]
pub enum FleetUpdate {
    Heartbeat {
        bus: BusId,
        hb: Heartbeat,
        hq_now: UnixMillis,
    },
    Online {
        bus: BusId,
        online: bool,
        hq_now: UnixMillis,
    },
}

impl FleetUpdate {
    pub fn bus(&self) -> &BusId {
        match self {
            FleetUpdate::Heartbeat { bus, .. } | FleetUpdate::Online { bus, .. } => bus,
        }
    }
}

pub struct HqStore {
    pub(crate) db: Db,
}

/// Schema migrations, in order: `PRAGMA user_version` says how many are applied (on
/// PostgreSQL, `keliling_schema.version`; its migrations are in `pg_schema.rs`, one for
/// each of these, same index, same meaning). Each
/// runs in its own transaction with the version bump, so a crash leaves the store at one
/// version or the next, never between. A store made before versions existed (version 0
/// with the tables of migration 1) takes migration 1 as a no-op (`IF NOT EXISTS`).
/// Append new migrations; never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7, SCHEMA_V8,
    SCHEMA_V9, SCHEMA_V10,
];

const SCHEMA_V1: &str = r#"
CREATE TABLE IF NOT EXISTS applications (
    id              TEXT PRIMARY KEY,
    bus_id          TEXT NOT NULL,
    service         TEXT NOT NULL,
    content_hash    TEXT NOT NULL,
    record          BLOB NOT NULL,
    applicant_name  TEXT NOT NULL,
    nik             TEXT NOT NULL,
    village         TEXT NOT NULL,
    captured_at     INTEGER NOT NULL,
    hq_received_at  INTEGER NOT NULL,
    clock_skew_ms   INTEGER,
    warnings        TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('awaiting_blobs', 'complete')),
    completed_at    INTEGER,
    review_state    TEXT NOT NULL DEFAULT 'pending',
    ingested_by     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS applications_by_state ON applications(state, hq_received_at);
CREATE INDEX IF NOT EXISTS applications_by_bus ON applications(bus_id, hq_received_at);
CREATE TABLE IF NOT EXISTS app_blobs (
    application_id TEXT NOT NULL REFERENCES applications(id),
    sha256         TEXT NOT NULL,
    kind           TEXT NOT NULL,
    size           INTEGER NOT NULL,
    media_type     TEXT NOT NULL,
    PRIMARY KEY (application_id, sha256, kind)
);
CREATE INDEX IF NOT EXISTS app_blobs_by_sha ON app_blobs(sha256);
CREATE TABLE IF NOT EXISTS blobs (
    sha256     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    path       TEXT NOT NULL,
    first_bus  TEXT NOT NULL,
    stored_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at    INTEGER NOT NULL,
    topic          TEXT NOT NULL,
    claimed_bus    TEXT,
    reason         TEXT NOT NULL,
    payload        BLOB,
    payload_sha256 TEXT NOT NULL,
    UNIQUE (payload_sha256, reason)
);
CREATE TABLE IF NOT EXISTS buses (
    bus_id          TEXT PRIMARY KEY,
    online          INTEGER NOT NULL DEFAULT 0,
    last_seen       INTEGER,
    queue_depth     INTEGER,
    bytes_waiting   INTEGER,
    oldest_unsynced INTEGER,
    last_sync       INTEGER,
    lat             REAL,
    lon             REAL,
    software        TEXT,
    bus_clock       INTEGER,
    clock_skew_ms   INTEGER
);
-- Buses whose certificates were revoked (lost, stolen, retired): nothing they send is
-- accepted any more, whichever broker let it through.
CREATE TABLE IF NOT EXISTS revoked_buses (
    bus_id     TEXT PRIMARY KEY,
    revoked_at INTEGER NOT NULL,
    reason     TEXT NOT NULL
);
"#;

/// 2: an application is owned by its bus. The key becomes (bus, id), so a bus that sends
/// another bus's tracking number first cannot make HQ refuse the genuine record
/// (squatting); the same id from two buses is recorded in `id_collisions` for staff.
/// `app_blobs` carries the bus too, so that which blobs a bus may upload, and at which
/// size, is decided per (bus, blob).
const SCHEMA_V2: &str = r#"
CREATE TABLE applications_v2 (
    id              TEXT NOT NULL,
    bus_id          TEXT NOT NULL,
    service         TEXT NOT NULL,
    content_hash    TEXT NOT NULL,
    record          BLOB NOT NULL,
    applicant_name  TEXT NOT NULL,
    nik             TEXT NOT NULL,
    village         TEXT NOT NULL,
    captured_at     INTEGER NOT NULL,
    hq_received_at  INTEGER NOT NULL,
    clock_skew_ms   INTEGER,
    warnings        TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('awaiting_blobs', 'complete')),
    completed_at    INTEGER,
    review_state    TEXT NOT NULL DEFAULT 'pending',
    ingested_by     TEXT NOT NULL,
    PRIMARY KEY (bus_id, id)
);
INSERT INTO applications_v2 (id, bus_id, service, content_hash, record, applicant_name, nik, village,
    captured_at, hq_received_at, clock_skew_ms, warnings, state, completed_at, review_state, ingested_by)
SELECT id, bus_id, service, content_hash, record, applicant_name, nik, village,
    captured_at, hq_received_at, clock_skew_ms, warnings, state, completed_at, review_state, ingested_by
FROM applications;
CREATE TABLE app_blobs_v2 (
    bus_id         TEXT NOT NULL,
    application_id TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    kind           TEXT NOT NULL,
    size           INTEGER NOT NULL,
    media_type     TEXT NOT NULL,
    PRIMARY KEY (bus_id, application_id, sha256, kind)
);
INSERT INTO app_blobs_v2 (bus_id, application_id, sha256, kind, size, media_type)
SELECT a.bus_id, ab.application_id, ab.sha256, ab.kind, ab.size, ab.media_type
FROM app_blobs ab JOIN applications a ON a.id = ab.application_id;
DROP TABLE app_blobs;
DROP TABLE applications;
ALTER TABLE applications_v2 RENAME TO applications;
ALTER TABLE app_blobs_v2 RENAME TO app_blobs;
CREATE INDEX applications_by_state ON applications(state, hq_received_at);
CREATE INDEX applications_by_bus ON applications(bus_id, hq_received_at);
CREATE INDEX applications_by_id ON applications(id);
CREATE INDEX app_blobs_by_sha ON app_blobs(sha256, bus_id);
-- The same tracking number from more than one bus: neither is refused, staff look.
CREATE TABLE id_collisions (
    id          TEXT NOT NULL,
    bus_id      TEXT NOT NULL,
    first_bus   TEXT NOT NULL,
    detected_at INTEGER NOT NULL,
    PRIMARY KEY (id, bus_id)
);
-- What each ingest worker last reported of itself (`hq-sync status`).
CREATE TABLE workers (
    worker_id       TEXT PRIMARY KEY,
    updated_at      INTEGER NOT NULL,
    staging_uploads INTEGER NOT NULL,
    staging_bytes   INTEGER NOT NULL,
    disk_free_bytes INTEGER,
    disk_low        INTEGER NOT NULL DEFAULT 0
);
"#;

/// 3: the console. Staff and their agencies, sessions, the append-only audit log, claims
/// (a reviewer's lease on an application), decisions with their delivery to the bus (the
/// outbox ingest signs and sends from), and what each worker holds of uploads in progress
/// (so the console can say "photo expected: 3 of 4 chunks received").
const SCHEMA_V3: &str = r#"
CREATE TABLE staff (
    id                  INTEGER PRIMARY KEY,
    username            TEXT NOT NULL UNIQUE,
    display_name        TEXT NOT NULL,
    password_hash       TEXT NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('reviewer', 'supervisor')),
    language            TEXT NOT NULL DEFAULT 'id' CHECK (language IN ('id', 'en')),
    disabled            INTEGER NOT NULL DEFAULT 0,
    failed_logins       INTEGER NOT NULL DEFAULT 0,
    locked_until        INTEGER,
    created_at          INTEGER NOT NULL,
    password_changed_at INTEGER NOT NULL
);
CREATE TABLE staff_agencies (
    staff_id INTEGER NOT NULL REFERENCES staff(id),
    agency   TEXT NOT NULL,
    PRIMARY KEY (staff_id, agency)
);
CREATE TABLE sessions (
    token_sha256 TEXT PRIMARY KEY,
    staff_id     INTEGER NOT NULL REFERENCES staff(id),
    csrf         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    client       TEXT NOT NULL
);
CREATE INDEX sessions_by_staff ON sessions(staff_id);
CREATE TABLE audit (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    at             INTEGER NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    bus_id         TEXT,
    application_id TEXT,
    from_state     TEXT,
    to_state       TEXT,
    detail         TEXT NOT NULL DEFAULT '',
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL
);
CREATE INDEX audit_by_application ON audit(bus_id, application_id, seq);
CREATE INDEX audit_by_actor ON audit(actor, seq);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE claims (
    bus_id         TEXT NOT NULL,
    application_id TEXT NOT NULL,
    staff_id       INTEGER NOT NULL REFERENCES staff(id),
    claimed_at     INTEGER NOT NULL,
    until          INTEGER NOT NULL,
    PRIMARY KEY (bus_id, application_id)
);
CREATE TABLE decisions (
    bus_id         TEXT NOT NULL,
    application_id TEXT NOT NULL,
    version        INTEGER NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('approved', 'rejected', 'info_requested')),
    reason_code    TEXT,
    message        TEXT NOT NULL DEFAULT '',
    needs          TEXT NOT NULL DEFAULT '',
    decided_by     INTEGER NOT NULL REFERENCES staff(id),
    decided_at     INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('awaiting_check', 'final', 'declined')),
    checked_by     INTEGER REFERENCES staff(id),
    checked_at     INTEGER,
    delivery       TEXT NOT NULL DEFAULT 'held'
                   CHECK (delivery IN ('held', 'waiting', 'sent', 'confirmed', 'superseded')),
    sent_at        INTEGER,
    send_count     INTEGER NOT NULL DEFAULT 0,
    confirmed_at   INTEGER,
    PRIMARY KEY (bus_id, application_id, version)
);
CREATE INDEX decisions_outbox ON decisions(delivery, bus_id);
CREATE TABLE upload_progress (
    worker_id   TEXT NOT NULL,
    bus_id      TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    chunks_have INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (worker_id, bus_id, sha256)
);
CREATE INDEX applications_by_received ON applications(hq_received_at, bus_id, id);
CREATE INDEX applications_by_review ON applications(review_state, hq_received_at);
CREATE INDEX applications_by_nik ON applications(nik);
CREATE INDEX applications_by_village ON applications(village);
"#;

/// 4: a decision keeps its outcome as sent to the bus (postcard of
/// `keliling_shared::decision::Outcome`: the reason as the citizen reads it, the needs).
const SCHEMA_V4: &str = r#"
ALTER TABLE decisions ADD COLUMN outcome BLOB;
"#;

/// 5: API tokens for other systems (`api_tokens.rs`): the token's SHA-256 only.
const SCHEMA_V5: &str = r#"
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,
    agencies     TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER
);
"#;

/// 6: what the bus noted about a record at capture (its photo advice): postcard of
/// `keliling_shared::wire::RecordNotes`, beside the record (not in its content hash).
const SCHEMA_V6: &str = r#"
ALTER TABLE applications ADD COLUMN notes BLOB;
"#;

/// 7: the application an application amends (from the bus's notes: HQ asked for more
/// information and the bus sent it as a new application), so the original's page can
/// list its amendments.
const SCHEMA_V7: &str = r#"
ALTER TABLE applications ADD COLUMN amends TEXT;
CREATE INDEX IF NOT EXISTS applications_by_amends ON applications(bus_id, amends);
"#;

/// 8: every service catalogue HQ has published to the fleet, by version (JSON of
/// `keliling_shared::Catalogue`), so an application is checked against the version the
/// bus used (`catalogues.rs`).
const SCHEMA_V8: &str = r#"
CREATE TABLE IF NOT EXISTS catalogues (
    version INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    services INTEGER NOT NULL,
    first_published_at INTEGER NOT NULL
);
"#;

/// 9: ingest's group commit: one small write per batch, made at `synchronous=FULL`, whose
/// commit makes the batch's earlier commits durable (`HqStore::end_batch`).
const SCHEMA_V9: &str = r#"
CREATE TABLE IF NOT EXISTS ingest_syncs (
    worker  TEXT PRIMARY KEY,
    batches INTEGER NOT NULL,
    at      INTEGER NOT NULL
);
"#;

/// 10: several HQ machines share one store (`[store] blobs_in_database`): verified blobs'
/// bytes beside their row (`blob_contents`), and uploads in progress where every worker
/// sees them (`staged_uploads`, `staged_chunks`: `shared_staging.rs`).
const SCHEMA_V10: &str = r#"
CREATE TABLE IF NOT EXISTS blob_contents (
    sha256 TEXT PRIMARY KEY,
    data   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS staged_uploads (
    bus_id     TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    total_size INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL,
    have       BLOB NOT NULL,
    mismatches INTEGER NOT NULL DEFAULT 0,
    bytes      INTEGER NOT NULL DEFAULT 0,
    touched_at INTEGER NOT NULL,
    PRIMARY KEY (bus_id, sha256)
);
CREATE TABLE IF NOT EXISTS staged_chunks (
    bus_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    idx    INTEGER NOT NULL,
    data   BLOB NOT NULL,
    PRIMARY KEY (bus_id, sha256, idx)
);
"#;

/// `blobs.path` of a blob whose bytes are in `blob_contents`.
pub const BLOB_IN_DATABASE: &str = "database:blob_contents";

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Quarantined payloads are kept up to this size: enough to diagnose, bounded for floods.
const MAX_QUARANTINE_PAYLOAD: usize = 64 * 1024;

impl HqStore {
    /// Opens (creating) HQ's SQLite store at `path`.
    pub fn open(path: &Path) -> Result<Self, HqStoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| HqStoreError::Dir(dir.display().to_string(), e))?;
        }
        let mut store = HqStore {
            db: Db::open_sqlite(path)?,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Opens HQ's store wherever the config puts it; `worker` names the connection on
    /// PostgreSQL (`application_name`, seen in `pg_stat_activity`).
    pub fn connect(at: &StoreLocation, worker: &str) -> Result<Self, HqStoreError> {
        match at {
            StoreLocation::Sqlite(path) => Self::open(path),
            StoreLocation::Postgres { url, password } => {
                let mut store = HqStore {
                    db: Db::connect_postgres(url, password.as_deref(), worker)?,
                };
                store.migrate()?;
                Ok(store)
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// Brings the schema to [`SCHEMA_VERSION`]; refuses a store from a newer build.
    fn migrate(&mut self) -> Result<(), HqStoreError> {
        loop {
            // Several workers may open the store at once: the version is read inside the
            // write lock (SQLite) or the migration lock (PostgreSQL, taken before anything
            // else: two sessions creating the same table at once fail otherwise), so each
            // migration runs once.
            let tx = self.db.transaction()?;
            let version: i64 = match tx.backend() {
                Backend::Sqlite => tx.query_row("PRAGMA user_version", vals![], |r| r.get(0))?,
                Backend::Postgres => {
                    tx.lock_migrations()?;
                    tx.execute_batch(crate::pg_schema::VERSION_TABLE)?;
                    tx.query_row("SELECT version FROM keliling_schema", vals![], |r| r.get(0))?
                }
            };
            if version > SCHEMA_VERSION {
                return Err(HqStoreError::TooNew {
                    found: version,
                    supported: SCHEMA_VERSION,
                });
            }
            let Ok(v) = usize::try_from(version) else {
                return Err(HqStoreError::Corrupt(format!("schema version {version}")));
            };
            match tx.backend() {
                Backend::Sqlite => {
                    let Some(sql) = MIGRATIONS.get(v) else {
                        return Ok(());
                    };
                    tx.execute_batch(sql)?;
                    tx.execute_batch(&format!("PRAGMA user_version = {}", version + 1))?;
                }
                Backend::Postgres => {
                    let Some(sql) = crate::pg_schema::MIGRATIONS.get(v) else {
                        return Ok(());
                    };
                    tx.execute_batch(sql)?;
                    tx.execute("UPDATE keliling_schema SET version = version + 1", vals![])?;
                }
            }
            tx.commit()?;
            tracing::info!(version = version + 1, "HQ store migrated");
        }
    }

    /// Starts a batch of ingest's group commit: until [`HqStore::end_batch`], commits on
    /// this connection are not each made durable (SQLite: `synchronous=NORMAL`, in WAL
    /// mode consistent but not yet fsynced; PostgreSQL: `synchronous_commit = off`, a
    /// commit returns before its WAL flush). Returns the connection's change count, for
    /// `end_batch`. Nothing may be acknowledged to anyone between the two.
    pub fn begin_batch(&self) -> Result<u64, HqStoreError> {
        self.set_durable(false)?;
        Ok(self.db.total_changes())
    }

    /// Ends a batch: durable commits again and, if the batch wrote anything since
    /// `changes_at_start`, one small write whose commit makes every earlier commit of the
    /// batch durable with it (SQLite appends them to the one WAL file in order and fsyncs
    /// it; PostgreSQL's commit waits for the WAL flush up to its own record, past every
    /// earlier one). When this returns `Ok`, the whole batch is durable.
    ///
    /// `answers`: the batch answers a bus. Then it ends with the durable write even when
    /// it wrote nothing itself: what it answers may rest on another worker's commit that
    /// is not durable yet (that worker's batch has not ended), and this commit's flush
    /// takes every earlier commit with it, so nothing is confirmed before it is durable.
    pub fn end_batch(
        &mut self,
        changes_at_start: u64,
        worker: &str,
        answers: bool,
    ) -> Result<(), HqStoreError> {
        self.set_durable(true)?;
        if self.db.total_changes() == changes_at_start && !answers {
            return Ok(());
        }
        self.db.execute(
            "INSERT INTO ingest_syncs (worker, batches, at) VALUES (?1, 1, ?2)
             ON CONFLICT (worker) DO UPDATE SET batches = ingest_syncs.batches + 1, at = excluded.at",
            vals![worker, UnixMillis::now().0],
        )?;
        Ok(())
    }

    fn set_durable(&self, durable: bool) -> Result<(), HqStoreError> {
        let sql = match (self.db.backend(), durable) {
            (Backend::Sqlite, true) => "PRAGMA synchronous = FULL",
            (Backend::Sqlite, false) => "PRAGMA synchronous = NORMAL",
            (Backend::Postgres, true) => "SET synchronous_commit = on",
            (Backend::Postgres, false) => "SET synchronous_commit = off",
        };
        Ok(self.db.execute_batch(sql)?)
    }

    /// Turns fsync off on this connection: for filling a store in benchmarks and bulk
    /// imports only, never for ingest (HQ acks only what is durable).
    pub fn relax_durability_for_bulk_load(&self) -> Result<(), HqStoreError> {
        let sql = match self.db.backend() {
            Backend::Sqlite => "PRAGMA synchronous = OFF",
            Backend::Postgres => "SET synchronous_commit = off",
        };
        Ok(self.db.execute_batch(sql)?)
    }

    /// The schema version of the open store.
    pub fn schema_version(&self) -> Result<i64, HqStoreError> {
        let sql = match self.db.backend() {
            Backend::Sqlite => "PRAGMA user_version",
            Backend::Postgres => "SELECT version FROM keliling_schema",
        };
        Ok(self.db.query_row(sql, vals![], |r| r.get(0))?)
    }

    /// Commits a record (idempotently) and says whether it is complete. The record is
    /// owned by its bus: the same id from another bus is a collision for staff to look
    /// at, never a reason to refuse either bus. The bus's clock skew, as last seen in its
    /// heartbeat, is stored with the record.
    pub fn ingest_record(
        &mut self,
        app: &Application,
        hq_now: UnixMillis,
        worker: &str,
        daily_quota: u32,
    ) -> Result<Ingested, HqStoreError> {
        let id = app.id.to_string();
        let bus = app.bus_id.as_str();
        let hash = app.content_hash();
        let tx = self.db.transaction()?;
        // PostgreSQL: the same id (from any bus) and every blob it names, before the first
        // read, so a worker committing one of its blobs and another re-sending it wait
        // for this one (the lock order in the module doc).
        tx.lock_application_id(&id)?;
        let shas: Vec<String> = app.attachments.iter().map(|a| a.sha256.to_hex()).collect();
        tx.lock_blobs(shas.iter().map(String::as_str))?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT content_hash FROM applications WHERE bus_id = ?1 AND id = ?2",
                vals![bus, id],
                |r| r.get(0),
            )
            .optional()?;
        let mut collides_with = None;
        if let Some(stored) = &existing {
            let stored =
                Sha256::parse_hex(stored).map_err(|e| HqStoreError::Corrupt(e.to_string()))?;
            if stored != hash {
                return Ok(Ingested {
                    outcome: RecordOutcome::Conflict {
                        stored,
                        received: hash,
                    },
                    new: false,
                    collides_with: None,
                });
            }
        } else {
            let in_last_day: u32 = tx.query_row(
                "SELECT COUNT(*) FROM applications WHERE bus_id = ?1 AND hq_received_at > ?2",
                vals![bus, hq_now.0.saturating_sub(86_400_000)],
                |r| r.get(0),
            )?;
            if in_last_day >= daily_quota {
                return Ok(Ingested {
                    outcome: RecordOutcome::OverQuota { in_last_day },
                    new: false,
                    collides_with: None,
                });
            }
            let record = app
                .to_stored_bytes()
                .map_err(|e| HqStoreError::Corrupt(e.to_string()))?;
            let skew: Option<i64> = tx
                .query_row(
                    "SELECT clock_skew_ms FROM buses WHERE bus_id = ?1",
                    vals![bus],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            let warnings: Vec<String> = app.warnings().iter().map(ToString::to_string).collect();
            tx.execute(
                "INSERT INTO applications (id, bus_id, service, content_hash, record, applicant_name, nik, village,
                    captured_at, hq_received_at, clock_skew_ms, warnings, state, ingested_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'awaiting_blobs', ?13)",
                vals![
                    id,
                    bus,
                    app.service.as_str(),
                    hash.to_hex(),
                    record,
                    app.applicant.full_name.as_str(),
                    app.applicant.nik.as_str(),
                    app.stop.village.as_str(),
                    app.captured_at.0,
                    hq_now.0,
                    skew,
                    warnings.join("\n"),
                    worker,
                ],
            )?;
            for a in &app.attachments {
                tx.execute(
                    "INSERT INTO app_blobs (bus_id, application_id, sha256, kind, size, media_type) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT DO NOTHING",
                    vals![bus, id, a.sha256.to_hex(), a.kind.label(), a.size as i64, a.media_type.as_mime()],
                )?;
            }
            let first: Option<String> = tx
                .query_row(
                    "SELECT bus_id FROM applications WHERE id = ?1 AND bus_id != ?2 ORDER BY hq_received_at, bus_id LIMIT 1",
                    vals![id, bus],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(first) = first {
                tx.execute(
                    "INSERT INTO id_collisions (id, bus_id, first_bus, detected_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                    vals![id, bus, first, hq_now.0],
                )?;
                collides_with =
                    Some(BusId::parse(&first).map_err(|e| HqStoreError::Corrupt(e.to_string()))?);
            }
        }
        let missing = Self::missing_blobs(&tx, bus, &id)?;
        let outcome = if missing.is_empty() {
            tx.execute(
                "UPDATE applications SET state = 'complete', completed_at = ?3 WHERE bus_id = ?1 AND id = ?2 AND state = 'awaiting_blobs'",
                vals![bus, id, hq_now.0],
            )?;
            let received: i64 = tx.query_row(
                "SELECT hq_received_at FROM applications WHERE bus_id = ?1 AND id = ?2",
                vals![bus, id],
                |r| r.get(0),
            )?;
            RecordOutcome::Complete {
                hq_received_at: UnixMillis(received),
            }
        } else {
            RecordOutcome::AwaitingBlobs { missing }
        };
        tx.commit()?;
        Ok(Ingested {
            outcome,
            new: existing.is_none(),
            collides_with,
        })
    }

    fn missing_blobs(db: &Db, bus: &str, id: &str) -> Result<Vec<Sha256>, HqStoreError> {
        let rows = db.query_map(
            "SELECT DISTINCT ab.sha256 FROM app_blobs ab LEFT JOIN blobs b ON b.sha256 = ab.sha256 AND b.size = ab.size
             WHERE ab.bus_id = ?1 AND ab.application_id = ?2 AND b.sha256 IS NULL ORDER BY ab.sha256",
            vals![bus, id],
            |r| r.get::<_, String>(0),
        )?;
        rows.iter()
            .map(|r| Sha256::parse_hex(r).map_err(|e| HqStoreError::Corrupt(e.to_string())))
            .collect()
    }

    /// The hashes of an application's blobs, sorted, each once: what a delivery ack names.
    fn blob_list(db: &Db, bus: &str, id: &str) -> Result<Vec<Sha256>, HqStoreError> {
        let rows = db.query_map(
            "SELECT DISTINCT sha256 FROM app_blobs WHERE bus_id = ?1 AND application_id = ?2 ORDER BY sha256",
            vals![bus, id],
            |r| r.get::<_, String>(0),
        )?;
        rows.iter()
            .map(|r| Sha256::parse_hex(r).map_err(|e| HqStoreError::Corrupt(e.to_string())))
            .collect()
    }

    /// A blob's bytes, when the store holds them (`[store] blobs_in_database`).
    pub fn blob_content(&self, sha: &Sha256) -> Result<Option<Vec<u8>>, HqStoreError> {
        Ok(self
            .db
            .query_row(
                "SELECT data FROM blob_contents WHERE sha256 = ?1",
                vals![sha.to_hex()],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn has_blob(&self, sha: &Sha256) -> Result<bool, HqStoreError> {
        Ok(self
            .db
            .query_row(
                "SELECT 1 FROM blobs WHERE sha256 = ?1",
                vals![sha.to_hex()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The sizes `bus`'s own committed records declare for a blob (empty: none of its
    /// records references it). HQ stages chunks only for blobs the sending bus declared,
    /// at the size it declared, so a bus can neither fill HQ's disk with orphans nor
    /// disturb another bus's upload of the same hash.
    pub fn blob_expected(&self, bus: &BusId, sha: &Sha256) -> Result<Vec<u64>, HqStoreError> {
        let rows = self.db.query_map(
            "SELECT DISTINCT size FROM app_blobs WHERE bus_id = ?1 AND sha256 = ?2 ORDER BY size",
            vals![bus.as_str(), sha.to_hex()],
            |r| r.get::<_, i64>(0),
        )?;
        Ok(rows.into_iter().map(|s| s.max(0) as u64).collect())
    }

    /// References a verified, durable blob file and completes every application that was
    /// waiting only for it. Returns those applications, for their delivery acks.
    pub fn commit_blob(
        &mut self,
        sha: &Sha256,
        size: u64,
        at: crate::photos::BlobAt<'_>,
        bus: &BusId,
        hq_now: UnixMillis,
    ) -> Result<Vec<Completed>, HqStoreError> {
        use crate::photos::BlobAt;
        let hex = sha.to_hex();
        let tx = self.db.transaction()?;
        tx.lock_blobs([hex.as_str()])?;
        // `path` says where the bytes are: a file of the worker that stored it, or the
        // store itself (no machine's path in the system of record).
        let path = match at {
            BlobAt::File(p) => p.display().to_string(),
            BlobAt::Database(bytes) => {
                tx.execute(
                    "INSERT INTO blob_contents (sha256, data) VALUES (?1, ?2) ON CONFLICT (sha256) DO NOTHING",
                    vals![hex, bytes],
                )?;
                BLOB_IN_DATABASE.to_string()
            }
        };
        tx.execute(
            "INSERT INTO blobs (sha256, size, path, first_bus, stored_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(sha256) DO NOTHING",
            vals![hex, i64::try_from(size).unwrap_or(i64::MAX), path, bus.as_str(), hq_now.0],
        )?;
        // PostgreSQL: the blob row is inserted before the waiting applications are locked
        // (in (bus, id) order), so a worker committing another blob of one of them waits
        // here and then sees this one; an application it completed meanwhile drops out
        // (FOR UPDATE re-checks the state).
        let waiting: Vec<(String, String, i64, String)> = tx.query_map(
            &format!(
                "SELECT a.id, a.bus_id, a.hq_received_at, a.content_hash FROM applications a
                 WHERE a.state = 'awaiting_blobs' AND EXISTS (SELECT 1 FROM app_blobs ab
                    WHERE ab.bus_id = a.bus_id AND ab.application_id = a.id AND ab.sha256 = ?1)
                 ORDER BY a.bus_id, a.id{}",
                tx.for_update()
            ),
            vals![hex],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let corrupt = |e: keliling_shared::IdError| HqStoreError::Corrupt(e.to_string());
        let mut done = Vec::new();
        for (id, bus_id, received, content_hash) in waiting {
            if Self::missing_blobs(&tx, &bus_id, &id)?.is_empty() {
                tx.execute(
                    "UPDATE applications SET state = 'complete', completed_at = ?3
                     WHERE bus_id = ?1 AND id = ?2 AND state = 'awaiting_blobs'",
                    vals![bus_id, id, hq_now.0],
                )?;
                done.push(Completed {
                    blobs: Self::blob_list(&tx, &bus_id, &id)?,
                    id: ApplicationId::parse(&id).map_err(corrupt)?,
                    bus_id: BusId::parse(&bus_id).map_err(corrupt)?,
                    hq_received_at: UnixMillis(received),
                    content_hash: Sha256::parse_hex(&content_hash).map_err(corrupt)?,
                });
            }
        }
        tx.commit()?;
        Ok(done)
    }

    /// Keeps a bad message with its reason. The same payload with the same reason is
    /// kept once, so a replay flood does not fill the disk.
    pub fn quarantine(
        &mut self,
        topic: &str,
        claimed_bus: Option<&str>,
        reason: &str,
        payload: &[u8],
    ) -> Result<bool, HqStoreError> {
        let keep = &payload[..payload.len().min(MAX_QUARANTINE_PAYLOAD)];
        let n = self.db.execute(
            "INSERT INTO quarantine (received_at, topic, claimed_bus, reason, payload, payload_sha256)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            vals![UnixMillis::now().0, topic, claimed_bus, reason, keep, Sha256::digest(payload).to_hex()],
        )?;
        // 0: the same payload was already quarantined for the same reason (a replay).
        Ok(n == 1)
    }

    /// Applies a batch's fleet-view updates (heartbeats, online/offline) in one transaction.
    ///
    /// Why one transaction: each update alone would be a durable commit (an fsync with
    /// `synchronous=FULL`), and a thousand buses reconnecting at once send a thousand
    /// heartbeats; one fsync per batch keeps ingest on the records that matter. The order
    /// within the batch is kept, so an offline after a heartbeat stays offline.
    pub fn apply_fleet_updates(&mut self, updates: &[FleetUpdate]) -> Result<(), HqStoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        // By bus, each bus's updates in their order (a stable sort): two workers applying
        // batches that touch the same buses lock their rows in the same order
        // (PostgreSQL would otherwise break the deadlock by failing one of them).
        let mut updates: Vec<&FleetUpdate> = updates.iter().collect();
        updates.sort_by(|a, b| a.bus().as_str().cmp(b.bus().as_str()));
        let tx = self.db.transaction()?;
        for u in updates {
            match u {
                FleetUpdate::Heartbeat { bus, hb, hq_now } => {
                    let skew = hb.bus_clock.millis_since(*hq_now);
                    tx.execute(
                        "INSERT INTO buses (bus_id, online, last_seen, queue_depth, bytes_waiting, oldest_unsynced, last_sync, lat, lon, software, bus_clock, clock_skew_ms)
                         VALUES (?1, TRUE, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                         ON CONFLICT(bus_id) DO UPDATE SET online = TRUE, last_seen = excluded.last_seen, queue_depth = excluded.queue_depth,
                            bytes_waiting = excluded.bytes_waiting, oldest_unsynced = excluded.oldest_unsynced, last_sync = excluded.last_sync,
                            lat = excluded.lat, lon = excluded.lon, software = excluded.software, bus_clock = excluded.bus_clock,
                            clock_skew_ms = excluded.clock_skew_ms",
                        vals![
                            bus.as_str(),
                            hq_now.0,
                            hb.queue_depth,
                            i64::try_from(hb.bytes_waiting).unwrap_or(i64::MAX),
                            hb.oldest_unsynced.map(|t| t.0),
                            hb.last_sync.map(|t| t.0),
                            hb.position.map(|p| p.lat()),
                            hb.position.map(|p| p.lon()),
                            hb.software,
                            hb.bus_clock.0,
                            skew,
                        ],
                    )?;
                }
                FleetUpdate::Online {
                    bus,
                    online,
                    hq_now,
                } => {
                    let online = *online;
                    tx.execute(
                        "INSERT INTO buses (bus_id, online, last_seen) VALUES (?1, ?2, ?3)
                         ON CONFLICT(bus_id) DO UPDATE SET online = excluded.online, last_seen = excluded.last_seen",
                        vals![bus.as_str(), online, hq_now.0],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records what an ingest worker reports of itself.
    /// Keeps what the bus noted about its record, unless notes are there already.
    pub fn set_record_notes(
        &mut self,
        bus: &BusId,
        id: &ApplicationId,
        notes: &keliling_shared::wire::RecordNotes,
    ) -> Result<(), HqStoreError> {
        let bytes = notes
            .to_stored()
            .map_err(|e| HqStoreError::Corrupt(e.to_string()))?;
        self.db.execute(
            "UPDATE applications SET notes = ?1, amends = ?4 WHERE bus_id = ?2 AND id = ?3 AND notes IS NULL",
            vals![
                bytes,
                bus.as_str(),
                id.to_string(),
                notes.amends.map(|a| a.to_string())
            ],
        )?;
        Ok(())
    }

    /// What the bus noted about its record (empty when it noted nothing).
    pub fn record_notes(
        &self,
        bus: &BusId,
        id: &ApplicationId,
    ) -> Result<keliling_shared::wire::RecordNotes, HqStoreError> {
        let bytes: Option<Vec<u8>> = self
            .db
            .query_row(
                "SELECT notes FROM applications WHERE bus_id = ?1 AND id = ?2",
                vals![bus.as_str(), id.to_string()],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        match bytes {
            Some(b) => keliling_shared::wire::RecordNotes::from_stored(&b)
                .map_err(|e| HqStoreError::Corrupt(e.to_string())),
            None => Ok(Default::default()),
        }
    }

    /// Replaces what `worker` last reported of its uploads in progress.
    pub fn report_uploads(
        &mut self,
        worker: &str,
        uploads: &[UploadProgress],
        now: UnixMillis,
    ) -> Result<(), HqStoreError> {
        let tx = self.db.transaction()?;
        tx.execute(
            "DELETE FROM upload_progress WHERE worker_id = ?1",
            vals![worker],
        )?;
        for u in uploads {
            tx.execute(
                "INSERT INTO upload_progress (worker_id, bus_id, sha256, chunks_have, chunk_count, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (worker_id, bus_id, sha256) DO UPDATE SET chunks_have = excluded.chunks_have,
                    chunk_count = excluded.chunk_count, updated_at = excluded.updated_at",
                vals![worker, u.bus.as_str(), u.blob.to_hex(), u.have, u.chunk_count, now.0],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn report_worker(&mut self, w: &WorkerRow) -> Result<(), HqStoreError> {
        self.db.execute(
            "INSERT INTO workers (worker_id, updated_at, staging_uploads, staging_bytes, disk_free_bytes, disk_low)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(worker_id) DO UPDATE SET updated_at = excluded.updated_at, staging_uploads = excluded.staging_uploads,
                staging_bytes = excluded.staging_bytes, disk_free_bytes = excluded.disk_free_bytes, disk_low = excluded.disk_low",
            vals![
                w.worker_id,
                w.updated_at.0,
                i64::try_from(w.staging_uploads).unwrap_or(i64::MAX),
                i64::try_from(w.staging_bytes).unwrap_or(i64::MAX),
                w.disk_free_bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
                w.disk_low,
            ],
        )?;
        Ok(())
    }

    pub fn workers(&self) -> Result<Vec<WorkerRow>, HqStoreError> {
        Ok(self.db.query_map(
            "SELECT worker_id, updated_at, staging_uploads, staging_bytes, disk_free_bytes, disk_low FROM workers ORDER BY worker_id",
            vals![],
            |r| {
            Ok(WorkerRow {
                worker_id: r.get(0)?,
                updated_at: UnixMillis(r.get(1)?),
                staging_uploads: r.get::<_, i64>(2)?.max(0) as u64,
                staging_bytes: r.get::<_, i64>(3)?.max(0) as u64,
                disk_free_bytes: r.get::<_, Option<i64>>(4)?.map(|b| b.max(0) as u64),
                disk_low: r.get(5)?,
            })
        })?)
    }

    /// Marks `bus` revoked: from now on ingest quarantines whatever it sends.
    pub fn revoke_bus(
        &mut self,
        bus: &BusId,
        reason: &str,
        at: UnixMillis,
    ) -> Result<(), HqStoreError> {
        self.db.execute(
            "INSERT INTO revoked_buses (bus_id, revoked_at, reason) VALUES (?1, ?2, ?3)
             ON CONFLICT(bus_id) DO UPDATE SET reason = excluded.reason",
            vals![bus.as_str(), at.0, reason],
        )?;
        Ok(())
    }

    /// What `bus`'s records declared a blob to be: (kind label, media type).
    pub fn blob_declarations(
        &self,
        bus: &BusId,
        sha: &Sha256,
    ) -> Result<Vec<(String, String)>, HqStoreError> {
        Ok(self.db.query_map(
            "SELECT DISTINCT kind, media_type FROM app_blobs WHERE bus_id = ?1 AND sha256 = ?2",
            vals![bus.as_str(), sha.to_hex()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// `bus`'s applications that reference a blob.
    pub fn applications_with_blob(
        &self,
        bus: &BusId,
        sha: &Sha256,
    ) -> Result<Vec<(ApplicationId, BusId)>, HqStoreError> {
        let rows = self.db.query_map(
            "SELECT DISTINCT application_id, bus_id FROM app_blobs WHERE bus_id = ?1 AND sha256 = ?2",
            vals![bus.as_str(), sha.to_hex()],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )?;
        let mut out = Vec::new();
        for (id, bus) in rows {
            let id = id
                .parse()
                .map_err(|e| HqStoreError::Corrupt(format!("application id {id:?}: {e}")))?;
            let bus = BusId::parse(&bus)
                .map_err(|e| HqStoreError::Corrupt(format!("bus id {bus:?}: {e}")))?;
            out.push((id, bus));
        }
        Ok(out)
    }

    /// Which bus HQ first recorded `id` from, if HQ has it.
    pub fn application_bus(&self, id: &ApplicationId) -> Result<Option<String>, HqStoreError> {
        Ok(self
            .db
            .query_row(
                "SELECT bus_id FROM applications WHERE id = ?1 ORDER BY hq_received_at, bus_id LIMIT 1",
                vals![id.to_string()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Why `bus` was revoked, if it was.
    pub fn revoked(&self, bus: &BusId) -> Result<Option<String>, HqStoreError> {
        Ok(self
            .db
            .query_row(
                "SELECT reason FROM revoked_buses WHERE bus_id = ?1",
                vals![bus.as_str()],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn counts(&self) -> Result<Counts, HqStoreError> {
        let one = |sql: &str| -> Result<u64, HqStoreError> {
            Ok(self
                .db
                .query_row(sql, vals![], |r| r.get::<_, i64>(0))?
                .max(0) as u64)
        };
        Ok(Counts {
            applications: one("SELECT COUNT(*) FROM applications")?,
            complete: one("SELECT COUNT(*) FROM applications WHERE state = 'complete'")?,
            awaiting_blobs: one(
                "SELECT COUNT(*) FROM applications WHERE state = 'awaiting_blobs'",
            )?,
            blobs: one("SELECT COUNT(*) FROM blobs")?,
            quarantined: one("SELECT COUNT(*) FROM quarantine")?,
            buses: one("SELECT COUNT(*) FROM buses")?,
            id_collisions: one("SELECT COUNT(*) FROM id_collisions")?,
        })
    }

    pub fn fleet(&self) -> Result<Vec<BusRow>, HqStoreError> {
        Ok(self.db.query_map(
            "SELECT bus_id, online, last_seen, queue_depth, bytes_waiting, oldest_unsynced, last_sync, software, clock_skew_ms
             FROM buses ORDER BY bus_id",
            vals![],
            |r| {
            Ok(BusRow {
                bus_id: r.get(0)?,
                online: r.get(1)?,
                last_seen: r.get::<_, Option<i64>>(2)?.map(UnixMillis),
                queue_depth: r.get(3)?,
                bytes_waiting: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                oldest_unsynced: r.get::<_, Option<i64>>(5)?.map(UnixMillis),
                last_sync: r.get::<_, Option<i64>>(6)?.map(UnixMillis),
                software: r.get(7)?,
                clock_skew_ms: r.get(8)?,
            })
        })?)
    }

    /// Quarantine entries, newest first.
    pub fn quarantined(&self, limit: usize) -> Result<Vec<QuarantineEntry>, HqStoreError> {
        Ok(self.db.query_map(
            "SELECT received_at, topic, claimed_bus, reason FROM quarantine ORDER BY id DESC LIMIT ?1",
            vals![i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
            Ok(QuarantineEntry {
                received_at: UnixMillis(r.get(0)?),
                topic: r.get(1)?,
                claimed_bus: r.get(2)?,
                reason: r.get(3)?,
            })
        })?)
    }

    /// How many applications each HQ worker committed (an audit of multi-worker ingest).
    pub fn ingested_by(&self) -> Result<Vec<(String, u64)>, HqStoreError> {
        Ok(self.db.query_map(
            "SELECT ingested_by, COUNT(*) FROM applications GROUP BY ingested_by ORDER BY 1",
            vals![],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)),
        )?)
    }

    /// The applicant's name as HQ stored it.
    pub fn applicant_name(
        &self,
        bus: &BusId,
        id: &ApplicationId,
    ) -> Result<Option<String>, HqStoreError> {
        Ok(self
            .db
            .query_row(
                "SELECT applicant_name FROM applications WHERE bus_id = ?1 AND id = ?2",
                vals![bus.as_str(), id.to_string()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Applicant names HQ holds more than once, with how many times (for audits of a
    /// campaign in which every citizen has a name of their own).
    pub fn duplicate_applicant_names(&self) -> Result<Vec<(String, u64)>, HqStoreError> {
        Ok(self.db.query_map(
            "SELECT applicant_name, COUNT(*) FROM applications GROUP BY applicant_name HAVING COUNT(*) > 1 ORDER BY 1",
            vals![],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)),
        )?)
    }

    /// Every application id with the hashes of its blobs, for audits and tests.
    pub fn application_blobs(
        &self,
    ) -> Result<Vec<(ApplicationId, String, Vec<Sha256>)>, HqStoreError> {
        let rows = self.db.query_map(
            "SELECT a.id, a.state, string_agg(ab.sha256, ',') FROM applications a
             LEFT JOIN app_blobs ab ON ab.bus_id = a.bus_id AND ab.application_id = a.id
             GROUP BY a.bus_id, a.id ORDER BY a.id, a.bus_id",
            vals![],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(|(id, state, shas)| {
                let id =
                    ApplicationId::parse(&id).map_err(|e| HqStoreError::Corrupt(e.to_string()))?;
                let mut list = Vec::new();
                for s in shas
                    .unwrap_or_default()
                    .split(',')
                    .filter(|s| !s.is_empty())
                {
                    list.push(
                        Sha256::parse_hex(s).map_err(|e| HqStoreError::Corrupt(e.to_string()))?,
                    );
                }
                list.sort();
                Ok((id, state, list))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    /// Group commit: within a batch commits are not each fsynced; the batch ends with one
    /// small write at FULL, and only when it wrote something.
    #[test]
    fn a_batch_ends_with_one_sync_write_only_when_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = HqStore::open(&dir.path().join("hq.sqlite")).unwrap();
        let syncs = |s: &HqStore| -> i64 {
            s.db.query_row(
                "SELECT COALESCE(SUM(batches), 0) FROM ingest_syncs",
                vals![],
                |r| r.get(0),
            )
            .unwrap()
        };
        let sync_mode = |s: &HqStore| -> i64 {
            s.db.query_row("PRAGMA synchronous", vals![], |r| r.get(0))
                .unwrap()
        };
        let c = store.begin_batch().unwrap();
        assert_eq!(sync_mode(&store), 1, "NORMAL within a batch");
        store.end_batch(c, "hq-1", false).unwrap();
        assert_eq!(sync_mode(&store), 2, "FULL again after it");
        assert_eq!(syncs(&store), 0, "an idle batch writes nothing");
        let c = store.begin_batch().unwrap();
        store
            .publish_catalogue(&keliling_shared::Catalogue::builtin(), UnixMillis(1))
            .unwrap();
        store.end_batch(c, "hq-1", false).unwrap();
        assert_eq!(syncs(&store), 1);
    }

    /// The same on each backend, counted by the syncs the batches wrote: a batch whose
    /// only write returns rows (`INSERT .. RETURNING`, as publishing a catalogue is) still
    /// ends with its durable write; an idle one writes nothing.
    #[test]
    fn a_batch_that_wrote_ends_durably_on_each_backend() {
        for t in crate::testing::each_backend("a_batch_that_wrote_ends_durably") {
            let mut store = t.open();
            let syncs = |s: &HqStore| -> i64 {
                // SUM of a BIGINT is NUMERIC on PostgreSQL.
                s.db.query_row(
                    "SELECT CAST(COALESCE(SUM(batches), 0) AS BIGINT) FROM ingest_syncs",
                    vals![],
                    |r| r.get(0),
                )
                .unwrap()
            };
            let c = store.begin_batch().unwrap();
            store.has_blob(&Sha256::digest(b"x")).unwrap();
            store.end_batch(c, "hq-1", false).unwrap();
            assert_eq!(
                syncs(&store),
                0,
                "{:?}: an idle batch writes nothing",
                t.backend
            );
            let c = store.begin_batch().unwrap();
            store
                .publish_catalogue(&keliling_shared::Catalogue::builtin(), UnixMillis(1))
                .unwrap();
            store.end_batch(c, "hq-1", false).unwrap();
            assert_eq!(syncs(&store), 1, "{:?}", t.backend);
            // A batch that only read but answers a bus (what it read may be another
            // worker's commit, not yet durable) ends with the durable write too.
            let c = store.begin_batch().unwrap();
            store.has_blob(&Sha256::digest(b"x")).unwrap();
            store.end_batch(c, "hq-1", true).unwrap();
            assert_eq!(syncs(&store), 2, "{:?}: an answering batch", t.backend);
        }
    }

    /// Several workers (and the console) start at once on a fresh file: every one opens
    /// it, and the migrations run once. Before the busy timeout was set first, turning the
    /// new file to WAL failed at once as "database is locked" in all but one (seen with two
    /// workers starting together).
    #[test]
    fn many_processes_open_a_fresh_store_at_once() {
        for round in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("hq.sqlite");
            let start = std::sync::Arc::new(std::sync::Barrier::new(8));
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let (p, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        HqStore::open(&p).map(|s| s.schema_version().unwrap_or(-1))
                    })
                })
                .collect();
            for t in threads {
                let v = t.join().unwrap();
                assert!(
                    matches!(v, Ok(SCHEMA_VERSION)),
                    "round {round}: an open failed: {v:?}"
                );
            }
        }
    }

    #[test]
    fn every_migration_has_its_postgresql_counterpart() {
        assert_eq!(MIGRATIONS.len(), crate::pg_schema::MIGRATIONS.len());
    }

    use super::*;

    #[test]
    fn a_bus_past_its_daily_quota_waits_and_re_sends_are_still_answered() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = HqStore::open(&dir.path().join("hq.sqlite")).unwrap();
        let bus = BusId::parse("bus-q").unwrap();
        let app = |i: usize| -> Application {
            use keliling_shared::{Applicant, Nik, ServiceCode, Sex, Stop, Text};
            Application {
                id: ApplicationId::new_v7(),
                bus_id: bus.clone(),
                operator: Text::parse("Petugas").unwrap(),
                stop: Stop {
                    village: Text::parse("Desa").unwrap(),
                    gps: None,
                },
                service: ServiceCode::parse("KK_UPDATE").unwrap(),
                applicant: Applicant {
                    full_name: Text::parse(&format!("Warga {i}")).unwrap(),
                    nik: Nik::parse("5371015203900001").unwrap(),
                    date_of_birth: time::macros::date!(1990 - 03 - 12),
                    sex: Sex::Female,
                    address: Text::parse("Jl. Timor Raya").unwrap(),
                    phone: None,
                },
                fields: Default::default(),
                attachments: vec![],
                captured_at: UnixMillis::now(),
            }
        };
        let apps: Vec<Application> = (0..4).map(app).collect();
        let app = |i: usize| apps[i].clone();
        let now = UnixMillis::now();
        for i in 0..3 {
            let r = store.ingest_record(&app(i), now, "hq-1", 3).unwrap();
            assert!(matches!(r.outcome, RecordOutcome::Complete { .. }), "{r:?}");
        }
        let r = store.ingest_record(&app(3), now, "hq-1", 3).unwrap();
        assert_eq!(r.outcome, RecordOutcome::OverQuota { in_last_day: 3 });
        // A re-send of one it holds is still answered.
        let r = store.ingest_record(&app(1), now, "hq-1", 3).unwrap();
        assert!(matches!(r.outcome, RecordOutcome::Complete { .. }));
        assert_eq!(store.counts().unwrap().applications, 3);
    }

    /// A store made before schema versions (user_version 0, applications keyed by id)
    /// is migrated in place: every row kept, now owned by its bus.
    #[test]
    fn an_unversioned_store_is_migrated_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hq.sqlite");
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(SCHEMA_V1).unwrap();
            c.execute(
                "INSERT INTO applications (id, bus_id, service, content_hash, record, applicant_name, nik, village,
                    captured_at, hq_received_at, warnings, state, ingested_by)
                 VALUES ('app-1', 'bus-a', 'SIM_RENEWAL', ?1, X'00', 'Siti', '5371015203900001', 'Oelnasi', 1, 2, '', 'complete', 'hq-1')",
                [Sha256::digest(b"r").to_hex()],
            )
            .unwrap();
            c.execute(
                "INSERT INTO app_blobs (application_id, sha256, kind, size, media_type) VALUES ('app-1', ?1, 'photo', 10, 'image/jpeg')",
                [Sha256::digest(b"p").to_hex()],
            )
            .unwrap();
        }
        let store = HqStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let c = &store.db;
        let (bus, state): (String, String) = c
            .query_row(
                "SELECT bus_id, state FROM applications WHERE id = 'app-1'",
                vals![],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((bus.as_str(), state.as_str()), ("bus-a", "complete"));
        let blob_bus: String = c
            .query_row(
                "SELECT bus_id FROM app_blobs WHERE application_id = 'app-1'",
                vals![],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(blob_bus, "bus-a");
        // The same id from another bus is now its own row.
        c.execute(
            "INSERT INTO applications (id, bus_id, service, content_hash, record, applicant_name, nik, village,
                captured_at, hq_received_at, warnings, state, ingested_by)
             SELECT id, 'bus-b', service, content_hash, record, applicant_name, nik, village,
                captured_at, hq_received_at, warnings, state, ingested_by FROM applications WHERE id = 'app-1'",
            vals![],
        )
        .unwrap();
        drop(store);
        // Opening again changes nothing; a store from a newer build is refused.
        let store = HqStore::open(&path).unwrap();
        assert_eq!(store.counts().unwrap().applications, 2);
        store
            .db
            .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .unwrap();
        drop(store);
        assert!(matches!(
            HqStore::open(&path),
            Err(HqStoreError::TooNew { .. })
        ));
    }
}
