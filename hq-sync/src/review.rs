//! The review side of HQ's store: the queue staff work through, an application's whole
//! picture, and claims (a reviewer's lease while deciding).
//!
//! Invariants:
//! - Every query takes the services the asking staff member may see
//!   ([`QueueFilter::services`], from their agencies); an application of any other service
//!   is never returned, counted or served, whatever else the filter says.
//! - Paging is by keyset on (HQ receive time, bus, id): stable while new applications
//!   arrive, and as fast on page 500 as on page 1.
//! - A claim is a lease: it expires by itself, and only its holder (or a supervisor)
//!   releases it early. Claiming locks the application's row first on PostgreSQL (as a
//!   decision does; SQLite's `BEGIN IMMEDIATE` excludes every other writer), so of two
//!   reviewers claiming at once the second sees the first's claim.

use crate::audit;
use crate::db::{Db, OptionalExt, Value};
use crate::store::{HqStore, HqStoreError};
use crate::vals;
use keliling_shared::{Application, ApplicationId, BusId, Nik, ServiceCode, Sha256, UnixMillis};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How long a claim lasts unless renewed or released.
pub const CLAIM_LEASE: Duration = Duration::from_secs(15 * 60);
/// The most rows one queue page holds.
pub const MAX_PAGE: usize = 200;

/// Where an application stands for its reviewers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueueStatus {
    /// Its record is at HQ, a photo or scan is still on its way from the bus.
    WaitingPhoto,
    /// Complete, not decided yet.
    Pending,
    /// A rejection waits for a second person (maker-checker).
    AwaitingCheck,
    /// More information requested from the citizen.
    InfoRequested,
    Approved,
    Rejected,
}

impl QueueStatus {
    pub const ALL: [QueueStatus; 6] = [
        QueueStatus::WaitingPhoto,
        QueueStatus::Pending,
        QueueStatus::AwaitingCheck,
        QueueStatus::InfoRequested,
        QueueStatus::Approved,
        QueueStatus::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueStatus::WaitingPhoto => "waiting_photo",
            QueueStatus::Pending => "pending",
            QueueStatus::AwaitingCheck => "awaiting_check",
            QueueStatus::InfoRequested => "info_requested",
            QueueStatus::Approved => "approved",
            QueueStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<QueueStatus> {
        QueueStatus::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

impl fmt::Display for QueueStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SQL expression of an application's [`QueueStatus`].
const STATUS_SQL: &str =
    "CASE WHEN a.state = 'awaiting_blobs' AND a.review_state = 'pending' THEN 'waiting_photo' ELSE a.review_state END";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Newest,
    Oldest,
}

/// Where the next page starts: the last row of this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub received: i64,
    pub bus: BusId,
    pub id: ApplicationId,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.received, self.bus, self.id)
    }
}

impl FromStr for Cursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Cursor, String> {
        let mut it = s.splitn(3, '.');
        let (Some(t), Some(b), Some(i)) = (it.next(), it.next(), it.next()) else {
            return Err("cursor: time.bus.id".into());
        };
        Ok(Cursor {
            received: t.parse().map_err(|_| "cursor: time".to_owned())?,
            bus: BusId::parse(b).map_err(|e| e.to_string())?,
            id: ApplicationId::parse(i).map_err(|e| e.to_string())?,
        })
    }
}

/// A search box entry, parsed: what it looks like decides where it is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// 16 digits: a NIK (every such search is audit-logged).
    Nik(Nik),
    /// A tracking number.
    Tracking(ApplicationId),
    /// Anything else: the start of an applicant's name.
    Name(String),
}

impl Search {
    pub fn parse(s: &str) -> Option<Search> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        if let Ok(n) = Nik::parse(s) {
            return Some(Search::Nik(n));
        }
        if let Ok(id) = ApplicationId::parse(s) {
            return Some(Search::Tracking(id));
        }
        Some(Search::Name(s.chars().take(64).collect()))
    }

    pub fn is_nik(&self) -> bool {
        matches!(self, Search::Nik(_))
    }
}

/// What the queue shows. `services` is what the staff member may see, already narrowed
/// by the agency and service filters; empty means nothing.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub services: Vec<ServiceCode>,
    pub status: Option<QueueStatus>,
    pub bus: Option<BusId>,
    pub village: Option<String>,
    pub received_from: Option<UnixMillis>,
    pub received_before: Option<UnixMillis>,
    pub warnings_only: bool,
    pub search: Option<Search>,
    pub order: Order,
    pub after: Option<Cursor>,
    pub limit: usize,
}

/// One line of the queue.
#[derive(Debug, Clone)]
pub struct QueueRow {
    pub bus_id: BusId,
    pub id: ApplicationId,
    pub service: String,
    pub applicant_name: String,
    pub nik: String,
    pub village: String,
    pub captured_at: UnixMillis,
    pub hq_received_at: UnixMillis,
    pub has_warnings: bool,
    pub status: QueueStatus,
    /// Who holds a live claim on it.
    pub claimed_by: Option<String>,
}

#[derive(Debug, Clone)]
pub struct QueuePage {
    pub rows: Vec<QueueRow>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// A claim on an application, as others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub staff_id: i64,
    pub username: String,
    pub display_name: String,
    pub until: UnixMillis,
}

/// A blob an application references, and how far it is.
#[derive(Debug, Clone)]
pub struct BlobState {
    pub sha256: Sha256,
    pub kind: String,
    pub size: u64,
    pub media_type: String,
    pub stored: bool,
    /// Of an upload still in progress: chunks HQ holds, of how many.
    pub chunks: Option<(u32, u32)>,
}

/// Everything the detail page shows of one application.
#[derive(Debug, Clone)]
pub struct Detail {
    pub app: Application,
    pub status: QueueStatus,
    pub hq_received_at: UnixMillis,
    pub completed_at: Option<UnixMillis>,
    pub clock_skew_ms: Option<i64>,
    pub ingested_by: String,
    pub blobs: Vec<BlobState>,
    pub claim: Option<Claim>,
    /// Other buses that sent the same tracking number.
    pub collisions: Vec<String>,
    /// What the bus noted at capture (its photo advice, the citizen's approval, the
    /// application it amends).
    pub notes: keliling_shared::wire::RecordNotes,
    /// Applications of the same bus that amend this one (HQ asked for more information).
    pub amendments: Vec<ApplicationId>,
    pub history: Vec<audit::Row>,
}

/// Claiming came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    Claimed { until: UnixMillis },
    HeldBy(Claim),
    NotFound,
}

/// The live claim on an application, if any (on any connection or transaction).
fn live_claim(
    db: &Db,
    bus: &BusId,
    id: &ApplicationId,
    now: UnixMillis,
) -> Result<Option<Claim>, HqStoreError> {
    Ok(db
        .query_row(
            "SELECT c.staff_id, s.username, s.display_name, c.until FROM claims c JOIN staff s ON s.id = c.staff_id
             WHERE c.bus_id = ?1 AND c.application_id = ?2 AND c.until > ?3",
            vals![bus.as_str(), id.to_string(), now.0],
            |r| {
                Ok(Claim {
                    staff_id: r.get(0)?,
                    username: r.get(1)?,
                    display_name: r.get(2)?,
                    until: UnixMillis(r.get(3)?),
                })
            },
        )
        .optional()?)
}

fn bad(e: impl fmt::Display) -> HqStoreError {
    HqStoreError::Corrupt(e.to_string())
}

/// The WHERE clause and its values for a filter (without status and cursor when asked).
fn where_clause(
    f: &QueueFilter,
    with_status: bool,
    with_cursor: bool,
) -> (String, Vec<Value<'static>>) {
    let mut sql = String::from("WHERE 1=1");
    let mut v: Vec<Value<'static>> = Vec::new();
    // Only what the staff member may see.
    sql.push_str(" AND a.service IN (");
    if f.services.is_empty() {
        sql.push_str("NULL");
    }
    for (i, s) in f.services.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push('?');
        v.push(Value::Text(s.as_str().to_owned().into()));
    }
    sql.push(')');
    if let (true, Some(st)) = (with_status, f.status) {
        sql.push_str(&format!(" AND {STATUS_SQL} = ?"));
        v.push(Value::Text(st.as_str().to_owned().into()));
    }
    if let Some(b) = &f.bus {
        sql.push_str(" AND a.bus_id = ?");
        v.push(Value::Text(b.as_str().to_owned().into()));
    }
    if let Some(village) = &f.village {
        sql.push_str(" AND a.village = ?");
        v.push(Value::Text(village.clone().into()));
    }
    if let Some(t) = f.received_from {
        sql.push_str(" AND a.hq_received_at >= ?");
        v.push(Value::Int(t.0));
    }
    if let Some(t) = f.received_before {
        sql.push_str(" AND a.hq_received_at < ?");
        v.push(Value::Int(t.0));
    }
    if f.warnings_only {
        sql.push_str(" AND a.warnings != ''");
    }
    match &f.search {
        Some(Search::Nik(n)) => {
            sql.push_str(" AND a.nik = ?");
            v.push(Value::Text(n.as_str().to_owned().into()));
        }
        Some(Search::Tracking(id)) => {
            sql.push_str(" AND a.id = ?");
            v.push(Value::Text(id.to_string().into()));
        }
        Some(Search::Name(n)) => {
            // A prefix of the name, any case; LIKE's own wildcards are taken literally.
            // Both sides lowered: SQLite's LIKE ignores (ASCII) case, PostgreSQL's does not.
            let esc = n
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            sql.push_str(" AND lower(a.applicant_name) LIKE lower(?) ESCAPE '\\'");
            v.push(Value::Text(format!("{esc}%").into()));
        }
        None => {}
    }
    if let (true, Some(c)) = (with_cursor, &f.after) {
        let op = match f.order {
            Order::Newest => "<",
            Order::Oldest => ">",
        };
        sql.push_str(&format!(
            " AND (a.hq_received_at, a.bus_id, a.id) {op} (?, ?, ?)"
        ));
        v.push(Value::Int(c.received));
        v.push(Value::Text(c.bus.as_str().to_owned().into()));
        v.push(Value::Text(c.id.to_string().into()));
    }
    (sql, v)
}

/// One row of [`HqStore::queue`]'s query.
fn queue_row(r: &crate::db::Row<'_>) -> Result<QueueRow, HqStoreError> {
    let status: String = r.get(9)?;
    Ok(QueueRow {
        bus_id: BusId::parse(&r.get::<_, String>(0)?).map_err(bad)?,
        id: ApplicationId::parse(&r.get::<_, String>(1)?).map_err(bad)?,
        service: r.get(2)?,
        applicant_name: r.get(3)?,
        nik: r.get(4)?,
        village: r.get(5)?,
        captured_at: UnixMillis(r.get(6)?),
        hq_received_at: UnixMillis(r.get(7)?),
        has_warnings: r.get(8)?,
        status: QueueStatus::parse(&status)
            .ok_or_else(|| bad(format!("review state {status:?}")))?,
        claimed_by: r.get(10)?,
    })
}

impl HqStore {
    /// One page of the queue.
    pub fn queue(&self, f: &QueueFilter, now: UnixMillis) -> Result<QueuePage, HqStoreError> {
        let (clause, where_values) = where_clause(f, true, true);
        let dir = match f.order {
            Order::Newest => "DESC",
            Order::Oldest => "ASC",
        };
        let limit = f.limit.clamp(1, MAX_PAGE);
        // Placeholders are all `?`, numbered by position: the claim's `now` comes first
        // in the text, then the filter's, then the limit.
        let mut values = Vec::with_capacity(where_values.len() + 2);
        values.push(Value::Int(now.0));
        values.extend(where_values);
        values.push(Value::Int(limit as i64 + 1));
        let sql = format!(
            "SELECT a.bus_id, a.id, a.service, a.applicant_name, a.nik, a.village, a.captured_at,
                    a.hq_received_at, a.warnings != '', {STATUS_SQL},
                    (SELECT s.display_name FROM claims c JOIN staff s ON s.id = c.staff_id
                      WHERE c.bus_id = a.bus_id AND c.application_id = a.id AND c.until > ?)
             FROM applications a {clause}
             ORDER BY a.hq_received_at {dir}, a.bus_id {dir}, a.id {dir}
             LIMIT ?"
        );
        // A row that does not parse is HQ's error, not the database's: each row carries
        // its own result, and the first error is returned.
        let rows = self.db.query_map(&sql, &values, |r| Ok(queue_row(r)))?;
        let mut out = rows.into_iter().collect::<Result<Vec<_>, _>>()?;
        let next = if out.len() > limit {
            out.truncate(limit);
            out.last().map(|r| Cursor {
                received: r.hq_received_at.0,
                bus: r.bus_id.clone(),
                id: r.id,
            })
        } else {
            None
        };
        Ok(QueuePage { rows: out, next })
    }

    /// How many applications the filter matches in each status (the status filter and
    /// the cursor left out).
    pub fn queue_counts(
        &self,
        f: &QueueFilter,
    ) -> Result<BTreeMap<QueueStatus, u64>, HqStoreError> {
        let (clause, values) = where_clause(f, false, false);
        let sql = format!("SELECT {STATUS_SQL}, COUNT(*) FROM applications a {clause} GROUP BY 1");
        let rows = self.db.query_map(&sql, &values, |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut out: BTreeMap<QueueStatus, u64> =
            QueueStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for (s, n) in rows {
            if let Some(s) = QueueStatus::parse(&s) {
                out.insert(s, n.max(0) as u64);
            }
        }
        Ok(out)
    }

    /// Villages the buses have visited, for the filter (most applications first).
    pub fn villages(&self, limit: usize) -> Result<Vec<String>, HqStoreError> {
        Ok(self.db.query_map(
            "SELECT village FROM applications GROUP BY village ORDER BY COUNT(*) DESC, village LIMIT ?1",
            vals![i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| r.get::<_, String>(0),
        )?)
    }

    /// Bus ids HQ has heard from or holds applications of.
    pub fn bus_ids(&self) -> Result<Vec<String>, HqStoreError> {
        Ok(self.db.query_map(
            "SELECT bus_id FROM buses UNION SELECT DISTINCT bus_id FROM applications ORDER BY 1",
            vals![],
            |r| r.get::<_, String>(0),
        )?)
    }

    /// An application's review state (`pending`, `approved`, `awaiting_check`, ...).
    pub fn application_review_state(
        &self,
        bus: &BusId,
        id: &ApplicationId,
    ) -> Result<Option<String>, HqStoreError> {
        Ok(self
            .db
            .query_row(
                "SELECT review_state FROM applications WHERE bus_id = ?1 AND id = ?2",
                vals![bus.as_str(), id.to_string()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Whether HQ holds `bus`'s application `id` and its service is one of `visible`
    /// (the asker's agencies'): the access check before anything else is read.
    pub fn is_visible(
        &self,
        bus: &BusId,
        id: &ApplicationId,
        visible: &[ServiceCode],
    ) -> Result<bool, HqStoreError> {
        Ok(self
            .application_service(bus, id)?
            .is_some_and(|s| visible.iter().any(|v| v.as_str() == s)))
    }

    /// The service of an application, if HQ holds it.
    pub fn application_service(
        &self,
        bus: &BusId,
        id: &ApplicationId,
    ) -> Result<Option<String>, HqStoreError> {
        Ok(self
            .db
            .query_row(
                "SELECT service FROM applications WHERE bus_id = ?1 AND id = ?2",
                vals![bus.as_str(), id.to_string()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Everything about one application, or `None` when HQ has no such application.
    pub fn detail(
        &self,
        bus: &BusId,
        id: &ApplicationId,
        now: UnixMillis,
    ) -> Result<Option<Detail>, HqStoreError> {
        let bus_s = bus.as_str();
        let id_s = id.to_string();
        type Row = (Vec<u8>, String, i64, Option<i64>, Option<i64>, String);
        let row: Option<Row> = self
            .db
            .query_row(
                &format!(
                    "SELECT a.record, {STATUS_SQL}, a.hq_received_at, a.completed_at, a.clock_skew_ms, a.ingested_by
                     FROM applications a WHERE a.bus_id = ?1 AND a.id = ?2"
                ),
                vals![bus_s, id_s],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .optional()?;
        let Some((record, status, received, completed, skew, ingested_by)) = row else {
            return Ok(None);
        };
        let app = Application::from_stored_bytes(&record).map_err(bad)?;
        let status =
            QueueStatus::parse(&status).ok_or_else(|| bad(format!("review state {status:?}")))?;
        type BlobRow = (String, String, i64, String, bool, Option<i64>, Option<i64>);
        let rows: Vec<BlobRow> = self.db.query_map(
            "SELECT ab.sha256, ab.kind, ab.size, ab.media_type, b.sha256 IS NOT NULL,
                    (SELECT MAX(p.chunks_have) FROM upload_progress p WHERE p.bus_id = ab.bus_id AND p.sha256 = ab.sha256),
                    (SELECT MAX(p.chunk_count) FROM upload_progress p WHERE p.bus_id = ab.bus_id AND p.sha256 = ab.sha256)
             FROM app_blobs ab LEFT JOIN blobs b ON b.sha256 = ab.sha256
             WHERE ab.bus_id = ?1 AND ab.application_id = ?2
             ORDER BY ab.kind != 'id_photo', ab.kind",
            vals![bus_s, id_s],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )?;
        let mut blobs = Vec::with_capacity(rows.len());
        for (sha, kind, size, media_type, stored, have, count) in rows {
            blobs.push(BlobState {
                sha256: Sha256::parse_hex(&sha).map_err(bad)?,
                kind,
                size: size.max(0) as u64,
                media_type,
                stored,
                chunks: match (stored, have, count) {
                    (false, Some(h), Some(c)) => Some((h.max(0) as u32, c.max(0) as u32)),
                    _ => None,
                },
            });
        }
        let collisions = self.db.query_map(
            "SELECT bus_id FROM id_collisions WHERE id = ?1 AND bus_id != ?2 UNION SELECT first_bus FROM id_collisions WHERE id = ?1 AND first_bus != ?2",
            vals![id_s, bus_s],
            |r| r.get::<_, String>(0),
        )?;
        let history = audit::list(
            &self.db,
            &audit::Filter {
                bus_id: Some(bus_s.to_owned()),
                application_id: Some(id_s),
                limit: 200,
                ..audit::Filter::default()
            },
        )?;
        Ok(Some(Detail {
            app,
            status,
            hq_received_at: UnixMillis(received),
            completed_at: completed.map(UnixMillis),
            clock_skew_ms: skew,
            ingested_by,
            blobs,
            claim: self.claim(bus, id, now)?,
            notes: self.record_notes(bus, id)?,
            amendments: self.amendments(bus, id)?,
            collisions,
            history,
        }))
    }

    /// The applications of `bus` that amend `id`, oldest first.
    pub fn amendments(
        &self,
        bus: &BusId,
        id: &ApplicationId,
    ) -> Result<Vec<ApplicationId>, HqStoreError> {
        let rows = self.db.query_map(
            "SELECT id FROM applications WHERE bus_id = ?1 AND amends = ?2 ORDER BY captured_at, id",
            vals![bus.as_str(), id.to_string()],
            |r| r.get::<_, String>(0),
        )?;
        rows.into_iter()
            .map(|s| {
                ApplicationId::parse(&s)
                    .map_err(|e| HqStoreError::Corrupt(format!("amends {s}: {e}")))
            })
            .collect()
    }

    /// The live claim on an application, if any.
    pub fn claim(
        &self,
        bus: &BusId,
        id: &ApplicationId,
        now: UnixMillis,
    ) -> Result<Option<Claim>, HqStoreError> {
        live_claim(&self.db, bus, id, now)
    }

    /// Claims an application for `staff` (or renews their own claim).
    pub fn claim_application(
        &mut self,
        bus: &BusId,
        id: &ApplicationId,
        staff: &crate::staff::Staff,
        now: UnixMillis,
    ) -> Result<ClaimOutcome, HqStoreError> {
        let tx = self.db.transaction()?;
        // Locks the application's row on PostgreSQL (SQLite's write transaction already
        // excludes every other writer): another reviewer's claim, or a decision, on it
        // waits here, so the live claim read next is still the live one at commit.
        let exists = tx
            .query_row(
                &format!(
                    "SELECT 1 FROM applications WHERE bus_id = ?1 AND id = ?2{}",
                    tx.for_update()
                ),
                vals![bus.as_str(), id.to_string()],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .is_some();
        if !exists {
            return Ok(ClaimOutcome::NotFound);
        }
        let held = live_claim(&tx, bus, id, now)?;
        if let Some(c) = held.filter(|c| c.staff_id != staff.id) {
            return Ok(ClaimOutcome::HeldBy(c));
        }
        let until = UnixMillis(now.0.saturating_add(CLAIM_LEASE.as_millis() as i64));
        tx.execute(
            "INSERT INTO claims (bus_id, application_id, staff_id, claimed_at, until) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (bus_id, application_id) DO UPDATE SET staff_id = ?3, claimed_at = ?4, until = ?5",
            vals![bus.as_str(), id.to_string(), staff.id, now.0, until.0],
        )?;
        audit::append(
            &tx,
            now,
            staff.username.as_str(),
            &audit::Entry::application("claimed", bus.as_str(), &id.to_string()),
        )?;
        tx.commit()?;
        Ok(ClaimOutcome::Claimed { until })
    }

    /// Releases a claim: its holder's, or anyone's for a supervisor. False when there
    /// was none this staff member may release.
    pub fn release_claim(
        &mut self,
        bus: &BusId,
        id: &ApplicationId,
        staff: &crate::staff::Staff,
        now: UnixMillis,
    ) -> Result<bool, HqStoreError> {
        let tx = self.db.transaction()?;
        let n = tx.execute(
            "DELETE FROM claims WHERE bus_id = ?1 AND application_id = ?2 AND (staff_id = ?3 OR ?4)",
            vals![bus.as_str(), id.to_string(), staff.id, staff.is_supervisor()],
        )?;
        if n > 0 {
            audit::append(
                &tx,
                now,
                staff.username.as_str(),
                &audit::Entry::application("released", bus.as_str(), &id.to_string()),
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    /// Writes one entry to the audit log on its own (a view, a search, a photo served).
    pub fn audit(
        &mut self,
        actor: &str,
        e: &audit::Entry,
        now: UnixMillis,
    ) -> Result<(), HqStoreError> {
        let tx = self.db.transaction()?;
        audit::append(&tx, now, actor, e)?;
        tx.commit()?;
        Ok(())
    }

    /// Checks the audit log's hash chain: the first row that does not follow, if any.
    pub fn verify_audit(&self) -> Result<Option<i64>, HqStoreError> {
        audit::verify_chain(&self.db)
    }

    /// The audit log, newest first.
    pub fn audit_log(&self, f: &audit::Filter) -> Result<Vec<audit::Row>, HqStoreError> {
        audit::list(&self.db, f)
    }

    /// A stored blob that an application of one of `services` references: that
    /// application's bus and id, and the blob's media type.
    pub fn visible_blob(
        &self,
        sha: &Sha256,
        services: &[ServiceCode],
    ) -> Result<Option<(String, String, String)>, HqStoreError> {
        let rows: Vec<(String, String, String, String)> = self.db.query_map(
            "SELECT ab.bus_id, ab.application_id, ab.media_type, a.service FROM app_blobs ab
             JOIN blobs b ON b.sha256 = ab.sha256
             JOIN applications a ON a.bus_id = ab.bus_id AND a.id = ab.application_id
             WHERE ab.sha256 = ?1",
            vals![sha.to_hex()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        Ok(rows
            .into_iter()
            .find(|(_, _, _, service)| services.iter().any(|v| v.as_str() == service.as_str()))
            .map(|(bus, app, media_type, _)| (bus, app, media_type)))
    }

    /// The media type and kind of a blob, if `bus`'s application `id` references it and
    /// HQ holds it verified: the console serves no file without this.
    pub fn blob_of_application(
        &self,
        bus: &BusId,
        id: &ApplicationId,
        sha: &Sha256,
    ) -> Result<Option<(String, String)>, HqStoreError> {
        Ok(self
            .db
            .query_row(
                "SELECT ab.media_type, ab.kind FROM app_blobs ab JOIN blobs b ON b.sha256 = ab.sha256
                 WHERE ab.bus_id = ?1 AND ab.application_id = ?2 AND ab.sha256 = ?3",
                vals![bus.as_str(), id.to_string(), sha.to_hex()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }
}
