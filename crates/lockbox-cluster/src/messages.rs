//! The bodies of joins (JSON) and of the dispatcher's sessions (postcard).

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// A node asking to join, with the token it was given.
#[derive(Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The join token (`SWMTKN-1-…`); its secret part decides the role.
    pub token: String,
    /// The joining host's name.
    pub hostname: String,
    /// The address other nodes reach the joining node's cluster listener at (managers).
    pub addr: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("token", &"<redacted>")
            .field("hostname", &self.hostname)
            .field("addr", &self.addr)
            .field("availability", &self.availability)
            .finish()
    }
}

impl Drop for JoinRequest {
    fn drop(&mut self) {
        self.token.zeroize();
    }
}

/// What a joining node gets: its identity and what it needs to open its own store.
#[derive(Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    /// The node ID assigned.
    pub node_id: String,
    /// `manager` or `worker`.
    pub role: String,
    /// The Raft id assigned (managers).
    pub raft_id: u64,
    /// The cluster ID.
    pub cluster_id: String,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The node certificate, PEM.
    pub cert_pem: String,
    /// The node's private key, PEM.
    pub key_pem: String,
    /// The cluster's unlock key when autolock is on (managers only).
    pub unlock_key: Option<String>,
    /// Cluster addresses of the managers (workers reach the dispatcher there).
    #[serde(default)]
    pub managers: Vec<String>,
    /// Intermediates to present with the certificate (PEM; a cross-signed CA certificate
    /// while a root rotation is under way, else empty).
    #[serde(default)]
    pub chain_pem: String,
}

impl std::fmt::Debug for JoinResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinResponse")
            .field("node_id", &self.node_id)
            .field("role", &self.role)
            .field("raft_id", &self.raft_id)
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

impl Drop for JoinResponse {
    fn drop(&mut self) {
        self.key_pem.zeroize();
        if let Some(k) = &mut self.unlock_key {
            k.zeroize();
        }
    }
}

/// A joined manager asking the leader to add it to the Raft group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddManager {
    /// Its node ID (must match its certificate).
    pub node_id: String,
}

/// A refusal or failure, with the HTTP status it travels with.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct ClusterError {
    /// HTTP status.
    pub status: u16,
    /// What went wrong, for the operator.
    pub message: String,
}

impl ClusterError {
    /// A refusal (403).
    pub fn forbidden(message: impl Into<String>) -> Self {
        ClusterError {
            status: 403,
            message: message.into(),
        }
    }
    /// A bad request (400).
    pub fn bad_request(message: impl Into<String>) -> Self {
        ClusterError {
            status: 400,
            message: message.into(),
        }
    }
    /// Not possible now (503), e.g. this manager is not the leader.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ClusterError {
            status: 503,
            message: message.into(),
        }
    }
    /// A failure (500).
    pub fn internal(message: impl Into<String>) -> Self {
        ClusterError {
            status: 500,
            message: message.into(),
        }
    }
}

/// A worker's periodic call to the dispatcher (postcard): its heartbeat, the statuses of its
/// tasks since the last call, and which secrets it holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRequest {
    /// The worker's node ID (must match its certificate, unless a manager relays it).
    pub node_id: String,
    /// Task ID and new status, in the order they happened.
    pub statuses: Vec<(String, lockbox_types::TaskStatus)>,
    /// IDs of the secrets the worker holds now.
    pub held: Vec<String>,
    /// Task output since the last call: (task ID, stream, time in ns, bytes).
    pub logs: Vec<(String, u8, i64, Vec<u8>)>,
    /// The serial of the certificate the worker presents (checked against the connection's
    /// by the manager it calls).
    pub cert_serial: String,
    /// Hex SHA-256 of the CA certificate the worker trusts.
    pub trust_digest: String,
    /// Set by the manager the worker called when the certificate it presents does not name
    /// the worker role (a demoted manager's): the dispatcher issues one that does.
    pub renew: bool,
}

/// A certificate the dispatcher renewed for the worker (it expires soon, or a root rotation
/// wants one from the new CA).
#[derive(Clone, Serialize, Deserialize)]
pub struct RenewedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (wiped on drop).
    pub key_pem: String,
    /// Intermediates to present with it (PEM, maybe empty).
    pub chain_pem: String,
}

impl Drop for RenewedCert {
    fn drop(&mut self) {
        self.key_pem.zeroize();
    }
}

impl std::fmt::Debug for RenewedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenewedCert").finish_non_exhaustive()
    }
}

/// The dispatcher's answer: everything the worker needs for its own tasks, nothing else.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionResponse {
    /// The tasks assigned to the worker (with their desired states).
    pub tasks: Vec<lockbox_types::Task>,
    /// IDs of the secrets the worker's tasks need now: it drops any other it holds.
    pub needed: Vec<String>,
    /// Values of needed secrets it does not hold yet.
    pub values: Vec<(String, lockbox_crypto::SecretBytes)>,
    /// Names of the services of its tasks.
    pub services: Vec<(String, String)>,
    /// Networks its tasks attach to.
    pub networks: Vec<lockbox_types::Network>,
    /// Cluster addresses of the managers, to fail over to.
    pub managers: Vec<String>,
    /// A new certificate for the worker, when its own should be replaced.
    pub renewed: Option<RenewedCert>,
    /// The CA certificate (PEM) to trust, when the worker trusts another.
    pub trust_pem: Option<String>,
    /// The worker was promoted: what it needs to become a manager (then nothing else in the
    /// answer counts; it ends its session).
    pub promotion: Option<Promotion>,
}

/// A promoted worker's new identity as a manager, issued by the leader.
#[derive(Clone, Serialize, Deserialize)]
pub struct Promotion {
    /// The node ID (unchanged).
    pub node_id: String,
    /// The Raft id it joins the group with.
    pub raft_id: u64,
    /// The cluster ID.
    pub cluster_id: String,
    /// The address the node is recorded at (its Raft address from now on).
    pub addr: String,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The node's manager certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
    /// The cluster's unlock key when autolock is on.
    pub unlock_key: Option<String>,
    /// Intermediates to present with the certificate (PEM; the cross-signed CA certificate
    /// while a root rotation is under way, else empty).
    pub chain_pem: String,
}

impl std::fmt::Debug for Promotion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Promotion")
            .field("node_id", &self.node_id)
            .field("raft_id", &self.raft_id)
            .field("cluster_id", &self.cluster_id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Promotion {
    fn drop(&mut self) {
        self.key_pem.zeroize();
        if let Some(k) = &mut self.unlock_key {
            k.zeroize();
        }
    }
}

/// Encodes a dispatcher message (postcard, in a wiped buffer).
pub fn encode<T: Serialize>(value: &T) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    postcard::to_allocvec(value)
        .map(zeroize::Zeroizing::new)
        .map_err(|e| e.to_string())
}

/// Decodes a dispatcher message.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("undecodable message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_promotion_travels_in_the_session_answer_and_its_key_is_never_shown() {
        let resp = SessionResponse {
            tasks: Vec::new(),
            needed: Vec::new(),
            values: Vec::new(),
            services: Vec::new(),
            networks: Vec::new(),
            managers: vec!["10.0.0.1:2377".into()],
            renewed: None,
            trust_pem: None,
            promotion: Some(Promotion {
                node_id: "n3".into(),
                raft_id: 3,
                cluster_id: "c1".into(),
                addr: "10.0.0.3:2377".into(),
                ca_pem: "ca".into(),
                cert_pem: "cert".into(),
                key_pem: "PRIVATE-KEY-7f3a".into(),
                unlock_key: Some("SWMKEY-1-secret".into()),
                chain_pem: String::new(),
            }),
        };
        let back: SessionResponse = decode(&encode(&resp).unwrap()).unwrap();
        let p = back.promotion.as_ref().unwrap();
        assert_eq!((p.node_id.as_str(), p.raft_id), ("n3", 3));
        assert_eq!(p.key_pem, "PRIVATE-KEY-7f3a");
        assert_eq!(p.unlock_key.as_deref(), Some("SWMKEY-1-secret"));
        let shown = format!("{back:?}");
        assert!(shown.contains("n3"), "{shown}");
        assert!(
            !shown.contains("PRIVATE-KEY") && !shown.contains("SWMKEY"),
            "{shown}"
        );
    }
}
