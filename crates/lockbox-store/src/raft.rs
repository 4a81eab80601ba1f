//! The store facade: opens the redb file, starts openraft, proposes commands, serves reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use lockbox_crypto::Keyring;
use lockbox_types::{Command, Outcome};
use openraft::error::{ClientWriteError, InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{BasicNode, ChangeMembers, Config, Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::StoreError;
use crate::network::{Network, PeerSeen, Rpc, Transport, TransportSlot, decode, encode};
use crate::proposal::Proposal;
use crate::state::State;
use crate::storage::{Disk, LogStore, NodeId, StateMachine, TypeConfig};

/// Where and how to open a store.
#[derive(Clone)]
pub struct StoreConfig {
    /// Directory holding `store.redb`.
    pub dir: PathBuf,
    /// This node's Raft id.
    pub raft_id: u64,
    /// This node's Raft address: where other managers reach its transport.
    pub raft_addr: String,
    /// Log entries between automatic snapshots.
    pub snapshot_interval: u64,
    /// A new store becomes a one-node group of its own (`swarm init`); without it, a new
    /// store waits for a leader to add it (`swarm join`).
    pub bootstrap: bool,
    /// How this store reaches other managers; `None` for a one-node store.
    pub transport: Option<Arc<dyn Transport>>,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("dir", &self.dir)
            .field("raft_id", &self.raft_id)
            .field("raft_addr", &self.raft_addr)
            .field("snapshot_interval", &self.snapshot_interval)
            .field("bootstrap", &self.bootstrap)
            .field("transport", &self.transport.is_some())
            .finish()
    }
}

impl StoreConfig {
    /// Defaults for a one-node store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            raft_id: 1,
            raft_addr: String::new(),
            snapshot_interval: 10_000,
            bootstrap: true,
            transport: None,
        }
    }
}

/// redb's page cache: the log store keeps recent entries decoded, so redb reads little but
/// the pages a commit walks. 16 MiB held 2–4 MB more resident than 4 MiB at 40,000 secrets,
/// at the same speed (interleaved bench runs).
const REDB_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Most commands one Raft entry carries.
const MAX_BATCH: usize = 64;

/// Entries proposed and not yet applied, at most. One: everything that arrives while an entry
/// is written and applied goes into the next one. With two (the next entry waiting in Raft
/// while the previous one is flushed) batches were half as large, so a create cost twice the
/// log writes: 32 connections made 15,700 creates/s at 66 µs of daemon CPU each, against
/// 21,000–24,000/s at 40–46 µs with one (same machine, interleaved runs; p50 1.95 → 1.4 ms).
/// openraft 0.9 writes entries one after the other anyway.
const IN_FLIGHT: usize = 1;

/// How long a lone proposer watches for its outcome awake before it sleeps: a log sync here
/// takes 0.13 ms at the median and 0.27 ms at p99.
///
/// Waking a sleeping thread costs tens of microseconds on a virtual machine (the idle vCPU has to
/// be interrupted and rescheduled), and a write on one connection crosses threads twice: from
/// the API handler to the Raft thread and back. Watching awake on both sides took a create on
/// one connection from 2,400–2,800/s (p50 0.34–0.39 ms) to 3,100–3,600/s (p50 0.24–0.28 ms),
/// at the price of ~0.2 ms more daemon CPU per create while such writes keep coming
/// (interleaved runs, bench/analysis.md). Only a proposal with no other one outstanding
/// spins: under concurrency the threads are busy anyway, and 32 spinning handlers cost
/// throughput.
const REPLY_SPIN: Duration = Duration::from_micros(500);

/// How long the proposer watches its queue awake after an entry of one command, for the same
/// client's next request (a round trip through the API is 0.06–0.07 ms here); see
/// [`REPLY_SPIN`].
const PROPOSER_SPIN: Duration = Duration::from_micros(200);

type Reply = tokio::sync::oneshot::Sender<Result<Outcome, StoreError>>;

/// An open store.
pub struct Store {
    raft: Raft<TypeConfig>,
    proposals: tokio::sync::mpsc::UnboundedSender<(Command, Reply)>,
    proposer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The thread Raft's own tasks run on.
    thread: std::sync::Mutex<Option<RaftThread>>,
    /// Proposals waiting for their outcome.
    outstanding: AtomicUsize,
    sm: StateMachine,
    /// The same log openraft writes (shares its files, cache and committed position).
    log: LogStore,
    disk: Disk,
    raft_id: u64,
    seen: PeerSeen,
    transport: TransportSlot,
}

/// A manager in the Raft group, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Raft id.
    pub raft_id: u64,
    /// Raft address.
    pub addr: String,
    /// Votes (false: a learner still catching up).
    pub voter: bool,
    /// This member is the leader this node knows of.
    pub leader: bool,
    /// Seconds since it last answered this node (leaders hear from every member; followers
    /// only talk to the leader). `None` if it never answered or is this node.
    pub last_seen: Option<Duration>,
}

/// The answer to a forwarded proposal.
#[derive(Debug, Serialize, Deserialize)]
enum Forwarded {
    /// Applied at `index`, one outcome per command.
    Done { index: u64, outcomes: Vec<Outcome> },
    /// The receiver is not the leader (any more).
    NotLeader,
    /// Raft failed.
    Failed(String),
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

/// Deletes the log files of the store in `dir` (`swarm leave`, or before a store is rebuilt
/// there); `store.redb` is the caller's to remove, once the store that held it has let go.
pub fn remove_store_files(dir: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir.join(crate::storage::WAL_DIR)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

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
        let log = {
            let (disk, dir) = (disk.clone(), config.dir.clone());
            tokio::task::spawn_blocking(move || LogStore::open(disk, &dir))
                .await
                .map_err(|e| StoreError::Database(e.to_string()))?
                .map_err(|reason| StoreError::Corrupt {
                    place: "log".into(),
                    reason,
                })?
        };
        // openraft's core gets the handle that moves entries out of the cache as it applies
        // them; the store keeps one that copies.
        let log_handle = log.clone();
        let log = log.for_core();

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
        let seen = PeerSeen::default();
        let transport = TransportSlot::default();
        transport.set(config.transport.clone());
        let network = Network {
            transport: transport.clone(),
            seen: seen.clone(),
        };
        let thread = RaftThread::start()?;
        // openraft spawns its tasks (the core, the state machine worker) on the runtime it is
        // created in: create it on the Raft thread.
        let raft = {
            let (id, sm) = (config.raft_id, sm.clone());
            thread
                .handle
                .spawn(async move { Raft::new(id, raft_config, network, log, sm).await })
                .await
                .map_err(|e| StoreError::Raft(e.to_string()))?
                .map_err(|e| StoreError::Raft(e.to_string()))?
        };
        let (proposals, queue) = tokio::sync::mpsc::unbounded_channel();
        let proposer = thread.handle.spawn(propose_batches(
            raft.clone(),
            config.raft_id,
            transport.clone(),
            queue,
        ));
        let store = Store {
            raft,
            proposals,
            proposer: std::sync::Mutex::new(Some(proposer)),
            thread: std::sync::Mutex::new(Some(thread)),
            outstanding: AtomicUsize::new(0),
            sm,
            log: log_handle,
            disk,
            raft_id: config.raft_id,
            seen,
            transport,
        };

        let initialized = store
            .raft
            .is_initialized()
            .await
            .map_err(|e| StoreError::Raft(e.to_string()))?;
        if !initialized && !config.bootstrap {
            // A joining manager: the leader adds it and replicates everything to it.
            return Ok(store);
        }
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
        let alone = {
            let m = store.raft.metrics().borrow().membership_config.clone();
            let voters: Vec<u64> = m.membership().voter_ids().collect();
            voters == [config.raft_id]
        };
        if alone {
            store
                .raft
                .wait(Some(Duration::from_secs(30)))
                .state(ServerState::Leader, "become leader")
                .await
                .map_err(|e| StoreError::Raft(e.to_string()))?;
            // A no-op through the log makes sure every committed entry is applied before reads.
            store.propose(Command::Noop).await?;
        } else {
            // One of several managers: serve what is applied; the leader (elected with the
            // others) brings this node up to date. Wait a little for one, not for a quorum.
            let _ = store
                .raft
                .wait(Some(Duration::from_secs(3)))
                .metrics(|m| m.current_leader.is_some(), "a leader is known")
                .await;
        }
        Ok(store)
    }

    /// The state with every entry of this node's log applied, including entries this node
    /// does not know to be committed: what `swarm init --force-new-cluster` keeps (a manager
    /// restarted without a quorum has applied only what it knew was committed).
    pub async fn state_with_whole_log(&self) -> Result<State, StoreError> {
        use openraft::RaftLogReader;
        let (mut state, next) = {
            let a = self
                .sm
                .applied
                .read()
                .map_err(|_| StoreError::Raft("state lock poisoned".into()))?;
            (a.state.clone(), a.last_applied.map_or(0, |l| l.index + 1))
        };
        let mut log = self.log.clone();
        let entries = log
            .try_get_log_entries(next..)
            .await
            .map_err(|e| StoreError::Database(e.to_string()))?;
        for entry in &entries {
            crate::storage::apply_entry(&mut state, entry);
        }
        Ok(state)
    }

    /// Sets (or clears) how this store reaches other managers.
    pub fn set_transport(&self, transport: Option<Arc<dyn Transport>>) {
        self.transport.set(transport);
    }

    /// This node's Raft id.
    pub fn raft_id(&self) -> u64 {
        self.raft_id
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        // A leader that removed itself from the group keeps its committed vote (and so names
        // itself leader) after it steps down.
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.current_leader == Some(self.raft_id) && m.state == ServerState::Leader
    }

    /// The leader this node knows of: its Raft id and address.
    pub fn leader(&self) -> Option<(u64, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        if id == self.raft_id && m.state != ServerState::Leader {
            return None;
        }
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        Some((id, addr))
    }

    /// Whether this store was ever part of a Raft group (a joining store is not until the
    /// leader adds it).
    pub async fn is_member(&self) -> bool {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership().get_node(&self.raft_id).is_some()
    }

    /// The managers of the group, as this node sees them.
    pub fn members(&self) -> Vec<Member> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| Member {
                raft_id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
                leader: m.current_leader == Some(*id),
                last_seen: if *id == self.raft_id {
                    None
                } else {
                    self.seen.last(*id).map(|t| t.elapsed())
                },
            })
            .collect()
    }

    /// Adds a manager: as a learner first (blocking until it has caught up), then as a
    /// voter. Leader only.
    pub async fn add_manager(&self, raft_id: u64, addr: &str) -> Result<(), StoreError> {
        let node = BasicNode {
            addr: addr.to_owned(),
        };
        self.raft
            .add_learner(raft_id, node, true)
            .await
            .map_err(membership_error)?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds([raft_id].into()), false)
            .await
            .map_err(membership_error)?;
        Ok(())
    }

    /// Removes a manager from the group (as voter and node). Leader only.
    pub async fn remove_manager(&self, raft_id: u64) -> Result<(), StoreError> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        if m.membership().voter_ids().any(|v| v == raft_id) {
            self.raft
                .change_membership(ChangeMembers::RemoveVoters([raft_id].into()), false)
                .await
                .map_err(membership_error)?;
        }
        let m = self.raft.metrics().borrow().membership_config.clone();
        if m.membership().get_node(&raft_id).is_some() {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes([raft_id].into()), false)
                .await
                .map_err(membership_error)?;
        }
        Ok(())
    }

    /// Waits until this node has applied at least `index` (or `timeout` passes).
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), StoreError> {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "applied")
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Raft(e.to_string()))
    }

    /// Serves one message from another manager (see [`Transport`]): decodes it, hands it to
    /// Raft (or, for a forwarded proposal, proposes it as the leader) and encodes the answer.
    pub async fn serve_rpc(&self, rpc: Rpc, body: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let bad = |e: String| StoreError::Raft(e);
        match rpc {
            Rpc::Append => {
                let req: AppendEntriesRequest<TypeConfig> = decode(body).map_err(bad)?;
                encode(&self.raft.append_entries(req).await).map_err(bad)
            }
            Rpc::Vote => {
                let req: VoteRequest<NodeId> = decode(body).map_err(bad)?;
                encode(&self.raft.vote(req).await).map_err(bad)
            }
            Rpc::Snapshot => {
                let req: InstallSnapshotRequest<TypeConfig> = decode(body).map_err(bad)?;
                let answer: Result<_, RaftError<NodeId, InstallSnapshotError>> =
                    self.raft.install_snapshot(req).await;
                encode(&answer).map_err(bad)
            }
            Rpc::Propose => {
                let cmds: Vec<Command> = decode(body).map_err(bad)?;
                let answer = if !self.is_leader() {
                    Forwarded::NotLeader
                } else {
                    match self.raft.client_write(Proposal::Batch(cmds)).await {
                        Ok(resp) => Forwarded::Done {
                            index: resp.log_id.index,
                            outcomes: resp.data,
                        },
                        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                            Forwarded::NotLeader
                        }
                        Err(e) => Forwarded::Failed(e.to_string()),
                    }
                };
                encode(&answer).map_err(bad)
            }
        }
    }

    /// Proposes `cmd` and waits until it is durable and applied.
    ///
    /// Commands proposed while an earlier entry is being written are grouped into the next
    /// entry (up to [`MAX_BATCH`]), so concurrent writers share one fsync: openraft 0.9 writes
    /// and flushes each entry before it takes the next one.
    pub async fn propose(&self, cmd: Command) -> Result<Outcome, StoreError> {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let waiting = Waiting::enter(&self.outstanding);
        self.proposals
            .send((cmd, tx))
            .map_err(|_| StoreError::Shutdown)?;
        if waiting.alone {
            // The only write in flight: its outcome comes back in about one log sync. Waiting
            // awake for it saves the wake-up of a sleeping thread (see [`REPLY_SPIN`]).
            let until = Instant::now() + REPLY_SPIN;
            while Instant::now() < until {
                match rx.try_recv() {
                    Ok(outcome) => return outcome,
                    Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                        return Err(StoreError::Shutdown);
                    }
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
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
            // The metrics read above may trail the state machine by an entry, so the snapshot
            // can come out later than `applied`: wait for one at least that far, then purge up
            // to wherever it is.
            let at_least =
                |l: Option<openraft::LogId<NodeId>>| l.is_some_and(|l| l.index >= applied.index);
            let built = self
                .raft
                .wait(Some(Duration::from_secs(60)))
                .metrics(|m| at_least(m.snapshot), "snapshot built")
                .await
                .map_err(|e| StoreError::Raft(e.to_string()))?
                .snapshot
                .unwrap_or(applied);
            self.raft
                .trigger()
                .purge_log(built.index)
                .await
                .map_err(|e| StoreError::Raft(e.to_string()))?;
            self.raft
                .wait(Some(Duration::from_secs(60)))
                .metrics(
                    |m| m.purged.is_some_and(|p| p.index >= built.index),
                    "log purged",
                )
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
        let (disk, wal) = (self.disk.clone(), self.log.wal.clone());
        tokio::task::spawn_blocking(move || disk.reseal_all(&wal))
            .await
            .map_err(|e| StoreError::Database(e.to_string()))?
            .map_err(|reason| StoreError::Corrupt {
                place: "reseal".into(),
                reason,
            })
    }

    /// The ids of the data keys that still seal records on disk.
    pub fn key_ids_in_use(&self) -> Result<Vec<u32>, StoreError> {
        self.disk
            .key_ids_in_use(&self.log.wal)
            .map_err(StoreError::Database)
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
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            t.stop().await;
        }
        result
    }
}

/// A thread with a runtime of its own for Raft's tasks: the core, the state machine worker
/// and the proposer hand every entry to each other, and on one thread those hand-offs are
/// plain task switches. On the daemon's shared pool they woke idle worker threads, which
/// then competed with the API handlers: 32 connections made 16,000–23,000 creates/s there
/// against 22,000–26,000/s with this thread (interleaved runs, bench/analysis.md). API
/// handlers stay on the shared pool and reach Raft through channels; [`REPLY_SPIN`] keeps
/// that crossing cheap for a lone writer.
struct RaftThread {
    handle: tokio::runtime::Handle,
    /// Dropping it ends the thread's runtime and every task on it.
    stop: tokio::sync::oneshot::Sender<()>,
    /// Fires once the runtime is gone (its tasks, and the files they held, dropped).
    stopped: tokio::sync::oneshot::Receiver<()>,
}

impl RaftThread {
    fn start() -> Result<RaftThread, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("lockbox-raft")
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (stopped_tx, stopped) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("lockbox-raft".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stop_rx.await;
                });
                drop(runtime);
                let _ = stopped_tx.send(());
            })?;
        Ok(RaftThread {
            handle,
            stop,
            stopped,
        })
    }

    /// Ends the runtime and waits until it is gone.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.stopped.await;
    }
}

/// Proposes what is queued: everything that arrived while earlier entries were being written
/// and applied goes into the next entry. Up to [`IN_FLIGHT`] entries are outstanding at once.
async fn propose_batches(
    raft: Raft<TypeConfig>,
    raft_id: u64,
    transport: TransportSlot,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<(Command, Reply)>,
) {
    let mut in_flight = futures::stream::FuturesUnordered::new();
    // The last entry carried one command: a single client writing one request after the
    // other, whose next request is likely a round trip away.
    let mut last_single = false;
    loop {
        let next = if in_flight.len() >= IN_FLIGHT {
            // Wait for a slot; commands keep queueing meanwhile.
            futures::StreamExt::next(&mut in_flight).await;
            continue;
        } else if in_flight.is_empty() {
            match last_single {
                true => next_soon(&mut queue).await,
                false => queue.recv().await,
            }
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
        last_single = cmds.len() == 1;
        in_flight.push(propose_one(
            raft.clone(),
            raft_id,
            transport.clone(),
            cmds,
            replies,
        ));
    }
    while futures::StreamExt::next(&mut in_flight).await.is_some() {}
}

/// The next command in `queue`, watching for it awake for up to [`PROPOSER_SPIN`] before
/// sleeping.
async fn next_soon(
    queue: &mut tokio::sync::mpsc::UnboundedReceiver<(Command, Reply)>,
) -> Option<(Command, Reply)> {
    let until = Instant::now() + PROPOSER_SPIN;
    while Instant::now() < until {
        match queue.try_recv() {
            Ok(next) => return Some(next),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return None,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => tokio::task::yield_now().await,
        }
    }
    queue.recv().await
}

/// Counts a proposal as outstanding while it lives.
struct Waiting<'a> {
    count: &'a AtomicUsize,
    /// No other proposal was outstanding when this one entered.
    alone: bool,
}

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Waiting<'a> {
        let alone = count.fetch_add(1, Ordering::AcqRel) == 0;
        Waiting { count, alone }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long a proposal waits for a leader to be elected, and for a forwarded write to be
/// applied here.
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// Writes one entry and hands each command's outcome to its proposer. On a follower the
/// commands go to the leader, and the outcome is handed back once this node has applied the
/// entry too (so a client reads its own write from the manager it wrote through).
async fn propose_one(
    raft: Raft<TypeConfig>,
    raft_id: u64,
    transport: TransportSlot,
    cmds: Vec<Command>,
    replies: Vec<Reply>,
) {
    // The common case, a leader (every one-node store), costs one look at the metrics.
    let leading = raft.metrics().borrow().current_leader == Some(raft_id);
    if !leading && let Some(transport) = transport.get() {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let leader = raft
                .wait(Some(left))
                .metrics(|m| m.current_leader.is_some(), "a leader is known")
                .await
                .ok()
                .and_then(|m| {
                    let id = m.current_leader?;
                    let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
                    Some((id, addr))
                });
            let result = match leader {
                Some((id, _)) if id == raft_id => break,
                Some((_, addr)) => forward(&raft, transport.as_ref(), &addr, &cmds).await,
                None => Err(StoreError::NoLeader),
            };
            // A leader that is gone (not reached at all) or no longer leads: the write was
            // not taken; wait for the next leader while there is time.
            let retry = match &result {
                Err(StoreError::NotLeader) => true,
                Err(StoreError::Unreachable(e)) => not_delivered(e),
                _ => false,
            };
            if retry {
                if tokio::time::Instant::now() + Duration::from_millis(200) < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                for reply in replies {
                    let _ = reply.send(Err(StoreError::NoLeader));
                }
                return;
            }
            match result {
                Ok(outcomes) if outcomes.len() == replies.len() => {
                    for (reply, o) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(o));
                    }
                }
                Ok(_) => {
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::Raft(
                            "the leader answered with the wrong number of outcomes".into(),
                        )));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone_shallow()));
                    }
                }
            }
            return;
        }
    }
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

/// Sends `cmds` to the leader at `addr` and waits until this node has applied them.
async fn forward(
    raft: &Raft<TypeConfig>,
    transport: &dyn Transport,
    addr: &str,
    cmds: &[Command],
) -> Result<Vec<Outcome>, StoreError> {
    let body = encode(cmds).map_err(StoreError::Raft)?;
    let answer = transport
        .call(addr, Rpc::Propose, body)
        .await
        .map_err(|e| StoreError::Unreachable(format!("leader {addr}: {e}")))?;
    match decode::<Forwarded>(&answer).map_err(StoreError::Raft)? {
        Forwarded::Done { index, outcomes } => {
            raft.wait(Some(LEADER_WAIT))
                .applied_index_at_least(Some(index), "forwarded write applied")
                .await
                .map_err(|e| StoreError::Raft(e.to_string()))?;
            Ok(outcomes)
        }
        Forwarded::NotLeader => Err(StoreError::NotLeader),
        Forwarded::Failed(e) => Err(StoreError::Raft(e)),
    }
}

/// Whether a transport failure happened before the request left (nothing was delivered).
fn not_delivered(e: &str) -> bool {
    e.contains(": connect: ")
        || e.contains(": TLS handshake: ")
        || e.contains(": HTTP/2 handshake: ")
}

fn membership_error<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Raft(e.to_string())
}
