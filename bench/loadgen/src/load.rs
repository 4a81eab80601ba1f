//! The load run: N connections, each a worker issuing one request at a time, until a shared
//! count or a deadline is reached. Latency is measured per request, from just before the
//! request is written to when the whole response body has been read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};

use crate::http::{Conn, Endpoint, Response, query_escape};

/// What each request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Op {
    /// `POST /secrets/create` with a unique name (`PREFIX<n>`).
    Create,
    /// `GET /secrets/{name}` over the secrets whose name starts with PREFIX.
    Inspect,
    /// `GET /secrets` (every secret).
    List,
    /// `GET /secrets?filters=FILTER`.
    ListFilter,
    /// `DELETE /secrets/{name}`, each secret whose name starts with PREFIX once.
    Remove,
    /// `POST /services/create` (REPLICAS tasks, one secret) and wait until every task runs.
    Service,
}

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stop {
    Count(u64),
    Duration(Duration),
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) endpoint: Endpoint,
    pub(crate) api: String,
    pub(crate) op: Op,
    pub(crate) connections: usize,
    pub(crate) stop: Stop,
    pub(crate) prefix: String,
    pub(crate) size: usize,
    pub(crate) filter: Option<String>,
    pub(crate) expect: Option<usize>,
    pub(crate) image: String,
    pub(crate) replicas: u64,
    pub(crate) poll: Duration,
    pub(crate) timeout: Duration,
    pub(crate) tag: Option<String>,
}

/// The result of a run, one JSON line in the results file.
#[derive(Debug, Serialize)]
pub(crate) struct Outcome {
    pub(crate) target: String,
    pub(crate) op: Op,
    pub(crate) connections: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tag: Option<String>,
    pub(crate) ops: u64,
    pub(crate) errors: u64,
    pub(crate) elapsed_s: f64,
    pub(crate) throughput: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) mean_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) filter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) items: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) first_error: Option<String>,
}

struct Shared {
    plan: Plan,
    next: AtomicU64,
    limit: u64,
    deadline: Option<Instant>,
    names: Vec<String>,
    data_b64: String,
    secret_ref: Option<(String, String)>,
}

#[derive(Default)]
struct WorkerResult {
    lat_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    items: Option<usize>,
}

impl WorkerResult {
    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
}

/// Names of the secrets whose name starts with `prefix`.
pub(crate) async fn names_with_prefix(
    conn: &mut Conn,
    api: &str,
    prefix: &str,
) -> Result<Vec<String>> {
    let filter = json!({ "name": [prefix] }).to_string();
    let path = format!("/v{api}/secrets?filters={}", query_escape(&filter));
    let r = conn.request(Method::GET, &path, None).await?;
    if r.status != StatusCode::OK {
        bail!("listing secrets: {}", r.message());
    }
    let v: Vec<Value> = serde_json::from_slice(&r.body).context("decoding the secret list")?;
    let mut names: Vec<String> = v
        .iter()
        .filter_map(|s| s.pointer("/Spec/Name").and_then(Value::as_str))
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect();
    names.sort();
    Ok(names)
}

/// Counts the objects in a JSON array of secrets without decoding it: every secret has
/// exactly one `"ID":` key (Spec has none).
fn count_ids(body: &[u8]) -> usize {
    body.windows(5).filter(|w| w == b"\"ID\":").count()
}

pub(crate) async fn run(plan: Plan, target: &str) -> Result<Outcome> {
    let mut setup = Conn::connect(&plan.endpoint).await?;
    let names = match plan.op {
        Op::Inspect | Op::Remove => {
            let names = names_with_prefix(&mut setup, &plan.api, &plan.prefix).await?;
            if names.is_empty() {
                bail!("no secret named {}* to {:?}", plan.prefix, plan.op);
            }
            names
        }
        _ => Vec::new(),
    };
    let secret_ref = if plan.op == Op::Service {
        Some(service_secret(&mut setup, &plan).await?)
    } else {
        None
    };
    let limit = match (plan.op, plan.stop) {
        (Op::Remove, Stop::Count(n)) => n.min(names.len() as u64),
        (Op::Remove, Stop::Duration(_)) => names.len() as u64,
        (_, Stop::Count(n)) => n,
        (_, Stop::Duration(_)) => u64::MAX,
    };
    let value: Vec<u8> = (0..plan.size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut conns = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        conns.push(Conn::connect(&plan.endpoint).await?);
    }
    let start = Instant::now();
    let shared = Arc::new(Shared {
        deadline: match plan.stop {
            Stop::Duration(d) => Some(start + d),
            Stop::Count(_) => None,
        },
        plan,
        next: AtomicU64::new(0),
        limit,
        names,
        data_b64: base64::engine::general_purpose::STANDARD.encode(&value),
        secret_ref,
    });
    let mut workers = tokio::task::JoinSet::new();
    for conn in conns {
        let shared = shared.clone();
        workers.spawn(worker(shared, conn));
    }
    let mut lat: Vec<u32> = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    let mut items = None;
    while let Some(r) = workers.join_next().await {
        let r = r?;
        lat.extend_from_slice(&r.lat_us);
        errors += r.errors;
        if first_error.is_none() {
            first_error = r.first_error;
        }
        items = items.or(r.items);
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
        f64::from(lat[i]) / 1000.0
    };
    let ops = lat.len() as u64;
    let mean = if lat.is_empty() {
        0.0
    } else {
        lat.iter().map(|&l| f64::from(l)).sum::<f64>() / lat.len() as f64 / 1000.0
    };
    let plan = &shared.plan;
    if let (Some(want), Some(got)) = (plan.expect, items)
        && want != got
    {
        errors += 1;
        first_error.get_or_insert(format!("listed {got} secrets, expected {want}"));
    }
    Ok(Outcome {
        target: target.to_owned(),
        op: plan.op,
        connections: plan.connections,
        tag: plan.tag.clone(),
        ops,
        errors,
        elapsed_s: elapsed,
        throughput: if elapsed > 0.0 {
            ops as f64 / elapsed
        } else {
            0.0
        },
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        mean_ms: mean,
        filter: plan.filter.clone(),
        items,
        first_error,
    })
}

async fn worker(shared: Arc<Shared>, mut conn: Conn) -> WorkerResult {
    let mut out = WorkerResult::default();
    let plan = &shared.plan;
    let api = &plan.api;
    loop {
        if let Some(d) = shared.deadline
            && Instant::now() >= d
        {
            break;
        }
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= shared.limit {
            break;
        }
        let t0 = Instant::now();
        let result: Result<Option<String>> = match plan.op {
            Op::Create => {
                let body = format!(
                    r#"{{"Name":"{}{i}","Labels":{{"bench":"{}"}},"Data":"{}"}}"#,
                    plan.prefix, plan.prefix, shared.data_b64
                );
                let r = conn
                    .request(
                        Method::POST,
                        &format!("/v{api}/secrets/create"),
                        Some(Bytes::from(body)),
                    )
                    .await;
                expect(r, StatusCode::CREATED)
            }
            Op::Inspect => {
                let name = &shared.names[(i % shared.names.len() as u64) as usize];
                let r = conn
                    .request(Method::GET, &format!("/v{api}/secrets/{name}"), None)
                    .await;
                expect(r, StatusCode::OK)
            }
            Op::List | Op::ListFilter => {
                let path = match (&plan.filter, plan.op) {
                    (Some(f), Op::ListFilter) => {
                        format!("/v{api}/secrets?filters={}", query_escape(f))
                    }
                    _ => format!("/v{api}/secrets"),
                };
                match conn.request(Method::GET, &path, None).await {
                    Ok(r) if r.status == StatusCode::OK => {
                        let lat = t0.elapsed();
                        // Counting happens outside the measured time.
                        out.items = Some(count_ids(&r.body));
                        out.lat_us.push(micros(lat));
                        continue;
                    }
                    Ok(r) => Ok(Some(r.message())),
                    Err(e) => Err(e),
                }
            }
            Op::Remove => {
                let name = &shared.names[i as usize];
                let r = conn
                    .request(Method::DELETE, &format!("/v{api}/secrets/{name}"), None)
                    .await;
                match r {
                    Ok(r) if r.status.is_success() => Ok(None),
                    Ok(r) => Ok(Some(r.message())),
                    Err(e) => Err(e),
                }
            }
            Op::Service => match service_once(&mut conn, &shared, i).await {
                Ok((lat, err)) => {
                    if let Some(e) = err {
                        out.error(e);
                    } else {
                        out.lat_us.push(micros(lat));
                    }
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        let lat = t0.elapsed();
        match result {
            Ok(None) => out.lat_us.push(micros(lat)),
            Ok(Some(msg)) => out.error(msg),
            Err(e) => out.error(format!("{e:#}")),
        }
    }
    out
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn expect(r: Result<Response>, want: StatusCode) -> Result<Option<String>> {
    let r = r?;
    if r.status == want {
        Ok(None)
    } else {
        Ok(Some(r.message()))
    }
}

// ---------------------------------------------------------------------------------------------
// Services

/// Creates (or finds) the secret the benchmark services mount; returns (ID, name).
async fn service_secret(conn: &mut Conn, plan: &Plan) -> Result<(String, String)> {
    let name = format!("{}secret", plan.prefix);
    let api = &plan.api;
    let body = json!({
        "Name": name,
        "Data": base64::engine::general_purpose::STANDARD.encode(b"bench secret value"),
    });
    let r = conn
        .request(
            Method::POST,
            &format!("/v{api}/secrets/create"),
            Some(Bytes::from(body.to_string())),
        )
        .await?;
    if r.status != StatusCode::CREATED && r.status != StatusCode::CONFLICT {
        bail!("creating the service secret: {}", r.message());
    }
    let r = conn
        .request(Method::GET, &format!("/v{api}/secrets/{name}"), None)
        .await?;
    if r.status != StatusCode::OK {
        bail!("inspecting the service secret: {}", r.message());
    }
    let v: Value = serde_json::from_slice(&r.body)?;
    let id = v
        .get("ID")
        .and_then(Value::as_str)
        .context("secret without ID")?
        .to_owned();
    Ok((id, name))
}

/// One service: create, wait until REPLICAS tasks run (measured), then remove it and wait until
/// its tasks are gone (not measured). Returns the latency, or an error text.
async fn service_once(
    conn: &mut Conn,
    shared: &Shared,
    i: u64,
) -> Result<(Duration, Option<String>)> {
    let plan = &shared.plan;
    let api = &plan.api;
    let (secret_id, secret_name) = shared.secret_ref.clone().context("no service secret")?;
    let name = format!("{}svc{i}", plan.prefix);
    let spec = json!({
        "Name": name,
        "Labels": { "bench": plan.prefix },
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": plan.image,
                "Command": ["sleep", "1000"],
                "StopGracePeriod": 200_000_000u64,
                "Secrets": [{
                    "File": { "Name": "bench", "UID": "0", "GID": "0", "Mode": 292 },
                    "SecretID": secret_id,
                    "SecretName": secret_name,
                }],
            },
        },
        "Mode": { "Replicated": { "Replicas": plan.replicas } },
    });
    let body = Bytes::from(spec.to_string());
    let t0 = Instant::now();
    let r = conn
        .request(
            Method::POST,
            &format!("/v{api}/services/create"),
            Some(body),
        )
        .await?;
    if r.status != StatusCode::CREATED {
        return Ok((t0.elapsed(), Some(r.message())));
    }
    let v: Value = serde_json::from_slice(&r.body)?;
    let id = v
        .get("ID")
        .and_then(Value::as_str)
        .context("service without ID")?
        .to_owned();
    let filter = json!({ "service": [id], "desired-state": ["running"] }).to_string();
    let tasks_path = format!("/v{api}/tasks?filters={}", query_escape(&filter));
    let mut outcome = None;
    let latency = loop {
        let r = conn.request(Method::GET, &tasks_path, None).await?;
        if r.status != StatusCode::OK {
            outcome = Some(r.message());
            break t0.elapsed();
        }
        let tasks: Vec<Value> = serde_json::from_slice(&r.body)?;
        let running = tasks
            .iter()
            .filter(|t| t.pointer("/Status/State").and_then(Value::as_str) == Some("running"))
            .count() as u64;
        if running >= plan.replicas {
            break t0.elapsed();
        }
        if let Some(failed) = tasks.iter().find(|t| {
            matches!(
                t.pointer("/Status/State").and_then(Value::as_str),
                Some("failed" | "rejected")
            )
        }) {
            outcome = Some(format!(
                "task failed: {}",
                failed
                    .pointer("/Status/Err")
                    .and_then(Value::as_str)
                    .unwrap_or("(no error text)")
            ));
            break t0.elapsed();
        }
        if t0.elapsed() > plan.timeout {
            outcome = Some(format!(
                "only {running} of {} tasks running after {:?}",
                plan.replicas, plan.timeout
            ));
            break t0.elapsed();
        }
        tokio::time::sleep(plan.poll).await;
    };
    remove_service(conn, api, &id, plan.timeout).await?;
    Ok((latency, outcome))
}

/// Removes a service and waits until none of its tasks or containers is left.
async fn remove_service(conn: &mut Conn, api: &str, id: &str, timeout: Duration) -> Result<()> {
    let r = conn
        .request(Method::DELETE, &format!("/v{api}/services/{id}"), None)
        .await?;
    if !r.status.is_success() {
        bail!("removing service {id}: {}", r.message());
    }
    let tasks = format!(
        "/v{api}/tasks?filters={}",
        query_escape(&json!({ "service": [id] }).to_string())
    );
    // dockerd also lists the service's containers; lockbox has no /containers (404 = none).
    let containers = format!(
        "/v{api}/containers/json?all=1&filters={}",
        query_escape(
            &json!({ "label": [format!("com.docker.swarm.service.id={id}")] }).to_string()
        )
    );
    let t0 = Instant::now();
    loop {
        let mut left = 0;
        for path in [&tasks, &containers] {
            let r = conn.request(Method::GET, path, None).await?;
            if r.status == StatusCode::OK {
                let v: Vec<Value> = serde_json::from_slice(&r.body).unwrap_or_default();
                left += v.len();
            }
        }
        if left == 0 {
            return Ok(());
        }
        if t0.elapsed() > timeout {
            bail!("service {id}: {left} tasks or containers left after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
