//! What Keliling's two web front ends share: the HQ console (`hq-sync console`) and the
//! bus station (`bus-node run`). Each keeps its own pages, templates and catalogues; the
//! machinery under them is written once, here.
//!
//! - [`i18n`]: Fluent catalogues per language (Bahasa Indonesia first) and [`i18n::Tr`],
//!   the only way a template gets a text.
//! - [`headers`]: security headers on every response, as one layer.
//! - [`cookies`]: cookies, CSRF tokens, the cross-origin check, the client's address.
//! - [`serve`]: plain HTTP or TLS 1.3 serving with graceful shutdown.
//! - [`assets`]: files compiled into the binary (no CDN: buses and HQ may be offline).
//! - [`secrets`]: argon2id hashes of passwords and PINs, random tokens.
//! - [`time`]: times in the fleet's local zone.

pub mod assets;
pub mod cookies;
pub mod headers;
pub mod i18n;
pub mod secrets;
pub mod serve;
pub mod time;

pub use i18n::{Lang, Tr};
