//! HQ ingest under bad input, through a real broker: every bad message is quarantined
//! with its reason, and valid traffic keeps flowing.

use anyhow::Result;
use bus_node::capture::capture;
use bus_node::store::{OutboxState, Store};
use bus_node::sync::SyncMetrics;
use hq_sync::ingest::IngestMetrics;
use hq_sync::store::HqStore;
use keliling_e2e::harness::*;
use keliling_e2e::sample;
use keliling_shared::topics::{Topics, UpKind};
use keliling_shared::wire::{BlobQuery, Chunk, Up, UpEnvelope};
use keliling_shared::{BusId, Catalogue, Sha256};
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
    let (stop, rx) = tokio::sync::watch::channel(false);
    let hq_metrics = Arc::new(IngestMetrics::default());
    let hq = tokio::spawn(hq_sync::ingest::run(
        broker.hq_config(&hq_dir),
        hq_metrics.clone(),
        rx.clone(),
    ));
    eventually("HQ connected", Duration::from_secs(20), || {
        Ok(hq_metrics.connected.load(Ordering::Relaxed))
    })
    .await?;

    // A genuine application from bus-good, captured on its bus.
    let good = BusId::parse("bus-good")?;
    let mut cfg = broker.bus_config(good.as_str(), &dir.path().join("good"))?;
    cfg.sync.resend_after_ms = 2000;
    let portrait = keliling_photo::fixtures::load_portrait()?;
    let vault = init_bus_store(&cfg.db_path())?;
    let app = {
        let mut store = Store::open(&cfg.db_path())?;
        let photo = sample::camera_photo(&portrait, 1)?;
        capture(
            &mut store,
            &Catalogue::builtin(),
            &cfg.capture_settings(),
            sample::sim_renewal(1, photo),
        )?
        .application
    };

    // The attacker: a client posting as bus-evil.
    let evil = BusId::parse("bus-evil")?;
    let topics = Topics::default();
    // It holds bus-evil's genuine certificate: a stolen bus, or a broken one.
    let opts = broker.mqtt_options("attacker", &Identity::Bus(evil.to_string()))?;
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let poller = tokio::spawn(async move {
        loop {
            if let Err(e) = eventloop.poll().await {
                eprintln!("attacker link: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
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
    let mut attacks: Vec<(String, Vec<u8>, &str)> = vec![
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
            "no committed record references",
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
    // A topic outside the protocol: Mosquitto's ACL already drops it (bus-evil may write
    // only under its own up/); the embedded broker, which has no ACL, passes it to HQ.
    if kind == BrokerKind::Embedded {
        attacks.push((
            "keliling/v1/bus/BUS EVIL/up/record".into(),
            valid_evil.clone(),
            "topic outside the protocol",
        ));
    }
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
        rx.clone(),
    ));
    eventually("bus-good delivered", Duration::from_secs(60), || {
        Ok(bus_delivered(&cfg.db_path())? == 1)
    })
    .await?;

    // bus-evil's own (well-formed) record for that citizen is accepted as bus-evil's: the
    // id is the same, the content differs, so it is an integrity conflict, quarantined.
    client
        .publish(record_topic.clone(), QoS::AtLeastOnce, false, valid_evil)
        .await?;
    eventually("conflict quarantined", Duration::from_secs(30), || {
        let q = HqStore::open(&hq_dir.join("hq.sqlite"))?.quarantined(100)?;
        Ok(q.iter().any(|e| e.reason.contains("integrity")))
    })
    .await?;

    let store = HqStore::open(&hq_dir.join("hq.sqlite"))?;
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
    assert_eq!((counts.applications, counts.complete), (1, 1));
    let stored = Store::open(&cfg.db_path())?;
    assert_eq!(stored.state(&app.id)?, Some(OutboxState::Delivered));
    // The conflict names the application; the genuine record was not overwritten.
    assert!(reasons.iter().any(|r| r.contains(&app.id.to_string())));
    let fleet_apps = store.application_blobs()?;
    assert_eq!(fleet_apps.len(), 1);

    let _ = stop.send(true);
    poller.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), bus).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), hq).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_bad_input_is_quarantined() -> Result<()> {
    bad_input_is_quarantined_and_valid_traffic_flows(BrokerKind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_bad_input_is_quarantined() -> Result<()> {
    bad_input_is_quarantined_and_valid_traffic_flows(BrokerKind::Mosquitto).await
}
