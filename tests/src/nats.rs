//! A real 3-node NATS cluster (Debian trixie's `nats-server` 2.10) for the cluster tests,
//! started from the shipped `config/nats/keliling.conf` as an operator would run it: the
//! same file for every node, what differs in each node's environment, users made from
//! the PKI registry (`hq-sync pki nats-auth`).
//!
//! Ports are picked below Linux's ephemeral range: the nodes dial each other's route
//! ports before all of them listen, and an ephemeral port picked for a node can be taken
//! by such a dial meanwhile ("address already in use"; docs/research/nats-cluster-e2e.md).

use anyhow::{bail, Context, Result};
use hq_sync::pki::Pki;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The shipped node config, tested as shipped.
const NODE_CONF: &str = include_str!("../../config/nats/keliling.conf");

/// Where trixie's package installs it (`.ci/install-nats`).
const KNOWN_LOCATIONS: [&str; 2] = ["/usr/sbin/nats-server", "/usr/local/sbin/nats-server"];

/// The oldest server whose MQTT sessions survive a failover (2.9 loses them: PR #4734,
/// docs/DESIGN.md "Broker cluster").
const MIN_VERSION: (u32, u32) = (2, 10);

/// `nats-server` 2.10 or newer (`KELILING_NATS_SERVER` names another): `Ok(None)` outside
/// CI when missing or too old (the test says it skipped), an error under `CI=true`.
pub fn require() -> Result<Option<PathBuf>> {
    let found = std::env::var_os("KELILING_NATS_SERVER")
        .map(PathBuf::from)
        .into_iter()
        .chain(KNOWN_LOCATIONS.iter().map(PathBuf::from))
        .find(|p| p.is_file());
    let why = match &found {
        None => "nats-server is not installed (.ci/install-nats)".to_owned(),
        Some(bin) => match version(bin) {
            Ok(v) if v >= MIN_VERSION => return Ok(found),
            Ok(v) => format!(
                "{} is nats-server {}.{}; the cluster needs {}.{} or newer (.ci/install-nats)",
                bin.display(),
                v.0,
                v.1,
                MIN_VERSION.0,
                MIN_VERSION.1
            ),
            Err(e) => format!("{}: {e}", bin.display()),
        },
    };
    if std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1") {
        bail!("{why}: required in CI");
    }
    eprintln!("SKIPPED: {why}");
    Ok(None)
}

fn version(bin: &Path) -> Result<(u32, u32)> {
    let out = std::process::Command::new(bin).arg("--version").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "nats-server: v2.10.27"
    let v = text
        .rsplit(" v")
        .next()
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .with_context(|| format!("unexpected version text {text:?}"))?;
    let mut parts = v.trim().split('.');
    let major = parts.next().unwrap_or("0").parse()?;
    let minor = parts.next().unwrap_or("0").parse()?;
    Ok((major, minor))
}

struct Node {
    name: String,
    client_port: u16,
    mqtt_port: u16,
    http_port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

/// A running cluster. Dropping it kills every node.
pub struct NatsCluster {
    bin: PathBuf,
    conf_dir: PathBuf,
    nodes: Vec<Node>,
    /// The node [`NatsCluster::kill_next`] takes down next.
    next_victim: usize,
}

impl NatsCluster {
    /// Starts `n` nodes with the PKI's broker certificate and users from its registry,
    /// and waits until JetStream is ready on every node.
    pub async fn start(bin: PathBuf, dir: &Path, pki: &Pki, n: usize) -> Result<NatsCluster> {
        let conf_dir = dir.join("nats");
        std::fs::create_dir_all(&conf_dir)?;
        std::fs::write(conf_dir.join("keliling.conf"), NODE_CONF)?;
        let ports = low_free_ports(4 * n)?;
        let routes: Vec<String> = (0..n)
            .map(|i| format!("nats-route://127.0.0.1:{}", ports[4 * i + 1]))
            .collect();
        let routes = format!("[{}]", routes.join(", "));
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = format!("nats-{}", i + 1);
            let (client_port, cluster_port, mqtt_port, http_port) = (
                ports[4 * i],
                ports[4 * i + 1],
                ports[4 * i + 2],
                ports[4 * i + 3],
            );
            let store = dir.join(format!("{name}-js"));
            let env = vec![
                ("NATS_NODE".into(), name.clone()),
                ("NATS_HOST".into(), "127.0.0.1".into()),
                ("NATS_CLIENT_PORT".into(), client_port.to_string()),
                ("NATS_CLUSTER_PORT".into(), cluster_port.to_string()),
                ("NATS_MQTT_PORT".into(), mqtt_port.to_string()),
                ("NATS_HTTP".into(), format!("127.0.0.1:{http_port}")),
                ("NATS_STORE".into(), store.display().to_string()),
                ("NATS_ROUTES".into(), routes.clone()),
                (
                    "NATS_TLS_CERT".into(),
                    pki.broker_cert().display().to_string(),
                ),
                (
                    "NATS_TLS_KEY".into(),
                    pki.broker_key().display().to_string(),
                ),
                ("NATS_TLS_CA".into(), pki.ca_cert().display().to_string()),
            ];
            nodes.push(Node {
                log: dir.join(format!("{name}.log")),
                name,
                client_port,
                mqtt_port,
                http_port,
                env,
                child: None,
            });
        }
        let mut cluster = NatsCluster {
            bin,
            conf_dir,
            nodes,
            next_victim: 0,
        };
        cluster.write_users(pki)?;
        for i in 0..n {
            cluster.spawn(i)?;
        }
        for i in 0..n {
            crate::ports::wait_for_port(cluster.nodes[i].mqtt_port, Duration::from_secs(20))
                .await
                .with_context(|| cluster.log(i))?;
        }
        cluster.wait_healthy(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// `auth.conf` from the registry, as `hq-sync pki nats-auth` writes it.
    fn write_users(&self, pki: &Pki) -> Result<()> {
        let users = pki.nats_users()?;
        let text = hq_sync::nats::auth_text(
            keliling_shared::topics::DEFAULT_PREFIX,
            &users.buses,
            &users.hq,
            &hq_sync::config::NatsConfig::default(),
        );
        std::fs::write(self.conf_dir.join("auth.conf"), text)?;
        Ok(())
    }

    /// Re-makes the users from the registry and reloads every running node (SIGHUP), as
    /// an operator does after provisioning or revoking.
    pub fn reload_users(&self, pki: &Pki) -> Result<()> {
        self.write_users(pki)?;
        for node in &self.nodes {
            if let Some(pid) = node.child.as_ref().and_then(Child::id) {
                let status = std::process::Command::new("kill")
                    .args(["-HUP", &pid.to_string()])
                    .status()?;
                if !status.success() {
                    bail!("kill -HUP {pid} ({}) failed", node.name);
                }
            }
        }
        Ok(())
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.conf_dir.join("keliling.conf"))
            .envs(node.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} ({})", node.name, self.bin.display()))?;
        node.child = Some(child);
        Ok(())
    }

    /// Every node's MQTT port, the first node's first.
    pub fn mqtt_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.mqtt_port).collect()
    }

    /// Every node's NATS URL, for `[nats] servers`.
    pub fn nats_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("tls://127.0.0.1:{}", n.client_port))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Whether node `i` is alive.
    pub fn is_up(&mut self, i: usize) -> bool {
        self.nodes[i]
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `kill -9` of node `i`.
    pub async fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.nodes[i].child.take() {
            c.start_kill()?;
            c.wait().await?;
        }
        Ok(())
    }

    /// `kill -9` of the next node in turn (each kill takes another); returns its index.
    pub async fn kill_next(&mut self) -> Result<usize> {
        let i = self.next_victim % self.nodes.len();
        self.next_victim += 1;
        self.kill(i).await?;
        Ok(i)
    }

    /// Starts node `i` again (a killed one), with its JetStream store as it was left, and
    /// waits until it is back in the cluster.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        if self.is_up(i) {
            return Ok(());
        }
        self.spawn(i)?;
        crate::ports::wait_for_port(self.nodes[i].mqtt_port, Duration::from_secs(20))
            .await
            .with_context(|| self.log(i))?;
        Ok(())
    }

    /// Starts every node that is down.
    pub async fn restart_all(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.restart(i).await?;
        }
        Ok(())
    }

    /// Kills every node.
    pub async fn kill_all(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.kill(i).await;
        }
    }

    /// Waits until every running node answers `/healthz?js-server-only=true` (its
    /// JetStream is up and it knows the cluster's leader); what a load balancer would
    /// route clients by.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut waiting = Vec::new();
            for i in 0..self.nodes.len() {
                if !self.is_up(i) {
                    continue;
                }
                let port = self.nodes[i].http_port;
                let ok = tokio::task::spawn_blocking(move || {
                    http_get(port, "/healthz?js-server-only=true")
                })
                .await
                .ok()
                .and_then(|r| r.ok())
                .is_some_and(|(status, _)| status == 200);
                if !ok {
                    waiting.push(self.nodes[i].name.clone());
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("NATS nodes not healthy after {timeout:?}: {waiting:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A monitoring page of node `i` (`/jsz?consumers=true`, ...), for a failure report.
    pub fn monitor(&self, i: usize, path: &str) -> String {
        match http_get(self.nodes[i].http_port, path) {
            Ok((_, body)) => body,
            Err(e) => format!("({e})"),
        }
    }

    /// Node `i`'s log.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }
}

/// `count` distinct free loopback ports between 20000 and 30000 (below the ephemeral range).
fn low_free_ports(count: usize) -> Result<Vec<u16>> {
    use rand::Rng as _;
    let mut rng = rand::thread_rng();
    let mut ports = Vec::with_capacity(count);
    let mut tries = 0;
    while ports.len() < count {
        tries += 1;
        if tries > 10_000 {
            bail!("no {count} free ports between 20000 and 30000");
        }
        let p: u16 = rng.gen_range(20_000..30_000);
        if ports.contains(&p) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            ports.push(p);
        }
    }
    Ok(ports)
}

/// A plain HTTP/1.0 GET on loopback: the monitoring port speaks nothing else.
fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The example node environment sets exactly the variables the shipped config uses
    /// (and so does the harness): an operator copying it misses none.
    #[test]
    fn the_example_environment_matches_the_config() {
        let used: BTreeSet<String> = super::NODE_CONF
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$')))
            .filter_map(|w| w.strip_prefix('$').map(str::to_owned))
            .collect();
        let example: BTreeSet<String> = include_str!("../../config/nats/node.env.example")
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
            .collect();
        assert_eq!(used, example);
        assert!(used.contains("NATS_ROUTES"), "{used:?}");
    }
}
