//! Uploads in progress: photo chunks staged in sled until a blob is whole.
//!
//! sled is fast for this high-churn data, but it calls itself beta, so nothing here is
//! ever the only copy: the bus keeps every byte until HQ's delivery ack. Losing this
//! store costs re-sends, never data: when it is lost, HQ's next `Progress` snapshot says
//! so and the bus sends the chunks again.
//!
//! Layout: tree `chunks`, key `sha256 (32) ++ index (u32 BE)`; tree `uploads`, key
//! `sha256`, value: the upload's shape, which chunks are held, and counters.

use keliling_shared::wire::{chunk_count, BlobProgress, Chunk};
use keliling_shared::{Bitmap, Sha256};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("staging store: {0}")]
    Sled(sled::Error),
    #[error("staging store holds a corrupt entry: {0}")]
    Corrupt(String),
}

// Not `#[from]`: that would make the inner error the `source` too, and an error chain
// (`{:#}`) would print it twice. The message above already carries it.
impl From<sled::Error> for StagingError {
    fn from(e: sled::Error) -> Self {
        StagingError::Sled(e)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Upload {
    total_size: u64,
    chunk_size: u32,
    have: Bitmap,
    /// How many times the assembled blob failed its hash.
    mismatches: u32,
}

/// What storing one chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// HQ already held this chunk: a re-send.
    Duplicate,
}

pub struct Staging {
    _db: sled::Db,
    chunks: sled::Tree,
    uploads: sled::Tree,
}

fn chunk_key(sha: &Sha256, index: u32) -> [u8; 36] {
    let mut k = [0u8; 36];
    k[..32].copy_from_slice(sha.as_bytes());
    k[32..].copy_from_slice(&index.to_be_bytes());
    k
}

impl Staging {
    pub fn open(dir: &Path) -> Result<Self, StagingError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 * 1024 * 1024)
            .open()?;
        let chunks = db.open_tree("chunks")?;
        let uploads = db.open_tree("uploads")?;
        Ok(Staging {
            _db: db,
            chunks,
            uploads,
        })
    }

    fn upload(&self, sha: &Sha256) -> Result<Option<Upload>, StagingError> {
        match self.uploads.get(sha.as_bytes())? {
            None => Ok(None),
            Some(v) => postcard::from_bytes(&v)
                .map(Some)
                .map_err(|e| StagingError::Corrupt(e.to_string())),
        }
    }

    fn put_upload(&self, sha: &Sha256, u: &Upload) -> Result<(), StagingError> {
        let v = postcard::to_stdvec(u).map_err(|e| StagingError::Corrupt(e.to_string()))?;
        self.uploads.insert(sha.as_bytes(), v)?;
        Ok(())
    }

    /// Stages one (already checked) chunk. A chunk whose blob shape differs from the
    /// staged one (the bus changed its chunk size) restarts the upload.
    pub fn put(&self, c: &Chunk) -> Result<Stored, StagingError> {
        let mut up = match self.upload(&c.blob)? {
            Some(u) if u.total_size == c.total_size && u.chunk_size == c.chunk_size => u,
            Some(_) => {
                self.discard(&c.blob)?;
                Upload {
                    total_size: c.total_size,
                    chunk_size: c.chunk_size,
                    have: Bitmap::new(c.count()),
                    mismatches: 0,
                }
            }
            None => Upload {
                total_size: c.total_size,
                chunk_size: c.chunk_size,
                have: Bitmap::new(c.count()),
                mismatches: 0,
            },
        };
        if up.have.get(c.index) {
            return Ok(Stored::Duplicate);
        }
        self.chunks
            .insert(chunk_key(&c.blob, c.index), c.data.as_slice())?;
        up.have.set(c.index);
        self.put_upload(&c.blob, &up)?;
        Ok(Stored::New)
    }

    /// Makes everything staged so far durable; called once per batch, before HQ tells a
    /// bus which chunks it holds.
    pub async fn flush(&self) -> Result<(), StagingError> {
        self.chunks.flush_async().await?;
        self.uploads.flush_async().await?;
        Ok(())
    }

    /// What HQ holds of a blob (nothing, when it has never seen it).
    pub fn progress(&self, sha: &Sha256) -> Result<BlobProgress, StagingError> {
        Ok(match self.upload(sha)? {
            Some(u) => BlobProgress {
                blob: *sha,
                chunk_count: chunk_count(u.total_size, u.chunk_size),
                have: u.have,
            },
            None => BlobProgress {
                blob: *sha,
                chunk_count: 0,
                have: Bitmap::default(),
            },
        })
    }

    /// The blob's size when every chunk is staged.
    pub fn complete_size(&self, sha: &Sha256) -> Result<Option<u64>, StagingError> {
        Ok(self
            .upload(sha)?
            .filter(|u| u.have.is_full(chunk_count(u.total_size, u.chunk_size)))
            .map(|u| u.total_size))
    }

    /// The staged chunks of a complete blob, in order.
    pub fn pieces(&self, sha: &Sha256) -> Result<Vec<sled::IVec>, StagingError> {
        let Some(u) = self.upload(sha)? else {
            return Ok(Vec::new());
        };
        (0..chunk_count(u.total_size, u.chunk_size))
            .map(|i| {
                self.chunks
                    .get(chunk_key(sha, i))?
                    .ok_or_else(|| StagingError::Corrupt(format!("chunk {i} of {sha:?} missing")))
            })
            .collect()
    }

    /// The assembled blob failed its hash: drop the chunks so the bus sends them again.
    /// Returns how many times that has happened for this blob.
    pub fn reject(&self, sha: &Sha256) -> Result<u32, StagingError> {
        let Some(u) = self.upload(sha)? else {
            return Ok(1);
        };
        self.discard(sha)?;
        let count = chunk_count(u.total_size, u.chunk_size);
        let mismatches = u.mismatches + 1;
        self.put_upload(
            sha,
            &Upload {
                have: Bitmap::new(count),
                mismatches,
                ..u
            },
        )?;
        Ok(mismatches)
    }

    /// Forgets a blob's upload (after it is committed, or to restart it).
    pub fn discard(&self, sha: &Sha256) -> Result<(), StagingError> {
        for k in self.chunks.scan_prefix(sha.as_bytes()).keys() {
            self.chunks.remove(k?)?;
        }
        self.uploads.remove(sha.as_bytes())?;
        Ok(())
    }

    pub fn uploads_in_progress(&self) -> usize {
        self.uploads.len()
    }
}
