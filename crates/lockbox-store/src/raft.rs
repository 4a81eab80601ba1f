//! The store facade: opens the redb file, starts openraft, proposes commands, serves reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use lockbox_crypto::Keyring;
use lockbox_types::{Command, Outcome};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use redb::Database;

use crate::error::StoreError;
use crate::state::State;
use crate::storage::{Disk, LogStore, NodeId, StateMachine, TypeConfig};

/// Where and how to open a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory holding `store.redb`.
    pub dir: PathBuf,
    /// This node's Raft id.
    pub raft_id: u64,
    /// This node's Raft address (informational until managers replicate).
    pub raft_addr: String,
    /// Log entries between automatic snapshots.
    pub snapshot_interval: u64,
}

impl StoreConfig {
    /// Defaults for a one-node store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            raft_id: 1,
            raft_addr: String::new(),
            snapshot_interval: 10_000,
        }
    }
}

/// An open store.
pub struct Store {
    raft: Raft<TypeConfig>,
    sm: StateMachine,
    disk: Disk,
    raft_id: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("raft_id", &self.raft_id)
            .finish_non_exhaustive()
    }
}

/// Positions in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Last applied entry.
    pub applied: u64,
    /// Last entry covered by the current snapshot.
    pub snapshot: Option<u64>,
    /// Last entry removed from the log.
    pub purged: Option<u64>,
    /// Last entry in the log.
    pub last_log: Option<u64>,
}

/// The file name of the database inside the store directory.
pub const DB_FILE: &str = "store.redb";

impl Store {
    /// Opens (creating if needed) the store in `config.dir` and starts Raft. Records are sealed
    /// with `keyring`; a record that fails authentication stops the open with
    /// [`StoreError::Corrupt`].
    pub async fn open(
        config: StoreConfig,
        keyring: Arc<RwLock<Keyring>>,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(&config.dir)?;
        let path = config.dir.join(DB_FILE);
        let db = tokio::task::spawn_blocking(move || Database::create(&path))
            .await
            .map_err(|e| StoreError::Database(e.to_string()))?
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    StoreError::InUse(config.dir.display().to_string())
                }
                other => StoreError::Database(other.to_string()),
            })?;
        let disk = Disk {
            db: Arc::new(db),
            keyring,
        };
        disk.init_tables().map_err(StoreError::Database)?;
        let sm = StateMachine::open(disk.clone()).map_err(|reason| StoreError::Corrupt {
            place: "snapshot".into(),
            reason,
        })?;
        let log = LogStore::new(disk.clone());

        let raft_config = Config {
            cluster_name: "lockbox".into(),
            heartbeat_interval: 100,
            election_timeout_min: 250,
            election_timeout_max: 500,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_interval),
            max_in_snapshot_log_to_keep: 0,
            max_payload_entries: 512,
            ..Default::default()
        };
        let raft_config = Arc::new(
            raft_config
                .validate()
                .map_err(|e| StoreError::Raft(e.to_string()))?,
        );
        let raft = Raft::new(config.raft_id, raft_config, Network, log, sm.clone())
            .await
            .map_err(|e| StoreError::Raft(e.to_string()))?;
        let store = Store {
            raft,
            sm,
            disk,
            raft_id: config.raft_id,
        };

        let initialized = store
            .raft
            .is_initialized()
            .await
            .map_err(|e| StoreError::Raft(e.to_string()))?;
        if !initialized {
            let mut members = BTreeMap::new();
            members.insert(
                config.raft_id,
                BasicNode {
                    addr: config.raft_addr.clone(),
                },
            );
            store
                .raft
                .initialize(members)
                .await
                .map_err(|e| StoreError::Raft(e.to_string()))?;
        }
        store
            .raft
            .wait(Some(Duration::from_secs(30)))
            .state(ServerState::Leader, "become leader")
            .await
            .map_err(|e| StoreError::Raft(e.to_string()))?;
        // A no-op through the log makes sure every committed entry is applied before reads.
        store.propose(Command::Noop).await?;
        Ok(store)
    }

    /// Proposes `cmd` and waits until it is durable and applied.
    pub async fn propose(&self, cmd: Command) -> Result<Outcome, StoreError> {
        let kind = cmd.kind();
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(_))) => {
                Err(StoreError::NotLeader)
            }
            Err(e) => {
                tracing::error!(kind, error = %e, "proposal failed");
                Err(StoreError::Raft(e.to_string()))
            }
        }
    }

    /// Runs `f` on the current state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        match self.sm.applied.read() {
            Ok(a) => f(&a.state),
            Err(poisoned) => f(&poisoned.into_inner().state),
        }
    }

    /// Builds a snapshot now and purges the log up to it.
    pub async fn snapshot(&self) -> Result<(), StoreError> {
        let applied = self.raft.metrics().borrow().last_applied;
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| StoreError::Raft(e.to_string()))?;
        if let Some(applied) = applied {
            self.raft
                .wait(Some(Duration::from_secs(60)))
                .snapshot(applied, "snapshot built")
                .await
                .map_err(|e| StoreError::Raft(e.to_string()))?;
            self.raft
                .trigger()
                .purge_log(applied.index)
                .await
                .map_err(|e| StoreError::Raft(e.to_string()))?;
            self.raft
                .wait(Some(Duration::from_secs(60)))
                .purged(Some(applied), "log purged")
                .await
                .map_err(|e| StoreError::Raft(e.to_string()))?;
        }
        Ok(())
    }

    /// Re-seals every stored record with the keyring's current key: called after
    /// [`Keyring::rotate`], before the old key is retired. Takes a snapshot first so that most
    /// of the log is simply dropped. Returns the number of records rewritten.
    pub async fn reseal(&self) -> Result<usize, StoreError> {
        self.snapshot().await?;
        let disk = self.disk.clone();
        tokio::task::spawn_blocking(move || disk.reseal_all())
            .await
            .map_err(|e| StoreError::Database(e.to_string()))?
            .map_err(|reason| StoreError::Corrupt {
                place: "reseal".into(),
                reason,
            })
    }

    /// The ids of the data keys that still seal records on disk.
    pub fn key_ids_in_use(&self) -> Result<Vec<u32>, StoreError> {
        self.disk.key_ids_in_use().map_err(StoreError::Database)
    }

    /// Log and snapshot positions, for `info` and tests.
    pub fn stats(&self) -> StoreStats {
        let m = self.raft.metrics().borrow().clone();
        StoreStats {
            applied: m.last_applied.map_or(0, |l| l.index),
            snapshot: m.snapshot.map(|l| l.index),
            purged: m.purged.map(|l| l.index),
            last_log: m.last_log_index,
        }
    }

    /// The index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0)
    }

    /// Stops Raft. Durable state is already on disk.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.raft
            .shutdown()
            .await
            .map_err(|e| StoreError::Raft(e.to_string()))
    }
}

/// The Raft network. A one-node store never sends; peers are reported unreachable until the
/// manager transport exists.
struct Network;

struct NoPeer;

#[derive(Debug, thiserror::Error)]
#[error("manager-to-manager transport is not configured on this node")]
struct NoTransport;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = NoPeer;
    async fn new_client(&mut self, _target: NodeId, _node: &BasicNode) -> NoPeer {
        NoPeer
    }
}

impl RaftNetwork<TypeConfig> for NoPeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(RPCError::Unreachable(Unreachable::new(&NoTransport)))
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(RPCError::Unreachable(Unreachable::new(&NoTransport)))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(RPCError::Unreachable(Unreachable::new(&NoTransport)))
    }
}
