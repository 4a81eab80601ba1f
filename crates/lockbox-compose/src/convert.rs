//! A project as Engine API bodies, the way `docker stack deploy` builds them
//! (docker/cli `cli/compose/convert`): objects are named `NAMESPACE_key` unless the file gives
//! a `name:`, and labelled `com.docker.stack.namespace=NAMESPACE`, so that `docker stack` and
//! `lockbox stack` see the same stacks.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::model::{Compose, SecretDef, SecretSource, Service, UpdateConfig};

/// The label that marks a stack's objects.
pub const LABEL_NAMESPACE: &str = "com.docker.stack.namespace";
/// The service label holding the image as written in the file.
pub const LABEL_IMAGE: &str = "com.docker.stack.image";
/// The default network every service without `networks:` joins.
pub const DEFAULT_NETWORK: &str = "default";
/// The driver of a stack network that names none.
pub const DEFAULT_NETWORK_DRIVER: &str = "overlay";

/// `NAMESPACE_name`.
pub fn scope(namespace: &str, name: &str) -> String {
    format!("{namespace}_{name}")
}

/// `labels` plus the namespace label.
pub fn stack_labels(namespace: &str, labels: &BTreeMap<String, String>) -> Map<String, Value> {
    let mut m: BTreeMap<String, String> = labels.clone();
    m.insert(LABEL_NAMESPACE.into(), namespace.into());
    m.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
}

/// The name of the secret object for key `key`: `name:` if given, else (external) the key,
/// else `NAMESPACE_key`.
pub fn secret_name(namespace: &str, key: &str, def: &SecretDef) -> String {
    match (&def.name, &def.source) {
        (Some(n), _) => n.clone(),
        (None, SecretSource::External) => key.to_owned(),
        (None, _) => scope(namespace, key),
    }
}

/// A `SecretSpec` for a stack secret, without `Data` (the caller adds the value).
pub fn secret_spec(namespace: &str, name: &str, def: &SecretDef) -> Value {
    json!({
        "Name": name,
        "Labels": stack_labels(namespace, &def.labels),
    })
}

/// The networks a deploy needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkPlan {
    /// `POST /networks/create` bodies, by network name.
    pub create: BTreeMap<String, Value>,
    /// Names of `external: true` networks, which must exist.
    pub external: Vec<String>,
}

/// docker's `convert.Networks` over the networks the services use.
pub fn networks(namespace: &str, c: &Compose) -> NetworkPlan {
    let mut used: Vec<&str> = Vec::new();
    for s in c.services.values() {
        if s.networks.is_empty() {
            used.push(DEFAULT_NETWORK);
        }
        used.extend(s.networks.keys().map(String::as_str));
    }
    used.sort_unstable();
    used.dedup();
    let mut plan = NetworkPlan::default();
    for key in used {
        let def = c.networks.get(key).cloned().unwrap_or_default();
        if def.external {
            plan.external
                .push(def.name.clone().unwrap_or_else(|| key.to_owned()));
            continue;
        }
        let name = def.name.clone().unwrap_or_else(|| scope(namespace, key));
        let driver = def
            .driver
            .clone()
            .unwrap_or_else(|| DEFAULT_NETWORK_DRIVER.to_owned());
        plan.create.insert(
            name.clone(),
            json!({
                "Name": name,
                "Driver": driver,
                "Scope": "",
                "Internal": def.internal,
                "Attachable": def.attachable,
                "Ingress": false,
                "ConfigOnly": false,
                "Options": def.driver_opts,
                "Labels": stack_labels(namespace, &def.labels),
            }),
        );
    }
    plan
}

/// A service's reference to a secret object, before its ID is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The secret object's name.
    pub secret_name: String,
    /// `File.Name`.
    pub target: String,
    /// `File.UID`.
    pub uid: String,
    /// `File.GID`.
    pub gid: String,
    /// `File.Mode`.
    pub mode: u32,
}

/// docker's `convertFileObject` for each of the service's secrets; `names` gives the object
/// name chosen for each top-level key (by default [`secret_name`]). Sorted by secret name,
/// as docker sorts them.
pub fn secret_refs(
    namespace: &str,
    s: &Service,
    c: &Compose,
    names: &BTreeMap<String, String>,
) -> Vec<SecretRef> {
    let mut refs: Vec<SecretRef> =
        s.secrets
            .iter()
            .map(|r| {
                let name = names.get(&r.source).cloned().unwrap_or_else(|| {
                    match c.secrets.get(&r.source) {
                        Some(def) => secret_name(namespace, &r.source, def),
                        None => scope(namespace, &r.source),
                    }
                });
                SecretRef {
                    secret_name: name,
                    target: r.target.clone().unwrap_or_else(|| r.source.clone()),
                    uid: r.uid.clone().unwrap_or_else(|| "0".into()),
                    gid: r.gid.clone().unwrap_or_else(|| "0".into()),
                    mode: r.mode.unwrap_or(0o444),
                }
            })
            .collect();
    refs.sort_by(|a, b| a.secret_name.cmp(&b.secret_name));
    refs
}

fn update_config(u: &Option<UpdateConfig>) -> Value {
    match u {
        None => Value::Null,
        Some(u) => json!({
            "Parallelism": u.parallelism.unwrap_or(1),
            "Delay": u.delay.unwrap_or(0),
            "FailureAction": u.failure_action.clone().unwrap_or_default(),
            "Monitor": u.monitor.unwrap_or(0),
            "MaxFailureRatio": u.max_failure_ratio.unwrap_or(0.0),
            "Order": u.order.clone().unwrap_or_default(),
        }),
    }
}

/// The environment as `KEY=VALUE` (or a bare `KEY` for one without a value), sorted.
pub fn environment(s: &Service) -> Vec<String> {
    let mut env: Vec<String> = s
        .environment
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect();
    env.sort();
    env
}

/// docker's `convert.Service`: the `ServiceSpec` of service `name`, without its secret
/// references (`ContainerSpec.Secrets` is left for the caller, who knows the IDs).
pub fn service_spec(namespace: &str, name: &str, s: &Service, c: &Compose) -> Value {
    let image = s.image.clone().unwrap_or_default();
    let mut labels = stack_labels(namespace, &s.deploy.labels);
    labels.insert(LABEL_IMAGE.into(), Value::String(image.clone()));
    let d = &s.deploy;
    let mode = match d.mode.as_deref() {
        Some("global") => json!({ "Global": {} }),
        Some("global-job") => json!({ "GlobalJob": {} }),
        Some("replicated-job") => json!({
            "ReplicatedJob": { "MaxConcurrent": d.replicas, "TotalCompletions": d.replicas }
        }),
        // docker leaves a missing `replicas` out and the daemon then runs 1; say so, so that a
        // daemon that does not fill the default in still reports it.
        _ => json!({ "Replicated": { "Replicas": d.replicas.unwrap_or(1) } }),
    };
    let restart = match &d.restart_policy {
        None => Value::Null,
        Some(r) => json!({
            "Condition": r.condition.clone().unwrap_or_default(),
            "Delay": r.delay,
            "MaxAttempts": r.max_attempts,
            "Window": r.window,
        }),
    };
    let mut networks: Vec<Value> = if s.networks.is_empty() {
        vec![(DEFAULT_NETWORK.to_owned(), Vec::new())]
    } else {
        s.networks
            .iter()
            .map(|(k, a)| (k.clone(), a.clone()))
            .collect()
    }
    .into_iter()
    .map(|(key, mut aliases)| {
        let target = c
            .networks
            .get(&key)
            .and_then(|n| n.name.clone())
            .unwrap_or_else(|| scope(namespace, &key));
        aliases.push(name.to_owned());
        json!({ "Target": target, "Aliases": aliases })
    })
    .collect();
    networks.sort_by(|a, b| a["Target"].as_str().cmp(&b["Target"].as_str()));
    json!({
        "Name": scope(namespace, name),
        "Labels": labels,
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": image,
                "Labels": stack_labels(namespace, &s.labels),
                "Command": s.entrypoint,
                "Args": s.command,
                "Hostname": s.hostname.clone().unwrap_or_default(),
                "Env": environment(s),
                "Dir": s.working_dir.clone().unwrap_or_default(),
                "User": s.user.clone().unwrap_or_default(),
                "StopGracePeriod": s.stop_grace_period,
                "StopSignal": s.stop_signal.clone().unwrap_or_default(),
                "TTY": s.tty.unwrap_or(false),
                "ReadOnly": s.read_only.unwrap_or(false),
                "Init": s.init,
                "Privileges": { "CredentialSpec": null, "SELinuxContext": null },
            },
            "Resources": {},
            "RestartPolicy": restart,
            "Placement": { "Constraints": d.constraints },
            "Networks": networks,
        },
        "Mode": mode,
        "UpdateConfig": update_config(&d.update_config),
        "RollbackConfig": update_config(&d.rollback_config),
        "EndpointSpec": { "Mode": d.endpoint_mode.clone().unwrap_or_default().to_lowercase() },
    })
}

/// `SecretReference`s (`{File, SecretID, SecretName}`) for `refs`, given each secret name's ID.
pub fn secret_references(refs: &[SecretRef], ids: &BTreeMap<String, String>) -> Vec<Value> {
    refs.iter()
        .map(|r| {
            json!({
                "File": { "Name": r.target, "UID": r.uid, "GID": r.gid, "Mode": r.mode },
                "SecretID": ids.get(&r.secret_name).cloned().unwrap_or_default(),
                "SecretName": r.secret_name,
            })
        })
        .collect()
}
