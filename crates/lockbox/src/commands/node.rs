//! `lockbox node ls|inspect|update|ps`, with docker's flags and output.

use std::process::ExitCode;

use anyhow::bail;
use lockbox_client::Client;
use serde_json::{Value, json};

use super::service::{
    Api, PsOptions, flag_usage_error, node_reference, parse_filters, path_escape, print_tasks,
    with_query,
};
use crate::cli::NodeCmd;

pub(crate) async fn run(client: &Client, cmd: NodeCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        NodeCmd::Ls {
            quiet,
            filters,
            format,
        } => ls(client, quiet, &filters, format.as_deref()).await,
        NodeCmd::Inspect {
            pretty,
            format,
            nodes,
        } => inspect(client, pretty, format, &nodes).await,
        NodeCmd::Update {
            role,
            availability,
            label_add,
            label_rm,
            node,
        } => update(client, role, availability, &label_add, &label_rm, &node).await,
        NodeCmd::Ps {
            no_trunc,
            no_resolve,
            filters,
            format,
            quiet,
            nodes,
        } => {
            let opts = PsOptions {
                quiet,
                quiet_no_trunc: false,
                no_trunc,
                no_resolve,
                format,
            };
            ps(client, &opts, &filters, nodes).await
        }
        NodeCmd::Demote { nodes } => set_role(client, &nodes, "worker").await,
        NodeCmd::Promote { nodes } => set_role(client, &nodes, "manager").await,
        NodeCmd::Rm { force, nodes } => rm(client, force, &nodes).await,
    }
}

/// `node demote` / `node promote`: the node's spec with the new role, as docker sends it.
async fn set_role(client: &Client, nodes: &[String], role: &str) -> anyhow::Result<ExitCode> {
    let api = Api::new(client).await?;
    for node in nodes {
        let current = api.get(&format!("/nodes/{}", path_escape(node))).await?;
        let mut spec = current.get("Spec").cloned().unwrap_or_else(|| json!({}));
        if spec.get("Role").and_then(Value::as_str) == Some(role) {
            match role {
                "worker" => println!("Node {node} is already a worker."),
                _ => println!("Node {node} is already a manager."),
            }
            continue;
        }
        if let Some(obj) = spec.as_object_mut() {
            obj.insert("Role".into(), json!(role));
        }
        let version = current
            .pointer("/Version/Index")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let id = current
            .get("ID")
            .and_then(Value::as_str)
            .unwrap_or_default();
        api.post_go_json(
            &format!("/nodes/{}/update?version={version}", path_escape(id)),
            &lockbox_format::node_spec_go(&spec),
        )
        .await?;
        match role {
            "worker" => println!("Manager {node} demoted in the swarm."),
            _ => println!("Node {node} promoted to a manager in the swarm."),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `node rm [--force]`: each node in turn; the errors together at the end, as docker does.
async fn rm(client: &Client, force: bool, nodes: &[String]) -> anyhow::Result<ExitCode> {
    let api = Api::new(client).await?;
    let mut errors = Vec::new();
    for node in nodes {
        let mut path = format!("/nodes/{}", path_escape(node));
        if force {
            path.push_str("?force=1");
        }
        match api.send(http::Method::DELETE, &path, None).await {
            Ok(_) => println!("{node}"),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("{}", errors.join("\n"))
    }
}

async fn ls(
    client: &Client,
    quiet: bool,
    filters: &[String],
    format: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let filters = match parse_filters(filters) {
        Ok(f) => f,
        Err(msg) => return Ok(flag_usage_error(&msg, "node ls", "[OPTIONS]")),
    };
    let api = Api::new(client).await?;
    let nodes = api.get(&with_query("/nodes", &[filters.query()])).await?;
    let nodes = nodes.as_array().cloned().unwrap_or_default();
    let info = if !nodes.is_empty() && !quiet {
        Some(api.get("/info").await?)
    } else {
        None
    };
    let out = lockbox_format::node_list(&nodes, info.as_ref(), format, quiet)?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

async fn inspect(
    client: &Client,
    pretty: bool,
    format: Option<String>,
    refs: &[String],
) -> anyhow::Result<ExitCode> {
    let f = if pretty {
        "pretty".to_owned()
    } else {
        format.unwrap_or_default()
    };
    if f.starts_with("pretty") && f != "pretty" {
        bail!("cannot supply extra formatting options to the pretty template");
    }
    let api = Api::new(client).await?;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for r in refs {
        let got = match node_reference(&api, r).await {
            Ok(id) => api
                .get(&format!("/nodes/{}", path_escape(&id)))
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match got {
            Ok(v) => found.push(v),
            Err(e) => {
                errors.push(e.to_string());
                if f == "pretty" {
                    bail!("{}", errors.join("\n"));
                }
            }
        }
    }
    let (out, render_errors) = lockbox_format::node_inspect_with_errors(&found, Some(&f), false);
    print!("{out}");
    errors.extend(render_errors.iter().map(ToString::to_string));
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("{}", errors.join("\n"))
    }
}

async fn update(
    client: &Client,
    role: Option<String>,
    availability: Option<String>,
    label_add: &[String],
    label_rm: &[String],
    node: &str,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(client).await?;
    let current = api.get(&format!("/nodes/{}", path_escape(node))).await?;
    let mut spec = current.get("Spec").cloned().unwrap_or_else(|| json!({}));
    let Some(obj) = spec.as_object_mut() else {
        bail!("unexpected node spec from the daemon");
    };
    if let Some(r) = role {
        obj.insert("Role".into(), json!(r));
    }
    if let Some(a) = availability {
        obj.insert("Availability".into(), json!(a));
    }
    let labels = obj.entry("Labels").or_insert(Value::Null);
    if !labels.is_object() {
        *labels = json!({});
    }
    if let Some(labels) = labels.as_object_mut() {
        for l in label_add {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            labels.insert(k.to_owned(), json!(v));
        }
        for k in label_rm {
            if labels.remove(k).is_none() {
                bail!("key {k} doesn't exist in node's labels");
            }
        }
    }
    let version = current
        .pointer("/Version/Index")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let id = current
        .get("ID")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let body = lockbox_format::node_spec_go(&spec);
    api.post_go_json(
        &format!("/nodes/{}/update?version={version}", path_escape(id)),
        &body,
    )
    .await?;
    println!("{node}");
    Ok(ExitCode::SUCCESS)
}

async fn ps(
    client: &Client,
    opts: &PsOptions,
    filter_flags: &[String],
    nodes: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let base = match parse_filters(filter_flags) {
        Ok(f) => f,
        Err(msg) => return Ok(flag_usage_error(&msg, "node ps", "[OPTIONS] [NODE...]")),
    };
    let nodes = if nodes.is_empty() {
        vec!["self".to_owned()]
    } else {
        nodes
    };
    let api = Api::new(client).await?;
    let mut errors = Vec::new();
    let mut tasks = Vec::new();
    for n in &nodes {
        let node = match node_reference(&api, n).await {
            Ok(id) => match api.get(&format!("/nodes/{}", path_escape(&id))).await {
                Ok(node) => node,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            },
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let mut filter = base.clone();
        filter.add(
            "node",
            node.get("ID").and_then(Value::as_str).unwrap_or_default(),
        );
        match api.get(&with_query("/tasks", &[filter.query()])).await {
            Ok(list) => tasks.extend(list.as_array().cloned().unwrap_or_default()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if (errors.is_empty() || !tasks.is_empty())
        && let Err(e) = print_tasks(&api, &tasks, opts).await
    {
        errors.push(e.to_string());
    }
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("{}", errors.join("\n"))
    }
}
