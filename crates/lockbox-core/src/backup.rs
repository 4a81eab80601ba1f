//! `swarm backup` (online) and `swarm restore` (offline).
//!
//! A backup is the whole replicated state (secrets with their values, services, tasks,
//! networks, the cluster, nodes, the access model and the cluster keys), exported by the store
//! at one applied index while the node keeps serving, and sealed with a key derived from the
//! operator's passphrase ([`lockbox_crypto::seal_backup`]) before it leaves this process. Only
//! an admin (every permission) may take one: it discloses every secret to whoever knows the
//! passphrase.
//!
//! A restore builds a fresh data directory from a backup, with no daemon running on it: new
//! data keys (protected by a key file, or by an unlock key when the backed-up cluster had
//! autolock on), a store whose only record is the restored state, and `node.json`. As with
//! swarm's `--force-new-cluster`, the node the backup was taken on becomes the only manager
//! of a one-node Raft group; other managers' node objects are kept but are no longer members.
//! Its tasks are lost as in any restart and the orchestrator replaces them.

use std::path::{Path, PathBuf};

use lockbox_crypto::{CryptoError, KeyStore, Keyring, Protection, UnlockKey};
use lockbox_store::{State, StoreConfig};
use lockbox_types::{Meta, Node, NodeAvailability, NodeRole, NodeSpec, PERMISSIONS, Timestamp};
use zeroize::Zeroizing;

use crate::access::denied;
use crate::lockfile::DirLock;
use crate::manager::now;
use crate::{CoreError, Identity, Manager};

/// The error text for a backup that does not open: a wrong passphrase and an altered or
/// truncated file look the same.
pub const WRONG_PASSPHRASE: &str = "backup: wrong passphrase or corrupted file";

/// Files of a node's store in its data directory; a restore refuses a directory holding any.
const STORE_FILES: &[&str] = &["keys.json", "kek", lockbox_store::DB_FILE, "node.json"];

/// What a backup holds, in counts (no names, no values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupSummary {
    /// The cluster's ID (empty if the node was in no swarm).
    pub cluster_id: String,
    /// The node the backup was taken on.
    pub node_id: String,
    /// When it was taken.
    pub taken_at: Timestamp,
    /// The store version (last log index) it reflects.
    pub version: u64,
    /// Whether the cluster had autolock on.
    pub autolock: bool,
    /// Secrets.
    pub secrets: usize,
    /// Services.
    pub services: usize,
    /// Tasks.
    pub tasks: usize,
    /// Networks.
    pub networks: usize,
    /// Nodes.
    pub nodes: usize,
    /// Users.
    pub users: usize,
    /// Grants.
    pub grants: usize,
}

impl BackupSummary {
    fn of(state: &State, node_id: &str, taken_at: Timestamp) -> BackupSummary {
        BackupSummary {
            cluster_id: state
                .cluster
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_default(),
            node_id: node_id.to_owned(),
            taken_at,
            version: state.version,
            autolock: state
                .cluster
                .as_ref()
                .is_some_and(|c| c.spec.encryption_config.auto_lock_managers),
            secrets: state.secrets.len(),
            services: state.services.len(),
            tasks: state.tasks.len(),
            networks: state.networks.len(),
            nodes: state.nodes.len(),
            users: state.access.users.len(),
            grants: state.access.grants.len(),
        }
    }
}

/// A sealed backup, ready to be written to a file.
#[derive(Debug, Clone)]
pub struct BackupFile {
    /// The file's bytes (`LBXBAK1` header, then the sealed state).
    pub bytes: Vec<u8>,
    /// What it holds.
    pub summary: BackupSummary,
}

impl Manager {
    /// `swarm backup`: the whole replicated state at the last applied index, sealed with a key
    /// derived from `passphrase` (wiped when this returns). Needs every permission (the admin
    /// role, or root): a backup opens every secret to whoever knows the passphrase.
    pub async fn backup(
        &self,
        caller: &Identity,
        passphrase: Zeroizing<Vec<u8>>,
    ) -> Result<BackupFile, CoreError> {
        let p = self.permissions(caller).await;
        if let Some(missing) = PERMISSIONS.iter().find(|perm| !p.has(perm)) {
            return Err(denied(
                caller,
                missing,
                Some("the cluster (a backup needs every permission, as the admin role has)"),
            ));
        }
        if passphrase.is_empty() {
            return Err(CoreError::InvalidParameter(
                "backup: the passphrase is empty".into(),
            ));
        }
        let a = self.active().await?;
        let taken_at = now();
        // One copy of the state, under the state machine's read lock: the counts and the
        // export describe the same point of the log.
        let state = a.store.read(State::clone);
        let summary = BackupSummary::of(&state, &a.node_id, taken_at);
        let export = lockbox_store::export_state(&a.node_id, taken_at, state)?;
        let bytes =
            tokio::task::spawn_blocking(move || lockbox_crypto::seal_backup(&passphrase, &export))
                .await
                .map_err(|e| CoreError::Internal(format!("sealing the backup: {e}")))?
                .map_err(|e| CoreError::Internal(format!("sealing the backup: {e}")))?;
        tracing::info!(
            version = summary.version,
            secrets = summary.secrets,
            bytes = bytes.len(),
            "backup taken"
        );
        Ok(BackupFile { bytes, summary })
    }
}

/// A backup opened with its passphrase: the state, in memory only (secret values are zeroized
/// when it is dropped).
pub struct OpenedBackup {
    import: lockbox_store::StateImport,
    summary: BackupSummary,
}

impl std::fmt::Debug for OpenedBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedBackup")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl OpenedBackup {
    /// What the backup holds.
    pub fn summary(&self) -> &BackupSummary {
        &self.summary
    }
}

/// Decrypts and decodes a backup file. A wrong passphrase, an altered or a truncated file all
/// give [`WRONG_PASSPHRASE`]; a file that is no backup at all says so.
pub fn open_backup(file: &[u8], passphrase: &[u8]) -> Result<OpenedBackup, CoreError> {
    let plain = match lockbox_crypto::open_backup(passphrase, file) {
        Ok(p) => p,
        Err(CryptoError::EmptyPassphrase) => {
            return Err(CoreError::InvalidParameter(
                "backup: the passphrase is empty".into(),
            ));
        }
        Err(CryptoError::BadMagic) => {
            return Err(CoreError::InvalidArgument(
                "backup: not a lockbox backup file".into(),
            ));
        }
        Err(CryptoError::Tampered) => {
            return Err(CoreError::InvalidArgument(WRONG_PASSPHRASE.into()));
        }
        Err(e) => {
            return Err(CoreError::InvalidArgument(format!(
                "{WRONG_PASSPHRASE} ({e})"
            )));
        }
    };
    // Authenticated, so this only fails for a backup of a newer lockbox.
    let import = lockbox_store::import_state(&plain)
        .map_err(|e| CoreError::InvalidArgument(format!("backup: {e}")))?;
    let summary = BackupSummary::of(&import.state, &import.node_id, import.taken_at);
    Ok(OpenedBackup { import, summary })
}

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The data directory to create (it must hold no store, unless `force`).
    pub data_dir: PathBuf,
    /// Replace a store that is already there (its keys are wiped).
    pub force: bool,
    /// This host's name, recorded on the restored node.
    pub hostname: String,
    /// When the backed-up cluster had autolock on: the unlock key to protect the new keys with
    /// (`SWMKEY-1-…`); `None` issues a new one (returned in the report).
    pub unlock_key: Option<Zeroizing<String>>,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The node that is now the cluster's only manager.
    pub node_id: String,
    /// The cluster's ID (unchanged).
    pub cluster_id: String,
    /// The restored node is autolocked: the daemon starts locked.
    pub autolock: bool,
    /// The unlock key issued by the restore (autolock without a given key).
    pub new_unlock_key: Option<Zeroizing<String>>,
    /// Managers of the backed-up cluster that are no longer Raft members (their node objects
    /// remain, as with swarm's `--force-new-cluster`).
    pub dropped_managers: Vec<String>,
    /// A store that was in the directory was replaced (`force`).
    pub replaced: bool,
}

/// Checks, without writing anything, that a restore may write `dir`: no daemon holds its lock
/// and, unless `force`, it holds no store. Call it before asking for passphrases; [`restore`]
/// checks again under the lock.
pub fn check_restore_target(dir: &Path, force: bool) -> Result<(), CoreError> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(CoreError::InvalidArgument(format!(
                "restore: {} is not a directory",
                dir.display()
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(CoreError::Internal(format!(
                "restore: cannot read {}: {e}",
                dir.display()
            )));
        }
    }
    if locked_by_daemon(dir)? {
        return Err(in_use(dir));
    }
    let present = store_files(dir);
    if !present.is_empty() && !force {
        return Err(CoreError::Conflict(format!(
            "restore: {} already holds a lockbox store ({}); restore into an empty data \
             directory, or pass --force to replace it (its keys and data are erased)",
            dir.display(),
            present.join(", ")
        )));
    }
    Ok(())
}

fn in_use(dir: &Path) -> CoreError {
    CoreError::Conflict(format!(
        "restore: the data directory {} is in use by a running lockbox daemon; stop it first",
        dir.display()
    ))
}

fn store_files(dir: &Path) -> Vec<String> {
    STORE_FILES
        .iter()
        .filter(|f| dir.join(f).exists())
        .map(|f| (*f).to_owned())
        .collect()
}

/// Whether a daemon holds the directory's lock, found without creating the lock file (a
/// directory without one has no daemon: the daemon creates it before anything else).
fn locked_by_daemon(dir: &Path) -> Result<bool, CoreError> {
    use rustix::fs::{FlockOperation, flock};
    let path = dir.join("lockbox.lock");
    let file = match std::fs::OpenOptions::new().read(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(CoreError::Internal(format!(
                "restore: cannot open {}: {e}",
                path.display()
            )));
        }
    };
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        // Released when `file` closes.
        Ok(()) => Ok(false),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(true),
        Err(e) => Err(CoreError::Internal(format!(
            "restore: cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// `swarm restore`: creates a data directory from which `lockbox daemon` starts a one-node
/// cluster holding the backed-up state. Nothing is written before the directory is locked
/// and checked; a store already there is replaced only with `force`.
pub fn restore(backup: OpenedBackup, opts: RestoreOptions) -> Result<RestoreReport, CoreError> {
    let dir = opts.data_dir.as_path();
    check_restore_target(dir, opts.force)?;
    let autolock = backup.summary.autolock;
    // Parse a given unlock key before anything is written.
    let given_key = match (&opts.unlock_key, autolock) {
        (Some(text), true) => Some(UnlockKey::parse(text).map_err(|_| CoreError::InvalidKey)?),
        _ => None,
    };
    create_private_dir(dir)?;
    let _lock = match DirLock::acquire(dir) {
        Ok(l) => l,
        Err(_) if locked_by_daemon(dir).unwrap_or(true) => return Err(in_use(dir)),
        Err(e) => return Err(e),
    };
    let present = store_files(dir);
    if !present.is_empty() && !opts.force {
        return Err(CoreError::Conflict(format!(
            "restore: {} already holds a lockbox store ({})",
            dir.display(),
            present.join(", ")
        )));
    }
    let replaced = !present.is_empty();
    if replaced {
        erase_store(dir)?;
    }

    let OpenedBackup { import, summary } = backup;
    // The Raft id the manager opens its store with.
    let raft_id = StoreConfig::new(dir).raft_id;
    let (state, node_id, dropped_managers) =
        single_manager(import.state, &import.node_id, raft_id, &opts.hostname);
    let raft_addr = state
        .nodes
        .get(&node_id)
        .map(|n| n.addr.clone())
        .unwrap_or_default();

    let keyring = Keyring::generate();
    // The store first: without keys.json a crash leaves a directory the daemon refuses
    // (its store does not open with new keys) rather than an empty swarm.
    lockbox_store::create_restored(dir, raft_id, &raft_addr, &keyring, state)?;
    let keystore = KeyStore::new(dir);
    let new_unlock_key = if autolock {
        let (key, issued) = match given_key {
            Some(k) => (k, false),
            None => (UnlockKey::generate(), true),
        };
        keystore.create(&keyring, Protection::Autolock(&key))?;
        issued.then(|| key.to_text())
    } else {
        keystore.create(&keyring, Protection::KeyFile)?;
        None
    };
    crate::manager::write_manager_node_file(dir, &node_id, &summary.cluster_id, raft_id)?;
    tracing::info!(
        node_id,
        cluster_id = summary.cluster_id,
        secrets = summary.secrets,
        "restored from a backup"
    );
    Ok(RestoreReport {
        node_id,
        cluster_id: summary.cluster_id,
        autolock,
        new_unlock_key,
        dropped_managers,
        replaced,
    })
}

/// Makes `state` a one-manager cluster: the node the backup was taken on (else the manager
/// with the lowest Raft id, else a new node) becomes this node, with Raft id `raft_id`; other
/// managers keep their node objects with Raft id 0 (no member). Returns the state, this
/// node's ID and the other managers' IDs.
fn single_manager(
    mut state: State,
    source: &str,
    raft_id: u64,
    hostname: &str,
) -> (State, String, Vec<String>) {
    let chosen = if state.nodes.contains_key(source) {
        Some(source.to_owned())
    } else {
        state
            .nodes
            .values()
            .filter(|n| n.spec.role == NodeRole::Manager)
            .min_by_key(|n| n.raft_id)
            .map(|n| n.id.clone())
    };
    let node_id = match chosen {
        Some(id) => id,
        None => {
            let t = now();
            let node = Node {
                id: lockbox_types::new_id(),
                meta: Meta {
                    version: state.version,
                    created_at: t,
                    updated_at: t,
                },
                spec: NodeSpec {
                    name: String::new(),
                    labels: Default::default(),
                    role: NodeRole::Manager,
                    availability: NodeAvailability::Active,
                },
                hostname: String::new(),
                addr: String::new(),
                raft_id,
            };
            let id = node.id.clone();
            state.nodes.insert(id.clone(), node);
            id
        }
    };
    let mut dropped = Vec::new();
    for n in state.nodes.values_mut() {
        if n.id == node_id {
            n.raft_id = raft_id;
            n.spec.role = NodeRole::Manager;
            if !hostname.is_empty() {
                n.hostname = hostname.to_owned();
            }
        } else if n.spec.role == NodeRole::Manager {
            // Kept as a node, no longer a Raft member (and its id free for this one).
            n.raft_id = 0;
            dropped.push(n.id.clone());
        }
    }
    (state, node_id, dropped)
}

fn create_private_dir(dir: &Path) -> Result<(), CoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CoreError::Internal(format!("create {}: {e}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| CoreError::Internal(format!("chmod {}: {e}", dir.display())))
}

/// Removes the store of a data directory (`--force`): keys wiped, the store, `node.json`, and
/// the certificates issued by its CA (the API's TLS files, the node certificates). The audit
/// trail stays: it is this node's history.
fn erase_store(dir: &Path) -> Result<(), CoreError> {
    KeyStore::new(dir).remove()?;
    match std::fs::remove_dir_all(dir.join("certs")) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(CoreError::Internal(format!("remove certs: {e}"))),
    }
    for f in [
        lockbox_store::DB_FILE,
        "node.json",
        "tls/server-key.pem",
        "tls/server-cert.pem",
        "tls/ca.pem",
    ] {
        match std::fs::remove_file(dir.join(f)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CoreError::Internal(format!("remove {f}: {e}"))),
        }
    }
    lockbox_store::remove_store_files(dir)
        .map_err(|e| CoreError::Internal(format!("remove the log: {e}")))?;
    tracing::info!(dir = %dir.display(), "erased the store being replaced");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use lockbox_crypto::SecretBytes;
    use lockbox_types::{Cluster, JoinTokens, Secret, SecretSpec};

    use super::*;

    fn node(id: &str, role: NodeRole, raft_id: u64) -> Node {
        Node {
            id: id.into(),
            meta: Meta::default(),
            spec: NodeSpec {
                name: String::new(),
                labels: BTreeMap::new(),
                role,
                availability: NodeAvailability::Active,
            },
            hostname: format!("host-{id}"),
            addr: String::new(),
            raft_id,
        }
    }

    fn state(autolock: bool) -> State {
        let mut s = State::default();
        let mut cluster = Cluster {
            id: "c1".into(),
            meta: Meta::default(),
            spec: Default::default(),
            join_tokens: JoinTokens {
                worker: "SWMTKN-1-w".into(),
                manager: "SWMTKN-1-m".into(),
            },
            root_ca_pem: String::new(),
            default_addr_pool: Vec::new(),
            subnet_size: 24,
            data_path_port: 4789,
        };
        cluster.spec.encryption_config.auto_lock_managers = autolock;
        s.cluster = Some(cluster);
        for n in [
            node("n1", NodeRole::Manager, 1),
            node("n2", NodeRole::Manager, 7),
            node("w1", NodeRole::Worker, 0),
        ] {
            s.nodes.insert(n.id.clone(), n);
        }
        s.secrets.insert(
            "s1".into(),
            Secret {
                id: "s1".into(),
                meta: Meta::default(),
                spec: SecretSpec {
                    name: "db".into(),
                    data: SecretBytes::new(b"top-secret-value".to_vec()),
                    ..Default::default()
                },
            },
        );
        s.version = 12;
        s.reindex();
        s
    }

    fn sealed(state: State, node: &str, passphrase: &[u8]) -> Vec<u8> {
        let export = lockbox_store::export_state(node, Timestamp(1), state).unwrap();
        lockbox_crypto::seal_backup(passphrase, &export).unwrap()
    }

    fn opts(dir: &Path) -> RestoreOptions {
        RestoreOptions {
            data_dir: dir.to_owned(),
            force: false,
            hostname: "here".into(),
            unlock_key: None,
        }
    }

    #[test]
    fn the_source_node_becomes_the_only_manager() {
        let (s, id, dropped) = single_manager(state(false), "n2", 1, "here");
        assert_eq!(id, "n2");
        assert_eq!(s.nodes["n2"].raft_id, 1);
        assert_eq!(s.nodes["n2"].hostname, "here");
        assert_eq!(dropped, vec!["n1".to_owned()]);
        assert_eq!(s.nodes["n1"].raft_id, 0, "no longer a member");
        assert_eq!(s.nodes["n1"].spec.role, NodeRole::Manager);
        assert_eq!(s.nodes["w1"].raft_id, 0);
        // An unknown source: the manager with the lowest Raft id.
        let (_, id, _) = single_manager(state(false), "gone", 1, "");
        assert_eq!(id, "n1");
        // No nodes at all: a new one.
        let mut empty = state(false);
        empty.nodes.clear();
        let (s, id, dropped) = single_manager(empty, "gone", 1, "h");
        assert_eq!(s.nodes[&id].spec.role, NodeRole::Manager);
        assert!(dropped.is_empty());
    }

    #[test]
    fn open_reports_a_wrong_passphrase_and_damage_alike() {
        let file = sealed(state(false), "n1", b"right");
        let e = open_backup(&file, b"wrong").unwrap_err().to_string();
        assert_eq!(e, WRONG_PASSPHRASE);
        let mut bad = file.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            open_backup(&bad, b"right").unwrap_err().to_string(),
            WRONG_PASSPHRASE
        );
        let e = open_backup(&file[..30], b"right").unwrap_err().to_string();
        assert!(e.starts_with(WRONG_PASSPHRASE), "{e}");
        let e = open_backup(b"hello", b"right").unwrap_err().to_string();
        assert!(e.contains("not a lockbox backup"), "{e}");
        let b = open_backup(&file, b"right").unwrap();
        assert_eq!(b.summary().secrets, 1);
        assert_eq!(b.summary().cluster_id, "c1");
        assert!(!format!("{b:?}").contains("top-secret"));
    }

    #[test]
    fn restore_writes_keys_store_and_node_file_and_refuses_a_second_time() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        check_restore_target(&data, false).unwrap();
        let b = open_backup(&sealed(state(false), "n1", b"pw"), b"pw").unwrap();
        let r = restore(b, opts(&data)).unwrap();
        assert_eq!(r.node_id, "n1");
        assert_eq!(r.cluster_id, "c1");
        assert!(!r.autolock && r.new_unlock_key.is_none() && !r.replaced);
        assert_eq!(r.dropped_managers, vec!["n2".to_owned()]);
        for f in ["keys.json", "kek", "store.redb", "node.json"] {
            assert!(data.join(f).exists(), "{f}");
        }
        assert!(!KeyStore::new(&data).is_autolocked().unwrap());
        let nf: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data.join("node.json")).unwrap()).unwrap();
        assert_eq!(nf["node_id"], "n1");
        assert_eq!(nf["raft_id"], 1);
        // No plaintext value in any file.
        for f in ["keys.json", "store.redb", "node.json"] {
            let bytes = std::fs::read(data.join(f)).unwrap();
            assert!(!bytes.windows(10).any(|w| w == b"top-secret"), "{f}");
        }

        let b = open_backup(&sealed(state(false), "n1", b"pw"), b"pw").unwrap();
        let e = restore(b, opts(&data)).unwrap_err().to_string();
        assert!(e.contains("already holds a lockbox store"), "{e}");
        assert!(check_restore_target(&data, false).is_err());
        // --force replaces it.
        let b = open_backup(&sealed(state(false), "n1", b"pw"), b"pw").unwrap();
        let r = restore(
            b,
            RestoreOptions {
                force: true,
                ..opts(&data)
            },
        )
        .unwrap();
        assert!(r.replaced);
    }

    #[test]
    fn a_directory_locked_by_a_daemon_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _held = DirLock::acquire(dir.path()).unwrap();
        let e = check_restore_target(dir.path(), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("in use by a running lockbox daemon"), "{e}");
        let b = open_backup(&sealed(state(false), "n1", b"pw"), b"pw").unwrap();
        assert!(restore(b, opts(dir.path())).is_err());
        assert!(!dir.path().join("keys.json").exists());
    }

    #[test]
    fn autolock_is_kept_with_the_given_or_a_new_unlock_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = UnlockKey::generate();
        let b = open_backup(&sealed(state(true), "n1", b"pw"), b"pw").unwrap();
        let r = restore(
            b,
            RestoreOptions {
                unlock_key: Some(key.to_text()),
                ..opts(dir.path())
            },
        )
        .unwrap();
        assert!(r.autolock && r.new_unlock_key.is_none());
        let ks = KeyStore::new(dir.path());
        assert!(ks.is_autolocked().unwrap());
        ks.unlock(&key).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let b = open_backup(&sealed(state(true), "n1", b"pw"), b"pw").unwrap();
        let r = restore(b, opts(dir.path())).unwrap();
        let issued = r.new_unlock_key.expect("a new key");
        KeyStore::new(dir.path())
            .unlock(&UnlockKey::parse(&issued).unwrap())
            .unwrap();

        // A malformed key is refused before anything is written.
        let dir = tempfile::tempdir().unwrap();
        let b = open_backup(&sealed(state(true), "n1", b"pw"), b"pw").unwrap();
        assert!(
            restore(
                b,
                RestoreOptions {
                    unlock_key: Some(Zeroizing::new("nope".into())),
                    ..opts(dir.path())
                },
            )
            .is_err()
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
