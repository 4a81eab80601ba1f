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

use crate::error::StoreError;
use crate::proposal::Proposal;
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

/// redb's page cache.
const REDB_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Most commands one Raft entry carries.
const MAX_BATCH: usize = 64;

/// Entries proposed and not yet applied, at most.
const IN_FLIGHT: usize = 2;

type Reply = tokio::sync::oneshot::Sender<Result<Outcome, StoreError>>;

/// An open store.
pub struct Store {
    raft: Raft<TypeConfig>,
    proposals: tokio::sync::mpsc::UnboundedSender<(Command, Reply)>,
    proposer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
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
        // redb caches up to 1 GiB of pages by default. The store reads the log back rarely (the
        // log store keeps recent entries decoded) and the snapshot once at start, so a small
        // cache costs nothing measurable and keeps the daemon's memory near its state's size.
        let db = tokio::task::spawn_blocking(move || {
            // A store closed a moment ago in this process may still be releasing the file (its
            // background tasks drop their handles asynchronously): retry briefly. Another
            // daemon is kept out by the data directory's lock, not by this.
            let mut tries = 0;
            loop {
                match redb::Builder::new()
                    .set_cache_size(REDB_CACHE_BYTES)
                    .create(&path)
                {
                    Err(redb::DatabaseError::DatabaseAlreadyOpen) if tries < 40 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    other => break other,
                }
            }
        })
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
        let (proposals, queue) = tokio::sync::mpsc::unbounded_channel();
        let proposer = tokio::spawn(propose_batches(raft.clone(), queue));
        let store = Store {
            raft,
            proposals,
            proposer: std::sync::Mutex::new(Some(proposer)),
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
    ///
    /// Commands proposed while an earlier entry is being written are grouped into the next
    /// entry (up to [`MAX_BATCH`]), so concurrent writers share one fsync: openraft 0.9 writes
    /// and flushes each entry before it takes the next one.
    pub async fn propose(&self, cmd: Command) -> Result<Outcome, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.proposals
            .send((cmd, tx))
            .map_err(|_| StoreError::Shutdown)?;
        rx.await.map_err(|_| StoreError::Shutdown)?
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
        let result = self
            .raft
            .shutdown()
            .await
            .map_err(|e| StoreError::Raft(e.to_string()));
        // The proposer holds a Raft handle: end it before returning, so that the database is
        // closed when the store is dropped (a reopen right after must not find it in use).
        let proposer = self.proposer.lock().ok().and_then(|mut p| p.take());
        if let Some(p) = proposer {
            p.abort();
            let _ = p.await;
        }
        result
    }
}

/// Proposes what is queued: everything that arrived while earlier entries were being written
/// goes into the next entry. Up to [`IN_FLIGHT`] entries are outstanding at once, so the next
/// entry is already waiting in Raft when the previous one is flushed.
async fn propose_batches(
    raft: Raft<TypeConfig>,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<(Command, Reply)>,
) {
    let mut in_flight = futures::stream::FuturesUnordered::new();
    loop {
        let next = if in_flight.len() >= IN_FLIGHT {
            // Wait for a slot; commands keep queueing meanwhile.
            futures::StreamExt::next(&mut in_flight).await;
            continue;
        } else if in_flight.is_empty() {
            queue.recv().await
        } else {
            tokio::select! {
                biased;
                _ = futures::StreamExt::next(&mut in_flight) => continue,
                next = queue.recv() => next,
            }
        };
        let Some((cmd, reply)) = next else { break };
        let mut cmds = vec![cmd];
        let mut replies = vec![reply];
        while cmds.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok((cmd, reply)) => {
                    cmds.push(cmd);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        in_flight.push(propose_one(raft.clone(), cmds, replies));
    }
    while futures::StreamExt::next(&mut in_flight).await.is_some() {}
}

/// Writes one entry and hands each command's outcome to its proposer.
async fn propose_one(raft: Raft<TypeConfig>, cmds: Vec<Command>, replies: Vec<Reply>) {
    let proposal = match <[Command; 1]>::try_from(cmds) {
        Ok([one]) => Proposal::One(one),
        Err(many) => Proposal::Batch(many),
    };
    let (kind, n) = (proposal.kind(), proposal.len());
    match raft.client_write(proposal).await {
        Ok(resp) => {
            let mut outcomes = resp.data.into_iter();
            for reply in replies {
                let outcome = outcomes
                    .next()
                    .ok_or_else(|| StoreError::Raft("no outcome for a proposed command".into()));
                let _ = reply.send(outcome);
            }
        }
        Err(RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(_))) => {
            for reply in replies {
                let _ = reply.send(Err(StoreError::NotLeader));
            }
        }
        Err(e) => {
            tracing::error!(kind, commands = n, error = %e, "proposal failed");
            let text = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(StoreError::Raft(text.clone())));
            }
        }
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
