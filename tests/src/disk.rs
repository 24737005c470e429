//! A real, small filesystem for full-disk tests: a tmpfs mounted for the test (root only,
//! as CI runs), filled with a file that can be removed again, as when an operator frees
//! or grows a disk. Where mounting is not allowed, [`SmallDisk::mount`] says so and gives
//! `None`, and the caller skips what needs it (never in CI: there it is an error).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

pub struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// A tmpfs of `mib` MiB at `dir`, unmounted on drop.
    pub fn mount(dir: &Path, mib: u64) -> Result<Option<SmallDisk>> {
        std::fs::create_dir_all(dir)?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            if std::env::var_os("CI").is_some() {
                bail!("cannot mount a small disk for the test: {why}");
            }
            eprintln!("SKIPPED: cannot mount a tmpfs here ({why}); CI runs this as root");
            return Ok(None);
        }
        Ok(Some(SmallDisk {
            dir: dir.to_owned(),
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn free(&self) -> Result<u64> {
        Ok(hq_sync::disk::free_bytes(&self.dir)?)
    }

    /// Fills the disk until about `leave` bytes are free (a written file: tmpfs counts
    /// written pages only). Filling past what is free just stops at full.
    pub fn fill(&self, leave: u64) -> Result<()> {
        let size = self.free()?.saturating_sub(leave);
        let f = std::fs::File::create(self.filler())?;
        let mut w = std::io::BufWriter::new(f);
        let block = vec![0x5Au8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            match std::io::Write::write_all(&mut w, &block[..n]) {
                Ok(()) => left -= n as u64,
                // Something else took the rest meanwhile: full is full.
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => return Err(e.into()),
            }
        }
        let _ = std::io::Write::flush(&mut w);
        Ok(())
    }

    fn filler(&self) -> PathBuf {
        self.dir.join("filler")
    }

    /// Space returns (as when an operator grows or frees the disk).
    pub fn free_up(&self) -> Result<()> {
        match std::fs::remove_file(self.filler()) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r.context("removing the filler"),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}
