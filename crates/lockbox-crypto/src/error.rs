//! The error type of this crate.

use std::path::PathBuf;

/// Errors from sealing, opening and key storage.
///
/// Messages never contain key bytes, plaintext or unlock keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The sealed record is shorter than a header, nonce and tag.
    #[error("sealed record is truncated")]
    Truncated,
    /// The sealed record does not start with the `LBX1` magic.
    #[error("sealed record has a bad magic number (not a lockbox record)")]
    BadMagic,
    /// The sealed record names a key id that is not in the key ring.
    #[error("sealed record uses unknown key id {0}")]
    UnknownKey(u32),
    /// Authentication failed: wrong key, wrong associated data or modified
    /// bytes.
    #[error("authentication failed: wrong key, wrong associated data or modified data")]
    Tampered,
    /// The unlock key string has no `SWMKEY-1-` prefix or is not valid
    /// unpadded standard base64 (the Docker API answers 400 "invalid key
    /// string").
    #[error("invalid key string")]
    InvalidUnlockKey,
    /// The key store is protected by an unlock key (autolock) and must be
    /// opened with [`KeyStore::unlock`](crate::KeyStore::unlock).
    #[error(
        "Swarm is encrypted and needs to be unlocked before it can be used. \
         Please use \"docker swarm unlock\" to unlock it."
    )]
    Locked,
    /// [`KeyStore::unlock`](crate::KeyStore::unlock) was called but the key
    /// store is not autolocked.
    #[error("swarm is not locked")]
    NotLocked,
    /// The unlock key does not open the key store.
    #[error("swarm could not be unlocked: invalid key provided")]
    WrongUnlockKey,
    /// The keys file does not exist.
    #[error("key store not found")]
    NotFound,
    /// A backup passphrase is empty.
    #[error("the backup passphrase is empty")]
    EmptyPassphrase,
    /// A key store file is malformed or inconsistent. The message describes
    /// what is wrong and never contains secret material.
    #[error("key store is corrupt: {0}")]
    Corrupt(String),
    /// An I/O error while reading or writing the key store.
    #[error("could not {op} {}", path.display())]
    Io {
        /// What was being done ("read", "write", "rename", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl CryptoError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CryptoError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(msg: impl Into<String>) -> Self {
        CryptoError::Corrupt(msg.into())
    }
}
