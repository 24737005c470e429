//! HQ's schema on PostgreSQL: one migration for each of `store.rs`'s SQLite migrations,
//! same index, same meaning (a test checks the counts match), each run in its own
//! transaction after the migration lock. Types: INTEGER → BIGINT (the Rust side is i64),
//! an INTEGER used as a flag → BOOLEAN, BLOB → BYTEA, REAL → DOUBLE PRECISION,
//! AUTOINCREMENT → identity columns. Append new migrations to both arrays in the same
//! commit (a backend-only change gets `SELECT 1` on the other side); never edit one that
//! has shipped.
//!
//! The database must be C-collated (`CREATE DATABASE .. TEMPLATE template0 LC_COLLATE 'C'
//! LC_CTYPE 'C'`): the queue's keyset cursor and every `ORDER BY` on text must order as
//! SQLite's bytewise BINARY does. Migration 1 refuses any other.

/// The version row, created under the migration lock before anything reads it.
pub const VERSION_TABLE: &str = "
CREATE TABLE IF NOT EXISTS keliling_schema (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version   BIGINT NOT NULL
);
INSERT INTO keliling_schema (version) VALUES (0) ON CONFLICT DO NOTHING;
";

pub const MIGRATIONS: &[&str] = &[
    PG_V1, PG_V2, PG_V3, PG_V4, PG_V5, PG_V6, PG_V7, PG_V8, PG_V9, PG_V10,
];

const PG_V1: &str = r#"
-- Refuse a database whose collation is not bytewise (SQLite's BINARY): ORDER BY bus_id,
-- id, sha256, username and the keyset cursor of the queue must order as on SQLite.
DO $$
BEGIN
    IF (SELECT datcollate FROM pg_database WHERE datname = current_database()) NOT IN ('C', 'POSIX', 'C.UTF-8', 'C.utf8') THEN
        RAISE EXCEPTION 'Keliling HQ needs a database created with LC_COLLATE ''C'' (CREATE DATABASE ... TEMPLATE template0 LC_COLLATE ''C'' LC_CTYPE ''C'')';
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS applications (
    id              TEXT PRIMARY KEY,
    bus_id          TEXT NOT NULL,
    service         TEXT NOT NULL,
    content_hash    TEXT NOT NULL,
    record          BYTEA NOT NULL,
    applicant_name  TEXT NOT NULL,
    nik             TEXT NOT NULL,
    village         TEXT NOT NULL,
    captured_at     BIGINT NOT NULL,
    hq_received_at  BIGINT NOT NULL,
    clock_skew_ms   BIGINT,
    warnings        TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('awaiting_blobs', 'complete')),
    completed_at    BIGINT,
    review_state    TEXT NOT NULL DEFAULT 'pending',
    ingested_by     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS applications_by_state ON applications(state, hq_received_at);
CREATE INDEX IF NOT EXISTS applications_by_bus ON applications(bus_id, hq_received_at);
CREATE TABLE IF NOT EXISTS app_blobs (
    application_id TEXT NOT NULL REFERENCES applications(id),
    sha256         TEXT NOT NULL,
    kind           TEXT NOT NULL,
    size           BIGINT NOT NULL,
    media_type     TEXT NOT NULL,
    PRIMARY KEY (application_id, sha256, kind)
);
CREATE INDEX IF NOT EXISTS app_blobs_by_sha ON app_blobs(sha256);
CREATE TABLE IF NOT EXISTS blobs (
    sha256     TEXT PRIMARY KEY,
    size       BIGINT NOT NULL,
    path       TEXT NOT NULL,
    first_bus  TEXT NOT NULL,
    stored_at  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at    BIGINT NOT NULL,
    topic          TEXT NOT NULL,
    claimed_bus    TEXT,
    reason         TEXT NOT NULL,
    payload        BYTEA,
    payload_sha256 TEXT NOT NULL
);
-- SQLite: UNIQUE (payload_sha256, reason). A btree entry must stay under ~2.7 KB and a
-- reason is not bounded by the code, so the key is its md5; the INSERT must then say
-- `ON CONFLICT DO NOTHING` without a column list (valid on both backends).
CREATE UNIQUE INDEX IF NOT EXISTS quarantine_once ON quarantine (payload_sha256, md5(reason));
CREATE TABLE IF NOT EXISTS buses (
    bus_id          TEXT PRIMARY KEY,
    online          BOOLEAN NOT NULL DEFAULT FALSE,
    last_seen       BIGINT,
    queue_depth     BIGINT,
    bytes_waiting   BIGINT,
    oldest_unsynced BIGINT,
    last_sync       BIGINT,
    lat             DOUBLE PRECISION,
    lon             DOUBLE PRECISION,
    software        TEXT,
    bus_clock       BIGINT,
    clock_skew_ms   BIGINT
);
CREATE TABLE IF NOT EXISTS revoked_buses (
    bus_id     TEXT PRIMARY KEY,
    revoked_at BIGINT NOT NULL,
    reason     TEXT NOT NULL
);
"#;

const PG_V2: &str = r#"
-- SQLite rebuilds the two tables; PostgreSQL changes the keys in place (same end state,
-- app_blobs.bus_id is the last column instead of the first: no query uses SELECT *).
ALTER TABLE app_blobs DROP CONSTRAINT app_blobs_application_id_fkey;
ALTER TABLE app_blobs ADD COLUMN bus_id TEXT;
UPDATE app_blobs ab SET bus_id = a.bus_id FROM applications a WHERE a.id = ab.application_id;
ALTER TABLE app_blobs ALTER COLUMN bus_id SET NOT NULL;
ALTER TABLE app_blobs DROP CONSTRAINT app_blobs_pkey;
ALTER TABLE app_blobs ADD PRIMARY KEY (bus_id, application_id, sha256, kind);
ALTER TABLE applications DROP CONSTRAINT applications_pkey;
ALTER TABLE applications ADD PRIMARY KEY (bus_id, id);
CREATE INDEX applications_by_id ON applications(id);
DROP INDEX app_blobs_by_sha;
CREATE INDEX app_blobs_by_sha ON app_blobs(sha256, bus_id);
CREATE TABLE id_collisions (
    id          TEXT NOT NULL,
    bus_id      TEXT NOT NULL,
    first_bus   TEXT NOT NULL,
    detected_at BIGINT NOT NULL,
    PRIMARY KEY (id, bus_id)
);
CREATE TABLE workers (
    worker_id       TEXT PRIMARY KEY,
    updated_at      BIGINT NOT NULL,
    staging_uploads BIGINT NOT NULL,
    staging_bytes   BIGINT NOT NULL,
    disk_free_bytes BIGINT,
    disk_low        BOOLEAN NOT NULL DEFAULT FALSE
);
"#;

const PG_V3: &str = r#"
CREATE TABLE staff (
    id                  BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    username            TEXT NOT NULL UNIQUE,
    display_name        TEXT NOT NULL,
    password_hash       TEXT NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('reviewer', 'supervisor')),
    language            TEXT NOT NULL DEFAULT 'id' CHECK (language IN ('id', 'en')),
    disabled            BOOLEAN NOT NULL DEFAULT FALSE,
    failed_logins       BIGINT NOT NULL DEFAULT 0,
    locked_until        BIGINT,
    created_at          BIGINT NOT NULL,
    password_changed_at BIGINT NOT NULL
);
-- Foreign keys: SQLite never enforces these (the store does not set PRAGMA foreign_keys);
-- PostgreSQL does. Every code path uses real staff ids; keep them.
CREATE TABLE staff_agencies (
    staff_id BIGINT NOT NULL REFERENCES staff(id),
    agency   TEXT NOT NULL,
    PRIMARY KEY (staff_id, agency)
);
CREATE TABLE sessions (
    token_sha256 TEXT PRIMARY KEY,
    staff_id     BIGINT NOT NULL REFERENCES staff(id),
    csrf         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL,
    client       TEXT NOT NULL
);
CREATE INDEX sessions_by_staff ON sessions(staff_id);
CREATE TABLE audit (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             BIGINT NOT NULL,
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
CREATE FUNCTION keliling_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END $$;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    FOR EACH ROW EXECUTE FUNCTION keliling_audit_append_only();
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION keliling_audit_append_only();
-- SQLite has no TRUNCATE; PostgreSQL's bypasses row triggers.
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION keliling_audit_append_only();
CREATE TABLE claims (
    bus_id         TEXT NOT NULL,
    application_id TEXT NOT NULL,
    staff_id       BIGINT NOT NULL REFERENCES staff(id),
    claimed_at     BIGINT NOT NULL,
    until          BIGINT NOT NULL,
    PRIMARY KEY (bus_id, application_id)
);
CREATE TABLE decisions (
    bus_id         TEXT NOT NULL,
    application_id TEXT NOT NULL,
    version        BIGINT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('approved', 'rejected', 'info_requested')),
    reason_code    TEXT,
    message        TEXT NOT NULL DEFAULT '',
    needs          TEXT NOT NULL DEFAULT '',
    decided_by     BIGINT NOT NULL REFERENCES staff(id),
    decided_at     BIGINT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('awaiting_check', 'final', 'declined')),
    checked_by     BIGINT REFERENCES staff(id),
    checked_at     BIGINT,
    delivery       TEXT NOT NULL DEFAULT 'held'
                   CHECK (delivery IN ('held', 'waiting', 'sent', 'confirmed', 'superseded')),
    sent_at        BIGINT,
    send_count     BIGINT NOT NULL DEFAULT 0,
    confirmed_at   BIGINT,
    PRIMARY KEY (bus_id, application_id, version)
);
CREATE INDEX decisions_outbox ON decisions(delivery, bus_id);
CREATE TABLE upload_progress (
    worker_id   TEXT NOT NULL,
    bus_id      TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    chunks_have BIGINT NOT NULL,
    chunk_count BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (worker_id, bus_id, sha256)
);
CREATE INDEX applications_by_received ON applications(hq_received_at, bus_id, id);
CREATE INDEX applications_by_review ON applications(review_state, hq_received_at);
CREATE INDEX applications_by_nik ON applications(nik);
CREATE INDEX applications_by_village ON applications(village);
"#;

const PG_V4: &str = r#"
ALTER TABLE decisions ADD COLUMN outcome BYTEA;
"#;

const PG_V5: &str = r#"
CREATE TABLE api_tokens (
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,
    agencies     TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
"#;

const PG_V6: &str = r#"
ALTER TABLE applications ADD COLUMN notes BYTEA;
"#;

const PG_V7: &str = r#"
ALTER TABLE applications ADD COLUMN amends TEXT;
CREATE INDEX IF NOT EXISTS applications_by_amends ON applications(bus_id, amends);
"#;

const PG_V8: &str = r#"
CREATE TABLE IF NOT EXISTS catalogues (
    version BIGINT PRIMARY KEY,
    body TEXT NOT NULL,
    services BIGINT NOT NULL,
    first_published_at BIGINT NOT NULL
);
"#;

const PG_V9: &str = r#"
CREATE TABLE IF NOT EXISTS ingest_syncs (
    worker  TEXT PRIMARY KEY,
    batches BIGINT NOT NULL,
    at      BIGINT NOT NULL
);
"#;

/// Photos and scans do not compress: `EXTERNAL` keeps them out of line without trying.
const PG_V10: &str = r#"
CREATE TABLE IF NOT EXISTS blob_contents (
    sha256 TEXT PRIMARY KEY,
    data   BYTEA NOT NULL
);
ALTER TABLE blob_contents ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE IF NOT EXISTS staged_uploads (
    bus_id     TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    total_size BIGINT NOT NULL,
    chunk_size BIGINT NOT NULL,
    have       BYTEA NOT NULL,
    mismatches BIGINT NOT NULL DEFAULT 0,
    bytes      BIGINT NOT NULL DEFAULT 0,
    touched_at BIGINT NOT NULL,
    PRIMARY KEY (bus_id, sha256)
);
CREATE TABLE IF NOT EXISTS staged_chunks (
    bus_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    idx    BIGINT NOT NULL,
    data   BYTEA NOT NULL,
    PRIMARY KEY (bus_id, sha256, idx)
);
ALTER TABLE staged_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
"#;
