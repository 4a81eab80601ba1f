//! Live secret updates (beyond Swarm): a service that asks for it gets a new secret version
//! swapped into its running tasks' tmpfs (written beside the old file, renamed over it) and a
//! signal, instead of a rolling restart.
//!
//! The swap is one Raft write that re-points the service's template at the new secret and
//! gives the tasks running the old template the new one in place (so the orchestrator sees
//! nothing to replace); then the agent updates each running task of this node and signals it.
//! A task that cannot be updated in place is shut down, and the orchestrator replaces it with
//! one that starts with the new value: every task ends up with the new value either way.

use lockbox_types::{Command, Outcome, SecretRef, TaskChange, TaskSpec, TaskState};

use crate::executor::SecretMount;
use crate::manager::{Manager, now};
use crate::orchestrator::same_template;
use crate::{AuditEntry, AuditObject, CoreError};

/// The service label listing the secret targets that may be updated in place (`*` for all),
/// comma-separated.
pub const LIVE_TARGETS_LABEL: &str = "lockbox.live-update.targets";
/// The service label naming the signal sent after a live update (default `SIGHUP`; `none`
/// sends nothing).
pub const LIVE_SIGNAL_LABEL: &str = "lockbox.live-update.signal";

/// What a swap did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwapReport {
    /// The service.
    pub service_id: String,
    /// The secret now used.
    pub secret_id: String,
    /// Tasks updated in place (and signalled).
    pub updated: Vec<String>,
    /// Tasks that could not be: shut down to be replaced, with why.
    pub replaced: Vec<(String, String)>,
    /// The signal sent, if any.
    pub signal: Option<String>,
}

fn key_of(m: &serde_json::Map<String, serde_json::Value>, key: &str) -> Option<String> {
    m.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned()
}

/// In a Docker `TaskTemplate` object: every entry of `ContainerSpec.Secrets` whose `SecretID`
/// is `from` now names `to`.
fn rewrite_template(tt: &mut serde_json::Value, from: &str, to_id: &str, to_name: &str) {
    let Some(tt) = tt.as_object_mut() else { return };
    let Some(ck) = key_of(tt, "ContainerSpec") else {
        return;
    };
    let Some(cs) = tt.get_mut(&ck).and_then(|c| c.as_object_mut()) else {
        return;
    };
    let Some(sk) = key_of(cs, "Secrets") else {
        return;
    };
    let Some(list) = cs.get_mut(&sk).and_then(|s| s.as_array_mut()) else {
        return;
    };
    for item in list.iter_mut().filter_map(|i| i.as_object_mut()) {
        let Some(id_key) = key_of(item, "SecretID") else {
            continue;
        };
        if item.get(&id_key).and_then(|x| x.as_str()) == Some(from) {
            item.insert(id_key, serde_json::Value::String(to_id.to_owned()));
            let name_key = key_of(item, "SecretName").unwrap_or_else(|| "SecretName".into());
            item.insert(name_key, serde_json::Value::String(to_name.to_owned()));
        }
    }
}

/// [`rewrite_template`] on a `TaskTemplate` JSON text.
fn rewrite_raw(raw: &str, from: &str, to_id: &str, to_name: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(raw) else {
        return raw.to_owned();
    };
    rewrite_template(&mut v, from, to_id, to_name);
    serde_json::to_string(&v).unwrap_or_else(|_| raw.to_owned())
}

/// [`rewrite_template`] on the `TaskTemplate` of a `ServiceSpec` JSON text.
fn rewrite_service_raw(raw: &str, from: &str, to_id: &str, to_name: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(raw) else {
        return raw.to_owned();
    };
    if let Some(obj) = v.as_object_mut()
        && let Some(k) = key_of(obj, "TaskTemplate")
        && let Some(tt) = obj.get_mut(&k)
    {
        rewrite_template(tt, from, to_id, to_name);
    }
    serde_json::to_string(&v).unwrap_or_else(|_| raw.to_owned())
}

/// Whether the service's labels allow a live update of `target`.
pub fn allows_live_update(
    labels: &std::collections::BTreeMap<String, String>,
    target: &str,
) -> bool {
    labels
        .get(LIVE_TARGETS_LABEL)
        .is_some_and(|v| v.split(',').map(str::trim).any(|t| t == "*" || t == target))
}

impl Manager {
    /// Swaps secret `from` for `to` in service `service` without restarting its tasks; see
    /// the module docs. The service must allow a live update of every target that `from` is
    /// mounted at ([`LIVE_TARGETS_LABEL`]).
    pub async fn swap_service_secret(
        &self,
        service: &str,
        from: &str,
        to: &str,
    ) -> Result<SwapReport, CoreError> {
        let a = self.active().await?;
        let svc = a.resolve_service(service)?;
        let old = a.resolve_secret(from)?;
        let new = a.resolve_secret(to)?;
        let refs: Vec<&SecretRef> = svc
            .spec
            .task
            .secrets
            .iter()
            .filter(|r| r.secret_id == old.id)
            .collect();
        if refs.is_empty() {
            return Err(CoreError::InvalidParameter(format!(
                "service {} does not use secret {}",
                svc.spec.name, old.spec.name
            )));
        }
        for r in &refs {
            let target = r.file.as_ref().map_or("", |f| f.name.as_str());
            if !allows_live_update(&svc.spec.labels, target) {
                return Err(CoreError::FailedPrecondition(format!(
                    "service {} does not allow a live update of {target}: set the label {LIVE_TARGETS_LABEL}={target} (or *) on it, or rotate with a rolling update",
                    svc.spec.name
                )));
            }
        }
        let signal = match svc.spec.labels.get(LIVE_SIGNAL_LABEL).map(String::as_str) {
            None | Some("") => Some("SIGHUP".to_owned()),
            Some(s) if s.eq_ignore_ascii_case("none") => None,
            Some(s) => Some(s.to_owned()),
        };
        let mut template: TaskSpec = svc.spec.task.clone();
        for r in &mut template.secrets {
            if r.secret_id == old.id {
                r.secret_id = new.id.clone();
                r.secret_name = new.spec.name.clone();
            }
        }
        template.raw = rewrite_raw(&template.raw, &old.id, &new.id, &new.spec.name);
        let tasks: Vec<(String, String, TaskState)> = a.store.read(|st| {
            st.tasks_of(&svc.id)
                .filter(|t| {
                    t.status.state <= TaskState::Running
                        && t.desired_state <= TaskState::Running
                        && same_template(&t.spec, &svc.spec.task)
                })
                .map(|t| (t.id.clone(), t.node_id.clone(), t.status.state))
                .collect()
        });
        let cmd = Command::SwapTemplate {
            service_id: svc.id.clone(),
            expected_version: svc.meta.version,
            task: Box::new(template.clone()),
            service_raw: rewrite_service_raw(&svc.spec.raw, &old.id, &new.id, &new.spec.name),
            tasks: tasks.iter().map(|t| t.0.clone()).collect(),
            now: now(),
        };
        match a.store.propose(cmd).await? {
            Outcome::Applied { .. } => {}
            Outcome::Rejected(r) => return Err(r.into()),
        }
        a.kick();
        let mut report = SwapReport {
            service_id: svc.id.clone(),
            secret_id: new.id.clone(),
            signal: signal.clone(),
            ..SwapReport::default()
        };
        let fingerprint = a.value_fingerprint(&new.spec.data);
        let mut to_replace = Vec::new();
        for (task_id, node_id, state) in tasks {
            if node_id != a.node_id || state != TaskState::Running {
                // Not started yet: it starts with the new template, and so the new value.
                continue;
            }
            let mut mounts = Vec::new();
            for r in template.secrets.iter().filter(|r| r.secret_id == new.id) {
                let Some(f) = &r.file else { continue };
                let (Ok(uid), Ok(gid)) = (f.uid.parse::<u32>(), f.gid.parse::<u32>()) else {
                    continue;
                };
                mounts.push(SecretMount {
                    target: f.name.clone(),
                    data: new.spec.data.clone(),
                    uid,
                    gid,
                    mode: f.mode,
                });
                let mut details = std::collections::BTreeMap::new();
                details.insert("target".to_owned(), f.name.clone());
                details.insert("node".to_owned(), node_id.clone());
                details.insert("live".to_owned(), "true".to_owned());
                if let Some(fp) = &fingerprint {
                    details.insert("value_hmac".to_owned(), fp.clone());
                }
                self.audit(AuditEntry {
                    actor: "daemon".into(),
                    source: "agent".into(),
                    action: "secret.deliver".into(),
                    objects: vec![
                        AuditObject::new("secret", new.id.clone(), new.spec.name.clone()),
                        AuditObject::new("task", task_id.clone(), String::new()),
                        AuditObject::new("service", svc.id.clone(), svc.spec.name.clone()),
                    ],
                    details,
                    ..AuditEntry::default()
                })
                .await?;
            }
            match a.agent.live_update(&task_id, mounts, signal.clone()).await {
                Ok(()) => report.updated.push(task_id),
                Err(e) => {
                    tracing::warn!(task = %task_id, error = %e, "live update failed; the task is replaced");
                    to_replace.push(task_id.clone());
                    report.replaced.push((task_id, e));
                }
            }
        }
        if !to_replace.is_empty() {
            let changes = to_replace
                .into_iter()
                .map(|id| TaskChange::Desired {
                    id,
                    state: TaskState::Shutdown,
                })
                .collect();
            a.store
                .propose(Command::Tasks {
                    changes,
                    now: now(),
                })
                .await?;
            a.kick();
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_rewrite_replaces_only_the_swapped_reference() {
        let raw = r#"{"ContainerSpec":{"Image":"host","Secrets":[{"File":{"Name":"db"},"SecretID":"old","SecretName":"db-v1"},{"SecretID":"other","SecretName":"x"}]}}"#;
        let out = rewrite_raw(raw, "old", "new", "db-v2");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let s = &v["ContainerSpec"]["Secrets"];
        assert_eq!(s[0]["SecretID"], "new");
        assert_eq!(s[0]["SecretName"], "db-v2");
        assert_eq!(s[0]["File"]["Name"], "db");
        assert_eq!(s[1]["SecretID"], "other");
        // Keys in another case, as Go clients may send them.
        let raw = r#"{"containerspec":{"secrets":[{"secretid":"old","secretname":"a"}]}}"#;
        let v: serde_json::Value =
            serde_json::from_str(&rewrite_raw(raw, "old", "n", "b")).unwrap();
        assert_eq!(v["containerspec"]["secrets"][0]["secretid"], "n");
        assert_eq!(v["containerspec"]["secrets"][0]["secretname"], "b");
    }

    #[test]
    fn service_raw_rewrite_reaches_the_template() {
        let raw = r#"{"Name":"s","TaskTemplate":{"ContainerSpec":{"Secrets":[{"SecretID":"old","SecretName":"a"}]}}}"#;
        let v: serde_json::Value =
            serde_json::from_str(&rewrite_service_raw(raw, "old", "n", "b")).unwrap();
        assert_eq!(
            v["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretID"],
            "n"
        );
        assert_eq!(v["Name"], "s");
    }

    #[test]
    fn labels_allow_targets() {
        let l: std::collections::BTreeMap<String, String> =
            [(LIVE_TARGETS_LABEL.to_owned(), "db, api".to_owned())].into();
        assert!(allows_live_update(&l, "db"));
        assert!(allows_live_update(&l, "api"));
        assert!(!allows_live_update(&l, "other"));
        let all: std::collections::BTreeMap<String, String> =
            [(LIVE_TARGETS_LABEL.to_owned(), "*".to_owned())].into();
        assert!(allows_live_update(&all, "x"));
        assert!(!allows_live_update(&Default::default(), "x"));
    }
}
