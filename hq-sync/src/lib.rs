//! Keliling HQ: takes what the buses send over MQTT, makes it durable, and acknowledges.
//!
//! - [`ingest`]: the MQTT ingest loop and its invariants (ack only after commit).
//! - [`replies`]: HQ's answers to buses, on their own lane so acks never wait behind them.
//! - [`store`]: the HQ record store (SQLite or PostgreSQL, through [`db`]).
//! - [`catalogues`]: every service catalogue published to the fleet, by version.
//! - [`photos`]: verified blobs as content-addressed files.
//! - [`staging`]: uploads in progress (sled), disposable.
//! - [`broker`]: the embedded rumqttd broker.
//! - [`config`]: TOML config with `HQ_SYNC__…` overrides.
//! - [`console`]: the staff's web console (review queue, decisions, fleet).
//! - [`staff`], [`review`], [`audit`]: staff and sessions, the queue and claims, the
//!   append-only audit log (tables in HQ's store).
//! - [`fd_limit`]: the open-file limit raised for a fleet's connections.

pub mod api_tokens;
pub mod audit;
pub mod broker;
pub mod catalogues;
pub mod config;
pub mod console;
pub mod content;
pub mod db;
pub mod decisions;
pub mod disk;
pub mod fd_limit;
pub mod files;
pub mod fleet;
pub mod ingest;
pub mod nats;
pub mod pg_schema;
pub mod pg_tls;
pub mod photos;
pub mod pki;
pub mod replies;
pub mod review;
pub mod shared_staging;
pub mod signing;
pub mod staff;
pub mod staging;
pub mod store;
pub mod testing;
pub mod tls_front;

pub use config::HqConfig;
