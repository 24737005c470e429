//! The audit log: who did what, when, from which state to which; and who looked at whose
//! personal data (detail pages, photos, NIK searches), as UU 27/2022 expects.
//!
//! Invariants:
//! - Append-only: triggers in the schema refuse every `UPDATE` and `DELETE` on `audit`,
//!   whoever holds the file or connects to the database, and no code path writes one.
//! - Tamper-evident: each row carries the SHA-256 of the previous row's hash and its own
//!   content, so an edit made around the triggers (another SQLite client, or a
//!   PostgreSQL role that may drop them) breaks the chain at that row, and
//!   [`verify_chain`] names it.
//! - One chain, never forked: [`append`] reads the last hash and inserts the next row
//!   under the audit lock ([`Db::lock_audit`], the last lock class), held to commit. On
//!   SQLite `BEGIN IMMEDIATE` already excludes every other writer; on PostgreSQL (READ
//!   COMMITTED) the advisory lock does, so two appenders never read the same last hash,
//!   and `seq` (assigned under the lock) follows commit order. A rolled-back append may
//!   leave a gap in `seq`; the chain is checked through `prev_hash`, not through `seq`.
//! - An entry is written in the same transaction as the change it records, so there is
//!   no change without its entry and no entry without its change.

use crate::db::{Db, DbError, OptionalExt, ToValue, Value};
use crate::store::HqStoreError;
use crate::vals;
use keliling_shared::{Sha256, UnixMillis};

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

/// Appends an entry. Call inside the write transaction of the change it records (a
/// [`crate::db::Tx`], after the change's own statements): it takes the audit lock first,
/// which is held until that transaction ends.
pub fn append(db: &Db, at: UnixMillis, actor: &str, e: &Entry) -> Result<i64, HqStoreError> {
    db.lock_audit()?;
    let prev: String = db
        .query_row(
            "SELECT hash FROM audit ORDER BY seq DESC LIMIT 1",
            vals![],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_else(|| GENESIS.to_owned());
    let hash = row_hash(&prev, at, actor, e)?;
    let seq: i64 = db.query_row(
        "INSERT INTO audit (at, actor, action, bus_id, application_id, from_state, to_state, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING seq",
        vals![
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
        |r| r.get(0),
    )?;
    Ok(seq)
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

fn read_row(r: &crate::db::Row<'_>) -> Result<Row, DbError> {
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
///
/// The WHERE names only the filters given (at most 16 statement shapes): PostgreSQL
/// cannot type a parameter that appears only in `?1 IS NULL`, and a plan per shape can
/// use `audit_by_application` / `audit_by_actor`.
pub fn list(db: &Db, f: &Filter) -> Result<Vec<Row>, HqStoreError> {
    let mut conds: Vec<String> = Vec::new();
    let mut params: Vec<Value<'_>> = Vec::new();
    if let Some(b) = &f.bus_id {
        params.push(b.to_value());
        conds.push(format!("bus_id = ?{}", params.len()));
    }
    if let Some(a) = &f.application_id {
        params.push(a.to_value());
        conds.push(format!("application_id = ?{}", params.len()));
    }
    if let Some(a) = &f.actor {
        params.push(a.to_value());
        conds.push(format!("actor = ?{}", params.len()));
    }
    if let Some(before) = f.before {
        params.push(Value::Int(before));
        conds.push(format!("seq < ?{}", params.len()));
    }
    params.push(Value::Int(f.limit.clamp(1, 1000) as i64));
    let sql = format!(
        "SELECT seq, at, actor, action, bus_id, application_id, from_state, to_state, detail FROM audit{}{} ORDER BY seq DESC LIMIT ?{}",
        if conds.is_empty() { "" } else { " WHERE " },
        conds.join(" AND "),
        params.len()
    );
    Ok(db.query_map(&sql, &params, read_row)?)
}

/// Checks the whole chain; the first row whose hash does not follow, if any. Streams the
/// log (it grows without bound); on PostgreSQL the one statement reads one snapshot, in
/// which the committed rows are a prefix of the chain (appends commit in `seq` order,
/// see the module invariants).
pub fn verify_chain(db: &Db) -> Result<Option<i64>, HqStoreError> {
    let mut prev = GENESIS.to_owned();
    let mut broken: Option<i64> = None;
    let mut failed: Option<HqStoreError> = None;
    db.for_each(
        "SELECT seq, at, actor, action, bus_id, application_id, from_state, to_state, detail, prev_hash, hash
         FROM audit ORDER BY seq",
        vals![],
        |r| {
            // After the first break (or a failure) the rest is only read, not checked:
            // stopping early would need an error of its own, and a break is rare.
            if broken.is_some() || failed.is_some() {
                return Ok(());
            }
            let row = read_row(r)?;
            let stored_prev: String = r.get(9)?;
            let stored: String = r.get(10)?;
            if stored_prev != prev {
                broken = Some(row.seq);
                return Ok(());
            }
            match row_hash(&prev, row.at, &row.actor, &row.entry) {
                Ok(h) if h == stored => prev = stored,
                Ok(_) => broken = Some(row.seq),
                Err(e) => failed = Some(e),
            }
            Ok(())
        },
    )?;
    match failed {
        Some(e) => Err(e),
        None => Ok(broken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HqStore;

    #[test]
    fn the_log_is_append_only_and_tamper_evident() {
        // SQLite only: the tampering goes through a raw SQLite client on the file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hq.sqlite");
        let _store = HqStore::open(&path).unwrap();
        let db = Db::open_sqlite(&path).unwrap();
        for i in 0..5 {
            let tx = db.transaction().unwrap();
            append(
                &tx,
                UnixMillis(1_000 + i),
                "siti",
                &Entry::application("viewed", "bus-01", "app").detail(format!("#{i}")),
            )
            .unwrap();
            tx.commit().unwrap();
        }
        assert_eq!(verify_chain(&db).unwrap(), None);
        let rows = list(
            &db,
            &Filter {
                limit: 3,
                ..Filter::default()
            },
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].entry.detail, "#4");
        let rows = list(
            &db,
            &Filter {
                actor: Some("siti".into()),
                application_id: Some("app".into()),
                before: Some(rows[0].seq),
                limit: 10,
                ..Filter::default()
            },
        )
        .unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].entry.detail, "#3");
        // Nobody edits or deletes a row through SQL.
        assert!(db.execute("UPDATE audit SET actor = 'x'", vals![]).is_err());
        assert!(db.execute("DELETE FROM audit", vals![]).is_err());
        // Around the triggers (another client drops them): the chain shows where.
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "DROP TRIGGER audit_no_update; UPDATE audit SET detail = 'edited' WHERE seq = 3;",
        )
        .unwrap();
        assert_eq!(verify_chain(&db).unwrap(), Some(3));
    }
}
