//! Camera JPEG in, ID photo out.
//!
//! On the bus, an operator photographs the citizen with whatever camera or phone the bus has.
//! That file is 8 to 12 MP, lies on its side with an EXIF orientation tag, and carries GPS
//! coordinates and device details. HQ wants a small upright photo of a fixed pixel size under a
//! byte budget, and nothing else. [`normalize`] does that conversion:
//!
//! 1. **Refuse before trusting.** The file size is checked against [`Limits`] first, the
//!    format is sniffed from magic bytes (JPEG or PNG only), and the pixel size is read from the
//!    header by hand and checked *before* any decoder or pixel buffer exists. A decompression
//!    bomb (a tiny file announcing 60000 x 60000 pixels) is refused, not obeyed. The decoders
//!    then run under their own bounds as a second guard: for JPEG, the memory the decoder will
//!    need is computed from the vetted header and held against `max_alloc`, and the number of
//!    scans is limited; for PNG, `image`'s limits (the vetted size and `max_alloc`).
//! 2. **Shrink-on-load.** A JPEG is decoded at a reduced scale inside the DCT (`M/8`, with
//!    libjpeg-turbo's decoder via the `mozjpeg` crate; see `jpeg.rs` for the choice and the
//!    measurements): the strongest reduction that still leaves twice the target's pixels over
//!    the crop, 3/8 for a 12 MP photo. The full 12 MP frame (34 MiB) never exists.
//! 3. **Upright, cropped, resized.** The EXIF orientation is read from the JPEG's APP1 segment
//!    (or by `image` for PNG); the crop to the service's aspect ratio is computed in upright
//!    coordinates, mapped onto the frame as stored, resized there with Lanczos3, and only the
//!    finished photo is turned upright. Rotating the frame first would copy it for nothing.
//! 4. **Advice.** Cheap checks ([`assess`]) run on the result so the operator can retake while
//!    the citizen is still there.
//! 5. **No metadata, within budget.** The pixels are encoded afresh, so no EXIF (GPS, serial
//!    numbers) can survive, at the highest JPEG quality that fits [`PhotoSpec::max_bytes`].
//!
//! Nothing here panics on input: every failure is a [`PhotoError`] whose message tells the
//! operator what to do. The JPEG decoder is C; its fatal errors arrive as Rust unwinds, which
//! `jpeg.rs` catches and turns into [`PhotoError::Decode`] (so this crate needs the default
//! `panic = "unwind"`).
//!
//! Most of the remaining run time is the reduced-scale decode and the JPEG encodes of the
//! quality search (see `examples/normalize_bench.rs`).
//!
//! # Cargo features
//!
//! * `decode` (default): [`normalize`] and everything it needs: the decoders (libjpeg-turbo's
//!   via `mozjpeg`, `image` for PNG), the resizer (`fast_image_resize`), the encoder and the
//!   retake advice ([`assess`]). Without it the crate is only the header checks
//!   ([`probe`], [`Limits`], [`PhotoError`]) and depends on no image library: what HQ needs
//!   (`default-features = false`).
//! * `fixtures` (implies `decode`): the `fixtures` module, camera-like JPEGs made from the
//!   bundled portrait, for tests, the demo and the benchmarks only: enable it in
//!   `[dev-dependencies]` (or in the test crate), never in a production dependency.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "decode")]
mod assess;
#[cfg(feature = "decode")]
mod encode;
mod error;
#[cfg(feature = "fixtures")]
pub mod fixtures;
#[cfg(feature = "decode")]
mod geometry;
mod header;
#[cfg(feature = "decode")]
mod jpeg;
#[cfg(feature = "decode")]
mod resample;

#[cfg(feature = "decode")]
use std::io::Cursor;

#[cfg(feature = "decode")]
use image::metadata::Orientation;
#[cfg(feature = "decode")]
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, RgbImage};

#[cfg(feature = "decode")]
pub use assess::{assess, Advice, BRIGHT_ABOVE, DARK_BELOW, SHARPNESS_MIN};
pub use error::PhotoError;

#[cfg(feature = "decode")]
/// What the service wants the ID photo to look like.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PhotoSpec {
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Largest acceptable JPEG size in bytes.
    pub max_bytes: usize,
    /// Background colour the service requires, if it requires one.
    pub background: Option<Background>,
}

#[cfg(feature = "decode")]
impl Default for PhotoSpec {
    /// 413 x 531 pixels, i.e. 35 x 45 mm at 300 dpi (the usual Indonesian pas foto), at most
    /// 60 000 bytes, any background.
    fn default() -> Self {
        PhotoSpec {
            width: 413,
            height: 531,
            max_bytes: 60_000,
            background: None,
        }
    }
}

#[cfg(feature = "decode")]
/// Background colours Indonesian services ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Background {
    /// Red (merah).
    Red,
    /// Blue (biru).
    Blue,
    /// White (putih).
    White,
}

/// Resource limits for untrusted input.
///
/// The bus computer is small and also runs the sync and the operator UI; one bad file must not
/// take it down. The defaults allow any real camera (a 48 MP phone is under 50 M pixels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted file, in bytes. Default 25 MiB.
    pub max_input_bytes: usize,
    /// Largest accepted pixel count (width x height as the header announces it).
    /// Default 50 000 000.
    pub max_pixels: u64,
    /// Most memory the decoder may allocate for pixels, in bytes. Default 512 MiB. For a JPEG
    /// this counts the decoded (reduced) frame and, for a progressive file, the coefficients
    /// of the whole image, estimated from the header before decoding.
    pub max_alloc: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: 25 * 1024 * 1024,
            max_pixels: 50_000_000,
            max_alloc: 512 * 1024 * 1024,
        }
    }
}

#[cfg(feature = "decode")]
/// A finished ID photo.
#[derive(Clone, PartialEq)]
pub struct IdPhoto {
    /// The JPEG file: no EXIF, no GPS, no ICC, only a JFIF header with 300 dpi.
    pub jpeg: Vec<u8>,
    /// Width in pixels (the spec's).
    pub width: u32,
    /// Height in pixels (the spec's).
    pub height: u32,
    /// JPEG quality the budget allowed (30 to 92).
    pub quality: u8,
    /// Retake advice; empty when the photo looks fine. See [`Advice::is_blocking`].
    pub advice: Vec<Advice>,
    /// Upright width of the camera photo.
    pub source_width: u32,
    /// Upright height of the camera photo.
    pub source_height: u32,
}

#[cfg(feature = "decode")]
impl std::fmt::Debug for IdPhoto {
    /// Shows the JPEG's length instead of tens of thousands of bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdPhoto")
            .field("jpeg", &format_args!("<{} bytes>", self.jpeg.len()))
            .field("width", &self.width)
            .field("height", &self.height)
            .field("quality", &self.quality)
            .field("advice", &self.advice)
            .field("source_width", &self.source_width)
            .field("source_height", &self.source_height)
            .finish()
    }
}

#[cfg(feature = "decode")]
impl IdPhoto {
    /// Whether any advice forbids submitting this photo.
    pub fn is_blocked(&self) -> bool {
        self.advice.iter().any(Advice::is_blocking)
    }
}

/// A JPEG must hold at least one byte per this many announced pixels (an all-grey
/// baseline JPEG needs about one byte per 250 pixels; a real photo one per 5 to 20).
const MIN_JPEG_PIXELS_PER_BYTE_INV: u64 = 1024;

/// What an image file announces about itself, checked without decoding a pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// `image/jpeg` or `image/png`.
    pub media_type: &'static str,
    /// Width in pixels, as stored (before any EXIF rotation).
    pub width: u32,
    /// Height in pixels, as stored.
    pub height: u32,
}

/// Checks a file the way [`normalize`] does before decoding (size, format, announced
/// pixel count against `limits`, a complete JPEG) and says what it is. For a receiver
/// such as HQ, which must not keep a decompression bomb or a non-image as a photo, and
/// must not spend a decode on finding out.
pub fn probe(input: &[u8], limits: &Limits) -> Result<ImageInfo, PhotoError> {
    let (format, head, _) = preflight(input, limits)?;
    Ok(ImageInfo {
        media_type: match format {
            header::Format::Jpeg => "image/jpeg",
            header::Format::Png => "image/png",
        },
        width: head.width,
        height: head.height,
    })
}

/// The checks that need only the header: returns the format, the header and the pixel
/// limit in force.
fn preflight(
    input: &[u8],
    limits: &Limits,
) -> Result<(header::Format, header::Header, u64), PhotoError> {
    if input.len() > limits.max_input_bytes {
        return Err(PhotoError::TooLarge {
            bytes: input.len(),
            max: limits.max_input_bytes,
        });
    }
    let format = header::sniff(input)?;
    let head = header::read_header(input, format)?;
    let (width, height) = (head.width, head.height);

    // Refuse on the announced size alone, before a decoder exists. 3 bytes per pixel is the
    // least any decode to RGB needs, so the memory limit is also a pixel limit.
    let max_pixels = limits.max_pixels.min(limits.max_alloc / 3);
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(PhotoError::TooManyPixels {
            width,
            height,
            max: max_pixels,
        });
    }
    // A JPEG stores every 8 x 8 block of every component in at least a few bits, so real
    // image data cannot be far smaller than the pixel count says. A tiny file announcing
    // a huge frame (found by fuzzing: 170 bytes claiming 7071 x 7071) would otherwise make
    // the decoder allocate and paint hundreds of megabytes of grey.
    if format == header::Format::Jpeg
        && (input.len() as u64) < pixels / MIN_JPEG_PIXELS_PER_BYTE_INV
    {
        return Err(PhotoError::Decode(format!(
            "the JPEG claims {width} x {height} pixels but holds only {} bytes; it is truncated or crafted",
            input.len()
        )));
    }
    if let Some(sos) = head.jpeg_sos {
        if !header::jpeg_is_complete(input, sos) {
            return Err(PhotoError::Decode(
                "the JPEG ends before its end-of-image marker; the file is truncated".to_owned(),
            ));
        }
    } else if format == header::Format::Jpeg {
        return Err(PhotoError::Decode(
            "the JPEG has a header but no image data; the file is truncated".to_owned(),
        ));
    }

    Ok((format, head, max_pixels))
}

#[cfg(feature = "decode")]
/// Turns a camera file (JPEG or PNG) into an ID photo per `spec`, within `limits`.
///
/// See the crate documentation for the steps and why they are in this order.
pub fn normalize(input: &[u8], spec: &PhotoSpec, limits: &Limits) -> Result<IdPhoto, PhotoError> {
    // A JPEG cannot be larger than 65535 on a side; say so before doing any work.
    if spec.width == 0 || spec.height == 0 || spec.width > 65_535 || spec.height > 65_535 {
        return Err(PhotoError::Encode(format!(
            "the requested photo size {} x {} is not possible (1 to 65535 pixels per side)",
            spec.width, spec.height
        )));
    }
    let (format, head, max_pixels) = preflight(input, limits)?;
    let (width, height) = (head.width, head.height);

    let too_many = || PhotoError::TooManyPixels {
        width,
        height,
        max: max_pixels,
    };
    // The frame as stored (possibly reduced by `eighths / 8`) and how to turn it upright.
    let (plan, stored, eighths) = match format {
        header::Format::Jpeg => {
            let orientation = jpeg::orientation(input, &head);
            let plan = resample::plan(width, height, orientation, spec.width, spec.height);
            let eighths = plan.jpeg_eighths();
            let stored = jpeg::decode(input, &head, eighths, limits, too_many)?;
            (plan, stored, eighths)
        }
        header::Format::Png => {
            let (stored, orientation) = decode_png(input, format, width, height, limits, too_many)?;
            let plan = resample::plan(width, height, orientation, spec.width, spec.height);
            (plan, stored, 8)
        }
    };
    let (source_width, source_height) = plan.upright_source_size();

    let fitted = resample::fit(&stored, eighths, &plan)?;
    drop(stored);

    let mut advice: Vec<Advice> = assess::too_small(source_width, source_height, spec)
        .into_iter()
        .collect();
    advice.extend(assess::assess_fitted(&fitted, spec));

    let (jpeg, quality) = encode::encode_within(&fitted, spec.max_bytes)?;
    Ok(IdPhoto {
        jpeg,
        width: spec.width,
        height: spec.height,
        quality,
        advice,
        source_width,
        source_height,
    })
}

#[cfg(feature = "decode")]
/// Decodes a PNG to RGB under `image`'s limits and reads its EXIF orientation, if any.
///
/// The decoder is told the exact size the header announced as its maximum, so if it ever sees
/// a different (larger) frame than our header walk did, it refuses instead of allocating.
/// (A JPEG goes through `jpeg::decode` instead.)
fn decode_png(
    input: &[u8],
    format: header::Format,
    width: u32,
    height: u32,
    limits: &Limits,
    too_many: impl Fn() -> PhotoError,
) -> Result<(RgbImage, Orientation), PhotoError> {
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(width);
    image_limits.max_image_height = Some(height);
    image_limits.max_alloc = Some(limits.max_alloc);

    let map_err = |e: ImageError| match e {
        ImageError::Limits(_) => too_many(),
        ImageError::Unsupported(u) => PhotoError::Decode(format!("unsupported variant: {u}")),
        other => PhotoError::Decode(other.to_string()),
    };

    let mut reader = ImageReader::with_format(Cursor::new(input), format.to_image());
    reader.limits(image_limits);
    let mut decoder = reader.into_decoder().map_err(map_err)?;
    // A broken orientation tag is no reason to refuse a photo; the operator sees the result.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);

    // The decoded buffer, plus a converted RGB copy if the file is not 8-bit RGB already.
    let color = decoder.color_type();
    let converted = if color == image::ColorType::Rgb8 {
        0
    } else {
        u64::from(width) * u64::from(height) * 3
    };
    if decoder.total_bytes().saturating_add(converted) > limits.max_alloc {
        return Err(too_many());
    }

    let img = DynamicImage::from_decoder(decoder).map_err(map_err)?;
    // The crop is planned on the header's size; a smaller frame would not match it.
    if (img.width(), img.height()) != (width, height) {
        return Err(PhotoError::Decode(format!(
            "the PNG decoder read a {} x {} image where the header says {width} x {height}",
            img.width(),
            img.height()
        )));
    }
    Ok((to_rgb(img), orientation))
}

#[cfg(feature = "decode")]
/// Converts to 8-bit RGB, putting transparent areas on white.
///
/// Why white: a PNG with transparency is usually a cut-out portrait; a plain `into_rgb8`
/// would keep whatever colour the transparent pixels happen to hold (often black).
fn to_rgb(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(src.0[3]);
        for c in 0..3 {
            dst.0[c] = ((u32::from(src.0[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}
