//! `lockbox service logs`: the daemon's multiplexed log stream (8-byte
//! frame headers: stream, 0, 0, 0, big-endian length), each line prefixed
//! with `service.slot.task@node    | ` as docker does.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use lockbox_client::Client;
use serde_json::Value;

use super::api::{Api, BodyStream, is_not_found, path_escape, with_query};
use crate::cli::ServiceLogsArgs;

/// docker's `client.ServiceLogs` query (keys sorted as Go's `url.Values`).
fn logs_query(a: &ServiceLogsArgs, since: Option<String>) -> Vec<String> {
    let details = a.details || !a.raw;
    let mut q = Vec::new();
    if details {
        q.push("details=1".to_owned());
    }
    if a.follow {
        q.push("follow=1".into());
    }
    if let Some(s) = since {
        q.push(format!("since={}", super::api::query_escape(&s)));
    }
    q.push("stderr=1".into());
    q.push("stdout=1".into());
    q.push(format!("tail={}", super::api::query_escape(&a.tail)));
    if a.timestamps {
        q.push("timestamps=1".into());
    }
    q
}

/// docker's `timetypes.GetTimestamp` for `--since`: a duration before now,
/// or an RFC 3339 time (as seconds.nanoseconds); other values as given.
fn since_value(s: &str) -> anyhow::Result<String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    if let Ok(d) = lockbox_format::parse_go_duration(s) {
        let now = time::OffsetDateTime::now_utc();
        let t = now - time::Duration::nanoseconds(d);
        return Ok(format!("{}.{:09}", t.unix_timestamp(), t.nanosecond()));
    }
    if let Ok(t) = lockbox_format::parse_time(s) {
        return Ok(format!("{}.{:09}", t.unix_timestamp(), t.nanosecond()));
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Ok(s.to_owned());
    }
    bail!("invalid value for \"since\": failed to parse value as time or duration: {s:?}")
}

fn digits(n: i64) -> usize {
    n.to_string().len()
}

/// Go's `url.QueryUnescape`.
fn query_unescape(s: &str) -> anyhow::Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3).unwrap_or("");
                let v = u8::from_str_radix(hex, 16).map_err(|_| {
                    anyhow::anyhow!(
                        "invalid URL escape {:?}",
                        s.get(i..(i + 3).min(s.len())).unwrap_or("")
                    )
                })?;
                out.push(v);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `logdetails.Parse`.
fn parse_details(s: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in s.split(',') {
        let Some((k, v)) = pair.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!("invalid details format");
        };
        let (k, v) = (query_unescape(k)?, query_unescape(v)?);
        out.retain(|(x, _)| *x != k);
        out.push((k, v));
    }
    Ok(out)
}

struct Formatter<'a> {
    api: &'a Api<'a>,
    args: &'a ServiceLogsArgs,
    padding: usize,
    names: HashMap<String, String>,
    cache: HashMap<(String, String, String), String>,
}

impl Formatter<'_> {
    async fn resolve(&mut self, kind: &str, id: &str) -> String {
        if self.args.no_resolve {
            return id.to_owned();
        }
        let key = format!("{kind}/{id}");
        if let Some(n) = self.names.get(&key) {
            return n.clone();
        }
        let name = if kind == "node" {
            match self.api.get(&format!("/nodes/{}", path_escape(id))).await {
                Ok(n) => {
                    let spec = n
                        .pointer("/Spec/Name")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let host = n
                        .pointer("/Description/Hostname")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if !spec.is_empty() {
                        spec.to_owned()
                    } else if !host.is_empty() {
                        host.to_owned()
                    } else {
                        id.to_owned()
                    }
                }
                Err(_) => id.to_owned(),
            }
        } else {
            match self
                .api
                .get(&format!(
                    "/services/{}?insertDefaults=false",
                    path_escape(id)
                ))
                .await
            {
                Ok(s) => s
                    .pointer("/Spec/Name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                Err(_) => id.to_owned(),
            }
        };
        self.names.insert(key, name.clone());
        name
    }

    /// `taskFormatter.format`: `service.slot[.task]@node` and padding.
    async fn context(&mut self, node: &str, service: &str, task: &str) -> anyhow::Result<String> {
        let key = (node.to_owned(), service.to_owned(), task.to_owned());
        if let Some(c) = self.cache.get(&key) {
            return Ok(c.clone());
        }
        let node_name = self.resolve("node", node).await;
        let service_name = self.resolve("service", service).await;
        let t = self
            .api
            .get(&format!("/tasks/{}", path_escape(task)))
            .await?;
        let slot = t.get("Slot").and_then(Value::as_i64).unwrap_or(0);
        let id = t.get("ID").and_then(Value::as_str).unwrap_or("");
        let mut name = format!("{service_name}.{slot}");
        if !self.args.no_task_ids {
            if self.args.no_trunc {
                name = format!("{name}.{id}");
            } else {
                name = format!("{name}.{}", lockbox_format::truncate_id(id));
            }
        }
        let pad = self.padding.saturating_sub(digits(slot));
        let formatted = format!("{name}@{node_name}{}", " ".repeat(pad));
        self.cache.insert(key, formatted.clone());
        Ok(formatted)
    }

    /// `logWriter.Write` for one frame.
    async fn line(&mut self, buf: &[u8]) -> anyhow::Result<Vec<u8>> {
        let parts_wanted = if self.args.timestamps { 3 } else { 2 };
        let details_index = parts_wanted - 2;
        let parts: Vec<&[u8]> = buf.splitn(parts_wanted, |b| *b == b' ').collect();
        if parts.len() != parts_wanted {
            bail!(
                "invalid context in log message: {}",
                String::from_utf8_lossy(buf)
            );
        }
        let mut details = parse_details(&String::from_utf8_lossy(parts[details_index]))?;
        let mut take = |k: &str, what: &str| -> anyhow::Result<String> {
            match details.iter().position(|(x, _)| x == k) {
                Some(i) => Ok(details.remove(i).1),
                None => bail!("missing {what} id in details"),
            }
        };
        let node = take("com.docker.swarm.node.id", "node")?;
        let service = take("com.docker.swarm.service.id", "service")?;
        let task = take("com.docker.swarm.task.id", "task")?;
        let mut out = Vec::new();
        if self.args.timestamps {
            out.extend_from_slice(parts[0]);
            out.push(b' ');
        }
        let formatted = self.context(&node, &service, &task).await?;
        out.extend_from_slice(formatted.as_bytes());
        out.extend_from_slice(b"    | ");
        if self.args.details {
            let mut d: Vec<String> = details.iter().map(|(k, v)| format!("{k}={v}")).collect();
            d.sort();
            out.extend_from_slice(d.join(",").as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(parts[details_index + 1]);
        Ok(out)
    }
}

fn write_to(stream: u8, data: &[u8]) {
    if stream == 2 {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(data);
        let _ = e.flush();
    } else {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(data);
        let _ = o.flush();
    }
}

/// Reads docker's multiplexed frames from `body` (docker's `StdCopy`).
async fn demux(body: &mut BodyStream, mut f: Option<&mut Formatter<'_>>) -> anyhow::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        while buf.len() >= 8 {
            let size = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
            if buf.len() < 8 + size {
                break;
            }
            let stream = buf[0];
            let frame: Vec<u8> = buf[8..8 + size].to_vec();
            buf.drain(..8 + size);
            match stream {
                0..=2 => {}
                3 => bail!("{}", String::from_utf8_lossy(&frame)),
                other => bail!("Unrecognized input header: {other}"),
            }
            let data = match f.as_deref_mut() {
                Some(f) => f.line(&frame).await?,
                None => frame,
            };
            write_to(stream, &data);
        }
        match body.next().await? {
            Some(chunk) => buf.extend_from_slice(&chunk),
            None => return Ok(()),
        }
    }
}

pub(crate) async fn run(client: &Client, a: &ServiceLogsArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(client).await?;
    let target = path_escape(&a.target);
    let (kind, tty, max_len) = match api
        .get(&format!("/services/{target}?insertDefaults=false"))
        .await
    {
        Ok(svc) => {
            let tty = svc
                .pointer("/Spec/TaskTemplate/ContainerSpec/TTY")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let max = svc
                .pointer("/Spec/Mode/Replicated/Replicas")
                .and_then(Value::as_i64)
                .map_or(1, digits);
            ("services", tty, max)
        }
        Err(e) if is_not_found(&e) => match api.get(&format!("/tasks/{target}")).await {
            Ok(task) => {
                let tty = task
                    .pointer("/Spec/ContainerSpec/TTY")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let slot = task.get("Slot").and_then(Value::as_i64).unwrap_or(0);
                ("tasks", tty, digits(slot))
            }
            Err(e) if is_not_found(&e) => bail!("no such task or service: {}", a.target),
            Err(e) => return Err(e.into()),
        },
        Err(e) => return Err(e.into()),
    };
    if tty && !a.raw {
        bail!("tty service logs only supported with --raw");
    }
    let since = match &a.since {
        Some(s) if !s.is_empty() => Some(since_value(s)?),
        _ => None,
    };
    let path = with_query(&format!("/{kind}/{target}/logs"), &logs_query(a, since));
    let mut body = api.get_stream(&path).await?;
    if tty {
        while let Some(chunk) = body.next().await? {
            write_to(1, &chunk);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.raw {
        demux(&mut body, None).await?;
    } else {
        let mut f = Formatter {
            api: &api,
            args: a,
            padding: max_len,
            names: HashMap::new(),
            cache: HashMap::new(),
        };
        demux(&mut body, Some(&mut f)).await?;
    }
    Ok(ExitCode::SUCCESS)
}
