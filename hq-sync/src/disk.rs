//! The free-space floor: HQ refuses new data a little before its disk is full.
//!
//! Why: on a full disk every layer fails in its own way (SQLite rolls back with
//! `SQLITE_FULL`, a photo file is cut short, sled records the I/O error and refuses every
//! operation after it until reopened). Refusing early, with one clear message, keeps HQ
//! in a state it leaves by itself when space returns: a refused record or chunk is acked
//! to the broker and left unanswered, and its bus, which keeps everything, sends it again.

use std::path::{Path, PathBuf};

/// Bytes available to an unprivileged writer on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    #[cfg(unix)]
    {
        let s = rustix::fs::statvfs(path)?;
        Ok(s.f_bavail.saturating_mul(s.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(u64::MAX)
    }
}

/// Watches the disks HQ writes to. Checked before every message that grows the disk
/// (a `statvfs` per directory, about a microsecond): a cached answer would let a batch of
/// chunks and photo files run past the floor.
#[derive(Debug)]
pub struct Floor {
    dirs: Vec<PathBuf>,
    min_free: u64,
    low: bool,
    free: Option<u64>,
}

impl Floor {
    pub fn new(dirs: Vec<PathBuf>, min_free: u64) -> Floor {
        Floor {
            dirs,
            min_free,
            low: false,
            free: None,
        }
    }

    /// Whether the disks are below the floor now. Logs once when crossing either way.
    pub fn is_low(&mut self) -> bool {
        let mut least = None::<(u64, &Path)>;
        for d in &self.dirs {
            match free_bytes(d) {
                Ok(f) if least.is_none_or(|(l, _)| f < l) => least = Some((f, d)),
                Ok(_) => {}
                // A directory not there yet is made on first write; nothing to say.
                Err(e) => tracing::debug!(error = %e, dir = %d.display(), "cannot read free space"),
            }
        }
        self.free = least.map(|(f, _)| f);
        let low = least.is_some_and(|(f, _)| f < self.min_free);
        if low != self.low {
            match least {
                Some((f, d)) if low => tracing::error!(
                    free_mib = f / (1024 * 1024),
                    floor_mib = self.min_free / (1024 * 1024),
                    dir = %d.display(),
                    "HQ disk almost full: refusing new records and chunks until space returns (buses keep them and send again)"
                ),
                _ => tracing::warn!(
                    free_mib = self.free.unwrap_or(0) / (1024 * 1024),
                    "HQ disk has room again: accepting records and chunks"
                ),
            }
        }
        self.low = low;
        low
    }

    /// Free bytes on the fullest disk, as last read.
    pub fn free(&self) -> Option<u64> {
        self.free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_reads_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        let mut f = Floor::new(vec![dir.path().to_owned()], 1);
        assert!(!f.is_low());
        let mut f = Floor::new(vec![dir.path().to_owned()], u64::MAX);
        assert!(f.is_low());
        assert!(f.free().is_some());
    }
}
