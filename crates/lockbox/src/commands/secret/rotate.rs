//! `lockbox secret rotate NAME [FILE|-|--generate ...]` and `lockbox secret rotate --due`.
//!
//! Everything goes through the Engine API: create the next version (`POST /secrets/create`),
//! move each service using any version of the family to it (`POST /services/{id}/update`, one
//! service at a time, start-first unless the service's `UpdateConfig.Order` says otherwise,
//! docker's progress display), check that every task runs the new version (`GET /tasks`), then
//! after the grace period remove the versions no service uses any more. A failure (an update
//! that pauses or rolls back, tasks that do not converge, Ctrl-C) puts every service it touched
//! back on its previous spec, removes the new version and exits non-zero.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use http::Method;
use lockbox_client::Client;
use serde_json::{Value, json};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::generate::{GENERATE_LABEL, GenSpec, Reveal, warn_if_weak};
use super::schedule::{self, Interval, ROTATE_EVERY_LABEL, ROTATION_DUE_LABEL, parse_interval};
use super::versions::{
    self, FAMILY_LABEL, Family, REMOVE_AFTER_LABEL, SecretVersion, VERSION_LABEL, all_versions,
    families, repoint, resolve_family, uses_family, version_labels,
};
use super::{create_secret, query_escape, read_value};
use crate::cli::SecretRotateArgs;
use crate::commands::key_value;
use crate::commands::service::{Api, Filters, path_escape, wait_on_service, with_query};

/// Where the new value comes from.
pub(crate) enum NewValue {
    /// A file, or `-` for STDIN.
    File(String),
    /// `--generate`.
    Generate(GenSpec),
    /// Generate as the current version was (its `lockbox.generate` label).
    Recorded,
}

/// Options shared by every rotation of one command.
pub(crate) struct Options {
    pub(crate) grace: Duration,
    pub(crate) every: Option<Interval>,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) quiet: bool,
}

impl Options {
    fn say(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            println!("{}", msg.as_ref());
        }
    }
}

/// What a rotation did.
pub(crate) struct Rotated {
    pub(crate) family: String,
    pub(crate) new_name: String,
    pub(crate) services: Vec<String>,
    pub(crate) removed: Vec<String>,
    /// Old versions that could not be removed (in use again, or an error), with why.
    pub(crate) kept: Vec<String>,
}

/// Why a rotation stopped.
#[derive(Debug)]
enum Stop {
    /// Ctrl-C while waiting out the grace period: the rotation is done, old versions stay.
    Interrupted,
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Failed(e)
    }
}

const INTERRUPTED: &str = "interrupted";

pub(crate) async fn run(client: &Client, a: &SecretRotateArgs) -> anyhow::Result<ExitCode> {
    let opts = Options {
        grace: parse_interval(&a.grace)
            .context("invalid --grace")?
            .duration,
        every: a
            .rotate_every
            .as_deref()
            .map(parse_interval)
            .transpose()
            .context("invalid --rotate-every")?,
        labels: a.labels.iter().map(|l| key_value(l)).collect(),
        quiet: a.quiet,
    };
    let gen_spec = GenSpec::from_args(&a.generate)?;
    let api = Api::new(client).await?;
    if a.due {
        if a.generate.show || a.generate.output_file.is_some() {
            bail!("--show and --output-file cannot be used with --due");
        }
        return rotate_due(client, &api, gen_spec, &opts).await;
    }
    let Some(name) = a.name.as_deref() else {
        bail!("give a secret NAME or --due");
    };
    let source = match (&a.file, gen_spec) {
        (Some(_), Some(_)) => bail!("give either FILE or --generate, not both"),
        (Some(f), None) => NewValue::File(f.clone()),
        (None, Some(g)) => NewValue::Generate(g),
        (None, None) => NewValue::Recorded,
    };
    let reveal = Reveal::open(&a.generate)?;
    match rotate_named(client, &api, name, source, reveal, &opts).await {
        Ok(r) => {
            report(&r, &opts);
            Ok(if r.kept.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(Stop::Interrupted) => Ok(ExitCode::from(130)),
        Err(Stop::Failed(e)) => Err(e),
    }
}

fn report(r: &Rotated, opts: &Options) {
    if opts.quiet {
        println!("{}", r.new_name);
        return;
    }
    let services = if r.services.is_empty() {
        "no service uses it".to_owned()
    } else {
        format!("services updated: {}", r.services.join(", "))
    };
    let removed = if r.removed.is_empty() {
        String::new()
    } else {
        format!("; removed {}", r.removed.join(", "))
    };
    println!(
        "{}: rotated to {} ({services}{removed})",
        r.family, r.new_name
    );
    for k in &r.kept {
        eprintln!("warning: {k}");
    }
}

/// Rotates the family `arg` names (a family or any of its versions).
async fn rotate_named(
    client: &Client,
    api: &Api<'_>,
    arg: &str,
    source: NewValue,
    reveal: Reveal,
    opts: &Options,
) -> Result<Rotated, Stop> {
    let all = all_versions(&api.get("/secrets").await.map_err(anyhow::Error::from)?);
    let family = resolve_family(&all, arg).ok_or_else(|| anyhow!("no such secret: {arg}"))?;
    rotate(client, api, &family, source, reveal, opts).await
}

/// The labels of the next version: the current version's own labels (not lockbox's
/// bookkeeping), the version labels, the generator, the schedule, then `-l`.
fn next_labels(
    current: &SecretVersion,
    family: &str,
    version: u64,
    generated: Option<&GenSpec>,
    opts: &Options,
    now: OffsetDateTime,
) -> BTreeMap<String, String> {
    const OWN: [&str; 6] = [
        FAMILY_LABEL,
        VERSION_LABEL,
        REMOVE_AFTER_LABEL,
        ROTATION_DUE_LABEL,
        ROTATE_EVERY_LABEL,
        GENERATE_LABEL,
    ];
    let mut labels: BTreeMap<String, String> = current
        .labels
        .iter()
        .filter(|(k, _)| !OWN.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.extend(version_labels(family, version));
    if let Some(g) = generated {
        labels.insert(GENERATE_LABEL.to_owned(), g.label());
    }
    let every = opts.every.clone().or_else(|| {
        current
            .labels
            .get(ROTATE_EVERY_LABEL)
            .and_then(|t| parse_interval(t).ok())
    });
    match every {
        Some(i) => labels.extend(schedule::schedule_labels(&i, now)),
        None if current.labels.contains_key(ROTATION_DUE_LABEL) => eprintln!(
            "note: {} had a {ROTATION_DUE_LABEL} label but no interval: the new version has none (use --rotate-every)",
            current.name
        ),
        None => {}
    }
    labels.extend(opts.labels.iter().cloned());
    labels
}

/// A service moved (or to move) to the new version, and the spec to go back to.
struct Touched {
    id: String,
    name: String,
    original: Value,
}

async fn rotate(
    client: &Client,
    api: &Api<'_>,
    family_name: &str,
    source: NewValue,
    mut reveal: Reveal,
    opts: &Options,
) -> Result<Rotated, Stop> {
    let all = all_versions(&api.get("/secrets").await.map_err(anyhow::Error::from)?);
    let family = Family::of(&all, family_name);
    let Some(current) = family.current().cloned() else {
        return Err(anyhow!("no such secret: {family_name}").into());
    };
    let generated = match &source {
        NewValue::File(_) => None,
        NewValue::Generate(g) => Some(*g),
        NewValue::Recorded => Some(
            current
                .labels
                .get(GENERATE_LABEL)
                .and_then(|l| GenSpec::parse_label(l))
                .ok_or_else(|| {
                    anyhow!(
                        "no new value given, and {} was not generated by lockbox: give FILE, - or --generate",
                        current.name
                    )
                })?,
        ),
    };
    let value: Zeroizing<Vec<u8>> = match (&source, &generated) {
        (NewValue::File(f), _) => read_value(f)?,
        (_, Some(g)) => {
            warn_if_weak(g);
            g.generate()?
        }
        (_, None) => unreachable!("a generator is known unless the value is a file"),
    };
    let now = OffsetDateTime::now_utc();
    let (version, new_name) = family.next(&all);
    let labels = next_labels(
        &current,
        family_name,
        version,
        generated.as_ref(),
        opts,
        now,
    );
    opts.say(format!(
        "{family_name}: creating {new_name} (current version: {})",
        current.name
    ));
    let new_id = match create_secret(client, &new_name, &labels, &value).await {
        Ok(id) => id,
        Err(e) => {
            reveal.abandon();
            return Err(e.into());
        }
    };
    let written = reveal.write(&value);
    drop(value);
    let result = match written {
        Ok(()) => move_services(api, &family, &new_id, &new_name, opts).await,
        Err(e) => Err((Vec::new(), e)),
    };
    let services = match result {
        Ok(s) => s,
        Err((touched, e)) => {
            reveal.abandon();
            return Err(undo(client, api, touched, &new_id, &new_name, e, opts)
                .await
                .into());
        }
    };
    // Every service runs the new version. The old ones go after the grace period.
    let stale: Vec<SecretVersion> = family.versions.clone();
    let mut rotated = Rotated {
        family: family_name.to_owned(),
        new_name,
        services,
        removed: Vec::new(),
        kept: Vec::new(),
    };
    if !opts.grace.is_zero() && !stale.is_empty() {
        let until = now.max(OffsetDateTime::now_utc()) + opts.grace;
        for v in &stale {
            let mut l = v.labels.clone();
            l.insert(REMOVE_AFTER_LABEL.to_owned(), schedule::format_time(until));
            if let Err(e) = set_labels(client, v, &l).await {
                eprintln!("warning: cannot label {} for removal: {e}", v.name);
            }
        }
        let names: Vec<&str> = stale.iter().map(|v| v.name.as_str()).collect();
        // Listen before announcing the wait, so that no Ctrl-C is lost in between.
        let mut sigint =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
        opts.say(format!(
            "{family_name}: keeping {} until {} (grace period {})",
            names.join(", "),
            schedule::format_time(until),
            lockbox_format::go_duration(i64::try_from(opts.grace.as_nanos()).unwrap_or(i64::MAX)),
        ));
        let interrupted = match sigint.as_mut() {
            Some(sig) => tokio::select! {
                biased;
                _ = sig.recv() => true,
                () = tokio::time::sleep(opts.grace) => false,
            },
            None => {
                tokio::time::sleep(opts.grace).await;
                false
            }
        };
        if interrupted {
            eprintln!(
                "interrupted: {family_name} is rotated to {}; {} stay until `lockbox secret rotate --due` runs after {}",
                rotated.new_name,
                names.join(", "),
                schedule::format_time(until)
            );
            return Err(Stop::Interrupted);
        }
    }
    let (removed, kept) = remove_unused(client, api, &stale).await;
    rotated.removed = removed;
    rotated.kept = kept;
    Ok(rotated)
}

/// Moves every service using a version of `family` to the new one, in name order. On error,
/// the services touched so far (the failing one included) and the error.
async fn move_services(
    api: &Api<'_>,
    family: &Family,
    new_id: &str,
    new_name: &str,
    opts: &Options,
) -> Result<Vec<String>, (Vec<Touched>, anyhow::Error)> {
    let mut touched: Vec<Touched> = Vec::new();
    let services = match api.get("/services").await {
        Ok(s) => s,
        Err(e) => return Err((touched, e.into())),
    };
    let mut users: Vec<(String, String, Value)> = services
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let spec = s.get("Spec")?;
            uses_family(spec, family).then(|| {
                (
                    s.get("ID").and_then(Value::as_str).unwrap_or("").to_owned(),
                    spec.pointer("/Name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    spec.clone(),
                )
            })
        })
        .collect();
    users.sort_by(|a, b| a.1.cmp(&b.1));
    let mut done = Vec::new();
    for (id, name, spec) in users {
        let live = live_update_allowed(&spec, family);
        let mut target = spec.clone();
        let replaced = repoint(&mut target, family, new_id, new_name);
        let from: BTreeSet<&str> = replaced
            .iter()
            .filter_map(|i| family.by_id(i).map(|v| v.name.as_str()))
            .collect();
        touched.push(Touched {
            id: id.clone(),
            name: name.clone(),
            original: spec,
        });
        let from_names = from.into_iter().collect::<Vec<_>>().join(", ");
        if live {
            opts.say(format!(
                "live-updating service {name}: {from_names} -> {new_name} (no restart)"
            ));
            for old_id in replaced.iter().collect::<BTreeSet<_>>() {
                let body = json!({ "From": old_id, "To": new_id });
                let r = match api
                    .send(
                        Method::POST,
                        &format!("/lockbox/v1/services/{}/secrets/swap", path_escape(&id)),
                        Some(&body),
                    )
                    .await
                    .and_then(|r| r.json())
                {
                    Ok(r) => r,
                    Err(e) => {
                        return Err((
                            touched,
                            anyhow::Error::from(e).context(format!("service {name}")),
                        ));
                    }
                };
                let updated = r["Updated"].as_array().map_or(0, Vec::len);
                let replaced_tasks = r["Replaced"].as_array().map_or(0, Vec::len);
                let signal = r["Signal"].as_str().unwrap_or("no signal");
                opts.say(format!(
                    "service {name}: {updated} task(s) updated in place ({signal}){}",
                    if replaced_tasks > 0 {
                        format!(", {replaced_tasks} could not be and are being replaced")
                    } else {
                        String::new()
                    }
                ));
            }
            done.push(name);
            continue;
        }
        opts.say(format!(
            "updating service {name}: {from_names} -> {new_name}"
        ));
        if let Err(e) = apply_spec(api, &id, &name, &target, opts.quiet).await {
            return Err((touched, e.context(format!("service {name}"))));
        }
        done.push(name);
    }
    Ok(done)
}

/// Whether the service asks for live updates (`lockbox.live-update.targets`) of every file
/// target at which it mounts a version of `family`.
fn live_update_allowed(spec: &Value, family: &Family) -> bool {
    let labels: std::collections::BTreeMap<String, String> = spec
        .get("Labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let targets: Vec<String> = spec
        .pointer("/TaskTemplate/ContainerSpec/Secrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| super::versions::ref_is_member(r, family))
        .map(|r| {
            r.pointer("/File/Name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    !targets.is_empty()
        && targets
            .iter()
            .all(|t| lockbox_core::allows_live_update(&labels, t))
}

/// Puts the touched services back (last first), removes the new version, and returns the
/// error to report.
async fn undo(
    client: &Client,
    api: &Api<'_>,
    touched: Vec<Touched>,
    new_id: &str,
    new_name: &str,
    cause: anyhow::Error,
    opts: &Options,
) -> anyhow::Error {
    let interrupted = cause.root_cause().to_string() == INTERRUPTED;
    eprintln!(
        "{}: rolling back",
        if interrupted {
            "interrupted".to_owned()
        } else {
            format!("rotation failed: {cause:#}")
        }
    );
    let mut problems = Vec::new();
    let mut back = Vec::new();
    for t in touched.iter().rev() {
        opts.say(format!("rolling back service {}", t.name));
        match apply_spec(api, &t.id, &t.name, &t.original, opts.quiet).await {
            Ok(()) => back.push(t.name.clone()),
            Err(e) => problems.push(format!(
                "service {} could not be rolled back: {e:#}",
                t.name
            )),
        }
    }
    match client
        .request(
            Method::DELETE,
            &format!("/secrets/{}", query_escape(new_id)),
            None,
        )
        .await
    {
        Ok(_) => opts.say(format!("removed {new_name}")),
        Err(e) => problems.push(format!("{new_name} could not be removed: {e}")),
    }
    let mut msg = if interrupted {
        "rotation interrupted".to_owned()
    } else {
        format!("rotation failed: {cause:#}")
    };
    if !back.is_empty() {
        msg.push_str(&format!("\nrolled back: {}", back.join(", ")));
    }
    for p in problems {
        msg.push('\n');
        msg.push_str(&p);
    }
    anyhow!(msg)
}

/// Removes the versions in `stale` that no service spec references now.
async fn remove_unused(
    client: &Client,
    api: &Api<'_>,
    stale: &[SecretVersion],
) -> (Vec<String>, Vec<String>) {
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    let in_use: BTreeSet<String> = match api.get("/services").await {
        Ok(s) => versions::usage(&s, &Value::Array(Vec::new()))
            .into_iter()
            .filter(|(_, u)| u.in_use())
            .map(|(id, _)| id)
            .collect(),
        Err(e) => {
            kept.push(format!("old versions kept: cannot list services: {e}"));
            return (removed, kept);
        }
    };
    for v in stale {
        if in_use.contains(&v.id) {
            kept.push(format!("{} is kept: a service uses it again", v.name));
            continue;
        }
        match client
            .request(
                Method::DELETE,
                &format!("/secrets/{}", query_escape(&v.id)),
                None,
            )
            .await
        {
            Ok(_) => removed.push(v.name.clone()),
            Err(e) => kept.push(format!("{} could not be removed: {e}", v.name)),
        }
    }
    (removed, kept)
}

/// Replaces a secret's labels (`POST /secrets/{id}/update`).
async fn set_labels(
    client: &Client,
    v: &SecretVersion,
    labels: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    client
        .request(
            Method::POST,
            &format!(
                "/secrets/{}/update?version={}",
                query_escape(&v.id),
                v.index
            ),
            Some(&json!({"Name": v.name, "Labels": labels})),
        )
        .await?;
    Ok(())
}

fn explicit_order(spec: &Value) -> bool {
    spec.pointer("/UpdateConfig/Order")
        .and_then(Value::as_str)
        .is_some_and(|o| !o.is_empty())
}

/// `spec` with `UpdateConfig.Order` = `start-first` (docker's defaults for the rest when the
/// service has no `UpdateConfig`).
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

/// `POST /services/{id}/update` with `spec` at the service's current version.
async fn post_spec(api: &Api<'_>, id: &str, spec: &Value) -> anyhow::Result<()> {
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
    let resp = api
        .post_go_json(
            &format!("/services/{}/update?version={version}", path_escape(id)),
            &body,
        )
        .await?;
    for w in resp
        .get("Warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        eprintln!("{}", w.as_str().unwrap_or_default());
    }
    Ok(())
}

/// Rolls `target` out to a service and waits until every task runs it. Start-first unless the
/// spec names an order; the service's own `UpdateConfig` is put back afterwards (a change that
/// restarts no task).
async fn apply_spec(
    api: &Api<'_>,
    id: &str,
    name: &str,
    target: &Value,
    quiet: bool,
) -> anyhow::Result<()> {
    let explicit = explicit_order(target);
    if explicit {
        post_spec(api, id, target).await?;
    } else {
        post_spec(api, id, &with_start_first(target)).await?;
    }
    wait_converged(api, id, name, target, quiet).await?;
    if !explicit {
        post_spec(api, id, target).await?;
    }
    Ok(())
}

fn ids_of(refs: &[Value]) -> BTreeSet<String> {
    refs.iter()
        .filter_map(|r| r.get("SecretID").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// docker's progress until the update completes, then: the update did complete (not paused,
/// not rolled back by the daemon), and every task the service wants runs the target's secrets.
async fn wait_converged(
    api: &Api<'_>,
    id: &str,
    name: &str,
    target: &Value,
    quiet: bool,
) -> anyhow::Result<()> {
    let interrupted = tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => true,
        r = wait_on_service(api, name, quiet) => { r?; false }
    };
    if interrupted {
        bail!(INTERRUPTED);
    }
    // docker's display decides convergence from the tasks; the daemon marks the update
    // completed on its next planning step.
    let start = Instant::now();
    loop {
        let svc = api
            .get(&format!(
                "/services/{}?insertDefaults=false",
                path_escape(id)
            ))
            .await?;
        let state = svc
            .pointer("/UpdateStatus/State")
            .and_then(Value::as_str)
            .unwrap_or("");
        let msg = svc
            .pointer("/UpdateStatus/Message")
            .and_then(Value::as_str)
            .unwrap_or("");
        match state {
            "" | "completed" => break,
            "updating" if start.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            "updating" => bail!("the update did not complete: {msg}"),
            other => bail!("update {other}: {msg}"),
        }
    }
    let want = ids_of(&versions::secret_refs(target));
    let replicas = target
        .pointer("/Mode/Replicated/Replicas")
        .and_then(Value::as_u64);
    let mut f = Filters::default();
    f.add("service", id);
    f.add("desired-state", "running");
    let path = with_query("/tasks", &[f.query()]);
    let start = Instant::now();
    loop {
        let tasks = api.get(&path).await?;
        let tasks = tasks.as_array().cloned().unwrap_or_default();
        let running = tasks
            .iter()
            .filter(|t| t.pointer("/Status/State").and_then(Value::as_str) == Some("running"))
            .count();
        let all_new = tasks.iter().all(|t| {
            let refs = t
                .pointer("/Spec/ContainerSpec/Secrets")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            ids_of(&refs) == want
        });
        if all_new && running == tasks.len() && replicas.is_none_or(|r| running as u64 >= r) {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!(
                "its tasks did not converge ({running} of {} running{})",
                replicas.map_or(tasks.len() as u64, |r| r),
                if all_new {
                    ""
                } else {
                    ", some on an old version"
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `rotate --due`: removes versions whose grace period ended, then rotates every family whose
/// current version is overdue.
async fn rotate_due(
    client: &Client,
    api: &Api<'_>,
    gen_spec: Option<GenSpec>,
    opts: &Options,
) -> anyhow::Result<ExitCode> {
    let now = OffsetDateTime::now_utc();
    let all = all_versions(&api.get("/secrets").await?);
    let expired: Vec<SecretVersion> = all
        .iter()
        .filter(|v| v.remove_after().is_some_and(|t| t <= now))
        .cloned()
        .collect();
    let mut failed = Vec::new();
    if !expired.is_empty() {
        let (removed, kept) = remove_unused(client, api, &expired).await;
        for r in removed {
            opts.say(format!("removed {r} (its grace period is over)"));
        }
        for k in kept {
            eprintln!("warning: {k}");
        }
    }
    let due: Vec<String> = families(&all)
        .into_values()
        .filter(|f| {
            f.current().is_some_and(|c| {
                c.remove_after().is_none() && schedule::overdue(&c.labels, now) == Some(true)
            })
        })
        .map(|f| f.name)
        .collect();
    if due.is_empty() {
        opts.say("no secret is due for rotation");
        return Ok(ExitCode::SUCCESS);
    }
    for family in due {
        let source = gen_spec.map_or(NewValue::Recorded, NewValue::Generate);
        match rotate(client, api, &family, source, Reveal::none(), opts).await {
            Ok(r) => {
                report(&r, opts);
                if !r.kept.is_empty() {
                    failed.push(family);
                }
            }
            Err(Stop::Interrupted) => return Ok(ExitCode::from(130)),
            Err(Stop::Failed(e)) => {
                eprintln!("{family}: {e:#}");
                failed.push(family);
            }
        }
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("rotation did not complete for: {}", failed.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(labels: &[(&str, &str)]) -> SecretVersion {
        SecretVersion {
            id: "x".into(),
            name: "db-v1".into(),
            family: "db".into(),
            version: 1,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            created_at: String::new(),
            index: 1,
        }
    }

    #[test]
    fn labels_of_the_next_version() {
        let cur = version(&[
            ("env", "prod"),
            (FAMILY_LABEL, "db"),
            (VERSION_LABEL, "1"),
            (REMOVE_AFTER_LABEL, "2026-01-01T00:00:00Z"),
            (GENERATE_LABEL, "hex:16"),
            (ROTATE_EVERY_LABEL, "90d"),
            (ROTATION_DUE_LABEL, "2000-01-01"),
        ]);
        let opts = Options {
            grace: Duration::ZERO,
            every: None,
            labels: vec![("team".into(), "a".into())],
            quiet: true,
        };
        let now = time::macros::datetime!(2026-01-01 0:00 UTC);
        let l = next_labels(&cur, "db", 2, None, &opts, now);
        let want: BTreeMap<String, String> = [
            ("env", "prod"),
            (FAMILY_LABEL, "db"),
            (VERSION_LABEL, "2"),
            (ROTATE_EVERY_LABEL, "90d"),
            (ROTATION_DUE_LABEL, "2026-04-01"),
            ("team", "a"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(l, want, "a value from a file is not marked generated");
        let g = GenSpec::parse_label("alnum:40");
        let l = next_labels(&cur, "db", 2, g.as_ref(), &opts, now);
        assert_eq!(l[GENERATE_LABEL], "alnum:40");
    }

    #[test]
    fn start_first_only_when_the_service_does_not_say() {
        let none = json!({"Name": "a"});
        assert!(!explicit_order(&none));
        let s = with_start_first(&none);
        assert_eq!(s["UpdateConfig"]["Order"], "start-first");
        assert_eq!(s["UpdateConfig"]["Parallelism"], 1);
        let partial = json!({"UpdateConfig": {"Parallelism": 2}});
        assert!(!explicit_order(&partial));
        assert_eq!(
            with_start_first(&partial)["UpdateConfig"],
            json!({"Parallelism": 2, "Order": "start-first"})
        );
        assert!(explicit_order(
            &json!({"UpdateConfig": {"Order": "stop-first"}})
        ));
    }
}
