//! Uploads in progress: photo chunks staged in sled until a blob is whole.
//!
//! sled is fast for this high-churn data, but it calls itself beta, so nothing here is
//! ever the only copy: the bus keeps every byte until HQ's delivery ack. Losing this
//! store costs re-sends, never data: when it is lost, HQ's next `Progress` snapshot says
//! so and the bus sends the chunks again.
//!
//! Uploads are per (bus, blob): what one bus sends never counts towards, replaces or
//! discards another bus's upload of the same blob, so a bus cannot disturb another's
//! uploads by claiming another size or sending junk under the same hash.
//!
//! Layout: tree `uploads`, key `bus (length-prefixed) ++ sha256`, value: the upload's
//! shape, which chunks are held, when it was last touched, counters; tree `chunks`, key
//! `upload key ++ index (u32 BE)`.
//!
//! Lifecycle: every path that ends an upload (stored, already stored, refused, reset)
//! discards it; uploads nobody touched for `max_idle` expire ([`Staging::sweep`]); a bus
//! may stage at most `per_bus_bytes` and everyone together `total_bytes`.
//!
//! Crash safety: [`Staging::discard`] removes the upload entry before its chunks, so a
//! crash in between leaves only orphan chunks (which [`Staging::sweep`] removes), never an
//! entry that claims chunks it lacks. Should one be found anyway ([`StagingError::Corrupt`]),
//! ingest resets the upload and answers: never a transient error that would make the bus
//! ask forever.

use keliling_shared::wire::{chunk_count, BlobProgress, Chunk};
use keliling_shared::{Bitmap, BusId, Sha256, UnixMillis};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("staging store: {0}")]
    Sled(sled::Error),
    #[error("staging store holds a corrupt entry: {0}")]
    Corrupt(String),
    #[error("staging in HQ's store: {0}")]
    Store(crate::store::HqStoreError),
    #[error("cannot reset staging store {path}: {source}")]
    Reset {
        path: PathBuf,
        source: std::io::Error,
    },
}

// Not `#[from]`: that would make the inner error the `source` too, and an error chain
// (`{:#}`) would print it twice. The message above already carries it.
impl From<sled::Error> for StagingError {
    fn from(e: sled::Error) -> Self {
        StagingError::Sled(e)
    }
}

/// Bounds on what staging may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes one bus may have staged at once.
    pub per_bus_bytes: u64,
    /// Bytes all buses may have staged at once.
    pub total_bytes: u64,
    /// An upload nobody touched for this long is forgotten.
    pub max_idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_bus_bytes: 64 * 1024 * 1024,
            total_bytes: 4 * 1024 * 1024 * 1024,
            max_idle: Duration::from_secs(72 * 3600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Upload {
    total_size: u64,
    chunk_size: u32,
    have: Bitmap,
    /// How many times the assembled blob failed its hash.
    mismatches: u32,
    /// Bytes of the chunks held.
    bytes: u64,
    touched_at: i64,
}

/// What storing one chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// HQ already held this chunk: a re-send.
    Duplicate,
    /// Not staged: the bus's or everyone's quota is full. Not answered; the bus sends it
    /// again later, when finished or expired uploads have made room.
    OverQuota,
}

/// Size of staging, for `hq-sync status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub uploads: u64,
    pub bytes: u64,
}

pub struct Staging {
    dir: PathBuf,
    limits: Limits,
    _db: sled::Db,
    chunks: sled::Tree,
    uploads: sled::Tree,
    /// Bytes staged per bus, rebuilt from `uploads` when opened.
    per_bus: HashMap<BusId, u64>,
    total: u64,
}

/// The key of one upload: `len(bus) ++ bus ++ sha256`.
fn upload_key(bus: &BusId, sha: &Sha256) -> Vec<u8> {
    let b = bus.as_str().as_bytes();
    let mut k = Vec::with_capacity(1 + b.len() + 32);
    k.push(b.len() as u8);
    k.extend_from_slice(b);
    k.extend_from_slice(sha.as_bytes());
    k
}

fn chunk_key(upload: &[u8], index: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(upload.len() + 4);
    k.extend_from_slice(upload);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// The bus of an upload key, if it is one.
fn bus_of(key: &[u8]) -> Option<BusId> {
    let n = usize::from(*key.first()?);
    let name = key.get(1..1 + n)?;
    BusId::parse(std::str::from_utf8(name).ok()?).ok()
}

/// The upload key a chunk key belongs to.
fn upload_of_chunk(key: &[u8]) -> Option<&[u8]> {
    let n = usize::from(*key.first()?);
    key.get(..1 + n + 32)
        .filter(|_| key.len() == 1 + n + 32 + 4)
}

impl Staging {
    pub fn open(dir: &Path, limits: Limits) -> Result<Self, StagingError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 * 1024 * 1024)
            .open()?;
        let chunks = db.open_tree("chunks")?;
        let uploads = db.open_tree("uploads")?;
        let mut s = Staging {
            dir: dir.to_owned(),
            limits,
            _db: db,
            chunks,
            uploads,
            per_bus: HashMap::new(),
            total: 0,
        };
        s.recount()?;
        Ok(s)
    }

    /// Opens the store at `dir`; when it is damaged, moves it aside and starts an empty
    /// one: staging is disposable, and the buses re-send. An I/O error (a full disk) is
    /// returned as it is, to be tried again: nothing is moved aside for it.
    pub fn open_or_reset(dir: &Path, limits: Limits) -> Result<Self, StagingError> {
        match Staging::open(dir, limits) {
            Ok(s) => Ok(s),
            Err(StagingError::Sled(e @ sled::Error::Io(_))) => Err(StagingError::Sled(e)),
            Err(e) => {
                tracing::error!(error = %e, dir = %dir.display(), "staging store unusable; starting an empty one (buses re-send)");
                let aside = dir.with_extension(format!("broken-{}", UnixMillis::now().0));
                std::fs::rename(dir, &aside).map_err(|source| StagingError::Reset {
                    path: dir.to_owned(),
                    source,
                })?;
                Staging::open(dir, limits)
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn recount(&mut self) -> Result<(), StagingError> {
        self.per_bus.clear();
        self.total = 0;
        for kv in self.uploads.iter() {
            let (k, v) = kv?;
            let Some(bus) = bus_of(&k) else { continue };
            let bytes = postcard::from_bytes::<Upload>(&v).map_or(0, |u| u.bytes);
            *self.per_bus.entry(bus).or_insert(0) += bytes;
            self.total += bytes;
        }
        Ok(())
    }

    fn upload(&mut self, key: &[u8]) -> Result<Option<Upload>, StagingError> {
        match self.uploads.get(key)? {
            None => Ok(None),
            Some(v) => match postcard::from_bytes(&v) {
                Ok(u) => Ok(Some(u)),
                Err(e) => {
                    // A damaged entry: forget it (the bus re-sends), never fail on it forever.
                    tracing::warn!(error = %e, "corrupt upload entry in staging: reset");
                    self.discard_key(key)?;
                    Ok(None)
                }
            },
        }
    }

    fn put_upload(&self, key: &[u8], u: &Upload) -> Result<(), StagingError> {
        let v = postcard::to_stdvec(u).map_err(|e| StagingError::Corrupt(e.to_string()))?;
        self.uploads.insert(key, v)?;
        Ok(())
    }

    fn account(&mut self, bus: &BusId, delta: i64) {
        let e = self.per_bus.entry(bus.clone()).or_insert(0);
        *e = e.saturating_add_signed(delta);
        self.total = self.total.saturating_add_signed(delta);
        if *e == 0 {
            self.per_bus.remove(bus);
        }
    }

    /// Stages one (already checked) chunk of `bus`'s upload. A chunk whose blob shape
    /// differs from the staged one (the bus changed its chunk size) restarts the upload.
    pub fn put(&mut self, bus: &BusId, c: &Chunk, now: UnixMillis) -> Result<Stored, StagingError> {
        let key = upload_key(bus, &c.blob);
        let fresh = || Upload {
            total_size: c.total_size,
            chunk_size: c.chunk_size,
            have: Bitmap::new(c.count()),
            mismatches: 0,
            bytes: 0,
            touched_at: now.0,
        };
        let mut up = match self.upload(&key)? {
            Some(u) if u.total_size == c.total_size && u.chunk_size == c.chunk_size => u,
            Some(_) => {
                self.discard_key(&key)?;
                fresh()
            }
            None => fresh(),
        };
        if up.have.get(c.index) {
            // Still being sent: not idle.
            up.touched_at = now.0;
            self.put_upload(&key, &up)?;
            return Ok(Stored::Duplicate);
        }
        let len = c.data.len() as u64;
        let used = self.per_bus.get(bus).copied().unwrap_or(0);
        if used + len > self.limits.per_bus_bytes || self.total + len > self.limits.total_bytes {
            return Ok(Stored::OverQuota);
        }
        self.chunks
            .insert(chunk_key(&key, c.index), c.data.as_slice())?;
        up.have.set(c.index);
        up.bytes += len;
        up.touched_at = now.0;
        self.put_upload(&key, &up)?;
        self.account(bus, len as i64);
        Ok(Stored::New)
    }

    /// Makes everything staged so far durable; called once per batch, before HQ tells a
    /// bus which chunks it holds.
    pub fn flush(&self) -> Result<(), StagingError> {
        self.chunks.flush()?;
        self.uploads.flush()?;
        Ok(())
    }

    /// What HQ holds of `bus`'s upload of a blob (nothing, when it has never seen it).
    pub fn progress(&mut self, bus: &BusId, sha: &Sha256) -> Result<BlobProgress, StagingError> {
        Ok(match self.upload(&upload_key(bus, sha))? {
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

    /// The blob's size when every chunk of `bus`'s upload is staged.
    pub fn complete_size(
        &mut self,
        bus: &BusId,
        sha: &Sha256,
    ) -> Result<Option<u64>, StagingError> {
        Ok(self
            .upload(&upload_key(bus, sha))?
            .filter(|u| u.have.is_full(chunk_count(u.total_size, u.chunk_size)))
            .map(|u| u.total_size))
    }

    /// The staged chunks of a complete upload, in order. `Corrupt` when a chunk the entry
    /// claims is missing: the caller resets the upload ([`Staging::discard`]) and answers.
    pub fn pieces(&mut self, bus: &BusId, sha: &Sha256) -> Result<Vec<sled::IVec>, StagingError> {
        let key = upload_key(bus, sha);
        let Some(u) = self.upload(&key)? else {
            return Ok(Vec::new());
        };
        (0..chunk_count(u.total_size, u.chunk_size))
            .map(|i| {
                self.chunks
                    .get(chunk_key(&key, i))?
                    .ok_or_else(|| StagingError::Corrupt(format!("chunk {i} of {sha:?} missing")))
            })
            .collect()
    }

    /// The assembled blob failed its hash: drop the chunks so the bus sends them again.
    /// Returns how many times that has happened for this upload.
    pub fn reject(
        &mut self,
        bus: &BusId,
        sha: &Sha256,
        now: UnixMillis,
    ) -> Result<u32, StagingError> {
        let key = upload_key(bus, sha);
        let Some(u) = self.upload(&key)? else {
            return Ok(1);
        };
        self.discard_key(&key)?;
        let count = chunk_count(u.total_size, u.chunk_size);
        let mismatches = u.mismatches + 1;
        self.put_upload(
            &key,
            &Upload {
                have: Bitmap::new(count),
                mismatches,
                bytes: 0,
                touched_at: now.0,
                ..u
            },
        )?;
        Ok(mismatches)
    }

    /// Forgets `bus`'s upload of a blob (stored, refused, or to restart it).
    pub fn discard(&mut self, bus: &BusId, sha: &Sha256) -> Result<(), StagingError> {
        self.discard_key(&upload_key(bus, sha))
    }

    /// The entry first, then its chunks: a crash in between leaves orphan chunks for the
    /// sweep, never an entry that claims chunks that are gone.
    fn discard_key(&mut self, key: &[u8]) -> Result<(), StagingError> {
        if let Some(old) = self.uploads.remove(key)? {
            if let (Some(bus), Ok(u)) = (bus_of(key), postcard::from_bytes::<Upload>(&old)) {
                self.account(&bus, -(u.bytes as i64));
            }
        }
        for k in self.chunks.scan_prefix(key).keys() {
            let k = k?;
            // `scan_prefix` on `len ++ bus ++ sha` only matches this upload's chunks
            // (the length byte keeps `bus-1` from matching `bus-10`).
            self.chunks.remove(k)?;
        }
        Ok(())
    }

    /// Forgets uploads nobody touched for `max_idle` and chunks that belong to no upload
    /// (left by a crash inside `discard`). Returns how many uploads expired.
    pub fn sweep(&mut self, now: UnixMillis) -> Result<usize, StagingError> {
        let cutoff = now
            .0
            .saturating_sub(i64::try_from(self.limits.max_idle.as_millis()).unwrap_or(i64::MAX));
        let mut stale = Vec::new();
        for kv in self.uploads.iter() {
            let (k, v) = kv?;
            match postcard::from_bytes::<Upload>(&v) {
                Ok(u) if u.touched_at >= cutoff => {}
                _ => stale.push(k.to_vec()),
            }
        }
        for k in &stale {
            self.discard_key(k)?;
        }
        // A chunk is an orphan when its upload is gone or does not count it (a crash in
        // `discard`, then the upload started again).
        let mut orphans = Vec::new();
        let mut last: Option<(Vec<u8>, Option<Bitmap>)> = None;
        for k in self.chunks.iter().keys() {
            let k = k?;
            let Some(up) = upload_of_chunk(&k) else {
                orphans.push(k.to_vec());
                continue;
            };
            if last.as_ref().is_none_or(|(prev, _)| prev.as_slice() != up) {
                let have = self
                    .uploads
                    .get(up)?
                    .and_then(|v| postcard::from_bytes::<Upload>(&v).ok())
                    .map(|u| u.have);
                last = Some((up.to_vec(), have));
            }
            let index = k
                .get(up.len()..)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes);
            let counted = match (&last, index) {
                (Some((_, Some(have))), Some(i)) => have.get(i),
                _ => false,
            };
            if !counted {
                orphans.push(k.to_vec());
            }
        }
        for k in orphans {
            self.chunks.remove(k)?;
        }
        Ok(stale.len())
    }

    /// Every upload in progress: (bus, blob).
    pub fn uploads(&self) -> Result<Vec<(BusId, Sha256)>, StagingError> {
        let mut out = Vec::new();
        for k in self.uploads.iter().keys() {
            let k = k?;
            let (Some(bus), Some(sha)) = (
                bus_of(&k),
                k.get(k.len().saturating_sub(32)..)
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .map(Sha256::from_bytes),
            ) else {
                continue;
            };
            out.push((bus, sha));
        }
        Ok(out)
    }

    pub fn usage(&self) -> Usage {
        Usage {
            uploads: self.uploads.len() as u64,
            bytes: self.total,
        }
    }

    /// Bytes `bus` has staged.
    pub fn bus_bytes(&self, bus: &BusId) -> u64 {
        self.per_bus.get(bus).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus(s: &str) -> BusId {
        BusId::parse(s).unwrap()
    }

    fn chunk(data: &[u8], index: u32, total: u64) -> Chunk {
        Chunk {
            blob: Sha256::digest(b"blob"),
            total_size: total,
            chunk_size: 1024,
            index,
            data: data.to_vec(),
        }
    }

    #[test]
    fn uploads_are_per_bus() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Staging::open(dir.path(), Limits::default()).unwrap();
        let now = UnixMillis::now();
        let (a, b) = (bus("bus-a"), bus("bus-b"));
        assert_eq!(
            s.put(&a, &chunk(&[1; 1024], 0, 2048), now).unwrap(),
            Stored::New
        );
        // B claims another size for the same hash: its own upload, A's untouched.
        assert_eq!(
            s.put(&b, &chunk(&[9; 1000], 0, 1000), now).unwrap(),
            Stored::New
        );
        assert_eq!(
            s.progress(&a, &Sha256::digest(b"blob"))
                .unwrap()
                .chunk_count,
            2
        );
        assert_eq!(
            s.progress(&b, &Sha256::digest(b"blob"))
                .unwrap()
                .chunk_count,
            1
        );
        assert_eq!(
            s.complete_size(&b, &Sha256::digest(b"blob")).unwrap(),
            Some(1000)
        );
        assert_eq!(s.complete_size(&a, &Sha256::digest(b"blob")).unwrap(), None);
        s.discard(&b, &Sha256::digest(b"blob")).unwrap();
        assert_eq!(s.bus_bytes(&a), 1024);
        assert_eq!(s.bus_bytes(&b), 0);
        // `bus-1`'s discard leaves `bus-10`'s chunks alone.
        let (one, ten) = (bus("bus-1"), bus("bus-10"));
        s.put(&ten, &chunk(&[2; 1024], 0, 2048), now).unwrap();
        s.put(&one, &chunk(&[3; 1024], 0, 2048), now).unwrap();
        s.discard(&one, &Sha256::digest(b"blob")).unwrap();
        s.put(&ten, &chunk(&[2; 1024], 1, 2048), now).unwrap();
        assert_eq!(s.pieces(&ten, &Sha256::digest(b"blob")).unwrap().len(), 2);
    }

    #[test]
    fn quotas_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            per_bus_bytes: 2048,
            total_bytes: 3072,
            max_idle: Duration::from_secs(60),
        };
        let mut s = Staging::open(dir.path(), limits).unwrap();
        let t0 = UnixMillis(1_700_000_000_000);
        let (a, b) = (bus("bus-a"), bus("bus-b"));
        let big = |i| chunk(&[1; 1024], i, 8192);
        assert_eq!(s.put(&a, &big(0), t0).unwrap(), Stored::New);
        assert_eq!(s.put(&a, &big(1), t0).unwrap(), Stored::New);
        assert_eq!(s.put(&a, &big(2), t0).unwrap(), Stored::OverQuota);
        assert_eq!(s.put(&b, &big(0), t0).unwrap(), Stored::New);
        assert_eq!(
            s.put(&b, &big(1), t0).unwrap(),
            Stored::OverQuota,
            "total cap"
        );
        assert_eq!(
            s.usage(),
            Usage {
                uploads: 2,
                bytes: 3072
            }
        );
        // B keeps its upload alive; A's expires.
        let later = UnixMillis(t0.0 + 50_000);
        s.put(&b, &big(0), later).unwrap();
        assert_eq!(s.sweep(UnixMillis(t0.0 + 61_000)).unwrap(), 1);
        assert_eq!(s.bus_bytes(&a), 0);
        // Reopening counts what is staged again.
        drop(s);
        let s = Staging::open(dir.path(), limits).unwrap();
        assert_eq!(s.usage().uploads, 1);
        assert_eq!(s.bus_bytes(&b), s.usage().bytes);
    }

    #[test]
    fn a_crash_inside_discard_leaves_nothing_that_wedges_a_blob() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Staging::open(dir.path(), Limits::default()).unwrap();
        let now = UnixMillis::now();
        let a = bus("bus-a");
        let sha = Sha256::digest(b"blob");
        s.put(&a, &chunk(&[1; 1024], 0, 2048), now).unwrap();
        s.put(&a, &chunk(&[2; 1024], 1, 2048), now).unwrap();
        // A crash after the entry went and before the chunks did: orphans only.
        s.uploads.remove(upload_key(&a, &sha)).unwrap();
        assert_eq!(s.progress(&a, &sha).unwrap().chunk_count, 0);
        assert_eq!(
            s.put(&a, &chunk(&[1; 1024], 0, 2048), now).unwrap(),
            Stored::New
        );
        s.sweep(now).unwrap();
        // The sweep kept the live chunk 0 and dropped the orphan chunk 1.
        assert_eq!(s.chunks.len(), 1);
        s.put(&a, &chunk(&[2; 1024], 1, 2048), now).unwrap();
        assert_eq!(s.pieces(&a, &sha).unwrap().len(), 2);
        // An entry that claims a chunk that is gone says Corrupt, and discarding resets it.
        s.chunks
            .remove(chunk_key(&upload_key(&a, &sha), 1))
            .unwrap();
        assert!(matches!(s.pieces(&a, &sha), Err(StagingError::Corrupt(_))));
        s.discard(&a, &sha).unwrap();
        assert_eq!(s.progress(&a, &sha).unwrap().chunk_count, 0);
        // A damaged entry is reset, not an error forever.
        s.uploads
            .insert(upload_key(&a, &sha), &b"\xff\xff"[..])
            .unwrap();
        assert_eq!(s.progress(&a, &sha).unwrap().chunk_count, 0);
    }
}
