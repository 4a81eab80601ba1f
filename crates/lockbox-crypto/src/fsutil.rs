//! Small file helpers for the key store: atomic 0600 writes, bounded reads
//! and wipe-then-unlink.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use crate::{CryptoError, fill_random};

const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// Creates `dir` (mode 0700) if it does not exist.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), CryptoError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| CryptoError::io("create directory", dir, e))
}

/// fsyncs a directory so that a rename or unlink in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), CryptoError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CryptoError::io("sync directory", dir, e))
}

/// Writes `data` to `dir/name` atomically: a temporary file in the same
/// directory, created with mode 0600, is written and fsynced, renamed over
/// the target, and the directory is fsynced.
pub(crate) fn atomic_write(dir: &Path, name: &str, data: &[u8]) -> Result<(), CryptoError> {
    let target = dir.join(name);
    let mut suffix = [0u8; 8];
    fill_random(&mut suffix);
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{name}.tmp-{suffix}"));

    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(|e| CryptoError::io("create", &tmp, e))?;
        // The umask can only remove bits; make the mode exactly 0600.
        f.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .map_err(|e| CryptoError::io("set permissions on", &tmp, e))?;
        f.write_all(data)
            .map_err(|e| CryptoError::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| CryptoError::io("sync", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, &target).map_err(|e| CryptoError::io("rename", &target, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_dir(dir)
}

/// Wipes and removes temporary files left by an [`atomic_write`] of
/// `dir/name` that was interrupted by a crash (they may hold key material).
pub(crate) fn remove_stale_temps(dir: &Path, name: &str) -> Result<(), CryptoError> {
    let prefix = format!(".{name}.tmp-");
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CryptoError::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| CryptoError::io("list", dir, e))?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            wipe_and_remove(dir, &entry.path())?;
        }
    }
    Ok(())
}

/// Reads `path` if it exists, refusing files larger than `max` bytes or
/// that are not regular files. The buffer is zeroized on drop.
pub(crate) fn read_bounded(
    path: &Path,
    max: u64,
    what: &str,
) -> Result<Option<Zeroizing<Vec<u8>>>, CryptoError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CryptoError::io("open", path, e)),
    };
    let meta = f.metadata().map_err(|e| CryptoError::io("stat", path, e))?;
    if !meta.is_file() {
        return Err(CryptoError::corrupt(format!(
            "{what} is not a regular file"
        )));
    }
    if meta.len() > max {
        return Err(CryptoError::corrupt(format!(
            "{what} is too large ({} bytes, at most {max} expected)",
            meta.len()
        )));
    }
    // Sized from the metadata (at most `max`), plus one byte to notice growth
    // without reallocating.
    let cap = usize::try_from(meta.len()).unwrap_or(0).saturating_add(1);
    let mut buf = Zeroizing::new(Vec::with_capacity(cap));
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CryptoError::io("read", path, e))?;
    if buf.len() as u64 > max {
        return Err(CryptoError::corrupt(format!("{what} is too large")));
    }
    Ok(Some(buf))
}

/// Overwrites `path` with zeros, fsyncs it, unlinks it and fsyncs `dir`.
/// A missing file is not an error.
pub(crate) fn wipe_and_remove(dir: &Path, path: &Path) -> Result<(), CryptoError> {
    let mut f = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CryptoError::io("open", path, e)),
    };
    let len = f
        .metadata()
        .map_err(|e| CryptoError::io("stat", path, e))?
        .len();
    f.seek(SeekFrom::Start(0))
        .map_err(|e| CryptoError::io("seek", path, e))?;
    let zeros = [0u8; 4096];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])
            .map_err(|e| CryptoError::io("overwrite", path, e))?;
        left -= n as u64;
    }
    f.sync_all().map_err(|e| CryptoError::io("sync", path, e))?;
    drop(f);
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(CryptoError::io("remove", path, e)),
    }
    sync_dir(dir)
}
