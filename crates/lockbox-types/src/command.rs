//! The replicated command vocabulary. Every change to the store is one `Command` carried in a
//! Raft entry; `apply` turns it into an `Outcome` deterministically. IDs and times are chosen by
//! the proposer and travel inside the command, so every replica computes the same state.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::access::AccessChange;
use crate::object::{
    CaRotation, Cluster, ClusterKeys, ClusterSpec, JoinTokens, Network, Node, NodeCert, NodeSpec,
    Secret, Timestamp,
};
use crate::service::{Service, ServiceSpec, TaskChange, UpdateStatus};

/// A change to the replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create the cluster and its first node. Rejected if a cluster exists.
    InitCluster {
        /// The cluster object (meta.version is set by apply).
        cluster: Box<Cluster>,
        /// The first manager.
        node: Box<Node>,
    },
    /// Replace the cluster spec, optionally with new join tokens.
    UpdateCluster {
        /// The version the caller read.
        expected_version: u64,
        /// The new spec (full replacement).
        spec: Box<ClusterSpec>,
        /// New join tokens, when rotated.
        join_tokens: Option<JoinTokens>,
        /// Time of the change.
        now: Timestamp,
    },
    /// Create a secret. Rejected if the name is taken (case-insensitively) or the ID exists.
    CreateSecret {
        /// The secret (meta.version is set by apply).
        secret: Box<Secret>,
    },
    /// Replace a secret's labels.
    UpdateSecretLabels {
        /// Secret ID.
        id: String,
        /// The version the caller read.
        expected_version: u64,
        /// New labels.
        labels: crate::Labels,
        /// Time of the change.
        now: Timestamp,
    },
    /// Remove a secret.
    RemoveSecret {
        /// Secret ID.
        id: String,
    },
    /// Create a service. Rejected on a name conflict or a missing secret.
    CreateService {
        /// The service (meta.version is set by apply).
        service: Box<Service>,
    },
    /// Replace a service's spec (the old one becomes `previous_spec`, unless rolling back).
    UpdateService {
        /// Service ID.
        id: String,
        /// The version the caller read.
        expected_version: u64,
        /// New spec.
        spec: Box<ServiceSpec>,
        /// A rollback: previous spec is cleared instead of set.
        rollback: bool,
        /// Time of the change.
        now: Timestamp,
    },
    /// Record rolling-update progress (no version check: written by the orchestrator).
    SetUpdateStatus {
        /// Service ID.
        id: String,
        /// The service version the orchestrator planned from: a status computed before a
        /// newer update is dropped.
        expected_version: u64,
        /// Status, or none to clear it.
        status: Option<UpdateStatus>,
        /// Roll the spec back to `previous_spec` at the same time.
        rollback_spec: bool,
        /// Time of the change.
        now: Timestamp,
    },
    /// Remove a service. Its tasks are shut down by the orchestrator.
    RemoveService {
        /// Service ID.
        id: String,
    },
    /// Task changes, applied in order.
    Tasks {
        /// Changes.
        changes: Vec<TaskChange>,
        /// Time of the change.
        now: Timestamp,
    },
    /// Update a node's spec.
    UpdateNode {
        /// Node ID.
        id: String,
        /// The version the caller read.
        expected_version: u64,
        /// New spec.
        spec: Box<NodeSpec>,
        /// Time of the change.
        now: Timestamp,
    },
    /// Create a network. Rejected on a name conflict.
    CreateNetwork {
        /// The network (meta.version is set by apply).
        network: Box<Network>,
    },
    /// Remove a network.
    RemoveNetwork {
        /// Network ID.
        id: String,
    },
    /// No change; used to make sure every earlier entry is applied.
    Noop,
    /// Replace a secret's value by a new secret object under the same name (a redeployed
    /// stack's `file:` secret whose content changed). The old object keeps its ID, is renamed
    /// to `retired_name` and labelled [`SUPERSEDED_BY_LABEL`], so services still using it keep
    /// running until they roll; it is removed once nothing uses it.
    SupersedeSecret {
        /// The secret being replaced.
        id: String,
        /// The version the caller read.
        expected_version: u64,
        /// The old object's new name.
        retired_name: String,
        /// The new object (same name; meta.version is set by apply).
        replacement: Box<Secret>,
        /// Time of the change.
        now: Timestamp,
    },
    /// A change to users, roles or grants.
    Access {
        /// The change.
        change: AccessChange,
    },
    /// Replace a service's task template without a rolling update (a live secret swap): the
    /// listed tasks (those running the old template) take the new template in place.
    SwapTemplate {
        /// Service ID.
        service_id: String,
        /// The version the caller read.
        expected_version: u64,
        /// The new template.
        task: Box<crate::service::TaskSpec>,
        /// The service spec's Docker JSON with the new template in it.
        service_raw: String,
        /// Tasks whose template is replaced too.
        tasks: Vec<String>,
        /// Time of the change.
        now: Timestamp,
    },
    /// Set the cluster's certificate authority and audit fingerprint key, once. Rejected if
    /// they are set already.
    SetClusterKeys {
        /// The keys.
        keys: Box<ClusterKeys>,
    },
    /// A node joined. Rejected if its ID or (for a manager) its Raft id is taken.
    AddNode {
        /// The node (meta.version is set by apply).
        node: Box<Node>,
    },
    /// A node left or was removed.
    RemoveNode {
        /// Node ID.
        id: String,
    },
    /// Start a root CA rotation (replacing one under way). Rejected without cluster keys.
    StartRootRotation {
        /// The new CA, its key and its cross-signed certificate.
        rotation: Box<CaRotation>,
    },
    /// Complete the rotation whose CA has `digest`: it becomes the cluster's CA and the
    /// join tokens name it. Rejected if no such rotation is under way.
    FinishRootRotation {
        /// Hex SHA-256 of the new CA certificate.
        digest: String,
        /// The join tokens with the new CA's digest.
        join_tokens: JoinTokens,
        /// When.
        now: Timestamp,
    },
    /// Record the certificate just issued to a node. Rejected for an unknown node.
    RecordNodeCert {
        /// Node ID.
        node_id: String,
        /// The certificate.
        cert: NodeCert,
    },
    /// Record the CA a worker reports trusting. Rejected for an unknown node.
    RecordTrust {
        /// Node ID.
        node_id: String,
        /// Hex SHA-256 of the CA certificate.
        digest: String,
    },
    /// A worker becomes a manager: its new spec (role manager) and the Raft id it joins the
    /// group with. Rejected if the Raft id is 0 or another node's.
    PromoteNode {
        /// Node ID.
        id: String,
        /// The version the caller read.
        expected_version: u64,
        /// New spec.
        spec: Box<NodeSpec>,
        /// Its Raft id from now on.
        raft_id: u64,
        /// Time of the change.
        now: Timestamp,
    },
}

/// Label set on a secret that [`Command::SupersedeSecret`] replaced: the ID of its replacement.
pub const SUPERSEDED_BY_LABEL: &str = "com.lockbox.superseded-by";

impl Command {
    /// A short name for logs; never includes values.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::InitCluster { .. } => "init-cluster",
            Command::UpdateCluster { .. } => "update-cluster",
            Command::CreateSecret { .. } => "create-secret",
            Command::UpdateSecretLabels { .. } => "update-secret-labels",
            Command::RemoveSecret { .. } => "remove-secret",
            Command::SupersedeSecret { .. } => "supersede-secret",
            Command::Access { .. } => "access",
            Command::SwapTemplate { .. } => "swap-template",
            Command::SetClusterKeys { .. } => "set-cluster-keys",
            Command::AddNode { .. } => "add-node",
            Command::RemoveNode { .. } => "remove-node",
            Command::PromoteNode { .. } => "promote-node",
            Command::CreateService { .. } => "create-service",
            Command::UpdateService { .. } => "update-service",
            Command::SetUpdateStatus { .. } => "set-update-status",
            Command::RemoveService { .. } => "remove-service",
            Command::Tasks { .. } => "tasks",
            Command::UpdateNode { .. } => "update-node",
            Command::CreateNetwork { .. } => "create-network",
            Command::RemoveNetwork { .. } => "remove-network",
            Command::Noop => "noop",
            Command::StartRootRotation { .. } => "start-root-rotation",
            Command::FinishRootRotation { .. } => "finish-root-rotation",
            Command::RecordNodeCert { .. } => "record-node-cert",
            Command::RecordTrust { .. } => "record-trust",
        }
    }
}

/// Why `apply` refused a command. Deterministic: every replica refuses the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum Rejection {
    /// The cluster already exists.
    #[error("cluster already initialized")]
    AlreadyInitialized,
    /// No cluster yet.
    #[error("cluster not initialized")]
    NotInitialized,
    /// Another object holds the name.
    #[error("{kind} {name} already exists")]
    NameConflict {
        /// Object kind, e.g. `secret`.
        kind: String,
        /// The name asked for.
        name: String,
    },
    /// The ID is not in the store.
    #[error("{kind} {id} not found")]
    NotFound {
        /// Object kind.
        kind: String,
        /// The ID.
        id: String,
    },
    /// The caller's version is stale.
    #[error("update out of sequence")]
    SequenceConflict,
    /// A referenced secret does not exist (or its name differs).
    #[error("{}", secrets_not_found(names))]
    SecretsNotFound {
        /// The missing names.
        names: Vec<String>,
    },
    /// The object is referenced by services.
    #[error("{kind} '{name}' is in use by the following service{}: {}", if services.len() == 1 { "" } else { "s" }, services.join(", "))]
    InUse {
        /// Object kind.
        kind: String,
        /// Object name.
        name: String,
        /// Names of the services that use it.
        services: Vec<String>,
    },
    /// An access-model change conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// An access-model change names something that does not exist.
    #[error("{0}")]
    Missing(String),
}

impl From<crate::access::AccessError> for Rejection {
    fn from(e: crate::access::AccessError) -> Self {
        match e {
            crate::access::AccessError::Conflict(m) => Rejection::Conflict(m),
            crate::access::AccessError::NotFound(m) => Rejection::Missing(m),
        }
    }
}

fn secrets_not_found(names: &[String]) -> String {
    if names.len() == 1 {
        format!("secret not found: {}", names[0])
    } else {
        format!("secrets not found: {}", names.join(", "))
    }
}

/// The result of applying one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Applied; `version` is the new store version (the entry's log index).
    Applied {
        /// Store version after this command.
        version: u64,
    },
    /// Refused; the state is unchanged.
    Rejected(Rejection),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_use_message_matches_docker() {
        let one = Rejection::InUse {
            kind: "secret".into(),
            name: "s".into(),
            services: vec!["a".into()],
        };
        assert_eq!(
            one.to_string(),
            "secret 's' is in use by the following service: a"
        );
        let two = Rejection::InUse {
            kind: "secret".into(),
            name: "s".into(),
            services: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            two.to_string(),
            "secret 's' is in use by the following services: a, b"
        );
    }
}
