//! The bus store's state machine: HQ's messages only move an application forward, and
//! nothing un-acked is ever deleted.

use bus_node::capture::{capture, CaptureInput, CaptureSettings};
use bus_node::store::{OutboxState, Store};
use bus_node::{KdfParams, UnlockedVault};
use keliling_shared::wire::BlobProgress;
use keliling_shared::{Application, Bitmap, BusId, Catalogue, UnixMillis};
use std::path::Path;
use std::time::Duration;

/// A new bus store, initialised as `bus-node init` does (cheap key derivation for tests).
fn new_store(db: &Path) -> (Store, UnlockedVault) {
    let mut store = Store::open(db).unwrap();
    let vault = store
        .init_vault(&"kata sandi percobaan".into(), KdfParams::INSECURE_FAST)
        .unwrap();
    (store, vault)
}

fn saved(store: &mut Store, i: u8) -> Application {
    let p = keliling_photo::fixtures::load_portrait().unwrap();
    let mut img = p.clone();
    // A distinct mark on the face, so every application's photo (and hash) differs.
    for y in 200..230 {
        for x in 240..270 {
            img.put_pixel(x, y, image::Rgb([i.wrapping_mul(40), 0, 255 - i]));
        }
    }
    let photo = keliling_photo::fixtures::camera_jpeg(&img, 800, 600, 1, false, 90).unwrap();
    let input = CaptureInput {
        operator: "Op".into(),
        village: "Desa".into(),
        service: "KIA".into(),
        full_name: format!("Anak {i}"),
        nik: format!("53710112031500{i:02}"),
        date_of_birth: "2015-03-12".into(),
        sex: "L".into(),
        address: "Alamat".into(),
        fields: vec![
            ("kk_number".into(), "5371010101010001".into()),
            ("father_name".into(), "Ayah".into()),
            ("mother_name".into(), "Ibu".into()),
        ],
        photo: Some(photo),
        ..CaptureInput::default()
    };
    let settings = CaptureSettings {
        bus_id: BusId::parse("bus-test-01").unwrap(),
        chunk_size: 4096,
        photo_limits: Default::default(),
    };
    capture(store, &Catalogue::builtin(), &settings, input)
        .unwrap()
        .application
}

#[test]
fn acks_move_forward_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(&dir.path().join("bus.sqlite"));
    let app = saved(&mut store, 1);
    let photo = app.id_photo().unwrap().clone();
    assert_eq!(store.queued_records(10).unwrap(), vec![app.id]);
    assert!(
        store.needed_blobs(10).unwrap().is_empty(),
        "no chunk before HQ asks"
    );

    // HQ holds the record and chunk 0 of the photo.
    let count = keliling_shared::wire::chunk_count(photo.size, 4096);
    let mut have = Bitmap::new(count);
    have.set(0);
    let progress = BlobProgress {
        blob: photo.sha256,
        chunk_count: count,
        have,
    };
    store
        .on_record_ack(&app.id, std::slice::from_ref(&progress))
        .unwrap();
    assert_eq!(
        store.state(&app.id).unwrap(),
        Some(OutboxState::RecordAcked)
    );
    assert!(store.queued_records(10).unwrap().is_empty());
    let plan = store.needed_blobs(10).unwrap();
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].have.missing(count).count() as u32, count - 1);

    // Delivered is final: a late RecordAck or a rejection does not move it back.
    assert!(store.on_delivered(&app.id, UnixMillis(1)).unwrap());
    assert!(
        !store.on_delivered(&app.id, UnixMillis(2)).unwrap(),
        "second ack is a no-op"
    );
    store.on_record_ack(&app.id, &[progress]).unwrap();
    store.on_rejected(&app.id, "late").unwrap();
    assert_eq!(store.state(&app.id).unwrap(), Some(OutboxState::Delivered));
    assert!(store.needed_blobs(10).unwrap().is_empty());
    let s = store.status().unwrap();
    assert_eq!((s.waiting(), s.delivered, s.bytes_waiting), (0, 1, 0));
    assert!(s.last_sync.is_some());
}

#[test]
fn purge_drops_only_delivered_bytes_past_retention() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, vault) = new_store(&dir.path().join("bus.sqlite"));
    let delivered = saved(&mut store, 1);
    let waiting = saved(&mut store, 2);
    store
        .on_delivered(&delivered.id, UnixMillis::now())
        .unwrap();
    // Within retention: nothing goes.
    assert_eq!(
        store
            .purge_delivered_blobs(Duration::from_secs(3600))
            .unwrap(),
        0
    );
    // Past retention: only the delivered application's photo goes.
    assert_eq!(store.purge_delivered_blobs(Duration::ZERO).unwrap(), 1);
    let w = waiting.id_photo().unwrap();
    let bytes = store.read_chunk(&w.sha256, 0..w.size, &vault).unwrap();
    assert_eq!(bytes.len() as u64, w.size);
    assert!(store.blob_is_sound(&w.sha256, &vault).unwrap());
    let d = delivered.id_photo().unwrap();
    assert!(store.read_chunk(&d.sha256, 0..10, &vault).is_err());
    // The record itself stays (encrypted), for the operator's history.
    assert!(store.application(&delivered.id, &vault).unwrap().is_some());
}

#[test]
fn hq_snapshots_replace_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(&dir.path().join("bus.sqlite"));
    let app = saved(&mut store, 3);
    let photo = app.id_photo().unwrap().clone();
    let count = keliling_shared::wire::chunk_count(photo.size, 4096);
    let mut all = Bitmap::new(count);
    (0..count).for_each(|i| all.set(i));
    store
        .on_record_ack(
            &app.id,
            &[BlobProgress {
                blob: photo.sha256,
                chunk_count: count,
                have: all,
            }],
        )
        .unwrap();
    assert_eq!(
        store.needed_blobs(10).unwrap()[0]
            .have
            .missing(count)
            .count(),
        0
    );
    // HQ lost its staging area: its next snapshot says it holds nothing.
    store
        .on_progress(&BlobProgress {
            blob: photo.sha256,
            chunk_count: count,
            have: Bitmap::new(count),
        })
        .unwrap();
    assert_eq!(
        store.needed_blobs(10).unwrap()[0]
            .have
            .missing(count)
            .count() as u32,
        count
    );
}

#[test]
fn a_corrupted_blob_is_detected_and_its_application_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bus.sqlite");
    let (mut store, vault) = new_store(&db);
    let app = saved(&mut store, 4);
    let sha = app.id_photo().unwrap().sha256;
    assert!(store.blob_is_sound(&sha, &vault).unwrap());
    // Bit rot on the bus disk.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE blobs SET data = zeroblob(length(data)) WHERE sha256 = ?1",
        [sha.to_hex()],
    )
    .unwrap();
    assert!(!store.blob_is_sound(&sha, &vault).unwrap());
    assert_eq!(store.reject_apps_with_blob(&sha, "rusak").unwrap(), 1);
    assert_eq!(store.state(&app.id).unwrap(), Some(OutboxState::Rejected));
}

/// Whoever can publish on a bus's down topic must not fill its disk: the quarantine keeps
/// the newest entries only, each with a bounded payload and a printable reason.
#[test]
fn the_quarantine_is_bounded() {
    use bus_node::store::{MAX_QUARANTINE_PAYLOAD, MAX_QUARANTINE_ROWS};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bus.sqlite");
    let (mut store, _) = new_store(&db);
    let big = vec![7u8; 100 * 1024];
    for i in 0..(MAX_QUARANTINE_ROWS + 200) {
        store
            .quarantine(
                "keliling/v1/bus/x/down/sync",
                &format!("junk {i}\u{1b}[2J"),
                &big,
            )
            .unwrap();
    }
    assert_eq!(
        store.quarantine_count().unwrap(),
        MAX_QUARANTINE_ROWS as u64
    );
    let c = rusqlite::Connection::open(&db).unwrap();
    let (max_len, newest): (i64, String) = c
        .query_row(
            "SELECT MAX(length(payload)), (SELECT reason FROM quarantine ORDER BY id DESC LIMIT 1) FROM quarantine",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(max_len as usize, MAX_QUARANTINE_PAYLOAD);
    assert!(newest.starts_with(&format!("junk {}", MAX_QUARANTINE_ROWS + 199)));
    assert!(
        !newest.contains('\u{1b}'),
        "escape codes defused: {newest:?}"
    );
}

/// HQ's decisions on the bus: kept sealed, idempotent, the highest version in force
/// whatever order versions arrive in, nothing kept for an application the bus lacks.
#[test]
fn decisions_are_kept_once_and_the_latest_version_wins() {
    use bus_node::store::DecisionStored;
    use keliling_shared::decision::{Decision, Outcome, ReasonCode};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bus.sqlite");
    let (mut store, vault) = new_store(&db);
    let app = saved(&mut store, 1);
    let v = |version: u32, outcome: Outcome| Decision {
        application: app.id,
        version,
        decided_at: UnixMillis::now(),
        outcome,
    };
    let approved = v(1, Outcome::Approved { note: None });
    let rejected = v(
        2,
        Outcome::Rejected {
            code: ReasonCode::parse("PHOTO_UNUSABLE").unwrap(),
            reason: keliling_shared::Text::parse("Pas foto tidak memenuhi syarat").unwrap(),
            note: None,
        },
    );
    // Version 2 arrives first, then version 1, then version 2 again.
    assert_eq!(store.on_decision(&rejected).unwrap(), DecisionStored::New);
    assert_eq!(store.on_decision(&approved).unwrap(), DecisionStored::New);
    assert_eq!(store.on_decision(&rejected).unwrap(), DecisionStored::Known);
    let list = store.decisions(10).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].version, list[0].kind.as_str(), list[0].versions),
        (2, "rejected", 2)
    );
    assert_eq!(store.decision(&app.id, 2, &vault).unwrap(), Some(rejected));
    // Sealed at rest: the reason is not in the file in clear.
    drop(store);
    for f in [db.clone(), dir.path().join("bus.sqlite-wal")] {
        let raw = std::fs::read(&f).unwrap_or_default();
        assert!(
            !raw.windows(b"tidak memenuhi".len())
                .any(|w| w == b"tidak memenuhi"),
            "{} holds the reason in clear",
            f.display()
        );
    }
    let mut store = Store::open(&db).unwrap();
    let stranger = Decision {
        application: keliling_shared::ApplicationId::new_v7(),
        ..approved
    };
    assert_eq!(
        store.on_decision(&stranger).unwrap(),
        DecisionStored::UnknownApplication
    );
    assert_eq!(store.decisions(10).unwrap().len(), 1);
}
