//! Ingest's apply path with decoded values, not only decoders: thousands of seeded random
//! messages that every decoder accepts (times at the ends of their range, the largest
//! counters, chunks of declared and undeclared blobs at every size, queries, statuses) go
//! through `hq_sync::ingest::Offline`, HQ's real store, staging and photo store. Nothing
//! may panic (debug builds check arithmetic overflow), and the store must stay consistent.
//! Before `UnixMillis` was bounded, a heartbeat with `bus_clock = i64::MIN` decoded and
//! overflowed HQ's skew subtraction (a panic in debug builds); now it is refused by the
//! decoder and quarantined, and the subtraction saturates anyway.

use hq_sync::ingest::Offline;
use keliling_shared::application::{
    Attachment, AttachmentKind, FieldName, MediaType, MAX_ATTACHMENT_BYTES,
};
use keliling_shared::topics::{Topics, UpKind};
use keliling_shared::wire::{
    chunk_count, chunk_range, BlobQuery, BusStatus, Chunk, Heartbeat, Up, UpEnvelope,
    MAX_CHUNK_BYTES, MIN_CHUNK_BYTES,
};
use keliling_shared::{
    Applicant, Application, ApplicationId, BusId, GeoPoint, Nik, ServiceCode, Sex, Sha256, Stop,
    Text, UnixMillis,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

const BUSES: [&str; 3] = ["bus-a", "bus-b", "bus-c"];

/// A time, sometimes one no decoder may accept (which HQ must then quarantine).
fn time(rng: &mut StdRng) -> UnixMillis {
    match rng.gen_range(0..6) {
        0 => UnixMillis(0),
        1 => UnixMillis::MAX,
        2 => UnixMillis::now(),
        3 => UnixMillis(i64::MIN),
        4 => UnixMillis(i64::MAX),
        _ => UnixMillis(rng.gen_range(0..=UnixMillis::MAX.0)),
    }
}

fn application(rng: &mut StdRng, bus: &BusId, blobs: &[(Sha256, u64)]) -> Application {
    // A family-card update (the starter catalogue's KK_UPDATE): its fields and the scan of
    // the old card, one of the declared blobs.
    let (sha, size) = blobs[rng.gen_range(0..blobs.len())];
    let attachments = vec![Attachment {
        kind: AttachmentKind::Document(FieldName::parse("old_kk").expect("a document name")),
        media_type: MediaType::Jpeg,
        sha256: sha,
        size,
    }];
    let field = |k: &str, v: &str| {
        (
            FieldName::parse(k).expect("a field name"),
            Text::parse(v).expect("text"),
        )
    };
    let fields = [
        field(
            "kk_number",
            &format!("53710100{:08}", rng.gen_range(0..99_999_999u32)),
        ),
        field("change_reason", "kelahiran"),
    ]
    .into_iter()
    .collect();
    Application {
        id: ApplicationId::new_v7(),
        bus_id: bus.clone(),
        operator: Text::parse("Petugas").expect("text"),
        stop: Stop {
            village: Text::parse("Desa").expect("text"),
            gps: rng
                .gen_bool(0.5)
                .then(|| GeoPoint::new(-90.0, 180.0).expect("a point")),
        },
        service: ServiceCode::parse("KK_UPDATE").expect("a service"),
        applicant: Applicant {
            full_name: Text::parse("Warga").expect("text"),
            nik: Nik::parse("5371015203900001").expect("a NIK"),
            date_of_birth: time::macros::date!(1990 - 03 - 12),
            sex: Sex::Female,
            address: Text::parse("Jl. Timor Raya").expect("text"),
            phone: None,
        },
        fields,
        attachments,
        captured_at: time(rng),
    }
}

#[test]
fn random_decoded_messages_never_panic_and_keep_the_store_consistent() {
    let t = "random_decoded_messages_never_panic_and_keep_the_store_consistent";
    for store in hq_sync::testing::each_backend(t) {
        // Each backend with its default blob store (SQLite: files and sled; PostgreSQL:
        // the database), and SQLite with blobs and uploads in the database too.
        eprintln!("on {:?}", store.backend);
        random_decoded_messages_on(&store.at, None);
        if store.backend == hq_sync::db::Backend::Sqlite {
            eprintln!("on SQLite, blobs in the database");
            let again = hq_sync::testing::each_backend(t).swap_remove(0);
            random_decoded_messages_on(&again.at, Some(true));
        }
    }
}

fn random_decoded_messages_on(at: &hq_sync::store::StoreLocation, in_db: Option<bool>) {
    let dir = tempfile::tempdir().unwrap();
    let buses: Vec<BusId> = BUSES.iter().map(|b| BusId::parse(b).unwrap()).collect();
    let mut hq = Offline::for_fleet_with(dir.path(), &buses, Some(at), in_db).unwrap();
    let topics = Topics::default();
    let seed = std::env::var("KELILING_APPLY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6b65_6c69);
    let mut rng = StdRng::seed_from_u64(seed);
    // Blobs some records declare (and chunks then aim at), with real bytes for a few.
    let blobs: Vec<(Sha256, u64, Vec<u8>)> = (0..6)
        .map(|i| {
            // A real JPEG (HQ checks a scan is what it is declared to be) of noise, a few
            // chunks long.
            let (w, h) = (rng.gen_range(64..220), rng.gen_range(64..220));
            let img = image::RgbImage::from_fn(w, h, |_, _| image::Rgb(rng.gen()));
            let mut bytes = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95)
                .encode_image(&img)
                .unwrap();
            let size = if i % 3 == 0 {
                rng.gen_range(1..=MAX_ATTACHMENT_BYTES)
            } else {
                bytes.len() as u64
            };
            (Sha256::digest(&bytes), size, bytes)
        })
        .collect();
    let declared: Vec<(Sha256, u64)> = blobs.iter().map(|(s, n, _)| (*s, *n)).collect();
    let mut decoded = 0;
    for _ in 0..3000 {
        let bus = buses[rng.gen_range(0..buses.len())].clone();
        let body = match rng.gen_range(0..6) {
            0 => Up::Record(Box::new(application(&mut rng, &bus, &declared))),
            1 | 2 => {
                let (sha, size, bytes) = &blobs[rng.gen_range(0..blobs.len())];
                let total = if rng.gen_bool(0.8) {
                    *size
                } else {
                    rng.gen_range(1..=MAX_ATTACHMENT_BYTES)
                };
                let chunk_size = if rng.gen_bool(0.8) {
                    16 * 1024
                } else {
                    rng.gen_range(MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES)
                };
                let index = rng.gen_range(0..chunk_count(total, chunk_size));
                let r = chunk_range(total, chunk_size, index);
                let data = match bytes.get(r.start as usize..r.end as usize) {
                    Some(d) if total == bytes.len() as u64 => d.to_vec(),
                    _ => vec![rng.gen(); (r.end - r.start) as usize],
                };
                Up::Chunk(Chunk {
                    blob: *sha,
                    total_size: total,
                    chunk_size,
                    index,
                    data,
                })
            }
            3 => Up::Query(BlobQuery {
                blobs: (0..rng.gen_range(0..=64))
                    .map(|i| {
                        if i % 2 == 0 {
                            blobs[i % blobs.len()].0
                        } else {
                            Sha256::digest(&[i as u8])
                        }
                    })
                    .collect(),
            }),
            4 => Up::Heartbeat(Heartbeat {
                queue_depth: rng.gen(),
                bytes_waiting: if rng.gen_bool(0.5) {
                    u64::MAX
                } else {
                    rng.gen()
                },
                oldest_unsynced: rng.gen_bool(0.5).then(|| time(&mut rng)),
                last_sync: rng.gen_bool(0.5).then(|| time(&mut rng)),
                position: None,
                software: "fuzz".into(),
                bus_clock: time(&mut rng),
            }),
            _ => Up::Status(if rng.gen_bool(0.5) {
                BusStatus::Online
            } else {
                BusStatus::Offline
            }),
        };
        let kind = body.kind();
        let env = UpEnvelope::new(bus.clone(), body);
        let Ok(bytes) = env.encode() else { continue };
        // Most decode (values at the ends of their ranges); what does not is quarantined.
        if UpEnvelope::decode(&bytes).is_ok() {
            decoded += 1;
        }
        let topic = if rng.gen_bool(0.95) {
            topics.up(&bus, kind)
        } else {
            topics.up(&bus, UpKind::ALL[rng.gen_range(0..UpKind::ALL.len())])
        };
        let _answers = hq.apply(&topic, &bytes);
    }
    // Consistent: every complete application's blobs are stored, and stored blobs verify.
    let store = hq.store();
    let counts = store.counts().unwrap();
    assert!(
        counts.applications > 0,
        "the run committed nothing: {counts:?}"
    );
    assert!(counts.blobs > 0, "no blob was ever assembled: {counts:?}");
    eprintln!("{decoded} of 3000 decoded; {counts:?}");
    assert!(decoded > 1500);
    let photos = hq_sync::config::HqConfig::for_dir(dir.path().join("hq"), 0).photos_dir();
    let blobs = hq_sync::photos::Blobs::open(&photos, in_db.unwrap_or(false)).unwrap();
    for (_, state, shas) in store.application_blobs().unwrap() {
        if state == "complete" {
            for sha in shas {
                assert!(store.has_blob(&sha).unwrap(), "complete without {sha:?}");
                // Readable where it was put (the database or a file), and still itself.
                blobs.read_verified(store, &sha).unwrap();
            }
        }
    }
    for b in store.fleet().unwrap() {
        assert!(b.bytes_waiting.is_some_and(|w| w <= i64::MAX as u64) || b.bytes_waiting.is_none());
    }
}

/// The console's "photo expected: 3 of 4 chunks received": what a worker reports of its
/// staging reaches an application's detail, and a stored blob shows as stored.
#[test]
fn the_detail_of_an_application_says_how_far_its_uploads_are() {
    let t = "the_detail_of_an_application_says_how_far_its_uploads_are";
    for store in hq_sync::testing::each_backend(t) {
        the_detail_on(store.open());
    }
}

fn the_detail_on(mut store: hq_sync::store::HqStore) {
    use hq_sync::store::UploadProgress;
    let mut rng = StdRng::seed_from_u64(7);
    let bus = BusId::parse("bus-a").unwrap();
    let blob = Sha256::digest(b"a scan still on its way");
    let mut app = application(&mut rng, &bus, &[(blob, 4 * 16 * 1024)]);
    app.captured_at = UnixMillis::now();
    let now = UnixMillis::now();
    store.ingest_record(&app, now, "hq-1", 5000).unwrap();
    let d = store.detail(&bus, &app.id, now).unwrap().unwrap();
    assert_eq!(d.blobs.len(), 1);
    assert!(!d.blobs[0].stored);
    assert_eq!(
        d.blobs[0].chunks, None,
        "nothing staged yet: still on the bus"
    );
    let progress = UploadProgress {
        bus: bus.clone(),
        blob,
        have: 3,
        chunk_count: 4,
    };
    store.report_uploads("hq-1", &[progress], now).unwrap();
    let d = store.detail(&bus, &app.id, now).unwrap().unwrap();
    assert_eq!(d.blobs[0].chunks, Some((3, 4)));
    // Another bus's upload of the same blob says nothing about this bus's.
    let other = BusId::parse("bus-b").unwrap();
    let d = store.detail(&other, &app.id, now).unwrap();
    assert!(d.is_none(), "the application is bus-a's");
    // A new report replaces the old one.
    store.report_uploads("hq-1", &[], now).unwrap();
    let d = store.detail(&bus, &app.id, now).unwrap().unwrap();
    assert_eq!(d.blobs[0].chunks, None);
}

/// A record with the bus's notes (photo advice, the citizen's approval, the catalogue
/// version, the application it amends): the decoder bounds the notes and checks the
/// record is the sender's, and HQ keeps the first notes beside the record (a re-send with
/// other notes changes nothing). Notes in the first buses' form are still read.
#[test]
fn record_notes_are_checked_and_kept_beside_the_record() {
    for store in
        hq_sync::testing::each_backend("record_notes_are_checked_and_kept_beside_the_record")
    {
        record_notes_on(&store.at);
    }
}

fn record_notes_on(at: &hq_sync::store::StoreLocation) {
    use keliling_shared::wire::{
        PhotoAdvice, PhotoApproval, RecordNotes, RecordNotesV1, MAX_PHOTO_ADVICE,
    };
    let dir = tempfile::tempdir().unwrap();
    let buses: Vec<BusId> = BUSES.iter().map(|b| BusId::parse(b).unwrap()).collect();
    let mut hq = Offline::for_fleet_on(dir.path(), &buses, Some(at)).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let bus = buses[0].clone();
    let mut app = application(&mut rng, &bus, &[(Sha256::digest(b"scan"), 1000)]);
    app.captured_at = UnixMillis::now();
    let noted = |app: &keliling_shared::Application, notes: RecordNotes, from: &BusId| {
        UpEnvelope::new(
            from.clone(),
            Up::RecordWithNotes {
                app: Box::new(app.clone()),
                notes,
            },
        )
        .encode()
        .unwrap()
    };
    let dark = RecordNotes {
        photo_advice: vec![PhotoAdvice::TooDark],
        photo_approval: Some(PhotoApproval { retakes: 2 }),
        catalogue_version: Some(7),
        amends: None,
        documents_seen: vec![keliling_shared::application::FieldName::parse("kk").unwrap()],
    };
    let too_much = RecordNotes {
        photo_advice: vec![PhotoAdvice::Blurred; MAX_PHOTO_ADVICE + 1],
        ..RecordNotes::default()
    };
    assert!(UpEnvelope::decode(&noted(&app, too_much, &bus)).is_err());
    let itself = RecordNotes {
        amends: Some(app.id),
        ..RecordNotes::default()
    };
    assert!(
        UpEnvelope::decode(&noted(&app, itself, &bus)).is_err(),
        "an application amending itself"
    );
    assert!(
        UpEnvelope::decode(&noted(&app, dark.clone(), &buses[1])).is_err(),
        "a record in another bus's envelope"
    );
    let topic = Topics::default().up(&bus, UpKind::Record);
    hq.apply(&topic, &noted(&app, dark.clone(), &bus));
    assert_eq!(hq.store().record_notes(&bus, &app.id).unwrap(), dark);
    let bright = RecordNotes {
        photo_advice: vec![PhotoAdvice::TooBright],
        ..RecordNotes::default()
    };
    hq.apply(&topic, &noted(&app, bright, &bus));
    assert_eq!(
        hq.store().record_notes(&bus, &app.id).unwrap(),
        dark,
        "the first notes win"
    );

    // A bus from before the station sends its advice in the first form.
    let mut old = application(&mut rng, &bus, &[(Sha256::digest(b"scan2"), 1000)]);
    old.captured_at = UnixMillis::now();
    let v1 = UpEnvelope::new(
        bus.clone(),
        Up::RecordNoted {
            app: Box::new(old.clone()),
            notes: RecordNotesV1 {
                photo_advice: vec![PhotoAdvice::Blurred],
            },
        },
    )
    .encode()
    .unwrap();
    hq.apply(&topic, &v1);
    assert_eq!(
        hq.store().record_notes(&bus, &old.id).unwrap(),
        RecordNotes {
            photo_advice: vec![PhotoAdvice::Blurred],
            ..RecordNotes::default()
        }
    );
}

/// A blob whose chunks all come in one batch is assembled from memory (never staged);
/// one whose chunks straddle batches is staged at the first batch's end (and confirmed
/// only then) and finished from staging; a blob that fails its hash is counted as
/// failing the same way from memory as from staging, and refused after the third time.
#[test]
fn uploads_whole_within_a_batch_skip_staging() {
    for in_db in [None, Some(true)] {
        for store in hq_sync::testing::each_backend("uploads_whole_within_a_batch_skip_staging") {
            uploads_within_a_batch_on(&store.at, in_db);
        }
    }
}

fn uploads_within_a_batch_on(at: &hq_sync::store::StoreLocation, in_db: Option<bool>) {
    use keliling_shared::wire::Down;
    let dir = tempfile::tempdir().unwrap();
    let bus = BusId::parse(BUSES[0]).unwrap();
    let mut hq =
        Offline::for_fleet_with(dir.path(), std::slice::from_ref(&bus), Some(at), in_db).unwrap();
    let topics = Topics::default();
    let mut rng = StdRng::seed_from_u64(5);
    let jpeg = |rng: &mut StdRng| {
        let img = image::RgbImage::from_fn(180, 180, |_, _| image::Rgb(rng.gen()));
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95)
            .encode_image(&img)
            .unwrap();
        bytes
    };
    let msg = |body: Up| {
        let kind = body.kind();
        let bytes = UpEnvelope::new(bus.clone(), body).encode().unwrap();
        (topics.up(&bus, kind), bytes)
    };
    let chunks = |bytes: &[u8]| -> Vec<(String, Vec<u8>)> {
        let (total, size) = (bytes.len() as u64, 16 * 1024);
        (0..chunk_count(total, size))
            .map(|i| {
                let r = chunk_range(total, size, i);
                msg(Up::Chunk(Chunk {
                    blob: Sha256::digest(bytes),
                    total_size: total,
                    chunk_size: size,
                    index: i,
                    data: bytes[r.start as usize..r.end as usize].to_vec(),
                }))
            })
            .collect()
    };
    let delivered = |answers: &[(BusId, Down)], id: ApplicationId| {
        answers
            .iter()
            .any(|(_, d)| matches!(d, Down::Delivered { application, .. } if *application == id))
    };
    let record = |rng: &mut StdRng, bytes: &[u8]| {
        let mut app = application(rng, &bus, &[(Sha256::digest(bytes), bytes.len() as u64)]);
        app.captured_at = UnixMillis::now();
        app
    };

    // 1. Record, then every chunk in one batch: delivered, nothing ever staged.
    let one = jpeg(&mut rng);
    let app = record(&mut rng, &one);
    let pieces = chunks(&one);
    assert!(pieces.len() >= 3, "a blob of several chunks");
    hq.apply(
        &msg(Up::Record(Box::new(app.clone()))).0,
        &msg(Up::Record(Box::new(app.clone()))).1,
    );
    let answers = hq.apply_many(&pieces);
    assert!(delivered(&answers, app.id), "{answers:?}");
    assert!(
        !answers.iter().any(|(_, d)| matches!(d, Down::Progress(_))),
        "nothing to report as staged: {answers:?}"
    );
    assert_eq!(hq.chunk_counts(), (pieces.len() as u64, 0));

    // 2. The chunks over two batches: the first batch's are staged and confirmed, the
    // rest finish it from staging.
    let two = jpeg(&mut rng);
    let app2 = record(&mut rng, &two);
    let m = msg(Up::Record(Box::new(app2.clone())));
    hq.apply(&m.0, &m.1);
    let pieces = chunks(&two);
    let (first, rest) = pieces.split_at(2);
    let answers = hq.apply_many(first);
    let held = answers.iter().find_map(|(_, d)| match d {
        Down::Progress(p) if p.blob == Sha256::digest(&two) => Some(p.have.count()),
        _ => None,
    });
    assert_eq!(held, Some(2), "{answers:?}");
    let answers = hq.apply_many(rest);
    assert!(delivered(&answers, app2.id), "{answers:?}");

    // 3. Bytes that do not hash to their name, three times, each batch whole: refused.
    let three = jpeg(&mut rng);
    let app3 = record(&mut rng, &three);
    let m = msg(Up::Record(Box::new(app3.clone())));
    hq.apply(&m.0, &m.1);
    let good = chunks(&three);
    for attempt in 1..=3 {
        let mut broken = three.clone();
        broken[100] ^= 0xff;
        let mut wrong = chunks(&broken);
        // Under the right blob's name.
        for (w, good) in wrong.iter_mut().zip(&good) {
            let mut env = UpEnvelope::decode(&w.1).unwrap();
            if let Up::Chunk(c) = &mut env.body {
                c.blob = Sha256::digest(&three);
            }
            *w = (good.0.clone(), env.encode().unwrap());
        }
        let answers = hq.apply_many(&wrong);
        let refused = answers
            .iter()
            .any(|(_, d)| matches!(d, Down::Rejected { blob: Some(_), .. }));
        assert_eq!(refused, attempt == 3, "attempt {attempt}: {answers:?}");
    }
}
