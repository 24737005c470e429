//! `bus-node run`: the long-running daemon on the bus.

use crate::config::BusConfig;
use crate::store::Store;
use crate::sync::{self, SyncError, SyncMetrics};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// Runs sync and the retention purge until `shutdown` turns true.
pub async fn run(
    cfg: BusConfig,
    metrics: Arc<SyncMetrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SyncError> {
    let purge = tokio::spawn(purge_loop(cfg.clone(), shutdown.clone()));
    info!(bus = %cfg.bus_id, broker = %format!("{}:{}", cfg.broker.host, cfg.broker.port), db = %cfg.db_path().display(), "bus node running");
    let result = sync::run(cfg, metrics, shutdown).await;
    purge.abort();
    result
}

/// Hourly: drop photo bytes of applications HQ confirmed longer ago than the retention.
async fn purge_loop(cfg: BusConfig, mut shutdown: watch::Receiver<bool>) {
    let retention = Duration::from_secs(cfg.retention.purge_after_days.saturating_mul(86_400));
    loop {
        match Store::open_for_sync(&cfg.db_path())
            .and_then(|mut s| s.purge_delivered_blobs(retention))
        {
            Ok(0) => {}
            Ok(n) => info!(n, "purged photo bytes past retention"),
            Err(e) => warn!(error = %e, "retention purge failed"),
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}
