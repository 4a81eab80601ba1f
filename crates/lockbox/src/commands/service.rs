//! `lockbox service create|update|ls|ps|inspect|logs|scale|rm|rollback`,
//! with docker's flags, requests and output.

mod api;
mod logs;
mod progress;
mod spec;

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;

use anyhow::bail;
use http::Method;
use lockbox_client::Client;
use serde_json::{Value, json};

pub(crate) use api::{Api, Filters, is_not_found, path_escape, with_query};
pub(crate) use progress::wait_on_service;
use spec::{SecretRequest, SpecError};

use crate::cli::{ServiceCmd, ServiceCreateArgs, ServiceUpdateArgs};

pub(crate) async fn run(client: &Client, cmd: ServiceCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ServiceCmd::Create(a) => create(client, &a).await,
        ServiceCmd::Update(a) => update(client, &a).await,
        ServiceCmd::Ls {
            quiet,
            filters,
            format,
        } => ls(client, quiet, &filters, format.as_deref()).await,
        ServiceCmd::Ps {
            quiet,
            no_trunc,
            no_resolve,
            format,
            filters,
            services,
        } => {
            let opts = PsOptions {
                quiet,
                quiet_no_trunc: true,
                no_trunc,
                no_resolve,
                format,
            };
            ps(client, &opts, &filters, &services).await
        }
        ServiceCmd::Inspect {
            pretty,
            format,
            services,
        } => inspect(client, pretty, format, &services).await,
        ServiceCmd::Logs(a) => logs::run(client, &a).await,
        ServiceCmd::Scale { detach, specs } => scale(client, detach, &specs).await,
        ServiceCmd::Rm { services } => rm(client, &services).await,
        ServiceCmd::Rollback {
            quiet,
            detach,
            service,
        } => rollback(client, quiet, detach, &service).await,
    }
}

/// `-f` values as docker's `FilterOpt` parses them; the error is the
/// flag error docker prints.
pub(crate) fn parse_filters(flags: &[String]) -> Result<Filters, String> {
    Filters::parse(flags).map_err(|e| {
        let bad = flags
            .iter()
            .find(|f| !f.is_empty() && !f.contains('='))
            .cloned()
            .unwrap_or_default();
        format!("invalid argument {bad:?} for \"-f, --filter\" flag: {e}")
    })
}

/// Prints a flag error as docker does (usage hint, exit status 125).
fn usage_error(msg: &str, command: &str, usage: &str) -> ExitCode {
    flag_usage_error(msg, &format!("service {command}"), usage)
}

/// A flag error of `lockbox <command>` (e.g. `node ls`).
pub(crate) fn flag_usage_error(msg: &str, command: &str, usage: &str) -> ExitCode {
    eprintln!(
        "{msg}\n\nUsage:  lockbox {command} {usage}\n\nRun 'lockbox {command} --help' for more information"
    );
    ExitCode::from(125)
}

fn spec_error(e: SpecError, command: &str, usage: &str) -> anyhow::Result<ExitCode> {
    match e {
        SpecError::Flag(msg) => Ok(usage_error(&msg, command, usage)),
        SpecError::Other(msg) => bail!("{msg}"),
    }
}

/// docker's `ParseSecrets`: one `GET /secrets?filters={"name":...}`, then
/// exact name matches. References keep the order given.
async fn resolve_secrets(api: &Api<'_>, requested: &[SecretRequest]) -> anyhow::Result<Vec<Value>> {
    if requested.is_empty() {
        return Ok(Vec::new());
    }
    let mut targets: HashSet<&str> = HashSet::new();
    let mut unique: Vec<&SecretRequest> = Vec::new();
    for r in requested {
        if !targets.insert(r.target.as_str()) {
            bail!("duplicate secret target for {} not allowed", r.source);
        }
        unique.push(r);
    }
    let mut filters = Filters::default();
    for r in &unique {
        filters.add("name", &r.source);
    }
    let list = api.get(&with_query("/secrets", &[filters.query()])).await?;
    let found: BTreeMap<String, String> = list
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s.pointer("/Spec/Name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        s.get("ID").and_then(Value::as_str).unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut refs = Vec::new();
    for r in unique {
        let Some(id) = found.get(&r.source) else {
            bail!("secret not found: {}", r.source);
        };
        refs.push(json!({
            "File": {"Name": r.target, "UID": r.uid, "GID": r.gid, "Mode": r.mode},
            "SecretID": id,
            "SecretName": r.source,
        }));
    }
    Ok(refs)
}

fn set_secrets(spec: &mut Value, refs: Vec<Value>) {
    if let Some(cs) = spec
        .pointer_mut("/TaskTemplate/ContainerSpec")
        .and_then(Value::as_object_mut)
    {
        cs.insert("Secrets".into(), Value::Array(refs));
    }
}

fn print_warnings(resp: &Value) {
    if let Some(w) = resp.get("Warnings").and_then(Value::as_array) {
        for warning in w {
            eprintln!("{}", warning.as_str().unwrap_or_default());
        }
    }
}

const CREATE_USAGE: &str = "[OPTIONS] IMAGE [COMMAND] [ARG...]";
const UPDATE_USAGE: &str = "[OPTIONS] SERVICE";

async fn create(client: &Client, a: &ServiceCreateArgs) -> anyhow::Result<ExitCode> {
    let plan = match spec::create_spec(a) {
        Ok(p) => p,
        Err(e) => return spec_error(e, "create", CREATE_USAGE),
    };
    let api = Api::new(client).await?;
    let mut spec = plan.spec;
    if !plan.secrets.is_empty() {
        let refs = resolve_secrets(&api, &plan.secrets).await?;
        set_secrets(&mut spec, refs);
    }
    let body = lockbox_format::service_spec_go(&spec);
    let resp = api.post_go_json("/services/create", &body).await?;
    print_warnings(&resp);
    let id = resp.get("ID").and_then(Value::as_str).unwrap_or_default();
    println!("{id}");
    if a.common.detach || !api.at_least("1.29") {
        return Ok(ExitCode::SUCCESS);
    }
    wait_on_service(&api, id, a.common.quiet).await?;
    Ok(ExitCode::SUCCESS)
}

async fn update(client: &Client, a: &ServiceUpdateArgs) -> anyhow::Result<ExitCode> {
    let secrets_to_add = match spec::check_update(a) {
        Ok(s) => s,
        Err(e) => return spec_error(e, "update", UPDATE_USAGE),
    };
    let api = Api::new(client).await?;
    let service = api
        .get(&format!(
            "/services/{}?insertDefaults=false",
            path_escape(&a.service)
        ))
        .await?;
    if a.rollback && spec::other_than_rollback(a) {
        bail!("other flags may not be combined with --rollback");
    }
    let mut spec = service.get("Spec").cloned().unwrap_or_else(|| json!({}));
    if let Err(e) = spec::apply_update(a, &mut spec) {
        return spec_error(e, "update", UPDATE_USAGE);
    }
    // Secrets: removals first, then additions (one update can re-point a
    // target).
    let mut secrets: Vec<Value> = spec
        .pointer("/TaskTemplate/ContainerSpec/Secrets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    secrets.retain(|s| {
        let name = s.get("SecretName").and_then(Value::as_str).unwrap_or("");
        !a.secret_rm.iter().any(|r| r == name)
    });
    secrets.extend(resolve_secrets(&api, &secrets_to_add).await?);
    set_secrets(&mut spec, secrets);
    normalize_image(&mut spec);
    let version = service
        .pointer("/Version/Index")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let id = service
        .get("ID")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut query = vec!["registryAuthFrom=spec".to_owned()];
    if a.rollback {
        query.push("rollback=previous".into());
    }
    query.push(format!("version={version}"));
    let body = lockbox_format::service_spec_go(&spec);
    let resp = api
        .post_go_json(
            &with_query(&format!("/services/{}/update", path_escape(id)), &query),
            &body,
        )
        .await?;
    print_warnings(&resp);
    println!("{}", a.service);
    if a.common.detach || !api.at_least("1.29") {
        return Ok(ExitCode::SUCCESS);
    }
    wait_on_service(&api, &a.service, a.common.quiet).await?;
    Ok(ExitCode::SUCCESS)
}

/// The docker client sends the image with a tag (`busybox` →
/// `busybox:latest`).
fn normalize_image(spec: &mut Value) {
    if let Some(Value::String(image)) = spec.pointer_mut("/TaskTemplate/ContainerSpec/Image")
        && let Some(tagged) = lockbox_format::image_with_tag(image)
    {
        *image = tagged;
    }
}

/// docker's `AppendServiceStatus`: for daemons older than API 1.41, count
/// desired and running tasks.
async fn append_service_status(api: &Api<'_>, services: &mut [Value]) -> anyhow::Result<()> {
    let mut filters = Filters::default();
    let mut status: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for s in services.iter_mut() {
        if s.get("ServiceStatus").is_some_and(|v| !v.is_null()) {
            continue;
        }
        let id = s.get("ID").and_then(Value::as_str).unwrap_or("").to_owned();
        if let Some(r) = s
            .pointer("/Spec/Mode/Replicated/Replicas")
            .and_then(Value::as_u64)
        {
            s["ServiceStatus"] = json!({"RunningTasks": 0, "DesiredTasks": r, "CompletedTasks": 0});
        } else if s.pointer("/Spec/Mode/Global").is_some_and(|v| !v.is_null()) {
            s["ServiceStatus"] = json!({"RunningTasks": 0, "DesiredTasks": 0, "CompletedTasks": 0});
        } else {
            continue;
        }
        filters.add("service", &id);
        status.insert(id, (0, 0));
    }
    if status.is_empty() {
        return Ok(());
    }
    let tasks = api.get(&with_query("/tasks", &[filters.query()])).await?;
    let tasks = tasks.as_array().cloned().unwrap_or_default();
    if tasks.is_empty() {
        return Ok(());
    }
    let nodes = api.get("/nodes").await?;
    let active: HashSet<String> = nodes
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|n| n.pointer("/Status/State").and_then(Value::as_str) != Some("down"))
                .filter_map(|n| n.get("ID").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for t in &tasks {
        let sid = t.get("ServiceID").and_then(Value::as_str).unwrap_or("");
        let Some(entry) = status.get_mut(sid) else {
            continue;
        };
        if t.get("DesiredState").and_then(Value::as_str) != Some("shutdown") {
            entry.1 += 1;
        }
        let node = t.get("NodeID").and_then(Value::as_str).unwrap_or("");
        if active.contains(node)
            && t.pointer("/Status/State").and_then(Value::as_str) == Some("running")
        {
            entry.0 += 1;
        }
    }
    for s in services.iter_mut() {
        let id = s.get("ID").and_then(Value::as_str).unwrap_or("").to_owned();
        if let Some((running, desired)) = status.get(&id) {
            s["ServiceStatus"] =
                json!({"RunningTasks": running, "DesiredTasks": desired, "CompletedTasks": 0});
        }
    }
    Ok(())
}

async fn ls(
    client: &Client,
    quiet: bool,
    filters: &[String],
    format: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let filters = match parse_filters(filters) {
        Ok(f) => f,
        Err(msg) => return Ok(usage_error(&msg, "ls", "[OPTIONS]")),
    };
    let api = Api::new(client).await?;
    let mut query = vec![filters.query()];
    if !quiet {
        query.push("status=true".into());
    }
    let list = api.get(&with_query("/services", &query)).await?;
    let mut services = list.as_array().cloned().unwrap_or_default();
    if !quiet {
        append_service_status(&api, &mut services).await?;
    }
    let out = lockbox_format::service_list(&services, format, quiet)?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

pub(crate) struct PsOptions {
    /// `-q`: IDs only (`service ps` then also shows them whole).
    pub(crate) quiet: bool,
    /// `service ps` (not `node ps`) turns `-q` into `--no-trunc`.
    pub(crate) quiet_no_trunc: bool,
    pub(crate) no_trunc: bool,
    pub(crate) no_resolve: bool,
    pub(crate) format: Option<String>,
}

/// docker's `idresolver` for the tasks: service and node names (an ID whose
/// lookup fails stays an ID).
pub(crate) async fn resolve_task_names(
    api: &Api<'_>,
    tasks: &[Value],
    no_resolve: bool,
) -> lockbox_format::TaskNames {
    let mut names = lockbox_format::TaskNames::default();
    if no_resolve {
        return names;
    }
    for t in tasks {
        let sid = t.get("ServiceID").and_then(Value::as_str).unwrap_or("");
        if !names.services.contains_key(sid) {
            let name = match api
                .get(&format!(
                    "/services/{}?insertDefaults=false",
                    path_escape(sid)
                ))
                .await
            {
                Ok(s) => s
                    .pointer("/Spec/Name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                Err(_) => sid.to_owned(),
            };
            names.services.insert(sid.to_owned(), name);
        }
    }
    for t in tasks {
        let nid = t.get("NodeID").and_then(Value::as_str).unwrap_or("");
        if !names.nodes.contains_key(nid) {
            let name = match api.get(&format!("/nodes/{}", path_escape(nid))).await {
                Ok(n) => {
                    let spec_name = n
                        .pointer("/Spec/Name")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let host = n
                        .pointer("/Description/Hostname")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if !spec_name.is_empty() {
                        spec_name.to_owned()
                    } else if !host.is_empty() {
                        host.to_owned()
                    } else {
                        nid.to_owned()
                    }
                }
                Err(_) => nid.to_owned(),
            };
            names.nodes.insert(nid.to_owned(), name);
        }
    }
    names
}

/// Prints the task table (docker's `task.Print`).
pub(crate) async fn print_tasks(
    api: &Api<'_>,
    tasks: &[Value],
    opts: &PsOptions,
) -> anyhow::Result<()> {
    let names = resolve_task_names(api, tasks, opts.no_resolve).await;
    let trunc = !(opts.no_trunc || (opts.quiet && opts.quiet_no_trunc));
    let out = lockbox_format::task_list(
        tasks,
        &names,
        opts.format.as_deref(),
        opts.quiet,
        trunc,
        time::OffsetDateTime::now_utc(),
    )?;
    print!("{out}");
    Ok(())
}

/// `node.Reference`: `self` is the node ID from `GET /info`.
pub(crate) async fn node_reference(api: &Api<'_>, node: &str) -> anyhow::Result<String> {
    if node != "self" {
        return Ok(node.to_owned());
    }
    let info = api.get("/info").await?;
    let id = info
        .pointer("/Swarm/NodeID")
        .and_then(Value::as_str)
        .unwrap_or("");
    if id.is_empty() {
        api.get("/nodes").await?;
        bail!("node ID not found in /info");
    }
    Ok(id.to_owned())
}

async fn ps(
    client: &Client,
    opts: &PsOptions,
    filter_flags: &[String],
    services: &[String],
) -> anyhow::Result<ExitCode> {
    let mut filter = match parse_filters(filter_flags) {
        Ok(f) => f,
        Err(msg) => return Ok(usage_error(&msg, "ps", "[OPTIONS] SERVICE [SERVICE...]")),
    };
    let api = Api::new(client).await?;
    let mut by_id = Filters::default();
    let mut by_name = Filters::default();
    for s in services {
        by_id.add("id", s);
        by_name.add("name", s);
    }
    let id_list = api.get(&with_query("/services", &[by_id.query()])).await?;
    let name_list = api
        .get(&with_query("/services", &[by_name.query()]))
        .await?;
    let id_list = id_list.as_array().cloned().unwrap_or_default();
    let name_list = name_list.as_array().cloned().unwrap_or_default();
    let sid = |s: &Value| s.get("ID").and_then(Value::as_str).unwrap_or("").to_owned();
    let mut notfound = Vec::new();
    let mut count = 0;
    'outer: for service in services {
        for s in &id_list {
            if sid(s) == *service {
                filter.add("service", &sid(s));
                count += 1;
                continue 'outer;
            }
        }
        for s in &name_list {
            if s.pointer("/Spec/Name").and_then(Value::as_str) == Some(service.as_str()) {
                filter.add("service", &sid(s));
                count += 1;
                continue 'outer;
            }
        }
        let mut found = false;
        for s in &id_list {
            if sid(s).starts_with(service.as_str()) {
                if found {
                    bail!("multiple services found with provided prefix: {service}");
                }
                filter.add("service", &sid(s));
                count += 1;
                found = true;
            }
        }
        if !found {
            notfound.push(format!("no such service: {service}"));
        }
    }
    if count == 0 {
        bail!("{}", notfound.join("\n"));
    }
    for n in filter.values("node") {
        let r = node_reference(&api, &n).await?;
        filter.remove("node", &n);
        filter.add("node", &r);
    }
    let tasks = api.get(&with_query("/tasks", &[filter.query()])).await?;
    let tasks = tasks.as_array().cloned().unwrap_or_default();
    print_tasks(&api, &tasks, opts).await?;
    if !notfound.is_empty() {
        bail!("{}", notfound.join("\n"));
    }
    Ok(ExitCode::SUCCESS)
}

async fn inspect(
    client: &Client,
    pretty: bool,
    format: Option<String>,
    refs: &[String],
) -> anyhow::Result<ExitCode> {
    if pretty && format.as_deref().is_some_and(|f| !f.is_empty()) {
        bail!("--format is incompatible with human friendly format");
    }
    let f = if pretty {
        "pretty".to_owned()
    } else {
        format.unwrap_or_default()
    };
    if f.starts_with("pretty") && f != "pretty" {
        bail!("Cannot supply extra formatting options to the pretty template");
    }
    let api = Api::new(client).await?;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for r in refs {
        match api
            .get(&format!("/services/{}?insertDefaults=true", path_escape(r)))
            .await
        {
            Ok(v) => found.push(v),
            Err(e) if is_not_found(&e) => errors.push(format!("Error: no such service: {r}")),
            Err(e) => errors.push(e.to_string()),
        }
        if f == "pretty" && !errors.is_empty() {
            // docker renders nothing once a service is missing.
            bail!("{}", errors.join("\n"));
        }
    }
    let (out, render_errors) = lockbox_format::service_inspect_with_errors(
        &found,
        Some(&f),
        false,
        time::OffsetDateTime::now_utc(),
    );
    print!("{out}");
    errors.extend(render_errors.iter().map(ToString::to_string));
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("{}", errors.join("\n"))
    }
}

async fn scale(client: &Client, detach: bool, specs: &[String]) -> anyhow::Result<ExitCode> {
    for s in specs {
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => {}
            _ => bail!(
                "invalid scale specifier '{s}'.\nSee 'lockbox service scale --help'.\n\nUsage:  lockbox service scale SERVICE=REPLICAS [SERVICE=REPLICAS...]\n\nScale one or multiple replicated services"
            ),
        }
    }
    let api = Api::new(client).await?;
    let mut errors = Vec::new();
    let mut scaled = Vec::new();
    for s in specs {
        let (name, n) = s.split_once('=').unwrap_or((s.as_str(), ""));
        let replicas = match n.parse::<u64>() {
            Ok(r) if !n.starts_with('+') => r,
            _ => {
                let err = if n.bytes().all(|b| b.is_ascii_digit()) {
                    format!("strconv.ParseUint: parsing {n:?}: value out of range")
                } else {
                    format!("strconv.ParseUint: parsing {n:?}: invalid syntax")
                };
                errors.push(format!("{name}: invalid replicas value {n}: {err}"));
                continue;
            }
        };
        match scale_one(&api, name, replicas).await {
            Ok(resp) => {
                print_warnings(&resp);
                println!("{name} scaled to {replicas}");
                scaled.push(name.to_owned());
            }
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    if !scaled.is_empty() && !detach && api.at_least("1.29") {
        for name in &scaled {
            if let Err(e) = wait_on_service(&api, name, false).await {
                errors.push(format!("{name}: {e}"));
            }
        }
    }
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("{}", errors.join("\n"))
    }
}

async fn scale_one(api: &Api<'_>, name: &str, replicas: u64) -> anyhow::Result<Value> {
    let service = api
        .get(&format!(
            "/services/{}?insertDefaults=false",
            path_escape(name)
        ))
        .await?;
    let mut spec = service.get("Spec").cloned().unwrap_or_else(|| json!({}));
    if let Some(r) = spec
        .pointer_mut("/Mode/Replicated")
        .filter(|v| !v.is_null())
        .and_then(Value::as_object_mut)
    {
        r.insert("Replicas".into(), json!(replicas));
    } else if let Some(r) = spec
        .pointer_mut("/Mode/ReplicatedJob")
        .filter(|v| !v.is_null())
        .and_then(Value::as_object_mut)
    {
        r.insert("TotalCompletions".into(), json!(replicas));
    } else {
        bail!("scale can only be used with replicated or replicated-job mode");
    }
    normalize_image(&mut spec);
    let version = service
        .pointer("/Version/Index")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let id = service
        .get("ID")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let body = lockbox_format::service_spec_go(&spec);
    Ok(api
        .post_go_json(
            &format!("/services/{}/update?version={version}", path_escape(id)),
            &body,
        )
        .await?)
}

async fn rm(client: &Client, services: &[String]) -> anyhow::Result<ExitCode> {
    let api = Api::new(client).await?;
    let mut errors = Vec::new();
    for s in services {
        match api
            .send(
                Method::DELETE,
                &format!("/services/{}", path_escape(s)),
                None,
            )
            .await
        {
            Ok(_) => println!("{s}"),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("{}", errors.join("\n"))
    }
}

async fn rollback(
    client: &Client,
    quiet: bool,
    detach: bool,
    name: &str,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(client).await?;
    let service = api
        .get(&format!(
            "/services/{}?insertDefaults=false",
            path_escape(name)
        ))
        .await?;
    let mut spec = service.get("Spec").cloned().unwrap_or_else(|| json!({}));
    normalize_image(&mut spec);
    let version = service
        .pointer("/Version/Index")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let id = service
        .get("ID")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let body = lockbox_format::service_spec_go(&spec);
    let resp = api
        .post_go_json(
            &format!(
                "/services/{}/update?rollback=previous&version={version}",
                path_escape(id)
            ),
            &body,
        )
        .await?;
    print_warnings(&resp);
    println!("{name}");
    if detach || !api.at_least("1.29") {
        return Ok(ExitCode::SUCCESS);
    }
    wait_on_service(&api, name, quiet).await?;
    Ok(ExitCode::SUCCESS)
}
