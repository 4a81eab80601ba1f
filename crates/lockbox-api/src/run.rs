//! `POST /lockbox/v1/run`: a one-off task (`lockbox run`).
//!
//! Request body:
//!
//! ```json
//! {"Spec": {<a Docker ServiceSpec>}, "AutoRemove": false, "Detach": false}
//! ```
//!
//! The spec's secret references may name a secret only (`{"SecretName": "npmrc", "File":
//! {...}}`): the daemon resolves names to IDs. The daemon makes the service a one-off: one
//! replica, restart condition `none`, label `com.lockbox.run`, and a name `run-<id>` unless
//! one is given.
//!
//! Attached (`Detach: false`), the answer is `200` with `Content-Type:
//! application/vnd.lockbox.run-stream`: frames of an 8-byte header (stream, 0, 0, 0, big-endian
//! length) and a payload, as Docker's multiplexed streams. Stream 1 is the task's stdout, 2 its
//! stderr, 0 an empty keep-alive (after a second without output), 4 a JSON event:
//! `{"Event":"created","ID":<service>}` first, `{"Event":"started","TaskID":..,
//! "ContainerID":..}` when it runs, and last
//! `{"Event":"exited","TaskID":..,"State":..,"ExitCode":..,"Err":..}`. Closing the connection
//! stops the run (its service is removed).
//!
//! Detached, the answer is `201` once the task runs or ended:
//! `{"ID":<service>,"TaskID":..,"State":"running"|<final state>,"ExitCode":..,"Err":..}`.

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use lockbox_core::{RunEvent, RunExit, RunRequest};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::body::{self, json, read_json};
use crate::error::{ApiError, ApiResult};

/// The service label that marks a run.
pub(crate) const RUN_LABEL: &str = "com.lockbox.run";

/// Stream number of JSON event frames.
const EVENT_STREAM: u8 = 4;
/// An empty frame of stream 0 is sent after this long without output.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(1);

fn frame(stream: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    Bytes::from(out)
}

fn event_frame(v: &Value) -> Bytes {
    frame(EVENT_STREAM, v.to_string().as_bytes())
}

fn exit_json(service_id: &str, e: &RunExit) -> Value {
    json!({
        "Event": "exited",
        "ID": service_id,
        "TaskID": e.task_id,
        "State": e.state.as_str(),
        "ExitCode": e.code,
        "Err": e.err,
    })
}

/// An object member by exact name, created as `{}` when missing or not an object.
fn member<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = m.entry(key.to_owned()).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(o) => o,
        _ => unreachable!("just made an object"),
    }
}

/// Makes the spec a one-off and resolves secret names to IDs.
async fn one_off_spec(app: &AppState, spec: &mut Value) -> ApiResult<()> {
    if spec.is_null() {
        *spec = json!({});
    }
    let Value::Object(s) = spec else {
        return Err(ApiError::bad_request(
            "invalid JSON: json: cannot unmarshal into Go value of type swarm.ServiceSpec",
        ));
    };
    let name = s.get("Name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        let id = lockbox_types::new_id();
        s.insert("Name".into(), json!(format!("run-{}", &id[..12])));
    }
    member(s, "Labels").insert(RUN_LABEL.into(), json!("true"));
    s.insert("Mode".into(), json!({"Replicated": {"Replicas": 1}}));
    let tt = member(s, "TaskTemplate");
    tt.insert(
        "RestartPolicy".into(),
        json!({"Condition": "none", "MaxAttempts": 0}),
    );
    let cs = member(tt, "ContainerSpec");
    if let Some(Value::Array(refs)) = cs.get_mut("Secrets") {
        for r in refs.iter_mut() {
            let Value::Object(r) = r else { continue };
            let id = body::string(Some(r), "SecretID", "SecretReference.SecretID")?;
            if !id.is_empty() {
                continue;
            }
            let name = body::string(Some(r), "SecretName", "SecretReference.SecretName")?;
            if name.is_empty() {
                return Err(ApiError::bad_request("malformed secret reference"));
            }
            let info = app.manager.inspect_secret(&name).await?;
            r.insert("SecretID".into(), json!(info.id));
            r.insert("SecretName".into(), json!(info.name));
        }
    }
    Ok(())
}

pub(crate) async fn run(
    State(app): State<AppState>,
    axum::Extension(crate::access::Caller(caller)): axum::Extension<crate::access::Caller>,
    headers: HeaderMap,
    req_body: Body,
) -> ApiResult<Response> {
    let v = read_json(&headers, req_body).await?;
    let obj = body::object(&v, "run request")?;
    let auto_remove = body::boolean(obj, "AutoRemove", "RunRequest.AutoRemove")?;
    let detach = body::boolean(obj, "Detach", "RunRequest.Detach")?;
    let mut spec = body::field(obj, "Spec").cloned().unwrap_or(Value::Null);
    one_off_spec(&app, &mut spec).await?;
    let spec = crate::services::service_spec(&spec)?;
    app.manager
        .authorize_secret_refs(&caller, &spec.task.secrets)
        .await?;
    let mut session = app
        .manager
        .clone()
        .run(RunRequest {
            spec,
            auto_remove,
            detach,
        })
        .await?;
    let service_id = session.service_id.clone();

    if detach {
        let mut out = json!({ "ID": service_id });
        while let Some(ev) = session.events.recv().await {
            match ev {
                RunEvent::Started { task_id, .. } => {
                    out = json!({ "ID": service_id, "TaskID": task_id, "State": "running" });
                    break;
                }
                RunEvent::Ended(e) => {
                    out = exit_json(&service_id, &e);
                    if let Some(o) = out.as_object_mut() {
                        o.remove("Event");
                    }
                    break;
                }
                RunEvent::Output { .. } => {}
            }
        }
        return Ok(json(StatusCode::CREATED, &out));
    }

    let created = event_frame(&json!({ "Event": "created", "ID": service_id }));
    let events = futures::stream::unfold(
        (Some(created), session, service_id),
        |(first, mut session, service_id)| async move {
            if let Some(f) = first {
                return Some((Ok::<_, std::io::Error>(f), (None, session, service_id)));
            }
            // An idle connection is written to now and then: that is how a client that went
            // away is noticed (and its run stopped).
            let ev = match tokio::time::timeout(KEEPALIVE, session.events.recv()).await {
                Ok(ev) => ev?,
                Err(_) => {
                    return Some((Ok(frame(0, b"")), (None, session, service_id)));
                }
            };
            let bytes = match ev {
                RunEvent::Output { stream, data } => frame(stream, &data),
                RunEvent::Started {
                    task_id,
                    container_id,
                } => event_frame(&json!({
                    "Event": "started",
                    "TaskID": task_id,
                    "ContainerID": container_id,
                })),
                RunEvent::Ended(e) => event_frame(&exit_json(&service_id, &e)),
            };
            Some((Ok(bytes), (None, session, service_id)))
        },
    );
    let mut resp = (StatusCode::OK, Body::from_stream(events)).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.lockbox.run-stream"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let f = frame(2, b"abc");
        assert_eq!(&f[..], &[2, 0, 0, 0, 0, 0, 0, 3, b'a', b'b', b'c']);
    }
}
