//! One daemon per data directory: an exclusive `flock` on `<data dir>/lockbox.lock`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

use crate::CoreError;

/// Holds the lock until dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, CoreError> {
        let path = dir.join("lockbox.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| CoreError::Internal(format!("cannot open {}: {e}", path.display())))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(CoreError::Internal(format!(
                "the data directory {} is in use by another lockbox daemon",
                dir.display()
            ))),
            Err(e) => Err(CoreError::Internal(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }
}
