//! API tokens for other government systems (the JSON API, `docs/API.md`): one per system,
//! scoped to agencies like a staff member, revocable. Only the token's SHA-256 is stored;
//! the token is shown once, when it is made.

use crate::audit;
use crate::db::OptionalExt;
use crate::staff::random_token;
use crate::store::{HqStore, HqStoreError};
use crate::vals;
use keliling_shared::{Sha256, UnixMillis};

/// Tokens start with this, so a leaked one is recognisable (e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "kl_";

/// A system that may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiClient {
    pub name: String,
    pub agencies: Vec<String>,
    pub created_at: UnixMillis,
    pub created_by: String,
    pub revoked_at: Option<UnixMillis>,
    pub last_used_at: Option<UnixMillis>,
}

fn token_sha(token: &str) -> String {
    Sha256::digest(token.as_bytes()).to_hex()
}

fn check_name(name: &str) -> Result<(), HqStoreError> {
    let ok = (2..=40).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(HqStoreError::Corrupt(format!(
            "API client name {name:?}: 2-40 of a-z, 0-9, '-', '_', '.'"
        )))
    }
}

impl HqStore {
    /// Makes a token for system `name`; returns it (shown once, never stored).
    pub fn add_api_token(
        &mut self,
        name: &str,
        agencies: &[String],
        known_agencies: &[String],
        by: &str,
        now: UnixMillis,
    ) -> Result<String, HqStoreError> {
        check_name(name)?;
        if agencies.is_empty() || agencies.iter().any(|a| !known_agencies.contains(a)) {
            return Err(HqStoreError::Corrupt(format!(
                "agencies {agencies:?}: one or more of {}",
                known_agencies.join(", ")
            )));
        }
        let token = format!("{TOKEN_PREFIX}{}", random_token());
        let tx = self.db.transaction()?;
        // The name is UNIQUE: a second token for a name fails here, also one that another
        // HQ worker adds at the same moment (PostgreSQL).
        tx.execute(
            "INSERT INTO api_tokens (name, token_sha256, agencies, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            vals![name, token_sha(&token), agencies.join(","), by, now.0],
        )
        .map_err(|e| {
            if e.is_unique_violation() {
                HqStoreError::Corrupt(format!("an API client {name:?} exists already (revoke it first)"))
            } else {
                e.into()
            }
        })?;
        audit::append(
            &tx,
            now,
            by,
            &audit::Entry::new("api_token_added").detail(name),
        )?;
        tx.commit()?;
        Ok(token)
    }

    /// Revokes system `name`'s token. False when there was no live one.
    pub fn revoke_api_token(
        &mut self,
        name: &str,
        by: &str,
        now: UnixMillis,
    ) -> Result<bool, HqStoreError> {
        let tx = self.db.transaction()?;
        // The time goes in twice, as a number and as text (?3): PostgreSQL gives one
        // parameter one type. On PostgreSQL the UPDATE's row lock makes a second
        // concurrent revoke find no live token (it re-checks `revoked_at IS NULL`).
        let n = tx.execute(
            "UPDATE api_tokens SET revoked_at = ?1, name = name || '#revoked-' || ?3 WHERE name = ?2 AND revoked_at IS NULL",
            vals![now.0, name, now.0.to_string()],
        )?;
        if n > 0 {
            audit::append(
                &tx,
                now,
                by,
                &audit::Entry::new("api_token_revoked").detail(name),
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    pub fn api_clients(&self) -> Result<Vec<ApiClient>, HqStoreError> {
        let rows = self.db.query_map(
            "SELECT name, agencies, created_at, created_by, revoked_at, last_used_at FROM api_tokens ORDER BY created_at",
            vals![],
            |r| {
                Ok(ApiClient {
                    name: r.get(0)?,
                    agencies: r
                        .get::<_, String>(1)?
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    created_at: UnixMillis(r.get(2)?),
                    created_by: r.get(3)?,
                    revoked_at: r.get::<_, Option<i64>>(4)?.map(UnixMillis),
                    last_used_at: r.get::<_, Option<i64>>(5)?.map(UnixMillis),
                })
            },
        )?;
        Ok(rows)
    }

    /// The live client of a bearer token, if any (its use is noted, at most every minute).
    pub fn api_client(
        &mut self,
        token: &str,
        now: UnixMillis,
    ) -> Result<Option<ApiClient>, HqStoreError> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
            return Ok(None);
        }
        let key = token_sha(token);
        let row: Option<(String, String, i64, String, Option<i64>)> = self
            .db
            .query_row(
                "SELECT name, agencies, created_at, created_by, last_used_at FROM api_tokens
                 WHERE token_sha256 = ?1 AND revoked_at IS NULL",
                vals![key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let Some((name, agencies, created, by, used)) = row else {
            return Ok(None);
        };
        if used.is_none_or(|u| now.0.saturating_sub(u) > 60_000) {
            self.db.execute(
                "UPDATE api_tokens SET last_used_at = ?1 WHERE token_sha256 = ?2",
                vals![now.0, key],
            )?;
        }
        Ok(Some(ApiClient {
            name,
            agencies: agencies
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            created_at: UnixMillis(created),
            created_by: by,
            revoked_at: None,
            last_used_at: Some(now),
        }))
    }
}
