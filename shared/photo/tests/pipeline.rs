//! End-to-end tests of `normalize` on real JPEG and PNG files (no mocks): generated camera
//! photos from the bundled portrait, hand-crafted hostile files, and damaged ones.

use std::io::Cursor;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, RgbImage, Rgba};
use keliling_photo::fixtures::{self, camera_jpeg};
use keliling_photo::{
    assess, normalize, Advice, Background, IdPhoto, Limits, PhotoError, PhotoSpec,
};

fn portrait() -> &'static RgbImage {
    static PORTRAIT: OnceLock<RgbImage> = OnceLock::new();
    PORTRAIT.get_or_init(|| fixtures::load_portrait().expect("bundled portrait decodes"))
}

fn run(input: &[u8]) -> Result<IdPhoto, PhotoError> {
    normalize(input, &PhotoSpec::default(), &Limits::default())
}

fn decode_jpeg(jpeg: &[u8]) -> RgbImage {
    image::load_from_memory_with_format(jpeg, ImageFormat::Jpeg)
        .expect("output parses as JPEG")
        .into_rgb8()
}

/// Marker codes of all segments before the first scan (SOS included), walking by length.
fn header_markers(jpeg: &[u8]) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "starts with SOI");
    let mut markers = Vec::new();
    let mut pos = 2;
    while pos + 4 <= jpeg.len() {
        assert_eq!(jpeg[pos], 0xFF, "marker expected at {pos}");
        let marker = jpeg[pos + 1];
        markers.push(marker);
        if marker == 0xDA {
            break;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
        pos += 2 + len;
    }
    markers
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

/// What the ID photo of an upright `uw` x `uh` camera photo should look like, computed
/// independently of the crate: the portrait covering the upright frame, the spec's crop
/// (centred sides, 2/5 of any vertical excess taken from the top), a plain Lanczos3 resize.
fn reference(uw: u32, uh: u32) -> RgbImage {
    let spec = PhotoSpec::default();
    let upright = DynamicImage::ImageRgb8(portrait().clone())
        .resize_to_fill(uw, uh, FilterType::Triangle)
        .into_rgb8();
    let (tw, th) = (u64::from(spec.width), u64::from(spec.height));
    let (w64, h64) = (u64::from(uw), u64::from(uh));
    let (x, y, w, h) = if w64 * th > h64 * tw {
        let w = ((h64 * tw + th / 2) / th) as u32;
        ((uw - w) / 2, 0, w, uh)
    } else {
        let h = ((w64 * th + tw / 2) / tw) as u32;
        (0, (uh - h) * 2 / 5, uw, h)
    };
    let crop = image::imageops::crop_imm(&upright, x, y, w, h).to_image();
    image::imageops::resize(&crop, spec.width, spec.height, FilterType::Lanczos3)
}

/// Asserts that `out` shows the portrait upright: close to the reference, and far from the
/// reference turned by 90, 180 or 270 degrees or mirrored.
fn assert_upright(out: &RgbImage, uw: u32, uh: u32, what: &str) {
    let good = reference(uw, uh);
    let diff = mean_abs_diff(out, &good);
    assert!(
        diff < 4.0,
        "{what}: mean abs diff to upright reference {diff:.2}"
    );
    let upside_down = image::imageops::rotate180(&good);
    let mirrored = image::imageops::flip_horizontal(&good);
    for (name, wrong) in [("upside down", upside_down), ("mirrored", mirrored)] {
        let wrong_diff = mean_abs_diff(out, &wrong);
        assert!(
            wrong_diff > 10.0 * diff,
            "{what}: looks {name} ({wrong_diff:.2} vs {diff:.2})"
        );
    }
    // A sideways result would not even be portrait-shaped after the crop; compare the top
    // rows with the top of the portrait (hair and face above a dark neck ring) as well.
    let top = image::imageops::crop_imm(out, 0, 0, out.width(), out.height() / 4).to_image();
    let top_ref =
        image::imageops::crop_imm(&good, 0, 0, good.width(), good.height() / 4).to_image();
    assert!(
        mean_abs_diff(&top, &top_ref) < 8.0,
        "{what}: top rows differ"
    );
}

#[test]
fn twelve_megapixel_camera_photo_becomes_an_upright_id_photo_without_metadata() {
    let input = camera_jpeg(portrait(), 4000, 3000, 6, true, 92).expect("camera jpeg");
    // The fixture really carries what must not survive.
    assert!(contains(&input, b"Exif\0\0"));
    assert!(contains(&input, fixtures::EXIF_MAKE.as_bytes()));
    let lat = fixtures::rational_bytes(fixtures::GPS_LATITUDE[2]);
    let lon = fixtures::rational_bytes(fixtures::GPS_LONGITUDE[0]);
    assert!(contains(&input, &lat) && contains(&input, &lon));

    let photo = run(&input).expect("normalizes");
    assert_eq!((photo.width, photo.height), (413, 531));
    assert_eq!((photo.source_width, photo.source_height), (3000, 4000));
    assert!(photo.jpeg.len() <= PhotoSpec::default().max_bytes);
    assert!((30..=92).contains(&photo.quality));
    assert!(
        photo.advice.is_empty(),
        "sharp, well lit: {:?}",
        photo.advice
    );

    // No metadata: only JFIF APP0 and the codec's own segments before the scan.
    let markers = header_markers(&photo.jpeg);
    assert!(
        !markers.iter().any(|m| (0xE1..=0xEF).contains(m)),
        "APPn other than APP0 present: {markers:02X?}"
    );
    assert_eq!(markers.iter().filter(|&&m| m == 0xE0).count(), 1);
    for needle in [
        b"Exif".as_slice(),
        fixtures::EXIF_MAKE.as_bytes(),
        fixtures::EXIF_MODEL.as_bytes(),
        &lat,
        &lon,
        &[0x25, 0x88, 0x04, 0x00], // the GPSInfo IFD entry, little-endian
    ] {
        assert!(!contains(&photo.jpeg, needle), "{needle:02X?} survived");
    }

    let out = decode_jpeg(&photo.jpeg);
    assert_eq!(out.dimensions(), (413, 531));
    assert_upright(&out, 3000, 4000, "12 MP, orientation 6");
}

#[test]
fn every_exif_orientation_comes_out_upright() {
    for orientation in 1..=8u16 {
        let input = camera_jpeg(portrait(), 1600, 1200, orientation, false, 90).expect("jpeg");
        let photo = run(&input).expect("normalizes");
        let (uw, uh) = if orientation >= 5 {
            (1200, 1600)
        } else {
            (1600, 1200)
        };
        assert_eq!((photo.source_width, photo.source_height), (uw, uh));
        let out = decode_jpeg(&photo.jpeg);
        assert_upright(&out, uw, uh, &format!("orientation {orientation}"));
    }
}

/// Standard CRC-32 (as PNG chunks use), bitwise; test files are tiny.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A PNG with a well-formed IHDR (correct CRC) announcing `w` x `h` RGB pixels, followed by a
/// few bytes of image data and IEND: the shape of a decompression bomb, minus the gigabytes.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9C, 0x63, 0x60, 0x18, 0x05, 0xA3, 0x60],
    );
    png_chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn png_decompression_bomb_is_refused_from_the_header() {
    let bomb = png_claiming(60_000, 60_000);
    assert!(bomb.len() < 100);
    let start = Instant::now();
    match run(&bomb) {
        Err(PhotoError::TooManyPixels { width, height, max }) => {
            assert_eq!((width, height), (60_000, 60_000));
            assert_eq!(max, 50_000_000);
        }
        other => panic!("expected TooManyPixels, got {other:?}"),
    }
    // 10.8 GB were never allocated: the refusal costs nothing.
    assert!(start.elapsed() < Duration::from_millis(50));
}

#[test]
fn a_tiny_jpeg_claiming_a_large_frame_is_refused_before_decoding() {
    // Found by fuzzing: a valid small JPEG patched to announce 7071 x 7071 (under the
    // pixel limit), ending in EOI. The decoder would paint ~150 MB of grey for it.
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
        .encode_image(&RgbImage::new(16, 16))
        .expect("encode");
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("SOF0 present");
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0x1B, 0x9F, 0x1B, 0x9F]);
    let start = Instant::now();
    match run(&jpeg) {
        Err(PhotoError::Decode(why)) => assert!(why.contains("7071 x 7071"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_millis(50));
}

#[test]
fn jpeg_decompression_bomb_is_refused_from_the_header() {
    // A real small JPEG whose frame header is patched to announce 60000 x 60000.
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
        .encode_image(&RgbImage::new(16, 16))
        .expect("encode");
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("SOF0 present");
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    let start = Instant::now();
    assert!(matches!(
        run(&jpeg),
        Err(PhotoError::TooManyPixels {
            width: 60_000,
            height: 60_000,
            ..
        })
    ));
    assert!(start.elapsed() < Duration::from_millis(50));

    // A frame header alone, with nothing after it, is refused the same way.
    let header_only = &jpeg[..sof + 19];
    assert!(matches!(
        run(header_only),
        Err(PhotoError::TooManyPixels { .. })
    ));
}

#[test]
fn memory_limit_counts_the_decoded_buffer() {
    // 500 x 500 is far under the pixel limit, but as 16-bit RGBA it decodes to 2 MB plus an
    // RGB copy; with 1.5 MB allowed it must be refused before decoding.
    let img = image::ImageBuffer::from_pixel(500, 500, Rgba([1000u16, 2000, 3000, 65535]));
    let mut png = Cursor::new(Vec::new());
    DynamicImage::ImageRgba16(img)
        .write_to(&mut png, ImageFormat::Png)
        .expect("encode png");
    let limits = Limits {
        max_alloc: 1_500_000,
        ..Limits::default()
    };
    match normalize(png.get_ref(), &PhotoSpec::default(), &limits) {
        Err(PhotoError::TooManyPixels { width, height, max }) => {
            assert_eq!((width, height), (500, 500));
            assert_eq!(max, 500_000);
        }
        other => panic!("expected TooManyPixels, got {other:?}"),
    }
    // With the default limits the same file is fine.
    assert!(run(png.get_ref()).is_ok());
}

#[test]
fn random_bytes_and_text_files_are_not_images() {
    let mut state = 0x1234_5678u32;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    let text = b"Nama: Siti Aminah\nNIK: 3171234567890001\nAlamat: Jl. Merdeka 1\n";
    for (what, input) in [("random", random.as_slice()), ("text", text.as_slice())] {
        match run(input) {
            Err(e @ PhotoError::NotAnImage(_)) => {
                let msg = e.to_string();
                assert!(msg.contains("not a JPEG or PNG"), "{what}: {msg}");
            }
            other => panic!("{what}: expected NotAnImage, got {other:?}"),
        }
    }
    assert!(run(text).is_err_and(|e| e.to_string().contains("text file")));
    assert!(matches!(run(b""), Err(PhotoError::NotAnImage(_))));
}

#[test]
fn oversized_file_is_refused_before_anything_else() {
    let limits = Limits {
        max_input_bytes: 1000,
        ..Limits::default()
    };
    let big = vec![0u8; 1001]; // not even an image: size is checked first
    assert!(matches!(
        normalize(&big, &PhotoSpec::default(), &limits),
        Err(PhotoError::TooLarge {
            bytes: 1001,
            max: 1000
        })
    ));
}

#[test]
fn truncated_files_are_decode_errors() {
    let jpeg = camera_jpeg(portrait(), 800, 600, 6, true, 90).expect("jpeg");
    for cut in [jpeg.len() * 3 / 5, jpeg.len() - 2, 700, 300, 40, 3] {
        match run(&jpeg[..cut]) {
            Err(PhotoError::Decode(msg)) => assert!(!msg.is_empty()),
            other => panic!("cut at {cut}: expected Decode, got {other:?}"),
        }
    }
    let png = include_bytes!("../fixtures/astronaut.png");
    for cut in [png.len() / 2, 100, 30] {
        assert!(
            matches!(run(&png[..cut]), Err(PhotoError::Decode(_))),
            "png cut at {cut}"
        );
    }
}

#[test]
fn damaged_jpegs_never_panic() {
    let jpeg = camera_jpeg(portrait(), 320, 240, 1, true, 85).expect("jpeg");
    let mut state = 0xDEAD_BEEFu32;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    for _ in 0..200 {
        let mut damaged = jpeg.clone();
        for _ in 0..1 + next() % 8 {
            let at = 2 + next() as usize % (damaged.len() - 2);
            damaged[at] = next() as u8;
        }
        // Any outcome but a panic is acceptable; a success must still be a valid photo.
        if let Ok(photo) = run(&damaged) {
            assert_eq!(decode_jpeg(&photo.jpeg).dimensions(), (413, 531));
        }
    }
}

fn photo_of(portrait: &RgbImage) -> IdPhoto {
    let input = camera_jpeg(portrait, 1600, 1200, 6, true, 90).expect("jpeg");
    run(&input).expect("normalizes")
}

fn map_pixels(img: &RgbImage, f: impl Fn(u8) -> u8) -> RgbImage {
    let mut out = img.clone();
    out.iter_mut().for_each(|v| *v = f(*v));
    out
}

#[test]
fn dark_photo_is_too_dark_but_not_called_blurred() {
    let dark = map_pixels(portrait(), |v| (f32::from(v) * 0.15) as u8);
    let advice = photo_of(&dark).advice;
    assert!(
        matches!(advice.as_slice(), [Advice::TooDark { mean_luma }] if *mean_luma < 30),
        "{advice:?}"
    );
    assert_eq!(
        advice[0].message_id(),
        "Foto terlalu gelap: tambah cahaya lalu ulangi."
    );
    assert!(!advice[0].is_blocking());
}

#[test]
fn washed_out_photo_is_too_bright_but_not_called_blurred() {
    let bright = map_pixels(portrait(), |v| 255 - (f32::from(255 - v) * 0.15) as u8);
    let advice = photo_of(&bright).advice;
    assert!(
        matches!(advice.as_slice(), [Advice::TooBright { mean_luma }] if *mean_luma > 220),
        "{advice:?}"
    );
}

fn blurred(sigma: f32) -> RgbImage {
    DynamicImage::ImageRgb8(portrait().clone())
        .blur(sigma)
        .into_rgb8()
}

#[test]
fn heavily_blurred_photo_is_called_blurred() {
    for sigma in [3.0, 5.0] {
        let advice = photo_of(&blurred(sigma)).advice;
        assert!(
            matches!(advice.as_slice(), [Advice::Blurred { sharpness }] if *sharpness < 2.0),
            "sigma {sigma}: {advice:?}"
        );
    }
}

#[test]
fn sharp_and_slightly_soft_photos_are_not_called_blurred() {
    let sharp = photo_of(portrait()).advice;
    assert!(sharp.is_empty(), "{sharp:?}");
    // Mild softness (sigma 1 px) is not worth sending a citizen to a retake.
    let soft = photo_of(&blurred(1.0)).advice;
    assert!(soft.is_empty(), "{soft:?}");
}

#[test]
fn tiny_photo_is_too_small_and_blocking() {
    let input = camera_jpeg(portrait(), 200, 250, 1, false, 90).expect("jpeg");
    let photo = run(&input).expect("still produces a photo");
    assert_eq!((photo.width, photo.height), (413, 531));
    assert_eq!(decode_jpeg(&photo.jpeg).dimensions(), (413, 531));
    assert_eq!(
        photo.advice.first(),
        Some(&Advice::TooSmall {
            width: 200,
            height: 250,
            min_width: 413,
            min_height: 531
        })
    );
    assert!(photo.is_blocked());
    assert!(photo.advice[0].message_id().contains("terlalu kecil"));
}

#[test]
fn impossible_budget_is_refused_with_the_real_smallest_size() {
    let input = camera_jpeg(portrait(), 1600, 1200, 6, false, 90).expect("jpeg");
    let spec = PhotoSpec {
        max_bytes: 2000,
        ..PhotoSpec::default()
    };
    match normalize(&input, &spec, &Limits::default()) {
        // A 413 x 531 face photo at quality 30 is well over 2000 bytes; the error says how much.
        Err(PhotoError::BudgetUnreachable {
            max_bytes,
            smallest,
        }) => {
            assert_eq!(max_bytes, 2000);
            assert!(smallest > 2000);
            // and that really is what quality 30 gives (the tightest budget that fits is it)
            let fits = PhotoSpec {
                max_bytes: smallest,
                ..PhotoSpec::default()
            };
            let photo = normalize(&input, &fits, &Limits::default()).expect("fits exactly");
            assert_eq!((photo.jpeg.len(), photo.quality), (smallest, 30));
        }
        Ok(photo) => panic!("2000 bytes claimed to fit: {photo:?}"),
        Err(other) => panic!("expected BudgetUnreachable, got {other:?}"),
    }
}

#[test]
fn tight_budget_lowers_quality_but_fits() {
    let input = camera_jpeg(portrait(), 1600, 1200, 6, false, 90).expect("jpeg");
    let spec = PhotoSpec {
        max_bytes: 30_000,
        ..PhotoSpec::default()
    };
    let photo = normalize(&input, &spec, &Limits::default()).expect("fits");
    assert!(photo.jpeg.len() <= 30_000);
    assert!(
        photo.quality < 92 && photo.quality >= 30,
        "{}",
        photo.quality
    );
    decode_jpeg(&photo.jpeg);
}

#[test]
fn png_and_grayscale_inputs_are_accepted() {
    let png = include_bytes!("../fixtures/astronaut.png");
    let photo = run(png).expect("png normalizes");
    assert_eq!((photo.source_width, photo.source_height), (512, 512));
    // 512 px high is less than the 531 the ID photo needs.
    assert!(photo.is_blocked(), "{:?}", photo.advice);

    let gray = DynamicImage::ImageRgb8(portrait().clone())
        .resize(1200, 1200, FilterType::Triangle)
        .into_luma8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&gray)
        .expect("encode gray");
    let photo = run(&jpeg).expect("grayscale normalizes");
    let out = decode_jpeg(&photo.jpeg);
    assert!(out.pixels().all(|p| p.0[0].abs_diff(p.0[1]) < 8));
}

#[test]
fn transparent_png_lands_on_white() {
    let img = image::RgbaImage::from_pixel(600, 800, Rgba([0, 0, 0, 0]));
    let mut png = Cursor::new(Vec::new());
    DynamicImage::ImageRgba8(img)
        .write_to(&mut png, ImageFormat::Png)
        .expect("encode");
    let out = decode_jpeg(&run(png.get_ref()).expect("normalizes").jpeg);
    assert!(out.pixels().all(|p| p.0.iter().all(|&c| c > 245)));
}

/// A 413 x 531 photo: plain background of `bg`, the portrait's centre pasted bottom-centre.
fn on_background(bg: [u8; 3]) -> RgbImage {
    let mut img = RgbImage::from_pixel(413, 531, image::Rgb(bg));
    let face = DynamicImage::ImageRgb8(portrait().clone())
        .resize_exact(300, 380, FilterType::Triangle)
        .into_rgb8();
    image::imageops::replace(&mut img, &face, 56, 151);
    img
}

#[test]
fn background_check_is_lenient_but_catches_clearly_wrong_colours() {
    let spec = |bg| PhotoSpec {
        background: Some(bg),
        ..PhotoSpec::default()
    };
    let wrong = |img: &RgbImage, bg| {
        assess(img, &spec(bg)).contains(&Advice::WrongBackground { expected: bg })
    };
    let red = on_background([190, 25, 30]);
    let blue = on_background([30, 90, 170]);
    let white = on_background([236, 234, 228]);
    assert!(!wrong(&red, Background::Red));
    assert!(!wrong(&blue, Background::Blue));
    assert!(!wrong(&white, Background::White));
    assert!(wrong(&red, Background::Blue) && wrong(&red, Background::White));
    assert!(wrong(&blue, Background::Red) && wrong(&blue, Background::White));
    assert!(wrong(&white, Background::Red) && wrong(&white, Background::Blue));
    // Light sky blue is still "blue", a dim white wall is still "white".
    assert!(!wrong(&on_background([110, 170, 230]), Background::Blue));
    assert!(!wrong(&on_background([160, 158, 150]), Background::White));

    // The portrait's own light grey studio backdrop: fine for white, wrong for red or blue.
    let photo = photo_of(portrait());
    let out = decode_jpeg(&photo.jpeg);
    assert!(!wrong(&out, Background::White));
    assert!(wrong(&out, Background::Red) && wrong(&out, Background::Blue));
    let advice = Advice::WrongBackground {
        expected: Background::Blue,
    };
    assert!(advice.message_id().contains("biru"));
}

#[test]
fn assess_on_a_source_image_agrees_with_normalize() {
    let spec = PhotoSpec::default();
    // An upright source of another size is judged on its normalized crop.
    let dark = map_pixels(portrait(), |v| v / 6);
    let big_dark = DynamicImage::ImageRgb8(dark)
        .resize_exact(900, 1200, FilterType::Triangle)
        .into_rgb8();
    let advice = assess(&big_dark, &spec);
    assert!(
        matches!(advice.as_slice(), [Advice::TooDark { .. }]),
        "{advice:?}"
    );
    // A small source gets TooSmall first.
    let small = assess(portrait(), &spec);
    assert!(matches!(
        small.first(),
        Some(Advice::TooSmall {
            width: 512,
            height: 512,
            ..
        })
    ));
}

#[test]
fn impossible_spec_is_an_error_not_a_panic() {
    let input = camera_jpeg(portrait(), 320, 240, 1, false, 80).expect("jpeg");
    for (w, h) in [(0, 531), (413, 0), (70_000, 531)] {
        let spec = PhotoSpec {
            width: w,
            height: h,
            ..PhotoSpec::default()
        };
        assert!(matches!(
            normalize(&input, &spec, &Limits::default()),
            Err(PhotoError::Encode(_))
        ));
    }
    // assess with such a spec does not panic either
    let _ = assess(
        portrait(),
        &PhotoSpec {
            width: 0,
            ..PhotoSpec::default()
        },
    );
}

#[test]
fn error_messages_speak_to_the_operator() {
    let e = PhotoError::TooManyPixels {
        width: 60_000,
        height: 60_000,
        max: 50_000_000,
    };
    let msg = e.to_string();
    assert!(
        msg.contains("60000 x 60000") && msg.contains("refused"),
        "{msg}"
    );
    let e = PhotoError::BudgetUnreachable {
        max_bytes: 2000,
        smallest: 21_000,
    };
    assert!(e.to_string().contains("2000 bytes"));
}

// ---- Shrink-on-load: the JPEG variants a camera, a phone or an editor may hand over ----

/// The APP1 payload (`Exif\0\0` and the TIFF structure) of a `camera_jpeg` file, which puts
/// it first after SOI.
fn exif_payload(jpeg: &[u8]) -> Vec<u8> {
    assert_eq!(&jpeg[2..4], &[0xFF, 0xE1], "APP1 right after SOI");
    let len = usize::from(u16::from_be_bytes([jpeg[4], jpeg[5]]));
    jpeg[6..4 + len].to_vec()
}

/// Encodes with libjpeg (mozjpeg's library, plain libjpeg-turbo settings): `pixels` in
/// `color`, progressive or baseline, with `app1` as an APP1 segment if given.
fn libjpeg_encode(
    pixels: &[u8],
    (w, h): (u32, u32),
    color: mozjpeg::ColorSpace,
    progressive: bool,
    app1: Option<&[u8]>,
) -> Vec<u8> {
    let mut c = mozjpeg::Compress::new(color);
    c.set_fastest_defaults();
    c.set_size(w as usize, h as usize);
    c.set_quality(90.0);
    if progressive {
        c.set_progressive_mode();
    }
    let mut started = c.start_compress(Vec::new()).expect("start");
    if let Some(payload) = app1 {
        started.write_marker(mozjpeg::Marker::APP(1), payload);
    }
    started.write_scanlines(pixels).expect("write");
    started.finish().expect("finish")
}

/// A progressive copy of a `camera_jpeg` file: same pixels, same EXIF.
fn progressive_camera_jpeg(w: u32, h: u32, orientation: u16) -> Vec<u8> {
    let baseline = camera_jpeg(portrait(), w, h, orientation, true, 92).expect("jpeg");
    let pixels = decode_jpeg(&baseline);
    let jpeg = libjpeg_encode(
        pixels.as_raw(),
        (w, h),
        mozjpeg::ColorSpace::JCS_RGB,
        true,
        Some(&exif_payload(&baseline)),
    );
    assert!(contains(&jpeg, &[0xFF, 0xC2]), "progressive frame header");
    jpeg
}

fn assert_valid_photo_or_decode_error(what: &str, result: Result<IdPhoto, PhotoError>) {
    match result {
        Ok(photo) => assert_eq!(decode_jpeg(&photo.jpeg).dimensions(), (413, 531), "{what}"),
        Err(PhotoError::Decode(msg)) => assert!(!msg.is_empty(), "{what}"),
        Err(other) => panic!("{what}: expected a photo or a Decode error, got {other:?}"),
    }
}

#[test]
fn progressive_jpeg_decodes_at_a_reduced_scale_and_comes_out_upright() {
    let input = progressive_camera_jpeg(2400, 1800, 6);
    let photo = run(&input).expect("progressive normalizes");
    assert_eq!((photo.source_width, photo.source_height), (1800, 2400));
    assert!(photo.advice.is_empty(), "{:?}", photo.advice);
    assert!(!contains(&photo.jpeg, b"Exif"));
    assert_upright(
        &decode_jpeg(&photo.jpeg),
        1800,
        2400,
        "progressive, orientation 6",
    );
}

#[test]
fn restart_marker_jpegs_give_the_same_photo_as_their_pixels() {
    for (name, input) in [
        (
            "baseline",
            &include_bytes!("../fixtures/astronaut-restart.jpg")[..],
        ),
        (
            "progressive",
            &include_bytes!("../fixtures/astronaut-progressive-restart.jpg")[..],
        ),
    ] {
        assert!(
            contains(input, &[0xFF, 0xDD]),
            "{name}: has a restart interval"
        );
        // The same pixels, decoded by `image`'s decoder and handed over as PNG.
        let pixels = decode_jpeg(input);
        let mut png = Cursor::new(Vec::new());
        pixels.write_to(&mut png, ImageFormat::Png).expect("png");
        let from_jpeg = decode_jpeg(&run(input).expect("normalizes").jpeg);
        let from_png = decode_jpeg(&run(png.get_ref()).expect("normalizes").jpeg);
        let diff = mean_abs_diff(&from_jpeg, &from_png);
        assert!(diff < 2.0, "{name}: mean abs diff {diff:.2}");
    }
}

#[test]
fn grayscale_jpeg_decodes_at_a_reduced_scale() {
    let gray = DynamicImage::ImageRgb8(portrait().clone())
        .resize_exact(3000, 3000, FilterType::Triangle)
        .into_luma8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&gray)
        .expect("encode gray");
    let photo = run(&jpeg).expect("grayscale normalizes");
    let out = decode_jpeg(&photo.jpeg);
    assert!(out.pixels().all(|p| p.0[0].abs_diff(p.0[1]) < 8));
    // It is the portrait: compare the grey levels with the reference's luma.
    let reference = DynamicImage::ImageRgb8(reference(3000, 3000)).into_luma8();
    let out_luma = DynamicImage::ImageRgb8(out).into_luma8();
    let diff: u64 = out_luma
        .as_raw()
        .iter()
        .zip(reference.as_raw())
        .map(|(&a, &b)| u64::from(a.abs_diff(b)))
        .sum();
    let mean = diff as f64 / out_luma.as_raw().len() as f64;
    assert!(mean < 4.0, "mean abs diff {mean:.2}");
}

#[test]
fn cmyk_jpeg_is_converted_to_rgb() {
    // Photoshop-style (Adobe APP14, inverted) CMYK: C, M, Y hold the light left in R, G, B,
    // and K = 255 is no black ink, so it shows the same colours as the RGB file.
    let rgb = decode_jpeg(&camera_jpeg(portrait(), 1600, 1200, 1, false, 95).expect("jpeg"));
    let cmyk: Vec<u8> = rgb
        .pixels()
        .flat_map(|p| [p.0[0], p.0[1], p.0[2], 255])
        .collect();
    let jpeg = libjpeg_encode(
        &cmyk,
        (1600, 1200),
        mozjpeg::ColorSpace::JCS_CMYK,
        false,
        None,
    );
    assert!(contains(&jpeg, b"Adobe"));
    let mut png = Cursor::new(Vec::new());
    rgb.write_to(&mut png, ImageFormat::Png).expect("png");
    let from_cmyk = decode_jpeg(&run(&jpeg).expect("cmyk normalizes").jpeg);
    let from_rgb = decode_jpeg(&run(png.get_ref()).expect("png normalizes").jpeg);
    let diff = mean_abs_diff(&from_cmyk, &from_rgb);
    assert!(diff < 3.0, "mean abs diff {diff:.2}");
}

#[test]
fn damaged_middle_gives_a_photo_or_a_clear_error_never_a_panic() {
    let baseline = camera_jpeg(portrait(), 1600, 1200, 6, true, 90).expect("jpeg");
    let progressive = progressive_camera_jpeg(1600, 1200, 6);
    for (name, jpeg) in [("baseline", &baseline), ("progressive", &progressive)] {
        let mid = jpeg.len() / 2;
        // Garbage over 4 kB of image data.
        let mut garbage = jpeg.clone();
        garbage[mid..mid + 4096]
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i * 37 % 251) as u8);
        assert_valid_photo_or_decode_error(&format!("{name} with garbage"), run(&garbage));
        // 4 kB cut out of the middle (the end-of-image marker is still there).
        let mut cut = jpeg[..mid].to_vec();
        cut.extend_from_slice(&jpeg[mid + 4096..]);
        assert_valid_photo_or_decode_error(&format!("{name} with a hole"), run(&cut));
        // Everything after the middle replaced by an end-of-image marker.
        let mut short = jpeg[..mid].to_vec();
        short.extend_from_slice(&[0xFF, 0xD9]);
        assert_valid_photo_or_decode_error(&format!("{name} cut short"), run(&short));
    }
}

#[test]
fn damaged_progressive_jpegs_never_panic() {
    let jpeg = progressive_camera_jpeg(320, 240, 1);
    let mut state = 0x0BAD_F00Du32;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    for _ in 0..200 {
        let mut damaged = jpeg.clone();
        for _ in 0..1 + next() % 8 {
            let at = 2 + next() as usize % (damaged.len() - 2);
            damaged[at] = next() as u8;
        }
        if let Ok(photo) = run(&damaged) {
            assert_eq!(decode_jpeg(&photo.jpeg).dimensions(), (413, 531));
        }
    }
}

/// The offset of the `n`-th (0-based) occurrence of marker `code`, walking by segment
/// lengths up to the first scan and by bytes after it.
fn marker_at(jpeg: &[u8], code: u8, n: usize) -> usize {
    jpeg.windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] == 0xFF && w[1] == code)
        .nth(n)
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("no marker {code:02X} #{n}"))
}

fn decode_error(input: &[u8]) -> String {
    match run(input) {
        Err(PhotoError::Decode(msg)) => msg,
        other => panic!("expected a Decode error, got {other:?}"),
    }
}

#[test]
fn fatal_decoder_errors_are_decode_errors_with_libjpeg_s_reason() {
    // A later scan header with impossible progression parameters: libjpeg stops with a
    // fatal error in the middle of decoding, which must come back as an error.
    let mut jpeg = progressive_camera_jpeg(1600, 1200, 1);
    let sos = marker_at(&jpeg, 0xDA, 3);
    let ns = usize::from(jpeg[sos + 4]);
    let ss = sos + 5 + 2 * ns;
    jpeg[ss] = 63; // Ss
    jpeg[ss + 1] = 1; // Se < Ss
    let msg = decode_error(&jpeg);
    assert!(msg.contains("progressive"), "{msg}");

    // A quantization table with a slot number libjpeg does not have.
    let mut jpeg = camera_jpeg(portrait(), 320, 240, 1, false, 90).expect("jpeg");
    let dqt = marker_at(&jpeg, 0xDB, 0);
    jpeg[dqt + 4] = 0x05;
    let msg = decode_error(&jpeg);
    assert!(msg.contains("DQT"), "{msg}");
}

#[test]
fn unsupported_jpeg_variants_are_named() {
    let jpeg = camera_jpeg(portrait(), 320, 240, 1, false, 90).expect("jpeg");
    let sof = marker_at(&jpeg, 0xC0, 0);
    // Arithmetic coding (SOF9), which the decoder is built without.
    let mut arithmetic = jpeg.clone();
    arithmetic[sof + 1] = 0xC9;
    let msg = decode_error(&arithmetic);
    assert!(msg.contains("unsupported JPEG variant"), "{msg}");
    assert!(msg.contains("arithmetic"), "{msg}");
    // 12-bit samples.
    let mut twelve = jpeg.clone();
    twelve[sof + 4] = 12;
    let msg = decode_error(&twelve);
    assert!(msg.contains("unsupported JPEG variant"), "{msg}");
    assert!(msg.contains("precision"), "{msg}");
}

#[test]
fn a_jpeg_with_too_many_scans_is_refused_before_decoding() {
    let jpeg = progressive_camera_jpeg(320, 240, 1);
    let last_scan = marker_at(
        &jpeg,
        0xDA,
        jpeg.windows(2).filter(|w| w == &[0xFF, 0xDA]).count() - 1,
    );
    let eoi = jpeg.len() - 2;
    assert_eq!(&jpeg[eoi..], &[0xFF, 0xD9]);
    // Repeat the last (refinement) scan until there are far more scans than any camera writes.
    let mut crafted = jpeg[..eoi].to_vec();
    for _ in 0..150 {
        crafted.extend_from_slice(&jpeg[last_scan..eoi]);
    }
    crafted.extend_from_slice(&[0xFF, 0xD9]);
    let start = Instant::now();
    let msg = decode_error(&crafted);
    assert!(msg.contains("scans"), "{msg}");
    assert!(start.elapsed() < Duration::from_millis(50));
}

#[test]
fn progressive_coefficients_count_against_the_memory_limit() {
    // 1600 x 1200 4:2:0 decodes at full size (too small to shrink on load for 413 x 531):
    // 5.8 MB of RGB output either way, plus 5.8 MB of coefficients when progressive.
    let limits = Limits {
        max_alloc: 10_000_000,
        ..Limits::default()
    };
    let spec = PhotoSpec::default();
    let baseline = camera_jpeg(portrait(), 1600, 1200, 1, false, 90).expect("jpeg");
    assert!(normalize(&baseline, &spec, &limits).is_ok());
    let progressive = progressive_camera_jpeg(1600, 1200, 1);
    match normalize(&progressive, &spec, &limits) {
        Err(PhotoError::TooManyPixels { width, height, .. }) => {
            assert_eq!((width, height), (1600, 1200));
        }
        other => panic!("expected TooManyPixels, got {other:?}"),
    }
    assert!(run(&progressive).is_ok(), "fine with the default limits");
}
