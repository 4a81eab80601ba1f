//! Secret operations: validation as swarmkit does it, name/ID resolution as dockerd does it,
//! and list filters. Values go in; only metadata ever comes out.

use lockbox_crypto::SecretBytes;
use lockbox_types::{
    Command, Driver, Labels, MAX_SECRET_SIZE, Meta, Outcome, SUPERSEDED_BY_LABEL, Secret,
    SecretSpec, validate_name,
};

use crate::manager::Active;
use crate::{CoreError, Event};

/// A secret as clients may see it: everything but the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    /// ID.
    pub id: String,
    /// Version and times.
    pub meta: Meta,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Secret driver.
    pub driver: Option<Driver>,
    /// Templating driver.
    pub templating: Option<Driver>,
}

impl From<&Secret> for SecretInfo {
    fn from(s: &Secret) -> Self {
        SecretInfo {
            id: s.id.clone(),
            meta: s.meta.clone(),
            name: s.spec.name.clone(),
            labels: s.spec.labels.clone(),
            driver: s.spec.driver.as_deref().cloned(),
            templating: s.spec.templating.as_deref().cloned(),
        }
    }
}

/// A secret's metadata borrowed from the state, as [`SecretInfo`] holds it: everything but
/// the value. [`crate::Manager::visit_secrets`] hands these out under the state's read lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretView<'a> {
    /// ID.
    pub id: &'a str,
    /// Version and times.
    pub meta: &'a Meta,
    /// Name.
    pub name: &'a str,
    /// Labels.
    pub labels: &'a Labels,
    /// Secret driver.
    pub driver: Option<&'a Driver>,
    /// Templating driver.
    pub templating: Option<&'a Driver>,
}

impl<'a> From<&'a Secret> for SecretView<'a> {
    fn from(s: &'a Secret) -> Self {
        SecretView {
            id: &s.id,
            meta: &s.meta,
            name: &s.spec.name,
            labels: &s.spec.labels,
            driver: s.spec.driver.as_deref(),
            templating: s.spec.templating.as_deref(),
        }
    }
}

impl<'a> From<&'a SecretInfo> for SecretView<'a> {
    fn from(s: &'a SecretInfo) -> Self {
        SecretView {
            id: &s.id,
            meta: &s.meta,
            name: &s.name,
            labels: &s.labels,
            driver: s.driver.as_ref(),
            templating: s.templating.as_ref(),
        }
    }
}

/// Secrets beyond which [`crate::Manager::visit_secrets`] runs on the blocking pool.
const VISIT_INLINE_MAX: usize = 2_000;

impl crate::Manager {
    /// Calls `f` with the secrets `filter` selects, in ID order, under the state's read lock
    /// (one consistent view; writes wait until `f` returns, reads do not). For `GET /secrets`:
    /// a list of tens of thousands of secrets copied out as [`SecretInfo`]s first took about
    /// 850 bytes a secret (a label map is a 544-byte node), which the allocator kept as
    /// resident memory for seconds after the answer.
    ///
    /// With more than [`VISIT_INLINE_MAX`] secrets in the store, `f` runs on the blocking
    /// pool: serializing 40,000 secrets takes ~30 ms, which would hold up every other request
    /// of an API thread (the daemon runs one per core but the Raft thread's).
    pub async fn visit_secrets<R: Send + 'static>(
        &self,
        filter: SecretFilter,
        f: impl FnOnce(&mut dyn Iterator<Item = SecretView<'_>>) -> R + Send + 'static,
    ) -> Result<R, CoreError> {
        let a = self.active().await?;
        let large = a.store.read(|st| st.secrets.len() > VISIT_INLINE_MAX);
        let visit = move || {
            a.store.read(|st| {
                let mut it = st
                    .secrets
                    .values()
                    .filter(|s| filter.matches(s))
                    .map(SecretView::from);
                f(&mut it)
            })
        };
        if large {
            tokio::task::spawn_blocking(visit)
                .await
                .map_err(|e| CoreError::Internal(e.to_string()))
        } else {
            Ok(visit())
        }
    }
}

/// What a client sends to create or update a secret.
#[derive(Debug, Clone, Default)]
pub struct SecretInput {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// The value; `None` when the request carried no `Data`.
    pub data: Option<SecretBytes>,
    /// Secret driver.
    pub driver: Option<Driver>,
    /// Templating driver.
    pub templating: Option<Driver>,
}

/// `GET /secrets` filters, already parsed. Names, name prefixes and ID prefixes are ORed;
/// labels are then ANDed.
#[derive(Debug, Clone, Default)]
pub struct SecretFilter {
    /// Exact names, case-insensitive.
    pub names: Vec<String>,
    /// Name prefixes, case-insensitive.
    pub name_prefixes: Vec<String>,
    /// ID prefixes.
    pub id_prefixes: Vec<String>,
    /// `key` (present) or `key=value`.
    pub labels: Vec<(String, Option<String>)>,
}

impl SecretFilter {
    fn matches(&self, s: &Secret) -> bool {
        let any_name = !self.names.is_empty()
            || !self.name_prefixes.is_empty()
            || !self.id_prefixes.is_empty();
        if any_name {
            let lower = s.spec.name.to_lowercase();
            let hit = self.names.iter().any(|n| n.to_lowercase() == lower)
                || self
                    .name_prefixes
                    .iter()
                    .any(|p| lower.starts_with(&p.to_lowercase()))
                || self
                    .id_prefixes
                    .iter()
                    .any(|p| s.id.starts_with(p.as_str()));
            if !hit {
                return false;
            }
        }
        self.labels
            .iter()
            .all(|(k, v)| match (s.spec.labels.get(k), v) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(actual), Some(want)) => want.is_empty() || actual == want,
            })
    }
}

/// How long a look at the data directory's free space stands in for the next ones.
const SPACE_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// Free space beyond what a write needs that lets later writes skip the look (see
/// [`Active::check_space_often`]): more than creates at any measured rate fill in
/// [`SPACE_RECHECK`].
const SPACE_HEADROOM: u64 = 256 * 1024 * 1024;

/// The last look at a data directory's free space that found [`SPACE_HEADROOM`] to spare.
static SPACE_SEEN: std::sync::Mutex<Option<(std::path::PathBuf, std::time::Instant)>> =
    std::sync::Mutex::new(None);

impl Active {
    /// [`Active::check_space`] (one `statvfs`) for a create, skipped while a look less than
    /// [`SPACE_RECHECK`] ago found the directory far from full: at thousands of creates a
    /// second the system call was a few percent of a create's CPU. Near full, every write
    /// still looks, and refuses as before.
    pub(crate) fn check_space_often(&self, payload: usize) -> Result<(), CoreError> {
        if let Ok(seen) = SPACE_SEEN.lock()
            && let Some((dir, at)) = seen.as_ref()
            && *dir == self.data_dir
            && at.elapsed() < SPACE_RECHECK
            && payload < 1024 * 1024
        {
            return Ok(());
        }
        self.check_space(payload)?;
        let needed = 1024 * 1024 + 4 * payload as u64;
        let roomy = rustix::fs::statvfs(&self.data_dir)
            .is_ok_and(|st| st.f_bavail.saturating_mul(st.f_frsize) >= needed + SPACE_HEADROOM);
        if let Ok(mut seen) = SPACE_SEEN.lock() {
            *seen = roomy.then(|| (self.data_dir.clone(), std::time::Instant::now()));
        }
        Ok(())
    }
}

/// The label docker's stack commands put on every object of a stack.
const STACK_NAMESPACE_LABEL: &str = "com.docker.stack.namespace";
/// The label of a secret that belongs to a lockbox version family (see docs/secrets.md).
const FAMILY_LABEL: &str = "lockbox.family";

/// The name a superseded secret takes: `<name>.superseded-<ID prefix>`, within the 64
/// characters names may have.
fn retired_name(name: &str, id: &str) -> String {
    let suffix = format!(".superseded-{}", &id[..id.len().min(12)]);
    let keep = lockbox_types::MAX_NAME_LEN.saturating_sub(suffix.len());
    let mut base: String = name.chars().take(keep).collect();
    // Names must end with an alphanumeric before the suffix's dot; trim what truncation exposed.
    while base.ends_with(['-', '_', '.']) {
        base.pop();
    }
    format!("{base}{suffix}")
}

/// A new secret object (fresh ID) from a validated request.
fn new_secret(input: SecretInput, now: lockbox_types::Timestamp) -> Secret {
    Secret {
        id: lockbox_types::new_id(),
        meta: Meta {
            version: 0,
            created_at: now,
            updated_at: now,
        },
        spec: SecretSpec {
            name: input.name,
            labels: input.labels,
            data: input.data.unwrap_or_default(),
            driver: input.driver.map(Box::new),
            templating: input.templating.map(Box::new),
        },
    }
}

/// Validates a create request as swarmkit's `validateSecretSpec`.
pub(crate) fn validate_create(input: &SecretInput) -> Result<(), CoreError> {
    validate_name(&input.name).map_err(|e| CoreError::InvalidArgument(e.to_string()))?;
    if let Some(driver) = &input.driver {
        if driver.name.is_empty() {
            return Err(CoreError::InvalidArgument(
                "secret driver must have a name".into(),
            ));
        }
        // lockbox has no secret-driver plugins: answer as swarmkit does for a missing plugin.
        return Err(CoreError::Unknown(format!(
            "plugin {:?} not found",
            driver.name
        )));
    }
    let len = input.data.as_ref().map_or(0, SecretBytes::len);
    if len == 0 || len >= MAX_SECRET_SIZE {
        return Err(CoreError::InvalidArgument(format!(
            "secret data must be larger than 0 and less than {MAX_SECRET_SIZE} bytes"
        )));
    }
    Ok(())
}

impl Active {
    /// Resolves `key` as dockerd does: full ID, then exact name (case-insensitive), then a
    /// unique ID prefix.
    pub(crate) fn resolve_secret(&self, key: &str) -> Result<Secret, CoreError> {
        self.store.read(|st| {
            if let Some(s) = st.secrets.get(key) {
                return Ok(s.clone());
            }
            if let Some(s) = st.secret_by_name(key) {
                return Ok(s.clone());
            }
            let matches: Vec<&Secret> = if key.is_empty() {
                Vec::new()
            } else {
                st.secrets
                    .range(key.to_owned()..)
                    .take_while(|(id, _)| id.starts_with(key))
                    .map(|(_, s)| s)
                    .collect()
            };
            match matches.len() {
                0 => Err(CoreError::NotFound(format!("secret {key} not found"))),
                1 => Ok(matches[0].clone()),
                n => Err(CoreError::Ambiguous(format!(
                    "secret {key} is ambiguous ({n} matches found)"
                ))),
            }
        })
    }

    pub(crate) fn list_secrets(&self, filter: &SecretFilter) -> Vec<SecretInfo> {
        self.store.read(|st| {
            st.secrets
                .values()
                .filter(|s| filter.matches(s))
                .map(SecretInfo::from)
                .collect()
        })
    }

    pub(crate) async fn create_secret(&self, input: SecretInput) -> Result<String, CoreError> {
        validate_create(&input)?;
        self.check_space_often(input.data.as_ref().map_or(0, SecretBytes::len))?;
        let now = crate::manager::now();
        let secret = new_secret(input, now);
        let id = secret.id.clone();
        let name = secret.spec.name.clone();
        match self
            .store
            .propose(Command::CreateSecret {
                secret: Box::new(secret),
            })
            .await?
        {
            Outcome::Applied { .. } => {
                self.emit(Event {
                    kind: "secret",
                    action: "create",
                    id: id.clone(),
                    name,
                    time: now,
                });
                Ok(id)
            }
            Outcome::Rejected(r) => Err(r.into()),
        }
    }

    pub(crate) async fn update_secret(
        &self,
        key: &str,
        version: u64,
        input: SecretInput,
    ) -> Result<(), CoreError> {
        let current = self.resolve_secret(key)?;
        let same_data = input
            .data
            .as_ref()
            .is_none_or(|d| current.spec.data.ct_eq(d.expose()));
        if current.spec.name != input.name {
            return Err(CoreError::InvalidArgument(
                "only updates to Labels are allowed".into(),
            ));
        }
        if !same_data {
            // Swarm refuses new data, so a redeployed stack whose `file:` secret changed fails.
            // For stack-managed secrets lockbox swaps in a new object under the same name: the
            // stack's services are then updated to its new ID by the same deploy and roll.
            // Secrets in a lockbox version family (`lockbox stack deploy`, `secret rotate`)
            // get a new named version from the CLI instead, and keep Swarm's answer.
            let stack_managed = current.spec.labels.contains_key(STACK_NAMESPACE_LABEL)
                && input.labels.contains_key(STACK_NAMESPACE_LABEL)
                && !current.spec.labels.contains_key(FAMILY_LABEL)
                && !input.labels.contains_key(FAMILY_LABEL);
            if !stack_managed || current.spec.labels.contains_key(SUPERSEDED_BY_LABEL) {
                return Err(CoreError::InvalidArgument(
                    "only updates to Labels are allowed".into(),
                ));
            }
            return self.supersede_secret(current, version, input).await;
        }
        self.check_space(0)?;
        let now = crate::manager::now();
        let cmd = Command::UpdateSecretLabels {
            id: current.id.clone(),
            expected_version: version,
            labels: input.labels,
            now,
        };
        match self.store.propose(cmd).await? {
            Outcome::Applied { .. } => {
                self.emit(Event {
                    kind: "secret",
                    action: "update",
                    id: current.id,
                    name: current.spec.name,
                    time: now,
                });
                Ok(())
            }
            Outcome::Rejected(r) => Err(r.into()),
        }
    }

    async fn supersede_secret(
        &self,
        current: Secret,
        version: u64,
        input: SecretInput,
    ) -> Result<(), CoreError> {
        let mut replacement = SecretInput {
            name: current.spec.name.clone(),
            ..input
        };
        replacement.driver = current.spec.driver.as_deref().cloned();
        replacement.templating = current.spec.templating.as_deref().cloned();
        validate_create(&replacement)?;
        self.check_space(replacement.data.as_ref().map_or(0, SecretBytes::len))?;
        let now = crate::manager::now();
        let new = new_secret(replacement, now);
        let new_id = new.id.clone();
        let retired_name = retired_name(&current.spec.name, &current.id);
        let cmd = Command::SupersedeSecret {
            id: current.id.clone(),
            expected_version: version,
            retired_name: retired_name.clone(),
            replacement: Box::new(new),
            now,
        };
        match self.store.propose(cmd).await? {
            Outcome::Applied { .. } => {
                tracing::info!(secret = %current.id, replacement = %new_id, "stack secret superseded by a new object");
                self.emit(Event {
                    kind: "secret",
                    action: "update",
                    id: current.id,
                    name: retired_name,
                    time: now,
                });
                self.emit(Event {
                    kind: "secret",
                    action: "create",
                    id: new_id,
                    name: current.spec.name,
                    time: now,
                });
                Ok(())
            }
            Outcome::Rejected(r) => Err(r.into()),
        }
    }

    /// Superseded secrets that nothing uses any more: no service spec and no task that may
    /// still start or run. (A service's previous spec does not keep one: `service rollback`
    /// after it was collected fails with "secret not found", as after `secret rm` in Swarm.)
    pub(crate) fn unused_superseded_secrets(&self) -> Vec<String> {
        self.store.read(|st| {
            let superseded: Vec<&Secret> = st
                .secrets
                .values()
                .filter(|s| s.spec.labels.contains_key(SUPERSEDED_BY_LABEL))
                .collect();
            if superseded.is_empty() {
                return Vec::new();
            }
            superseded
                .into_iter()
                .filter(|s| {
                    let in_service = st
                        .services
                        .values()
                        .any(|svc| svc.spec.task.secrets.iter().any(|r| r.secret_id == s.id));
                    let in_task = st.tasks.values().any(|t| {
                        t.status.state <= lockbox_types::TaskState::Running
                            && t.spec.secrets.iter().any(|r| r.secret_id == s.id)
                    });
                    !in_service && !in_task
                })
                .map(|s| s.id.clone())
                .collect()
        })
    }

    pub(crate) async fn remove_secret(&self, key: &str) -> Result<(), CoreError> {
        let current = self.resolve_secret(key)?;
        match self
            .store
            .propose(Command::RemoveSecret {
                id: current.id.clone(),
            })
            .await?
        {
            Outcome::Applied { .. } => {
                self.emit(Event {
                    kind: "secret",
                    action: "remove",
                    id: current.id,
                    name: current.spec.name,
                    time: crate::manager::now(),
                });
                Ok(())
            }
            Outcome::Rejected(r) => Err(r.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, len: usize) -> SecretInput {
        SecretInput {
            name: name.into(),
            data: Some(SecretBytes::new(vec![b'x'; len])),
            ..Default::default()
        }
    }

    #[test]
    fn retired_names_are_valid_names() {
        let id = lockbox_types::new_id();
        for name in ["app_db", &"x".repeat(64), &format!("{}-y", "a".repeat(50))] {
            let r = retired_name(name, &id);
            assert!(validate_name(&r).is_ok(), "{r}");
            assert!(r.len() <= lockbox_types::MAX_NAME_LEN, "{r}");
            assert!(r.contains(&id[..12]), "{r}");
        }
        assert_eq!(
            retired_name("app_db", "abcdefghijklmnopqrstuvwxy"),
            "app_db.superseded-abcdefghijkl"
        );
    }

    #[test]
    fn create_validation_order_and_texts() {
        let e = validate_create(&input("", 0)).unwrap_err();
        assert_eq!(e.to_string(), "name must be provided");
        let e = validate_create(&input("-x", 5)).unwrap_err();
        assert!(e.to_string().starts_with("invalid name, only 64"), "{e}");
        let e = validate_create(&input("ok", 0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "secret data must be larger than 0 and less than 512000 bytes"
        );
        assert!(validate_create(&input("ok", 511_999)).is_ok());
        assert!(validate_create(&input("ok", 512_000)).is_err());
        let mut d = input("ok", 0);
        d.driver = Some(Driver::default());
        assert_eq!(
            validate_create(&d).unwrap_err().to_string(),
            "secret driver must have a name"
        );
    }
}
