//! The service catalogue a bus uses: the newest version it has, of its own (the config's
//! file or the built-in one) and of HQ's (published retained on `{prefix}/fleet/catalogue`).
//!
//! Why: buses are out of reach for days, so HQ publishes a new catalogue once and each
//! bus picks it up at its next connection; HQ keeps every version it published and
//! checks an application against the one the bus names in it (`RecordNotes`).
//!
//! Invariants:
//! - HQ's catalogue is kept in the store as HQ signed it (`fleet_messages`), and believed
//!   again only when its signature checks against the bus's pinned keys: what the bus
//!   uses from HQ is always HQ's.
//! - The version in use only goes up: an older catalogue arriving late (a retained message
//!   from a broker that missed the update) changes nothing.
//! - A catalogue is stored before it is used. The sync's connection does not fsync each
//!   commit (`Store::open_for_sync`), so a power cut can lose the newest; the bus then
//!   uses the one before until HQ's arrives again (it is retained at the broker, and the
//!   bus subscribes to the fleet at every start). Applications name the version they used
//!   either way, and HQ keeps every version.

use crate::config::BusConfig;
use crate::store::{Store, StoreError};
use keliling_shared::config_env::ConfigError;
use keliling_shared::sign::VerifyingKeys;
use keliling_shared::wire::{Fleet, FleetEnvelope, FLEET_CATALOGUE};
use keliling_shared::{Catalogue, UnixMillis};
use rusqlite::{params, OptionalExtension};
use std::sync::{Arc, RwLock};
use tracing::warn;

/// The catalogue in use, shared by the sync (which takes HQ's new ones) and the station.
#[derive(Debug)]
pub struct Catalogues {
    current: RwLock<Arc<Catalogue>>,
}

impl Catalogues {
    pub fn new(catalogue: Catalogue) -> Catalogues {
        Catalogues {
            current: RwLock::new(Arc::new(catalogue)),
        }
    }

    /// The catalogue `cfg`'s bus uses now: its own or HQ's kept in its store, the newest
    /// (its own when the store cannot be read: a warning says so).
    pub fn for_bus(cfg: &BusConfig) -> Result<Catalogues, ConfigError> {
        let configured = cfg.catalogue()?;
        let keys = cfg.hq_keys().ok();
        match Store::open(&cfg.db_path()) {
            Ok(store) => Ok(Catalogues::load(configured, &store, keys.as_ref())),
            Err(e) => {
                warn!(error = %e, "cannot read HQ's service catalogue from the store: using this bus's own");
                Ok(Catalogues::new(configured))
            }
        }
    }

    /// The newest of `configured` and HQ's catalogue in `store` (checked again against
    /// `keys`; without keys, or when it no longer checks, `configured`).
    pub fn load(configured: Catalogue, store: &Store, keys: Option<&VerifyingKeys>) -> Catalogues {
        let from_hq = match (keys, store.fleet_message(FLEET_CATALOGUE)) {
            (Some(keys), Ok(Some(payload))) => match FleetEnvelope::decode_verified(&payload, keys)
            {
                Ok(FleetEnvelope {
                    body: Fleet::Catalogue(c),
                    ..
                }) => Some(*c),
                Err(e) => {
                    warn!(error = %e, "HQ's stored service catalogue is not believed any more (HQ's keys changed?): using this bus's own until HQ's arrives again");
                    None
                }
            },
            (_, Err(e)) => {
                warn!(error = %e, "cannot read HQ's stored service catalogue");
                None
            }
            _ => None,
        };
        let cats = Catalogues::new(configured);
        if let Some(c) = from_hq {
            cats.offer(c);
        }
        cats
    }

    /// The catalogue in use now.
    pub fn current(&self) -> Arc<Catalogue> {
        match self.current.read() {
            Ok(c) => c.clone(),
            // A writer panicked mid-swap: the value is a whole `Arc` either way.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Uses `catalogue` from now on if it is newer than the one in use; true when it is.
    pub fn offer(&self, catalogue: Catalogue) -> bool {
        let mut current = match self.current.write() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if catalogue.version > current.version {
            *current = Arc::new(catalogue);
            true
        } else {
            false
        }
    }
}

impl Store {
    /// Keeps HQ's signed fleet message `name` (the payload as received) when its
    /// `version` is newer than the one kept; true when it was kept.
    pub fn keep_fleet_message(
        &mut self,
        name: &str,
        version: u32,
        payload: &[u8],
    ) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "INSERT INTO fleet_messages (name, version, payload, received_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET version = excluded.version, payload = excluded.payload,
                 received_at = excluded.received_at
             WHERE excluded.version > fleet_messages.version",
            params![name, version, payload, UnixMillis::now().0],
        )?;
        Ok(n > 0)
    }

    /// The version of HQ's fleet message `name` as kept, if any (not checked: for display).
    pub fn fleet_message_version(&self, name: &str) -> Result<Option<u32>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT version FROM fleet_messages WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// HQ's signed fleet message `name` as kept, if any.
    pub fn fleet_message(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT payload FROM fleet_messages WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keliling_shared::sign::SigningKey;

    fn city() -> Catalogue {
        Catalogue::from_toml(include_str!("../../config/services-city.toml")).unwrap()
    }

    #[test]
    fn the_newest_catalogue_wins_and_only_hqs_is_believed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("bus.sqlite")).unwrap();
        let hq = SigningKey::generate();
        let keys = VerifyingKeys::new(vec![hq.verifying_key()]).unwrap();
        let starter = Catalogue::builtin();
        // Nothing from HQ yet: the bus's own.
        let cats = Catalogues::load(starter.clone(), &store, Some(&keys));
        assert_eq!(cats.current().version, 1);

        let payload = FleetEnvelope::new(Fleet::Catalogue(Box::new(city())))
            .encode_signed(&hq)
            .unwrap();
        assert!(store
            .keep_fleet_message(FLEET_CATALOGUE, 2, &payload)
            .unwrap());
        // An older one arriving late is not kept over it.
        assert!(!store
            .keep_fleet_message(FLEET_CATALOGUE, 1, b"older")
            .unwrap());
        let cats = Catalogues::load(starter.clone(), &store, Some(&keys));
        assert_eq!(cats.current().services.len(), 200);
        assert!(!cats.offer(starter.clone()));
        assert_eq!(cats.current().version, 2);

        // Under other keys (HQ rotated past the one that signed it), or none: the bus's own.
        let other = VerifyingKeys::new(vec![SigningKey::generate().verifying_key()]).unwrap();
        assert_eq!(
            Catalogues::load(starter.clone(), &store, Some(&other))
                .current()
                .version,
            1
        );
        assert_eq!(
            Catalogues::load(starter.clone(), &store, None)
                .current()
                .version,
            1
        );
        // A configured catalogue newer than HQ's is used (a bus trying one out).
        let mut newer = starter;
        newer.version = 3;
        assert_eq!(
            Catalogues::load(newer, &store, Some(&keys))
                .current()
                .version,
            3
        );
    }
}
