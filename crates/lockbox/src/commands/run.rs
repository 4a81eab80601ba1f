//! `lockbox run`: a one-off task with secrets, its output attached and its exit code as
//! lockbox's own, on either executor (image `host`: a host process; any other image: a
//! container on the daemon's `--docker-host`).
//!
//! ```text
//! lockbox run --rm --secret npmrc,target=/root/.npmrc host -- npm ci
//! lockbox run --rm -e A=1 -u 1000 --secret source=db,target=db,mode=0400 busybox cat /run/secrets/db
//! lockbox run -d --secret db busybox:local sleep 600      # prints the run's service ID
//! ```
//!
//! The daemon runs it as a service of one replica that is never restarted
//! (`POST /lockbox/v1/run`, see `lockbox-api`): it shows in `service ls`/`ps`, its logs stay
//! available with `service logs` until it is removed, and `--rm` removes it once it ended.
//! Secrets are named, never sent: their values go from the daemon's store to the task's tmpfs.
//!
//! Exit status: the task's, or 125 when it could not run, 126 when its command could not be
//! invoked, 127 when its command was not found (as `docker run`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use http::Method;
use http_body_util::{BodyExt, Full};
use lockbox_client::Client;
use serde_json::{Map, Value, json};

use crate::cli::RunArgs;

/// One `--secret`: docker's long syntax (`source=,target=,uid=,gid=,mode=`), the short one (a
/// bare name), and a bare name followed by options (`npmrc,target=/root/.npmrc`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SecretOpt {
    source: String,
    target: String,
    uid: String,
    gid: String,
    mode: u32,
}

fn parse_mode(v: &str) -> Result<u32, String> {
    let parsed = if let Some(o) = v.strip_prefix("0o").or_else(|| v.strip_prefix("0O")) {
        u32::from_str_radix(o, 8)
    } else if let Some(x) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u32::from_str_radix(x, 16)
    } else if v.len() > 1 && v.starts_with('0') {
        u32::from_str_radix(&v[1..], 8)
    } else {
        v.parse()
    };
    parsed.map_err(|_| format!("invalid mode {v:?}"))
}

fn parse_secret(value: &str) -> Result<SecretOpt, String> {
    let mut s = SecretOpt {
        source: String::new(),
        target: String::new(),
        uid: "0".into(),
        gid: "0".into(),
        mode: 0o444,
    };
    for (i, field) in value.split(',').enumerate() {
        let Some((k, v)) = field.split_once('=') else {
            if i == 0 && !field.is_empty() {
                s.source = field.to_owned();
                continue;
            }
            return Err(format!("invalid field '{field}' must be a key=value pair"));
        };
        match k.to_ascii_lowercase().as_str() {
            "source" | "src" => s.source = v.to_owned(),
            "target" => s.target = v.to_owned(),
            "uid" => s.uid = v.to_owned(),
            "gid" => s.gid = v.to_owned(),
            "mode" => s.mode = parse_mode(v)?,
            _ => return Err(format!("invalid field key {k}")),
        }
    }
    if s.source.is_empty() {
        return Err(format!("source is required in {value:?}"));
    }
    if s.target.is_empty() {
        s.target = s.source.clone();
    }
    for (what, v) in [("uid", &s.uid), ("gid", &s.gid)] {
        if v.parse::<u32>().is_err() {
            return Err(format!("invalid {what} {v:?}: must be a number"));
        }
    }
    Ok(s)
}

/// `-e K=V`, or `-e K` for the value of K in this environment (left out when unset), as
/// `docker run`.
fn env_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                std::env::var(e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect()
}

/// The ServiceSpec of the run (the daemon makes it a one-off and resolves secret names).
fn spec_of(a: &RunArgs) -> anyhow::Result<Value> {
    let mut words = a.image_and_args.iter();
    let image = words
        .next()
        .context("\"lockbox run\" requires at least 1 argument")?;
    let mut args: Vec<String> = words.cloned().collect();
    if args.first().is_some_and(|w| w == "--") {
        args.remove(0);
    }
    let mut cs = Map::new();
    cs.insert("Image".into(), json!(image));
    if !a.labels.is_empty() {
        let labels: Map<String, Value> = a
            .labels
            .iter()
            .map(|l| {
                let (k, v) = super::key_value(l);
                (k, json!(v))
            })
            .collect();
        cs.insert("Labels".into(), Value::Object(labels));
    }
    if let Some(ep) = &a.entrypoint {
        cs.insert("Command".into(), json!([ep]));
    }
    if !args.is_empty() {
        cs.insert("Args".into(), json!(args));
    }
    if let Some(h) = &a.hostname {
        cs.insert("Hostname".into(), json!(h));
    }
    let env = env_list(&a.env);
    if !env.is_empty() {
        cs.insert("Env".into(), json!(env));
    }
    if let Some(w) = &a.workdir {
        cs.insert("Dir".into(), json!(w));
    }
    if let Some(u) = &a.user {
        cs.insert("User".into(), json!(u));
    }
    if !a.groups.is_empty() {
        cs.insert("Groups".into(), json!(a.groups));
    }
    let mut secrets = Vec::new();
    let mut targets = std::collections::HashSet::new();
    for v in &a.secrets {
        let s = parse_secret(v)
            .map_err(|e| anyhow::anyhow!("invalid argument {v:?} for \"--secret\" flag: {e}"))?;
        if !targets.insert(s.target.clone()) {
            bail!("duplicate secret target for {} not allowed", s.source);
        }
        secrets.push(json!({
            "File": {"Name": s.target, "UID": s.uid, "GID": s.gid, "Mode": s.mode},
            "SecretName": s.source,
        }));
    }
    if !secrets.is_empty() {
        cs.insert("Secrets".into(), Value::Array(secrets));
    }
    let mut spec = json!({
        "TaskTemplate": {"ContainerSpec": Value::Object(cs), "RestartPolicy": {"Condition": "none"}},
        "Mode": {"Replicated": {"Replicas": 1}},
    });
    if let Some(n) = &a.name {
        spec["Name"] = json!(n);
    }
    Ok(spec)
}

fn exit_code(code: i64) -> ExitCode {
    ExitCode::from(u8::try_from(code.rem_euclid(256)).unwrap_or(125))
}

/// Whether an exit's error is worth printing (not just "the command exited non-zero").
fn print_err(err: &str) {
    if !err.is_empty() && !err.starts_with("task: non-zero exit") {
        eprintln!("lockbox: Error response from daemon: {err}");
    }
}

pub(crate) async fn run(client: &Client, a: &RunArgs) -> anyhow::Result<ExitCode> {
    let spec = match spec_of(a) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lockbox: {e:#}\nSee 'lockbox run --help'.");
            return Ok(ExitCode::from(125));
        }
    };
    let body = json!({"Spec": spec, "AutoRemove": a.rm, "Detach": a.detach});
    if a.detach {
        let resp = match client
            .request(Method::POST, "/lockbox/v1/run", Some(&body))
            .await
        {
            Ok(r) => r.json()?,
            Err(e) => {
                eprintln!("lockbox: {e}");
                return Ok(ExitCode::from(125));
            }
        };
        let state = resp.get("State").and_then(Value::as_str).unwrap_or("");
        let code = resp.get("ExitCode").and_then(Value::as_i64).unwrap_or(0);
        if matches!(state, "failed" | "rejected") && code >= 125 {
            print_err(resp.get("Err").and_then(Value::as_str).unwrap_or(""));
            return Ok(exit_code(code));
        }
        println!(
            "{}",
            resp.get("ID").and_then(Value::as_str).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    attached(client, &body).await
}

/// Frames of the run stream: (stream, payload).
fn next_frame(buf: &mut BytesMut) -> Option<(u8, Vec<u8>)> {
    if buf.len() < 8 {
        return None;
    }
    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if buf.len() < 8 + len {
        return None;
    }
    let stream = buf[0];
    buf.advance(8);
    Some((stream, buf.split_to(len).to_vec()))
}

async fn attached(client: &Client, body: &Value) -> anyhow::Result<ExitCode> {
    let req = http::Request::builder()
        .method(Method::POST)
        .uri(format!("/v{}/lockbox/v1/run", lockbox_client::API_VERSION))
        .header(http::header::HOST, "lockbox")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes::Bytes::from(serde_json::to_vec(body)?)))?;
    // Plain or TLS (`--tlsverify`), as the client is set up.
    let resp = client.send_request(req).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let bytes = body.collect().await?.to_bytes();
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
        eprintln!("lockbox: Error response from daemon: {message}");
        return Ok(ExitCode::from(125));
    }
    let mut buf = BytesMut::new();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the run's output")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some((stream, payload)) = next_frame(&mut buf) {
            match stream {
                1 => {
                    let mut o = stdout.lock();
                    o.write_all(&payload)?;
                    o.flush()?;
                }
                2 => {
                    let mut e = stderr.lock();
                    e.write_all(&payload)?;
                    e.flush()?;
                }
                4 => {
                    let ev: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
                    if ev.get("Event").and_then(Value::as_str) == Some("exited") {
                        print_err(ev.get("Err").and_then(Value::as_str).unwrap_or(""));
                        let code = ev.get("ExitCode").and_then(Value::as_i64).unwrap_or(125);
                        return Ok(exit_code(code));
                    }
                }
                _ => {}
            }
        }
    }
    eprintln!("lockbox: the daemon ended the run before its task ended");
    Ok(ExitCode::from(125))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets() {
        let s = parse_secret("npmrc,target=/root/.npmrc").unwrap();
        assert_eq!(
            (s.source.as_str(), s.target.as_str(), s.mode),
            ("npmrc", "/root/.npmrc", 0o444)
        );
        let s = parse_secret("source=db,target=x,uid=1000,gid=1001,mode=0400").unwrap();
        assert_eq!(
            (s.uid.as_str(), s.gid.as_str(), s.mode, s.target.as_str()),
            ("1000", "1001", 0o400, "x")
        );
        assert_eq!(parse_secret("db").unwrap().target, "db");
        assert_eq!(parse_secret("src=db,mode=256").unwrap().mode, 256);
        assert!(parse_secret("target=x").is_err());
        assert!(parse_secret("db,uid=x").is_err());
        assert!(parse_secret("db,bogus=1").is_err());
    }

    #[test]
    fn frames() {
        let mut b = BytesMut::from(&[1u8, 0, 0, 0, 0, 0, 0, 2, b'h', b'i', 2, 0][..]);
        assert_eq!(next_frame(&mut b), Some((1, b"hi".to_vec())));
        assert_eq!(next_frame(&mut b), None);
        assert_eq!(b.len(), 2);
    }
}
