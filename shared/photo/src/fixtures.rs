//! Test and demo helpers: a real face, and camera-like JPEGs made from it.
//!
//! Compiled always (not only under `cfg(test)`) because the demo, the benchmark and other
//! crates' tests need the same inputs. Committing a 12 MP camera JPEG per orientation would add
//! megabytes to the repository; generating them takes a fraction of a second and lets a test
//! choose the size, the orientation and whether GPS is present.

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, RgbImage};

use crate::PhotoError;

/// The bundled portrait (NASA, public domain; see `fixtures/README.md`).
const PORTRAIT_PNG: &[u8] = include_bytes!("../fixtures/astronaut.png");

/// Camera make and model written into the fixture's EXIF, so tests can check they are gone.
pub const EXIF_MAKE: &str = "KelilingCam";
/// See [`EXIF_MAKE`].
pub const EXIF_MODEL: &str = "Bus Camera 12MP";
/// Latitude written into the GPS IFD: 6 deg 10 min 31.00 sec S (Monas, Jakarta).
pub const GPS_LATITUDE: [(u32, u32); 3] = [(6, 1), (10, 1), (3100, 100)];
/// Longitude written into the GPS IFD: 106 deg 49 min 37.20 sec E.
pub const GPS_LONGITUDE: [(u32, u32); 3] = [(106, 1), (49, 1), (3720, 100)];

/// Decodes the bundled 512 x 512 portrait of astronaut Eileen Collins.
pub fn load_portrait() -> Result<RgbImage, PhotoError> {
    image::load_from_memory_with_format(PORTRAIT_PNG, image::ImageFormat::Png)
        .map(DynamicImage::into_rgb8)
        .map_err(|e| PhotoError::Decode(e.to_string()))
}

/// Makes a JPEG like a camera or phone writes it.
///
/// * `width` x `height` is the frame **as stored** (the sensor's size, as the JPEG header says),
///   e.g. 4000 x 3000. With orientation 5 to 8 the upright photo is `height` x `width`, as when
///   a phone is held upright.
/// * The portrait is scaled to cover the upright frame (centre crop), given a faint
///   sensor-like grain so that the file size and the decoding cost resemble a real camera's
///   rather than a perfectly smooth upscale, and stored turned so that the EXIF `orientation`
///   (1 to 8; cameras use 1, 3, 6, 8) makes it upright again.
/// * A hand-built EXIF APP1 segment follows SOI: Make ([`EXIF_MAKE`]), Model, Orientation, and
///   if `with_gps` a GPS IFD with [`GPS_LATITUDE`] S / [`GPS_LONGITUDE`] E.
///
/// Errors: [`PhotoError::Encode`] for an orientation outside 1..=8 or an empty size.
pub fn camera_jpeg(
    portrait: &RgbImage,
    width: u32,
    height: u32,
    orientation: u16,
    with_gps: bool,
    quality: u8,
) -> Result<Vec<u8>, PhotoError> {
    let o = u8::try_from(orientation)
        .ok()
        .and_then(Orientation::from_exif)
        .ok_or_else(|| {
            PhotoError::Encode(format!(
                "EXIF orientation {orientation} does not exist (valid: 1 to 8)"
            ))
        })?;
    if width == 0 || height == 0 || portrait.width() == 0 || portrait.height() == 0 {
        return Err(PhotoError::Encode(format!(
            "cannot make a {width} x {height} camera photo"
        )));
    }
    let (uw, uh) = crate::geometry::upright_size(width, height, o);
    let mut upright = DynamicImage::ImageRgb8(portrait.clone())
        .resize_to_fill(uw, uh, FilterType::Triangle)
        .into_rgb8();
    add_grain(&mut upright);
    let stored = store_for_orientation(upright, o);

    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, quality)
        .encode_image(&stored)
        .map_err(|e| PhotoError::Encode(e.to_string()))?;

    let mut app1_payload = b"Exif\0\0".to_vec();
    app1_payload.extend_from_slice(&exif_tiff(orientation, with_gps));
    let seg_len = u16::try_from(app1_payload.len() + 2)
        .map_err(|_| PhotoError::Encode("EXIF segment too long".to_owned()))?;
    let mut out = Vec::with_capacity(jpeg.len() + app1_payload.len() + 4);
    out.extend_from_slice(&jpeg[..2]); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&seg_len.to_be_bytes());
    out.extend_from_slice(&app1_payload);
    out.extend_from_slice(&jpeg[2..]);
    Ok(out)
}

/// Returns the stored frame that `o` turns into `upright` (the inverse transform).
fn store_for_orientation(upright: RgbImage, o: Orientation) -> RgbImage {
    use image::imageops::{flip_horizontal, rotate180, rotate270, rotate90};
    match o {
        Orientation::NoTransforms => upright,
        Orientation::FlipHorizontal => flip_horizontal(&upright),
        Orientation::FlipVertical => image::imageops::flip_vertical(&upright),
        Orientation::Rotate180 => rotate180(&upright),
        Orientation::Rotate90 => rotate270(&upright),
        Orientation::Rotate270 => rotate90(&upright),
        Orientation::Rotate90FlipH => rotate270(&flip_horizontal(&upright)),
        Orientation::Rotate270FlipH => rotate90(&flip_horizontal(&upright)),
    }
}

/// Adds deterministic grain of +-3 levels (xorshift noise), like a camera sensor's.
fn add_grain(img: &mut RgbImage) {
    let mut state: u32 = 0x9E37_79B9;
    for v in img.iter_mut() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let noise = ((state >> 16) % 7) as i16 - 3; // -3..=3
        *v = (i16::from(*v) + noise).clamp(0, 255) as u8;
    }
}

/// Little-endian TIFF structure of an EXIF block (what follows `Exif\0\0` in APP1).
fn exif_tiff(orientation: u16, with_gps: bool) -> Vec<u8> {
    const ASCII: u16 = 2;
    const SHORT: u16 = 3;
    const LONG: u16 = 4;
    const RATIONAL: u16 = 5;
    const BYTE: u16 = 1;

    let make = format!("{EXIF_MAKE}\0").into_bytes();
    let model = format!("{EXIF_MODEL}\0").into_bytes();

    let ifd0_entries: u32 = if with_gps { 4 } else { 3 };
    let ifd0_at: u32 = 8;
    let ifd0_len = 2 + 12 * ifd0_entries + 4;
    let make_at = ifd0_at + ifd0_len;
    let model_at = make_at + make.len() as u32;
    let gps_at = model_at + model.len() as u32;
    let gps_entries: u32 = 5;
    let lat_at = gps_at + 2 + 12 * gps_entries + 4;
    let lon_at = lat_at + 24;

    let mut t = Vec::new();
    t.extend_from_slice(b"II*\0");
    t.extend_from_slice(&ifd0_at.to_le_bytes());

    let entry = |t: &mut Vec<u8>, tag: u16, typ: u16, count: u32, value: [u8; 4]| {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&typ.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&value);
    };
    let short = |v: u16| {
        let b = v.to_le_bytes();
        [b[0], b[1], 0, 0]
    };

    // IFD0, tags in ascending order as TIFF requires.
    t.extend_from_slice(&(ifd0_entries as u16).to_le_bytes());
    entry(
        &mut t,
        0x010F,
        ASCII,
        make.len() as u32,
        make_at.to_le_bytes(),
    );
    entry(
        &mut t,
        0x0110,
        ASCII,
        model.len() as u32,
        model_at.to_le_bytes(),
    );
    entry(&mut t, 0x0112, SHORT, 1, short(orientation));
    if with_gps {
        entry(&mut t, 0x8825, LONG, 1, gps_at.to_le_bytes());
    }
    t.extend_from_slice(&0u32.to_le_bytes()); // no IFD1
    t.extend_from_slice(&make);
    t.extend_from_slice(&model);

    if with_gps {
        t.extend_from_slice(&(gps_entries as u16).to_le_bytes());
        entry(&mut t, 0x0000, BYTE, 4, [2, 3, 0, 0]); // GPSVersionID
        entry(&mut t, 0x0001, ASCII, 2, [b'S', 0, 0, 0]); // GPSLatitudeRef
        entry(&mut t, 0x0002, RATIONAL, 3, lat_at.to_le_bytes());
        entry(&mut t, 0x0003, ASCII, 2, [b'E', 0, 0, 0]); // GPSLongitudeRef
        entry(&mut t, 0x0004, RATIONAL, 3, lon_at.to_le_bytes());
        t.extend_from_slice(&0u32.to_le_bytes());
        for (num, den) in GPS_LATITUDE.iter().chain(GPS_LONGITUDE.iter()) {
            t.extend_from_slice(&num.to_le_bytes());
            t.extend_from_slice(&den.to_le_bytes());
        }
    }
    t
}

/// The 8 bytes of a little-endian EXIF rational, as the fixture writes it; tests search the
/// output for these to prove the GPS coordinates are gone.
pub fn rational_bytes((num, den): (u32, u32)) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&num.to_le_bytes());
    b[4..].copy_from_slice(&den.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageDecoder;

    #[test]
    fn camera_jpeg_carries_orientation_and_gps() {
        let portrait = load_portrait().expect("portrait");
        let jpeg = camera_jpeg(&portrait, 320, 240, 6, true, 85).expect("jpeg");
        let mut dec = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&jpeg[..]))
            .expect("decoder");
        assert_eq!(dec.dimensions(), (320, 240));
        assert_eq!(
            dec.orientation().expect("orientation"),
            Orientation::Rotate90
        );
        let exif = dec.exif_metadata().expect("exif").expect("present");
        let lat = rational_bytes(GPS_LATITUDE[2]);
        assert!(exif.windows(8).any(|w| w == lat));
        assert!(exif
            .windows(EXIF_MAKE.len())
            .any(|w| w == EXIF_MAKE.as_bytes()));
    }

    #[test]
    fn bad_orientation_is_an_error() {
        let portrait = RgbImage::new(4, 4);
        assert!(camera_jpeg(&portrait, 8, 8, 9, false, 80).is_err());
        assert!(camera_jpeg(&portrait, 8, 8, 0, false, 80).is_err());
    }
}
