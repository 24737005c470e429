//! What an attacker or a broken device can send, thrown at HQ and at a bus through a real
//! broker (both kinds, with TLS): each gets a clear error and a quarantine entry, nothing
//! crashes, and a genuine bus's application still goes through. (`ingest.rs` covers the
//! envelope-level attacks: garbage, truncation, versions, sizes, spoofing, replays.)

use anyhow::{Context, Result};
use bus_node::store::Store;
use hq_sync::ingest::QUARANTINE_ROWS_PER_BUS_PER_MINUTE;
use keliling_e2e::harness::*;
use keliling_e2e::sample;
use keliling_shared::application::{Attachment, AttachmentKind, MediaType};
use keliling_shared::topics::{Topics, UpKind};
use keliling_shared::wire::{BlobProgress, Chunk, Down, DownEnvelope, Up, UpEnvelope};
use keliling_shared::{Application, ApplicationId, Bitmap, BusId, Sha256};
use rumqttc::{AsyncClient, QoS};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

const SQL_NAME: &str = "Robert'); DROP TABLE applications;--";

/// A real 413 x 531 JPEG of `shade`: the shape of an ID photo.
fn small_jpeg(shade: u8) -> Result<Vec<u8>> {
    let img = image::RgbImage::from_pixel(413, 531, image::Rgb([shade, 120, 140]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80).encode_image(&img)?;
    Ok(out)
}

/// A small JPEG whose header announces 30000 x 30000 pixels: a decompression bomb.
fn jpeg_bomb() -> Result<Vec<u8>> {
    let mut bomb = small_jpeg(10)?;
    let sof = bomb
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .context("no SOF0 marker")?;
    bomb[sof + 5..sof + 7].copy_from_slice(&30000u16.to_be_bytes());
    bomb[sof + 7..sof + 9].copy_from_slice(&30000u16.to_be_bytes());
    Ok(bomb)
}

fn png_bytes() -> Result<Vec<u8>> {
    let img = image::RgbImage::from_pixel(413, 531, image::Rgb([1, 2, 3]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// `template` turned into a new application of `bus` whose ID photo is `bytes`,
/// declared as `media`.
fn with_photo(template: &Application, bus: &BusId, bytes: &[u8], media: MediaType) -> Application {
    let mut app = template.clone();
    app.id = ApplicationId::new_v7();
    app.bus_id = bus.clone();
    app.attachments = vec![Attachment {
        kind: AttachmentKind::IdPhoto,
        sha256: Sha256::digest(bytes),
        size: bytes.len() as u64,
        media_type: media,
    }];
    app
}

fn one_chunk(bytes: &[u8], data: Vec<u8>) -> Chunk {
    Chunk {
        blob: Sha256::digest(bytes),
        total_size: bytes.len() as u64,
        chunk_size: 64 * 1024,
        index: 0,
        data,
    }
}

/// Replaces the first occurrence of `what` in `bytes` with `with` (same length).
fn patch(bytes: &[u8], what: &[u8], with: &[u8]) -> Result<Vec<u8>> {
    assert_eq!(what.len(), with.len());
    let at = bytes
        .windows(what.len())
        .position(|w| w == what)
        .with_context(|| format!("{:?} not in the payload", String::from_utf8_lossy(what)))?;
    let mut out = bytes.to_vec();
    out[at..at + with.len()].copy_from_slice(with);
    Ok(out)
}

/// Sample renewal `i` captured on `bus`'s store at `db`, its citizen named `name` if given.
fn capture_one(db: &Path, bus: &str, i: usize, name: Option<&str>) -> Result<Application> {
    let settings = test_capture_settings(bus)?;
    let Some(n) = name else {
        return capture_renewal(db, &settings, i);
    };
    let portrait = keliling_photo::fixtures::load_portrait()?;
    let mut input = sample::sim_renewal(i, sample::camera_photo(&portrait, i)?);
    input.full_name = n.into();
    capture_into(db, &settings, input)
}

async fn hostile_blobs_names_and_floods(kind: BrokerKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let hq_dir = dir.path().join("hq");
    let hq = InProcessHq::start(&broker, &hq_dir).await?;
    let metrics = hq.metrics.clone();

    // bus-good: a citizen whose name reads like SQL. It is only text.
    let good_dir = dir.path().join("good");
    let good_db = good_dir.join("bus.sqlite");
    let good_app = capture_one(&good_db, "bus-good", 1, Some(SQL_NAME))?;

    // bus-evil holds a genuine certificate and sends what a broken or hostile device would.
    let evil = BusId::parse("bus-evil")?;
    let template = capture_one(&dir.path().join("evil/bus.sqlite"), "bus-evil", 2, None)?;
    let topics = Topics::default();
    let (client, eventloop) = AsyncClient::new(
        broker.client_options(&Identity::Bus(evil.to_string()))?,
        256,
    );
    let poller = spawn_poller("evil", eventloop, |_| {});
    let up = |kind| topics.up(&evil, kind);
    let send = |topic: String, payload: Vec<u8>| {
        let client = client.clone();
        async move {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
        }
    };
    let record = |app: &Application| {
        UpEnvelope::new(evil.clone(), Up::Record(Box::new(app.clone()))).encode()
    };
    let chunk = |c: Chunk| UpEnvelope::new(evil.clone(), Up::Chunk(c)).encode();

    let mut expect: Vec<&str> = Vec::new();
    // 1. Wrong hash: the bytes sent are not the bytes the record names.
    let photo = small_jpeg(50)?;
    let wrong = with_photo(&template, &evil, &photo, MediaType::Jpeg);
    send(up(UpKind::Record), record(&wrong)?).await?;
    let mut flipped = photo.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xFF;
    // 2. A decompression bomb as an ID photo.
    let bomb = jpeg_bomb()?;
    let bomb_app = with_photo(&template, &evil, &bomb, MediaType::Jpeg);
    send(up(UpKind::Record), record(&bomb_app)?).await?;
    // 3. Not an image at all, declared as a JPEG.
    let exe = b"MZ\x90\x00\x03 this is a program, not a face".repeat(40);
    let exe_app = with_photo(&template, &evil, &exe, MediaType::Jpeg);
    send(up(UpKind::Record), record(&exe_app)?).await?;
    // 4. A PNG declared as a JPEG.
    let png = png_bytes()?;
    let png_app = with_photo(&template, &evil, &png, MediaType::Jpeg);
    send(up(UpKind::Record), record(&png_app)?).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    send(up(UpKind::Chunk), chunk(one_chunk(&photo, flipped))?).await?;
    expect.push("failed verification");
    send(up(UpKind::Chunk), chunk(one_chunk(&bomb, bomb.clone()))?).await?;
    expect.push("image refused");
    send(up(UpKind::Chunk), chunk(one_chunk(&exe, exe.clone()))?).await?;
    expect.push("not a JPEG, PNG or PDF");
    send(up(UpKind::Chunk), chunk(one_chunk(&png, png.clone()))?).await?;
    expect.push("but the bytes are image/png");
    // 5. A chunk out of range: index 9 of a one-chunk blob.
    let mut out_of_range = one_chunk(&photo, photo.clone());
    out_of_range.index = 9;
    send(up(UpKind::Chunk), chunk(out_of_range)?).await?;
    expect.push("chunk");
    // 6. A name with a control character (BEL) and a NIK with a letter, patched into
    //    otherwise valid envelopes (a Text or Nik cannot even be built that way).
    let plain = record(&with_photo(&template, &evil, &photo, MediaType::Jpeg))?;
    let name = template.applicant.full_name.as_str().as_bytes().to_vec();
    let mut bel = name.clone();
    bel[1] = 0x07;
    send(up(UpKind::Record), patch(&plain, &name, &bel)?).await?;
    expect.push("karakter kendali");
    let nik = template.applicant.nik.as_str().as_bytes().to_vec();
    let mut letter = nik.clone();
    letter[3] = b'X';
    send(up(UpKind::Record), patch(&plain, &nik, &letter)?).await?;
    expect.push("NIK hanya boleh berisi angka");

    eventually("every attack quarantined", Duration::from_secs(30), || {
        let reasons: Vec<String> = hq_store(&hq_dir)?
            .quarantined(100)?
            .into_iter()
            .map(|q| q.reason)
            .collect();
        Ok(expect.iter().all(|e| reasons.iter().any(|r| r.contains(e))))
    })
    .await
    .with_context(|| {
        let reasons = hq_store(&hq_dir)
            .and_then(|s| Ok(s.quarantined(100)?))
            .map(|q| q.into_iter().map(|q| q.reason).collect::<Vec<_>>());
        format!("quarantine holds: {reasons:#?}")
    })?;
    // The refused blobs were never stored and their applications never complete.
    let store = hq_store(&hq_dir)?;
    for sha in [
        Sha256::digest(&bomb),
        Sha256::digest(&exe),
        Sha256::digest(&png),
    ] {
        assert!(!store.has_blob(&sha)?, "a refused blob was stored");
    }
    assert_eq!(store.counts()?.complete, 0);
    drop(store);

    // 7. A flood: distinct garbage as fast as the link takes it.
    let flood = 1000u32;
    for i in 0..flood {
        send(up(UpKind::Record), format!("junk #{i}").into_bytes()).await?;
    }
    let m = metrics.clone();
    eventually(
        "the flood is consumed",
        Duration::from_secs(60),
        move || {
            Ok(m.quarantine_suppressed.load(Ordering::Relaxed) > 0
                && m.messages.load(Ordering::Relaxed) >= u64::from(flood))
        },
    )
    .await?;
    let evil_rows = hq_store(&hq_dir)?
        .quarantined(10_000)?
        .iter()
        .filter(|q| q.claimed_bus.as_deref() == Some("bus-evil"))
        .count() as u32;
    assert!(
        evil_rows <= QUARANTINE_ROWS_PER_BUS_PER_MINUTE + 10,
        "a flood filled the quarantine: {evil_rows} rows"
    );

    // Valid traffic still flows: bus-good's application goes through, name and all.
    let mut bus = broker
        .spawn_bus("bus-good", &good_dir, &dir.path().join("bus.log"))
        .await?;
    eventually("bus-good delivered", Duration::from_secs(60), || {
        Ok(bus_delivered(&good_db)? == 1)
    })
    .await
    .with_context(|| bus.log())?;
    let stored = hq_store(&hq_dir)?
        .applicant_name(&good_app.bus_id, &good_app.id)?
        .context("the good application at HQ")?;
    assert_eq!(stored, SQL_NAME, "the name is kept verbatim, as data");
    assert!(!hq.task.is_finished(), "HQ ingest must survive all of it");
    bus.kill9().await?;
    poller.abort();
    hq.shut_down().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_hostile_blobs_names_and_floods() -> Result<()> {
    hostile_blobs_names_and_floods(BrokerKind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_hostile_blobs_names_and_floods() -> Result<()> {
    hostile_blobs_names_and_floods(BrokerKind::Mosquitto).await
}

/// The bus's side: what arrives on its down topic may be garbage (a broken HQ) or a
/// forgery (a stolen certificate that can publish there, a broker that is not HQ). The
/// bus believes only what HQ's pinned key signed for this bus, and a delivery ack only
/// when it names this bus's own record; everything else is quarantined and moves nothing.
/// On today's code before signatures, the unsigned forged `Delivered` below made the bus
/// mark its application delivered (and purge its photo after retention) while HQ had
/// nothing.
async fn a_bus_survives_hostile_downlink(kind: BrokerKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(mut broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let (bus_dir, hq_dir) = (dir.path().join("bus"), dir.path().join("hq"));
    let db = bus_dir.join("bus.sqlite");
    let app = capture_one(&db, "bus-ntt-05", 5, None)?;
    let mut bus = broker
        .spawn_bus("bus-ntt-05", &bus_dir, &dir.path().join("bus.log"))
        .await?;
    // Down messages are not retained: the bus must have subscribed before they are sent.
    eventually("bus connected", Duration::from_secs(20), || {
        Ok(bus.log().contains("connected to broker"))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bus_id = BusId::parse("bus-ntt-05")?;
    let topics = Topics::default();
    // Only HQ may write down/ topics: the junk comes from an HQ worker's identity (its
    // own, so it does not take over the running HQ's session).
    broker.provision_hq("hq-broken").await?;
    let (client, eventloop) = AsyncClient::new(
        broker.client_options(&Identity::HqWorker("hq-broken".into()))?,
        64,
    );
    let poller = spawn_poller("broken-hq", eventloop, |_| {});
    let hq_key = hq_sync::signing::load(&broker.pki().signing().current())?;
    let forger = keliling_shared::sign::SigningKey::generate();
    let signed = |body: Down| DownEnvelope::new(bus_id.clone(), body).encode_signed(&hq_key);
    let mut own_blobs: Vec<Sha256> = app.attachments.iter().map(|a| a.sha256).collect();
    own_blobs.sort();
    own_blobs.dedup();
    let forged_delivery = Down::Delivered {
        application: app.id,
        hq_received_at: keliling_shared::UnixMillis::now(),
        content_hash: app.content_hash(),
        blobs: own_blobs.clone(),
    };
    let valid = signed(Down::Delivered {
        application: ApplicationId::new_v7(),
        hq_received_at: keliling_shared::UnixMillis::now(),
        content_hash: Sha256::digest(b"someone else's"),
        blobs: vec![],
    })?;
    let mut unknown_version = valid.clone();
    unknown_version[2] = 77;
    // The unsigned form of a true-looking delivery ack: the v1 envelope without signature.
    let unsigned = {
        let env = DownEnvelope::new(bus_id.clone(), forged_delivery.clone());
        let mut b = b"KL\x01".to_vec();
        b.extend(postcard::to_stdvec(&env)?);
        b
    };
    let junk: Vec<(&str, Vec<u8>, bool)> = vec![
        ("garbage", b"garbage".to_vec(), true),
        ("truncated", valid[..valid.len() - 3].to_vec(), true),
        ("unknown version", unknown_version, true),
        ("oversized", vec![b'K'; 200 * 1024], true),
        (
            "HQ-signed, for another bus",
            DownEnvelope::new(
                BusId::parse("bus-other")?,
                Down::BlobStored {
                    blob: Sha256::digest(b"x"),
                },
            )
            .encode_signed(&hq_key)?,
            true,
        ),
        (
            "unsigned delivery ack for the bus's own record",
            unsigned,
            true,
        ),
        (
            "delivery ack signed by a key the bus does not pin",
            DownEnvelope::new(bus_id.clone(), forged_delivery.clone()).encode_signed(&forger)?,
            true,
        ),
        (
            "HQ-signed delivery ack naming other content",
            signed(Down::Delivered {
                application: app.id,
                hq_received_at: keliling_shared::UnixMillis::now(),
                content_hash: Sha256::digest(b"not the bus's record"),
                blobs: own_blobs.clone(),
            })?,
            true,
        ),
        (
            "HQ-signed delivery ack naming other blobs",
            signed(Down::Delivered {
                application: app.id,
                hq_received_at: keliling_shared::UnixMillis::now(),
                content_hash: app.content_hash(),
                blobs: vec![],
            })?,
            true,
        ),
        // Well-formed, signed answers about things this bus never sent: ignored, not obeyed.
        ("signed ack for an unknown application", valid, false),
        (
            "signed record ack for an unknown application",
            signed(Down::RecordAck {
                application: ApplicationId::new_v7(),
                missing: vec![],
            })?,
            false,
        ),
        (
            "signed progress for an unknown blob",
            signed(Down::Progress(BlobProgress {
                blob: Sha256::digest(b"never sent"),
                chunk_count: 4,
                have: Bitmap::new(4),
            }))?,
            false,
        ),
    ];
    let must_quarantine = junk.iter().filter(|(_, _, q)| *q).count() as u64;
    for (_, payload, _) in junk {
        client
            .publish(topics.down(&bus_id), QoS::AtLeastOnce, false, payload)
            .await?;
    }
    eventually(
        "the bus quarantined the junk and the forgeries",
        Duration::from_secs(20),
        || Ok(Store::open(&db)?.quarantine_count()? >= must_quarantine),
    )
    .await
    .with_context(|| bus.log())?;
    // Give anything that slipped through time to act, then: nothing moved.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = Store::open(&db)?.status()?;
    assert_eq!(
        (status.queued, status.delivered, status.rejected),
        (1, 0, 0),
        "a forged message moved the outbox"
    );
    assert_eq!(Store::open(&db)?.quarantine_count()?, must_quarantine);

    // Valid traffic: HQ starts, the bus delivers its application.
    let mut hq = broker.spawn_hq(&hq_dir, &dir.path().join("hq.log")).await?;
    eventually(
        "delivered despite the junk",
        Duration::from_secs(60),
        || Ok(bus_delivered(&db)? == 1),
    )
    .await
    .with_context(|| format!("bus:\n{}\nhq:\n{}", bus.log(), hq.log()))?;
    assert_exactly_once(&[&db], &hq_dir, 1)?;
    let status = Store::open(&db)?.status()?;
    assert_eq!((status.delivered, status.rejected), (1, 0), "{}", app.id);
    poller.abort();
    bus.kill9().await?;
    hq.kill9().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_a_bus_survives_hostile_downlink() -> Result<()> {
    a_bus_survives_hostile_downlink(BrokerKind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_a_bus_survives_hostile_downlink() -> Result<()> {
    a_bus_survives_hostile_downlink(BrokerKind::Mosquitto).await
}
