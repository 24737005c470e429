//! Brokers for the benchmarks, secured as in production: a fresh fleet PKI per broker,
//! TLS 1.3 with client certificates (the embedded rumqttd behind `hq-sync`'s TLS front, or
//! Mosquitto with the shipped ACL), every bus with its own certificate. Plain TCP only
//! when a run asks for it, and then labelled.

use anyhow::{Context, Result};
use bus_node::BusConfig;
use hq_sync::pki::{BundleOptions, Pki};
use hq_sync::HqConfig;
use keliling_e2e::harness::mosquitto_tls;
use keliling_e2e::mosquitto::Mosquitto;
use keliling_e2e::ports::free_port;
use keliling_shared::tls::ClientTlsFiles;
use keliling_shared::BusId;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// rumqttd in this process (`hq_sync::broker`), as `hq-sync broker` runs it.
    Embedded,
    /// Debian's Mosquitto, a child process with the e2e harness's config.
    Mosquitto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Security {
    /// TLS 1.3, fleet client certificates (production).
    MutualTls,
    /// Plain TCP, no identity: only to show what TLS costs.
    Plaintext,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Embedded => "embedded broker (rumqttd)",
            Kind::Mosquitto => "Mosquitto",
        }
    }
}

impl Security {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Security::MutualTls => "mTLS",
            Security::Plaintext => "PLAINTEXT",
        }
    }
}

/// Who a `mosquitto_pub`/`mosquitto_sub` connects as.
#[derive(Clone, Debug)]
pub(crate) enum Who {
    Bus(BusId),
    Hq,
}

/// A running broker and the fleet PKI its clients use.
pub(crate) struct BenchBroker {
    pub(crate) kind: Kind,
    pub(crate) security: Security,
    port: u16,
    pki: Pki,
    /// Kept to keep the child alive; dropping it kills the broker. The embedded broker
    /// cannot be stopped (rumqttd has no shutdown API): it idles until the process ends.
    mosquitto: Option<Mosquitto>,
}

impl BenchBroker {
    /// Starts a broker with a fresh fleet PKI in `dir/pki` (broker names `localhost` and
    /// `127.0.0.1`, as the e2e harness makes them).
    pub(crate) async fn start(kind: Kind, security: Security, dir: &Path) -> Result<BenchBroker> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let pki = Pki::init(&dir.join("pki"), &["localhost".into(), "127.0.0.1".into()])
            .context("making the fleet PKI")?;
        let (port, mosquitto) = match kind {
            Kind::Embedded => {
                let port = free_port()?;
                let sec = match security {
                    Security::MutualTls => hq_sync::broker::Security::MutualTls {
                        ca: pki.ca_cert(),
                        cert: pki.broker_cert(),
                        key: pki.broker_key(),
                        crl: pki.crl(),
                        topics: keliling_shared::topics::Topics::default(),
                    },
                    Security::Plaintext => hq_sync::broker::Security::InsecurePlaintext,
                };
                tokio::task::spawn_blocking(move || {
                    hq_sync::broker::start(
                        ([127, 0, 0, 1], port).into(),
                        sec,
                        hq_sync::broker::Exposure::LoopbackOnly,
                    )
                })
                .await
                .context("embedded broker start-up task")??;
                (port, None)
            }
            Kind::Mosquitto => {
                let tls = mosquitto_tls(&pki);
                let tls = (security == Security::MutualTls).then_some(&tls);
                let m = Mosquitto::start_with(&dir.join("mosquitto"), tls).await?;
                (m.port(), Some(m))
            }
        };
        Ok(BenchBroker {
            kind,
            security,
            port,
            pki,
            mosquitto,
        })
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Another HQ worker's certificate (`hq-2`, ...), and for Mosquitto its ACL reloaded,
    /// as an operator adding a worker does.
    pub(crate) async fn provision_hq(&self, name: &str) -> Result<()> {
        if !self.pki.hq_cert(name).exists() {
            self.pki.provision_hq(name, false)?;
        }
        if let Some(m) = &self.mosquitto {
            m.set_acl(
                &self
                    .pki
                    .mosquitto_acl(keliling_shared::topics::DEFAULT_PREFIX)?,
            )?;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(())
    }

    /// CPU seconds the broker process has used so far (Mosquitto only: the embedded broker
    /// runs in this process and is counted with it).
    pub(crate) fn child_cpu_secs(&self) -> Option<f64> {
        let pid = self.mosquitto.as_ref()?.pid()?;
        keliling_e2e::procstat::cpu_secs(Some(pid)).ok()
    }

    /// "Mosquitto, mTLS".
    pub(crate) fn label(&self) -> String {
        format!("{}, {}", self.kind.label(), self.security.label())
    }

    /// A bus's TLS files, provisioning the bus (its own key and certificate) on first use.
    pub(crate) fn bus_tls(&self, bus: &BusId) -> Result<ClientTlsFiles> {
        let dir = self.pki.bundle_dir(bus);
        if !dir.join("tls/bus.pem").exists() {
            self.pki
                .provision_bus(
                    bus,
                    &BundleOptions {
                        broker_host: "127.0.0.1".into(),
                        broker_port: self.port,
                        install_dir: dir.clone(),
                        data_dir: dir.join("data"),
                        renew: false,
                    },
                )
                .with_context(|| format!("provisioning {bus}"))?;
        }
        Ok(ClientTlsFiles {
            ca: Some(dir.join("tls/ca.pem")),
            cert: Some(dir.join("tls/bus.pem")),
            key: Some(dir.join("tls/bus.key")),
        })
    }

    /// An in-process HQ ingest config with HQ's certificate (the PKI's `hq.pem`).
    pub(crate) fn hq_config(&self, data_dir: &Path) -> HqConfig {
        let mut cfg = HqConfig::for_dir(data_dir.to_owned(), self.port);
        cfg.pki.dir = self.pki.dir().to_owned();
        cfg.broker.insecure_plaintext = self.security == Security::Plaintext;
        cfg
    }

    /// An in-process bus config with the bus's own certificate, dialing `port` (the
    /// broker's, or a proxy's in front of it).
    pub(crate) fn bus_config(
        &self,
        bus: &BusId,
        data_dir: PathBuf,
        port: u16,
    ) -> Result<BusConfig> {
        let mut cfg = BusConfig::for_bus(bus.clone(), data_dir, "127.0.0.1", port);
        match self.security {
            Security::MutualTls => cfg.broker.tls = self.bus_tls(bus)?,
            Security::Plaintext => cfg.broker.insecure_plaintext = true,
        }
        // Down messages are signed on every transport.
        cfg.trust.hq_keys = Some(self.hq_keys(bus)?);
        Ok(cfg)
    }

    /// The HQ verifying keys in a bus's bundle (provisioning it on first use).
    pub(crate) fn hq_keys(&self, bus: &BusId) -> Result<PathBuf> {
        self.bus_tls(bus)?;
        Ok(self.pki.bundle_dir(bus).join("hq-keys.pub"))
    }

    /// `bus-node run`'s environment for this broker (production sync defaults; the bus is
    /// provisioned if needed), dialing `port`.
    pub(crate) fn bus_env(
        &self,
        bus: &BusId,
        data_dir: &Path,
        port: u16,
    ) -> Result<Vec<(String, String)>> {
        let mut env = vec![
            ("BUS_NODE__BUS_ID".to_owned(), bus.to_string()),
            (
                "BUS_NODE__DATA_DIR".to_owned(),
                data_dir.display().to_string(),
            ),
            ("BUS_NODE__BROKER__HOST".to_owned(), "127.0.0.1".to_owned()),
            ("BUS_NODE__BROKER__PORT".to_owned(), port.to_string()),
            (
                "BUS_NODE_PASSPHRASE".to_owned(),
                keliling_e2e::harness::TEST_PASSPHRASE.to_owned(),
            ),
            (
                "BUS_NODE__TRUST__HQ_KEYS".to_owned(),
                self.hq_keys(bus)?.display().to_string(),
            ),
            // The station is served (as in production), on a port of its own.
            (
                "BUS_NODE__STATION__LISTEN".to_owned(),
                "127.0.0.1:0".to_owned(),
            ),
        ];
        match self.security {
            Security::MutualTls => {
                let tls = self.bus_tls(bus)?;
                for (k, v) in [("CA", &tls.ca), ("CERT", &tls.cert), ("KEY", &tls.key)] {
                    if let Some(v) = v {
                        env.push((
                            format!("BUS_NODE__BROKER__TLS__{k}"),
                            v.display().to_string(),
                        ));
                    }
                }
            }
            Security::Plaintext => env.push((
                "BUS_NODE__BROKER__INSECURE_PLAINTEXT".to_owned(),
                "true".to_owned(),
            )),
        }
        Ok(env)
    }

    /// `mosquitto_pub`/`mosquitto_sub` arguments to reach this broker as `who`: host, port
    /// and, with mTLS, `--cafile --cert --key` (the client then checks the broker's
    /// certificate against `127.0.0.1`, as the bus does).
    pub(crate) fn mosquitto_client_args(&self, who: &Who) -> Result<Vec<String>> {
        let mut args = vec![
            "-h".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            self.port.to_string(),
        ];
        if self.security == Security::MutualTls {
            let (cert, key) = match who {
                Who::Bus(bus) => {
                    let t = self.bus_tls(bus)?;
                    (
                        t.cert.context("no bus certificate")?,
                        t.key.context("no bus key")?,
                    )
                }
                Who::Hq => (
                    self.pki.hq_cert(hq_sync::pki::FIRST_HQ),
                    self.pki.hq_key(hq_sync::pki::FIRST_HQ),
                ),
            };
            args.extend([
                "--cafile".to_owned(),
                self.pki.ca_cert().display().to_string(),
                "--cert".to_owned(),
                cert.display().to_string(),
                "--key".to_owned(),
                key.display().to_string(),
            ]);
        }
        Ok(args)
    }
}
