//! Times `normalize` on a generated 12 MP camera JPEG (4000 x 3000, EXIF orientation 6, GPS).
//!
//! Run in release mode, the only mode whose numbers mean anything:
//!
//! ```text
//! cargo run --release -p keliling-photo --example normalize_bench -- [runs]
//! ```
//!
//! Prints the median (and min / max) wall time over `runs` calls (default 15), after one
//! warm-up call. For comparison, DESIGN.md quotes libvips `vipsthumbnail` at about 0.17 s and
//! ImageMagick at about 0.6 s for the same job on a 2-core machine.

use std::time::{Duration, Instant};

use keliling_photo::{fixtures, normalize, Limits, PhotoSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 15,
    };
    let runs = runs.max(1);

    let portrait = fixtures::load_portrait()?;
    let camera = fixtures::camera_jpeg(&portrait, 4000, 3000, 6, true, 92)?;
    let spec = PhotoSpec::default();
    let limits = Limits::default();

    // Warm-up: first-touch page faults and allocator growth are not what we measure.
    let first = normalize(&camera, &spec, &limits)?;
    println!(
        "input: 4000 x 3000 JPEG, {} bytes; output: {} x {}, {} bytes, quality {}, advice {:?}",
        camera.len(),
        first.width,
        first.height,
        first.jpeg.len(),
        first.quality,
        first.advice
    );

    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let photo = normalize(&camera, &spec, &limits)?;
        times.push(start.elapsed());
        std::hint::black_box(photo);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "normalize over {runs} runs: median {:.1} ms (min {:.1}, max {:.1})",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    Ok(())
}
