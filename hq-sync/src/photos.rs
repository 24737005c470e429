//! HQ's photo store: verified blobs as content-addressed files.
//!
//! A blob is written to a temp file, its SHA-256 checked against its name, the file
//! fsynced, then renamed into `{dir}/{aa}/{sha256}` and the directory fsynced. Only after
//! that does the record store reference it. Because the name is the hash, two workers (or
//! a re-sent upload) writing the same blob write the same bytes: the rename is idempotent.
//!
//! Ingest writes a batch's blobs first ([`PhotoStore::write`]: written and verified, not
//! yet durable) and makes them durable together ([`PhotoStore::persist`]): the files'
//! fsyncs run in parallel and each directory is fsynced once, so a batch waits for the
//! disk about once, not twice per photo.

use crate::store::{HqStore, HqStoreError};
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

/// A blob written to a temp file and verified, not yet durable nor in place.
#[derive(Debug)]
pub struct Unsynced {
    pub sha: Sha256,
    tmp: PathBuf,
    file: File,
}

/// At most this many fsyncs run at once in [`PhotoStore::persist`].
const PARALLEL_SYNCS: usize = 16;

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
        let written = self.write(sha, size, pieces)?;
        match self.persist(vec![written]).pop() {
            Some((_, r)) => r,
            None => Err(PhotoStoreError::Io {
                path: self.path_of(sha),
                source: std::io::Error::other("nothing persisted"),
            }),
        }
    }

    /// Writes the pieces in order to a temp file and verifies size and hash; nothing is
    /// durable or in place until [`PhotoStore::persist`].
    pub fn write<'a>(
        &self,
        sha: &Sha256,
        size: u64,
        pieces: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Unsynced, PhotoStoreError> {
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
            Ok(f)
        })();
        match result {
            Ok(file) => Ok(Unsynced {
                sha: *sha,
                tmp,
                file,
            }),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Drops a written blob that will not be stored.
    pub fn discard(&self, blob: Unsynced) {
        drop(blob.file);
        let _ = fs::remove_file(&blob.tmp);
    }

    /// Makes written blobs durable and puts them in place: every file fsynced (in
    /// parallel), renamed to its name, and each directory that got one fsynced once.
    /// Each blob's outcome, in order; a blob whose outcome is an error is not in place.
    pub fn persist(&self, blobs: Vec<Unsynced>) -> Vec<(Sha256, Result<PathBuf, PhotoStoreError>)> {
        let synced = parallel(blobs, |b| {
            let r = b.file.sync_all().map_err(io(&b.tmp));
            (b, r)
        });
        let mut out = Vec::with_capacity(synced.len());
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (b, r) in synced {
            let final_path = self.path_of(&b.sha);
            let parent = final_path.parent().unwrap_or(&self.dir).to_owned();
            let r = r.and_then(|()| {
                fs::create_dir_all(&parent).map_err(io(&parent))?;
                fs::rename(&b.tmp, &final_path).map_err(io(&final_path))
            });
            if r.is_err() {
                let _ = fs::remove_file(&b.tmp);
            } else if !dirs.contains(&parent) {
                dirs.push(parent.clone());
            }
            out.push((b.sha, r.map(|()| final_path), parent));
        }
        let dir_results = parallel(dirs, |d| {
            let r = File::open(&d).and_then(|f| f.sync_all()).map_err(io(&d));
            (d, r)
        });
        out.into_iter()
            .map(|(sha, r, parent)| {
                let r = r.and_then(
                    |path| match dir_results.iter().find(|(d, _)| *d == parent) {
                        Some((_, Err(e))) => Err(PhotoStoreError::Io {
                            path: parent.clone(),
                            source: std::io::Error::other(e.to_string()),
                        }),
                        _ => Ok(path),
                    },
                );
                (sha, r)
            })
            .collect()
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

/// Checks that `bytes` are the blob `sha` of `size` bytes.
pub fn verify(sha: &Sha256, size: u64, bytes: &[u8]) -> Result<(), PhotoStoreError> {
    if bytes.len() as u64 != size {
        return Err(PhotoStoreError::SizeMismatch {
            expected: size,
            actual: bytes.len() as u64,
        });
    }
    let actual = Sha256::digest(bytes);
    if actual != *sha {
        return Err(PhotoStoreError::HashMismatch {
            expected: *sha,
            actual,
        });
    }
    Ok(())
}

/// Where a verified blob's bytes go when it is committed (`HqStore::commit_blob`).
#[derive(Debug, Clone, Copy)]
pub enum BlobAt<'a> {
    /// A file of this machine's photo store, already durable.
    File(&'a Path),
    /// Into the store, in the transaction that records the blob (`blob_contents`).
    Database(&'a [u8]),
}

#[derive(Debug, thiserror::Error)]
pub enum BlobReadError {
    #[error(transparent)]
    Store(#[from] HqStoreError),
    #[error(transparent)]
    Files(#[from] PhotoStoreError),
}

/// Every verified blob HQ holds, wherever its bytes are: in the store (`blob_contents`,
/// with `[store] blobs_in_database`) or this machine's photo files.
#[derive(Debug, Clone)]
pub struct Blobs {
    files: PhotoStore,
    in_database: bool,
}

impl Blobs {
    pub fn open(photos_dir: &Path, in_database: bool) -> Result<Blobs, PhotoStoreError> {
        Ok(Blobs {
            files: PhotoStore::open(photos_dir)?,
            in_database,
        })
    }

    /// Where new blobs go: the store (true) or files.
    pub fn in_database(&self) -> bool {
        self.in_database
    }

    pub fn files(&self) -> &PhotoStore {
        &self.files
    }

    /// Reads a stored blob and checks it still matches its hash: from the store when it
    /// holds the bytes, else from the photo files (blobs stored before the switch).
    pub fn read_verified(&self, store: &HqStore, sha: &Sha256) -> Result<Vec<u8>, BlobReadError> {
        match store.blob_content(sha)? {
            Some(bytes) => {
                let actual = Sha256::digest(&bytes);
                if actual != *sha {
                    return Err(PhotoStoreError::HashMismatch {
                        expected: *sha,
                        actual,
                    }
                    .into());
                }
                Ok(bytes)
            }
            None => Ok(self.files.read_verified(sha)?),
        }
    }
}

/// Runs `f` on every item on up to [`PARALLEL_SYNCS`] threads (each waits on the disk,
/// not the CPU), results in the items' order.
fn parallel<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 {
        return items.into_iter().map(f).collect();
    }
    let per = items.len().div_ceil(PARALLEL_SYNCS);
    let mut groups: Vec<Vec<T>> = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        groups.push(items.by_ref().take(per).collect());
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|g| scope.spawn(move || g.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        // A panicking fsync thread would be a bug; its items are lost to the caller's
        // error path (the scope re-raises the panic).
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_persisted_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = PhotoStore::open(dir.path()).unwrap();
        let blobs: Vec<Vec<u8>> = (0..40u32).map(|i| i.to_le_bytes().repeat(500)).collect();
        let written: Vec<Unsynced> = blobs
            .iter()
            .map(|b| {
                store
                    .write(&Sha256::digest(b), b.len() as u64, std::iter::once(&b[..]))
                    .unwrap()
            })
            .collect();
        for b in &blobs {
            assert!(
                !store.contains(&Sha256::digest(b)),
                "not in place before persist"
            );
        }
        let out = store.persist(written);
        assert_eq!(out.len(), 40);
        for ((sha, r), b) in out.iter().zip(&blobs) {
            assert_eq!(*sha, Sha256::digest(b));
            assert_eq!(fs::read(r.as_ref().unwrap()).unwrap(), *b);
        }
        let unwanted = store
            .write(&Sha256::digest(b"x"), 1, std::iter::once(&b"x"[..]))
            .unwrap();
        store.discard(unwanted);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
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
