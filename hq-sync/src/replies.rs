//! HQ's answers to buses, sent by their own task so that they never hold up HQ's acks.
//!
//! Why a separate lane: rumqttc has one request queue for HQ's publishes and its PUBACKs
//! to the broker, and stops reading that queue while its own publishes in flight are at
//! the limit. A broker that has as many messages in flight to HQ as it allows may in turn
//! hold back its PUBACKs for HQ's publishes until HQ acks some of those (rumqttd does: it
//! schedules a paused connection again only on an incoming ack). Had the ingest loop sent
//! its replies itself, a burst of replies filled rumqttc's window, HQ's next acks waited
//! behind them, the broker waited for the acks, and HQ stood still until its keep-alive
//! failed (measured: 200 blob queries of 64 blobs each against the embedded broker).
//!
//! So the ingest loop acks and then only *queues* its replies here; [`send`] hands them
//! to rumqttc at most [`REPLY_WINDOW`] at a time (a [`Window`] counted down by the
//! broker's PUBACKs, which the poller reports), always fewer than rumqttc's own limit, so
//! rumqttc keeps reading its queue and HQ's acks always get through.
//!
//! Buses take turns: replies wait in one queue per bus and go out one bus at a time, so a
//! bus asking about 64 blobs does not put everyone else's acks behind its answers; each
//! bus's queue is bounded ([`MAX_QUEUED_PER_BUS`]).
//!
//! Losing a queued reply (HQ stops, the queue overflows) loses nothing: every reply is an
//! answer to something the bus sent and will send again until it is answered.

use keliling_shared::sign::SigningKey;
use keliling_shared::topics::Topics;
use keliling_shared::wire::{Down, DownEnvelope};
use keliling_shared::BusId;
use rumqttc::{AsyncClient, QoS};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};

/// HQ's publishes handed to rumqttc and not yet acked by the broker, at most.
pub const REPLY_WINDOW: usize = 100;

/// Replies allowed to wait for the window; past this they are dropped (and counted), as
/// the bus asks again. A bound on memory if a broker stops acking altogether.
pub const MAX_QUEUED_REPLIES: u64 = 200_000;

/// Publishes in flight to the broker, counted down by its PUBACKs.
#[derive(Debug, Default)]
pub struct Window {
    in_flight: AtomicUsize,
    freed: Notify,
    /// A connection to the broker came up (for [`announce`]).
    up: Notify,
}

impl Window {
    /// Waits until fewer than [`REPLY_WINDOW`] publishes are in flight, and takes a slot.
    async fn acquire(&self) {
        loop {
            let notified = self.freed.notified();
            let n = self.in_flight.load(Ordering::Acquire);
            if n < REPLY_WINDOW
                && self
                    .in_flight
                    .compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return;
            }
            if n < REPLY_WINDOW {
                continue;
            }
            notified.await;
        }
    }

    /// The broker acked one of HQ's publishes.
    pub fn acked(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.freed.notify_one();
    }

    /// The connection to the broker is up (again): what is announced is published anew.
    pub fn connected(&self) {
        self.up.notify_one();
    }

    /// A new session without the old one: rumqttc dropped what was in flight, and no
    /// PUBACK will come for it.
    pub fn reset(&self) {
        self.in_flight.store(0, Ordering::Release);
        self.freed.notify_waiters();
        self.freed.notify_one();
    }
}

/// Replies waiting for one bus, at most; past this a bus's new replies are dropped (and
/// counted): it asks again. A bound on what one bus's questions can hold in memory.
pub const MAX_QUEUED_PER_BUS: usize = 4096;

/// Replies waiting, per bus, and the order in which buses take turns.
#[derive(Default)]
struct Queues {
    per_bus: HashMap<BusId, VecDeque<Down>>,
    /// Buses with replies waiting, each once: the next turn goes to the front.
    turns: VecDeque<BusId>,
    total: u64,
}

impl Queues {
    /// The next reply, one bus at a time in turn: a bus with 64 answers waiting gets one,
    /// then every other waiting bus gets one, so nobody's acks queue behind a big query.
    fn pop(&mut self) -> Option<(BusId, Down)> {
        let bus = self.turns.pop_front()?;
        let q = self.per_bus.get_mut(&bus)?;
        let body = q.pop_front()?;
        if q.is_empty() {
            self.per_bus.remove(&bus);
        } else {
            self.turns.push_back(bus.clone());
        }
        self.total -= 1;
        Some((bus, body))
    }
}

struct Shared {
    queues: Mutex<Queues>,
    ready: Notify,
    dropped: AtomicU64,
    closed: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        match self.queues.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// The ingest loop's end of the lane.
pub struct Replies {
    shared: Arc<Shared>,
}

impl Drop for Replies {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.ready.notify_one();
    }
}

impl Replies {
    /// Queues `body` for `bus`; never waits.
    pub fn push(&self, bus: BusId, body: Down) {
        let mut q = self.shared.lock();
        let full = q.total >= MAX_QUEUED_REPLIES
            || q.per_bus
                .get(&bus)
                .is_some_and(|b| b.len() >= MAX_QUEUED_PER_BUS);
        if full {
            drop(q);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Queues {
            per_bus,
            turns,
            total,
        } = &mut *q;
        let waiting = per_bus.entry(bus.clone()).or_default();
        if waiting.is_empty() {
            turns.push_back(bus);
        }
        waiting.push_back(body);
        *total += 1;
        drop(q);
        self.shared.ready.notify_one();
    }

    /// Replies dropped because a queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// Makes the lane: the ingest loop's [`Replies`] and the receiving end for [`send`].
pub fn lane() -> (Replies, Lane) {
    let shared = Arc::new(Shared {
        queues: Mutex::new(Queues::default()),
        ready: Notify::new(),
        dropped: AtomicU64::new(0),
        closed: std::sync::atomic::AtomicBool::new(false),
    });
    (
        Replies {
            shared: shared.clone(),
        },
        Lane { shared },
    )
}

/// The sending end, consumed by [`send`].
pub struct Lane {
    shared: Arc<Shared>,
}

impl Lane {
    /// The next reply in turn, waiting for one; `None` once the ingest loop's end is gone
    /// and nothing is left.
    async fn next(&self) -> Option<(BusId, Down)> {
        loop {
            let notified = self.shared.ready.notified();
            if let Some(r) = self.shared.lock().pop() {
                return Some(r);
            }
            if self.shared.closed.load(Ordering::Acquire) {
                return None;
            }
            notified.await;
        }
    }
}

/// Signs and publishes queued replies (QoS 1, so they wait at the broker for a bus that is offline)
/// within the window, until `shutdown` or until the lane closes.
pub async fn send(
    lane: Lane,
    client: AsyncClient,
    key: Arc<SigningKey>,
    topics: Topics,
    window: Arc<Window>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (bus, body) = tokio::select! {
            _ = shutdown.changed() => return,
            r = lane.next() => match r { Some(r) => r, None => return },
        };
        let topic = topics.down(&bus);
        // Signed, so that the bus believes it whichever broker carried it.
        let bytes = match DownEnvelope::new(bus, body).encode_signed(&key) {
            Ok(b) => b,
            Err(e) => {
                error!(error = %e, "cannot encode reply");
                continue;
            }
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = window.acquire() => {}
        }
        if let Err(e) = client.publish(topic, QoS::AtLeastOnce, false, bytes).await {
            // rumqttc is gone (HQ is stopping); the bus will ask again.
            warn!(error = %e, "cannot queue reply");
            window.acked();
        }
    }
}

/// Publishes HQ's fleet-wide messages (`fleet_messages`: the catalogue), retained, after
/// every connect: a broker that lost its retained messages (a restart without
/// persistence, the embedded broker) has them again, and a bus that connects later still
/// hears them. Within the reply window, like every publish of HQ's.
pub async fn announce(
    client: AsyncClient,
    window: Arc<Window>,
    messages: Vec<(String, Vec<u8>)>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = window.up.notified() => {}
        }
        for (topic, bytes) in &messages {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = window.acquire() => {}
            }
            match client
                .publish(topic.clone(), QoS::AtLeastOnce, true, bytes.clone())
                .await
            {
                Ok(()) => info!(%topic, bytes = bytes.len(), "published to the fleet (retained)"),
                Err(e) => {
                    warn!(error = %e, %topic, "cannot publish to the fleet");
                    window.acked();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn buses_take_turns_and_one_bus_cannot_fill_the_queue() {
        use keliling_shared::Sha256;
        let (replies, lane) = lane();
        let (big, small) = (
            BusId::parse("bus-big").unwrap(),
            BusId::parse("bus-small").unwrap(),
        );
        let stored = |i: u32| Down::BlobStored {
            blob: Sha256::digest(&i.to_be_bytes()),
        };
        for i in 0..64 {
            replies.push(big.clone(), stored(i));
        }
        replies.push(small.clone(), stored(1000));
        // The small bus's one answer goes second, not 65th.
        let order: Vec<BusId> = [lane.next().await, lane.next().await]
            .into_iter()
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(order, vec![big.clone(), small.clone()]);
        for i in 0..(MAX_QUEUED_PER_BUS as u32 + 10) {
            replies.push(big.clone(), stored(i));
        }
        assert!(replies.dropped() >= 10, "one bus is bounded");
        replies.push(small.clone(), stored(1));
        assert_eq!(
            lane.shared.lock().per_bus.get(&small).map(VecDeque::len),
            Some(1),
            "and others still get through"
        );
        drop(replies);
        let mut n = 0;
        while lane.next().await.is_some() {
            n += 1;
        }
        assert_eq!(
            n,
            MAX_QUEUED_PER_BUS + 1,
            "the big bus capped, the small one kept"
        );
    }

    #[tokio::test]
    async fn window_blocks_at_the_limit_and_reopens_on_ack_or_reset() {
        let w = Arc::new(Window::default());
        for _ in 0..REPLY_WINDOW {
            w.acquire().await;
        }
        let blocked = tokio::time::timeout(Duration::from_millis(50), w.acquire()).await;
        assert!(blocked.is_err(), "a slot past the window was granted");
        let w2 = w.clone();
        let waiter = tokio::spawn(async move { w2.acquire().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        w.acked();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("an ack frees a slot")
            .expect("task");
        w.reset();
        for _ in 0..REPLY_WINDOW {
            tokio::time::timeout(Duration::from_secs(1), w.acquire())
                .await
                .expect("reset frees the whole window");
        }
        // More acks than publishes (a PUBACK after a reset) never underflow.
        w.reset();
        w.acked();
        w.acked();
        assert_eq!(w.in_flight.load(Ordering::Relaxed), 0);
    }
}
