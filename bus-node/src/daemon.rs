//! `bus-node run`: the long-running daemon on the bus.

use crate::catalogues::Catalogues;
use crate::config::BusConfig;
use crate::station::{Server, StationError};
use crate::store::Store;
use crate::sync::{self, SyncError, SyncMetrics};
use crate::vault::UnlockedVault;
use keliling_shared::blocking::Pool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Station(#[from] StationError),
}

/// Runs sync, the retention purge and (when `[station] enabled`) the station until
/// `shutdown` turns true. The sync needs the unlocked `vault` (it sends HQ the decrypted
/// records and chunks, over the broker link); the station needs it for drafts and lookups.
pub async fn run(
    cfg: BusConfig,
    vault: Arc<UnlockedVault>,
    metrics: Arc<SyncMetrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    // The newest catalogue the bus has; the sync replaces it when HQ publishes a newer one.
    let catalogues =
        Arc::new(Catalogues::for_bus(&cfg).map_err(|e| SyncError::Config(e.to_string()))?);
    // Bound before anything runs, so a bad address is an immediate, clear exit.
    let station = if cfg.station.enabled {
        let server = Server::bind(&cfg, vault.clone(), metrics.clone(), catalogues.clone()).await?;
        Some(tokio::spawn(server.run(shutdown.clone())))
    } else {
        None
    };
    let purge = tokio::spawn(purge_loop(cfg.clone(), vault.clone(), shutdown.clone()));
    info!(bus = %cfg.bus_id, broker = %format!("{}:{}", cfg.broker.host, cfg.broker.port), db = %cfg.db_path().display(), key = %vault.sealing_key().fingerprint(), "bus node running");
    let result = sync::run(cfg, vault, metrics, catalogues, shutdown).await;
    purge.abort();
    if let Some(s) = station {
        match tokio::time::timeout(Duration::from_secs(5), s).await {
            Ok(Ok(Err(e))) => warn!(error = %e, "station stopped"),
            Ok(_) => {}
            Err(_) => warn!("station did not stop in time"),
        }
    }
    Ok(result?)
}

/// At start and then every `retention.check_every_secs` (hourly by default): drop photo
/// bytes of applications HQ confirmed longer ago than the retention, and drafts nobody
/// touched for two weeks; and index applications the CLI captured (by NIK, `lookup.rs`).
async fn purge_loop(
    cfg: BusConfig,
    vault: Arc<UnlockedVault>,
    mut shutdown: watch::Receiver<bool>,
) {
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
        let v = vault.clone();
        match pool
            .run(move |s| {
                let drafts = s.purge_old_drafts(keliling_shared::UnixMillis::now())?;
                Ok::<_, crate::store::StoreError>((drafts, s.index_unindexed(&v)?))
            })
            .await
        {
            Ok((0, 0)) => {}
            Ok((drafts, indexed)) => {
                info!(drafts, indexed, "old drafts removed, applications indexed")
            }
            Err(e) => warn!(error = %e, "draft purge or NIK indexing failed"),
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
