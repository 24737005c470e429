//! What HQ checks in a blob's bytes before it counts as someone's photo or document.
//!
//! The SHA-256 proves the bytes are the ones the bus meant; it says nothing about
//! whether they are an image. A broken or hostile bus could send a decompression bomb,
//! a file that is not an image, or a PNG declared as a JPEG: HQ's reviewers would open
//! it. So an assembled blob must be what its record declared, and an image must pass the
//! photo pipeline's header-only checks (no pixel is decoded here).

use keliling_photo::Limits;
use keliling_shared::application::MediaType;

/// Pixels an ID photo may have at HQ: the bus makes them 413 x 531 by default; this
/// leaves room for any service's size and refuses anything camera-sized or larger.
pub const MAX_ID_PHOTO_PIXELS: u64 = 4_000_000;
/// Pixels a scanned document may have (a 600 dpi A4 page is about 35 MP).
pub const MAX_DOCUMENT_PIXELS: u64 = 50_000_000;

/// Checks `bytes` against every declaration records made for them: (kind label, media type).
pub fn check(bytes: &[u8], declared: &[(String, String)]) -> Result<(), String> {
    let Some(actual) = MediaType::sniff(bytes) else {
        return Err("the bytes are not a JPEG, PNG or PDF".into());
    };
    for (kind, media) in declared {
        if media != actual.as_mime() {
            return Err(format!(
                "declared as {media} for {kind}, but the bytes are {}",
                actual.as_mime()
            ));
        }
    }
    let id_photo = declared.iter().any(|(k, _)| k == "id_photo");
    if id_photo && actual != MediaType::Jpeg {
        return Err(format!(
            "an ID photo must be a JPEG, not {}",
            actual.as_mime()
        ));
    }
    match actual {
        MediaType::Jpeg | MediaType::Png => {
            let limits = Limits {
                max_pixels: if id_photo {
                    MAX_ID_PHOTO_PIXELS
                } else {
                    MAX_DOCUMENT_PIXELS
                },
                ..Limits::default()
            };
            keliling_photo::probe(bytes, &limits)
                .map(|_| ())
                .map_err(|e| format!("image refused: {e}"))
        }
        MediaType::Pdf => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([120, 130, 140]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode_image(&img)
            .unwrap();
        out
    }

    fn photo() -> Vec<(String, String)> {
        vec![("id_photo".into(), "image/jpeg".into())]
    }

    #[test]
    fn a_real_id_photo_passes() {
        check(&jpeg(413, 531), &photo()).unwrap();
    }

    #[test]
    fn non_images_bombs_and_lies_are_refused() {
        assert!(check(b"MZ\x90\0 not an image", &photo()).is_err());
        // A JPEG announcing 30000 x 30000 in its header: refused without decoding.
        let mut bomb = jpeg(16, 16);
        let sof = bomb.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        bomb[sof + 5..sof + 7].copy_from_slice(&30000u16.to_be_bytes());
        bomb[sof + 7..sof + 9].copy_from_slice(&30000u16.to_be_bytes());
        let e = check(&bomb, &photo()).unwrap_err();
        assert!(e.contains("image refused"), "{e}");
        // Truncated.
        let full = jpeg(413, 531);
        assert!(check(&full[..full.len() / 2], &photo()).is_err());
        // Declared PDF, is JPEG.
        let e = check(&full, &[("doc:akta".into(), "application/pdf".into())]).unwrap_err();
        assert!(e.contains("declared as application/pdf"), "{e}");
        // A camera-sized "ID photo".
        assert!(check(&jpeg(2500, 2000), &photo()).is_err());
    }
}
