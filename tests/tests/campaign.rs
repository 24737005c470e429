//! The fault-injection campaign on a short schedule, against both brokers: 45 s of
//! `kill -9` (bus, HQ, broker), link cuts, stalls and slow links, duplicate and reordered
//! deliveries and full disks, with at least 20 faults and every kind at least once; then
//! the audit (exactly once, same photo hashes, every bus knows, no outbox waiting).
//! The long schedule is `keliling-campaign` (`tests/src/bin/campaign.rs`).
//!
//! The seed is printed; set `KELILING_CAMPAIGN_SEED` to replay a schedule.

use anyhow::Result;
use bus_node::capture::{capture, CaptureError};
use bus_node::store::{Store, StoreError};
use keliling_e2e::campaign::{self, FaultKind, Options};
use keliling_e2e::harness::{init_bus_store, test_capture_settings, BrokerKind};
use keliling_e2e::mosquitto::Mosquitto;
use keliling_e2e::sample;
use keliling_shared::Catalogue;

fn seed() -> u64 {
    std::env::var("KELILING_CAMPAIGN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(campaign::seed_from_time)
}

async fn short_campaign(kind: BrokerKind) -> Result<()> {
    if kind == BrokerKind::Mosquitto && Mosquitto::require()?.is_none() {
        return Ok(());
    }
    let seed = seed();
    eprintln!("{kind:?} campaign: seed {seed} (KELILING_CAMPAIGN_SEED={seed} replays it)");
    let opts = Options::ci(kind, seed);
    let report = campaign::run(&opts).await?;
    check(&opts, &report);
    assert!(
        report.faults.len() >= 20,
        "only {} faults injected",
        report.faults.len()
    );
    Ok(())
}

/// What every short campaign must show: a pass, every fault kind it may inject, and every
/// receipted application delivered and at HQ.
fn check(opts: &Options, report: &campaign::Report) {
    eprintln!("{}", report.summary());
    assert!(report.passed(), "campaign failed:\n{}", report.summary());
    let by_kind = report.faults_by_kind();
    for k in FaultKind::of(opts) {
        assert!(by_kind.contains_key(&k), "no {} injected", k.as_str());
    }
    assert!(report.counts.receipted > 0);
    assert_eq!(report.counts.delivered, report.counts.receipted);
    assert_eq!(report.counts.hq_applications, report.counts.receipted);
}

/// Country scale (issue 12): a 3-node NATS cluster from the shipped config, HQ on
/// PostgreSQL with three workers sharing its work queue, 20 buses; broker nodes, workers
/// and HQ's database connections killed at random moments among the usual faults. Every
/// application and decision lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_cluster_short_campaign() -> Result<()> {
    if keliling_e2e::nats::require()?.is_none() {
        return Ok(());
    }
    if hq_sync::testing::pg_admin_url("nats_cluster_short_campaign").is_none() {
        eprintln!("SKIPPED: HQ on PostgreSQL needs KELILING_TEST_PG_URL (.ci/postgres)");
        return Ok(());
    }
    let seed = seed();
    eprintln!("NATS cluster campaign: seed {seed} (KELILING_CAMPAIGN_SEED={seed} replays it)");
    let opts = Options::ci_cluster(seed);
    let report = campaign::run(&opts).await?;
    check(&opts, &report);
    assert!(
        report.counts.decisions > 0,
        "no decision was made to travel back through the cluster"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_short_campaign() -> Result<()> {
    short_campaign(BrokerKind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_short_campaign() -> Result<()> {
    short_campaign(BrokerKind::Mosquitto).await
}

/// The campaign's full disk: a capture that finds no room fails with `SQLITE_FULL`, gives
/// no receipt and leaves nothing behind; once there is room, capture works again.
#[test]
fn full_disk_refuses_a_capture_cleanly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bus.sqlite");
    init_bus_store(&db)?;
    let mut store = Store::open(&db)?;
    let portrait = keliling_photo::fixtures::load_portrait()?;
    let settings = test_capture_settings("bus-full-01")?;
    let catalogue = Catalogue::builtin();
    let take = |store: &mut Store, i| -> Result<_, CaptureError> {
        let photo = sample::camera_photo(&portrait, i).map_err(|e| CaptureError::Field {
            field: "test",
            why: e.to_string(),
        })?;
        capture(store, &catalogue, &settings, sample::sim_renewal(i, photo))
    };
    take(&mut store, 0)?;
    store.simulate_full_disk(true)?;
    for i in 1..4 {
        match take(&mut store, i) {
            Err(CaptureError::Store(StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _))))
                if f.code == rusqlite::ErrorCode::DiskFull => {}
            other => panic!("capture {i} on a full disk: {other:?}"),
        }
    }
    // Nothing of the refused captures remains, seen from another connection too.
    let other = Store::open(&db)?;
    assert_eq!(other.status()?.total, 1);
    assert_eq!(other.blob_hashes()?.len(), 1);
    store.simulate_full_disk(false)?;
    take(&mut store, 4)?;
    assert_eq!(other.status()?.total, 2);
    Ok(())
}
