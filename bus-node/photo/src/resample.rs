//! Getting from a camera frame to exactly `spec.width` x `spec.height` pixels, fast.
//!
//! Two stages, because they are good at different things:
//!
//! 1. An integer **box shrink** (average every `k x k` block) brings the crop down to between
//!    2x and 4x the target. It touches each of the 12 M source pixels once with integer adds,
//!    and averaging is an excellent anti-aliasing filter for large factors. It is what libvips
//!    does after its JPEG shrink-on-load.
//! 2. A **Lanczos3** resize from there to the exact size. Its cost depends on the *source* size,
//!    so run on 12 MP it is the slowest step of all; run on ~1 MP it is a few milliseconds, and
//!    it supplies the sharpness and the non-integer final ratio the box cannot.
//!
//! The orientation is applied between the two, on the small image (see `geometry`).

use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, GenericImageView, RgbImage};

use crate::geometry::{crop_rect, swaps_axes, upright_rect_to_stored, upright_size, Rect};

/// The box shrink stops once the image is at most this many times the target; the final
/// filter then works on at least `MIN_OVERSAMPLE` x the target, enough for Lanczos3 to be sharp
/// without aliasing.
const MIN_OVERSAMPLE: u32 = 2;

/// Largest box factor: the column sums are `u16` (twice the SIMD lanes of `u32`, ~20 % faster),
/// and 257 x 255 is the most a `u16` holds. Only absurdly small targets hit this; the Lanczos
/// stage then does the rest of the shrinking.
const MAX_BOX_FACTOR: u32 = 257;

/// Crops the upright portrait out of `stored` (a frame that `orientation` turns upright) and
/// resizes it to exactly `tw` x `th`.
pub(crate) fn fit(stored: &RgbImage, orientation: Orientation, tw: u32, th: u32) -> RgbImage {
    let (sw, sh) = stored.dimensions();
    let (uw, uh) = upright_size(sw, sh, orientation);
    let crop_up = crop_rect(uw, uh, tw, th);
    let crop = upright_rect_to_stored(crop_up, orientation, sw, sh);

    // Target size as seen in the stored frame.
    let (stw, sth) = if swaps_axes(orientation) {
        (th, tw)
    } else {
        (tw, th)
    };
    let factor = (crop.w / (MIN_OVERSAMPLE * stw))
        .min(crop.h / (MIN_OVERSAMPLE * sth))
        .clamp(1, MAX_BOX_FACTOR);

    let small = if factor >= 2 {
        box_shrink(stored, crop, factor)
    } else {
        stored.view(crop.x, crop.y, crop.w, crop.h).to_image()
    };
    let small = if orientation == Orientation::NoTransforms {
        small
    } else {
        let mut dynamic = DynamicImage::ImageRgb8(small);
        dynamic.apply_orientation(orientation);
        dynamic.into_rgb8()
    };
    if small.dimensions() == (tw, th) {
        return small;
    }
    image::imageops::resize(&small, tw, th, FilterType::Lanczos3)
}

/// Averages `factor x factor` blocks of `rect` inside `src`.
///
/// Done in two passes per output row so the compiler can vectorize the heavy one: first the
/// `factor` source rows are added element-wise into a row of column sums (a plain `a += b`
/// loop over bytes, which becomes SIMD), then each block of `factor` columns is summed once
/// in that single row. The few rows and columns that do not fill a whole block (fewer than
/// `factor`) are dropped, split between both sides so the crop stays centred; at the factors
/// used here that is under 0.2 % of the frame.
pub(crate) fn box_shrink(src: &RgbImage, rect: Rect, factor: u32) -> RgbImage {
    let ow = rect.w / factor;
    let oh = rect.h / factor;
    let x0 = (rect.x + (rect.w - ow * factor) / 2) as usize;
    let y0 = (rect.y + (rect.h - oh * factor) / 2) as usize;
    let f = factor as usize;
    let span = ow as usize * f * 3;
    let stride = src.width() as usize * 3;
    let raw = src.as_raw();
    let area = factor * factor;
    let half = area / 2;

    let mut out = Vec::with_capacity(ow as usize * oh as usize * 3);
    let mut column_sums = vec![0u16; span];
    for oy in 0..oh as usize {
        column_sums.fill(0);
        for dy in 0..f {
            let start = (y0 + oy * f + dy) * stride + x0 * 3;
            for (sum, &v) in column_sums.iter_mut().zip(&raw[start..start + span]) {
                *sum += u16::from(v);
            }
        }
        for block in column_sums.chunks_exact(f * 3) {
            let mut rgb = [0u32; 3];
            for px in block.chunks_exact(3) {
                rgb[0] += u32::from(px[0]);
                rgb[1] += u32::from(px[1]);
                rgb[2] += u32::from(px[2]);
            }
            out.extend(rgb.iter().map(|&s| ((s + half) / area) as u8));
        }
    }
    // The buffer length is exactly ow * oh * 3 by construction.
    RgbImage::from_raw(ow, oh, out).unwrap_or_else(|| RgbImage::new(ow, oh))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_shrink_averages_blocks() {
        let src = RgbImage::from_fn(6, 4, |x, y| image::Rgb([(x * 10) as u8, (y * 10) as u8, 7]));
        let out = box_shrink(
            &src,
            Rect {
                x: 0,
                y: 0,
                w: 6,
                h: 4,
            },
            2,
        );
        assert_eq!(out.dimensions(), (3, 2));
        assert_eq!(out.get_pixel(0, 0).0, [5, 5, 7]);
        assert_eq!(out.get_pixel(2, 1).0, [45, 25, 7]);
    }

    #[test]
    fn fit_gives_exact_size_for_every_orientation() {
        let src = RgbImage::from_fn(1200, 900, |x, y| image::Rgb([x as u8, y as u8, 0]));
        for o in [
            Orientation::NoTransforms,
            Orientation::Rotate90,
            Orientation::Rotate180,
            Orientation::Rotate270,
            Orientation::Rotate90FlipH,
        ] {
            assert_eq!(fit(&src, o, 413, 531).dimensions(), (413, 531), "{o:?}");
        }
        // upscaling a tiny source works too
        let tiny = RgbImage::new(20, 30);
        assert_eq!(
            fit(&tiny, Orientation::Rotate90, 413, 531).dimensions(),
            (413, 531)
        );
    }
}
