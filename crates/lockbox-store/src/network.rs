//! Raft between managers: the messages one manager's store sends another's, encoded here and
//! carried by a [`Transport`] the caller supplies (lockbox-cluster's mutual TLS).
//!
//! Every message is postcard: the request of an RPC out, `Result<response, RaftError>` back, so
//! a remote Raft refusal comes back as openraft's own error and a transport failure as
//! "unreachable" (openraft then backs off and retries). Bodies carry log entries and snapshots,
//! which hold secret values: they live in [`Zeroizing`] buffers and only ever travel inside the
//! transport's TLS.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::storage::{NodeId, TypeConfig};

/// The kinds of message managers exchange through the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rpc {
    /// Raft AppendEntries (replication and heartbeats).
    Append,
    /// Raft RequestVote.
    Vote,
    /// Raft InstallSnapshot (one chunk).
    Snapshot,
    /// Commands proposed on a follower, forwarded to the leader.
    Propose,
}

impl Rpc {
    /// Every kind, for routing.
    pub const ALL: [Rpc; 4] = [Rpc::Append, Rpc::Vote, Rpc::Snapshot, Rpc::Propose];

    /// The request path the transport uses for this kind.
    pub fn path(self) -> &'static str {
        match self {
            Rpc::Append => "/raft/append",
            Rpc::Vote => "/raft/vote",
            Rpc::Snapshot => "/raft/snapshot",
            Rpc::Propose => "/raft/propose",
        }
    }

    /// The kind served at `path`.
    pub fn from_path(path: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|r| r.path() == path)
    }
}

/// A failure to deliver a message (connection refused, TLS failure, timeout, a non-success
/// answer). Never contains message bodies.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// The future a [`Transport`] call returns.
pub type Call = BoxFuture<'static, Result<Zeroizing<Vec<u8>>, TransportError>>;

/// Carries store messages to the manager at a Raft address.
pub trait Transport: Send + Sync + 'static {
    /// Sends `body` as an `rpc` request to the manager listening at `addr` and returns its
    /// answer's body.
    fn call(&self, addr: &str, rpc: Rpc, body: Zeroizing<Vec<u8>>) -> Call;
}

/// When each peer last answered, for node status, and which peers are unreachable now (said
/// once in the log when a peer stops answering and once when it answers again, rather than at
/// every retry).
#[derive(Debug, Default, Clone)]
pub(crate) struct PeerSeen(
    Arc<Mutex<HashMap<NodeId, Instant>>>,
    Arc<Mutex<HashSet<NodeId>>>,
);

impl PeerSeen {
    fn saw(&self, id: NodeId, addr: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(id, Instant::now());
        }
        if self.1.lock().is_ok_and(|mut down| down.remove(&id)) {
            tracing::info!(peer = %addr, raft_id = id, "manager answers again");
        }
    }

    fn missed(&self, id: NodeId, addr: &str, error: &dyn std::fmt::Display) {
        if self.1.lock().is_ok_and(|mut down| down.insert(id)) {
            tracing::warn!(peer = %addr, raft_id = id, %error, "manager unreachable; retrying (said again once it answers)");
        }
    }

    pub(crate) fn last(&self, id: NodeId) -> Option<Instant> {
        self.0.lock().ok().and_then(|m| m.get(&id).copied())
    }
}

/// The transport a store uses, settable after it opened (a one-node store gets one when its
/// cluster listener starts).
#[derive(Clone, Default)]
pub(crate) struct TransportSlot(Arc<std::sync::RwLock<Option<Arc<dyn Transport>>>>);

impl TransportSlot {
    pub(crate) fn get(&self) -> Option<Arc<dyn Transport>> {
        self.0.read().ok().and_then(|t| t.clone())
    }
    pub(crate) fn set(&self, t: Option<Arc<dyn Transport>>) {
        if let Ok(mut slot) = self.0.write() {
            *slot = t;
        }
    }
}

/// openraft's network factory over a [`Transport`]; without one, every peer is unreachable (a
/// one-node store never sends).
#[derive(Clone)]
pub(crate) struct Network {
    pub(crate) transport: TransportSlot,
    pub(crate) seen: PeerSeen,
}

pub(crate) struct Peer {
    target: NodeId,
    addr: String,
    transport: TransportSlot,
    seen: PeerSeen,
}

#[derive(Debug, thiserror::Error)]
#[error("manager-to-manager transport is not configured on this node")]
struct NoTransport;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;
    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            transport: self.transport.clone(),
            seen: self.seen.clone(),
        }
    }
}

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Zeroizing<Vec<u8>>, String> {
    postcard::to_allocvec(value)
        .map(Zeroizing::new)
        .map_err(|e| e.to_string())
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("undecodable message: {e}"))
}

impl Peer {
    /// Sends one request and decodes `Result<Resp, E>` from the answer.
    async fn send<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let Some(transport) = self.transport.get() else {
            return Err(RPCError::Unreachable(Unreachable::new(&NoTransport)));
        };
        let body =
            encode(req).map_err(|e| RPCError::Network(NetworkError::new(&TransportError(e))))?;
        let ttl = option.hard_ttl().max(Duration::from_millis(200));
        let answer = match tokio::time::timeout(ttl, transport.call(&self.addr, rpc, body)).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                self.seen.missed(self.target, &self.addr, &e);
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Err(_) => {
                let e = TransportError(format!("no answer from {} within {ttl:?}", self.addr));
                self.seen.missed(self.target, &self.addr, &e);
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        };
        self.seen.saw(self.target, &self.addr);
        match decode::<Result<Resp, E>>(&answer) {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&TransportError(e)))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    /// After an unreachable answer: retry in 250 ms, doubling up to 2 s (openraft's default
    /// is a fixed 500 ms). A manager that comes back is caught up within 2 s.
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::successors(
            Some(Duration::from_millis(250)),
            |d| Some((*d * 2).min(Duration::from_secs(2))),
        ))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.send(Rpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.send(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.send(Rpc::Vote, &rpc, &option).await
    }
}
