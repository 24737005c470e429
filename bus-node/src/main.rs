//! `bus-node`: the operator's and the daemon's command line. Thin: everything lives in
//! the `bus_node` library.

use anyhow::{bail, Context, Result};
use bus_node::capture::{self, CaptureInput};
use bus_node::{BusConfig, Store};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "bus-node",
    version,
    about = "Keliling bus node: capture applications offline, sync them to HQ over MQTT"
)]
struct Cli {
    /// Config file (TOML). Environment variables BUS_NODE__SECTION__KEY override it.
    #[arg(long, short, global = true, env = "BUS_NODE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Take an application (saved durably before the receipt is printed).
    Capture(Box<CaptureArgs>),
    /// What is still waiting to sync.
    Status {
        /// Also list this many recent applications.
        #[arg(long, default_value_t = 10)]
        list: usize,
        /// Only those not yet delivered.
        #[arg(long)]
        waiting: bool,
    },
    /// Run the sync daemon until Ctrl-C / SIGTERM.
    Run,
}

#[derive(clap::Args)]
struct CaptureArgs {
    /// Operator (petugas) name or id.
    #[arg(long)]
    operator: String,
    /// Village (desa) where the bus stands.
    #[arg(long)]
    village: String,
    /// GPS position as "lat,lon".
    #[arg(long)]
    gps: Option<String>,
    /// Service code from the catalogue, e.g. KIA, KK_UPDATE, AKTA_LAHIR, SIM_RENEWAL, KTP_EL.
    #[arg(long)]
    service: String,
    #[arg(long)]
    name: String,
    #[arg(long)]
    nik: String,
    /// Date of birth, YYYY-MM-DD.
    #[arg(long)]
    dob: String,
    /// L (laki-laki) or P (perempuan).
    #[arg(long)]
    sex: String,
    #[arg(long)]
    address: String,
    #[arg(long)]
    phone: Option<String>,
    /// Service field as name=value (repeatable).
    #[arg(long = "field", value_name = "NAME=VALUE")]
    fields: Vec<String>,
    /// Camera file for the ID photo (JPEG or PNG).
    #[arg(long)]
    photo: Option<PathBuf>,
    /// Document scan as name=path (repeatable).
    #[arg(long = "doc", value_name = "NAME=PATH")]
    docs: Vec<String>,
    /// Print only the tracking number (for scripts).
    #[arg(long)]
    quiet: bool,
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
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = BusConfig::load(cli.config.as_deref()).context("loading the bus config")?;
    match cli.command {
        Command::Capture(args) => capture_cmd(&cfg, *args),
        Command::Status { list, waiting } => status_cmd(&cfg, list, waiting),
        Command::Run => run_cmd(cfg),
    }
}

fn split_pair(s: &str, what: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
        None => bail!("{what} must be NAME=VALUE, got {s:?}"),
    }
}

fn capture_cmd(cfg: &BusConfig, a: CaptureArgs) -> Result<()> {
    let catalogue = cfg.catalogue()?;
    let gps = match &a.gps {
        Some(g) => {
            let (lat, lon) = g.split_once(',').context("--gps must be lat,lon")?;
            Some((
                lat.trim().parse().context("GPS latitude")?,
                lon.trim().parse().context("GPS longitude")?,
            ))
        }
        None => None,
    };
    let photo = match &a.photo {
        Some(p) => {
            Some(std::fs::read(p).with_context(|| format!("reading photo {}", p.display()))?)
        }
        None => None,
    };
    let mut documents = Vec::new();
    for d in &a.docs {
        let (name, path) = split_pair(d, "--doc")?;
        documents.push((
            name,
            std::fs::read(&path).with_context(|| format!("reading document {path}"))?,
        ));
    }
    let fields = a
        .fields
        .iter()
        .map(|f| split_pair(f, "--field"))
        .collect::<Result<Vec<_>>>()?;
    let input = CaptureInput {
        operator: a.operator,
        village: a.village,
        gps,
        service: a.service,
        full_name: a.name,
        nik: a.nik,
        date_of_birth: a.dob,
        sex: a.sex,
        address: a.address,
        phone: a.phone,
        fields,
        photo,
        documents,
    };
    let mut store = Store::open(&cfg.db_path())?;
    let receipt = capture::capture(&mut store, &catalogue, &cfg.capture_settings(), input)?;
    if a.quiet {
        println!("{}", receipt.tracking_number());
    } else {
        let name = catalogue
            .service(&receipt.application.service)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        print!("{}", receipt.render(&name));
    }
    Ok(())
}

fn status_cmd(cfg: &BusConfig, list: usize, waiting: bool) -> Result<()> {
    let store = Store::open(&cfg.db_path())?;
    let s = store.status()?;
    println!("Bus {}  ({})", cfg.bus_id, cfg.db_path().display());
    println!("Menunggu sinkron (waiting)     : {}", s.waiting());
    println!("  belum terkirim (queued)      : {}", s.queued);
    println!("  foto/dokumen menyusul        : {}", s.record_acked);
    println!("Diterima pusat (delivered)     : {}", s.delivered);
    println!("Ditolak pusat (rejected)       : {}", s.rejected);
    println!(
        "Data menunggu (bytes waiting)  : {}",
        human_bytes(s.bytes_waiting)
    );
    println!(
        "Tertua menunggu (oldest)       : {}",
        s.oldest_waiting
            .map_or("-".into(), |t| format!("{t} ({} lalu)", ago(t)))
    );
    println!(
        "Sinkron terakhir (last sync)   : {}",
        s.last_sync
            .map_or("belum pernah (never)".into(), |t| format!(
                "{t} ({} lalu)",
                ago(t)
            ))
    );
    if list > 0 {
        let rows = store.recent(list, waiting)?;
        if !rows.is_empty() {
            println!();
            for r in rows {
                let extra = r
                    .reject_reason
                    .map(|x| format!(" — {x}"))
                    .unwrap_or_default();
                println!(
                    "{}  {:<11} {:<28} {}{}",
                    r.id,
                    r.service,
                    truncate(&r.applicant, 28),
                    r.state.label_id(),
                    extra
                );
            }
        }
    }
    Ok(())
}

fn run_cmd(cfg: BusConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = tx.send(true);
        });
        bus_node::daemon::run(cfg, Arc::default(), rx).await?;
        Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn ago(t: keliling_shared::UnixMillis) -> String {
    let secs = (keliling_shared::UnixMillis::now().0 - t.0).max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s} detik"),
        s if s < 7200 => format!("{} menit", s / 60),
        s if s < 172_800 => format!("{} jam", s / 3600),
        s => format!("{} hari", s / 86_400),
    }
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b < 10 * 1024 => format!("{b} B"),
        b if b < 10 * 1024 * 1024 => format!("{} KiB", b / 1024),
        b => format!("{} MiB", b / (1024 * 1024)),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}
