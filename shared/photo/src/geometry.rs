//! Crop geometry and EXIF orientation, worked out on rectangles instead of pixels.
//!
//! Why rectangles: a 12 MP camera frame is 36 MB of RGB. Rotating it upright first (as
//! `DynamicImage::apply_orientation` does) copies all 36 MB just to throw most of it away in
//! the crop and the shrink. Instead the crop is chosen in upright coordinates, mapped back onto
//! the frame as stored, cut and shrunk there, and only the small result is turned upright.
//! Rotations and flips commute with cropping and with a box shrink, so the result is the same.

use image::metadata::Orientation;

/// An axis-aligned pixel rectangle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rect {
    pub(crate) x: u32,
    pub(crate) y: u32,
    pub(crate) w: u32,
    pub(crate) h: u32,
}

/// Whether the orientation swaps width and height (the 90 and 270 degree cases).
pub(crate) fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// Size of the upright image for a stored frame of `w` x `h`.
pub(crate) fn upright_size(w: u32, h: u32, o: Orientation) -> (u32, u32) {
    if swaps_axes(o) {
        (h, w)
    } else {
        (w, h)
    }
}

/// How much of the vertical excess is cut from the top (the rest from the bottom).
///
/// A face sits in the upper part of a portrait frame; cutting evenly from a tall phone photo
/// (9:16) would chop the top of the head while keeping the belt. 2/5 keeps the head with margin
/// and still centres a photo that is only slightly too tall (the usual 3:4 camera frame).
const TOP_SHARE_NUM: u64 = 2;
const TOP_SHARE_DEN: u64 = 5;

/// The largest rectangle of the target's aspect ratio inside an upright `uw` x `uh` image,
/// centred horizontally and biased slightly upward vertically.
pub(crate) fn crop_rect(uw: u32, uh: u32, tw: u32, th: u32) -> Rect {
    let (uw64, uh64, tw64, th64) = (u64::from(uw), u64::from(uh), u64::from(tw), u64::from(th));
    if uw64 * th64 > uh64 * tw64 {
        // Too wide: full height, cut the sides evenly.
        let w = ((uh64 * tw64 + th64 / 2) / th64).clamp(1, uw64) as u32;
        Rect {
            x: (uw - w) / 2,
            y: 0,
            w,
            h: uh,
        }
    } else {
        // Too tall (or exact): full width, cut more from the bottom than from the top.
        let h = ((uw64 * th64 + tw64 / 2) / tw64).clamp(1, uh64) as u32;
        let excess = u64::from(uh - h);
        Rect {
            x: 0,
            y: (excess * TOP_SHARE_NUM / TOP_SHARE_DEN) as u32,
            w: uw,
            h,
        }
    }
}

/// Maps a rectangle given in upright coordinates onto the frame as stored (`sw` x `sh`).
///
/// Each orientation is written as where an upright *corner point* (not pixel centre) lands in
/// the stored frame; mapping two opposite corners and taking their bounding box gives the
/// stored rectangle. The formulas mirror `image`'s `rotate90` / `rotate270` / flips, which is
/// what `DynamicImage::apply_orientation` uses, and a test checks every orientation against it.
pub(crate) fn upright_rect_to_stored(r: Rect, o: Orientation, sw: u32, sh: u32) -> Rect {
    let map = |ux: i64, uy: i64| -> (i64, i64) {
        let (sw, sh) = (i64::from(sw), i64::from(sh));
        match o {
            Orientation::NoTransforms => (ux, uy),
            Orientation::FlipHorizontal => (sw - ux, uy),
            Orientation::FlipVertical => (ux, sh - uy),
            Orientation::Rotate180 => (sw - ux, sh - uy),
            Orientation::Rotate90 => (uy, sh - ux),
            Orientation::Rotate270 => (sw - uy, ux),
            Orientation::Rotate90FlipH => (uy, ux),
            Orientation::Rotate270FlipH => (sw - uy, sh - ux),
        }
    };
    let (ax, ay) = map(i64::from(r.x), i64::from(r.y));
    let (bx, by) = map(i64::from(r.x + r.w), i64::from(r.y + r.h));
    Rect {
        x: ax.min(bx) as u32,
        y: ay.min(by) as u32,
        w: ax.abs_diff(bx) as u32,
        h: ay.abs_diff(by) as u32,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::{DynamicImage, GenericImageView, RgbImage};

    /// Every EXIF orientation, for tests here and in `resample`.
    pub(crate) const ALL: [Orientation; 8] = [
        Orientation::NoTransforms,
        Orientation::FlipHorizontal,
        Orientation::Rotate180,
        Orientation::FlipVertical,
        Orientation::Rotate90FlipH,
        Orientation::Rotate90,
        Orientation::Rotate270FlipH,
        Orientation::Rotate270,
    ];

    #[test]
    fn mapped_crop_then_orient_equals_orient_then_crop() {
        let (sw, sh) = (13, 7);
        let stored = RgbImage::from_fn(sw, sh, |x, y| image::Rgb([x as u8, y as u8, 0]));
        for o in ALL {
            let mut upright = DynamicImage::ImageRgb8(stored.clone());
            upright.apply_orientation(o);
            let (uw, uh) = upright_size(sw, sh, o);
            assert_eq!(upright.dimensions(), (uw, uh), "{o:?}");
            let r = Rect {
                x: 1,
                y: 2,
                w: uw - 3,
                h: uh - 4,
            };
            let expected = upright.view(r.x, r.y, r.w, r.h).to_image();
            let s = upright_rect_to_stored(r, o, sw, sh);
            let mut got = DynamicImage::ImageRgb8(stored.view(s.x, s.y, s.w, s.h).to_image());
            got.apply_orientation(o);
            assert_eq!(got.to_rgba8(), expected, "{o:?}");
        }
    }

    #[test]
    fn crop_keeps_aspect_and_biases_up() {
        // 3:4 portrait frame into 413 x 531: full width, slightly too tall.
        let r = crop_rect(3000, 4000, 413, 531);
        assert_eq!((r.x, r.w), (0, 3000));
        assert_eq!(r.h, 3857);
        assert_eq!(r.y, (4000 - 3857) * 2 / 5);
        // landscape frame: full height, centred sides
        let r = crop_rect(4000, 3000, 413, 531);
        assert_eq!((r.y, r.h, r.w), (0, 3000, 2333));
        assert_eq!(r.x, (4000 - 2333) / 2);
        // degenerate sizes never produce an empty or out-of-bounds rectangle
        let r = crop_rect(1, 5000, 413, 531);
        assert!(r.w >= 1 && r.h >= 1 && r.y + r.h <= 5000);
        let r = crop_rect(5000, 1, 413, 531);
        assert!(r.w >= 1 && r.h >= 1 && r.x + r.w <= 5000);
    }
}
