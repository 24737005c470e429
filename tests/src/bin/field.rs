//! `keliling-field`: Keliling under field conditions, on one machine.
//!
//! ```text
//! cargo build --release -p hq-sync -p keliling-e2e      # `fleet` starts the hq-sync binary
//! target/release/keliling-field 2g                         # 200 applications over rural 2G, ~20 min
//! target/release/keliling-field fleet                      # 1000 buses, both brokers
//! target/release/keliling-field --report field.md 2g --apps 50 --cut-every 30
//! ```
//!
//! - `2g`: one bus behind a link shaped like rural 2G (100 kbit/s, 400 ms round trip, a
//!   cut every 20 s for 2 s) drains a backlog captured before the link came up. Reports
//!   the time against the ideal (bytes that must cross / rate), what was sent again after
//!   cuts, and the bytes on the wire per application.
//! - `fleet`: a load generator with 1000 buses (each its own store, certificate, MQTT
//!   client id and TLS connection) against one HQ process and one broker process, the
//!   embedded one and then Mosquitto. Reports time, HQ and broker CPU and peak memory,
//!   and checks that nothing was lost or duplicated.
//!
//! The logic lives in `keliling_e2e::field`; this is its command line. Each prints a
//! markdown report on stdout (progress on stderr); `--report FILE` also writes it.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use keliling_e2e::field::{self, FleetOptions, Report, TwoGOptions};
use keliling_e2e::harness::BrokerKind;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "keliling-field",
    about = "Field conditions on one machine: a rural 2G link, a fleet of 1000 buses"
)]
struct Args {
    /// Also write the markdown report to this file.
    #[arg(long, global = true)]
    report: Option<PathBuf>,
    /// Where stores, PKI, brokers and HQ data go (wiped at start, kept at the end); a
    /// temporary directory, removed at the end, by default.
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Broker {
    Embedded,
    Mosquitto,
    Both,
}

impl Broker {
    fn kinds(self) -> Vec<BrokerKind> {
        match self {
            Broker::Embedded => vec![BrokerKind::Embedded],
            Broker::Mosquitto => vec![BrokerKind::Mosquitto],
            Broker::Both => vec![BrokerKind::Embedded, BrokerKind::Mosquitto],
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// One bus's backlog over a rural 2G link with cuts.
    #[command(name = "2g")]
    TwoG {
        /// Applications in the backlog, each with its own ID photo.
        #[arg(long, default_value_t = 200)]
        apps: usize,
        /// Link rate in bytes per second, each direction (12 500 B/s = 100 kbit/s).
        #[arg(long, default_value_t = 12_500)]
        rate: u64,
        /// Round trip the link adds, in milliseconds (half each way).
        #[arg(long, default_value_t = 400)]
        rtt_ms: u64,
        /// The link is cut at every multiple of this many seconds ...
        #[arg(long, default_value_t = 20.0)]
        cut_every: f64,
        /// ... for this many seconds (0: never cut).
        #[arg(long, default_value_t = 2.0)]
        cut_for: f64,
        /// The bus's sync.chunk_window (default: the bus's own default).
        #[arg(long)]
        chunk_window: Option<usize>,
        /// The broker (both: one 2G run each).
        #[arg(long, value_enum, default_value_t = Broker::Embedded)]
        broker: Broker,
        /// Skip the clean run (no shaping, no cuts) that measures a drain's bytes on the wire.
        #[arg(long)]
        no_baseline: bool,
        /// While the backlog drains, take a new booking (a record, no photo) every this
        /// many seconds and time it to HQ's ack (0: none).
        #[arg(long, default_value_t = 60.0)]
        probe_every: f64,
        #[arg(long, default_value_t = 3600)]
        timeout_secs: u64,
    },
    /// A thousand buses against one HQ and one broker.
    Fleet {
        #[arg(long, default_value_t = 1000)]
        buses: usize,
        /// Applications per bus, each with its own ID photo.
        #[arg(long, default_value_t = 3)]
        apps: usize,
        #[arg(long, value_enum, default_value_t = Broker::Both)]
        broker: Broker,
        /// Threads capturing the backlogs during setup.
        #[arg(long, default_value_t = std::thread::available_parallelism().map_or(2, |n| n.get()))]
        setup_threads: usize,
        /// Per broker run.
        #[arg(long, default_value_t = 1200)]
        timeout_secs: u64,
        /// A broker run that delivers nothing for this long has failed.
        #[arg(long, default_value_t = 120)]
        stall_secs: u64,
    },
}

fn secs(s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).context("a duration must be a non-negative number of seconds")
}

fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,rumqttd=off,rustls=error".into()),
        )
        .init();
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            if d.exists() {
                std::fs::remove_dir_all(d).with_context(|| format!("wiping {}", d.display()))?;
            }
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("keliling-field-")
                .tempdir()
                .context("creating a scratch directory")?;
            temp.path().to_owned()
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let header = header();
    eprintln!("{header}");
    let reports: Vec<Report> = runtime.block_on(async {
        match args.command {
            Cmd::TwoG {
                apps,
                rate,
                rtt_ms,
                cut_every,
                cut_for,
                chunk_window,
                broker,
                no_baseline,
                probe_every,
                timeout_secs,
            } => {
                let mut out = Vec::new();
                for kind in broker.kinds() {
                    let opts = TwoGOptions {
                        apps,
                        rate: rate.max(1),
                        rtt: Duration::from_millis(rtt_ms),
                        cut_every: secs(cut_every)?.max(Duration::from_millis(100)),
                        cut_for: secs(cut_for)?,
                        chunk_window,
                        broker: kind,
                        baseline: !no_baseline,
                        probe_every: Some(secs(probe_every)?).filter(|d| !d.is_zero()),
                        timeout: Duration::from_secs(timeout_secs),
                        dir: dir.join(match kind {
                            BrokerKind::Embedded => "2g-embedded",
                            BrokerKind::Mosquitto => "2g-mosquitto",
                            BrokerKind::NatsCluster => "2g-nats-cluster",
                        }),
                    };
                    if opts.cut_for >= opts.cut_every {
                        anyhow::bail!("--cut-for must be shorter than --cut-every");
                    }
                    out.push(field::run_2g(&opts).await?);
                }
                Ok::<_, anyhow::Error>(out)
            }
            Cmd::Fleet {
                buses,
                apps,
                broker,
                setup_threads,
                timeout_secs,
                stall_secs,
            } => {
                let opts = FleetOptions {
                    buses: buses.max(1),
                    apps_per_bus: apps.max(1),
                    brokers: broker.kinds(),
                    timeout: Duration::from_secs(timeout_secs),
                    stall: Duration::from_secs(stall_secs.max(1)),
                    dir: dir.join("fleet"),
                    setup_threads,
                };
                Ok(vec![field::run_fleet(&opts).await?])
            }
        }
    })?;
    // The embedded brokers of the 2G runs cannot be stopped; do not wait for their threads.
    runtime.shutdown_timeout(Duration::from_secs(2));
    let mut markdown = header;
    for r in &reports {
        markdown.push('\n');
        markdown.push_str(&r.markdown());
    }
    println!("{markdown}");
    if let Some(path) = &args.report {
        std::fs::write(path, &markdown).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    let failures: Vec<&String> = reports.iter().flat_map(|r| &r.failures).collect();
    if !failures.is_empty() {
        anyhow::bail!(
            "{} measure(s) failed:\n{}",
            failures.len(),
            failures
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(())
}

/// When, what and where: the lines above every report.
fn header() -> String {
    let cmd: Vec<String> = std::env::args().collect();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".into());
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "?".into());
    format!(
        "## keliling-field\n\n- Machine: {}\n- Date: {date}; commit {commit} (plus uncommitted changes, if any)\n- Command: `{}`\n- Build: {}\n",
        field::machine_line(),
        cmd.join(" "),
        if cfg!(debug_assertions) {
            "debug (use --release for figures)"
        } else {
            "release"
        }
    )
}
