//! The replicated state and its deterministic `apply`.
//!
//! `State` is what every manager holds in memory. `apply` is a pure function of the state,
//! the entry's log index and the command: no clock, no randomness, no I/O. The log index
//! becomes the object's `Meta.version`, as swarmkit uses its raft index.

use std::collections::{BTreeMap, HashMap};

use lockbox_types::{
    Cluster, Command, Network, Node, Outcome, Rejection, Secret, Service, Task, TaskChange,
};
use serde::{Deserialize, Serialize};

/// Everything the store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The cluster object, once initialized.
    pub cluster: Option<Cluster>,
    /// Nodes by ID.
    pub nodes: BTreeMap<String, Node>,
    /// Secrets by ID.
    pub secrets: BTreeMap<String, Secret>,
    /// Services by ID.
    pub services: BTreeMap<String, Service>,
    /// Tasks by ID.
    pub tasks: BTreeMap<String, Task>,
    /// Networks by ID.
    pub networks: BTreeMap<String, Network>,
    /// Lowercased secret name → ID (names are unique case-insensitively).
    #[serde(skip)]
    secret_names: HashMap<String, String>,
    /// Lowercased service name → ID.
    #[serde(skip)]
    service_names: HashMap<String, String>,
    /// The highest log index applied: the store version.
    pub version: u64,
    /// Users, roles and grants.
    pub access: lockbox_types::AccessModel,
    /// The cluster CA and audit key, once set.
    pub keys: Option<lockbox_types::ClusterKeys>,
    /// Root rotation and node certificates.
    pub pki: lockbox_types::PkiState,
}

/// The state as snapshots of format version 2 stored it (no node PKI state), read only to
/// upgrade such a snapshot.
#[derive(Debug, Deserialize)]
pub(crate) struct StateV2 {
    cluster: Option<Cluster>,
    nodes: BTreeMap<String, Node>,
    secrets: BTreeMap<String, Secret>,
    services: BTreeMap<String, Service>,
    tasks: BTreeMap<String, Task>,
    networks: BTreeMap<String, Network>,
    version: u64,
    access: lockbox_types::AccessModel,
    keys: Option<lockbox_types::ClusterKeys>,
}

impl From<StateV2> for State {
    fn from(v: StateV2) -> State {
        let mut s = State {
            cluster: v.cluster,
            nodes: v.nodes,
            secrets: v.secrets,
            services: v.services,
            tasks: v.tasks,
            networks: v.networks,
            version: v.version,
            access: v.access,
            keys: v.keys,
            ..State::default()
        };
        s.reindex();
        s
    }
}

/// The state as snapshots before format version 2 stored it (no access model, no cluster
/// keys), read only to upgrade such a snapshot.
#[derive(Debug, Deserialize)]
pub(crate) struct StateV1 {
    cluster: Option<Cluster>,
    nodes: BTreeMap<String, Node>,
    secrets: BTreeMap<String, Secret>,
    services: BTreeMap<String, Service>,
    tasks: BTreeMap<String, Task>,
    networks: BTreeMap<String, Network>,
    version: u64,
}

impl From<StateV1> for State {
    fn from(v: StateV1) -> State {
        StateV2 {
            cluster: v.cluster,
            nodes: v.nodes,
            secrets: v.secrets,
            services: v.services,
            tasks: v.tasks,
            networks: v.networks,
            version: v.version,
            access: lockbox_types::AccessModel::default(),
            keys: None,
        }
        .into()
    }
}

impl State {
    /// Refuses a command about a node that is not in the store.
    fn known_node(&self, id: &str) -> Result<(), Rejection> {
        if self.nodes.contains_key(id) {
            Ok(())
        } else {
            Err(Rejection::NotFound {
                kind: "node".into(),
                id: id.to_owned(),
            })
        }
    }

    /// Rebuilds the derived indexes after deserialization.
    pub fn reindex(&mut self) {
        self.secret_names = self
            .secrets
            .values()
            .map(|s| (s.spec.name.to_lowercase(), s.id.clone()))
            .collect();
        self.service_names = self
            .services
            .values()
            .map(|s| (s.spec.name.to_lowercase(), s.id.clone()))
            .collect();
    }

    /// The service with this exact name, compared case-insensitively.
    pub fn service_by_name(&self, name: &str) -> Option<&Service> {
        self.service_names
            .get(&name.to_lowercase())
            .and_then(|id| self.services.get(id))
    }

    /// Names of the services whose spec references secret `id`, sorted.
    pub fn services_using_secret(&self, id: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .services
            .values()
            .filter(|svc| svc.spec.task.secrets.iter().any(|r| r.secret_id == id))
            .map(|svc| svc.spec.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Tasks of a service.
    pub fn tasks_of<'a>(&'a self, service_id: &'a str) -> impl Iterator<Item = &'a Task> + 'a {
        self.tasks
            .values()
            .filter(move |t| t.service_id == service_id)
    }

    fn check_secret_refs(&self, refs: &[lockbox_types::SecretRef]) -> Result<(), Rejection> {
        let mut missing: Vec<String> = Vec::new();
        for r in refs {
            let ok = self.secrets.get(&r.secret_id).is_some_and(|s| {
                s.spec.name == r.secret_name
                        // A superseded secret was renamed; specs made before still name it
                        // by its old name (a rollback, tasks of the previous spec).
                        || s.spec.labels.contains_key(lockbox_types::SUPERSEDED_BY_LABEL)
            });
            if !ok && !missing.contains(&r.secret_name) {
                missing.push(r.secret_name.clone());
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Rejection::SecretsNotFound { names: missing })
        }
    }

    /// The secret with this exact name, compared case-insensitively.
    pub fn secret_by_name(&self, name: &str) -> Option<&Secret> {
        self.secret_names
            .get(&name.to_lowercase())
            .and_then(|id| self.secrets.get(id))
    }

    /// Applies `cmd` as [`State::apply`] does, taking it: a created secret moves into the
    /// state instead of being copied (the state machine owns the entries it applies).
    pub fn apply_owned(&mut self, index: u64, cmd: Command) -> Outcome {
        match cmd {
            Command::CreateSecret { secret } => {
                self.applied(index, |st| st.create_secret(index, *secret))
            }
            other => self.apply(index, &other),
        }
    }

    fn create_secret(&mut self, index: u64, mut secret: Secret) -> Result<(), Rejection> {
        use std::collections::{btree_map, hash_map};
        // One lookup per index, the slot kept for the insert (this runs on the Raft thread
        // for every create).
        let conflict = |secret: &Secret| Rejection::NameConflict {
            kind: "secret".into(),
            name: secret.spec.name.clone(),
        };
        let hash_map::Entry::Vacant(name) =
            self.secret_names.entry(secret.spec.name.to_lowercase())
        else {
            return Err(conflict(&secret));
        };
        let btree_map::Entry::Vacant(id) = self.secrets.entry(secret.id.clone()) else {
            return Err(conflict(&secret));
        };
        secret.meta.version = index;
        name.insert(secret.id.clone());
        id.insert(secret);
        Ok(())
    }

    /// Applies `cmd` as the entry at `index`. A rejection leaves the state unchanged except for
    /// the version, which always advances to `index`.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Outcome {
        self.applied(index, |st| st.apply_inner(index, cmd))
    }

    /// Advances the version to `index` and runs `change`, whether or not it is rejected.
    fn applied(
        &mut self,
        index: u64,
        change: impl FnOnce(&mut State) -> Result<(), Rejection>,
    ) -> Outcome {
        self.version = self.version.max(index);
        match change(self) {
            Ok(()) => Outcome::Applied { version: index },
            Err(r) => Outcome::Rejected(r),
        }
    }

    fn apply_inner(&mut self, index: u64, cmd: &Command) -> Result<(), Rejection> {
        match cmd {
            Command::Noop => Ok(()),
            Command::InitCluster { cluster, node } => {
                if self.cluster.is_some() {
                    return Err(Rejection::AlreadyInitialized);
                }
                let mut cluster = (**cluster).clone();
                cluster.meta.version = index;
                let mut node = (**node).clone();
                node.meta.version = index;
                self.cluster = Some(cluster);
                self.nodes.insert(node.id.clone(), node);
                Ok(())
            }
            Command::UpdateCluster {
                expected_version,
                spec,
                join_tokens,
                now,
            } => {
                let cluster = self.cluster.as_mut().ok_or(Rejection::NotInitialized)?;
                if cluster.meta.version != *expected_version {
                    return Err(Rejection::SequenceConflict);
                }
                cluster.spec = (**spec).clone();
                if let Some(tokens) = join_tokens {
                    cluster.join_tokens = tokens.clone();
                }
                cluster.meta.version = index;
                cluster.meta.updated_at = *now;
                Ok(())
            }
            Command::CreateSecret { secret } => self.create_secret(index, (**secret).clone()),
            Command::UpdateSecretLabels {
                id,
                expected_version,
                labels,
                now,
            } => {
                let secret = self
                    .secrets
                    .get_mut(id)
                    .ok_or_else(|| Rejection::NotFound {
                        kind: "secret".into(),
                        id: id.clone(),
                    })?;
                if secret.meta.version != *expected_version {
                    return Err(Rejection::SequenceConflict);
                }
                secret.spec.labels = labels.clone();
                secret.meta.version = index;
                secret.meta.updated_at = *now;
                Ok(())
            }
            Command::SupersedeSecret {
                id,
                expected_version,
                retired_name,
                replacement,
                now,
            } => {
                let old = self.secrets.get(id).ok_or_else(|| Rejection::NotFound {
                    kind: "secret".into(),
                    id: id.clone(),
                })?;
                if old.meta.version != *expected_version {
                    return Err(Rejection::SequenceConflict);
                }
                let key = old.spec.name.to_lowercase();
                let retired_key = retired_name.to_lowercase();
                if replacement.spec.name.to_lowercase() != key
                    || self.secrets.contains_key(&replacement.id)
                {
                    return Err(Rejection::NameConflict {
                        kind: "secret".into(),
                        name: replacement.spec.name.clone(),
                    });
                }
                if self.secret_names.contains_key(&retired_key) {
                    return Err(Rejection::NameConflict {
                        kind: "secret".into(),
                        name: retired_name.clone(),
                    });
                }
                if let Some(old) = self.secrets.get_mut(id) {
                    old.spec.name = retired_name.clone();
                    old.spec.labels.insert(
                        lockbox_types::SUPERSEDED_BY_LABEL.to_owned(),
                        replacement.id.clone(),
                    );
                    old.meta.version = index;
                    old.meta.updated_at = *now;
                }
                let mut new = (**replacement).clone();
                new.meta.version = index;
                self.secret_names.insert(retired_key, id.clone());
                self.secret_names.insert(key, new.id.clone());
                self.secrets.insert(new.id.clone(), new);
                Ok(())
            }
            Command::Access { change } => {
                self.access.apply(index, change)?;
                Ok(())
            }
            Command::SwapTemplate {
                service_id,
                expected_version,
                task,
                service_raw,
                tasks,
                now,
            } => {
                self.check_secret_refs(&task.secrets)?;
                let svc = self
                    .services
                    .get_mut(service_id)
                    .ok_or_else(|| Rejection::NotFound {
                        kind: "service".into(),
                        id: service_id.clone(),
                    })?;
                if svc.meta.version != *expected_version {
                    return Err(Rejection::SequenceConflict);
                }
                svc.spec.task = (**task).clone();
                svc.spec.raw = service_raw.clone();
                svc.meta.version = index;
                svc.meta.updated_at = *now;
                for id in tasks {
                    if let Some(t) = self.tasks.get_mut(id)
                        && t.service_id == *service_id
                    {
                        t.spec = (**task).clone();
                        t.service_version = index;
                    }
                }
                Ok(())
            }
            Command::SetClusterKeys { keys } => {
                if self.keys.is_some() {
                    return Err(Rejection::Conflict("cluster keys are set already".into()));
                }
                self.keys = Some((**keys).clone());
                Ok(())
            }
            Command::RemoveSecret { id } => {
                let name = self
                    .secrets
                    .get(id)
                    .map(|s| s.spec.name.clone())
                    .ok_or_else(|| Rejection::NotFound {
                        kind: "secret".into(),
                        id: id.clone(),
                    })?;
                let users = self.services_using_secret(id);
                if !users.is_empty() {
                    return Err(Rejection::InUse {
                        kind: "secret".into(),
                        name,
                        services: users,
                    });
                }
                self.secrets.remove(id);
                self.secret_names.remove(&name.to_lowercase());
                Ok(())
            }
            Command::CreateService { service } => {
                // swarmkit checks the referenced secrets before the name.
                self.check_secret_refs(&service.spec.task.secrets)?;
                let key = service.spec.name.to_lowercase();
                if self.service_names.contains_key(&key) || self.services.contains_key(&service.id)
                {
                    return Err(Rejection::NameConflict {
                        kind: "service".into(),
                        name: service.spec.name.clone(),
                    });
                }

                let mut service = (**service).clone();
                service.meta.version = index;
                self.service_names.insert(key, service.id.clone());
                self.services.insert(service.id.clone(), service);
                Ok(())
            }
            Command::UpdateService {
                id,
                expected_version,
                spec,
                rollback,
                now,
            } => {
                let current = self.services.get(id).ok_or_else(|| Rejection::NotFound {
                    kind: "service".into(),
                    id: id.clone(),
                })?;
                if current.meta.version != *expected_version {
                    return Err(Rejection::SequenceConflict);
                }
                if !*rollback {
                    self.check_secret_refs(&spec.task.secrets)?;
                }
                let old_name = current.spec.name.to_lowercase();
                let new_name = spec.name.to_lowercase();
                if old_name != new_name && self.service_names.contains_key(&new_name) {
                    return Err(Rejection::NameConflict {
                        kind: "service".into(),
                        name: spec.name.clone(),
                    });
                }
                let svc = self
                    .services
                    .get_mut(id)
                    .ok_or(Rejection::SequenceConflict)?;
                let old = std::mem::replace(&mut svc.spec, (**spec).clone());
                svc.previous_spec = Some(old);
                svc.update_status = rollback.then(|| lockbox_types::UpdateStatus {
                    state: "rollback_started".into(),
                    started_at: *now,
                    completed_at: None,
                    message: "manually requested rollback".into(),
                });
                svc.meta.version = index;
                svc.meta.updated_at = *now;
                if old_name != new_name {
                    self.service_names.remove(&old_name);
                    self.service_names.insert(new_name, id.clone());
                }
                Ok(())
            }
            Command::SetUpdateStatus {
                id,
                expected_version,
                status,
                rollback_spec,
                now,
            } => {
                let svc = self
                    .services
                    .get_mut(id)
                    .ok_or_else(|| Rejection::NotFound {
                        kind: "service".into(),
                        id: id.clone(),
                    })?;
                if svc.meta.version != *expected_version {
                    return Err(Rejection::SequenceConflict);
                }
                if *rollback_spec && let Some(prev) = svc.previous_spec.take() {
                    svc.previous_spec = Some(std::mem::replace(&mut svc.spec, prev));
                }
                svc.update_status = status.clone();
                svc.meta.version = index;
                svc.meta.updated_at = *now;
                Ok(())
            }
            Command::RemoveService { id } => {
                let svc = self
                    .services
                    .remove(id)
                    .ok_or_else(|| Rejection::NotFound {
                        kind: "service".into(),
                        id: id.clone(),
                    })?;
                self.service_names.remove(&svc.spec.name.to_lowercase());
                Ok(())
            }
            Command::Tasks { changes, now } => {
                for change in changes {
                    self.apply_task_change(index, change, *now);
                }
                Ok(())
            }
            Command::CreateNetwork { network } => {
                if self.networks.values().any(|n| n.name == network.name)
                    || self.networks.contains_key(&network.id)
                {
                    return Err(Rejection::NameConflict {
                        kind: "network".into(),
                        name: network.name.clone(),
                    });
                }
                let mut network = (**network).clone();
                network.meta.version = index;
                self.networks.insert(network.id.clone(), network);
                Ok(())
            }
            Command::RemoveNetwork { id } => {
                self.networks
                    .remove(id)
                    .map(|_| ())
                    .ok_or_else(|| Rejection::NotFound {
                        kind: "network".into(),
                        id: id.clone(),
                    })
            }
            Command::AddNode { node } => {
                if self.cluster.is_none() {
                    return Err(Rejection::NotInitialized);
                }
                let raft_taken =
                    node.raft_id != 0 && self.nodes.values().any(|n| n.raft_id == node.raft_id);
                if self.nodes.contains_key(&node.id) || raft_taken {
                    return Err(Rejection::Conflict(format!(
                        "node {} is already a member",
                        node.id
                    )));
                }
                let mut node = (**node).clone();
                node.meta.version = index;
                self.nodes.insert(node.id.clone(), node);
                Ok(())
            }
            Command::RemoveNode { id } => {
                self.nodes
                    .remove(id)
                    .map(|_| ())
                    .ok_or_else(|| Rejection::NotFound {
                        kind: "node".into(),
                        id: id.clone(),
                    })?;
                // Its certificates are revoked with it.
                self.pki.certs.remove(id);
                self.pki.trust.remove(id);
                Ok(())
            }
            Command::StartRootRotation { rotation } => {
                if self.keys.is_none() {
                    return Err(Rejection::NotInitialized);
                }
                self.pki.rotation = Some((**rotation).clone());
                Ok(())
            }
            Command::FinishRootRotation {
                digest,
                join_tokens,
                now,
            } => {
                let rotation = match &self.pki.rotation {
                    Some(r) if r.digest == *digest => r.clone(),
                    _ => {
                        return Err(Rejection::Conflict(
                            "no such root rotation is under way".into(),
                        ));
                    }
                };
                let (Some(keys), Some(cluster)) = (self.keys.as_mut(), self.cluster.as_mut())
                else {
                    return Err(Rejection::NotInitialized);
                };
                self.pki.previous_root_pem =
                    std::mem::replace(&mut keys.ca_cert_pem, rotation.cert_pem.clone());
                keys.ca_key_pem = rotation.key_pem.clone();
                self.pki.previous_cross_pem = rotation.cross_pem.clone();
                cluster.root_ca_pem = rotation.cert_pem;
                cluster.join_tokens = join_tokens.clone();
                cluster.meta.version = index;
                cluster.meta.updated_at = *now;
                self.pki.rotation = None;
                Ok(())
            }
            Command::RecordNodeCert { node_id, cert } => {
                self.known_node(node_id)?;
                self.pki.certs.insert(node_id.clone(), cert.clone());
                Ok(())
            }
            Command::RecordTrust { node_id, digest } => {
                self.known_node(node_id)?;
                self.pki.trust.insert(node_id.clone(), digest.clone());
                Ok(())
            }
            Command::UpdateNode {
                id,
                expected_version,
                spec,
                now,
            } => {
                let node = self.nodes.get_mut(id).ok_or_else(|| Rejection::NotFound {
                    kind: "node".into(),
                    id: id.clone(),
                })?;
                if node.meta.version != *expected_version {
                    return Err(Rejection::SequenceConflict);
                }
                node.spec = (**spec).clone();
                node.meta.version = index;
                node.meta.updated_at = *now;
                Ok(())
            }
            Command::PromoteNode {
                id,
                expected_version,
                spec,
                raft_id,
                now,
            } => {
                let taken = *raft_id == 0
                    || self
                        .nodes
                        .values()
                        .any(|n| n.id != *id && n.raft_id == *raft_id);
                let node = self.nodes.get_mut(id).ok_or_else(|| Rejection::NotFound {
                    kind: "node".into(),
                    id: id.clone(),
                })?;
                if node.meta.version != *expected_version {
                    return Err(Rejection::SequenceConflict);
                }
                if taken {
                    return Err(Rejection::Conflict(format!(
                        "raft id {raft_id} is not free for node {id}"
                    )));
                }
                node.spec = (**spec).clone();
                node.raft_id = *raft_id;
                node.meta.version = index;
                node.meta.updated_at = *now;
                Ok(())
            }
        }
    }
}

impl State {
    fn apply_task_change(
        &mut self,
        index: u64,
        change: &TaskChange,
        now: lockbox_types::Timestamp,
    ) {
        match change {
            TaskChange::Create(task) => {
                if self.services.contains_key(&task.service_id)
                    && !self.tasks.contains_key(&task.id)
                {
                    let mut task = (**task).clone();
                    task.meta.version = index;
                    self.tasks.insert(task.id.clone(), task);
                }
            }
            TaskChange::Status { id, status } => {
                // States only move forward, so a late report never resurrects a task.
                if let Some(t) = self.tasks.get_mut(id)
                    && status.state >= t.status.state
                {
                    t.status = status.clone();
                    t.meta.version = index;
                    t.meta.updated_at = now;
                }
            }
            TaskChange::Desired { id, state } => {
                if let Some(t) = self.tasks.get_mut(id)
                    && *state > t.desired_state
                {
                    t.desired_state = *state;
                    t.meta.version = index;
                    t.meta.updated_at = now;
                }
            }
            TaskChange::Assign {
                id,
                node_id,
                status,
            } => {
                if let Some(t) = self.tasks.get_mut(id)
                    && t.node_id.is_empty()
                {
                    t.node_id = node_id.clone();
                    t.status = status.clone();
                    t.meta.version = index;
                    t.meta.updated_at = now;
                }
            }
            TaskChange::Remove { id } => {
                self.tasks.remove(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use lockbox_crypto::SecretBytes;
    use lockbox_types::{Meta, NodeRole, SecretSpec, Timestamp};
    use proptest::prelude::*;

    use super::*;

    fn secret(id: &str, name: &str) -> Box<Secret> {
        Box::new(Secret {
            id: id.into(),
            meta: Meta {
                version: 0,
                created_at: Timestamp(1),
                updated_at: Timestamp(1),
            },
            spec: SecretSpec {
                name: name.into(),
                data: SecretBytes::new(b"v".to_vec()),
                ..Default::default()
            },
        })
    }

    #[test]
    fn create_sets_version_and_refuses_case_insensitive_duplicates() {
        let mut s = State::default();
        let out = s.apply(
            7,
            &Command::CreateSecret {
                secret: secret("a", "Foo"),
            },
        );
        assert_eq!(out, Outcome::Applied { version: 7 });
        assert_eq!(s.secrets["a"].meta.version, 7);
        let out = s.apply(
            8,
            &Command::CreateSecret {
                secret: secret("b", "foo"),
            },
        );
        assert_eq!(
            out,
            Outcome::Rejected(Rejection::NameConflict {
                kind: "secret".into(),
                name: "foo".into()
            })
        );
        assert_eq!(s.secrets.len(), 1);
        assert_eq!(s.version, 8);
        assert_eq!(s.secret_by_name("FOO").map(|x| x.id.as_str()), Some("a"));
    }

    #[test]
    fn update_checks_version() {
        let mut s = State::default();
        s.apply(
            3,
            &Command::CreateSecret {
                secret: secret("a", "x"),
            },
        );
        let labels: lockbox_types::Labels = [("k".to_string(), "v".to_string())].into();
        let stale = Command::UpdateSecretLabels {
            id: "a".into(),
            expected_version: 2,
            labels: labels.clone(),
            now: Timestamp(5),
        };
        assert_eq!(
            s.apply(4, &stale),
            Outcome::Rejected(Rejection::SequenceConflict)
        );
        let ok = Command::UpdateSecretLabels {
            id: "a".into(),
            expected_version: 3,
            labels: labels.clone(),
            now: Timestamp(5),
        };
        assert_eq!(s.apply(5, &ok), Outcome::Applied { version: 5 });
        assert_eq!(s.secrets["a"].spec.labels, labels);
        assert_eq!(s.secrets["a"].meta.updated_at, Timestamp(5));
        assert_eq!(s.secrets["a"].meta.created_at, Timestamp(1));
    }

    fn node(id: &str, role: NodeRole, raft_id: u64, version: u64) -> Node {
        Node {
            id: id.into(),
            meta: Meta {
                version,
                created_at: Timestamp(1),
                updated_at: Timestamp(1),
            },
            spec: lockbox_types::NodeSpec {
                name: String::new(),
                labels: BTreeMap::new(),
                role,
                availability: lockbox_types::NodeAvailability::Active,
            },
            hostname: id.into(),
            addr: String::new(),
            raft_id,
        }
    }

    #[test]
    fn promotion_sets_role_and_a_free_raft_id() {
        let mut s = State::default();
        for n in [
            node("m1", NodeRole::Manager, 1, 1),
            node("m2", NodeRole::Manager, 2, 2),
            node("w", NodeRole::Worker, 0, 3),
        ] {
            s.nodes.insert(n.id.clone(), n);
        }
        let promote = |raft_id, expected_version| Command::PromoteNode {
            id: "w".into(),
            expected_version,
            spec: Box::new(lockbox_types::NodeSpec {
                role: NodeRole::Manager,
                ..s.nodes["w"].spec.clone()
            }),
            raft_id,
            now: Timestamp(9),
        };
        let (taken, free, zero, stale) =
            (promote(2, 3), promote(3, 3), promote(0, 3), promote(3, 2));
        assert_eq!(
            s.apply(4, &stale),
            Outcome::Rejected(Rejection::SequenceConflict)
        );
        assert!(matches!(
            s.apply(5, &taken),
            Outcome::Rejected(Rejection::Conflict(_))
        ));
        assert!(matches!(
            s.apply(6, &zero),
            Outcome::Rejected(Rejection::Conflict(_))
        ));
        assert_eq!(s.nodes["w"].spec.role, NodeRole::Worker);
        assert_eq!(s.apply(7, &free), Outcome::Applied { version: 7 });
        let w = &s.nodes["w"];
        assert_eq!(
            (w.spec.role, w.raft_id, w.meta.version),
            (NodeRole::Manager, 3, 7)
        );
        assert_eq!(w.meta.updated_at, Timestamp(9));
        let missing = Command::PromoteNode {
            id: "nope".into(),
            expected_version: 0,
            spec: Box::new(w.spec.clone()),
            raft_id: 4,
            now: Timestamp(9),
        };
        assert!(matches!(
            s.apply(8, &missing),
            Outcome::Rejected(Rejection::NotFound { .. })
        ));
    }

    #[test]
    fn remove_frees_the_name() {
        let mut s = State::default();
        s.apply(
            1,
            &Command::CreateSecret {
                secret: secret("a", "x"),
            },
        );
        assert_eq!(
            s.apply(2, &Command::RemoveSecret { id: "a".into() }),
            Outcome::Applied { version: 2 }
        );
        assert!(s.secret_by_name("x").is_none());
        assert_eq!(
            s.apply(3, &Command::RemoveSecret { id: "a".into() }),
            Outcome::Rejected(Rejection::NotFound {
                kind: "secret".into(),
                id: "a".into()
            })
        );
        assert_eq!(
            s.apply(
                4,
                &Command::CreateSecret {
                    secret: secret("b", "X")
                }
            ),
            Outcome::Applied { version: 4 }
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Create(u8, u8),
        Remove(u8),
        Label(u8, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, 0u8..6).prop_map(|(i, n)| Op::Create(i, n)),
            (0u8..6).prop_map(Op::Remove),
            (0u8..6, 0u64..40).prop_map(|(i, v)| Op::Label(i, v)),
        ]
    }

    fn to_cmd(op: &Op) -> Command {
        match op {
            Op::Create(i, n) => Command::CreateSecret {
                secret: secret(&format!("id{i}"), &format!("Name{n}")),
            },
            Op::Remove(i) => Command::RemoveSecret {
                id: format!("id{i}"),
            },
            Op::Label(i, v) => Command::UpdateSecretLabels {
                id: format!("id{i}"),
                expected_version: *v,
                labels: Default::default(),
                now: Timestamp(*v as i64),
            },
        }
    }

    proptest! {
        /// Replaying the same log gives the same state (determinism), a snapshot round trip
        /// gives the same state, and the name index always agrees with the secrets.
        #[test]
        fn apply_is_deterministic_and_indexes_agree(ops in proptest::collection::vec(op(), 0..60)) {
            let mut a = State::default();
            let mut b = State::default();
            for (i, op) in ops.iter().enumerate() {
                let cmd = to_cmd(op);
                let oa = a.apply(i as u64 + 1, &cmd);
                let ob = b.apply(i as u64 + 1, &cmd);
                prop_assert_eq!(oa, ob);
            }
            prop_assert_eq!(&a, &b);
            let bytes = postcard::to_allocvec(&a).unwrap();
            let mut c: State = postcard::from_bytes(&bytes).unwrap();
            c.reindex();
            prop_assert_eq!(&a.secret_names, &c.secret_names);
            prop_assert_eq!(&a, &c);
            prop_assert_eq!(a.secret_names.len(), a.secrets.len());
            for s in a.secrets.values() {
                prop_assert_eq!(a.secret_by_name(&s.spec.name).map(|x| &x.id), Some(&s.id));
            }
        }
    }

    #[test]
    fn applying_an_owned_command_is_applying_a_borrowed_one() {
        let cmds = [
            Command::CreateSecret {
                secret: secret("a", "Foo"),
            },
            Command::CreateSecret {
                secret: secret("b", "foo"),
            },
            Command::CreateSecret {
                secret: secret("a", "bar"),
            },
            Command::RemoveSecret { id: "a".into() },
            Command::CreateSecret {
                secret: secret("c", "foo"),
            },
        ];
        let (mut borrowed, mut owned) = (State::default(), State::default());
        for (i, cmd) in cmds.iter().enumerate() {
            let index = 10 + i as u64;
            assert_eq!(
                borrowed.apply(index, cmd),
                owned.apply_owned(index, cmd.clone())
            );
            assert_eq!(borrowed, owned);
        }
        assert_eq!(
            owned.secret_by_name("FOO").map(|s| s.id.as_str()),
            Some("c")
        );
    }
}
