//! `lockbox secret create|ls|inspect|rm`, with docker's flags and output.

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
use crate::cli::SecretCmd;

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
        } => create(client, labels, driver, template_driver, name, file).await,
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
    }
}

fn read_value(file: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
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
) -> anyhow::Result<ExitCode> {
    let labels: BTreeMap<String, String> = labels.iter().map(|l| key_value(l)).collect();
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

fn query_escape(s: &str) -> String {
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
    let path = if filters.is_empty() {
        "/secrets".to_owned()
    } else {
        format!(
            "/secrets?filters={}",
            query_escape(&filters_json(&filters)?)
        )
    };
    let list = client.get(&path).await?;
    let secrets = list.as_array().cloned().unwrap_or_default();
    let out = lockbox_format::secret_list(
        &secrets,
        format.as_deref(),
        quiet,
        time::OffsetDateTime::now_utc(),
    )?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
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
