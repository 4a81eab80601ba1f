//! `lockbox stack deploy|ls|services|ps|rm|config`: compose files as swarm stacks, with
//! docker's requests, object names, labels and output, so that `docker stack` and
//! `lockbox stack` see the same stacks (see `docs/stacks.md`).

mod deploy;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use http::Method;
use lockbox_client::Client;
use lockbox_compose::convert::LABEL_NAMESPACE;
use lockbox_compose::{LoadOptions, Project};
use serde_json::{Value, json};

use super::service::{
    Api, Filters, PsOptions, flag_usage_error, is_not_found, parse_filters, path_escape,
    print_tasks, with_query,
};
use crate::cli::StackCmd;

pub(crate) async fn run(client: &Client, cmd: StackCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        StackCmd::Deploy(a) => deploy::run(client, &a).await,
        StackCmd::Ls { format } => ls(client, format.as_deref()).await,
        StackCmd::Services {
            quiet,
            format,
            filters,
            stack,
        } => services(client, quiet, format.as_deref(), &filters, &stack).await,
        StackCmd::Ps {
            no_trunc,
            no_resolve,
            filters,
            quiet,
            format,
            stack,
        } => {
            let opts = PsOptions {
                quiet,
                quiet_no_trunc: false,
                no_trunc,
                no_resolve,
                format,
            };
            ps(client, &opts, &filters, &stack).await
        }
        StackCmd::Rm { detach, stacks } => rm(client, detach.unwrap_or(true), &stacks).await,
        StackCmd::Config {
            compose_files,
            skip_interpolation,
        } => config(&compose_files, skip_interpolation),
    }
}

/// docker's `validateStackName`.
fn validate_name(namespace: &str) -> anyhow::Result<()> {
    if namespace
        .trim_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .is_empty()
    {
        bail!("invalid stack name: {namespace:?}");
    }
    Ok(())
}

/// `label=com.docker.stack.namespace=NS`.
fn stack_filter(namespace: &str) -> Filters {
    let mut f = Filters::default();
    f.add("label", &format!("{LABEL_NAMESPACE}={namespace}"));
    f
}

/// Loads the compose files (`-` is STDIN) with the process environment, printing what is
/// ignored on stderr.
fn load_project(files: &[String], skip_interpolation: bool) -> anyhow::Result<Project> {
    let stdin = if files.iter().any(|f| f == "-") {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Some(buf)
    } else {
        None
    };
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let project = lockbox_compose::load(&LoadOptions {
        files: files.to_vec(),
        env,
        stdin,
        skip_interpolation,
        cwd: None,
    })?;
    for w in &project.warnings {
        eprintln!("warning: {w}");
    }
    Ok(project)
}

/// The services of a stack (`GET /services?filters=label=...`).
async fn stack_services(api: &Api<'_>, namespace: &str) -> anyhow::Result<Vec<Value>> {
    let list = api
        .get(&with_query("/services", &[stack_filter(namespace).query()]))
        .await?;
    Ok(list.as_array().cloned().unwrap_or_default())
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `stack config`: the resolved file on stdout; secrets whose value cannot be read on
/// stderr, each with its name (exit status 1 then).
fn config(files: &[String], skip_interpolation: bool) -> anyhow::Result<ExitCode> {
    let project = load_project(files, skip_interpolation)?;
    print!("{}", project.to_yaml());
    let problems = project.secret_problems();
    for p in &problems {
        eprintln!("{p}");
    }
    if !problems.is_empty() {
        bail!(
            "{} of the file's secrets cannot be read (see above)",
            problems.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `stack ls`: every service with a namespace label, counted by namespace.
async fn ls(client: &Client, format: Option<&str>) -> anyhow::Result<ExitCode> {
    let api = Api::new(client).await?;
    let mut f = Filters::default();
    f.add("label", LABEL_NAMESPACE);
    let list = api.get(&with_query("/services", &[f.query()])).await?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for s in list.as_array().into_iter().flatten() {
        let Some(ns) = s
            .pointer("/Spec/Labels")
            .and_then(|l| l.get(LABEL_NAMESPACE))
            .and_then(Value::as_str)
        else {
            bail!(
                "cannot get label {LABEL_NAMESPACE} for service {}",
                str_at(s, "/ID")
            );
        };
        *counts.entry(ns.to_owned()).or_default() += 1;
    }
    let mut names: Vec<&String> = counts.keys().collect();
    names.sort_by(|a, b| lockbox_format::natural_cmp(a, b));
    let rows: Vec<Value> = names
        .into_iter()
        .map(|n| json!({"Name": n, "Services": counts[n].to_string()}))
        .collect();
    let format = match format {
        None | Some("" | "table") => "table {{.Name}}\t{{.Services}}",
        Some(f) => f,
    };
    let headers: serde_json::Map<String, Value> = [("Name", "NAME"), ("Services", "SERVICES")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    print!("{}", lockbox_format::table(format, &headers, &rows)?);
    Ok(ExitCode::SUCCESS)
}

/// `stack services`: `service ls` of the stack's services.
async fn services(
    client: &Client,
    quiet: bool,
    format: Option<&str>,
    filter_flags: &[String],
    namespace: &str,
) -> anyhow::Result<ExitCode> {
    validate_name(namespace)?;
    let mut filters = match parse_filters(filter_flags) {
        Ok(f) => f,
        Err(msg) => {
            return Ok(flag_usage_error(&msg, "stack services", "[OPTIONS] STACK"));
        }
    };
    filters.add("label", &format!("{LABEL_NAMESPACE}={namespace}"));
    let api = Api::new(client).await?;
    let mut query = vec![filters.query()];
    if !quiet {
        query.push("status=true".into());
    }
    let list = api.get(&with_query("/services", &query)).await?;
    let mut services = list.as_array().cloned().unwrap_or_default();
    if services.is_empty() {
        eprintln!("Nothing found in stack: {namespace}");
        return Ok(ExitCode::SUCCESS);
    }
    services.sort_by(|a, b| {
        lockbox_format::natural_cmp(str_at(a, "/Spec/Name"), str_at(b, "/Spec/Name"))
    });
    print!(
        "{}",
        lockbox_format::service_list(&services, format, quiet)?
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether a task belongs to the stack: its container carries the namespace label (as every
/// task of a stack service does), or its service is one of the stack's.
fn in_stack(task: &Value, namespace: &str, service_ids: &BTreeSet<String>) -> bool {
    task.pointer("/Spec/ContainerSpec/Labels")
        .and_then(|l| l.get(LABEL_NAMESPACE))
        .and_then(Value::as_str)
        == Some(namespace)
        || service_ids.contains(str_at(task, "/ServiceID"))
}

/// The stack's tasks (filtered here too: a daemon may ignore the `label` filter on tasks).
async fn stack_tasks(
    api: &Api<'_>,
    namespace: &str,
    mut filters: Filters,
) -> anyhow::Result<Vec<Value>> {
    filters.add("label", &format!("{LABEL_NAMESPACE}={namespace}"));
    let tasks = api.get(&with_query("/tasks", &[filters.query()])).await?;
    let ids: BTreeSet<String> = stack_services(api, namespace)
        .await?
        .iter()
        .map(|s| str_at(s, "/ID").to_owned())
        .collect();
    Ok(tasks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| in_stack(t, namespace, &ids))
        .cloned()
        .collect())
}

/// `stack ps`: the task table of the stack's tasks.
async fn ps(
    client: &Client,
    opts: &PsOptions,
    filter_flags: &[String],
    namespace: &str,
) -> anyhow::Result<ExitCode> {
    validate_name(namespace)?;
    let filters = match parse_filters(filter_flags) {
        Ok(f) => f,
        Err(msg) => return Ok(flag_usage_error(&msg, "stack ps", "[OPTIONS] STACK")),
    };
    let api = Api::new(client).await?;
    let tasks = stack_tasks(&api, namespace, filters).await?;
    if tasks.is_empty() {
        bail!("nothing found in stack: {namespace}");
    }
    print_tasks(&api, &tasks, opts).await?;
    Ok(ExitCode::SUCCESS)
}

/// `GET path` as a list; a daemon without the endpoint (404) has none.
async fn list_or_none(api: &Api<'_>, path: &str) -> anyhow::Result<Vec<Value>> {
    match api.get(path).await {
        Ok(v) => Ok(v.as_array().cloned().unwrap_or_default()),
        Err(e) if is_not_found(&e) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes each object, printing `Removing KIND NAME`; whether any failed.
async fn remove_all(
    api: &Api<'_>,
    kind: &str,
    endpoint: &str,
    objects: &[(String, String)],
) -> bool {
    let mut failed = false;
    for (id, name) in objects {
        println!("Removing {kind} {name}");
        if let Err(e) = api
            .send(
                Method::DELETE,
                &format!("/{endpoint}/{}", path_escape(id)),
                None,
            )
            .await
        {
            failed = true;
            eprintln!("Failed to remove {kind} {id}: {e}");
        }
    }
    failed
}

fn id_and_name(v: &Value, name_pointer: &str) -> (String, String) {
    // Networks spell it `Id`.
    let id = match str_at(v, "/ID") {
        "" => str_at(v, "/Id"),
        id => id,
    };
    (id.to_owned(), str_at(v, name_pointer).to_owned())
}

/// `stack rm`: services, secrets (every version), configs, networks of each stack.
async fn rm(client: &Client, detach: bool, stacks: &[String]) -> anyhow::Result<ExitCode> {
    for s in stacks {
        validate_name(s)?;
    }
    let api = Api::new(client).await?;
    let mut errors = Vec::new();
    for namespace in stacks {
        let filter = stack_filter(namespace).query();
        let mut services: Vec<(String, String)> = stack_services(&api, namespace)
            .await?
            .iter()
            .map(|s| id_and_name(s, "/Spec/Name"))
            .collect();
        services.sort_by(|a, b| a.1.cmp(&b.1));
        let networks: Vec<(String, String)> = list_or_none(
            &api,
            &with_query("/networks", std::slice::from_ref(&filter)),
        )
        .await?
        .iter()
        .map(|n| id_and_name(n, "/Name"))
        .collect();
        let secrets: Vec<(String, String)> = api
            .get(&with_query("/secrets", std::slice::from_ref(&filter)))
            .await?
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| id_and_name(s, "/Spec/Name"))
            .collect();
        let configs: Vec<(String, String)> =
            list_or_none(&api, &with_query("/configs", std::slice::from_ref(&filter)))
                .await?
                .iter()
                .map(|c| id_and_name(c, "/Spec/Name"))
                .collect();
        if services.is_empty() && networks.is_empty() && secrets.is_empty() && configs.is_empty() {
            eprintln!("Nothing found in stack: {namespace}");
            continue;
        }
        let mut failed = remove_all(&api, "service", "services", &services).await;
        failed |= remove_all(&api, "secret", "secrets", &secrets).await;
        failed |= remove_all(&api, "config", "configs", &configs).await;
        failed |= remove_all(&api, "network", "networks", &networks).await;
        if failed {
            errors.push(format!(
                "failed to remove some resources from stack: {namespace}"
            ));
            continue;
        }
        if !detach && let Err(e) = wait_on_tasks(&api, namespace).await {
            errors.push(format!(
                "failed to wait on tasks of stack: {namespace}: {e}"
            ));
        }
    }
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("{}", errors.join("\n"))
    }
}

/// Waits until every task of the stack reached a terminal state (`rm --detach=false`).
async fn wait_on_tasks(api: &Api<'_>, namespace: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let tasks = stack_tasks(api, namespace, Filters::default()).await?;
        let live = tasks.iter().any(|t| {
            matches!(
                str_at(t, "/Status/State"),
                "new"
                    | "allocated"
                    | "pending"
                    | "assigned"
                    | "accepted"
                    | "preparing"
                    | "ready"
                    | "starting"
                    | "running"
            )
        });
        if !live {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("tasks still running after 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
