//! HQ's signature on everything it tells a bus.
//!
//! Why: a broker (its ACL, its cluster, a stolen certificate that can publish on a bus's
//! `down/` topic) is never what makes a down message true. Every message that changes
//! state on a bus is signed by HQ's Ed25519 signing key, and each bus pins the verifying
//! keys from its bundle (`hq-sync pki provision-bus`): the current key and the next one,
//! so HQ can rotate without re-provisioning the fleet at once (SECURITY.md, "Signed down
//! messages").
//!
//! Layout of a signed down payload: the usual envelope header (`b"KL"`, version), then in
//! postcard a [`Signed`]: the id of the key that signed, the body (a postcard
//! [`DownEnvelope`](crate::wire::DownEnvelope) without header) and the signature over
//! [`DOMAIN`] followed by the body. The domain string keeps these signatures from ever
//! being valid for anything else HQ might sign later.
//!
//! Fleet-wide messages (`{prefix}/fleet/...`, e.g. the service catalogue) are addressed
//! to no bus, so they are signed under their own domain ([`Purpose::Fleet`]): a body
//! signed for one purpose never verifies as the other.
//!
//! Invariants: a [`VerifyingKeys`] holds one or two valid keys with distinct ids; only a
//! body whose signature checks against one of them is ever decoded.

use crate::ids::Sha256;
use ed25519_dalek::Signer;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What the signature covers besides the body: a fixed, versioned purpose.
pub const DOMAIN: &[u8] = b"keliling/v1 down\0";
/// The domain of fleet-wide messages (to every bus at once).
pub const FLEET_DOMAIN: &[u8] = b"keliling/v1 fleet\0";

/// What a signature is for; each has its own domain string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A message to one bus (its `down/` topic).
    Down,
    /// A message to every bus (the `fleet/` topics).
    Fleet,
}

impl Purpose {
    fn domain(self) -> &'static [u8] {
        match self {
            Purpose::Down => DOMAIN,
            Purpose::Fleet => FLEET_DOMAIN,
        }
    }
}

/// A key's id: the first 8 bytes of SHA-256 of its public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("kunci HQ tidak sah (invalid HQ key): {0}")]
    BadKey(String),
    #[error("pesan ditandatangani kunci yang tidak dikenal bus ini (signed by key {0}, which this bus does not trust)")]
    UnknownKey(KeyId),
    #[error("tanda tangan HQ tidak cocok (HQ's signature does not verify)")]
    BadSignature,
}

/// The signed form of a down message.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    pub key_id: KeyId,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl fmt::Debug for Signed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signed(key {}, {} bytes)", self.key_id, self.body.len())
    }
}

fn message(purpose: Purpose, body: &[u8]) -> Vec<u8> {
    let domain = purpose.domain();
    let mut m = Vec::with_capacity(domain.len() + body.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(body);
    m
}

fn key_id(public: &ed25519_dalek::VerifyingKey) -> KeyId {
    let d = Sha256::digest(public.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&d.as_bytes()[..8]);
    KeyId(id)
}

/// HQ's signing key. Only `hq-sync` ingest holds one; `Debug` never shows it.
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    id: KeyId,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, secret redacted)", self.id)
    }
}

impl SigningKey {
    pub fn generate() -> SigningKey {
        let seed: [u8; 32] = rand::random();
        SigningKey::from_seed(seed)
    }

    fn from_seed(seed: [u8; 32]) -> SigningKey {
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let id = key_id(&key.verifying_key());
        SigningKey { key, id }
    }

    /// Reads the text form written by [`SigningKey::to_text`]: the seed in hex.
    pub fn parse(text: &str) -> Result<SigningKey, SignError> {
        let bytes = hex::decode(text.trim()).map_err(|e| SignError::BadKey(e.to_string()))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SignError::BadKey("a signing key is 32 bytes".into()))?;
        Ok(SigningKey::from_seed(seed))
    }

    /// The secret seed in hex, for a 0600 file.
    pub fn to_text(&self) -> String {
        hex::encode(self.key.to_bytes())
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            key: self.key.verifying_key(),
            id: self.id,
        }
    }

    /// Signs `body` (a postcard down envelope).
    pub fn sign(&self, body: Vec<u8>) -> Signed {
        self.sign_for(Purpose::Down, body)
    }

    /// Signs `body` for `purpose`.
    pub fn sign_for(&self, purpose: Purpose, body: Vec<u8>) -> Signed {
        let signature = self.key.sign(&message(purpose, &body)).to_bytes().to_vec();
        Signed {
            key_id: self.id,
            body,
            signature,
        }
    }
}

/// One of HQ's public keys.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey {
    key: ed25519_dalek::VerifyingKey,
    id: KeyId,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.id)
    }
}

impl VerifyingKey {
    pub fn parse_hex(text: &str) -> Result<VerifyingKey, SignError> {
        let bytes = hex::decode(text.trim()).map_err(|e| SignError::BadKey(e.to_string()))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SignError::BadKey("a verifying key is 32 bytes".into()))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|e| SignError::BadKey(e.to_string()))?;
        if key.is_weak() {
            return Err(SignError::BadKey("a weak (small-order) key".into()));
        }
        Ok(VerifyingKey {
            id: key_id(&key),
            key,
        })
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.key.as_bytes())
    }
    pub fn id(&self) -> KeyId {
        self.id
    }
}

/// The keys a bus trusts: HQ's current key and, during a rotation, the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKeys(Vec<VerifyingKey>);

impl VerifyingKeys {
    /// One or two keys with distinct ids.
    pub fn new(keys: Vec<VerifyingKey>) -> Result<VerifyingKeys, SignError> {
        if keys.is_empty() || keys.len() > 2 {
            return Err(SignError::BadKey(format!(
                "a bus pins one or two HQ keys, not {}",
                keys.len()
            )));
        }
        if keys.len() == 2 && keys[0].id == keys[1].id {
            return Err(SignError::BadKey("the same key twice".into()));
        }
        Ok(VerifyingKeys(keys))
    }

    /// The text form of a bundle's `hq-keys.pub`: one hex key per line, `#` comments.
    pub fn parse(text: &str) -> Result<VerifyingKeys, SignError> {
        let keys = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(VerifyingKey::parse_hex)
            .collect::<Result<Vec<_>, _>>()?;
        VerifyingKeys::new(keys)
    }

    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "# HQ's Ed25519 verifying keys (current, then next): a bus believes only down\n\
             # messages signed by one of these. Made by `hq-sync pki`; do not edit.\n",
        );
        for k in &self.0 {
            out.push_str(&k.to_hex());
            out.push('\n');
        }
        out
    }

    pub fn keys(&self) -> &[VerifyingKey] {
        &self.0
    }

    /// The body of `signed` if one of these keys signed it (as a down message).
    pub fn verify<'a>(&self, signed: &'a Signed) -> Result<&'a [u8], SignError> {
        self.verify_for(Purpose::Down, signed)
    }

    /// The body of `signed` if one of these keys signed it for `purpose`.
    pub fn verify_for<'a>(
        &self,
        purpose: Purpose,
        signed: &'a Signed,
    ) -> Result<&'a [u8], SignError> {
        let key = self
            .0
            .iter()
            .find(|k| k.id == signed.key_id)
            .ok_or(SignError::UnknownKey(signed.key_id))?;
        let sig = ed25519_dalek::Signature::from_slice(&signed.signature)
            .map_err(|_| SignError::BadSignature)?;
        // `verify_strict`: no malleable or small-order tricks.
        key.key
            .verify_strict(&message(purpose, &signed.body), &sig)
            .map_err(|_| SignError::BadSignature)?;
        Ok(&signed.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_with_either_pinned_key() {
        let current = SigningKey::generate();
        let next = SigningKey::generate();
        let keys = VerifyingKeys::new(vec![current.verifying_key(), next.verifying_key()]).unwrap();
        for k in [&current, &next] {
            let s = k.sign(b"hello".to_vec());
            assert_eq!(keys.verify(&s).unwrap(), b"hello");
        }
        let text = keys.to_text();
        assert_eq!(VerifyingKeys::parse(&text).unwrap(), keys);
        let again = SigningKey::parse(&current.to_text()).unwrap();
        assert_eq!(again.id(), current.id());
        assert!(!format!("{current:?}").contains(&current.to_text()));
    }

    #[test]
    fn forgeries_are_refused() {
        let hq = SigningKey::generate();
        let other = SigningKey::generate();
        let keys = VerifyingKeys::new(vec![hq.verifying_key()]).unwrap();
        // Another key, even claiming HQ's key id.
        let mut s = other.sign(b"delivered".to_vec());
        assert_eq!(keys.verify(&s), Err(SignError::UnknownKey(other.id())));
        s.key_id = hq.id();
        assert_eq!(keys.verify(&s), Err(SignError::BadSignature));
        // HQ's signature over another body.
        let mut s = hq.sign(b"progress".to_vec());
        s.body = b"delivered".to_vec();
        assert_eq!(keys.verify(&s), Err(SignError::BadSignature));
        // A truncated signature.
        let mut s = hq.sign(b"x".to_vec());
        s.signature.pop();
        assert_eq!(keys.verify(&s), Err(SignError::BadSignature));
        assert!(VerifyingKeys::new(vec![]).is_err());
        assert!(VerifyingKeys::new(vec![hq.verifying_key(), hq.verifying_key()]).is_err());
        assert!(VerifyingKeys::parse("zz").is_err());
    }

    #[test]
    fn a_signature_holds_only_for_its_purpose() {
        let hq = SigningKey::generate();
        let keys = VerifyingKeys::new(vec![hq.verifying_key()]).unwrap();
        let down = hq.sign(b"body".to_vec());
        let fleet = hq.sign_for(Purpose::Fleet, b"body".to_vec());
        assert_eq!(keys.verify_for(Purpose::Down, &down).unwrap(), b"body");
        assert_eq!(keys.verify_for(Purpose::Fleet, &fleet).unwrap(), b"body");
        assert_eq!(
            keys.verify_for(Purpose::Fleet, &down),
            Err(SignError::BadSignature)
        );
        assert_eq!(keys.verify(&fleet), Err(SignError::BadSignature));
    }
}
