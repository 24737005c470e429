//! Capture as an operator meets it: clear errors for bad input, nothing half-saved, a
//! receipt only for what is durable.

use bus_node::capture::{capture, CaptureError, CaptureInput, CaptureSettings};
use bus_node::store::{OutboxState, Store, StoreError};
use bus_node::{KdfParams, UnlockedVault};
use keliling_shared::{BusId, Catalogue};
use std::path::Path;

/// A new bus store, initialised as `bus-node init` does (cheap key derivation for tests).
fn new_store(db: &Path) -> (Store, UnlockedVault) {
    let mut store = Store::open(db).unwrap();
    let vault = store
        .init_vault(&"kata sandi percobaan".into(), KdfParams::INSECURE_FAST)
        .unwrap();
    (store, vault)
}

fn settings() -> CaptureSettings {
    CaptureSettings {
        bus_id: BusId::parse("bus-test-01").unwrap(),
        chunk_size: 16 * 1024,
        photo_limits: Default::default(),
    }
}

fn photo() -> Vec<u8> {
    let p = keliling_photo::fixtures::load_portrait().unwrap();
    keliling_photo::fixtures::camera_jpeg(&p, 800, 600, 6, true, 90).unwrap()
}

fn input() -> CaptureInput {
    CaptureInput {
        operator: "Yohanes".into(),
        village: "Desa Oelnasi".into(),
        gps: Some((-10.17, 123.6)),
        service: "SIM_RENEWAL".into(),
        full_name: "Siti Aminah".into(),
        nik: "5371015203900001".into(),
        date_of_birth: "1990-03-12".into(),
        sex: "P".into(),
        address: "RT 01 RW 03".into(),
        phone: Some("0812-3456-7890".into()),
        fields: vec![
            ("sim_number".into(), "1234-5678-000001".into()),
            ("sim_class".into(), "C".into()),
            ("expiry_date".into(), "2026-12-31".into()),
        ],
        photo: Some(photo()),
        documents: vec![],
        ..Default::default()
    }
}

#[test]
fn a_good_capture_is_durable_and_queued() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bus.sqlite");
    let (receipt, vault) = {
        let (mut store, vault) = new_store(&db);
        let r = capture(&mut store, &Catalogue::builtin(), &settings(), input()).unwrap();
        (r, vault)
    };
    assert!(receipt.warnings.is_empty());
    let text = receipt.render("Perpanjangan SIM");
    assert!(
        text.contains(&receipt.tracking_number()) && text.contains("53**********0001"),
        "{text}"
    );
    assert!(
        !text.contains("5371015203900001"),
        "the receipt must not show the full NIK"
    );
    // Reopened as after a power cut: everything is there.
    let store = Store::open(&db).unwrap();
    let app = store
        .application(&receipt.application.id, &vault)
        .unwrap()
        .unwrap();
    assert_eq!(app, receipt.application);
    assert_eq!(store.state(&app.id).unwrap(), Some(OutboxState::Queued));
    let photo = app.id_photo().unwrap();
    assert!(photo.size <= 60_000);
    assert_eq!(store.blob_hashes().unwrap(), vec![photo.sha256]);
    let s = store.status().unwrap();
    assert_eq!(
        (s.waiting(), s.delivered, s.bytes_waiting),
        (1, 0, photo.size)
    );
}

type Mutation = Box<dyn Fn(&mut CaptureInput)>;

#[test]
fn bad_input_is_refused_with_a_clear_message_and_nothing_saved() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(&dir.path().join("bus.sqlite"));
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|i| i.nik = "537101520390001".into()), "16 angka"),
        (Box::new(|i| i.nik = "9971015203900001".into()), "provinsi"),
        (
            Box::new(|i| i.date_of_birth = "12/03/1990".into()),
            "TTTT-BB-HH",
        ),
        (Box::new(|i| i.sex = "X".into()), "L atau P"),
        (
            Box::new(|i| i.full_name = "Siti\u{0}Aminah".into()),
            "karakter kendali",
        ),
        (
            Box::new(|i| i.service = "PASPOR".into()),
            "tidak ada di katalog",
        ),
        (
            Box::new(|i| i.fields.retain(|(k, _)| k != "sim_class")),
            "sim_class",
        ),
        (
            Box::new(|i| i.fields.push(("sim_class".into(), "Z".into()))),
            "pilih salah satu",
        ),
        (Box::new(|i| i.photo = None), "pas foto wajib"),
        (
            Box::new(|i| i.photo = Some(b"not an image at all".to_vec())),
            "foto",
        ),
        (Box::new(|i| i.phone = Some("12".into())), "telepon"),
        (
            Box::new(|i| {
                i.documents
                    .push(("health_certificate".into(), b"plain text".to_vec()))
            }),
            "bukan JPEG",
        ),
    ];
    for (mutate, needle) in cases {
        let mut i = input();
        mutate(&mut i);
        let err = capture(&mut store, &Catalogue::builtin(), &settings(), i).expect_err(needle);
        assert!(
            err.to_string().contains(needle),
            "expected {needle:?} in {err}"
        );
    }
    assert_eq!(
        store.status().unwrap().total,
        0,
        "a refused capture must save nothing"
    );
}

#[test]
fn a_nik_that_disagrees_is_kept_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(&dir.path().join("bus.sqlite"));
    let mut i = input();
    i.sex = "L".into(); // the NIK says female
    let receipt = capture(&mut store, &Catalogue::builtin(), &settings(), i).unwrap();
    assert_eq!(receipt.warnings.len(), 1);
    assert!(receipt.render("x").contains("PERHATIAN"));
}

#[test]
fn a_tiny_photo_asks_for_a_retake() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(&dir.path().join("bus.sqlite"));
    let p = keliling_photo::fixtures::load_portrait().unwrap();
    let mut i = input();
    i.photo = Some(keliling_photo::fixtures::camera_jpeg(&p, 200, 150, 1, false, 90).unwrap());
    match capture(&mut store, &Catalogue::builtin(), &settings(), i) {
        Err(CaptureError::Retake(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected a retake, got {other:?}"),
    }
}

#[test]
fn a_bus_without_a_key_says_to_run_init_and_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("bus.sqlite")).unwrap();
    let err = capture(&mut store, &Catalogue::builtin(), &settings(), input()).unwrap_err();
    assert!(
        matches!(err, CaptureError::Store(StoreError::NotInitialised)),
        "{err:?}"
    );
    assert!(err.to_string().contains("bus-node init"), "{err}");
    assert_eq!(store.status().unwrap().total, 0);
}
