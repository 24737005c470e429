//! The bus's operators: a name and a short PIN each (`bus-node operator add|disable|list`),
//! kept in the bus store as argon2id hashes.
//!
//! A PIN is short, so guessing is what it must withstand: after [`MAX_FAILED_PINS`]
//! wrong PINs in a row an operator is locked for [`PIN_LOCKOUT`]; the count lives in the
//! store, so restarting the node does not reset it. Unknown names cost as much as known
//! ones (a dummy hash is checked).

use crate::store::{Store, StoreError};
use keliling_shared::{Text, UnixMillis};
use keliling_web::secrets;
use rusqlite::{params, OptionalExtension};
use std::time::Duration;

/// Wrong PINs in a row that lock an operator.
pub const MAX_FAILED_PINS: i64 = 5;
/// How long a locked operator stays locked the first time; every wrong PIN after a
/// lockout doubles it (up to [`MAX_PIN_LOCKOUT`]) until a right one, so guessing a 4-digit
/// PIN takes months, not days.
pub const PIN_LOCKOUT: Duration = Duration::from_secs(300);
pub const MAX_PIN_LOCKOUT: Duration = Duration::from_secs(24 * 3600);
/// PINs are 4 to 8 digits.
pub const PIN_DIGITS: std::ops::RangeInclusive<usize> = 4..=8;

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("PIN harus {min}-{max} angka (a PIN is {min} to {max} digits)", min = PIN_DIGITS.start(), max = PIN_DIGITS.end())]
    BadPin,
    #[error("PIN terlalu mudah ditebak (the PIN is too easy to guess)")]
    WeakPin,
    #[error("nama petugas: {0} (operator name)")]
    BadName(String),
    #[error("petugas {0} sudah ada (operator already exists)")]
    Exists(String),
    #[error("petugas {0} tidak ada (no such operator)")]
    Unknown(String),
    #[error("{0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for OperatorError {
    fn from(e: rusqlite::Error) -> Self {
        OperatorError::Store(e.into())
    }
}

/// A PIN as typed: digits only, checked on construction. Its `Debug` is redacted.
pub struct Pin(String);

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(…)")
    }
}

impl Pin {
    /// A PIN to sign in with: 4-8 digits.
    pub fn parse(s: &str) -> Result<Pin, OperatorError> {
        let s = s.trim();
        if !PIN_DIGITS.contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OperatorError::BadPin);
        }
        Ok(Pin(s.to_owned()))
    }

    /// A new PIN: also not one digit repeated, nor a run like 1234 or 9876.
    pub fn parse_new(s: &str) -> Result<Pin, OperatorError> {
        let pin = Pin::parse(s)?;
        let b = pin.0.as_bytes();
        let same = b.iter().all(|&d| d == b[0]);
        let up = b.windows(2).all(|w| w[1] == w[0] + 1);
        let down = b.windows(2).all(|w| w[0] == w[1] + 1);
        if same || up || down {
            return Err(OperatorError::WeakPin);
        }
        Ok(pin)
    }
}

/// An operator as the station and `bus-node operator list` show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub id: i64,
    pub name: Text,
    pub disabled: bool,
    pub locked_until: Option<UnixMillis>,
    pub created_at: UnixMillis,
}

/// What a PIN check came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheck {
    Ok(Operator),
    /// Wrong PIN (or unknown or disabled operator: not told apart); `left` tries before
    /// the lockout.
    Wrong {
        left: i64,
    },
    /// Too many wrong PINs: try again after this.
    Locked {
        until: UnixMillis,
    },
}

impl Store {
    /// Adds an operator with `pin`.
    pub fn add_operator(&mut self, name: &str, pin: &Pin) -> Result<Operator, OperatorError> {
        let name = Text::parse(name).map_err(|e| OperatorError::BadName(e.to_string()))?;
        if name.as_str().chars().count() > 40 {
            return Err(OperatorError::BadName(
                "paling panjang 40 (at most 40)".into(),
            ));
        }
        let hash = secrets::hash_secret(&pin.0).map_err(|e| OperatorError::Hash(e.to_string()))?;
        let now = UnixMillis::now();
        let r = self.conn.execute(
            "INSERT INTO operators (name, pin_hash, created_at) VALUES (?1, ?2, ?3)",
            params![name.as_str(), hash, now.0],
        );
        match r {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(OperatorError::Exists(name.as_str().to_owned()))
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Operator {
            id: self.conn.last_insert_rowid(),
            name,
            disabled: false,
            locked_until: None,
            created_at: now,
        })
    }

    /// Disables (or enables again) an operator; enabling lifts a lockout.
    pub fn set_operator_disabled(
        &mut self,
        name: &str,
        disabled: bool,
    ) -> Result<(), OperatorError> {
        let n = self.conn.execute(
            "UPDATE operators SET disabled = ?1, failed_pins = 0, locked_until = NULL WHERE name = ?2",
            params![disabled, name.trim()],
        )?;
        if n == 0 {
            return Err(OperatorError::Unknown(name.trim().to_owned()));
        }
        Ok(())
    }

    /// Sets a new PIN; lifts a lockout.
    pub fn set_operator_pin(&mut self, name: &str, pin: &Pin) -> Result<(), OperatorError> {
        let hash = secrets::hash_secret(&pin.0).map_err(|e| OperatorError::Hash(e.to_string()))?;
        let n = self.conn.execute(
            "UPDATE operators SET pin_hash = ?1, failed_pins = 0, locked_until = NULL WHERE name = ?2",
            params![hash, name.trim()],
        )?;
        if n == 0 {
            return Err(OperatorError::Unknown(name.trim().to_owned()));
        }
        Ok(())
    }

    /// Every operator, by name; `active_only` leaves out disabled ones.
    pub fn operators(&self, active_only: bool) -> Result<Vec<Operator>, OperatorError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, name, disabled, locked_until, created_at FROM operators
             WHERE (?1 = 0 OR disabled = 0) ORDER BY name COLLATE NOCASE",
        )?;
        let rows = stmt.query_map([active_only], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        rows.map(|r| {
            let (id, name, disabled, locked, created) = r?;
            Ok(Operator {
                id,
                name: Text::parse(&name)
                    .map_err(|e| StoreError::Corrupt(format!("operator {id}: {e}")))?,
                disabled,
                locked_until: locked.map(UnixMillis),
                created_at: UnixMillis(created),
            })
        })
        .collect()
    }

    /// The operator with this id, if active.
    pub fn operator(&self, id: i64) -> Result<Option<Operator>, OperatorError> {
        Ok(self.operators(true)?.into_iter().find(|o| o.id == id))
    }

    /// Checks an operator's PIN at `now`: counts failures and locks after
    /// [`MAX_FAILED_PINS`]; a success resets the count.
    pub fn check_pin(
        &mut self,
        operator_id: i64,
        pin: &Pin,
        now: UnixMillis,
    ) -> Result<PinCheck, OperatorError> {
        let row: Option<(String, bool, Option<i64>)> = self
            .conn
            .query_row(
                "SELECT pin_hash, disabled, locked_until FROM operators WHERE id = ?1",
                [operator_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((hash, disabled, locked)) = row else {
            secrets::verify_secret(&pin.0, secrets::dummy_hash());
            return Ok(PinCheck::Wrong {
                left: MAX_FAILED_PINS,
            });
        };
        if let Some(until) = locked.filter(|u| *u > now.0) {
            return Ok(PinCheck::Locked {
                until: UnixMillis(until),
            });
        }
        if !disabled && secrets::verify_secret(&pin.0, &hash) {
            self.conn.execute(
                "UPDATE operators SET failed_pins = 0, locked_until = NULL WHERE id = ?1",
                [operator_id],
            )?;
            return match self.operator(operator_id)? {
                Some(o) => Ok(PinCheck::Ok(o)),
                None => Ok(PinCheck::Wrong { left: 0 }),
            };
        }
        let failed: i64 = self.conn.query_row(
            "UPDATE operators SET failed_pins = failed_pins + 1 WHERE id = ?1 RETURNING failed_pins",
            [operator_id],
            |r| r.get(0),
        )?;
        if failed >= MAX_FAILED_PINS {
            let doublings = (failed - MAX_FAILED_PINS).min(16) as u32;
            let lock = (PIN_LOCKOUT.as_millis() as i64)
                .saturating_mul(1 << doublings)
                .min(MAX_PIN_LOCKOUT.as_millis() as i64);
            let until = now.0 + lock;
            self.conn.execute(
                "UPDATE operators SET locked_until = ?1 WHERE id = ?2",
                params![until, operator_id],
            )?;
            return Ok(PinCheck::Locked {
                until: UnixMillis(until),
            });
        }
        Ok(PinCheck::Wrong {
            left: (MAX_FAILED_PINS - failed).max(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_checked_counted_and_locked() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("bus.sqlite")).unwrap();
        assert!(matches!(Pin::parse("12a4"), Err(OperatorError::BadPin)));
        assert!(matches!(Pin::parse("123"), Err(OperatorError::BadPin)));
        assert!(matches!(
            Pin::parse_new("1111"),
            Err(OperatorError::WeakPin)
        ));
        assert!(matches!(
            Pin::parse_new("3456"),
            Err(OperatorError::WeakPin)
        ));
        assert!(matches!(
            Pin::parse_new("8765"),
            Err(OperatorError::WeakPin)
        ));
        let pin = Pin::parse_new("2580").unwrap();
        let siti = s.add_operator("Siti Rahma", &pin).unwrap();
        assert!(matches!(
            s.add_operator("siti rahma", &pin),
            Err(OperatorError::Exists(_))
        ));
        let now = UnixMillis::now();
        assert!(
            matches!(s.check_pin(siti.id, &pin, now).unwrap(), PinCheck::Ok(o) if o.name.as_str() == "Siti Rahma")
        );
        let wrong = Pin::parse("0000").unwrap();
        for left in (1..MAX_FAILED_PINS).rev() {
            assert_eq!(
                s.check_pin(siti.id, &wrong, now).unwrap(),
                PinCheck::Wrong { left }
            );
        }
        let locked = s.check_pin(siti.id, &wrong, now).unwrap();
        assert!(matches!(locked, PinCheck::Locked { .. }));
        // Locked: even the right PIN is refused until the lockout ends.
        assert!(matches!(
            s.check_pin(siti.id, &pin, now).unwrap(),
            PinCheck::Locked { .. }
        ));
        // After the lockout, a wrong PIN locks again at once, for twice as long.
        let later = UnixMillis(now.0 + PIN_LOCKOUT.as_millis() as i64 + 1);
        match s.check_pin(siti.id, &wrong, later).unwrap() {
            PinCheck::Locked { until } => {
                assert_eq!(until.0 - later.0, 2 * PIN_LOCKOUT.as_millis() as i64)
            }
            other => panic!("locked again: {other:?}"),
        }
        let later = UnixMillis(later.0 + 2 * PIN_LOCKOUT.as_millis() as i64 + 1);
        assert!(matches!(
            s.check_pin(siti.id, &pin, later).unwrap(),
            PinCheck::Ok(_)
        ));
        // The right PIN resets the count: five tries again.
        assert_eq!(
            s.check_pin(siti.id, &wrong, later).unwrap(),
            PinCheck::Wrong {
                left: MAX_FAILED_PINS - 1
            }
        );
        // Disabled: refused like a wrong PIN, and not listed as active.
        s.set_operator_disabled("Siti Rahma", true).unwrap();
        assert!(matches!(
            s.check_pin(siti.id, &pin, later).unwrap(),
            PinCheck::Wrong { .. }
        ));
        assert!(s.operators(true).unwrap().is_empty());
        assert_eq!(s.operators(false).unwrap().len(), 1);
        assert!(matches!(
            s.check_pin(999, &pin, later).unwrap(),
            PinCheck::Wrong { .. }
        ));
    }
}
