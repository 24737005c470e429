//! Writes the seed corpus: `cargo run --example gen_seeds -- <dir>` (default `seeds`), from
//! the fuzz directory.
//!
//! Every wire seed is a real encoding of a valid message (see `lib.rs`); photo seeds are
//! small camera-like JPEGs (EXIF orientation, GPS) made by `keliling_photo::fixtures`, plus
//! PNGs with and without alpha and a grey JPEG.

use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageFormat};
use keliling_fuzz::{application, down_samples, up_samples};
use keliling_photo::fixtures;
use keliling_shared::topics::{Topics, UpKind};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(d.join(name), bytes).expect("write seed");
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "seeds".into()));

    for (i, env) in up_samples().iter().enumerate() {
        let name = format!("{i:02}-{}", env.body.kind().as_str());
        write(&dir, "up_envelope", &name, &env.encode().expect("encode"));
        // ingest_apply: a bus, the body's topic kind, the postcard body.
        let kind = keliling_shared::topics::UpKind::ALL
            .iter()
            .position(|k| *k == env.body.kind())
            .expect("a kind") as u8;
        let mut seed = vec![i as u8, kind];
        seed.extend(postcard::to_stdvec(&env.body).expect("encode"));
        write(&dir, "ingest_apply", &name, &seed);
    }
    let key = keliling_fuzz::fuzz_key();
    for (i, env) in down_samples().iter().enumerate() {
        let bytes = env.encode_signed(&key).expect("encode");
        write(&dir, "down_envelope", &format!("{i:02}"), &bytes);
    }
    for n in [1u8, 2] {
        let mut app = application(n);
        if n == 2 {
            app.stop.gps = None;
            app.applicant.phone = None;
            app.fields.clear();
            app.attachments.truncate(1);
        }
        let bytes = app.to_stored_bytes().expect("encode");
        write(&dir, "stored_application", &format!("{n:02}"), &bytes);
    }

    // chunk_check: total u64, chunk u32, index u32, data_len u32 (LE), then data.
    for (name, total, chunk, index, len) in [
        ("first", 40_000u64, 16_384u32, 0u32, 16_384u32),
        ("last", 40_000, 16_384, 2, 40_000 - 2 * 16_384),
        ("single", 1_500, 1_024, 0, 1_024),
        ("max", 8 * 1024 * 1024, 65_536, 127, 65_536),
        ("bad-index", 40_000, 16_384, 3, 0),
    ] {
        let mut b = Vec::new();
        b.extend_from_slice(&total.to_le_bytes());
        b.extend_from_slice(&chunk.to_le_bytes());
        b.extend_from_slice(&index.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(b"chunk data");
        write(&dir, "chunk_check", name, &b);
    }

    // bitmap: u16 chunk count (LE), then bytes.
    for (name, len, bytes) in [
        ("empty", 0u16, vec![]),
        ("partial", 10, vec![0b1000_0111, 0b01]),
        ("full", 16, vec![0xFF, 0xFF]),
        ("short", 512, vec![0xFF; 8]),
    ] {
        let mut b = len.to_le_bytes().to_vec();
        b.extend_from_slice(&bytes);
        write(&dir, "bitmap", name, &b);
    }

    // topic_parse: mode byte (even: default prefix; odd: prefix, newline, topic).
    let t = Topics::default();
    let bus = keliling_fuzz::bus();
    for kind in UpKind::ALL {
        let mut b = vec![0u8];
        b.extend_from_slice(t.up(&bus, kind).as_bytes());
        write(&dir, "topic_parse", kind.as_str(), &b);
    }
    let custom = Topics::new("dukcapil/ntt/v1").expect("prefix");
    let mut b = b"\x01dukcapil/ntt/v1\n".to_vec();
    b.extend_from_slice(custom.up(&bus, UpKind::Chunk).as_bytes());
    write(&dir, "topic_parse", "custom-prefix", &b);
    let mut b = vec![2u8];
    b.extend_from_slice(t.down(&bus).as_bytes());
    write(&dir, "topic_parse", "down", &b);

    // Photos: small, so that each run is fast, but real camera-like files.
    let portrait = fixtures::load_portrait().expect("portrait");
    let mut photos: Vec<(String, Vec<u8>)> = Vec::new();
    for (w, h, o, gps) in [
        (64, 48, 6, true),
        (48, 64, 1, false),
        (64, 48, 8, true),
        (40, 40, 3, false),
    ] {
        let j = fixtures::camera_jpeg(&portrait, w, h, o, gps, 80).expect("jpeg");
        photos.push((format!("camera-{w}x{h}-o{o}.jpg"), j));
    }
    let small = DynamicImage::ImageRgb8(portrait.clone()).thumbnail(32, 40);
    let mut png = Vec::new();
    small
        .to_rgba8()
        .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
        .expect("png");
    photos.push(("rgba-32x32.png".into(), png));
    let mut png = Vec::new();
    small
        .to_luma8()
        .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
        .expect("png");
    photos.push(("grey-32x32.png".into(), png));
    let mut grey = Vec::new();
    JpegEncoder::new_with_quality(&mut grey, 70)
        .encode_image(&small.to_luma8())
        .expect("jpeg");
    photos.push(("grey-32x32.jpg".into(), grey));
    for (name, bytes) in &photos {
        // One directory for both photo targets (run.sh maps them to it).
        write(&dir, "photo", name, bytes);
    }

    println!("seeds written to {}", dir.display());
}
