//! Cryptography for lockbox: secret byte strings, the data-encryption key
//! ring, Swarm-compatible unlock keys and the on-disk key store.
//!
//! # Overview
//!
//! * [`SecretBytes`] holds secret values (zeroized on drop, redacted
//!   `Debug`/`Display`, constant-time equality, serde as a byte string).
//! * [`Keyring`] holds the data-encryption keys ([`Dek`]). The current DEK
//!   seals new records; older DEKs are kept only to open records written
//!   before a [`Keyring::rotate`], until [`Keyring::retire_old`].
//! * [`UnlockKey`] is the Docker Swarm autolock key (`SWMKEY-1-…`).
//! * [`KeyStore`] persists the key ring in the daemon's data directory,
//!   wrapped by a key-encryption key (KEK) that is either a random key in a
//!   `kek` file ([`Protection::KeyFile`]) or derived from the unlock key with
//!   Argon2id ([`Protection::Autolock`]).
//! * [`seal_backup`] / [`open_backup`] seal a backup file with a key derived
//!   from a passphrase (Argon2id, header `LBXBAK1`; layout in the `backup`
//!   module's source).
//!
//! # Sealed record format
//!
//! Every record produced by [`Keyring::seal`] (and every DEK wrapped by the
//! KEK in `keys.json`) has this layout:
//!
//! | offset | length | content                                              |
//! |-------:|-------:|------------------------------------------------------|
//! | 0      | 4      | magic `LBX1`                                         |
//! | 4      | 4      | key id, `u32` big-endian                             |
//! | 8      | 24     | random XChaCha20 nonce                               |
//! | 32     | n      | XChaCha20-Poly1305 ciphertext of the n-byte plaintext|
//! | 32 + n | 16     | Poly1305 tag                                         |
//!
//! The associated data given to the AEAD is the 8 header bytes (magic and key
//! id) followed by the caller's AAD. The caller's AAD binds a record to its
//! place (for example `b"raft-log:42"`), and authenticating the header means
//! that changing the key id is detected as tampering. The AAD itself is not
//! stored in the record. The 24-byte random nonce makes random nonces safe
//! for any practical number of records under one key.
//!
//! DEK ids start at 1. Records wrapped by the KEK use key id 0.
//!
//! Opening a record reports [`CryptoError::Truncated`] (shorter than the 48
//! byte minimum), [`CryptoError::BadMagic`], [`CryptoError::UnknownKey`] (the
//! key id is not in the ring) or [`CryptoError::Tampered`] (authentication
//! failed: wrong key, wrong AAD or modified bytes).
//!
//! # Example
//!
//! ```
//! use lockbox_crypto::{CryptoError, Keyring};
//!
//! let mut ring = Keyring::generate();
//! let sealed = ring.seal(b"raft-log:42", b"hunter2");
//! assert_eq!(&ring.open(b"raft-log:42", &sealed)?[..], b"hunter2");
//! assert!(matches!(ring.open(b"raft-log:43", &sealed), Err(CryptoError::Tampered)));
//!
//! ring.rotate();
//! assert_eq!(Keyring::key_id_of(&ring.seal(b"x", b"y"))?, 2);
//! assert_eq!(&ring.open(b"raft-log:42", &sealed)?[..], b"hunter2");
//! # Ok::<(), CryptoError>(())
//! ```
//!
//! No function in this crate puts key or plaintext bytes into an error
//! message or a `Debug` string.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backup;
mod error;
mod fsutil;
mod keyring;
mod keystore;
mod secret;
mod unlock;

pub use backup::{BACKUP_MAGIC, BackupKdf, is_backup, open_backup, seal_backup, seal_backup_with};
pub use error::CryptoError;
pub use keyring::{Dek, Keyring, SEALED_OVERHEAD, SEALED_PREFIX};
pub use keystore::{KeyStore, Protection};
pub use secret::SecretBytes;
pub use unlock::UnlockKey;

/// Fills `buf` with bytes from the operating system's random number
/// generator.
///
/// # Panics
///
/// Panics if the OS random number generator fails. There is no safe way to
/// continue generating keys or nonces without it.
pub(crate) fn fill_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        panic!("the operating system random number generator failed");
    }
}

/// Bytes of OS randomness fetched at once for [`fill_public_random`].
const PUBLIC_POOL: usize = 1024;

thread_local! {
    /// OS randomness not yet handed out, and how much of it is used.
    static POOL: std::cell::RefCell<([u8; PUBLIC_POOL], usize)> =
        const { std::cell::RefCell::new(([0; PUBLIC_POOL], PUBLIC_POOL)) };
}

/// Fills `buf` (at most [`PUBLIC_POOL`] bytes) with bytes from the operating system's random
/// number generator, for values that are not secret: nonces and object IDs. They are fetched a
/// kilobyte at a time, so a sealed record or a new ID costs no system call of its own (one
/// `getrandom` per record was ~4 % of a create's CPU). Keys and salts use [`fill_random`].
///
/// # Panics
///
/// Panics if the OS random number generator fails.
pub fn fill_public_random(buf: &mut [u8]) {
    assert!(
        buf.len() <= PUBLIC_POOL,
        "at most {PUBLIC_POOL} bytes at once"
    );
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let (bytes, used) = &mut *pool;
        if *used + buf.len() > PUBLIC_POOL {
            fill_random(bytes);
            *used = 0;
        }
        buf.copy_from_slice(&bytes[*used..*used + buf.len()]);
        // Handed-out bytes are not kept: the pool never gives the same bytes twice.
        bytes[*used..*used + buf.len()].fill(0);
        *used += buf.len();
    });
}

#[cfg(test)]
mod public_random_tests {
    use super::*;

    #[test]
    fn pooled_randomness_never_repeats_and_refills() {
        let mut seen = std::collections::HashSet::new();
        // Several refills of the pool, in pieces of the sizes used (IDs, nonces).
        for i in 0..(4 * PUBLIC_POOL / 20) {
            let mut b = vec![0u8; if i % 2 == 0 { 16 } else { 24 }];
            fill_public_random(&mut b);
            assert!(b.iter().any(|&x| x != 0));
            assert!(seen.insert(b), "a value repeated");
        }
        let mut whole = [0u8; PUBLIC_POOL];
        fill_public_random(&mut whole);
        assert!(whole.iter().filter(|&&x| x == 0).count() < PUBLIC_POOL / 16);
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    /// Asserts that neither the raw bytes, the `Debug` list of numbers nor the
    /// hex form of `key` appears in `text`.
    pub(crate) fn assert_no_key_bytes(text: &str, key: &[u8]) {
        let dec = format!("{key:?}");
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!text.contains(&dec[1..dec.len() - 1]), "{text}");
        assert!(!text.contains(&hex), "{text}");
        assert!(!text.as_bytes().windows(key.len()).any(|w| w == key));
    }
}
