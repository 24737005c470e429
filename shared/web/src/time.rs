//! Times as people read them: in a local zone given as minutes east of UTC (WIB +420,
//! WITA +480, WIT +540), never in the browser's zone (a tablet's clock may be wrong, and
//! HQ's staff read the same times as the bus's operators).

use keliling_shared::UnixMillis;
use time::OffsetDateTime;

/// `t` as a local date and time, `None` outside the representable range.
pub fn local(t: UnixMillis, offset_minutes: i32) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.0.div_euclid(1000) + i64::from(offset_minutes) * 60).ok()
}

/// `YYYY-MM-DD`.
pub fn date(t: UnixMillis, offset_minutes: i32) -> String {
    match local(t, offset_minutes) {
        Some(d) => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        None => "?".into(),
    }
}

/// `YYYY-MM-DD HH:MM`.
pub fn date_time(t: UnixMillis, offset_minutes: i32) -> String {
    match local(t, offset_minutes) {
        Some(d) => format!(
            "{} {:02}:{:02}",
            date(t, offset_minutes),
            d.hour(),
            d.minute()
        ),
        None => "?".into(),
    }
}

/// `HH:MM` when `t` is today (local), else `YYYY-MM-DD HH:MM`.
pub fn short(t: UnixMillis, offset_minutes: i32) -> String {
    match (
        local(t, offset_minutes),
        local(UnixMillis::now(), offset_minutes),
    ) {
        (Some(d), Some(now)) if d.date() == now.date() => {
            format!("{:02}:{:02}", d.hour(), d.minute())
        }
        _ => date_time(t, offset_minutes),
    }
}

/// The start of the local day of `now`.
pub fn start_of_day(now: UnixMillis, offset_minutes: i32) -> UnixMillis {
    let off = i64::from(offset_minutes) * 60_000;
    let local = now.0 + off;
    UnixMillis(local - local.rem_euclid(86_400_000) - off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_in_wib() {
        // 2026-12-01 17:30 UTC is 2026-12-02 00:30 WIB.
        let t = UnixMillis(1_796_146_200_000);
        assert_eq!(date_time(t, 0), "2026-12-01 17:30");
        assert_eq!(date_time(t, 420), "2026-12-02 00:30");
        assert_eq!(date(t, 420), "2026-12-02");
        let day = start_of_day(t, 420);
        assert_eq!(date_time(day, 420), "2026-12-02 00:00");
        assert_eq!(short(UnixMillis::now(), 420).len(), 5);
    }
}
