//! What the bus and HQ must agree on: the domain model, the service catalogue and the
//! wire protocol.
//!
//! Invariants this crate keeps:
//! - Every domain type parses its input once, on construction or on deserialization
//!   (`#[serde(try_from = ...)]`), so code holding a [`Nik`], a [`BusId`] or a [`Sha256`]
//!   never holds an invalid one. That includes values decoded from the wire.
//! - Decoding never panics and never allocates more than the size limit checked first
//!   (see [`wire`]).
//! - Error messages are written for an operator in a village square: Bahasa Indonesia
//!   first, English after it in parentheses.

pub mod application;
pub mod backoff;
pub mod bitmap;
pub mod blocking;
pub mod catalogue;
pub mod config_env;
mod de_error;
pub mod decision;
pub mod ids;
pub mod mqtt;
pub mod nik;
pub mod sign;
pub mod text;
pub mod time;
pub mod tls;
pub mod topics;
pub mod wire;

pub use application::{Applicant, Application, Attachment, AttachmentKind, GeoPoint, Sex, Stop};
pub use bitmap::Bitmap;
pub use catalogue::{Catalogue, CatalogueError, PhotoRules, Service};
pub use ids::{ApplicationId, BusId, IdError, ServiceCode, Sha256};
pub use nik::{Nik, NikError, NikWarning};
pub use text::{Text, TextError};
pub use time::UnixMillis;
