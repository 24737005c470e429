//! Cheap quality checks that tell the operator to retake *while the citizen is still on the bus*.
//!
//! A rejected photo discovered at HQ a week later means a second trip for someone who may live
//! hours from the route. So the checks run on every normalized photo, take a millisecond or
//! two, and speak in advice ("add light and retake") rather than in measurements. Only
//! [`Advice::TooSmall`] is blocking: the others are judgement calls the operator may overrule
//! (a dark skin tone is not an underexposed photo; a plain wall is not a blur).
//!
//! All measures are taken on the *normalized* photo (the service's pixel size), because that is
//! what the officer at HQ will look at and because the blur measure depends on scale: the same
//! scene has far less pixel-level detail at 12 MP than at 413 x 531.

use image::RgbImage;

use crate::{Background, PhotoSpec};

/// One reason to retake the photo.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Advice {
    /// The upright source has fewer pixels than the ID photo in at least one direction, so the
    /// photo had to be enlarged. Blocking: enlarged photos are rejected at HQ.
    TooSmall {
        /// Upright width of the source photo.
        width: u32,
        /// Upright height of the source photo.
        height: u32,
        /// Width the ID photo needs.
        min_width: u32,
        /// Height the ID photo needs.
        min_height: u32,
    },
    /// The face area is underexposed.
    TooDark {
        /// Mean luma (0..=255) of the face area.
        mean_luma: u8,
    },
    /// The face area is overexposed (often the flash at short distance).
    TooBright {
        /// Mean luma (0..=255) of the face area.
        mean_luma: u8,
    },
    /// The face area lacks fine detail: camera shake or missed focus.
    Blurred {
        /// Variance of the Laplacian relative to the contrast (x1000); see [`SHARPNESS_MIN`].
        sharpness: f32,
    },
    /// The background at the top corners is clearly not the colour the service asks for.
    WrongBackground {
        /// The colour the service asks for.
        expected: Background,
    },
}

/// Mean face-area luma below this is [`Advice::TooDark`].
pub const DARK_BELOW: u8 = 60;
/// Mean face-area luma above this is [`Advice::TooBright`].
pub const BRIGHT_ABOVE: u8 = 200;
/// Sharpness (see [`Advice::Blurred`]) below this is [`Advice::Blurred`].
///
/// Tuned on the bundled portrait at 413 x 531: sharp scores about 80, a Gaussian blur of
/// sigma 1 px about 12 (passes: mild softness is not worth a retake), sigma 1.5 px about 5,
/// sigma 2 px about 2.5 and sigma 3 px about 1.4 (fail). Kept low on purpose: a face with
/// little texture has less detail than the portrait, and a false alarm costs a retake.
pub const SHARPNESS_MIN: f32 = 3.0;

impl Advice {
    /// Retake advice for the operator in Bahasa Indonesia.
    pub fn message_id(&self) -> String {
        match self {
            Advice::TooSmall {
                width,
                height,
                min_width,
                min_height,
            } => format!(
                "Foto terlalu kecil ({width} x {height} piksel, minimal {min_width} x \
                 {min_height}): naikkan resolusi kamera lalu ulangi."
            ),
            Advice::TooDark { .. } => "Foto terlalu gelap: tambah cahaya lalu ulangi.".to_owned(),
            Advice::TooBright { .. } => {
                "Foto terlalu terang: kurangi cahaya atau matikan lampu kilat lalu ulangi."
                    .to_owned()
            }
            Advice::Blurred { .. } => {
                "Foto buram: pegang kamera dengan stabil, fokuskan ke wajah, lalu ulangi."
                    .to_owned()
            }
            Advice::WrongBackground { expected } => {
                let warna = expected.name_id();
                format!("Latar belakang bukan {warna}: gunakan latar {warna} lalu ulangi.")
            }
        }
    }

    /// The same advice in English (logs, HQ staff, documentation).
    pub fn message_en(&self) -> String {
        match self {
            Advice::TooSmall {
                width,
                height,
                min_width,
                min_height,
            } => format!(
                "Photo too small ({width} x {height} pixels, at least {min_width} x \
                 {min_height} needed): raise the camera resolution and retake."
            ),
            Advice::TooDark { .. } => "Photo too dark: add light and retake.".to_owned(),
            Advice::TooBright { .. } => {
                "Photo too bright: reduce the light or turn off the flash and retake.".to_owned()
            }
            Advice::Blurred { .. } => {
                "Photo blurred: hold the camera steady, focus on the face, and retake.".to_owned()
            }
            Advice::WrongBackground { expected } => {
                let colour = expected.name_en();
                format!("Background is not {colour}: use a {colour} background and retake.")
            }
        }
    }

    /// Whether the photo must not be submitted as it is.
    ///
    /// Only [`Advice::TooSmall`]: an enlarged photo is rejected at HQ for certain, whereas
    /// light, sharpness and background are measured crudely and the operator, who sees the
    /// citizen, gets the last word.
    pub fn is_blocking(&self) -> bool {
        matches!(self, Advice::TooSmall { .. })
    }
}

impl Background {
    fn name_id(self) -> &'static str {
        match self {
            Background::Red => "merah",
            Background::Blue => "biru",
            Background::White => "putih",
        }
    }

    fn name_en(self) -> &'static str {
        match self {
            Background::Red => "red",
            Background::Blue => "blue",
            Background::White => "white",
        }
    }
}

/// Runs the cheap checks on an image.
///
/// `img` is normally the normalized photo (exactly `spec.width` x `spec.height`). Any other
/// image is treated as an upright source photo: it gets the [`Advice::TooSmall`] check against
/// the spec, and the remaining checks run on its crop resized to the spec, exactly as
/// [`normalize`](crate::normalize) would produce it, so both give the same answer.
pub fn assess(img: &RgbImage, spec: &PhotoSpec) -> Vec<Advice> {
    let mut advice = Vec::new();
    if let Some(small) = too_small(img.width(), img.height(), spec) {
        advice.push(small);
    }
    if spec.width == 0 || spec.height == 0 || img.width() == 0 || img.height() == 0 {
        return advice;
    }
    if img.dimensions() == (spec.width, spec.height) {
        advice.extend(assess_fitted(img, spec));
    } else if let Ok(fitted) = crate::resample::fit_upright(img, spec.width, spec.height) {
        // (The resize fails only for sizes `normalize` refuses anyway; then there is nothing
        // at the spec's size to judge.)
        advice.extend(assess_fitted(&fitted, spec));
    }
    advice
}

/// [`Advice::TooSmall`] if the upright source is smaller than the spec in either direction.
pub(crate) fn too_small(width: u32, height: u32, spec: &PhotoSpec) -> Option<Advice> {
    (width < spec.width || height < spec.height).then_some(Advice::TooSmall {
        width,
        height,
        min_width: spec.width,
        min_height: spec.height,
    })
}

/// The checks that look at pixels, on an image already at the spec's size.
pub(crate) fn assess_fitted(img: &RgbImage, spec: &PhotoSpec) -> Vec<Advice> {
    let mut advice = Vec::new();
    let face = face_region(img.width(), img.height());
    let luma = luma_plane(img);
    let w = img.width() as usize;

    let mean = mean_luma(&luma, w, face);
    if mean < DARK_BELOW {
        advice.push(Advice::TooDark { mean_luma: mean });
    } else if mean > BRIGHT_ABOVE {
        advice.push(Advice::TooBright { mean_luma: mean });
    }

    let sharpness = sharpness(&luma, w, face);
    if sharpness < SHARPNESS_MIN {
        advice.push(Advice::Blurred { sharpness });
    }

    if let Some(expected) = spec.background {
        let corners = corner_regions(img.width(), img.height());
        if !background_matches(mean_rgb(img, &corners), expected) {
            advice.push(Advice::WrongBackground { expected });
        }
    }
    advice
}

/// Region as (x0, y0, x1, y1), exclusive ends.
type Region = (u32, u32, u32, u32);

/// The central area where an ID photo has the face and collar.
///
/// Why not the whole frame: the background is a third to a half of an ID photo. A white
/// background would make every photo "too bright" and a plain wall would make every photo
/// "blurred" if they were averaged in.
fn face_region(w: u32, h: u32) -> Region {
    (w / 5, h / 8, w - w / 5, h - h / 4)
}

/// The two top corners, where an ID photo shows only background.
fn corner_regions(w: u32, h: u32) -> [Region; 2] {
    let (cw, ch) = ((w / 6).max(1), (h / 8).max(1));
    [(0, 0, cw, ch), (w - cw, 0, w, ch)]
}

/// Rec. 601 luma, the "brightness" a JPEG stores, as one byte per pixel.
fn luma_plane(img: &RgbImage) -> Vec<u8> {
    img.pixels()
        .map(|p| {
            let [r, g, b] = p.0;
            ((77 * u32::from(r) + 150 * u32::from(g) + 29 * u32::from(b) + 128) >> 8) as u8
        })
        .collect()
}

fn mean_luma(luma: &[u8], w: usize, (x0, y0, x1, y1): Region) -> u8 {
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in y0 as usize..y1 as usize {
        for &v in &luma[y * w + x0 as usize..y * w + x1 as usize] {
            sum += u64::from(v);
            n += 1;
        }
    }
    sum.checked_div(n).unwrap_or(0) as u8
}

/// Variance of the 4-neighbour Laplacian over the face region, relative to the region's
/// contrast.
///
/// The Laplacian responds to fine detail (edges, hair, eyelashes, fabric) and not to smooth
/// gradients, so its variance collapses when a photo is out of focus or shaken. Raw, it also
/// scales with the square of the contrast: a photo at 15 % exposure, or a washed-out one, has
/// 2 % of the variance and would be called "blurred" on top of "too dark". Dividing by the
/// variance of the luma itself measures which *share* of the picture's variation is fine
/// detail, independent of exposure; times 1000 for a readable number. On the bundled portrait
/// a sharp photo scores about 80, a Gaussian blur of sigma 1 px about 12, sigma 2 px about 2.5.
fn sharpness(luma: &[u8], w: usize, (x0, y0, x1, y1): Region) -> f32 {
    let h = luma.len() / w.max(1);
    let (x0, y0) = ((x0 as usize).max(1), (y0 as usize).max(1));
    let (x1, y1) = (
        (x1 as usize).min(w - 1),
        (y1 as usize).min(h.saturating_sub(1)),
    );
    let (mut lap_sum, mut lap_sq) = (0f64, 0f64);
    let (mut luma_sum, mut luma_sq) = (0f64, 0f64);
    let mut n = 0f64;
    for y in y0..y1 {
        for x in x0..x1 {
            let c = i32::from(luma[y * w + x]);
            let lap = i32::from(luma[y * w + x - 1])
                + i32::from(luma[y * w + x + 1])
                + i32::from(luma[(y - 1) * w + x])
                + i32::from(luma[(y + 1) * w + x])
                - 4 * c;
            let (lap, c) = (f64::from(lap), f64::from(c));
            lap_sum += lap;
            lap_sq += lap * lap;
            luma_sum += c;
            luma_sq += c * c;
            n += 1.0;
        }
    }
    if n == 0.0 {
        return 0.0;
    }
    let lap_var = lap_sq / n - (lap_sum / n).powi(2);
    // A flat region has no detail to judge; at least one grey level of spread avoids 0/0.
    let luma_var = (luma_sq / n - (luma_sum / n).powi(2)).max(1.0);
    (1000.0 * lap_var / luma_var) as f32
}

fn mean_rgb(img: &RgbImage, regions: &[Region]) -> [f32; 3] {
    let mut sum = [0u64; 3];
    let mut n = 0u64;
    for &(x0, y0, x1, y1) in regions {
        for y in y0..y1 {
            for x in x0..x1 {
                let p = img.get_pixel(x, y).0;
                for c in 0..3 {
                    sum[c] += u64::from(p[c]);
                }
                n += 1;
            }
        }
    }
    let n = n.max(1) as f32;
    [sum[0] as f32 / n, sum[1] as f32 / n, sum[2] as f32 / n]
}

/// Hue in degrees (0 = red, 120 = green, 240 = blue) and chroma (max - min, 0..=255).
fn hue_chroma([r, g, b]: [f32; 3]) -> (f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let chroma = max - min;
    if chroma <= f32::EPSILON {
        return (0.0, 0.0);
    }
    let hue = if max == r {
        60.0 * ((g - b) / chroma).rem_euclid(6.0)
    } else if max == g {
        60.0 * ((b - r) / chroma + 2.0)
    } else {
        60.0 * ((r - g) / chroma + 4.0)
    };
    (hue, chroma)
}

fn hue_distance(a: f32, b: f32) -> f32 {
    let d = (a - b).abs() % 360.0;
    d.min(360.0 - d)
}

/// Lenient background check: only a clearly different colour fails.
///
/// Camera white balance, shadows and a bit of hair in the corner shift the measured colour a
/// lot, and a false "wrong background" sends a citizen to find another wall for nothing. So a
/// coloured background passes anywhere within 50 degrees of hue and at modest saturation, and
/// white passes as any light, mostly neutral surface (a grey-looking white wall included).
fn background_matches(rgb: [f32; 3], expected: Background) -> bool {
    let (hue, chroma) = hue_chroma(rgb);
    let luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
    match expected {
        Background::White => chroma < 70.0 && luma > 100.0,
        Background::Red => chroma >= 40.0 && hue_distance(hue, 0.0) <= 50.0,
        Background::Blue => chroma >= 40.0 && hue_distance(hue, 215.0) <= 50.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_colours() {
        let indonesian_red = [200.0, 30.0, 35.0];
        let indonesian_blue = [20.0, 100.0, 190.0];
        let white_wall = [235.0, 232.0, 225.0];
        let grey_white_wall = [150.0, 150.0, 155.0];
        assert!(background_matches(indonesian_red, Background::Red));
        assert!(background_matches(indonesian_blue, Background::Blue));
        assert!(background_matches(white_wall, Background::White));
        assert!(background_matches(grey_white_wall, Background::White));
        assert!(!background_matches(white_wall, Background::Red));
        assert!(!background_matches(white_wall, Background::Blue));
        assert!(!background_matches(indonesian_red, Background::Blue));
        assert!(!background_matches(indonesian_blue, Background::Red));
        assert!(!background_matches(indonesian_red, Background::White));
        assert!(!background_matches(indonesian_blue, Background::White));
        assert!(!background_matches([20.0, 20.0, 20.0], Background::White));
    }

    #[test]
    fn messages_are_worded_for_the_operator() {
        let dark = Advice::TooDark { mean_luma: 20 };
        assert_eq!(
            dark.message_id(),
            "Foto terlalu gelap: tambah cahaya lalu ulangi."
        );
        assert!(!dark.is_blocking());
        let small = Advice::TooSmall {
            width: 200,
            height: 250,
            min_width: 413,
            min_height: 531,
        };
        assert!(small.is_blocking());
        assert!(small.message_id().contains("200 x 250"));
        assert!(small.message_en().contains("413 x 531"));
        let bg = Advice::WrongBackground {
            expected: Background::Red,
        };
        assert!(bg.message_id().contains("merah"));
        assert!(bg.message_en().contains("red"));
    }
}
