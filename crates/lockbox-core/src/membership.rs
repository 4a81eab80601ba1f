//! Changes to the set of managers, as Docker users make them, and the unlock key they share.
//!
//! - `docker node demote`: the leader checks swarm's safeguards (not the last manager, no
//!   loss of quorum), takes the manager out of the Raft group, then records it as a worker.
//!   A request that lands on a follower is forwarded to the leader.
//! - `docker node promote`: the leader checks that the node is a worker that is up, and
//!   records it as a manager with a new Raft id. The worker hears of it at its next session
//!   (cluster.rs hands it a manager certificate) and becomes a manager on the path a joining
//!   one takes (manager.rs): its own store and keys, its listener, then into the Raft group.
//! - `docker node rm`: a manager must be demoted first; a node that is not down needs
//!   `--force`. A removed node's certificate no longer passes the cluster listener (its node
//!   is gone from the state the listener checks).
//! - `docker swarm leave` on one manager of several: refused without `--force` in dockerd's
//!   words; with it, the node asks the leader to take it out of the Raft group (best effort),
//!   then erases its state.
//! - Every manager watches whether it is still one. One that finds itself demoted (in its own
//!   replica, or by asking the leader when it hears from no leader or is no longer in its own
//!   Raft configuration) stops serving as a manager: its replica and keys are erased and it
//!   continues as a worker, whose API answers like a Docker worker's. One that finds itself
//!   removed erases everything and is in no swarm. A new manager (joined or promoted) whose
//!   replica is still empty after a restart asks again to be added to the Raft group.
//! - Autolock: the leader holds the cluster's unlock key. A manager that sees autolock turned
//!   on (or the key rotated) in the replicated cluster object asks the leader for the key and
//!   re-wraps its own keys with it, so every manager comes up locked after a restart and opens
//!   with the same key.
//!
//! Requests only the leader can serve travel as JSON on `POST /cluster/membership` between
//! manager certificates.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lockbox_cluster::{ClusterError, Peer};
use lockbox_crypto::{KeyStore, UnlockKey};
use lockbox_types::{ClusterSpec, Command, JoinTokens, Node, NodeRole, NodeSpec, Outcome};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::error::CoreError;
use crate::manager::{Active, LocalState, Manager, NodeEnv, Phase, SwarmUpdate, now};
use crate::tokens;

/// swarmkit `controlapi.UpdateNode`: demoting the only manager.
const DEMOTE_LAST: &str = "attempting to demote the last manager of the swarm";
/// swarmkit `controlapi.UpdateNode`: the quorum safeguard.
const LOSS_OF_QUORUM: &str =
    "can't remove member from the raft: this would result in a loss of quorum";
/// moby `daemon/cluster/swarm.go` `Leave`, its parts.
const LEAVE_MANAGER: &str =
    "You are attempting to leave the swarm on a node that is participating as a manager. ";
const LEAVE_LAST: &str = "Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message. ";
const LEAVE_CONSENSUS: &str = "The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message.";
const LEAVE_LOCKED: &str = "Swarm is encrypted and locked. Please unlock it first or use `--force` to ignore this message.";
/// swarmkit's answer when no leader is elected.
const NO_LEADER: &str = "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.";

/// swarmkit `controlapi.RemoveNode`: a manager still in the Raft group.
fn still_a_member(id: &str) -> String {
    format!(
        "node {id} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal"
    )
}

/// swarmkit `controlapi.RemoveNode`: a node that is up, without `--force`.
fn not_down(id: &str) -> String {
    format!("node {id} is not down and can't be removed")
}

/// Why `node` cannot be promoted now, if it cannot: a node the leader has not heard from
/// (`down`) cannot join the Raft group, and its address becomes its Raft address, which
/// must be an IP and port that no manager has. (swarmkit promotes without checks; its
/// words where it has them.)
fn promotion_refusal<'a>(
    node: &Node,
    down: bool,
    others: impl IntoIterator<Item = &'a Node>,
) -> Option<CoreError> {
    if down {
        return Some(CoreError::FailedPrecondition(format!(
            "node {} is down and can't be promoted",
            node.id
        )));
    }
    if node.addr.parse::<std::net::SocketAddr>().is_err() {
        return Some(CoreError::FailedPrecondition(format!(
            "node {} can't be promoted: its address {:?} is not an IP address and port",
            node.id, node.addr
        )));
    }
    others
        .into_iter()
        .find(|n| n.id != node.id && n.spec.role == NodeRole::Manager && n.addr == node.addr)
        .map(|m| {
            CoreError::FailedPrecondition(format!(
                "node {} can't be promoted: manager {} has its address {}",
                node.id, m.id, node.addr
            ))
        })
}

/// The Raft id a promoted node gets: above every id a node has (a demoted manager keeps
/// its old one) and every id in the group now.
fn next_raft_id(taken: impl IntoIterator<Item = u64>) -> u64 {
    taken.into_iter().max().unwrap_or(1).max(1) + 1
}

/// A manager the leader heard from this recently is reachable (as `node ls` shows it).
const REACHABLE_WITHIN: Duration = Duration::from_secs(5);
/// How long a request to the leader waits for one to be elected.
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// How long a membership request to another manager may take (it may wait for an
/// election, and for the leader's own write).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the leader waits for its own write recording a new role.
const RECORD_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a manager checks that it still is one.
const WATCH_PERIOD: Duration = Duration::from_millis(500);
/// A manager that hears from no leader (or is out of its own Raft configuration) this long
/// asks the others whether it is still a manager, at most this often.
const ASK_AFTER: Duration = Duration::from_secs(2);

/// Serializes changes of this process's key protection (the watcher and a forwarded
/// `swarm update` may both re-wrap the keys).
static KEY_CHANGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A request between managers.
#[derive(Serialize, Deserialize)]
struct Envelope {
    /// Sent to the leader by a manager that already forwarded it: not forwarded again.
    forwarded: bool,
    /// Set by a manager that forwards another node's request: that node (whose certificate
    /// it checked). The leader answers for it, not for the forwarding manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on_behalf_of: Option<String>,
    request: Request,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    /// Demote a manager (node ID, name or ID prefix), with the spec to record.
    Demote {
        node: String,
        version: Option<u64>,
        spec: Option<NodeSpec>,
    },
    /// Promote a worker (node ID, name or ID prefix), with the spec to record.
    Promote {
        node: String,
        version: Option<u64>,
        spec: Option<NodeSpec>,
    },
    /// Remove a node.
    Remove { node: String, force: bool },
    /// The caller leaves the swarm: out of the Raft group, recorded as a worker.
    Leave,
    /// The caller's role and the managers' reachability, as the leader sees them.
    Status,
    /// The cluster's unlock key (current managers only).
    UnlockKey,
    /// A `swarm update` that changes the unlock key: made by the leader, which holds it.
    UpdateSwarm {
        version: u64,
        spec: Box<ClusterSpec>,
        rotate_worker_token: bool,
        rotate_manager_token: bool,
        rotate_unlock_key: bool,
    },
}

/// The leader's answer.
#[derive(Default, Serialize, Deserialize)]
struct Answer {
    /// Status: the caller's role (`manager`, `worker`); `None` if it is no node of the cluster.
    role: Option<String>,
    /// Status: managers the leader hears from (moby's `managerStats`).
    reachable: usize,
    /// Status: managers the leader does not hear from.
    unreachable: usize,
    /// Status: the caller is one of the reachable managers.
    current: bool,
    /// The leader's last applied log index when it answered.
    applied: u64,
    /// UnlockKey, UpdateSwarm: the cluster's unlock key, when autolock is on.
    unlock_key: Option<KeyText>,
}

/// An unlock key's text, wiped when dropped.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct KeyText(String);

impl Drop for KeyText {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[derive(Serialize, Deserialize)]
enum Reply {
    Done(Answer),
    /// A refusal, as the [`CoreError`] kind and text the API renders.
    Refused {
        kind: String,
        message: String,
    },
}

fn refused(e: CoreError) -> Reply {
    let (kind, message) = match e {
        CoreError::FailedPrecondition(m) => ("failed_precondition", m),
        CoreError::NotFound(m) => ("not_found", m),
        CoreError::Ambiguous(m) => ("ambiguous", m),
        CoreError::InvalidArgument(m) => ("invalid_argument", m),
        CoreError::InvalidParameter(m) => ("invalid_parameter", m),
        CoreError::Unimplemented(m) => ("unimplemented", m),
        CoreError::Unknown(m) => ("unknown", m),
        CoreError::OutOfSequence => ("out_of_sequence", String::new()),
        other => ("internal", other.to_string()),
    };
    Reply::Refused {
        kind: kind.into(),
        message,
    }
}

fn from_refusal(kind: &str, message: String) -> CoreError {
    match kind {
        "failed_precondition" => CoreError::FailedPrecondition(message),
        "not_found" => CoreError::NotFound(message),
        "ambiguous" => CoreError::Ambiguous(message),
        "invalid_argument" => CoreError::InvalidArgument(message),
        "invalid_parameter" => CoreError::InvalidParameter(message),
        "unimplemented" => CoreError::Unimplemented(message),
        "unknown" => CoreError::Unknown(message),
        "out_of_sequence" => CoreError::OutOfSequence,
        _ => CoreError::Internal(message),
    }
}

fn decode_reply(bytes: &[u8]) -> Result<Answer, CoreError> {
    match serde_json::from_slice::<Reply>(bytes) {
        Ok(Reply::Done(answer)) => Ok(answer),
        Ok(Reply::Refused { kind, message }) => Err(from_refusal(&kind, message)),
        Err(e) => Err(CoreError::Internal(format!(
            "undecodable answer from the leader: {e}"
        ))),
    }
}

fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => "manager",
        NodeRole::Worker => "worker",
    }
}

/// The cluster listener's `POST /cluster/membership`: a follower forwards the request to the
/// leader (once); the leader serves it.
pub(crate) async fn serve(
    a: Arc<Active>,
    body: Bytes,
    peer: Peer,
) -> Result<Zeroizing<Vec<u8>>, ClusterError> {
    let sender = peer
        .manager()
        .ok_or_else(|| {
            ClusterError::forbidden("a manager certificate of this cluster is required")
        })?
        .to_owned();
    let env: Envelope = serde_json::from_slice(&body)
        .map_err(|_| ClusterError::bad_request("malformed membership request"))?;
    drop(body);
    let is_manager = |id: &str| {
        a.store.read(|st| {
            st.nodes
                .get(id)
                .is_some_and(|n| n.spec.role == NodeRole::Manager)
        })
    };
    // The sender's certificate is a current manager's (not superseded, not a removed node's).
    let sender_current = peer
        .identity
        .as_ref()
        .is_some_and(|i| a.current_cert(i, NodeRole::Manager));
    // Only a current manager forwards for another node.
    let caller = match env.on_behalf_of {
        Some(id) if sender_current => id,
        Some(_) => {
            return Err(ClusterError::forbidden(
                "only managers of this cluster may forward membership requests",
            ));
        }
        None => sender,
    };
    // Anyone with a manager certificate may ask what it is (a demoted node must learn it);
    // everything else is for current managers only.
    let current = sender_current && is_manager(&caller);
    if !current && !matches!(env.request, Request::Status) {
        tracing::warn!(peer = %peer.addr, node = %caller, "refused a membership request from a node that is not a manager");
        return Err(ClusterError::forbidden(
            "only managers of this cluster may change its membership",
        ));
    }
    if !a.leads() {
        if env.forwarded {
            return Err(ClusterError::unavailable("this manager is not the leader"));
        }
        let addr = a
            .store
            .leader()
            .map(|(_, addr)| addr)
            .filter(|addr| !addr.is_empty())
            .ok_or_else(|| ClusterError::unavailable(NO_LEADER))?;
        let forwarded = Envelope {
            forwarded: true,
            on_behalf_of: Some(caller),
            request: env.request,
        };
        return a
            .post_membership(&addr, &forwarded)
            .await
            .map_err(|e| match e.status {
                0 => ClusterError::unavailable(e.message),
                _ => e,
            });
    }
    let reply = match a.lead(&caller, env.request).await {
        Ok(answer) => Reply::Done(answer),
        Err(e) => refused(e),
    };
    serde_json::to_vec(&reply)
        .map(Zeroizing::new)
        .map_err(|e| ClusterError::internal(e.to_string()))
}

impl Active {
    /// Whether this manager leads the Raft group: a leader that just took itself out of the
    /// group still leads for a moment, but must not serve as the leader any more.
    fn leads(&self) -> bool {
        let me = self.store.raft_id();
        self.store.is_leader()
            && self
                .store
                .members()
                .iter()
                .any(|m| m.raft_id == me && m.voter)
    }

    /// Serves a membership request as the leader, for `caller` (a node ID).
    async fn lead(&self, caller: &str, request: Request) -> Result<Answer, CoreError> {
        // Only the requests about the key carry it back.
        let with_key = matches!(request, Request::UnlockKey | Request::UpdateSwarm { .. });
        match request {
            Request::Demote {
                node,
                version,
                spec,
            } => self.demote(&node, version, spec).await?,
            Request::Promote {
                node,
                version,
                spec,
            } => self.promote(&node, version, spec).await?,
            Request::Remove { node, force } => self.remove_node(&node, force).await?,
            Request::Leave => self.demote(caller, None, None).await?,
            Request::Status => return Ok(self.status_of(caller)),
            Request::UnlockKey => {}
            Request::UpdateSwarm {
                version,
                spec,
                rotate_worker_token,
                rotate_manager_token,
                rotate_unlock_key,
            } => {
                self.update_cluster(SwarmUpdate {
                    version,
                    spec: *spec,
                    rotate_worker_token,
                    rotate_manager_token,
                    rotate_unlock_key,
                })
                .await?
            }
        }
        let unlock_key = if with_key {
            self.unlock_key_text().map(|k| KeyText(k.to_string()))
        } else {
            None
        };
        Ok(Answer {
            applied: self.store.applied_index(),
            unlock_key,
            ..Answer::default()
        })
    }

    /// POSTs a membership request to the manager at `addr`; returns its raw answer.
    async fn post_membership(
        &self,
        addr: &str,
        env: &Envelope,
    ) -> Result<Zeroizing<Vec<u8>>, ClusterError> {
        let dialer = self
            .dialer()
            .ok_or_else(|| ClusterError::unavailable("this manager has no node transport"))?;
        let body = serde_json::to_vec(env).map_err(|e| ClusterError::internal(e.to_string()))?;
        let (status, answer) = tokio::time::timeout(
            REQUEST_TIMEOUT,
            dialer.post(addr, "/cluster/membership", Bytes::from(body)),
        )
        .await
        .map_err(|_| ClusterError {
            status: 0,
            message: format!("{addr}: no answer within {REQUEST_TIMEOUT:?}"),
        })?
        .map_err(|e| ClusterError {
            status: 0,
            message: e.to_string(),
        })?;
        if status != 200 {
            return Err(
                serde_json::from_slice::<ClusterError>(&answer).unwrap_or(ClusterError {
                    status,
                    message: String::from_utf8_lossy(&answer).into_owned(),
                }),
            );
        }
        Ok(Zeroizing::new(answer.to_vec()))
    }

    /// Sends `request` to the leader, waiting up to `wait` for one to be known and to answer.
    async fn ask_leader(&self, request: Request, wait: Duration) -> Result<Answer, CoreError> {
        let deadline = Instant::now() + wait;
        let mut last = NO_LEADER.to_owned();
        loop {
            let leader = self
                .store
                .leader()
                .filter(|(id, addr)| *id != self.store.raft_id() && !addr.is_empty());
            if let Some((_, addr)) = leader {
                let env = Envelope {
                    forwarded: true,
                    on_behalf_of: None,
                    request: request.clone(),
                };
                match self.post_membership(&addr, &env).await {
                    Ok(bytes) => return decode_reply(&bytes),
                    // Not (or no longer) the leader, or unreachable: wait for the next one.
                    Err(e) if e.status == 0 || e.status == 503 => last = e.message,
                    Err(e) => return Err(CoreError::Unknown(e.message)),
                }
            }
            if Instant::now() >= deadline {
                return Err(CoreError::Unknown(if last == NO_LEADER {
                    last
                } else {
                    format!("{NO_LEADER} ({last})")
                }));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends `request` to each other manager in turn (each forwards it to its leader) until
    /// one answers: for a node that does not know the leader, or is out of the group.
    async fn ask_peers(&self, request: Request) -> Result<Answer, CoreError> {
        let addrs: Vec<String> = self.store.read(|st| {
            st.nodes
                .values()
                .filter(|n| n.spec.role == NodeRole::Manager && n.id != self.node_id)
                .map(|n| n.addr.clone())
                .filter(|a| !a.is_empty())
                .collect()
        });
        let mut last = NO_LEADER.to_owned();
        for addr in addrs {
            let env = Envelope {
                forwarded: false,
                on_behalf_of: None,
                request: request.clone(),
            };
            match self.post_membership(&addr, &env).await {
                Ok(bytes) => return decode_reply(&bytes),
                Err(e) => last = format!("{addr}: {}", e.message),
            }
        }
        Err(CoreError::Unknown(last))
    }

    /// Runs `request` on the leader: here if this manager leads, else there.
    async fn on_leader(&self, request: Request) -> Result<Answer, CoreError> {
        if self.leads() {
            self.lead(&self.node_id, request).await
        } else {
            self.ask_leader(request, LEADER_WAIT).await
        }
    }

    /// A node by ID, host name or node name, or unique ID prefix.
    fn find_node(&self, key: &str) -> Result<Node, CoreError> {
        self.store.read(|st| {
            if let Some(n) = st.nodes.get(key) {
                return Ok(n.clone());
            }
            if let Some(n) = st
                .nodes
                .values()
                .find(|n| n.hostname == key || (!n.spec.name.is_empty() && n.spec.name == key))
            {
                return Ok(n.clone());
            }
            let m: Vec<&Node> = st
                .nodes
                .values()
                .filter(|n| !key.is_empty() && n.id.starts_with(key))
                .collect();
            match m.len() {
                0 => Err(CoreError::NotFound(format!("node {key} not found"))),
                1 => Ok(m[0].clone()),
                n => Err(CoreError::Ambiguous(format!(
                    "node {key} is ambiguous ({n} matches found)"
                ))),
            }
        })
    }

    /// swarmkit's `CanRemoveMember`: after removing `raft_id`, do the reachable voters left
    /// (this leader counts as reachable) still make a quorum of the voters left?
    fn can_remove(&self, raft_id: u64) -> bool {
        let me = self.store.raft_id();
        let voters: Vec<_> = self
            .store
            .members()
            .into_iter()
            .filter(|m| m.voter)
            .collect();
        let reachable = voters
            .iter()
            .filter(|m| m.raft_id != raft_id)
            .filter(|m| m.raft_id == me || m.last_seen.is_some_and(|t| t < REACHABLE_WITHIN))
            .count();
        let quorum = voters.len().saturating_sub(1) / 2 + 1;
        reachable >= quorum
    }

    /// The leader demotes a manager (or takes out one that leaves): swarm's safeguards, out
    /// of the Raft group, then recorded as a worker with `spec`.
    async fn demote(
        &self,
        key: &str,
        version: Option<u64>,
        spec: Option<NodeSpec>,
    ) -> Result<(), CoreError> {
        let node = self.find_node(key)?;
        // swarm checks its safeguards first, the version when it writes.
        let stale = version.is_some_and(|v| v != node.meta.version);
        let mut spec = spec.unwrap_or_else(|| node.spec.clone());
        spec.role = NodeRole::Worker;
        if node.spec.role == NodeRole::Manager {
            let voters: Vec<u64> = self
                .store
                .members()
                .iter()
                .filter(|m| m.voter)
                .map(|m| m.raft_id)
                .collect();
            let member = node.raft_id != 0 && voters.contains(&node.raft_id);
            let managers = self.store.read(|st| {
                st.nodes
                    .values()
                    .filter(|n| n.spec.role == NodeRole::Manager)
                    .count()
            });
            if managers <= 1 || (member && voters.len() <= 1) {
                return Err(CoreError::FailedPrecondition(DEMOTE_LAST.into()));
            }
            let in_group = self
                .store
                .members()
                .iter()
                .any(|m| node.raft_id != 0 && m.raft_id == node.raft_id);
            // Also for a manager that leaves: without a quorum the change would never commit.
            if in_group && !self.can_remove(node.raft_id) {
                return Err(CoreError::FailedPrecondition(LOSS_OF_QUORUM.into()));
            }
            if stale {
                return Err(CoreError::OutOfSequence);
            }
            if in_group {
                let removed =
                    tokio::time::timeout(LEADER_WAIT, self.store.remove_manager(node.raft_id))
                        .await
                        .map_err(|_| "no quorum to commit the change".to_owned())
                        .and_then(|r| r.map_err(|e| e.to_string()));
                removed.map_err(|e| {
                    CoreError::Unknown(format!(
                        "removing node {} from the raft group: {e}",
                        node.id
                    ))
                })?;
                tracing::info!(node = %node.id, raft_id = node.raft_id, addr = %node.addr, "manager removed from the raft group");
            }
        }
        if stale {
            return Err(CoreError::OutOfSequence);
        }
        self.record_role(&node.id, spec).await
    }

    /// The leader promotes a worker: it must be up, then it is recorded as a manager with a
    /// new Raft id. The node becomes one at its next session (cluster.rs, manager.rs) and
    /// asks to be added to the group.
    async fn promote(
        &self,
        key: &str,
        version: Option<u64>,
        spec: Option<NodeSpec>,
    ) -> Result<(), CoreError> {
        let node = self.find_node(key)?;
        if node.spec.role == NodeRole::Manager {
            // Already (being) promoted: nothing to change.
            return Ok(());
        }
        let nodes: Vec<Node> = self.store.read(|st| st.nodes.values().cloned().collect());
        let down = self.down_nodes().contains(&node.id);
        if let Some(refusal) = promotion_refusal(&node, down, &nodes) {
            return Err(refusal);
        }
        if version.is_some_and(|v| v != node.meta.version) {
            return Err(CoreError::OutOfSequence);
        }
        let raft_id = next_raft_id(
            nodes
                .iter()
                .map(|n| n.raft_id)
                .chain(self.store.members().iter().map(|m| m.raft_id)),
        );
        let mut spec = spec.unwrap_or_else(|| node.spec.clone());
        spec.role = NodeRole::Manager;
        let cmd = Command::PromoteNode {
            id: node.id.clone(),
            expected_version: node.meta.version,
            spec: Box::new(spec),
            raft_id,
            now: now(),
        };
        match tokio::time::timeout(RECORD_TIMEOUT, self.store.propose(cmd)).await {
            Ok(Ok(Outcome::Applied { .. })) => {
                tracing::info!(node = %node.id, raft_id, addr = %node.addr, "worker promoted; it becomes a manager at its next session");
                self.kick();
                Ok(())
            }
            Ok(Ok(Outcome::Rejected(r))) => Err(r.into()),
            Ok(Err(e)) => Err(CoreError::from(e)),
            Err(_) => Err(CoreError::Unknown(format!(
                "recording the promotion of node {} took longer than {RECORD_TIMEOUT:?}",
                node.id
            ))),
        }
    }

    /// Records a node's new spec. If this leader just took itself out of the group, the new
    /// leader records it (through any other manager).
    async fn record_role(&self, id: &str, spec: NodeSpec) -> Result<(), CoreError> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let result = if self.leads() {
                let node = self.find_node(id)?;
                let cmd = Command::UpdateNode {
                    id: node.id.clone(),
                    expected_version: node.meta.version,
                    spec: Box::new(spec.clone()),
                    now: now(),
                };
                // A leader that loses its leadership meanwhile may never hear the outcome.
                match tokio::time::timeout(RECORD_TIMEOUT, self.store.propose(cmd)).await {
                    Ok(Ok(Outcome::Applied { version })) => {
                        tracing::info!(node = %id, role = role_name(spec.role), version, "node role recorded");
                        self.kick();
                        return Ok(());
                    }
                    Ok(Ok(Outcome::Rejected(r))) => return Err(r.into()),
                    Ok(Err(e)) => Err(CoreError::from(e)),
                    Err(_) => Err(CoreError::Unknown(format!(
                        "recording the role of node {id} took longer than {RECORD_TIMEOUT:?}"
                    ))),
                }
            } else {
                let request = Request::Demote {
                    node: id.to_owned(),
                    version: None,
                    spec: Some(spec.clone()),
                };
                match self.ask_peers(request).await {
                    Ok(_) => {
                        tracing::info!(node = %id, role = role_name(spec.role), "node role recorded by the leader");
                        return Ok(());
                    }
                    Err(e @ (CoreError::Unknown(_) | CoreError::Internal(_))) => Err(e),
                    Err(e) => return Err(e),
                }
            };
            if Instant::now() >= deadline {
                return result;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The leader removes a node (`docker node rm`), with swarm's rules.
    async fn remove_node(&self, key: &str, force: bool) -> Result<(), CoreError> {
        let node = self.find_node(key)?;
        let in_group = node.raft_id != 0
            && self
                .store
                .members()
                .iter()
                .any(|m| m.raft_id == node.raft_id);
        if node.spec.role == NodeRole::Manager && in_group {
            return Err(CoreError::FailedPrecondition(still_a_member(&node.id)));
        }
        if !force && !self.down_nodes().contains(&node.id) {
            return Err(CoreError::FailedPrecondition(not_down(&node.id)));
        }
        if in_group {
            // A worker still in the group: a demotion that was interrupted.
            self.store
                .remove_manager(node.raft_id)
                .await
                .map_err(|e| CoreError::Unknown(format!("removing from the raft group: {e}")))?;
        }
        match self
            .store
            .propose(Command::RemoveNode {
                id: node.id.clone(),
            })
            .await?
        {
            Outcome::Applied { .. } => {
                tracing::info!(node = %node.id, hostname = %node.hostname, force, "node removed");
                self.kick();
                Ok(())
            }
            Outcome::Rejected(r) => Err(r.into()),
        }
    }

    /// The caller's role and the managers' reachability (the leader's view).
    fn status_of(&self, caller: &str) -> Answer {
        let me = self.store.raft_id();
        let members = self.store.members();
        let (role, managers) = self.store.read(|st| {
            (
                st.nodes
                    .get(caller)
                    .map(|n| role_name(n.spec.role).to_owned()),
                st.nodes
                    .values()
                    .filter(|n| n.spec.role == NodeRole::Manager)
                    .map(|n| (n.id.clone(), n.raft_id))
                    .collect::<Vec<_>>(),
            )
        });
        let mut answer = Answer {
            role,
            applied: self.store.applied_index(),
            ..Answer::default()
        };
        for (id, raft_id) in managers {
            let Some(m) = members
                .iter()
                .find(|m| raft_id != 0 && m.raft_id == raft_id)
            else {
                continue;
            };
            if m.raft_id == me || m.last_seen.is_some_and(|t| t < REACHABLE_WITHIN) {
                answer.reachable += 1;
                answer.current |= id == caller;
            } else {
                answer.unreachable += 1;
            }
        }
        answer
    }

    /// `docker node update` changing the role.
    pub(crate) async fn change_role(
        &self,
        node: &Node,
        version: u64,
        spec: NodeSpec,
    ) -> Result<(), CoreError> {
        let (node, version) = (node.id.clone(), Some(version));
        let request = match spec.role {
            NodeRole::Manager => Request::Promote {
                node,
                version,
                spec: Some(spec),
            },
            NodeRole::Worker => Request::Demote {
                node,
                version,
                spec: Some(spec),
            },
        };
        self.on_leader(request).await.map(|_| ())
    }

    /// Before a manager of several erases its state (`swarm leave --force`): asks the leader
    /// to take it out of the Raft group, so the others keep their quorum. Best effort.
    pub(crate) async fn leave_raft_group(&self) {
        let others = self.store.read(|st| {
            st.nodes
                .values()
                .filter(|n| n.spec.role == NodeRole::Manager && n.id != self.node_id)
                .count()
        });
        if others == 0 {
            return;
        }
        let result = if self.leads() {
            self.demote(&self.node_id, None, None).await
        } else {
            self.ask_leader(Request::Leave, LEADER_WAIT)
                .await
                .map(|_| ())
        };
        match result {
            Ok(()) => tracing::info!("left the raft group; the other managers continue"),
            Err(e) => tracing::warn!(
                error = %e,
                "could not leave the raft group: demote this node from another manager (docker node demote), then remove it (docker node rm)"
            ),
        }
    }

    /// `swarm update`. A change of the unlock key (autolock on or off, a new key) is made by
    /// the leader, which puts the new key in memory before the change is visible, so that a
    /// manager that sees it and asks gets the new key; a follower forwards it there.
    pub(crate) async fn update_cluster(&self, upd: SwarmUpdate) -> Result<(), CoreError> {
        let cluster = self
            .store
            .read(|s| s.cluster.clone())
            .ok_or(CoreError::NotInSwarm)?;
        if upd.spec.name != "default" && !upd.spec.name.is_empty() {
            return Err(CoreError::InvalidParameter(
                r#"swarm spec must be named "default""#.into(),
            ));
        }
        let mut spec = upd.spec;
        spec.name = "default".into();
        let was_locked = cluster.spec.encryption_config.auto_lock_managers;
        let autolock = spec.encryption_config.auto_lock_managers;
        let key_change = autolock != was_locked || (autolock && upd.rotate_unlock_key);
        if key_change && !self.leads() {
            let request = Request::UpdateSwarm {
                version: upd.version,
                spec: Box::new(spec),
                rotate_worker_token: upd.rotate_worker_token,
                rotate_manager_token: upd.rotate_manager_token,
                rotate_unlock_key: upd.rotate_unlock_key,
            };
            let mut answer = self.ask_leader(request, LEADER_WAIT).await?;
            let key = answer.unlock_key.take();
            self.store
                .wait_applied(answer.applied, LEADER_WAIT)
                .await
                .map_err(CoreError::from)?;
            match (autolock, key) {
                (true, Some(key)) => self.adopt_unlock_key(&key.0).await?,
                (true, None) => {
                    return Err(CoreError::Internal(
                        "the leader turned autolock on but handed over no unlock key".into(),
                    ));
                }
                (false, _) => self.drop_unlock_key().await?,
            }
            return Ok(());
        }
        let _guard = if key_change {
            Some(KEY_CHANGE.lock().await)
        } else {
            None
        };
        let previous = if key_change && autolock {
            let mut slot = self
                .unlock_key
                .lock()
                .map_err(|_| CoreError::Internal("unlock key lock poisoned".into()))?;
            let previous = slot.clone();
            if upd.rotate_unlock_key || !was_locked || slot.is_none() {
                *slot = Some(UnlockKey::generate());
            }
            Some(previous)
        } else {
            None
        };
        let join_tokens =
            (upd.rotate_worker_token || upd.rotate_manager_token).then(|| JoinTokens {
                worker: tokens::rotate(&cluster.join_tokens.worker, upd.rotate_worker_token),
                manager: tokens::rotate(&cluster.join_tokens.manager, upd.rotate_manager_token),
            });
        let cmd = Command::UpdateCluster {
            expected_version: upd.version,
            spec: Box::new(spec),
            join_tokens,
            now: now(),
        };
        let outcome = match self.store.propose(cmd).await {
            Ok(Outcome::Applied { .. }) => Ok(()),
            Ok(Outcome::Rejected(r)) => Err(r.into()),
            Err(e) => Err(CoreError::from(e)),
        };
        if let Err(e) = outcome {
            if let Some(previous) = previous
                && let Ok(mut slot) = self.unlock_key.lock()
            {
                *slot = previous;
            }
            return Err(e);
        }
        if key_change {
            self.protect(autolock, false)?;
            if autolock && !was_locked {
                // The old key file wrapped the current data key: retire that key too.
                self.rotate_data_key().await?;
            }
        }
        Ok(())
    }

    /// Wraps this manager's keys with the cluster's unlock key `text` (autolock).
    async fn adopt_unlock_key(&self, text: &str) -> Result<(), CoreError> {
        let _guard = KEY_CHANGE.lock().await;
        let key = UnlockKey::parse(text).map_err(|_| CoreError::InvalidKey)?;
        let was_autolocked = self.keystore.is_autolocked()?;
        let same = self.unlock_key_text().is_some_and(|k| k.as_str() == text);
        if same && was_autolocked {
            return Ok(());
        }
        {
            let mut slot = self
                .unlock_key
                .lock()
                .map_err(|_| CoreError::Internal("unlock key lock poisoned".into()))?;
            *slot = Some(key);
        }
        self.protect(true, false)?;
        if !was_autolocked {
            // The key file wrapped the current data key: retire it, as the leader does.
            self.rotate_data_key().await?;
        }
        tracing::info!("autolock: this manager's keys are wrapped with the cluster's unlock key");
        Ok(())
    }

    /// Wraps this manager's keys with its key file again (autolock off).
    async fn drop_unlock_key(&self) -> Result<(), CoreError> {
        let _guard = KEY_CHANGE.lock().await;
        if self.keystore.is_autolocked()? {
            self.protect(false, false)?;
            tracing::info!("autolock is off: this manager's keys are wrapped with its key file");
        }
        Ok(())
    }

    /// At open: brings key protection in line with the replicated autolock setting. With
    /// several managers, turning autolock on needs the cluster's key, which the leader holds:
    /// the watcher fetches it.
    pub(crate) fn align_key_protection(&self) -> Result<(), CoreError> {
        let Some((want, managers)) = self.store.read(|st| {
            st.cluster.as_ref().map(|c| {
                (
                    c.spec.encryption_config.auto_lock_managers,
                    st.nodes
                        .values()
                        .filter(|n| n.spec.role == NodeRole::Manager)
                        .count(),
                )
            })
        }) else {
            return Ok(());
        };
        if want == self.keystore.is_autolocked()? {
            return Ok(());
        }
        if want && managers > 1 && self.unlock_key_text().is_none() {
            tracing::info!(
                "autolock is on in the cluster: this manager wraps its keys with the cluster's unlock key once the leader hands it over"
            );
            return Ok(());
        }
        tracing::warn!(
            autolock = want,
            "key protection differs from the cluster setting; re-wrapping"
        );
        self.protect(want, false)
    }
}

impl Manager {
    /// `docker node rm`: on the leader, with swarm's rules (a manager must be demoted first;
    /// a node that is not down only with `force`).
    pub async fn remove_node(&self, key: &str, force: bool) -> Result<(), CoreError> {
        self.active()
            .await?
            .on_leader(Request::Remove {
                node: key.to_owned(),
                force,
            })
            .await
            .map(|_| ())
    }

    /// Why `swarm leave` without `--force` is refused on this node, in dockerd's words
    /// (`None`: it is not; a worker or a node in no swarm).
    pub async fn leave_refusal(&self) -> Option<String> {
        match self.local_state().await {
            LocalState::Locked => return Some(LEAVE_LOCKED.into()),
            LocalState::Active => {}
            _ => return None,
        }
        let a = self.active().await.ok()?;
        let mut msg = LEAVE_MANAGER.to_owned();
        let stats = if a.leads() {
            Ok(a.status_of(&a.node_id))
        } else {
            a.ask_leader(Request::Status, Duration::from_secs(5)).await
        };
        if let Ok(s) = stats {
            let (reachable, unreachable) = (s.reachable as i64, s.unreachable as i64);
            // moby's removingManagerCausesLossOfQuorum and isLastManager.
            if s.current && reachable - 2 <= unreachable {
                if reachable == 1 && unreachable == 0 {
                    msg.push_str(LEAVE_LAST);
                    return Some(msg);
                }
                msg.push_str(&format!(
                    "Removing this node leaves {} managers out of {}. Without a Raft quorum your swarm will be inaccessible. ",
                    reachable - 1,
                    reachable + unreachable
                ));
            }
        }
        msg.push_str(LEAVE_CONSENSUS);
        Some(msg)
    }
}

/// What a manager's watcher decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Manager,
    Worker,
    Removed,
}

/// Watches one opened manager: keeps its unlock key in line with the leader's, asks to be
/// added to the Raft group while a new manager's replica is still empty, and turns the node
/// into a worker (or a node in no swarm) once it is demoted (or removed).
struct Watch {
    env: NodeEnv,
    /// The cluster version whose unlock key this manager has.
    synced: Option<u64>,
    /// Since when this manager hears from no leader (or is out of its Raft configuration).
    adrift: Option<Instant>,
    asked: Option<Instant>,
    /// Since when a new manager's replica is empty, and when it last asked to be added.
    empty: Option<Instant>,
    asked_to_be_added: Option<Instant>,
}

/// A new manager whose replica is still empty this long asks (again) to be added to the
/// Raft group, at most this often: its join or promotion asks first.
const ADD_AFTER: Duration = Duration::from_secs(5);

/// Starts the watcher of `active` (it ends with the store).
pub(crate) fn watch(active: &Arc<Active>, env: NodeEnv) {
    let weak = Arc::downgrade(active);
    let mut w = Watch {
        env,
        synced: None,
        adrift: None,
        asked: None,
        empty: None,
        asked_to_be_added: None,
    };
    tokio::spawn(async move { w.run(weak).await });
}

impl Watch {
    async fn run(&mut self, weak: Weak<Active>) {
        loop {
            tokio::time::sleep(WATCH_PERIOD).await;
            let Some(a) = weak.upgrade() else { return };
            if a.is_stopping() {
                return;
            }
            // A joining manager has no cluster yet.
            if !a.store.read(|st| st.cluster.is_some()) {
                if let Some(verdict) = self.not_in_group_yet(&a).await
                    && self.step_down(&a, verdict).await
                {
                    return;
                }
                continue;
            }
            self.empty = None;
            self.sync_unlock_key(&a).await;
            let verdict = self.verdict(&a).await;
            if verdict != Verdict::Manager && self.step_down(&a, verdict).await {
                return;
            }
        }
    }

    /// A follower takes the leader's unlock key whenever the cluster object changes.
    async fn sync_unlock_key(&mut self, a: &Active) {
        let Some((version, want)) = a.store.read(|st| {
            st.cluster
                .as_ref()
                .map(|c| (c.meta.version, c.spec.encryption_config.auto_lock_managers))
        }) else {
            return;
        };
        if self.synced == Some(version) {
            return;
        }
        if a.leads() {
            // The leader is where the key comes from.
            self.synced = Some(version);
            return;
        }
        if !want {
            match a.drop_unlock_key().await {
                Ok(()) => self.synced = Some(version),
                Err(e) => tracing::warn!(error = %e, "could not turn autolock off here"),
            }
            return;
        }
        match a.ask_leader(Request::UnlockKey, ASK_AFTER).await {
            Ok(mut answer) => match answer.unlock_key.take() {
                Some(key) => match a.adopt_unlock_key(&key.0).await {
                    Ok(()) => self.synced = Some(version),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not wrap the keys with the cluster's unlock key")
                    }
                },
                None => tracing::debug!("the leader has no unlock key yet"),
            },
            Err(e) => tracing::debug!(error = %e, "could not get the unlock key from the leader"),
        }
    }

    async fn verdict(&mut self, a: &Active) -> Verdict {
        if a.node_id.is_empty() {
            return Verdict::Manager;
        }
        // The replica is authoritative for what it has applied.
        match a
            .store
            .read(|st| st.nodes.get(&a.node_id).map(|n| n.spec.role))
        {
            None => return Verdict::Removed,
            Some(NodeRole::Worker) => return Verdict::Worker,
            Some(NodeRole::Manager) => {}
        }
        // A manager taken out of the group usually never applies its demotion: it stops
        // hearing from the leader. Ask.
        let me = a.store.raft_id();
        let in_group = a.store.members().iter().any(|m| m.raft_id == me && m.voter);
        if in_group && a.store.leader().is_some() {
            self.adrift = None;
            return Verdict::Manager;
        }
        let since = *self.adrift.get_or_insert_with(Instant::now);
        if since.elapsed() < ASK_AFTER || self.asked.is_some_and(|t| t.elapsed() < ASK_AFTER) {
            return Verdict::Manager;
        }
        self.asked = Some(Instant::now());
        let applied = a.store.applied_index();
        let answer = a.ask_peers(Request::Status).await;
        if let Ok(answer) = &answer {
            tracing::debug!(role = ?answer.role, applied = answer.applied, here = applied, "what the leader says this node is");
        }
        match answer {
            // Only an answer from a leader at least as far along as this replica counts.
            Ok(answer) if answer.applied >= applied => match answer.role.as_deref() {
                None => Verdict::Removed,
                Some("worker") => Verdict::Worker,
                Some(_) => Verdict::Manager,
            },
            Ok(_) => Verdict::Manager,
            Err(e) => {
                tracing::debug!(error = %e, "no answer about this node's membership");
                Verdict::Manager
            }
        }
    }

    /// A new manager (joined or promoted) whose replica is still empty and that was never in a
    /// Raft group: after [`ADD_AFTER`], asks the managers it knows to add it, now and then (a
    /// join or promotion cut short by a restart, or whose request failed). If they refuse,
    /// asks what it is: the verdict when it is no manager (demoted or removed meanwhile).
    async fn not_in_group_yet(&mut self, a: &Active) -> Option<Verdict> {
        if a.store.raft_id() <= 1 || a.node_id.is_empty() || a.store.is_member().await {
            return None;
        }
        let since = *self.empty.get_or_insert_with(Instant::now);
        if since.elapsed() < ADD_AFTER
            || self
                .asked_to_be_added
                .is_some_and(|t| t.elapsed() < ADD_AFTER)
        {
            return None;
        }
        self.asked_to_be_added = Some(Instant::now());
        let managers = crate::manager::known_managers(&a.data_dir);
        let refused = match a.ask_to_be_added(&managers).await {
            Ok(()) => {
                tracing::info!("added to the raft group");
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not be added to the raft group yet; asking again");
                e.status == 403
            }
        };
        if !refused {
            return None;
        }
        for addr in &managers {
            let env = Envelope {
                forwarded: false,
                on_behalf_of: None,
                request: Request::Status,
            };
            let Ok(bytes) = a.post_membership(addr, &env).await else {
                continue;
            };
            return match decode_reply(&bytes).map(|answer| answer.role) {
                Ok(None) => Some(Verdict::Removed),
                Ok(Some(role)) if role == "worker" => Some(Verdict::Worker),
                _ => None,
            };
        }
        None
    }

    /// Stops serving as a manager. Returns whether the watch is over.
    async fn step_down(&self, a: &Arc<Active>, verdict: Verdict) -> bool {
        let mut phase = self.env.phase.write().await;
        if !matches!(&*phase, Phase::Active(cur) if Arc::ptr_eq(cur, a)) {
            // Left, or replaced, meanwhile.
            return true;
        }
        let dir = a.data_dir.clone();
        let node_id = a.node_id.clone();
        let (hostname, mut managers) = a.store.read(|st| {
            (
                st.nodes
                    .get(&node_id)
                    .map(|n| n.hostname.clone())
                    .unwrap_or_default(),
                st.nodes
                    .values()
                    .filter(|n| n.spec.role == NodeRole::Manager && n.id != node_id)
                    .map(|n| n.addr.clone())
                    .filter(|addr| !addr.is_empty())
                    .collect::<Vec<_>>(),
            )
        });
        if managers.is_empty() {
            // A new manager that never got the state.
            managers = crate::manager::known_managers(&dir);
        }
        let hostname = if hostname.is_empty() {
            self.env.cfg.hostname.clone()
        } else {
            hostname
        };
        a.stop_control().await;
        if let Err(e) = a.store.shutdown().await {
            tracing::warn!(error = %e, "store shutdown");
        }
        let action = match verdict {
            Verdict::Worker => {
                tracing::warn!(
                    node_id = %node_id,
                    "this node was demoted: it no longer serves as a manager (its replica of the swarm's state and its manager keys are erased) and continues as a worker; its API answers as a worker's"
                );
                let worker = erase_manager_state(&dir)
                    .and_then(|()| crate::manager::write_worker_node_file(&dir, &managers))
                    .and_then(|()| self.env.start_worker(&node_id, managers));
                match worker {
                    Ok(w) => {
                        *phase = Phase::Worker(w);
                        "swarm.demoted"
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not continue as a worker; leaving the swarm");
                        erase_all(&dir);
                        *phase = Phase::Inactive;
                        "swarm.removed"
                    }
                }
            }
            Verdict::Removed | Verdict::Manager => {
                tracing::warn!(
                    node_id = %node_id,
                    "this node was removed from the swarm: it is in no swarm now and its local state is erased"
                );
                erase_all(&dir);
                *phase = Phase::Inactive;
                "swarm.removed"
            }
        };
        drop(phase);
        if let Some(trail) = &self.env.audit {
            let entry = crate::AuditEntry {
                actor: "daemon".into(),
                source: "internal".into(),
                action: action.into(),
                objects: vec![crate::AuditObject::new("node", node_id, hostname)],
                ..crate::AuditEntry::default()
            };
            if let Err(e) = trail.record(entry).await {
                tracing::warn!(error = %e, "could not record the demotion in the audit trail");
            }
        }
        true
    }
}

fn remove_file(path: &Path) -> Result<(), CoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CoreError::Internal(format!(
            "remove {}: {e}",
            path.display()
        ))),
    }
}

/// Erases what only a manager has: its keys and its replica of the state.
pub(crate) fn erase_manager_state(dir: &Path) -> Result<(), CoreError> {
    KeyStore::new(dir).remove()?;
    remove_file(&dir.join(lockbox_store::DB_FILE))
}

/// Erases everything of the swarm (as `swarm leave --force` does).
fn erase_all(dir: &Path) {
    if let Err(e) = erase_manager_state(dir) {
        tracing::error!(error = %e, "erasing the manager state");
    }
    crate::cluster::remove_node_certs(dir);
    if let Err(e) = remove_file(&dir.join("node.json")) {
        tracing::error!(error = %e, "erasing node.json");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_round_trip_as_the_same_error() {
        for e in [
            CoreError::FailedPrecondition(DEMOTE_LAST.into()),
            CoreError::NotFound("node x not found".into()),
            CoreError::Unimplemented("no".into()),
            CoreError::OutOfSequence,
        ] {
            let text = e.to_string();
            let Reply::Refused { kind, message } = refused(e) else {
                panic!("not a refusal");
            };
            assert_eq!(from_refusal(&kind, message).to_string(), text);
        }
    }

    #[test]
    fn requests_are_tagged_json() {
        let env = Envelope {
            forwarded: true,
            on_behalf_of: None,
            request: Request::Remove {
                node: "n1".into(),
                force: true,
            },
        };
        let json = serde_json::to_string(&env).unwrap();
        assert_eq!(
            json,
            r#"{"forwarded":true,"request":{"op":"remove","node":"n1","force":true}}"#
        );
        let back: Envelope = serde_json::from_str(&json).unwrap();
        assert!(matches!(back.request, Request::Remove { force: true, .. }));
    }

    #[test]
    fn a_forwarded_request_names_who_asked() {
        let env = Envelope {
            forwarded: true,
            on_behalf_of: Some("n3".into()),
            request: Request::Status,
        };
        let json = serde_json::to_string(&env).unwrap();
        assert_eq!(
            json,
            r#"{"forwarded":true,"on_behalf_of":"n3","request":{"op":"status"}}"#
        );
        let back: Envelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back.on_behalf_of.as_deref(), Some("n3"));
        // Requests from before the field: sent by the caller itself.
        let old: Envelope =
            serde_json::from_str(r#"{"forwarded":false,"request":{"op":"leave"}}"#).unwrap();
        assert!(old.on_behalf_of.is_none());
    }

    #[test]
    fn texts_match_swarm() {
        assert_eq!(
            still_a_member("abc"),
            "node abc is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal"
        );
        assert_eq!(not_down("abc"), "node abc is not down and can't be removed");
        assert_eq!(
            format!("{LEAVE_MANAGER}{LEAVE_LAST}"),
            "You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message. "
        );
    }

    fn node(id: &str, role: NodeRole, addr: &str, raft_id: u64) -> Node {
        Node {
            id: id.into(),
            meta: lockbox_types::Meta {
                version: 1,
                created_at: lockbox_types::Timestamp(1),
                updated_at: lockbox_types::Timestamp(1),
            },
            spec: NodeSpec {
                name: String::new(),
                labels: Default::default(),
                role,
                availability: lockbox_types::NodeAvailability::Active,
            },
            hostname: id.into(),
            addr: addr.into(),
            raft_id,
        }
    }

    #[test]
    fn a_worker_that_is_up_at_a_free_address_can_be_promoted() {
        let m1 = node("m1", NodeRole::Manager, "10.0.0.1:2377", 1);
        let w = node("w", NodeRole::Worker, "10.0.0.3:2377", 0);
        let all = [m1.clone(), w.clone()];
        assert!(promotion_refusal(&w, false, &all).is_none());

        let e = promotion_refusal(&w, true, &all).unwrap();
        assert!(matches!(e, CoreError::FailedPrecondition(_)));
        assert_eq!(e.to_string(), "node w is down and can't be promoted");

        // Its address becomes its Raft address: not another manager's, and an IP and port.
        let twin = node("w", NodeRole::Worker, "10.0.0.1:2377", 0);
        let e = promotion_refusal(&twin, false, &[m1.clone(), twin.clone()]).unwrap();
        assert_eq!(
            e.to_string(),
            "node w can't be promoted: manager m1 has its address 10.0.0.1:2377"
        );
        // Another worker at the same address is no obstacle.
        let other = node("w2", NodeRole::Worker, "10.0.0.3:2377", 0);
        assert!(promotion_refusal(&w, false, &[m1.clone(), w.clone(), other]).is_none());
        let named = node("w", NodeRole::Worker, "node-w:2377", 0);
        let e = promotion_refusal(&named, false, &[m1]).unwrap();
        assert!(
            e.to_string().contains("is not an IP address and port"),
            "{e}"
        );
    }

    #[test]
    fn a_promoted_node_gets_a_raft_id_no_node_or_member_has() {
        assert_eq!(next_raft_id([1, 0, 2]), 3);
        // A demoted manager keeps its old id; a member may be no node any more.
        assert_eq!(next_raft_id([1, 2, 0, 5, 1, 2, 7]), 8);
        assert_eq!(next_raft_id([]), 2);
        assert_eq!(next_raft_id([0]), 2);
    }

    #[test]
    fn promote_requests_are_tagged_json() {
        let json = serde_json::to_string(&Request::Promote {
            node: "w".into(),
            version: Some(4),
            spec: None,
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"op":"promote","node":"w","version":4,"spec":null}"#
        );
    }

    #[test]
    fn worker_node_file_keeps_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("node.json"),
            r#"{"node_id":"n1","cluster_id":"c1","raft_id":3,"advertise_addr":"10.0.0.3:2377"}"#,
        )
        .unwrap();
        crate::manager::write_worker_node_file(dir.path(), &["10.0.0.1:2377".into()]).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("node.json")).unwrap()).unwrap();
        assert_eq!(v["node_id"], "n1");
        assert_eq!(v["cluster_id"], "c1");
        assert_eq!(v["role"], "worker");
        assert_eq!(v["raft_id"], 0);
        assert_eq!(v["managers"], serde_json::json!(["10.0.0.1:2377"]));
    }
}
