//! The audit log: who did what, when, from which state to which; and who looked at whose
//! personal data (detail pages, photos, NIK searches), as UU 27/2022 expects.
//!
//! Invariants:
//! - Append-only: triggers in the schema refuse every `UPDATE` and `DELETE` on `audit`,
//!   whoever holds the file, and no code path writes one.
//! - Tamper-evident: each row carries the SHA-256 of the previous row's hash and its own
//!   content, so an edit made around the triggers (another SQLite client) breaks the
//!   chain at that row, and [`verify_chain`] names it.
//! - An entry is written in the same transaction as the change it records, so there is
//!   no change without its entry and no entry without its change.

use crate::store::HqStoreError;
use keliling_shared::{Sha256, UnixMillis};
use rusqlite::{params, Connection, OptionalExtension};

/// What happened, in the words of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub action: String,
    pub bus_id: Option<String>,
    pub application_id: Option<String>,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub detail: String,
}

impl Entry {
    pub fn new(action: &str) -> Entry {
        Entry {
            action: action.to_owned(),
            ..Entry::default()
        }
    }

    /// An entry about one application.
    pub fn application(action: &str, bus: &str, id: &str) -> Entry {
        Entry {
            action: action.to_owned(),
            bus_id: Some(bus.to_owned()),
            application_id: Some(id.to_owned()),
            ..Entry::default()
        }
    }

    pub fn states(mut self, from: &str, to: &str) -> Entry {
        self.from_state = Some(from.to_owned());
        self.to_state = Some(to.to_owned());
        self
    }

    pub fn detail(mut self, d: impl Into<String>) -> Entry {
        self.detail = d.into();
        self
    }

    pub(crate) fn staff(action: &str, user: &crate::staff::Username, detail: &str) -> Entry {
        Entry::new(action).detail(if detail.is_empty() {
            format!("account {user}")
        } else {
            format!("account {user}: {detail}")
        })
    }

    pub(crate) fn login(action: &str, client: &str) -> Entry {
        Entry::new(action).detail(client)
    }
}

/// One row of the log, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub seq: i64,
    pub at: UnixMillis,
    pub actor: String,
    pub entry: Entry,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn row_hash(prev: &str, at: UnixMillis, actor: &str, e: &Entry) -> Result<String, HqStoreError> {
    // postcard: every field length-prefixed, so no two rows encode alike.
    let bytes = postcard::to_allocvec(&(
        prev,
        at.0,
        actor,
        &e.action,
        &e.bus_id,
        &e.application_id,
        &e.from_state,
        &e.to_state,
        &e.detail,
    ))
    .map_err(|e| HqStoreError::Corrupt(format!("audit entry: {e}")))?;
    Ok(Sha256::digest(&bytes).to_hex())
}

/// Appends an entry. Call inside the write transaction of the change it records.
pub fn append(
    conn: &Connection,
    at: UnixMillis,
    actor: &str,
    e: &Entry,
) -> Result<i64, HqStoreError> {
    let prev: String = conn
        .query_row(
            "SELECT hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_else(|| GENESIS.to_owned());
    let hash = row_hash(&prev, at, actor, e)?;
    conn.execute(
        "INSERT INTO audit (at, actor, action, bus_id, application_id, from_state, to_state, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            at.0,
            actor,
            e.action,
            e.bus_id,
            e.application_id,
            e.from_state,
            e.to_state,
            e.detail,
            prev,
            hash
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Which rows to list: newest first, below `before` (keyset paging).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub bus_id: Option<String>,
    pub application_id: Option<String>,
    pub actor: Option<String>,
    pub before: Option<i64>,
    pub limit: usize,
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        seq: r.get(0)?,
        at: UnixMillis(r.get(1)?),
        actor: r.get(2)?,
        entry: Entry {
            action: r.get(3)?,
            bus_id: r.get(4)?,
            application_id: r.get(5)?,
            from_state: r.get(6)?,
            to_state: r.get(7)?,
            detail: r.get(8)?,
        },
    })
}

/// Rows matching `f`, newest first.
pub fn list(conn: &Connection, f: &Filter) -> Result<Vec<Row>, HqStoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, actor, action, bus_id, application_id, from_state, to_state, detail FROM audit
         WHERE (?1 IS NULL OR bus_id = ?1) AND (?2 IS NULL OR application_id = ?2)
           AND (?3 IS NULL OR actor = ?3) AND (?4 IS NULL OR seq < ?4)
         ORDER BY seq DESC LIMIT ?5",
    )?;
    let rows = stmt
        .query_map(
            params![
                f.bus_id,
                f.application_id,
                f.actor,
                f.before,
                f.limit.clamp(1, 1000) as i64
            ],
            read_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Checks the whole chain; the first row whose hash does not follow, if any.
pub fn verify_chain(conn: &Connection) -> Result<Option<i64>, HqStoreError> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, action, bus_id, application_id, from_state, to_state, detail, prev_hash, hash
         FROM audit ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut prev = GENESIS.to_owned();
    while let Some(r) = rows.next()? {
        let row = read_row(r)?;
        let stored_prev: String = r.get(9)?;
        let stored: String = r.get(10)?;
        if stored_prev != prev || row_hash(&prev, row.at, &row.actor, &row.entry)? != stored {
            return Ok(Some(row.seq));
        }
        prev = stored;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HqStore;

    #[test]
    fn the_log_is_append_only_and_tamper_evident() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hq.sqlite");
        let _store = HqStore::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        for i in 0..5 {
            append(
                &conn,
                UnixMillis(1_000 + i),
                "siti",
                &Entry::application("viewed", "bus-01", "app").detail(format!("#{i}")),
            )
            .unwrap();
        }
        assert_eq!(verify_chain(&conn).unwrap(), None);
        let rows = list(
            &conn,
            &Filter {
                limit: 3,
                ..Filter::default()
            },
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].entry.detail, "#4");
        // Nobody edits or deletes a row through SQL.
        assert!(conn.execute("UPDATE audit SET actor = 'x'", []).is_err());
        assert!(conn.execute("DELETE FROM audit", []).is_err());
        // Around the triggers (another client drops them): the chain shows where.
        conn.execute_batch(
            "DROP TRIGGER audit_no_update; UPDATE audit SET detail = 'edited' WHERE seq = 3;",
        )
        .unwrap();
        assert_eq!(verify_chain(&conn).unwrap(), Some(3));
    }
}
