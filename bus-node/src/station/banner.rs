//! The sync banner on every page: online or offline, how many applications wait, the
//! bytes waiting, the time to send them at the rate the link has shown, and progress
//! while a sync runs.
//!
//! The rate is measured, not configured: every [`SAMPLE`] the sampler reads how many
//! bytes the sync client has published and keeps a moving average over the intervals in
//! which it sent something (an idle link says nothing about its speed).

use super::Station;
use crate::store::Status;
use crate::sync::SyncMetrics;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub const SAMPLE: Duration = Duration::from_secs(2);
/// Fewer bytes than this in a sample do not count towards the rate.
const MIN_SAMPLE_BYTES: u64 = 2048;

pub struct Banner {
    metrics: Arc<SyncMetrics>,
    state: Mutex<Rate>,
}

#[derive(Default)]
struct Rate {
    last: Option<(Instant, u64)>,
    /// Bytes per second, moving average; `None` until the link has carried something.
    bytes_per_sec: Option<f64>,
    /// The bytes waiting when the current sync began (for its progress).
    peak_waiting: u64,
}

/// What the banner shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BannerView {
    pub online: bool,
    pub waiting: u64,
    pub queued: u64,
    pub bytes_waiting: u64,
    pub rejected: u64,
    pub bytes_per_sec: Option<u64>,
    /// Seconds to send what waits at the measured rate.
    pub eta_secs: Option<u64>,
    /// 0..=100 while a sync is under way.
    pub progress: Option<u8>,
    pub last_sync: Option<i64>,
}

impl Banner {
    pub fn new(metrics: Arc<SyncMetrics>) -> Banner {
        Banner {
            metrics,
            state: Mutex::new(Rate::default()),
        }
    }

    fn sample(&self, now: Instant) {
        let sent = self.metrics.bytes_published.load(Ordering::Relaxed);
        let Ok(mut r) = self.state.lock() else { return };
        if let Some((then, before)) = r.last {
            let dt = now.duration_since(then).as_secs_f64();
            let db = sent.saturating_sub(before) as f64;
            // Heartbeats and acks alone say nothing about what the link can carry.
            if dt > 0.0 && db >= MIN_SAMPLE_BYTES as f64 {
                let now_rate = db / dt;
                r.bytes_per_sec = Some(match r.bytes_per_sec {
                    Some(old) => 0.7 * old + 0.3 * now_rate,
                    None => now_rate,
                });
            }
        }
        r.last = Some((now, sent));
    }

    /// The banner for the store's `status`.
    pub fn view(&self, status: &Status) -> BannerView {
        let online = self.metrics.connected.load(Ordering::Relaxed);
        let (rate, progress) = match self.state.lock() {
            Ok(mut r) => {
                if status.bytes_waiting == 0 || status.bytes_waiting > r.peak_waiting {
                    r.peak_waiting = status.bytes_waiting;
                }
                let progress =
                    (online && status.bytes_waiting > 0 && r.peak_waiting > 0).then(|| {
                        let done = r.peak_waiting - status.bytes_waiting.min(r.peak_waiting);
                        (done * 100 / r.peak_waiting) as u8
                    });
                (r.bytes_per_sec, progress)
            }
            Err(_) => (None, None),
        };
        let eta_secs = rate
            .filter(|r| *r > 0.0)
            .map(|r| (status.bytes_waiting as f64 / r).ceil() as u64);
        BannerView {
            online,
            waiting: status.waiting(),
            queued: status.queued,
            bytes_waiting: status.bytes_waiting,
            rejected: status.rejected,
            bytes_per_sec: rate.map(|r| r as u64),
            eta_secs,
            progress,
            last_sync: status.last_sync.map(|t| t.0),
        }
    }
}

/// Samples the link rate until shutdown.
pub async fn sample(st: Station, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(SAMPLE);
    loop {
        tokio::select! {
            _ = every.tick() => st.banner().sample(Instant::now()),
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_what_the_link_carried_and_the_eta_follows_from_it() {
        let m = Arc::new(SyncMetrics::default());
        let b = Banner::new(m.clone());
        let t0 = Instant::now();
        b.sample(t0);
        let status = Status {
            queued: 3,
            bytes_waiting: 100_000,
            ..Status::default()
        };
        assert_eq!(b.view(&status).eta_secs, None, "no rate before any traffic");
        m.bytes_published.store(20_000, Ordering::Relaxed);
        b.sample(t0 + Duration::from_secs(2));
        let v = b.view(&status);
        assert_eq!(v.bytes_per_sec, Some(10_000));
        assert_eq!(v.eta_secs, Some(10));
        // Idle: the rate stays what the link last showed.
        b.sample(t0 + Duration::from_secs(4));
        assert_eq!(b.view(&status).bytes_per_sec, Some(10_000));
        m.connected.store(true, Ordering::Relaxed);
        let half = Status {
            queued: 2,
            bytes_waiting: 50_000,
            ..Status::default()
        };
        assert_eq!(b.view(&half).progress, Some(50));
    }
}
