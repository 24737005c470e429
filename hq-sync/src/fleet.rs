//! The fleet as HQ sees it: each bus's link and queue as it last reported them, whether it
//! is online *now*, what waits for it, and what it has done (per day, per village).
//!
//! Invariant: "online" is never a stale flag. A bus counts as online only while HQ has
//! heard from it within [`online_window`] of its heartbeat period; HQ may have stopped
//! with the bus and never seen its last will.

use crate::store::HqStore;
use crate::store::{BusRow, HqStoreError};
use crate::vals;
use keliling_shared::UnixMillis;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long after the last word from a bus it still counts as online: three heartbeat
/// periods (one lost heartbeat on a poor link is normal), and half a minute for clocks.
pub fn online_window(heartbeat: Duration) -> Duration {
    heartbeat * 3 + Duration::from_secs(30)
}

impl BusRow {
    /// Online now: it said so, and HQ heard from it recently enough.
    pub fn online_at(&self, now: UnixMillis, heartbeat: Duration) -> bool {
        self.online
            && self.last_seen.is_some_and(|t| {
                now.0.saturating_sub(t.0) <= online_window(heartbeat).as_millis() as i64
            })
    }
}

/// What the fleet page shows beyond [`BusRow`].
#[derive(Debug, Clone, Default)]
pub struct FleetExtras {
    /// Last reported position (lat, lon).
    pub positions: BTreeMap<String, (f64, f64)>,
    /// Revoked buses and why.
    pub revoked: BTreeMap<String, String>,
    /// Decisions not yet confirmed, per bus.
    pub decisions_waiting: BTreeMap<String, u64>,
    /// Quarantined messages claiming to be from each bus.
    pub quarantined: BTreeMap<String, u64>,
}

impl HqStore {
    pub fn fleet_extras(&self) -> Result<FleetExtras, HqStoreError> {
        let mut x = FleetExtras::default();
        let positions = self.db.query_map(
            "SELECT bus_id, lat, lon FROM buses WHERE lat IS NOT NULL AND lon IS NOT NULL",
            vals![],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, f64>(1)?,
                    r.get::<_, f64>(2)?,
                ))
            },
        )?;
        for (b, lat, lon) in positions {
            x.positions.insert(b, (lat, lon));
        }
        let revoked =
            self.db
                .query_map("SELECT bus_id, reason FROM revoked_buses", vals![], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?;
        for (b, why) in revoked {
            x.revoked.insert(b, why);
        }
        for (b, n) in self.decisions_waiting_per_bus()? {
            x.decisions_waiting.insert(b, n);
        }
        let quarantined = self.db.query_map(
            "SELECT claimed_bus, COUNT(*) FROM quarantine WHERE claimed_bus IS NOT NULL GROUP BY claimed_bus",
            vals![],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
        )?;
        for (b, n) in quarantined {
            x.quarantined.insert(b, n.max(0) as u64);
        }
        Ok(x)
    }

    /// Applications per (local) day and bus, by the day they were taken on the bus, for
    /// the `days` days up to `now`. Days are numbered since 1970 in HQ's zone.
    pub fn applications_per_day(
        &self,
        now: UnixMillis,
        days: u32,
        offset_minutes: i32,
    ) -> Result<Vec<(i64, String, u64)>, HqStoreError> {
        let offset = i64::from(offset_minutes) * 60_000;
        let today = (now.0 + offset).div_euclid(86_400_000);
        let first = today - i64::from(days) + 1;
        let rows = self.db.query_map(
            "SELECT (captured_at + ?1) / 86400000 AS day, bus_id, COUNT(*) FROM applications
             WHERE captured_at >= ?2 AND captured_at < ?3 GROUP BY day, bus_id ORDER BY day, bus_id",
            vals![
                offset,
                first * 86_400_000 - offset,
                (today + 1) * 86_400_000 - offset
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64)),
        )?;
        Ok(rows)
    }

    /// The villages with the most applications, most first.
    pub fn applications_per_village(
        &self,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, HqStoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.db.query_map(
            "SELECT village, COUNT(*) AS n FROM applications GROUP BY village ORDER BY n DESC, village LIMIT ?1",
            vals![limit],
            |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)),
        )?;
        Ok(rows)
    }
}
