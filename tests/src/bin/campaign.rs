//! `keliling-campaign`: the fault-injection campaign (issue 4). Buses capture and sync
//! while `kill -9` (bus, HQ, broker), link cuts, stalls and slow links, duplicate and
//! reordered deliveries and full disks land at random moments; then everything heals and
//! an auditor checks that every receipted application is at HQ exactly once with the same
//! photo hashes, that every bus knows it, and that no outbox is left waiting.
//!
//! ```text
//! cargo build --release -p hq-sync -p bus-node      # the processes the campaign starts
//! cargo run --release -p keliling-e2e --bin keliling-campaign -- \
//!     --duration 20m --fault-every 2s --buses 3 --broker both --report campaign.md
//! # country scale: a 3-node NATS cluster (nats-server 2.10), 3 HQ workers on PostgreSQL
//! # (KELILING_TEST_PG_URL, .ci/postgres), nodes, workers and database connections killed
//! KELILING_TEST_PG_URL=... cargo run --release -p keliling-e2e --bin keliling-campaign -- \
//!     --broker nats-cluster --workers 3 --store postgres --buses 20 --duration 20m
//! ```
//!
//! The seed (from the clock unless `--seed`) is printed first and in the report; the same
//! seed gives the same schedule of faults. Exits non-zero on any violation.

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use keliling_e2e::campaign::{self, parse_duration, Options};
use keliling_e2e::harness::{binary, BrokerKind};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BrokerArg {
    Embedded,
    Mosquitto,
    Both,
    /// Three nodes of nats-server 2.10 (`config/nats/keliling.conf`).
    NatsCluster,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StoreArg {
    Sqlite,
    Postgres,
}

#[derive(Parser, Debug)]
#[command(
    name = "keliling-campaign",
    about = "Fault-injection campaign: capture and sync under kill -9, cuts, stalls, slow links, replays and full disks; then audit exactly-once delivery"
)]
struct Cli {
    /// Seed of the fault schedule (default: from the clock; always printed).
    #[arg(long)]
    seed: Option<u64>,
    /// How long faults are injected, per broker (e.g. 60s, 30m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Buses, each a `bus-node run` behind its own link proxy.
    #[arg(long, default_value_t = 3)]
    buses: usize,
    /// Which broker; `both` runs the campaign once on each, with the same seed.
    #[arg(long, value_enum, default_value_t = BrokerArg::Both)]
    broker: BrokerArg,
    /// Mean time between faults (exponentially distributed).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    fault_every: Duration,
    /// Mean time between captures on one bus.
    #[arg(long, default_value = "400ms", value_parser = parse_duration)]
    capture_every: Duration,
    /// How long the healed system may take to deliver everything.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Write the report (markdown) here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Keep stores, logs and brokers under this directory (default: a temporary one,
    /// removed after a passing run, kept after a failing one).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// A progress line every this often.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    progress_every: Duration,
    /// HQ workers sharing the store (`kill -9 HQ` takes one at a time).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// HQ's store; PostgreSQL needs KELILING_TEST_PG_URL (and adds dropped connections
    /// to the faults).
    #[arg(long, value_enum, default_value_t = StoreArg::Sqlite)]
    store: StoreArg,
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<bool> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if cli.duration.is_zero() || cli.fault_every.is_zero() || cli.capture_every.is_zero() {
        bail!("--duration, --fault-every and --capture-every must be more than zero");
    }
    // The campaign starts these as processes: they must sit next to this binary.
    for name in ["hq-sync", "bus-node"] {
        binary(name).with_context(|| {
            "build the daemons in the same profile first: cargo build --release -p hq-sync -p bus-node"
        })?;
    }
    let seed = cli.seed.unwrap_or_else(campaign::seed_from_time);
    println!("seed {seed}");
    let kinds: Vec<BrokerKind> = match cli.broker {
        BrokerArg::Embedded => vec![BrokerKind::Embedded],
        BrokerArg::Mosquitto => vec![BrokerKind::Mosquitto],
        BrokerArg::Both => vec![BrokerKind::Embedded, BrokerKind::Mosquitto],
        BrokerArg::NatsCluster => vec![BrokerKind::NatsCluster],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut markdown = format!(
        "# Fault campaign\n\nSeed `{seed}`, machine: {}.\n\n",
        campaign::machine()
    );
    let mut passed = true;
    for kind in kinds {
        let opts = Options {
            seed,
            duration: cli.duration,
            buses: cli.buses,
            broker: kind,
            fault_every: cli.fault_every,
            capture_every: cli.capture_every,
            drain_timeout: cli.drain_timeout,
            work_dir: cli.work_dir.as_ref().map(|d| {
                d.join(match kind {
                    BrokerKind::Embedded => "embedded",
                    BrokerKind::Mosquitto => "mosquitto",
                    BrokerKind::NatsCluster => "nats-cluster",
                })
            }),
            progress_every: Some(cli.progress_every),
            workers: cli.workers,
            store: match cli.store {
                StoreArg::Sqlite => keliling_e2e::harness::StoreKind::Sqlite,
                StoreArg::Postgres => keliling_e2e::harness::StoreKind::Postgres,
            },
        };
        eprintln!(
            "campaign on {kind:?}: {} buses, {} s of faults every ~{} ms, seed {seed}",
            opts.buses,
            opts.duration.as_secs(),
            opts.fault_every.as_millis()
        );
        let report = rt.block_on(campaign::run(&opts))?;
        println!("{}", report.summary());
        markdown.push_str(&report.markdown());
        markdown.push('\n');
        passed &= report.passed();
        if let Some(path) = &cli.report {
            std::fs::write(path, &markdown)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    if let Some(path) = &cli.report {
        println!("report written to {}", path.display());
    }
    if !passed {
        eprintln!("FAIL: the campaign found violations (above); seed {seed}");
    }
    Ok(passed)
}
