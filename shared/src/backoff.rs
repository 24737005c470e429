//! Reconnect back-off with full jitter.
//!
//! After an outage a thousand buses regain signal at once; if each retried on a fixed
//! schedule they would stampede HQ in waves. "Full jitter" (sleep a uniformly random time
//! between zero and an exponentially growing cap) spreads them out.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The next delay: uniform in `[0, min(max, min * 2^attempt)]`.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self.cap();
        self.attempt = self.attempt.saturating_add(1);
        let millis = cap.as_millis().min(u128::from(u64::MAX)) as u64;
        Duration::from_millis(rand::Rng::gen_range(&mut rand::thread_rng(), 0..=millis))
    }

    /// The current upper bound, before jitter.
    pub fn cap(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// Called once a connection has proved itself.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn grows_to_the_cap_and_jitters() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let caps: Vec<_> = (0..10)
            .map(|_| {
                let c = b.cap();
                let d = b.next_delay();
                assert!(d <= c);
                c
            })
            .collect();
        assert_eq!(caps[0], Duration::from_millis(100));
        assert_eq!(caps[3], Duration::from_millis(800));
        assert_eq!(caps[9], Duration::from_secs(5));
        b.reset();
        assert_eq!(b.cap(), Duration::from_millis(100));
        let mut b = Backoff::new(Duration::from_millis(1000), Duration::from_secs(60));
        for _ in 0..100 {
            b.next_delay();
        }
        let ds: std::collections::HashSet<_> = (0..50).map(|_| b.next_delay()).collect();
        assert!(ds.len() > 10, "no jitter");
    }
}
