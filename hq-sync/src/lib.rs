//! Keliling HQ: takes what the buses send over MQTT, makes it durable, and acknowledges.
//!
//! - [`ingest`]: the MQTT ingest loop and its invariants (ack only after commit).
//! - [`store`]: the HQ record store (SQLite).
//! - [`photos`]: verified blobs as content-addressed files.
//! - [`staging`]: uploads in progress (sled), disposable.
//! - [`broker`]: the embedded rumqttd broker.
//! - [`config`]: TOML config with `HQ_SYNC__…` overrides.

pub mod broker;
pub mod config;
pub mod ingest;
pub mod photos;
pub mod staging;
pub mod store;

pub use config::HqConfig;
