//! Personal data at rest on the bus: what a stolen disk yields, what the passphrase
//! unlocks, what tampering does, and the retention purge, on real SQLite files.

use bus_node::capture::{capture, CaptureInput, CaptureSettings};
use bus_node::config::BusConfig;
use bus_node::store::{OutboxState, Store, StoreError};
use bus_node::sync::SyncMetrics;
use bus_node::vault::VaultError;
use bus_node::{KdfParams, Passphrase, UnlockedVault};
use keliling_shared::{Application, BusId, Catalogue, UnixMillis};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASS: &str = "kata sandi percobaan";
const NIK: &str = "5371015203900001";
const NAME: &str = "Siti Aminah Wulandari";
const ADDRESS: &str = "Jalan Kenari Nomor 17, Oelnasi";

fn new_store(db: &Path) -> (Store, UnlockedVault) {
    let mut store = Store::open(db).unwrap();
    let vault = store
        .init_vault(&PASS.into(), KdfParams::INSECURE_FAST)
        .unwrap();
    (store, vault)
}

fn settings(chunk_size: u32) -> CaptureSettings {
    CaptureSettings {
        bus_id: BusId::parse("bus-test-01").unwrap(),
        chunk_size,
        photo_limits: Default::default(),
    }
}

fn camera_photo(mark: u8) -> Vec<u8> {
    let mut img = keliling_photo::fixtures::load_portrait().unwrap();
    for y in 200..230 {
        for x in 240..270 {
            img.put_pixel(x, y, image::Rgb([mark.wrapping_mul(40), 0, 255 - mark]));
        }
    }
    keliling_photo::fixtures::camera_jpeg(&img, 800, 600, 6, true, 90).unwrap()
}

fn input(mark: u8) -> CaptureInput {
    CaptureInput {
        operator: "Yohanes".into(),
        village: "Desa Oelnasi".into(),
        gps: Some((-10.17, 123.6)),
        service: "SIM_RENEWAL".into(),
        full_name: NAME.into(),
        nik: NIK.into(),
        date_of_birth: "1990-03-12".into(),
        sex: "P".into(),
        address: ADDRESS.into(),
        phone: Some("0812-3456-7890".into()),
        fields: vec![
            ("sim_number".into(), format!("1234-5678-00000{mark}")),
            ("sim_class".into(), "C".into()),
            ("expiry_date".into(), "2026-12-31".into()),
        ],
        photo: Some(camera_photo(mark)),
        documents: vec![],
        ..Default::default()
    }
}

fn save(store: &mut Store, mark: u8, chunk_size: u32) -> Application {
    capture(
        store,
        &Catalogue::builtin(),
        &settings(chunk_size),
        input(mark),
    )
    .unwrap()
    .application
}

fn file_bytes(db: &Path) -> Vec<(String, Vec<u8>)> {
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .filter_map(|ext| {
            let p = format!("{}{ext}", db.display());
            std::fs::read(&p).ok().map(|b| (p, b))
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Fails if any file of the store holds `needle`.
fn assert_absent(db: &Path, needle: &[u8], what: &str) {
    for (path, bytes) in file_bytes(db) {
        assert!(!contains(&bytes, needle), "{what} found in clear in {path}");
    }
}

/// Fails if any 24-byte slice of `data` (taken every 256 bytes) is in the store's files.
fn assert_no_slice_of(db: &Path, data: &[u8], what: &str) {
    let files = file_bytes(db);
    assert!(!files.is_empty());
    for start in (0..data.len().saturating_sub(24)).step_by(256) {
        let slice = &data[start..start + 24];
        // Runs of one byte (JPEG padding) say nothing about the photo.
        if slice.iter().all(|b| *b == slice[0]) {
            continue;
        }
        for (path, bytes) in &files {
            assert!(
                !contains(bytes, slice),
                "{what}: bytes {start}..{} found in clear in {path}",
                start + 24
            );
        }
    }
}

#[test]
fn a_stolen_disk_holds_no_nik_name_or_photo() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bus.sqlite");
    let (_, vault) = new_store(&db);
    // Capture as the operator's station does: a connection that never saw the passphrase.
    let mut store = Store::open(&db).unwrap();
    let raw = input(1).photo.unwrap();
    let app = save(&mut store, 1, 16 * 1024);
    let att = app.id_photo().unwrap();
    let photo = store.read_chunk(&att.sha256, 0..att.size, &vault).unwrap();
    assert!(
        photo.starts_with(&[0xFF, 0xD8]),
        "the photo decrypts to a JPEG"
    );

    // While the WAL holds the commit (the store still open), then after a checkpoint.
    for phase in ["WAL", "checkpointed"] {
        if phase == "checkpointed" {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .unwrap();
        }
        assert_absent(&db, NIK.as_bytes(), "the NIK");
        assert_absent(&db, NAME.as_bytes(), "the name");
        assert_absent(&db, b"Aminah", "part of the name");
        assert_absent(&db, ADDRESS.as_bytes(), "the address");
        assert_absent(&db, b"0812", "the phone number");
        assert_no_slice_of(&db, &photo, "the ID photo");
        assert_no_slice_of(&db, &raw, "the camera file");
    }
    // What stays in clear is what sync and the operator's counts need.
    assert_eq!(store.blob_hashes().unwrap(), vec![att.sha256]);
    assert_eq!(store.status().unwrap().waiting(), 1);
    let recent = store.recent(10, false).unwrap();
    assert_eq!(recent[0].id, app.id);
    assert_eq!(recent[0].service, "SIM_RENEWAL");
}

#[test]
fn the_passphrase_unlocks_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bus.sqlite");
    let app = {
        let (mut store, _) = new_store(&db);
        save(&mut store, 2, 16 * 1024)
    };
    // A new shift: a fresh process opens the store and unlocks it.
    let store = Store::open(&db).unwrap();
    let err = store.unlock(&"bukan kata sandinya".into()).unwrap_err();
    assert!(
        matches!(err, StoreError::Vault(VaultError::WrongPassphrase)),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "kata sandi salah (wrong passphrase)");
    let vault = store.unlock(&PASS.into()).unwrap();
    assert_eq!(store.application(&app.id, &vault).unwrap().unwrap(), app);

    // A vault of another bus is refused, not used to produce garbage.
    let other_dir = tempfile::tempdir().unwrap();
    let (_, other) = new_store(&other_dir.path().join("bus.sqlite"));
    assert!(store.check_vault(&other).is_err());
    assert!(store.application(&app.id, &other).is_err());
}

#[test]
fn init_once_with_a_long_enough_passphrase_and_passwd_rewraps() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bus.sqlite");
    let mut store = Store::open(&db).unwrap();
    assert!(!store.is_initialised().unwrap());
    assert!(matches!(
        store.unlock(&PASS.into()),
        Err(StoreError::NotInitialised)
    ));
    let short = store.init_vault(&"pendek".into(), KdfParams::INSECURE_FAST);
    assert!(matches!(
        short,
        Err(StoreError::Vault(VaultError::WeakPassphrase))
    ));
    store
        .init_vault(&PASS.into(), KdfParams::INSECURE_FAST)
        .unwrap();
    // A second init would orphan everything saved so far: refused.
    let again = Store::open(&db)
        .unwrap()
        .init_vault(&"kata sandi lainnya".into(), KdfParams::INSECURE_FAST);
    assert!(matches!(again, Err(StoreError::AlreadyInitialised)));
    let app = save(&mut store, 3, 16 * 1024);

    let new = Passphrase::from("kata sandi shift berikutnya");
    assert!(store
        .change_passphrase(&"salah sekali ini".into(), &new, KdfParams::INSECURE_FAST)
        .is_err());
    store
        .change_passphrase(&PASS.into(), &new, KdfParams::INSECURE_FAST)
        .unwrap();
    assert!(
        store.unlock(&PASS.into()).is_err(),
        "the old one no longer works"
    );
    let vault = store.unlock(&new).unwrap();
    assert_eq!(store.application(&app.id, &vault).unwrap().unwrap(), app);
}

/// Flips one bit of byte `at` of a stored value, as bit rot or a forger would.
fn flip(c: &rusqlite::Connection, table: &str, col: &str, key: &str, id: &str, at: usize) {
    let mut v: Vec<u8> = c
        .query_row(
            &format!("SELECT {col} FROM {table} WHERE {key} = ?1"),
            [id],
            |r| r.get(0),
        )
        .unwrap();
    v[at] ^= 0x01;
    c.execute(
        &format!("UPDATE {table} SET {col} = ?2 WHERE {key} = ?1"),
        rusqlite::params![id, v],
    )
    .unwrap();
}

#[test]
fn tampering_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bus.sqlite");
    let (mut store, vault) = new_store(&db);
    let a = save(&mut store, 4, 4096);
    let b = save(&mut store, 5, 4096);
    let raw = rusqlite::Connection::open(&db).unwrap();

    // One flipped bit in a record.
    flip(&raw, "applications", "record", "id", &a.id.to_string(), 200);
    let err = store.application(&a.id, &vault).unwrap_err();
    assert!(
        matches!(err, StoreError::Vault(VaultError::Undecryptable(_))),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("tidak dapat dibuka") && err.to_string().contains("tampered"),
        "{err}"
    );
    // A record moved onto another application's row: bound to its id, so refused.
    raw.execute(
        "UPDATE applications SET record = (SELECT record FROM applications WHERE id = ?2) WHERE id = ?1",
        [a.id.to_string(), b.id.to_string()],
    )
    .unwrap();
    assert!(store.application(&a.id, &vault).is_err());
    assert!(store.application(&b.id, &vault).is_ok());

    // One flipped byte in the photo's third segment: that chunk fails, the others read.
    let photo = b.id_photo().unwrap();
    flip(
        &raw,
        "blobs",
        "data",
        "sha256",
        &photo.sha256.to_hex(),
        9000,
    );
    assert!(store.read_chunk(&photo.sha256, 0..4096, &vault).is_ok());
    let err = store
        .read_chunk(&photo.sha256, 8192..12288, &vault)
        .unwrap_err();
    assert!(err.to_string().contains("tidak dapat dibuka"), "{err}");
    assert!(!store.blob_is_sound(&photo.sha256, &vault).unwrap());
    // A swapped content key.
    raw.execute(
        "UPDATE blobs SET sealed_key = zeroblob(80) WHERE sha256 = ?1",
        [photo.sha256.to_hex()],
    )
    .unwrap();
    assert!(store.read_chunk(&photo.sha256, 0..4096, &vault).is_err());
}

#[test]
fn chunks_of_any_range_come_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, vault) = new_store(&dir.path().join("bus.sqlite"));
    let app = save(&mut store, 6, 4096);
    let p = app.id_photo().unwrap();
    let whole = store.read_chunk(&p.sha256, 0..p.size, &vault).unwrap();
    assert_eq!(keliling_shared::Sha256::digest(&whole), p.sha256);
    for r in [0..1, 4000..9000, 4096..8192, p.size - 5..p.size, 7..7] {
        let got = store.read_chunk(&p.sha256, r.clone(), &vault).unwrap();
        assert_eq!(got, &whole[r.start as usize..r.end as usize], "{r:?}");
    }
    assert!(store.read_chunk(&p.sha256, 0..p.size + 1, &vault).is_err());
}

#[test]
fn an_old_clear_text_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bus.sqlite");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE applications (id TEXT PRIMARY KEY, captured_at INTEGER NOT NULL,
             service TEXT NOT NULL, applicant TEXT NOT NULL, record BLOB NOT NULL);",
        )
        .unwrap();
    let err = Store::open(&db).err().unwrap();
    assert!(matches!(err, StoreError::OldSchema(_)), "{err:?}");
    assert!(err.to_string().contains("versi lama"), "{err}");
}

/// A blob's stored bytes and sealed key, straight from SQLite.
fn stored(db: &Path, sha: &keliling_shared::Sha256) -> (bool, bool) {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT data IS NOT NULL, sealed_key IS NOT NULL FROM blobs WHERE sha256 = ?1",
            [sha.to_hex()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

#[test]
fn purge_drops_delivered_bytes_and_keys_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bus.sqlite");
    let (mut store, vault) = new_store(&db);
    let delivered = save(&mut store, 7, 16 * 1024);
    let acked = save(&mut store, 8, 16 * 1024);
    let queued = save(&mut store, 9, 16 * 1024);
    store.on_record_ack(&acked.id, &[]).unwrap();
    // Not delivered yet: even retention 0 keeps everything.
    assert_eq!(store.purge_delivered_blobs(Duration::ZERO).unwrap(), 0);
    store
        .on_delivered(&delivered.id, UnixMillis::now())
        .unwrap();
    assert_eq!(
        store
            .purge_delivered_blobs(Duration::from_secs(86_400))
            .unwrap(),
        0
    );
    assert_eq!(store.purge_delivered_blobs(Duration::ZERO).unwrap(), 1);
    let d = delivered.id_photo().unwrap().sha256;
    assert_eq!(stored(&db, &d), (false, false), "bytes and key gone");
    assert!(store.read_chunk(&d, 0..10, &vault).is_err());
    for app in [&acked, &queued] {
        let sha = app.id_photo().unwrap().sha256;
        assert_eq!(stored(&db, &sha), (true, true));
        assert!(store.blob_is_sound(&sha, &vault).unwrap());
    }
    assert_eq!(
        store.state(&delivered.id).unwrap(),
        Some(OutboxState::Delivered)
    );
}

/// The purge is wired into `bus-node run`'s daemon: with retention 0, a delivered
/// application's photo bytes go within a check period; an undelivered one's stay. No
/// broker is needed (the sync just keeps backing off), HQ's ack is applied to the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_purges_after_delivery_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = BusConfig::for_bus(
        BusId::parse("bus-test-01").unwrap(),
        dir.path().to_path_buf(),
        "127.0.0.1",
        closed_port,
    );
    // No broker listens there; plain TCP so no certificate files are needed either.
    cfg.broker.insecure_plaintext = true;
    cfg.retention.purge_after_days = 0;
    cfg.retention.check_every_secs = 1;
    let keys = dir.path().join("hq-keys.pub");
    let hq = keliling_shared::sign::SigningKey::generate();
    std::fs::write(
        &keys,
        keliling_shared::sign::VerifyingKeys::new(vec![hq.verifying_key()])
            .unwrap()
            .to_text(),
    )
    .unwrap();
    cfg.trust.hq_keys = Some(keys);
    let db = cfg.db_path();
    let (mut store, vault) = new_store(&db);
    let delivered = save(&mut store, 10, 16 * 1024);
    let waiting = save(&mut store, 11, 16 * 1024);

    // Another bus's key is refused at start.
    let other_dir = tempfile::tempdir().unwrap();
    let (_, other) = new_store(&other_dir.path().join("bus.sqlite"));
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let err = bus_node::daemon::run(cfg.clone(), Arc::new(other), Arc::default(), rx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bukan milik"), "{err}");

    let (tx, rx) = tokio::sync::watch::channel(false);
    let metrics = Arc::new(SyncMetrics::default());
    let daemon = tokio::spawn(bus_node::daemon::run(
        cfg.clone(),
        Arc::new(vault),
        metrics,
        rx,
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (d, w) = (
        delivered.id_photo().unwrap().sha256,
        waiting.id_photo().unwrap().sha256,
    );
    assert_eq!(
        stored(&db, &d),
        (true, true),
        "nothing goes before HQ's ack"
    );
    store
        .on_delivered(&delivered.id, UnixMillis::now())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored(&db, &d) != (false, false) {
        if daemon.is_finished() {
            panic!("the daemon stopped: {:?}", daemon.await);
        }
        assert!(Instant::now() < deadline, "the daemon did not purge");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored(&db, &w), (true, true), "undelivered bytes are kept");
    let _ = tx.send(true);
    tokio::time::timeout(Duration::from_secs(5), daemon)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
