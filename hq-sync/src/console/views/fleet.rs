//! The fleet: every bus with its link (online now, not a stale flag), queue, last sync,
//! position, software, clock, what waits for it at HQ; and charts of the work done per
//! day per bus and per village, drawn as SVG on the server (no script library).

use super::{render, shown, tr, when, Me};
use crate::console::i18n::Tr;
use crate::console::session::Authed;
use crate::console::{Console, PageError};
use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use keliling_shared::UnixMillis;
use std::collections::BTreeMap;
use std::time::Duration;

/// Days the per-day chart covers.
const DAYS: u32 = 14;
/// Clock skew beyond which a bus's clock is flagged.
const SKEW_FLAG_MS: i64 = 5 * 60 * 1000;

pub struct BusLine {
    pub bus: String,
    pub online: bool,
    pub seen: String,
    pub queue: String,
    pub waiting_bytes: String,
    pub oldest: String,
    pub last_sync: String,
    pub position: Option<String>,
    pub software: String,
    pub skew: String,
    pub skew_flagged: bool,
    pub decisions_waiting: u64,
    pub quarantined: u64,
    pub revoked: Option<String>,
    pub colour: usize,
}

pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    pub class: String,
    pub title: String,
}

pub struct Label {
    pub x: u32,
    pub y: u32,
    pub text: String,
}

#[derive(Template)]
#[template(path = "fleet.html")]
struct FleetPage {
    t: Tr<'static>,
    me: Option<Me>,
    csrf: String,
    nav: &'static str,
    back: String,
    buses: Vec<BusLine>,
    online: usize,
    day_bars: Vec<Rect>,
    day_labels: Vec<Label>,
    day_max: u64,
    village_bars: Vec<Rect>,
    village_labels: Vec<Label>,
    has_days: bool,
}

fn ago(t: &Tr<'_>, then: UnixMillis, now: UnixMillis) -> String {
    let secs = now.0.saturating_sub(then.0).max(0) / 1000;
    match secs {
        0..=59 => t.n("ago-seconds", secs),
        60..=3599 => t.n("ago-minutes", secs / 60),
        3600..=86_399 => t.n("ago-hours", secs / 3600),
        _ => t.n("ago-days", secs / 86_400),
    }
}

fn bytes(b: u64) -> String {
    if b >= 1024 * 1024 {
        format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
    } else {
        format!("{} KiB", b.div_ceil(1024))
    }
}

pub async fn page(State(c): State<Console>, Authed(s): Authed) -> Result<Response, PageError> {
    let staff = s.staff.clone();
    let t = tr(staff.language).ok_or_else(|| PageError::Internal("no texts".into()))?;
    let offset = c.config().utc_offset_minutes;
    let heartbeat = Duration::from_secs(c.fleet_heartbeat_secs().max(1));
    let now = UnixMillis::now();
    let (rows, extras, per_day, per_village) = c
        .db(move |db| {
            Ok::<_, crate::store::HqStoreError>((
                db.fleet()?,
                db.fleet_extras()?,
                db.applications_per_day(now, DAYS, offset)?,
                db.applications_per_village(10)?,
            ))
        })
        .await?;
    let colour_of: BTreeMap<String, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.bus_id.clone(), i % 8))
        .collect();
    let buses: Vec<BusLine> = rows
        .iter()
        .map(|r| {
            let skew = r.clock_skew_ms;
            BusLine {
                bus: r.bus_id.clone(),
                online: r.online_at(now, heartbeat),
                seen: r
                    .last_seen
                    .map(|x| ago(&t, x, now))
                    .unwrap_or_else(|| "-".into()),
                queue: r.queue_depth.map_or("-".into(), |q| q.to_string()),
                waiting_bytes: r.bytes_waiting.map(bytes).unwrap_or_default(),
                oldest: r
                    .oldest_unsynced
                    .map(|x| ago(&t, x, now))
                    .unwrap_or_else(|| "-".into()),
                last_sync: r
                    .last_sync
                    .map(|x| when(x, offset))
                    .unwrap_or_else(|| "-".into()),
                position: extras
                    .positions
                    .get(&r.bus_id)
                    .map(|(lat, lon)| format!("{lat:.4}, {lon:.4}")),
                software: r.software.as_deref().map(shown).unwrap_or_default(),
                skew: skew.map_or("-".into(), |ms| {
                    if ms.abs() < 60_000 {
                        t.get("skew-ok")
                    } else {
                        t.with(
                            "skew-minutes",
                            &[("minutes", &format!("{:+.0}", ms as f64 / 60_000.0))],
                        )
                    }
                }),
                skew_flagged: skew.is_some_and(|ms| ms.abs() > SKEW_FLAG_MS),
                decisions_waiting: extras
                    .decisions_waiting
                    .get(&r.bus_id)
                    .copied()
                    .unwrap_or(0),
                quarantined: extras.quarantined.get(&r.bus_id).copied().unwrap_or(0),
                revoked: extras.revoked.get(&r.bus_id).map(|w| shown(w)),
                colour: colour_of.get(&r.bus_id).copied().unwrap_or(0),
            }
        })
        .collect();
    let online = buses.iter().filter(|b| b.online).count();

    // Per day: stacked bars, one colour per bus.
    let (chart_w, chart_h, left, bottom) = (720u32, 180u32, 36u32, 24u32);
    let offset_ms = i64::from(offset) * 60_000;
    let today = (now.0 + offset_ms).div_euclid(86_400_000);
    let first = today - i64::from(DAYS) + 1;
    let mut totals: BTreeMap<i64, u64> = BTreeMap::new();
    for (day, _, n) in &per_day {
        *totals.entry(*day).or_default() += n;
    }
    let day_max = totals.values().copied().max().unwrap_or(0).max(1);
    let slot = (chart_w - left) / DAYS;
    let bar_w = slot * 7 / 10;
    let mut stacked: BTreeMap<i64, u32> = BTreeMap::new();
    let mut day_bars = Vec::new();
    for (day, bus, n) in &per_day {
        let i = (day - first).clamp(0, i64::from(DAYS) - 1) as u32;
        let h = ((*n as f64 / day_max as f64) * f64::from(chart_h - 8))
            .round()
            .max(1.0) as u32;
        let below = stacked.entry(*day).or_default();
        // Rounding each bus's share up to a pixel can overfill a day: clip at the top.
        let h = h.min(chart_h.saturating_sub(*below));
        let y = chart_h.saturating_sub(*below).saturating_sub(h);
        *below += h;
        day_bars.push(Rect {
            x: left + i * slot + (slot - bar_w) / 2,
            y,
            w: bar_w,
            h,
            class: format!("c{}", colour_of.get(bus).copied().unwrap_or(0)),
            title: format!("{bus}: {n}"),
        });
    }
    let day_labels = (0..DAYS)
        .filter(|i| i % 2 == 1 || DAYS <= 7)
        .map(|i| {
            let day = first + i64::from(i);
            let d = time::OffsetDateTime::from_unix_timestamp(day * 86_400)
                .map(|d| format!("{:02}/{:02}", d.day(), u8::from(d.month())))
                .unwrap_or_default();
            Label {
                x: left + i * slot + slot / 2,
                y: chart_h + bottom - 6,
                text: d,
            }
        })
        .collect();

    // Per village: horizontal bars.
    let v_max = per_village
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut village_bars = Vec::new();
    let mut village_labels = Vec::new();
    for (i, (village, n)) in per_village.iter().enumerate() {
        let y = 6 + i as u32 * 26;
        let w = ((*n as f64 / v_max as f64) * 420.0).round().max(2.0) as u32;
        village_labels.push(Label {
            x: 0,
            y: y + 15,
            text: shown(village),
        });
        village_bars.push(Rect {
            x: 190,
            y,
            w,
            h: 18,
            class: "village".into(),
            title: n.to_string(),
        });
        village_labels.push(Label {
            x: 196 + w,
            y: y + 14,
            text: n.to_string(),
        });
    }
    let page = FleetPage {
        me: Some(Me::of(&staff)),
        csrf: s.csrf.clone(),
        nav: "fleet",
        back: "/fleet".into(),
        has_days: !per_day.is_empty(),
        buses,
        online,
        day_bars,
        day_labels,
        day_max,
        village_bars,
        village_labels,
        t,
    };
    Ok(render(&page)?.into_response())
}
