//! Data-encryption keys, the key ring, and the sealed record format
//! (see the crate documentation for the byte layout).

use std::collections::BTreeMap;
use std::fmt;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::{CryptoError, fill_random};

/// Magic bytes at the start of every sealed record.
pub(crate) const MAGIC: [u8; 4] = *b"LBX1";
/// Length of magic + key id.
pub(crate) const HEADER_LEN: usize = 8;
/// XChaCha20 nonce length.
pub(crate) const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub(crate) const TAG_LEN: usize = 16;
/// Smallest possible sealed record (empty plaintext).
pub(crate) const MIN_SEALED_LEN: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;
/// Length of every key (DEK and KEK).
pub(crate) const KEY_LEN: usize = 32;
/// Key id used in records sealed by the KEK.
pub(crate) const KEK_ID: u32 = 0;
/// DEK ids above this are refused when loading, so [`Keyring::rotate`] can
/// never run out of ids.
pub(crate) const MAX_DEK_ID: u32 = u32::MAX / 2;

/// A 32-byte symmetric key, zeroized on drop.
pub(crate) type RawKey = Zeroizing<[u8; KEY_LEN]>;

pub(crate) fn random_key() -> RawKey {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(&mut k[..]);
    k
}

fn cipher(key: &[u8; KEY_LEN]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(<&Key>::from(key))
}

/// The 8 header bytes of a record sealed under `key_id`.
fn header(key_id: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4..].copy_from_slice(&key_id.to_be_bytes());
    h
}

/// The AEAD associated data: header bytes, then the caller's AAD.
fn full_aad(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(header.len() + aad.len());
    v.extend_from_slice(header);
    v.extend_from_slice(aad);
    v
}

/// Seals `plaintext` under `key`, writing `key_id` into the header.
pub(crate) fn seal_raw(key: &[u8; KEY_LEN], key_id: u32, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    // The final size up front, so the buffer never reallocates while it still holds
    // plaintext; then sealed where it lies.
    let mut out = vec![0u8; MIN_SEALED_LEN + plaintext.len()];
    out[SEALED_PREFIX..SEALED_PREFIX + plaintext.len()].copy_from_slice(plaintext);
    seal_raw_in_place(key, key_id, aad, &mut out);
    out
}

/// Bytes a sealed record holds before its ciphertext (header and nonce): where
/// [`Keyring::seal_in_place`] expects the plaintext to start.
pub const SEALED_PREFIX: usize = HEADER_LEN + NONCE_LEN;
/// Bytes sealing adds to a plaintext (header, nonce and tag).
pub const SEALED_OVERHEAD: usize = MIN_SEALED_LEN;

/// Seals `record` where it lies: `record[SEALED_PREFIX..len - TAG_LEN]` holds the plaintext,
/// the bytes around it are overwritten with the header, nonce and tag. The result is the
/// same format [`seal_raw`] produces.
fn seal_raw_in_place(key: &[u8; KEY_LEN], key_id: u32, aad: &[u8], record: &mut [u8]) {
    assert!(
        record.len() >= MIN_SEALED_LEN,
        "a record to seal in place has room for its header, nonce and tag"
    );
    let hdr = header(key_id);
    let mut nonce = [0u8; NONCE_LEN];
    crate::fill_public_random(&mut nonce);
    record[..HEADER_LEN].copy_from_slice(&hdr);
    record[HEADER_LEN..SEALED_PREFIX].copy_from_slice(&nonce);
    let end = record.len() - TAG_LEN;
    let tag = match cipher(key).encrypt_inout_detached(
        <&XNonce>::from(&nonce),
        &full_aad(&hdr, aad),
        (&mut record[SEALED_PREFIX..end]).into(),
    ) {
        Ok(tag) => tag,
        // Only possible for plaintexts of about 256 GiB, which cannot be built in memory on
        // the platforms we run on.
        Err(_) => panic!("plaintext too long for XChaCha20-Poly1305"),
    };
    record[end..].copy_from_slice(&tag);
}

/// The parts of a sealed record.
struct Parsed<'a> {
    key_id: u32,
    header: &'a [u8],
    nonce: &'a [u8],
    ciphertext: &'a [u8],
    tag: &'a [u8],
}

fn parse(sealed: &[u8]) -> Result<Parsed<'_>, CryptoError> {
    if sealed.len() < MAGIC.len() {
        return Err(CryptoError::Truncated);
    }
    if sealed[..MAGIC.len()] != MAGIC {
        return Err(CryptoError::BadMagic);
    }
    if sealed.len() < MIN_SEALED_LEN {
        return Err(CryptoError::Truncated);
    }
    let (header, rest) = sealed.split_at(HEADER_LEN);
    let (nonce, rest) = rest.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut id = [0u8; 4];
    id.copy_from_slice(&header[4..HEADER_LEN]);
    Ok(Parsed {
        key_id: u32::from_be_bytes(id),
        header,
        nonce,
        ciphertext,
        tag,
    })
}

fn open_parsed(
    key: &[u8; KEY_LEN],
    aad: &[u8],
    p: &Parsed<'_>,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let nonce = XNonce::try_from(p.nonce).map_err(|_| CryptoError::Truncated)?;
    let tag = Tag::try_from(p.tag).map_err(|_| CryptoError::Truncated)?;
    let mut buf = Zeroizing::new(p.ciphertext.to_vec());
    cipher(key)
        .decrypt_inout_detached(
            &nonce,
            &full_aad(p.header, aad),
            buf.as_mut_slice().into(),
            &tag,
        )
        .map_err(|_| CryptoError::Tampered)?;
    Ok(buf)
}

/// Opens a record that must have been sealed under `key` with `key_id`.
pub(crate) fn open_raw(
    key: &[u8; KEY_LEN],
    key_id: u32,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let p = parse(sealed)?;
    if p.key_id != key_id {
        return Err(CryptoError::UnknownKey(p.key_id));
    }
    open_parsed(key, aad, &p)
}

/// A data-encryption key with a small numeric id. Zeroized on drop, redacted
/// `Debug`.
#[derive(Clone)]
pub struct Dek {
    id: u32,
    key: RawKey,
}

impl Dek {
    pub(crate) fn generate(id: u32) -> Dek {
        Dek {
            id,
            key: random_key(),
        }
    }

    pub(crate) fn from_parts(id: u32, key: RawKey) -> Dek {
        Dek { id, key }
    }

    /// The key id written into the header of records sealed with this key.
    pub fn id(&self) -> u32 {
        self.id
    }

    pub(crate) fn key(&self) -> &[u8; KEY_LEN] {
        &self.key
    }
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dek")
            .field("id", &self.id)
            .field("key", &format_args!("[redacted]"))
            .finish()
    }
}

/// The set of DEKs: one current (used to seal), older ones kept only to open.
#[derive(Clone)]
pub struct Keyring {
    current: Dek,
    old: BTreeMap<u32, Dek>,
}

impl Keyring {
    /// A key ring with one fresh random DEK, id 1.
    pub fn generate() -> Keyring {
        Keyring {
            current: Dek::generate(1),
            old: BTreeMap::new(),
        }
    }

    /// Builds a ring from loaded keys. `others` must not contain the current
    /// id or duplicates (checked by the caller, which reports `Corrupt`).
    pub(crate) fn from_parts(current: Dek, others: Vec<Dek>) -> Keyring {
        Keyring {
            current,
            old: others.into_iter().map(|d| (d.id, d)).collect(),
        }
    }

    /// The id of the DEK used by [`Keyring::seal`].
    pub fn current_id(&self) -> u32 {
        self.current.id
    }

    /// Seals `plaintext` with the current DEK. `aad` binds the record to its
    /// place (for example `b"raft-log:42"`) and must be given again to open
    /// it.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_raw(self.current.key(), self.current.id, aad, plaintext)
    }

    /// Seals a record in the buffer that will hold it, as [`Keyring::seal`] would: the
    /// plaintext is in `record[SEALED_PREFIX..record.len() - 16]`; the bytes before and after
    /// it are overwritten. For records too large to copy (snapshots): the plaintext is never
    /// copied, so no second plaintext buffer is left in freed memory.
    ///
    /// # Panics
    /// If `record` is shorter than [`SEALED_OVERHEAD`].
    pub fn seal_in_place(&self, aad: &[u8], record: &mut [u8]) {
        seal_raw_in_place(self.current.key(), self.current.id, aad, record);
    }

    /// Opens a record sealed by any DEK still in the ring.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let p = parse(sealed)?;
        let dek = self
            .get(p.key_id)
            .ok_or(CryptoError::UnknownKey(p.key_id))?;
        open_parsed(dek.key(), aad, &p)
    }

    /// The key id in the header of `sealed`, without decrypting it (the id
    /// is not authenticated until the record is opened).
    pub fn key_id_of(sealed: &[u8]) -> Result<u32, CryptoError> {
        parse(sealed).map(|p| p.key_id)
    }

    /// Makes a new random DEK current (id = highest id + 1) and returns its
    /// id. Older DEKs are kept so existing records can still be opened.
    pub fn rotate(&mut self) -> u32 {
        let max = self
            .old
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(self.current.id);
        // Loaded ids are at most MAX_DEK_ID, so this takes billions of
        // rotations to overflow.
        let id = max.checked_add(1).expect("DEK id space exhausted");
        let previous = std::mem::replace(&mut self.current, Dek::generate(id));
        self.old.insert(previous.id, previous);
        id
    }

    /// Forgets every DEK except the current one (after all records have been
    /// re-sealed with it).
    pub fn retire_old(&mut self) {
        self.old.clear();
    }

    /// All key ids in the ring, ascending.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.old.keys().copied().collect();
        ids.push(self.current.id);
        ids.sort_unstable();
        ids
    }

    /// The DEK with this id, if any.
    pub(crate) fn get(&self, id: u32) -> Option<&Dek> {
        if id == self.current.id {
            Some(&self.current)
        } else {
            self.old.get(&id)
        }
    }

    /// All DEKs, ascending by id.
    pub(crate) fn deks(&self) -> Vec<&Dek> {
        let mut v: Vec<&Dek> = self.old.values().collect();
        v.push(&self.current);
        v.sort_unstable_by_key(|d| d.id);
        v
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field("ids", &self.ids())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::assert_no_key_bytes;
    use proptest::prelude::*;

    #[test]
    fn sealing_in_place_is_sealing() {
        let ring = Keyring::generate();
        let plain = b"in place, never copied";
        let mut record = vec![0u8; SEALED_OVERHEAD + plain.len()];
        record[SEALED_PREFIX..SEALED_PREFIX + plain.len()].copy_from_slice(plain);
        ring.seal_in_place(b"aad", &mut record);
        assert_eq!(&*ring.open(b"aad", &record).unwrap(), plain);
        assert!(ring.open(b"other", &record).is_err());
        let copied = ring.seal(b"aad", plain);
        assert_eq!(record.len(), copied.len());
        assert_eq!(record[..HEADER_LEN], copied[..HEADER_LEN]);
        let mut empty = vec![0u8; SEALED_OVERHEAD];
        ring.seal_in_place(b"", &mut empty);
        assert!(ring.open(b"", &empty).unwrap().is_empty());
    }

    #[test]
    fn seal_open_round_trip() {
        let ring = Keyring::generate();
        assert_eq!(ring.current_id(), 1);
        assert_eq!(ring.ids(), vec![1]);
        for pt in [&b""[..], b"x", b"hello world", &[7u8; 5000][..]] {
            let sealed = ring.seal(b"raft-log:42", pt);
            assert_eq!(sealed.len(), MIN_SEALED_LEN + pt.len());
            assert_eq!(&sealed[..4], b"LBX1");
            assert_eq!(&sealed[4..8], &1u32.to_be_bytes());
            assert_eq!(Keyring::key_id_of(&sealed).unwrap(), 1);
            let opened = ring.open(b"raft-log:42", &sealed).unwrap();
            assert_eq!(&opened[..], pt);
        }
    }

    #[test]
    fn nonces_are_random() {
        let ring = Keyring::generate();
        let a = ring.seal(b"a", b"same");
        let b = ring.seal(b"a", b"same");
        assert_ne!(a, b);
        assert_ne!(a[8..32], b[8..32]);
    }

    #[test]
    fn ciphertext_does_not_contain_plaintext() {
        let ring = Keyring::generate();
        let pt = b"a very recognisable plaintext string";
        let sealed = ring.seal(b"", pt);
        assert!(!sealed.windows(pt.len()).any(|w| w == pt));
    }

    #[test]
    fn wrong_aad_is_tampered() {
        let ring = Keyring::generate();
        let sealed = ring.seal(b"raft-log:42", b"secret");
        assert!(matches!(
            ring.open(b"raft-log:43", &sealed),
            Err(CryptoError::Tampered)
        ));
        assert!(matches!(
            ring.open(b"", &sealed),
            Err(CryptoError::Tampered)
        ));
    }

    #[test]
    fn wrong_key_is_tampered() {
        let a = Keyring::generate();
        let b = Keyring::generate(); // also id 1
        let sealed = a.seal(b"x", b"secret");
        assert!(matches!(b.open(b"x", &sealed), Err(CryptoError::Tampered)));
    }

    #[test]
    fn changing_key_id_is_detected() {
        let mut ring = Keyring::generate();
        let sealed = ring.seal(b"x", b"secret");
        ring.rotate();
        let mut forged = sealed.clone();
        forged[4..8].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(Keyring::key_id_of(&forged).unwrap(), 2);
        assert!(matches!(
            ring.open(b"x", &forged),
            Err(CryptoError::Tampered)
        ));
        forged[4..8].copy_from_slice(&9u32.to_be_bytes());
        assert!(matches!(
            ring.open(b"x", &forged),
            Err(CryptoError::UnknownKey(9))
        ));
        assert_eq!(&ring.open(b"x", &sealed).unwrap()[..], b"secret");
    }

    #[test]
    fn every_single_byte_flip_fails() {
        let ring = Keyring::generate();
        let sealed = ring.seal(b"ctx", b"some plaintext");
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut t = sealed.clone();
                t[i] ^= 1 << bit;
                assert!(ring.open(b"ctx", &t).is_err(), "flip byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn truncation() {
        let ring = Keyring::generate();
        let sealed = ring.seal(b"ctx", b"plaintext");
        for len in 0..sealed.len() {
            let r = ring.open(b"ctx", &sealed[..len]);
            if len < MIN_SEALED_LEN {
                assert!(matches!(r, Err(CryptoError::Truncated)), "len {len}");
            } else {
                assert!(matches!(r, Err(CryptoError::Tampered)), "len {len}");
            }
        }
        assert!(matches!(
            Keyring::key_id_of(&sealed[..3]),
            Err(CryptoError::Truncated)
        ));
        assert!(matches!(
            Keyring::key_id_of(&sealed[..20]),
            Err(CryptoError::Truncated)
        ));
        assert!(matches!(
            ring.open(b"ctx", &[]),
            Err(CryptoError::Truncated)
        ));
    }

    #[test]
    fn bad_magic() {
        let ring = Keyring::generate();
        let mut sealed = ring.seal(b"ctx", b"plaintext");
        sealed[0] = b'X';
        assert!(matches!(
            ring.open(b"ctx", &sealed),
            Err(CryptoError::BadMagic)
        ));
        assert!(matches!(
            Keyring::key_id_of(&sealed),
            Err(CryptoError::BadMagic)
        ));
        assert!(matches!(
            ring.open(b"ctx", b"LBX2"),
            Err(CryptoError::BadMagic)
        ));
    }

    #[test]
    fn rotate_keeps_old_readable_and_seals_with_new_id() {
        let mut ring = Keyring::generate();
        let s1 = ring.seal(b"a", b"one");
        assert_eq!(ring.rotate(), 2);
        assert_eq!(ring.current_id(), 2);
        let s2 = ring.seal(b"a", b"two");
        assert_eq!(Keyring::key_id_of(&s2).unwrap(), 2);
        assert_eq!(ring.rotate(), 3);
        let s3 = ring.seal(b"a", b"three");
        assert_eq!(Keyring::key_id_of(&s3).unwrap(), 3);
        assert_eq!(ring.ids(), vec![1, 2, 3]);
        assert_eq!(&ring.open(b"a", &s1).unwrap()[..], b"one");
        assert_eq!(&ring.open(b"a", &s2).unwrap()[..], b"two");
        assert_eq!(&ring.open(b"a", &s3).unwrap()[..], b"three");
        // Keys really differ.
        assert_ne!(ring.get(1).unwrap().key(), ring.get(2).unwrap().key());
    }

    #[test]
    fn retire_old_forgets_old_keys() {
        let mut ring = Keyring::generate();
        let s1 = ring.seal(b"a", b"one");
        ring.rotate();
        let s2 = ring.seal(b"a", b"two");
        ring.retire_old();
        assert_eq!(ring.ids(), vec![2]);
        assert_eq!(ring.current_id(), 2);
        assert!(matches!(
            ring.open(b"a", &s1),
            Err(CryptoError::UnknownKey(1))
        ));
        assert_eq!(&ring.open(b"a", &s2).unwrap()[..], b"two");
        // Ids keep increasing after retiring.
        assert_eq!(ring.rotate(), 3);
    }

    #[test]
    fn debug_contains_no_key_bytes() {
        let mut ring = Keyring::generate();
        ring.rotate();
        let dbg = format!("{ring:?} {ring:#?}");
        assert_eq!(format!("{ring:?}"), "Keyring { current: 2, ids: [1, 2] }");
        for dek in ring.deks() {
            let d = format!("{dek:?} {dek:#?}");
            assert_eq!(
                format!("{dek:?}"),
                format!("Dek {{ id: {}, key: [redacted] }}", dek.id())
            );
            for text in [&dbg, &d] {
                assert_no_key_bytes(text, dek.key());
            }
        }
    }

    #[test]
    fn error_messages_do_not_leak() {
        let ring = Keyring::generate();
        let sealed = ring.seal(b"ctx", b"plaintext-marker");
        let mut t = sealed.clone();
        t[40] ^= 1;
        let e = ring.open(b"ctx", &t).unwrap_err();
        let msg = format!("{e} {e:?}");
        assert!(!msg.contains("plaintext-marker"));
        assert_no_key_bytes(&msg, ring.get(1).unwrap().key());
    }

    proptest! {
        #[test]
        fn prop_round_trip(aad in proptest::collection::vec(any::<u8>(), 0..64),
                           pt in proptest::collection::vec(any::<u8>(), 0..512)) {
            let ring = Keyring::generate();
            let sealed = ring.seal(&aad, &pt);
            prop_assert_eq!(&ring.open(&aad, &sealed).unwrap()[..], &pt[..]);
        }

        #[test]
        fn prop_any_byte_flip_is_an_error(
            aad in proptest::collection::vec(any::<u8>(), 0..32),
            pt in proptest::collection::vec(any::<u8>(), 0..128),
            pos in any::<prop::sample::Index>(),
            mask in 1u8..=255,
        ) {
            let mut ring = Keyring::generate();
            ring.rotate();
            let sealed = ring.seal(&aad, &pt);
            let i = pos.index(sealed.len());
            let mut t = sealed.clone();
            t[i] ^= mask;
            prop_assert!(ring.open(&aad, &t).is_err());
        }

        #[test]
        fn prop_wrong_aad_is_tampered(
            aad in proptest::collection::vec(any::<u8>(), 0..32),
            other in proptest::collection::vec(any::<u8>(), 0..32),
            pt in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            prop_assume!(aad != other);
            let ring = Keyring::generate();
            let sealed = ring.seal(&aad, &pt);
            prop_assert!(matches!(ring.open(&other, &sealed), Err(CryptoError::Tampered)));
        }
    }
}
