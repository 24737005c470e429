//! `hq-sync`: HQ's command line. Thin: everything lives in the `hq_sync` library.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hq_sync::store::HqStore;
use hq_sync::HqConfig;
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
    },
    /// Run only the embedded MQTT broker.
    Broker {
        #[arg(long, default_value = "127.0.0.1:1883")]
        listen: SocketAddr,
    },
    /// Counts, the fleet and the newest quarantine entries.
    Status {
        #[arg(long, default_value_t = 10)]
        quarantine: usize,
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
        // routine, so its own logs are off by default (RUST_LOG=rumqttd=info shows them).
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rumqttd=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Broker { listen } => {
            if !listen.ip().is_loopback() {
                tracing::warn!(%listen, "the embedded broker has no TLS or topic ACLs: not for production");
            }
            hq_sync::broker::start(listen)?;
            loop {
                std::thread::park();
            }
        }
        Command::Run { embedded_broker } => {
            let mut cfg = HqConfig::load(cli.config.as_deref()).context("loading the HQ config")?;
            if embedded_broker || cfg.embedded_broker.enabled {
                let listen = cfg.embedded_broker.listen;
                hq_sync::broker::start(listen)?;
                cfg.broker.host = listen.ip().to_string();
                cfg.broker.port = listen.port();
            }
            run(cfg)
        }
        Command::Status { quarantine } => {
            let cfg = HqConfig::load(cli.config.as_deref()).context("loading the HQ config")?;
            status(&cfg, quarantine)
        }
    }
}

fn run(cfg: HqConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = tx.send(true);
        });
        hq_sync::ingest::run(cfg, Arc::default(), rx).await?;
        Ok(())
    })
}

fn status(cfg: &HqConfig, quarantine: usize) -> Result<()> {
    if !cfg.db_path().exists() {
        bail!(
            "no HQ database at {} yet: run `hq-sync run` first",
            cfg.db_path().display()
        );
    }
    let store = HqStore::open(&cfg.db_path())?;
    let c = store.counts()?;
    println!(
        "Applications: {} ({} complete, {} awaiting photos/scans)",
        c.applications, c.complete, c.awaiting_blobs
    );
    println!(
        "Verified blobs: {}   Quarantined messages: {}",
        c.blobs, c.quarantined
    );
    println!();
    println!(
        "{:<16} {:<8} {:>7} {:>10} {:<25} {:>9}",
        "BUS", "LINK", "QUEUE", "WAITING", "LAST SEEN", "SKEW"
    );
    for b in store.fleet()? {
        println!(
            "{:<16} {:<8} {:>7} {:>10} {:<25} {:>9}",
            b.bus_id,
            if b.online { "online" } else { "offline" },
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
