//! Service, task and node operations: validation as swarmkit does it, resolution as dockerd
//! does it (full ID, then name, then unique ID prefix).

use lockbox_types::{
    Command, Meta, NodeSpec, Outcome, Service, ServiceMode, ServiceSpec, Task, validate_name,
};

use crate::CoreError;
use crate::manager::{Active, now};

/// A service with the task counts of `ServiceStatus`.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// The service.
    pub service: Service,
    /// Tasks running.
    pub running: u64,
    /// Tasks wanted.
    pub desired: u64,
    /// Tasks completed (jobs).
    pub completed: u64,
}

fn invalid(msg: impl Into<String>) -> CoreError {
    CoreError::InvalidArgument(msg.into())
}

/// swarmkit's `validateServiceSpec`, in its order.
pub(crate) fn validate_spec(spec: &ServiceSpec) -> Result<(), CoreError> {
    validate_name(&spec.name).map_err(|e| invalid(e.to_string()))?;
    let task = &spec.task;
    if let Some(r) = &task.restart {
        if r.delay < 0 {
            return Err(invalid("TaskSpec: restart-delay cannot be negative"));
        }
        if r.window < 0 {
            return Err(invalid("TaskSpec: restart-window cannot be negative"));
        }
    }
    if task.image.is_empty() {
        return Err(invalid("ContainerSpec: image reference must be provided"));
    }
    let mut targets: Vec<(&str, &str)> = Vec::new();
    for r in &task.secrets {
        if r.secret_id.is_empty() || r.secret_name.is_empty() {
            return Err(invalid("malformed secret reference"));
        }
        let Some(file) = &r.file else {
            return Err(invalid("malformed secret reference, no target provided"));
        };
        if file.name.is_empty() {
            return Err(invalid(
                "malformed file secret reference, invalid target file name provided",
            ));
        }
        if let Some((prev, _)) = targets.iter().find(|(_, t)| *t == file.name) {
            return Err(invalid(format!(
                "secret references '{prev}' and '{}' have a conflicting target: '{}'",
                r.secret_name, file.name
            )));
        }
        targets.push((&r.secret_name, &file.name));
    }
    for cfg in [&spec.update, &spec.rollback].into_iter().flatten() {
        if cfg.delay < 0 {
            return Err(invalid("TaskSpec: update-delay cannot be negative"));
        }
        if cfg.monitor < 0 {
            return Err(invalid("TaskSpec: update-monitor cannot be negative"));
        }
        if !(0.0..=1.0).contains(&cfg.max_failure_ratio) {
            return Err(invalid(
                "TaskSpec: update-maxfailureratio cannot be less than 0 or bigger than 1",
            ));
        }
    }
    Ok(())
}

impl Active {
    /// Resolves a service by ID, name, or unique ID prefix.
    pub(crate) fn resolve_service(&self, key: &str) -> Result<Service, CoreError> {
        self.store.read(|st| {
            if let Some(s) = st.services.get(key) {
                return Ok(s.clone());
            }
            if let Some(s) = st.service_by_name(key) {
                return Ok(s.clone());
            }
            let m: Vec<&Service> = if key.is_empty() {
                Vec::new()
            } else {
                st.services
                    .range(key.to_owned()..)
                    .take_while(|(id, _)| id.starts_with(key))
                    .map(|(_, s)| s)
                    .collect()
            };
            match m.len() {
                0 => Err(CoreError::NotFound(format!("service {key} not found"))),
                1 => Ok(m[0].clone()),
                n => Err(CoreError::Ambiguous(format!(
                    "service {key} is ambiguous ({n} matches found)"
                ))),
            }
        })
    }

    pub(crate) fn list_services(&self) -> Vec<ServiceInfo> {
        self.store.read(|st| {
            st.services
                .values()
                .map(|svc| {
                    let tasks: Vec<&Task> = st.tasks_of(&svc.id).collect();
                    let running = tasks
                        .iter()
                        .filter(|t| t.status.state == lockbox_types::TaskState::Running)
                        .count() as u64;
                    let completed = tasks
                        .iter()
                        .filter(|t| t.status.state == lockbox_types::TaskState::Complete)
                        .count() as u64;
                    let desired = match svc.spec.mode {
                        ServiceMode::Replicated { replicas } => replicas,
                        ServiceMode::Global => st
                            .nodes
                            .values()
                            .filter(|n| {
                                n.spec.availability == lockbox_types::NodeAvailability::Active
                            })
                            .count() as u64,
                    };
                    ServiceInfo {
                        service: svc.clone(),
                        running,
                        desired,
                        completed,
                    }
                })
                .collect()
        })
    }

    pub(crate) async fn create_service(&self, spec: ServiceSpec) -> Result<String, CoreError> {
        validate_spec(&spec)?;
        self.check_space(spec.raw.len())?;
        let t = now();
        let service = Service {
            id: lockbox_types::new_id(),
            meta: Meta {
                version: 0,
                created_at: t,
                updated_at: t,
            },
            spec,
            previous_spec: None,
            update_status: None,
        };
        let id = service.id.clone();
        match self
            .store
            .propose(Command::CreateService {
                service: Box::new(service),
            })
            .await?
        {
            Outcome::Applied { .. } => {
                self.kick();
                Ok(id)
            }
            Outcome::Rejected(r) => Err(r.into()),
        }
    }

    pub(crate) async fn update_service(
        &self,
        key: &str,
        version: u64,
        spec: Option<ServiceSpec>,
        rollback: bool,
    ) -> Result<(), CoreError> {
        let current = self.resolve_service(key)?;
        let spec = match (spec, rollback) {
            (_, true) => match current.previous_spec.clone() {
                Some(prev) => prev,
                None => {
                    return Err(CoreError::InvalidArgument(format!(
                        "service {} does not have a previous spec",
                        current.id
                    )));
                }
            },
            (Some(s), false) => s,
            (None, false) => {
                return Err(CoreError::InvalidParameter("missing service spec".into()));
            }
        };
        validate_spec(&spec)?;
        if spec.name != current.spec.name {
            return Err(CoreError::Unimplemented(
                "renaming services is not supported".into(),
            ));
        }
        if matches!(
            (&spec.mode, &current.spec.mode),
            (ServiceMode::Global, ServiceMode::Replicated { .. })
                | (ServiceMode::Replicated { .. }, ServiceMode::Global)
        ) {
            return Err(invalid("service mode change is not allowed"));
        }
        self.check_space(spec.raw.len())?;
        let cmd = Command::UpdateService {
            id: current.id.clone(),
            expected_version: version,
            spec: Box::new(spec),
            rollback,
            now: now(),
        };
        match self.store.propose(cmd).await? {
            Outcome::Applied { .. } => {
                self.kick();
                Ok(())
            }
            Outcome::Rejected(r) => Err(r.into()),
        }
    }

    pub(crate) async fn remove_service(&self, key: &str) -> Result<(), CoreError> {
        let current = self.resolve_service(key)?;
        match self
            .store
            .propose(Command::RemoveService { id: current.id })
            .await?
        {
            Outcome::Applied { .. } => {
                self.kick();
                Ok(())
            }
            Outcome::Rejected(r) => Err(r.into()),
        }
    }

    pub(crate) fn resolve_task(&self, key: &str) -> Result<Task, CoreError> {
        self.store.read(|st| {
            if let Some(t) = st.tasks.get(key) {
                return Ok(t.clone());
            }
            let m: Vec<&Task> = if key.is_empty() {
                Vec::new()
            } else {
                st.tasks
                    .range(key.to_owned()..)
                    .take_while(|(id, _)| id.starts_with(key))
                    .map(|(_, t)| t)
                    .collect()
            };
            match m.len() {
                0 => Err(CoreError::NotFound(format!("task {key} not found"))),
                1 => Ok(m[0].clone()),
                n => Err(CoreError::Ambiguous(format!(
                    "task {key} is ambiguous ({n} matches found)"
                ))),
            }
        })
    }

    pub(crate) async fn update_node(
        &self,
        key: &str,
        version: u64,
        spec: NodeSpec,
    ) -> Result<(), CoreError> {
        let node = self.store.read(|st| {
            st.nodes
                .get(key)
                .or_else(|| {
                    st.nodes.values().find(|n| {
                        n.hostname == key || (!n.spec.name.is_empty() && n.spec.name == key)
                    })
                })
                .or_else(|| {
                    let m: Vec<_> = st
                        .nodes
                        .values()
                        .filter(|n| !key.is_empty() && n.id.starts_with(key))
                        .collect();
                    if m.len() == 1 { Some(m[0]) } else { None }
                })
                .cloned()
        });
        let node = node.ok_or_else(|| CoreError::NotFound(format!("node {key} not found")))?;
        if spec.role != node.spec.role {
            return Err(invalid(
                "attempting to demote the last manager of the swarm",
            ));
        }
        let cmd = Command::UpdateNode {
            id: node.id,
            expected_version: version,
            spec: Box::new(spec),
            now: now(),
        };
        match self.store.propose(cmd).await? {
            Outcome::Applied { .. } => {
                self.kick();
                Ok(())
            }
            Outcome::Rejected(r) => Err(r.into()),
        }
    }
}
