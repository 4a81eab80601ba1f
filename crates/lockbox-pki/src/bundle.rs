//! Client bundles on disk: `ca.pem`, `cert.pem` and `key.pem`, the layout
//! the docker CLI reads with `--tlsverify` and `DOCKER_CERT_PATH`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::{Issued, PkiError, Result};

/// File name of the CA certificate in a bundle.
pub const CA_FILE: &str = "ca.pem";
/// File name of the certificate in a bundle.
pub const CERT_FILE: &str = "cert.pem";
/// File name of the private key in a bundle (mode 0600).
pub const KEY_FILE: &str = "key.pem";

/// Mode of a bundle directory created by [`write_bundle`].
const DIR_MODE: u32 = 0o700;
/// Mode of `ca.pem` and `cert.pem`.
const PUBLIC_MODE: u32 = 0o644;
/// Mode of `key.pem`.
const KEY_MODE: u32 = 0o600;
/// Bundle files larger than this are refused when reading.
const MAX_FILE: u64 = 1 << 20;

/// A client bundle read back by [`read_bundle`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Bundle {
    /// The CA certificate (`ca.pem`).
    pub ca_pem: String,
    /// The certificate and key (`cert.pem`, `key.pem`).
    pub issued: Issued,
}

/// Writes a client bundle into `dir`: `ca.pem` (the CA certificate),
/// `cert.pem` and `key.pem` (mode 0600), the files the docker CLI reads
/// with `--tlsverify` from `DOCKER_CERT_PATH` (or `--tlscacert`,
/// `--tlscert`, `--tlskey`).
///
/// `dir` is created with mode 0700 if it does not exist; an existing
/// directory keeps its mode. Without `force`, fails with
/// [`PkiError::Exists`] before writing anything if any of the three files
/// exists. With `force`, each file is replaced atomically (a temporary
/// file created with the final mode, fsynced, renamed over the old one).
pub fn write_bundle(dir: &Path, ca_pem: &str, issued: &Issued, force: bool) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| PkiError::io("create directory", dir, e))?;
    let files: [(&str, &[u8], u32); 3] = [
        (CA_FILE, ca_pem.as_bytes(), PUBLIC_MODE),
        (CERT_FILE, issued.cert_pem.as_bytes(), PUBLIC_MODE),
        (KEY_FILE, issued.key_pem.as_bytes(), KEY_MODE),
    ];
    if !force {
        for (name, _, _) in &files {
            let path = dir.join(name);
            match fs::symlink_metadata(&path) {
                Ok(_) => return Err(PkiError::Exists { path }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(PkiError::io("inspect", path, e)),
            }
        }
    }
    for (name, data, mode) in files {
        if force {
            replace_file(dir, name, data, mode)?;
        } else {
            create_file(&dir.join(name), data, mode)?;
        }
    }
    sync_dir(dir)
}

/// Reads a client bundle written by [`write_bundle`] (or by anything else
/// that uses the docker CLI's layout).
pub fn read_bundle(dir: &Path) -> Result<Bundle> {
    let ca_pem = read_small(&dir.join(CA_FILE))?;
    let cert_pem = read_small(&dir.join(CERT_FILE))?;
    let key_pem = Zeroizing::new(read_small(&dir.join(KEY_FILE))?);
    // Check the CA file holds exactly one certificate.
    crate::pem::one_cert("CA certificate", &ca_pem)?;
    Ok(Bundle {
        ca_pem,
        issued: Issued::from_pem(&cert_pem, &key_pem)?,
    })
}

fn read_small(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(|e| PkiError::io("open", path, e))?;
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| PkiError::io("read", path, e))?;
    if text.len() as u64 > MAX_FILE {
        return Err(PkiError::io(
            "read",
            path,
            io::Error::new(io::ErrorKind::InvalidData, "file is larger than 1 MiB"),
        ));
    }
    Ok(text)
}

/// Creates `path` (it must not exist) with exactly `mode`, writes and
/// fsyncs it.
fn create_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => PkiError::Exists {
                path: path.to_owned(),
            },
            _ => PkiError::io("create", path, e),
        })?;
    // The umask may have removed bits; set the mode exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| PkiError::io("set permissions on", path, e))?;
    file.write_all(data)
        .map_err(|e| PkiError::io("write", path, e))?;
    file.sync_all().map_err(|e| PkiError::io("sync", path, e))
}

/// Replaces `dir/name` atomically with a file of `mode` holding `data`.
fn replace_file(dir: &Path, name: &str, data: &[u8], mode: u32) -> Result<()> {
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(PkiError::Random)?;
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}", hex::encode(suffix)));
    let target = dir.join(name);
    let result = create_file(&tmp, data, mode)
        .and_then(|()| fs::rename(&tmp, &target).map_err(|e| PkiError::io("rename", &target, e)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| PkiError::io("sync directory", dir, e))
}
