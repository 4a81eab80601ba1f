//! The JSON bodies of joins.

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
