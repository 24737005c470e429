//! HQ ingest under bad input, through a real broker: every bad message is quarantined
//! with its reason, and valid traffic keeps flowing.

use anyhow::{Context, Result};
use bus_node::store::{OutboxState, Store};
use bus_node::sync::SyncMetrics;
use hq_sync::ingest::IngestMetrics;
use keliling_e2e::harness::*;
use keliling_shared::topics::{Topics, UpKind};
use keliling_shared::wire::{BlobQuery, Chunk, Down, Up, UpEnvelope};
use keliling_shared::{BusId, Sha256};
use rumqttc::{AsyncClient, QoS};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

async fn bad_input_is_quarantined_and_valid_traffic_flows(kind: BrokerKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let hq_dir = dir.path().join("hq");
    let hq = InProcessHq::start(&broker, &hq_dir).await?;
    let hq_metrics = hq.metrics.clone();

    // A genuine application from bus-good, captured on its bus.
    let good = BusId::parse("bus-good")?;
    let mut cfg = broker.bus_config(good.as_str(), &dir.path().join("good"))?;
    cfg.sync.resend_after_ms = 2000;
    let vault = init_bus_store(&cfg.db_path())?;
    let app = capture_renewal(&cfg.db_path(), &cfg.capture_settings(), 1)?;

    // The attacker: a client posting as bus-evil.
    let evil = BusId::parse("bus-evil")?;
    let topics = Topics::default();
    // It holds bus-evil's genuine certificate: a stolen bus, or a broken one.
    let opts = broker.client_options(&Identity::Bus(evil.to_string()))?;
    let (client, eventloop) = AsyncClient::new(opts, 64);
    let poller = spawn_poller("attacker", eventloop, |_| {});
    let record_topic = topics.up(&evil, UpKind::Record);
    let env = |body: Up| UpEnvelope::new(evil.clone(), body).encode();
    let mut spoofed = app.clone();
    spoofed.bus_id = evil.clone(); // a record of bus-good's citizen, claimed by bus-evil ...
    let spoofed_env = UpEnvelope::new(good.clone(), Up::Record(Box::new(app.clone()))).encode()?;
    let valid_evil = env(Up::Record(Box::new(spoofed)))?;
    let mut unknown_version = valid_evil.clone();
    unknown_version[2] = 9;
    let orphan = Chunk {
        blob: Sha256::digest(b"nobody asked"),
        total_size: 2000,
        chunk_size: 1024,
        index: 1,
        data: vec![1; 976],
    };
    let attacks: Vec<(String, Vec<u8>, &str)> = vec![
        (
            record_topic.clone(),
            b"garbage, not an envelope".to_vec(),
            "bad magic",
        ),
        (
            record_topic.clone(),
            valid_evil[..valid_evil.len() / 2].to_vec(),
            "malformed",
        ),
        (
            record_topic.clone(),
            unknown_version,
            "unknown protocol version",
        ),
        (record_topic.clone(), vec![b'K'; 200 * 1024], "too large"),
        // ... bus-good's envelope on bus-evil's topic: the topic is who sent it.
        (
            record_topic.clone(),
            spoofed_env,
            "payload claims bus bus-good",
        ),
        (
            topics.up(&evil, UpKind::Chunk),
            env(Up::Chunk(orphan))?,
            "none of this bus's committed records references",
        ),
        (
            topics.up(&evil, UpKind::Query),
            env(Up::Query(BlobQuery {
                blobs: vec![Sha256::digest(b"x"); 65],
            }))?,
            "at most 64",
        ),
        (
            topics.up(&evil, UpKind::Chunk),
            valid_evil.clone(),
            "record message on the chunk topic",
        ),
    ];
    // A topic outside the protocol never reaches HQ: both brokers' ACLs let bus-evil
    // write only its own up/ topics (tests/trust.rs).
    for (topic, payload, _) in &attacks {
        client
            .publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
            .await?;
    }
    // A replay flood: the same bad message 200 times is kept once.
    for _ in 0..200 {
        client
            .publish(
                record_topic.clone(),
                QoS::AtLeastOnce,
                false,
                b"garbage, not an envelope".to_vec(),
            )
            .await?;
    }
    eventually("every attack quarantined", Duration::from_secs(30), || {
        Ok(hq_metrics.quarantined.load(Ordering::Relaxed) >= attacks.len() as u64 + 200)
    })
    .await?;

    // Valid traffic still flows: bus-good syncs its application to delivery.
    let bus_metrics = Arc::new(SyncMetrics::default());
    let bus = tokio::spawn(bus_node::daemon::run(
        cfg.clone(),
        vault,
        bus_metrics.clone(),
        hq.stop_rx(),
    ));
    eventually("bus-good delivered", Duration::from_secs(60), || {
        Ok(bus_delivered(&cfg.db_path())? == 1)
    })
    .await?;

    // bus-evil's own (well-formed) record under that citizen's tracking number: records
    // are owned by their bus, so it is bus-evil's application, recorded as a collision for
    // staff; bus-good's record is neither refused nor touched.
    client
        .publish(record_topic.clone(), QoS::AtLeastOnce, false, valid_evil)
        .await?;
    eventually("collision recorded", Duration::from_secs(30), || {
        Ok(keliling_e2e::harness::hq_store(&hq_dir)?
            .counts()?
            .id_collisions
            == 1)
    })
    .await?;

    let store = keliling_e2e::harness::hq_store(&hq_dir)?;
    let reasons: Vec<String> = store
        .quarantined(100)?
        .into_iter()
        .map(|e| e.reason)
        .collect();
    for (_, _, needle) in &attacks {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "no quarantine entry mentions {needle:?}: {reasons:#?}"
        );
    }
    assert_eq!(
        reasons.iter().filter(|r| r.contains("bad magic")).count(),
        1,
        "a replay is kept once"
    );
    let counts = store.counts()?;
    assert_eq!((counts.applications, counts.complete), (2, 2));
    let stored = Store::open(&cfg.db_path())?;
    assert_eq!(stored.state(&app.id)?, Some(OutboxState::Delivered));
    // The genuine record was neither refused nor overwritten, and is still bus-good's.
    assert!(
        !reasons.iter().any(|r| r.contains("integrity")),
        "{reasons:#?}"
    );
    assert_eq!(store.application_bus(&app.id)?.as_deref(), Some("bus-good"));

    let _ = hq.stop.send(true);
    poller.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), bus).await;
    hq.shut_down().await;
    Ok(())
}

/// Tracking-number squatting and upload disturbance: bus-evil (a genuine certificate)
/// copies bus-good's record before bus-good syncs it, claims its photo's hash at another
/// size, and sends junk chunks under that hash. On the code before per-bus ownership,
/// HQ refused bus-good's genuine record as an "integrity" conflict, and chose one of the
/// two declared sizes at random for bus-good's chunks. Now bus-good's record and photo
/// are delivered exactly once, bus-evil's junk never touches bus-good's upload, and the
/// collision is recorded for staff.
async fn a_bus_cannot_squat_or_disturb_another(kind: BrokerKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let hq_dir = dir.path().join("hq");
    let hq = InProcessHq::start(&broker, &hq_dir).await?;
    let good = BusId::parse("bus-good")?;
    let cfg = broker.bus_config(good.as_str(), &dir.path().join("good"))?;
    let vault = init_bus_store(&cfg.db_path())?;
    let app = capture_renewal(&cfg.db_path(), &cfg.capture_settings(), 1)?;

    let evil = BusId::parse("bus-evil")?;
    let topics = Topics::default();
    let opts = broker.mqtt_options("bus-evil", &Identity::Bus(evil.to_string()))?;
    let (client, eventloop) = AsyncClient::new(opts, 256);
    let poller = spawn_poller("bus-evil", eventloop, |_| {});
    let photo = app.attachments[0].clone();
    let mut squat = app.clone();
    squat.bus_id = evil.clone();
    // The same hash, declared at another size.
    squat.attachments[0].size = photo.size + 4096;
    let env = |body: Up| UpEnvelope::new(evil.clone(), body).encode();
    client
        .publish(
            topics.up(&evil, UpKind::Record),
            QoS::AtLeastOnce,
            false,
            env(Up::Record(Box::new(squat.clone())))?,
        )
        .await?;
    eventually(
        "the squatter's record committed",
        Duration::from_secs(30),
        || {
            Ok(keliling_e2e::harness::hq_store(&hq_dir)?
                .counts()?
                .applications
                == 1)
        },
    )
    .await?;
    // Junk chunks under the photo's hash, at the squatter's size and at the real size.
    for total in [squat.attachments[0].size, photo.size] {
        let chunk_size = 16 * 1024;
        for index in 0..keliling_shared::wire::chunk_count(total, chunk_size) {
            let r = keliling_shared::wire::chunk_range(total, chunk_size, index);
            let c = Chunk {
                blob: photo.sha256,
                total_size: total,
                chunk_size,
                index,
                data: vec![0xEE; (r.end - r.start) as usize],
            };
            client
                .publish(
                    topics.up(&evil, UpKind::Chunk),
                    QoS::AtLeastOnce,
                    false,
                    env(Up::Chunk(c))?,
                )
                .await?;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let bus = tokio::spawn(bus_node::daemon::run(
        cfg.clone(),
        vault,
        Arc::new(SyncMetrics::default()),
        hq.stop_rx(),
    ));
    eventually("bus-good delivered", Duration::from_secs(60), || {
        Ok(bus_delivered(&cfg.db_path())? == 1)
    })
    .await?;
    let store = keliling_e2e::harness::hq_store(&hq_dir)?;
    let counts = store.counts()?;
    // bus-good's application is complete; the squatter's copy waits forever for a blob
    // of a size that hash cannot have.
    assert_eq!((counts.applications, counts.complete), (2, 1));
    assert_eq!(
        counts.id_collisions, 1,
        "the collision is recorded for staff"
    );
    assert_eq!(counts.blobs, 1, "bus-good's photo, verified");
    let reasons: Vec<String> = store
        .quarantined(100)?
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert!(
        !reasons.iter().any(|r| r.contains("integrity")),
        "{reasons:#?}"
    );
    assert_eq!(
        Store::open(&cfg.db_path())?.state(&app.id)?,
        Some(OutboxState::Delivered)
    );

    let _ = hq.stop.send(true);
    poller.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), bus).await;
    hq.shut_down().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_a_bus_cannot_squat_or_disturb_another() -> Result<()> {
    a_bus_cannot_squat_or_disturb_another(BrokerKind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_a_bus_cannot_squat_or_disturb_another() -> Result<()> {
    a_bus_cannot_squat_or_disturb_another(BrokerKind::Mosquitto).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_bad_input_is_quarantined() -> Result<()> {
    bad_input_is_quarantined_and_valid_traffic_flows(BrokerKind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_bad_input_is_quarantined() -> Result<()> {
    bad_input_is_quarantined_and_valid_traffic_flows(BrokerKind::Mosquitto).await
}

/// A flood of replies and heartbeats at once must not wedge HQ. Regression: the poller used
/// to wait for room in a bounded queue to the ingest loop while the ingest loop waited for
/// room in rumqttc's request channel, which only the poller drains; 1000 buses reconnecting
/// at once against Mosquitto filled both, HQ stopped answering and stopped its keep-alive,
/// and the broker dropped it (`keliling-field fleet`). Here four bus identities ask about
/// 12 800 blobs (one reply each) while sending 10 000 QoS 0 heartbeats. rumqttd also holds
/// back its PUBACKs for HQ's publishes while it has 100 messages in flight to HQ, so HQ's
/// acks must never queue behind its replies (`hq_sync::replies`). HQ must answer every
/// blob, and then a genuine bus must still get its application delivered, all on HQ's
/// first connection.
async fn hq_survives_a_reply_and_heartbeat_flood(kind: BrokerKind) -> Result<()> {
    use keliling_shared::wire::Heartbeat;
    use keliling_shared::UnixMillis;

    const QUERIES: usize = 200;
    const HEARTBEATS: usize = 10_000;
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let hq_dir = dir.path().join("hq");
    // 3200 blobs from each identity: lift the per-bus query budget (its own
    // unit test covers it) so the flood reaches HQ's reply lane whole.
    let mut cfg = broker.hq_config(&hq_dir);
    cfg.ingest.max_query_blobs_per_bus_per_minute = u32::MAX;
    let hq = InProcessHq::spawn(cfg).await?;
    let hq_metrics = hq.metrics.clone();

    // Four flooding identities (HQ answers buses in turn and bounds each bus's queue of
    // replies, so the flood comes from several), each listening on its down topic as a
    // bus does; HQ's answers are counted together.
    const FLOODERS: usize = 4;
    let topics = Topics::default();
    let answers = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut pollers = Vec::new();
    let mut flooders = Vec::new();
    for f in 0..FLOODERS {
        let flooder = BusId::parse(&format!("bus-flood-{f}"))?;
        let opts = broker.client_options(&Identity::Bus(flooder.to_string()))?;
        let (client, eventloop) = AsyncClient::new(opts, 1024);
        client
            .subscribe(topics.down_filter(&flooder), QoS::AtLeastOnce)
            .await?;
        let counted = answers.clone();
        pollers.push(spawn_poller("flooder", eventloop, move |event| {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(_)) = event {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        }));
        flooders.push((flooder, client));
    }
    let query = |bus: &BusId, q: usize| {
        let blobs = (0..keliling_shared::wire::MAX_QUERY_BLOBS)
            .map(|b| Sha256::digest(format!("blob {bus} {q} {b}").as_bytes()))
            .collect();
        UpEnvelope::new(bus.clone(), Up::Query(BlobQuery { blobs })).encode()
    };
    let heartbeat = |bus: &BusId| {
        UpEnvelope::new(
            bus.clone(),
            Up::Heartbeat(Heartbeat {
                queue_depth: 0,
                bytes_waiting: 0,
                oldest_unsynced: None,
                last_sync: None,
                position: None,
                software: "flood".into(),
                bus_clock: UnixMillis::now(),
            }),
        )
        .encode()
    };
    let per_query = HEARTBEATS / QUERIES.max(1);
    for q in 0..QUERIES {
        let (flooder, client) = &flooders[q % FLOODERS];
        client
            .publish(
                topics.up(flooder, UpKind::Query),
                QoS::AtLeastOnce,
                false,
                query(flooder, q)?,
            )
            .await?;
        let hb = heartbeat(flooder)?;
        for _ in 0..per_query {
            client
                .publish(
                    topics.up(flooder, UpKind::Heartbeat),
                    QoS::AtMostOnce,
                    false,
                    hb.clone(),
                )
                .await?;
        }
    }
    let expected = (QUERIES * keliling_shared::wire::MAX_QUERY_BLOBS) as u64;
    eventually(
        "every blob of every query answered",
        Duration::from_secs(90),
        || Ok(answers.load(Ordering::Relaxed) >= expected),
    )
    .await?;

    // A genuine bus still gets through, and HQ never lost its session on the way.
    let good = BusId::parse("bus-good")?;
    let cfg = broker.bus_config(good.as_str(), &dir.path().join("good"))?;
    let vault = init_bus_store(&cfg.db_path())?;
    capture_renewal(&cfg.db_path(), &cfg.capture_settings(), 1)?;
    let bus = tokio::spawn(bus_node::daemon::run(
        cfg.clone(),
        vault,
        Arc::new(SyncMetrics::default()),
        hq.stop_rx(),
    ));
    eventually("bus-good delivered", Duration::from_secs(60), || {
        Ok(bus_delivered(&cfg.db_path())? == 1)
    })
    .await?;
    assert_eq!(
        IngestMetrics::get(&hq_metrics.connects),
        1,
        "HQ lost its broker session during the flood"
    );
    assert_eq!(IngestMetrics::get(&hq_metrics.transient_errors), 0);
    let fleet = keliling_e2e::harness::hq_store(&hq_dir)?;
    assert!(
        fleet.counts()?.quarantined == 0,
        "nothing in the flood was malformed"
    );

    let _ = hq.stop.send(true);
    pollers.iter().for_each(|p| p.abort());
    let _ = tokio::time::timeout(Duration::from_secs(5), bus).await;
    hq.shut_down().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_hq_survives_a_reply_and_heartbeat_flood() -> Result<()> {
    hq_survives_a_reply_and_heartbeat_flood(BrokerKind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_hq_survives_a_reply_and_heartbeat_flood() -> Result<()> {
    hq_survives_a_reply_and_heartbeat_flood(BrokerKind::Mosquitto).await
}

/// Item 13 of the hardening: HQ tells a bus which chunks it holds only once they are
/// durable. With every staging flush failing (sled's I/O error, as on a full disk), the
/// chunk is not confirmed: no `Progress` goes out, and HQ stops taking messages (its
/// process would exit for its supervisor to restart it). Before, the snapshot went out
/// anyway and the bus skipped chunks HQ could lose.
#[test]
fn chunks_are_not_confirmed_when_the_staging_flush_fails() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bus = BusId::parse("bus-flush-01")?;
    let mut hq = hq_sync::ingest::Offline::for_fleet(dir.path(), std::slice::from_ref(&bus))?;
    let db = dir.path().join("bus.sqlite");
    let settings = test_capture_settings(bus.as_str())?;
    let app = capture_renewal(&db, &settings, 1)?;
    let vault = init_bus_store(&db)?;
    let store = Store::open(&db)?;
    let photo = app.attachments.first().context("a photo")?;
    assert!(photo.size > 2 * 16 * 1024, "the photo makes several chunks");
    let topics = Topics::default();
    let send = |hq: &mut hq_sync::ingest::Offline, kind, body| -> Result<_> {
        let env = UpEnvelope::new(bus.clone(), body).encode()?;
        Ok(hq.apply(&topics.up(&bus, kind), &env))
    };
    let chunk = |index: u32| -> Result<Up> {
        let start = u64::from(index) * 16 * 1024;
        let data = store.read_chunk(&photo.sha256, start..start + 16 * 1024, &vault)?;
        Ok(Up::Chunk(Chunk {
            blob: photo.sha256,
            total_size: photo.size,
            chunk_size: 16 * 1024,
            index,
            data,
        }))
    };
    let acks = send(&mut hq, UpKind::Record, Up::Record(Box::new(app.clone())))?;
    assert!(acks
        .iter()
        .any(|(_, d)| matches!(d, Down::RecordAck { .. })));

    // A flush that works: the chunk is confirmed.
    let replies = send(&mut hq, UpKind::Chunk, chunk(0)?)?;
    assert!(
        replies.iter().any(|(_, d)| matches!(d, Down::Progress(_))),
        "{replies:?}"
    );
    assert!(hq.fatal().is_none());

    hq.fail_staging_flushes(true);
    let replies = send(&mut hq, UpKind::Chunk, chunk(1)?)?;
    assert!(
        !replies
            .iter()
            .any(|(_, d)| matches!(d, Down::Progress(_) | Down::RecordAck { .. })),
        "nothing confirmed what may not be durable: {replies:?}"
    );
    assert!(hq.fatal().is_some(), "HQ stops on the staging I/O error");
    Ok(())
}
