//! End-to-end: real broker (embedded rumqttd and Mosquitto), real `hq-sync` and
//! `bus-node` binaries or their library entry points, real SQLite files, real JPEGs.
//! Every scenario runs against both brokers; the ones that exercise HQ's store hardest
//! also with HQ on PostgreSQL (`KELILING_TEST_PG_URL`, see `hq_sync::testing`).

use anyhow::{Context, Result};
use bus_node::sync::SyncMetrics;
use keliling_e2e::harness::*;
use keliling_e2e::proxy::{LinkProxy, Shape};
use keliling_e2e::sample;
use keliling_shared::UnixMillis;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Captures the sample renewals `range` on `bus` into the store at `db`.
fn capture_many(db: &Path, bus: &str, range: std::ops::Range<usize>) -> Result<()> {
    capture_renewals(db, &test_capture_settings(bus)?, range)?;
    Ok(())
}

async fn backlog_while_hq_down(kind: BrokerKind, store: StoreKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let (bus_dir, hq_dir) = (dir.path().join("bus"), dir.path().join("hq"));
    if !store.prepare(&hq_dir, "backlog_while_hq_down")? {
        return Ok(());
    }
    let db = bus_dir.join("bus.sqlite");
    // The bus runs, and captures, with HQ down: nothing it sends can be acknowledged.
    init_bus_store(&db)?;
    let mut bus = broker
        .spawn_bus("bus-ntt-01", &bus_dir, &dir.path().join("bus.log"))
        .await?;
    capture_many(&db, "bus-ntt-01", 0..200)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        bus_delivered(&db)?,
        0,
        "nothing may count as delivered while HQ is down"
    );
    let mut hq = broker.spawn_hq(&hq_dir, &dir.path().join("hq.log")).await?;
    eventually("all 200 delivered", Duration::from_secs(180), || {
        Ok(bus_delivered(&db)? == 200)
    })
    .await
    .with_context(|| {
        format!(
            "bus log:\n{}\nhq log:\n{}",
            tail(&bus.log()),
            tail(&hq.log())
        )
    })?;
    assert_exactly_once(&[&db], &hq_dir, 200)?;
    // The fleet view: the bus's heartbeat reaches HQ with an empty queue.
    eventually(
        "heartbeat with an empty queue",
        Duration::from_secs(20),
        || Ok(hq_bus(&hq_dir, "bus-ntt-01")? == Some((true, Some(0)))),
    )
    .await?;
    bus.kill9().await?;
    hq.kill9().await?;
    Ok(())
}

async fn kill_bus_mid_sync(kind: BrokerKind, store: StoreKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let (bus_dir, hq_dir) = (dir.path().join("bus"), dir.path().join("hq"));
    if !store.prepare(&hq_dir, "kill_bus_mid_sync")? {
        return Ok(());
    }
    let db = bus_dir.join("bus.sqlite");
    std::fs::create_dir_all(&bus_dir)?;
    capture_many(&db, "bus-ntt-02", 0..120)?;
    let _hq = broker.spawn_hq(&hq_dir, &dir.path().join("hq.log")).await?;
    let log = dir.path().join("bus.log");
    let mut bus = broker.spawn_bus("bus-ntt-02", &bus_dir, &log).await?;
    eventually(
        "some applications complete at HQ",
        Duration::from_secs(60),
        || Ok(hq_complete(&hq_dir)? >= 10),
    )
    .await?;
    bus.kill9().await?;
    let at_kill = hq_complete(&hq_dir)?;
    assert!(
        at_kill < 120,
        "sync finished before the kill; the test proves nothing"
    );
    let _bus = broker.spawn_bus("bus-ntt-02", &bus_dir, &log).await?;
    eventually(
        "all 120 delivered after restart",
        Duration::from_secs(120),
        || Ok(bus_delivered(&db)? == 120),
    )
    .await?;
    assert_exactly_once(&[&db], &hq_dir, 120)?;
    Ok(())
}

async fn kill_hq_between_puback_and_commit(kind: BrokerKind, store: StoreKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let (bus_dir, hq_dir) = (dir.path().join("bus"), dir.path().join("hq"));
    if !store.prepare(&hq_dir, "kill_hq_between_puback_and_commit")? {
        return Ok(());
    }
    let db = bus_dir.join("bus.sqlite");
    std::fs::create_dir_all(&bus_dir)?;
    capture_many(&db, "bus-ntt-03", 0..60)?;
    // HQ aborts on receiving its 16th record: the broker has PUBACKed it to the bus, HQ has
    // not committed it. The bus must not take the PUBACK for delivery.
    let mut env = broker.hq_env(&hq_dir);
    env.push((
        "HQ_SYNC__FAULT__CRASH_BEFORE_COMMIT_AFTER_RECORDS".into(),
        "15".into(),
    ));
    let mut hq = Daemon::spawn("hq-sync", &["run"], &env, &dir.path().join("hq.log")).await?;
    let _bus = broker
        .spawn_bus("bus-ntt-03", &bus_dir, &dir.path().join("bus.log"))
        .await?;
    let status = hq.wait_exit(Duration::from_secs(60)).await?;
    assert!(!status.success(), "HQ should have aborted");
    assert!(
        hq.log().contains("fault injection"),
        "HQ died of something else:\n{}",
        tail(&hq.log())
    );
    assert!(bus_delivered(&db)? < 60);
    let _hq = broker
        .spawn_hq(&hq_dir, &dir.path().join("hq2.log"))
        .await?;
    eventually(
        "all 60 delivered after HQ restart",
        Duration::from_secs(120),
        || Ok(bus_delivered(&db)? == 60),
    )
    .await?;
    assert_exactly_once(&[&db], &hq_dir, 60)?;
    Ok(())
}

/// A large scan over a throttled link; the link is cut mid-upload. On reconnect only the
/// chunks that were in flight may be sent again.
async fn cut_link_mid_large_blob(kind: BrokerKind, store: StoreKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let (bus_dir, hq_dir) = (dir.path().join("bus"), dir.path().join("hq"));
    if !store.prepare(&hq_dir, "cut_link_mid_large_blob")? {
        return Ok(());
    }
    let scan = sample::document_scan(7, 1_200_000)?;
    let scan_len = scan.len() as u64;
    let chunk_size = 16 * 1024u32;
    let chunks = keliling_shared::wire::chunk_count(scan.len() as u64, chunk_size) as u64;
    let mut bus_cfg = broker.bus_config("bus-ntt-04", &bus_dir)?;
    bus_cfg.sync.resend_after_ms = 3000;
    bus_cfg.sync.backoff_min_ms = 100;
    bus_cfg.sync.backoff_max_ms = 500;
    let window = bus_cfg.sync.chunk_window as u64;
    let vault = init_bus_store(&bus_cfg.db_path())?;
    capture_into(
        &bus_cfg.db_path(),
        &bus_cfg.capture_settings(),
        sample::kk_update(1, scan),
    )?;
    let proxy = LinkProxy::start(([127, 0, 0, 1], broker.port()).into()).await?;
    proxy.set_shape(Some(Shape {
        rate_bytes_per_sec: 150_000,
        latency: Duration::from_millis(40),
    }));
    bus_cfg.broker.port = proxy.port();

    let hq = InProcessHq::start(&broker, &hq_dir).await?;
    let hq_metrics = hq.metrics.clone();
    let bus_metrics = Arc::new(SyncMetrics::default());
    let bus = tokio::spawn(bus_node::daemon::run(
        bus_cfg.clone(),
        vault,
        bus_metrics.clone(),
        hq.stop_rx(),
    ));

    eventually(
        "a third of the chunks at HQ",
        Duration::from_secs(60),
        || Ok(hq_metrics.chunks_new.load(Ordering::Relaxed) >= chunks / 3),
    )
    .await?;
    proxy.cut();
    let at_cut = hq_metrics.chunks_new.load(Ordering::Relaxed);
    assert!(at_cut < chunks, "upload finished before the cut");
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    eventually("the scan delivered", Duration::from_secs(90), || {
        Ok(bus_delivered(&bus_cfg.db_path())? == 1)
    })
    .await?;
    let _ = hq.stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), bus).await;
    hq.shut_down().await;

    let sent = bus_metrics.chunks_sent.load(Ordering::Relaxed);
    let dup_at_hq = hq_metrics.chunks_duplicate.load(Ordering::Relaxed);
    let wire = proxy.bytes_up();
    eprintln!(
        "{kind:?}: {chunks} chunks, bus sent {sent}, HQ got {dup_at_hq} duplicates, window {window}, cuts {}, {wire} bytes up for a {scan_len}-byte scan",
        proxy.cuts()
    );
    // Counted on the wire too (this includes rumqttc's own retransmissions): at most the
    // window's worth of chunks was sent again, plus protocol overhead.
    let allowance = (window + 2) * u64::from(chunk_size) + 64 * 1024;
    assert!(
        wire <= scan_len + allowance,
        "{wire} bytes sent for a {scan_len}-byte scan"
    );
    assert_eq!(proxy.cuts(), 1);
    assert_eq!(
        hq_metrics.records_new.load(Ordering::Relaxed),
        1,
        "one record inserted; any re-send counts as a duplicate"
    );
    assert!(
        bus_metrics.connects.load(Ordering::Relaxed) >= 2,
        "bus never reconnected"
    );
    assert_eq!(
        hq_metrics.chunks_new.load(Ordering::Relaxed),
        chunks,
        "every chunk staged exactly once"
    );
    assert!(
        sent <= chunks + window,
        "bus re-sent {} chunks, more than the {window} in flight",
        sent - chunks
    );
    assert!(
        dup_at_hq <= window,
        "HQ received {dup_at_hq} duplicate chunks, more than the {window} in flight"
    );
    assert_exactly_once(&[&bus_cfg.db_path()], &hq_dir, 1)?;
    Ok(())
}

/// `hq-sync run` as each of `names` (its own certificate, its worker id, one shared
/// group; `extra` adds settings per worker), logging to `{dir}/{name}.log`, every one
/// connected and subscribed before this returns: a worker that joins the share group late
/// (a loaded CI machine) would see the whole burst go to the others.
async fn spawn_hq_workers(
    broker: &mut TestBroker,
    hq_dir: &Path,
    dir: &Path,
    names: &[&str],
    extra: impl Fn(&str) -> Vec<(String, String)>,
) -> Result<Vec<Daemon>> {
    let mut workers = Vec::new();
    for &w in names {
        broker.provision_hq(w).await?;
        let mut env = broker.hq_env(hq_dir);
        env.push(("HQ_SYNC__INGEST__WORKER_ID".into(), w.into()));
        env.push(("HQ_SYNC__INGEST__SHARED_GROUP".into(), "hq".into()));
        env.extend(extra(w));
        let log = dir.join(format!("{w}.log"));
        workers.push(Daemon::spawn("hq-sync", &["run"], &env, &log).await?);
    }
    for w in &workers {
        w.wait_for_log("HQ connected to broker", Duration::from_secs(30))
            .await?;
    }
    // Its subscriptions follow the ConnAck at once; give them a moment to be in place.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(workers)
}

/// Two HQ workers share the record store and split the records through an MQTT shared
/// subscription; each stages every chunk (in sled, SQLite's default) or they share the
/// staging in the store (PostgreSQL's default). Nothing is lost or duplicated.
async fn two_hq_workers(kind: BrokerKind, store: StoreKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(mut broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let hq_dir = dir.path().join("hq");
    if !store.prepare(&hq_dir, "two_hq_workers")? {
        return Ok(());
    }
    // Each worker its own staging (sled allows one process per directory).
    let workers = spawn_hq_workers(&mut broker, &hq_dir, dir.path(), &["hq-1", "hq-2"], |w| {
        let staging = dir.path().join(format!("staging-{w}"));
        vec![("HQ_SYNC__STAGING_DIR".into(), staging.display().to_string())]
    })
    .await?;
    let mut dbs = Vec::new();
    let mut buses = Vec::new();
    for b in 0..2 {
        let id = format!("bus-ntt-1{b}");
        let bus_dir = dir.path().join(&id);
        let db = bus_dir.join("bus.sqlite");
        std::fs::create_dir_all(&bus_dir)?;
        capture_many(&db, &id, b * 100..b * 100 + 40)?;
        buses.push(
            broker
                .spawn_bus(&id, &bus_dir, &dir.path().join(format!("{id}.log")))
                .await?,
        );
        dbs.push(db);
    }
    eventually(
        "80 delivered through two workers",
        Duration::from_secs(120),
        || Ok(bus_delivered(&dbs[0])? == 40 && bus_delivered(&dbs[1])? == 40),
    )
    .await
    .with_context(|| {
        format!(
            "hq-1:\n{}\nhq-2:\n{}",
            tail(&workers[0].log()),
            tail(&workers[1].log())
        )
    })?;
    let refs: Vec<&Path> = dbs.iter().map(|p| p.as_path()).collect();
    assert_exactly_once(&refs, &hq_dir, 80)?;
    let by_worker = keliling_e2e::harness::hq_store(&hq_dir)?.ingested_by()?;
    assert_eq!(
        by_worker.len(),
        2,
        "the shared subscription should split records across both workers: {by_worker:?}"
    );
    // With staging in sled (SQLite's default) both workers stage every chunk; the one
    // that did not store a blob must still forget it (before, the loser kept n-1 chunks
    // of every blob forever). With it in the store (PostgreSQL's default) each reports
    // the shared staging, emptied as blobs are stored. Workers report every 10 s: wait
    // for reports made after everything was delivered.
    let delivered_at = UnixMillis::now();
    let workers = || -> Result<_> { Ok(keliling_e2e::harness::hq_store(&hq_dir)?.workers()?) };
    eventually(
        "both workers report empty staging",
        Duration::from_secs(45),
        || {
            let w = workers()?;
            Ok(w.len() == 2
                && w.iter().all(|w| w.updated_at > delivered_at)
                && w.iter()
                    .all(|w| w.staging_uploads == 0 && w.staging_bytes == 0))
        },
    )
    .await
    .with_context(|| format!("{:?}", workers()))?;
    Ok(())
}

/// Three HQ workers that share only the store and the broker (`[store]
/// blobs_in_database`): records *and* chunks are split between them by the shared
/// subscription, uploads in progress are in the store where each worker sees the others'
/// chunks, and one worker killed mid-sync (SIGKILL, with chunks of unfinished uploads
/// committed and others in flight to it) costs nothing: the other two finish every
/// upload it had begun, every application lands once, every photo is in the database.
async fn a_worker_dies_mid_sync(kind: BrokerKind, store: StoreKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(mut broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let hq_dir = dir.path().join("hq");
    if !store.prepare(&hq_dir, "a_worker_dies_mid_sync")? {
        return Ok(());
    }
    let names = ["hq-1", "hq-2", "hq-3"];
    // No staging directory of its own is used; one that is not writable shows it.
    let mut workers = spawn_hq_workers(&mut broker, &hq_dir, dir.path(), &names, |_| {
        vec![
            ("HQ_SYNC__STORE__BLOBS_IN_DATABASE".into(), "true".into()),
            ("HQ_SYNC__STAGING_DIR".into(), "/nonexistent/staging".into()),
        ]
    })
    .await?;
    let mut dbs = Vec::new();
    let mut buses = Vec::new();
    let mut links = Vec::new();
    for b in 0..2 {
        let id = format!("bus-ntt-3{b}");
        let bus_dir = dir.path().join(&id);
        let db = bus_dir.join("bus.sqlite");
        std::fs::create_dir_all(&bus_dir)?;
        // Photos of one chunk, and scans of about twenty: uploads that take a while.
        capture_many(&db, &id, b * 100..b * 100 + 27)?;
        for i in 0..3 {
            let scan = sample::document_scan((b * 10 + i) as u64, 300_000)?;
            capture_into(
                &db,
                &test_capture_settings(&id)?,
                sample::kk_update(b * 100 + 50 + i, scan),
            )?;
        }
        let link = LinkProxy::start(([127, 0, 0, 1], broker.port()).into()).await?;
        link.set_shape(Some(Shape {
            rate_bytes_per_sec: 300_000,
            latency: Duration::from_millis(20),
        }));
        let mut env = broker.bus_env_via(&id, &bus_dir, link.port())?;
        links.push(link);
        // What was in flight to the dead worker is lost at the broker (its session was
        // clean): the bus sends again when HQ has not answered.
        env.push(("BUS_NODE__SYNC__RESEND_AFTER_MS".into(), "4000".into()));
        buses.push(
            Daemon::spawn(
                "bus-node",
                &["run"],
                &env,
                &dir.path().join(format!("{id}.log")),
            )
            .await?,
        );
        dbs.push(db);
    }
    let logs = |workers: &[Daemon]| {
        workers
            .iter()
            .zip(names)
            .map(|(d, n)| format!("{n}:\n{}", tail(&d.log())))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let hq = || keliling_e2e::harness::hq_store(&hq_dir);
    let staged = || -> Result<hq_sync::staging::Usage> {
        let s = hq()?;
        Ok(hq_sync::shared_staging::SharedStaging {
            store: &s,
            limits: &Default::default(),
        }
        .usage()?)
    };
    // Mid-sync: some photos stored and a scan's upload under way (chunks of it committed
    // by the workers, more on the wire).
    eventually("a scan half-way to HQ", Duration::from_secs(90), || {
        Ok(hq()?.counts()?.blobs >= 4 && staged()?.bytes >= 64 * 1024)
    })
    .await
    .with_context(|| format!("{}\nbus:\n{}", logs(&workers), tail(&buses[0].log())))?;
    let (complete, at_kill) = (hq()?.counts()?.complete, staged()?);
    workers[1].kill9().await?;
    eprintln!("killed hq-2 with {complete} of 60 complete, {at_kill:?} staged");
    assert!(complete < 60, "everything was delivered before the kill");
    eventually(
        "60 delivered by the two workers left",
        Duration::from_secs(150),
        || Ok(bus_delivered(&dbs[0])? == 30 && bus_delivered(&dbs[1])? == 30),
    )
    .await
    .with_context(|| logs(&workers))?;
    let refs: Vec<&Path> = dbs.iter().map(|p| p.as_path()).collect();
    assert_exactly_once(&refs, &hq_dir, 60)?;
    let store = hq()?;
    let by_worker = store.ingested_by()?;
    assert!(
        by_worker.len() >= 2,
        "records should be split across the workers: {by_worker:?}"
    );
    // Every photo's bytes are in the store, none in any machine's files.
    for (id, _, blobs) in store.application_blobs()? {
        for sha in blobs {
            assert!(
                store.blob_content(&sha)?.is_some(),
                "photo {sha:?} of {id} is not in the database"
            );
        }
    }
    assert!(
        !hq_dir
            .join("photos")
            .read_dir()?
            .any(|e| e.ok().is_some_and(|e| e.file_name() != "tmp")),
        "a photo was written to a file"
    );
    // The uploads the dead worker had begun were finished by the others, and whichever
    // worker stored a blob forgot its upload: nothing stays staged.
    eventually("nothing left staged", Duration::from_secs(30), || {
        Ok(staged()? == Default::default())
    })
    .await?;
    drop(links);
    Ok(())
}

/// A blob row damaged on the bus disk (here: its sealed bytes cut short) must not jam the
/// queue: before, the chunk path handled only decryption errors, so the `Corrupt` error
/// of the oldest blob made every pump tick fail and no chunk of any blob went out. Now
/// its application is set aside for the operator and the rest drains.
async fn a_damaged_blob_row_is_set_aside(kind: BrokerKind, store: StoreKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let hq_dir = dir.path().join("hq");
    if !store.prepare(&hq_dir, "a_damaged_blob_row_is_set_aside")? {
        return Ok(());
    }
    let hq = InProcessHq::start(&broker, &hq_dir).await?;
    let cfg = broker.bus_config("bus-ntt-07", &dir.path().join("bus"))?;
    let db = cfg.db_path();
    let vault = init_bus_store(&db)?;
    let apps = capture_renewals(&db, &cfg.capture_settings(), 0..5)?;
    // The oldest application's photo sorts first: damage it.
    let damaged = apps[0].attachments[0].sha256;
    rusqlite::Connection::open(&db)?.execute(
        "UPDATE blobs SET data = substr(data, 1, 100) WHERE sha256 = ?1",
        [damaged.to_hex()],
    )?;
    let bus = tokio::spawn(bus_node::daemon::run(
        cfg.clone(),
        vault,
        Arc::new(SyncMetrics::default()),
        hq.stop_rx(),
    ));
    eventually("the other four delivered", Duration::from_secs(60), || {
        Ok(bus_delivered(&db)? == 4)
    })
    .await?;
    let store = bus_node::store::Store::open(&db)?;
    assert_eq!(store.status()?.rejected, 1);
    let set_aside = store
        .recent(10, false)?
        .into_iter()
        .find(|s| s.id == apps[0].id)
        .context("the damaged application")?;
    assert_eq!(set_aside.state, bus_node::store::OutboxState::Rejected);
    assert!(
        set_aside
            .reject_reason
            .as_deref()
            .is_some_and(|r| r.contains("rusak")),
        "{set_aside:?}"
    );
    let _ = hq.stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), bus).await;
    hq.shut_down().await;
    Ok(())
}

/// The service catalogue travels from HQ to the fleet: HQ publishes it signed and
/// retained on `fleet/catalogue`, a bus that connects later picks it up, keeps it across
/// a restart and captures with it; HQ checks each application against the version the
/// bus used (an older one it published stays valid for what was taken under it), and a
/// catalogue under another key is set aside by the bus.
async fn the_catalogue_reaches_the_fleet(kind: BrokerKind, store: StoreKind) -> Result<()> {
    use bus_node::catalogues::Catalogues;
    let dir = tempfile::tempdir()?;
    let Some(mut broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let (bus_dir, hq_dir) = (dir.path().join("bus"), dir.path().join("hq"));
    if !store.prepare(&hq_dir, "the_catalogue_reaches_the_fleet")? {
        return Ok(());
    }
    let db = bus_dir.join("bus.sqlite");
    let hq_log = dir.path().join("hq.log");
    let settings = test_capture_settings("bus-ntt-01")?;
    // HQ on the starter catalogue (version 1); the bus, offline, captures under it.
    let mut hq = broker.spawn_hq(&hq_dir, &hq_log).await?;
    hq.wait_for_log("published to the fleet", Duration::from_secs(30))
        .await?;
    let first = capture_renewal(&db, &settings, 0)?;
    hq.kill9().await?;

    // HQ's next catalogue (version 3): the city's, where a licence renewal also needs the
    // blood type. The first application lacks it: only version 1 accepts it.
    let city = include_str!("../../config/services-city.toml")
        .replacen("version = 2", "version = 3", 1)
        .replacen(
            r#"{ name = "expiry_date", label = "Tanggal habis berlaku", kind = "date" },"#,
            r#"{ name = "expiry_date", label = "Tanggal habis berlaku", kind = "date" },
  { name = "blood_type", label = "Golongan darah", kind = "choice", choices = ["A", "B", "AB", "O"] },"#,
            1,
        );
    let v3 = dir.path().join("services-v3.toml");
    std::fs::write(&v3, &city)?;
    let mut env = broker.hq_env(&hq_dir);
    env.push(("HQ_SYNC__CATALOGUE".into(), v3.display().to_string()));
    let _hq = Daemon::spawn("hq-sync", &["run"], &env, &hq_log).await?;
    eventually("HQ publishes version 3", Duration::from_secs(30), || {
        Ok(std::fs::read_to_string(&hq_log)?
            .matches("published to the fleet")
            .count()
            >= 2)
    })
    .await?;

    // The bus connects after HQ published: it hears the catalogue because it is retained.
    let cfg = broker.bus_config("bus-ntt-01", &bus_dir)?;
    let mut bus = broker
        .spawn_bus("bus-ntt-01", &bus_dir, &dir.path().join("bus.log"))
        .await?;
    let version = || Ok::<_, anyhow::Error>(Catalogues::for_bus(&cfg)?.current().version);
    eventually(
        "the bus takes HQ's catalogue",
        Duration::from_secs(60),
        || Ok(version()? == 3),
    )
    .await
    .with_context(|| bus.log())?;
    eventually(
        "the first application delivered",
        Duration::from_secs(60),
        || Ok(bus_delivered(&db)? == 1),
    )
    .await
    .with_context(|| {
        format!(
            "hq:\n{}",
            tail(&std::fs::read_to_string(&hq_log).unwrap_or_default())
        )
    })?;

    // Captured with the bus's newest catalogue: the blood type is asked for now.
    let catalogue = Catalogues::for_bus(&cfg)?.current();
    let portrait = keliling_photo::fixtures::load_portrait()?;
    let mut input = sample::sim_renewal(1, sample::camera_photo(&portrait, 1)?);
    let mut store = bus_node::Store::open(&db)?;
    let refused = bus_node::capture::capture(&mut store, &catalogue, &settings, input.clone());
    anyhow::ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("blood_type")),
        "a renewal without blood type under version 3: {:?}",
        refused.map(|r| r.application.id)
    );
    input.fields.push(("blood_type".into(), "O".into()));
    let second = bus_node::capture::capture(&mut store, &catalogue, &settings, input)?;
    eventually("both delivered", Duration::from_secs(60), || {
        Ok(bus_delivered(&db)? == 2)
    })
    .await?;
    assert_exactly_once(&[db.as_path()], &hq_dir, 2)?;
    let hq_store = keliling_e2e::harness::hq_store(&hq_dir)?;
    let versions: Vec<u32> = hq_store
        .published_catalogues()?
        .iter()
        .map(|p| p.version)
        .collect();
    assert_eq!(versions, vec![1, 3]);
    for (app, v) in [(&first, 1), (&second.application, 3)] {
        let notes = hq_store.record_notes(&app.bus_id, &app.id)?;
        assert_eq!(notes.catalogue_version, Some(v));
    }

    // A restart keeps HQ's catalogue (from the store, its signature checked again).
    bus.kill9().await?;
    assert_eq!(version()?, 3);

    // A catalogue signed by another key, retained on the fleet topic by a stolen HQ
    // worker certificate: the bus sets it aside and keeps version 3.
    let bus = broker
        .spawn_bus("bus-ntt-01", &bus_dir, &dir.path().join("bus-again.log"))
        .await?;
    bus.wait_for_log("connected to broker", Duration::from_secs(30))
        .await?;
    broker.provision_hq("hq-9").await?;
    let (forger, eventloop) = rumqttc::AsyncClient::new(
        broker.mqtt_options("hq-9", &Identity::HqWorker("hq-9".into()))?,
        16,
    );
    let _poller = spawn_poller("forger", eventloop, |_| {});
    let mut forged = keliling_shared::Catalogue::from_toml(&city)?;
    forged.version = 9;
    let payload = keliling_shared::wire::FleetEnvelope::new(
        keliling_shared::wire::Fleet::Catalogue(Box::new(forged)),
    )
    .encode_signed(&keliling_shared::sign::SigningKey::generate())?;
    let topic = keliling_shared::topics::Topics::default().fleet("catalogue");
    let before = bus_node::Store::open(&db)?.quarantine_count()?;
    forger
        .publish(topic, rumqttc::QoS::AtLeastOnce, true, payload)
        .await?;
    eventually(
        "the bus sets the forgery aside",
        Duration::from_secs(30),
        || Ok(bus_node::Store::open(&db)?.quarantine_count()? > before),
    )
    .await
    .with_context(|| bus.log())?;
    assert_eq!(version()?, 3);
    Ok(())
}

/// A broker cluster's nodes taken in turn: the bus and HQ are each configured with a dead
/// first broker and the live one in `more_hosts`; both move on to it, and everything
/// the bus captured is delivered.
async fn a_dead_broker_is_passed_over(kind: BrokerKind, store: StoreKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let (bus_dir, hq_dir) = (dir.path().join("bus"), dir.path().join("hq"));
    if !store.prepare(&hq_dir, "a_dead_broker_is_passed_over")? {
        return Ok(());
    }
    let db = bus_dir.join("bus.sqlite");
    let dead = keliling_e2e::ports::free_port()?;
    let live = format!(r#"["127.0.0.1:{}"]"#, broker.port());
    let mut env = broker.hq_env(&hq_dir);
    env.push(("HQ_SYNC__BROKER__PORT".into(), dead.to_string()));
    env.push(("HQ_SYNC__BROKER__MORE_HOSTS".into(), live.clone()));
    let hq = Daemon::spawn("hq-sync", &["run"], &env, &dir.path().join("hq.log")).await?;
    capture_many(&db, "bus-ntt-01", 0..3)?;
    let mut env = broker.bus_env("bus-ntt-01", &bus_dir)?;
    env.push(("BUS_NODE__BROKER__PORT".into(), dead.to_string()));
    env.push(("BUS_NODE__BROKER__MORE_HOSTS".into(), live));
    let bus = Daemon::spawn("bus-node", &["run"], &env, &dir.path().join("bus.log")).await?;
    eventually(
        "delivered through the second broker",
        Duration::from_secs(60),
        || Ok(bus_delivered(&db)? == 3),
    )
    .await
    .with_context(|| format!("bus:\n{}\nhq:\n{}", tail(&bus.log()), tail(&hq.log())))?;
    assert!(
        bus.log().contains("trying the next one"),
        "the bus moved on"
    );
    assert!(hq.log().contains("trying the next broker"), "HQ moved on");
    assert_exactly_once(&[db.as_path()], &hq_dir, 3)?;
    Ok(())
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

macro_rules! against_both_brokers {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() -> Result<()> { super::$name(BrokerKind::Embedded, StoreKind::Sqlite).await })*
        }
        mod mosquitto {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() -> Result<()> { super::$name(BrokerKind::Mosquitto, StoreKind::Sqlite).await })*
        }
    };
}

/// HQ on PostgreSQL (the embedded broker: the broker and the store are independent).
macro_rules! on_postgres {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() -> Result<()> { super::$name(BrokerKind::Embedded, StoreKind::Postgres).await })*
        }
    };
}

against_both_brokers!(
    backlog_while_hq_down,
    kill_bus_mid_sync,
    kill_hq_between_puback_and_commit,
    cut_link_mid_large_blob,
    two_hq_workers,
    a_worker_dies_mid_sync,
    a_damaged_blob_row_is_set_aside,
    the_catalogue_reaches_the_fleet,
    a_dead_broker_is_passed_over,
);

on_postgres!(
    backlog_while_hq_down,
    kill_hq_between_puback_and_commit,
    cut_link_mid_large_blob,
    two_hq_workers,
    a_worker_dies_mid_sync,
    the_catalogue_reaches_the_fleet,
);
