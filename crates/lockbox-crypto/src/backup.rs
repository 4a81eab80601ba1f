//! Passphrase-sealed backup files (`lockbox swarm backup`).
//!
//! A backup holds every secret value of a swarm, so it is sealed with a key derived from an
//! operator's passphrase with Argon2id and a fresh random salt. The file is a small header
//! followed by one sealed record (the crate's `LBX1` format, key id 0):
//!
//! | offset  | length | content                                                   |
//! |--------:|-------:|-----------------------------------------------------------|
//! | 0       | 7      | magic `LBXBAK1` (the trailing `1` is the format version)  |
//! | 7       | 1      | KDF: `1` = Argon2id, version 0x13                         |
//! | 8       | 4      | `m_cost` in KiB, `u32` big-endian                         |
//! | 12      | 4      | `t_cost` (passes), `u32` big-endian                       |
//! | 16      | 4      | `p_cost` (lanes), `u32` big-endian                        |
//! | 20      | 1      | salt length `s` (16..=64)                                 |
//! | 21      | s      | salt                                                      |
//! | 21 + s  | rest   | sealed record: `LBX1`, key id 0, 24-byte XChaCha20 nonce, |
//! |         |        | ciphertext, 16-byte Poly1305 tag                          |
//!
//! The associated data of the record is `lockbox-backup:` followed by the whole header
//! (bytes `0..21 + s`), so a changed magic, KDF parameter or salt fails authentication just as
//! a changed ciphertext does. Parameters are range-checked before any key is derived, so a
//! crafted header cannot make the reader allocate gigabytes. A wrong passphrase and altered
//! bytes are indistinguishable: both give [`CryptoError::Tampered`].

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::keyring::{KEK_ID, KEY_LEN, MIN_SEALED_LEN, RawKey, open_raw, seal_raw};
use crate::{CryptoError, fill_random};

/// The magic at the start of every backup file.
pub const BACKUP_MAGIC: &[u8; 7] = b"LBXBAK1";
/// The KDF id of Argon2id v0x13.
const KDF_ARGON2ID: u8 = 1;
/// Bytes before the salt: magic, KDF id, three costs, salt length.
const FIXED_HEADER_LEN: usize = 7 + 1 + 4 + 4 + 4 + 1;
/// Salt length when writing.
const SALT_LEN: usize = 16;
/// Accepted ranges when reading.
const SALT_LEN_RANGE: std::ops::RangeInclusive<usize> = 16..=64;
const M_COST_RANGE: std::ops::RangeInclusive<u32> = 8 * 1024..=1024 * 1024;
const T_COST_RANGE: std::ops::RangeInclusive<u32> = 1..=16;
const P_COST_RANGE: std::ops::RangeInclusive<u32> = 1..=16;
/// Domain separation of the record's associated data.
const AAD_PREFIX: &[u8] = b"lockbox-backup:";

/// Argon2id cost parameters of a backup file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupKdf {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for BackupKdf {
    /// RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes. A backup is written and
    /// read rarely, so it affords more than the unlock key's parameters (the unlock key is
    /// random; a passphrase is chosen by a person).
    fn default() -> Self {
        BackupKdf {
            m_cost: 64 * 1024,
            t_cost: 3,
            p_cost: 4,
        }
    }
}

impl BackupKdf {
    fn check(&self) -> Result<(), CryptoError> {
        for (name, value, range) in [
            ("m_cost", self.m_cost, &M_COST_RANGE),
            ("t_cost", self.t_cost, &T_COST_RANGE),
            ("p_cost", self.p_cost, &P_COST_RANGE),
        ] {
            if !range.contains(&value) {
                return Err(CryptoError::corrupt(format!(
                    "backup header: KDF {name} {value} is outside {}..={}",
                    range.start(),
                    range.end()
                )));
            }
        }
        if self.m_cost < 8 * self.p_cost {
            return Err(CryptoError::corrupt(
                "backup header: KDF m_cost is too small for p_cost",
            ));
        }
        Ok(())
    }

    fn derive(&self, passphrase: &[u8], salt: &[u8]) -> Result<RawKey, CryptoError> {
        let params = Params::new(self.m_cost, self.t_cost, self.p_cost, Some(KEY_LEN))
            .map_err(|_| CryptoError::corrupt("backup header: invalid KDF parameters"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        argon
            .hash_password_into(passphrase, salt, &mut key[..])
            .map_err(|_| CryptoError::corrupt("backup: key derivation failed"))?;
        Ok(key)
    }
}

fn header(kdf: &BackupKdf, salt: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(FIXED_HEADER_LEN + salt.len());
    h.extend_from_slice(BACKUP_MAGIC);
    h.push(KDF_ARGON2ID);
    h.extend_from_slice(&kdf.m_cost.to_be_bytes());
    h.extend_from_slice(&kdf.t_cost.to_be_bytes());
    h.extend_from_slice(&kdf.p_cost.to_be_bytes());
    // SALT_LEN_RANGE ends at 64, so the length fits a byte.
    h.push(u8::try_from(salt.len()).unwrap_or(u8::MAX));
    h.extend_from_slice(salt);
    h
}

fn aad(header: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(AAD_PREFIX.len() + header.len());
    a.extend_from_slice(AAD_PREFIX);
    a.extend_from_slice(header);
    a
}

/// Seals `plaintext` into a backup file with a key derived from `passphrase` (Argon2id with
/// the default [`BackupKdf`] and a fresh random salt).
pub fn seal_backup(passphrase: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    seal_backup_with(passphrase, plaintext, BackupKdf::default())
}

/// [`seal_backup`] with explicit KDF costs (within the ranges a reader accepts).
pub fn seal_backup_with(
    passphrase: &[u8],
    plaintext: &[u8],
    kdf: BackupKdf,
) -> Result<Vec<u8>, CryptoError> {
    if passphrase.is_empty() {
        return Err(CryptoError::EmptyPassphrase);
    }
    kdf.check()?;
    let mut salt = [0u8; SALT_LEN];
    fill_random(&mut salt);
    let key = kdf.derive(passphrase, &salt)?;
    let header = header(&kdf, &salt);
    let sealed = seal_raw(&key, KEK_ID, &aad(&header), plaintext);
    let mut out = header;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a backup file sealed by [`seal_backup`].
///
/// Errors: [`CryptoError::BadMagic`] when the file is not a backup,
/// [`CryptoError::Corrupt`] when its header is truncated or out of range, and
/// [`CryptoError::Tampered`] when the passphrase is wrong or any byte was changed.
pub fn open_backup(passphrase: &[u8], file: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if passphrase.is_empty() {
        return Err(CryptoError::EmptyPassphrase);
    }
    let (header, kdf, salt, sealed) = parse(file)?;
    let key = kdf.derive(passphrase, salt)?;
    open_raw(&key, KEK_ID, &aad(header), sealed).map_err(|e| match e {
        // The record's own header is inside the file too: anything wrong there is damage.
        CryptoError::BadMagic | CryptoError::UnknownKey(_) | CryptoError::Truncated => {
            CryptoError::Tampered
        }
        other => other,
    })
}

/// Whether `file` starts like a backup file (its magic), without checking anything else.
pub fn is_backup(file: &[u8]) -> bool {
    file.starts_with(BACKUP_MAGIC)
}

type Parsed<'a> = (&'a [u8], BackupKdf, &'a [u8], &'a [u8]);

fn parse(file: &[u8]) -> Result<Parsed<'_>, CryptoError> {
    if !is_backup(file) {
        return Err(CryptoError::BadMagic);
    }
    if file.len() < FIXED_HEADER_LEN {
        return Err(CryptoError::corrupt("backup header is truncated"));
    }
    if file[7] != KDF_ARGON2ID {
        return Err(CryptoError::corrupt(format!(
            "backup header: unknown KDF {}",
            file[7]
        )));
    }
    let word = |at: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&file[at..at + 4]);
        u32::from_be_bytes(w)
    };
    let kdf = BackupKdf {
        m_cost: word(8),
        t_cost: word(12),
        p_cost: word(16),
    };
    kdf.check()?;
    let salt_len = usize::from(file[20]);
    if !SALT_LEN_RANGE.contains(&salt_len) {
        return Err(CryptoError::corrupt(format!(
            "backup header: salt length {salt_len} is outside {}..={}",
            SALT_LEN_RANGE.start(),
            SALT_LEN_RANGE.end()
        )));
    }
    let header_len = FIXED_HEADER_LEN + salt_len;
    if file.len() < header_len + MIN_SEALED_LEN {
        return Err(CryptoError::corrupt("backup file is truncated"));
    }
    let (header, sealed) = file.split_at(header_len);
    Ok((header, kdf, &header[FIXED_HEADER_LEN..], sealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters so the tests stay fast (the smallest a reader accepts).
    const FAST: BackupKdf = BackupKdf {
        m_cost: 8 * 1024,
        t_cost: 1,
        p_cost: 1,
    };

    const PLAIN: &[u8] = b"LBXS state with secret value hunter2-very-secret";

    #[test]
    fn round_trip_and_layout() {
        let file = seal_backup_with(b"correct horse", PLAIN, FAST).unwrap();
        assert!(file.starts_with(b"LBXBAK1\x01"));
        assert_eq!(&file[8..12], &(8u32 * 1024).to_be_bytes());
        assert_eq!(file[20], 16);
        assert_eq!(&file[37..41], b"LBX1");
        assert_eq!(file.len(), 37 + MIN_SEALED_LEN + PLAIN.len());
        // No plaintext in the file.
        assert!(!file.windows(7).any(|w| w == b"hunter2"));
        let back = open_backup(b"correct horse", &file).unwrap();
        assert_eq!(&back[..], PLAIN);
        // Fresh salt and nonce every time.
        let again = seal_backup_with(b"correct horse", PLAIN, FAST).unwrap();
        assert_ne!(file[21..37], again[21..37]);
        assert_ne!(file, again);
    }

    #[test]
    fn default_parameters_round_trip() {
        let file = seal_backup(b"pass phrase", b"x").unwrap();
        assert_eq!(&file[8..12], &(64u32 * 1024).to_be_bytes());
        assert_eq!(&open_backup(b"pass phrase", &file).unwrap()[..], b"x");
    }

    #[test]
    fn wrong_passphrase_is_refused() {
        let file = seal_backup_with(b"correct horse", PLAIN, FAST).unwrap();
        assert!(matches!(
            open_backup(b"correct hors", &file),
            Err(CryptoError::Tampered)
        ));
        assert!(matches!(
            open_backup(b"", &file),
            Err(CryptoError::EmptyPassphrase)
        ));
        assert!(matches!(
            seal_backup_with(b"", PLAIN, FAST),
            Err(CryptoError::EmptyPassphrase)
        ));
    }

    #[test]
    fn every_altered_byte_is_detected() {
        let file = seal_backup_with(b"pw", PLAIN, FAST).unwrap();
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            let e = open_backup(b"pw", &bad).expect_err("altered byte accepted");
            assert!(
                matches!(
                    e,
                    CryptoError::Tampered | CryptoError::Corrupt(_) | CryptoError::BadMagic
                ),
                "byte {i}: {e:?}"
            );
        }
    }

    #[test]
    fn truncated_and_extended_files_are_refused() {
        let file = seal_backup_with(b"pw", PLAIN, FAST).unwrap();
        for len in [0, 3, 7, 20, 21, 36, 37, 60, file.len() - 1] {
            assert!(open_backup(b"pw", &file[..len]).is_err(), "length {len}");
        }
        let mut longer = file.clone();
        longer.push(0);
        assert!(matches!(
            open_backup(b"pw", &longer),
            Err(CryptoError::Tampered)
        ));
        assert!(matches!(
            open_backup(b"pw", b"not a backup at all"),
            Err(CryptoError::BadMagic)
        ));
    }

    #[test]
    fn oversized_parameters_are_refused_before_deriving() {
        let mut file = seal_backup_with(b"pw", PLAIN, FAST).unwrap();
        // 4 TiB of memory: refused by the range check, not attempted.
        file[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        let e = open_backup(b"pw", &file).unwrap_err();
        assert!(e.to_string().contains("m_cost"), "{e}");
        assert!(seal_backup_with(b"pw", PLAIN, BackupKdf { t_cost: 0, ..FAST }).is_err());
    }

    #[test]
    fn errors_name_no_secret() {
        let file = seal_backup_with(b"s3cr3t-pass", PLAIN, FAST).unwrap();
        let e = open_backup(b"other", &file).unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(
            !text.contains("s3cr3t") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
