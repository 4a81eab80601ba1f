//! Small files of the data directory (`node.json`, `certs/`) written so that a crash leaves
//! either the old content or the new one: written beside, synced, renamed, directory synced.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::CoreError;

/// Replaces `dir/name` with `bytes` (file mode `mode` when created) atomically and durably.
pub(crate) fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<(), CoreError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| CoreError::Internal(format!("write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_content_with_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "k.pem", b"one", 0o600).unwrap();
        write_atomic(dir.path(), "k.pem", b"two", 0o600).unwrap();
        let path = dir.path().join("k.pem");
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!dir.path().join("k.pem.tmp").exists());
    }
}
