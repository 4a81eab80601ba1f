//! `/secrets`: list, create, inspect, update (labels only), delete.

use std::collections::HashMap;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{HeaderMap, StatusCode};
use lockbox_core::{AuditObject, SecretFilter, SecretInfo, SecretInput};
use lockbox_crypto::SecretBytes;
use lockbox_types::Driver;
use serde_json::{Map, Value};
use zeroize::Zeroize;

use crate::access::{Audited, Caller, audited};
use crate::body::{self, json, read_json};
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;
use crate::{ApiVersion, AppState};

fn id_param(p: &HashMap<String, String>) -> &str {
    p.get("id").map_or("", String::as_str)
}

fn secret_audit(s: &SecretInfo) -> Audited {
    Audited {
        objects: vec![AuditObject::new("secret", s.id.clone(), s.name.clone())],
        details: Vec::new(),
    }
}

pub(crate) async fn list(
    State(app): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let filters = Filters::parse(q.get("filters").map(String::as_str))?;
    filters.validate(&["names", "name", "id", "label"])?;
    let filter = SecretFilter {
        names: filters.values("names"),
        name_prefixes: filters.values("name"),
        id_prefixes: filters.values("id"),
        labels: filters.labels("label"),
    };
    let perms = app.manager.permissions(&caller).await;
    let all = perms.has("secret.list");
    // Serialized straight from the state (see `visit_secrets`); a scoped caller sees only the
    // secrets in its scopes.
    let chunks = app
        .manager
        .visit_secrets(filter, move |secrets| {
            body::json_array_chunks(
                secrets.filter(|s| all || perms.covers("secret.list", s.name, s.labels)),
                |s, out| serde_json::to_writer(out, &crate::wire::SecretViewJson(*s)),
            )
        })
        .await?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(body::json_chunks_response(
        StatusCode::OK,
        chunks.into_iter().map(Ok),
    ))
}

fn driver(obj: Option<&Map<String, Value>>, name: &str) -> ApiResult<Option<Driver>> {
    let d = body::sub(obj, name, &format!("SecretSpec.{name}"))?;
    match d {
        None => Ok(None),
        Some(m) => Ok(Some(Driver {
            name: body::string(Some(m), "Name", "Driver.Name")?,
            options: body::string_map(Some(m), "Options", "Driver.Options")?,
        })),
    }
}

/// Parses a `SecretSpec` body. The base64 text and the decoded value are wiped after use.
fn secret_input(mut v: Value) -> ApiResult<SecretInput> {
    let data = match v.as_object_mut() {
        Some(m) => {
            let key = if m.contains_key("Data") {
                Some("Data".to_owned())
            } else {
                m.keys().find(|k| k.eq_ignore_ascii_case("Data")).cloned()
            };
            key.and_then(|k| m.remove(&k))
        }
        None => None,
    };
    let obj = body::object(&v, "swarm.SecretSpec")?;
    let data = match data {
        None | Some(Value::Null) => None,
        Some(Value::String(mut text)) => {
            // Go's decoder skips line breaks inside base64.
            text.retain(|c| c != '\r' && c != '\n');
            let decoded = base64::engine::general_purpose::STANDARD.decode(text.as_bytes());
            let result = match decoded {
                Ok(mut bytes) => {
                    // The decoder sizes its buffer by an estimate; the store keeps the value
                    // for the secret's lifetime, so it gets a copy of exactly its size (the
                    // estimate's buffer is wiped).
                    let exact = bytes.as_slice().to_vec();
                    bytes.zeroize();
                    Ok(SecretBytes::new(exact))
                }
                Err(_) => Err(ApiError::bad_request(format!(
                    "invalid JSON: {}",
                    go_base64_error(&text)
                ))),
            };
            text.zeroize();
            Some(result?)
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid JSON: json: cannot unmarshal {} into Go struct field SecretSpec.Data of type []uint8",
                if other.is_number() {
                    "number"
                } else if other.is_boolean() {
                    "bool"
                } else if other.is_array() {
                    "array"
                } else {
                    "object"
                }
            )));
        }
    };
    Ok(SecretInput {
        name: body::string(obj, "Name", "SecretSpec.Name")?,
        labels: body::string_map(obj, "Labels", "SecretSpec.Labels")?.into(),
        data,
        driver: driver(obj, "Driver")?,
        templating: driver(obj, "Templating")?,
    })
}

/// The offset Go's `base64.StdEncoding` reports for malformed input: the first byte outside
/// the alphabet, a misplaced `=`, or the start of an incomplete final quantum.
fn go_base64_error(text: &str) -> String {
    let b = text.as_bytes();
    let alphabet = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    let mut offset = None;
    for (i, &c) in b.iter().enumerate() {
        if c == b'=' {
            let q = i % 4;
            let rest = &b[i..];
            let ok = (q == 2 && rest == b"==") || (q == 3 && rest == b"=");
            if !ok {
                offset = Some(i);
            }
            break;
        }
        if !alphabet(c) {
            offset = Some(i);
            break;
        }
    }
    let offset = offset.unwrap_or(b.len() - b.len() % 4);
    format!("illegal base64 data at input byte {offset}")
}

pub(crate) async fn create(
    State(app): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    Extension(Caller(caller)): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let input = secret_input(read_json(&headers, body).await?)?;
    if let Err(e) = app
        .manager
        .authorize_new_secret(&caller, "secret.create", &input.name, &input.labels)
        .await
    {
        // The denial names the secret in the audit trail, so it can be found by name.
        return Ok(audited(
            ApiError::from(e).into_response(),
            Audited {
                objects: vec![AuditObject::new("secret", "", input.name.clone())],
                details: Vec::new(),
            },
        ));
    }
    // For the audit record only.
    let fingerprint = match &input.data {
        Some(d) if app.manager.auditing() => app.manager.value_fingerprint(d).await,
        _ => None,
    };
    let name = input.name.clone();
    if input.templating.is_some() && version < ApiVersion(1, 37) {
        return Err(ApiError::bad_request(format!(
            "secret templating is not supported on the specified API version: {version}"
        )));
    }
    let id = app.manager.create_secret(input).await?;
    let mut a = Audited {
        objects: vec![AuditObject::new("secret", id.clone(), name)],
        details: Vec::new(),
    };
    if let Some(fp) = fingerprint {
        a.details.push(("value_hmac".into(), fp));
    }
    Ok(audited(json(StatusCode::CREATED, &IdJson { id: &id }), a))
}

/// `{"ID":"…"}`, the answer to a create, without building a JSON map for it.
#[derive(serde::Serialize)]
struct IdJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
}

pub(crate) async fn inspect(
    State(app): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<Response> {
    app.manager
        .authorize_secret(&caller, "secret.inspect", id_param(&p))
        .await?;
    let s = app.manager.inspect_secret(id_param(&p)).await?;
    Ok(audited(
        json(StatusCode::OK, &crate::wire::SecretJson(&s)),
        secret_audit(&s),
    ))
}

pub(crate) async fn update(
    State(app): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    // dockerd decodes the body before it looks at the version.
    let input = secret_input(read_json(&headers, body).await?)?;
    app.manager
        .authorize_secret(&caller, "secret.update", id_param(&p))
        .await?;
    // The new labels must keep the secret in the caller's scope.
    app.manager
        .authorize_new_secret(&caller, "secret.update", &input.name, &input.labels)
        .await?;
    let version = q
        .get("version")
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| ApiError::bad_request("invalid secret version"))?;
    let before = app.manager.inspect_secret(id_param(&p)).await?;
    // For the audit record only.
    let fingerprint = match &input.data {
        Some(d) if app.manager.auditing() => app.manager.value_fingerprint(d).await,
        _ => None,
    };
    app.manager
        .update_secret(id_param(&p), version, input)
        .await?;
    let mut a = secret_audit(&before);
    // A stack secret's new value is a new object under the same name.
    if let Ok(now) = app.manager.inspect_secret(&before.name).await
        && now.id != before.id
    {
        a.objects
            .push(AuditObject::new("secret", now.id.clone(), now.name.clone()));
        if let Some(fp) = fingerprint {
            a.details.push(("value_hmac".into(), fp));
        }
    }
    Ok(audited(body::empty(StatusCode::OK), a))
}

pub(crate) async fn delete(
    State(app): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<Response> {
    app.manager
        .authorize_secret(&caller, "secret.remove", id_param(&p))
        .await?;
    let before = app.manager.inspect_secret(id_param(&p)).await?;
    app.manager.remove_secret(id_param(&p)).await?;
    Ok(audited(
        body::empty(StatusCode::NO_CONTENT),
        secret_audit(&before),
    ))
}
