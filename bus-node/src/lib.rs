//! The Keliling bus node: takes applications offline, keeps them safe, syncs them to HQ.
//!
//! - [`store`]: the SQLite store, the only copy until HQ confirms.
//! - [`vault`]: encryption at rest: the bus key pair, the passphrase, sealed records and blobs.
//! - [`capture`]: operator input in, parsed application and receipt out.
//! - [`sync`]: the MQTT sync client (poller + pump).
//! - [`pace`]: how many chunks in flight the link carries without queueing.
//! - [`config`]: TOML config with `BUS_NODE__…` overrides.
//! - [`daemon`]: `bus-node run`: sync, heartbeat, retention purge, shutdown.

pub mod capture;
pub mod config;
pub mod daemon;
pub mod pace;
pub mod store;
pub mod sync;
pub mod vault;

pub use config::BusConfig;
pub use store::Store;
pub use vault::{KdfParams, Passphrase, UnlockedVault};
