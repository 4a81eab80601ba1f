//! Default locations: system paths as root, XDG paths otherwise.

use std::path::PathBuf;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Default data directory.
pub(crate) fn data_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/lockbox");
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(d).join("lockbox");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/lockbox"),
        None => PathBuf::from(format!(
            "/tmp/lockbox-{}/data",
            rustix::process::getuid().as_raw()
        )),
    }
}

/// Default socket path.
pub(crate) fn socket() -> PathBuf {
    if is_root() {
        return PathBuf::from("/run/lockbox/lockbox.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("lockbox/lockbox.sock"),
        None => PathBuf::from(format!(
            "/tmp/lockbox-{}/lockbox.sock",
            rustix::process::getuid().as_raw()
        )),
    }
}

/// Default daemon address for the CLI.
pub(crate) fn default_host() -> String {
    format!("unix://{}", socket().display())
}
