//! Uploads in progress in HQ's own store, where every worker sees them: what lets
//! several HQ machines share the chunks of one blob (the broker's shared subscription
//! hands each chunk to any worker) and lets a worker die mid-upload without costing the
//! bus more than the chunks that worker had not yet committed.
//!
//! The same contract as the sled staging of one worker (`staging.rs`), in two tables:
//! `staged_uploads` (one row per (bus, blob): shape, which chunks are held, counters) and
//! `staged_chunks` (one row per chunk). Still disposable: the bus keeps every byte until
//! HQ's delivery ack, so losing an upload costs re-sends, never data.
//!
//! Concurrency: a chunk is staged in one transaction that locks its upload's row
//! (`FOR UPDATE`; SQLite's `BEGIN IMMEDIATE` excludes every other writer anyway), so two
//! workers adding the last two chunks of a blob one after the other: whoever commits
//! second sees the upload whole. Both may see it whole and both assemble it; storing a
//! blob is idempotent (`HqStore::commit_blob`), and an application completes once.
//! Each statement takes no other lock, so this order cannot deadlock with the store's.
//!
//! Durability: written inside ingest's batch (its group commit makes them durable with
//! the batch's end, before any progress snapshot goes out), so `flush` has nothing to do.

use crate::db::OptionalExt;
use crate::staging::{Limits, Stored, Usage};
use crate::store::{HqStore, HqStoreError};
use crate::vals;
use keliling_shared::wire::{chunk_count, BlobProgress, Chunk};
use keliling_shared::{Bitmap, BusId, Sha256, UnixMillis};

/// Staging in `store` under `limits`.
pub struct SharedStaging<'a> {
    pub store: &'a HqStore,
    pub limits: &'a Limits,
}

/// One upload's row.
struct Upload {
    total_size: u64,
    chunk_size: u32,
    have: Bitmap,
    mismatches: u32,
}

// PostgreSQL's `SUM` of a `BIGINT` is a `NUMERIC`: every sum below is cast back.

fn size(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl SharedStaging<'_> {
    fn upload(&self, bus: &BusId, sha: &str, lock: bool) -> Result<Option<Upload>, HqStoreError> {
        let db = &self.store.db;
        let sql = format!(
            "SELECT total_size, chunk_size, have, mismatches FROM staged_uploads
             WHERE bus_id = ?1 AND sha256 = ?2{}",
            if lock { db.for_update() } else { "" }
        );
        Ok(db
            .query_row(&sql, vals![bus.as_str(), sha], |r| {
                Ok(Upload {
                    total_size: r.get(0)?,
                    chunk_size: r.get(1)?,
                    have: Bitmap::from_bytes(r.get(2)?),
                    mismatches: r.get(3)?,
                })
            })
            .optional()?)
    }

    /// Stages one (already checked) chunk of `bus`'s upload. A chunk whose blob shape
    /// differs from the staged one (the bus changed its chunk size) restarts the upload.
    pub fn put(&self, bus: &BusId, c: &Chunk, now: UnixMillis) -> Result<Stored, HqStoreError> {
        let sha = c.blob.to_hex();
        let b = bus.as_str();
        let tx = self.store.db.transaction()?;
        tx.execute(
            "INSERT INTO staged_uploads (bus_id, sha256, total_size, chunk_size, have, touched_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (bus_id, sha256) DO NOTHING",
            vals![
                b,
                sha,
                size(c.total_size),
                c.chunk_size,
                Bitmap::new(c.count()).as_bytes(),
                now.0
            ],
        )?;
        let Some(mut up) = self.upload(bus, &sha, true)? else {
            return Err(HqStoreError::Corrupt(format!(
                "upload of {sha} by {b} vanished inside its transaction"
            )));
        };
        if up.total_size != c.total_size || up.chunk_size != c.chunk_size {
            tx.execute(
                "DELETE FROM staged_chunks WHERE bus_id = ?1 AND sha256 = ?2",
                vals![b, sha],
            )?;
            tx.execute(
                "UPDATE staged_uploads SET total_size = ?3, chunk_size = ?4, have = ?5,
                 mismatches = 0, bytes = 0, touched_at = ?6 WHERE bus_id = ?1 AND sha256 = ?2",
                vals![
                    b,
                    sha,
                    size(c.total_size),
                    c.chunk_size,
                    Bitmap::new(c.count()).as_bytes(),
                    now.0
                ],
            )?;
            up = Upload {
                total_size: c.total_size,
                chunk_size: c.chunk_size,
                have: Bitmap::new(c.count()),
                mismatches: 0,
            };
        }
        if up.have.get(c.index) {
            // Still being sent: not idle.
            tx.execute(
                "UPDATE staged_uploads SET touched_at = ?3 WHERE bus_id = ?1 AND sha256 = ?2",
                vals![b, sha, now.0],
            )?;
            tx.commit()?;
            return Ok(Stored::Duplicate);
        }
        let len = c.data.len() as u64;
        let (bus_bytes, total): (i64, i64) = tx.query_row(
            "SELECT CAST(COALESCE(SUM(CASE WHEN bus_id = ?1 THEN bytes ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM staged_uploads",
            vals![b],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (bus_bytes, total) = (bus_bytes.max(0) as u64, total.max(0) as u64);
        if bus_bytes + len > self.limits.per_bus_bytes || total + len > self.limits.total_bytes {
            // Dropped unanswered: the rollback also forgets an upload this chunk began.
            return Ok(Stored::OverQuota);
        }
        tx.execute(
            "INSERT INTO staged_chunks (bus_id, sha256, idx, data) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (bus_id, sha256, idx) DO UPDATE SET data = excluded.data",
            vals![b, sha, c.index, c.data.as_slice()],
        )?;
        up.have.set(c.index);
        tx.execute(
            "UPDATE staged_uploads SET have = ?3, bytes = bytes + ?4, touched_at = ?5
             WHERE bus_id = ?1 AND sha256 = ?2",
            vals![b, sha, up.have.as_bytes(), size(len), now.0],
        )?;
        tx.commit()?;
        Ok(Stored::New)
    }

    /// What HQ holds of `bus`'s upload of a blob (nothing, when no worker has seen it).
    pub fn progress(&self, bus: &BusId, sha: &Sha256) -> Result<BlobProgress, HqStoreError> {
        Ok(match self.upload(bus, &sha.to_hex(), false)? {
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
    pub fn complete_size(&self, bus: &BusId, sha: &Sha256) -> Result<Option<u64>, HqStoreError> {
        Ok(self
            .upload(bus, &sha.to_hex(), false)?
            .filter(|u| u.have.is_full(chunk_count(u.total_size, u.chunk_size)))
            .map(|u| u.total_size))
    }

    /// The staged chunks of a complete upload, in order. `Corrupt` when one the upload
    /// claims is missing: the caller resets the upload and answers.
    pub fn pieces(&self, bus: &BusId, sha: &Sha256) -> Result<Vec<Vec<u8>>, HqStoreError> {
        let hex = sha.to_hex();
        let Some(u) = self.upload(bus, &hex, false)? else {
            return Ok(Vec::new());
        };
        let count = chunk_count(u.total_size, u.chunk_size);
        let rows: Vec<(u32, Vec<u8>)> = self.store.db.query_map(
            "SELECT idx, data FROM staged_chunks WHERE bus_id = ?1 AND sha256 = ?2 ORDER BY idx",
            vals![bus.as_str(), hex],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut out = Vec::with_capacity(count as usize);
        let mut rows = rows.into_iter().filter(|(i, _)| *i < count);
        for want in 0..count {
            match rows.next() {
                Some((i, data)) if i == want => out.push(data),
                _ => {
                    return Err(HqStoreError::Corrupt(format!(
                        "chunk {want} of {sha:?} missing"
                    )))
                }
            }
        }
        Ok(out)
    }

    /// The assembled blob failed its hash: drop the chunks so the bus sends them again.
    /// Returns how many times that has happened for this upload.
    pub fn reject(&self, bus: &BusId, sha: &Sha256, now: UnixMillis) -> Result<u32, HqStoreError> {
        let hex = sha.to_hex();
        let tx = self.store.db.transaction()?;
        let Some(u) = self.upload(bus, &hex, true)? else {
            return Ok(1);
        };
        let mismatches = u.mismatches + 1;
        tx.execute(
            "DELETE FROM staged_chunks WHERE bus_id = ?1 AND sha256 = ?2",
            vals![bus.as_str(), hex],
        )?;
        tx.execute(
            "UPDATE staged_uploads SET have = ?3, mismatches = ?4, bytes = 0, touched_at = ?5
             WHERE bus_id = ?1 AND sha256 = ?2",
            vals![
                bus.as_str(),
                hex,
                Bitmap::new(chunk_count(u.total_size, u.chunk_size)).as_bytes(),
                mismatches,
                now.0
            ],
        )?;
        tx.commit()?;
        Ok(mismatches)
    }

    /// Forgets `bus`'s upload of a blob (stored, refused, or to restart it): the row and
    /// its chunks in one transaction.
    pub fn discard(&self, bus: &BusId, sha: &Sha256) -> Result<(), HqStoreError> {
        let hex = sha.to_hex();
        let db = &self.store.db;
        let held: Option<i64> = db
            .query_row(
                "SELECT 1 FROM staged_uploads WHERE bus_id = ?1 AND sha256 = ?2",
                vals![bus.as_str(), hex],
                |r| r.get(0),
            )
            .optional()?;
        if held.is_none() {
            // Nothing to forget: no write transaction (most chunks of a stored blob).
            return Ok(());
        }
        let tx = db.transaction()?;
        tx.execute(
            "DELETE FROM staged_uploads WHERE bus_id = ?1 AND sha256 = ?2",
            vals![bus.as_str(), hex],
        )?;
        tx.execute(
            "DELETE FROM staged_chunks WHERE bus_id = ?1 AND sha256 = ?2",
            vals![bus.as_str(), hex],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets uploads nobody touched for `max_idle`, and chunks of no upload. Returns
    /// how many uploads expired. Any worker may run it; running it twice does no harm.
    pub fn sweep(&self, now: UnixMillis) -> Result<usize, HqStoreError> {
        let cutoff = now
            .0
            .saturating_sub(i64::try_from(self.limits.max_idle.as_millis()).unwrap_or(i64::MAX));
        let tx = self.store.db.transaction()?;
        let expired = tx.execute(
            "DELETE FROM staged_uploads WHERE touched_at < ?1",
            vals![cutoff],
        )?;
        tx.execute(
            "DELETE FROM staged_chunks WHERE NOT EXISTS (SELECT 1 FROM staged_uploads u
                WHERE u.bus_id = staged_chunks.bus_id AND u.sha256 = staged_chunks.sha256)",
            vals![],
        )?;
        tx.commit()?;
        Ok(expired)
    }

    /// Every upload in progress: (bus, blob).
    pub fn uploads(&self) -> Result<Vec<(BusId, Sha256)>, HqStoreError> {
        let rows: Vec<(String, String)> = self.store.db.query_map(
            "SELECT bus_id, sha256 FROM staged_uploads ORDER BY bus_id, sha256",
            vals![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|(b, s)| Some((BusId::parse(&b).ok()?, Sha256::parse_hex(&s).ok()?)))
            .collect())
    }

    /// Uploads and bytes staged by every worker together.
    pub fn usage(&self) -> Result<Usage, HqStoreError> {
        let (uploads, bytes): (i64, i64) = self.store.db.query_row(
            "SELECT COUNT(*), CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM staged_uploads",
            vals![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(Usage {
            uploads: uploads.max(0) as u64,
            bytes: bytes.max(0) as u64,
        })
    }

    /// Bytes `bus` has staged.
    pub fn bus_bytes(&self, bus: &BusId) -> Result<u64, HqStoreError> {
        let n: i64 = self.store.db.query_row(
            "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM staged_uploads WHERE bus_id = ?1",
            vals![bus.as_str()],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::each_backend;
    use rand::seq::SliceRandom;
    use rand::{rngs::StdRng, SeedableRng};
    use std::time::Duration;

    fn bus(s: &str) -> BusId {
        BusId::parse(s).unwrap()
    }

    fn chunk(blob: &[u8], data: &[u8], index: u32, total: u64) -> Chunk {
        Chunk {
            blob: Sha256::digest(blob),
            total_size: total,
            chunk_size: 1024,
            index,
            data: data.to_vec(),
        }
    }

    #[test]
    fn uploads_are_per_bus_and_kept_in_order() {
        for t in each_backend("shared_staging_uploads_are_per_bus") {
            let store = t.open();
            let limits = Limits::default();
            let s = SharedStaging {
                store: &store,
                limits: &limits,
            };
            let now = UnixMillis::now();
            let (a, b) = (bus("bus-a"), bus("bus-b"));
            let sha = Sha256::digest(b"blob");
            // Out of order, and one chunk twice.
            assert_eq!(
                s.put(&a, &chunk(b"blob", &[2; 1024], 1, 2048), now)
                    .unwrap(),
                Stored::New
            );
            assert_eq!(
                s.put(&a, &chunk(b"blob", &[2; 1024], 1, 2048), now)
                    .unwrap(),
                Stored::Duplicate
            );
            // B claims another size for the same hash: its own upload, A's untouched.
            assert_eq!(
                s.put(&b, &chunk(b"blob", &[9; 1000], 0, 1000), now)
                    .unwrap(),
                Stored::New
            );
            assert_eq!(s.complete_size(&b, &sha).unwrap(), Some(1000));
            assert_eq!(s.complete_size(&a, &sha).unwrap(), None);
            let p = s.progress(&a, &sha).unwrap();
            assert_eq!((p.chunk_count, p.have.count()), (2, 1));
            s.put(&a, &chunk(b"blob", &[1; 1024], 0, 2048), now)
                .unwrap();
            assert_eq!(s.complete_size(&a, &sha).unwrap(), Some(2048));
            assert_eq!(
                s.pieces(&a, &sha).unwrap(),
                vec![vec![1; 1024], vec![2; 1024]],
                "in index order, whatever order they came in"
            );
            assert_eq!(s.bus_bytes(&a).unwrap(), 2048);
            assert_eq!(
                s.usage().unwrap(),
                Usage {
                    uploads: 2,
                    bytes: 3048
                }
            );
            // A new shape restarts the upload.
            s.put(&a, &chunk(b"blob", &[3; 1024], 0, 4096), now)
                .unwrap();
            assert_eq!(s.progress(&a, &sha).unwrap().chunk_count, 4);
            assert_eq!(s.bus_bytes(&a).unwrap(), 1024);
            // A failed assembly drops the chunks and counts.
            assert_eq!(s.reject(&a, &sha, now).unwrap(), 1);
            assert_eq!(s.reject(&a, &sha, now).unwrap(), 2);
            assert_eq!(s.progress(&a, &sha).unwrap().have.count(), 0);
            assert_eq!(s.bus_bytes(&a).unwrap(), 0);
            s.discard(&b, &sha).unwrap();
            s.discard(&b, &sha).unwrap();
            assert_eq!(s.uploads().unwrap(), vec![(a.clone(), sha)]);
            // `bus-1`'s discard leaves `bus-10`'s chunks alone.
            let (one, ten) = (bus("bus-1"), bus("bus-10"));
            s.put(&ten, &chunk(b"blob", &[2; 1024], 0, 2048), now)
                .unwrap();
            s.put(&one, &chunk(b"blob", &[3; 1024], 0, 2048), now)
                .unwrap();
            s.discard(&one, &sha).unwrap();
            s.put(&ten, &chunk(b"blob", &[2; 1024], 1, 2048), now)
                .unwrap();
            assert_eq!(s.pieces(&ten, &sha).unwrap().len(), 2);
            // An upload that claims a chunk that is gone says Corrupt; discarding resets it.
            store
                .db
                .execute(
                    "DELETE FROM staged_chunks WHERE bus_id = ?1 AND idx = 1",
                    vals!["bus-10"],
                )
                .unwrap();
            assert!(matches!(
                s.pieces(&ten, &sha),
                Err(HqStoreError::Corrupt(_))
            ));
            s.discard(&ten, &sha).unwrap();
            assert_eq!(s.progress(&ten, &sha).unwrap().chunk_count, 0);
        }
    }

    #[test]
    fn quotas_and_expiry() {
        for t in each_backend("shared_staging_quotas_and_expiry") {
            let store = t.open();
            let limits = Limits {
                per_bus_bytes: 2048,
                total_bytes: 3072,
                max_idle: Duration::from_secs(60),
            };
            let s = SharedStaging {
                store: &store,
                limits: &limits,
            };
            let t0 = UnixMillis(1_700_000_000_000);
            let (a, b, c) = (bus("bus-a"), bus("bus-b"), bus("bus-c"));
            let big = |i| chunk(b"blob", &[1; 1024], i, 8192);
            assert_eq!(s.put(&a, &big(0), t0).unwrap(), Stored::New);
            assert_eq!(s.put(&a, &big(1), t0).unwrap(), Stored::New);
            assert_eq!(s.put(&a, &big(2), t0).unwrap(), Stored::OverQuota);
            assert_eq!(s.put(&b, &big(0), t0).unwrap(), Stored::New);
            assert_eq!(
                s.put(&b, &big(1), t0).unwrap(),
                Stored::OverQuota,
                "total cap"
            );
            // A chunk refused over quota leaves no empty upload behind.
            assert_eq!(s.put(&c, &big(0), t0).unwrap(), Stored::OverQuota);
            assert_eq!(
                s.usage().unwrap(),
                Usage {
                    uploads: 2,
                    bytes: 3072
                }
            );
            // B keeps its upload alive; A's expires, its chunks with it.
            s.put(&b, &big(0), UnixMillis(t0.0 + 50_000)).unwrap();
            assert_eq!(s.sweep(UnixMillis(t0.0 + 61_000)).unwrap(), 1);
            assert_eq!(s.bus_bytes(&a).unwrap(), 0);
            let chunks: i64 = store
                .db
                .query_row("SELECT COUNT(*) FROM staged_chunks", vals![], |r| r.get(0))
                .unwrap();
            assert_eq!(chunks, 1, "only B's chunk is left");
        }
    }

    /// Four workers, each its own connection, stage the chunks of 40 uploads between
    /// them in a shuffled order: whoever stages an upload's last chunk must see it whole
    /// (else the blob waits until its bus asks). Without the row lock on PostgreSQL, two
    /// workers adding chunks at once each write the bitmap they read and one bit is lost.
    #[test]
    fn concurrent_workers_never_lose_a_chunk_of_one_upload() {
        for t in each_backend("shared_staging_concurrent_workers") {
            const UPLOADS: u32 = 40;
            const CHUNKS: u32 = 24;
            const WORKERS: usize = 4;
            let owner = bus("bus-a");
            // Upload by upload, each one's chunks shuffled and dealt out to all four, so
            // the workers are on the same upload at the same time.
            let mut rng = StdRng::seed_from_u64(3);
            let work: Vec<(u32, u32)> = (0..UPLOADS)
                .flat_map(|u| {
                    let mut idx: Vec<u32> = (0..CHUNKS).collect();
                    idx.shuffle(&mut rng);
                    idx.into_iter().map(move |i| (u, i))
                })
                .collect();
            let share: Vec<Vec<(u32, u32)>> = (0..WORKERS)
                .map(|w| work.iter().copied().skip(w).step_by(WORKERS).collect())
                .collect();
            let seen_whole = std::sync::Mutex::new(std::collections::HashSet::new());
            let barrier = std::sync::Barrier::new(WORKERS);
            std::thread::scope(|scope| {
                for mine in &share {
                    let (t, owner, seen_whole, barrier) = (&t, &owner, &seen_whole, &barrier);
                    scope.spawn(move || {
                        let store = t.open();
                        let limits = Limits::default();
                        let s = SharedStaging {
                            store: &store,
                            limits: &limits,
                        };
                        barrier.wait();
                        for &(u, i) in mine {
                            let name = format!("upload {u}");
                            let c = chunk(
                                name.as_bytes(),
                                &[i as u8; 1024],
                                i,
                                u64::from(CHUNKS) * 1024,
                            );
                            assert_eq!(s.put(owner, &c, UnixMillis::now()).unwrap(), Stored::New);
                            if s.complete_size(owner, &c.blob).unwrap().is_some() {
                                seen_whole.lock().unwrap().insert(u);
                            }
                        }
                    });
                }
            });
            let seen = seen_whole.into_inner().unwrap();
            assert_eq!(
                seen.len(),
                UPLOADS as usize,
                "{:?}: uploads nobody saw whole",
                t.backend
            );
            let store = t.open();
            let limits = Limits::default();
            let s = SharedStaging {
                store: &store,
                limits: &limits,
            };
            for u in 0..UPLOADS {
                let sha = Sha256::digest(format!("upload {u}").as_bytes());
                let pieces = s.pieces(&owner, &sha).unwrap();
                assert_eq!(pieces.len(), CHUNKS as usize);
                for (i, p) in pieces.iter().enumerate() {
                    assert_eq!(p, &vec![i as u8; 1024]);
                }
            }
        }
    }
}
