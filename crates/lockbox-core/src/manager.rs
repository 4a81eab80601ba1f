//! The node's lifecycle and its key handling.
//!
//! ```text
//!   (no keys) ──init──▶ Active ◀──unlock── Locked (autolock, after a restart)
//!       ▲                 │
//!       └────leave -f─────┘
//! ```
//! Keys: a keyring of data keys (DEKs) seals every stored record. The DEKs are wrapped either by
//! a key file (`kek`, 0600) or, with autolock, by a key derived from the unlock key, which is
//! never written anywhere: a restarted node stays locked until someone supplies it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use lockbox_crypto::{KeyStore, Keyring, Protection, UnlockKey};
use lockbox_store::{Store, StoreConfig};
use lockbox_types::{
    Cluster, ClusterSpec, Command, JoinTokens, Meta, Node, NodeAvailability, NodeRole, NodeSpec,
    Outcome, Timestamp,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use zeroize::Zeroizing;

use crate::agent::Agent;
use crate::executor::Executor;
use crate::lockfile::DirLock;
use crate::orchestrator::Planner;
use crate::secrets::{SecretFilter, SecretInfo, SecretInput};
use crate::{CoreError, Event, tokens};

/// The current time as a [`Timestamp`].
pub(crate) fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// How the manager is started.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Where keys and the store live.
    pub data_dir: PathBuf,
    /// Initialize a one-node cluster on first start.
    pub auto_init: bool,
    /// This host's name.
    pub hostname: String,
    /// The address this node advertises.
    pub advertise_addr: String,
    /// Log entries between snapshots.
    pub snapshot_interval: u64,
    /// Where this node's audit trail lives; `None` turns auditing off.
    pub audit_dir: Option<PathBuf>,
    /// Start a new audit segment file past this size (0: the default, 64 MiB).
    pub audit_segment_bytes: u64,
    /// Keep at most this many audit segment files (`None`: all).
    pub audit_max_segments: Option<usize>,
    /// Where the cluster listener (Raft, joins) listens; `None`: where `swarm init` or
    /// `swarm join` said, or nowhere for a node that was never told.
    pub listen_addr: Option<String>,
}

/// Options of `swarm init`.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Enable autolock.
    pub autolock: bool,
    /// Spec overrides; `None` for swarm's defaults.
    pub spec: Option<ClusterSpec>,
    /// Advertise address override.
    pub advertise_addr: Option<String>,
    /// Where the cluster listener listens (`None`: the daemon's `--listen-addr`, or none).
    pub listen_addr: Option<String>,
    /// On a manager of a cluster that lost its quorum: make this manager the only one,
    /// keeping the state (swarm's `--force-new-cluster`).
    pub force_new_cluster: bool,
}

/// Options of `swarm join`.
#[derive(Clone, Default)]
pub struct JoinOptions {
    /// A manager's cluster address.
    pub remote: String,
    /// The join token.
    pub token: Zeroizing<String>,
    /// The address other managers reach this node at (`None`: the listen address when it is
    /// a specific IP, else the daemon's advertise address).
    pub advertise_addr: Option<String>,
    /// Where this node's cluster listener listens (`None`: the daemon's `--listen-addr`, or
    /// swarm's `0.0.0.0:2377`).
    pub listen_addr: Option<String>,
    /// `active`, `pause` or `drain`.
    pub availability: String,
}

impl std::fmt::Debug for JoinOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinOptions")
            .field("remote", &self.remote)
            .field("advertise_addr", &self.advertise_addr)
            .field("listen_addr", &self.listen_addr)
            .finish_non_exhaustive()
    }
}

/// A `swarm update`.
#[derive(Debug, Clone)]
pub struct SwarmUpdate {
    /// The cluster version the caller read.
    pub version: u64,
    /// The full new spec.
    pub spec: ClusterSpec,
    /// Issue a new worker join token.
    pub rotate_worker_token: bool,
    /// Issue a new manager join token.
    pub rotate_manager_token: bool,
    /// Issue a new unlock key.
    pub rotate_unlock_key: bool,
}

/// The node's state as `docker info` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalState {
    /// Not in a swarm.
    Inactive,
    /// Needs its unlock key.
    Locked,
    /// Serving as a manager.
    Active,
    /// In a swarm as a worker (runs tasks; the cluster's state is only on managers).
    Worker,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct NodeFile {
    node_id: String,
    cluster_id: String,
    /// `worker` for a worker; managers (and files written before workers) leave it empty.
    #[serde(default)]
    role: String,
    /// The managers' cluster addresses: a worker's dispatchers; those a new manager (joined
    /// or promoted) asks to be added to the Raft group. A running manager keeps the other
    /// managers' addresses here, so that a locked one that leaves can reach them.
    #[serde(default)]
    managers: Vec<String>,
    /// Raft id (0 in files written before managers replicated: the first manager's, 1).
    #[serde(default)]
    raft_id: u64,
    /// Where the cluster listener listens, when `swarm init`/`join` set it (a worker keeps
    /// it for when it is promoted).
    #[serde(default)]
    listen_addr: Option<String>,
    /// The address other nodes reach this node at.
    #[serde(default)]
    advertise_addr: Option<String>,
}

/// A node about to become a manager (joining, or a promoted worker): what the leader gave it
/// and where it listens.
struct NewManager<'a> {
    node_id: &'a str,
    cluster_id: &'a str,
    raft_id: u64,
    /// The cluster's unlock key, when autolock is on.
    unlock_key: Option<&'a str>,
    listen: &'a str,
    advertise: &'a str,
    /// The managers to ask to be added to the Raft group.
    managers: &'a [String],
}

/// How long a promoted worker waits before trying again after it failed to become a manager.
const PROMOTION_RETRY: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a new manager waits for the replicated state once the leader added it.
const STATE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How a store is opened.
struct OpenStore {
    raft_id: u64,
    raft_addr: String,
    bootstrap: bool,
}

/// The cluster listener and dialer of a manager.
pub(crate) struct ClusterRuntime {
    pub(crate) dialer: Arc<lockbox_cluster::Dialer>,
    /// The listener's TLS, replaced when the node's certificate or trust changes.
    tls: Option<Arc<lockbox_pki::ServerSlot>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub(crate) listen: Option<std::net::SocketAddr>,
}

pub(crate) enum Phase {
    Inactive,
    Locked,
    Active(Arc<Active>),
    /// A worker: no store; tasks and their secrets come from the dispatcher.
    Worker(Arc<crate::worker::Worker>),
}

/// A node that is in a swarm and unlocked.
pub(crate) struct Active {
    pub(crate) store: Store,
    pub(crate) keyring: Arc<RwLock<Keyring>>,
    pub(crate) keystore: KeyStore,
    pub(crate) unlock_key: Mutex<Option<UnlockKey>>,
    pub(crate) node_id: String,
    events: broadcast::Sender<Event>,
    pub(crate) data_dir: PathBuf,
    kick: Arc<tokio::sync::Notify>,
    /// Wakes the keeper of this node's certificate ([`crate::pki::keep`]).
    pub(crate) pki_kick: Arc<tokio::sync::Notify>,
    /// Whether that keeper runs (one per manager).
    pub(crate) pki_keeping: std::sync::atomic::AtomicBool,
    stopping: std::sync::atomic::AtomicBool,
    pub(crate) agent: Arc<Agent>,
    control: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The node's audit trail, for deliveries of secrets to tasks.
    pub(crate) audit: Option<crate::audit::AuditTrail>,
    /// The node-to-node transport, once this node has a certificate.
    pub(crate) cluster: Mutex<Option<ClusterRuntime>>,
    /// What the leader hears from nodes (heartbeats, dispatched secrets).
    pub(crate) liveness: crate::cluster::Liveness,
}

impl Active {
    /// Wakes the orchestrator and the agent.
    pub(crate) fn kick(&self) {
        self.kick.notify_one();
    }

    /// The dialer presenting this node's certificate, if it has one.
    pub(crate) fn dialer(&self) -> Option<Arc<lockbox_cluster::Dialer>> {
        self.cluster
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.dialer.clone()))
    }

    /// Wakes the keeper of this node's certificate (a root rotation started).
    pub(crate) fn kick_pki(&self) {
        self.pki_kick.notify_one();
    }

    /// Puts renewed node certificates or a new trust root to use: new connections to other
    /// nodes, and the listener's configuration for new connections to this one.
    pub(crate) fn reload_cluster_tls(
        &self,
        certs: &crate::cluster::NodeCerts,
    ) -> Result<(), CoreError> {
        let (dialer, server) = crate::pki::tls_of(certs)?;
        self.store
            .set_transport(Some(Arc::new(lockbox_cluster::TlsTransport(
                dialer.clone(),
            ))));
        if let Ok(mut slot) = self.cluster.lock()
            && let Some(rt) = slot.as_mut()
        {
            rt.dialer = dialer;
            if let Some(tls) = &rt.tls {
                tls.set(server);
            }
        }
        Ok(())
    }

    /// The unlock key, when autolock is on.
    pub(crate) fn unlock_key_text(&self) -> Option<Zeroizing<String>> {
        self.unlock_key
            .lock()
            .ok()
            .and_then(|k| k.as_ref().map(UnlockKey::to_text))
    }

    /// Gives the store its transport and, with `listen`, starts the cluster listener. Issues
    /// this node's certificate first if it has none (a manager holds the CA key); from then
    /// on [`crate::pki::keep`] renews it and follows root rotations.
    pub(crate) async fn start_cluster(
        self: &Arc<Self>,
        hostname: &str,
        advertise: &str,
        listen: Option<&str>,
    ) -> Result<(), CoreError> {
        let mut certs = crate::cluster::read_node_certs(&self.data_dir);
        if certs.is_none() && self.store.read(|st| st.keys.is_some()) {
            let (issued, signing) = self
                .issue_recorded(&self.node_id, NodeRole::Manager, hostname, advertise, None)
                .await?;
            crate::cluster::write_node_certs(
                &self.data_dir,
                &crate::cluster::NodeCerts {
                    ca_pem: signing.root_pem,
                    issued,
                    chain_pem: signing.chain_pem,
                },
            )?;
            tracing::info!("issued this node's certificate");
            certs = crate::cluster::read_node_certs(&self.data_dir);
        }
        let Some(certs) = certs else {
            return Ok(());
        };
        let (dialer, config) = crate::pki::tls_of(&certs)?;
        self.store
            .set_transport(Some(Arc::new(lockbox_cluster::TlsTransport(
                dialer.clone(),
            ))));
        let mut runtime = ClusterRuntime {
            dialer,
            tls: None,
            stop: None,
            listen: None,
        };
        crate::pki::keep(
            Arc::downgrade(self),
            hostname.to_owned(),
            advertise.to_owned(),
        );
        if let Some(listen) = listen {
            let tls = lockbox_pki::ServerSlot::new(config);
            runtime.tls = Some(tls.clone());
            let addr = crate::cluster::with_default_port(listen);
            match tokio::net::TcpListener::bind(&addr).await {
                Ok(listener) => {
                    runtime.listen = listener.local_addr().ok();
                    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                    let svc = Arc::new(crate::cluster::NodeService {
                        active: Arc::downgrade(self),
                    });
                    tokio::spawn(lockbox_cluster::serve(listener, tls, svc, async move {
                        let _ = rx.await;
                    }));
                    runtime.stop = Some(tx);
                    tracing::info!(%addr, "cluster listener started");
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot listen for other nodes; this node cannot be joined")
                }
            }
        }
        if let Ok(mut slot) = self.cluster.lock() {
            if let Some(old) = slot.take()
                && let Some(stop) = old.stop
            {
                let _ = stop.send(());
            }
            *slot = Some(runtime);
        }
        Ok(())
    }

    fn stop_cluster(&self) {
        if let Ok(mut slot) = self.cluster.lock()
            && let Some(rt) = slot.take()
            && let Some(stop) = rt.stop
        {
            let _ = stop.send(());
        }
        self.store.set_transport(None);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts the orchestrator and agent loop.
    fn start_control(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let kick = self.kick.clone();
        let handle = tokio::spawn(async move {
            let mut planner = Planner::default();
            let mut last_collect = std::time::Instant::now();
            loop {
                let Some(a) = weak.upgrade() else { break };
                if a.is_stopping() {
                    break;
                }
                // Only the leader orchestrates; every manager runs its own tasks.
                let leading = a.store.is_leader();
                let plan = if leading {
                    let down = a.down_nodes();
                    a.store.read(|st| planner.step_with(st, &down, now()))
                } else {
                    crate::orchestrator::Plan::default()
                };
                if !plan.is_empty() {
                    let t = now();
                    if !plan.tasks.is_empty()
                        && let Err(e) = a
                            .store
                            .propose(Command::Tasks {
                                changes: plan.tasks,
                                now: t,
                            })
                            .await
                    {
                        tracing::warn!(error = %e, "orchestrator proposal failed");
                    }
                    for (id, expected_version, status, rollback_spec) in plan.statuses {
                        let cmd = Command::SetUpdateStatus {
                            id,
                            expected_version,
                            status,
                            rollback_spec,
                            now: t,
                        };
                        if let Err(e) = a.store.propose(cmd).await {
                            tracing::warn!(error = %e, "update status proposal failed");
                        }
                    }
                }
                let host: Arc<dyn crate::agent::AgentHost> = a.clone();
                a.agent.step(&host).await;
                if leading && last_collect.elapsed() >= std::time::Duration::from_secs(1) {
                    last_collect = std::time::Instant::now();
                    for id in a.unused_superseded_secrets() {
                        match a
                            .store
                            .propose(Command::RemoveSecret { id: id.clone() })
                            .await
                        {
                            Ok(_) => tracing::info!(secret = %id, "removed superseded secret"),
                            Err(e) => {
                                tracing::warn!(secret = %id, error = %e, "removing superseded secret failed")
                            }
                        }
                    }
                }
                let notified = kick.notified();
                drop(a);
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
                }
            }
        });
        if let Ok(mut c) = self.control.lock() {
            *c = Some(handle);
        }
    }

    /// Stops the loop and every task of this node (without recording their end: the store
    /// may be closing too; a restarted daemon finds them lost and restarts them).
    pub(crate) async fn stop_control(&self) {
        self.stop_cluster();
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.kick();
        let handle = self.control.lock().ok().and_then(|mut c| c.take());
        if let Some(h) = handle {
            let _ = h.await;
        }
        self.agent
            .stop_all(std::time::Duration::from_secs(10))
            .await;
    }

    /// Asks the leader, through the first of `managers` that answers, to add this manager to
    /// the Raft group: as a learner until it has caught up, then as a voter. Returns the
    /// last refusal or failure if none did (its HTTP status, 0 if none answered).
    pub(crate) async fn ask_to_be_added(
        &self,
        managers: &[String],
    ) -> Result<(), lockbox_cluster::ClusterError> {
        let dialer = self.dialer().ok_or_else(|| {
            lockbox_cluster::ClusterError::unavailable("this manager has no node transport")
        })?;
        let body = serde_json::to_vec(&lockbox_cluster::AddManager {
            node_id: self.node_id.clone(),
        })
        .map_err(|e| lockbox_cluster::ClusterError::internal(e.to_string()))?;
        let mut last = lockbox_cluster::ClusterError {
            status: 0,
            message: "no manager to ask".into(),
        };
        for addr in managers {
            match dialer
                .post(addr, "/cluster/members", body.clone().into())
                .await
            {
                Ok((200, _)) => return Ok(()),
                Ok((status, answer)) => {
                    last = lockbox_cluster::ClusterError {
                        status,
                        message: String::from_utf8_lossy(&answer).into_owned(),
                    }
                }
                Err(e) => {
                    last = lockbox_cluster::ClusterError {
                        status: 0,
                        message: e.to_string(),
                    }
                }
            }
        }
        Err(last)
    }

    /// Joins the Raft group through `managers` and waits up to `wait` for the replicated state
    /// to arrive here.
    async fn enter_raft_group(
        &self,
        managers: &[String],
        wait: std::time::Duration,
    ) -> Result<(), CoreError> {
        self.ask_to_be_added(managers)
            .await
            .map_err(|e| CoreError::Unknown(format!("joining the raft group: {}", e.message)))?;
        // The leader added this node once it had caught up; wait for the state to be here.
        let deadline = std::time::Instant::now() + wait;
        while !self
            .store
            .read(|st| st.cluster.is_some() && st.nodes.contains_key(&self.node_id))
        {
            if std::time::Instant::now() > deadline {
                return Err(CoreError::Unknown(format!(
                    "joined, but the cluster state did not arrive within {}s",
                    wait.as_secs()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(())
    }

    pub(crate) fn emit(&self, event: Event) {
        // No subscribers is fine.
        let _ = self.events.send(event);
    }

    /// Refuses a write that would not fit on disk, before it reaches the Raft log.
    pub(crate) fn check_space(&self, payload: usize) -> Result<(), CoreError> {
        let needed = 1024 * 1024 + 4 * payload as u64;
        match rustix::fs::statvfs(&self.data_dir) {
            Ok(st) => {
                let avail = st.f_bavail.saturating_mul(st.f_frsize);
                if avail < needed {
                    return Err(CoreError::NoSpace(format!(
                        "{} has {avail} bytes free, {needed} needed",
                        self.data_dir.display()
                    )));
                }
                Ok(())
            }
            Err(e) => Err(CoreError::Internal(format!(
                "statvfs {}: {e}",
                self.data_dir.display()
            ))),
        }
    }

    fn cluster(&self) -> Result<Cluster, CoreError> {
        self.store
            .read(|s| s.cluster.clone())
            .ok_or(CoreError::NotInSwarm)
    }

    /// Re-wraps the keyring for the given autolock setting. With `new_key`, a fresh unlock key.
    pub(crate) fn protect(&self, autolock: bool, new_key: bool) -> Result<(), CoreError> {
        let keyring = self
            .keyring
            .read()
            .map_err(|_| CoreError::Internal("keyring lock poisoned".into()))?;
        let mut slot = self
            .unlock_key
            .lock()
            .map_err(|_| CoreError::Internal("unlock key lock poisoned".into()))?;
        if autolock {
            if new_key || slot.is_none() {
                *slot = Some(UnlockKey::generate());
            }
            if let Some(key) = slot.as_ref() {
                self.keystore.create(&keyring, Protection::Autolock(key))?;
            }
        } else {
            self.keystore.create(&keyring, Protection::KeyFile)?;
            *slot = None;
        }
        Ok(())
    }

    /// New data key; every record re-sealed with it; the old key forgotten.
    pub(crate) async fn rotate_data_key(&self) -> Result<RotateReport, CoreError> {
        let autolock = self.keystore.is_autolocked()?;
        let new_id = {
            let mut keyring = self
                .keyring
                .write()
                .map_err(|_| CoreError::Internal("keyring lock poisoned".into()))?;
            keyring.rotate()
        };
        // Both keys wrapped on disk before any record uses the new one.
        self.protect(autolock, false)?;
        let resealed = self.store.reseal().await?;
        let remaining = self.store.key_ids_in_use()?;
        if remaining.iter().any(|&id| id != new_id) {
            return Err(CoreError::Internal(format!(
                "records still sealed with old keys: {remaining:?}"
            )));
        }
        {
            let mut keyring = self
                .keyring
                .write()
                .map_err(|_| CoreError::Internal("keyring lock poisoned".into()))?;
            keyring.retire_old();
        }
        self.protect(autolock, false)?;
        Ok(RotateReport {
            key_id: new_id,
            resealed,
        })
    }
}

/// What a data-key rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateReport {
    /// The new key's id.
    pub key_id: u32,
    /// Records rewritten under it (besides the new snapshot).
    pub resealed: usize,
}

/// The manager of one node.
pub struct Manager {
    env: NodeEnv,
    _lock: DirLock,
}

/// What opening and changing this node's phase needs besides the phase itself: the
/// configuration, audit trail, executors and event channel. Tasks that change the phase on
/// their own (a demoted manager's watcher, a promoted worker) hold a clone.
#[derive(Clone)]
pub(crate) struct NodeEnv {
    pub(crate) cfg: ManagerConfig,
    pub(crate) audit: Option<crate::audit::AuditTrail>,
    pub(crate) phase: Arc<tokio::sync::RwLock<Phase>>,
    events: broadcast::Sender<Event>,
    pub(crate) executors: Vec<Arc<dyn Executor>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("data_dir", &self.env.cfg.data_dir)
            .finish_non_exhaustive()
    }
}

fn node_file(dir: &Path) -> PathBuf {
    dir.join("node.json")
}

fn write_node_file(dir: &Path, nf: &NodeFile) -> Result<(), CoreError> {
    let body = serde_json::to_vec_pretty(nf).map_err(|e| CoreError::Internal(e.to_string()))?;
    crate::files::write_atomic(dir, "node.json", &body, 0o644)
}

/// `node.json` of a one-manager swarm (as `swarm init` writes it; a restore writes this).
pub(crate) fn write_manager_node_file(
    dir: &Path,
    node_id: &str,
    cluster_id: &str,
    raft_id: u64,
) -> Result<(), CoreError> {
    write_node_file(
        dir,
        &NodeFile {
            node_id: node_id.to_owned(),
            cluster_id: cluster_id.to_owned(),
            raft_id,
            ..NodeFile::default()
        },
    )
}

/// Rewrites `node.json` for a worker: its role and where the managers are (the node's
/// identity and addresses stay).
pub(crate) fn write_worker_node_file(dir: &Path, managers: &[String]) -> Result<(), CoreError> {
    let mut nf = read_node_file(dir).ok_or_else(|| {
        CoreError::Internal(format!(
            "{} is missing or unreadable",
            node_file(dir).display()
        ))
    })?;
    nf.role = "worker".into();
    nf.managers = managers.to_vec();
    nf.raft_id = 0;
    write_node_file(dir, &nf)
}

fn read_node_file(dir: &Path) -> Option<NodeFile> {
    let bytes = std::fs::read(node_file(dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Records the other managers' cluster addresses in a manager's node file when they changed.
pub(crate) fn remember_managers(dir: &Path, mut managers: Vec<String>) -> Result<(), CoreError> {
    let Some(mut nf) = read_node_file(dir) else {
        return Ok(());
    };
    managers.sort();
    if nf.role == "worker" || nf.managers == managers {
        return Ok(());
    }
    nf.managers = managers;
    write_node_file(dir, &nf)
}

/// A locked manager leaving with `--force` (its store cannot be read): asks the managers it
/// last knew, with its node certificate, to take it out of the Raft group, so that the others
/// keep their quorum. Best effort, like the unlocked case.
async fn leave_raft_group_locked(dir: &Path) {
    let (Some(nf), Some(certs)) = (read_node_file(dir), crate::cluster::read_node_certs(dir))
    else {
        return;
    };
    let Ok(dialer) = crate::cluster::dialer(&certs) else {
        return;
    };
    // membership.rs's `Envelope { forwarded: false, request: Request::Leave }`.
    let body = br#"{"forwarded":false,"request":{"op":"leave"}}"#;
    for addr in &nf.managers {
        match tokio::time::timeout(
            std::time::Duration::from_secs(20),
            dialer.post(addr, "/cluster/membership", bytes::Bytes::from_static(body)),
        )
        .await
        {
            // membership.rs answers `{"Done":…}` or `{"Refused":…}`.
            Ok(Ok((200, answer))) if answer.starts_with(br#"{"Done""#) => {
                tracing::info!(manager = %addr, "left the raft group; the other managers continue");
                return;
            }
            Ok(Ok((status, answer))) => {
                tracing::warn!(manager = %addr, status, answer = %String::from_utf8_lossy(&answer), "could not leave the raft group through this manager")
            }
            Ok(Err(e)) => {
                tracing::warn!(manager = %addr, error = %e, "could not reach this manager to leave the raft group")
            }
            Err(_) => {
                tracing::warn!(manager = %addr, "no answer from this manager to the request to leave the raft group")
            }
        }
    }
    tracing::warn!(
        "could not leave the raft group: demote this node from another manager (docker node demote), then remove it (docker node rm)"
    );
}

/// The managers' cluster addresses node.json keeps.
pub(crate) fn known_managers(dir: &Path) -> Vec<String> {
    read_node_file(dir)
        .map(|nf| nf.managers)
        .unwrap_or_default()
}

impl Manager {
    /// Starts the manager on `cfg.data_dir`: refuses a second daemon on the same directory,
    /// opens the store when keys exist and are not autolocked, initializes a one-node cluster
    /// on first start when `auto_init` is set, and otherwise waits (inactive or locked).
    pub async fn start(cfg: ManagerConfig) -> Result<Manager, CoreError> {
        Self::start_with(cfg, Vec::new()).await
    }

    /// Like [`Manager::start`], with the executors that run this node's tasks.
    pub async fn start_with(
        cfg: ManagerConfig,
        executors: Vec<Arc<dyn Executor>>,
    ) -> Result<Manager, CoreError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| CoreError::Internal(format!("create {}: {e}", cfg.data_dir.display())))?;
        restrict_dir(&cfg.data_dir)?;
        let lock = DirLock::acquire(&cfg.data_dir)?;
        let (events, _) = broadcast::channel(1024);
        let audit = match &cfg.audit_dir {
            Some(dir) => Some(crate::audit::AuditTrail::open(
                dir,
                cfg.audit_segment_bytes,
                cfg.audit_max_segments,
            )?),
            None => None,
        };
        let mgr = Manager {
            env: NodeEnv {
                audit,
                cfg,
                phase: Arc::new(tokio::sync::RwLock::new(Phase::Inactive)),
                events,
                executors,
            },
            _lock: lock,
        };
        let keystore = KeyStore::new(&mgr.env.cfg.data_dir);
        let nf = read_node_file(&mgr.env.cfg.data_dir);
        if let Some(nf) = nf.filter(|nf| nf.role == "worker") {
            let worker = mgr.env.start_worker(&nf.node_id, nf.managers.clone())?;
            *mgr.env.phase.write().await = Phase::Worker(worker);
        } else if keystore.exists() {
            if keystore.is_autolocked()? {
                tracing::info!("store is autolocked; waiting for `swarm unlock`");
                *mgr.env.phase.write().await = Phase::Locked;
            } else {
                let keyring = keystore.open()?;
                let active = mgr
                    .env
                    .open_active(keyring, None, None, mgr.env.open_existing())
                    .await?;
                mgr.env.start_cluster_of(&active).await;
                *mgr.env.phase.write().await = Phase::Active(active);
            }
        } else if mgr.env.cfg.auto_init {
            mgr.init(InitOptions::default()).await?;
        }
        // The trail shows when the node started and whether it came up locked.
        let state = match mgr.local_state().await {
            LocalState::Active => "active",
            LocalState::Locked => "locked",
            LocalState::Inactive => "inactive",
            LocalState::Worker => "worker",
        };
        mgr.audit(crate::AuditEntry {
            actor: "daemon".into(),
            source: "internal".into(),
            action: "daemon.start".into(),
            details: [("state".to_owned(), state.to_owned())].into(),
            ..crate::AuditEntry::default()
        })
        .await?;
        Ok(mgr)
    }
}

impl NodeEnv {
    /// How the store of an existing node opens: as node.json says.
    fn open_existing(&self) -> OpenStore {
        let nf = read_node_file(&self.cfg.data_dir).unwrap_or_default();
        OpenStore {
            raft_id: nf.raft_id.max(1),
            raft_addr: nf
                .advertise_addr
                .unwrap_or_else(|| self.cfg.advertise_addr.clone()),
            // A node that joined but was never added must not make itself a cluster.
            bootstrap: nf.raft_id <= 1,
        }
    }

    /// Starts the node-to-node transport of an opened node, logging (not failing) trouble.
    async fn start_cluster_of(&self, active: &Arc<Active>) {
        let nf = read_node_file(&self.cfg.data_dir).unwrap_or_default();
        let advertise = nf
            .advertise_addr
            .clone()
            .unwrap_or_else(|| self.cfg.advertise_addr.clone());
        let listen = self.cfg.listen_addr.clone().or(nf.listen_addr);
        if let Err(e) = active
            .start_cluster(&self.cfg.hostname, &advertise, listen.as_deref())
            .await
        {
            tracing::warn!(error = %e, "node-to-node transport not started");
        }
    }

    async fn open_active(
        &self,
        keyring: Keyring,
        unlock_key: Option<UnlockKey>,
        node_id: Option<String>,
        open: OpenStore,
    ) -> Result<Arc<Active>, CoreError> {
        let keyring = Arc::new(RwLock::new(keyring));
        let mut sc = StoreConfig::new(&self.cfg.data_dir);
        sc.raft_id = open.raft_id;
        sc.raft_addr = open.raft_addr;
        sc.bootstrap = open.bootstrap;
        sc.snapshot_interval = self.cfg.snapshot_interval;
        // With several managers the store talks to the others from the start (electing a
        // leader needs them); the listener starts once the node is active.
        sc.transport = crate::cluster::read_node_certs(&self.cfg.data_dir)
            .and_then(|c| crate::cluster::dialer(&c).ok())
            .map(|d| {
                Arc::new(lockbox_cluster::TlsTransport(d)) as Arc<dyn lockbox_store::Transport>
            });
        let store = Store::open(sc, keyring.clone()).await?;
        let node_id = match (node_id, read_node_file(&self.cfg.data_dir)) {
            (Some(id), _) => id,
            (None, Some(nf)) if !nf.node_id.is_empty() => nf.node_id,
            (None, _) => store
                .read(|s| {
                    s.nodes
                        .values()
                        .find(|n| n.raft_id == 1)
                        .map(|n| n.id.clone())
                })
                .unwrap_or_default(),
        };
        let active = Arc::new(Active {
            store,
            keyring,
            keystore: KeyStore::new(&self.cfg.data_dir),
            unlock_key: Mutex::new(unlock_key),
            node_id,
            events: self.events.clone(),
            data_dir: self.cfg.data_dir.clone(),
            kick: Arc::new(tokio::sync::Notify::new()),
            pki_kick: Arc::new(tokio::sync::Notify::new()),
            pki_keeping: std::sync::atomic::AtomicBool::new(false),
            stopping: std::sync::atomic::AtomicBool::new(false),
            agent: Arc::new(Agent::new(self.executors.clone())),
            control: Mutex::new(None),
            audit: self.audit.clone(),
            cluster: Mutex::new(None),
            liveness: Default::default(),
        });
        // Bring key protection in line with the replicated autolock setting.
        active.align_key_protection()?;
        if active.store.read(|st| st.cluster.is_some()) {
            active.ensure_keys().await?;
        }
        active.start_control();
        crate::membership::watch(&active, self.clone());
        Ok(active)
    }

    /// Starts a worker from its certificates. If the leader promotes it, the worker becomes a
    /// manager ([`NodeEnv::promote`]).
    pub(crate) fn start_worker(
        &self,
        node_id: &str,
        managers: Vec<String>,
    ) -> Result<Arc<crate::worker::Worker>, CoreError> {
        self.start_worker_after(node_id, managers, std::time::Duration::ZERO)
    }

    /// Like [`NodeEnv::start_worker`]; a promotion is acted on no sooner than `delay` after it
    /// arrives (after a failed attempt).
    fn start_worker_after(
        &self,
        node_id: &str,
        managers: Vec<String>,
        delay: std::time::Duration,
    ) -> Result<Arc<crate::worker::Worker>, CoreError> {
        tracing::info!(node_id = %node_id, managers = ?managers, "running as a worker");
        let (worker, promoted) = crate::worker::Worker::start(
            node_id.to_owned(),
            &self.cfg.data_dir,
            managers,
            self.executors.clone(),
            self.audit.clone(),
        )?;
        let env = self.clone();
        let weak = Arc::downgrade(&worker);
        tokio::spawn(async move {
            // An error: the worker stopped without being promoted.
            let Ok(promotion) = promoted.await else {
                return;
            };
            tokio::time::sleep(delay).await;
            if let Some(worker) = weak.upgrade() {
                env.promote(worker, promotion).await;
            }
        });
        Ok(worker)
    }

    /// The part of becoming a manager that a joining node and a promoted worker share: new
    /// keys (wrapped with the cluster's unlock key under autolock), the node file (from then
    /// on the node opens as this manager), an empty store and the cluster listener. Next, the
    /// node asks to be added to the Raft group ([`Active::enter_raft_group`]).
    async fn open_new_manager(&self, m: &NewManager<'_>) -> Result<Arc<Active>, CoreError> {
        let dir = &self.cfg.data_dir;
        let keyring = Keyring::generate();
        let keystore = KeyStore::new(dir);
        let unlock_key = match m.unlock_key {
            Some(text) => {
                let key = UnlockKey::parse(text).map_err(|_| CoreError::InvalidKey)?;
                keystore.create(&keyring, Protection::Autolock(&key))?;
                Some(key)
            }
            None => {
                keystore.create(&keyring, Protection::KeyFile)?;
                None
            }
        };
        write_node_file(
            dir,
            &NodeFile {
                node_id: m.node_id.to_owned(),
                cluster_id: m.cluster_id.to_owned(),
                raft_id: m.raft_id,
                listen_addr: Some(m.listen.to_owned()),
                advertise_addr: Some(m.advertise.to_owned()),
                managers: m.managers.to_vec(),
                role: String::new(),
            },
        )?;
        let active = self
            .open_active(
                keyring,
                unlock_key,
                Some(m.node_id.to_owned()),
                OpenStore {
                    raft_id: m.raft_id,
                    raft_addr: m.advertise.to_owned(),
                    bootstrap: false,
                },
            )
            .await?;
        if let Err(e) = active
            .start_cluster(&self.cfg.hostname, m.advertise, Some(m.listen))
            .await
        {
            active.stop_control().await;
            if let Err(e) = active.store.shutdown().await {
                tracing::warn!(error = %e, "store shutdown");
            }
            return Err(e);
        }
        Ok(active)
    }

    /// A worker the leader promoted becomes a manager, on the path a joining manager takes
    /// (serialized with the other changes of the node's phase). Until its node file says
    /// manager, a restarted node is still a worker and hears of its promotion again at its
    /// next session; from then on it opens as a manager, which asks to be added to the Raft
    /// group until it is (membership.rs). If it cannot become a manager, it goes back to
    /// being a worker and tries again at a later session.
    async fn promote(&self, worker: Arc<crate::worker::Worker>, p: lockbox_cluster::Promotion) {
        let mut phase = self.phase.write().await;
        if !matches!(&*phase, Phase::Worker(w) if Arc::ptr_eq(w, &worker)) {
            // Left the swarm meanwhile.
            return;
        }
        worker.stop().await;
        let node_id = worker.node_id.clone();
        // The others, the one that answered last first.
        let managers: Vec<String> = worker
            .managers()
            .into_iter()
            .filter(|m| *m != p.addr)
            .collect();
        drop(worker);
        let dir = self.cfg.data_dir.clone();
        let active = match self.open_promoted(&node_id, &p, &managers).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "could not become a manager after the promotion; continuing as a worker, trying again at a later session");
                let back = crate::membership::erase_manager_state(&dir)
                    .and_then(|()| write_worker_node_file(&dir, &managers))
                    .and_then(|()| self.start_worker_after(&node_id, managers, PROMOTION_RETRY));
                *phase = match back {
                    Ok(w) => Phase::Worker(w),
                    Err(e) => {
                        tracing::error!(error = %e, "could not continue as a worker either; restart the daemon");
                        Phase::Inactive
                    }
                };
                return;
            }
        };
        *phase = Phase::Active(active.clone());
        drop(phase);
        tracing::warn!(
            node_id = %node_id,
            raft_id = p.raft_id,
            "this node was promoted: it serves as a manager now, with its own replica of the swarm's state"
        );
        if let Some(trail) = &self.audit {
            let hostname = self.cfg.hostname.clone();
            let entry = crate::AuditEntry {
                actor: "daemon".into(),
                source: "internal".into(),
                action: "swarm.promoted".into(),
                objects: vec![crate::AuditObject::new("node", node_id.clone(), hostname)],
                details: [("raft_id".to_owned(), p.raft_id.to_string())].into(),
                ..crate::AuditEntry::default()
            };
            if let Err(e) = trail.record(entry).await {
                tracing::warn!(error = %e, "could not record the promotion in the audit trail");
            }
        }
        match active.enter_raft_group(&managers, STATE_WAIT).await {
            Ok(()) => {
                tracing::info!(node_id = %node_id, raft_id = p.raft_id, "joined the raft group as a promoted manager")
            }
            Err(e) => tracing::warn!(error = %e, "not in the raft group yet; asking again"),
        }
    }

    /// A promoted worker's manager certificate, keys, node file, store and listener.
    async fn open_promoted(
        &self,
        node_id: &str,
        p: &lockbox_cluster::Promotion,
        managers: &[String],
    ) -> Result<Arc<Active>, CoreError> {
        if p.node_id != node_id {
            return Err(CoreError::Internal(format!(
                "the promotion is for node {}, this is node {node_id}",
                p.node_id
            )));
        }
        let dir = &self.cfg.data_dir;
        let nf = read_node_file(dir).unwrap_or_default();
        // What an earlier attempt may have left.
        crate::membership::erase_manager_state(dir)?;
        let issued = lockbox_pki::Issued::from_pem(&p.cert_pem, &p.key_pem).map_err(|e| {
            CoreError::Internal(format!("the manager certificate the leader issued: {e}"))
        })?;
        crate::cluster::write_node_certs(
            dir,
            &crate::cluster::NodeCerts {
                ca_pem: p.ca_pem.clone(),
                issued,
                chain_pem: p.chain_pem.clone(),
            },
        )?;
        let listen = self
            .cfg
            .listen_addr
            .clone()
            .or(nf.listen_addr)
            .unwrap_or_else(|| format!("0.0.0.0:{}", crate::cluster::DEFAULT_CLUSTER_PORT));
        self.open_new_manager(&NewManager {
            node_id,
            cluster_id: &p.cluster_id,
            raft_id: p.raft_id,
            unlock_key: p.unlock_key.as_deref(),
            listen: &listen,
            advertise: &p.addr,
            managers,
        })
        .await
    }
}

impl Manager {
    pub(crate) async fn active(&self) -> Result<Arc<Active>, CoreError> {
        match &*self.env.phase.read().await {
            Phase::Active(a) => Ok(a.clone()),
            Phase::Locked => Err(CoreError::Locked),
            Phase::Inactive => Err(CoreError::NotInSwarm),
            Phase::Worker(_) => Err(CoreError::WorkerNode),
        }
    }

    /// What this node's agent holds: its node ID, role, the IDs of the secrets it holds in
    /// memory for its tasks (never values) and its tasks' IDs.
    pub async fn agent_state(&self) -> Result<serde_json::Value, CoreError> {
        match &*self.env.phase.read().await {
            Phase::Worker(w) => Ok(serde_json::json!({
                "NodeID": w.node_id,
                "Role": "worker",
                "Connected": w.is_connected(),
                "HeldSecrets": w.held_secrets(),
                "Tasks": w.assigned_tasks().iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
            })),
            Phase::Active(a) => {
                let tasks: Vec<String> = a.store.read(|st| {
                    st.tasks
                        .values()
                        .filter(|t| t.node_id == a.node_id)
                        .map(|t| t.id.clone())
                        .collect()
                });
                Ok(serde_json::json!({
                    "NodeID": a.node_id,
                    "Role": "manager",
                    "Tasks": tasks,
                }))
            }
            Phase::Locked => Err(CoreError::Locked),
            Phase::Inactive => Err(CoreError::NotInSwarm),
        }
    }

    /// The node's state.
    pub async fn local_state(&self) -> LocalState {
        match &*self.env.phase.read().await {
            Phase::Active(_) => LocalState::Active,
            Phase::Locked => LocalState::Locked,
            Phase::Inactive => LocalState::Inactive,
            Phase::Worker(_) => LocalState::Worker,
        }
    }

    /// This node's ID, if it is or was in a swarm.
    pub async fn node_id(&self) -> Option<String> {
        match &*self.env.phase.read().await {
            Phase::Active(a) => Some(a.node_id.clone()),
            Phase::Worker(w) => Some(w.node_id.clone()),
            Phase::Locked => read_node_file(&self.env.cfg.data_dir).map(|n| n.node_id),
            Phase::Inactive => None,
        }
    }

    pub(crate) fn audit_log(&self) -> Option<&crate::audit::AuditTrail> {
        self.env.audit.as_ref()
    }

    /// Whether requests are recorded in an audit trail (not with `daemon --no-audit`): when
    /// they are not, callers skip building records that [`Manager::audit`] would drop.
    pub fn auditing(&self) -> bool {
        self.env.audit.is_some()
    }

    /// The configuration the manager runs with.
    pub fn config(&self) -> &ManagerConfig {
        &self.env.cfg
    }

    /// Subscribes to object events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.env.events.subscribe()
    }

    /// `swarm init`: creates keys, the store, the cluster and this node. Returns the node ID.
    pub async fn init(&self, opts: InitOptions) -> Result<String, CoreError> {
        if opts.force_new_cluster
            && matches!(
                *self.env.phase.read().await,
                Phase::Active(_) | Phase::Locked
            )
        {
            return self.force_new_cluster().await;
        }
        let mut phase = self.env.phase.write().await;
        if !matches!(*phase, Phase::Inactive) {
            return Err(CoreError::AlreadyInSwarm);
        }
        let mut spec = opts.spec.unwrap_or_default();
        if opts.autolock {
            spec.encryption_config.auto_lock_managers = true;
        }
        if spec.name.is_empty() {
            spec.name = "default".into();
        }
        let keyring = Keyring::generate();
        let keystore = KeyStore::new(&self.env.cfg.data_dir);
        let unlock_key = if spec.encryption_config.auto_lock_managers {
            let key = UnlockKey::generate();
            keystore.create(&keyring, Protection::Autolock(&key))?;
            Some(key)
        } else {
            keystore.create(&keyring, Protection::KeyFile)?;
            None
        };
        let node_id = lockbox_types::new_id();
        let listen = opts
            .listen_addr
            .clone()
            .or(self.env.cfg.listen_addr.clone());
        let advertise = crate::cluster::with_default_port(
            &opts
                .advertise_addr
                .clone()
                .or_else(|| listen.as_deref().and_then(specific_ip).map(str::to_owned))
                .unwrap_or_else(|| self.env.cfg.advertise_addr.clone()),
        );
        let active = self
            .env
            .open_active(
                keyring,
                unlock_key,
                Some(node_id.clone()),
                OpenStore {
                    raft_id: 1,
                    raft_addr: advertise.clone(),
                    bootstrap: true,
                },
            )
            .await?;
        let now = now();
        let cluster_id = lockbox_types::new_id();
        // The cluster CA: join tokens carry the digest of its certificate, as swarm's do.
        let ca = lockbox_pki::Ca::generate(&cluster_id)
            .map_err(|e| CoreError::Internal(format!("creating the cluster CA: {e}")))?;
        let addr = advertise.clone();
        let cluster = Cluster {
            id: cluster_id.clone(),
            meta: Meta {
                version: 0,
                created_at: now,
                updated_at: now,
            },
            spec,
            join_tokens: JoinTokens {
                worker: tokens::new_token(ca.cert_der()),
                manager: tokens::new_token(ca.cert_der()),
            },
            root_ca_pem: ca.cert_pem().to_owned(),
            default_addr_pool: vec!["10.0.0.0/8".into()],
            subnet_size: 24,
            data_path_port: 4789,
        };
        let node = Node {
            id: node_id.clone(),
            meta: Meta {
                version: 0,
                created_at: now,
                updated_at: now,
            },
            spec: NodeSpec {
                name: String::new(),
                labels: Default::default(),
                role: NodeRole::Manager,
                availability: NodeAvailability::Active,
            },
            hostname: self.env.cfg.hostname.clone(),
            addr,
            raft_id: 1,
        };
        match active
            .store
            .propose(Command::InitCluster {
                cluster: Box::new(cluster),
                node: Box::new(node),
            })
            .await?
        {
            Outcome::Applied { .. } => {}
            Outcome::Rejected(r) => return Err(r.into()),
        }
        active.ensure_keys_with(Some(ca)).await?;
        write_node_file(
            &self.env.cfg.data_dir,
            &NodeFile {
                node_id: node_id.clone(),
                cluster_id,
                raft_id: 1,
                listen_addr: opts.listen_addr.clone(),
                advertise_addr: Some(advertise),
                ..NodeFile::default()
            },
        )?;
        self.env.start_cluster_of(&active).await;
        *phase = Phase::Active(active);
        tracing::info!(node_id, "swarm initialized");
        Ok(node_id)
    }

    /// `swarm join` as a manager: asks the manager at `opts.remote` (trusting only the CA
    /// whose digest the token carries) to admit this node, keeps the certificate it gets,
    /// opens an empty store, starts the cluster listener and asks to be added to the Raft
    /// group; returns once the replicated state has arrived. Returns the node ID.
    pub async fn join(&self, opts: JoinOptions) -> Result<String, CoreError> {
        let mut phase = self.env.phase.write().await;
        if !matches!(*phase, Phase::Inactive) {
            return Err(CoreError::AlreadyInSwarm);
        }
        let invalid_token = || CoreError::InvalidArgument("invalid join token".into());
        let digest = crate::cluster::token_digest(&opts.token)
            .ok_or_else(invalid_token)?
            .to_owned();
        let listen = opts
            .listen_addr
            .clone()
            .or(self.env.cfg.listen_addr.clone())
            .unwrap_or_else(|| format!("0.0.0.0:{}", crate::cluster::DEFAULT_CLUSTER_PORT));
        let advertise = crate::cluster::with_default_port(
            &opts
                .advertise_addr
                .clone()
                .or_else(|| specific_ip(&listen).map(str::to_owned))
                .unwrap_or_else(|| self.env.cfg.advertise_addr.clone()),
        );
        let remote = crate::cluster::with_default_port(&opts.remote);
        let pin: lockbox_pki::CaPin = Arc::new(move |der: &[u8]| tokens::ca_digest(der) == digest);
        let req = lockbox_cluster::JoinRequest {
            token: opts.token.to_string(),
            hostname: self.env.cfg.hostname.clone(),
            addr: advertise.clone(),
            availability: opts.availability.clone(),
        };
        let resp = lockbox_cluster::join_pinned(&remote, pin, &req)
            .await
            .map_err(|e| match e.status {
                0 if e.message.contains("UnknownIssuer") || e.message.contains("certificate") => {
                    CoreError::InvalidArgument(format!(
                        "remote CA does not match fingerprint in the join token ({remote}: {})",
                        e.message
                    ))
                }
                0 => CoreError::Unknown(format!(
                    "could not connect to the manager at {remote}: {}",
                    e.message
                )),
                400 | 403 => CoreError::InvalidArgument(e.message),
                _ => CoreError::Unknown(e.message),
            })?;
        let issued = lockbox_pki::Issued::from_pem(&resp.cert_pem, &resp.key_pem)
            .map_err(|e| CoreError::Internal(format!("the certificate the manager issued: {e}")))?;
        crate::cluster::write_node_certs(
            &self.env.cfg.data_dir,
            &crate::cluster::NodeCerts {
                ca_pem: resp.ca_pem.clone(),
                issued,
                chain_pem: resp.chain_pem.clone(),
            },
        )?;
        if resp.role == "worker" {
            let nf = NodeFile {
                node_id: resp.node_id.clone(),
                cluster_id: resp.cluster_id.clone(),
                role: "worker".into(),
                managers: if resp.managers.is_empty() {
                    vec![remote.clone()]
                } else {
                    resp.managers.clone()
                },
                // Its cluster listener's, once it is promoted.
                listen_addr: Some(listen.clone()),
                advertise_addr: Some(advertise.clone()),
                raft_id: 0,
            };
            write_node_file(&self.env.cfg.data_dir, &nf)?;
            let worker = self.env.start_worker(&nf.node_id, nf.managers.clone())?;
            tracing::info!(node_id = %resp.node_id, %remote, "joined the swarm as a worker");
            *phase = Phase::Worker(worker);
            return Ok(resp.node_id.clone());
        }
        let active = self
            .env
            .open_new_manager(&NewManager {
                node_id: &resp.node_id,
                cluster_id: &resp.cluster_id,
                raft_id: resp.raft_id,
                unlock_key: resp.unlock_key.as_deref(),
                listen: &listen,
                advertise: &advertise,
                managers: std::slice::from_ref(&remote),
            })
            .await?;
        active
            .enter_raft_group(std::slice::from_ref(&remote), STATE_WAIT)
            .await?;
        tracing::info!(node_id = %resp.node_id, raft_id = resp.raft_id, %remote, "joined the swarm as a manager");
        *phase = Phase::Active(active);
        Ok(resp.node_id.clone())
    }

    /// `swarm init --force-new-cluster` on a manager: rebuilds its store as a one-manager
    /// Raft group holding everything it has applied (a cluster that lost its quorum is
    /// recovered from one surviving manager). The other managers are removed from the
    /// cluster (their certificates are refused from then on); workers stay.
    async fn force_new_cluster(&self) -> Result<String, CoreError> {
        let mut phase = self.env.phase.write().await;
        let a = match &*phase {
            Phase::Active(a) => a.clone(),
            Phase::Locked => return Err(CoreError::Locked),
            _ => return Err(CoreError::NotInSwarm),
        };
        let mut state = a.store.state_with_whole_log().await?;
        let node_id = a.node_id.clone();
        let unlock_key = a
            .unlock_key
            .lock()
            .map_err(|_| CoreError::Internal("unlock key lock poisoned".into()))?
            .clone();
        let keyring = a
            .keyring
            .read()
            .map_err(|_| CoreError::Internal("keyring lock poisoned".into()))?
            .clone();
        let nf = read_node_file(&self.env.cfg.data_dir).unwrap_or_default();
        let advertise = nf
            .advertise_addr
            .clone()
            .unwrap_or_else(|| self.env.cfg.advertise_addr.clone());
        let removed: Vec<String> = state
            .nodes
            .values()
            .filter(|n| n.id != node_id && n.spec.role == NodeRole::Manager)
            .map(|n| n.id.clone())
            .collect();
        for id in &removed {
            state.nodes.remove(id);
        }
        if let Some(me) = state.nodes.get_mut(&node_id) {
            me.raft_id = 1;
            me.addr = advertise.clone();
        }
        a.stop_control().await;
        a.store.shutdown().await?;
        *phase = Phase::Inactive;
        drop(a);
        let dir = self.env.cfg.data_dir.clone();
        // The store file is released once the old store's tasks have dropped it.
        let mut tries = 0;
        loop {
            match std::fs::remove_file(dir.join(lockbox_store::DB_FILE)) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if tries > 40 => {
                    return Err(CoreError::Internal(format!("remove the old store: {e}")));
                }
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
        lockbox_store::remove_store_files(&dir)
            .map_err(|e| CoreError::Internal(format!("remove the old log: {e}")))?;
        lockbox_store::create_restored(&dir, 1, &advertise, &keyring, state)?;
        write_node_file(
            &dir,
            &NodeFile {
                raft_id: 1,
                advertise_addr: Some(advertise.clone()),
                ..nf
            },
        )?;
        let active = self
            .env
            .open_active(
                keyring,
                unlock_key,
                Some(node_id.clone()),
                OpenStore {
                    raft_id: 1,
                    raft_addr: advertise,
                    bootstrap: true,
                },
            )
            .await?;
        self.env.start_cluster_of(&active).await;
        *phase = Phase::Active(active);
        tracing::warn!(node_id, removed = ?removed, "forced a new cluster: this is now the only manager");
        Ok(node_id)
    }

    /// `swarm leave`. The last manager leaves only with `force`, which erases all state.
    pub async fn leave(&self, force: bool) -> Result<(), CoreError> {
        let mut phase = self.env.phase.write().await;
        match &*phase {
            Phase::Inactive => return Err(CoreError::NotInSwarm),
            Phase::Active(_) | Phase::Locked if !force => return Err(CoreError::LastManager),
            _ => {}
        }
        if let Phase::Active(a) = &*phase {
            // One manager of several: out of the Raft group first (best effort).
            a.leave_raft_group().await;
            a.stop_control().await;
            a.store.shutdown().await?;
        }
        if let Phase::Worker(w) = &*phase {
            w.stop().await;
        }
        if matches!(&*phase, Phase::Locked) {
            leave_raft_group_locked(&self.env.cfg.data_dir).await;
        }
        *phase = Phase::Inactive;
        let dir = &self.env.cfg.data_dir;
        KeyStore::new(dir).remove()?;
        crate::cluster::remove_node_certs(dir);
        for f in [lockbox_store::DB_FILE, "node.json"] {
            match std::fs::remove_file(dir.join(f)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CoreError::Internal(format!("remove {f}: {e}"))),
            }
        }
        lockbox_store::remove_store_files(dir)
            .map_err(|e| CoreError::Internal(format!("remove the log: {e}")))?;
        tracing::info!("left the swarm; local state erased");
        Ok(())
    }

    /// `swarm unlock`.
    pub async fn unlock(&self, key: &str) -> Result<(), CoreError> {
        let mut phase = self.env.phase.write().await;
        if !matches!(*phase, Phase::Locked) {
            return Err(match *phase {
                Phase::Inactive => CoreError::NotInSwarm,
                _ => CoreError::NotLocked,
            });
        }
        let key = UnlockKey::parse(key).map_err(|_| CoreError::InvalidKey)?;
        let keyring = match KeyStore::new(&self.env.cfg.data_dir).unlock(&key) {
            Ok(k) => k,
            Err(lockbox_crypto::CryptoError::WrongUnlockKey) => return Err(CoreError::WrongKey),
            Err(e) => return Err(e.into()),
        };
        let active = self
            .env
            .open_active(keyring, Some(key), None, self.env.open_existing())
            .await?;
        self.env.start_cluster_of(&active).await;
        *phase = Phase::Active(active);
        tracing::info!("unlocked");
        Ok(())
    }

    /// The current unlock key, when autolock is on.
    pub async fn unlock_key(&self) -> Result<Option<Zeroizing<String>>, CoreError> {
        let a = self.active().await?;
        let slot = a
            .unlock_key
            .lock()
            .map_err(|_| CoreError::Internal("unlock key lock poisoned".into()))?;
        Ok(slot.as_ref().map(UnlockKey::to_text))
    }

    /// The cluster object.
    pub async fn cluster(&self) -> Result<Cluster, CoreError> {
        self.active().await?.cluster()
    }

    /// The nodes.
    pub async fn nodes(&self) -> Result<Vec<Node>, CoreError> {
        Ok(self
            .active()
            .await?
            .store
            .read(|s| s.nodes.values().cloned().collect()))
    }

    /// `swarm update`.
    pub async fn update_swarm(&self, upd: SwarmUpdate) -> Result<(), CoreError> {
        // With several managers the unlock key changes on the leader (membership.rs).
        self.active().await?.update_cluster(upd).await
    }

    /// Starts a root CA rotation (`docker swarm ca --rotate`): with a new CA of its own, or
    /// with the operator's certificate and key (PEM). Nodes move to it while the swarm runs;
    /// [`Manager::pki_status`] shows the progress.
    pub async fn rotate_ca(
        &self,
        operator_ca: Option<(String, Zeroizing<String>)>,
    ) -> Result<(), CoreError> {
        let a = self.active().await?;
        crate::pki::start_rotation(&a, operator_ca).await
    }

    /// The node PKI as Docker shows it: the cluster's `TLSInfo`, whether a root rotation is
    /// under way, and each node's `TLSInfo`.
    pub async fn pki_status(&self) -> Result<crate::pki::PkiStatus, CoreError> {
        let a = self.active().await?;
        Ok(crate::pki::status(&a))
    }

    /// Replaces the data key and re-seals the whole store with it, online.
    pub async fn rotate_data_key(&self) -> Result<RotateReport, CoreError> {
        self.active().await?.rotate_data_key().await
    }

    /// Lists secrets (metadata only).
    pub async fn list_secrets(&self, filter: &SecretFilter) -> Result<Vec<SecretInfo>, CoreError> {
        Ok(self.active().await?.list_secrets(filter))
    }

    /// Inspects a secret by ID, name or ID prefix (metadata only).
    pub async fn inspect_secret(&self, key: &str) -> Result<SecretInfo, CoreError> {
        Ok(SecretInfo::from(&self.active().await?.resolve_secret(key)?))
    }

    /// Creates a secret; returns its ID.
    pub async fn create_secret(&self, input: SecretInput) -> Result<String, CoreError> {
        self.active().await?.create_secret(input).await
    }

    /// Updates a secret's labels.
    pub async fn update_secret(
        &self,
        key: &str,
        version: u64,
        input: SecretInput,
    ) -> Result<(), CoreError> {
        self.active()
            .await?
            .update_secret(key, version, input)
            .await
    }

    /// Removes a secret.
    pub async fn remove_secret(&self, key: &str) -> Result<(), CoreError> {
        self.active().await?.remove_secret(key).await
    }

    /// Creates a service; returns its ID.
    pub async fn create_service(
        &self,
        spec: lockbox_types::ServiceSpec,
    ) -> Result<String, CoreError> {
        self.active().await?.create_service(spec).await
    }

    /// Services with their task counts.
    pub async fn list_services(&self) -> Result<Vec<crate::ServiceInfo>, CoreError> {
        Ok(self.active().await?.list_services())
    }

    /// A service by ID, name or ID prefix.
    pub async fn inspect_service(&self, key: &str) -> Result<lockbox_types::Service, CoreError> {
        self.active().await?.resolve_service(key)
    }

    /// Updates a service (`spec`), or rolls it back to its previous spec (`rollback`).
    pub async fn update_service(
        &self,
        key: &str,
        version: u64,
        spec: Option<lockbox_types::ServiceSpec>,
        rollback: bool,
    ) -> Result<(), CoreError> {
        self.active()
            .await?
            .update_service(key, version, spec, rollback)
            .await
    }

    /// Removes a service; its tasks stop.
    pub async fn remove_service(&self, key: &str) -> Result<(), CoreError> {
        self.active().await?.remove_service(key).await
    }

    /// Every task.
    pub async fn list_tasks(&self) -> Result<Vec<lockbox_types::Task>, CoreError> {
        Ok(self
            .active()
            .await?
            .store
            .read(|s| s.tasks.values().cloned().collect()))
    }

    /// A task by ID or ID prefix.
    pub async fn inspect_task(&self, key: &str) -> Result<lockbox_types::Task, CoreError> {
        self.active().await?.resolve_task(key)
    }

    /// Updates a node's spec (availability, labels).
    pub async fn update_node(
        &self,
        key: &str,
        version: u64,
        spec: lockbox_types::NodeSpec,
    ) -> Result<(), CoreError> {
        self.active().await?.update_node(key, version, spec).await
    }

    /// Task output kept by this node's agent.
    pub async fn logs(&self) -> Result<Arc<crate::Logs>, CoreError> {
        Ok(self.active().await?.agent.logs.clone())
    }

    /// Networks.
    pub async fn list_networks(&self) -> Result<Vec<lockbox_types::Network>, CoreError> {
        Ok(self
            .active()
            .await?
            .store
            .read(|s| s.networks.values().cloned().collect()))
    }

    /// A network by ID, name or ID prefix.
    pub async fn inspect_network(&self, key: &str) -> Result<lockbox_types::Network, CoreError> {
        self.active().await?.resolve_network(key)
    }

    /// Creates a network; returns its ID.
    pub async fn create_network(
        &self,
        network: lockbox_types::Network,
    ) -> Result<String, CoreError> {
        self.active().await?.create_network(network).await
    }

    /// Removes a network.
    pub async fn remove_network(&self, key: &str) -> Result<(), CoreError> {
        self.active().await?.remove_network(key).await
    }

    /// Stops the store cleanly.
    pub async fn shutdown(&self) {
        if let Phase::Active(a) = &*self.env.phase.read().await {
            a.stop_control().await;
            if let Err(e) = a.store.shutdown().await {
                tracing::warn!(error = %e, "store shutdown");
            }
        }
        if let Phase::Worker(w) = &*self.env.phase.read().await {
            w.stop().await;
        }
        if let Some(t) = self.audit_log() {
            let stop = crate::AuditEntry {
                actor: "daemon".into(),
                source: "internal".into(),
                action: "daemon.stop".into(),
                ..crate::AuditEntry::default()
            };
            if let Err(e) = t.record(stop).await {
                tracing::warn!(error = %e, "could not record the stop in the audit trail");
            }
            t.close().await;
        }
    }
}

/// The IP of `addr` when it names a specific one (not 0.0.0.0 or ::).
fn specific_ip(addr: &str) -> Option<&str> {
    let host = crate::cluster::host_of(addr);
    host.parse::<std::net::IpAddr>()
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .map(|_| addr)
}

fn restrict_dir(dir: &Path) -> Result<(), CoreError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| CoreError::Internal(format!("chmod {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_node_file_keeps_its_addresses_and_old_ones_still_read() {
        let dir = tempfile::tempdir().unwrap();
        // Written before workers kept their addresses.
        std::fs::write(
            node_file(dir.path()),
            r#"{"node_id":"n1","cluster_id":"c1","role":"worker","managers":["10.0.0.1:2377"]}"#,
        )
        .unwrap();
        let nf = read_node_file(dir.path()).unwrap();
        assert_eq!((nf.role.as_str(), nf.raft_id), ("worker", 0));
        assert_eq!((nf.listen_addr, nf.advertise_addr), (None, None));
        assert_eq!(known_managers(dir.path()), ["10.0.0.1:2377"]);
        write_node_file(
            dir.path(),
            &NodeFile {
                node_id: "n1".into(),
                cluster_id: "c1".into(),
                role: "worker".into(),
                managers: vec!["10.0.0.1:2377".into()],
                raft_id: 0,
                listen_addr: Some("0.0.0.0:2377".into()),
                advertise_addr: Some("10.0.0.3:2377".into()),
            },
        )
        .unwrap();
        let nf = read_node_file(dir.path()).unwrap();
        assert_eq!(nf.listen_addr.as_deref(), Some("0.0.0.0:2377"));
        assert_eq!(nf.advertise_addr.as_deref(), Some("10.0.0.3:2377"));
    }
}
