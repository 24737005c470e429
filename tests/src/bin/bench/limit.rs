//! HQ ingest at the disk's limit: how many applications with photos HQ makes durable per
//! second when the buses' side costs nothing, beside what the disk itself does in the same
//! run (fsyncs per second), with group commit on and off.
//!
//! The buses are loaders: each bus's messages (its records and its photos' chunks, as its
//! sync would send them) are encoded before the clock starts, and one MQTT client per bus,
//! with that bus's own certificate, publishes them at QoS 1 as fast as the broker takes
//! them. Each loader subscribes to its bus's down topic and counts HQ's `Delivered` acks
//! (signature checked): an application counts when HQ said, after its commit, that it
//! holds it whole. So the rate is HQ's durable rate, not the broker's.

use crate::brokers::{BenchBroker, Kind, Security};
use crate::bulk::Templates;
use crate::{Plan, Report};
use anyhow::{bail, Context, Result};
use keliling_e2e::harness::InProcessHq;
use keliling_e2e::mosquitto::Mosquitto;
use keliling_shared::mqtt::ClientOptions;
use keliling_shared::sign::VerifyingKeys;
use keliling_shared::tls::BrokerTransport;
use keliling_shared::topics::{Topics, UpKind};
use keliling_shared::wire::{chunk_range, Chunk, Down, DownEnvelope, Up, UpEnvelope};
use keliling_shared::BusId;
use rumqttc::{Event, Packet, QoS};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where HQ keeps what it ingests in a run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Store {
    /// SQLite, photos as files, uploads in progress in sled (one machine's default).
    SqliteFiles,
    /// SQLite with photos and uploads in progress in the database.
    SqliteBlobs,
    /// PostgreSQL, photos and uploads in progress in the database (several machines'
    /// default), on a fresh database of the server `KELILING_BENCH_PG_URL` names.
    Postgres,
}

impl Store {
    fn label(self) -> &'static str {
        match self {
            Store::SqliteFiles => "SQLite, photo files, sled staging",
            Store::SqliteBlobs => "SQLite, photos and staging in the database",
            Store::Postgres => "PostgreSQL, photos and staging in the database",
        }
    }
    fn tag(self) -> &'static str {
        match self {
            Store::SqliteFiles => "sqlite-files",
            Store::SqliteBlobs => "sqlite-blobs",
            Store::Postgres => "postgres",
        }
    }
}

/// One value from `psql` on `url`.
fn psql(url: &str, sql: &str) -> Result<String> {
    let out = std::process::Command::new("psql")
        .args(["-XAtq", url, "-c", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Applications in each run.
const TOTAL: usize = 2000;
const CHUNK: u32 = 16 * 1024;

/// One bus's messages: its records, and its photos' chunks, sent (as its sync does) once
/// HQ has answered for the records: a broker keeps no order between topics, and a chunk
/// that arrives before its record is refused.
struct Load {
    bus: BusId,
    records: Vec<(String, Vec<u8>)>,
    chunks: Vec<(String, Vec<u8>)>,
}

impl Load {
    fn messages(&self) -> impl Iterator<Item = &(String, Vec<u8>)> {
        self.records.iter().chain(&self.chunks)
    }
}

fn build_loads(templates: &Templates, buses: usize, topics: &Topics) -> Result<Vec<Load>> {
    let per_bus = TOTAL / buses;
    let mut loads = Vec::with_capacity(buses);
    for b in 0..buses {
        let bus = BusId::parse(&format!("bus-limit-{:04}", b + 1))?;
        let mut records = Vec::new();
        let mut chunks = Vec::new();
        for i in 0..per_bus {
            let (app, blobs) = templates.copy(&bus, b * per_bus + i);
            let env = UpEnvelope::new(bus.clone(), Up::Record(Box::new(app)));
            records.push((topics.up(&bus, UpKind::Record), env.encode()?));
            for (att, bytes) in blobs {
                let count = (att.size as u32).div_ceil(CHUNK);
                for index in 0..count {
                    let range = chunk_range(att.size, CHUNK, index);
                    let c = Chunk {
                        blob: att.sha256,
                        total_size: att.size,
                        chunk_size: CHUNK,
                        index,
                        data: bytes[range.start as usize..range.end as usize].to_vec(),
                    };
                    let env = UpEnvelope::new(bus.clone(), Up::Chunk(c));
                    chunks.push((topics.up(&bus, UpKind::Chunk), env.encode()?));
                }
            }
        }
        loads.push(Load {
            bus,
            records,
            chunks,
        });
    }
    Ok(loads)
}

/// fsyncs per second of a 4 KiB overwrite in `dir`, for `secs` (what every durable commit
/// waits for), and of a new 60 KB file made durable as a photo is (write, fsync, rename,
/// directory fsync).
fn disk_limits(dir: &Path, secs: f64) -> Result<(f64, f64)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-probe");
    let f = std::fs::File::create(&path)?;
    let block = vec![7u8; 4096];
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < secs {
        use std::os::unix::fs::FileExt;
        f.write_at(&block, 0)?;
        f.sync_data()?;
        n += 1;
    }
    let fsyncs = n as f64 / t.elapsed().as_secs_f64();
    let photo = vec![9u8; 60_000];
    let d = std::fs::File::open(dir)?;
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < secs {
        let tmp = dir.join(format!("p{n}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&photo)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(format!("p{n}")))?;
        d.sync_all()?;
        n += 1;
    }
    let photos = n as f64 / t.elapsed().as_secs_f64();
    Ok((fsyncs, photos))
}

struct Outcome {
    secs: f64,
    /// CPU seconds of this process (HQ ingest and the loaders) and of the broker.
    cpu_secs: f64,
    broker_cpu_secs: Option<f64>,
    /// CPU seconds of the PostgreSQL server (its backends and background processes).
    pg_cpu_secs: Option<f64>,
    /// WAL PostgreSQL wrote during the run, and the run's tables at its end (bytes).
    pg_wal_bytes: Option<f64>,
    pg_tables: Option<String>,
    connect_secs: f64,
    messages: usize,
    bytes: u64,
}

async fn run_once(
    loads: &[Load],
    broker: &BenchBroker,
    dir: &Path,
    group_commit: bool,
    store: Store,
    workers: usize,
) -> Result<Outcome> {
    let mut cfg = broker.hq_config(&dir.join("hq"));
    cfg.ingest.group_commit = group_commit;
    let mut pg_url = None;
    match store {
        Store::SqliteFiles => cfg.store.blobs_in_database = Some(false),
        Store::SqliteBlobs => cfg.store.blobs_in_database = Some(true),
        Store::Postgres => {
            let admin = std::env::var("KELILING_BENCH_PG_URL")
                .context("KELILING_BENCH_PG_URL names the PostgreSQL server")?;
            let tag = format!("bench_{}", std::process::id());
            let at =
                tokio::task::block_in_place(|| hq_sync::testing::fresh_pg_database(&admin, &tag))?;
            if let hq_sync::store::StoreLocation::Postgres { url, .. } = at {
                pg_url = Some(url.clone());
                cfg.store.url = Some(url);
            }
            cfg.store.blobs_in_database = Some(true);
        }
    }
    // Many buses at once: their new records are not limited here.
    cfg.ingest.max_records_per_bus_per_day = u32::MAX;
    // Every bus provisioned (certificate, HQ's keys) before HQ starts.
    let bus_cfgs = tokio::task::block_in_place(|| {
        loads
            .iter()
            .map(|l| {
                broker.bus_config(
                    &l.bus,
                    dir.join("buses").join(l.bus.as_str()),
                    broker.port(),
                )
            })
            .collect::<Result<Vec<_>>>()
    })?;
    // Several workers share the store and split every kind of message (the store keeps
    // photos and uploads in progress: `[store] blobs_in_database`).
    let mut hqs = Vec::with_capacity(workers);
    for w in 1..=workers {
        let mut cfg = cfg.clone();
        if workers > 1 {
            let name = format!("hq-{w}");
            broker.provision_hq(&name).await?;
            cfg.ingest.worker_id = name;
            cfg.ingest.shared_group = Some("bench-share-group".into());
        }
        hqs.push(InProcessHq::spawn(cfg).await?);
    }
    let delivered = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    let topics = Topics::default();
    let mut clients = Vec::with_capacity(loads.len());
    let mut pollers = Vec::with_capacity(loads.len());
    for (load, bus_cfg) in loads.iter().zip(bus_cfgs) {
        let transport =
            BrokerTransport::resolve(&bus_cfg.broker.tls, bus_cfg.broker.insecure_plaintext)?;
        let (client, mut eventloop) = keliling_shared::mqtt::client(
            &bus_cfg.broker,
            transport,
            ClientOptions {
                client_id: load.bus.to_string(),
                clean_session: true,
                manual_acks: false,
                inflight: 128,
                request_channel_capacity: 256,
                default_connection_timeout_secs: 30,
                last_will: None,
            },
        );
        let keys = VerifyingKeys::parse(&std::fs::read_to_string(broker.hq_keys(&load.bus)?)?)?;
        let (d, c) = (delivered.clone(), connected.clone());
        let answered = Arc::new(AtomicU64::new(0));
        let a = answered.clone();
        let down = topics.down_filter(&load.bus);
        let sub = client.clone();
        pollers.push(tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = sub.try_subscribe(down.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        match DownEnvelope::decode_verified(&p.payload, &keys).map(|e| e.body) {
                            Ok(Down::Delivered { .. }) => {
                                d.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(Down::RecordAck { .. }) => {
                                a.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {}
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }));
        clients.push((client, answered));
    }
    // Every loader connected and subscribed before the clock starts.
    let t = Instant::now();
    while connected.load(Ordering::Relaxed) < loads.len() as u64 {
        if t.elapsed() > Duration::from_secs(120) {
            bail!(
                "only {} of {} loaders connected",
                connected.load(Ordering::Relaxed),
                loads.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_secs = t.elapsed().as_secs_f64();
    let cpu_before = crate::process_cpu_secs();
    let broker_cpu_before = broker.child_cpu_secs();
    let pg = store == Store::Postgres;
    let pg_cpu_before = keliling_e2e::procstat::cpu_secs_of_command("postgres");
    let wal_before = match &pg_url {
        Some(u) => Some(psql(u, "SELECT pg_current_wal_lsn()")?),
        None => None,
    };
    let started = Instant::now();
    let mut senders = Vec::with_capacity(loads.len());
    for (load, (client, answered)) in loads.iter().zip(&clients) {
        let (client, answered) = (client.clone(), answered.clone());
        let (records, chunks) = (load.records.clone(), load.chunks.clone());
        senders.push(tokio::spawn(async move {
            let n = records.len() as u64;
            for (topic, bytes) in records {
                client
                    .publish(topic, QoS::AtLeastOnce, false, bytes)
                    .await?;
            }
            while answered.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            for (topic, bytes) in chunks {
                client
                    .publish(topic, QoS::AtLeastOnce, false, bytes)
                    .await?;
            }
            Ok::<_, rumqttc::ClientError>(())
        }));
    }
    let total = (loads.len() * (TOTAL / loads.len())) as u64;
    let deadline = started + Duration::from_secs(300);
    while delivered.load(Ordering::Relaxed) < total {
        if Instant::now() > deadline {
            bail!(
                "timed out: {} of {total} delivered",
                delivered.load(Ordering::Relaxed)
            );
        }
        if hqs.iter().any(|hq| hq.task.is_finished()) {
            bail!("HQ ingest stopped");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_secs = crate::process_cpu_secs() - cpu_before;
    let broker_cpu_secs = broker
        .child_cpu_secs()
        .zip(broker_cpu_before)
        .map(|(a, b)| a - b);
    let pg_cpu_secs =
        pg.then(|| keliling_e2e::procstat::cpu_secs_of_command("postgres") - pg_cpu_before);
    let (pg_wal_bytes, pg_tables) = match (&pg_url, &wal_before) {
        (Some(u), Some(lsn)) => {
            let wal = psql(
                u,
                &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn}')"),
            )?;
            let tables = psql(
                u,
                "SELECT string_agg(relname || ' ' || pg_size_pretty(pg_total_relation_size(oid)), ', ' ORDER BY pg_total_relation_size(oid) DESC)
                 FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace AND pg_total_relation_size(oid) > 100000",
            )?;
            (wal.parse().ok(), Some(tables))
        }
        _ => (None, None),
    };
    for s in senders {
        s.abort();
    }
    for p in pollers {
        p.abort();
    }
    for hq in hqs {
        hq.shut_down().await;
    }
    Ok(Outcome {
        secs,
        cpu_secs,
        broker_cpu_secs,
        pg_cpu_secs,
        pg_wal_bytes,
        pg_tables,
        connect_secs,
        messages: loads.iter().map(|l| l.messages().count()).sum(),
        bytes: loads
            .iter()
            .flat_map(|l| l.messages().map(|(_, b)| b.len() as u64))
            .sum(),
    })
}

pub(crate) async fn bench_limit(plan: &Plan, scratch: &Path, report: &mut Report) -> Result<()> {
    let _ = plan;
    let dir = scratch.join("limit");
    let templates = tokio::task::block_in_place(|| {
        Templates::capture(20, &dir.join("templates")).context("template applications")
    })?;
    let (fsyncs, photos) = tokio::task::block_in_place(|| disk_limits(&dir.join("disk"), 2.0))?;
    report.add(
        "limit",
        "the disk's own limit, same run",
        format!("{fsyncs:.0} fsyncs/s"),
        format!(
            "a 4 KiB overwrite + fdatasync in a loop for 2 s in the scratch directory (what every durable commit waits for); a new 60 KB file made durable as a photo is (write, fsync, rename, directory fsync), one after another: {photos:.0} files/s"
        ),
    );
    let kinds: Vec<Kind> = match Mosquitto::require()? {
        Some(_) => vec![Kind::Mosquitto, Kind::Embedded],
        None => vec![Kind::Embedded],
    };
    let mut stores = vec![Store::SqliteFiles, Store::SqliteBlobs];
    match std::env::var("KELILING_BENCH_PG_URL") {
        Ok(_) => stores.push(Store::Postgres),
        Err(_) => eprintln!("[limit] KELILING_BENCH_PG_URL unset: no PostgreSQL runs"),
    }
    // The store's default with Mosquitto, every store beside it; the one-at-a-time
    // comparison and the embedded broker on the default store only.
    let mut runs = Vec::new();
    for kind in &kinds {
        for buses in [50, 1000] {
            if *kind == Kind::Embedded && buses == 1000 {
                // The embedded broker is the demo's and the tests'; a fleet runs Mosquitto.
                continue;
            }
            for &store in &stores {
                if store != Store::SqliteFiles && *kind != Kind::Mosquitto {
                    continue;
                }
                runs.push((*kind, buses, store, true, 1));
                if store == Store::SqliteFiles {
                    runs.push((*kind, buses, store, false, 1));
                }
                if store != Store::SqliteFiles && *kind == Kind::Mosquitto && buses == 50 {
                    // Workers sharing the store, on the same two cores.
                    runs.push((*kind, buses, store, true, 2));
                    runs.push((*kind, buses, store, true, 3));
                }
            }
        }
    }
    for (kind, buses, store, group_commit, workers) in runs {
        let topics = Topics::default();
        let loads = tokio::task::block_in_place(|| build_loads(&templates, buses, &topics))?;
        let run = dir.join(format!(
            "{}-{buses}-{}-{}-{workers}",
            kind.label().split_whitespace().next().unwrap_or("broker"),
            store.tag(),
            if group_commit { "group" } else { "single" }
        ));
        let broker = BenchBroker::start(kind, Security::MutualTls, &run.join("broker")).await?;
        let o = run_once(&loads, &broker, &run, group_commit, store, workers).await?;
        let rate = TOTAL as f64 / o.secs;
        let mode = match (group_commit, workers) {
            (true, 1) => "group commit".to_owned(),
            (true, n) => format!("group commit, {n} workers"),
            (false, _) => "a commit and a photo at a time".to_owned(),
        };
        eprintln!(
            "[limit] {}, {buses} buses, {}, {mode}: {rate:.0} apps/s",
            kind.label(),
            store.label()
        );
        report.add(
            "limit",
            format!(
                "applications made durable per second, {buses} buses, {}, mTLS, {}, {mode}",
                kind.label(),
                store.label()
            ),
            format!("{rate:.0} apps/s"),
            format!(
                "{TOTAL} applications (record + its own ~58 KiB ID photo in {} KiB chunks), {} messages, {:.1} MB, published at QoS 1 by {buses} loaders (each its bus's certificate, all connected in {:.1} s before the clock; a bus's chunks after HQ answered its records, as its sync sends them), counted when HQ's signed Delivered reached the loader: {:.2} s; {:.2} applications per fsync the disk does alone ({:.0} fsyncs/s), {:.2} per photo file it makes durable alone ({:.0}/s); CPU: HQ ingest and the loaders {:.1} CPU-s, Mosquitto {}, PostgreSQL {}, over {:.1} s ({:.2} of 2 cores)",
                CHUNK / 1024,
                o.messages,
                o.bytes as f64 / 1e6,
                o.connect_secs,
                o.secs,
                rate / fsyncs,
                fsyncs,
                rate / photos,
                photos,
                o.cpu_secs,
                o.broker_cpu_secs
                    .map_or("?".to_owned(), |c| format!("{c:.1} CPU-s")),
                match (o.pg_cpu_secs, o.pg_wal_bytes, &o.pg_tables) {
                    (Some(c), Some(w), Some(t)) => format!(
                        "{c:.1} CPU-s (WAL {:.0} KB per application; tables after the run: {t})",
                        w / TOTAL as f64 / 1000.0
                    ),
                    (Some(c), _, _) => format!("{c:.1} CPU-s"),
                    _ => "-".to_owned(),
                },
                o.secs,
                (o.cpu_secs + o.broker_cpu_secs.unwrap_or(0.0) + o.pg_cpu_secs.unwrap_or(0.0))
                    / o.secs
            ),
        );
    }
    Ok(())
}
