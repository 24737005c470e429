//! Format sniffing and header-only size reading.
//!
//! Why not just ask the `image` crate? Because the point is to look at a file *before* trusting
//! it. Reading the width and height straight out of the PNG `IHDR` chunk or the JPEG `SOFn`
//! segment takes a few dozen byte reads and allocates nothing, so a decompression bomb (a few
//! kilobytes announcing 60000 x 60000 pixels) is refused before any decoder, buffer or copy of
//! the input exists. The `image` decoder's own limits are kept as a second, independent guard.

use crate::PhotoError;

/// The two formats a camera or phone on the bus hands over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Jpeg,
    Png,
}

#[cfg(feature = "decode")]
impl Format {
    pub(crate) fn to_image(self) -> image::ImageFormat {
        match self {
            Format::Jpeg => image::ImageFormat::Jpeg,
            Format::Png => image::ImageFormat::Png,
        }
    }
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// Decides JPEG or PNG from the magic bytes, and otherwise says what the file looks like.
///
/// The message matters: the most common "not an image" on a bus is a phone that saves HEIC, and
/// telling the operator which camera setting to change beats a generic refusal.
pub(crate) fn sniff(data: &[u8]) -> Result<Format, PhotoError> {
    if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Format::Jpeg);
    }
    if data.starts_with(&PNG_SIGNATURE) {
        return Ok(Format::Png);
    }
    Err(PhotoError::NotAnImage(describe_non_image(data)))
}

fn describe_non_image(data: &[u8]) -> String {
    if data.is_empty() {
        return "the file is empty".to_owned();
    }
    let brand = data.get(4..12);
    let heif = matches!(
        brand,
        Some(b"ftypheic" | b"ftypheix" | b"ftypmif1" | b"ftyphevc" | b"ftypavif")
    );
    if heif {
        return "it is a HEIC/HEIF/AVIF photo; set the camera or phone to save JPEG \
                (on iPhone: Settings > Camera > Formats > Most Compatible)"
            .to_owned();
    }
    let known: &[(&[u8], &str)] = &[
        (b"GIF8", "it is a GIF image"),
        (b"BM", "it is a BMP image"),
        (b"II*\0", "it is a TIFF or camera RAW file"),
        (b"MM\0*", "it is a TIFF or camera RAW file"),
        (b"%PDF", "it is a PDF document"),
        (b"PK\x03\x04", "it is a ZIP archive or office document"),
    ];
    for (magic, what) in known {
        if data.starts_with(magic) {
            return format!("{what}; only JPEG and PNG are accepted");
        }
    }
    if data.starts_with(b"RIFF") && data.get(8..12) == Some(b"WEBP") {
        return "it is a WebP image; only JPEG and PNG are accepted".to_owned();
    }
    let head = &data[..data.len().min(512)];
    let texty = head
        .iter()
        .all(|&b| b == b'\n' || b == b'\r' || b == b'\t' || (0x20..0x7F).contains(&b) || b >= 0x80);
    if texty {
        return "it looks like a text file".to_owned();
    }
    "its first bytes match no known image format".to_owned()
}

/// What the header says about the image, read without decoding any pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// JPEG only: offset of the first start-of-scan marker of the main image, if the header
    /// walk reached it. `None` for PNG.
    pub(crate) jpeg_sos: Option<usize>,
    /// JPEG only: where the EXIF TIFF structure lies (the payload of the first APP1 segment
    /// after its `Exif\0\0` identifier), as a start and end offset into the file.
    pub(crate) jpeg_exif: Option<(usize, usize)>,
    /// JPEG only: an Adobe APP14 segment was seen, so CMYK data is stored inverted (as
    /// Photoshop writes it).
    pub(crate) jpeg_adobe: bool,
    /// JPEG only: the decoder must hold the whole image's DCT coefficients in memory before it
    /// can output a row: the frame is progressive, or the first scan does not carry every
    /// component (a sequential file with one scan per component). Also `true` when the walk
    /// did not reach the first scan, to stay on the safe side.
    pub(crate) jpeg_multi_scan: bool,
}

/// Reads the pixel size from the header of an already sniffed file.
pub(crate) fn read_header(data: &[u8], format: Format) -> Result<Header, PhotoError> {
    match format {
        Format::Png => png_header(data),
        Format::Jpeg => jpeg_header(data),
    }
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// PNG: the first chunk must be `IHDR`, whose data starts with width and height (big-endian).
fn png_header(data: &[u8]) -> Result<Header, PhotoError> {
    let damaged = || PhotoError::Decode("the PNG header is missing or damaged".to_owned());
    if data.get(12..16) != Some(b"IHDR") {
        return Err(damaged());
    }
    let width = be32(data, 16).ok_or_else(damaged)?;
    let height = be32(data, 20).ok_or_else(damaged)?;
    if width == 0 || height == 0 {
        return Err(PhotoError::Decode(format!(
            "the PNG header announces an empty image ({width} x {height})"
        )));
    }
    Ok(Header {
        width,
        height,
        jpeg_sos: None,
        jpeg_exif: None,
        jpeg_adobe: false,
        jpeg_multi_scan: false,
    })
}

/// JPEG: walk the marker segments after SOI until the first start-of-scan.
///
/// Segments are skipped by their declared length, which also skips an EXIF thumbnail (a whole
/// little JPEG inside APP1) without being fooled by its SOF. The walk does not fail when it
/// runs out of bytes after the frame header: the size is what the caller needs first, and a
/// missing scan is reported later as a damaged file.
fn jpeg_header(data: &[u8]) -> Result<Header, PhotoError> {
    let damaged = |what: &str| PhotoError::Decode(format!("the JPEG header is damaged ({what})"));
    let mut frame: Option<(u32, u32)> = None;
    // Progressive, and the number of components, from the frame header.
    let mut progressive = false;
    let mut components: Option<u8> = None;
    let mut exif: Option<(usize, usize)> = None;
    let mut adobe = false;
    let mut pos = 2; // after SOI
    loop {
        if pos >= data.len() {
            break;
        }
        if data[pos] != 0xFF {
            return Err(damaged(&format!("no marker at byte {pos}")));
        }
        // Any number of 0xFF fill bytes may precede a marker code.
        while data.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = data.get(pos) else {
            break;
        };
        pos += 1;
        match marker {
            // Stand-alone markers carry no length.
            0x01 | 0xD0..=0xD8 => continue,
            0xD9 => return Err(damaged("the file ends before any image data")),
            _ => {}
        }
        let Some(len) = be16(data, pos) else {
            break;
        };
        let len = usize::from(len);
        if len < 2 {
            return Err(damaged(&format!("segment length {len} at byte {pos}")));
        }
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof && frame.is_none() {
            // precision (1), height (2), width (2)
            let (Some(h), Some(w)) = (be16(data, pos + 3), be16(data, pos + 5)) else {
                break;
            };
            if w == 0 || h == 0 {
                return Err(PhotoError::Decode(format!(
                    "the JPEG announces an empty or deferred-height image ({w} x {h}), \
                     which is not supported"
                )));
            }
            frame = Some((u32::from(w), u32::from(h)));
            progressive = matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE);
            components = data.get(pos + 7).copied();
        }
        // Segment payload, clipped to the file (the caller reports truncation).
        let payload = data
            .get(pos + 2..(pos + len).min(data.len()))
            .unwrap_or(&[]);
        if marker == 0xE1 && exif.is_none() && payload.starts_with(b"Exif\0\0") {
            exif = Some((pos + 2 + 6, (pos + len).min(data.len())));
        }
        if marker == 0xEE && payload.starts_with(b"Adobe") {
            adobe = true;
        }
        if marker == 0xDA {
            // The first scan's component count, against the frame's.
            let in_first_scan = data.get(pos + 2).copied();
            let multi_scan = progressive
                || match (in_first_scan, components) {
                    (Some(scan), Some(frame)) => scan < frame,
                    _ => true,
                };
            return match frame {
                Some((width, height)) => Ok(Header {
                    width,
                    height,
                    jpeg_sos: Some(pos - 2),
                    jpeg_exif: exif,
                    jpeg_adobe: adobe,
                    jpeg_multi_scan: multi_scan,
                }),
                None => Err(damaged("image data before the frame header")),
            };
        }
        pos += len;
    }
    match frame {
        Some((width, height)) => Ok(Header {
            width,
            height,
            jpeg_sos: None,
            jpeg_exif: exif,
            jpeg_adobe: adobe,
            jpeg_multi_scan: true,
        }),
        None => Err(damaged("it ends before the image size")),
    }
}

/// Checks that a JPEG's scan data is followed by an end-of-image marker.
///
/// Why: the JPEG decoder is lenient and paints a truncated file's missing rows grey instead of
/// failing. A half-transferred photo must be *refused* so the operator copies or retakes it,
/// not quietly sent to HQ with the citizen's chin missing. `FF D9` cannot occur inside
/// entropy-coded data (a data `FF` is always followed by `00` or a restart marker), so any
/// `FF D9` after the first scan header marks a real end of image. Searching from the end keeps
/// the common case (EOI is the last two bytes) instant, and tolerates trailers some cameras
/// append after EOI.
pub(crate) fn jpeg_is_complete(data: &[u8], sos: usize) -> bool {
    data.get(sos..)
        .map(|scan| scan.windows(2).rev().any(|w| w == [0xFF, 0xD9]))
        .unwrap_or(false)
}

/// Counts the scans (start-of-scan markers) of a JPEG from its first scan at `sos` up to its
/// end-of-image marker, stopping as soon as the count passes `limit`.
///
/// Why: a progressive JPEG may hold any number of scans, and the decoder walks every block of
/// the image once per scan, even for a scan with no data. A 12 kB file with a thousand empty
/// scans would keep the bus computer busy for seconds; libjpeg-turbo's own tools offer a scan
/// limit for this reason. Markers are found the way a decoder finds them: segments are skipped
/// by their length, and in entropy-coded data an `FF` is a marker only when the next byte is
/// neither `00` (a stuffed data byte) nor a restart marker.
#[cfg(feature = "decode")] // the decoder's scan limit (jpeg.rs)
pub(crate) fn jpeg_scan_count(data: &[u8], sos: usize, limit: usize) -> usize {
    let mut scans = 0;
    let mut pos = sos;
    while pos + 1 < data.len() {
        if data[pos] != 0xFF || matches!(data[pos + 1], 0x00 | 0xD0..=0xD7 | 0xFF) {
            // Entropy-coded data (or fill bytes): move on to the next byte.
            pos += 1;
            continue;
        }
        let marker = data[pos + 1];
        pos += 2;
        match marker {
            0xD9 => break,
            0x01 | 0xD8 => continue,
            0xDA => {
                scans += 1;
                if scans > limit {
                    break;
                }
            }
            _ => {}
        }
        match be16(data, pos) {
            Some(len) if len >= 2 => pos += usize::from(len),
            _ => break,
        }
    }
    scans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_tells_formats_apart() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]).ok(), Some(Format::Jpeg));
        assert_eq!(sniff(&PNG_SIGNATURE).ok(), Some(Format::Png));
        let msg = |d: &[u8]| match sniff(d) {
            Err(PhotoError::NotAnImage(m)) => m,
            other => panic!("unexpected {other:?}"),
        };
        assert!(msg(b"").contains("empty"));
        assert!(msg(b"hello, this is a letter\n").contains("text"));
        assert!(msg(b"\0\0\0\x18ftypheic\0\0\0\0").contains("HEIC"));
        assert!(msg(b"GIF89a....").contains("GIF"));
        assert!(msg(b"RIFF\0\0\0\0WEBPVP8 ").contains("WebP"));
    }

    #[test]
    fn jpeg_walk_skips_segments_and_fill_bytes() {
        let mut j = vec![0xFF, 0xD8];
        // APP1 containing a fake SOF that must be skipped
        j.extend_from_slice(&[0xFF, 0xE1, 0x00, 0x09, 0xFF, 0xC0, 0, 0, 9, 0, 9, 0]);
        j.truncate(2 + 2 + 9);
        j.extend_from_slice(&[0xFF, 0xFF]); // fill byte
        j.extend_from_slice(&[0xC0, 0x00, 0x0B, 8, 0x01, 0x2C, 0x00, 0xC8, 1, 1, 0x11, 0]);
        j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02]);
        let h = jpeg_header(&j).expect("header");
        assert_eq!((h.width, h.height), (200, 300));
        assert!(h.jpeg_sos.is_some());
    }

    #[test]
    fn jpeg_header_without_scan_still_reports_size() {
        let j = [
            0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 8, 0xEA, 0x60, 0xEA, 0x60, 3, 0, 0,
        ];
        let h = jpeg_header(&j).expect("header");
        assert_eq!((h.width, h.height), (60000, 60000));
        assert_eq!(h.jpeg_sos, None);
    }

    #[test]
    fn jpeg_walk_finds_exif_adobe_and_scan_layout() {
        let mut j = vec![0xFF, 0xD8];
        j.extend_from_slice(&[0xFF, 0xE1, 0x00, 0x0C]);
        j.extend_from_slice(b"Exif\0\0II*\0");
        j.extend_from_slice(&[0xFF, 0xEE, 0x00, 0x07]);
        j.extend_from_slice(b"Adobe");
        // progressive frame, 3 components; first scan carries one of them
        j.extend_from_slice(&[0xFF, 0xC2, 0x00, 0x11, 8, 0, 16, 0, 16, 3]);
        j.extend_from_slice(&[1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        let sos = j.len();
        j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0, 0]);
        let h = jpeg_header(&j).expect("header");
        assert_eq!(h.jpeg_sos, Some(sos));
        assert_eq!(h.jpeg_exif, Some((12, 16)));
        assert_eq!(&j[12..16], b"II*\0");
        assert!(h.jpeg_adobe && h.jpeg_multi_scan);

        // baseline, all three components in the first scan: one pass, no coefficient buffer
        let baseline = camera_like_baseline();
        let h = jpeg_header(&baseline).expect("header");
        assert!(!h.jpeg_multi_scan && !h.jpeg_adobe && h.jpeg_exif.is_none());
    }

    fn camera_like_baseline() -> Vec<u8> {
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .encode_image(&image::RgbImage::new(16, 16))
            .expect("encode");
        jpeg
    }

    #[test]
    fn scan_count_follows_markers_not_bytes() {
        let baseline = camera_like_baseline();
        let sos = jpeg_header(&baseline)
            .expect("header")
            .jpeg_sos
            .expect("scan");
        assert_eq!(jpeg_scan_count(&baseline, sos, 100), 1);

        // Three scans; the second one's data holds stuffed FF 00 and a restart marker, and a
        // DHT between scans whose payload looks like SOS bytes; a trailer after EOI has
        // another SOS that must not count.
        let mut j = vec![0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34];
        j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 0xFF, 0x00, 0xFF, 0xD3, 0x56]);
        j.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x04, 0xFF, 0xDA]);
        j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 0x78, 0xFF, 0xD9]);
        j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02]);
        assert_eq!(jpeg_scan_count(&j, 0, 100), 3);
        // the count stops once past the limit
        assert_eq!(jpeg_scan_count(&j, 0, 1), 2);
    }

    #[test]
    fn completeness_needs_eoi_after_scan() {
        let mut j = vec![0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34];
        assert!(!jpeg_is_complete(&j, 0));
        j.extend_from_slice(&[0xFF, 0xD9]);
        assert!(jpeg_is_complete(&j, 0));
        j.extend_from_slice(b"trailer");
        assert!(jpeg_is_complete(&j, 0));
    }
}
