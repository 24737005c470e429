//! HQ on a disk that fills up: a real, small filesystem (tmpfs, so the test needs root,
//! as CI has), real `hq-sync` and `bus-node` processes, 30 family-card updates with
//! 700 KB scans.
//!
//! Reported: with HQ's data on a small disk, sled refused chunks with ENOSPC, HQ logged a
//! burst of errors and then moved nothing, even after the disk was grown, until it was
//! restarted by hand. Why (found with gdb on the stuck process): after its first I/O
//! error sled refuses every operation, and its flush (also run when it is closed) then
//! waits forever; HQ's ingest waited in it while the process looked alive. Now:
//! - HQ refuses new records and chunks below a free-space floor (unanswered, so the buses
//!   keep them) and resumes by itself when space returns: it never meets ENOSPC;
//! - without a floor, or when something else fills the disk, an I/O error in staging and
//!   a batch that never finishes make HQ exit, loudly and at once, for its supervisor to
//!   restart it; never a zombie. Both end with every application exactly once.

use anyhow::{bail, Context, Result};
use keliling_e2e::disk::SmallDisk;
use keliling_e2e::harness::*;
use keliling_e2e::sample;
use std::time::Duration;

const APPS: usize = 30;

/// HQ with its data on a 64 MiB disk; the bus sends 30 applications of about 700 KB
/// (21 MB) into the 8 MiB left free above the floor, so the disk fills part-way. `floor_mib` is HQ's
/// free-space floor (0: none, so the disk really fills and every layer meets ENOSPC).
async fn full_disk_at_hq(floor_mib: u64) -> Result<()> {
    if default_store() == StoreKind::Postgres {
        // The full disk here is the SQLite file's: on PostgreSQL only staging and photos
        // are on HQ's data disk, and the database server's disk is its own.
        eprintln!("skipped with HQ on PostgreSQL: this is the SQLite store's disk");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let Some(disk) = SmallDisk::mount(&dir.path().join("hq-disk"), 64)? else {
        return Ok(());
    };
    let Some(broker) = TestBroker::start(BrokerKind::Embedded, dir.path()).await? else {
        return Ok(());
    };
    let hq_dir = disk.dir().join("hq");
    let mut env = broker.hq_env(&hq_dir);
    env.push((
        "HQ_SYNC__STAGING__MIN_FREE_MIB".into(),
        floor_mib.to_string(),
    ));
    let hq_log = dir.path().join("hq.log");
    let mut hq = Daemon::spawn("hq-sync", &["run"], &env, &hq_log).await?;
    eventually("HQ connected", Duration::from_secs(20), || {
        Ok(hq.log().contains("HQ connected to broker"))
    })
    .await?;

    let bus_dir = dir.path().join("bus");
    let db = bus_dir.join("bus.sqlite");
    init_bus_store(&db)?;
    let settings = test_capture_settings("bus-ntt-30")?;
    for i in 0..APPS {
        let scan = sample::document_scan(1000 + i as u64, 700_000)?;
        capture_into(&db, &settings, sample::kk_update(i, scan))?;
    }
    // 8 MiB left: less than the 21 MB on their way, so the disk (or the floor) is met.
    disk.fill((floor_mib << 20) + (8 << 20))?;
    let mut bus = broker
        .spawn_bus("bus-ntt-30", &bus_dir, &dir.path().join("bus.log"))
        .await?;
    // The disk fills: some applications get through, the rest wait on the bus.
    eventually("the disk filled", Duration::from_secs(90), || {
        let free = disk.free()?;
        Ok(free < (floor_mib.max(1) << 20) + (1 << 20))
    })
    .await
    .with_context(|| hq.log())?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stuck = bus_delivered(&db)?;
    assert!(
        stuck < APPS as u64,
        "all {APPS} fit: the test did not fill the disk"
    );
    if floor_mib > 0 {
        // Refused early and said so, and `hq-sync status` shows it.
        eventually("status shows the floor", Duration::from_secs(30), || {
            let w = keliling_e2e::harness::hq_store(&hq_dir)?.workers()?;
            Ok(w.iter().any(|w| w.disk_low))
        })
        .await?;
        assert!(hq.log().contains("HQ disk almost full"), "{}", hq.log());
    }

    if floor_mib == 0 {
        // No floor: the disk really fills, sled meets ENOSPC, and HQ must exit loudly
        // (not hang) for its supervisor. This test is the supervisor: it restarts HQ
        // whenever it exits, as `config/hq-sync.service` does.
        let exited = hq
            .wait_exit(Duration::from_secs(60))
            .await
            .with_context(|| hq.log())?;
        assert!(!exited.success(), "HQ must exit non-zero: {exited:?}");
        assert!(
            hq.log().contains("exits for its supervisor to restart it"),
            "{}",
            hq.log()
        );
    }
    // Space returns; HQ takes the rest (by itself above a floor, else restarted).
    disk.free_up()?;
    let mut restarts = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while bus_delivered(&db)? < APPS as u64 {
        if hq.exited()?.is_some() {
            assert_eq!(
                floor_mib,
                0,
                "HQ exited although its floor kept it off a full disk:\n{}",
                hq.log()
            );
            restarts += 1;
            hq = Daemon::spawn("hq-sync", &["run"], &env, &hq_log).await?;
        }
        if std::time::Instant::now() > deadline {
            // Kept for a post-mortem.
            let keep = std::env::temp_dir().join("keliling-disk-failure");
            let _ = std::process::Command::new("cp")
                .args(["-a"])
                .arg(dir.path())
                .arg(&keep)
                .status();
            bail!(
                "{} of {APPS} delivered 120 s after space returned (before: {stuck}, restarts: {restarts})\nbus:\n{}\nhq:\n{}",
                bus_delivered(&db)?,
                tail(&bus.log(), 60),
                tail(&hq.log(), 80)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if floor_mib > 0 {
        assert!(hq.exited()?.is_none(), "HQ above its floor must still run");
    }
    assert!(restarts <= 3, "{restarts} restarts after space returned");
    assert_exactly_once(&[&db], &hq_dir, APPS)?;
    bus.kill9().await?;
    let _ = hq.kill9().await;
    Ok(())
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hq_without_a_floor_exits_loudly_on_a_full_disk() -> Result<()> {
    full_disk_at_hq(0).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hq_refuses_early_below_its_floor_and_resumes_by_itself() -> Result<()> {
    full_disk_at_hq(16).await
}
