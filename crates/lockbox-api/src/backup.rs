//! `POST /lockbox/v1/swarm/backup`: an encrypted backup of the whole replicated state, taken
//! online.
//!
//! The request body is `{"Passphrase": "..."}`; the daemon derives the key from it and seals
//! the backup before it leaves the process, so the answer (`application/octet-stream`, the
//! backup file's bytes) never holds a value in plaintext. The passphrase is wiped once used.
//! The access layer asks for `swarm.manage` and audits the request as `swarm.backup`; core
//! then asks for every permission (the admin role). The counts of what the backup holds come
//! back in `Lockbox-Backup-*` headers.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode};
use lockbox_core::AuditObject;
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

use crate::AppState;
use crate::access::{Audited, Caller, audited};
use crate::body::read_json;
use crate::error::{ApiError, ApiResult};

/// Wipes every string of a parsed body.
fn wipe(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(wipe),
        Value::Object(m) => m.values_mut().for_each(wipe),
        _ => {}
    }
}

/// The passphrase of a `{"Passphrase": "..."}` body (field names matched case-insensitively,
/// as Go's decoder does), copied into a buffer that is wiped on drop.
fn passphrase(v: &Value) -> ApiResult<Zeroizing<Vec<u8>>> {
    let obj = match v {
        Value::Object(m) => m,
        Value::Null => {
            return Err(ApiError::bad_request(
                "backup: a passphrase is required (body {\"Passphrase\": \"...\"})",
            ));
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid JSON: the backup request must be an object",
            ));
        }
    };
    let mut found = None;
    for (k, val) in obj {
        if !k.eq_ignore_ascii_case("Passphrase") {
            return Err(ApiError::bad_request(format!(
                "invalid JSON: unknown field {k:?} in the backup request"
            )));
        }
        match val {
            Value::String(s) => found = Some(Zeroizing::new(s.as_bytes().to_vec())),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid JSON: Passphrase must be a string",
                ));
            }
        }
    }
    match found {
        Some(p) if !p.is_empty() => Ok(p),
        _ => Err(ApiError::bad_request("backup: the passphrase is empty")),
    }
}

fn header(n: impl ToString) -> HeaderValue {
    HeaderValue::from_str(&n.to_string()).unwrap_or(HeaderValue::from_static(""))
}

/// The handler.
pub(crate) async fn backup(
    State(app): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    headers: HeaderMap,
    b: Body,
) -> ApiResult<Response> {
    let mut v = read_json(&headers, b).await?;
    let pass = passphrase(&v);
    wipe(&mut v);
    let file = app.manager.backup(&caller, pass?).await?;
    let s = &file.summary;
    let audit = Audited {
        objects: vec![AuditObject::new("cluster", s.cluster_id.clone(), "")],
        details: vec![
            ("version".into(), s.version.to_string()),
            ("secrets".into(), s.secrets.to_string()),
            ("services".into(), s.services.to_string()),
            ("users".into(), s.users.to_string()),
            ("grants".into(), s.grants.to_string()),
            ("bytes".into(), file.bytes.len().to_string()),
        ],
    };
    let mut resp = Response::new(Body::from(file.bytes));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert("Lockbox-Backup-Cluster", header(&s.cluster_id));
    h.insert("Lockbox-Backup-Version", header(s.version));
    h.insert("Lockbox-Backup-Secrets", header(s.secrets));
    h.insert("Lockbox-Backup-Services", header(s.services));
    h.insert("Lockbox-Backup-Tasks", header(s.tasks));
    h.insert("Lockbox-Backup-Nodes", header(s.nodes));
    h.insert("Lockbox-Backup-Users", header(s.users));
    h.insert("Lockbox-Backup-Grants", header(s.grants));
    h.insert("Lockbox-Backup-Autolock", header(s.autolock));
    Ok(audited(resp, audit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_passphrase_field() {
        let v = serde_json::json!({"passphrase": "pw"});
        assert_eq!(&passphrase(&v).unwrap()[..], b"pw");
        for bad in [
            serde_json::json!(null),
            serde_json::json!({}),
            serde_json::json!({"Passphrase": ""}),
            serde_json::json!({"Passphrase": 5}),
            serde_json::json!({"Passphrase": "pw", "Other": 1}),
            serde_json::json!(["pw"]),
        ] {
            assert!(passphrase(&bad).is_err(), "{bad}");
        }
        let mut v = serde_json::json!({"Passphrase": "secret"});
        wipe(&mut v);
        assert_eq!(v["Passphrase"], "");
    }
}
