//! `/services`, `/tasks`, `/nodes/{id}/update` and logs.
//!
//! A service spec arrives as Docker JSON. The fields lockbox acts on are read into
//! `lockbox_types::ServiceSpec` (case-insensitively, as Go does); the JSON itself is kept as
//! `raw` and echoed back, so fields lockbox does not act on still round-trip.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use lockbox_core::{CoreError, LogLine, ServiceInfo};
use lockbox_types::{
    NodeAvailability, NodeRole, NodeSpec, RestartCondition, RestartPolicy, SecretFileTarget,
    SecretRef, ServiceMode, ServiceSpec, Task, TaskSpec, TaskState, UpdateConfig,
};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::body::{self, json, read_json};
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;
use crate::wire::go_time;

fn id_param(p: &HashMap<String, String>) -> &str {
    p.get("id").map_or("", String::as_str)
}

fn strings(obj: Option<&Map<String, Value>>, name: &str, path: &str) -> ApiResult<Vec<String>> {
    match body::field(obj, name) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(ApiError::bad_request(format!(
                    "invalid JSON: json: cannot unmarshal {} into Go struct field {path} of type string",
                    if other.is_number() { "number" } else { "object" }
                ))),
            })
            .collect(),
        Some(_) => Err(ApiError::bad_request(format!(
            "invalid JSON: json: cannot unmarshal value into Go struct field {path} of type []string"
        ))),
    }
}

fn update_config(obj: Option<&Map<String, Value>>, name: &str) -> ApiResult<Option<UpdateConfig>> {
    let Some(u) = body::sub(obj, name, &format!("ServiceSpec.{name}"))? else {
        return Ok(None);
    };
    let d = UpdateConfig::default();
    let ratio = match body::field(Some(u), "MaxFailureRatio") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0) as f32,
        _ => 0.0,
    };
    Ok(Some(UpdateConfig {
        parallelism: body::int(Some(u), "Parallelism", "UpdateConfig.Parallelism")?
            .unwrap_or(0)
            .max(0) as u64,
        delay: body::int(Some(u), "Delay", "UpdateConfig.Delay")?.unwrap_or(0),
        failure_action: Some(body::string(
            Some(u),
            "FailureAction",
            "UpdateConfig.FailureAction",
        )?)
        .filter(|s| !s.is_empty())
        .unwrap_or(d.failure_action),
        monitor: body::int(Some(u), "Monitor", "UpdateConfig.Monitor")?
            .unwrap_or(0)
            .max(0),
        max_failure_ratio: ratio,
        order: Some(body::string(Some(u), "Order", "UpdateConfig.Order")?)
            .filter(|s| !s.is_empty())
            .unwrap_or(d.order),
    }))
    .map(|c| {
        c.map(|mut c| {
            if c.monitor == 0 {
                c.monitor = d.monitor;
            }
            c
        })
    })
}

/// Reads a Docker `TaskTemplate`.
fn task_spec(tt: Option<&Map<String, Value>>) -> ApiResult<TaskSpec> {
    let cs = body::sub(tt, "ContainerSpec", "TaskSpec.ContainerSpec")?;
    let mut secrets = Vec::new();
    if let Some(Value::Array(refs)) = body::field(cs, "Secrets") {
        for r in refs {
            let r = r.as_object();
            let file = match body::sub(r, "File", "SecretReference.File")? {
                None => None,
                Some(f) => Some(SecretFileTarget {
                    name: body::string(Some(f), "Name", "SecretReferenceFileTarget.Name")?,
                    uid: body::string(Some(f), "UID", "SecretReferenceFileTarget.UID")?,
                    gid: body::string(Some(f), "GID", "SecretReferenceFileTarget.GID")?,
                    mode: body::int(Some(f), "Mode", "SecretReferenceFileTarget.Mode")?
                        .unwrap_or(0)
                        .clamp(0, 0o7777) as u32,
                }),
            };
            secrets.push(SecretRef {
                secret_id: body::string(r, "SecretID", "SecretReference.SecretID")?,
                secret_name: body::string(r, "SecretName", "SecretReference.SecretName")?,
                file,
            });
        }
    }
    let restart = match body::sub(tt, "RestartPolicy", "TaskSpec.RestartPolicy")? {
        None => None,
        Some(rp) => {
            let d = RestartPolicy::default();
            let condition =
                match body::string(Some(rp), "Condition", "RestartPolicy.Condition")?.as_str() {
                    "" | "any" => RestartCondition::Any,
                    "none" => RestartCondition::None,
                    "on-failure" => RestartCondition::OnFailure,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "invalid RestartCondition: \"{other}\""
                        )));
                    }
                };
            Some(RestartPolicy {
                condition,
                delay: body::int(Some(rp), "Delay", "RestartPolicy.Delay")?.unwrap_or(d.delay),
                max_attempts: body::int(Some(rp), "MaxAttempts", "RestartPolicy.MaxAttempts")?
                    .unwrap_or(0)
                    .max(0) as u64,
                window: body::int(Some(rp), "Window", "RestartPolicy.Window")?.unwrap_or(0),
            })
        }
    };
    let placement = body::sub(tt, "Placement", "TaskSpec.Placement")?;
    Ok(TaskSpec {
        image: body::string(cs, "Image", "ContainerSpec.Image")?,
        command: strings(cs, "Command", "ContainerSpec.Command")?,
        args: strings(cs, "Args", "ContainerSpec.Args")?,
        env: strings(cs, "Env", "ContainerSpec.Env")?,
        dir: body::string(cs, "Dir", "ContainerSpec.Dir")?,
        user: body::string(cs, "User", "ContainerSpec.User")?,
        groups: strings(cs, "Groups", "ContainerSpec.Groups")?,
        hostname: body::string(cs, "Hostname", "ContainerSpec.Hostname")?,
        labels: body::string_map(cs, "Labels", "ContainerSpec.Labels")?,
        secrets,
        restart,
        stop_grace_period: body::int(cs, "StopGracePeriod", "ContainerSpec.StopGracePeriod")?,
        stop_signal: body::string(cs, "StopSignal", "ContainerSpec.StopSignal")?,
        constraints: strings(placement, "Constraints", "Placement.Constraints")?,
        force_update: body::int(tt, "ForceUpdate", "TaskSpec.ForceUpdate")?
            .unwrap_or(0)
            .max(0) as u64,
        raw: tt
            .map(|m| Value::Object(m.clone()).to_string())
            .unwrap_or_else(|| "{}".into()),
    })
}

/// Reads a Docker `ServiceSpec`.
pub(crate) fn service_spec(v: &Value) -> ApiResult<ServiceSpec> {
    let obj = body::object(v, "swarm.ServiceSpec")?;
    let mode = match body::sub(obj, "Mode", "ServiceSpec.Mode")? {
        None => ServiceMode::Replicated { replicas: 1 },
        Some(m) => {
            let given = ["Replicated", "Global", "ReplicatedJob", "GlobalJob"]
                .iter()
                .filter(|k| body::field(Some(m), k).is_some())
                .count();
            if given > 1 {
                return Err(ApiError::bad_request("must specify only one service mode"));
            }
            if let Some(r) = body::sub(Some(m), "Replicated", "ServiceMode.Replicated")? {
                let replicas = match body::field(Some(r), "Replicas") {
                    None => 1,
                    Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "invalid JSON: json: cannot unmarshal number {n} into Go struct field ReplicatedService.Mode.Replicated.Replicas of type uint64"
                        ))
                    })?,
                    Some(other) => {
                        return Err(ApiError::bad_request(format!(
                            "invalid JSON: json: cannot unmarshal {} into Go struct field ReplicatedService.Mode.Replicated.Replicas of type uint64",
                            if other.is_string() { "string" } else if other.is_boolean() { "bool" } else if other.is_array() { "array" } else { "object" }
                        )));
                    }
                };
                ServiceMode::Replicated { replicas }
            } else if body::field(Some(m), "Global").is_some() {
                ServiceMode::Global
            } else if body::field(Some(m), "ReplicatedJob").is_some()
                || body::field(Some(m), "GlobalJob").is_some()
            {
                return Err(CoreError::Unimplemented(
                    "job services are not supported by lockbox".into(),
                )
                .into());
            } else {
                ServiceMode::Replicated { replicas: 1 }
            }
        }
    };
    let tt = body::sub(obj, "TaskTemplate", "ServiceSpec.TaskTemplate")?;
    if body::field(tt, "ContainerSpec").is_none() {
        // dockerd's conversion refuses a template without a runtime spec.
        return Err(ApiError::bad_request("mismatched Runtime and *Spec fields"));
    }
    // `Runtime: "container"` is what dockerd adds on output; a client that echoes it back has
    // not changed the template.
    let mut v = v.clone();
    if let Some(Value::Object(t)) = v.get_mut("TaskTemplate")
        && t.get("Runtime").and_then(Value::as_str) == Some("container")
    {
        t.remove("Runtime");
    }
    let tt_clean = v.get("TaskTemplate").and_then(Value::as_object).cloned();
    let tt = if tt.is_some() {
        tt_clean.as_ref()
    } else {
        None
    };
    Ok(ServiceSpec {
        name: body::string(obj, "Name", "ServiceSpec.Name")?,
        labels: body::string_map(obj, "Labels", "ServiceSpec.Labels")?,
        mode,
        task: task_spec(tt)?,
        update: update_config(obj, "UpdateConfig")?,
        rollback: update_config(obj, "RollbackConfig")?,
        raw: v.to_string(),
    })
}

// ------------------------------------------------------------------------------------------
// Output

const SERVICE_SPEC_ORDER: &[&str] = &[
    "Name",
    "Labels",
    "TaskTemplate",
    "Mode",
    "UpdateConfig",
    "RollbackConfig",
    "Networks",
    "EndpointSpec",
];
const TASK_TEMPLATE_ORDER: &[&str] = &[
    "ContainerSpec",
    "PluginSpec",
    "NetworkAttachmentSpec",
    "Resources",
    "RestartPolicy",
    "Placement",
    "Networks",
    "LogDriver",
    "ForceUpdate",
    "Runtime",
];
const CONTAINER_SPEC_ORDER: &[&str] = &[
    "Image",
    "Labels",
    "Command",
    "Args",
    "Hostname",
    "Env",
    "Dir",
    "User",
    "Groups",
    "Privileges",
    "Init",
    "StopSignal",
    "StopGracePeriod",
    "Healthcheck",
    "Hosts",
    "DNSConfig",
    "Secrets",
    "Configs",
    "Isolation",
    "Sysctls",
    "CapabilityAdd",
    "CapabilityDrop",
    "Ulimits",
    "OomScoreAdj",
];

/// Reorders `m` to Go struct order; unknown keys keep their relative order at the end.
fn reorder(m: &mut Map<String, Value>, order: &[&str]) {
    let mut out = Map::new();
    for k in order {
        if let Some(v) = m.remove(*k) {
            out.insert((*k).to_owned(), v);
        }
    }
    for (k, v) in std::mem::take(m) {
        out.insert(k, v);
    }
    *m = out;
}

fn update_defaults() -> Value {
    json!({"Parallelism":1,"FailureAction":"pause","Monitor":5000000000i64,"MaxFailureRatio":0,"Order":"stop-first"})
}

/// A stored `TaskTemplate` as dockerd prints it: what swarmkit fills in (`Isolation`,
/// `ForceUpdate`, and for services `Runtime`), and on request the `insertDefaults` values, which
/// only fill what is missing.
fn template_json(tt: &mut Map<String, Value>, insert_defaults: bool, runtime: bool) {
    // swarmkit stores MaxAttempts as a number, so a given policy always shows it.
    if let Some(Value::Object(rp)) = tt.get_mut("RestartPolicy") {
        rp.entry("MaxAttempts").or_insert(json!(0));
        reorder(rp, &["Condition", "Delay", "MaxAttempts", "Window"]);
    }
    if let Some(Value::Object(cs)) = tt.get_mut("ContainerSpec") {
        cs.entry("Isolation").or_insert(json!("default"));
        if insert_defaults {
            cs.entry("StopGracePeriod")
                .or_insert(json!(10_000_000_000i64));
            cs.entry("DNSConfig").or_insert(json!({}));
        }
        reorder(cs, CONTAINER_SPEC_ORDER);
    }
    if insert_defaults {
        tt.entry("Resources").or_insert(json!({}));
        tt.entry("Placement").or_insert(json!({}));
        match tt.get_mut("RestartPolicy") {
            Some(Value::Object(rp)) => {
                rp.entry("Delay").or_insert(json!(5_000_000_000i64));
                reorder(rp, &["Condition", "Delay", "MaxAttempts", "Window"]);
            }
            _ => {
                tt.insert(
                    "RestartPolicy".into(),
                    json!({"Condition":"any","Delay":5_000_000_000i64,"MaxAttempts":0}),
                );
            }
        }
    }
    tt.entry("ForceUpdate").or_insert(json!(0));
    if runtime && tt.contains_key("ContainerSpec") {
        tt.entry("Runtime").or_insert(json!("container"));
    }
    reorder(tt, TASK_TEMPLATE_ORDER);
}

/// A stored service spec as dockerd prints it.
fn spec_json(spec: &ServiceSpec, insert_defaults: bool) -> Value {
    let mut v: Value = serde_json::from_str(&spec.raw).unwrap_or_else(|_| json!({}));
    if let Some(obj) = v.as_object_mut() {
        obj.insert("Name".into(), json!(spec.name));
        obj.entry("Labels").or_insert(json!({}));
        if let Some(Value::Object(tt)) = obj.get_mut("TaskTemplate") {
            template_json(tt, insert_defaults, true);
        }
        let mode = match spec.mode {
            ServiceMode::Replicated { replicas } => {
                json!({ "Replicated": { "Replicas": replicas } })
            }
            ServiceMode::Global => json!({ "Global": {} }),
        };
        obj.insert("Mode".into(), mode);
        for key in ["UpdateConfig", "RollbackConfig"] {
            match obj.get_mut(key) {
                Some(Value::Object(c)) => {
                    // swarmkit stores these as numbers and enums: a given config shows them all.
                    c.entry("Parallelism").or_insert(json!(0));
                    c.entry("FailureAction").or_insert(json!("pause"));
                    c.entry("MaxFailureRatio").or_insert(json!(0));
                    c.entry("Order").or_insert(json!("stop-first"));
                    if insert_defaults {
                        c.entry("Monitor").or_insert(json!(5_000_000_000i64));
                    }
                    reorder(
                        c,
                        &[
                            "Parallelism",
                            "Delay",
                            "FailureAction",
                            "Monitor",
                            "MaxFailureRatio",
                            "Order",
                        ],
                    );
                }
                _ if insert_defaults => {
                    obj.insert(key.into(), update_defaults());
                }
                _ => {}
            }
        }
        reorder(obj, SERVICE_SPEC_ORDER);
    }
    v
}

fn meta_json(m: &lockbox_types::Meta) -> (Value, String, String) {
    let version = if m.version == 0 {
        json!({})
    } else {
        json!({ "Index": m.version })
    };
    (version, go_time(m.created_at), go_time(m.updated_at))
}

pub(crate) fn service_json(
    info: Option<&ServiceInfo>,
    svc: &lockbox_types::Service,
    insert_defaults: bool,
) -> Value {
    let (version, created, updated) = meta_json(&svc.meta);
    let mut m = Map::new();
    m.insert("ID".into(), json!(svc.id));
    m.insert("Version".into(), version);
    m.insert("CreatedAt".into(), json!(created));
    m.insert("UpdatedAt".into(), json!(updated));
    m.insert("Spec".into(), spec_json(&svc.spec, insert_defaults));
    if let Some(prev) = &svc.previous_spec {
        m.insert("PreviousSpec".into(), spec_json(prev, false));
    }
    m.insert("Endpoint".into(), json!({ "Spec": {} }));
    if let Some(u) = &svc.update_status {
        let mut us = Map::new();
        us.insert("State".into(), json!(u.state));
        us.insert("StartedAt".into(), json!(go_time(u.started_at)));
        if let Some(c) = u.completed_at {
            us.insert("CompletedAt".into(), json!(go_time(c)));
        }
        us.insert("Message".into(), json!(u.message));
        m.insert("UpdateStatus".into(), Value::Object(us));
    }
    if let Some(i) = info {
        m.insert(
            "ServiceStatus".into(),
            json!({ "RunningTasks": i.running, "DesiredTasks": i.desired, "CompletedTasks": i.completed }),
        );
    }
    Value::Object(m)
}

pub(crate) fn task_json(t: &Task) -> Value {
    let (version, created, updated) = meta_json(&t.meta);
    let mut spec: Value = serde_json::from_str(&t.spec.raw).unwrap_or_else(|_| json!({}));
    if let Some(tt) = spec.as_object_mut() {
        template_json(tt, false, false);
    }
    let mut status = Map::new();
    status.insert("Timestamp".into(), json!(go_time(t.status.timestamp)));
    status.insert("State".into(), json!(t.status.state.as_str()));
    status.insert("Message".into(), json!(t.status.message));
    if !t.status.err.is_empty() {
        status.insert("Err".into(), json!(t.status.err));
    }
    if !t.status.container_id.is_empty() || t.status.pid != 0 {
        status.insert(
            "ContainerStatus".into(),
            json!({ "ContainerID": t.status.container_id, "PID": t.status.pid, "ExitCode": t.status.exit_code }),
        );
    }
    status.insert("PortStatus".into(), json!({}));
    let mut m = Map::new();
    m.insert("ID".into(), json!(t.id));
    m.insert("Version".into(), version);
    m.insert("CreatedAt".into(), json!(created));
    m.insert("UpdatedAt".into(), json!(updated));
    m.insert("Labels".into(), json!({}));
    m.insert("Spec".into(), spec);
    m.insert("ServiceID".into(), json!(t.service_id));
    if t.slot != 0 {
        m.insert("Slot".into(), json!(t.slot));
    }
    if !t.node_id.is_empty() {
        m.insert("NodeID".into(), json!(t.node_id));
    }
    m.insert("Status".into(), Value::Object(status));
    m.insert("DesiredState".into(), json!(t.desired_state.as_str()));
    Value::Object(m)
}

// ------------------------------------------------------------------------------------------
// Handlers

pub(crate) async fn create(
    State(app): State<AppState>,
    axum::Extension(version): axum::Extension<crate::ApiVersion>,
    axum::Extension(crate::access::Caller(caller)): axum::Extension<crate::access::Caller>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let v = read_json(&headers, body).await?;
    let spec = service_spec(&v)?;
    let objects = service_objects("", &spec.name, &spec.task.secrets);
    let result = async {
        // Attaching a secret needs `secret.use` on it.
        app.manager
            .authorize_secret_refs(&caller, &spec.task.secrets)
            .await?;
        create_inner(&app, spec, version).await
    }
    .await;
    Ok(with_objects(result, objects))
}

async fn create_inner(
    app: &AppState,
    spec: ServiceSpec,
    version: crate::ApiVersion,
) -> ApiResult<Response> {
    let image = spec.task.image.clone();
    let id = app.manager.create_service(spec).await?;
    if version < crate::ApiVersion(1, 30) {
        // Before API 1.30 the daemon, not the client, tried to pin the image digest.
        let w = format!(
            "image {image} could not be accessed on a registry to record\nits digest. Each node will access {image} independently,\npossibly leading to different nodes running different\nversions of the image.\n"
        );
        return Ok(json(
            StatusCode::CREATED,
            &json!({ "ID": id, "Warnings": [w] }),
        ));
    }
    Ok(json(StatusCode::CREATED, &json!({ "ID": id })))
}

/// The audit objects of a service request: the service and the secrets it attaches.
fn service_objects(id: &str, name: &str, refs: &[SecretRef]) -> Vec<lockbox_core::AuditObject> {
    let mut out = vec![lockbox_core::AuditObject::new("service", id, name)];
    out.extend(refs.iter().map(|r| {
        lockbox_core::AuditObject::new("secret", r.secret_id.clone(), r.secret_name.clone())
    }));
    out
}

/// Attaches audit objects to a response, also to an error response.
fn with_objects(result: ApiResult<Response>, objects: Vec<lockbox_core::AuditObject>) -> Response {
    let resp = match result {
        Ok(r) => r,
        Err(e) => axum::response::IntoResponse::into_response(e),
    };
    crate::access::audited(
        resp,
        crate::access::Audited {
            objects,
            details: Vec::new(),
        },
    )
}

fn mode_name(m: &ServiceMode) -> &'static str {
    match m {
        ServiceMode::Replicated { .. } => "replicated",
        ServiceMode::Global => "global",
    }
}

pub(crate) async fn list(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let f = Filters::parse(q.get("filters").map(String::as_str))?;
    f.validate(&["id", "name", "label", "mode", "runtime"])?;
    let status = match q.get("status").map(String::as_str) {
        None | Some("") => false,
        Some(v) => body::parse_bool_strict(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid value for status: {v}: strconv.ParseBool: parsing \"{v}\": invalid syntax"
            ))
        })?,
    };
    let ids = f.values("id");
    let names = f.values("name");
    let modes = f.values("mode");
    let labels = f.labels("label");
    let all = app.manager.list_services().await?;
    let out: Vec<Value> = all
        .iter()
        .filter(|i| {
            let s = &i.service;
            (ids.is_empty() || ids.iter().any(|p| s.id.starts_with(p.as_str())))
                && (names.is_empty() || names.iter().any(|p| s.spec.name.starts_with(p.as_str())))
                && (modes.is_empty() || modes.iter().any(|m| m == mode_name(&s.spec.mode)))
                && labels.iter().all(|(k, v)| match (s.spec.labels.get(k), v) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(a), Some(w)) => w.is_empty() || a == w,
                })
        })
        .map(|i| service_json(status.then_some(i), &i.service, false))
        .collect();
    Ok(json(StatusCode::OK, &out))
}

pub(crate) async fn inspect(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let svc = app.manager.inspect_service(id_param(&p)).await?;
    let defaults = match q.get("insertDefaults").map(String::as_str) {
        None | Some("") => false,
        Some(v) => body::parse_bool_strict(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid value for insertDefaults: {v}: strconv.ParseBool: parsing \"{v}\": invalid syntax"
            ))
        })?,
    };
    Ok(json(StatusCode::OK, &service_json(None, &svc, defaults)))
}

pub(crate) async fn update(
    State(app): State<AppState>,
    axum::Extension(crate::access::Caller(caller)): axum::Extension<crate::access::Caller>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let v = read_json(&headers, body).await?;
    let raw = q.get("version").cloned().unwrap_or_default();
    let version = raw.parse::<u64>().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid service version '{raw}': strconv.ParseUint: parsing \"{raw}\": invalid syntax"
        ))
    })?;
    let rollback = match q.get("rollback").map(String::as_str) {
        None | Some("") => false,
        Some("previous") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("unrecognized rollback option {other}"),
            ));
        }
    };
    match q.get("registryAuthFrom").map(String::as_str) {
        None | Some("" | "spec" | "previous-spec") => {}
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unsupported registryAuthFrom value",
            ));
        }
    }
    let spec = if rollback {
        None
    } else {
        Some(service_spec(&v)?)
    };
    // Secrets the update attaches (not those the service has already) need `secret.use`.
    let mut objects = vec![lockbox_core::AuditObject::new("service", "", id_param(&p))];
    if let Ok(current) = app.manager.inspect_service(id_param(&p)).await {
        objects = vec![lockbox_core::AuditObject::new(
            "service",
            current.id.clone(),
            current.spec.name.clone(),
        )];
        let target = match (&spec, &current.previous_spec) {
            (Some(s), _) => Some(&s.task.secrets),
            (None, Some(prev)) => Some(&prev.task.secrets),
            (None, None) => None,
        };
        if let Some(refs) = target {
            let added: Vec<SecretRef> = refs
                .iter()
                .filter(|r| {
                    !current
                        .spec
                        .task
                        .secrets
                        .iter()
                        .any(|c| c.secret_id == r.secret_id)
                })
                .cloned()
                .collect();
            objects.extend(service_objects("", "", &added).into_iter().skip(1));
            if let Err(e) = app.manager.authorize_secret_refs(&caller, &added).await {
                return Ok(with_objects(Err(e.into()), objects));
            }
        }
    }
    let result = app
        .manager
        .update_service(id_param(&p), version, spec, rollback)
        .await
        .map(|()| json(StatusCode::OK, &json!({ "Warnings": null })))
        .map_err(ApiError::from);
    Ok(with_objects(result, objects))
}

pub(crate) async fn delete(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<Response> {
    app.manager.remove_service(id_param(&p)).await?;
    Ok(body::empty(StatusCode::OK))
}

fn task_name(svc: Option<&ServiceInfo>, t: &Task) -> Option<String> {
    svc.map(|i| {
        let slot = if t.slot != 0 {
            t.slot.to_string()
        } else {
            t.node_id.clone()
        };
        format!("{}.{}.{}", i.service.spec.name, slot, t.id)
    })
}

pub(crate) async fn tasks(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let f = Filters::parse(q.get("filters").map(String::as_str))?;
    f.validate(&[
        "id",
        "name",
        "label",
        "service",
        "node",
        "desired-state",
        "_up-to-date",
        "runtime",
    ])?;
    let tasks = app.manager.list_tasks().await?;
    let services = app.manager.list_services().await?;
    let nodes = app.manager.nodes().await?;
    // `service` and `node` values are resolved as dockerd does; an unknown one is a 404.
    let mut svc_filter: Vec<String> = Vec::new();
    for key in f.values("service") {
        let found = services
            .iter()
            .find(|i| i.service.id == key)
            .or_else(|| services.iter().find(|i| i.service.spec.name == key))
            .or_else(|| {
                let m: Vec<&ServiceInfo> = services
                    .iter()
                    .filter(|i| i.service.id.starts_with(key.as_str()))
                    .collect();
                (m.len() == 1).then(|| m[0])
            });
        match found {
            Some(i) => svc_filter.push(i.service.id.clone()),
            None => return Err(CoreError::NotFound(format!("service {key} not found")).into()),
        }
    }
    let mut node_filter: Vec<String> = Vec::new();
    for key in f.values("node") {
        let found = nodes
            .iter()
            .find(|n| n.id == key)
            .or_else(|| {
                nodes
                    .iter()
                    .find(|n| n.hostname == key || (!n.spec.name.is_empty() && n.spec.name == key))
            })
            .or_else(|| {
                let m: Vec<_> = nodes
                    .iter()
                    .filter(|n| n.id.starts_with(key.as_str()))
                    .collect();
                (m.len() == 1).then(|| m[0])
            });
        match found {
            Some(n) => node_filter.push(n.id.clone()),
            None => return Err(CoreError::NotFound(format!("node {key} not found")).into()),
        }
    }
    let mut desired: Vec<TaskState> = Vec::new();
    for s in f.values("desired-state") {
        match TaskState::parse(&s) {
            Some(st) => desired.push(st),
            None => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Invalid desired-state filter: '{s}'"),
                ));
            }
        }
    }
    let up_to_date = f
        .values("_up-to-date")
        .iter()
        .any(|v| v == "true" || v == "1");
    let ids = f.values("id");
    let names = f.values("name");
    let labels = f.labels("label");
    let out: Vec<Value> = tasks
        .iter()
        .filter(|t| {
            let svc = services.iter().find(|i| i.service.id == t.service_id);
            let tname = task_name(svc, t);
            (svc_filter.is_empty() || svc_filter.contains(&t.service_id))
                && (node_filter.is_empty() || node_filter.contains(&t.node_id))
                && (desired.is_empty() || desired.contains(&t.desired_state))
                && (ids.is_empty() || ids.iter().any(|p| t.id.starts_with(p.as_str())))
                && (names.is_empty()
                    || tname
                        .as_ref()
                        .is_some_and(|n| names.iter().any(|p| n.starts_with(p.as_str()))))
                && labels.iter().all(|(k, v)| {
                    // Tasks carry their service's labels from when they were created.
                    match (t.service_labels.get(k), v) {
                        (None, _) => false,
                        (Some(_), None) => true,
                        (Some(a), Some(w)) => w.is_empty() || a == w,
                    }
                })
                && (!up_to_date
                    || svc.is_some_and(|i| {
                        lockbox_core::same_template(&t.spec, &i.service.spec.task)
                    }))
        })
        .map(task_json)
        .collect();
    Ok(json(StatusCode::OK, &out))
}

pub(crate) async fn task(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<Response> {
    let key = id_param(&p);
    // A task is found by ID, ID prefix, or its full name `service.slot.id`.
    let t = match app.manager.inspect_task(key).await {
        Ok(t) => t,
        Err(CoreError::NotFound(m)) => {
            let services = app.manager.list_services().await?;
            let all = app.manager.list_tasks().await?;
            match all.into_iter().find(|t| {
                task_name(services.iter().find(|i| i.service.id == t.service_id), t).as_deref()
                    == Some(key)
            }) {
                Some(t) => t,
                None => return Err(CoreError::NotFound(m).into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    Ok(json(StatusCode::OK, &task_json(&t)))
}

pub(crate) async fn node_update(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let v = read_json(&headers, body).await?;
    let raw = q.get("version").cloned().unwrap_or_default();
    let version = raw.parse::<u64>().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid node version '{raw}': strconv.ParseUint: parsing \"{raw}\": invalid syntax"
        ))
    })?;
    let obj = body::object(&v, "swarm.NodeSpec")?;
    let role = match body::string(obj, "Role", "NodeSpec.Role")?.as_str() {
        "manager" => NodeRole::Manager,
        "worker" => NodeRole::Worker,
        other => return Err(ApiError::bad_request(format!("invalid Role: \"{other}\""))),
    };
    let availability = match body::string(obj, "Availability", "NodeSpec.Availability")?.as_str() {
        "active" => NodeAvailability::Active,
        "pause" => NodeAvailability::Pause,
        "drain" => NodeAvailability::Drain,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid Availability: \"{other}\""
            )));
        }
    };
    let spec = NodeSpec {
        name: body::string(obj, "Name", "NodeSpec.Name")?,
        labels: body::string_map(obj, "Labels", "NodeSpec.Labels")?,
        role,
        availability,
    };
    app.manager.update_node(id_param(&p), version, spec).await?;
    Ok(body::empty(StatusCode::OK))
}

// ------------------------------------------------------------------------------------------
// Logs

fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn frame(line: &LogLine, task: &Task, details: bool, timestamps: bool, mux: bool) -> Vec<u8> {
    let mut payload = Vec::new();
    if timestamps {
        let secs = line.time.0.div_euclid(1_000_000_000);
        let nanos = line.time.0.rem_euclid(1_000_000_000);
        let dt = time::OffsetDateTime::from_unix_timestamp(secs)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        payload.extend_from_slice(
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{nanos:09}Z ",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            )
            .as_bytes(),
        );
    }
    if details {
        let attrs = [
            ("com.docker.swarm.node.id", task.node_id.as_str()),
            ("com.docker.swarm.service.id", task.service_id.as_str()),
            ("com.docker.swarm.task.id", task.id.as_str()),
        ];
        let text: Vec<String> = attrs
            .iter()
            .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
            .collect();
        payload.extend_from_slice(text.join(",").as_bytes());
        payload.push(b' ');
    }
    payload.extend_from_slice(&line.data);
    if !mux {
        return payload;
    }
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(line.stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

async fn stream_logs(
    app: AppState,
    tasks: Vec<Task>,
    q: HashMap<String, String>,
) -> ApiResult<Response> {
    let stdout = body::bool_value(q.get("stdout"));
    let stderr = body::bool_value(q.get("stderr"));
    if !stdout && !stderr {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let follow = body::bool_value(q.get("follow"));
    let details = body::bool_value(q.get("details"));
    let timestamps = body::bool_value(q.get("timestamps"));
    let tail: Option<usize> = match q.get("tail").map(String::as_str) {
        None | Some("" | "all") => None,
        Some(t) => Some(
            t.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(|n| n as usize)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "tail value must be a positive integer or \"all\"",
                    )
                })?,
        ),
    };
    let since: Option<i64> = match q.get("since").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(v) => {
            let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
            let bad = || {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "could not parse since timestamp: strconv.ParseInt: parsing \"{v}\": invalid syntax"
                    ),
                )
            };
            let secs: i64 = secs.parse().map_err(|_| bad())?;
            let nanos: i64 = if frac.is_empty() {
                0
            } else {
                format!("{frac:0<9}")
                    .get(..9)
                    .unwrap_or("0")
                    .parse()
                    .map_err(|_| bad())?
            };
            Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
        }
    };
    let tty = tasks
        .first()
        .is_some_and(|t| t.spec.raw.contains("\"TTY\":true"));
    let mux = !tty;
    let logs = app.manager.logs().await?;
    let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
    let by_id: HashMap<String, Task> = tasks.into_iter().map(|t| (t.id.clone(), t)).collect();
    let wanted = move |l: &LogLine| (l.stream == 1 && stdout) || (l.stream == 2 && stderr);
    let rx = follow.then(|| logs.follow());
    // `tail` counts lines of both streams, before the stream filter (as dockerd does).
    let mut past: Vec<LogLine> = logs
        .lines(&ids)
        .into_iter()
        .filter(|l| since.is_none_or(|s| l.time.0 >= s))
        .collect();
    if let Some(n) = tail {
        let skip = past.len().saturating_sub(n);
        past.drain(..skip);
    }
    past.retain(|l| wanted(l));
    let by_id2 = by_id.clone();
    let head = futures::stream::iter(past.into_iter().filter_map(move |l| {
        by_id
            .get(&l.task_id)
            .map(|t| Ok::<_, std::io::Error>(frame(&l, t, details, timestamps, mux)))
    }));
    let live = futures::stream::unfold(rx, move |rx| {
        let by_id = by_id2.clone();
        async move {
            let mut rx = rx?;
            loop {
                match rx.recv().await {
                    Ok(l) => {
                        if let Some(t) = by_id.get(&l.task_id).filter(|_| wanted(&l)) {
                            return Some((
                                Ok::<_, std::io::Error>(frame(&l, t, details, timestamps, mux)),
                                Some(rx),
                            ));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return None,
                }
            }
        }
    });
    use futures::StreamExt;
    let mut resp = (StatusCode::OK, Body::from_stream(head.chain(live))).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(if mux {
            "application/vnd.docker.multiplexed-stream"
        } else {
            "application/vnd.docker.raw-stream"
        }),
    );
    Ok(resp)
}

pub(crate) async fn service_logs(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let svc = app.manager.inspect_service(id_param(&p)).await?;
    let tasks: Vec<Task> = app
        .manager
        .list_tasks()
        .await?
        .into_iter()
        .filter(|t| t.service_id == svc.id)
        .collect();
    stream_logs(app, tasks, q).await
}

pub(crate) async fn task_logs(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let t = app.manager.inspect_task(id_param(&p)).await?;
    stream_logs(app, vec![t], q).await
}
