//! Applications being filled in at the station, saved as the operator types: a reload, a
//! crash or a swapped tablet loses nothing. A draft holds personal data, so it is sealed to
//! the bus public key like a record; reading it needs the unlocked vault (the station
//! runs inside `bus-node run`, which holds it).
//!
//! A draft's id is the id its application will have, so saving twice (a double tap, a
//! resent form) saves once: the second save finds the application and no draft.

use crate::capture::IdPhoto;
use crate::store::{Store, StoreError};
use crate::vault::UnlockedVault;
use keliling_shared::{ApplicationId, ServiceCode, UnixMillis};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Drafts older than this are removed (`Store::purge_old_drafts`).
pub const DRAFT_DAYS: i64 = 14;

/// What the operator has typed and taken so far; every value as typed, parsed only on
/// save (and checked as they type, with the same parsers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DraftForm {
    pub village: String,
    pub full_name: String,
    pub nik: String,
    pub date_of_birth: String,
    pub sex: String,
    pub address: String,
    pub phone: String,
    /// The service's own fields, by catalogue name.
    pub fields: BTreeMap<String, String>,
    /// The documents ticked on the service's checklist.
    pub documents_seen: Vec<String>,
}

/// The ID photo of a draft, as the station made it, and whether the citizen accepted it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DraftPhoto {
    pub photo: IdPhoto,
    pub approved: bool,
}

/// A document scan taken at the station (a photo of the paper, or a PDF).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DraftDoc {
    /// The document's name in the catalogue.
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sealed {
    form: DraftForm,
    photo: Option<DraftPhoto>,
    /// Photos taken and not kept.
    retakes: u16,
    documents: Vec<DraftDoc>,
}

/// A draft, opened.
#[derive(Debug, Clone)]
pub struct Draft {
    pub id: ApplicationId,
    pub operator: String,
    pub service: ServiceCode,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub form: DraftForm,
    pub photo: Option<DraftPhoto>,
    pub retakes: u16,
    /// Document scans, one per catalogue document at most.
    pub documents: Vec<DraftDoc>,
    /// The application this draft completes (HQ asked for more information).
    pub amends: Option<ApplicationId>,
}

/// A draft as a list shows it (nothing sealed is read).
#[derive(Debug, Clone)]
pub struct DraftSummary {
    pub id: ApplicationId,
    pub operator: String,
    pub service: String,
    pub updated_at: UnixMillis,
}

fn aad(id: &ApplicationId) -> String {
    format!("draft:{id}")
}

impl Draft {
    /// A new, empty draft.
    pub fn new(operator: &str, service: ServiceCode, amends: Option<ApplicationId>) -> Draft {
        let now = UnixMillis::now();
        Draft {
            id: ApplicationId::new_v7(),
            operator: operator.to_owned(),
            service,
            created_at: now,
            updated_at: now,
            form: DraftForm::default(),
            photo: None,
            retakes: 0,
            documents: Vec::new(),
            amends,
        }
    }

    /// Keeps `bytes` as the scan of document `name`, replacing an earlier one.
    pub fn put_document(&mut self, name: &str, bytes: Vec<u8>) {
        self.documents.retain(|d| d.name != name);
        self.documents.push(DraftDoc {
            name: name.to_owned(),
            bytes,
        });
    }
}

impl Store {
    /// Changes draft `id` in one write transaction: `f` sees the draft as stored now, so
    /// two requests changing the same draft (an autosave while a photo is processed) do
    /// not overwrite each other. `None` when there is no such draft; a draft whose
    /// application is saved already is removed instead (a late autosave after the save).
    pub fn update_draft<R>(
        &mut self,
        id: &ApplicationId,
        vault: &UnlockedVault,
        f: impl FnOnce(&mut Draft) -> R,
    ) -> Result<Option<(Draft, R)>, StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| {
            if self.has_application(id)? {
                self.delete_draft(id)?;
                return Ok(None);
            }
            let Some(mut d) = self.draft(id, vault)? else {
                return Ok(None);
            };
            let r = f(&mut d);
            d.updated_at = UnixMillis::now();
            self.put_draft(&d)?;
            Ok(Some((d, r)))
        })();
        match &result {
            Ok(_) => self.conn.execute_batch("COMMIT")?,
            Err(_) => {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
        }
        result
    }

    /// Writes the draft (new or changed), sealed. Fast: one row, `synchronous=FULL` like
    /// a capture, so what the operator typed survives a power cut. Never brings back the
    /// draft of an application that is saved.
    pub fn put_draft(&mut self, d: &Draft) -> Result<(), StoreError> {
        let body = Sealed {
            form: d.form.clone(),
            photo: d.photo.clone(),
            retakes: d.retakes,
            documents: d.documents.clone(),
        };
        let bytes = postcard::to_stdvec(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let sealed = self.sealing_key()?.seal_record(&aad(&d.id), &bytes)?;
        self.conn.execute(
            "INSERT INTO drafts (id, operator, service, amends, created_at, updated_at, sealed)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
             WHERE NOT EXISTS (SELECT 1 FROM applications WHERE id = ?1)
             ON CONFLICT(id) DO UPDATE SET operator = excluded.operator, service = excluded.service,
                 updated_at = excluded.updated_at, sealed = excluded.sealed",
            params![
                d.id.to_string(),
                d.operator,
                d.service.as_str(),
                d.amends.map(|a| a.to_string()),
                d.created_at.0,
                d.updated_at.0,
                sealed
            ],
        )?;
        Ok(())
    }

    /// The draft `id`, opened; `None` when there is none (saved, discarded, never made).
    pub fn draft(
        &self,
        id: &ApplicationId,
        vault: &UnlockedVault,
    ) -> Result<Option<Draft>, StoreError> {
        type Row = (String, String, Option<String>, i64, i64, Vec<u8>);
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT operator, service, amends, created_at, updated_at, sealed FROM drafts WHERE id = ?1",
                [id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .optional()?;
        let Some((operator, service, amends, created, updated, sealed)) = row else {
            return Ok(None);
        };
        let amends = amends
            .map(|a| ApplicationId::parse(&a))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("draft {id}: {e}")))?;
        let plain = vault.open_record(&aad(id), &sealed)?;
        let body: Sealed = postcard::from_bytes(&plain)
            .map_err(|e| StoreError::Corrupt(format!("draft {id} (from another version?): {e}")))?;
        Ok(Some(Draft {
            id: *id,
            operator,
            service: ServiceCode::parse(&service)
                .map_err(|e| StoreError::Corrupt(format!("draft {id}: {e}")))?,
            created_at: UnixMillis(created),
            updated_at: UnixMillis(updated),
            form: body.form,
            photo: body.photo,
            retakes: body.retakes,
            documents: body.documents,
            amends,
        }))
    }

    /// The drafts on this bus, the newest first.
    pub fn drafts(&self) -> Result<Vec<DraftSummary>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, operator, service, updated_at FROM drafts ORDER BY updated_at DESC LIMIT 200",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        rows.map(|r| {
            let (id, operator, service, updated) = r?;
            Ok(DraftSummary {
                id: ApplicationId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                operator,
                service,
                updated_at: UnixMillis(updated),
            })
        })
        .collect()
    }

    /// The draft that completes application `id`, if one is being filled in.
    pub fn draft_amending(&self, id: &ApplicationId) -> Result<Option<ApplicationId>, StoreError> {
        let found: Option<String> = self
            .conn
            .query_row(
                "SELECT id FROM drafts WHERE amends = ?1 ORDER BY updated_at DESC LIMIT 1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        found
            .map(|s| ApplicationId::parse(&s).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Throws a draft away (the operator discarded it).
    pub fn delete_draft(&mut self, id: &ApplicationId) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM drafts WHERE id = ?1", [id.to_string()])?
            > 0)
    }

    /// Removes drafts untouched for [`DRAFT_DAYS`]: a citizen who left two weeks ago is not
    /// coming back to this one, and the personal data in it should not stay.
    pub fn purge_old_drafts(&mut self, now: UnixMillis) -> Result<usize, StoreError> {
        let before = now.0 - DRAFT_DAYS * 86_400_000;
        Ok(self
            .conn
            .execute("DELETE FROM drafts WHERE updated_at < ?1", [before])?)
    }

    /// Whether an application with this id is saved (a draft that was saved already).
    pub fn has_application(&self, id: &ApplicationId) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM applications WHERE id = ?1)",
            [id.to_string()],
            |r| r.get(0),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::KdfParams;
    use crate::Passphrase;

    #[test]
    fn drafts_are_sealed_kept_listed_and_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.sqlite");
        let mut s = Store::open(&path).unwrap();
        let vault = s
            .init_vault(
                &Passphrase::new("kata sandi panjang".into()),
                KdfParams::INSECURE_FAST,
            )
            .unwrap();
        let mut d = Draft::new("Siti", ServiceCode::parse("KIA").unwrap(), None);
        d.form.full_name = "Rina Wati".into();
        d.form.nik = "5371014403900001".into();
        s.put_draft(&d).unwrap();
        d.form.village = "Oelamasi".into();
        d.retakes = 2;
        s.put_draft(&d).unwrap();
        let back = s.draft(&d.id, &vault).unwrap().unwrap();
        assert_eq!(back.form, d.form);
        assert_eq!(back.retakes, 2);
        let raw: Vec<u8> = s
            .conn
            .query_row("SELECT sealed FROM drafts", [], |r| r.get(0))
            .unwrap();
        assert!(
            !raw.windows(9).any(|w| w == b"Rina Wati"),
            "no personal data in clear"
        );
        assert_eq!(s.drafts().unwrap().len(), 1);
        let later = UnixMillis(d.updated_at.0 + (DRAFT_DAYS + 1) * 86_400_000);
        assert_eq!(s.purge_old_drafts(later).unwrap(), 1);
        assert!(s.draft(&d.id, &vault).unwrap().is_none());
    }
}
