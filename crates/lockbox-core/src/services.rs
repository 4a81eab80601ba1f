//! Service, task and node operations: validation as swarmkit does it, resolution as dockerd
//! does it (full ID, then name, then unique ID prefix).

use lockbox_types::{Command, Meta, NodeSpec, Outcome, Service, ServiceMode, ServiceSpec, Task};

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

/// swarmkit's `validateAnnotations` for services: a DNS label of at most 63 characters
/// (underscores allowed).
fn validate_service_name(name: &str) -> Result<(), CoreError> {
    if name.is_empty() {
        return Err(invalid("meta: name must be provided"));
    }
    // ^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$
    let b = name.as_bytes();
    let dns = b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_');
    if !dns {
        return Err(invalid("name must be valid as a DNS name component"));
    }
    if b.len() > 63 {
        return Err(invalid("name must be 63 characters or fewer"));
    }
    Ok(())
}

/// A name for a service created without one, as dockerd's `namesgenerator`.
fn generated_name(taken: &dyn Fn(&str) -> bool) -> String {
    const LEFT: &[&str] = &[
        "admiring",
        "brave",
        "calm",
        "dazzling",
        "eager",
        "focused",
        "gallant",
        "happy",
        "inspiring",
        "jolly",
        "keen",
        "loving",
        "modest",
        "nostalgic",
        "optimistic",
        "peaceful",
        "quirky",
        "relaxed",
        "serene",
        "trusting",
        "upbeat",
        "vibrant",
        "wonderful",
        "youthful",
        "zealous",
    ];
    const RIGHT: &[&str] = &[
        "albattani",
        "babbage",
        "curie",
        "darwin",
        "euclid",
        "fermat",
        "goldberg",
        "hopper",
        "hypatia",
        "johnson",
        "kepler",
        "lovelace",
        "meitner",
        "noether",
        "pasteur",
        "ritchie",
        "shannon",
        "thompson",
        "turing",
        "varahamihira",
        "wozniak",
        "yonath",
        "zhukovsky",
    ];
    let mut seed = [0u8; 8];
    let _ = getrandom::fill(&mut seed);
    let mut n = u64::from_le_bytes(seed);
    let mut attempt = 0u32;
    loop {
        let l = LEFT[(n % LEFT.len() as u64) as usize];
        let r = RIGHT[((n / 31) % RIGHT.len() as u64) as usize];
        let name = if attempt == 0 {
            format!("{l}_{r}")
        } else {
            format!("{l}_{r}{attempt}")
        };
        if !taken(&name) {
            return name;
        }
        attempt += 1;
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
}

/// Docker's image reference grammar: `[domain[:port]/]name[/name...][:tag][@digest]`, with
/// lowercase path components.
pub(crate) fn valid_reference(r: &str) -> bool {
    let (rest, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    if let Some(d) = digest {
        let ok = d.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty() && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !ok {
            return false;
        }
    }
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(t) = tag {
        let b = t.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if !ok {
            return false;
        }
    }
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let parts: Vec<&str> = name.split('/').collect();
    let is_domain =
        |p: &str| parts.len() > 1 && (p.contains('.') || p.contains(':') || p == "localhost");
    parts.iter().enumerate().all(|(i, p)| {
        if i == 0 && is_domain(p) {
            let (host, port) = p.split_once(':').unwrap_or((p, ""));
            return !host.is_empty()
                && host
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
                && port.bytes().all(|c| c.is_ascii_digit());
        }
        // [a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*
        let b = p.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
            && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
            && b.iter().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
            })
            && !p.contains("..")
            && !p.contains("___")
    })
}

/// swarmkit's `validateServiceSpec`, in its order.
pub(crate) fn validate_spec(spec: &ServiceSpec) -> Result<(), CoreError> {
    validate_service_name(&spec.name)?;
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
    if !valid_reference(&task.image) {
        return Err(invalid(format!(
            "ContainerSpec: {:?} is not a valid repository/tag",
            task.image
        )));
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
            if let Some(s) = st.service_by_name(key).filter(|s| s.spec.name == key) {
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
                        // Completed tasks count only for jobs, which lockbox does not run.
                        completed: 0,
                    }
                })
                .collect()
        })
    }

    pub(crate) async fn create_service(&self, mut spec: ServiceSpec) -> Result<String, CoreError> {
        if spec.name.is_empty() {
            spec.name = generated_name(&|n| self.store.read(|st| st.service_by_name(n).is_some()));
        }
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
                    return Err(CoreError::FailedPrecondition(format!(
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
        if !rollback {
            // A rollback restores the previous spec as it was, unchecked, as swarmkit does.
            validate_spec(&spec)?;
        }
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
            return Err(CoreError::Unimplemented(
                "service mode change is not allowed".into(),
            ));
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
            // Promotion and demotion change the Raft group (membership.rs).
            return self.change_role(&node, version, spec).await;
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

#[cfg(test)]
mod tests {
    use super::valid_reference;

    #[test]
    fn image_references() {
        for ok in [
            "host",
            "host:latest",
            "busybox:local",
            "library/busybox:1.36",
            "registry.example.com:5000/team/app:v1.2_3",
            "localhost/app",
            "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(valid_reference(ok), "{ok}");
        }
        for bad in [
            "UPPER",
            "app:",
            ":tag",
            "a//b",
            "app:bad tag",
            "-app",
            "app@sha256:xyz",
            "",
        ] {
            assert!(!valid_reference(bad), "{bad}");
        }
    }
}
