//! HQ's decision on an application, as it travels to the bus (signed, inside a
//! [`crate::wire::Down::Decision`]) and as the bus keeps it.
//!
//! Invariants: versions count up from 1 per application; a newer version supersedes an
//! older one on the bus whatever order they arrive in (the bus keeps the highest), and the
//! same version twice changes nothing. Every text is a bounded [`Text`], re-parsed on
//! decode like every domain type.

use crate::application::FieldName;
use crate::ids::ApplicationId;
use crate::text::Text;
use crate::time::UnixMillis;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A reason code from the service catalogue (`PHOTO_UNUSABLE`): A-Z, 0-9, `_`, 1-32.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReasonCode(String);

impl ReasonCode {
    pub fn parse(s: &str) -> Result<ReasonCode, String> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(ReasonCode(s.to_owned()))
        } else {
            Err(format!("reason code {s:?}: 1-32 of A-Z, 0-9, _"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ReasonCode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ReasonCode::parse(&s)
    }
}

impl From<ReasonCode> for String {
    fn from(c: ReasonCode) -> String {
        c.0
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// What the citizen must bring or redo when HQ asks for more information.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Need {
    NewPhoto,
    /// A document of the service (`old_kk`), by its name in the catalogue.
    Document(FieldName),
}

/// The decision itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Approved {
        note: Option<Text>,
    },
    Rejected {
        code: ReasonCode,
        /// The reason as the citizen is told it (the catalogue's label).
        reason: Text,
        note: Option<Text>,
    },
    InfoRequested {
        /// For the citizen: what to do.
        message: Text,
        needs: Vec<Need>,
    },
}

impl Outcome {
    /// `approved`, `rejected` or `info_requested`: how stores and screens name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Approved { .. } => "approved",
            Outcome::Rejected { .. } => "rejected",
            Outcome::InfoRequested { .. } => "info_requested",
        }
    }
}

/// Version `version` of HQ's decision on `application`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub application: ApplicationId,
    pub version: u32,
    pub decided_at: UnixMillis,
    pub outcome: Outcome,
}

/// The most needs one request may list.
pub const MAX_NEEDS: usize = 16;

impl Decision {
    /// What the types alone do not bound.
    pub fn check(&self) -> Result<(), String> {
        if self.version == 0 {
            return Err("decision version 0: versions start at 1".into());
        }
        if let Outcome::InfoRequested { needs, .. } = &self.outcome {
            if needs.len() > MAX_NEEDS {
                return Err(format!("{} needs, at most {MAX_NEEDS}", needs.len()));
            }
        }
        Ok(())
    }
}
