//! The bus's SQLite store: the only copy of what citizens handed over until HQ confirms.
//!
//! Invariants:
//! - An application, its blobs and its outbox entry are committed in *one* transaction
//!   ([`Store::save`]); the receipt is printed only after that commit. The database runs
//!   with `journal_mode=WAL` and `synchronous=FULL`, so a committed transaction survives a
//!   `kill -9` or a power cut.
//! - Nothing un-acked is deleted. Blob bytes are purged only for applications HQ
//!   confirmed as delivered, and only after the retention period.
//! - HQ's messages move state forward only: `queued -> record_acked -> delivered`, and a
//!   delivered application never goes back, whatever duplicate or late message arrives.
//! - No personal data in clear: records and blob bytes are stored encrypted ([`crate::vault`]).
//!   Saving needs only the bus public key (`meta`); reading a record or a chunk needs the
//!   [`UnlockedVault`]. What stays in clear is what the sync and the operator's counts need:
//!   application ids, service codes, capture and sync times, states, attachment kinds,
//!   sizes and SHA-256 hashes. `secure_delete` overwrites what is deleted or purged.

use crate::vault::{
    BlobKey, KdfParams, Layout, Passphrase, SealingKey, UnlockedVault, VaultError, WrappedKey,
};
use keliling_shared::decision::Decision;
use keliling_shared::wire::{chunk_count, BlobProgress, RecordNotes};
use keliling_shared::{Application, ApplicationId, Attachment, Bitmap, Sha256, UnixMillis};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::cell::{OnceCell, RefCell};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("basis data bus gagal (bus database error): {0}")]
    Sqlite(rusqlite::Error),
    #[error("catatan tersimpan rusak (stored record is corrupt): {0}")]
    Corrupt(String),
    #[error("permohonan {0} sudah ada (application already saved)")]
    Duplicate(ApplicationId),
    #[error("isi lampiran tidak cocok dengan hash-nya (attachment bytes do not match their hash)")]
    HashMismatch,
    #[error(
        "bus belum disiapkan: jalankan `bus-node init` dulu (bus not initialised: run `bus-node init` first)"
    )]
    NotInitialised,
    #[error(
        "bus sudah disiapkan; kuncinya tidak dibuat ulang (bus already initialised; its key is not made again)"
    )]
    AlreadyInitialised,
    #[error(
        "basis data {0} dibuat versi lama tanpa enkripsi; pindahkan dan mulai baru \
         (store made by an older version without encryption at rest; move it aside and start anew)"
    )]
    OldSchema(String),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

// Not `#[from]`: that would make the inner error the `source` too, and an error chain
// (`{:#}`) would print it twice. The message above already carries it.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

/// Where an application stands in its journey to HQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    /// Saved on the bus; HQ has not confirmed the record yet.
    Queued,
    /// HQ committed the record; some attachments are still on their way.
    RecordAcked,
    /// HQ committed the record and every attachment: delivered.
    Delivered,
    /// HQ quarantined it; the operator must look at the reason.
    Rejected,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Queued => "queued",
            OutboxState::RecordAcked => "record_acked",
            OutboxState::Delivered => "delivered",
            OutboxState::Rejected => "rejected",
        }
    }
    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "queued" => OutboxState::Queued,
            "record_acked" => OutboxState::RecordAcked,
            "delivered" => OutboxState::Delivered,
            "rejected" => OutboxState::Rejected,
            other => return Err(StoreError::Corrupt(format!("outbox state {other:?}"))),
        })
    }
    /// The operator's word for it, in Bahasa Indonesia.
    pub fn label_id(self) -> &'static str {
        match self {
            OutboxState::Queued => "menunggu sinyal",
            OutboxState::RecordAcked => "data terkirim, foto/dokumen menyusul",
            OutboxState::Delivered => "diterima kantor pusat",
            OutboxState::Rejected => "ditolak kantor pusat",
        }
    }
}

/// One line of the operator's sync view.
#[derive(Debug, Clone)]
pub struct AppSummary {
    pub id: ApplicationId,
    pub service: String,
    pub captured_at: UnixMillis,
    pub state: OutboxState,
    pub delivered_at: Option<UnixMillis>,
    pub reject_reason: Option<String>,
}

/// What `bus-node status` shows.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub total: u64,
    pub queued: u64,
    pub record_acked: u64,
    pub delivered: u64,
    pub rejected: u64,
    pub bytes_waiting: u64,
    pub oldest_waiting: Option<UnixMillis>,
    pub last_sync: Option<UnixMillis>,
}

impl Status {
    /// Applications not yet confirmed delivered (rejected ones wait for the operator).
    pub fn waiting(&self) -> u64 {
        self.queued + self.record_acked
    }
}

/// A blob HQ has asked for, with what HQ has confirmed so far.
#[derive(Debug, Clone)]
pub struct BlobPlan {
    pub sha256: Sha256,
    pub size: u64,
    pub chunk_size: u32,
    pub chunk_count: u32,
    pub have: Bitmap,
}

pub struct Store {
    pub(crate) conn: Connection,
    path: PathBuf,
    /// The bus public key, once read from `meta`.
    sealing: OnceCell<SealingKey>,
    /// The content key of the blob read last, so sending its chunks one after another
    /// unseals it once (an X25519 operation), not per chunk.
    last_blob_key: RefCell<Option<CachedBlobKey>>,
}

struct CachedBlobKey {
    vault: SealingKey,
    sha: Sha256,
    sealed: Vec<u8>,
    key: BlobKey,
}

/// Quarantine rows the bus keeps at most (the newest).
pub const MAX_QUARANTINE_ROWS: i64 = 1000;
/// Bytes of a quarantined payload kept: enough to diagnose.
pub const MAX_QUARANTINE_PAYLOAD: usize = 4096;

const META_PUBLIC_KEY: &str = "vault_public_key";
const META_WRAPPED_KEY: &str = "vault_wrapped_secret_key";
/// `PRAGMA user_version` of the encrypted schema (0: an older store, or a new file).
const SCHEMA_VERSION: i64 = 4;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS applications (
    id           TEXT PRIMARY KEY,
    captured_at  INTEGER NOT NULL,
    service      TEXT NOT NULL,
    record       BLOB NOT NULL   -- sealed (vault.rs): version, sealed content key, ciphertext
);
CREATE TABLE IF NOT EXISTS blobs (
    sha256      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    media_type  TEXT NOT NULL,
    sealed_key  BLOB,            -- the content key, sealed to the bus public key
    segment_size INTEGER,        -- plaintext bytes per encrypted segment
    data        BLOB,            -- the encrypted segments, one after another
    purged_at   INTEGER
);
CREATE TABLE IF NOT EXISTS attachments (
    application_id TEXT NOT NULL REFERENCES applications(id),
    sha256         TEXT NOT NULL REFERENCES blobs(sha256),
    kind           TEXT NOT NULL,
    priority       INTEGER NOT NULL,
    PRIMARY KEY (application_id, sha256, kind)
);
CREATE INDEX IF NOT EXISTS attachments_by_blob ON attachments(sha256);
CREATE TABLE IF NOT EXISTS outbox (
    application_id TEXT PRIMARY KEY REFERENCES applications(id),
    state          TEXT NOT NULL CHECK (state IN ('queued','record_acked','delivered','rejected')),
    enqueued_at    INTEGER NOT NULL,
    record_acked_at INTEGER,
    delivered_at   INTEGER,
    hq_received_at INTEGER,
    reject_reason  TEXT
);
CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox(state, enqueued_at);
CREATE TABLE IF NOT EXISTS blob_sync (
    sha256      TEXT PRIMARY KEY REFERENCES blobs(sha256),
    state       TEXT NOT NULL CHECK (state IN ('unknown','needed','stored')),
    chunk_size  INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    have        BLOB NOT NULL,
    stored_at   INTEGER
);
CREATE TABLE IF NOT EXISTS quarantine (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    topic       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    payload     BLOB
);
-- HQ's decisions (schema 2): every version received; the highest is in force. The decision
-- itself (reasons, messages) is sealed like a record; kind and times stay in clear for the
-- operator's counts.
CREATE TABLE IF NOT EXISTS decisions (
    application_id TEXT NOT NULL REFERENCES applications(id),
    version        INTEGER NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('approved','rejected','info_requested')),
    decided_at     INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    sealed         BLOB NOT NULL,
    PRIMARY KEY (application_id, version)
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- The station (schema 3). Operators: a name and an argon2id hash of their PIN
-- (operators.rs).
CREATE TABLE IF NOT EXISTS operators (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    pin_hash     TEXT NOT NULL,
    disabled     INTEGER NOT NULL DEFAULT 0,
    failed_pins  INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER,
    created_at   INTEGER NOT NULL
);
-- Applications being filled in (drafts.rs): the form and the photo, sealed like a record.
CREATE TABLE IF NOT EXISTS drafts (
    id          TEXT PRIMARY KEY,   -- the application's id once saved
    operator    TEXT NOT NULL,
    service     TEXT NOT NULL,
    amends      TEXT,               -- the application it completes (HQ asked for more)
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    sealed      BLOB NOT NULL
);
-- The keyed NIK index (lookup.rs): BLAKE2b-MAC of the NIK under a key derived from the
-- bus secret key, so a search reads one index entry, not every sealed record.
CREATE TABLE IF NOT EXISTS nik_index (
    tag            BLOB NOT NULL,
    application_id TEXT NOT NULL REFERENCES applications(id),
    PRIMARY KEY (tag, application_id)
);
CREATE INDEX IF NOT EXISTS nik_index_by_app ON nik_index(application_id);
-- HQ's fleet-wide messages (schema 4), newest version of each, as HQ signed them
-- (catalogues.rs): the service catalogue.
CREATE TABLE IF NOT EXISTS fleet_messages (
    name        TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    payload     BLOB NOT NULL,
    received_at INTEGER NOT NULL
);
"#;

/// What keeping a decision came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionStored {
    New,
    /// This version was already here: nothing changed (HQ re-sent it).
    Known,
    /// Not an application of this bus's store: nothing kept.
    UnknownApplication,
}

/// A decision in force on the bus, as `bus-node status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionSummary {
    pub application: ApplicationId,
    pub version: u32,
    pub kind: String,
    pub decided_at: UnixMillis,
    pub received_at: UnixMillis,
    /// How many versions the bus has received (more than one: a decision was changed).
    pub versions: u32,
}

/// The associated data a decision is sealed under: its application and version.
fn decision_aad(id: &str, version: u32) -> String {
    format!("decision:{id}:{version}")
}

/// Adds a column, unless another process opening the store at the same moment just did.
fn add_column(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    match conn.execute_batch(sql) {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().contains("duplicate column") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path` with the durability settings above.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Corrupt(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let conn = Connection::open(path)?;
        // First, so that opening while another process writes (the daemon, a capture)
        // waits instead of failing as "locked".
        conn.busy_timeout(Duration::from_secs(10))?;
        // WAL lets the CLI capture while the daemon syncs; FULL fsyncs the WAL at every
        // commit, which is what makes a receipt a promise.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // What is deleted or purged is overwritten in the file, not just unlinked.
        conn.pragma_update(None, "secure_delete", true)?;
        conn.execute_batch(SCHEMA)?;
        let old: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('applications') WHERE name = 'applicant')",
            [],
            |r| r.get(0),
        )?;
        if old {
            return Err(StoreError::OldSchema(path.display().to_string()));
        }
        // Schema 2 adds what the bus noted at capture (its photo advice, in clear: advice
        // codes and pixel sizes, no personal data).
        let has_notes: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('applications') WHERE name = 'notes')",
            [],
            |r| r.get(0),
        )?;
        if !has_notes {
            add_column(&conn, "ALTER TABLE applications ADD COLUMN notes BLOB")?;
        }
        // Schema 3 adds the application an application amends (in clear: an id), so the
        // original's page lists what completed it.
        let has_amends: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('applications') WHERE name = 'amends')",
            [],
            |r| r.get(0),
        )?;
        if !has_amends {
            add_column(&conn, "ALTER TABLE applications ADD COLUMN amends TEXT")?;
        }
        conn.execute_batch(
            "CREATE INDEX IF NOT EXISTS applications_by_amends ON applications(amends)",
        )?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version != SCHEMA_VERSION {
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        Ok(Store {
            conn,
            path: path.to_owned(),
            sealing: OnceCell::new(),
            last_blob_key: RefCell::new(None),
        })
    }

    /// Opens the store for the sync daemon. Everything the sync client writes is derived
    /// from HQ's answers and can be had again by asking, so its connection uses
    /// `synchronous=NORMAL` (in WAL mode still safe against a crash of the process; a power
    /// cut may roll back its last few updates, which only causes re-sends). Captures keep
    /// `FULL` on their own connection.
    pub fn open_for_sync(path: &Path) -> Result<Store, StoreError> {
        let store = Store::open(path)?;
        store.conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Whether `bus-node init` has made this store's key pair.
    pub fn is_initialised(&self) -> Result<bool, StoreError> {
        Ok(self.meta(META_PUBLIC_KEY)?.is_some())
    }

    /// The bus public key: all that saving needs.
    pub fn sealing_key(&self) -> Result<&SealingKey, StoreError> {
        if let Some(k) = self.sealing.get() {
            return Ok(k);
        }
        let hex = self
            .meta(META_PUBLIC_KEY)?
            .ok_or(StoreError::NotInitialised)?;
        let key = SealingKey::parse_hex(&hex)?;
        Ok(self.sealing.get_or_init(|| key))
    }

    /// First setup of a bus: makes the key pair and keeps the secret key wrapped under
    /// `passphrase`. Refuses if the store already has a key (a new key would make
    /// everything saved so far unreadable).
    pub fn init_vault(
        &mut self,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<UnlockedVault, StoreError> {
        passphrase.check_new()?;
        if self.is_initialised()? {
            return Err(StoreError::AlreadyInitialised);
        }
        let vault = UnlockedVault::generate();
        let wrapped = vault.wrap(passphrase, params)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // INSERT, not upsert: if another process initialised meanwhile, this fails.
        let insert = "INSERT INTO meta (key, value) VALUES (?1, ?2)";
        let taken = |e: rusqlite::Error| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                StoreError::AlreadyInitialised
            }
            e => StoreError::Sqlite(e),
        };
        tx.execute(
            insert,
            params![META_PUBLIC_KEY, vault.sealing_key().to_hex()],
        )
        .map_err(taken)?;
        tx.execute(insert, params![META_WRAPPED_KEY, wrapped.encode()])
            .map_err(taken)?;
        tx.commit()?;
        Ok(vault)
    }

    /// Unlocks the bus key with the operator's passphrase (start of a shift).
    pub fn unlock(&self, passphrase: &Passphrase) -> Result<UnlockedVault, StoreError> {
        let (public, wrapped) = self.vault_keys()?;
        Ok(UnlockedVault::unwrap(&wrapped, &public, passphrase)?)
    }

    fn vault_keys(&self) -> Result<(SealingKey, WrappedKey), StoreError> {
        let public = self.sealing_key()?.clone();
        let wrapped = self
            .meta(META_WRAPPED_KEY)?
            .ok_or_else(|| VaultError::BadKey("the wrapped secret key is missing".into()))?;
        Ok((public, WrappedKey::parse(&wrapped)?))
    }

    /// Wraps the key again under a new passphrase (the key itself, and so every record,
    /// stays as it is). With `secure_delete`, the old wrapping is overwritten.
    pub fn change_passphrase(
        &mut self,
        old: &Passphrase,
        new: &Passphrase,
        params: KdfParams,
    ) -> Result<(), StoreError> {
        new.check_new()?;
        let vault = self.unlock(old)?;
        let wrapped = vault.wrap(new, params)?;
        self.conn.execute(
            "UPDATE meta SET value = ?2 WHERE key = ?1",
            params![META_WRAPPED_KEY, wrapped.encode()],
        )?;
        Ok(())
    }

    /// Refuses a vault unlocked from another store.
    pub fn check_vault(&self, vault: &UnlockedVault) -> Result<(), StoreError> {
        if self.sealing_key()? != vault.sealing_key() {
            return Err(VaultError::KeyMismatch.into());
        }
        Ok(())
    }

    /// Fault injection for tests (the fault campaign's full disk): with `full`, this
    /// connection may not grow the database file beyond its current size
    /// (`PRAGMA max_page_count`), so a save that needs room fails with `SQLITE_FULL`, as on
    /// a full disk, and rolls back; `false` lifts the cap. Other connections to the same
    /// file (the sync daemon's) are not affected.
    #[cfg(feature = "fault-injection")]
    pub fn simulate_full_disk(&self, full: bool) -> Result<(), StoreError> {
        let pages: i64 = if full {
            self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?
        } else {
            // SQLite clamps this to its own largest allowed page count.
            i64::from(u32::MAX)
        };
        self.conn
            .pragma_update_and_check(None, "max_page_count", pages, |r| r.get::<_, i64>(0))?;
        Ok(())
    }

    /// Saves one application with its attachment bytes and its outbox entry, atomically.
    /// Returns only after the commit is durable.
    pub fn save(
        &mut self,
        app: &Application,
        blobs: &[(Attachment, Vec<u8>)],
        chunk_size: u32,
    ) -> Result<(), StoreError> {
        self.save_noted(app, blobs, chunk_size, &RecordNotes::default())
    }

    /// What the bus noted about an application at capture (empty when nothing).
    pub fn record_notes(&self, id: &ApplicationId) -> Result<RecordNotes, StoreError> {
        let bytes: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT notes FROM applications WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        match bytes {
            Some(b) => RecordNotes::from_stored(&b)
                .map_err(|e| StoreError::Corrupt(format!("notes of {id}: {e}"))),
            None => Ok(RecordNotes::default()),
        }
    }

    /// Like [`Store::save`], with what the bus noted at capture (its photo advice), kept
    /// in the same transaction.
    pub fn save_noted(
        &mut self,
        app: &Application,
        blobs: &[(Attachment, Vec<u8>)],
        chunk_size: u32,
        notes: &RecordNotes,
    ) -> Result<(), StoreError> {
        self.save_with(app, blobs, chunk_size, notes, None)
    }

    /// Like [`Store::save_noted`], and in the same transaction: the NIK's index entry
    /// (`nik_tag`, from the unlocked vault's index key) goes in, and the draft the
    /// application was filled in as (the same id) goes away.
    pub fn save_with(
        &mut self,
        app: &Application,
        blobs: &[(Attachment, Vec<u8>)],
        chunk_size: u32,
        notes: &RecordNotes,
        nik_tag: Option<[u8; 16]>,
    ) -> Result<(), StoreError> {
        let amends = notes.amends.map(|a| a.to_string());
        let notes = if notes.is_empty() {
            None
        } else {
            Some(
                notes
                    .to_stored()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )
        };
        for (att, bytes) in blobs {
            if Sha256::digest(bytes) != att.sha256 || bytes.len() as u64 != att.size {
                return Err(StoreError::HashMismatch);
            }
        }
        let id = app.id.to_string();
        // Encrypted before the write transaction starts, so the lock is held no longer.
        let key = self.sealing_key()?.clone();
        let record = app
            .to_stored_bytes()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let record = key.seal_record(&id, &record)?;
        let sealed = blobs
            .iter()
            .map(|(att, bytes)| key.seal_blob(&att.sha256, bytes, chunk_size))
            .collect::<Result<Vec<_>, _>>()?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: bool = tx
            .query_row("SELECT 1 FROM applications WHERE id = ?1", [&id], |_| {
                Ok(true)
            })
            .optional()?
            .unwrap_or(false);
        if exists {
            return Err(StoreError::Duplicate(app.id));
        }
        tx.execute(
            "INSERT INTO applications (id, captured_at, service, record, notes, amends) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, app.captured_at.0, app.service.as_str(), record, notes, amends],
        )?;
        for ((att, _), sealed) in blobs.iter().zip(&sealed) {
            let sha = att.sha256.to_hex();
            // A blob saved before keeps its bytes (and key); a purged one gets them back.
            tx.execute(
                "INSERT INTO blobs (sha256, size, media_type, sealed_key, segment_size, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(sha256) DO UPDATE SET sealed_key = excluded.sealed_key, segment_size = excluded.segment_size,
                    data = excluded.data, purged_at = NULL
                 WHERE blobs.data IS NULL",
                params![sha, att.size as i64, att.media_type.as_mime(), sealed.sealed_key, sealed.segment_size, sealed.data],
            )?;
            let count = chunk_count(att.size, chunk_size);
            tx.execute(
                "INSERT INTO blob_sync (sha256, state, chunk_size, chunk_count, have) VALUES (?1, 'unknown', ?2, ?3, ?4)
                 ON CONFLICT(sha256) DO NOTHING",
                params![sha, chunk_size, count, Bitmap::new(count).as_bytes()],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO attachments (application_id, sha256, kind, priority) VALUES (?1, ?2, ?3, ?4)",
                params![id, sha, att.kind.label(), att.kind.priority()],
            )?;
        }
        tx.execute(
            "INSERT INTO outbox (application_id, state, enqueued_at) VALUES (?1, 'queued', ?2)",
            params![id, UnixMillis::now().0],
        )?;
        if let Some(tag) = nik_tag {
            tx.execute(
                "INSERT OR IGNORE INTO nik_index (tag, application_id) VALUES (?1, ?2)",
                params![&tag[..], id],
            )?;
        }
        tx.execute("DELETE FROM drafts WHERE id = ?1", [&id])?;
        tx.commit()?;
        Ok(())
    }

    /// Keeps HQ's decision (sealed), idempotently: the same version again changes nothing,
    /// and an older version arriving after a newer one is kept but not in force.
    pub fn on_decision(&mut self, d: &Decision) -> Result<DecisionStored, StoreError> {
        let id = d.application.to_string();
        let known: bool = self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM applications WHERE id = ?1)",
            [&id],
            |r| r.get(0),
        )?;
        if !known {
            return Ok(DecisionStored::UnknownApplication);
        }
        let have: bool = self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM decisions WHERE application_id = ?1 AND version = ?2)",
            params![id, d.version],
            |r| r.get(0),
        )?;
        if have {
            return Ok(DecisionStored::Known);
        }
        let bytes = postcard::to_stdvec(d).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let sealed = self
            .sealing_key()?
            .seal_record(&decision_aad(&id, d.version), &bytes)?;
        self.conn.execute(
            "INSERT OR IGNORE INTO decisions (application_id, version, kind, decided_at, received_at, sealed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, d.version, d.outcome.kind(), d.decided_at.0, UnixMillis::now().0, sealed],
        )?;
        Ok(DecisionStored::New)
    }

    /// The decisions in force (the highest version of each application), newest first.
    pub fn decisions(&self, limit: usize) -> Result<Vec<DecisionSummary>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT d.application_id, d.version, d.kind, d.decided_at, d.received_at,
                    (SELECT COUNT(*) FROM decisions o WHERE o.application_id = d.application_id)
             FROM decisions d
             WHERE d.version = (SELECT MAX(version) FROM decisions m WHERE m.application_id = d.application_id)
             ORDER BY d.received_at DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, u32>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, version, kind, decided, received, versions) = row?;
            out.push(DecisionSummary {
                application: ApplicationId::parse(&id)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                version,
                kind,
                decided_at: UnixMillis(decided),
                received_at: UnixMillis(received),
                versions,
            });
        }
        Ok(out)
    }

    /// A decision in full, decrypted: needs the unlocked vault.
    pub fn decision(
        &self,
        application: &ApplicationId,
        version: u32,
        vault: &UnlockedVault,
    ) -> Result<Option<Decision>, StoreError> {
        let id = application.to_string();
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT sealed FROM decisions WHERE application_id = ?1 AND version = ?2",
                params![id, version],
                |r| r.get(0),
            )
            .optional()?;
        sealed
            .map(|b| {
                let plain = vault.open_record(&decision_aad(&id, version), &b)?;
                let d: Decision = postcard::from_bytes(&plain)
                    .map_err(|e| StoreError::Corrupt(format!("decision {id} v{version}: {e}")))?;
                d.check().map_err(StoreError::Corrupt)?;
                Ok(d)
            })
            .transpose()
    }

    /// The whole application, decrypted: needs the unlocked vault.
    pub fn application(
        &self,
        id: &ApplicationId,
        vault: &UnlockedVault,
    ) -> Result<Option<Application>, StoreError> {
        let ids = id.to_string();
        let bytes: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT record FROM applications WHERE id = ?1",
                [&ids],
                |r| r.get(0),
            )
            .optional()?;
        bytes
            .map(|b| {
                let plain = vault.open_record(&ids, &b)?;
                Application::from_stored_bytes(&plain)
                    .map_err(|e| StoreError::Corrupt(format!("record {id}: {e}")))
            })
            .transpose()
    }

    /// The attachment hashes of an application, from the clear-text index (no key needed).
    pub fn attachment_hashes(&self, id: &ApplicationId) -> Result<Vec<Sha256>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT sha256 FROM attachments WHERE application_id = ?1 ORDER BY sha256",
        )?;
        let rows = stmt.query_map([id.to_string()], |r| r.get::<_, String>(0))?;
        rows.map(|r| Sha256::parse_hex(&r?).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    pub fn state(&self, id: &ApplicationId) -> Result<Option<OutboxState>, StoreError> {
        let s: Option<String> = self
            .conn
            .query_row(
                "SELECT state FROM outbox WHERE application_id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        s.map(|s| OutboxState::parse(&s)).transpose()
    }

    /// Records HQ has not confirmed, oldest first: what the sync sends first.
    pub fn queued_records(&self, limit: usize) -> Result<Vec<ApplicationId>, StoreError> {
        self.ids("SELECT application_id FROM outbox WHERE state = 'queued' ORDER BY enqueued_at, application_id LIMIT ?1", limit)
    }

    /// Records HQ acked whose blobs HQ has all stored, yet no delivery ack came: the
    /// delivery ack was lost, so the record is asked about again.
    pub fn acked_records_without_delivery(
        &self,
        limit: usize,
    ) -> Result<Vec<ApplicationId>, StoreError> {
        self.ids(
            "SELECT o.application_id FROM outbox o WHERE o.state = 'record_acked' AND NOT EXISTS (
                SELECT 1 FROM attachments a JOIN blob_sync s ON s.sha256 = a.sha256
                WHERE a.application_id = o.application_id AND s.state != 'stored')
             ORDER BY o.enqueued_at LIMIT ?1",
            limit,
        )
    }

    fn ids(&self, sql: &str, limit: usize) -> Result<Vec<ApplicationId>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map([limit as i64], |r| r.get::<_, String>(0))?;
        rows.map(|r| {
            let s = r?;
            ApplicationId::parse(&s).map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .collect()
    }

    /// HQ committed the record; `missing` lists the blobs it still lacks, with what it
    /// holds of each. Every other attachment of the application HQ already has.
    pub fn on_record_ack(
        &mut self,
        id: &ApplicationId,
        missing: &[BlobProgress],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ids = id.to_string();
        let now = UnixMillis::now().0;
        tx.execute(
            "UPDATE outbox SET state = 'record_acked', record_acked_at = ?2 WHERE application_id = ?1 AND state = 'queued'",
            params![ids, now],
        )?;
        let attached: Vec<String> = {
            let mut stmt =
                tx.prepare_cached("SELECT sha256 FROM attachments WHERE application_id = ?1")?;
            let rows = stmt.query_map([&ids], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for sha in attached {
            match missing.iter().find(|m| m.blob.to_hex() == sha) {
                Some(p) => {
                    tx.execute(
                        "UPDATE blob_sync SET state = 'needed', have = ?2 WHERE sha256 = ?1 AND state != 'stored' AND chunk_count = ?3",
                        params![sha, p.have.as_bytes(), p.chunk_count],
                    )?;
                    // HQ counts chunks differently (another chunk size): start afresh.
                    tx.execute(
                        "UPDATE blob_sync SET state = 'needed', have = X'' WHERE sha256 = ?1 AND state != 'stored' AND chunk_count != ?2",
                        params![sha, p.chunk_count],
                    )?;
                }
                None => {
                    tx.execute(
                        "UPDATE blob_sync SET state = 'stored', stored_at = ?2 WHERE sha256 = ?1 AND state != 'stored'",
                        params![sha, now],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A snapshot of what HQ holds of one blob; snapshots replace each other.
    pub fn on_progress(&mut self, p: &BlobProgress) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE blob_sync SET have = ?2, state = CASE WHEN state = 'unknown' THEN 'needed' ELSE state END
             WHERE sha256 = ?1 AND state != 'stored' AND chunk_count = ?3",
            params![p.blob.to_hex(), p.have.as_bytes(), p.chunk_count],
        )?;
        Ok(())
    }

    pub fn on_blob_stored(&mut self, sha: &Sha256) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE blob_sync SET state = 'stored', stored_at = ?2 WHERE sha256 = ?1 AND state != 'stored'",
            params![sha.to_hex(), UnixMillis::now().0],
        )?;
        Ok(())
    }

    /// HQ's delivery ack: the record and all its attachments are durable at HQ.
    pub fn on_delivered(
        &mut self,
        id: &ApplicationId,
        hq_received_at: UnixMillis,
    ) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = UnixMillis::now().0;
        let ids = id.to_string();
        let changed = tx.execute(
            "UPDATE outbox SET state = 'delivered', delivered_at = ?2, hq_received_at = ?3, reject_reason = NULL
             WHERE application_id = ?1 AND state IN ('queued', 'record_acked')",
            params![ids, now, hq_received_at.0],
        )?;
        tx.execute(
            "UPDATE blob_sync SET state = 'stored', stored_at = ?2
             WHERE state != 'stored' AND sha256 IN (SELECT sha256 FROM attachments WHERE application_id = ?1)",
            params![ids, now],
        )?;
        if changed > 0 {
            tx.execute("INSERT INTO meta (key, value) VALUES ('last_sync', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value", [now.to_string()])?;
        }
        tx.commit()?;
        Ok(changed > 0)
    }

    /// HQ quarantined the application. It stays on the bus, with the reason shown.
    pub fn on_rejected(&mut self, id: &ApplicationId, reason: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET state = 'rejected', reject_reason = ?2 WHERE application_id = ?1 AND state != 'delivered'",
            params![id.to_string(), reason],
        )?;
        Ok(())
    }

    /// Whether the stored bytes of a blob still decrypt and match its hash.
    pub fn blob_is_sound(&self, sha: &Sha256, vault: &UnlockedVault) -> Result<bool, StoreError> {
        let size: Option<i64> = self
            .conn
            .query_row(
                "SELECT size FROM blobs WHERE sha256 = ?1 AND data IS NOT NULL",
                [sha.to_hex()],
                |r| r.get(0),
            )
            .optional()?;
        let Some(size) = size else {
            return Ok(false);
        };
        match self.read_chunk(sha, 0..size as u64, vault) {
            Ok(bytes) => Ok(Sha256::digest(&bytes) == *sha),
            Err(StoreError::Vault(_) | StoreError::Corrupt(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Marks every undelivered application that needs `sha` as rejected, with `reason`.
    pub fn reject_apps_with_blob(
        &mut self,
        sha: &Sha256,
        reason: &str,
    ) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE outbox SET state = 'rejected', reject_reason = ?2
             WHERE state IN ('queued', 'record_acked')
               AND application_id IN (SELECT application_id FROM attachments WHERE sha256 = ?1)",
            params![sha.to_hex(), reason],
        )?)
    }

    /// Blobs HQ asked for, most useful first: ID photos before document scans, older
    /// applications before newer ones.
    pub fn needed_blobs(&self, limit: usize) -> Result<Vec<BlobPlan>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT s.sha256, b.size, s.chunk_size, s.chunk_count, s.have,
                    MIN(a.priority) AS prio, MIN(o.enqueued_at) AS age
             FROM blob_sync s
             JOIN blobs b ON b.sha256 = s.sha256
             JOIN attachments a ON a.sha256 = s.sha256
             JOIN outbox o ON o.application_id = a.application_id
             WHERE s.state = 'needed' AND o.state = 'record_acked' AND b.data IS NOT NULL
             GROUP BY s.sha256
             ORDER BY prio, age, s.sha256
             LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, u32>(3)?,
                r.get::<_, Vec<u8>>(4)?,
            ))
        })?;
        rows.map(|r| {
            let (sha, size, chunk_size, chunk_count, have) = r?;
            Ok(BlobPlan {
                sha256: Sha256::parse_hex(&sha).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                size: size as u64,
                chunk_size,
                chunk_count,
                have: Bitmap::from_bytes(have),
            })
        })
        .collect()
    }

    /// The plaintext bytes `range` of a blob: reads and decrypts only the segments that
    /// hold them (one, when the range is a chunk of the size the blob was saved with).
    pub fn read_chunk(
        &self,
        sha: &Sha256,
        range: std::ops::Range<u64>,
        vault: &UnlockedVault,
    ) -> Result<Vec<u8>, StoreError> {
        let corrupt = |why: String| StoreError::Corrupt(format!("blob {sha:?}: {why}"));
        let hex = sha.to_hex();
        let head: Option<(i64, Option<u32>, Option<Vec<u8>>)> = self
            .conn
            .query_row(
                "SELECT size, segment_size, sealed_key FROM blobs WHERE sha256 = ?1 AND data IS NOT NULL",
                [&hex],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((size, Some(segment_size), Some(sealed_key))) = head else {
            return Err(corrupt("has no bytes".into()));
        };
        let size = size as u64;
        if range.start > range.end || range.end > size || segment_size == 0 {
            return Err(corrupt(format!("no bytes {range:?} in a {size}-byte blob")));
        }
        let layout = Layout { size, segment_size };
        let segments = layout.segments_for(&range);
        let from = layout.stored_range(*segments.start()).start;
        let to = layout.stored_range(*segments.end()).end;
        let stored: Vec<u8> = self.conn.query_row(
            "SELECT substr(data, ?2, ?3) FROM blobs WHERE sha256 = ?1",
            params![hex, from as i64 + 1, (to - from) as i64],
            |r| r.get(0),
        )?;
        if stored.len() as u64 != to - from {
            return Err(corrupt(format!(
                "{} stored bytes, expected {}",
                stored.len(),
                to - from
            )));
        }
        let mut cache = self.last_blob_key.borrow_mut();
        let cached = match cache.take() {
            Some(c)
                if c.sha == *sha && c.sealed == sealed_key && &c.vault == vault.sealing_key() =>
            {
                cache.insert(c)
            }
            _ => cache.insert(CachedBlobKey {
                key: vault.blob_key(sha, &sealed_key)?,
                vault: vault.sealing_key().clone(),
                sha: *sha,
                sealed: sealed_key,
            }),
        };
        let mut plain = Vec::with_capacity((range.end - range.start) as usize);
        let first_plain = u64::from(*segments.start()) * u64::from(segment_size);
        for index in segments {
            let r = layout.stored_range(index);
            let seg = &stored[(r.start - from) as usize..(r.end - from) as usize];
            plain.extend_from_slice(&cached.key.open_segment(sha, layout, index, seg)?);
        }
        let skip = (range.start - first_plain) as usize;
        let take = (range.end - range.start) as usize;
        plain.drain(..skip);
        plain.truncate(take);
        Ok(plain)
    }

    /// Operator's view: counts, oldest waiting, last sync.
    pub fn status(&self) -> Result<Status, StoreError> {
        let mut s = Status::default();
        let mut stmt = self.conn.prepare_cached(
            "SELECT state, COUNT(*), MIN(enqueued_at) FROM outbox GROUP BY state",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })?;
        for row in rows {
            let (state, n, oldest) = row?;
            let n = n as u64;
            s.total += n;
            match OutboxState::parse(&state)? {
                OutboxState::Queued => s.queued = n,
                OutboxState::RecordAcked => s.record_acked = n,
                OutboxState::Delivered => s.delivered = n,
                OutboxState::Rejected => s.rejected = n,
            }
            if matches!(state.as_str(), "queued" | "record_acked") {
                if let Some(o) = oldest {
                    s.oldest_waiting = Some(
                        s.oldest_waiting
                            .map_or(UnixMillis(o), |p| p.min(UnixMillis(o))),
                    );
                }
            }
        }
        s.bytes_waiting = self.conn.query_row(
            "SELECT COALESCE(SUM(b.size), 0) FROM blob_sync s JOIN blobs b ON b.sha256 = s.sha256 WHERE s.state != 'stored'",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64;
        let last: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'last_sync'", [], |r| {
                r.get(0)
            })
            .optional()?;
        s.last_sync = last.and_then(|v| v.parse().ok()).map(UnixMillis);
        Ok(s)
    }

    /// The newest applications, for the operator's list.
    pub fn recent(&self, limit: usize, only_waiting: bool) -> Result<Vec<AppSummary>, StoreError> {
        let sql = format!(
            "SELECT a.id, a.service, a.captured_at, o.state, o.delivered_at, o.reject_reason
             FROM applications a JOIN outbox o ON o.application_id = a.id {}
             ORDER BY a.captured_at DESC, a.id DESC LIMIT ?1",
            if only_waiting {
                "WHERE o.state != 'delivered'"
            } else {
                ""
            }
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?;
        rows.map(|r| {
            let (id, service, captured, state, delivered, reason) = r?;
            Ok(AppSummary {
                id: ApplicationId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                service,
                captured_at: UnixMillis(captured),
                state: OutboxState::parse(&state)?,
                delivered_at: delivered.map(UnixMillis),
                reject_reason: reason,
            })
        })
        .collect()
    }

    /// Keeps a message the bus could not accept, with the reason, for a human to read.
    ///
    /// Bounded: anyone who can publish on this bus's down topic could otherwise fill its
    /// disk. The newest [`MAX_QUARANTINE_ROWS`] entries are kept, each with at most
    /// [`MAX_QUARANTINE_PAYLOAD`] bytes of its payload.
    pub fn quarantine(
        &mut self,
        topic: &str,
        reason: &str,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        let keep = &payload[..payload.len().min(MAX_QUARANTINE_PAYLOAD)];
        let topic: String = topic.chars().take(256).collect();
        let reason: String = keliling_shared::text::printable(reason)
            .chars()
            .take(1000)
            .collect();
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO quarantine (received_at, topic, reason, payload) VALUES (?1, ?2, ?3, ?4)",
            params![UnixMillis::now().0, topic, reason, keep],
        )?;
        tx.execute(
            "DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - ?1",
            [MAX_QUARANTINE_ROWS],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Whether HQ's delivery ack names exactly this bus's record of `id`: its content
    /// hash and its blobs' hashes (sorted, each once). `None` when the bus has no such
    /// application. Reads the sealed record, so it needs the unlocked vault.
    pub fn holds_as_delivered(
        &self,
        id: &ApplicationId,
        content_hash: &Sha256,
        blobs: &[Sha256],
        vault: &UnlockedVault,
    ) -> Result<Option<bool>, StoreError> {
        let Some(app) = self.application(id, vault)? else {
            return Ok(None);
        };
        let mut own: Vec<Sha256> = app.attachments.iter().map(|a| a.sha256).collect();
        own.sort();
        own.dedup();
        Ok(Some(app.content_hash() == *content_hash && own == blobs))
    }

    pub fn quarantine_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM quarantine", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// Drops the bytes of photos and scans whose applications HQ confirmed more than
    /// `retention` ago, with their content keys. A lost bus then carries little personal
    /// data, even to someone who learns the passphrase later. Never touches a blob an
    /// undelivered application needs. Returns how many.
    pub fn purge_delivered_blobs(&mut self, retention: Duration) -> Result<usize, StoreError> {
        let cutoff = UnixMillis::now().0 - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let n = self.conn.execute(
            "UPDATE blobs SET data = NULL, sealed_key = NULL, purged_at = ?2
             WHERE data IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM attachments a JOIN outbox o ON o.application_id = a.application_id
                WHERE a.sha256 = blobs.sha256 AND (o.state != 'delivered' OR o.delivered_at > ?1))",
            params![cutoff, UnixMillis::now().0],
        )?;
        Ok(n)
    }

    /// SHA-256 of every stored blob with its bytes, for tests and audits.
    pub fn blob_hashes(&self) -> Result<Vec<Sha256>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT sha256 FROM blobs ORDER BY sha256")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| Sha256::parse_hex(&r?).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    /// Blobs HQ asked for: asked about again on every (re)connect, because HQ's staging
    /// area may have been lost since its last snapshot.
    pub fn needed_blob_hashes(&self) -> Result<Vec<Sha256>, StoreError> {
        Ok(self
            .needed_blobs(10_000)?
            .into_iter()
            .map(|b| b.sha256)
            .collect())
    }
}
