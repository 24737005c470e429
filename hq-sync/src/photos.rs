//! HQ's photo store: verified blobs as content-addressed files.
//!
//! A blob is written to a temp file, fsynced, its SHA-256 checked against its name, then
//! renamed into `{dir}/{aa}/{sha256}` and the directory fsynced. Only after that does the
//! record store reference it. Because the name is the hash, two workers (or a re-sent
//! upload) writing the same blob write the same bytes: the rename is idempotent.

use keliling_shared::ids::Sha256Hasher;
use keliling_shared::Sha256;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PhotoStoreError {
    #[error("photo store I/O at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("blob hash mismatch: expected {expected}, got {actual}")]
    HashMismatch { expected: Sha256, actual: Sha256 },
    #[error("blob size mismatch: expected {expected}, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
}

#[derive(Debug, Clone)]
pub struct PhotoStore {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PhotoStoreError + '_ {
    move |source| PhotoStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl PhotoStore {
    pub fn open(dir: &Path) -> Result<Self, PhotoStoreError> {
        fs::create_dir_all(dir.join("tmp")).map_err(io(dir))?;
        Ok(PhotoStore {
            dir: dir.to_owned(),
        })
    }

    pub fn path_of(&self, sha: &Sha256) -> PathBuf {
        let hex = sha.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    pub fn contains(&self, sha: &Sha256) -> bool {
        self.path_of(sha).is_file()
    }

    /// Writes the pieces in order, verifies size and hash, and makes the file durable.
    pub fn put<'a>(
        &self,
        sha: &Sha256,
        size: u64,
        pieces: impl Iterator<Item = &'a [u8]>,
    ) -> Result<PathBuf, PhotoStoreError> {
        let final_path = self.path_of(sha);
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}.{}", sha.to_hex(), rand::random::<u64>()));
        let result = (|| {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            let mut hasher = Sha256Hasher::default();
            let mut written = 0u64;
            for piece in pieces {
                hasher.update(piece);
                f.write_all(piece).map_err(io(&tmp))?;
                written += piece.len() as u64;
            }
            if written != size {
                return Err(PhotoStoreError::SizeMismatch {
                    expected: size,
                    actual: written,
                });
            }
            let actual = hasher.finish();
            if actual != *sha {
                return Err(PhotoStoreError::HashMismatch {
                    expected: *sha,
                    actual,
                });
            }
            f.sync_all().map_err(io(&tmp))?;
            let parent = final_path.parent().unwrap_or(&self.dir);
            fs::create_dir_all(parent).map_err(io(parent))?;
            fs::rename(&tmp, &final_path).map_err(io(&final_path))?;
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io(parent))?;
            Ok(final_path.clone())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Reads a stored blob and checks it still matches its hash.
    pub fn read_verified(&self, sha: &Sha256) -> Result<Vec<u8>, PhotoStoreError> {
        let p = self.path_of(sha);
        let bytes = fs::read(&p).map_err(io(&p))?;
        let actual = Sha256::digest(&bytes);
        if actual != *sha {
            return Err(PhotoStoreError::HashMismatch {
                expected: *sha,
                actual,
            });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn put_verifies_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = PhotoStore::open(dir.path()).unwrap();
        let data = b"hello photo".to_vec();
        let sha = Sha256::digest(&data);
        let p = store
            .put(
                &sha,
                data.len() as u64,
                [&data[..5], &data[5..]].into_iter(),
            )
            .unwrap();
        assert_eq!(fs::read(&p).unwrap(), data);
        store
            .put(&sha, data.len() as u64, std::iter::once(&data[..]))
            .unwrap();
        assert_eq!(store.read_verified(&sha).unwrap(), data);
        let wrong = Sha256::digest(b"other");
        assert!(matches!(
            store.put(&wrong, data.len() as u64, std::iter::once(&data[..])),
            Err(PhotoStoreError::HashMismatch { .. })
        ));
        assert!(!store.contains(&wrong));
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "temp files left behind"
        );
    }
}
