//! Secrets people type (staff passwords, operators' PINs) and the tokens that stand for a
//! session: only hashes are stored.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;

#[derive(Debug, thiserror::Error)]
#[error("cannot hash the secret: {0}")]
pub struct HashError(String);

/// An argon2id PHC string (version 0x13, OWASP's parameters: 19 MiB, 2 passes, 1 lane)
/// with a fresh salt.
pub fn hash_secret(secret: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `secret` matches the PHC string `phc` (a malformed one matches nothing).
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(secret.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash an unknown account is checked against, so that refusing it costs as much
/// time as refusing a known one.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_secret("not-a-real-account-secret").unwrap_or_default())
}

/// A random token, hex: 32 bytes.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// What a store keeps of a token: its SHA-256, hex (a stolen database opens no session).
pub fn token_sha256(token: &str) -> String {
    keliling_shared::Sha256::digest(token.as_bytes()).to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_secret() {
        let h = hash_secret("246810").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"));
        assert!(verify_secret("246810", &h));
        assert!(!verify_secret("246811", &h));
        assert!(!verify_secret("246810", "not a hash"));
        assert_ne!(h, hash_secret("246810").unwrap(), "salted");
        assert_eq!(random_token().len(), 64);
    }
}
