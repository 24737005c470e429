//! HQ staff: accounts, roles, agencies, logins and sessions (in HQ's store).
//!
//! Invariants:
//! - A password exists only as an argon2id PHC string. A login for an unknown or disabled
//!   account costs the same hash as a real one, so its timing does not say who exists.
//! - After [`MAX_FAILED_LOGINS`] failures in a row an account is locked for
//!   [`LOCKOUT`]; a success resets the count. A locked account is refused before its
//!   password is checked.
//! - A session token lives only in the staff member's cookie; the store keeps its SHA-256.
//!   A session ends at logout, after `idle` without a request, `max_age` after login, or
//!   when its account is disabled or its password changed.
//! - What staff may see is decided from the session's row on every request (role and
//!   agencies are read fresh, never trusted from the cookie).

use crate::db::{Db, DbError, OptionalExt, ToValue};
use crate::store::{HqStore, HqStoreError};
use crate::vals;
use keliling_shared::UnixMillis;
use std::fmt;
use std::time::Duration;

/// Failed logins in a row that lock an account.
pub const MAX_FAILED_LOGINS: u32 = 5;
/// How long a locked account stays locked.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// The shortest password `staff add` and `staff passwd` accept.
pub const MIN_PASSWORD_CHARS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    #[error(transparent)]
    Store(#[from] HqStoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("no staff account {0:?}")]
    NoSuchUser(String),
    #[error("staff account {0:?} exists already")]
    Exists(String),
    #[error("password hash: {0}")]
    Hash(String),
}

impl From<DbError> for StaffError {
    fn from(e: DbError) -> Self {
        StaffError::Store(HqStoreError::from(e))
    }
}

/// What a staff member may do. A supervisor can do all a reviewer can, and also
/// override decisions, see the audit log and the quarantine, export, and manage API
/// tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Reviewer,
    Supervisor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reviewer => "reviewer",
            Role::Supervisor => "supervisor",
        }
    }

    pub fn parse(s: &str) -> Result<Role, StaffError> {
        match s {
            "reviewer" => Ok(Role::Reviewer),
            "supervisor" => Ok(Role::Supervisor),
            other => Err(StaffError::Invalid(format!(
                "role {other:?}: reviewer or supervisor"
            ))),
        }
    }
}

/// The console's languages: Bahasa Indonesia first.
pub use keliling_web::Lang;

/// A login name: 2-32 characters of `a-z 0-9 . _ -`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Username, StaffError> {
        let s = s.trim().to_ascii_lowercase();
        let ok = (2..=32).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if ok {
            Ok(Username(s))
        } else {
            Err(StaffError::Invalid(format!(
                "username {s:?}: 2-32 of a-z, 0-9, '.', '_', '-', starting with a letter"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A password as typed; never logged (its `Debug` is redacted).
pub struct Password(String);

impl Password {
    pub fn new(s: String) -> Password {
        Password(s)
    }

    /// A password strong enough to set: long enough, not the login name.
    fn check_new(&self, user: &Username) -> Result<(), StaffError> {
        if self.0.chars().count() < MIN_PASSWORD_CHARS {
            return Err(StaffError::Invalid(format!(
                "password: at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        if self.0.to_lowercase().contains(user.as_str()) {
            return Err(StaffError::Invalid(
                "password: must not contain the username".into(),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(…)")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.0.zeroize();
    }
}

/// A staff account as the console and `staff list` see it (never the hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    pub id: i64,
    pub username: Username,
    pub display_name: String,
    pub role: Role,
    pub agencies: Vec<String>,
    pub language: Lang,
    pub disabled: bool,
    pub locked_until: Option<UnixMillis>,
    pub created_at: UnixMillis,
}

impl Staff {
    pub fn is_supervisor(&self) -> bool {
        self.role == Role::Supervisor
    }

    /// Whether whole NIKs may leave the console with this staff member (exports): a
    /// supervisor's. Lists in the console show them masked to everyone.
    pub fn may_see_full_nik(&self) -> bool {
        self.is_supervisor()
    }

    /// Whether this staff member belongs to `agency`.
    pub fn in_agency(&self, agency: &str) -> bool {
        self.agencies.iter().any(|a| a == agency)
    }
}

/// A new account for `staff add`.
#[derive(Debug)]
pub struct NewStaff {
    pub username: Username,
    pub display_name: String,
    pub role: Role,
    pub agencies: Vec<String>,
    pub language: Lang,
    pub password: Password,
}

/// What a login attempt came to (the console shows one message for all refusals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    Ok(Box<Staff>),
    /// Wrong name or password (or a disabled account: not said apart).
    Refused,
    /// Too many failures: locked until then.
    Locked {
        until: UnixMillis,
    },
}

/// A logged-in session: the token goes into the cookie, the CSRF token into every form.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub csrf: String,
}

/// A session found by its cookie, with its staff member as the store has them now.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_sha256: String,
    pub csrf: String,
    pub staff: Staff,
}

/// How long sessions live.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub idle: Duration,
    pub max_age: Duration,
}

fn hash_password(p: &Password) -> Result<String, StaffError> {
    secrets::hash_secret(&p.0).map_err(|e| StaffError::Hash(e.to_string()))
}

fn verify_password(p: &Password, phc: &str) -> bool {
    secrets::verify_secret(&p.0, phc)
}

pub use keliling_web::secrets::random_token;
use keliling_web::secrets::{self, dummy_hash, token_sha256};

fn check_agencies(agencies: &[String], known: &[String]) -> Result<(), StaffError> {
    if agencies.is_empty() {
        return Err(StaffError::Invalid(
            "at least one agency (--agency CODE)".into(),
        ));
    }
    for a in agencies {
        if !known.iter().any(|k| k == a) {
            return Err(StaffError::Invalid(format!(
                "agency {a:?} is not in the service catalogue (known: {})",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// The id of `user`'s account.
fn staff_id(db: &Db, user: &Username) -> Result<i64, StaffError> {
    db.query_row(
        "SELECT id FROM staff WHERE username = ?1",
        vals![user.as_str()],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| StaffError::NoSuchUser(user.to_string()))
}

const STAFF_COLUMNS: &str =
    "id, username, display_name, role, language, disabled, locked_until, created_at";

/// A `staff` row as read, before its values are parsed.
type StaffRow = (i64, String, String, String, String, bool, Option<i64>, i64);

fn staff_from_row(r: &crate::db::Row<'_>) -> Result<StaffRow, DbError> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

impl HqStore {
    fn staff_by(db: &Db, clause: &str, key: &dyn ToValue) -> Result<Option<Staff>, StaffError> {
        let row = db
            .query_row(
                &format!("SELECT {STAFF_COLUMNS} FROM staff WHERE {clause}"),
                vals![key],
                staff_from_row,
            )
            .optional()?;
        let Some((id, username, display_name, role, language, disabled, locked, created)) = row
        else {
            return Ok(None);
        };
        let corrupt = |e: StaffError| HqStoreError::Corrupt(format!("staff {id}: {e}"));
        let agencies: Vec<String> = db.query_map(
            "SELECT agency FROM staff_agencies WHERE staff_id = ?1 ORDER BY agency",
            vals![id],
            |r| r.get(0),
        )?;
        Ok(Some(Staff {
            id,
            username: Username::parse(&username).map_err(corrupt)?,
            display_name,
            role: Role::parse(&role).map_err(corrupt)?,
            agencies,
            language: Lang::parse(&language)
                .map_err(|e| corrupt(StaffError::Invalid(e.to_string())))?,
            disabled,
            locked_until: locked.map(UnixMillis),
            created_at: UnixMillis(created),
        }))
    }

    /// Adds an account (`hq-sync staff add`); `known_agencies` are the catalogue's.
    pub fn add_staff(
        &mut self,
        new: &NewStaff,
        known_agencies: &[String],
        now: UnixMillis,
    ) -> Result<Staff, StaffError> {
        new.password.check_new(&new.username)?;
        check_agencies(&new.agencies, known_agencies)?;
        let name = new.display_name.trim();
        if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
            return Err(StaffError::Invalid(
                "display name: 1-80 characters, no control characters".into(),
            ));
        }
        let hash = hash_password(&new.password)?;
        let tx = self.db.transaction()?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM staff WHERE username = ?1)",
            vals![new.username.as_str()],
            |r| r.get(0),
        )?;
        if exists {
            return Err(StaffError::Exists(new.username.to_string()));
        }
        // On PostgreSQL two adding the same name at once both pass the check above; the
        // UNIQUE username refuses the second here, and it is told the same.
        let id: i64 = tx
            .query_row(
                "INSERT INTO staff (username, display_name, password_hash, role, language, created_at, password_changed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) RETURNING id",
                vals![
                    new.username.as_str(),
                    name,
                    hash,
                    new.role.as_str(),
                    new.language.as_str(),
                    now.0
                ],
                |r| r.get(0),
            )
            .map_err(|e| {
                if e.is_unique_violation() {
                    StaffError::Exists(new.username.to_string())
                } else {
                    e.into()
                }
            })?;
        for a in &new.agencies {
            tx.execute(
                "INSERT INTO staff_agencies (staff_id, agency) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                vals![id, a],
            )?;
        }
        crate::audit::append(
            &tx,
            now,
            &format!("cli:{}", new.username),
            &crate::audit::Entry::staff("staff_added", &new.username, new.role.as_str()),
        )?;
        tx.commit()?;
        HqStore::staff_by(&self.db, "id = ?1", &id)?
            .ok_or(StaffError::NoSuchUser(new.username.to_string()))
    }

    /// Sets a new password; ends the account's sessions and lifts a lockout.
    pub fn set_password(
        &mut self,
        user: &Username,
        password: &Password,
        now: UnixMillis,
    ) -> Result<(), StaffError> {
        password.check_new(user)?;
        let hash = hash_password(password)?;
        let tx = self.db.transaction()?;
        let id = staff_id(&tx, user)?;
        tx.execute(
            "UPDATE staff SET password_hash = ?1, password_changed_at = ?2, failed_logins = 0, locked_until = NULL WHERE id = ?3",
            vals![hash, now.0, id],
        )?;
        tx.execute("DELETE FROM sessions WHERE staff_id = ?1", vals![id])?;
        crate::audit::append(
            &tx,
            now,
            &format!("cli:{user}"),
            &crate::audit::Entry::staff("password_changed", user, ""),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Disables (or enables again) an account; disabling ends its sessions at once.
    pub fn set_staff_disabled(
        &mut self,
        user: &Username,
        disabled: bool,
        now: UnixMillis,
    ) -> Result<(), StaffError> {
        let tx = self.db.transaction()?;
        let id = staff_id(&tx, user)?;
        tx.execute(
            "UPDATE staff SET disabled = ?1, failed_logins = 0, locked_until = NULL WHERE id = ?2",
            vals![disabled, id],
        )?;
        if disabled {
            tx.execute("DELETE FROM sessions WHERE staff_id = ?1", vals![id])?;
        }
        let action = if disabled {
            "staff_disabled"
        } else {
            "staff_enabled"
        };
        crate::audit::append(
            &tx,
            now,
            &format!("cli:{user}"),
            &crate::audit::Entry::staff(action, user, ""),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every account, by username.
    pub fn list_staff(&self) -> Result<Vec<Staff>, StaffError> {
        let ids: Vec<i64> =
            self.db
                .query_map("SELECT id FROM staff ORDER BY username", vals![], |r| {
                    r.get(0)
                })?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(s) = HqStore::staff_by(&self.db, "id = ?1", &id)? {
                out.push(s);
            }
        }
        Ok(out)
    }

    pub fn staff(&self, user: &Username) -> Result<Option<Staff>, StaffError> {
        HqStore::staff_by(&self.db, "username = ?1", &user.as_str())
    }

    /// Checks a login. Counts failures, locks after [`MAX_FAILED_LOGINS`], and writes the
    /// attempt to the audit log either way. `client` says where it came from.
    pub fn check_login(
        &mut self,
        username: &str,
        password: &Password,
        client: &str,
        now: UnixMillis,
    ) -> Result<LoginOutcome, StaffError> {
        let user = Username::parse(username).ok();
        let row: Option<(i64, String, bool, Option<i64>)> = match &user {
            Some(u) => self
                .db
                .query_row(
                    "SELECT id, password_hash, disabled, locked_until FROM staff WHERE username = ?1",
                    vals![u.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?,
            None => None,
        };
        let shown = user
            .as_ref()
            .map_or_else(|| "(invalid name)".to_owned(), ToString::to_string);
        let Some((id, hash, disabled, locked_until)) = row else {
            // Costs what a real check costs.
            let _ = verify_password(password, dummy_hash());
            self.audit_login("login_refused", &shown, client, now)?;
            return Ok(LoginOutcome::Refused);
        };
        if let Some(until) = locked_until.filter(|u| *u > now.0) {
            self.audit_login("login_locked", &shown, client, now)?;
            return Ok(LoginOutcome::Locked {
                until: UnixMillis(until),
            });
        }
        let good = verify_password(password, &hash);
        let tx = self.db.transaction()?;
        if good && !disabled {
            tx.execute(
                "UPDATE staff SET failed_logins = 0, locked_until = NULL WHERE id = ?1",
                vals![id],
            )?;
            crate::audit::append(
                &tx,
                now,
                &shown,
                &crate::audit::Entry::login("login", client),
            )?;
            tx.commit()?;
            let staff = HqStore::staff_by(&self.db, "id = ?1", &id)?
                .ok_or_else(|| StaffError::NoSuchUser(shown.clone()))?;
            return Ok(LoginOutcome::Ok(Box::new(staff)));
        }
        let failures: u32 = tx.query_row(
            "UPDATE staff SET failed_logins = failed_logins + 1 WHERE id = ?1 RETURNING failed_logins",
            vals![id],
            |r| r.get(0),
        )?;
        let outcome = if failures >= MAX_FAILED_LOGINS {
            let until = UnixMillis(now.0.saturating_add(LOCKOUT.as_millis() as i64));
            tx.execute(
                "UPDATE staff SET failed_logins = 0, locked_until = ?1 WHERE id = ?2",
                vals![until.0, id],
            )?;
            crate::audit::append(
                &tx,
                now,
                &shown,
                &crate::audit::Entry::login("account_locked", client),
            )?;
            LoginOutcome::Locked { until }
        } else {
            crate::audit::append(
                &tx,
                now,
                &shown,
                &crate::audit::Entry::login("login_refused", client),
            )?;
            LoginOutcome::Refused
        };
        tx.commit()?;
        Ok(outcome)
    }

    fn audit_login(
        &mut self,
        action: &str,
        who: &str,
        client: &str,
        now: UnixMillis,
    ) -> Result<(), StaffError> {
        let tx = self.db.transaction()?;
        crate::audit::append(&tx, now, who, &crate::audit::Entry::login(action, client))?;
        tx.commit()?;
        Ok(())
    }

    /// Starts a session for a staff member who just logged in.
    pub fn create_session(
        &mut self,
        staff: &Staff,
        client: &str,
        now: UnixMillis,
    ) -> Result<NewSession, StaffError> {
        let token = random_token();
        let csrf = random_token();
        self.db.execute(
            "INSERT INTO sessions (token_sha256, staff_id, csrf, created_at, last_seen, client)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            vals![token_sha256(&token), staff.id, csrf, now.0, client],
        )?;
        Ok(NewSession { token, csrf })
    }

    /// The live session of a cookie's token, touched (its idle clock restarts); `None`
    /// when there is none, it expired (it is removed then), or its account is disabled.
    pub fn session(
        &mut self,
        token: &str,
        limits: SessionLimits,
        now: UnixMillis,
    ) -> Result<Option<Session>, StaffError> {
        let key = token_sha256(token);
        let row: Option<(i64, String, i64, i64)> = self
            .db
            .query_row(
                "SELECT staff_id, csrf, created_at, last_seen FROM sessions WHERE token_sha256 = ?1",
                vals![key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((staff_id, csrf, created, last_seen)) = row else {
            return Ok(None);
        };
        let idle = now.0.saturating_sub(last_seen) > limits.idle.as_millis() as i64;
        let old = now.0.saturating_sub(created) > limits.max_age.as_millis() as i64;
        let staff = HqStore::staff_by(&self.db, "id = ?1", &staff_id)?;
        match staff {
            Some(staff) if !idle && !old && !staff.disabled => {
                // Touch at most every few seconds: a page with photos is several requests.
                if now.0.saturating_sub(last_seen) > 5_000 {
                    self.db.execute(
                        "UPDATE sessions SET last_seen = ?1 WHERE token_sha256 = ?2",
                        vals![now.0, key],
                    )?;
                }
                Ok(Some(Session {
                    token_sha256: key,
                    csrf,
                    staff,
                }))
            }
            _ => {
                self.db
                    .execute("DELETE FROM sessions WHERE token_sha256 = ?1", vals![key])?;
                Ok(None)
            }
        }
    }

    /// Ends a session (logout).
    pub fn end_session(&mut self, s: &Session, now: UnixMillis) -> Result<(), StaffError> {
        let tx = self.db.transaction()?;
        tx.execute(
            "DELETE FROM sessions WHERE token_sha256 = ?1",
            vals![s.token_sha256],
        )?;
        crate::audit::append(
            &tx,
            now,
            s.staff.username.as_str(),
            &crate::audit::Entry::login("logout", ""),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Sets the console language of a staff member (their choice, kept across sessions).
    pub fn set_staff_language(&mut self, staff_id: i64, lang: Lang) -> Result<(), StaffError> {
        self.db.execute(
            "UPDATE staff SET language = ?1 WHERE id = ?2",
            vals![lang.as_str(), staff_id],
        )?;
        Ok(())
    }

    /// Removes expired sessions (the console does it now and then).
    pub fn sweep_sessions(
        &mut self,
        limits: SessionLimits,
        now: UnixMillis,
    ) -> Result<usize, StaffError> {
        Ok(self.db.execute(
            "DELETE FROM sessions WHERE last_seen < ?1 OR created_at < ?2",
            vals![
                now.0.saturating_sub(limits.idle.as_millis() as i64),
                now.0.saturating_sub(limits.max_age.as_millis() as i64)
            ],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(user: &str, role: Role) -> NewStaff {
        NewStaff {
            username: Username::parse(user).unwrap(),
            display_name: "Siti Rahma".into(),
            role,
            agencies: vec!["DUKCAPIL".into()],
            language: Lang::Id,
            password: Password::new("kata-sandi-panjang".into()),
        }
    }

    const AGENCIES: &[&str] = &["DUKCAPIL", "POLRI"];

    fn agencies() -> Vec<String> {
        AGENCIES.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn accounts_logins_lockout_and_sessions() {
        for store in crate::testing::each_backend("accounts_logins_lockout_and_sessions") {
            accounts_logins_lockout_and_sessions_on(store.open());
        }
    }

    fn accounts_logins_lockout_and_sessions_on(mut s: HqStore) {
        let now = UnixMillis(1_800_000_000_000);
        let staff = s
            .add_staff(&new("siti", Role::Reviewer), &agencies(), now)
            .unwrap();
        assert_eq!(staff.agencies, vec!["DUKCAPIL".to_string()]);
        assert!(matches!(
            s.add_staff(&new("siti", Role::Reviewer), &agencies(), now),
            Err(StaffError::Exists(_))
        ));
        let mut bad = new("budi", Role::Reviewer);
        bad.agencies = vec!["NOPE".into()];
        assert!(s.add_staff(&bad, &agencies(), now).is_err());
        let mut short = new("budi", Role::Reviewer);
        short.password = Password::new("pendek".into());
        assert!(s.add_staff(&short, &agencies(), now).is_err());

        let good = Password::new("kata-sandi-panjang".into());
        let wrong = Password::new("salah-sandi-panjang".into());
        assert!(matches!(
            s.check_login("siti", &good, "t", now).unwrap(),
            LoginOutcome::Ok(_)
        ));
        assert_eq!(
            s.check_login("nobody", &good, "t", now).unwrap(),
            LoginOutcome::Refused
        );
        for _ in 1..MAX_FAILED_LOGINS {
            assert_eq!(
                s.check_login("siti", &wrong, "t", now).unwrap(),
                LoginOutcome::Refused
            );
        }
        assert!(matches!(
            s.check_login("siti", &wrong, "t", now).unwrap(),
            LoginOutcome::Locked { .. }
        ));
        // Locked: even the right password is refused until the lockout ends.
        assert!(matches!(
            s.check_login("siti", &good, "t", now).unwrap(),
            LoginOutcome::Locked { .. }
        ));
        let later = UnixMillis(now.0 + LOCKOUT.as_millis() as i64 + 1);
        let LoginOutcome::Ok(staff) = s.check_login("siti", &good, "t", later).unwrap() else {
            panic!("the lockout ends");
        };

        let limits = SessionLimits {
            idle: Duration::from_secs(60),
            max_age: Duration::from_secs(3600),
        };
        let sess = s.create_session(&staff, "t", later).unwrap();
        let found = s.session(&sess.token, limits, later).unwrap().unwrap();
        assert_eq!(found.csrf, sess.csrf);
        assert!(s.session("not-a-token", limits, later).unwrap().is_none());
        // Idle too long: gone.
        let idle = UnixMillis(later.0 + 61_000);
        assert!(s.session(&sess.token, limits, idle).unwrap().is_none());
        // Disabling ends sessions at once; a new password too.
        let sess = s.create_session(&staff, "t", later).unwrap();
        s.set_staff_disabled(&staff.username, true, later).unwrap();
        assert!(s.session(&sess.token, limits, later).unwrap().is_none());
        assert_eq!(
            s.check_login("siti", &good, "t", later).unwrap(),
            LoginOutcome::Refused
        );
        s.set_staff_disabled(&staff.username, false, later).unwrap();
        let sess = s.create_session(&staff, "t", later).unwrap();
        s.set_password(
            &staff.username,
            &Password::new("sandi-baru-yang-panjang".into()),
            later,
        )
        .unwrap();
        assert!(s.session(&sess.token, limits, later).unwrap().is_none());
        assert!(matches!(
            s.check_login(
                "siti",
                &Password::new("sandi-baru-yang-panjang".into()),
                "t",
                later
            )
            .unwrap(),
            LoginOutcome::Ok(_)
        ));
        // The store never holds the token itself.
        let n: i64 =
            s.db.query_row(
                "SELECT COUNT(*) FROM sessions WHERE token_sha256 = ?1",
                vals![sess.token],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0);
    }
}
