//! Managers as a cluster: node certificates, the cluster listener's service (Raft messages,
//! joins, adding managers) and the joining side.
//!
//! A node's certificate, key and the CA certificate live in `DATA_DIR/certs` (key 0600), as
//! swarm keeps them in `swarm/certificates`: the store needs them to talk to the other
//! managers before it can be read. The CA key itself is only in the replicated, sealed store.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use lockbox_cluster::{
    AddManager, ClusterError, Dialer, JoinRequest, JoinResponse, Peer, Promotion, SessionRequest,
    SessionResponse,
};
use lockbox_pki::{Issued, NodeRole as PkiRole};
use lockbox_store::Rpc;
use lockbox_types::{Command, Meta, Node, NodeAvailability, NodeRole, NodeSpec, Outcome};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::CoreError;
use crate::manager::{Active, now};

/// Node certificates are valid this long (swarm's default node certificate expiry).
pub(crate) const NODE_CERT_VALIDITY: Duration = Duration::from_secs(90 * 86_400);

/// The port of the cluster listener when an address names none (swarm's).
pub const DEFAULT_CLUSTER_PORT: u16 = 2377;

const CERTS: &str = "certs";
const CA_FILE: &str = "ca.pem";
const CERT_FILE: &str = "node.pem";
const KEY_FILE: &str = "node-key.pem";
const CHAIN_FILE: &str = "chain.pem";

/// This node's certificate, the intermediates it presents with it and the CA certificate
/// it trusts.
#[derive(Debug)]
pub(crate) struct NodeCerts {
    pub(crate) ca_pem: String,
    pub(crate) issued: Issued,
    /// Intermediates (PEM; a cross-signed CA certificate from a root rotation, or empty).
    pub(crate) chain_pem: String,
}

fn certs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(CERTS)
}

/// Reads the node certificates, if this node has them.
pub(crate) fn read_node_certs(data_dir: &Path) -> Option<NodeCerts> {
    let dir = certs_dir(data_dir);
    let ca_pem = std::fs::read_to_string(dir.join(CA_FILE)).ok()?;
    let cert = std::fs::read_to_string(dir.join(CERT_FILE)).ok()?;
    let key = Zeroizing::new(std::fs::read_to_string(dir.join(KEY_FILE)).ok()?);
    let issued = Issued::from_pem(&cert, &key).ok()?;
    let chain_pem = std::fs::read_to_string(dir.join(CHAIN_FILE)).unwrap_or_default();
    Some(NodeCerts {
        ca_pem,
        issued,
        chain_pem,
    })
}

/// Writes the node certificates (key 0600; each file written beside and renamed).
pub(crate) fn write_node_certs(data_dir: &Path, certs: &NodeCerts) -> Result<(), CoreError> {
    let dir = certs_dir(data_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| CoreError::Internal(format!("writing {}: {e}", dir.display())))?;
    for (name, bytes, mode) in [
        (CA_FILE, certs.ca_pem.as_bytes(), 0o644),
        (CERT_FILE, certs.issued.cert_pem.as_bytes(), 0o644),
        (KEY_FILE, certs.issued.key_pem.as_bytes(), 0o600),
        (CHAIN_FILE, certs.chain_pem.as_bytes(), 0o644),
    ] {
        crate::files::write_atomic(&dir, name, bytes, mode)?;
    }
    Ok(())
}

/// Removes the node certificates (leaving the swarm).
pub(crate) fn remove_node_certs(data_dir: &Path) {
    let _ = std::fs::remove_dir_all(certs_dir(data_dir));
}

/// `addr` with [`DEFAULT_CLUSTER_PORT`] when it names no port.
pub fn with_default_port(addr: &str) -> String {
    if addr.parse::<SocketAddr>().is_ok() {
        return addr.to_owned();
    }
    if addr.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
        return format!("[{addr}]:{DEFAULT_CLUSTER_PORT}");
    }
    if addr
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        return addr.to_owned();
    }
    format!("{addr}:{DEFAULT_CLUSTER_PORT}")
}

/// The host part of `addr` (`host:port`).
pub(crate) fn host_of(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h.trim_start_matches('[').trim_end_matches(']'),
        _ => addr,
    }
}

/// Issues a node certificate naming the node's host name and advertised address, valid
/// for `validity`.
pub(crate) fn issue_node_cert_for(
    ca: &lockbox_pki::Ca,
    node_id: &str,
    role: NodeRole,
    hostname: &str,
    addr: &str,
    validity: Duration,
) -> Result<Issued, CoreError> {
    let mut names = Vec::new();
    if !hostname.is_empty() && hostname.parse::<IpAddr>().is_err() {
        names.push(hostname.to_owned());
    }
    let mut ips = Vec::new();
    if let Ok(ip) = host_of(addr).parse::<IpAddr>() {
        ips.push(ip);
    }
    let role = match role {
        NodeRole::Manager => PkiRole::Manager,
        NodeRole::Worker => PkiRole::Worker,
    };
    ca.issue_node(node_id, role, &names, &ips, validity)
        .map_err(|e| CoreError::Internal(format!("issuing the node certificate: {e}")))
}

/// The base36 SHA-256 digest part of a join token, as [`crate::tokens`] writes it.
pub(crate) fn token_digest(token: &str) -> Option<&str> {
    let mut parts = token.split('-');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("SWMTKN"), Some("1"), Some(d), Some(s), None) if d.len() == 50 && s.len() == 25 => {
            Some(d)
        }
        _ => None,
    }
}

/// A dialer presenting this node's certificate.
pub(crate) fn dialer(certs: &NodeCerts) -> Result<Arc<Dialer>, CoreError> {
    let config = lockbox_pki::cluster_client_config(&certs.ca_pem, &certs.issued, &certs.chain_pem)
        .map_err(|e| CoreError::Internal(format!("node TLS configuration: {e}")))?;
    Ok(Arc::new(Dialer::new(config)))
}

/// Whether two tokens are equal, in time independent of where they differ.
fn same_token(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// The cluster listener's service on a manager.
pub(crate) struct NodeService {
    pub(crate) active: Weak<Active>,
}

impl NodeService {
    fn active(&self) -> Result<Arc<Active>, ClusterError> {
        self.active
            .upgrade()
            .ok_or_else(|| ClusterError::unavailable("this manager is shutting down"))
    }
}

/// Forwards a JSON request to the leader, for requests that only the leader can serve.
async fn to_leader<T: serde::Serialize, R: serde::de::DeserializeOwned>(
    a: &Active,
    path: &str,
    body: &T,
) -> Result<R, ClusterError> {
    let Some((_, addr)) = a.store.leader() else {
        return Err(ClusterError::unavailable(
            "the swarm does not have a leader; try again",
        ));
    };
    let dialer = a
        .dialer()
        .ok_or_else(|| ClusterError::unavailable("this manager cannot reach the leader"))?;
    let bytes = serde_json::to_vec(body).map_err(|e| ClusterError::internal(e.to_string()))?;
    let (status, answer) = dialer
        .post(&addr, path, Bytes::from_owner(Zeroizing::new(bytes)))
        .await
        .map_err(|e| ClusterError::unavailable(format!("leader {addr}: {e}")))?;
    if status != 200 {
        return Err(
            serde_json::from_slice::<ClusterError>(&answer).unwrap_or(ClusterError {
                status,
                message: String::from_utf8_lossy(&answer).into_owned(),
            }),
        );
    }
    serde_json::from_slice(&answer).map_err(|e| ClusterError::internal(e.to_string()))
}

impl lockbox_cluster::Service for NodeService {
    fn is_manager(&self, peer: &lockbox_pki::PeerIdentity) -> bool {
        self.active.upgrade().is_some_and(|a| {
            // A node still joining has no state yet: any manager the CA vouches for may
            // replicate to it (the leader is the only one that does). Otherwise the node must
            // be a manager now. Raft messages are not held to the recorded serial: a manager
            // whose replica lags (restarted before it applied a renewal) must still hear the
            // leader that renewed its certificate, or it would never catch up.
            a.store.read(|st| {
                st.cluster.is_none()
                    || st
                        .nodes
                        .get(&peer.common_name)
                        .is_some_and(|n| n.spec.role == NodeRole::Manager)
            })
        })
    }

    fn raft(
        &self,
        rpc: Rpc,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Zeroizing<Vec<u8>>, String>> {
        let active = self.active.clone();
        Box::pin(async move {
            let a = active.upgrade().ok_or("this manager is shutting down")?;
            a.store
                .serve_rpc(rpc, &body)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn join(
        &self,
        req: JoinRequest,
        peer: Peer,
    ) -> BoxFuture<'static, Result<JoinResponse, ClusterError>> {
        let active = self.active();
        Box::pin(async move {
            let a = active?;
            if !a.store.is_leader() {
                return to_leader(&a, "/cluster/join", &req).await;
            }
            admit(&a, req, peer).await
        })
    }

    fn session(
        &self,
        body: Bytes,
        peer: Peer,
    ) -> BoxFuture<'static, Result<Zeroizing<Vec<u8>>, ClusterError>> {
        let active = self.active();
        Box::pin(async move {
            let a = active?;
            let mut req: SessionRequest =
                lockbox_cluster::decode(&body).map_err(ClusterError::bad_request)?;
            drop(body);
            // A relay must come from a current manager: a demoted or removed one keeps its
            // old certificate and must not open anyone's session.
            let relayed = peer.manager().is_some()
                && peer
                    .identity
                    .as_ref()
                    .is_some_and(|i| a.current_cert(i, NodeRole::Manager));
            let own = peer
                .identity
                .as_ref()
                .filter(|i| i.common_name == req.node_id);
            if !relayed {
                let Some(own) = own else {
                    return Err(ClusterError::forbidden(
                        "a worker may only open its own session",
                    ));
                };
                // The serial it reports is the one it presents, and that certificate is its
                // current one: a superseded or removed node's certificate is revoked.
                // A worker promoted since (recorded as a manager) still presents its worker
                // certificate until it has its manager one: it may ask for that.
                let promoted = own.role() == Some(lockbox_pki::Role::Worker)
                    && a.current_cert(own, NodeRole::Manager);
                if own.serial != req.cert_serial
                    || !(promoted || a.current_cert(own, NodeRole::Worker))
                {
                    tracing::warn!(node = %req.node_id, peer = %peer.addr, presented = %own.serial, reported = %req.cert_serial, "refused a session with a revoked certificate");
                    return Err(ClusterError::forbidden(
                        "this node's certificate has been revoked or the node is no longer a member of the swarm",
                    ));
                }
                // A demoted manager still presents its manager certificate: it gets one
                // naming its role now.
                req.renew = own.role() != Some(lockbox_pki::Role::Worker);
            }
            if !a.store.is_leader() {
                // Relay to the leader, which keeps the workers' heartbeats.
                let Some((_, addr)) = a.store.leader() else {
                    return Err(ClusterError::unavailable(
                        "the swarm does not have a leader; try again",
                    ));
                };
                let dialer = a.dialer().ok_or_else(|| {
                    ClusterError::unavailable("this manager cannot reach the leader")
                })?;
                let bytes = lockbox_cluster::encode(&req).map_err(ClusterError::internal)?;
                let (status, answer) = dialer
                    .post(&addr, "/dispatcher/session", Bytes::from_owner(bytes))
                    .await
                    .map_err(|e| ClusterError::unavailable(format!("leader {addr}: {e}")))?;
                if status != 200 {
                    return Err(ClusterError {
                        status,
                        message: String::from_utf8_lossy(&answer).into_owned(),
                    });
                }
                return Ok(Zeroizing::new(answer.to_vec()));
            }
            let resp = dispatch(&a, req).await?;
            lockbox_cluster::encode(&resp).map_err(ClusterError::internal)
        })
    }

    fn add_manager(
        &self,
        req: AddManager,
        peer: Peer,
    ) -> BoxFuture<'static, Result<(), ClusterError>> {
        let active = self.active();
        Box::pin(async move {
            let a = active?;
            if peer.manager() != Some(req.node_id.as_str()) {
                return Err(ClusterError::forbidden(
                    "a manager may only add itself to the raft group",
                ));
            }
            if !a.store.is_leader() {
                let _: serde_json::Value = to_leader(&a, "/cluster/members", &req).await?;
                return Ok(());
            }
            let node = a
                .store
                .read(|st| st.nodes.get(&req.node_id).cloned())
                .filter(|n| n.spec.role == NodeRole::Manager)
                .ok_or_else(|| ClusterError::forbidden("not a manager of this cluster"))?;
            a.store
                .add_manager(node.raft_id, &node.addr)
                .await
                .map_err(|e| ClusterError::internal(format!("adding the manager: {e}")))?;
            tracing::info!(node = %node.id, raft_id = node.raft_id, addr = %node.addr, "manager added to the raft group");
            Ok(())
        })
    }

    fn views(&self, _peer: Peer) -> BoxFuture<'static, Result<Zeroizing<Vec<u8>>, ClusterError>> {
        let active = self.active();
        Box::pin(async move {
            let a = active?;
            if !a.store.is_leader() {
                return Err(ClusterError::unavailable("this manager is not the leader"));
            }
            let views: HashMap<String, WireView> = local_views(&a)
                .into_iter()
                .map(|(id, v)| (id, WireView::from(&v)))
                .collect();
            serde_json::to_vec(&views)
                .map(Zeroizing::new)
                .map_err(|e| ClusterError::internal(e.to_string()))
        })
    }

    fn membership(
        &self,
        body: Bytes,
        peer: Peer,
    ) -> BoxFuture<'static, Result<Zeroizing<Vec<u8>>, ClusterError>> {
        let active = self.active();
        Box::pin(async move { crate::membership::serve(active?, body, peer).await })
    }
}

/// The leader serves a worker's session: records its heartbeat and its tasks' statuses, and
/// answers with its tasks and exactly the secrets they need. A worker recorded as a manager
/// (promoted since) gets what it needs to become one instead.
async fn dispatch(a: &Active, req: SessionRequest) -> Result<SessionResponse, ClusterError> {
    let node = a
        .store
        .read(|st| st.nodes.get(&req.node_id).cloned())
        .ok_or_else(|| ClusterError::forbidden("not a worker of this cluster"))?;
    if let Ok(mut w) = a.liveness.workers.lock() {
        w.insert(node.id.clone(), Instant::now());
    }
    if node.spec.role == NodeRole::Manager {
        return Ok(SessionResponse {
            tasks: Vec::new(),
            needed: Vec::new(),
            values: Vec::new(),
            services: Vec::new(),
            networks: Vec::new(),
            managers: a.manager_addrs(),
            renewed: None,
            trust_pem: None,
            promotion: Some(promotion(a, &node, &req.cert_serial).await?),
        });
    }
    // The worker's task output, for `service logs` on this manager.
    let own: HashSet<String> = a.store.read(|st| {
        st.tasks
            .values()
            .filter(|t| t.node_id == node.id)
            .map(|t| t.id.clone())
            .collect()
    });
    for (task_id, stream, time, data) in req.logs.iter().cloned() {
        if own.contains(&task_id) {
            a.agent.logs.push(crate::agent::LogLine {
                task_id,
                stream,
                time: lockbox_types::Timestamp(time),
                data,
            });
        }
    }
    // Statuses only for the worker's own tasks.
    let changes: Vec<lockbox_types::TaskChange> = a.store.read(|st| {
        req.statuses
            .iter()
            .filter(|(id, _)| st.tasks.get(id).is_some_and(|t| t.node_id == node.id))
            .map(|(id, status)| lockbox_types::TaskChange::Status {
                id: id.clone(),
                status: status.clone(),
            })
            .collect()
    });
    if !changes.is_empty() {
        a.store
            .propose(Command::Tasks {
                changes,
                now: now(),
            })
            .await
            .map_err(|e| ClusterError::unavailable(e.to_string()))?;
        a.kick();
    }
    let held: HashSet<&str> = req.held.iter().map(String::as_str).collect();
    let (tasks, needed, services, networks) = a.store.read(|st| {
        let tasks: Vec<lockbox_types::Task> = st
            .tasks
            .values()
            .filter(|t| t.node_id == node.id)
            .cloned()
            .collect();
        let mut needed: Vec<(String, String)> = tasks
            .iter()
            .filter(|t| {
                t.desired_state <= lockbox_types::TaskState::Running
                    && !t.status.state.is_terminal()
            })
            .flat_map(|t| {
                t.spec
                    .secrets
                    .iter()
                    .map(|r| (r.secret_id.clone(), r.secret_name.clone()))
            })
            .filter(|(id, _)| st.secrets.contains_key(id))
            .collect();
        needed.sort();
        needed.dedup();
        let services: Vec<(String, String)> = tasks
            .iter()
            .filter_map(|t| {
                st.services
                    .get(&t.service_id)
                    .map(|s| (s.id.clone(), s.spec.name.clone()))
            })
            .collect();
        let networks: Vec<lockbox_types::Network> = st.networks.values().cloned().collect();
        (tasks, needed, services, networks)
    });
    let mut values = Vec::new();
    for (id, name) in &needed {
        if held.contains(id.as_str()) {
            continue;
        }
        let Some(data) = a
            .store
            .read(|st| st.secrets.get(id).map(|s| s.spec.data.clone()))
        else {
            continue;
        };
        // Each delivery to a node (the worker did not hold it) is audited before it leaves.
        if let Some(trail) = &a.audit {
            let mut details = std::collections::BTreeMap::new();
            details.insert("node".to_owned(), node.id.clone());
            if let Some(fp) = a.value_fingerprint(&data) {
                details.insert("value_hmac".to_owned(), fp);
            }
            let entry = crate::AuditEntry {
                actor: "daemon".into(),
                source: "dispatcher".into(),
                action: "secret.dispatch".into(),
                objects: vec![
                    crate::AuditObject::new("secret", id.clone(), name.clone()),
                    crate::AuditObject::new("node", node.id.clone(), node.hostname.clone()),
                ],
                details,
                ..crate::AuditEntry::default()
            };
            trail.record(entry).await.map_err(|e| {
                ClusterError::internal(format!("secret {name} not dispatched: {e}"))
            })?;
        }
        values.push((id.clone(), data));
    }
    let (renewed, trust_pem) =
        crate::pki::for_worker(a, &node, &req.cert_serial, &req.trust_digest, req.renew).await?;
    Ok(SessionResponse {
        tasks,
        needed: needed.into_iter().map(|(id, _)| id).collect(),
        values,
        services,
        networks,
        managers: a.manager_addrs(),
        renewed,
        trust_pem,
        promotion: None,
    })
}

/// What a promoted worker needs to become a manager: a manager certificate for its node ID
/// from the CA that signs now, recorded as replacing the worker certificate it presents
/// (issued anew at each asking; the node keeps the one it acts on), its Raft id and, under
/// autolock, the cluster's unlock key.
async fn promotion(a: &Active, node: &Node, serial: &str) -> Result<Promotion, ClusterError> {
    let cluster_id = a
        .store
        .read(|st| st.cluster.as_ref().map(|c| c.id.clone()))
        .ok_or_else(|| ClusterError::unavailable("the cluster is not initialized"))?;
    let (issued, signing) = a
        .issue_recorded(
            &node.id,
            NodeRole::Manager,
            &node.hostname,
            &node.addr,
            Some(serial.to_owned()),
        )
        .await
        .map_err(|e| ClusterError::unavailable(e.to_string()))?;
    tracing::info!(node = %node.id, raft_id = node.raft_id, addr = %node.addr, "a promoted worker gets its manager certificate");
    Ok(Promotion {
        node_id: node.id.clone(),
        raft_id: node.raft_id,
        cluster_id,
        addr: node.addr.clone(),
        ca_pem: signing.root_pem,
        cert_pem: issued.cert_pem.clone(),
        key_pem: issued.key_pem.to_string(),
        chain_pem: signing.chain_pem,
        unlock_key: a.unlock_key_text().map(|k| k.to_string()),
    })
}

/// The leader admits a node: checks its token, names it, issues its certificate and records
/// it. A manager is added to the Raft group when it asks ([`NodeService::add_manager`]),
/// once its own listener runs.
async fn admit(a: &Active, req: JoinRequest, peer: Peer) -> Result<JoinResponse, ClusterError> {
    let invalid =
        || ClusterError::bad_request("A valid join token is necessary to join this cluster");
    let cluster = a
        .store
        .read(|st| st.cluster.clone())
        .ok_or_else(|| ClusterError::unavailable("the cluster is not initialized"))?;
    let role = if same_token(&req.token, &cluster.join_tokens.manager) {
        NodeRole::Manager
    } else if same_token(&req.token, &cluster.join_tokens.worker) {
        NodeRole::Worker
    } else {
        tracing::warn!(peer = %peer.addr, "refused a join with an invalid token");
        return Err(invalid());
    };
    let availability = match req.availability.as_str() {
        "" | "active" => NodeAvailability::Active,
        "pause" => NodeAvailability::Pause,
        "drain" => NodeAvailability::Drain,
        other => {
            return Err(ClusterError::bad_request(format!(
                "invalid availability {other:?}"
            )));
        }
    };
    let addr = with_default_port(&req.addr);
    if addr.parse::<SocketAddr>().is_err() {
        return Err(ClusterError::bad_request(format!(
            "advertise address {addr:?} must be an IP address and port"
        )));
    }
    if role == NodeRole::Manager
        && a.store.read(|st| {
            st.nodes
                .values()
                .any(|n| n.addr == addr && n.spec.role == NodeRole::Manager)
        })
    {
        return Err(ClusterError::bad_request(format!(
            "a node with advertise address {addr} is already a member; remove it first (node rm)"
        )));
    }
    let node_id = lockbox_types::new_id();
    // Workers are not in the Raft group: Raft id 0.
    let raft_id = match role {
        NodeRole::Manager => {
            a.store
                .read(|st| st.nodes.values().map(|n| n.raft_id).max())
                .unwrap_or(1)
                + 1
        }
        NodeRole::Worker => 0,
    };
    let t = now();
    let node = Node {
        id: node_id.clone(),
        meta: Meta {
            version: 0,
            created_at: t,
            updated_at: t,
        },
        spec: NodeSpec {
            name: String::new(),
            labels: Default::default(),
            role,
            availability,
        },
        hostname: req.hostname.clone(),
        addr: addr.clone(),
        raft_id,
    };
    match a
        .store
        .propose(Command::AddNode {
            node: Box::new(node),
        })
        .await
    {
        Ok(Outcome::Applied { .. }) => {}
        Ok(Outcome::Rejected(r)) => return Err(ClusterError::bad_request(r.to_string())),
        Err(e) => return Err(ClusterError::unavailable(e.to_string())),
    }
    // Issued from the CA that signs now (the new one while a rotation is under way) and
    // recorded, so the listener knows it as this node's current certificate.
    let (issued, signing) = a
        .issue_recorded(&node_id, role, &req.hostname, &addr, None)
        .await
        .map_err(|e| ClusterError::unavailable(e.to_string()))?;
    tracing::info!(node = %node_id, role = ?role, peer = %peer.addr, "node joined");
    let unlock_key = match role {
        NodeRole::Manager => a.unlock_key_text(),
        NodeRole::Worker => None,
    };
    Ok(JoinResponse {
        node_id,
        role: match role {
            NodeRole::Manager => "manager".into(),
            NodeRole::Worker => "worker".into(),
        },
        managers: a.manager_addrs(),
        raft_id,
        cluster_id: cluster.id.clone(),
        ca_pem: signing.root_pem,
        cert_pem: issued.cert_pem.clone(),
        key_pem: issued.key_pem.to_string(),
        unlock_key: unlock_key.map(|k| k.to_string()),
        chain_pem: signing.chain_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_port_is_added_only_when_missing() {
        assert_eq!(with_default_port("10.0.0.1"), "10.0.0.1:2377");
        assert_eq!(with_default_port("10.0.0.1:4000"), "10.0.0.1:4000");
        assert_eq!(with_default_port("::1"), "[::1]:2377");
        assert_eq!(with_default_port("[::1]:9"), "[::1]:9");
        assert_eq!(with_default_port("node-a"), "node-a:2377");
        assert_eq!(host_of("10.0.0.1:2377"), "10.0.0.1");
        assert_eq!(host_of("[::1]:2377"), "::1");
    }

    #[test]
    fn token_digest_takes_the_ca_part() {
        let t = crate::tokens::new_token(b"ca");
        let d = token_digest(&t).unwrap();
        assert_eq!(d.len(), 50);
        assert!(t.contains(d));
        assert_eq!(token_digest("SWMTKN-1-abc-def"), None);
        assert_eq!(token_digest("nonsense"), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("SWMTKN-1-a-b", "SWMTKN-1-a-b"));
        assert!(!same_token("SWMTKN-1-a-b", "SWMTKN-1-a-c"));
        assert!(!same_token("SWMTKN-1-a-b", "SWMTKN-1-a-bb"));
    }
}

/// How this node sees a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// It is the leader.
    pub leader: bool,
    /// For managers: `reachable`, `unreachable` or `unknown` (swarm's words).
    pub reachability: &'static str,
    /// `ready`, `down` or `unknown`.
    pub state: &'static str,
}

/// A manager that has not answered the leader for this long is unreachable.
const UNREACHABLE_AFTER: Duration = Duration::from_secs(5);

/// A node not heard from for this long is down: its tasks are replaced elsewhere.
pub(crate) const NODE_DOWN_AFTER: Duration = Duration::from_secs(8);

/// What the leader hears from nodes, beyond Raft.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    /// When this node last became the leader (nodes get this long before they are down).
    leader_since: std::sync::Mutex<Option<Instant>>,
    /// Workers' last dispatcher calls.
    workers: std::sync::Mutex<HashMap<String, Instant>>,
}

impl Active {
    /// Cluster addresses of the managers.
    pub(crate) fn manager_addrs(&self) -> Vec<String> {
        self.store.read(|st| {
            st.nodes
                .values()
                .filter(|n| n.spec.role == NodeRole::Manager)
                .map(|n| n.addr.clone())
                .collect()
        })
    }

    /// When each other node was last heard from (leader's view).
    fn last_heard(&self) -> HashMap<String, Option<Instant>> {
        let members = self.store.members();
        let workers = self
            .liveness
            .workers
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default();
        self.store.read(|st| {
            st.nodes
                .values()
                .filter(|n| n.id != self.node_id)
                .map(|n| {
                    let heard = match n.spec.role {
                        // A promoted worker on its way into the group: its last session.
                        NodeRole::Manager => members
                            .iter()
                            .find(|m| m.raft_id == n.raft_id)
                            .and_then(|m| m.last_seen)
                            .and_then(|d| Instant::now().checked_sub(d))
                            .or_else(|| workers.get(&n.id).copied()),
                        NodeRole::Worker => workers.get(&n.id).copied(),
                    };
                    (n.id.clone(), heard)
                })
                .collect()
        })
    }

    /// The nodes the leader has not heard from for [`NODE_DOWN_AFTER`] (counting from when
    /// it became the leader). Empty on a follower.
    pub(crate) fn down_nodes(&self) -> HashSet<String> {
        let since = {
            let Ok(mut s) = self.liveness.leader_since.lock() else {
                return HashSet::new();
            };
            if !self.store.is_leader() {
                *s = None;
                return HashSet::new();
            }
            *s.get_or_insert_with(Instant::now)
        };
        self.last_heard()
            .into_iter()
            .filter(|(_, heard)| heard.map_or(since, |h| h.max(since)).elapsed() > NODE_DOWN_AFTER)
            .map(|(id, _)| id)
            .collect()
    }
}

/// A [`NodeView`] between managers.
#[derive(serde::Serialize, serde::Deserialize)]
struct WireView {
    leader: bool,
    reachability: String,
    state: String,
}

impl From<&NodeView> for WireView {
    fn from(v: &NodeView) -> WireView {
        WireView {
            leader: v.leader,
            reachability: v.reachability.to_owned(),
            state: v.state.to_owned(),
        }
    }
}

/// One of the words a [`NodeView`] uses (anything else is `unknown`).
fn word(w: &str) -> &'static str {
    match w {
        "reachable" => "reachable",
        "unreachable" => "unreachable",
        "ready" => "ready",
        "down" => "down",
        _ => "unknown",
    }
}

/// How long a follower waits for the leader's view of the nodes before showing its own.
const VIEWS_TIMEOUT: Duration = Duration::from_secs(1);

impl crate::Manager {
    /// Each node's leader flag, reachability and state. The leader hears from every node; a
    /// follower asks the leader (and shows what it knows itself, the leader and itself, if
    /// the leader does not answer within a second).
    pub async fn node_views(&self) -> Result<HashMap<String, NodeView>, CoreError> {
        let a = self.active().await?;
        if !a.store.is_leader()
            && let Some(views) = leader_views(&a).await
        {
            return Ok(views);
        }
        Ok(local_views(&a))
    }
}

/// The leader's views, asked from a follower.
async fn leader_views(a: &Active) -> Option<HashMap<String, NodeView>> {
    let (_, addr) = a.store.leader()?;
    let dialer = a.dialer()?;
    let (status, body) = tokio::time::timeout(
        VIEWS_TIMEOUT,
        dialer.post(&addr, "/cluster/views", Bytes::from_static(b"{}")),
    )
    .await
    .ok()?
    .ok()?;
    if status != 200 {
        return None;
    }
    let wire: HashMap<String, WireView> = serde_json::from_slice(&body).ok()?;
    Some(
        wire.into_iter()
            .map(|(id, v)| {
                (
                    id,
                    NodeView {
                        leader: v.leader,
                        reachability: word(&v.reachability),
                        state: word(&v.state),
                    },
                )
            })
            .collect(),
    )
}

/// This node's own view of every node.
fn local_views(a: &Active) -> HashMap<String, NodeView> {
    let members = a.store.members();
    let me = a.store.raft_id();
    let leading = a.store.is_leader();
    let nodes: Vec<Node> = a.store.read(|st| st.nodes.values().cloned().collect());
    let down = a.down_nodes();
    let mut out = HashMap::new();
    for n in nodes.iter().filter(|n| n.spec.role == NodeRole::Worker) {
        let state = if !leading {
            "unknown"
        } else if down.contains(&n.id) {
            "down"
        } else {
            "ready"
        };
        out.insert(
            n.id.clone(),
            NodeView {
                leader: false,
                reachability: "unknown",
                state,
            },
        );
    }
    for n in nodes.iter().filter(|n| n.spec.role == NodeRole::Manager) {
        let member = members.iter().find(|m| m.raft_id == n.raft_id);
        let leader = member.is_some_and(|m| m.leader);
        let reachability = match member {
            None => "unknown",
            Some(_) if n.raft_id == me => "reachable",
            Some(m) if leading => match m.last_seen {
                Some(t) if t < UNREACHABLE_AFTER => "reachable",
                _ => "unreachable",
            },
            Some(m) if m.leader => "reachable",
            Some(_) => "unknown",
        };
        out.insert(
            n.id.clone(),
            NodeView {
                leader,
                reachability,
                state: if reachability == "unreachable" {
                    "down"
                } else {
                    "ready"
                },
            },
        );
    }
    out
}
