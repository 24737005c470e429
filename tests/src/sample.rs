//! Realistic inputs: citizens with valid NIKs, camera photos made from the bundled
//! public-domain portrait, document scans.

use anyhow::Result;
use bus_node::capture::CaptureInput;
use image::RgbImage;

/// A valid NIK for citizen `i` (Kupang, 53 71 01), born `1980 + i % 40`, sex by parity.
pub fn nik(i: usize) -> (String, String, &'static str) {
    let day = (i % 28) + 1;
    let month = (i / 28) % 12 + 1;
    let year = 1980 + (i % 40);
    let female = i % 2 == 1;
    let nik = format!(
        "537101{:02}{:02}{:02}{:04}",
        day + if female { 40 } else { 0 },
        month,
        year % 100,
        (i % 9999) + 1
    );
    (
        nik,
        format!("{year:04}-{month:02}-{day:02}"),
        if female { "P" } else { "L" },
    )
}

/// The portrait with a mark that makes photo `i` unique (so its hash is unique too). The
/// mark sits on the shoulder, inside every crop that the phone frame (which keeps x 64..448
/// of the portrait) and the photo pipeline make.
pub fn portrait_variant(base: &RgbImage, i: usize) -> RgbImage {
    let mut img = base.clone();
    let colour = image::Rgb([
        (i % 251) as u8,
        (i / 251 % 251) as u8,
        255 - (i % 199) as u8,
    ]);
    let x0 = 80 + (i as u32 % 13) * 24;
    for y in 330..350 {
        for x in x0..x0 + 20 {
            img.put_pixel(x, y, colour);
        }
    }
    img
}

/// A phone-sized camera JPEG (stored 640 x 480, EXIF orientation 6, GPS) of citizen `i`.
pub fn camera_photo(base: &RgbImage, i: usize) -> Result<Vec<u8>> {
    Ok(keliling_photo::fixtures::camera_jpeg(
        &portrait_variant(base, i),
        640,
        480,
        6,
        true,
        88,
    )?)
}

/// A document scan of roughly `bytes` bytes: a real JPEG of paper-like noise.
pub fn document_scan(seed: u64, bytes: usize) -> Result<Vec<u8>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Noise costs about 1.1 byte per pixel at quality 90.
    let side = ((bytes as f64 / 1.1).sqrt() as u32).max(64);
    let img = RgbImage::from_fn(side, side, |_, _| {
        let g: u8 = rng.gen_range(180..=255);
        image::Rgb([g, g, g.saturating_sub(rng.gen_range(0..20))])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&img)?;
    Ok(out)
}

/// A driving-licence renewal (ID photo required) for citizen `i`.
pub fn sim_renewal(i: usize, photo: Vec<u8>) -> CaptureInput {
    let (nik, dob, sex) = nik(i);
    CaptureInput {
        operator: "Petugas Yohanes".into(),
        village: format!("Desa Oelnasi {}", i % 7),
        gps: Some((-10.17, 123.6)),
        service: "SIM_RENEWAL".into(),
        full_name: format!("Warga Nomor {i}"),
        nik,
        date_of_birth: dob,
        sex: sex.into(),
        address: format!("RT {:02} RW 03, Kupang", i % 20 + 1),
        phone: Some(format!("08123{:06}", i)),
        fields: vec![
            ("sim_number".into(), format!("1234-5678-{i:06}")),
            ("sim_class".into(), "C".into()),
            ("expiry_date".into(), "2026-12-31".into()),
        ],
        photo: Some(photo),
        documents: vec![],
        ..Default::default()
    }
}

/// A family-card update with one (large) scan of the old card.
pub fn kk_update(i: usize, scan: Vec<u8>) -> CaptureInput {
    let (nik, dob, sex) = nik(i);
    CaptureInput {
        operator: "Petugas Maria".into(),
        village: "Desa Baumata".into(),
        gps: None,
        service: "KK_UPDATE".into(),
        full_name: format!("Kepala Keluarga {i}"),
        nik,
        date_of_birth: dob,
        sex: sex.into(),
        address: "Jl. Timor Raya 1".into(),
        phone: None,
        fields: vec![
            ("kk_number".into(), format!("53710100{:08}", i)),
            ("change_reason".into(), "kelahiran".into()),
        ],
        photo: None,
        documents: vec![("old_kk".into(), scan)],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distinct citizens must have distinct photos after the whole pipeline, or tests
    /// would silently exercise the shared-blob path.
    #[test]
    fn photos_stay_unique_through_the_pipeline() {
        let base = keliling_photo::fixtures::load_portrait().unwrap();
        let spec = keliling_photo::PhotoSpec::default();
        let hashes: std::collections::HashSet<_> = (0..30)
            .map(|i| {
                let jpeg = camera_photo(&base, i).unwrap();
                let out = keliling_photo::normalize(&jpeg, &spec, &Default::default()).unwrap();
                keliling_shared::Sha256::digest(&out.jpeg)
            })
            .collect();
        assert_eq!(hashes.len(), 30);
    }
}
