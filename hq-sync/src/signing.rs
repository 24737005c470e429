//! HQ's signing keys for down messages, kept in the PKI directory.
//!
//! Layout under `{pki.dir}/signing/` (a 0700 directory):
//! - `current.key`: the Ed25519 seed ingest signs with (hex, mode 0600);
//! - `next.key`: the key that will replace it, already pinned in every bundle made since;
//! - `hq-keys.pub`: both verifying keys, current first: what a bus bundle pins.
//!
//! Rotation (`hq-sync pki rotate-signing`) retires `current.key` (kept as
//! `retired-{id}.key` for the record), promotes `next.key` and makes a new next. Buses
//! provisioned since the previous rotation already trust the promoted key, so they keep
//! working; each bus's bundle is refreshed (`pki provision-bus --renew`) before the
//! rotation after that. SECURITY.md tells the whole procedure.
//!
//! Invariant: a key file is written once, whole, with mode 0600 (a fresh temporary file
//! in the same directory, fsync, rename, directory fsync), and a key file readable by the
//! group or others is refused on load.

use keliling_shared::sign::{SignError, SigningKey, VerifyingKeys};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("signing key {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signing key {path}: {source}")]
    Key { path: PathBuf, source: SignError },
    #[error(
        "signing key {path} is readable by others (mode {mode:o}); make it 0600: chmod 600 {path}"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("signing keys already exist in {0}")]
    Exists(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SigningError + '_ {
    move |source| SigningError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where HQ's signing keys live in a PKI directory.
#[derive(Debug, Clone)]
pub struct SigningDir {
    dir: PathBuf,
}

impl SigningDir {
    pub fn in_pki(pki_dir: &Path) -> SigningDir {
        SigningDir {
            dir: pki_dir.join("signing"),
        }
    }
    pub fn current(&self) -> PathBuf {
        self.dir.join("current.key")
    }
    pub fn next(&self) -> PathBuf {
        self.dir.join("next.key")
    }
    /// The verifying keys a bundle pins.
    pub fn public(&self) -> PathBuf {
        self.dir.join("hq-keys.pub")
    }

    /// Makes the current and the next key (refused if there are keys already).
    pub fn init(&self) -> Result<VerifyingKeys, SigningError> {
        if self.current().exists() || self.next().exists() {
            return Err(SigningError::Exists(self.dir.clone()));
        }
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        restrict_dir(&self.dir)?;
        write_secret(&self.current(), &SigningKey::generate().to_text())?;
        write_secret(&self.next(), &SigningKey::generate().to_text())?;
        self.write_public()
    }

    /// Retires the current key, promotes the next, makes a new next.
    pub fn rotate(&self) -> Result<VerifyingKeys, SigningError> {
        let old = load(&self.current())?;
        let next = load(&self.next())?;
        let retired = self.dir.join(format!("retired-{}.key", old.id()));
        write_secret(&retired, &old.to_text())?;
        write_secret(&self.current(), &next.to_text())?;
        write_secret(&self.next(), &SigningKey::generate().to_text())?;
        self.write_public()
    }

    fn write_public(&self) -> Result<VerifyingKeys, SigningError> {
        let keys = self.verifying_keys_from_secrets()?;
        write_file(&self.public(), keys.to_text().as_bytes(), 0o644)?;
        Ok(keys)
    }

    fn verifying_keys_from_secrets(&self) -> Result<VerifyingKeys, SigningError> {
        let current = load(&self.current())?.verifying_key();
        let next = load(&self.next())?.verifying_key();
        VerifyingKeys::new(vec![current, next]).map_err(|source| SigningError::Key {
            path: self.dir.clone(),
            source,
        })
    }

    /// The text of `hq-keys.pub`, for a bundle.
    pub fn public_text(&self) -> Result<String, SigningError> {
        let path = self.public();
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        VerifyingKeys::parse(&text).map_err(|source| SigningError::Key {
            path: path.clone(),
            source,
        })?;
        Ok(text)
    }
}

/// Loads a signing key, refusing one that others can read.
pub fn load(path: &Path) -> Result<SigningKey, SigningError> {
    if let Some(mode) = crate::files::mode_exceeding(path, 0o077).map_err(io(path))? {
        return Err(SigningError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    SigningKey::parse(&text).map_err(|source| SigningError::Key {
        path: path.to_owned(),
        source,
    })
}

fn write_secret(path: &Path, text: &str) -> Result<(), SigningError> {
    write_file(path, text.as_bytes(), 0o600)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SigningError> {
    crate::files::write_with_mode(path, bytes, mode).map_err(io(path))
}

fn restrict_dir(dir: &Path) -> Result<(), SigningError> {
    crate::files::restrict_dir(dir).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_rotate_and_refuse_exposed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = SigningDir::in_pki(dir.path());
        let first = s.init().unwrap();
        assert!(matches!(s.init(), Err(SigningError::Exists(_))));
        let current = load(&s.current()).unwrap();
        assert_eq!(first.keys()[0], current.verifying_key());
        assert_eq!(
            VerifyingKeys::parse(&s.public_text().unwrap()).unwrap(),
            first
        );

        // After a rotation the old "next" signs, and a bus pinning the old pair still
        // believes it.
        let second = s.rotate().unwrap();
        assert_eq!(second.keys()[0], first.keys()[1]);
        let signed = load(&s.current()).unwrap().sign(b"x".to_vec());
        assert!(first.verify(&signed).is_ok());

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(s.current()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(s.current(), std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                load(&s.current()),
                Err(SigningError::Exposed { .. })
            ));
        }
    }
}
