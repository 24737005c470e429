//! Time as both sides exchange it: milliseconds since the Unix epoch, UTC.
//!
//! Bus clocks drift and may be plain wrong, so every record carries the bus's clock and HQ
//! stamps its own receive time; nothing orders by a bus clock across buses.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A time decoded from the wire or a store lies in `0..=MAX` (1970 to the end of year
/// 9999), so HQ can subtract two of them without overflow; arithmetic on them saturates.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(try_from = "i64", into = "i64")]
pub struct UnixMillis(pub i64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("waktu di luar rentang (time out of range): {0} ms since 1970")]
pub struct TimeOutOfRange(pub i64);

impl TryFrom<i64> for UnixMillis {
    type Error = TimeOutOfRange;
    fn try_from(ms: i64) -> Result<Self, TimeOutOfRange> {
        if (0..=UnixMillis::MAX.0).contains(&ms) {
            Ok(UnixMillis(ms))
        } else {
            Err(crate::de_error::note(TimeOutOfRange(ms)))
        }
    }
}

impl From<UnixMillis> for i64 {
    fn from(t: UnixMillis) -> i64 {
        t.0
    }
}

impl UnixMillis {
    /// 9999-12-31T23:59:59.999Z.
    pub const MAX: UnixMillis = UnixMillis(253_402_300_799_999);

    /// `self - earlier` in milliseconds, saturating (never a panic or a wrap).
    pub fn millis_since(self, earlier: UnixMillis) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        UnixMillis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
    pub fn as_millis(self) -> i64 {
        self.0
    }
    /// RFC 3339 in UTC, for humans and logs.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match ::time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => t
                .format(&::time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| self.0.to_string()),
            Err(_) => format!("{}ms", self.0),
        }
    }
}

impl fmt::Debug for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}
impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_times_are_refused_on_decode() {
        for bad in [i64::MIN, -1, UnixMillis::MAX.0 + 1, i64::MAX] {
            let bytes = postcard::to_stdvec(&bad).unwrap();
            assert!(postcard::from_bytes::<UnixMillis>(&bytes).is_err(), "{bad}");
        }
        let ok = postcard::to_stdvec(&1_700_000_000_000i64).unwrap();
        assert_eq!(
            postcard::from_bytes::<UnixMillis>(&ok).unwrap(),
            UnixMillis(1_700_000_000_000)
        );
        assert_eq!(UnixMillis(0).millis_since(UnixMillis(i64::MAX)), -i64::MAX);
        assert_eq!(UnixMillis(i64::MAX).millis_since(UnixMillis(-5)), i64::MAX);
    }
}
