//! `keliling-camera FILE`: writes a camera-like JPEG (12 MP, EXIF orientation 6, GPS) of
//! the bundled public-domain portrait, to try `bus-node capture --photo FILE` by hand.

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: keliling-camera FILE.jpg")?;
    let portrait = keliling_photo::fixtures::load_portrait()?;
    let jpeg = keliling_photo::fixtures::camera_jpeg(&portrait, 4000, 3000, 6, true, 90)?;
    std::fs::write(&path, &jpeg).with_context(|| format!("writing {path}"))?;
    println!("{path}: {} bytes, 4000 x 3000 stored, EXIF orientation 6 (upright 3000 x 4000), GPS tag present", jpeg.len());
    Ok(())
}
