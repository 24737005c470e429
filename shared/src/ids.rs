//! Identifiers: parsed once, valid forever after.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("ID bus tidak sah {0:?}: 3-32 huruf kecil, angka atau '-', diawali huruf (bus id must be 3-32 of a-z, 0-9, '-', starting with a letter)")]
    BusId(String),
    #[error("ID bus {0:?} dicadangkan untuk HQ: `hq` dan `hq-*` bukan ID bus (bus id is reserved for HQ: `hq` and `hq-*` are never bus ids)")]
    ReservedBusId(String),
    #[error("kode layanan tidak sah {0:?}: 2-16 huruf besar, angka atau '_' (service code must be 2-16 of A-Z, 0-9, '_')")]
    ServiceCode(String),
    #[error(
        "hash SHA-256 tidak sah: harus 64 digit heksadesimal (a SHA-256 must be 64 hex digits)"
    )]
    Sha256,
    #[error("nomor pelacakan tidak sah {0:?} (application id must be a UUIDv7)")]
    ApplicationId(String),
}

/// A bus's identity. It appears in MQTT topics and as the common name of the bus's TLS
/// certificate, so it may hold nothing that means something in a topic (`/`, `+`, `#`).
/// `hq` and `hq-*` are HQ's certificate names (and its broker user names and client ids),
/// so no bus can ever be given one: [`BusId::parse`] refuses them.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BusId(String);

impl BusId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = (3..=32).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(IdError::BusId(s.chars().take(40).collect()));
        }
        if is_reserved_for_hq(s) {
            return Err(IdError::ReservedBusId(s.to_owned()));
        }
        Ok(BusId(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `name` is one of HQ's names (`hq`, `hq-1`, `hq-anything`), which no bus may have.
pub fn is_reserved_for_hq(name: &str) -> bool {
    name == "hq" || name.starts_with("hq-")
}

/// A service in the catalogue, e.g. `KIA` or `SIM_RENEWAL`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceCode(String);

impl ServiceCode {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = (2..=16).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(ServiceCode(s.to_owned()))
        } else {
            Err(IdError::ServiceCode(s.chars().take(40).collect()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A SHA-256 digest: the key of every photo and document, on the bus and at HQ.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "[u8; 32]", into = "[u8; 32]")]
pub struct Sha256([u8; 32]);

impl Sha256 {
    pub fn digest(bytes: &[u8]) -> Self {
        use sha2::Digest;
        Sha256(sha2::Sha256::digest(bytes).into())
    }
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Sha256(bytes)
    }
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
        <[u8; 32]>::try_from(bytes)
            .map(Sha256)
            .map_err(|_| IdError::Sha256)
    }
    pub fn parse_hex(s: &str) -> Result<Self, IdError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| IdError::Sha256)?;
        Ok(Sha256(out))
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// The first 12 hex digits: enough for a human to tell photos apart in a log.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

/// An incremental SHA-256, for hashing a blob that arrives in chunks.
pub struct Sha256Hasher(sha2::Sha256);

impl Default for Sha256Hasher {
    fn default() -> Self {
        use sha2::Digest;
        Sha256Hasher(sha2::Sha256::new())
    }
}

impl Sha256Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        self.0.update(bytes)
    }
    pub fn finish(self) -> Sha256 {
        use sha2::Digest;
        Sha256(self.0.finalize().into())
    }
}

/// The id of one application: a UUIDv7 made on the bus at capture. It is the tracking
/// number on the citizen's receipt and the idempotency key of HQ ingest. UUIDv7 sorts by
/// time, so it also orders the outbox.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "[u8; 16]", into = "[u8; 16]")]
pub struct ApplicationId(uuid::Uuid);

impl ApplicationId {
    pub fn new_v7() -> Self {
        ApplicationId(uuid::Uuid::now_v7())
    }
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let u = uuid::Uuid::parse_str(s.trim())
            .map_err(|_| IdError::ApplicationId(s.chars().take(40).collect()))?;
        Self::from_uuid(u).ok_or_else(|| IdError::ApplicationId(s.chars().take(40).collect()))
    }
    fn from_uuid(u: uuid::Uuid) -> Option<Self> {
        (u.get_version_num() == 7).then_some(ApplicationId(u))
    }
    pub fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

macro_rules! string_newtype_impls {
    ($t:ty) => {
        impl TryFrom<String> for $t {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                <$t>::parse(&s).map_err(crate::de_error::note)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl FromStr for $t {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                <$t>::parse(s)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
    };
}
string_newtype_impls!(BusId);
string_newtype_impls!(ServiceCode);

impl From<[u8; 32]> for Sha256 {
    fn from(b: [u8; 32]) -> Self {
        Sha256(b)
    }
}
impl From<Sha256> for [u8; 32] {
    fn from(s: Sha256) -> Self {
        s.0
    }
}
impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.short())
    }
}
impl FromStr for Sha256 {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Sha256::parse_hex(s)
    }
}

impl TryFrom<[u8; 16]> for ApplicationId {
    type Error = IdError;
    fn try_from(b: [u8; 16]) -> Result<Self, IdError> {
        let u = uuid::Uuid::from_bytes(b);
        ApplicationId::from_uuid(u)
            .ok_or_else(|| IdError::ApplicationId(u.to_string()))
            .map_err(crate::de_error::note)
    }
}
impl From<ApplicationId> for [u8; 16] {
    fn from(a: ApplicationId) -> Self {
        *a.0.as_bytes()
    }
}
impl fmt::Display for ApplicationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
impl fmt::Debug for ApplicationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
impl FromStr for ApplicationId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        ApplicationId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_id_rules() {
        assert!(BusId::parse("bus-ntt-01").is_ok());
        for bad in [
            "",
            "ab",
            "Bus-1",
            "1bus",
            "bus/1",
            "bus+1",
            "bus#",
            &"b".repeat(33),
        ] {
            assert!(BusId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hq_names_are_never_bus_ids() {
        // `hq` is also too short; every longer HQ name is refused as reserved.
        assert!(BusId::parse("hq").is_err());
        for reserved in ["hq-1", "hq-2", "hq-ingest", "hq-"] {
            assert!(
                matches!(BusId::parse(reserved), Err(IdError::ReservedBusId(_))),
                "{reserved:?} accepted as a bus id"
            );
            // Nor through deserialization (a payload naming HQ as its bus).
            assert!(BusId::try_from(reserved.to_owned()).is_err());
        }
        for fine in ["hqx-1", "bus-hq-1", "hqbus"] {
            assert!(BusId::parse(fine).is_ok(), "{fine:?} refused");
        }
    }

    #[test]
    fn sha_roundtrip() {
        let s = Sha256::digest(b"abc");
        assert_eq!(
            s.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Sha256::parse_hex(&s.to_hex()).unwrap(), s);
        assert!(Sha256::parse_hex("zz").is_err());
    }

    #[test]
    fn application_id_is_v7_only() {
        let id = ApplicationId::new_v7();
        assert_eq!(ApplicationId::parse(&id.to_string()).unwrap(), id);
        assert!(ApplicationId::parse(&uuid::Uuid::nil().to_string()).is_err());
        assert!(ApplicationId::try_from([0u8; 16]).is_err());
    }
}
