//! JPEG decoding with shrink-on-load: the pixels come out already reduced by `M/8`.
//!
//! A JPEG stores 8 x 8 blocks of DCT coefficients. Running a smaller inverse DCT on each block
//! (`M x M` from the block's lowest frequencies, `M` from 1 to 8) yields the image at `M/8` of
//! its size for a fraction of the work and memory, and that reduction is itself a good
//! anti-aliasing filter. This is what libvips calls shrink-on-load and why `vipsthumbnail`
//! beat the old pipeline, which decoded all 12 MP (a 34 MiB frame) only to throw most of it
//! away. The scale is chosen by [`resample::Plan::jpeg_eighths`](crate::resample::Plan): the
//! strongest reduction that still leaves the final Lanczos3 at least twice the target's
//! pixels over the crop.
//!
//! # Why `mozjpeg` (libjpeg-turbo's decoder, built from C)
//!
//! Measured on this project's 2-core machine, decoding the benchmark's 12 MP camera JPEG
//! (4000 x 3000, quality 90, 4:2:0, 1.5 MB) to RGB, per call:
//!
//! | decoder | scale | wall | CPU |
//! | --- | --- | --- | --- |
//! | `image` 0.25 (zune-jpeg), before | 8/8 only | 57-62 ms | one thread |
//! | `mozjpeg` 0.10, no SIMD | 3/8 (what 413 x 531 needs) | 33 ms | 34 ms, one thread |
//! | `mozjpeg` 0.10, no SIMD | 8/8 | 109-114 ms | one thread |
//! | `jpeg-decoder` 0.3 (pure Rust) | 1/2 (its next step above 3/8) | 40-57 ms | 84 ms, a thread per component |
//! | `jpeg-decoder` 0.3 | 1/4 (leaves 1.8x, under the margin) | 37 ms | 49 ms |
//!
//! `jpeg-decoder` would be the pure-Rust choice, but it only scales by 1/2, 1/4 and 1/8, so
//! this photo would decode at 1/2 (1.8 times the pixels of 3/8); it always spawns a thread per
//! colour component, so one photo costs a bus computer that also runs the sync more than twice
//! the CPU; its worker code `expect`s on channel errors; and it is in maintenance mode (`image`
//! replaced it with zune-jpeg, which cannot scale at all). libjpeg-turbo's decoder, which the
//! `mozjpeg` crate builds (mozjpeg is a libjpeg-turbo fork whose changes are in the encoder),
//! scales by any `M/8`, streams row by row (a baseline file never has more than a few rows in
//! flight besides the reduced output), is what libvips and ImageMagick decode with, and is
//! fuzzed continuously upstream. It is built *without* SIMD (`default-features = false`), so
//! it needs a C compiler and nothing else: its SIMD needs `nasm`, and would not help much here
//! anyway, since the entropy decoding and the scaled inverse DCTs that dominate a 3/8 decode
//! are plain C in libjpeg-turbo (SIMD speeds up the full-size 8 x 8 path). The `turbojpeg`
//! crate wraps the same code but needs `cmake` and `nasm`, or a system `libturbojpeg`.
//!
//! # How a C decoder is kept from hurting the bus
//!
//! * **Nothing reaches it unchecked.** [`preflight`](crate::preflight) has already checked
//!   the file size, the magic bytes, the announced pixel count (decompression bombs), the
//!   bytes-per-pixel floor and the end-of-image marker, from a header read by hand. Here the
//!   decoder's own reading of the header must agree with ours (same size), the number of
//!   scans is limited ([`MAX_SCANS`]), and the memory the decoder will need (the output rows,
//!   plus for progressive files the whole coefficient buffer) is computed from the header and
//!   held against [`Limits::max_alloc`] *before* it allocates anything large.
//! * **Errors cannot take the process down.** libjpeg reports a fatal error by calling the
//!   error manager's `error_exit`, whose default calls `exit()`. The `mozjpeg` crate replaces
//!   it with a Rust unwind (`std::panic::resume_unwind` with the libjpeg message, through
//!   `extern "C-unwind"` frames, the C compiled with `-fexceptions`). [`decode`] runs the whole
//!   decoder inside `std::panic::catch_unwind` and turns that unwind, or any panic of the
//!   wrapper, into a [`PhotoError::Decode`] with libjpeg's message; the decoder's state is
//!   dropped (`jpeg_destroy_decompress`) on the way out, as libjpeg's error recovery expects.
//!   `resume_unwind` does not run the panic hook, so nothing is printed and a fuzzer's
//!   abort-on-panic hook does not fire on an ordinary bad file. This needs the default
//!   `panic = "unwind"`: a build with `panic = "abort"` would abort on a corrupt JPEG (the
//!   `mozjpeg-sys` build script warns about it), so no profile of this project sets it.
//! * **Damage in the middle is not fatal.** libjpeg only warns about corrupt entropy data
//!   (the `mozjpeg` crate silences warnings) and goes on, filling what it cannot decode; the
//!   photo then shows the damage, which the operator sees before submitting (zune-jpeg, the
//!   decoder before, did the same). A file cut short never gets here: preflight refuses a
//!   JPEG without its end-of-image marker. Damaged headers, impossible scan parameters and
//!   unsupported variants (arithmetic coding, 12-bit) are fatal errors, reported as above.
//!
//! The EXIF orientation is read from the APP1 segment our header walk found, with `image`'s
//! EXIF parser ([`Orientation::from_exif_chunk`], what `image`'s own decoder used); no other
//! metadata is read, and the output is encoded afresh from pixels.

use std::panic::{catch_unwind, AssertUnwindSafe};

use image::metadata::Orientation;
use image::RgbImage;
use mozjpeg::decompress::DecompressStarted;
use mozjpeg::{ColorSpaceExt, Decompress, Format};

use crate::header::Header;
use crate::{Limits, PhotoError};

/// Most scans a JPEG may have. Cameras write one (baseline) or about ten (progressive);
/// `jpegtran` and mozjpeg's optimized progressive files stay well under a hundred. Each scan
/// costs a walk over every block of the image however few bytes it holds.
pub(crate) const MAX_SCANS: usize = 100;

/// The EXIF orientation of a JPEG, or "as stored" when it has none or a broken one.
///
/// A broken orientation tag is no reason to refuse a photo; the operator sees the result.
pub(crate) fn orientation(input: &[u8], head: &Header) -> Orientation {
    head.jpeg_exif
        .and_then(|(start, end)| input.get(start..end))
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms)
}

/// Size of the image decoded at `eighths / 8`, as libjpeg computes it (rounding up).
pub(crate) fn scaled_size(width: u32, height: u32, eighths: u8) -> (u32, u32) {
    let scale = |len: u32| (u64::from(len) * u64::from(eighths)).div_ceil(8) as u32;
    (scale(width), scale(height))
}

/// Decodes a preflighted JPEG at `eighths / 8` of its size (1 to 8) to RGB.
///
/// `too_many` makes the error for a file whose decoding would need more memory than
/// `limits.max_alloc`.
pub(crate) fn decode(
    input: &[u8],
    head: &Header,
    eighths: u8,
    limits: &Limits,
    too_many: impl Fn() -> PhotoError,
) -> Result<RgbImage, PhotoError> {
    let eighths = eighths.clamp(1, 8);
    if head.jpeg_multi_scan {
        if let Some(sos) = head.jpeg_sos {
            if crate::header::jpeg_scan_count(input, sos, MAX_SCANS) > MAX_SCANS {
                return Err(PhotoError::Decode(format!(
                    "the JPEG has more than {MAX_SCANS} scans, which no camera writes; \
                     it is crafted to make decoding slow"
                )));
            }
        }
    }
    // The decoder is C behind a Rust wrapper that reports libjpeg's fatal errors by
    // unwinding (see the module documentation). Everything it touches is created inside the
    // closure and dropped while unwinding, so no broken state can be observed afterwards.
    match catch_unwind(AssertUnwindSafe(|| {
        decode_unguarded(input, head, eighths, limits, &too_many)
    })) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("the JPEG decoder stopped");
            Err(libjpeg_error(message))
        }
    }
}

/// A libjpeg fatal error message as an operator-facing [`PhotoError::Decode`].
fn libjpeg_error(message: &str) -> PhotoError {
    let message = message
        .strip_prefix("libjpeg fatal error: ")
        .unwrap_or(message)
        .trim();
    // "Unsupported JPEG data precision 12", "Sorry, arithmetic coding is not implemented",
    // "Unsupported color conversion request", ...: a variant, not damage.
    let lower = message.to_ascii_lowercase();
    if ["unsupported", "not supported", "not implemented"]
        .iter()
        .any(|s| lower.contains(s))
    {
        PhotoError::Decode(format!("unsupported JPEG variant: {message}"))
    } else {
        PhotoError::Decode(format!("the JPEG decoder stopped: {message}"))
    }
}

fn io_error(e: std::io::Error) -> PhotoError {
    PhotoError::Decode(format!("the JPEG decoder stopped: {e}"))
}

/// Bytes the decoder will allocate for a `width` x `height` frame decoded to `out_w` x
/// `out_h` with `out_channels` bytes per pixel, at most.
///
/// * Multi-scan (progressive) files keep every DCT coefficient of the full-size image until
///   the last scan: 64 coefficients of 2 bytes per block, blocks rounded up to whole MCUs.
/// * The output rows ([`mozjpeg`] returns the whole image in one buffer), plus an RGB copy
///   when the file is greyscale or CMYK.
/// * libjpeg's own row buffers: a few MCU rows of every component (an MCU is at most 4 blocks,
///   32 pixels, high; context rows double that), bounded here by 256 full-width rows of 4
///   components.
fn decoder_bytes(
    head: &Header,
    blocks: &[(u64, u64, u64, u64)],
    out_w: u32,
    out_h: u32,
    out_channels: u64,
) -> u64 {
    let coefficients: u64 = if head.jpeg_multi_scan {
        blocks
            .iter()
            .map(|&(w_blocks, h_blocks, h_samp, v_samp)| {
                let w = w_blocks.div_ceil(h_samp.max(1)) * h_samp.max(1);
                let h = h_blocks.div_ceil(v_samp.max(1)) * v_samp.max(1);
                w.saturating_mul(h).saturating_mul(64 * 2)
            })
            .fold(0u64, u64::saturating_add)
    } else {
        0
    };
    let pixels = u64::from(out_w) * u64::from(out_h);
    let output = pixels * out_channels + if out_channels == 3 { 0 } else { pixels * 3 };
    let rows = u64::from(head.width) * 4 * 256;
    coefficients.saturating_add(output).saturating_add(rows)
}

fn decode_unguarded(
    input: &[u8],
    head: &Header,
    eighths: u8,
    limits: &Limits,
    too_many: &dyn Fn() -> PhotoError,
) -> Result<RgbImage, PhotoError> {
    // Reads the markers up to the first scan; fatal header errors unwind to `decode`.
    let mut dec = Decompress::builder().from_mem(input).map_err(io_error)?;

    // The decoder must see the frame our header walk vetted; if it read another one (a
    // second frame header, say), stop instead of trusting either.
    let announced = (head.width as usize, head.height as usize);
    if dec.size() != announced {
        return Err(PhotoError::Decode(format!(
            "the JPEG decoder read a {} x {} frame where the header says {} x {}",
            dec.width(),
            dec.height(),
            head.width,
            head.height
        )));
    }
    let components = dec.components();
    if components.is_empty() || components.len() > 4 {
        return Err(PhotoError::Decode(format!(
            "unsupported JPEG variant: {} colour components",
            components.len()
        )));
    }
    let blocks: Vec<(u64, u64, u64, u64)> = components
        .iter()
        .map(|c| {
            (
                u64::from(c.width_in_blocks),
                u64::from(c.height_in_blocks),
                u64::try_from(c.h_samp_factor).unwrap_or(4),
                u64::try_from(c.v_samp_factor).unwrap_or(4),
            )
        })
        .collect();
    let out_channels = match components.len() {
        1 => 1,
        4 => 4,
        _ => 3,
    };
    let (out_w, out_h) = scaled_size(head.width, head.height, eighths);
    if decoder_bytes(head, &blocks, out_w, out_h, out_channels) > limits.max_alloc {
        return Err(too_many());
    }

    dec.scale(eighths);
    // Greyscale comes out as grey, YCbCr and RGB as RGB, CMYK and YCCK as CMYK; anything
    // else is asked for as RGB, which libjpeg refuses with a clear message if it cannot.
    let image = match dec.image().map_err(io_error)? {
        Format::RGB(started) => read_all(started, 3, out_w, out_h)?,
        Format::Gray(started) => {
            let gray = read_all(started, 1, out_w, out_h)?;
            gray.iter().flat_map(|&v| [v, v, v]).collect()
        }
        Format::CMYK(started) => {
            let cmyk = read_all(started, 4, out_w, out_h)?;
            cmyk_to_rgb(&cmyk, head.jpeg_adobe)
        }
    };
    RgbImage::from_raw(out_w, out_h, image).ok_or_else(|| {
        PhotoError::Decode("the JPEG decoder returned fewer pixels than it announced".to_owned())
    })
}

/// Reads every row, checks the size, and finishes the decompression (which reads the rest of
/// the file, so that a fatal error there is reported too).
fn read_all(
    mut started: DecompressStarted<&[u8]>,
    channels: usize,
    out_w: u32,
    out_h: u32,
) -> Result<Vec<u8>, PhotoError> {
    if (started.width(), started.height()) != (out_w as usize, out_h as usize)
        || started.color_space().num_components() != channels
    {
        return Err(PhotoError::Decode(format!(
            "the JPEG decoder chose a {} x {} output where {out_w} x {out_h} was expected",
            started.width(),
            started.height()
        )));
    }
    let pixels: Vec<u8> = started.read_scanlines().map_err(io_error)?;
    started.finish().map_err(io_error)?;
    if pixels.len() != out_w as usize * out_h as usize * channels {
        return Err(PhotoError::Decode(
            "the JPEG decoder returned fewer rows than it announced".to_owned(),
        ));
    }
    Ok(pixels)
}

/// CMYK (or YCCK, which libjpeg turns into CMYK) to RGB, without a colour profile: a plain
/// ink model, as libvips and ImageMagick do without an ICC profile. Photoshop, which writes
/// the Adobe APP14 segment, stores the channels inverted (255 = no ink).
fn cmyk_to_rgb(cmyk: &[u8], inverted: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        let [c, m, y, k] = if inverted {
            [px[0], px[1], px[2], px[3]]
        } else {
            [255 - px[0], 255 - px[1], 255 - px[2], 255 - px[3]]
        }
        .map(u32::from);
        // Here every channel is "how much light is left": 255 = none of that ink.
        out.extend([c, m, y].map(|v| ((v * k + 127) / 255) as u8));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_size_rounds_up_like_libjpeg() {
        assert_eq!(scaled_size(4000, 3000, 3), (1500, 1125));
        assert_eq!(scaled_size(4001, 3001, 3), (1501, 1126));
        assert_eq!(scaled_size(1, 1, 1), (1, 1));
        assert_eq!(scaled_size(65_535, 65_535, 8), (65_535, 65_535));
    }

    #[test]
    fn cmyk_conversion_handles_both_conventions() {
        // Inverted (Adobe): 255 everywhere is white, 0 black ink is black.
        assert_eq!(
            cmyk_to_rgb(&[255, 255, 255, 255], true),
            vec![255, 255, 255]
        );
        assert_eq!(cmyk_to_rgb(&[255, 255, 255, 0], true), vec![0, 0, 0]);
        // Full cyan ink (inverted: C = 0) is cyan.
        assert_eq!(cmyk_to_rgb(&[0, 255, 255, 255], true), vec![0, 255, 255]);
        // Plain: 0 is no ink.
        assert_eq!(cmyk_to_rgb(&[0, 0, 0, 0], false), vec![255, 255, 255]);
        assert_eq!(cmyk_to_rgb(&[0, 0, 255, 0], false), vec![255, 255, 0]);
    }

    #[test]
    fn libjpeg_messages_become_operator_errors() {
        let e = libjpeg_error("libjpeg fatal error: Unsupported JPEG data precision 12");
        assert!(e.to_string().contains("unsupported JPEG variant"), "{e}");
        let e = libjpeg_error("libjpeg fatal error: Sorry, arithmetic coding is not implemented");
        assert!(e.to_string().contains("unsupported JPEG variant"), "{e}");
        let e = libjpeg_error("libjpeg fatal error: Bogus marker length");
        assert!(e.to_string().contains("Bogus marker length"), "{e}");
        assert!(matches!(e, PhotoError::Decode(_)));
    }
}

#[cfg(test)]
mod scale_tests {
    //! Shrink-on-load against the full decode, on real files.

    use super::*;
    use crate::fixtures::{camera_jpeg, load_portrait};
    use crate::header::{read_header, Format};
    use crate::resample;

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

    /// The pipeline's 413 x 531 result with the JPEG decoded at `eighths / 8`.
    fn fitted_at(input: &[u8], eighths: u8) -> RgbImage {
        let head = read_header(input, Format::Jpeg).expect("header");
        let plan = resample::plan(head.width, head.height, orientation(input, &head), 413, 531);
        let frame = decode(input, &head, eighths, &Limits::default(), || {
            PhotoError::Encode("over the limit".to_owned())
        })
        .expect("decodes");
        assert_eq!(
            frame.dimensions(),
            scaled_size(head.width, head.height, eighths)
        );
        resample::fit(&frame, eighths, &plan).expect("fits")
    }

    #[test]
    fn scaled_decode_gives_the_photo_of_a_full_decode() {
        let portrait = load_portrait().expect("portrait");
        let input = camera_jpeg(&portrait, 2400, 1800, 6, true, 90).expect("jpeg");
        let head = read_header(&input, Format::Jpeg).expect("header");
        let plan = resample::plan(head.width, head.height, Orientation::Rotate90, 413, 531);
        assert_eq!(plan.jpeg_eighths(), 4, "what the pipeline picks for 4.3 MP");
        let full = fitted_at(&input, 8);
        for eighths in 4..8 {
            let diff = mean_abs_diff(&fitted_at(&input, eighths), &full);
            assert!(diff < 1.0, "{eighths}/8: mean abs diff {diff:.2}");
        }
    }

    #[test]
    fn every_orientation_is_upright_at_every_scale() {
        let portrait = load_portrait().expect("portrait");
        for o in 1..=8u16 {
            let input = camera_jpeg(&portrait, 1600, 1200, o, false, 90).expect("jpeg");
            let full = fitted_at(&input, 8);
            let wrong = [
                ("upside down", image::imageops::rotate180(&full)),
                ("mirrored", image::imageops::flip_horizontal(&full)),
                ("flipped", image::imageops::flip_vertical(&full)),
            ];
            for eighths in 1..8 {
                let out = fitted_at(&input, eighths);
                let diff = mean_abs_diff(&out, &full);
                // 1/8 of 1600 x 1200 is far below the target: blurred, but the same photo.
                let max = if eighths >= 4 { 2.0 } else { 8.0 };
                assert!(diff < max, "orientation {o} at {eighths}/8: {diff:.2}");
                for (name, w) in &wrong {
                    let wrong_diff = mean_abs_diff(&out, w);
                    assert!(
                        wrong_diff > 3.0 * diff,
                        "orientation {o} at {eighths}/8 looks {name} ({wrong_diff:.2} vs {diff:.2})"
                    );
                }
            }
        }
    }

    #[test]
    fn restart_markers_decode_at_every_scale() {
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
            let head = read_header(input, Format::Jpeg).expect("header");
            assert_eq!(head.jpeg_multi_scan, name == "progressive");
            // `image`'s own decoder (zune-jpeg) as the independent reference.
            let reference = image::load_from_memory_with_format(input, image::ImageFormat::Jpeg)
                .expect("zune decodes")
                .into_rgb8();
            for eighths in 1..=8u8 {
                let frame = decode(input, &head, eighths, &Limits::default(), || {
                    PhotoError::Encode("over the limit".to_owned())
                })
                .expect("decodes");
                let (w, h) = scaled_size(head.width, head.height, eighths);
                let expected = image::imageops::resize(
                    &reference,
                    w,
                    h,
                    image::imageops::FilterType::Triangle,
                );
                let diff = mean_abs_diff(&frame, &expected);
                // Different reduction filters (DCT against Triangle) on a small picture.
                let max = match eighths {
                    8 => 1.0,
                    1 | 2 => 7.0,
                    _ => 5.0,
                };
                assert!(diff < max, "{name} at {eighths}/8: {diff:.2}");
            }
        }
    }
}
