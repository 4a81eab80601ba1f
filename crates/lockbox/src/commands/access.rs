//! `lockbox whoami|user|role|grant`: users, their client certificates, roles and grants,
//! through the daemon's `/lockbox/v1/` access API (see `docs/access.md`).
//!
//! The clap definitions of these nouns live next to their code (`access/*.rs`); `cli.rs` only
//! registers them.

mod bundle;
mod grant;
mod role;
mod user;

use std::process::ExitCode;

use http::Method;
use lockbox_client::{Client, ClientError, Response};
use serde_json::{Value, json};

pub(crate) use grant::GrantCmd;
pub(crate) use role::RoleCmd;
pub(crate) use user::UserCmd;

pub(crate) async fn user(client: &Client, cmd: UserCmd) -> anyhow::Result<ExitCode> {
    user::run(client, cmd).await
}

pub(crate) async fn role(client: &Client, cmd: RoleCmd) -> anyhow::Result<ExitCode> {
    role::run(client, cmd).await
}

pub(crate) async fn grant(client: &Client, cmd: GrantCmd) -> anyhow::Result<ExitCode> {
    grant::run(client, cmd).await
}

/// Sends a request to an unversioned lockbox path (`/lockbox/v1/...`); non-2xx answers become
/// [`ClientError::Daemon`] with the daemon's message (`Error response from daemon: ...`).
pub(crate) async fn send(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Response, ClientError> {
    let resp = client.raw(method, path, body).await?;
    if resp.status.is_success() {
        return Ok(resp);
    }
    Err(daemon_error(resp.status, &resp.body))
}

/// The error for a non-2xx answer: the `message` of docker's error JSON, else the body.
pub(crate) fn daemon_error(status: http::StatusCode, body: &[u8]) -> ClientError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let message = if message.is_empty() {
        status.to_string()
    } else {
        message
    };
    ClientError::Daemon { status, message }
}

/// `GET` an unversioned lockbox path and decode JSON.
pub(crate) async fn get(client: &Client, path: &str) -> Result<Value, ClientError> {
    send(client, Method::GET, path, None).await?.json()
}

/// A path segment, percent-encoded.
fn seg(s: &str) -> String {
    super::secret::query_escape(s)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn strings_of(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// docker's `CREATED` column: "2 hours ago" ("" for a missing or bad time).
fn ago(t: &str, now: time::OffsetDateTime) -> String {
    match lockbox_format::parse_time(t) {
        Ok(then) => {
            let d = std::time::Duration::try_from(now - then).unwrap_or_default();
            format!("{} ago", lockbox_format::human_duration(d))
        }
        Err(_) => String::new(),
    }
}

/// `s` cut to `max` characters, the last one replaced by `…` (docker's `Ellipsis`).
pub(crate) fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A list in docker's formatter style: `-q` prints `quiet_field` of each row, no format (or
/// `table`) uses `default`, `json` prints `{{json .}}` of each row, anything else is a (`table`)
/// Go template over the rows' fields.
fn list_text(
    format: Option<&str>,
    quiet: Option<&str>,
    default: &str,
    headers: &[(&str, &str)],
    rows: &[Value],
) -> Result<String, lockbox_format::FormatError> {
    let quiet_format;
    let format = match (quiet, format) {
        (Some(field), _) => {
            quiet_format = format!("{{{{.{field}}}}}");
            quiet_format.as_str()
        }
        (None, None | Some("" | "table")) => default,
        (None, Some(f)) => f,
    };
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    lockbox_format::table(format, &headers, rows)
}

/// `inspect` of named objects from a list answer: prints the found ones like `docker inspect`
/// and returns whether all were found (errors on stderr).
fn inspect_named(
    list: &Value,
    names: &[String],
    kind: &str,
    format: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let all = list.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for n in names {
        match all.iter().find(|v| str_of(v, "Name") == n) {
            Some(v) => found.push(v.clone()),
            None => errors.push(format!("Error: No such {kind}: {n}")),
        }
    }
    let (out, render_errors) = lockbox_format::inspect_with_errors(&found, format);
    print!("{out}");
    errors.extend(render_errors.iter().map(ToString::to_string));
    for e in &errors {
        eprintln!("{e}");
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Removes each of `ids` with `DELETE {base}/{id}`, printing the removed ones (as `docker * rm`).
async fn remove_each(client: &Client, base: &str, ids: &[String]) -> anyhow::Result<ExitCode> {
    let mut errors = Vec::new();
    for id in ids {
        match send(client, Method::DELETE, &format!("{base}/{}", seg(id)), None).await {
            Ok(_) => println!("{id}"),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        anyhow::bail!("{}", errors.join("\n"))
    }
}

/// `lockbox whoami`.
pub(crate) async fn whoami(client: &Client, format: Option<&str>) -> anyhow::Result<ExitCode> {
    let me = get(client, "/lockbox/v1/whoami").await?;
    match format {
        Some("json") => println!("{}", lockbox_format::go_json(&me, false)),
        Some(f) if !f.is_empty() => println!("{}", lockbox_format::render(f, &me)?),
        _ => print!("{}", whoami_text(&me)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// The default `whoami` output: the identity, then a table of permissions per scope.
fn whoami_text(me: &Value) -> anyhow::Result<String> {
    let groups = strings_of(me, "Groups");
    let admin = me.get("Admin").and_then(Value::as_bool).unwrap_or(false);
    let mut out = format!(
        "User:    {}\nGroups:  {}\nSource:  {}\nAdmin:   {admin}\n",
        str_of(me, "User"),
        if groups.is_empty() {
            "-".to_owned()
        } else {
            groups.join(", ")
        },
        str_of(me, "Source"),
    );
    let rows: Vec<Value> = me
        .get("Permissions")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(scope, perms)| {
            let perms: Vec<&str> = perms
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            json!({"Scope": scope, "Permissions": perms.join(", ")})
        })
        .collect();
    if rows.is_empty() {
        out.push_str("Permissions: none\n");
        return Ok(out);
    }
    out.push('\n');
    let headers: serde_json::Map<String, Value> =
        [("Scope", "SCOPE"), ("Permissions", "PERMISSIONS")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect();
    out.push_str(&lockbox_format::table(
        "table {{.Scope}}\t{{.Permissions}}",
        &headers,
        &rows,
    )?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whoami_default_output() {
        let me = json!({
            "User": "alice", "Groups": ["devs", "ops"], "Source": "unix uid=1001 pid=123",
            "Admin": false,
            "Permissions": {"all": ["service.view", "secret.list"], "name:app-*": ["secret.create"]}
        });
        assert_eq!(
            whoami_text(&me).unwrap(),
            "User:    alice\nGroups:  devs, ops\nSource:  unix uid=1001 pid=123\nAdmin:   false\n\n\
             SCOPE        PERMISSIONS\n\
             all          service.view, secret.list\n\
             name:app-*   secret.create\n"
        );
        let nobody = json!({"User": "uid:1002", "Groups": [], "Source": "unix uid=1002 pid=9",
                            "Admin": false, "Permissions": {}});
        assert_eq!(
            whoami_text(&nobody).unwrap(),
            "User:    uid:1002\nGroups:  -\nSource:  unix uid=1002 pid=9\nAdmin:   false\nPermissions: none\n"
        );
    }

    #[test]
    fn ellipsis_counts_characters() {
        assert_eq!(ellipsis("abc", 3), "abc");
        assert_eq!(ellipsis("abcd", 3), "ab…");
        assert_eq!(ellipsis("ééé", 2), "é…");
    }

    #[test]
    fn ago_of_times() {
        let now = time::macros::datetime!(2026-11-23 12:00 UTC);
        assert_eq!(ago("2026-11-23T10:00:00Z", now), "2 hours ago");
        assert_eq!(ago("bad", now), "");
    }

    #[test]
    fn daemon_errors_read_docker_json() {
        let e = daemon_error(
            http::StatusCode::CONFLICT,
            br#"{"message":"user alice exists"}"#,
        );
        assert_eq!(
            e.to_string(),
            "Error response from daemon: user alice exists"
        );
        let e = daemon_error(http::StatusCode::FORBIDDEN, b"");
        assert_eq!(e.to_string(), "Error response from daemon: 403 Forbidden");
    }
}
