//! `bus-node run`: the long-running daemon on the bus.

use crate::config::BusConfig;
use crate::store::Store;
use crate::sync::{self, SyncError, SyncMetrics};
use crate::vault::UnlockedVault;
use keliling_shared::blocking::Pool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// Runs sync and the retention purge until `shutdown` turns true. The sync needs the
/// unlocked `vault` (it sends HQ the decrypted records and chunks, over the broker link).
pub async fn run(
    cfg: BusConfig,
    vault: Arc<UnlockedVault>,
    metrics: Arc<SyncMetrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SyncError> {
    let purge = tokio::spawn(purge_loop(cfg.clone(), shutdown.clone()));
    info!(bus = %cfg.bus_id, broker = %format!("{}:{}", cfg.broker.host, cfg.broker.port), db = %cfg.db_path().display(), key = %vault.sealing_key().fingerprint(), "bus node running");
    let result = sync::run(cfg, vault, metrics, shutdown).await;
    purge.abort();
    result
}

/// At start and then every `retention.check_every_secs` (hourly by default): drop photo
/// bytes of applications HQ confirmed longer ago than the retention. Needs no key.
async fn purge_loop(cfg: BusConfig, mut shutdown: watch::Receiver<bool>) {
    let retention = Duration::from_secs(cfg.retention.purge_after_days.saturating_mul(86_400));
    let every = Duration::from_secs(cfg.retention.check_every_secs.max(1));
    // One connection, opened on first use, used off the async threads.
    let path = cfg.db_path();
    let pool = Pool::new(1, move || Store::open_for_sync(&path));
    loop {
        match pool.run(move |s| s.purge_delivered_blobs(retention)).await {
            Ok(0) => {}
            Ok(n) => info!(n, "purged photo bytes past retention"),
            Err(e) => warn!(error = %e, "retention purge failed"),
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
