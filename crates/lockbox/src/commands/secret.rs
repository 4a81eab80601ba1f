//! `lockbox secret create|ls|inspect|rm`, with docker's flags and output, and lockbox's
//! lifecycle verbs: `create --generate`, `import`, `versions`, `rotate` (see `docs/secrets.md`).

mod dotenv;
mod generate;
mod import;
mod rotate;
mod schedule;
pub(crate) mod versions;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine as _;
use http::Method;
use lockbox_client::Client;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::key_value;
use crate::cli::{GenerateArgs, SecretCmd};
use generate::{GENERATE_LABEL, GenSpec, Reveal, warn_if_weak};

/// docker reads at most this much from a file or STDIN.
const MAX_INPUT: u64 = 1000 * 1024;

pub(crate) async fn run(client: &Client, cmd: SecretCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        SecretCmd::Create {
            labels,
            driver,
            template_driver,
            name,
            file,
            generate,
            rotate_every,
        } => {
            let extra = CreateExtras {
                generate,
                rotate_every,
            };
            create(client, labels, driver, template_driver, name, file, extra).await
        }
        SecretCmd::Ls {
            quiet,
            filters,
            format,
        } => ls(client, quiet, filters, format).await,
        SecretCmd::Inspect {
            pretty,
            format,
            secrets,
        } => inspect(client, pretty, format, secrets).await,
        SecretCmd::Rm { secrets } => rm(client, secrets).await,
        SecretCmd::Import(a) => import::run(client, &a).await,
        SecretCmd::Versions {
            quiet,
            format,
            name,
        } => {
            let api = super::service::Api::new(client).await?;
            versions::run(&api, quiet, format.as_deref(), &name).await
        }
        SecretCmd::Rotate(a) => rotate::run(client, &a).await,
    }
}

/// Creates a secret (`POST /secrets/create`) and returns its ID. The base64 text of the value
/// and the request body are wiped afterwards.
pub(crate) async fn create_secret(
    client: &Client,
    name: &str,
    labels: &BTreeMap<String, String>,
    value: &[u8],
) -> anyhow::Result<String> {
    let mut encoded = Zeroizing::new(String::with_capacity(value.len().div_ceil(3) * 4));
    base64::engine::general_purpose::STANDARD.encode_string(value, &mut encoded);
    let mut spec = json!({ "Name": name, "Labels": labels });
    if let Some(obj) = spec.as_object_mut() {
        obj.insert("Data".into(), Value::String(std::mem::take(&mut *encoded)));
    }
    let result = client
        .request(Method::POST, "/secrets/create", Some(&spec))
        .await;
    wipe(&mut spec);
    let resp = result?.json()?;
    Ok(resp
        .get("ID")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned())
}

/// `create`'s lockbox flags.
struct CreateExtras {
    generate: GenerateArgs,
    rotate_every: Option<String>,
}

pub(crate) fn read_value(file: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    if file == "-" {
        std::io::stdin()
            .take(MAX_INPUT)
            .read_to_end(&mut buf)
            .context("error reading from STDIN")?;
        if buf.is_empty() {
            bail!("error reading from STDIN: data is empty");
        }
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(MAX_INPUT).read_to_end(&mut buf))
            .with_context(|| format!("error reading content from {file:?}"))?;
        if buf.is_empty() {
            bail!("error reading content from {file:?}: data is empty");
        }
    }
    Ok(buf)
}

async fn create(
    client: &Client,
    labels: Vec<String>,
    driver: Option<String>,
    template_driver: Option<String>,
    name: String,
    file: Option<String>,
    extra: CreateExtras,
) -> anyhow::Result<ExitCode> {
    let user_labels: BTreeMap<String, String> = labels.iter().map(|l| key_value(l)).collect();
    let every = extra
        .rotate_every
        .as_deref()
        .map(schedule::parse_interval)
        .transpose()
        .context("invalid --rotate-every")?;
    let mut labels = BTreeMap::new();
    if let Some(i) = &every {
        labels.extend(schedule::schedule_labels(
            i,
            time::OffsetDateTime::now_utc(),
        ));
    }
    if let Some(g) = GenSpec::from_args(&extra.generate)? {
        if file.is_some() {
            bail!("a FILE cannot be combined with --generate");
        }
        if driver.as_deref().is_some_and(|d| !d.is_empty()) {
            bail!("--generate cannot be used with a secret driver");
        }
        labels.insert(GENERATE_LABEL.to_owned(), g.label());
        labels.extend(user_labels);
        return create_generated(client, &name, &labels, g, &extra.generate).await;
    }
    labels.extend(user_labels);
    let mut spec = json!({ "Name": name, "Labels": labels });
    let has_driver = driver.as_deref().is_some_and(|d| !d.is_empty());
    match (&file, has_driver) {
        (Some(_), true) => bail!("when using secret driver secret data must be empty"),
        (None, false) => bail!("secret file is required"),
        _ => {}
    }
    let encoded = match &file {
        Some(f) => {
            let value = read_value(f)?;
            Some(Zeroizing::new(
                base64::engine::general_purpose::STANDARD.encode(&*value),
            ))
        }
        None => None,
    };
    if let (Some(obj), Some(enc)) = (spec.as_object_mut(), &encoded) {
        obj.insert("Data".into(), Value::String(enc.to_string()));
    }
    if let (Some(obj), Some(d)) = (spec.as_object_mut(), driver.filter(|d| !d.is_empty())) {
        obj.insert("Driver".into(), json!({ "Name": d }));
    }
    if let (Some(obj), Some(t)) = (
        spec.as_object_mut(),
        template_driver.filter(|d| !d.is_empty()),
    ) {
        obj.insert("Templating".into(), json!({ "Name": t }));
    }
    let result = client
        .request(Method::POST, "/secrets/create", Some(&spec))
        .await;
    wipe(&mut spec);
    let resp = result?.json()?;
    println!(
        "{}",
        resp.get("ID").and_then(Value::as_str).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// `create --generate`: the value goes to the store, and to `--show`/`--output-file` only.
async fn create_generated(
    client: &Client,
    name: &str,
    labels: &BTreeMap<String, String>,
    g: GenSpec,
    args: &GenerateArgs,
) -> anyhow::Result<ExitCode> {
    warn_if_weak(&g);
    let mut reveal = Reveal::open(args)?;
    let value = g.generate()?;
    let id = match create_secret(client, name, labels, &value).await {
        Ok(id) => id,
        Err(e) => {
            reveal.abandon();
            return Err(e);
        }
    };
    println!("{id}");
    if !reveal.is_none()
        && let Err(e) = reveal.write(&value)
    {
        // Nobody could learn the value: do not keep it.
        let _ = client
            .request(
                Method::DELETE,
                &format!("/secrets/{}", query_escape(&id)),
                None,
            )
            .await;
        reveal.abandon();
        return Err(e.context(format!("secret {name} was removed again")));
    }
    Ok(ExitCode::SUCCESS)
}

fn wipe(v: &mut Value) {
    use zeroize::Zeroize;
    if let Some(Value::String(s)) = v.as_object_mut().and_then(|o| o.get_mut("Data")) {
        s.zeroize();
    }
}

fn filters_json(filters: &[String]) -> anyhow::Result<String> {
    let mut map: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for f in filters {
        let Some((k, v)) = f.split_once('=') else {
            bail!("bad format of filter (expected name=value)");
        };
        map.entry(k.trim().to_lowercase())
            .or_default()
            .insert(v.to_owned(), true);
    }
    Ok(serde_json::to_string(&map)?)
}

pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn ls(
    client: &Client,
    quiet: bool,
    filters: Vec<String>,
    format: Option<String>,
) -> anyhow::Result<ExitCode> {
    // `rotation=` is lockbox's own filter, applied here: the daemon (and dockerd) refuse
    // unknown filter keys.
    let (rotation, filters): (Vec<String>, Vec<String>) = filters
        .into_iter()
        .partition(|f| f.trim_start().to_lowercase().starts_with("rotation="));
    let rotation: Vec<RotationFilter> = rotation
        .iter()
        .map(|f| RotationFilter::parse(f.split_once('=').map_or("", |(_, v)| v.trim())))
        .collect::<anyhow::Result<_>>()?;
    let path = if filters.is_empty() {
        "/secrets".to_owned()
    } else {
        format!(
            "/secrets?filters={}",
            query_escape(&filters_json(&filters)?)
        )
    };
    let list = client.get(&path).await?;
    let mut secrets = list.as_array().cloned().unwrap_or_default();
    if !rotation.is_empty() {
        let all = if filters.is_empty() {
            list.clone()
        } else {
            client.get("/secrets").await?
        };
        let all = versions::all_versions(&all);
        let now = time::OffsetDateTime::now_utc();
        secrets.retain(|s| {
            let v = versions::SecretVersion::from_api(s);
            let state = RotationFilter::of(&v, &all, now);
            rotation.contains(&state)
        });
    }
    let out = lockbox_format::secret_list(
        &secrets,
        format.as_deref(),
        quiet,
        time::OffsetDateTime::now_utc(),
    )?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `secret ls --filter rotation=overdue|scheduled|none`: the rotation state of the *current*
/// version of each family (older versions, retired or not, match nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RotationFilter {
    /// `rotation-due` has passed.
    Overdue,
    /// `rotation-due` is in the future.
    Scheduled,
    /// No (readable) `rotation-due`.
    None,
    /// Not the current version of its family, or retired by a rotation.
    Old,
}

impl RotationFilter {
    fn parse(v: &str) -> anyhow::Result<RotationFilter> {
        match v {
            "overdue" | "due" => Ok(RotationFilter::Overdue),
            "scheduled" => Ok(RotationFilter::Scheduled),
            "none" => Ok(RotationFilter::None),
            _ => bail!("invalid rotation filter {v:?}: use overdue, scheduled or none"),
        }
    }

    fn of(
        v: &versions::SecretVersion,
        all: &[versions::SecretVersion],
        now: time::OffsetDateTime,
    ) -> RotationFilter {
        let family = versions::Family::of(all, &v.family);
        if family.current().is_some_and(|c| c.id != v.id) || v.remove_after().is_some() {
            return RotationFilter::Old;
        }
        match schedule::overdue(&v.labels, now) {
            Some(true) => RotationFilter::Overdue,
            Some(false) => RotationFilter::Scheduled,
            None => RotationFilter::None,
        }
    }
}

async fn inspect(
    client: &Client,
    pretty: bool,
    format: Option<String>,
    names: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for n in &names {
        match client.get(&format!("/secrets/{}", query_escape(n))).await {
            Ok(v) => found.push(v),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let (out, render_errors) =
        lockbox_format::secret_inspect_with_errors(&found, format.as_deref(), pretty);
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

async fn rm(client: &Client, names: Vec<String>) -> anyhow::Result<ExitCode> {
    let mut errors = Vec::new();
    for n in &names {
        match client
            .request(
                Method::DELETE,
                &format!("/secrets/{}", query_escape(n)),
                None,
            )
            .await
        {
            Ok(_) => println!("{n}"),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("{}", errors.join("\n"))
    }
}
