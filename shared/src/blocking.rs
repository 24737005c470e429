//! The one way Keliling does blocking store work from async code.
//!
//! SQLite, sled and fsync block the thread they run on; on a tokio worker that stalls
//! every task sharing it (the MQTT poller's keep-alive, a web request). So blocking work
//! always runs under `tokio::task::spawn_blocking`, in one of two shapes:
//!
//! - a long-lived worker that owns its state (the bus's sync pump, HQ's ingest) moves the
//!   state into `spawn_blocking` for each batch and takes it back afterwards ([`run_owned`]);
//! - short requests (the consoles' handlers, the bus's retention purge) borrow a
//!   connection from a [`Pool`], which runs the closure under `spawn_blocking` and puts
//!   the connection back. A store type that is `Send` but not `Sync` (a
//!   `rusqlite::Connection`) is fine: a connection is used by one closure at a time.

use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum BlockingError<E> {
    /// The work itself failed.
    #[error(transparent)]
    Work(E),
    /// Opening a connection for the pool failed.
    #[error("cannot open a store connection: {0}")]
    Open(String),
    /// The blocking task panicked or the runtime is shutting down.
    #[error("blocking task ended abnormally: {0}")]
    Join(String),
}

/// Runs `f` on `state` on a blocking thread, handing the state back with the result.
pub async fn run_owned<S, R>(
    state: S,
    f: impl FnOnce(&mut S) -> R + Send + 'static,
) -> Result<(S, R), tokio::task::JoinError>
where
    S: Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let mut state = state;
        let r = f(&mut state);
        (state, r)
    })
    .await
}

type Opener<S> = Box<dyn Fn() -> Result<S, String> + Send + Sync>;

struct Inner<S> {
    idle: Mutex<Vec<S>>,
    permits: Semaphore,
    open: Opener<S>,
}

/// Up to `size` store connections, opened on demand, each used by one closure at a time.
pub struct Pool<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Pool<S> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

impl<S: Send + 'static> Pool<S> {
    /// `open` makes a new connection (e.g. `|| HqStore::open(&path)`).
    pub fn new<E: std::fmt::Display>(
        size: usize,
        open: impl Fn() -> Result<S, E> + Send + Sync + 'static,
    ) -> Pool<S> {
        Pool {
            inner: Arc::new(Inner {
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(size.max(1)),
                open: Box::new(move || open().map_err(|e| e.to_string())),
            }),
        }
    }

    /// Runs `f` with a connection on a blocking thread. A connection whose work failed
    /// is closed rather than reused (it may be in a bad state).
    pub async fn run<R, E>(
        &self,
        f: impl FnOnce(&mut S) -> Result<R, E> + Send + 'static,
    ) -> Result<R, BlockingError<E>>
    where
        R: Send + 'static,
        E: Send + 'static,
    {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|e| BlockingError::Join(e.to_string()))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match inner.idle.lock() {
                Ok(mut idle) => idle.pop(),
                Err(poisoned) => poisoned.into_inner().pop(),
            };
            let mut conn = match conn {
                Some(c) => c,
                None => (inner.open)().map_err(BlockingError::Open)?,
            };
            let r = f(&mut conn);
            if r.is_ok() {
                match inner.idle.lock() {
                    Ok(mut idle) => idle.push(conn),
                    Err(poisoned) => poisoned.into_inner().push(conn),
                }
            }
            r.map_err(BlockingError::Work)
        })
        .await
        .map_err(|e| BlockingError::Join(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_reused_bounded_and_dropped_after_a_failure() {
        let opened = Arc::new(AtomicUsize::new(0));
        let counter = opened.clone();
        let pool: Pool<Vec<u32>> = Pool::new(2, move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(Vec::new())
        });
        for i in 0..10 {
            let n = pool
                .run(move |c| {
                    c.push(i);
                    Ok::<_, String>(c.len())
                })
                .await
                .unwrap();
            assert!(n >= 1);
        }
        assert_eq!(opened.load(Ordering::SeqCst), 1, "one connection, reused");
        let err = pool.run(|_| Err::<(), _>("disk full")).await.unwrap_err();
        assert!(matches!(err, BlockingError::Work("disk full")));
        pool.run(|c| Ok::<_, String>(c.len())).await.unwrap();
        assert_eq!(
            opened.load(Ordering::SeqCst),
            2,
            "the failed one was closed"
        );
        let (state, r) = run_owned(5u32, |s| {
            *s += 1;
            *s * 2
        })
        .await
        .unwrap();
        assert_eq!((state, r), (6, 12));
    }
}
