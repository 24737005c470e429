//! Decisions: made in the console, committed to HQ's outbox, signed and sent by ingest,
//! confirmed by the bus.
//!
//! Invariants:
//! - A decision is a new row (bus, application, version), never an edit: a change is a
//!   higher version that supersedes the older on the bus. Versions count from 1.
//! - The console only writes rows; ingest (which holds the signing key) sends them. A row
//!   is sent when `final` and `waiting`, and again while unconfirmed: when its bus comes
//!   back online, when an ingest process starts, and every [`RESEND_AFTER`] while its bus
//!   is online (an offline bus's copies would only queue at the broker and reach it all
//!   at once; it gets them when it comes back). New decisions go before re-sends. Taking rows to send is one write
//!   transaction, so two ingest workers never both send one in the same round: on SQLite
//!   `BEGIN IMMEDIATE` runs the two takes one after the other; on PostgreSQL each take
//!   locks its rows (`FOR UPDATE SKIP LOCKED`) and passes over those another worker is
//!   taking, and a row that worker has just marked sent no longer matches.
//! - A decision and a check each start by locking their application's row, and an ack
//!   the decision's row, on PostgreSQL (SQLite's `BEGIN IMMEDIATE` excludes every other
//!   writer from the whole file): two of them on one application run one after the
//!   other, so two decisions never take the same version, a confirm and a decline never
//!   both apply, and a duplicate ack is recorded once.
//! - Only the bus's own `DecisionAck` (it stored the decision) makes a row `confirmed`.
//! - A rejection of a service that needs a second person waits (`awaiting_check`, held at
//!   HQ) until someone other than its maker confirms it.
//! - Every decision, check and confirmation is in the audit log, in its transaction.

use crate::audit;
use crate::db::{Backend, Db, DbError, OptionalExt, Row};
use crate::staff::Staff;
use crate::store::{HqStore, HqStoreError};
use crate::vals;
use keliling_shared::decision::{Decision, Need, Outcome, ReasonCode};
use keliling_shared::{ApplicationId, BusId, Catalogue, Text, UnixMillis};
use std::time::Duration;

/// An unconfirmed decision is sent again after this long, even if its bus seemed online.
pub const RESEND_AFTER: Duration = Duration::from_secs(120);
/// The most decisions one send round takes.
const SEND_BATCH: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error(transparent)]
    Store(#[from] HqStoreError),
    /// The action is not allowed now; the key names the console text that says why.
    #[error("not allowed: {0}")]
    Refused(&'static str),
    #[error("{0}")]
    Invalid(String),
}

impl From<DbError> for DecisionError {
    fn from(e: DbError) -> Self {
        DecisionError::Store(HqStoreError::from(e))
    }
}

/// What a reviewer decided, before it becomes a versioned [`Decision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Approve {
        note: Option<Text>,
    },
    Reject {
        code: ReasonCode,
        note: Option<Text>,
    },
    RequestInfo {
        message: Text,
        needs: Vec<Need>,
    },
}

/// Where a decision is on its way to the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// At HQ, not to be sent (waiting for a second check, or declined).
    Held,
    /// At HQ, to be sent.
    Waiting,
    Sent,
    Confirmed,
    /// A newer version replaced it before the bus confirmed it.
    Superseded,
}

impl Delivery {
    fn parse(s: &str) -> Result<Delivery, HqStoreError> {
        Ok(match s {
            "held" => Delivery::Held,
            "waiting" => Delivery::Waiting,
            "sent" => Delivery::Sent,
            "confirmed" => Delivery::Confirmed,
            "superseded" => Delivery::Superseded,
            other => return Err(HqStoreError::Corrupt(format!("delivery state {other:?}"))),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Held => "held",
            Delivery::Waiting => "waiting",
            Delivery::Sent => "sent",
            Delivery::Confirmed => "confirmed",
            Delivery::Superseded => "superseded",
        }
    }
}

/// One version of a decision, as the console shows it.
#[derive(Debug, Clone)]
pub struct DecisionRow {
    pub version: u32,
    pub outcome: Outcome,
    pub status: String,
    pub maker_id: i64,
    pub decided_by: String,
    pub decided_at: UnixMillis,
    pub checked_by: Option<String>,
    pub delivery: Delivery,
    pub sent_at: Option<UnixMillis>,
    pub send_count: u32,
    pub confirmed_at: Option<UnixMillis>,
}

fn encode_outcome(o: &Outcome) -> Result<Vec<u8>, HqStoreError> {
    postcard::to_stdvec(o).map_err(|e| HqStoreError::Corrupt(format!("decision: {e}")))
}

fn decode_outcome(b: &[u8]) -> Result<Outcome, HqStoreError> {
    postcard::from_bytes(b).map_err(|e| HqStoreError::Corrupt(format!("decision: {e}")))
}

/// The review state an application has after its decisions: the newest final one's kind,
/// or `pending` when there is none.
fn settled_state(tx: &Db, bus: &str, id: &str) -> Result<String, HqStoreError> {
    Ok(tx
        .query_row(
            "SELECT kind FROM decisions WHERE bus_id = ?1 AND application_id = ?2 AND status = 'final'
             ORDER BY version DESC LIMIT 1",
            vals![bus, id],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_else(|| "pending".to_owned()))
}

/// Marks older versions that never reached the bus as superseded: only the newest is sent.
fn supersede_older(tx: &Db, bus: &str, id: &str, version: u32) -> Result<(), HqStoreError> {
    tx.execute(
        "UPDATE decisions SET delivery = 'superseded'
         WHERE bus_id = ?1 AND application_id = ?2 AND version < ?3 AND delivery IN ('held', 'waiting', 'sent')",
        vals![bus, id, version],
    )?;
    Ok(())
}

/// One row of [`HqStore::decisions_of`]'s query.
fn decision_row(r: &Row<'_>) -> Result<DecisionRow, HqStoreError> {
    let outcome: Vec<u8> = r.get(1)?;
    let delivery: String = r.get(6)?;
    Ok(DecisionRow {
        version: r.get(0)?,
        outcome: decode_outcome(&outcome)?,
        status: r.get(2)?,
        maker_id: r.get(10)?,
        decided_by: r.get(3)?,
        decided_at: UnixMillis(r.get(4)?),
        checked_by: r.get(5)?,
        delivery: Delivery::parse(&delivery)?,
        sent_at: r.get::<_, Option<i64>>(7)?.map(UnixMillis),
        send_count: r.get(8)?,
        confirmed_at: r.get::<_, Option<i64>>(9)?.map(UnixMillis),
    })
}

/// One row due to be sent: (bus_id, application_id, version, decided_at, outcome).
fn due_row(r: &Row<'_>) -> Result<(BusId, Decision), HqStoreError> {
    let bus: String = r.get(0)?;
    let app: String = r.get(1)?;
    let outcome: Vec<u8> = r.get(4)?;
    let bad = |e: String| HqStoreError::Corrupt(format!("decision {bus}/{app}: {e}"));
    Ok((
        BusId::parse(&bus).map_err(|e| bad(e.to_string()))?,
        Decision {
            application: ApplicationId::parse(&app).map_err(|e| bad(e.to_string()))?,
            version: r.get(2)?,
            decided_at: UnixMillis(r.get(3)?),
            outcome: decode_outcome(&outcome)?,
        },
    ))
}

impl HqStore {
    /// Records `staff`'s decision on `bus`'s application `id` as its next version.
    /// The reviewer must hold the claim (a supervisor need not); a decided application
    /// changes only by a supervisor; an approval needs every photo and scan at HQ.
    pub fn decide(
        &mut self,
        bus: &BusId,
        id: &ApplicationId,
        action: &Action,
        staff: &Staff,
        catalogue: &Catalogue,
        now: UnixMillis,
    ) -> Result<u32, DecisionError> {
        let (b, i) = (bus.as_str(), id.to_string());
        let tx = self.db.transaction()?;
        // The first read locks the application's row on PostgreSQL (SQLite's write
        // transaction already excludes every other writer): another decide or check on it
        // waits here, so the claim, the review state and the next version read below stay
        // what they are until this one commits.
        let row: Option<(String, String, String)> = tx
            .query_row(
                &format!(
                    "SELECT service, state, review_state FROM applications WHERE bus_id = ?1 AND id = ?2{}",
                    tx.for_update()
                ),
                vals![b, i],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (service, state, review) = row.ok_or(DecisionError::Refused("decide-not-found"))?;
        let svc = catalogue
            .services
            .iter()
            .find(|s| s.code.as_str() == service)
            .ok_or(DecisionError::Refused("decide-not-found"))?;
        if !staff.in_agency(&svc.agency) {
            return Err(DecisionError::Refused("decide-not-found"));
        }
        let holder: Option<i64> = tx
            .query_row(
                "SELECT staff_id FROM claims WHERE bus_id = ?1 AND application_id = ?2 AND until > ?3",
                vals![b, i, now.0],
                |r| r.get(0),
            )
            .optional()?;
        match holder {
            Some(h) if h == staff.id => {}
            Some(_) => return Err(DecisionError::Refused("decide-claimed-by-other")),
            None if staff.is_supervisor() => {}
            None => return Err(DecisionError::Refused("decide-claim-first")),
        }
        if review == "awaiting_check" {
            return Err(DecisionError::Refused("decide-awaiting-check"));
        }
        if review != "pending" && !staff.is_supervisor() {
            return Err(DecisionError::Refused("decide-supervisor-only"));
        }
        let outcome = match action {
            Action::Approve { note } => {
                if state != "complete" {
                    return Err(DecisionError::Refused("decide-photo-missing"));
                }
                Outcome::Approved { note: note.clone() }
            }
            Action::Reject { code, note } => {
                let r = catalogue
                    .reject_reasons(svc)
                    .find(|r| r.code == code.as_str())
                    .ok_or_else(|| {
                        DecisionError::Invalid(format!("reason {code} is not one of {service}'s"))
                    })?;
                Outcome::Rejected {
                    code: code.clone(),
                    reason: Text::parse(&r.label)
                        .map_err(|e| DecisionError::Invalid(e.to_string()))?,
                    note: note.clone(),
                }
            }
            Action::RequestInfo { message, needs } => Outcome::InfoRequested {
                message: message.clone(),
                needs: needs.clone(),
            },
        };
        let version: u32 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM decisions WHERE bus_id = ?1 AND application_id = ?2",
            vals![b, i],
            |r| r.get(0),
        )?;
        let needs_check = matches!(outcome, Outcome::Rejected { .. }) && svc.rejection_needs_check;
        let (status, delivery, new_review) = if needs_check {
            ("awaiting_check", "held", "awaiting_check")
        } else {
            ("final", "waiting", outcome.kind())
        };
        let (reason_code, message) = match &outcome {
            Outcome::Approved { note } => (None, note.as_ref().map(|n| n.as_str().to_owned())),
            Outcome::Rejected { code, note, .. } => (
                Some(code.as_str().to_owned()),
                note.as_ref().map(|n| n.as_str().to_owned()),
            ),
            Outcome::InfoRequested { message, .. } => (None, Some(message.as_str().to_owned())),
        };
        tx.execute(
            "INSERT INTO decisions (bus_id, application_id, version, kind, reason_code, message, decided_by, decided_at,
                status, delivery, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            vals![
                b,
                i,
                version,
                outcome.kind(),
                reason_code,
                message.unwrap_or_default(),
                staff.id,
                now.0,
                status,
                delivery,
                encode_outcome(&outcome)?
            ],
        )?;
        if !needs_check {
            supersede_older(&tx, b, &i, version)?;
        }
        tx.execute(
            "UPDATE applications SET review_state = ?1 WHERE bus_id = ?2 AND id = ?3",
            vals![new_review, b, i],
        )?;
        tx.execute(
            "DELETE FROM claims WHERE bus_id = ?1 AND application_id = ?2",
            vals![b, i],
        )?;
        let detail = match &outcome {
            Outcome::Rejected { code, .. } => format!("v{version} {code}"),
            _ => format!("v{version}"),
        };
        audit::append(
            &tx,
            now,
            staff.username.as_str(),
            &audit::Entry::application("decided", b, &i)
                .states(&review, new_review)
                .detail(detail),
        )?;
        tx.commit()?;
        Ok(version)
    }

    /// The second person's check of a rejection that needs one: confirm (it becomes final
    /// and goes to the bus) or decline (it is dropped; the application goes back to where
    /// it was). The maker cannot check their own.
    pub fn check_decision(
        &mut self,
        bus: &BusId,
        id: &ApplicationId,
        confirm: bool,
        staff: &Staff,
        catalogue: &Catalogue,
        now: UnixMillis,
    ) -> Result<(), DecisionError> {
        let (b, i) = (bus.as_str(), id.to_string());
        let tx = self.db.transaction()?;
        // Locks the application's row on PostgreSQL, as `decide` does: a confirm and a
        // decline (or a new decision) racing on it run one after the other.
        let service: Option<String> = tx
            .query_row(
                &format!(
                    "SELECT service FROM applications WHERE bus_id = ?1 AND id = ?2{}",
                    tx.for_update()
                ),
                vals![b, i],
                |r| r.get(0),
            )
            .optional()?;
        let visible = service.is_some_and(|s| {
            catalogue
                .services
                .iter()
                .any(|x| x.code.as_str() == s && staff.in_agency(&x.agency))
        });
        if !visible {
            return Err(DecisionError::Refused("decide-not-found"));
        }
        let pending: Option<(u32, i64, String)> = tx
            .query_row(
                "SELECT version, decided_by, kind FROM decisions
                 WHERE bus_id = ?1 AND application_id = ?2 AND status = 'awaiting_check'
                 ORDER BY version DESC LIMIT 1",
                vals![b, i],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (version, maker, kind) = pending.ok_or(DecisionError::Refused("check-nothing"))?;
        if maker == staff.id {
            return Err(DecisionError::Refused("check-own"));
        }
        let (action, to) = if confirm {
            tx.execute(
                "UPDATE decisions SET status = 'final', delivery = 'waiting', checked_by = ?1, checked_at = ?2
                 WHERE bus_id = ?3 AND application_id = ?4 AND version = ?5",
                vals![staff.id, now.0, b, i, version],
            )?;
            supersede_older(&tx, b, &i, version)?;
            ("check_confirmed", kind)
        } else {
            tx.execute(
                "UPDATE decisions SET status = 'declined', delivery = 'superseded', checked_by = ?1, checked_at = ?2
                 WHERE bus_id = ?3 AND application_id = ?4 AND version = ?5",
                vals![staff.id, now.0, b, i, version],
            )?;
            ("check_declined", settled_state(&tx, b, &i)?)
        };
        tx.execute(
            "UPDATE applications SET review_state = ?1 WHERE bus_id = ?2 AND id = ?3",
            vals![to, b, i],
        )?;
        audit::append(
            &tx,
            now,
            staff.username.as_str(),
            &audit::Entry::application(action, b, &i)
                .states("awaiting_check", &to)
                .detail(format!("v{version}")),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every version of the decisions on an application, oldest first.
    pub fn decisions_of(
        &self,
        bus: &BusId,
        id: &ApplicationId,
    ) -> Result<Vec<DecisionRow>, HqStoreError> {
        let rows = self.db.query_map(
            "SELECT d.version, d.outcome, d.status, m.display_name, d.decided_at, c.display_name,
                    d.delivery, d.sent_at, d.send_count, d.confirmed_at, d.decided_by
             FROM decisions d JOIN staff m ON m.id = d.decided_by LEFT JOIN staff c ON c.id = d.checked_by
             WHERE d.bus_id = ?1 AND d.application_id = ?2 ORDER BY d.version",
            vals![bus.as_str(), id.to_string()],
            // A corrupt outcome or delivery state is HQ's error, not the database's: each
            // row carries its own result, and the first error is returned.
            |r| Ok(decision_row(r)),
        )?;
        rows.into_iter().collect()
    }

    /// Takes the decisions due to be sent now (waiting, or sent and unconfirmed for
    /// [`RESEND_AFTER`] to a bus online and heard from since `heard_since`) and marks
    /// them sent, new ones first: ingest signs and publishes them.
    pub fn take_due_decisions(
        &mut self,
        now: UnixMillis,
        heard_since: UnixMillis,
    ) -> Result<Vec<(BusId, Decision)>, HqStoreError> {
        let resend_before = now.0.saturating_sub(RESEND_AFTER.as_millis() as i64);
        let tx = self.db.transaction()?;
        let limit = SEND_BATCH as i64;
        let due = if tx.backend() == Backend::Postgres {
            // READ COMMITTED runs two workers' takes side by side: each locks the rows it
            // takes and skips those another is taking (it never waits), and one marked sent
            // meanwhile fails the WHERE when re-checked; taking and marking is one
            // statement. RETURNING has no order: sorted as SQLite's query sorts.
            let rows = tx.query_map(
                "UPDATE decisions d SET delivery = 'sent', sent_at = ?1, send_count = d.send_count + 1
                 FROM (SELECT bus_id, application_id, version FROM decisions
                        WHERE status = 'final' AND (delivery = 'waiting' OR (delivery = 'sent' AND sent_at < ?2
                            AND EXISTS (SELECT 1 FROM buses b WHERE b.bus_id = decisions.bus_id
                                        AND b.online = ?4 AND b.last_seen >= ?5)))
                        ORDER BY CASE WHEN delivery = 'waiting' THEN 0 ELSE 1 END, decided_at
                        LIMIT ?3 FOR UPDATE SKIP LOCKED) due
                 WHERE d.bus_id = due.bus_id AND d.application_id = due.application_id AND d.version = due.version
                 RETURNING d.bus_id, d.application_id, d.version, d.decided_at, d.outcome",
                vals![now.0, resend_before, limit, true, heard_since.0],
                |r| Ok(due_row(r)),
            )?;
            let mut due = rows.into_iter().collect::<Result<Vec<_>, _>>()?;
            due.sort_by_key(|(_, d)| d.decided_at.0);
            due
        } else {
            // SQLite: BEGIN IMMEDIATE already keeps every other writer out until commit.
            let rows = tx.query_map(
                "SELECT bus_id, application_id, version, decided_at, outcome FROM decisions
                 WHERE status = 'final' AND (delivery = 'waiting' OR (delivery = 'sent' AND sent_at < ?1
                     AND EXISTS (SELECT 1 FROM buses b WHERE b.bus_id = decisions.bus_id
                                 AND b.online = ?3 AND b.last_seen >= ?4)))
                 ORDER BY CASE WHEN delivery = 'waiting' THEN 0 ELSE 1 END, decided_at LIMIT ?2",
                vals![resend_before, limit, true, heard_since.0],
                |r| Ok(due_row(r)),
            )?;
            let due = rows.into_iter().collect::<Result<Vec<_>, _>>()?;
            for (bus, d) in &due {
                tx.execute(
                    "UPDATE decisions SET delivery = 'sent', sent_at = ?1, send_count = send_count + 1
                     WHERE bus_id = ?2 AND application_id = ?3 AND version = ?4",
                    vals![now.0, bus.as_str(), d.application.to_string(), d.version],
                )?;
            }
            due
        };
        tx.commit()?;
        Ok(due)
    }

    /// At the start of an ingest process: what was marked sent may never have left the
    /// last one (taken from the outbox, then killed before publishing), so everything
    /// unconfirmed goes again now. The bus keeps a version once, so a copy costs nothing.
    pub fn resend_all_unconfirmed_decisions(&mut self) -> Result<usize, HqStoreError> {
        Ok(self.db.execute(
            "UPDATE decisions SET delivery = 'waiting' WHERE delivery = 'sent'",
            vals![],
        )?)
    }

    /// A bus came (back) online: what it has not confirmed is sent again now.
    pub fn resend_decisions_to(&mut self, bus: &BusId) -> Result<usize, HqStoreError> {
        Ok(self.db.execute(
            "UPDATE decisions SET delivery = 'waiting' WHERE bus_id = ?1 AND delivery = 'sent'",
            vals![bus.as_str()],
        )?)
    }

    /// The bus stored decision `version` on its application `id`. False when there is no
    /// such decision of this bus's (nothing changes then).
    pub fn on_decision_ack(
        &mut self,
        bus: &BusId,
        id: &ApplicationId,
        version: u32,
        now: UnixMillis,
    ) -> Result<bool, HqStoreError> {
        let (b, i) = (bus.as_str(), id.to_string());
        let tx = self.db.transaction()?;
        // Locks the decision's row on PostgreSQL: a duplicate ack handled by another
        // worker at the same time waits here, then finds it confirmed (the WHERE is
        // re-checked on the newest row) and writes nothing, so one audit row per ack.
        let before: Option<String> = tx
            .query_row(
                &format!(
                    "SELECT delivery FROM decisions WHERE bus_id = ?1 AND application_id = ?2 AND version = ?3
                     AND status = 'final' AND confirmed_at IS NULL{}",
                    tx.for_update()
                ),
                vals![b, i, version],
                |r| r.get(0),
            )
            .optional()?;
        let Some(before) = before else {
            return Ok(false);
        };
        // A superseded version the bus stored anyway stays superseded: the newer one wins
        // there too, as it has the higher version.
        tx.execute(
            "UPDATE decisions SET confirmed_at = ?1,
                delivery = CASE WHEN delivery = 'superseded' THEN 'superseded' ELSE 'confirmed' END
             WHERE bus_id = ?2 AND application_id = ?3 AND version = ?4",
            vals![now.0, b, i, version],
        )?;
        audit::append(
            &tx,
            now,
            &format!("bus:{b}"),
            &audit::Entry::application("decision_confirmed", b, &i)
                .states(&before, "confirmed")
                .detail(format!("v{version}")),
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Decisions not yet confirmed by each bus, for the fleet view.
    pub fn decisions_waiting_per_bus(&self) -> Result<Vec<(String, u64)>, HqStoreError> {
        Ok(self.db.query_map(
            "SELECT bus_id, COUNT(*) FROM decisions WHERE status = 'final' AND delivery IN ('waiting', 'sent')
             GROUP BY bus_id ORDER BY bus_id",
            vals![],
            |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)),
        )?)
    }
}
