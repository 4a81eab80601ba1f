//! `lockbox stack deploy -c FILE... [--prune] STACK`.
//!
//! The requests `docker stack deploy` makes (networks, secrets, services; names `STACK_key`,
//! label `com.docker.stack.namespace`), with three differences:
//!
//! * every problem that would stop the deploy half-way (a secret file that cannot be read, an
//!   `environment:` secret whose variable is unset, an external secret or network that does
//!   not exist) is reported, each with its name, before anything is created;
//! * a `file:`/`environment:` secret whose content changed gets a new version instead of
//!   docker's `only updates to Labels are allowed`: the versions of a stack secret are a
//!   family in the sense of `lockbox secret versions` (`STACK_key`, then `STACK_key-v2`,
//!   `STACK_key-v3`, ..., labelled `lockbox.family` / `lockbox.version`); the services using
//!   it are rolled onto the new version start-first (unless the file sets
//!   `update_config.order`) keeping each file target, and the old versions are removed once no
//!   service and no running task uses them;
//! * services, networks and secrets are handled in name order, not in Go's map order.
//!
//! Whether a value changed is asked of the daemon, as docker does: `POST /secrets/{id}/update`
//! with the value succeeds only when it is the stored one. No digest of a value is ever
//! stored in a label (a hash of a short password would be an offline guessing oracle).

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use http::{Method, StatusCode};
use lockbox_client::{Client, ClientError};
use lockbox_compose::convert::{self, LABEL_NAMESPACE};
use lockbox_compose::{Project, SecretSource};
use serde_json::{Value, json};
use zeroize::{Zeroize, Zeroizing};

use super::super::secret::versions::{self, Family, SecretVersion, all_versions, version_labels};
use super::super::service::{Api, Filters, is_not_found, path_escape, wait_on_service, with_query};
use super::{load_project, stack_filter, stack_services, str_at, validate_name};
use crate::cli::StackDeployArgs;

const DETACH_NOTICE: &str = "Since --detach=false was not specified, tasks will be created in the background.\nIn a future release, --detach=false will become the default.";

/// How long a deploy waits for a service to roll onto new secret versions before leaving the
/// old versions for a later deploy to remove.
const ROLL_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) async fn run(client: &Client, a: &StackDeployArgs) -> anyhow::Result<ExitCode> {
    validate_name(&a.stack)?;
    let project = load_project(&a.compose_files, false)?;
    match a.resolve_image.as_str() {
        "always" | "changed" | "never" => {}
        other => bail!("invalid option {other} for flag --resolve-image"),
    }
    let detach = a.detach.unwrap_or(true);
    if a.detach.is_none() {
        eprintln!("{DETACH_NOTICE}");
    }
    let api = Api::new(client).await?;
    let info = api.get("/info").await?;
    if info.pointer("/Swarm/ControlAvailable") != Some(&Value::Bool(true)) {
        bail!(
            "this node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again"
        );
    }
    let ns = a.stack.as_str();
    let all_secrets = api.get("/secrets").await?;
    let plan = convert::networks(ns, &project.compose);
    preflight(&api, ns, &project, &all_secrets, &plan).await?;

    let existing = stack_services(&api, ns).await?;
    if a.prune {
        prune(&api, ns, &project, &existing).await;
    }
    create_networks(&api, ns, &plan).await?;
    let secrets = deploy_secrets(&api, ns, &project, &all_secrets, &existing).await?;
    let deployed = deploy_services(&api, ns, &project, &secrets, &existing).await?;
    retire(&api, &secrets, &deployed).await;
    if !detach {
        let mut errors = Vec::new();
        for d in &deployed {
            if let Err(e) = wait_on_service(&api, &d.id, a.quiet).await {
                errors.push(format!("{}: {e:#}", d.id));
            }
        }
        if !errors.is_empty() {
            bail!("{}", errors.join("\n"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Everything that would make the deploy fail half-way, reported at once.
async fn preflight(
    api: &Api<'_>,
    ns: &str,
    project: &Project,
    all_secrets: &Value,
    plan: &convert::NetworkPlan,
) -> anyhow::Result<()> {
    let mut problems: Vec<String> = project
        .secret_problems()
        .iter()
        .map(ToString::to_string)
        .collect();
    let names: BTreeSet<&str> = all_secrets
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| str_at(s, "/Spec/Name"))
        .collect();
    for (key, def) in &project.compose.secrets {
        if def.source == SecretSource::External {
            let name = convert::secret_name(ns, key, def);
            if !names.contains(name.as_str()) {
                problems.push(format!(
                    "secret {key:?}: external secret {name} not found (create it first: lockbox secret create {name} FILE)"
                ));
            }
        }
    }
    for n in &plan.external {
        if matches!(n.as_str(), "default" | "bridge" | "host" | "none")
            || n.starts_with("container:")
        {
            continue;
        }
        match api.get(&format!("/networks/{}", path_escape(n))).await {
            Ok(net) if str_at(&net, "/Scope") != "swarm" => problems.push(format!(
                "network {n:?} is declared as external, but it is not in the right scope: {:?} instead of \"swarm\"",
                str_at(&net, "/Scope")
            )),
            Ok(_) => {}
            Err(e) if is_not_found(&e) => problems.push(format!(
                "network {n:?} is declared as external, but could not be found. You need to create a swarm-scoped network before the stack is deployed"
            )),
            Err(e) => return Err(e.into()),
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        bail!(
            "stack {ns} was not deployed: {} problem{} (nothing was created or changed)",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// `--prune`: removes the stack's services the files no longer define.
async fn prune(api: &Api<'_>, ns: &str, project: &Project, existing: &[Value]) {
    let mut gone: Vec<(&str, &str)> = existing
        .iter()
        .map(|s| (str_at(s, "/ID"), str_at(s, "/Spec/Name")))
        .filter(|(_, name)| {
            let key = name.strip_prefix(&format!("{ns}_")).unwrap_or(name);
            !project.compose.services.contains_key(key)
        })
        .collect();
    gone.sort_by(|a, b| a.1.cmp(b.1));
    for (id, name) in gone {
        println!("Removing service {name}");
        if let Err(e) = api
            .send(
                Method::DELETE,
                &format!("/services/{}", path_escape(id)),
                None,
            )
            .await
        {
            eprintln!("Failed to remove service {id}: {e}");
        }
    }
}

async fn create_networks(
    api: &Api<'_>,
    ns: &str,
    plan: &convert::NetworkPlan,
) -> anyhow::Result<()> {
    if plan.create.is_empty() {
        return Ok(());
    }
    let existing = api
        .get(&with_query("/networks", &[stack_filter(ns).query()]))
        .await?;
    let names: BTreeSet<&str> = existing
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| str_at(n, "/Name"))
        .collect();
    for (name, body) in &plan.create {
        if names.contains(name.as_str()) {
            continue;
        }
        println!("Creating network {name}");
        api.post_go_json("/networks/create", body)
            .await
            .with_context(|| format!("failed to create network {name}"))?;
    }
    Ok(())
}

/// What the secrets step decided.
#[derive(Debug, Default)]
struct SecretPlan {
    /// Top-level key → the secret object the services use.
    names: BTreeMap<String, String>,
    /// Secret name → ID (every secret on the daemon, and the ones just created).
    ids: BTreeMap<String, String>,
    /// IDs of versions created by this deploy because a value changed.
    new_versions: BTreeSet<String>,
    /// Other versions of the stack's secret families, to remove once unused, with the name
    /// of the version that replaces them.
    stale: Vec<(SecretVersion, String)>,
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// `POST /secrets/create` at the negotiated API version; returns the ID. The encoded value is
/// wiped afterwards.
async fn create_secret(
    api: &Api<'_>,
    name: &str,
    labels: &BTreeMap<String, String>,
    value: &[u8],
) -> anyhow::Result<String> {
    let mut encoded = Zeroizing::new(String::new());
    base64::engine::general_purpose::STANDARD.encode_string(value, &mut encoded);
    let mut body = json!({"Name": name, "Labels": labels});
    body["Data"] = Value::String(std::mem::take(&mut *encoded));
    let result = api.send(Method::POST, "/secrets/create", Some(&body)).await;
    if let Some(Value::String(s)) = body.get_mut("Data") {
        s.zeroize();
    }
    Ok(str_at(&result?.json()?, "/ID").to_owned())
}

/// docker's secret update with the value: `Ok(true)` when the stored value is the same (the
/// labels are then refreshed), `Ok(false)` when it differs.
async fn same_value(
    api: &Api<'_>,
    current: &SecretVersion,
    labels: &BTreeMap<String, String>,
    value: &[u8],
) -> anyhow::Result<bool> {
    let mut encoded = Zeroizing::new(String::new());
    base64::engine::general_purpose::STANDARD.encode_string(value, &mut encoded);
    let mut body = json!({"Name": current.name, "Labels": labels});
    body["Data"] = Value::String(std::mem::take(&mut *encoded));
    let result = api
        .send(
            Method::POST,
            &format!(
                "/secrets/{}/update?version={}",
                path_escape(&current.id),
                current.index
            ),
            Some(&body),
        )
        .await;
    if let Some(Value::String(s)) = body.get_mut("Data") {
        s.zeroize();
    }
    match result {
        Ok(_) => Ok(true),
        Err(ClientError::Daemon { status, message })
            if status == StatusCode::BAD_REQUEST
                && message.contains("only updates to Labels are allowed") =>
        {
            Ok(false)
        }
        Err(e) => {
            Err(anyhow::Error::from(e).context(format!("failed to update secret {}", current.name)))
        }
    }
}

/// The secret references (IDs) of service specs.
fn ref_ids(services: &[Value]) -> BTreeSet<String> {
    services
        .iter()
        .flat_map(|s| versions::secret_refs(s.get("Spec").unwrap_or(&Value::Null)))
        .filter_map(|r| r.get("SecretID").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

async fn deploy_secrets(
    api: &Api<'_>,
    ns: &str,
    project: &Project,
    all_secrets: &Value,
    existing: &[Value],
) -> anyhow::Result<SecretPlan> {
    let all = all_versions(all_secrets);
    let mut plan = SecretPlan {
        ids: all.iter().map(|v| (v.name.clone(), v.id.clone())).collect(),
        ..SecretPlan::default()
    };
    let used = ref_ids(existing);
    for (key, def) in &project.compose.secrets {
        let name = convert::secret_name(ns, key, def);
        if def.source == SecretSource::External {
            plan.names.insert(key.clone(), name);
            continue;
        }
        let value = project
            .secret_value(key)
            .map_err(|p| anyhow::anyhow!("{p}"))?
            .unwrap_or_default();
        let mut labels = labels_of(&convert::secret_spec(ns, &name, def)["Labels"]);
        let family = Family::of(&all, &name);
        // The version the stack's services use now (else the newest).
        let current = family
            .versions
            .iter()
            .filter(|v| used.contains(&v.id))
            .max_by_key(|v| v.version)
            .or_else(|| family.current())
            .cloned();
        let chosen: (String, String) = match current {
            None => {
                labels.extend(version_labels(&name, 1));
                println!("Creating secret {name}");
                let id = create_secret(api, &name, &labels, &value)
                    .await
                    .with_context(|| format!("failed to create secret {name}"))?;
                (name.clone(), id)
            }
            Some(cur) => {
                // Keep lockbox's bookkeeping labels (version, family, rotation schedule). A
                // secret that `docker stack deploy` created joins the family here: with the
                // family label the daemon refuses new data (Swarm's answer) instead of
                // superseding the object, and that refusal is how a changed value is seen.
                let mut refreshed = labels.clone();
                refreshed.extend(version_labels(&cur.family, cur.version.max(1)));
                refreshed.extend(
                    cur.labels
                        .iter()
                        .filter(|(k, _)| k.starts_with("lockbox."))
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
                if same_value(api, &cur, &refreshed, &value).await? {
                    (cur.name.clone(), cur.id.clone())
                } else {
                    let (n, new_name) = family.next(&all);
                    labels.extend(version_labels(&name, n));
                    println!(
                        "Creating secret {new_name} (new version of {name}: the value changed)"
                    );
                    let id = create_secret(api, &new_name, &labels, &value)
                        .await
                        .with_context(|| format!("failed to create secret {new_name}"))?;
                    plan.new_versions.insert(id.clone());
                    (new_name, id)
                }
            }
        };
        for v in &family.versions {
            if v.id != chosen.1 && v.labels.get(LABEL_NAMESPACE).map(String::as_str) == Some(ns) {
                plan.stale.push((v.clone(), chosen.0.clone()));
            }
        }
        plan.ids.insert(chosen.0.clone(), chosen.1);
        plan.names.insert(key.clone(), chosen.0);
    }
    Ok(plan)
}

/// A service this deploy created or updated.
struct Deployed {
    id: String,
    name: String,
    /// The spec from the file (what the service must end up with).
    spec: Value,
    /// Updated onto new secret versions with a start-first order the file did not ask for.
    rolled: bool,
}

fn explicit_order(spec: &Value) -> bool {
    spec.pointer("/UpdateConfig/Order")
        .and_then(Value::as_str)
        .is_some_and(|o| !o.is_empty())
}

/// `spec` with `UpdateConfig.Order` = `start-first` (docker's defaults for the rest).
fn with_start_first(spec: &Value) -> Value {
    let mut s = spec.clone();
    if let Some(obj) = s.as_object_mut() {
        let cfg = obj.entry("UpdateConfig").or_insert(Value::Null);
        if !cfg.is_object() {
            *cfg = json!({"Parallelism": 1, "Delay": 0, "FailureAction": "pause",
                          "Monitor": 5_000_000_000i64, "MaxFailureRatio": 0});
        }
        cfg["Order"] = json!("start-first");
    }
    s
}

fn print_warnings(resp: &Value) {
    for w in resp
        .get("Warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        eprintln!("{}", w.as_str().unwrap_or_default());
    }
}

async fn update_service(api: &Api<'_>, id: &str, spec: &Value) -> anyhow::Result<Value> {
    let svc = api
        .get(&format!(
            "/services/{}?insertDefaults=false",
            path_escape(id)
        ))
        .await?;
    let version = svc
        .pointer("/Version/Index")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let body = lockbox_format::service_spec_go(spec);
    Ok(api
        .post_go_json(
            &format!("/services/{}/update?version={version}", path_escape(id)),
            &body,
        )
        .await?)
}

async fn deploy_services(
    api: &Api<'_>,
    ns: &str,
    project: &Project,
    secrets: &SecretPlan,
    existing: &[Value],
) -> anyhow::Result<Vec<Deployed>> {
    let c = &project.compose;
    let by_name: BTreeMap<&str, &Value> = existing
        .iter()
        .map(|s| (str_at(s, "/Spec/Name"), s))
        .collect();
    let mut out = Vec::new();
    for (key, svc) in &c.services {
        let name = convert::scope(ns, key);
        let mut spec = convert::service_spec(ns, key, svc, c);
        let refs = convert::secret_refs(ns, svc, c, &secrets.names);
        let mut targets = BTreeSet::new();
        for (r, s) in refs.iter().zip(&svc.secrets) {
            if !targets.insert(r.target.as_str()) {
                bail!(
                    "service {key}: duplicate secret target for {} not allowed",
                    s.source
                );
            }
            if !secrets.ids.contains_key(&r.secret_name) {
                bail!("service {key}: secret not found: {}", r.secret_name);
            }
        }
        spec["TaskTemplate"]["ContainerSpec"]["Secrets"] =
            json!(convert::secret_references(&refs, &secrets.ids));
        match by_name.get(name.as_str()) {
            Some(current) => {
                let id = str_at(current, "/ID").to_owned();
                println!("Updating service {name} (id: {id})");
                if let Some(f) = current.pointer("/Spec/TaskTemplate/ForceUpdate") {
                    spec["TaskTemplate"]["ForceUpdate"] = f.clone();
                }
                let moves = versions::secret_refs(&spec).iter().any(|r| {
                    r.get("SecretID")
                        .and_then(Value::as_str)
                        .is_some_and(|i| secrets.new_versions.contains(i))
                });
                let rolled = moves && !explicit_order(&spec);
                let body = if rolled {
                    with_start_first(&spec)
                } else {
                    spec.clone()
                };
                let resp = update_service(api, &id, &body)
                    .await
                    .with_context(|| format!("failed to update service {name}"))?;
                print_warnings(&resp);
                out.push(Deployed {
                    id,
                    name,
                    spec,
                    rolled,
                });
            }
            None => {
                println!("Creating service {name}");
                let resp = api
                    .post_go_json("/services/create", &lockbox_format::service_spec_go(&spec))
                    .await
                    .with_context(|| format!("failed to create service {name}"))?;
                print_warnings(&resp);
                let id = str_at(&resp, "/ID").to_owned();
                out.push(Deployed {
                    id,
                    name,
                    spec,
                    rolled: false,
                });
            }
        }
    }
    Ok(out)
}

fn secret_ids_of(refs: &[Value]) -> BTreeSet<String> {
    refs.iter()
        .filter_map(|r| r.get("SecretID").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// Waits until every task the service wants runs with the spec's secrets. `Err` says why not.
async fn wait_rolled(api: &Api<'_>, d: &Deployed) -> anyhow::Result<()> {
    let want = secret_ids_of(&versions::secret_refs(&d.spec));
    let replicas = d
        .spec
        .pointer("/Mode/Replicated/Replicas")
        .and_then(Value::as_u64)
        .or_else(|| d.spec.pointer("/Mode/Replicated").map(|_| 1));
    let mut f = Filters::default();
    f.add("service", &d.id);
    let path = with_query("/tasks", &[f.query()]);
    let start = Instant::now();
    loop {
        let svc = api
            .get(&format!(
                "/services/{}?insertDefaults=false",
                path_escape(&d.id)
            ))
            .await?;
        let state = str_at(&svc, "/UpdateStatus/State");
        if matches!(
            state,
            "paused" | "rollback_started" | "rollback_paused" | "rollback_completed"
        ) {
            bail!(
                "its update is {state}: {}",
                str_at(&svc, "/UpdateStatus/Message")
            );
        }
        let all = api.get(&path).await?;
        // Tasks meant to run, and every task still alive (an old one may be stopping).
        let (tasks, others): (Vec<Value>, Vec<Value>) = all
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .partition(|t| str_at(t, "/DesiredState") == "running");
        let stopping = others.iter().any(|t| {
            matches!(
                str_at(t, "/Status/State"),
                "assigned" | "accepted" | "preparing" | "ready" | "starting" | "running"
            )
        });
        let running = tasks
            .iter()
            .filter(|t| str_at(t, "/Status/State") == "running")
            .count() as u64;
        let all_new = tasks.iter().all(|t| {
            let refs = t
                .pointer("/Spec/ContainerSpec/Secrets")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            secret_ids_of(&refs) == want
        });
        if all_new
            && !stopping
            && running == tasks.len() as u64
            && replicas.is_none_or(|r| running >= r)
        {
            return Ok(());
        }
        if start.elapsed() > ROLL_TIMEOUT {
            bail!(
                "its tasks did not converge in {}s ({running} running{})",
                ROLL_TIMEOUT.as_secs(),
                if all_new {
                    ""
                } else {
                    ", some on an old version"
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// After services moved to new secret versions: waits for them to roll, puts back the update
/// order the file gave, then removes the stack's old versions no service or task uses.
async fn retire(api: &Api<'_>, secrets: &SecretPlan, deployed: &[Deployed]) {
    if secrets.stale.is_empty() {
        return;
    }
    let stale_ids: BTreeSet<&str> = secrets.stale.iter().map(|(v, _)| v.id.as_str()).collect();
    for d in deployed {
        let before: BTreeSet<String> = match api
            .get(&format!(
                "/services/{}?insertDefaults=false",
                path_escape(&d.id)
            ))
            .await
        {
            Ok(s) => s
                .pointer("/PreviousSpec")
                .map(|p| secret_ids_of(&versions::secret_refs(p)))
                .unwrap_or_default(),
            Err(_) => BTreeSet::new(),
        };
        let moving = d.rolled || before.iter().any(|i| stale_ids.contains(i.as_str()));
        if !moving {
            continue;
        }
        if let Err(e) = wait_rolled(api, d).await {
            eprintln!("warning: service {}: {e:#}", d.name);
        }
        if d.rolled
            && let Err(e) = update_service(api, &d.id, &d.spec).await
        {
            eprintln!(
                "warning: service {}: cannot restore its update order: {e:#}",
                d.name
            );
        }
    }
    let usage = match (api.get("/services").await, versions::live_tasks(api).await) {
        (Ok(s), Ok(t)) => versions::usage(&s, &t),
        (Err(e), _) => {
            eprintln!("warning: old secret versions kept: cannot list services: {e}");
            return;
        }
        (_, Err(e)) => {
            eprintln!("warning: old secret versions kept: cannot list tasks: {e:#}");
            return;
        }
    };
    for (v, replacement) in &secrets.stale {
        if let Some(u) = usage.get(&v.id)
            && (u.in_use() || !u.draining.is_empty())
        {
            eprintln!(
                "warning: {} is kept: still used by {}; a later deploy removes it once unused",
                v.name,
                u.describe()
            );
            continue;
        }
        match api
            .send(
                Method::DELETE,
                &format!("/secrets/{}", path_escape(&v.id)),
                None,
            )
            .await
        {
            Ok(_) => println!("Removing secret {} (replaced by {replacement})", v.name),
            Err(e) => eprintln!("warning: {} could not be removed: {e}", v.name),
        }
    }
}
