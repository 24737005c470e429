//! `hq-sync`: HQ's command line. Thin: everything lives in the `hq_sync` library.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hq_sync::store::{HqStore, StoreLocation};
use hq_sync::HqConfig;
use hq_sync::{broker, pki};
use keliling_shared::BusId;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "hq-sync",
    version,
    about = "Keliling HQ: MQTT ingest, record and photo store, embedded broker"
)]
struct Cli {
    /// Config file (TOML). Environment variables HQ_SYNC__SECTION__KEY override it.
    #[arg(long, short, global = true, env = "HQ_SYNC_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run ingest (and, with --embedded-broker, the broker too) until Ctrl-C / SIGTERM.
    Run {
        /// Start the embedded MQTT broker (rumqttd) in this process.
        #[arg(long)]
        embedded_broker: bool,
        /// Serve the staff's web console from this process too (one machine, the demo).
        #[arg(long)]
        console: bool,
    },
    /// The staff's web console (review queue, decisions, fleet) as its own process. It
    /// reads HQ's store and writes review data only: no broker credentials, no signing key.
    Console {
        /// Default: [console] listen (127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Staff accounts of the console.
    #[command(subcommand)]
    Staff(StaffCommand),
    /// Tokens for other systems to call the JSON API (docs/API.md).
    #[command(subcommand)]
    ApiToken(ApiTokenCommand),
    /// Run only the embedded MQTT broker (TLS 1.3, fleet client certificates required).
    Broker {
        /// Default: embedded_broker.listen from the config (127.0.0.1:8883).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Allow a non-loopback address (the embedded broker keeps nothing on disk: not for production).
        #[arg(long)]
        expose: bool,
        /// Plain MQTT without certificates, for a local experiment only.
        #[arg(long)]
        insecure_plaintext: bool,
    },
    /// The fleet PKI: CA, broker and HQ certificates, bus bundles, revocation.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// The service catalogue HQ publishes to the fleet, and every version published.
    #[command(subcommand)]
    Catalogue(CatalogueCommand),
    /// Counts, the fleet and the newest quarantine entries.
    Status {
        #[arg(long, default_value_t = 10)]
        quarantine: usize,
    },
}

#[derive(Subcommand)]
enum CatalogueCommand {
    /// Every version published to the fleet, and the one configured now.
    List,
    /// Checks a catalogue file before HQ publishes it (at its next start): that it is
    /// sound, that its version is new or unchanged, and what it adds and removes.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum ApiTokenCommand {
    /// Make a token for a system; it is printed once and never stored.
    Add {
        /// The system's name, e.g. siak-kupang (2-40 of a-z, 0-9, '-', '_', '.').
        name: String,
        /// An agency code whose applications it may read (repeatable).
        #[arg(long = "agency", required = true)]
        agencies: Vec<String>,
        /// Who makes it, for the audit log (a supervisor's username).
        #[arg(long)]
        by: String,
    },
    /// Every system with a token.
    List,
    /// Revoke a system's token at once.
    Revoke {
        name: String,
        #[arg(long)]
        by: String,
    },
}

#[derive(Subcommand)]
enum StaffCommand {
    /// Add an account. The password is asked for twice (or read from standard input).
    Add {
        username: String,
        /// The name the console shows, e.g. "Siti Rahmawati".
        #[arg(long)]
        name: String,
        /// reviewer (decides) or supervisor (also overrides, audit, quarantine, export).
        #[arg(long, default_value = "reviewer")]
        role: String,
        /// An agency code from the service catalogue (repeatable): the account sees and
        /// decides only these agencies' applications.
        #[arg(long = "agency", required = true)]
        agencies: Vec<String>,
        /// The console's language for this account: id or en.
        #[arg(long, default_value = "id")]
        lang: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password (ends the account's sessions, lifts a lockout).
    Passwd {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable an account (its sessions end at once).
    Disable { username: String },
    /// Enable a disabled account again.
    Enable { username: String },
    /// Every account.
    List,
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Create the fleet CA, the broker's and HQ's certificates and an empty CRL in [pki] dir.
    Init {
        /// Names and addresses buses and HQ dial the broker at (repeatable). Always
        /// includes localhost, 127.0.0.1 and ::1.
        #[arg(long = "broker-name", value_name = "HOST")]
        broker_names: Vec<String>,
    },
    /// Make a bus's key, certificate (common name = bus id) and config bundle.
    ProvisionBus {
        bus_id: BusId,
        /// The broker's host name as the bus dials it (must be one of --broker-name).
        #[arg(long)]
        broker_host: String,
        #[arg(long, default_value_t = 8883)]
        broker_port: u16,
        /// Where the bundle will be installed on the bus.
        #[arg(long, default_value = "/etc/keliling")]
        install_dir: PathBuf,
        /// Where the bus keeps its store.
        #[arg(long, default_value = "/var/lib/keliling")]
        data_dir: PathBuf,
        /// Issue a new certificate for a bus that has one; the old one is revoked.
        #[arg(long)]
        renew: bool,
    },
    /// Make an HQ worker's key and certificate (common name = its [ingest] worker_id,
    /// e.g. hq-2) in [pki] dir/hq/. For Mosquitto, then re-make the ACL (`pki acl`).
    ProvisionHq {
        /// `hq-` then a-z, 0-9, '-': hq-2, hq-3, ...
        name: String,
        /// Issue a new certificate for a worker that has one; the old one is revoked.
        #[arg(long)]
        renew: bool,
    },
    /// Revoke a bus (lost, stolen, retired) or an HQ worker (hq-2): it can no longer
    /// connect, and a revoked bus's messages are no longer accepted.
    Revoke {
        /// A bus id, or an HQ worker name (hq-1, hq-2, ...).
        name: String,
        /// lost, stolen, superseded or retired.
        #[arg(long)]
        reason: pki::Reason,
    },
    /// Issue the staff console's HTTPS certificate (signed by the fleet CA) for the host
    /// names staff open it at; then set [console] tls_cert and tls_key. Staff's browsers
    /// must trust the fleet CA (ca.pem), or use the organisation's certificate instead.
    ConsoleCert {
        /// A host name or address of the console (repeatable); never one of the broker's.
        #[arg(long = "name", value_name = "HOST", required = true)]
        names: Vec<String>,
    },
    /// Issue a bus station's HTTPS certificate (signed by the fleet CA) for the addresses
    /// tablets open the station at on the bus's network; it goes next to the bus's
    /// bundle. Then set [station] tls_cert and tls_key in the bus's bus.toml; tablets must
    /// trust the fleet CA (ca.pem).
    StationCert {
        bus: BusId,
        /// An address or host name of the station (repeatable); never one of the broker's.
        #[arg(long = "name", value_name = "HOST", required = true)]
        names: Vec<String>,
    },
    /// Every certificate issued.
    List,
    /// Re-sign the revocation list (e.g. before it expires).
    Crl,
    /// Rotate HQ's signing key for down messages: the pinned "next" key becomes current,
    /// a new "next" is made. Restart ingest after; refresh bus bundles before the next
    /// rotation (SECURITY.md, "Rotation").
    RotateSigning,
    /// Write Mosquitto's ACL from the registry: the per-bus patterns and one block per HQ
    /// worker with a valid certificate, for [ingest] topic_prefix. Then reload Mosquitto.
    Acl {
        /// Write here (atomically) instead of standard output, e.g. /etc/mosquitto/keliling.acl.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a NATS cluster's users from the registry: `auth.conf`, one user per valid bus
    /// and HQ worker certificate (so a revoked one is refused), each bus on its own
    /// subjects; included by config/nats/keliling.conf. Copy it to every node, then reload
    /// each.
    NatsAuth {
        /// The directory to write it in (atomically), e.g. /etc/nats/keliling.
        #[arg(long)]
        out_dir: PathBuf,
    },
}

/// Errors are printed as one readable chain (`error: …: …`), not as a debug dump: the
/// person reading them is an operator, not a debugger.
fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        // rumqttd logs every dropped bus connection as an ERROR; on a fleet on 2G that is
        // routine, so its own logs are off by default (RUST_LOG=rumqttd=info shows them);
        // rustls warns about every client that sends an IP address as SNI (rumqttc does).
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rumqttd=off,rustls=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = cli.config.as_deref();
    match cli.command {
        Command::Broker {
            listen,
            expose,
            insecure_plaintext,
        } => {
            let mut cfg = load(config)?;
            if let Some(l) = listen {
                cfg.embedded_broker.listen = l;
            }
            cfg.embedded_broker.expose |= expose;
            cfg.embedded_broker.insecure_plaintext |= insecure_plaintext;
            raise_fd_limit(true);
            start_embedded(&cfg)?;
            loop {
                std::thread::park();
            }
        }
        Command::Run {
            embedded_broker,
            console,
        } => {
            let mut cfg = load(config)?;
            raise_fd_limit(embedded_broker || cfg.embedded_broker.enabled);
            if embedded_broker || cfg.embedded_broker.enabled {
                start_embedded(&cfg)?;
                let listen = cfg.embedded_broker.listen;
                cfg.broker.host = listen.ip().to_string();
                cfg.broker.port = listen.port();
                cfg.broker.insecure_plaintext = cfg.embedded_broker.insecure_plaintext;
            }
            run(cfg, console)
        }
        Command::Console { listen } => {
            let mut cfg = load(config)?;
            if let Some(l) = listen {
                cfg.console.listen = l;
            }
            console(cfg)
        }
        Command::Staff(cmd) => staff_cmd(&load(config)?, cmd),
        Command::ApiToken(cmd) => api_token_cmd(&load(config)?, cmd),
        Command::Pki(cmd) => pki_cmd(&load(config)?, cmd),
        Command::Catalogue(cmd) => catalogue_cmd(&load(config)?, cmd),
        Command::Status { quarantine } => status(&load(config)?, quarantine),
    }
}

/// The embedded broker holds three descriptors per bus connection: lift the soft open-file
/// limit (often 1024) to the hard limit before anything is opened, and say so when even
/// the hard limit is low for a fleet.
fn raise_fd_limit(broker: bool) {
    match hq_sync::fd_limit::raise_nofile() {
        Ok(l) if broker && l.after < 4096 => tracing::warn!(
            limit = l.after,
            "the open-file limit is low (the hard limit): each bus connection takes up to 3; raise LimitNOFILE"
        ),
        Ok(l) => tracing::debug!(from = l.before, to = l.after, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

fn load(config: Option<&std::path::Path>) -> Result<HqConfig> {
    HqConfig::load(config).context("loading the HQ config")
}

fn start_embedded(cfg: &HqConfig) -> Result<()> {
    let e = &cfg.embedded_broker;
    let security = cfg.embedded_security();
    if let broker::Security::MutualTls { .. } = security {
        pki::Pki::open(&cfg.pki.dir)?;
    }
    let exposure = if e.expose {
        broker::Exposure::Public
    } else {
        broker::Exposure::LoopbackOnly
    };
    broker::start(e.listen, security, exposure)?;
    Ok(())
}

fn pki_cmd(cfg: &HqConfig, cmd: PkiCommand) -> Result<()> {
    match cmd {
        PkiCommand::Init { broker_names } => {
            let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
                .into_iter()
                .map(String::from)
                .collect();
            for n in broker_names {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            let p = pki::Pki::init(&cfg.pki.dir, &names)?;
            println!("Fleet PKI created in {}", p.dir().display());
            println!(
                "  CA:      {}  (keep ca.key offline-safe: it signs every bus)",
                p.ca_cert().display()
            );
            println!(
                "  broker:  {}  for {}",
                p.broker_cert().display(),
                names.join(", ")
            );
            println!(
                "  HQ:      {}  (worker {})",
                p.hq_cert(pki::FIRST_HQ).display(),
                pki::FIRST_HQ
            );
            println!("  CRL:     {}", p.crl().display());
            println!("Next: hq-sync pki provision-bus <bus-id> --broker-host <host>");
        }
        PkiCommand::ProvisionBus {
            bus_id,
            broker_host,
            broker_port,
            install_dir,
            data_dir,
            renew,
        } => {
            let p = pki::Pki::open(&cfg.pki.dir)?;
            let b = p.provision_bus(
                &bus_id,
                &pki::BundleOptions {
                    broker_host,
                    broker_port,
                    install_dir: install_dir.clone(),
                    data_dir,
                    renew,
                },
            )?;
            println!("Bundle for {bus_id}: {}", b.dir.display());
            println!("  certificate serial {}", b.serial);
            println!(
                "Copy it to {} on the bus, keep tls/bus.key readable by the bus-node service only,",
                install_dir.display()
            );
            println!(
                "then on the bus: bus-node -c {}/bus.toml init",
                install_dir.display()
            );
        }
        PkiCommand::ProvisionHq { name, renew } => {
            let p = pki::Pki::open(&cfg.pki.dir)?;
            let issued = p.provision_hq(&name, renew)?;
            println!("HQ worker {name}: {}", issued.cert.display());
            println!("  key {}  serial {}", issued.key.display(), issued.serial);
            println!(
                "Run it with [ingest] worker_id = \"{name}\" (HQ_SYNC__INGEST__WORKER_ID={name});"
            );
            println!(
                "for Mosquitto, re-make the ACL: hq-sync pki acl --out <acl file>, then reload."
            );
        }
        PkiCommand::Revoke { name, reason } if pki::is_hq_name(&name) => {
            let p = pki::Pki::open(&cfg.pki.dir)?;
            let serials = p.revoke_hq(&name, reason)?;
            println!(
                "Revoked HQ worker {name} ({} certificate(s)).",
                serials.len()
            );
            println!("  CRL re-signed: {}", p.crl().display());
            println!("  Re-make Mosquitto's ACL (hq-sync pki acl) and reload Mosquitto.");
        }
        PkiCommand::Revoke { name, reason } => {
            let bus_id = BusId::parse(&name)?;
            let p = pki::Pki::open(&cfg.pki.dir)?;
            let serials = p.revoke(&bus_id, reason)?;
            std::fs::create_dir_all(&cfg.data_dir)
                .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
            let mut store = open_store(cfg)?;
            store.revoke_bus(
                &bus_id,
                &format!("{reason:?}"),
                keliling_shared::UnixMillis::now(),
            )?;
            println!(
                "Revoked {bus_id} ({} certificate(s)); HQ ingest now refuses it.",
                serials.len()
            );
            println!("  CRL re-signed: {}", p.crl().display());
            println!("  The embedded broker reloads it within a second; Mosquitto on SIGHUP:");
            println!("  sudo systemctl reload mosquitto   (or kill -HUP <pid>)");
        }
        PkiCommand::ConsoleCert { names } => {
            let p = pki::Pki::open(&cfg.pki.dir)?;
            let (cert, key, serial) = p.provision_console(&names)?;
            println!(
                "Console certificate for {}: {} (serial {serial})",
                names.join(", "),
                cert.display()
            );
            println!("  key {}", key.display());
            println!("In hq.toml:\n  [console]\n  listen = \"0.0.0.0:8443\"\n  tls_cert = \"{}\"\n  tls_key = \"{}\"", cert.display(), key.display());
            println!(
                "Staff's browsers trust it once the fleet CA ({}) is installed as a root.",
                p.ca_cert().display()
            );
        }
        PkiCommand::StationCert { bus, names } => {
            let p = pki::Pki::open(&cfg.pki.dir)?;
            let (cert, key, serial) = p.provision_station(&bus, &names)?;
            println!(
                "Station certificate of {bus} for {}: {} (serial {serial})",
                names.join(", "),
                cert.display()
            );
            println!("  key {}", key.display());
            println!("Copy both to the bus; in its bus.toml:\n  [station]\n  listen = \"{}:8443\"\n  tls_cert = \"/etc/keliling/tls/station.pem\"\n  tls_key = \"/etc/keliling/tls/station.key\"", names[0]);
            println!(
                "Tablets trust it once the fleet CA ({}) is installed on them as a root.",
                p.ca_cert().display()
            );
        }
        PkiCommand::List => {
            let p = pki::Pki::open(&cfg.pki.dir)?;
            println!(
                "{:<8} {:<18} {:<34} {:<12} STATUS",
                "KIND", "NAME", "SERIAL", "EXPIRES"
            );
            for c in p.issued()? {
                let status = match (c.revoked_at, c.reason) {
                    (Some(at), r) => format!("revoked {} ({:?})", at.date(), r),
                    (None, _) => "valid".into(),
                };
                println!(
                    "{:<8} {:<18} {:<34} {:<12} {status}",
                    format!("{:?}", c.kind).to_lowercase(),
                    c.common_name,
                    c.serial,
                    c.not_after.date().to_string(),
                );
            }
        }
        PkiCommand::Crl => {
            let p = pki::Pki::open(&cfg.pki.dir)?;
            p.refresh_crl()?;
            println!("CRL re-signed: {}", p.crl().display());
        }
        PkiCommand::RotateSigning => {
            let p = pki::Pki::open(&cfg.pki.dir)?;
            let keys = p.signing().rotate()?;
            let ids: Vec<String> = keys.keys().iter().map(|k| k.id().to_string()).collect();
            println!(
                "Signing key rotated: current {}, next {}.\n\
                 Restart `hq-sync run`. Buses whose bundle pins the old pair keep working now;\n\
                 refresh their bundles (pki provision-bus <bus> --renew) before the next rotation.",
                ids.first().map_or("?", String::as_str),
                ids.get(1).map_or("?", String::as_str),
            );
        }
        PkiCommand::Acl { out } => {
            let p = pki::Pki::open(&cfg.pki.dir)?;
            let text = p.mosquitto_acl(&cfg.ingest.topic_prefix)?;
            match out {
                Some(path) => {
                    pki::write_public(&path, text.as_bytes())?;
                    println!("Mosquitto ACL written: {}", path.display());
                    println!("  reload Mosquitto: sudo systemctl reload mosquitto");
                }
                None => print!("{text}"),
            }
        }
        PkiCommand::NatsAuth { out_dir } => {
            let p = pki::Pki::open(&cfg.pki.dir)?;
            let users = p.nats_users()?;
            let auth = hq_sync::nats::auth_text(
                &cfg.ingest.topic_prefix,
                &users.buses,
                &users.hq,
                &cfg.nats,
            );
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("cannot create {}", out_dir.display()))?;
            pki::write_public(&out_dir.join("auth.conf"), auth.as_bytes())?;
            println!(
                "NATS users written to {}: {} buses, {} HQ workers (auth.conf)",
                out_dir.display(),
                users.buses.len(),
                users.hq.len()
            );
            println!(
                "  copy it to every node, then reload each: nats-server --signal reload=<pid>"
            );
        }
    }
    Ok(())
}

/// A watch that turns true on Ctrl-C or SIGTERM.
fn stop_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        let _ = tx.send(true);
    });
    rx
}

fn run(cfg: HqConfig, with_console: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        let rx = stop_signal();
        let console = if with_console {
            let server = hq_sync::console::Server::bind(&cfg).await?;
            println!("Console: {}", server.url());
            Some(tokio::spawn(server.run(rx.clone())))
        } else {
            None
        };
        let r = hq_sync::ingest::run(cfg, Arc::default(), rx).await;
        if let Some(c) = console {
            c.abort();
        }
        Ok::<_, anyhow::Error>(r?)
    });
    // A storage call that never returns (sled after an I/O error) may still hold a
    // blocking thread: never wait for it on the way out. A failed ingest exits non-zero
    // for the supervisor (config/hq-sync.service) to restart HQ.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

fn console(cfg: HqConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = hq_sync::console::Server::bind(&cfg).await?;
        println!("Console: {}", server.url());
        server.run(stop_signal()).await?;
        Ok(())
    })
}

/// A new password: from standard input's first line, or typed twice at the terminal.
fn read_new_password(from_stdin: bool) -> Result<hq_sync::staff::Password> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        let p = line.trim_end_matches(['\n', '\r']).to_owned();
        return Ok(hq_sync::staff::Password::new(p));
    }
    let a = rpassword::prompt_password("Password: ")?;
    let b = rpassword::prompt_password("Again: ")?;
    if a != b {
        bail!("the two passwords differ");
    }
    Ok(hq_sync::staff::Password::new(a))
}

fn api_token_cmd(cfg: &HqConfig, cmd: ApiTokenCommand) -> Result<()> {
    use keliling_shared::UnixMillis;
    let mut store = open_store(cfg)?;
    match cmd {
        ApiTokenCommand::Add { name, agencies, by } => {
            let supervisor = hq_sync::staff::Username::parse(&by)
                .ok()
                .and_then(|u| store.staff(&u).ok().flatten())
                .filter(|s| s.is_supervisor() && !s.disabled);
            if supervisor.is_none() {
                bail!("--by must name an active supervisor's account (hq-sync staff list)");
            }
            let known: Vec<String> = cfg
                .catalogue()?
                .agencies
                .iter()
                .map(|a| a.code.clone())
                .collect();
            let agencies: Vec<String> = agencies
                .iter()
                .map(|a| a.trim().to_ascii_uppercase())
                .collect();
            let token = store.add_api_token(&name, &agencies, &known, &by, UnixMillis::now())?;
            println!("API token for {name} ({}):", agencies.join(", "));
            println!("  {token}");
            println!("Shown once: give it to the system's operators over a safe channel.");
            println!("  curl -H 'Authorization: Bearer {token}' http://127.0.0.1:8080/api/v1/applications");
        }
        ApiTokenCommand::List => {
            println!(
                "{:<28} {:<20} {:<26} {:<26} STATE",
                "SYSTEM", "AGENCIES", "CREATED", "LAST USED"
            );
            for c in store.api_clients()? {
                println!(
                    "{:<28} {:<20} {:<26} {:<26} {}",
                    c.name,
                    c.agencies.join(","),
                    format!("{} by {}", c.created_at, c.created_by),
                    c.last_used_at.map_or("-".into(), |t| t.to_string()),
                    if c.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
        ApiTokenCommand::Revoke { name, by } => {
            if store.revoke_api_token(&name, &by, UnixMillis::now())? {
                println!("Token of {name} revoked.");
            } else {
                bail!("no active token named {name}");
            }
        }
    }
    Ok(())
}

fn catalogue_cmd(cfg: &HqConfig, cmd: CatalogueCommand) -> Result<()> {
    use keliling_shared::Catalogue;
    let store = open_store(cfg)?;
    let published = store.published_catalogues()?;
    match cmd {
        CatalogueCommand::List => {
            let configured = cfg.catalogue()?;
            if published.is_empty() {
                println!("No catalogue published yet: HQ publishes its configured one when ingest starts.");
            }
            for p in &published {
                println!(
                    "version {:>4}  {:>4} services  first published {}",
                    p.version, p.services, p.first_published_at
                );
            }
            let state = if published.iter().any(|p| p.version == configured.version) {
                "published"
            } else {
                "not yet published: at HQ's next start"
            };
            println!(
                "configured: version {} ({} services, {} agencies), {state}",
                configured.version,
                configured.services.len(),
                configured.agencies.len()
            );
        }
        CatalogueCommand::Check { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let cat = Catalogue::from_toml(&text)?;
            println!(
                "{}: version {}, {} services from {} agencies: sound.",
                file.display(),
                cat.version,
                cat.services.len(),
                cat.agencies.len()
            );
            if let Some(stored) = store.published_catalogue(cat.version)? {
                if stored == cat {
                    println!("Version {} is published already, unchanged.", cat.version);
                    return Ok(());
                }
                bail!(
                    "version {} was published before with other content: HQ would refuse to start; give this catalogue a higher `version`",
                    cat.version
                );
            }
            let newest = published.iter().map(|p| p.version).max();
            if let Some(n) = newest.filter(|n| *n > cat.version) {
                println!(
                    "Warning: version {} is older than the newest published ({n}): buses that have {n} keep it.",
                    cat.version
                );
            }
            if let Some(prev) = newest
                .map(|n| store.published_catalogue(n))
                .transpose()?
                .flatten()
            {
                let codes = |c: &Catalogue| -> std::collections::BTreeSet<String> {
                    c.services.iter().map(|s| s.code.to_string()).collect()
                };
                let (old, new) = (codes(&prev), codes(&cat));
                let added: Vec<_> = new.difference(&old).cloned().collect();
                let removed: Vec<_> = old.difference(&new).cloned().collect();
                println!(
                    "Against version {}: {} services added{}{}, {} withdrawn{}{}.",
                    prev.version,
                    added.len(),
                    if added.is_empty() { "" } else { ": " },
                    added.join(", "),
                    removed.len(),
                    if removed.is_empty() { "" } else { ": " },
                    removed.join(", ")
                );
            }
            println!(
                "Version {} is new: HQ publishes it to the fleet when ingest starts with it configured.",
                cat.version
            );
        }
    }
    Ok(())
}

fn staff_cmd(cfg: &HqConfig, cmd: StaffCommand) -> Result<()> {
    use hq_sync::staff::{Lang, NewStaff, Role, Username};
    use keliling_shared::UnixMillis;
    let mut store = open_store(cfg)?;
    match cmd {
        StaffCommand::Add {
            username,
            name,
            role,
            agencies,
            lang,
            password_stdin,
        } => {
            let catalogue = cfg.catalogue()?;
            let known: Vec<String> = catalogue.agencies.iter().map(|a| a.code.clone()).collect();
            let new = NewStaff {
                username: Username::parse(&username)?,
                display_name: name,
                role: Role::parse(&role)?,
                agencies: agencies
                    .iter()
                    .map(|a| a.trim().to_ascii_uppercase())
                    .collect(),
                language: Lang::parse(&lang)?,
                password: read_new_password(password_stdin)?,
            };
            let s = store.add_staff(&new, &known, UnixMillis::now())?;
            println!(
                "Added {} ({}, {}) for {}.",
                s.username,
                s.display_name,
                s.role.as_str(),
                s.agencies.join(", ")
            );
        }
        StaffCommand::Passwd {
            username,
            password_stdin,
        } => {
            let user = Username::parse(&username)?;
            let p = read_new_password(password_stdin)?;
            store.set_password(&user, &p, UnixMillis::now())?;
            println!("Password of {user} changed; its sessions have ended.");
        }
        StaffCommand::Disable { username } => {
            let user = Username::parse(&username)?;
            store.set_staff_disabled(&user, true, UnixMillis::now())?;
            println!("{user} disabled; its sessions have ended.");
        }
        StaffCommand::Enable { username } => {
            let user = Username::parse(&username)?;
            store.set_staff_disabled(&user, false, UnixMillis::now())?;
            println!("{user} enabled.");
        }
        StaffCommand::List => {
            println!(
                "{:<20} {:<28} {:<11} {:<4} {:<24} STATE",
                "USERNAME", "NAME", "ROLE", "LANG", "AGENCIES"
            );
            let now = UnixMillis::now();
            for s in store.list_staff()? {
                let state = if s.disabled {
                    "disabled".to_owned()
                } else if s.locked_until.is_some_and(|u| u > now) {
                    "locked".to_owned()
                } else {
                    "active".to_owned()
                };
                println!(
                    "{:<20} {:<28} {:<11} {:<4} {:<24} {state}",
                    s.username,
                    s.display_name,
                    s.role.as_str(),
                    s.language.as_str(),
                    s.agencies.join(",")
                );
            }
        }
    }
    Ok(())
}

/// HQ's store where the config puts it (SQLite in the data directory, or PostgreSQL).
fn open_store(cfg: &HqConfig) -> Result<HqStore> {
    let at = cfg.store_location()?;
    HqStore::connect(&at, "hq-sync-cli").with_context(|| format!("opening HQ's store at {at}"))
}

fn status(cfg: &HqConfig, quarantine: usize) -> Result<()> {
    if matches!(cfg.store_location()?, StoreLocation::Sqlite(_)) && !cfg.db_path().exists() {
        bail!(
            "no HQ database at {} yet: run `hq-sync run` first",
            cfg.db_path().display()
        );
    }
    let store = open_store(cfg)?;
    let c = store.counts()?;
    println!(
        "Applications: {} ({} complete, {} awaiting photos/scans)",
        c.applications, c.complete, c.awaiting_blobs
    );
    println!(
        "Verified blobs: {}   Quarantined messages: {}",
        c.blobs, c.quarantined
    );
    if c.id_collisions > 0 {
        println!(
            "Tracking numbers sent by more than one bus: {} (both kept; check which bus is genuine)",
            c.id_collisions
        );
    }
    for w in store.workers()? {
        println!(
            "Worker {}: staging {} uploads, {} KiB; disk free {}{} (as of {})",
            w.worker_id,
            w.staging_uploads,
            w.staging_bytes / 1024,
            w.disk_free_bytes
                .map_or("?".into(), |b| format!("{} MiB", b / (1024 * 1024))),
            if w.disk_low {
                ", BELOW THE FLOOR: new records and chunks refused until space returns"
            } else {
                ""
            },
            w.updated_at,
        );
    }
    println!();
    println!(
        "{:<16} {:<8} {:>7} {:>10} {:<25} {:>9}",
        "BUS", "LINK", "QUEUE", "WAITING", "LAST SEEN", "SKEW"
    );
    let now = keliling_shared::UnixMillis::now();
    let heartbeat = std::time::Duration::from_secs(cfg.fleet.heartbeat_secs.max(1));
    for b in store.fleet()? {
        println!(
            "{:<16} {:<8} {:>7} {:>10} {:<25} {:>9}",
            b.bus_id,
            // Online only if heard from lately: HQ may have missed the bus's last will.
            if b.online_at(now, heartbeat) {
                "online"
            } else {
                "offline"
            },
            b.queue_depth.map_or("-".into(), |q| q.to_string()),
            b.bytes_waiting
                .map_or("-".into(), |q| format!("{} KiB", q / 1024)),
            b.last_seen.map_or("-".into(), |t| t.to_string()),
            b.clock_skew_ms
                .map_or("-".into(), |s| format!("{}s", s / 1000)),
        );
    }
    let q = store.quarantined(quarantine)?;
    if !q.is_empty() {
        println!();
        println!("Newest quarantine entries:");
        for e in q {
            let bus = e.claimed_bus.unwrap_or_else(|| "?".into());
            println!("{}  {bus:<14} {}\n    {}", e.received_at, e.topic, e.reason);
        }
    }
    Ok(())
}
