//! `/swarm`: init, inspect, update, unlock, unlockkey, leave, join.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use lockbox_core::{CoreError, InitOptions, SwarmUpdate};
use lockbox_types::ClusterSpec;
use serde_json::{Map, Value};

use crate::AppState;
use crate::body::{self, json, read_json};
use crate::error::{ApiError, ApiResult, NOT_IN_SWARM};

/// Applies a Docker swarm `Spec` onto `base` as dockerd's `MergeSwarmSpecToGRPC` does: most
/// fields change only when given non-zero; labels and autolock are always taken as sent.
/// swarmkit's `ca.MinNodeCertExpiration`: node certificates live at least an hour.
const MIN_NODE_CERT_EXPIRY_NS: i64 = 3_600_000_000_000;

pub(crate) fn merge_spec(
    base: &ClusterSpec,
    obj: Option<&Map<String, Value>>,
) -> ApiResult<ClusterSpec> {
    let mut s = base.clone();
    let name = body::string(obj, "Name", "Spec.Name")?;
    if !name.is_empty() {
        s.name = name;
    }
    s.labels = body::string_map(obj, "Labels", "Spec.Labels")?;
    let orch = body::sub(obj, "Orchestration", "Spec.Orchestration")?;
    if let Some(v) = body::int(
        orch,
        "TaskHistoryRetentionLimit",
        "OrchestrationConfig.TaskHistoryRetentionLimit",
    )? {
        s.orchestration.task_history_retention_limit = Some(v);
    }
    let raft = body::sub(obj, "Raft", "Spec.Raft")?;
    let nonzero = |v: Option<i64>| v.filter(|&x| x != 0);
    if let Some(v) = nonzero(body::int(
        raft,
        "SnapshotInterval",
        "RaftConfig.SnapshotInterval",
    )?) {
        s.raft.snapshot_interval = v.max(0) as u64;
    }
    if let Some(v) = body::int(raft, "KeepOldSnapshots", "RaftConfig.KeepOldSnapshots")? {
        s.raft.keep_old_snapshots = Some(v.max(0) as u64);
    }
    if let Some(v) = nonzero(body::int(
        raft,
        "LogEntriesForSlowFollowers",
        "RaftConfig.LogEntriesForSlowFollowers",
    )?) {
        s.raft.log_entries_for_slow_followers = v.max(0) as u64;
    }
    if let Some(v) = nonzero(body::int(
        raft,
        "HeartbeatTick",
        "RaftConfig.HeartbeatTick",
    )?) {
        s.raft.heartbeat_tick = v;
    }
    if let Some(v) = nonzero(body::int(raft, "ElectionTick", "RaftConfig.ElectionTick")?) {
        s.raft.election_tick = v;
    }
    let disp = body::sub(obj, "Dispatcher", "Spec.Dispatcher")?;
    if let Some(v) = nonzero(body::int(
        disp,
        "HeartbeatPeriod",
        "DispatcherConfig.HeartbeatPeriod",
    )?) {
        s.dispatcher.heartbeat_period = Some(v);
    }
    let ca = body::sub(obj, "CAConfig", "Spec.CAConfig")?;
    if let Some(v) = nonzero(body::int(ca, "NodeCertExpiry", "CAConfig.NodeCertExpiry")?) {
        s.ca_config.node_cert_expiry = Some(v);
    }
    s.ca_config.force_rotate = body::int(ca, "ForceRotate", "CAConfig.ForceRotate")?
        .unwrap_or(0)
        .max(0) as u64;
    let enc = body::sub(obj, "EncryptionConfig", "Spec.EncryptionConfig")?;
    s.encryption_config.auto_lock_managers =
        body::boolean(enc, "AutoLockManagers", "EncryptionConfig.AutoLockManagers")?;
    Ok(s)
}

pub(crate) async fn init(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let v = read_json(&headers, body).await?;
    let obj = body::object(&v, "swarm.InitRequest")?;
    let spec_obj = body::sub(obj, "Spec", "InitRequest.Spec")?;
    let spec = merge_spec(&ClusterSpec::default(), spec_obj)?;
    let autolock = body::boolean(obj, "AutoLockManagers", "InitRequest.AutoLockManagers")?
        || spec.encryption_config.auto_lock_managers;
    let advertise = body::string(obj, "AdvertiseAddr", "InitRequest.AdvertiseAddr")?;
    let listen = body::string(obj, "ListenAddr", "InitRequest.ListenAddr")?;
    let opts = InitOptions {
        autolock,
        spec: Some(spec),
        advertise_addr: (!advertise.is_empty()).then(|| with_port(&advertise)),
        listen_addr: (!listen.is_empty()).then(|| with_port(&listen)),
        force_new_cluster: body::boolean(obj, "ForceNewCluster", "InitRequest.ForceNewCluster")?,
    };
    let id = app.manager.init(opts).await?;
    Ok(json(StatusCode::OK, &id))
}

fn with_port(addr: &str) -> String {
    if addr.parse::<std::net::SocketAddr>().is_ok()
        || addr
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        addr.to_owned()
    } else {
        format!("{addr}:2377")
    }
}

pub(crate) async fn inspect(State(app): State<AppState>) -> ApiResult<Response> {
    let c = app.manager.cluster().await?;
    let pki = app.manager.pki_status().await?;
    Ok(json(StatusCode::OK, &crate::wire::swarm(&c, &pki)))
}

fn query_bool(q: &HashMap<String, String>, key: &str) -> ApiResult<bool> {
    match q.get(key) {
        None => Ok(false),
        Some(v) if v.is_empty() => Ok(false),
        Some(v) => body::parse_bool_strict(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid value for {key}: strconv.ParseBool: parsing \"{v}\": invalid syntax"
            ))
        }),
    }
}

pub(crate) async fn update(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let raw = q.get("version").cloned().unwrap_or_default();
    let version = raw.parse::<u64>().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid swarm version '{raw}': strconv.ParseUint: parsing \"{raw}\": invalid syntax"
        ))
    })?;
    let v = read_json(&headers, body).await?;
    let obj = body::object(&v, "swarm.Spec")?;
    let current = app.manager.cluster().await?;
    let spec = merge_spec(&current.spec, obj)?;
    // swarmkit `controlapi.validateCAConfig`.
    if spec
        .ca_config
        .node_cert_expiry
        .is_some_and(|ns| ns < MIN_NODE_CERT_EXPIRY_NS)
    {
        return Err(CoreError::InvalidArgument(
            "minimum certificate expiry time is: 1h0m0s".into(),
        )
        .into());
    }
    // `swarm ca --rotate`: a new ForceRotate, or the operator's own CA.
    let ca = body::sub(obj, "CAConfig", "Spec.CAConfig")?;
    if ca
        .and_then(|c| c.get("ExternalCAs"))
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return Err(ApiError::bad_request(
            "lockbox does not support external CAs: the swarm's CA signs node certificates itself (rotate it with `docker swarm ca --rotate`, optionally with --ca-cert and --ca-key)",
        ));
    }
    let signing_cert = body::string(ca, "SigningCACert", "CAConfig.SigningCACert")?;
    let signing_key =
        zeroize::Zeroizing::new(body::string(ca, "SigningCAKey", "CAConfig.SigningCAKey")?);
    let operator_ca = match (signing_cert.is_empty(), signing_key.is_empty()) {
        (true, true) => None,
        (false, false) => Some((signing_cert, signing_key)),
        _ => {
            return Err(ApiError::bad_request(
                "a signing CA certificate and its key must be given together",
            ));
        }
    };
    let rotate_ca =
        operator_ca.is_some() || spec.ca_config.force_rotate != current.spec.ca_config.force_rotate;
    let upd = SwarmUpdate {
        version,
        spec,
        rotate_worker_token: query_bool(&q, "rotateWorkerToken")?,
        rotate_manager_token: query_bool(&q, "rotateManagerToken")?,
        rotate_unlock_key: query_bool(&q, "rotateManagerUnlockKey")?,
    };
    app.manager.update_swarm(upd).await?;
    if rotate_ca {
        app.manager.rotate_ca(operator_ca).await?;
    }
    Ok(body::empty(StatusCode::OK))
}

pub(crate) async fn unlock(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let mut v = read_json(&headers, body).await?;
    let key = body::string(
        body::object(&v, "swarm.UnlockRequest")?,
        "UnlockKey",
        "UnlockRequest.UnlockKey",
    )?;
    let key = zeroize::Zeroizing::new(key);
    zeroize_value(&mut v);
    // Inactive nodes answer with the generic "not a swarm manager" text, as dockerd does.
    app.manager.unlock(&key).await?;
    Ok(body::empty(StatusCode::OK))
}

fn zeroize_value(v: &mut Value) {
    use zeroize::Zeroize;
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(zeroize_value),
        Value::Object(m) => m.values_mut().for_each(zeroize_value),
        _ => {}
    }
}

pub(crate) async fn unlock_key(State(app): State<AppState>) -> ApiResult<Response> {
    let key = app.manager.unlock_key().await?;
    let text: &str = key.as_ref().map_or("", |k| k.as_str());
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "UnlockKey": text }),
    ))
}

pub(crate) async fn leave(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let force = body::bool_value(q.get("force"));
    if !force && let Some(refusal) = app.manager.leave_refusal().await {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, refusal));
    }
    match app.manager.leave(force).await {
        Ok(()) => Ok(body::empty(StatusCode::OK)),
        Err(CoreError::NotInSwarm) => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, NOT_IN_SWARM))
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn join(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let v = read_json(&headers, body).await?;
    let obj = body::object(&v, "swarm.JoinRequest")?;
    let remotes: Vec<String> = match obj.and_then(|o| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("RemoteAddrs"))
    }) {
        Some((_, Value::Array(a))) => a
            .iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect(),
        Some((_, Value::Null)) | None => Vec::new(),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "json: cannot unmarshal into Go struct field JoinRequest.RemoteAddrs of type []string",
            ));
        }
    };
    let Some(remote) = remotes.first() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid JoinRequest: no remote addresses",
        ));
    };
    let token = zeroize::Zeroizing::new(body::string(obj, "JoinToken", "JoinRequest.JoinToken")?);
    let listen = body::string(obj, "ListenAddr", "JoinRequest.ListenAddr")?;
    let advertise = body::string(obj, "AdvertiseAddr", "JoinRequest.AdvertiseAddr")?;
    let availability = body::string(obj, "Availability", "JoinRequest.Availability")?;
    let opts = lockbox_core::JoinOptions {
        remote: remote.clone(),
        token,
        advertise_addr: (!advertise.is_empty()).then(|| with_port(&advertise)),
        listen_addr: (!listen.is_empty()).then(|| with_port(&listen)),
        availability,
    };
    app.manager.join(opts).await?;
    Ok(body::empty(StatusCode::OK))
}

/// lockbox extension: a new data encryption key, and the whole store re-sealed with it.
pub(crate) async fn rotate_key(State(app): State<AppState>) -> ApiResult<Response> {
    let r = app.manager.rotate_data_key().await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "KeyID": r.key_id, "Resealed": r.resealed }),
    ))
}
