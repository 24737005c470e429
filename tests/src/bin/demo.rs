//! `keliling-demo`: the whole data path on one machine, nothing to install.
//!
//! HQ with its embedded broker, and a few simulated buses. Each bus captures applications
//! with real ID photos (12 MP camera JPEGs with EXIF orientation and GPS, made from the
//! bundled public-domain portrait), while its link goes down and comes back through a
//! proxy; one bus is on a slow, 2G-like link. The demo ends when HQ has confirmed every
//! application, and checks as an auditor would that each arrived exactly once with
//! identical photo hashes.

use anyhow::{Context, Result};
use bus_node::capture::capture;
use bus_node::store::Store;
use bus_node::sync::SyncMetrics;
use bus_node::BusConfig;
use clap::Parser;
use hq_sync::ingest::IngestMetrics;
use hq_sync::pki::{BundleOptions, Pki};
use hq_sync::HqConfig;
use keliling_e2e::harness::assert_exactly_once;
use keliling_e2e::ports::free_port;
use keliling_e2e::proxy::{LinkProxy, Shape};
use keliling_e2e::sample;
use keliling_shared::tls::ClientTlsFiles;
use keliling_shared::{BusId, Catalogue};
use rand::Rng;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "keliling-demo",
    about = "HQ, its embedded broker and simulated buses on flaky links"
)]
struct Args {
    /// Simulated buses.
    #[arg(long, default_value_t = 3)]
    buses: usize,
    /// Applications each bus captures.
    #[arg(long, default_value_t = 6)]
    apps: usize,
    /// Where the demo keeps its databases and photos (wiped at start).
    #[arg(long, default_value = "var/demo")]
    data: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Where the HQ console listens at the end (a free port when this one is taken).
    #[arg(long, default_value = "127.0.0.1:8080")]
    console: std::net::SocketAddr,
    /// Where the first bus's station listens (a free port when this one is taken).
    #[arg(long, default_value = "127.0.0.1:8090")]
    station: std::net::SocketAddr,
    /// End after the exactly-once check instead of leaving HQ, the buses and the console
    /// running until Ctrl-C.
    #[arg(long)]
    exit: bool,
}

const DEMO_OPERATOR: &str = "Petugas Demo";

struct Bus {
    cfg: BusConfig,
    proxy: Arc<LinkProxy>,
    metrics: Arc<SyncMetrics>,
    captured: Arc<AtomicUsize>,
    capturing: Arc<AtomicBool>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,rumqttd=off".into()),
        )
        .init();
    if args.data.exists() {
        std::fs::remove_dir_all(&args.data)
            .with_context(|| format!("wiping {}", args.data.display()))?;
    }
    let started = Instant::now();
    let port = free_port()?;
    // The fleet PKI, as `hq-sync pki init` makes it: every link below is TLS 1.3 with a
    // client certificate, as in production.
    let pki = Pki::init(&args.data.join("pki"), &["127.0.0.1".into()])?;
    let mut hq_cfg = HqConfig::for_dir(args.data.join("hq"), port);
    hq_cfg.pki.dir = pki.dir().to_owned();
    // HQ publishes a city's one-stop service hall (200 services, 13 agencies) to the
    // fleet; the buses start with the starter catalogue and switch when they hear it.
    let city = args.data.join("services-city.toml");
    std::fs::write(&city, include_str!("../../../config/services-city.toml"))?;
    hq_cfg.catalogue = Some(city);
    hq_sync::broker::start(
        ([127, 0, 0, 1], port).into(),
        hq_cfg.embedded_security(),
        hq_sync::broker::Exposure::LoopbackOnly,
    )?;
    println!("HQ: fleet PKI in {}", pki.dir().display());
    println!("HQ: embedded MQTT broker on 127.0.0.1:{port} (TLS 1.3, client certificates)");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let hq_dir = args.data.join("hq");
    let hq_metrics = Arc::new(IngestMetrics::default());
    let console_cfg = hq_cfg.clone();
    let hq = tokio::spawn(hq_sync::ingest::run(
        hq_cfg,
        hq_metrics.clone(),
        stop_rx.clone(),
    ));
    println!("HQ: ingest running, data in {}; publishing the service catalogue (200 services, 13 agencies) to the fleet", hq_dir.display());

    let portrait = Arc::new(keliling_photo::fixtures::load_portrait()?);
    let station_pin = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32));
    let station_pin = if bus_node::operators::Pin::parse_new(&station_pin).is_ok() {
        station_pin
    } else {
        "250813".to_owned()
    };
    let mut buses = Vec::new();
    for b in 0..args.buses {
        let id = BusId::parse(&format!("bus-ntt-{:02}", b + 1))?;
        let proxy = Arc::new(LinkProxy::start(([127, 0, 0, 1], port).into()).await?);
        if b == 0 {
            // Rural 2G: about 100 kbit/s and 400 ms round trip.
            proxy.set_shape(Some(Shape {
                rate_bytes_per_sec: 12_500,
                latency: Duration::from_millis(400),
            }));
        }
        let mut cfg = BusConfig::for_bus(
            id.clone(),
            args.data.join(id.as_str()),
            "127.0.0.1",
            proxy.port(),
        );
        let bundle = pki.provision_bus(
            &id,
            &BundleOptions {
                broker_host: "127.0.0.1".into(),
                broker_port: port,
                install_dir: pki.bundle_dir(&id),
                data_dir: cfg.data_dir.clone(),
                renew: false,
            },
        )?;
        cfg.broker.tls = ClientTlsFiles {
            ca: Some(bundle.ca),
            cert: Some(bundle.cert),
            key: Some(bundle.key),
        };
        cfg.trust.hq_keys = Some(bundle.hq_keys);
        cfg.sync.resend_after_ms = 8_000;
        cfg.sync.heartbeat_secs = 5;
        cfg.sync.backoff_min_ms = 200;
        cfg.sync.backoff_max_ms = 3_000;
        // `bus-node init`, with the test passphrase and cheap key derivation (a demo).
        let vault = keliling_e2e::harness::init_bus_store(&cfg.db_path())?;
        if b == 0 {
            // The first bus's station, with an operator whose PIN the end prints.
            cfg.station.enabled = true;
            cfg.station.listen = if std::net::TcpListener::bind(args.station).is_ok() {
                args.station
            } else {
                ([127, 0, 0, 1], keliling_e2e::ports::free_port()?).into()
            };
            let mut store = bus_node::Store::open(&cfg.db_path())?;
            store.add_operator(
                DEMO_OPERATOR,
                &bus_node::operators::Pin::parse_new(&station_pin)?,
            )?;
        }
        let metrics = Arc::new(SyncMetrics::default());
        tokio::spawn(bus_node::daemon::run(
            cfg.clone(),
            vault,
            metrics.clone(),
            stop_rx.clone(),
        ));
        println!(
            "{id}: bus node running{}",
            if b == 0 {
                " (2G link: 100 kbit/s, 400 ms RTT)"
            } else {
                ""
            }
        );
        buses.push(Bus {
            cfg,
            proxy,
            metrics,
            captured: Arc::default(),
            capturing: Arc::new(AtomicBool::new(true)),
        });
    }

    // Operators capture: one citizen every second or two, 12 MP photos from the camera.
    for (b, bus) in buses.iter().enumerate() {
        let (cfg, portrait, captured, capturing, apps) = (
            bus.cfg.clone(),
            portrait.clone(),
            bus.captured.clone(),
            bus.capturing.clone(),
            args.apps,
        );
        tokio::task::spawn_blocking(move || -> Result<()> {
            let catalogue = Catalogue::builtin();
            let mut store = Store::open(&cfg.db_path())?;
            for i in 0..apps {
                let n = b * 1000 + i;
                let camera = keliling_photo::fixtures::camera_jpeg(
                    &sample::portrait_variant(&portrait, n),
                    4000,
                    3000,
                    6,
                    true,
                    90,
                )?;
                // Every fourth citizen updates a family card (a scan, Dukcapil's); the
                // others renew a driving licence (a photo, Polri's).
                let input = if i % 4 == 3 {
                    sample::kk_update(n, sample::document_scan(n as u64, 60_000)?)
                } else {
                    sample::sim_renewal(n, camera)
                };
                let receipt = capture(&mut store, &catalogue, &cfg.capture_settings(), input)?;
                println!(
                    "{}: saved {} for {} (photo {} bytes{}) ",
                    cfg.bus_id,
                    receipt.tracking_number(),
                    receipt.application.applicant.full_name,
                    receipt
                        .application
                        .attachments
                        .first()
                        .map_or(0, |a| a.size),
                    receipt
                        .photo_advice
                        .iter()
                        .map(|a| format!("; advice: {}", a.message_en()))
                        .collect::<String>()
                );
                captured.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(
                    rand::thread_rng().gen_range(500..1500),
                ));
            }
            capturing.store(false, Ordering::Relaxed);
            Ok(())
        });
    }

    // The road: links drop and come back.
    let flaky: Vec<Arc<LinkProxy>> = buses.iter().map(|b| b.proxy.clone()).collect();
    let road = tokio::spawn(async move {
        loop {
            let (up, i, down) = {
                let mut rng = rand::thread_rng();
                (
                    rng.gen_range(3000..7000),
                    rng.gen_range(0..flaky.len()),
                    rng.gen_range(2000..5000),
                )
            };
            tokio::time::sleep(Duration::from_millis(up)).await;
            flaky[i].cut();
            tokio::time::sleep(Duration::from_millis(down)).await;
            flaky[i].restore();
        }
    });

    let total = args.buses * args.apps;
    let deadline = started + Duration::from_secs(args.timeout_secs);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut line = format!("[{:>4}s]", started.elapsed().as_secs());
        let mut delivered = 0;
        for bus in &buses {
            let s = Store::open(&bus.cfg.db_path())?.status()?;
            delivered += s.delivered;
            line.push_str(&format!(
                "  {} {} saved {} waiting {} delivered {}",
                bus.cfg.bus_id,
                if bus.proxy.is_up() && bus.metrics.connected.load(Ordering::Relaxed) {
                    "▲"
                } else {
                    "▼"
                },
                bus.captured.load(Ordering::Relaxed),
                s.waiting(),
                s.delivered
            ));
        }
        println!(
            "{line}  | HQ complete {}",
            keliling_e2e::harness::hq_store(&hq_dir)?.counts()?.complete
        );
        let done_capturing = buses.iter().all(|b| !b.capturing.load(Ordering::Relaxed));
        if done_capturing && delivered as usize == total {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("demo did not finish in {} s", args.timeout_secs);
        }
    }
    road.abort();
    let dbs: Vec<PathBuf> = buses.iter().map(|b| b.cfg.db_path()).collect();
    let db_refs: Vec<&std::path::Path> = dbs.iter().map(PathBuf::as_path).collect();
    assert_exactly_once(&db_refs, &hq_dir, total)?;
    let cuts: u64 = buses.iter().map(|b| b.proxy.cuts()).sum();
    let wire: u64 = buses.iter().map(|b| b.proxy.bytes_up()).sum();
    println!();
    println!(
        "Done in {:.1} s: {total} applications with 12 MP photos captured on {} buses,",
        started.elapsed().as_secs_f64(),
        args.buses
    );
    println!(
        "  {cuts} link cuts survived, {} KiB sent up the links ({} per application),",
        wire / 1024,
        wire / total as u64
    );
    println!(
        "  HQ: {} records, {} photos verified, {} duplicate chunks ignored, {} quarantined.",
        IngestMetrics::get(&hq_metrics.records_new),
        IngestMetrics::get(&hq_metrics.blobs_stored),
        IngestMetrics::get(&hq_metrics.chunks_duplicate),
        IngestMetrics::get(&hq_metrics.quarantined)
    );
    println!(
        "  Exactly once: every application is at HQ once, complete, with identical photo hashes."
    );
    println!();
    println!(
        "Look around:  cargo run --release -p hq-sync -- status   (with HQ_SYNC__DATA_DIR={})",
        hq_dir.display()
    );
    println!("              cargo run --release -p bus-node -- status  (with BUS_NODE__BUS_ID=bus-ntt-01 BUS_NODE__DATA_DIR={})", args.data.join("bus-ntt-01").display());
    if !args.exit {
        let station = &buses[0].cfg.station.listen;
        println!();
        println!("Bus station of {}: http://{station}/", buses[0].cfg.bus_id);
        println!("  sign in as  {DEMO_OPERATOR}  with PIN  {station_pin}");
        // A camera-like JPEG to choose as the citizen's photo (a phone's would do too).
        let example = args.data.join("contoh-foto-kamera.jpg");
        std::fs::write(&example, keliling_e2e::sample::camera_photo(&portrait, 99)?)?;
        println!("  New application → type \"sim\" → Perpanjangan SIM; for the photo choose");
        println!("  {} (or any camera JPEG).", example.display());
        println!("  This bus is on the 2G link: watch the banner while it sends.");
        serve_console(console_cfg, &args, &hq_dir, stop_rx.clone()).await?;
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), hq).await;
    Ok(())
}

/// The end of the demo: HQ's console on the demo's data, with a fresh supervisor login,
/// while HQ and the buses keep running (decisions made now reach the buses), until Ctrl-C.
async fn serve_console(
    mut cfg: HqConfig,
    args: &Args,
    hq_dir: &std::path::Path,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    use hq_sync::staff::{Lang, NewStaff, Password, Role, Username};
    let password: String = {
        // No look-alike characters: it is read off a terminal and typed.
        const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
        let mut rng = rand::thread_rng();
        (0..14)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
            .collect()
    };
    let mut store = keliling_e2e::harness::hq_store(hq_dir)?;
    let agencies: Vec<String> = cfg
        .catalogue()?
        .agencies
        .iter()
        .map(|a| a.code.clone())
        .collect();
    store.add_staff(
        &NewStaff {
            username: Username::parse("demo")?,
            display_name: "Demo Supervisor".into(),
            role: Role::Supervisor,
            agencies: agencies.clone(),
            language: Lang::Id,
            password: Password::new(password.clone()),
        },
        &agencies,
        keliling_shared::UnixMillis::now(),
    )?;
    cfg.console.listen = args.console;
    let server = match hq_sync::console::Server::bind(&cfg).await {
        Ok(s) => s,
        Err(hq_sync::console::ConsoleError::Listen { .. }) => {
            cfg.console.listen = ([127, 0, 0, 1], 0).into();
            hq_sync::console::Server::bind(&cfg).await?
        }
        Err(e) => return Err(e.into()),
    };
    println!();
    println!("HQ console: {}", server.url());
    println!("  sign in as  demo  /  {password}   (a supervisor of every agency)");
    println!("  Decide an application there: the bus gets it within seconds");
    println!("  (cargo run --release -p bus-node -- status, as above, lists it).");
    println!("  HQ, the buses and the console keep running; Ctrl-C stops them.");
    let console = tokio::spawn(server.run(stop));
    tokio::signal::ctrl_c().await?;
    println!("Stopping.");
    console.abort();
    Ok(())
}
