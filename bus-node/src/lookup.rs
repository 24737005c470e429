//! Finding applications on the bus without opening every sealed record: by tracking
//! number (the id, in clear) or by NIK through a keyed index.
//!
//! The index holds `BLAKE2b-MAC(index key, NIK)` per application; the key derives from the
//! bus secret key ([`crate::vault::UnlockedVault::index_key`]), so only an unlocked bus can
//! compute a tag, and a copy of the disk cannot test guessed NIKs against the index.
//! The station tags an application as it saves it; applications captured by the CLI
//! (which needs no key) are tagged when `bus-node run` starts: one decryption each, once.

use crate::store::{OutboxState, Store, StoreError};
use crate::vault::{IndexKey, UnlockedVault};
use keliling_shared::{ApplicationId, Nik, UnixMillis};
use rusqlite::params;

/// One application as the station's lists show it: nothing sealed is read.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: ApplicationId,
    pub service: String,
    pub captured_at: UnixMillis,
    pub state: OutboxState,
    pub delivered_at: Option<UnixMillis>,
    /// The kind of HQ's decision in force (`approved`, `rejected`, `info_requested`).
    pub decision: Option<String>,
    pub decision_version: Option<u32>,
    pub decided_at: Option<UnixMillis>,
}

const LISTED: &str = "SELECT a.id, a.service, a.captured_at, o.state, o.delivered_at,
        d.kind, d.version, d.decided_at
     FROM applications a JOIN outbox o ON o.application_id = a.id
     LEFT JOIN decisions d ON d.application_id = a.id
        AND d.version = (SELECT MAX(version) FROM decisions m WHERE m.application_id = a.id)";

/// A row of [`LISTED`], as SQLite gives it.
type ListedRow = (
    String,
    String,
    i64,
    String,
    Option<i64>,
    Option<String>,
    Option<u32>,
    Option<i64>,
);

fn listed(r: &rusqlite::Row<'_>) -> rusqlite::Result<ListedRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

impl Store {
    fn listed_where(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Listed>, StoreError> {
        let sql = format!("{LISTED} {filter}");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(args, listed)?;
        rows.map(|r| {
            let (id, service, captured, state, delivered, kind, version, decided) = r?;
            Ok(Listed {
                id: ApplicationId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                service,
                captured_at: UnixMillis(captured),
                state: OutboxState::parse(&state)?,
                delivered_at: delivered.map(UnixMillis),
                decision: kind,
                decision_version: version,
                decided_at: decided.map(UnixMillis),
            })
        })
        .collect()
    }

    /// Applications captured since `since`, the newest first (today's, at the station).
    pub fn captured_since(
        &self,
        since: UnixMillis,
        limit: usize,
    ) -> Result<Vec<Listed>, StoreError> {
        self.listed_where(
            "WHERE a.captured_at >= ?1 ORDER BY a.captured_at DESC, a.id DESC LIMIT ?2",
            &[&since.0, &(limit as i64)],
        )
    }

    /// Applications HQ has not confirmed yet (saved, or sent with photos following), the
    /// oldest first.
    pub fn waiting(&self, limit: usize) -> Result<Vec<Listed>, StoreError> {
        self.listed_where(
            "WHERE o.state IN ('queued', 'record_acked') ORDER BY a.captured_at, a.id LIMIT ?1",
            &[&(limit as i64)],
        )
    }

    /// Applications with a decision from HQ, the latest decided first.
    pub fn decided(&self, limit: usize) -> Result<Vec<Listed>, StoreError> {
        self.listed_where(
            "WHERE d.kind IS NOT NULL ORDER BY d.received_at DESC LIMIT ?1",
            &[&(limit as i64)],
        )
    }

    /// One application by its tracking number.
    pub fn listed(&self, id: &ApplicationId) -> Result<Option<Listed>, StoreError> {
        Ok(self
            .listed_where("WHERE a.id = ?1", &[&id.to_string()])?
            .into_iter()
            .next())
    }

    /// Applications whose tracking number ends in `tail` (the short number on a receipt).
    pub fn find_by_tail(&self, tail: &str) -> Result<Vec<Listed>, StoreError> {
        let pattern = format!("%{}", tail.replace(['%', '_'], ""));
        self.listed_where(
            "WHERE a.id LIKE ?1 ORDER BY a.captured_at DESC LIMIT 20",
            &[&pattern],
        )
    }

    /// The applications that complete `id` (amendments HQ asked for), oldest first.
    pub fn amendments_of(&self, id: &ApplicationId) -> Result<Vec<Listed>, StoreError> {
        self.listed_where(
            "WHERE a.amends = ?1 ORDER BY a.captured_at, a.id",
            &[&id.to_string()],
        )
    }

    /// How many decisions the bus holds (every version).
    pub fn decision_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM decisions", [], |r| r.get(0))?)
    }

    /// The applications of a NIK: one index lookup.
    pub fn find_by_nik(&self, key: &IndexKey, nik: &Nik) -> Result<Vec<Listed>, StoreError> {
        let tag = key.tag(nik);
        self.listed_where(
            "JOIN nik_index n ON n.application_id = a.id WHERE n.tag = ?1
             ORDER BY a.captured_at DESC LIMIT 50",
            &[&&tag[..]],
        )
    }

    /// Indexes applications that have no index entry yet (captured by the CLI, or saved
    /// before the index existed): opens each once. Returns how many were indexed.
    pub fn index_unindexed(&mut self, vault: &UnlockedVault) -> Result<usize, StoreError> {
        let ids: Vec<String> = {
            let mut stmt = self.conn.prepare(
                "SELECT id FROM applications WHERE id NOT IN (SELECT application_id FROM nik_index)",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let key = vault.index_key();
        let mut n = 0;
        for id in ids {
            let id = ApplicationId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let app = match self.application(&id, vault) {
                Ok(Some(app)) => app,
                Ok(None) => continue,
                Err(e) => {
                    // A damaged record is the sync's to report; the index goes on.
                    tracing::warn!(error = %e, application = %id, "cannot index an unreadable record");
                    continue;
                }
            };
            self.conn.execute(
                "INSERT OR IGNORE INTO nik_index (tag, application_id) VALUES (?1, ?2)",
                params![&key.tag(&app.applicant.nik)[..], id.to_string()],
            )?;
            n += 1;
        }
        Ok(n)
    }
}
