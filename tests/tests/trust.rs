//! Who may talk to the broker, and as whom: TLS 1.3 with fleet client certificates on
//! both brokers, revocation, and (on Mosquitto, the production broker) the per-bus ACL.
//! HQ checks again whatever a broker let through.

use anyhow::{bail, Result};
use hq_sync::pki::Reason;
use hq_sync::store::HqStore;
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
            let db = hq_dir.join("hq.sqlite");
            eventually(
                "HQ refused the revoked bus",
                Duration::from_secs(20),
                || {
                    Ok(HqStore::open(&db)?
                        .quarantined(10)?
                        .iter()
                        .any(|q| q.reason.contains("revoked")))
                },
            )
            .await?;
            assert_eq!(HqStore::open(&db)?.counts()?.applications, 0);
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

/// Against Mosquitto with the shipped ACL: bus A cannot publish as bus B and cannot read
/// B's decisions (HQ's answers on B's down topic) or B's uploads, while B gets its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_bus_a_cannot_act_as_bus_b() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(BrokerKind::Mosquitto, dir.path()).await? else {
        return Ok(());
    };
    let hq_dir = dir.path().join("hq");
    let hq = InProcessHq::start(&broker, &hq_dir).await?;
    let topics = Topics::default();
    let (a, b) = (BusId::parse("bus-a")?, BusId::parse("bus-b")?);
    let app_a = application(&broker, a.as_str(), &dir.path().join("a"), 1)?;
    let app_b = application(&broker, b.as_str(), &dir.path().join("b"), 2)?;

    let mut bus_b = connect_bus(&broker, &b).await?;
    bus_b
        .client
        .subscribe(topics.down_filter(&b), QoS::AtLeastOnce)
        .await?;
    let mut bus_a = connect_bus(&broker, &a).await?;
    // A tries to listen to everything of B's, and to everything at all.
    for filter in [
        topics.down_filter(&b),
        format!("{}/bus/+/down/#", topics.prefix()),
        format!("{}/bus/{b}/up/#", topics.prefix()),
        "#".to_owned(),
    ] {
        bus_a.client.subscribe(filter, QoS::AtLeastOnce).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A publishes a record on B's topic, claiming to be B (topic and payload agree).
    publish_record(&bus_a, &b, &b, &app_a).await?;
    // B sends its genuine record; HQ answers on B's down topic.
    publish_record(&bus_b, &b, &b, &app_b).await?;

    let got_b = bus_b.publishes_for(Duration::from_secs(5)).await;
    let acked: Vec<_> = got_b
        .iter()
        .filter_map(|p| DownEnvelope::decode(&p.payload).ok())
        .filter_map(|e| match e.body {
            Down::RecordAck { application, .. } => Some(application),
            _ => None,
        })
        .collect();
    assert_eq!(
        acked,
        vec![app_b.id],
        "B gets the ack for its own record only"
    );

    let got_a = bus_a.publishes_for(Duration::from_secs(2)).await;
    assert!(
        got_a.is_empty(),
        "bus A read other topics: {:?}",
        got_a.iter().map(|p| p.topic.clone()).collect::<Vec<_>>()
    );

    let store = HqStore::open(&hq_dir.join("hq.sqlite"))?;
    assert_eq!(
        store.counts()?.applications,
        1,
        "A's record posing as B never reached HQ"
    );
    assert!(store.application_bus(&app_a.id)?.is_none());
    assert_eq!(store.application_bus(&app_b.id)?.as_deref(), Some("bus-b"));

    // On its own topic, A's payload claiming B passes the ACL; HQ refuses it.
    publish_record(&bus_a, &a, &b, &app_a).await?;
    let db = hq_dir.join("hq.sqlite");
    eventually("HQ refused the mismatch", Duration::from_secs(20), || {
        Ok(HqStore::open(&db)?.quarantined(10)?.iter().any(|q| {
            q.reason
                .contains("payload claims bus bus-b on the topic of bus bus-a")
        }))
    })
    .await?;
    hq.shut_down().await;
    Ok(())
}

/// The embedded broker has no topic ACL: the same spoof reaches HQ, which refuses a
/// payload that names another bus than its topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_hq_refuses_a_payload_for_another_bus() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(BrokerKind::Embedded, dir.path()).await? else {
        return Ok(());
    };
    let hq_dir = dir.path().join("hq");
    let hq = InProcessHq::start(&broker, &hq_dir).await?;
    let (a, b) = (BusId::parse("bus-a")?, BusId::parse("bus-b")?);
    let app_a = application(&broker, a.as_str(), &dir.path().join("a"), 1)?;
    let bus_a = connect_bus(&broker, &a).await?;
    publish_record(&bus_a, &a, &b, &app_a).await?;
    let db = hq_dir.join("hq.sqlite");
    eventually("HQ refused the mismatch", Duration::from_secs(20), || {
        Ok(HqStore::open(&db)?
            .quarantined(10)?
            .iter()
            .any(|q| q.reason.contains("payload claims bus bus-b")))
    })
    .await?;
    assert_eq!(HqStore::open(&db)?.counts()?.applications, 0);
    hq.shut_down().await;
    Ok(())
}
