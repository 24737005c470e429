//! Getting from a camera frame to exactly `spec.width` x `spec.height` pixels, fast.
//!
//! Two reductions, because they are good at different things:
//!
//! 1. **Shrink-on-load** (JPEG only): the decoder itself reduces the frame by `M/8` inside
//!    the DCT (see `jpeg`), so a 12 MP photo is never decoded at full size. [`Plan`] chooses
//!    `M`: the strongest reduction that still leaves the crop at least [`MIN_OVERSAMPLE`]
//!    times the target in both directions (3/8 for 12 MP to 413 x 531). This is what libvips
//!    does, with the same margin.
//! 2. A **Lanczos3** resize from there to the exact size (`fast_image_resize`, SIMD chosen at
//!    run time). It supplies the sharpness and the non-integer final ratio; working on about
//!    2.5x the target it costs about 2 ms, where `image`'s own Lanczos3 took 20 to 25 ms.
//!    It reads the crop straight out of the decoded frame as a fractional box (the full-size
//!    crop times the decode scale), so the crop is the same whatever scale was decoded and no
//!    cropped copy is made. A PNG (decoded at full size) goes through the same resize; its
//!    kernel widens with the ratio, so large reductions stay free of aliasing.
//!
//! The crop is chosen in upright coordinates and mapped onto the frame as stored; the EXIF
//! orientation is applied last, to the finished 413 x 531 photo (see `geometry`).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, RgbImage};

use crate::geometry::{crop_rect, swaps_axes, upright_rect_to_stored, upright_size, Rect};
use crate::PhotoError;

/// The decode scale is chosen so that the crop still has at least this many times the
/// target's pixels in each direction: enough for the final Lanczos3 to be sharp without
/// aliasing (libvips keeps the same margin after its shrink-on-load).
pub(crate) const MIN_OVERSAMPLE: u32 = 2;

/// What to cut out of a stored frame and how large to make it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The crop, in the full-size frame as stored (before orientation).
    crop: Rect,
    /// The output size as seen in the stored frame (width and height swapped for 90/270).
    stored_target: (u32, u32),
    orientation: Orientation,
    /// The full-size frame's upright size.
    upright: (u32, u32),
}

/// Plans the crop of a stored `sw` x `sh` frame that `orientation` turns upright, for an
/// upright output of `tw` x `th`.
pub(crate) fn plan(sw: u32, sh: u32, orientation: Orientation, tw: u32, th: u32) -> Plan {
    let (uw, uh) = upright_size(sw, sh, orientation);
    let crop = upright_rect_to_stored(crop_rect(uw, uh, tw, th), orientation, sw, sh);
    let stored_target = if swaps_axes(orientation) {
        (th, tw)
    } else {
        (tw, th)
    };
    Plan {
        crop,
        stored_target,
        orientation,
        upright: (uw, uh),
    }
}

impl Plan {
    /// Width and height of the full-size source photo, upright.
    pub(crate) fn upright_source_size(&self) -> (u32, u32) {
        self.upright
    }

    /// The JPEG decode scale, in eighths (1 to 8): the smallest `M` for which the crop, decoded
    /// at `M/8`, still holds [`MIN_OVERSAMPLE`] times the target in both directions; 8 (full
    /// size) when even that is not enough.
    pub(crate) fn jpeg_eighths(&self) -> u8 {
        let (cw, ch) = (u64::from(self.crop.w), u64::from(self.crop.h));
        let need_w = 8 * u64::from(MIN_OVERSAMPLE) * u64::from(self.stored_target.0);
        let need_h = 8 * u64::from(MIN_OVERSAMPLE) * u64::from(self.stored_target.1);
        (1..=8u8)
            .find(|&m| cw * u64::from(m) >= need_w && ch * u64::from(m) >= need_h)
            .unwrap_or(8)
    }
}

/// Cuts the planned crop out of `frame` (the stored frame decoded at `eighths / 8` of its full
/// size), resizes it with Lanczos3 and turns it upright: exactly the planned output size.
pub(crate) fn fit(frame: &RgbImage, eighths: u8, plan: &Plan) -> Result<RgbImage, PhotoError> {
    let failed = |what: String| PhotoError::Encode(format!("resizing failed: {what}"));
    let (fw, fh) = frame.dimensions();
    let (stw, sth) = plan.stored_target;
    let scale = f64::from(eighths.clamp(1, 8)) / 8.0;
    let c = plan.crop;
    // The crop box in the decoded frame's pixels, kept inside it (the decoded size is the full
    // size times the scale rounded up, so the box fits already; this guards the rounding).
    let left = (f64::from(c.x) * scale).min(f64::from(fw));
    let top = (f64::from(c.y) * scale).min(f64::from(fh));
    let width = (f64::from(c.w) * scale).min(f64::from(fw) - left);
    let height = (f64::from(c.h) * scale).min(f64::from(fh) - top);
    if fw == 0 || fh == 0 || width <= 0.0 || height <= 0.0 {
        return Err(failed(format!("nothing to crop from a {fw} x {fh} frame")));
    }

    let src = ImageRef::new(fw, fh, frame.as_raw(), PixelType::U8x3)
        .map_err(|e| failed(e.to_string()))?;
    let mut dst = Image::new(stw, sth, PixelType::U8x3);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        .crop(left, top, width, height);
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| failed(e.to_string()))?;
    let small = RgbImage::from_raw(stw, sth, dst.into_vec())
        .ok_or_else(|| failed("the resized buffer has the wrong size".to_owned()))?;

    Ok(if plan.orientation == Orientation::NoTransforms {
        small
    } else {
        let mut dynamic = DynamicImage::ImageRgb8(small);
        dynamic.apply_orientation(plan.orientation);
        dynamic.into_rgb8()
    })
}

/// Crops and resizes an upright, fully decoded image to `tw` x `th`, as [`fit`] would.
pub(crate) fn fit_upright(img: &RgbImage, tw: u32, th: u32) -> Result<RgbImage, PhotoError> {
    let p = plan(img.width(), img.height(), Orientation::NoTransforms, tw, th);
    fit(img, 8, &p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::tests::ALL;

    #[test]
    fn fit_gives_exact_size_for_every_orientation() {
        let src = RgbImage::from_fn(1200, 900, |x, y| image::Rgb([x as u8, y as u8, 0]));
        for o in ALL {
            let p = plan(1200, 900, o, 413, 531);
            let out = fit(&src, 8, &p).expect("fits");
            assert_eq!(out.dimensions(), (413, 531), "{o:?}");
        }
        // upscaling a tiny source works too
        let tiny = RgbImage::new(20, 30);
        let p = plan(20, 30, Orientation::Rotate90, 413, 531);
        assert_eq!(fit(&tiny, 8, &p).expect("fits").dimensions(), (413, 531));
        // and so does a one-pixel frame
        let dot = RgbImage::new(1, 1);
        assert_eq!(
            fit_upright(&dot, 413, 531).expect("fits").dimensions(),
            (413, 531)
        );
    }

    #[test]
    fn decode_scale_keeps_twice_the_target() {
        // 12 MP landscape frame held upright (orientation 6): the crop is 3000 x 3857 upright,
        // 3857 x 3000 stored; 3/8 gives 1446 x 1125 >= 2 x (531 x 413), 2/8 would not.
        let p = plan(4000, 3000, Orientation::Rotate90, 413, 531);
        assert_eq!(p.jpeg_eighths(), 3);
        // Smaller photos decode at larger scales, tiny ones at full size.
        assert_eq!(
            plan(3000, 2250, Orientation::NoTransforms, 413, 531).jpeg_eighths(),
            4
        );
        assert_eq!(
            plan(800, 600, Orientation::NoTransforms, 413, 531).jpeg_eighths(),
            8
        );
        assert_eq!(
            plan(8000, 6000, Orientation::NoTransforms, 413, 531).jpeg_eighths(),
            2
        );
        // 48 MP: the strongest reduction is enough.
        assert_eq!(
            plan(8000, 6000, Orientation::NoTransforms, 100, 128).jpeg_eighths(),
            1
        );
        for m in 1..=8u8 {
            let p = plan(4000, 3000, Orientation::NoTransforms, 413, 531);
            let ok = u64::from(p.crop.w) * u64::from(m) >= 8 * 2 * 413
                && u64::from(p.crop.h) * u64::from(m) >= 8 * 2 * 531;
            assert_eq!(ok, m >= p.jpeg_eighths(), "M = {m}");
        }
    }

    #[test]
    fn fit_at_a_reduced_scale_crops_the_same_region() {
        // A frame with a bright square in the middle: whatever the decode scale, the square
        // lands in the same place of the output.
        let full = RgbImage::from_fn(1600, 1200, |x, y| {
            let inside = (700..900).contains(&x) && (500..700).contains(&y);
            image::Rgb(if inside { [255; 3] } else { [0; 3] })
        });
        let p = plan(1600, 1200, Orientation::NoTransforms, 413, 531);
        let reference = fit(&full, 8, &p).expect("fits");
        for eighths in [2u8, 4] {
            let (w, h) = crate::jpeg::scaled_size(1600, 1200, eighths);
            let small = image::imageops::resize(&full, w, h, image::imageops::FilterType::Triangle);
            let out = fit(&small, eighths, &p).expect("fits");
            let diff: u64 = out
                .as_raw()
                .iter()
                .zip(reference.as_raw())
                .map(|(&a, &b)| u64::from(a.abs_diff(b)))
                .sum();
            let mean = diff as f64 / out.as_raw().len() as f64;
            assert!(mean < 3.0, "scale {eighths}/8: mean abs diff {mean:.2}");
        }
    }
}
