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
//! Losing a queued reply (HQ stops, the queue overflows) loses nothing: every reply is an
//! answer to something the bus sent and will send again until it is answered.

use keliling_shared::sign::SigningKey;
use keliling_shared::topics::Topics;
use keliling_shared::wire::{Down, DownEnvelope};
use keliling_shared::BusId;
use rumqttc::{AsyncClient, QoS};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch, Notify};
use tracing::{error, warn};

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

    /// A new session without the old one: rumqttc dropped what was in flight, and no
    /// PUBACK will come for it.
    pub fn reset(&self) {
        self.in_flight.store(0, Ordering::Release);
        self.freed.notify_waiters();
        self.freed.notify_one();
    }
}

/// The ingest loop's end of the lane.
#[derive(Clone)]
pub struct Replies {
    tx: mpsc::UnboundedSender<(BusId, Down)>,
    queued: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

impl Replies {
    /// Queues `body` for `bus`; never waits.
    pub fn push(&self, bus: BusId, body: Down) {
        if self.queued.load(Ordering::Relaxed) >= MAX_QUEUED_REPLIES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.send((bus, body)).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Replies dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Makes the lane: the ingest loop's [`Replies`] and the receiving end for [`send`].
pub fn lane() -> (Replies, Lane) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicU64::new(0));
    (
        Replies {
            tx,
            queued: queued.clone(),
            dropped: Arc::new(AtomicU64::new(0)),
        },
        Lane { rx, queued },
    )
}

/// The sending end, consumed by [`send`].
pub struct Lane {
    rx: mpsc::UnboundedReceiver<(BusId, Down)>,
    queued: Arc<AtomicU64>,
}

/// Signs and publishes queued replies (QoS 1, so they wait at the broker for a bus that is offline)
/// within the window, until `shutdown` or until the lane closes.
pub async fn send(
    mut lane: Lane,
    client: AsyncClient,
    key: Arc<SigningKey>,
    topics: Topics,
    window: Arc<Window>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (bus, body) = tokio::select! {
            _ = shutdown.changed() => return,
            r = lane.rx.recv() => match r { Some(r) => r, None => return },
        };
        lane.queued.fetch_sub(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
