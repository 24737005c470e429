//! The NATS cluster's door (issue 12): who may connect follows the PKI registry through
//! `pki nats-auth`'s users, as an operator re-makes and reloads them. NATS checks no CRL:
//! each certificate is its own user (its URI SAN), which keeps a revoked certificate out
//! when a renewed one carries the same subject. The data path on the cluster is the campaign's
//! (`tests/campaign.rs`, `nats_cluster_short_campaign`).

use anyhow::Result;
use hq_sync::pki::{BundleOptions, Reason};
use keliling_e2e::harness::{BrokerKind, Identity, TestBroker};
use keliling_shared::BusId;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, TlsConfiguration, Transport,
};
use std::sync::Arc;
use std::time::Duration;

/// Whether a client with this TLS identity gets a successful CONNACK from the first node
/// within 8 s, trying again after each failure (a cluster's first MQTT client waits
/// for its streams; a CONNECT during a JetStream hiccup is closed unanswered).
async fn connects(broker: &TestBroker, tls: Arc<rustls::ClientConfig>, id: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        if connects_once(broker, tls.clone(), id).await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn connects_once(broker: &TestBroker, tls: Arc<rustls::ClientConfig>, id: &str) -> bool {
    let mut opts = MqttOptions::new(id, "127.0.0.1", broker.port());
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    opts.set_clean_session(true);
    let (_client, mut eventloop) = AsyncClient::new(opts, 10);
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => {
                    return a.code == ConnectReturnCode::Success
                }
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("{id}: {e}");
                    return false;
                }
            }
        }
    })
    .await
    .unwrap_or(false)
}

fn identity(broker: &TestBroker, bus: &str) -> Result<Arc<rustls::ClientConfig>> {
    let t = broker.bus_tls(bus)?;
    let (Some(ca), Some(cert), Some(key)) = (t.ca, t.cert, t.key) else {
        anyhow::bail!("no TLS files for {bus}");
    };
    Ok(keliling_shared::tls::client_config(&ca, &cert, &key)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_cluster_admits_only_valid_fleet_certificates() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(mut broker) = TestBroker::start(BrokerKind::NatsCluster, dir.path()).await? else {
        return Ok(());
    };
    let (a, b) = ("bus-ntt-01", "bus-ntt-02");
    let old_a = identity(&broker, a)?;
    let b_tls = identity(&broker, b)?;
    assert!(
        connects(&broker, old_a.clone(), a).await,
        "a provisioned bus connects"
    );
    assert!(connects(&broker, b_tls.clone(), b).await);

    // A certificate from another CA never gets in.
    let foreign = broker.mqtt_options(a, &Identity::ForeignCa(dir.path().join("foreign")))?;
    let (_c, mut el) = AsyncClient::new(foreign, 10);
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    return ack.code != ConnectReturnCode::Success
                }
                Ok(_) => continue,
                Err(_) => return true,
            }
        }
    })
    .await
    .unwrap_or(true);
    assert!(refused, "a foreign CA's certificate connected");

    // Bus A's certificate is renewed: same subject, new key. After the users are re-made
    // and the nodes reloaded, the old certificate is refused and the new one admitted.
    let bus_a = BusId::parse(a)?;
    let bundle_dir = broker.pki().bundle_dir(&bus_a);
    broker.pki().provision_bus(
        &bus_a,
        &BundleOptions {
            broker_host: "127.0.0.1".into(),
            broker_port: broker.port(),
            install_dir: bundle_dir.clone(),
            data_dir: bundle_dir.join("data"),
            renew: true,
        },
    )?;
    let nats = broker.nats().expect("a cluster");
    let pki = hq_sync::pki::Pki::open(&dir.path().join("pki"))?;
    nats.reload_users(&pki)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let new_a = identity(&broker, a)?;
    assert!(
        !connects(&broker, old_a, a).await,
        "the superseded certificate of {a} still connects"
    );
    assert!(connects(&broker, new_a, a).await, "the renewed certificate");

    // Bus B is revoked: gone from the users, refused at once.
    broker
        .pki()
        .revoke(&BusId::parse(b)?, Reason::KeyCompromise)?;
    let nats = broker.nats().expect("a cluster");
    nats.reload_users(&pki)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !connects(&broker, b_tls, b).await,
        "a revoked certificate still connects"
    );
    Ok(())
}
