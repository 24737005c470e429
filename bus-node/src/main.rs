//! `bus-node`: the operator's and the daemon's command line. Thin: everything lives in
//! the `bus_node` library.

use anyhow::{bail, Context, Result};
use bus_node::capture::{self, CaptureInput};
use bus_node::store::StoreError;
use bus_node::{BusConfig, KdfParams, Passphrase, Store, UnlockedVault};
use clap::{Parser, Subcommand};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The passphrase for automation and tests. Weaker than the prompt or stdin: the
/// environment of a process can be read by its user (`/proc/PID/environ`) and ends up in
/// unit files and shell history. `bus-node` removes it from its own environment at start.
const PASSPHRASE_ENV: &str = "BUS_NODE_PASSPHRASE";
/// The new passphrase for `bus-node passwd`, likewise.
const NEW_PASSPHRASE_ENV: &str = "BUS_NODE_NEW_PASSPHRASE";

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
    /// First setup of a new bus: make its key pair, locked by a passphrase (asked twice).
    Init(PassArgs),
    /// Take an application (saved durably and encrypted before the receipt is printed).
    /// Needs no passphrase.
    Capture(Box<CaptureArgs>),
    /// What is still waiting to sync.
    Status {
        /// Also list this many recent applications.
        #[arg(long, default_value_t = 10)]
        list: usize,
        /// Only those not yet delivered.
        #[arg(long)]
        waiting: bool,
        /// Also show the applicants' names (asks for the passphrase).
        #[arg(long)]
        names: bool,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// Run the sync daemon until Ctrl-C / SIGTERM (asks for the passphrase: start of shift).
    Run(PassArgs),
    /// Change the passphrase (the key and the data stay as they are).
    Passwd(PassArgs),
    /// The station's operators: a name and a PIN each (asked twice on the terminal, or
    /// one line on stdin with --pin-stdin).
    #[command(subcommand)]
    Operator(OperatorCmd),
}

#[derive(Subcommand)]
enum OperatorCmd {
    /// Add an operator.
    Add {
        name: String,
        #[arg(long)]
        pin_stdin: bool,
    },
    /// Set a new PIN (lifts a lockout).
    Pin {
        name: String,
        #[arg(long)]
        pin_stdin: bool,
    },
    /// Disable an operator (they can no longer sign in; their applications stay theirs).
    Disable { name: String },
    /// Enable a disabled operator again.
    Enable { name: String },
    /// List the operators.
    List,
}

/// Where the passphrase comes from: the terminal (default), one line on stdin
/// (`--passphrase-stdin`, e.g. from `systemd-ask-password`), or `BUS_NODE_PASSPHRASE`
/// (automation and tests; weaker, see `PASSPHRASE_ENV`).
#[derive(clap::Args, Clone, Copy)]
struct PassArgs {
    /// Read the passphrase as one line from stdin (for `passwd`: the old, then the new).
    #[arg(long)]
    passphrase_stdin: bool,
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
    // Taken out of the environment before anything else runs (no threads yet), so no
    // child process and no later reader of the environment sees it.
    let from_env = take_env(PASSPHRASE_ENV);
    let new_from_env = take_env(NEW_PASSPHRASE_ENV);
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = BusConfig::load(cli.config.as_deref()).context("loading the bus config")?;
    let mut asker = Asker {
        from_env,
        new_from_env,
        stdin: false,
    };
    match cli.command {
        Command::Init(p) => init_cmd(&cfg, asker.with(p)),
        Command::Capture(args) => capture_cmd(&cfg, *args),
        Command::Status {
            list,
            waiting,
            names,
            pass,
        } => {
            asker.stdin = pass.passphrase_stdin;
            status_cmd(&cfg, list, waiting, names.then_some(&mut asker))
        }
        Command::Run(p) => run_cmd(cfg, asker.with(p)),
        Command::Passwd(p) => passwd_cmd(&cfg, asker.with(p)),
        Command::Operator(c) => operator_cmd(&cfg, c),
    }
}

fn take_env(name: &str) -> Option<Passphrase> {
    let v = std::env::var_os(name)?;
    std::env::remove_var(name);
    Some(Passphrase::new(v.to_string_lossy().into_owned()))
}

/// Asks for passphrases: stdin if told, else the environment, else the terminal.
struct Asker {
    from_env: Option<Passphrase>,
    new_from_env: Option<Passphrase>,
    stdin: bool,
}

impl Asker {
    fn with(mut self, p: PassArgs) -> Asker {
        self.stdin = p.passphrase_stdin;
        self
    }

    fn stdin_line(&self) -> Result<Passphrase> {
        // Room for any sane passphrase, so the buffer is not reallocated (and an
        // unzeroized copy left behind) while reading.
        let mut line = String::with_capacity(1024);
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the passphrase from stdin")?;
        let p = Passphrase::new(line);
        let trimmed = p.trim_line_end();
        if trimmed.is_empty() {
            bail!("tidak ada kata sandi di stdin (no passphrase on stdin)");
        }
        Ok(trimmed)
    }

    fn tty(prompt: &str) -> Result<Passphrase> {
        use std::io::IsTerminal;
        // Not prompted on a terminal the process was not started from (a service, a
        // script with its input redirected): it would wait there for nobody.
        if !std::io::stdin().is_terminal() {
            bail!(
                "tidak ada terminal untuk menanyakan kata sandi: pakai --passphrase-stdin atau \
                 BUS_NODE_PASSPHRASE (no terminal to ask for the passphrase: use \
                 --passphrase-stdin or BUS_NODE_PASSPHRASE)"
            );
        }
        rpassword::prompt_password(prompt)
            .map(Passphrase::new)
            .context(
                "tidak ada terminal untuk menanyakan kata sandi: pakai --passphrase-stdin atau \
             BUS_NODE_PASSPHRASE (no terminal to ask for the passphrase: use \
             --passphrase-stdin or BUS_NODE_PASSPHRASE)",
            )
    }

    /// The current passphrase.
    fn current(&mut self, prompt: &str) -> Result<Passphrase> {
        if self.stdin {
            return self.stdin_line();
        }
        if let Some(p) = self.from_env.take() {
            return Ok(p);
        }
        Self::tty(prompt)
    }

    /// A new passphrase: typed twice on a terminal.
    fn new_one(&mut self, env: bool) -> Result<Passphrase> {
        if self.stdin {
            return self.stdin_line();
        }
        let from_env = if env {
            self.from_env.take()
        } else {
            self.new_from_env.take()
        };
        if let Some(p) = from_env {
            return Ok(p);
        }
        let first = Self::tty("Kata sandi baru (new passphrase): ")?;
        first.check_new()?;
        let again = Self::tty("Ulangi kata sandi (repeat it): ")?;
        Ok(first.confirm(&again)?)
    }
}

/// Opens the store of a bus that `bus-node init` has set up, or says to run it.
fn open_initialised(cfg: &BusConfig) -> Result<Store> {
    let store = Store::open(&cfg.db_path())?;
    if !store.is_initialised()? {
        return Err(StoreError::NotInitialised.into());
    }
    Ok(store)
}

fn unlock(cfg: &BusConfig, asker: &mut Asker) -> Result<(Store, UnlockedVault)> {
    let store = open_initialised(cfg)?;
    let pass = asker.current(&format!("Kata sandi bus {} (passphrase): ", cfg.bus_id))?;
    let vault = store.unlock(&pass)?;
    Ok((store, vault))
}

fn init_cmd(cfg: &BusConfig, mut asker: Asker) -> Result<()> {
    let mut store = Store::open(&cfg.db_path())?;
    if store.is_initialised()? {
        return Err(StoreError::AlreadyInitialised.into());
    }
    println!(
        "Menyiapkan bus {} ({}): kunci baru, dikunci dengan kata sandi.",
        cfg.bus_id,
        cfg.db_path().display()
    );
    println!(
        "Setting up bus {}: a new key, locked with a passphrase of at least {} characters.",
        cfg.bus_id,
        bus_node::vault::MIN_PASSPHRASE_CHARS
    );
    let pass = asker.new_one(true)?;
    let vault = store.init_vault(&pass, KdfParams::DEFAULT)?;
    println!(
        "Siap (ready). Kunci (key) {}. Tanpa kata sandi ini data di bus tidak dapat dibaca: \
         simpan di tempat aman (without this passphrase the data on the bus cannot be read: keep it safe).",
        vault.sealing_key().fingerprint()
    );
    Ok(())
}

fn passwd_cmd(cfg: &BusConfig, mut asker: Asker) -> Result<()> {
    let mut store = open_initialised(cfg)?;
    let old = asker.current("Kata sandi lama (current passphrase): ")?;
    // Checked first, so a typo is not followed by typing the new one twice.
    store.unlock(&old)?;
    let new = asker.new_one(false)?;
    store.change_passphrase(&old, &new, KdfParams::DEFAULT)?;
    println!("Kata sandi diganti (passphrase changed).");
    Ok(())
}

/// A new PIN: one line on stdin, or typed twice on the terminal.
fn new_pin(stdin: bool) -> Result<bus_node::operators::Pin> {
    use bus_node::operators::Pin;
    if stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the PIN from stdin")?;
        return Ok(Pin::parse_new(&line)?);
    }
    let first = Asker::tty("PIN baru, 4-8 angka (new PIN, 4-8 digits): ")?;
    let pin = Pin::parse_new(first.as_str_for_pin())?;
    let again = Asker::tty("Ulangi PIN (repeat it): ")?;
    if again.as_str_for_pin().trim() != first.as_str_for_pin().trim() {
        bail!("PIN tidak sama (the PINs differ)");
    }
    Ok(pin)
}

fn operator_cmd(cfg: &BusConfig, c: OperatorCmd) -> Result<()> {
    let mut store = open_initialised(cfg)?;
    match c {
        OperatorCmd::Add { name, pin_stdin } => {
            let pin = new_pin(pin_stdin)?;
            let o = store.add_operator(&name, &pin)?;
            println!("Petugas ditambahkan (operator added): {}", o.name.as_str());
        }
        OperatorCmd::Pin { name, pin_stdin } => {
            let pin = new_pin(pin_stdin)?;
            store.set_operator_pin(&name, &pin)?;
            println!("PIN diganti (PIN changed): {}", name.trim());
        }
        OperatorCmd::Disable { name } => {
            store.set_operator_disabled(&name, true)?;
            println!("Petugas dinonaktifkan (operator disabled): {}", name.trim());
        }
        OperatorCmd::Enable { name } => {
            store.set_operator_disabled(&name, false)?;
            println!("Petugas diaktifkan (operator enabled): {}", name.trim());
        }
        OperatorCmd::List => {
            let now = keliling_shared::UnixMillis::now();
            for o in store.operators(false)? {
                let state = if o.disabled {
                    "nonaktif (disabled)".to_owned()
                } else if o.locked_until.is_some_and(|u| u > now) {
                    "terkunci (locked)".to_owned()
                } else {
                    "aktif (active)".to_owned()
                };
                println!("{:<40} {state}  sejak {}", o.name.as_str(), o.created_at);
            }
        }
    }
    Ok(())
}

fn split_pair(s: &str, what: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
        None => bail!("{what} must be NAME=VALUE, got {s:?}"),
    }
}

fn capture_cmd(cfg: &BusConfig, a: CaptureArgs) -> Result<()> {
    // The newest the bus has: its own, or HQ's from the last sync.
    let catalogue = bus_node::catalogues::Catalogues::for_bus(cfg)?.current();
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
        ..Default::default()
    };
    let mut store = open_initialised(cfg)?;
    // Once the bus has operators, an application names one of them.
    let operators = store.operators(true)?;
    if !operators.is_empty()
        && !operators
            .iter()
            .any(|o| o.name.as_str().to_lowercase() == input.operator.trim().to_lowercase())
    {
        bail!(
            "--operator {:?} bukan petugas aktif bus ini (is not an active operator of this bus; see `bus-node operator list`)",
            input.operator
        );
    }
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

fn status_cmd(
    cfg: &BusConfig,
    list: usize,
    waiting: bool,
    names: Option<&mut Asker>,
) -> Result<()> {
    let (store, vault) = match names {
        Some(asker) => {
            let (store, vault) = unlock(cfg, asker)?;
            (store, Some(vault))
        }
        None => (Store::open(&cfg.db_path())?, None),
    };
    let s = store.status()?;
    println!("Bus {}  ({})", cfg.bus_id, cfg.db_path().display());
    if !store.is_initialised()? {
        println!(
            "BELUM DISIAPKAN: jalankan `bus-node init` (not initialised: run `bus-node init`)"
        );
    }
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
    let catalogue = bus_node::catalogues::Catalogues::for_bus(cfg)?.current();
    let held = store.fleet_message_version(keliling_shared::wire::FLEET_CATALOGUE)?;
    let from = match held {
        Some(v) if v == catalogue.version && v > cfg.catalogue()?.version => {
            "dari pusat (from HQ)".to_owned()
        }
        Some(v) if v > catalogue.version => format!(
            "milik bus; versi {v} dari pusat tidak dapat diperiksa tanpa trust.hq_keys \
             (the bus's own: HQ's version {v} cannot be checked without trust.hq_keys)"
        ),
        _ => "milik bus (the bus's own)".to_owned(),
    };
    println!(
        "Katalog layanan (catalogue)    : versi {}, {} layanan, {from}",
        catalogue.version,
        catalogue.services.len()
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
                // Names are stored encrypted: shown only with the passphrase (--names).
                let name = match &vault {
                    Some(v) => match store.application(&r.id, v) {
                        Ok(Some(app)) => {
                            format!(" {:<28}", truncate(app.applicant.full_name.as_str(), 28))
                        }
                        Ok(None) => format!(" {:<28}", "-"),
                        Err(e) => format!(" {:<28}", truncate(&format!("({e})"), 28)),
                    },
                    None => String::new(),
                };
                println!(
                    "{}  {:<11} {}{} {}{}",
                    r.id,
                    r.service,
                    r.captured_at,
                    name,
                    r.state.label_id(),
                    extra
                );
            }
        }
    }
    let decisions = store.decisions(list.max(20))?;
    if !decisions.is_empty() {
        println!();
        println!("Keputusan pusat (HQ's decisions), terbaru dulu:");
        for d in decisions {
            let label = match d.kind.as_str() {
                "approved" => "DISETUJUI (approved)",
                "rejected" => "DITOLAK (rejected)",
                _ => "PERLU INFO TAMBAHAN (more information requested)",
            };
            let changed = if d.versions > 1 {
                format!(" [versi {} dari {} (changed)]", d.version, d.versions)
            } else {
                String::new()
            };
            println!(
                "{}  {label}  diputuskan {}{changed}",
                d.application, d.decided_at
            );
            // The reasons and messages are sealed: shown only with the passphrase.
            if let Some(v) = &vault {
                match store.decision(&d.application, d.version, v) {
                    Ok(Some(full)) => {
                        for line in decision_lines(&full.outcome) {
                            println!("    {line}");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => println!("    ({e})"),
                }
            }
        }
    }
    Ok(())
}

/// What to tell the citizen, one line each, safe for a terminal.
fn decision_lines(o: &keliling_shared::decision::Outcome) -> Vec<String> {
    use keliling_shared::decision::{Need, Outcome};
    let p = |t: &keliling_shared::Text| keliling_shared::text::printable(t.as_str());
    let mut out = Vec::new();
    match o {
        Outcome::Approved { note } => {
            if let Some(n) = note {
                out.push(format!("catatan (note): {}", p(n)));
            }
        }
        Outcome::Rejected { code, reason, note } => {
            out.push(format!("alasan (reason): {} [{code}]", p(reason)));
            if let Some(n) = note {
                out.push(format!("catatan (note): {}", p(n)));
            }
        }
        Outcome::InfoRequested { message, needs } => {
            out.push(format!("pesan (message): {}", p(message)));
            for n in needs {
                out.push(match n {
                    Need::NewPhoto => "perlu: foto baru (a new photo)".to_owned(),
                    Need::Document(d) => format!("perlu dokumen (document): {}", d.as_str()),
                });
            }
        }
    }
    out
}

fn run_cmd(cfg: BusConfig, mut asker: Asker) -> Result<()> {
    // Unlocked before anything starts, so a wrong passphrase is an immediate, clear exit.
    let (store, vault) = unlock(&cfg, &mut asker)?;
    drop(store);
    let vault = Arc::new(vault);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let db = cfg.db_path();
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            until_stop_is_meant(&db).await;
            tracing::info!("shutting down");
            let _ = tx.send(true);
        });
        bus_node::daemon::run(cfg, vault, Arc::default(), rx).await?;
        Ok(())
    })
}

/// How many applications HQ has not confirmed yet (0 when the store cannot say).
async fn unsynced(db: &std::path::Path) -> u64 {
    let db = db.to_owned();
    tokio::task::spawn_blocking(move || Store::open(&db).and_then(|s| s.status()))
        .await
        .ok()
        .and_then(Result::ok)
        .map_or(0, |s| s.waiting())
}

/// Returns when the node should stop. Ctrl-C with applications not yet at HQ warns and
/// asks for a second Ctrl-C within 10 s (the operator may not know the bus still has
/// work to do at the next signal); SIGTERM (a service manager) stops at once, logged.
async fn until_stop_is_meant(db: &std::path::Path) {
    loop {
        let interrupt = shutdown_signal().await;
        let waiting = unsynced(db).await;
        if waiting == 0 {
            return;
        }
        // Only someone at the terminal is asked again; a script's SIGINT stops at once.
        let at_terminal = {
            use std::io::IsTerminal;
            std::io::stdin().is_terminal()
        };
        if !interrupt || !at_terminal {
            tracing::warn!(waiting, "stopping with applications not yet at HQ: they are safe on the bus and sync at the next start");
            return;
        }
        eprintln!(
            "PERHATIAN: {waiting} permohonan belum diterima pusat (data aman di bus dan terkirim saat \
             bus node jalan lagi). Tekan Ctrl-C lagi dalam 10 detik untuk tetap berhenti.\n\
             WARNING: {waiting} applications are not at HQ yet (safe on the bus; they sync when the \
             node runs again). Press Ctrl-C again within 10 s to stop anyway."
        );
        match tokio::time::timeout(Duration::from_secs(10), tokio::signal::ctrl_c()).await {
            Ok(_) => {
                tracing::warn!(
                    waiting,
                    "stopped by the operator with applications not yet at HQ"
                );
                return;
            }
            Err(_) => eprintln!("Tetap berjalan (still running)."),
        }
    }
}

/// Waits for Ctrl-C (true) or SIGTERM (false).
async fn shutdown_signal() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return true,
                _ = term.recv() => return false,
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    true
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
