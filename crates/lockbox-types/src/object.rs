//! Replicated objects. Plain data: the store keeps them, the API converts them to Docker's
//! wire shapes. A `Secret`'s payload is a [`SecretBytes`]: zeroized on drop, never printed.

use std::collections::BTreeMap;

use lockbox_crypto::SecretBytes;

use crate::Labels;
use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch, UTC. Chosen by the proposer, never by `apply`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

/// Version and times common to every object, as Docker's `Meta`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The store version of the last write: the Raft log index of the entry that made it.
    pub version: u64,
    /// When the object was created.
    pub created_at: Timestamp,
    /// When the object was last changed.
    pub updated_at: Timestamp,
}

/// A secret driver or templating driver reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Driver {
    /// Driver name.
    pub name: String,
    /// Driver options.
    pub options: BTreeMap<String, String>,
}

/// What a user asked for when creating a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSpec {
    /// Unique (case-insensitively) name.
    pub name: String,
    /// User labels.
    pub labels: Labels,
    /// The value. Never returned by any API.
    pub data: SecretBytes,
    /// An external secret driver, if any (boxed: rare, and every secret is held in memory).
    pub driver: Option<Box<Driver>>,
    /// A templating driver, if any (boxed, as `driver`).
    pub templating: Option<Box<Driver>>,
}

/// A stored secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// 25-character ID.
    pub id: String,
    /// Version and times.
    pub meta: Meta,
    /// The spec, data included.
    pub spec: SecretSpec,
}

/// `Orchestration` part of the cluster spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrchestrationConfig {
    /// Tasks kept per slot.
    pub task_history_retention_limit: Option<i64>,
}

/// `Raft` part of the cluster spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftConfig {
    /// Log entries between snapshots.
    pub snapshot_interval: u64,
    /// Snapshots kept besides the current one.
    pub keep_old_snapshots: Option<u64>,
    /// Entries kept for slow followers after a snapshot.
    pub log_entries_for_slow_followers: u64,
    /// Ticks without a leader before an election.
    pub election_tick: i64,
    /// Ticks between heartbeats.
    pub heartbeat_tick: i64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            snapshot_interval: 10_000,
            keep_old_snapshots: Some(0),
            log_entries_for_slow_followers: 500,
            election_tick: 10,
            heartbeat_tick: 1,
        }
    }
}

/// `Dispatcher` part of the cluster spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatcherConfig {
    /// Agent heartbeat period in nanoseconds.
    pub heartbeat_period: Option<i64>,
}

/// `CAConfig` part of the cluster spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaConfig {
    /// Node certificate lifetime in nanoseconds.
    pub node_cert_expiry: Option<i64>,
    /// Incremented to force a CA rotation.
    pub force_rotate: u64,
}

/// `EncryptionConfig` part of the cluster spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionConfig {
    /// Whether managers need the unlock key after a restart.
    pub auto_lock_managers: bool,
}

/// The user-settable cluster configuration (Docker's swarm `Spec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// Always `default`.
    pub name: String,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// Orchestration settings.
    pub orchestration: OrchestrationConfig,
    /// Raft settings.
    pub raft: RaftConfig,
    /// Dispatcher settings.
    pub dispatcher: DispatcherConfig,
    /// CA settings.
    pub ca_config: CaConfig,
    /// Autolock.
    pub encryption_config: EncryptionConfig,
}

impl Default for ClusterSpec {
    /// Swarm's defaults, as a fresh `docker swarm init` reports them.
    fn default() -> Self {
        ClusterSpec {
            name: "default".to_owned(),
            labels: BTreeMap::new(),
            orchestration: OrchestrationConfig {
                task_history_retention_limit: Some(5),
            },
            raft: RaftConfig::default(),
            dispatcher: DispatcherConfig {
                heartbeat_period: Some(5_000_000_000),
            },
            ca_config: CaConfig {
                node_cert_expiry: Some(7_776_000_000_000_000),
                force_rotate: 0,
            },
            encryption_config: EncryptionConfig::default(),
        }
    }
}

/// Join tokens (`SWMTKN-1-<ca digest>-<secret>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokens {
    /// Token for workers.
    pub worker: String,
    /// Token for managers.
    pub manager: String,
}

/// The cluster object: one per store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// Cluster ID.
    pub id: String,
    /// Version and times.
    pub meta: Meta,
    /// Configuration.
    pub spec: ClusterSpec,
    /// Join tokens.
    pub join_tokens: JoinTokens,
    /// PEM of the cluster's root CA certificate (empty until the PKI exists).
    pub root_ca_pem: String,
    /// Default address pools.
    pub default_addr_pool: Vec<String>,
    /// Subnet size for pools.
    pub subnet_size: u32,
    /// VXLAN port.
    pub data_path_port: u32,
}

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeRole {
    /// Runs the store and the API.
    Manager,
    /// Runs tasks only.
    Worker,
}

/// A node's scheduling availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeAvailability {
    /// Takes new tasks.
    Active,
    /// Keeps its tasks, takes no new ones.
    Pause,
    /// Tasks are moved away.
    Drain,
}

/// The user-settable part of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Optional name.
    pub name: String,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// Desired role.
    pub role: NodeRole,
    /// Availability.
    pub availability: NodeAvailability,
}

/// A member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Node ID.
    pub id: String,
    /// Version and times.
    pub meta: Meta,
    /// Configuration.
    pub spec: NodeSpec,
    /// Host name reported by the node.
    pub hostname: String,
    /// Address other nodes reach it at (host or host:port).
    pub addr: String,
    /// Raft node id, for managers.
    pub raft_id: u64,
}

/// A network. For image-`host` services networks have no effect; the docker executor maps
/// them to bridge networks on its engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// ID.
    pub id: String,
    /// Version and times.
    pub meta: Meta,
    /// Unique name.
    pub name: String,
    /// Driver (`overlay` for swarm networks).
    pub driver: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// Attachable by standalone containers.
    pub attachable: bool,
    /// No external connectivity.
    pub internal: bool,
    /// IPv6.
    pub ipv6: bool,
    /// The IPAM block as sent (JSON).
    pub ipam: String,
}

/// Cluster-wide key material, replicated (sealed at rest like every object): the certificate
/// authority that issues client and node certificates, and the key of the audit trail's value
/// fingerprints. `Debug` shows neither private key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterKeys {
    /// CA certificate, PEM.
    pub ca_cert_pem: String,
    /// CA private key, PEM.
    pub ca_key_pem: SecretBytes,
    /// HMAC key for audit value fingerprints (32 bytes).
    pub audit_key: SecretBytes,
}

impl std::fmt::Debug for ClusterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterKeys")
            .field(
                "ca_cert_pem",
                &format_args!("<{} bytes>", self.ca_cert_pem.len()),
            )
            .field("ca_key_pem", &self.ca_key_pem)
            .field("audit_key", &self.audit_key)
            .finish()
    }
}

/// The state of the cluster's node PKI beyond its CA: a root rotation under way and what
/// each node's certificate and trust are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PkiState {
    /// A root rotation under way: certificates are issued by its CA until every node has
    /// one, then it becomes the cluster's CA.
    pub rotation: Option<CaRotation>,
    /// Each node's current certificate, as recorded when it was issued.
    pub certs: BTreeMap<String, NodeCert>,
    /// The digest of the CA each worker last reported trusting (managers trust the
    /// replicated CA).
    pub trust: BTreeMap<String, String>,
    /// The CA certificate (PEM) the last completed rotation replaced, to show what a node
    /// that still trusts it trusts.
    pub previous_root_pem: String,
    /// The current CA cross-signed by that one (PEM): the TLS listener presents it, so
    /// clients whose bundles still hold the previous CA accept the listener.
    pub previous_cross_pem: String,
}

/// A new CA replacing the cluster's, while nodes move to it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRotation {
    /// The new CA certificate, PEM.
    pub cert_pem: String,
    /// The new CA's private key, PEM.
    pub key_pem: SecretBytes,
    /// The new CA cross-signed by the current one (PEM): the intermediate that lets nodes
    /// still trusting only the current CA accept certificates of the new one.
    pub cross_pem: String,
    /// Hex SHA-256 of the new CA certificate's DER.
    pub digest: String,
}

impl std::fmt::Debug for CaRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaRotation")
            .field("digest", &self.digest)
            .field("key_pem", &self.key_pem)
            .finish_non_exhaustive()
    }
}

/// A node's certificate as its issuer recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCert {
    /// Serial, lower-case hex.
    pub serial: String,
    /// The serial of the certificate it replaced, still accepted until the node presents
    /// the new one (the new one may not have reached it yet).
    pub previous: Option<String>,
    /// Hex SHA-256 of the certificate of the CA that issued it.
    pub issuer: String,
    /// End of validity, Unix seconds.
    pub not_after: i64,
}

impl NodeCert {
    /// Whether a certificate with `serial` may still be presented by this node.
    pub fn accepts(&self, serial: &str) -> bool {
        self.serial == serial || self.previous.as_deref() == Some(serial)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_secret_spec_encodes_as_before() {
        // The spec as stores wrote it before labels and drivers changed representation.
        #[derive(Serialize)]
        struct OldSpec {
            name: String,
            labels: BTreeMap<String, String>,
            data: SecretBytes,
            driver: Option<Driver>,
            templating: Option<Driver>,
        }
        let driver = Driver {
            name: "vault".into(),
            options: [("path".to_owned(), "kv/a".to_owned())].into(),
        };
        let old = OldSpec {
            name: "db".into(),
            labels: [("env".to_owned(), "prod".to_owned())].into(),
            data: SecretBytes::new(b"v".to_vec()),
            driver: Some(driver.clone()),
            templating: None,
        };
        let bytes = postcard::to_allocvec(&old).unwrap();
        let spec: SecretSpec = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(spec.name, "db");
        assert_eq!(spec.labels.get("env").map(String::as_str), Some("prod"));
        assert_eq!(spec.driver.as_deref(), Some(&driver));
        assert_eq!(spec.templating, None);
        assert_eq!(postcard::to_allocvec(&spec).unwrap(), bytes);
    }
}
