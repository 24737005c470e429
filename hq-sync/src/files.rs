//! Files that hold keys and certificates: written whole, with their mode set from the
//! start, and refused when others may read a secret one. Shared by the PKI (`pki.rs`)
//! and HQ's signing keys (`signing.rs`).

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically with `mode`: a fresh temporary file with a unique
/// name in the same directory (created 0600, so a left-over can neither be reused nor
/// widen a key's permissions), the mode, fsync, rename, directory fsync.
pub fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Makes `dir` readable by its owner only.
pub fn restrict_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The file's permission bits when any of `forbidden` is set, else `None`.
pub fn mode_exceeding(path: &Path, forbidden: u32) -> std::io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        Ok((mode & forbidden != 0).then_some(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, forbidden);
        Ok(None)
    }
}
