//! [`KeyStore`]: the key ring on disk, wrapped by a key-encryption key.
//!
//! # Files (in the daemon's data directory, all mode 0600)
//!
//! `keys.json`:
//!
//! ```json
//! {
//!   "version": 1,
//!   "protection": "autolock",
//!   "kdf": {"algorithm": "argon2id", "salt": "<b64>", "m_cost": 19456, "t_cost": 2, "p_cost": 1},
//!   "current": 2,
//!   "deks": [{"id": 1, "wrapped": "<b64 sealed>"}, {"id": 2, "wrapped": "<b64 sealed>"}],
//!   "mac": "<b64 sealed>"
//! }
//! ```
//!
//! * `protection` is `"key-file"` or `"autolock"`; `kdf` is present only for
//!   `"autolock"`.
//! * Each `wrapped` value is a sealed record (see the crate docs) of the
//!   32-byte DEK under the KEK, key id 0, AAD `b"lockbox-dek:" + id` in
//!   decimal.
//! * `mac` is a sealed record under the KEK with an empty plaintext, whose
//!   AAD is a canonical description of the protection, KDF parameters,
//!   `current` and the list of DEK ids. It detects changes to `current` and
//!   removal of DEKs, which the per-DEK wrapping alone would not.
//! * Base64 in `keys.json` is the standard alphabet with padding.
//!
//! `kek` (key-file protection only): 32 random bytes. Switching to autolock
//! overwrites it with zeros, fsyncs and unlinks it; switching back creates a
//! new one.
//!
//! With autolock the KEK is Argon2id(unlock key bytes, salt) with the
//! parameters recorded in the file; a fresh salt is drawn at every
//! [`KeyStore::create`]. Parameters are range-checked before use.
//!
//! Every file is written atomically (temporary file created 0600 in the same
//! directory, fsync, rename, fsync of the directory).
//!
//! # Crash safety of re-wrapping
//!
//! In key-file mode an existing valid `kek` is reused, so a crash between
//! writing the two files can never leave `keys.json` wrapped under a `kek`
//! that is gone. A new `kek` is only written when the current `keys.json`
//! does not depend on it (autolock, absent, or the old `kek` is unusable),
//! and it is written before `keys.json`. When switching to autolock,
//! `keys.json` is replaced before the `kek` is wiped.

use std::fmt;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::fsutil::{
    atomic_write, ensure_dir, read_bounded, remove_stale_temps, sync_dir, wipe_and_remove,
};
use crate::keyring::{
    Dek, KEK_ID, KEY_LEN, MAX_DEK_ID, MIN_SEALED_LEN, RawKey, open_raw, random_key, seal_raw,
};
use crate::{CryptoError, Keyring, UnlockKey, fill_random};

const KEYS_FILE: &str = "keys.json";
const KEK_FILE: &str = "kek";
const FORMAT_VERSION: u32 = 1;
/// Refuse larger `keys.json` files.
const MAX_KEYS_FILE_LEN: u64 = 1024 * 1024;
/// Refuse more DEKs than this.
const MAX_DEKS: usize = 4096;
const WRAPPED_DEK_LEN: usize = MIN_SEALED_LEN + KEY_LEN;

const KDF_ALGORITHM: &str = "argon2id";
const SALT_LEN: usize = 16;
/// Argon2id parameters used when writing (m_cost in KiB).
const M_COST: u32 = 19456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
/// Accepted ranges when reading.
const SALT_LEN_RANGE: std::ops::RangeInclusive<usize> = 16..=64;
const M_COST_RANGE: std::ops::RangeInclusive<u32> = 8 * 1024..=1024 * 1024;
const T_COST_RANGE: std::ops::RangeInclusive<u32> = 1..=16;
const P_COST_RANGE: std::ops::RangeInclusive<u32> = 1..=16;

/// How the DEKs are protected on disk.
#[derive(Clone, Copy, Debug)]
pub enum Protection<'a> {
    /// The KEK is a random key stored next to `keys.json` in the `kek` file.
    KeyFile,
    /// The KEK is derived from the unlock key with Argon2id; nothing that
    /// opens the DEKs is stored on disk.
    Autolock(&'a UnlockKey),
}

/// The key file store in a data directory.
#[derive(Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore").field("dir", &self.dir).finish()
    }
}

// ---------------------------------------------------------------------------
// On-disk JSON.

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    version: u32,
    protection: ProtectionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kdf: Option<KdfJson>,
    current: u32,
    deks: Vec<WrappedDekJson>,
    mac: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
enum ProtectionKind {
    KeyFile,
    Autolock,
}

impl ProtectionKind {
    fn as_str(self) -> &'static str {
        match self {
            ProtectionKind::KeyFile => "key-file",
            ProtectionKind::Autolock => "autolock",
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfJson {
    algorithm: String,
    salt: String,
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrappedDekJson {
    id: u32,
    wrapped: String,
}

#[derive(Deserialize)]
struct VersionProbe {
    version: u32,
}

// ---------------------------------------------------------------------------
// Validated contents of keys.json.

/// Validated Argon2id parameters.
struct Kdf {
    salt: Vec<u8>,
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
}

impl Kdf {
    fn fresh() -> Kdf {
        let mut salt = vec![0u8; SALT_LEN];
        fill_random(&mut salt);
        Kdf {
            salt,
            m_cost: M_COST,
            t_cost: T_COST,
            p_cost: P_COST,
        }
    }

    fn from_json(j: &KdfJson) -> Result<Kdf, CryptoError> {
        if j.algorithm != KDF_ALGORITHM {
            return Err(CryptoError::corrupt(
                "keys.json: unsupported KDF algorithm (expected argon2id)",
            ));
        }
        let salt = B64
            .decode(&j.salt)
            .map_err(|_| CryptoError::corrupt("keys.json: KDF salt is not valid base64"))?;
        if !SALT_LEN_RANGE.contains(&salt.len()) {
            return Err(CryptoError::corrupt(format!(
                "keys.json: KDF salt length {} is outside {}..={}",
                salt.len(),
                SALT_LEN_RANGE.start(),
                SALT_LEN_RANGE.end()
            )));
        }
        for (name, value, range) in [
            ("m_cost", j.m_cost, &M_COST_RANGE),
            ("t_cost", j.t_cost, &T_COST_RANGE),
            ("p_cost", j.p_cost, &P_COST_RANGE),
        ] {
            if !range.contains(&value) {
                return Err(CryptoError::corrupt(format!(
                    "keys.json: KDF {name} {value} is outside {}..={}",
                    range.start(),
                    range.end()
                )));
            }
        }
        if j.m_cost < 8 * j.p_cost {
            return Err(CryptoError::corrupt(
                "keys.json: KDF m_cost is too small for p_cost",
            ));
        }
        Ok(Kdf {
            salt,
            m_cost: j.m_cost,
            t_cost: j.t_cost,
            p_cost: j.p_cost,
        })
    }

    fn to_json(&self) -> KdfJson {
        KdfJson {
            algorithm: KDF_ALGORITHM.to_string(),
            salt: B64.encode(&self.salt),
            m_cost: self.m_cost,
            t_cost: self.t_cost,
            p_cost: self.p_cost,
        }
    }

    /// Argon2id(unlock key, salt) → KEK.
    fn derive(&self, key: &UnlockKey) -> Result<RawKey, CryptoError> {
        let params = Params::new(self.m_cost, self.t_cost, self.p_cost, Some(KEY_LEN))
            .map_err(|_| CryptoError::corrupt("keys.json: invalid KDF parameters"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut kek = Zeroizing::new([0u8; KEY_LEN]);
        argon
            .hash_password_into(key.bytes(), &self.salt, &mut kek[..])
            .map_err(|_| CryptoError::corrupt("keys.json: key derivation failed"))?;
        Ok(kek)
    }
}

/// `keys.json` after structural validation (nothing decrypted yet).
struct Loaded {
    protection: ProtectionKind,
    kdf: Option<Kdf>,
    current: u32,
    /// (id, sealed wrapped DEK), ids strictly ascending.
    deks: Vec<(u32, Vec<u8>)>,
    mac: Vec<u8>,
}

fn dek_aad(id: u32) -> Vec<u8> {
    format!("lockbox-dek:{id}").into_bytes()
}

/// The AAD of the `mac` record: everything in `keys.json` that is not
/// already authenticated by the wrapped DEKs themselves.
fn manifest_aad(
    protection: ProtectionKind,
    kdf: Option<&Kdf>,
    current: u32,
    ids: impl Iterator<Item = u32>,
) -> Vec<u8> {
    let kdf = match kdf {
        None => "none".to_string(),
        Some(k) => format!(
            "{KDF_ALGORITHM},salt={},m_cost={},t_cost={},p_cost={}",
            B64.encode(&k.salt),
            k.m_cost,
            k.t_cost,
            k.p_cost
        ),
    };
    let ids: Vec<String> = ids.map(|i| i.to_string()).collect();
    format!(
        "lockbox-keys-manifest:v{FORMAT_VERSION}\nprotection={}\nkdf={kdf}\ncurrent={current}\ndeks={}",
        protection.as_str(),
        ids.join(",")
    )
    .into_bytes()
}

fn json_error(e: &serde_json::Error) -> CryptoError {
    // keys.json holds no secret material (only wrapped keys and a salt), so
    // serde's description is safe to show; keep it short anyway.
    let mut msg = e.to_string();
    if msg.len() > 200 {
        let mut end = 200;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        msg.truncate(end);
    }
    CryptoError::corrupt(format!("keys.json is not valid: {msg}"))
}

fn parse_keys_file(bytes: &[u8]) -> Result<Loaded, CryptoError> {
    let probe: VersionProbe = serde_json::from_slice(bytes).map_err(|e| json_error(&e))?;
    if probe.version != FORMAT_VERSION {
        return Err(CryptoError::corrupt(format!(
            "keys.json has unsupported version {}",
            probe.version
        )));
    }
    let file: KeysFile = serde_json::from_slice(bytes).map_err(|e| json_error(&e))?;

    let kdf = match (file.protection, &file.kdf) {
        (ProtectionKind::KeyFile, None) => None,
        (ProtectionKind::Autolock, Some(k)) => Some(Kdf::from_json(k)?),
        (ProtectionKind::KeyFile, Some(_)) => {
            return Err(CryptoError::corrupt(
                "keys.json: key-file protection must not have KDF parameters",
            ));
        }
        (ProtectionKind::Autolock, None) => {
            return Err(CryptoError::corrupt(
                "keys.json: autolock protection without KDF parameters",
            ));
        }
    };

    if file.deks.is_empty() {
        return Err(CryptoError::corrupt("keys.json has no DEKs"));
    }
    if file.deks.len() > MAX_DEKS {
        return Err(CryptoError::corrupt(format!(
            "keys.json has too many DEKs ({})",
            file.deks.len()
        )));
    }
    let mut deks = Vec::with_capacity(file.deks.len());
    let mut prev = 0u32;
    for d in &file.deks {
        if d.id == 0 || d.id > MAX_DEK_ID {
            return Err(CryptoError::corrupt(format!(
                "keys.json: DEK id {} is out of range",
                d.id
            )));
        }
        if d.id <= prev {
            return Err(CryptoError::corrupt(
                "keys.json: DEK ids are not strictly ascending",
            ));
        }
        prev = d.id;
        let wrapped = B64.decode(&d.wrapped).map_err(|_| {
            CryptoError::corrupt(format!(
                "keys.json: wrapped DEK {} is not valid base64",
                d.id
            ))
        })?;
        if wrapped.len() != WRAPPED_DEK_LEN {
            return Err(CryptoError::corrupt(format!(
                "keys.json: wrapped DEK {} has length {}, expected {WRAPPED_DEK_LEN}",
                d.id,
                wrapped.len()
            )));
        }
        deks.push((d.id, wrapped));
    }
    if !deks.iter().any(|(id, _)| *id == file.current) {
        return Err(CryptoError::corrupt(format!(
            "keys.json: current DEK id {} is not in the DEK list",
            file.current
        )));
    }
    let mac = B64
        .decode(&file.mac)
        .map_err(|_| CryptoError::corrupt("keys.json: mac is not valid base64"))?;
    if mac.len() != MIN_SEALED_LEN {
        return Err(CryptoError::corrupt("keys.json: mac has the wrong length"));
    }
    Ok(Loaded {
        protection: file.protection,
        kdf,
        current: file.current,
        deks,
        mac,
    })
}

/// Serialises `keyring` wrapped under `kek`.
fn build_keys_file(
    keyring: &Keyring,
    kek: &[u8; KEY_LEN],
    protection: ProtectionKind,
    kdf: Option<&Kdf>,
) -> Result<Vec<u8>, CryptoError> {
    let deks = keyring.deks();
    let mac = seal_raw(
        kek,
        KEK_ID,
        &manifest_aad(
            protection,
            kdf,
            keyring.current_id(),
            deks.iter().map(|d| d.id()),
        ),
        b"",
    );
    let file = KeysFile {
        version: FORMAT_VERSION,
        protection,
        kdf: kdf.map(Kdf::to_json),
        current: keyring.current_id(),
        deks: deks
            .iter()
            .map(|d| WrappedDekJson {
                id: d.id(),
                wrapped: B64.encode(seal_raw(kek, KEK_ID, &dek_aad(d.id()), d.key())),
            })
            .collect(),
        mac: B64.encode(mac),
    };
    let mut out = serde_json::to_vec_pretty(&file)
        .map_err(|e| CryptoError::corrupt(format!("could not encode keys.json: {e}")))?;
    out.push(b'\n');
    Ok(out)
}

/// Opens every wrapped DEK and checks the manifest. `wrong_key` is the error
/// for "the KEK opens nothing" (a wrong unlock key in autolock mode).
fn unwrap_keyring(
    loaded: &Loaded,
    kek: &[u8; KEY_LEN],
    wrong_key: fn() -> CryptoError,
) -> Result<Keyring, CryptoError> {
    let aad = manifest_aad(
        loaded.protection,
        loaded.kdf.as_ref(),
        loaded.current,
        loaded.deks.iter().map(|(id, _)| *id),
    );
    let mac_ok = match open_raw(kek, KEK_ID, &aad, &loaded.mac) {
        Ok(pt) => pt.is_empty(),
        Err(CryptoError::Tampered) => false,
        Err(_) => return Err(CryptoError::corrupt("keys.json: mac is malformed")),
    };

    let mut current = None;
    let mut others = Vec::with_capacity(loaded.deks.len());
    for (id, wrapped) in &loaded.deks {
        let key = match open_raw(kek, KEK_ID, &dek_aad(*id), wrapped) {
            Ok(pt) => pt,
            Err(CryptoError::Tampered) => {
                // Neither the manifest nor the first DEK opens: the KEK is
                // wrong, not the data.
                return Err(if !mac_ok && current.is_none() && others.is_empty() {
                    wrong_key()
                } else {
                    CryptoError::Tampered
                });
            }
            Err(_) => {
                return Err(CryptoError::corrupt(format!(
                    "keys.json: wrapped DEK {id} is malformed"
                )));
            }
        };
        if key.len() != KEY_LEN {
            return Err(CryptoError::corrupt(format!(
                "keys.json: DEK {id} has the wrong length"
            )));
        }
        let mut raw: RawKey = Zeroizing::new([0u8; KEY_LEN]);
        raw.copy_from_slice(&key);
        let dek = Dek::from_parts(*id, raw);
        if *id == loaded.current {
            current = Some(dek);
        } else {
            others.push(dek);
        }
    }
    if !mac_ok {
        return Err(CryptoError::Tampered);
    }
    let current = current.ok_or_else(|| CryptoError::corrupt("keys.json: current DEK missing"))?;
    Ok(Keyring::from_parts(current, others))
}

impl KeyStore {
    /// A key store in `dir` (the daemon data directory). Nothing is read or
    /// written until a method is called.
    pub fn new(dir: impl Into<PathBuf>) -> KeyStore {
        KeyStore { dir: dir.into() }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn keys_path(&self) -> PathBuf {
        self.dir.join(KEYS_FILE)
    }

    fn kek_path(&self) -> PathBuf {
        self.dir.join(KEK_FILE)
    }

    /// Whether the keys file is present.
    pub fn exists(&self) -> bool {
        self.keys_path().exists()
    }

    /// Reads and validates `keys.json` (without decrypting anything).
    fn load(&self) -> Result<Loaded, CryptoError> {
        let bytes = read_bounded(&self.keys_path(), MAX_KEYS_FILE_LEN, KEYS_FILE)?
            .ok_or(CryptoError::NotFound)?;
        parse_keys_file(&bytes)
    }

    /// Reads the `kek` file: `None` if absent, `Corrupt` if not 32 bytes.
    fn read_kek(&self) -> Result<Option<RawKey>, CryptoError> {
        let Some(bytes) = read_bounded(&self.kek_path(), KEY_LEN as u64, KEK_FILE)? else {
            return Ok(None);
        };
        if bytes.len() != KEY_LEN {
            return Err(CryptoError::corrupt("kek file has the wrong length"));
        }
        let mut kek = Zeroizing::new([0u8; KEY_LEN]);
        kek.copy_from_slice(&bytes);
        Ok(Some(kek))
    }

    /// Whether the keys file says the store is autolocked (protected by an
    /// unlock key).
    pub fn is_autolocked(&self) -> Result<bool, CryptoError> {
        Ok(self.load()?.protection == ProtectionKind::Autolock)
    }

    /// Writes `keyring` to disk under `protection`, replacing any existing
    /// keys file. Also used to re-wrap: after [`Keyring::rotate`] or
    /// [`Keyring::retire_old`], to rotate the unlock key, or to switch
    /// autolock on or off. Creates the directory (mode 0700) if needed.
    pub fn create(&self, keyring: &Keyring, protection: Protection<'_>) -> Result<(), CryptoError> {
        ensure_dir(&self.dir)?;
        self.remove_stale_temps()?;
        match protection {
            Protection::KeyFile => {
                let kek = self.kek_for_key_file_mode()?;
                let data = build_keys_file(keyring, &kek, ProtectionKind::KeyFile, None)?;
                atomic_write(&self.dir, KEYS_FILE, &data)
            }
            Protection::Autolock(unlock_key) => {
                let kdf = Kdf::fresh();
                let kek = kdf.derive(unlock_key)?;
                let data = build_keys_file(keyring, &kek, ProtectionKind::Autolock, Some(&kdf))?;
                atomic_write(&self.dir, KEYS_FILE, &data)?;
                wipe_and_remove(&self.dir, &self.kek_path())
            }
        }
    }

    /// The KEK to use for a key-file mode write: the existing `kek` if it is
    /// valid and the current `keys.json` may depend on it, otherwise a new
    /// one, written (before `keys.json`) to the `kek` file.
    fn kek_for_key_file_mode(&self) -> Result<RawKey, CryptoError> {
        let autolocked = matches!(self.is_autolocked(), Ok(true));
        if !autolocked {
            // An unreadable or wrong-length kek cannot open anything, so
            // replacing it loses nothing.
            match self.read_kek() {
                Ok(Some(kek)) => return Ok(kek),
                Ok(None) | Err(CryptoError::Corrupt(_)) => {}
                // Do not replace a kek we merely failed to read.
                Err(e) => return Err(e),
            }
        }
        let kek = random_key();
        atomic_write(&self.dir, KEK_FILE, &kek[..])?;
        Ok(kek)
    }

    /// Opens a key-file protected store. An autolocked store gives
    /// [`CryptoError::Locked`].
    pub fn open(&self) -> Result<Keyring, CryptoError> {
        let loaded = self.load()?;
        match loaded.protection {
            ProtectionKind::Autolock => Err(CryptoError::Locked),
            ProtectionKind::KeyFile => {
                let kek = self.read_kek()?.ok_or_else(|| {
                    CryptoError::corrupt("keys.json uses key-file protection but kek is missing")
                })?;
                unwrap_keyring(&loaded, &kek, || CryptoError::Tampered)
            }
        }
    }

    /// Opens an autolocked store with its unlock key. A wrong key gives
    /// [`CryptoError::WrongUnlockKey`]; a store that is not autolocked gives
    /// [`CryptoError::NotLocked`].
    pub fn unlock(&self, key: &UnlockKey) -> Result<Keyring, CryptoError> {
        let loaded = self.load()?;
        match (&loaded.protection, &loaded.kdf) {
            (ProtectionKind::Autolock, Some(kdf)) => {
                let kek = kdf.derive(key)?;
                unwrap_keyring(&loaded, &kek, || CryptoError::WrongUnlockKey)
            }
            (ProtectionKind::Autolock, None) => Err(CryptoError::corrupt(
                "keys.json: autolock protection without KDF parameters",
            )),
            (ProtectionKind::KeyFile, _) => Err(CryptoError::NotLocked),
        }
    }

    /// Deletes the keys file and the kek file (both overwritten with zeros
    /// first). Missing files are not an error.
    pub fn remove(&self) -> Result<(), CryptoError> {
        if !self.dir.exists() {
            return Ok(());
        }
        self.remove_stale_temps()?;
        wipe_and_remove(&self.dir, &self.kek_path())?;
        wipe_and_remove(&self.dir, &self.keys_path())?;
        sync_dir(&self.dir)
    }

    fn remove_stale_temps(&self) -> Result<(), CryptoError> {
        remove_stale_temps(&self.dir, KEK_FILE)?;
        remove_stale_temps(&self.dir, KEYS_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::assert_no_key_bytes;
    use std::os::unix::fs::PermissionsExt;

    fn store() -> (tempfile::TempDir, KeyStore) {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::new(dir.path().join("data"));
        (dir, ks)
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn read_json(ks: &KeyStore) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(ks.keys_path()).unwrap()).unwrap()
    }

    fn write_json(ks: &KeyStore, v: &serde_json::Value) {
        std::fs::write(ks.keys_path(), serde_json::to_vec(v).unwrap()).unwrap();
    }

    fn same_keys(a: &Keyring, b: &Keyring) {
        assert_eq!(a.ids(), b.ids());
        assert_eq!(a.current_id(), b.current_id());
        for id in a.ids() {
            assert_eq!(a.get(id).unwrap().key(), b.get(id).unwrap().key());
        }
    }

    fn dir_entries(ks: &KeyStore) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(ks.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn key_file_create_open_round_trip() {
        let (_t, ks) = store();
        assert!(!ks.exists());
        let ring = Keyring::generate();
        let sealed = ring.seal(b"raft-log:1", b"payload");
        ks.create(&ring, Protection::KeyFile).unwrap();
        assert!(ks.exists());
        assert!(!ks.is_autolocked().unwrap());
        assert_eq!(dir_entries(&ks), vec!["kek", "keys.json"]);
        let back = ks.open().unwrap();
        same_keys(&ring, &back);
        assert_eq!(&back.open(b"raft-log:1", &sealed).unwrap()[..], b"payload");
        // The JSON has the documented shape.
        let v = read_json(&ks);
        assert_eq!(v["version"], 1);
        assert_eq!(v["protection"], "key-file");
        assert!(v.get("kdf").is_none());
        assert_eq!(v["current"], 1);
        assert_eq!(v["deks"][0]["id"], 1);
        assert!(v["deks"][0]["wrapped"].is_string());
        // unlock is for autolocked stores only
        assert!(matches!(
            ks.unlock(&UnlockKey::generate()),
            Err(CryptoError::NotLocked)
        ));
    }

    #[test]
    fn autolock_create_unlock() {
        let (_t, ks) = store();
        let uk = UnlockKey::generate();
        let ring = Keyring::generate();
        let sealed = ring.seal(b"a", b"payload");
        ks.create(&ring, Protection::Autolock(&uk)).unwrap();
        assert!(ks.is_autolocked().unwrap());
        assert_eq!(dir_entries(&ks), vec!["keys.json"]);
        assert!(matches!(ks.open(), Err(CryptoError::Locked)));
        let back = ks.unlock(&uk).unwrap();
        same_keys(&ring, &back);
        assert_eq!(&back.open(b"a", &sealed).unwrap()[..], b"payload");
        // Via the text form too.
        let back = ks
            .unlock(&UnlockKey::parse(&uk.to_text()).unwrap())
            .unwrap();
        same_keys(&ring, &back);

        let v = read_json(&ks);
        assert_eq!(v["protection"], "autolock");
        assert_eq!(v["kdf"]["algorithm"], "argon2id");
        assert_eq!(v["kdf"]["m_cost"], 19456);
        assert_eq!(v["kdf"]["t_cost"], 2);
        assert_eq!(v["kdf"]["p_cost"], 1);
        assert_eq!(
            B64.decode(v["kdf"]["salt"].as_str().unwrap())
                .unwrap()
                .len(),
            16
        );
    }

    #[test]
    fn wrong_unlock_key() {
        let (_t, ks) = store();
        let uk = UnlockKey::generate();
        ks.create(&Keyring::generate(), Protection::Autolock(&uk))
            .unwrap();
        assert!(matches!(
            ks.unlock(&UnlockKey::generate()),
            Err(CryptoError::WrongUnlockKey)
        ));
        // A key of another length is just a wrong key.
        assert!(matches!(
            ks.unlock(&UnlockKey::parse("SWMKEY-1-YWJj").unwrap()),
            Err(CryptoError::WrongUnlockKey)
        ));
        let e = ks.unlock(&UnlockKey::generate()).unwrap_err();
        assert_no_key_bytes(&format!("{e} {e:?}"), uk.bytes());
    }

    #[test]
    fn file_permissions_are_0600() {
        let (_t, ks) = store();
        let ring = Keyring::generate();
        ks.create(&ring, Protection::KeyFile).unwrap();
        assert_eq!(mode(ks.dir()), 0o700);
        assert_eq!(mode(&ks.keys_path()), 0o600);
        assert_eq!(mode(&ks.kek_path()), 0o600);
        assert_eq!(std::fs::metadata(ks.kek_path()).unwrap().len(), 32);
        let uk = UnlockKey::generate();
        ks.create(&ring, Protection::Autolock(&uk)).unwrap();
        assert_eq!(mode(&ks.keys_path()), 0o600);
        ks.create(&ring, Protection::KeyFile).unwrap();
        assert_eq!(mode(&ks.keys_path()), 0o600);
        assert_eq!(mode(&ks.kek_path()), 0o600);
        // No temporary files are left behind.
        assert_eq!(dir_entries(&ks), vec!["kek", "keys.json"]);
    }

    #[test]
    fn toggle_key_file_autolock_key_file() {
        let (_t, ks) = store();
        let mut ring = Keyring::generate();
        let s1 = ring.seal(b"a", b"one");
        ks.create(&ring, Protection::KeyFile).unwrap();
        let kek1 = std::fs::read(ks.kek_path()).unwrap();

        // Re-wrap in key-file mode keeps the kek.
        ring.rotate();
        let s2 = ring.seal(b"a", b"two");
        ks.create(&ring, Protection::KeyFile).unwrap();
        assert_eq!(std::fs::read(ks.kek_path()).unwrap(), kek1);
        same_keys(&ring, &ks.open().unwrap());

        // To autolock: kek is gone.
        let uk = UnlockKey::generate();
        ks.create(&ring, Protection::Autolock(&uk)).unwrap();
        assert!(!ks.kek_path().exists());
        assert!(ks.is_autolocked().unwrap());
        assert!(matches!(ks.open(), Err(CryptoError::Locked)));
        same_keys(&ring, &ks.unlock(&uk).unwrap());

        // Rotate the unlock key.
        let uk2 = UnlockKey::generate();
        ks.create(&ring, Protection::Autolock(&uk2)).unwrap();
        assert!(matches!(ks.unlock(&uk), Err(CryptoError::WrongUnlockKey)));
        same_keys(&ring, &ks.unlock(&uk2).unwrap());

        // Back to key-file: a new kek.
        ks.create(&ring, Protection::KeyFile).unwrap();
        assert!(!ks.is_autolocked().unwrap());
        let kek2 = std::fs::read(ks.kek_path()).unwrap();
        assert_eq!(kek2.len(), 32);
        assert_ne!(kek2, kek1);
        let back = ks.open().unwrap();
        same_keys(&ring, &back);
        assert_eq!(&back.open(b"a", &s1).unwrap()[..], b"one");
        assert_eq!(&back.open(b"a", &s2).unwrap()[..], b"two");
        assert!(matches!(ks.unlock(&uk2), Err(CryptoError::NotLocked)));
    }

    #[test]
    fn rotate_and_retire_are_persisted() {
        let (_t, ks) = store();
        let uk = UnlockKey::generate();
        let mut ring = Keyring::generate();
        ring.rotate();
        ring.rotate();
        ks.create(&ring, Protection::Autolock(&uk)).unwrap();
        let back = ks.unlock(&uk).unwrap();
        assert_eq!(back.ids(), vec![1, 2, 3]);
        assert_eq!(back.current_id(), 3);
        ring.retire_old();
        ks.create(&ring, Protection::Autolock(&uk)).unwrap();
        let mut back = ks.unlock(&uk).unwrap();
        assert_eq!(back.ids(), vec![3]);
        assert_eq!(back.rotate(), 4);
    }

    #[test]
    fn fresh_salt_on_every_create() {
        let (_t, ks) = store();
        let uk = UnlockKey::generate();
        let ring = Keyring::generate();
        ks.create(&ring, Protection::Autolock(&uk)).unwrap();
        let salt1 = read_json(&ks)["kdf"]["salt"].clone();
        ks.create(&ring, Protection::Autolock(&uk)).unwrap();
        let salt2 = read_json(&ks)["kdf"]["salt"].clone();
        assert_ne!(salt1, salt2);
        same_keys(&ring, &ks.unlock(&uk).unwrap());
    }

    #[test]
    fn missing_store_is_not_found() {
        let (_t, ks) = store();
        assert!(matches!(ks.open(), Err(CryptoError::NotFound)));
        assert!(matches!(
            ks.unlock(&UnlockKey::generate()),
            Err(CryptoError::NotFound)
        ));
        assert!(matches!(ks.is_autolocked(), Err(CryptoError::NotFound)));
        ks.remove().unwrap();
    }

    #[test]
    fn remove_deletes_both_files() {
        let (_t, ks) = store();
        ks.create(&Keyring::generate(), Protection::KeyFile)
            .unwrap();
        assert!(ks.kek_path().exists());
        ks.remove().unwrap();
        assert!(!ks.exists());
        assert!(!ks.kek_path().exists());
        assert!(dir_entries(&ks).is_empty());
        ks.remove().unwrap(); // idempotent
        assert!(matches!(ks.open(), Err(CryptoError::NotFound)));
    }

    #[test]
    fn stale_temp_files_are_removed() {
        let (_t, ks) = store();
        ks.create(&Keyring::generate(), Protection::KeyFile)
            .unwrap();
        std::fs::write(ks.dir().join(".kek.tmp-0123456789abcdef"), [1u8; 32]).unwrap();
        std::fs::write(ks.dir().join(".keys.json.tmp-00"), b"{}").unwrap();
        std::fs::write(ks.dir().join("other"), b"keep").unwrap();
        ks.create(&Keyring::generate(), Protection::KeyFile)
            .unwrap();
        assert_eq!(dir_entries(&ks), vec!["kek", "keys.json", "other"]);
        std::fs::write(ks.dir().join(".kek.tmp-ff"), [1u8; 32]).unwrap();
        ks.remove().unwrap();
        assert_eq!(dir_entries(&ks), vec!["other"]);
    }

    /// Flips one byte inside the decoded value of a base64 string field.
    fn flip_b64(v: &mut serde_json::Value, at: usize) {
        let mut bytes = B64.decode(v.as_str().unwrap()).unwrap();
        bytes[at] ^= 0x01;
        *v = serde_json::Value::String(B64.encode(bytes));
    }

    fn tamper_cases(
        protection: Protection<'_>,
        open: &dyn Fn(&KeyStore) -> Result<Keyring, CryptoError>,
    ) {
        let (_t, ks) = store();
        let mut ring = Keyring::generate();
        ring.rotate();
        ks.create(&ring, protection).unwrap();
        let orig = read_json(&ks);
        same_keys(&ring, &open(&ks).unwrap());

        // Flip a byte in each part of each wrapped DEK.
        for dek in 0..2 {
            for at in [0, 5, 10, 40, WRAPPED_DEK_LEN - 1] {
                let mut v = orig.clone();
                flip_b64(&mut v["deks"][dek]["wrapped"], at);
                write_json(&ks, &v);
                let r = open(&ks);
                if at < 8 {
                    // header: bad magic or key id ≠ 0
                    assert!(
                        matches!(r, Err(CryptoError::Corrupt(_))),
                        "dek {dek} at {at}: {r:?}"
                    );
                } else {
                    assert!(
                        matches!(r, Err(CryptoError::Tampered)),
                        "dek {dek} at {at}: {r:?}"
                    );
                }
            }
        }
        // Flip a byte in the mac.
        let mut v = orig.clone();
        flip_b64(&mut v["mac"], 20);
        write_json(&ks, &v);
        assert!(matches!(open(&ks), Err(CryptoError::Tampered)));

        // Change "current" to the other existing id: caught by the mac.
        let mut v = orig.clone();
        v["current"] = 1.into();
        write_json(&ks, &v);
        assert!(matches!(open(&ks), Err(CryptoError::Tampered)));
        // ... to an id that does not exist.
        v["current"] = 7.into();
        write_json(&ks, &v);
        assert!(matches!(open(&ks), Err(CryptoError::Corrupt(_))));

        // Drop the old DEK: caught by the mac.
        let mut v = orig.clone();
        v["deks"].as_array_mut().unwrap().remove(0);
        write_json(&ks, &v);
        assert!(matches!(open(&ks), Err(CryptoError::Tampered)));

        // Swap the wrapped blobs of the two DEKs (AAD binds the id).
        let mut v = orig.clone();
        let w0 = v["deks"][0]["wrapped"].clone();
        v["deks"][0]["wrapped"] = v["deks"][1]["wrapped"].clone();
        v["deks"][1]["wrapped"] = w0;
        write_json(&ks, &v);
        assert!(matches!(open(&ks), Err(CryptoError::Tampered)));

        // Renumber the DEKs.
        let mut v = orig.clone();
        v["deks"][0]["id"] = 5.into();
        v["deks"][1]["id"] = 6.into();
        v["current"] = 6.into();
        write_json(&ks, &v);
        // Neither the mac nor any DEK opens, which looks exactly like a
        // wrong unlock key in autolock mode.
        assert!(matches!(
            open(&ks),
            Err(CryptoError::Tampered | CryptoError::WrongUnlockKey)
        ));

        // Structural damage.
        for (name, v) in [
            ("empty deks", {
                let mut v = orig.clone();
                v["deks"] = serde_json::json!([]);
                v
            }),
            ("version 2", {
                let mut v = orig.clone();
                v["version"] = 2.into();
                v
            }),
            ("unknown field", {
                let mut v = orig.clone();
                v["extra"] = 1.into();
                v
            }),
            ("unknown protection", {
                let mut v = orig.clone();
                v["protection"] = "none".into();
                v
            }),
            ("bad base64", {
                let mut v = orig.clone();
                v["deks"][0]["wrapped"] = "!!!".into();
                v
            }),
            ("short wrapped", {
                let mut v = orig.clone();
                v["deks"][0]["wrapped"] = B64.encode([0u8; 40]).into();
                v
            }),
            ("duplicate id", {
                let mut v = orig.clone();
                v["deks"][1]["id"] = 1.into();
                v
            }),
            ("id zero", {
                let mut v = orig.clone();
                v["deks"][0]["id"] = 0.into();
                v
            }),
            ("missing mac", {
                let mut v = orig.clone();
                v.as_object_mut().unwrap().remove("mac");
                v
            }),
        ] {
            write_json(&ks, &v);
            let r = open(&ks);
            assert!(matches!(r, Err(CryptoError::Corrupt(_))), "{name}: {r:?}");
        }
        for junk in [
            &b""[..],
            b"{",
            b"null",
            b"[]",
            b"{\"version\":1}",
            &[0xff; 10][..],
        ] {
            std::fs::write(ks.keys_path(), junk).unwrap();
            assert!(matches!(open(&ks), Err(CryptoError::Corrupt(_))));
        }
        std::fs::write(ks.keys_path(), vec![b' '; 2 * 1024 * 1024]).unwrap();
        assert!(matches!(open(&ks), Err(CryptoError::Corrupt(_))));

        // Restoring the original file works again.
        write_json(&ks, &orig);
        same_keys(&ring, &open(&ks).unwrap());
    }

    #[test]
    fn tampered_keys_json_key_file_mode() {
        tamper_cases(Protection::KeyFile, &|ks| ks.open());
    }

    #[test]
    fn tampered_keys_json_autolock_mode() {
        let uk = UnlockKey::generate();
        tamper_cases(Protection::Autolock(&uk), &|ks| ks.unlock(&uk));
    }

    #[test]
    fn bad_kdf_params_are_corrupt() {
        let (_t, ks) = store();
        let uk = UnlockKey::generate();
        ks.create(&Keyring::generate(), Protection::Autolock(&uk))
            .unwrap();
        let orig = read_json(&ks);
        let cases: Vec<(&str, serde_json::Value)> = vec![
            ("m_cost", u32::MAX.into()),
            ("m_cost", 0.into()),
            ("m_cost", 64.into()),
            ("t_cost", 0.into()),
            ("t_cost", 1_000_000.into()),
            ("p_cost", 0.into()),
            ("p_cost", 255.into()),
            ("algorithm", "argon2i".into()),
            ("salt", B64.encode([1u8; 4]).into()),
            ("salt", "%%".into()),
        ];
        for (field, value) in cases {
            let mut v = orig.clone();
            v["kdf"][field] = value;
            write_json(&ks, &v);
            let r = ks.unlock(&uk);
            assert!(matches!(r, Err(CryptoError::Corrupt(_))), "{field}: {r:?}");
        }
        // Sane but different params just give a different KEK.
        let mut v = orig.clone();
        v["kdf"]["t_cost"] = 1.into();
        write_json(&ks, &v);
        assert!(matches!(ks.unlock(&uk), Err(CryptoError::WrongUnlockKey)));
        // KDF params on a key-file store / none on an autolock store.
        let mut v = orig.clone();
        v["protection"] = "key-file".into();
        write_json(&ks, &v);
        assert!(matches!(ks.open(), Err(CryptoError::Corrupt(_))));
        let mut v = orig.clone();
        v.as_object_mut().unwrap().remove("kdf");
        write_json(&ks, &v);
        assert!(matches!(ks.unlock(&uk), Err(CryptoError::Corrupt(_))));
        assert!(matches!(ks.is_autolocked(), Err(CryptoError::Corrupt(_))));
    }

    #[test]
    fn bad_kek_file() {
        let (_t, ks) = store();
        let ring = Keyring::generate();
        ks.create(&ring, Protection::KeyFile).unwrap();
        let kek = std::fs::read(ks.kek_path()).unwrap();

        std::fs::write(ks.kek_path(), &kek[..31]).unwrap();
        assert!(matches!(ks.open(), Err(CryptoError::Corrupt(_))));
        std::fs::write(ks.kek_path(), [kek.clone(), vec![0]].concat()).unwrap();
        assert!(matches!(ks.open(), Err(CryptoError::Corrupt(_))));
        std::fs::write(ks.kek_path(), [7u8; 32]).unwrap();
        assert!(matches!(ks.open(), Err(CryptoError::Tampered)));
        std::fs::remove_file(ks.kek_path()).unwrap();
        assert!(matches!(ks.open(), Err(CryptoError::Corrupt(_))));

        std::fs::write(ks.kek_path(), &kek).unwrap();
        same_keys(&ring, &ks.open().unwrap());

        // An unusable kek is replaced by create (the in-memory ring is the
        // source of truth).
        std::fs::write(ks.kek_path(), b"short").unwrap();
        ks.create(&ring, Protection::KeyFile).unwrap();
        assert_ne!(std::fs::read(ks.kek_path()).unwrap(), kek);
        same_keys(&ring, &ks.open().unwrap());
    }

    fn all_file_bytes(ks: &KeyStore) -> Vec<u8> {
        let mut all = Vec::new();
        for e in std::fs::read_dir(ks.dir()).unwrap() {
            all.extend(std::fs::read(e.unwrap().path()).unwrap());
        }
        all
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn plaintext_deks_never_on_disk_in_autolock_mode() {
        let (_t, ks) = store();
        let uk = UnlockKey::generate();
        let mut ring = Keyring::generate();
        // Key-file first, then switch, to check that the old kek is gone too.
        ks.create(&ring, Protection::KeyFile).unwrap();
        let kek = std::fs::read(ks.kek_path()).unwrap();
        ring.rotate();
        ks.create(&ring, Protection::Autolock(&uk)).unwrap();

        let files = all_file_bytes(&ks);
        let text = String::from_utf8_lossy(&files).into_owned();
        for dek in ring.deks() {
            assert!(!contains(&files, dek.key()));
            assert!(!text.contains(&B64.encode(dek.key())));
            assert_no_key_bytes(&text, dek.key());
        }
        assert!(!contains(&files, &kek));
        assert!(!contains(&files, uk.bytes()));
        assert!(!text.contains(uk.to_text().as_str()));
        assert!(!text.contains(&B64.encode(uk.bytes())));
    }

    #[test]
    fn plaintext_deks_not_in_keys_json_in_key_file_mode() {
        let (_t, ks) = store();
        let ring = Keyring::generate();
        ks.create(&ring, Protection::KeyFile).unwrap();
        let json = std::fs::read(ks.keys_path()).unwrap();
        let kek = std::fs::read(ks.kek_path()).unwrap();
        for dek in ring.deks() {
            assert!(!contains(&json, dek.key()));
            assert!(!contains(&kek, dek.key()));
            assert!(!String::from_utf8_lossy(&json).contains(&B64.encode(dek.key())));
        }
    }

    #[test]
    fn errors_and_debug_do_not_leak() {
        let (_t, ks) = store();
        let uk = UnlockKey::generate();
        let ring = Keyring::generate();
        ks.create(&ring, Protection::Autolock(&uk)).unwrap();
        let dbg = format!(
            "{ks:?} {:?} {:?}",
            Protection::Autolock(&uk),
            Protection::KeyFile
        );
        assert!(dbg.contains("UnlockKey([redacted])"));
        let key = ring.get(1).unwrap().key();
        assert_no_key_bytes(&dbg, uk.bytes());
        let mut v = read_json(&ks);
        flip_b64(&mut v["deks"][0]["wrapped"], 30);
        write_json(&ks, &v);
        for r in [ks.unlock(&uk), ks.unlock(&UnlockKey::generate()), ks.open()] {
            let e = r.unwrap_err();
            let msg = format!("{e} {e:?}");
            assert_no_key_bytes(&msg, key);
            assert_no_key_bytes(&msg, uk.bytes());
        }
    }
}
