//! The service catalogues HQ has published to the fleet, by version.
//!
//! Why: a bus checks an application against the newest catalogue it has heard of, which
//! may be older than HQ's (it was out of reach when HQ published a new one). Each record
//! names the version the bus used (`RecordNotes::catalogue_version`), and HQ checks it
//! against that version, so HQ never refuses what was right where and when it was taken.
//!
//! Invariants:
//! - A version, once published, names one catalogue forever: HQ refuses to start with a
//!   catalogue whose version it published before with other content (the changed
//!   catalogue needs a higher `version`), so a bus and HQ naming a version mean the same.
//! - Rows are never deleted: an application made under any published version can still
//!   be checked against it.

use crate::db::{DbError, OptionalExt};
use crate::store::{HqStore, HqStoreError};
use crate::vals;
use keliling_shared::{Catalogue, UnixMillis};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CatalogueHistoryError {
    #[error(transparent)]
    Store(#[from] HqStoreError),
    #[error(
        "service catalogue version {0} was published to the fleet before with other content: \
         give the changed catalogue a higher `version`"
    )]
    Changed(u32),
    #[error("stored service catalogue version {version} cannot be read: {why}")]
    Corrupt { version: u32, why: String },
}

impl From<DbError> for CatalogueHistoryError {
    fn from(e: DbError) -> Self {
        CatalogueHistoryError::Store(e.into())
    }
}

/// One published version, for `hq-sync catalogue list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub version: u32,
    pub services: usize,
    pub first_published_at: UnixMillis,
}

impl HqStore {
    /// Records `cat` as published to the fleet: new when its version is, nothing when the
    /// same catalogue is there already, [`CatalogueHistoryError::Changed`] when the
    /// version is there with other content. True when it was new.
    pub fn publish_catalogue(
        &mut self,
        cat: &Catalogue,
        now: UnixMillis,
    ) -> Result<bool, CatalogueHistoryError> {
        let body = serde_json::to_string(cat).map_err(|e| CatalogueHistoryError::Corrupt {
            version: cat.version,
            why: e.to_string(),
        })?;
        // Two workers starting together record a version once, and both start: the insert
        // does nothing when the version is there (on PostgreSQL it waits for another
        // worker's uncommitted insert of it, then does nothing), and then the stored
        // body, committed by now, is compared.
        let services = i64::try_from(cat.services.len()).unwrap_or(i64::MAX);
        let tx = self.db.transaction()?;
        let inserted: Option<u32> = tx
            .query_row(
                "INSERT INTO catalogues (version, body, services, first_published_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (version) DO NOTHING RETURNING version",
                vals![cat.version, body, services, now.0],
                |r| r.get(0),
            )
            .optional()?;
        if inserted.is_some() {
            tx.commit()?;
            return Ok(true);
        }
        let stored: String = tx.query_row(
            "SELECT body FROM catalogues WHERE version = ?1",
            vals![cat.version],
            |r| r.get(0),
        )?;
        drop(tx);
        // Compared as catalogues, not as text: a build that adds a defaulted field
        // still recognises what an older one stored.
        match decode(cat.version, &stored)? == *cat {
            true => Ok(false),
            false => Err(CatalogueHistoryError::Changed(cat.version)),
        }
    }

    /// Every published version, oldest first.
    pub fn published_catalogues(&self) -> Result<Vec<Published>, CatalogueHistoryError> {
        Ok(self.db.query_map(
            "SELECT version, services, first_published_at FROM catalogues ORDER BY version",
            vals![],
            |r| {
                Ok(Published {
                    version: r.get(0)?,
                    services: r.get::<_, i64>(1)?.try_into().unwrap_or(0),
                    first_published_at: UnixMillis(r.get(2)?),
                })
            },
        )?)
    }

    /// The published catalogue of `version`, if there is one.
    pub fn published_catalogue(
        &self,
        version: u32,
    ) -> Result<Option<Catalogue>, CatalogueHistoryError> {
        let body: Option<String> = self
            .db
            .query_row(
                "SELECT body FROM catalogues WHERE version = ?1",
                vals![version],
                |r| r.get(0),
            )
            .optional()?;
        body.map(|b| decode(version, &b)).transpose()
    }
}

fn decode(version: u32, body: &str) -> Result<Catalogue, CatalogueHistoryError> {
    let corrupt = |why: String| CatalogueHistoryError::Corrupt { version, why };
    let cat: Catalogue = serde_json::from_str(body).map_err(|e| corrupt(e.to_string()))?;
    cat.validate().map_err(|e| corrupt(e.to_string()))?;
    if cat.version != version {
        return Err(corrupt(format!("it says it is version {}", cat.version)));
    }
    Ok(cat)
}

/// HQ's current catalogue, every version published before it and the built-in one, to
/// check records.
#[derive(Debug, Clone)]
pub struct Catalogues {
    current: Arc<Catalogue>,
    by_version: BTreeMap<u32, Arc<Catalogue>>,
}

impl Catalogues {
    /// Publishes `current` in `store`'s history (refusing a changed catalogue under a
    /// published version) and loads every version published.
    pub fn load(store: &mut HqStore, current: Catalogue) -> Result<Self, CatalogueHistoryError> {
        if store.publish_catalogue(&current, UnixMillis::now())? {
            tracing::info!(
                version = current.version,
                services = current.services.len(),
                "a new service catalogue version is published to the fleet"
            );
        }
        let current = Arc::new(current);
        let mut by_version = BTreeMap::new();
        for p in store.published_catalogues()? {
            if p.version == current.version {
                by_version.insert(p.version, current.clone());
            } else if let Some(c) = store.published_catalogue(p.version)? {
                by_version.insert(p.version, Arc::new(c));
            }
        }
        // Every bus carries the built-in starter catalogue and uses it until it hears
        // from HQ: what it captured under it is checked against it, unless HQ published
        // a catalogue of its own under that version.
        let builtin = Catalogue::builtin();
        by_version
            .entry(builtin.version)
            .or_insert_with(|| Arc::new(builtin));
        Ok(Catalogues {
            current,
            by_version,
        })
    }

    /// The catalogue HQ publishes and its console uses.
    pub fn current(&self) -> &Arc<Catalogue> {
        &self.current
    }

    /// The catalogue to check an application against, and whether it is the version the
    /// bus named: that version when HQ published it; otherwise HQ's current one (records
    /// of buses from before catalogue versions, or of a bus using its own catalogue file).
    pub fn for_version(&self, version: Option<u32>) -> (&Catalogue, bool) {
        match version.and_then(|v| self.by_version.get(&v)) {
            Some(c) => (c, true),
            None => (&self.current, version.is_none()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn city() -> Catalogue {
        Catalogue::from_toml(include_str!("../../config/services-city.toml")).unwrap()
    }

    #[test]
    fn a_version_names_one_catalogue_forever() {
        let t = "a_version_names_one_catalogue_forever";
        for (a, b) in crate::testing::each_backend(t)
            .into_iter()
            .zip(crate::testing::each_backend(t))
        {
            a_version_names_one_catalogue_forever_on(&a, &b);
        }
    }

    fn a_version_names_one_catalogue_forever_on(
        at: &crate::testing::TestStore,
        other: &crate::testing::TestStore,
    ) {
        let mut store = at.open();
        let starter = Catalogue::builtin();
        assert!(store.publish_catalogue(&starter, UnixMillis(1)).unwrap());
        assert!(!store.publish_catalogue(&starter, UnixMillis(2)).unwrap());
        // Version 1 again, with a service renamed: refused, the stored one kept.
        let mut changed = starter.clone();
        changed.services[0].name = "Layanan lain".into();
        assert!(matches!(
            store.publish_catalogue(&changed, UnixMillis(3)),
            Err(CatalogueHistoryError::Changed(1))
        ));
        assert_eq!(store.published_catalogue(1).unwrap(), Some(starter.clone()));

        // HQ moves to the city's catalogue (version 2); version 1 stays checkable.
        let cats = Catalogues::load(&mut store, city()).unwrap();
        assert_eq!(cats.current().version, 2);
        assert_eq!(cats.for_version(Some(1)), (&starter, true));
        assert_eq!(cats.for_version(Some(2)).0.services.len(), 200);
        assert_eq!(cats.for_version(None), (&**cats.current(), true));
        // A version HQ never published: checked against the current one, said so.
        assert_eq!(cats.for_version(Some(9)), (&**cats.current(), false));
        // The built-in one is known without being published: a bus uses it until it
        // hears from HQ.
        let mut fresh = other.open();
        let only_city = Catalogues::load(&mut fresh, city()).unwrap();
        assert_eq!(only_city.for_version(Some(1)), (&starter, true));
        assert_eq!(fresh.published_catalogues().unwrap().len(), 1);
        let listed = store.published_catalogues().unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|p| (p.version, p.services, p.first_published_at.0 > 0))
                .collect::<Vec<_>>(),
            vec![(1, starter.services.len(), true), (2, 200, true)]
        );
        // Reopened: the same history.
        drop(store);
        let mut store = at.open();
        let again = Catalogues::load(&mut store, starter.clone()).unwrap();
        assert_eq!(again.current().version, 1);
        assert_eq!(again.for_version(Some(2)).0.services.len(), 200);
    }
}
