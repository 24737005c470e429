//! How many photo chunks the bus keeps in flight: as many as the link carries without
//! queueing, so that a cut costs little.
//!
//! Why not a fixed window: every chunk in flight when the link is cut is sent again, by
//! rumqttc when the session resumes or by the pump when HQ's answer never comes. On a
//! loopback or 4G link sixteen 16 KiB chunks in flight are a few milliseconds of link time;
//! on rural 2G (100 kbit/s) they are 21 s, longer than the link stays up between cuts, and
//! a backlog never drains (measured: `keliling-field 2g` with a fixed window of 16 moved 9
//! of 200 applications in 30 min, re-sending 914 chunks HQ already held).
//!
//! So the window follows the link, the way delay-based congestion control (TCP Vegas,
//! LEDBAT) does: the bus times each chunk from publish to HQ's confirmation. The shortest
//! such time seen recently is the link's own cost of one chunk; anything above it is time
//! spent queued behind other chunks. While that queueing stays under `target`, the window
//! grows (by up to one chunk per window of confirmations); above `target` it shrinks, the
//! faster the further above; chunks that go unanswered halve it. A cut does not: it says
//! nothing about the link's rate, and halving at every cut kept a 2G bus at one chunk
//! (measured: 1550 s for the 2G backlog against 1376 s with a fixed two). On a fast link
//! it reaches `max` within a few round trips; on 2G it settles near two chunks, so a cut
//! costs about `target` of link time. That is also what lets the maximum be large
//! (`chunk_window = 64`): on loopback 64 in flight drain 2000 applications 2.6x faster
//! than 16 (`keliling-bench`).

use std::time::{Duration, Instant};

/// The window a bus starts with.
const INITIAL: f64 = 2.0;

/// The most the window shrinks per window of confirmations, in chunks.
const MAX_DOWN: f64 = 4.0;

/// The shortest confirmation time is the minimum over the last one to two of these
/// periods, so the window follows a link that got slower (a bus driving out of 4G into
/// 2G). Each period starts with a probe: the window drops to one chunk, whose time is the
/// link's own.
const BASE_PERIOD: Duration = Duration::from_secs(60);

/// The chunk window: at most `max`, at least one.
#[derive(Debug, Clone)]
pub struct ChunkPace {
    max: usize,
    target: Duration,
    window: f64,
    /// The shortest confirmation time in the previous period and in the current one.
    previous_min: Option<Duration>,
    current_min: Option<Duration>,
    period_start: Instant,
}

impl ChunkPace {
    /// A pace that allows at most `max` chunks in flight and about `target` of queueing.
    pub fn new(max: usize, target: Duration) -> Self {
        let max = max.max(1);
        ChunkPace {
            max,
            target,
            window: INITIAL.min(max as f64),
            previous_min: None,
            current_min: None,
            period_start: Instant::now(),
        }
    }

    /// Chunks allowed in flight now.
    pub fn window(&self) -> usize {
        (self.window.floor() as usize).clamp(1, self.max)
    }

    /// HQ confirmed a chunk published `latency` ago.
    pub fn confirmed(&mut self, latency: Duration, now: Instant) {
        if now.duration_since(self.period_start) > BASE_PERIOD {
            self.previous_min = self.current_min.take();
            self.period_start = now;
            // Probe, as BBR does: on a saturated link every chunk queues behind others, so
            // the shortest time would creep up with the window. One chunk alone shows the
            // link's own time again; the window regrows within a few confirmations.
            self.window = 1.0;
        }
        self.current_min = Some(self.current_min.map_or(latency, |m| m.min(latency)));
        let base = match (self.previous_min, self.current_min) {
            (Some(p), Some(c)) => p.min(c),
            (p, c) => p.or(c).unwrap_or(latency),
        };
        let queued = latency.saturating_sub(base);
        // LEDBAT's controller: the step is proportional to how far the queueing is from
        // the target, at most one chunk per window of confirmations up, and up to
        // MAX_DOWN chunks per window down, so a link that got much slower is followed
        // within seconds rather than minutes.
        let target = self.target.as_secs_f64().max(0.001);
        let off = ((target - queued.as_secs_f64()) / target).clamp(-MAX_DOWN, 1.0);
        self.window = (self.window + off / self.window.max(1.0)).clamp(1.0, self.max as f64);
    }

    /// Chunks went unanswered for the resend time: send less at once.
    pub fn lost(&mut self) {
        self.window = (self.window / 2.0).max(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link that carries one chunk per `per_chunk`, one at a time, with a fixed `rtt`; the
    /// bus sends whenever the pace allows. Runs `n` confirmations through `pace`, starting
    /// at `start`, and returns the time after the last one.
    fn drive(
        pace: &mut ChunkPace,
        start: Instant,
        n: usize,
        per_chunk: Duration,
        rtt: Duration,
    ) -> Instant {
        let mut now = start;
        let mut link_free = start;
        let mut in_flight: std::collections::VecDeque<(Instant, Instant)> = Default::default();
        for _ in 0..n {
            while in_flight.len() < pace.window() {
                let done = link_free.max(now) + per_chunk;
                link_free = done;
                in_flight.push_back((now, done + rtt));
            }
            let Some((sent, confirmed_at)) = in_flight.pop_front() else {
                break;
            };
            now = confirmed_at;
            pace.confirmed(now - sent, now);
        }
        now
    }

    #[test]
    fn fast_links_open_the_whole_window() {
        for (per_chunk, rtt) in [
            // Loopback: a 16 KiB chunk is well under a millisecond of link time.
            (Duration::from_micros(300), Duration::from_millis(2)),
            // 4G: ~13 Mbit/s, 60 ms round trip.
            (Duration::from_millis(10), Duration::from_millis(60)),
        ] {
            let mut pace = ChunkPace::new(16, Duration::from_secs(2));
            drive(&mut pace, Instant::now(), 500, per_chunk, rtt);
            assert_eq!(pace.window(), 16, "{per_chunk:?} per chunk");
        }
    }

    #[test]
    fn rural_2g_keeps_about_two_seconds_in_flight() {
        // 100 kbit/s: a 16 KiB chunk is 1.3 s of link time; 400 ms round trip.
        let mut pace = ChunkPace::new(16, Duration::from_secs(2));
        drive(
            &mut pace,
            Instant::now(),
            500,
            Duration::from_millis(1310),
            Duration::from_millis(400),
        );
        assert!(
            (1..=3).contains(&pace.window()),
            "window {} on 2G",
            pace.window()
        );
    }

    #[test]
    fn unanswered_chunks_halve_the_window_but_never_to_zero() {
        let mut pace = ChunkPace::new(16, Duration::from_secs(2));
        let now = Instant::now();
        for _ in 0..200 {
            pace.confirmed(Duration::from_millis(5), now);
        }
        assert_eq!(pace.window(), 16);
        pace.lost();
        assert_eq!(pace.window(), 8);
        for _ in 0..10 {
            pace.lost();
        }
        assert_eq!(pace.window(), 1);
    }

    #[test]
    fn a_link_that_slows_down_is_followed() {
        let mut pace = ChunkPace::new(16, Duration::from_secs(2));
        let t = drive(
            &mut pace,
            Instant::now(),
            500,
            Duration::from_millis(10),
            Duration::from_millis(60),
        );
        assert_eq!(pace.window(), 16);
        // Out of town: the same bus on 2G. The fast base is forgotten within two periods.
        drive(
            &mut pace,
            t,
            300,
            Duration::from_millis(1310),
            Duration::from_millis(400),
        );
        assert!(pace.window() <= 3, "window {} after slowing", pace.window());
    }

    #[test]
    fn window_never_exceeds_max_or_starts_above_it() {
        let pace = ChunkPace::new(1, Duration::from_secs(2));
        assert_eq!(pace.window(), 1);
        let pace = ChunkPace::new(0, Duration::from_secs(2));
        assert_eq!(pace.window(), 1);
    }
}
