//! The Keliling bus node: takes applications offline, keeps them safe, syncs them to HQ.
//!
//! - [`store`]: the SQLite store, the only copy until HQ confirms.
//! - [`vault`]: encryption at rest: the bus key pair, the passphrase, sealed records and blobs.
//! - [`capture`]: operator input in, parsed application and receipt out.
//! - [`catalogues`]: the service catalogue in use: the bus's own or HQ's, the newest.
//! - [`sync`]: the MQTT sync client (poller + pump).
//! - [`pace`]: how many chunks in flight the link carries without queueing.
//! - [`station`]: the operator's screen (web pages served by `bus-node run`).
//! - [`config`]: TOML config with `BUS_NODE__…` overrides.
//! - [`daemon`]: `bus-node run`: sync, heartbeat, retention purge, the station, shutdown.
//! - [`operators`]: operators and their PINs; [`drafts`]: applications being filled in;
//!   [`lookup`]: finding applications by tracking number or NIK (a keyed index).

pub mod capture;
pub mod catalogues;
pub mod config;
pub mod daemon;
pub mod drafts;
pub mod lookup;
pub mod operators;
pub mod pace;
pub mod station;
pub mod store;
pub mod sync;
pub mod vault;

pub use config::BusConfig;
pub use store::Store;
pub use vault::{KdfParams, Passphrase, UnlockedVault};
