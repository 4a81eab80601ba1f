//! `stack config`: the resolved (merged, interpolated) compose file as YAML.

use serde_json::{Map, Value, json};

use crate::Project;
use crate::model::{SecretSource, Service, UpdateConfig};
use crate::words::format_duration;

fn put(m: &mut Map<String, Value>, k: &str, v: Value) {
    if !(v.is_null()
        || v.as_object().is_some_and(Map::is_empty)
        || v.as_array().is_some_and(Vec::is_empty))
    {
        m.insert(k.to_owned(), v);
    }
}

fn opt<T: Into<Value> + Clone>(v: &Option<T>) -> Value {
    v.clone().map_or(Value::Null, Into::into)
}

fn dur(v: Option<i64>) -> Value {
    v.map_or(Value::Null, |d| json!(format_duration(d)))
}

fn update(u: &UpdateConfig) -> Value {
    let mut m = Map::new();
    put(&mut m, "parallelism", opt(&u.parallelism));
    put(&mut m, "delay", dur(u.delay));
    put(&mut m, "failure_action", opt(&u.failure_action));
    put(&mut m, "monitor", dur(u.monitor));
    put(&mut m, "max_failure_ratio", opt(&u.max_failure_ratio));
    put(&mut m, "order", opt(&u.order));
    Value::Object(m)
}

fn service(s: &Service) -> Value {
    let mut m = Map::new();
    put(&mut m, "image", opt(&s.image));
    put(&mut m, "entrypoint", opt(&s.entrypoint));
    put(&mut m, "command", opt(&s.command));
    put(&mut m, "environment", json!(s.environment));
    put(&mut m, "user", opt(&s.user));
    put(&mut m, "working_dir", opt(&s.working_dir));
    put(&mut m, "hostname", opt(&s.hostname));
    put(&mut m, "labels", json!(s.labels));
    let secrets: Vec<Value> = s
        .secrets
        .iter()
        .map(|r| {
            let mut e = Map::new();
            put(&mut e, "source", json!(r.source));
            put(&mut e, "target", opt(&r.target));
            put(&mut e, "uid", opt(&r.uid));
            put(&mut e, "gid", opt(&r.gid));
            put(&mut e, "mode", opt(&r.mode));
            Value::Object(e)
        })
        .collect();
    put(&mut m, "secrets", json!(secrets));
    let networks: Map<String, Value> = s
        .networks
        .iter()
        .map(|(k, aliases)| {
            let v = if aliases.is_empty() {
                Value::Null
            } else {
                json!({ "aliases": aliases })
            };
            (k.clone(), v)
        })
        .collect();
    if !networks.is_empty() {
        m.insert("networks".into(), Value::Object(networks));
    }
    put(&mut m, "stop_grace_period", dur(s.stop_grace_period));
    put(&mut m, "stop_signal", opt(&s.stop_signal));
    put(&mut m, "init", opt(&s.init));
    put(&mut m, "tty", opt(&s.tty));
    put(&mut m, "read_only", opt(&s.read_only));
    let d = &s.deploy;
    let mut dm = Map::new();
    put(&mut dm, "mode", opt(&d.mode));
    put(&mut dm, "replicas", opt(&d.replicas));
    put(&mut dm, "labels", json!(d.labels));
    if let Some(u) = &d.update_config {
        dm.insert("update_config".into(), update(u));
    }
    if let Some(u) = &d.rollback_config {
        dm.insert("rollback_config".into(), update(u));
    }
    if let Some(r) = &d.restart_policy {
        let mut rm = Map::new();
        put(&mut rm, "condition", opt(&r.condition));
        put(&mut rm, "delay", dur(r.delay));
        put(&mut rm, "max_attempts", opt(&r.max_attempts));
        put(&mut rm, "window", dur(r.window));
        dm.insert("restart_policy".into(), Value::Object(rm));
    }
    if !d.constraints.is_empty() {
        dm.insert("placement".into(), json!({ "constraints": d.constraints }));
    }
    put(&mut dm, "endpoint_mode", opt(&d.endpoint_mode));
    put(&mut m, "deploy", Value::Object(dm));
    Value::Object(m)
}

pub(crate) fn to_yaml(p: &Project) -> String {
    let c = &p.compose;
    let mut top = Map::new();
    let services: Map<String, Value> = c
        .services
        .iter()
        .map(|(k, s)| (k.clone(), service(s)))
        .collect();
    top.insert("services".into(), Value::Object(services));
    let networks: Map<String, Value> = c
        .networks
        .iter()
        .map(|(k, n)| {
            let mut m = Map::new();
            put(&mut m, "name", opt(&n.name));
            put(&mut m, "driver", opt(&n.driver));
            put(&mut m, "driver_opts", json!(n.driver_opts));
            put(&mut m, "labels", json!(n.labels));
            if n.external {
                m.insert("external".into(), json!(true));
            }
            if n.internal {
                m.insert("internal".into(), json!(true));
            }
            if n.attachable {
                m.insert("attachable".into(), json!(true));
            }
            (k.clone(), Value::Object(m))
        })
        .collect();
    put(&mut top, "networks", Value::Object(networks));
    let secrets: Map<String, Value> = c
        .secrets
        .iter()
        .map(|(k, s)| {
            let mut m = Map::new();
            put(&mut m, "name", opt(&s.name));
            match &s.source {
                SecretSource::File(f) => {
                    m.insert("file".into(), json!(f.display().to_string()));
                }
                SecretSource::Environment(e) => {
                    m.insert("environment".into(), json!(e));
                }
                SecretSource::External => {
                    m.insert("external".into(), json!(true));
                }
            }
            put(&mut m, "labels", json!(s.labels));
            (k.clone(), Value::Object(m))
        })
        .collect();
    put(&mut top, "secrets", Value::Object(secrets));
    // Plain or quoted scalars only: a folded `>` block would re-wrap long commands.
    let opts = serde_saphyr::ser_options! { prefer_block_scalars: false };
    serde_saphyr::to_string_with_options(&Value::Object(top), opts).unwrap_or_default()
}
