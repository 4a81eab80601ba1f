//! Backup and restore at the store level: the replicated [`State`] exported as bytes, and a
//! new store directory created from such a state.
//!
//! An export is `LBXE | u16 format version | i64 taken-at | u16 node-ID length | node ID |
//! snapshot`, little-endian, where the snapshot is exactly what the store seals as its own
//! snapshot (`LBXS | u16 snapshot format | postcard`), so an export made by an older lockbox
//! is upgraded on import just as an older snapshot is on load. The bytes hold every secret
//! value in plaintext: callers seal them before they leave memory (`lockbox-crypto`'s
//! `seal_backup`) and the buffers are zeroized when dropped.
//!
//! A restored store is a `store.redb` holding one sealed snapshot record and nothing else: the
//! state, applied up to its own version, with this node as the only member of the Raft group.
//! [`Store::open`] takes it as any store that was compacted down to its snapshot (openraft
//! purges the empty log up to the snapshot), elects this node and carries on from there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, RwLock};

use lockbox_crypto::Keyring;
use lockbox_types::Timestamp;
use openraft::{BasicNode, CommittedLeaderId, LogId, Membership, SnapshotMeta, StoredMembership};
use zeroize::Zeroizing;

use crate::error::StoreError;
use crate::raft::{DB_FILE, Store};
use crate::state::State;
use crate::storage::{
    Disk, KEY_SNAPSHOT, SNAPSHOT_MAGIC, SNAPSHOT_VERSION, SnapshotPayload, StoredSnapshot,
};

/// Marks a state export.
const EXPORT_MAGIC: &[u8; 4] = b"LBXE";
/// The export format this build writes.
const EXPORT_VERSION: u16 = 1;
/// magic, version, taken-at, node-ID length.
const EXPORT_HEADER_LEN: usize = 4 + 2 + 8 + 2;

/// A state read back from an export.
#[derive(Debug)]
pub struct StateImport {
    /// The node whose store the export was taken from.
    pub node_id: String,
    /// When it was taken.
    pub taken_at: Timestamp,
    /// The state, its indexes rebuilt.
    pub state: State,
}

impl Store {
    /// Exports the current state, as of the last applied entry, for a backup. The state is
    /// copied under the state machine's read lock, so the export is one consistent point of
    /// the log: writes keep going meanwhile and land after it. `node_id` names this node (the
    /// one a restore keeps as its manager). The bytes hold secret values in plaintext.
    pub fn export_state(
        &self,
        node_id: &str,
        taken_at: Timestamp,
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let state = self.read(State::clone);
        export_state(node_id, taken_at, state)
    }
}

/// Encodes `state` (a copy the caller read from a store) as an export, as
/// [`Store::export_state`] does. The bytes hold secret values in plaintext.
pub fn export_state(
    node_id: &str,
    taken_at: Timestamp,
    state: State,
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let id_len = u16::try_from(node_id.len())
        .map_err(|_| StoreError::Database("node ID too long for an export".into()))?;
    let payload = SnapshotPayload {
        last_applied: None,
        membership: StoredMembership::default(),
        state,
    };
    let encoding = |e: postcard::Error| StoreError::Database(format!("encoding the state: {e}"));
    // Measured first, so the plaintext is written once into a buffer that never reallocates
    // (a reallocation would leave a copy behind in freed memory).
    let body_len =
        postcard::serialize_with_flavor(&payload, postcard::ser_flavors::Size::default())
            .map_err(encoding)?;
    let mut out = Zeroizing::new(Vec::with_capacity(
        EXPORT_HEADER_LEN + node_id.len() + SNAPSHOT_MAGIC.len() + 2 + body_len,
    ));
    out.extend_from_slice(EXPORT_MAGIC);
    out.extend_from_slice(&EXPORT_VERSION.to_le_bytes());
    out.extend_from_slice(&taken_at.0.to_le_bytes());
    out.extend_from_slice(&id_len.to_le_bytes());
    out.extend_from_slice(node_id.as_bytes());
    // The store's own snapshot encoding (`SnapshotPayload::encode`), written in place.
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    postcard::to_extend(&payload, InPlace(&mut out)).map_err(encoding)?;
    Ok(out)
}

/// Appends to a borrowed buffer (postcard's `to_extend` takes its writer by value).
struct InPlace<'a>(&'a mut Vec<u8>);

impl Extend<u8> for InPlace<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// Reads an export made by [`Store::export_state`].
pub fn import_state(bytes: &[u8]) -> Result<StateImport, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        place: "backup".into(),
        reason,
    };
    let rest = bytes
        .strip_prefix(EXPORT_MAGIC)
        .ok_or_else(|| corrupt("not a lockbox state export".into()))?;
    let (version, rest) = rest
        .split_first_chunk::<2>()
        .ok_or_else(|| corrupt("a truncated header".into()))?;
    match u16::from_le_bytes(*version) {
        EXPORT_VERSION => {}
        other => {
            return Err(corrupt(format!(
                "export format {other} is newer than this lockbox understands ({EXPORT_VERSION})"
            )));
        }
    }
    let (taken_at, rest) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| corrupt("a truncated header".into()))?;
    let (id_len, rest) = rest
        .split_first_chunk::<2>()
        .ok_or_else(|| corrupt("a truncated header".into()))?;
    let id_len = usize::from(u16::from_le_bytes(*id_len));
    if rest.len() < id_len {
        return Err(corrupt("a truncated node ID".into()));
    }
    let (node_id, snapshot) = rest.split_at(id_len);
    let node_id = std::str::from_utf8(node_id)
        .map_err(|_| corrupt("the node ID is not UTF-8".into()))?
        .to_owned();
    let payload = SnapshotPayload::decode(snapshot).map_err(corrupt)?;
    let mut state = payload.state;
    state.reindex();
    Ok(StateImport {
        node_id,
        taken_at: Timestamp(i64::from_le_bytes(*taken_at)),
        state,
    })
}

/// Creates `dir/store.redb` holding `state` as its only (snapshot) record, sealed with
/// `keyring`, with a Raft group of one member: `raft_id` at `raft_addr`. The snapshot covers
/// the log up to the state's version, so new entries (and the versions of the objects they
/// change) continue past every version in the state.
///
/// The file is built under a temporary name and renamed into place once complete and
/// fsynced. An existing `store.redb` is refused ([`StoreError::Database`]): a caller that
/// means to replace it removes it first.
pub fn create_restored(
    dir: &Path,
    raft_id: u64,
    raft_addr: &str,
    keyring: &Keyring,
    state: State,
) -> Result<(), StoreError> {
    let target = dir.join(DB_FILE);
    if target.exists() {
        return Err(StoreError::Database(format!(
            "{} exists already",
            target.display()
        )));
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{DB_FILE}.restore-tmp"));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let result = write_restored(&tmp, raft_id, raft_addr, keyring, state).and_then(|()| {
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_restored(
    path: &Path,
    raft_id: u64,
    raft_addr: &str,
    keyring: &Keyring,
    state: State,
) -> Result<(), StoreError> {
    let db = redb::Database::create(path).map_err(|e| StoreError::Database(e.to_string()))?;
    let disk = Disk {
        db: Arc::new(db),
        keyring: Arc::new(RwLock::new(keyring.clone())),
    };
    disk.init_tables().map_err(StoreError::Database)?;
    // Term 0, as openraft's own `initialize` uses for the first entry: the first election on
    // open moves to term 1.
    let last = LogId::new(CommittedLeaderId::new(0, raft_id), state.version.max(1));
    let membership = StoredMembership::new(
        Some(last),
        Membership::new(
            vec![BTreeSet::from([raft_id])],
            BTreeMap::from([(
                raft_id,
                BasicNode {
                    addr: raft_addr.to_owned(),
                },
            )]),
        ),
    );
    let payload = SnapshotPayload {
        last_applied: Some(last),
        membership: membership.clone(),
        state,
    };
    let data = payload
        .encode()
        .map_err(|e| StoreError::Database(format!("encoding the state: {e}")))?;
    let stored = StoredSnapshot {
        meta: SnapshotMeta {
            last_log_id: Some(last),
            last_membership: membership,
            snapshot_id: format!("restore-{}", last.index),
        },
        data,
    };
    disk.write_meta(KEY_SNAPSHOT, &stored, true)
        .map_err(StoreError::Database)?;
    // The database file is closed when the last handle goes.
    drop(disk);
    Ok(())
}

#[cfg(test)]
mod tests {
    use lockbox_crypto::SecretBytes;
    use lockbox_types::{Command, Meta, Outcome, Secret, SecretSpec};

    use super::*;
    use crate::raft::StoreConfig;

    fn secret(id: &str, name: &str, value: &[u8]) -> Secret {
        Secret {
            id: id.into(),
            meta: Meta {
                version: 40,
                ..Meta::default()
            },
            spec: SecretSpec {
                name: name.into(),
                labels: [("env".to_owned(), "prod".to_owned())].into(),
                data: SecretBytes::new(value.to_vec()),
                driver: None,
                templating: None,
            },
        }
    }

    fn sample() -> State {
        let mut state = State::default();
        state
            .secrets
            .insert("a".into(), secret("a", "Alpha", b"value-a"));
        state
            .secrets
            .insert("b".into(), secret("b", "beta", b"value-b"));
        state.version = 42;
        state.reindex();
        state
    }

    #[test]
    fn export_round_trip() {
        let bytes = export_state("node1", Timestamp(77), sample()).unwrap();
        assert!(bytes.starts_with(b"LBXE"));
        assert_eq!(
            bytes.len(),
            bytes.capacity(),
            "written without reallocating"
        );
        // The snapshot part is exactly what the store seals as its snapshot.
        let payload = SnapshotPayload {
            last_applied: None,
            membership: StoredMembership::default(),
            state: sample(),
        };
        assert!(bytes.ends_with(&payload.encode().unwrap()));
        let back = import_state(&bytes).unwrap();
        assert_eq!(back.node_id, "node1");
        assert_eq!(back.taken_at, Timestamp(77));
        assert_eq!(back.state, sample());
        assert_eq!(
            back.state.secret_by_name("alpha").map(|s| s.id.as_str()),
            Some("a")
        );
    }

    #[test]
    fn bad_exports_are_refused() {
        let bytes = export_state("node1", Timestamp(77), sample()).unwrap();
        for len in [0, 3, 5, 13, 16, 20, 30] {
            assert!(import_state(&bytes[..len]).is_err(), "length {len}");
        }
        let mut newer = bytes.to_vec();
        newer[4..6].copy_from_slice(&2u16.to_le_bytes());
        let e = import_state(&newer).unwrap_err().to_string();
        assert!(e.contains("export format 2 is newer"), "{e}");
        assert!(import_state(b"LBXS\x02\x00").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restored_store_opens_through_the_normal_path_and_continues() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Keyring::generate();
        create_restored(dir.path(), 1, "127.0.0.1:2377", &keyring, sample()).unwrap();
        assert!(!dir.path().join("store.redb.restore-tmp").exists());
        // A second restore over it is refused.
        assert!(create_restored(dir.path(), 1, "", &keyring, sample()).is_err());

        let shared = Arc::new(RwLock::new(keyring.clone()));
        let store = Store::open(StoreConfig::new(dir.path()), shared.clone())
            .await
            .unwrap();
        let state = store.read(State::clone);
        assert_eq!(state.secrets, sample().secrets);
        assert!(state.version > 42, "the log continues past the snapshot");
        // New writes get versions past everything restored.
        let out = store
            .propose(Command::CreateSecret {
                secret: Box::new(secret("c", "gamma", b"value-c")),
            })
            .await
            .unwrap();
        let Outcome::Applied { version } = out else {
            panic!("{out:?}")
        };
        assert!(version > 42);
        // The name index works on the restored state.
        assert!(matches!(
            store
                .propose(Command::CreateSecret {
                    secret: Box::new(secret("d", "ALPHA", b"x")),
                })
                .await
                .unwrap(),
            Outcome::Rejected(_)
        ));
        store.shutdown().await.unwrap();
        drop(store);

        // And it opens again, with what was written after the restore.
        let store = Store::open(StoreConfig::new(dir.path()), shared)
            .await
            .unwrap();
        let state = store.read(State::clone);
        assert_eq!(state.secrets.len(), 3);
        assert_eq!(
            state
                .secret_by_name("beta")
                .map(|s| s.spec.data.expose().to_vec()),
            Some(b"value-b".to_vec())
        );
        store.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restored_store_needs_its_key() {
        let dir = tempfile::tempdir().unwrap();
        create_restored(dir.path(), 1, "", &Keyring::generate(), sample()).unwrap();
        let other = Arc::new(RwLock::new(Keyring::generate()));
        let e = Store::open(StoreConfig::new(dir.path()), other)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn export_from_a_live_store() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Arc::new(RwLock::new(Keyring::generate()));
        let store = Store::open(StoreConfig::new(dir.path()), keyring)
            .await
            .unwrap();
        store
            .propose(Command::CreateSecret {
                secret: Box::new(secret("a", "Alpha", b"value-a")),
            })
            .await
            .unwrap();
        let bytes = store.export_state("n1", Timestamp(5)).unwrap();
        let back = import_state(&bytes).unwrap();
        assert_eq!(back.state, store.read(State::clone));
        store.shutdown().await.unwrap();
    }
}
