//! The end-to-end harness: real brokers, the real binaries, a link-cutting proxy, sample
//! citizens with real photos, and exactly-once checks. Used by `tests/tests/*.rs`, the
//! demo (`keliling-demo`) and the benchmarks (`keliling-bench`).

pub mod harness;
pub mod mosquitto;
pub mod ports;
pub mod proxy;
pub mod sample;
