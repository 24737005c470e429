//! The end-to-end harness: real brokers, the real binaries, a link-cutting proxy, sample
//! citizens with real photos, and exactly-once checks. Used by `tests/tests/*.rs`, the
//! demo (`keliling-demo`), the benchmarks (`keliling-bench`) and the field runs
//! (`keliling-field`: rural 2G, a fleet of 1000 buses). `browser` drives Debian's
//! headless Chromium over WebDriver for the console's tests.

pub mod browser;
pub mod campaign;
pub mod disk;
pub mod field;
pub mod harness;
pub mod mosquitto;
pub mod nats;
pub mod ports;
pub mod procstat;
pub mod proxy;
pub mod sample;
