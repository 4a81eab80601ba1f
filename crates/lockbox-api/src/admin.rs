//! lockbox's own endpoints for access control and the audit trail, under `/lockbox/v1`:
//! `whoami`, `permissions`, `users`, `roles`, `grants`, `audit`. The permission each needs
//! is checked by the access layer (`access.manage`, `audit.read`).

use std::collections::HashMap;

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{delete, get, post};
use base64::Engine as _;
use http::{HeaderMap, StatusCode};
use lockbox_core::{AuditFilter, AuditObject};
use lockbox_crypto::SecretBytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::{Audited, Caller, audited};
use crate::body::{self, json, read_json};
use crate::error::{ApiError, ApiResult};
use crate::{AppState, dual};

pub(crate) fn routes(mut r: Router<AppState>) -> Router<AppState> {
    r = dual(r, "/lockbox/v1/whoami", get(whoami));
    r = dual(r, "/lockbox/v1/permissions", get(permissions));
    r = dual(r, "/lockbox/v1/users", get(users).post(create_user));
    r = dual(r, "/lockbox/v1/users/{name}", delete(remove_user).get(user));
    r = dual(r, "/lockbox/v1/users/{name}/update", post(update_user));
    r = dual(r, "/lockbox/v1/users/{name}/bundle", post(bundle));
    r = dual(r, "/lockbox/v1/users/{name}/revoke", post(revoke));
    r = dual(r, "/lockbox/v1/roles", get(roles).post(create_role));
    r = dual(r, "/lockbox/v1/roles/{name}", delete(remove_role));
    r = dual(r, "/lockbox/v1/grants", get(grants).post(create_grant));
    r = dual(r, "/lockbox/v1/grants/{id}", delete(remove_grant));
    r = dual(r, "/lockbox/v1/services/{id}/secrets/swap", post(swap));
    r = dual(r, "/lockbox/v1/audit", get(audit_list));
    r = dual(r, "/lockbox/v1/audit/verify", get(audit_verify));
    r = dual(r, "/lockbox/v1/audit/check-value", post(audit_check));
    r = dual(r, "/lockbox/v1/swarm/backup", post(crate::backup::backup));
    r = dual(r, "/lockbox/v1/agent", get(agent));
    r
}

fn parse<T: for<'de> Deserialize<'de>>(v: Value) -> ApiResult<T> {
    let v = if v.is_null() { json!({}) } else { v };
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

fn ts(t: lockbox_types::Timestamp) -> String {
    crate::wire::go_time(t)
}

fn on(kind: &str, name: &str) -> Audited {
    Audited {
        objects: vec![AuditObject::new(kind, "", name)],
        details: Vec::new(),
    }
}

/// What this node's agent holds: its tasks and the IDs (never values) of the secrets in its
/// memory. On a worker these are exactly the secrets its tasks need.
async fn agent(State(app): State<AppState>) -> ApiResult<Response> {
    Ok(json(StatusCode::OK, &app.manager.agent_state().await?))
}

async fn whoami(State(app): State<AppState>, Extension(Caller(id)): Extension<Caller>) -> Response {
    let p = app.manager.permissions(&id).await;
    json(
        StatusCode::OK,
        &json!({
            "User": id.user,
            "Groups": id.groups,
            "Source": id.source,
            "Admin": p.root,
            "Permissions": p.by_scope(),
        }),
    )
}

async fn permissions() -> Response {
    json(StatusCode::OK, &lockbox_types::PERMISSIONS)
}

fn user_json(u: &lockbox_types::User) -> Value {
    json!({
        "Name": u.name,
        "Uid": u.uid,
        "Groups": u.groups,
        "CreatedAt": ts(u.meta.created_at),
        "UpdatedAt": ts(u.meta.updated_at),
        "Version": {"Index": u.meta.version},
        "Certificates": u.certs.iter().map(|c| json!({
            "Serial": c.serial,
            "NotAfter": ts(c.not_after),
            "Revoked": c.revoked,
        })).collect::<Vec<_>>(),
    })
}

async fn users(State(app): State<AppState>) -> ApiResult<Response> {
    let m = app.manager.access_model().await?;
    let out: Vec<Value> = m.users.values().map(user_json).collect();
    Ok(json(StatusCode::OK, &out))
}

async fn user(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<Response> {
    let name = p.get("name").cloned().unwrap_or_default();
    let m = app.manager.access_model().await?;
    let u = m
        .users
        .get(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("user {name} not found")))?;
    Ok(json(StatusCode::OK, &user_json(u)))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct UserBody {
    name: String,
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    groups: Vec<String>,
}

async fn create_user(
    State(app): State<AppState>,
    headers: HeaderMap,
    b: Body,
) -> ApiResult<Response> {
    let u: UserBody = parse(read_json(&headers, b).await?)?;
    app.manager.create_user(&u.name, u.uid, u.groups).await?;
    Ok(audited(
        json(StatusCode::CREATED, &json!({ "Name": u.name })),
        on("user", &u.name),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct UserUpdate {
    #[serde(default, with = "double_option")]
    uid: Option<Option<u32>>,
    #[serde(default)]
    groups: Option<Vec<String>>,
}

/// `absent` → None, `null` → Some(None), `5` → Some(Some(5)).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

async fn update_user(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
    b: Body,
) -> ApiResult<Response> {
    let name = p.get("name").cloned().unwrap_or_default();
    let u: UserUpdate = parse(read_json(&headers, b).await?)?;
    app.manager.update_user(&name, u.uid, u.groups).await?;
    Ok(audited(body::empty(StatusCode::OK), on("user", &name)))
}

async fn remove_user(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<Response> {
    let name = p.get("name").cloned().unwrap_or_default();
    app.manager.remove_user(&name).await?;
    Ok(audited(
        body::empty(StatusCode::NO_CONTENT),
        on("user", &name),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct BundleBody {
    #[serde(default)]
    valid_days: Option<u32>,
}

async fn bundle(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
    b: Body,
) -> ApiResult<Response> {
    let name = p.get("name").cloned().unwrap_or_default();
    let req: BundleBody = parse(read_json(&headers, b).await?)?;
    let (ca, issued) = app
        .manager
        .issue_user_cert(&name, req.valid_days.unwrap_or(365))
        .await?;
    let not_after = issued
        .not_after
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut a = on("user", &name);
    a.details.push(("serial".into(), issued.serial.clone()));
    Ok(audited(
        json(
            StatusCode::CREATED,
            &json!({
                "Ca": ca,
                "Cert": issued.cert_pem,
                "Key": issued.key_pem.as_str(),
                "Serial": issued.serial,
                "NotAfter": not_after,
            }),
        ),
        a,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RevokeBody {
    #[serde(default)]
    serial: Option<String>,
}

async fn revoke(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
    b: Body,
) -> ApiResult<Response> {
    let name = p.get("name").cloned().unwrap_or_default();
    let req: RevokeBody = parse(read_json(&headers, b).await?)?;
    let revoked = app.manager.revoke(&name, req.serial).await?;
    for serial in app.manager.revoked_serials().await {
        app.revocations.revoke(&serial);
    }
    let mut a = on("user", &name);
    a.details.push(("revoked".into(), revoked.join(",")));
    Ok(audited(
        json(StatusCode::OK, &json!({ "Revoked": revoked })),
        a,
    ))
}

async fn roles(State(app): State<AppState>) -> ApiResult<Response> {
    let out: Vec<Value> = app
        .manager
        .roles()
        .await?
        .into_iter()
        .map(|(name, perms, builtin)| {
            json!({ "Name": name, "Permissions": perms, "Builtin": builtin })
        })
        .collect();
    Ok(json(StatusCode::OK, &out))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RoleBody {
    name: String,
    permissions: Vec<String>,
}

async fn create_role(
    State(app): State<AppState>,
    headers: HeaderMap,
    b: Body,
) -> ApiResult<Response> {
    let r: RoleBody = parse(read_json(&headers, b).await?)?;
    app.manager.create_role(&r.name, &r.permissions).await?;
    Ok(audited(
        json(StatusCode::CREATED, &json!({ "Name": r.name })),
        on("role", &r.name),
    ))
}

async fn remove_role(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<Response> {
    let name = p.get("name").cloned().unwrap_or_default();
    app.manager.remove_role(&name).await?;
    Ok(audited(
        body::empty(StatusCode::NO_CONTENT),
        on("role", &name),
    ))
}

fn grant_json(g: &lockbox_types::Grant) -> Value {
    json!({
        "ID": g.id,
        "Subject": g.subject.to_string(),
        "Role": g.role,
        "Scope": g.scope.to_string(),
        "CreatedAt": ts(g.meta.created_at),
        "Version": {"Index": g.meta.version},
    })
}

async fn grants(State(app): State<AppState>) -> ApiResult<Response> {
    let m = app.manager.access_model().await?;
    let out: Vec<Value> = m.grants.values().map(grant_json).collect();
    Ok(json(StatusCode::OK, &out))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct GrantBody {
    subject: String,
    role: String,
    #[serde(default)]
    scope: Option<String>,
}

fn grant_audit(g: &lockbox_types::Grant) -> Audited {
    Audited {
        objects: vec![AuditObject::new("grant", g.id.clone(), "")],
        details: vec![
            ("subject".into(), g.subject.to_string()),
            ("role".into(), g.role.clone()),
            ("scope".into(), g.scope.to_string()),
        ],
    }
}

async fn create_grant(
    State(app): State<AppState>,
    headers: HeaderMap,
    b: Body,
) -> ApiResult<Response> {
    let g: GrantBody = parse(read_json(&headers, b).await?)?;
    let grant = app
        .manager
        .create_grant(&g.subject, &g.role, g.scope.as_deref().unwrap_or("all"))
        .await?;
    Ok(audited(
        json(StatusCode::CREATED, &json!({ "ID": grant.id })),
        grant_audit(&grant),
    ))
}

async fn remove_grant(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<Response> {
    let id = p.get("id").cloned().unwrap_or_default();
    let grant = app.manager.remove_grant(&id).await?;
    Ok(audited(
        body::empty(StatusCode::NO_CONTENT),
        grant_audit(&grant),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SwapBody {
    from: String,
    to: String,
}

/// Live update: re-point a service from one secret to another in its running tasks, without
/// restarting them (the service must allow it with `lockbox.live-update.targets`).
async fn swap(
    State(app): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
    b: Body,
) -> ApiResult<Response> {
    let id = p.get("id").cloned().unwrap_or_default();
    let req: SwapBody = parse(read_json(&headers, b).await?)?;
    app.manager
        .authorize_secret(&caller, "secret.use", &req.to)
        .await?;
    let r = app
        .manager
        .swap_service_secret(&id, &req.from, &req.to)
        .await?;
    let a = Audited {
        objects: vec![
            AuditObject::new("service", r.service_id.clone(), id.clone()),
            AuditObject::new("secret", "", req.from.clone()),
            AuditObject::new("secret", r.secret_id.clone(), req.to.clone()),
        ],
        details: vec![
            ("updated".into(), r.updated.join(",")),
            (
                "replaced".into(),
                r.replaced
                    .iter()
                    .map(|(t, _)| t.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ],
    };
    Ok(audited(
        json(
            StatusCode::OK,
            &json!({
                "Service": r.service_id,
                "Secret": r.secret_id,
                "Signal": r.signal,
                "Updated": r.updated,
                "Replaced": r.replaced.iter().map(|(t, e)| json!({"Task": t, "Error": e})).collect::<Vec<_>>(),
            }),
        ),
        a,
    ))
}

fn parse_time(name: &str, v: &str) -> ApiResult<time::OffsetDateTime> {
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).map_err(|e| {
        ApiError::bad_request(format!("invalid {name} {v:?}: {e} (expected RFC 3339)"))
    })
}

async fn audit_list(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let mut f = AuditFilter::default();
    f.actor = q.get("user").filter(|s| !s.is_empty()).cloned();
    f.action = q.get("action").filter(|s| !s.is_empty()).cloned();
    f.object = q.get("secret").filter(|s| !s.is_empty()).cloned();
    if let Some(v) = q.get("since").filter(|s| !s.is_empty()) {
        f.since = Some(parse_time("since", v)?);
    }
    if let Some(v) = q.get("until").filter(|s| !s.is_empty()) {
        f.until = Some(parse_time("until", v)?);
    }
    if let Some(v) = q.get("limit").filter(|s| !s.is_empty()) {
        f.limit = Some(
            v.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {v:?}")))?,
        );
    }
    if app.manager.audit_dir().is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "auditing is off on this node",
        ));
    }
    // Records written when a change begins are left out unless asked for.
    if !q.get("begin").is_some_and(|v| v == "true" || v == "1") {
        f.without_detail = Some(("phase".into(), "begin".into()));
    }
    let manager = app.manager.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    // The files are read on a blocking thread and streamed line by line.
    tokio::task::spawn_blocking(move || {
        let it = match manager.audit_export(&f) {
            Ok(it) => it,
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        };
        for line in it {
            let item = line.map(bytes::Bytes::from).map_err(std::io::Error::other);
            if tx.blocking_send(item).is_err() {
                return;
            }
        }
    });
    let stream = tokio_stream_from(rx);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn audit_verify(State(app): State<AppState>) -> ApiResult<Response> {
    let manager = app.manager.clone();
    let report = tokio::task::spawn_blocking(move || manager.verify_audit())
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let first_bad = report.first_bad.as_ref().map(|b| {
        json!({
            "File": b.file,
            "Line": b.line,
            "Seq": b.found_seq.unwrap_or(b.expected_seq),
            "ExpectedSeq": b.expected_seq,
            "FoundSeq": b.found_seq,
            "Reason": b.reason,
        })
    });
    Ok(json(
        StatusCode::OK,
        &json!({
            "Ok": report.ok,
            "Records": report.records,
            "Files": report.files,
            "Retired": report.retired,
            "FirstBad": first_bad,
            "Head": app.manager.audit_head().map(|(seq, hash)| json!({"Seq": seq, "Hash": hash})),
        }),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CheckBody {
    seq: u64,
    data: String,
}

async fn audit_check(
    State(app): State<AppState>,
    headers: HeaderMap,
    b: Body,
) -> ApiResult<Response> {
    let mut req: CheckBody = parse(read_json(&headers, b).await?)?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(req.data.as_bytes());
    zeroize::Zeroize::zeroize(&mut req.data);
    let value = SecretBytes::new(
        decoded.map_err(|_| ApiError::bad_request("invalid JSON: Data is not base64"))?,
    );
    let matched = app.manager.audit_check_value(req.seq, &value).await?;
    let mut a = Audited::default();
    a.details.push(("seq".into(), req.seq.to_string()));
    a.details.push(("match".into(), matched.to_string()));
    Ok(audited(
        json(StatusCode::OK, &json!({ "Match": matched })),
        a,
    ))
}
