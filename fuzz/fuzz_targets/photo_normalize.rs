//! `keliling_photo::normalize`, the function the bus runs on camera input, with the default
//! `Limits` (25 MiB, 50 Mpx, 512 MiB) and a real service's spec (SIM: 413 x 531, 60 kB,
//! blue background, so the background check runs too).
//!
//! Properties: never panics; an accepted photo has the spec's size, fits the byte budget,
//! uses a quality in 30..=92, carries no metadata segment (only JFIF APP0 before the scan),
//! and is itself accepted again by `normalize` at the same size.
#![no_main]

use keliling_photo::{normalize, Background, Limits, PhotoSpec};
use libfuzzer_sys::fuzz_target;

/// The markers before the first scan of `jpeg`.
fn header_markers(jpeg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 2;
    while pos + 4 <= jpeg.len() && jpeg[pos] == 0xFF {
        let marker = jpeg[pos + 1];
        out.push(marker);
        if marker == 0xDA {
            break;
        }
        pos += 2 + usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let spec = PhotoSpec {
        width: 413,
        height: 531,
        max_bytes: 60_000,
        background: Some(Background::Blue),
    };
    let limits = Limits::default();
    let photo = match normalize(data, &spec, &limits) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.message_id();
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!((photo.width, photo.height), (spec.width, spec.height));
    assert!(
        photo.jpeg.len() <= spec.max_bytes,
        "{} bytes",
        photo.jpeg.len()
    );
    assert!(
        (30..=92).contains(&photo.quality),
        "quality {}",
        photo.quality
    );
    assert!(photo.source_width > 0 && photo.source_height > 0);
    assert!(photo.jpeg.starts_with(&[0xFF, 0xD8]));
    let markers = header_markers(&photo.jpeg);
    assert_eq!(
        markers.last(),
        Some(&0xDA),
        "no scan in the output: {markers:x?}"
    );
    for m in &markers {
        assert!(
            matches!(m, 0xE0 | 0xDB | 0xC0 | 0xC4 | 0xDD | 0xDA),
            "metadata or unexpected marker {m:#x} in the output: {markers:x?}"
        );
    }
    for a in &photo.advice {
        let _ = (a.message_id(), a.message_en(), a.is_blocking());
    }
    let again = normalize(&photo.jpeg, &spec, &limits).expect("our own output is accepted");
    assert_eq!(
        (
            again.width,
            again.height,
            again.source_width,
            again.source_height
        ),
        (spec.width, spec.height, spec.width, spec.height)
    );
});
