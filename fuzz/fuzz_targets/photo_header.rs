//! `keliling_photo::probe`, the header probe (HQ runs it on every received photo), and the
//! same first stage inside `normalize`: size limit, format sniffing and the hand-written
//! JPEG/PNG header walk, all before any decoder exists. Fast, so the header walk gets most
//! of the photo executions.
//!
//! Properties, with the default `Limits`:
//! - `NotAnImage` exactly when the magic bytes are neither JPEG nor PNG;
//! - an accepted file has the media type its magic says, a non-zero size within the pixel
//!   limit, 16-bit sides for JPEG (and an end-of-image marker), the `IHDR` size for PNG;
//! - `normalize` with a pixel limit of zero refuses every file the probe could read, on
//!   exactly the size the probe announced (both share one preflight); it never returns `Ok`.
#![no_main]

use keliling_photo::{normalize, probe, Limits, PhotoError, PhotoSpec};
use libfuzzer_sys::fuzz_target;

const PNG: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let is_jpeg = data.starts_with(&[0xFF, 0xD8, 0xFF]);
    let is_png = data.starts_with(&PNG);
    let be32 = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap());

    // The size the file announces if the probe read it; `None` for a damaged file.
    let announced: Option<Option<(u32, u32)>> = match probe(data, &limits) {
        Ok(info) => {
            let (w, h) = (info.width, info.height);
            assert!(w > 0 && h > 0);
            assert!(u64::from(w) * u64::from(h) <= limits.max_pixels);
            if is_jpeg {
                assert_eq!(info.media_type, "image/jpeg");
                assert!(w <= 65_535 && h <= 65_535);
                assert!(
                    data.windows(2).any(|x| x == [0xFF, 0xD9]),
                    "no end of image"
                );
            } else {
                assert!(is_png, "accepted without a magic number");
                assert_eq!(info.media_type, "image/png");
                assert_eq!(&data[12..16], b"IHDR");
                assert_eq!((w, h), (be32(16), be32(20)));
            }
            Some(Some((w, h)))
        }
        Err(PhotoError::NotAnImage(_)) => {
            assert!(!is_jpeg && !is_png);
            None
        }
        Err(PhotoError::TooManyPixels { width, height, max }) => {
            assert!(is_jpeg || is_png);
            assert!(u64::from(width) * u64::from(height) > max);
            Some(Some((width, height)))
        }
        Err(e @ PhotoError::Decode(_)) => {
            assert!(is_jpeg || is_png, "{e}");
            let _ = e.message_id();
            Some(None)
        }
        Err(e) => panic!("unexpected error from the probe: {e:?}"),
    };

    let zero = Limits {
        max_pixels: 0,
        ..limits
    };
    match normalize(data, &PhotoSpec::default(), &zero) {
        Ok(p) => panic!("a zero-pixel limit let a photo through: {p:?}"),
        Err(PhotoError::TooManyPixels { width, height, max }) => {
            assert_eq!(max, 0);
            match announced {
                Some(Some(size)) => {
                    assert_eq!(size, (width, height), "probe and normalize disagree")
                }
                // A readable header, then a truncated JPEG: the probe refused it as damaged.
                Some(None) => assert!(is_jpeg),
                None => panic!("normalize read a size from a non-image"),
            }
        }
        Err(PhotoError::NotAnImage(_)) => assert!(announced.is_none()),
        Err(PhotoError::Decode(_)) => {
            // Only a header that cannot be read; a readable one is refused on its size first.
            assert_eq!(announced, Some(None), "normalize and the probe disagree");
        }
        Err(e) => panic!("unexpected error before decoding: {e:?}"),
    }
});
