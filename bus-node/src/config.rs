//! The bus node's configuration: `config/bus.toml`, overridden by `BUS_NODE__…`
//! environment variables (see `keliling_shared::config_env`).

use keliling_shared::config_env::{self, ConfigError};
use keliling_shared::sign::VerifyingKeys;
use keliling_shared::wire::{DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES};
use keliling_shared::{BusId, Catalogue};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    pub bus_id: BusId,
    /// Where the bus keeps its SQLite store (`bus.sqlite`).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The service catalogue; the built-in starter catalogue when absent.
    pub catalogue: Option<PathBuf>,
    #[serde(default)]
    pub broker: BrokerConfig,
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub photo: PhotoConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub trust: TrustConfig,
    #[serde(default)]
    pub station: StationConfig,
}

/// `[station]`: the operator's screen, served by `bus-node run` on the bus's own network.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StationConfig {
    pub enabled: bool,
    /// Loopback or a private address (the bus's own network); a public one is refused.
    pub listen: std::net::SocketAddr,
    /// The station certificate (`hq-sync pki station-cert`) and its key: HTTPS, which a
    /// tablet trusting the fleet CA needs for the live camera.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Plain HTTP on a private (non-loopback) address: only when set, with a warning.
    pub allow_plain_http: bool,
    /// Minutes without a request before the station locks (PIN again).
    pub idle_lock_mins: u64,
    /// The bus's local time zone, minutes east of UTC (WIB: 420), for "today" and times.
    pub utc_offset_minutes: i32,
}

impl Default for StationConfig {
    fn default() -> Self {
        StationConfig {
            enabled: true,
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8090)),
            tls_cert: None,
            tls_key: None,
            allow_plain_http: false,
            idle_lock_mins: 5,
            utc_offset_minutes: 420,
        }
    }
}

/// Whom the bus believes: HQ's verifying keys, pinned in the bus's bundle.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustConfig {
    /// `hq-keys.pub` from `hq-sync pki provision-bus`: HQ's current and next Ed25519
    /// verifying keys. `bus-node run` refuses to sync without it: a down message is
    /// believed only with HQ's signature.
    pub hq_keys: Option<PathBuf>,
}

/// `[broker]`, the same as HQ's; the bus's network timeout defaults to
/// [`BROKER_CONNECTION_TIMEOUT_SECS`].
pub use keliling_shared::mqtt::BrokerConfig;

/// The network timeout (connecting, each socket flush) when `[broker]
/// connection_timeout_secs` is unset: long, because a 64 KiB chunk over 2G takes seconds
/// and rumqttc's 5 s default loops on `FlushTimeout` there (docs/DESIGN.md).
pub const BROKER_CONNECTION_TIMEOUT_SECS: u64 = 60;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    pub topic_prefix: String,
    /// Chunk size for new attachments, in bytes.
    pub chunk_bytes: u32,
    /// Records sent and not yet acked, at most.
    pub record_window: usize,
    /// Chunks sent and not yet confirmed, at most. The pace (`pace.rs`) keeps fewer in
    /// flight on a slow link, since each is re-sent after a cut.
    pub chunk_window: usize,
    /// How long a chunk may wait behind others on the link before the pace shrinks the
    /// window: about what a cut costs in re-sends.
    pub chunk_queue_ms: u64,
    /// How long to wait for HQ's answer before sending again.
    pub resend_after_ms: u64,
    pub heartbeat_secs: u64,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// How often the pump looks for work when nothing wakes it.
    pub tick_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            topic_prefix: keliling_shared::topics::DEFAULT_PREFIX.into(),
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            record_window: 64,
            chunk_window: 64,
            chunk_queue_ms: 2_000,
            resend_after_ms: 30_000,
            heartbeat_secs: 60,
            backoff_min_ms: 500,
            backoff_max_ms: 60_000,
            tick_ms: 250,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhotoConfig {
    pub max_input_bytes: usize,
    pub max_pixels: u64,
}

impl Default for PhotoConfig {
    fn default() -> Self {
        let l = keliling_photo::Limits::default();
        PhotoConfig {
            max_input_bytes: l.max_input_bytes,
            max_pixels: l.max_pixels,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Photo and scan bytes are purged this many days after HQ confirmed delivery.
    pub purge_after_days: u64,
    /// How often `bus-node run` looks for bytes past retention.
    pub check_every_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            purge_after_days: 30,
            check_every_secs: 3600,
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("var/bus")
}

pub const ENV_PREFIX: &str = "BUS_NODE";

impl BusConfig {
    /// Loads the file (if any) and environment overrides, then checks the values.
    pub fn load(path: Option<&Path>) -> Result<BusConfig, ConfigError> {
        let c: BusConfig = config_env::load(path, ENV_PREFIX)?;
        c.check()?;
        Ok(c)
    }

    /// A config for tests and the demo: everything default but the id, store and broker,
    /// and no station (enable it with a free `listen` port).
    pub fn for_bus(bus_id: BusId, data_dir: PathBuf, host: &str, port: u16) -> BusConfig {
        BusConfig {
            bus_id,
            data_dir,
            catalogue: None,
            broker: BrokerConfig {
                host: host.into(),
                port,
                ..BrokerConfig::default()
            },
            sync: SyncConfig::default(),
            photo: PhotoConfig::default(),
            retention: RetentionConfig::default(),
            trust: TrustConfig::default(),
            // Many buses run in one test process: each would want the same port.
            station: StationConfig {
                enabled: false,
                ..StationConfig::default()
            },
        }
    }

    /// HQ's verifying keys from `trust.hq_keys`.
    pub fn hq_keys(&self) -> Result<VerifyingKeys, ConfigError> {
        let path = self.trust.hq_keys.as_deref().ok_or_else(|| {
            ConfigError::Invalid(
                "trust.hq_keys belum diisi: pakai bus.toml dari `hq-sync pki provision-bus` \
                 (trust.hq_keys is not set: use the bus.toml made by `hq-sync pki provision-bus`; \
                 the bus believes only messages signed by HQ)"
                    .into(),
            )
        })?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Invalid(format!("trust.hq_keys {}: {e}", path.display())))?;
        VerifyingKeys::parse(&text)
            .map_err(|e| ConfigError::Invalid(format!("trust.hq_keys {}: {e}", path.display())))
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |s: String| Err(ConfigError::Invalid(s));
        if !(MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES).contains(&self.sync.chunk_bytes) {
            return bad(format!(
                "sync.chunk_bytes must be {MIN_CHUNK_BYTES}..={MAX_CHUNK_BYTES}"
            ));
        }
        if self.sync.record_window == 0 || self.sync.chunk_window == 0 {
            return bad("sync windows must be at least 1".into());
        }
        keliling_shared::topics::Topics::new(&self.sync.topic_prefix)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(())
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("bus.sqlite")
    }

    pub fn catalogue(&self) -> Result<Catalogue, ConfigError> {
        config_env::load_catalogue(self.catalogue.as_deref())
    }

    pub fn resend_after(&self) -> Duration {
        Duration::from_millis(self.sync.resend_after_ms)
    }

    pub fn capture_settings(&self) -> crate::capture::CaptureSettings {
        crate::capture::CaptureSettings {
            bus_id: self.bus_id.clone(),
            chunk_size: self.sync.chunk_bytes,
            photo_limits: keliling_photo::Limits {
                max_input_bytes: self.photo.max_input_bytes,
                max_pixels: self.photo.max_pixels,
                ..keliling_photo::Limits::default()
            },
        }
    }
}
