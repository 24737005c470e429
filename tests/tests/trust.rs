//! Who may talk to the broker, and as whom: TLS 1.3 with fleet client certificates on
//! both brokers, revocation, the per-bus ACL (Mosquitto's ACL file, the embedded broker's
//! TLS front), client ids fixed by certificates, and HQ's shared subscription. HQ checks
//! again whatever a broker let through.

use anyhow::{bail, Result};
use hq_sync::pki::Reason;
use keliling_e2e::harness::*;
use keliling_shared::topics::{Topics, UpKind};
use keliling_shared::wire::{Down, DownEnvelope, Up, UpEnvelope};
use keliling_shared::{Application, BusId};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;

/// A raw MQTT client whose incoming events a test can wait on.
struct Raw {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Packet, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Raw {
    fn start(opts: MqttOptions) -> Raw {
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        if tx.send(Err(e.to_string())).is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
            }
        });
        Raw {
            client,
            events,
            task,
        }
    }

    /// Waits for the CONNACK; fails if the connection errors first or nothing comes.
    async fn connected(&mut self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(Packet::ConnAck(_)))) => return Ok(()),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => bail!("connection failed: {e}"),
                Ok(None) | Err(_) => bail!("no CONNACK in time"),
            }
        }
    }

    /// Watches for `window`: whether a CONNACK came, and the errors seen.
    async fn refused_for(&mut self, window: Duration) -> (bool, Vec<String>) {
        let deadline = tokio::time::Instant::now() + window;
        let mut errors = Vec::new();
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            match ev {
                Ok(Packet::ConnAck(_)) => return (false, errors),
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
        (true, errors)
    }

    /// Every PUBLISH received within `window`.
    async fn publishes_for(&mut self, window: Duration) -> Vec<rumqttc::Publish> {
        let deadline = tokio::time::Instant::now() + window;
        let mut out = Vec::new();
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            if let Ok(Packet::Publish(p)) = ev {
                out.push(p);
            }
        }
        out
    }

    /// Every PUBLISH and every error within `window`.
    async fn events_for(&mut self, window: Duration) -> (Vec<rumqttc::Publish>, Vec<String>) {
        let deadline = tokio::time::Instant::now() + window;
        let (mut publishes, mut errors) = (Vec::new(), Vec::new());
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            match ev {
                Ok(Packet::Publish(p)) => publishes.push(p),
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
        (publishes, errors)
    }

    /// Waits until the connection drops (an error), or fails after `timeout`.
    async fn dropped_within(&mut self, timeout: Duration) -> Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Err(e))) => return Ok(e),
                Ok(Some(Ok(_))) => {}
                Ok(None) | Err(_) => bail!("the connection stayed up for {timeout:?}"),
            }
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An application captured on `bus`'s own store, as the bus would send it.
fn application(broker: &TestBroker, bus: &str, dir: &Path, i: usize) -> Result<Application> {
    let cfg = broker.bus_config(bus, dir)?;
    capture_renewal(&cfg.db_path(), &cfg.capture_settings(), i)
}

/// A record envelope in which both the envelope and the application name `bus`.
fn record(bus: &BusId, app: &Application) -> Result<Vec<u8>> {
    let mut app = app.clone();
    app.bus_id = bus.clone();
    Ok(UpEnvelope::new(bus.clone(), Up::Record(Box::new(app))).encode()?)
}

/// Connects as `bus` with its certificate and the client id its daemon uses, and waits for
/// the CONNACK.
async fn connect_bus(broker: &TestBroker, bus: &BusId) -> Result<Raw> {
    let mut raw = Raw::start(broker.client_options(&Identity::Bus(bus.to_string()))?);
    raw.connected().await?;
    Ok(raw)
}

/// Publishes, from `raw`, a record for `app` naming `claimed` on `topic_bus`'s record topic.
async fn publish_record(
    raw: &Raw,
    topic_bus: &BusId,
    claimed: &BusId,
    app: &Application,
) -> Result<()> {
    raw.client
        .publish(
            Topics::default().up(topic_bus, UpKind::Record),
            QoS::AtLeastOnce,
            false,
            record(claimed, app)?,
        )
        .await?;
    Ok(())
}

async fn only_fleet_certificates_connect(kind: BrokerKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let mut good = Raw::start(broker.client_options(&Identity::Bus("bus-ntt-01".into()))?);
    good.connected().await?;

    let strangers = [
        ("no certificate", Identity::NoCertificate),
        (
            "another CA",
            Identity::ForeignCa(dir.path().join("other-pki")),
        ),
        ("plain TCP", Identity::Plaintext),
    ];
    for (what, who) in strangers {
        let mut c = Raw::start(broker.mqtt_options(&format!("x-{what}"), &who)?);
        let (refused, errors) = c.refused_for(Duration::from_secs(4)).await;
        assert!(refused, "{kind:?}: a client with {what} got a CONNACK");
        assert!(!errors.is_empty(), "{kind:?}: {what}: no error either");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_only_fleet_certificates_connect() -> Result<()> {
    only_fleet_certificates_connect(BrokerKind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_only_fleet_certificates_connect() -> Result<()> {
    only_fleet_certificates_connect(BrokerKind::Mosquitto).await
}

/// A bus reported stolen: revoked with the real `hq-sync pki revoke` command. It can no
/// longer connect, and what it still manages to send is not accepted.
async fn a_revoked_bus_is_shut_out(kind: BrokerKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(mut broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let hq_dir = dir.path().join("hq");
    let hq = InProcessHq::start(&broker, &hq_dir).await?;
    let lost = BusId::parse("bus-lost")?;
    let app = application(&broker, lost.as_str(), &dir.path().join("lost"), 1)?;
    let mut live = connect_bus(&broker, &lost).await?;

    let out = tokio::process::Command::new(binary("hq-sync")?)
        .args(["pki", "revoke", lost.as_str(), "--reason", "stolen"])
        .env("HQ_SYNC__PKI__DIR", broker.pki().dir())
        .env("HQ_SYNC__DATA_DIR", &hq_dir)
        .envs(hq_store_env(&hq_dir))
        .output()
        .await?;
    assert!(
        out.status.success(),
        "pki revoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(broker
        .pki()
        .issued()?
        .iter()
        .any(|c| c.common_name == "bus-lost" && c.reason == Some(Reason::KeyCompromise)));

    match kind {
        BrokerKind::NatsCluster => bail!("the trust scenarios run on single brokers"),
        BrokerKind::Embedded => {
            // The embedded broker re-reads the CRL by itself and closes the live link.
            let e = live.dropped_within(Duration::from_secs(10)).await?;
            eprintln!("revoked bus's live connection closed: {e}");
        }
        BrokerKind::Mosquitto => {
            // Mosquitto applies a new CRL to new connections after SIGHUP and keeps the
            // old ones: the live connection can still publish, and HQ must refuse it.
            if let Some(m) = broker.mosquitto() {
                m.reload()?;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            publish_record(&live, &lost, &lost, &app).await?;
            eventually(
                "HQ refused the revoked bus",
                Duration::from_secs(20),
                || {
                    Ok(hq_store(&hq_dir)?
                        .quarantined(10)?
                        .iter()
                        .any(|q| q.reason.contains("revoked")))
                },
            )
            .await?;
            assert_eq!(hq_store(&hq_dir)?.counts()?.applications, 0);
        }
    }
    // A new connection with the revoked certificate is refused at the TLS handshake.
    let mut again = Raw::start(broker.client_options(&Identity::Bus(lost.to_string()))?);
    let (refused, errors) = again.refused_for(Duration::from_secs(4)).await;
    assert!(refused, "{kind:?}: a revoked certificate got a CONNACK");
    assert!(!errors.is_empty());
    // Other buses are not affected.
    let mut other = Raw::start(broker.client_options(&Identity::Bus("bus-ntt-02".into()))?);
    other.connected().await?;
    assert!(hq.metrics.connected.load(Ordering::Relaxed));
    hq.shut_down().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_a_revoked_bus_is_shut_out() -> Result<()> {
    a_revoked_bus_is_shut_out(BrokerKind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_a_revoked_bus_is_shut_out() -> Result<()> {
    a_revoked_bus_is_shut_out(BrokerKind::Mosquitto).await
}

/// On its own topic, A's payload claiming B passes any broker's ACL; HQ refuses it.
async fn hq_refuses_a_payload_for_another_bus(kind: BrokerKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let hq_dir = dir.path().join("hq");
    let hq = InProcessHq::start(&broker, &hq_dir).await?;
    let (a, b) = (BusId::parse("bus-a")?, BusId::parse("bus-b")?);
    let app_a = application(&broker, a.as_str(), &dir.path().join("a"), 1)?;
    let bus_a = connect_bus(&broker, &a).await?;
    publish_record(&bus_a, &a, &b, &app_a).await?;
    eventually("HQ refused the mismatch", Duration::from_secs(20), || {
        Ok(hq_store(&hq_dir)?.quarantined(10)?.iter().any(|q| {
            q.reason
                .contains("payload claims bus bus-b on the topic of bus bus-a")
        }))
    })
    .await?;
    assert_eq!(hq_store(&hq_dir)?.counts()?.applications, 0);
    hq.shut_down().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_hq_refuses_a_payload_for_another_bus() -> Result<()> {
    hq_refuses_a_payload_for_another_bus(BrokerKind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_hq_refuses_a_payload_for_another_bus() -> Result<()> {
    hq_refuses_a_payload_for_another_bus(BrokerKind::Mosquitto).await
}

/// What bus A tries with its genuine certificate.
enum Attempt {
    Subscribe(String),
    Publish(String, Vec<u8>),
}

/// Runs `attempt` as bus A. On the embedded broker the TLS front closes A's connection at
/// the first packet outside its ACL, so each attempt gets a fresh connection, which must
/// be closed. Mosquitto grants subscriptions but delivers nothing A may not read, and
/// drops denied publishes silently (MQTT 3.1.1): there `kept` is A's one connection.
async fn try_as_a(
    broker: &TestBroker,
    a: &BusId,
    kept: Option<&Raw>,
    attempt: &Attempt,
) -> Result<()> {
    let mut fresh = match kept {
        Some(_) => None,
        None => Some(connect_bus(broker, a).await?),
    };
    let raw = match (kept, fresh.as_ref()) {
        (Some(r), _) | (None, Some(r)) => r,
        (None, None) => bail!("no connection"),
    };
    let what = match attempt {
        Attempt::Subscribe(f) => {
            raw.client.subscribe(f.clone(), QoS::AtLeastOnce).await?;
            format!("subscribe to {f}")
        }
        Attempt::Publish(t, payload) => {
            raw.client
                .publish(t.clone(), QoS::AtLeastOnce, false, payload.clone())
                .await?;
            format!("publish on {t}")
        }
    };
    if let Some(fresh) = fresh.as_mut() {
        fresh
            .dropped_within(Duration::from_secs(5))
            .await
            .map_err(|e| anyhow::anyhow!("the embedded broker let bus A {what}: {e}"))?;
    }
    Ok(())
}

/// Bus A, with its genuine certificate, cannot read bus B's uploads or HQ's answers to B,
/// cannot publish on B's up/ topics or on anyone's down/ or fleet/ topics, and cannot
/// connect with B's or HQ's client id; meanwhile B and HQ work normally.
async fn bus_a_cannot_act_as_bus_b(kind: BrokerKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let hq_dir = dir.path().join("hq");
    let hq = InProcessHq::start(&broker, &hq_dir).await?;
    let topics = Topics::default();
    let p = topics.prefix().to_owned();
    let (a, b) = (BusId::parse("bus-a")?, BusId::parse("bus-b")?);
    let app_a = application(&broker, a.as_str(), &dir.path().join("a"), 1)?;
    let app_b = application(&broker, b.as_str(), &dir.path().join("b"), 2)?;

    let mut bus_b = connect_bus(&broker, &b).await?;
    for f in [topics.down_filter(&b), topics.fleet_filter()] {
        bus_b.client.subscribe(f, QoS::AtLeastOnce).await?;
    }

    // A's certificate with B's or HQ's client id never gets B's or HQ's session.
    for stolen in [b.as_str(), hq_sync::pki::FIRST_HQ] {
        let mut c = Raw::start(broker.mqtt_options(stolen, &Identity::Bus(a.to_string()))?);
        match kind {
            BrokerKind::NatsCluster => bail!("the trust scenarios run on single brokers"),
            BrokerKind::Embedded => {
                let (refused, _) = c.refused_for(Duration::from_secs(3)).await;
                assert!(refused, "bus A connected with client id {stolen}");
            }
            // Mosquitto makes the certificate's name the client id: A connects as bus-a.
            BrokerKind::Mosquitto => c.connected().await?,
        }
    }
    let (_, b_errors) = bus_b.events_for(Duration::from_millis(500)).await;
    assert!(b_errors.is_empty(), "B was disconnected: {b_errors:?}");
    assert!(hq.metrics.connected.load(Ordering::Relaxed));

    let mut kept = match kind {
        BrokerKind::Mosquitto => Some(connect_bus(&broker, &a).await?),
        BrokerKind::Embedded => None,
        BrokerKind::NatsCluster => bail!("the trust scenarios run on single brokers"),
    };
    // A true-looking delivery ack for B's record, signed with a key of A's own: the
    // broker must not carry it, and B would not believe it if it did (hostile.rs).
    let mut blobs: Vec<_> = app_b.attachments.iter().map(|a| a.sha256).collect();
    blobs.sort();
    blobs.dedup();
    let forged_down = DownEnvelope::new(
        b.clone(),
        Down::Delivered {
            application: app_b.id,
            hq_received_at: keliling_shared::UnixMillis::now(),
            content_hash: app_b.content_hash(),
            blobs,
        },
    )
    .encode_signed(&keliling_shared::sign::SigningKey::generate())?;
    let mut attempts = vec![
        Attempt::Subscribe(format!("{p}/bus/+/up/#")),
        Attempt::Subscribe("#".into()),
        Attempt::Subscribe(format!("{p}/bus/{b}/up/#")),
        Attempt::Subscribe(topics.down_filter(&b)),
        Attempt::Subscribe(format!("{p}/bus/+/down/#")),
        Attempt::Publish(topics.up(&b, UpKind::Record), record(&b, &app_a)?),
        Attempt::Publish(topics.down(&b), forged_down.clone()),
        Attempt::Publish(topics.down(&a), forged_down),
        Attempt::Publish(topics.fleet("catalogue"), b"forged".to_vec()),
    ];
    for kind in UpKind::ALL {
        attempts.push(Attempt::Subscribe(topics.up(&b, kind)));
    }
    for attempt in &attempts {
        try_as_a(&broker, &a, kept.as_ref(), attempt).await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // B sends its genuine record; HQ answers on B's down topic, and B gets nothing else.
    publish_record(&bus_b, &b, &b, &app_b).await?;
    let (got_b, b_errors) = bus_b.events_for(Duration::from_secs(5)).await;
    assert!(b_errors.is_empty(), "B was disconnected: {b_errors:?}");
    let mut bodies = Vec::new();
    let keys = broker.hq_verifying_keys()?;
    for p in &got_b {
        match DownEnvelope::decode_verified(&p.payload, &keys) {
            Ok(e) => bodies.push(e.body),
            Err(e) => bail!("B got something HQ did not send on {}: {e}", p.topic),
        }
    }
    assert!(!bodies.is_empty(), "B got no answer to its own record");
    assert!(
        bodies
            .iter()
            .all(|d| matches!(d, Down::RecordAck { application, .. } if *application == app_b.id)),
        "B got {bodies:?}"
    );
    if let Some(a_raw) = kept.as_mut() {
        // Every bus may read the fleet's topics (HQ's retained catalogue): nothing else.
        let got_a: Vec<_> = a_raw
            .publishes_for(Duration::from_secs(2))
            .await
            .into_iter()
            .filter(|p| topics.fleet_name(&p.topic).is_none())
            .collect();
        assert!(
            got_a.is_empty(),
            "bus A read other topics: {:?}",
            got_a.iter().map(|p| p.topic.clone()).collect::<Vec<_>>()
        );
    }
    let store = keliling_e2e::harness::hq_store(&hq_dir)?;
    assert_eq!(
        store.counts()?.applications,
        1,
        "A's record posing as B never reached HQ"
    );
    assert!(store.application_bus(&app_a.id)?.is_none());
    assert_eq!(store.application_bus(&app_b.id)?.as_deref(), Some("bus-b"));
    assert!(hq.metrics.connected.load(Ordering::Relaxed));
    hq.shut_down().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_bus_a_cannot_act_as_bus_b() -> Result<()> {
    bus_a_cannot_act_as_bus_b(BrokerKind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_bus_a_cannot_act_as_bus_b() -> Result<()> {
    bus_a_cannot_act_as_bus_b(BrokerKind::Mosquitto).await
}

/// Bus A joins HQ's shared-subscription group `$share/hq/...`. The embedded broker's
/// front refuses the subscription (and closes A's connection). Mosquitto 2.0's ACL file
/// does not check subscriptions at all, and a group member that may not read a message
/// it is dealt drops it; there HQ's group name is a secret (SECURITY.md), so A's guess
/// joins another group. Either way HQ gets every record and A gets none.
async fn a_bus_cannot_steal_from_hqs_share_group(kind: BrokerKind, group: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let hq_dir = dir.path().join("hq");
    let mut cfg = broker.hq_config(&hq_dir);
    cfg.ingest.shared_group = Some(group.to_owned());
    let hq = InProcessHq::spawn(cfg).await?;
    let topics = Topics::default();
    let (a, b) = (BusId::parse("bus-a")?, BusId::parse("bus-b")?);
    let b_cfg = broker.bus_config(b.as_str(), &dir.path().join("b"))?;
    let apps = capture_renewals(&b_cfg.db_path(), &b_cfg.capture_settings(), 0..8)?;

    let mut bus_a = connect_bus(&broker, &a).await?;
    let steal = format!("$share/hq/{}", topics.up_filter(UpKind::Record));
    bus_a.client.subscribe(steal, QoS::AtLeastOnce).await?;
    if kind == BrokerKind::Embedded {
        bus_a.dropped_within(Duration::from_secs(5)).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut bus_b = connect_bus(&broker, &b).await?;
    bus_b
        .client
        .subscribe(topics.down_filter(&b), QoS::AtLeastOnce)
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for app in &apps {
        publish_record(&bus_b, &b, &b, app).await?;
    }
    eventually("HQ received every record", Duration::from_secs(20), || {
        Ok(hq_store(&hq_dir)?.counts()?.applications == apps.len() as u64)
    })
    .await?;
    let got_a = bus_a.publishes_for(Duration::from_secs(1)).await;
    assert!(
        got_a.is_empty(),
        "bus A received HQ's messages: {:?}",
        got_a.iter().map(|p| p.topic.clone()).collect::<Vec<_>>()
    );
    let answers = bus_b.publishes_for(Duration::from_secs(1)).await;
    assert!(!answers.is_empty(), "B got no answers");
    hq.shut_down().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_a_bus_cannot_steal_from_hqs_share_group() -> Result<()> {
    a_bus_cannot_steal_from_hqs_share_group(BrokerKind::Embedded, "hq").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_a_bus_cannot_steal_from_hqs_share_group() -> Result<()> {
    // An unguessable group, as SECURITY.md tells operators to set.
    let secret: String = (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    a_bus_cannot_steal_from_hqs_share_group(BrokerKind::Mosquitto, &format!("hq{secret}")).await
}

/// A worker whose id is not its certificate's name does not start, with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hq_worker_id_must_be_its_certificate_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(BrokerKind::Embedded, dir.path()).await? else {
        return Ok(());
    };
    let mut cfg = broker.hq_config(&dir.path().join("hq"));
    cfg.ingest.worker_id = "hq-7".into();
    cfg.broker.tls.cert = Some(broker.pki().hq_cert(hq_sync::pki::FIRST_HQ));
    cfg.broker.tls.key = Some(broker.pki().hq_key(hq_sync::pki::FIRST_HQ));
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let Err(e) = hq_sync::ingest::run(cfg, Default::default(), rx).await else {
        bail!("a worker with another worker's certificate started");
    };
    let msg = e.to_string();
    assert!(
        msg.contains("\"hq-1\"") && msg.contains("\"hq-7\"") && msg.contains("provision-hq"),
        "{msg}"
    );
    Ok(())
}
