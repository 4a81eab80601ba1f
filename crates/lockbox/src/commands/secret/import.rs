//! `lockbox secret import --env-file FILE`: one secret per variable, named
//! `PREFIX` + the key in lower case + `SUFFIX` (`DB_PASSWORD` → `db_password`, the name that
//! `/run/secrets/db_password` and `get_secret("DB_PASSWORD")` expect). Existing names are
//! skipped, each with a line; values never appear anywhere but in the store.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use lockbox_client::Client;
use serde_json::Value;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::create_secret;
use super::dotenv;
use super::schedule::{parse_interval, schedule_labels};
use super::versions::{parse_version_name, version_labels};
use crate::cli::SecretImportArgs;
use crate::commands::key_value;

/// A `.env` file larger than this is refused (it is read into locked-down memory whole).
const MAX_ENV_FILE: u64 = 16 * 1024 * 1024;

fn read_env_file(path: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    if path == "-" {
        std::io::stdin()
            .take(MAX_ENV_FILE + 1)
            .read_to_end(&mut buf)
            .context("error reading from STDIN")?;
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        buf.reserve_exact(usize::try_from(len.min(MAX_ENV_FILE) + 1).unwrap_or(0));
        f.take(MAX_ENV_FILE + 1)
            .read_to_end(&mut buf)
            .with_context(|| format!("cannot read {path}"))?;
    }
    if buf.len() as u64 > MAX_ENV_FILE {
        bail!("{path} is larger than {MAX_ENV_FILE} bytes");
    }
    Ok(buf)
}

/// The secret name for `key`.
pub(crate) fn secret_name(prefix: &str, key: &str, suffix: &str) -> String {
    format!("{prefix}{}{suffix}", key.to_lowercase())
}

pub(crate) async fn run(client: &Client, a: &SecretImportArgs) -> anyhow::Result<ExitCode> {
    let file = a.env_file.as_str();
    let parsed = {
        let text = read_env_file(file)?;
        dotenv::parse(&text).map_err(|e| anyhow!("{file}: {e}"))?
    };
    for n in &parsed.notes {
        eprintln!("note: {file}: {n}");
    }
    let only: BTreeSet<&str> = a
        .only
        .iter()
        .map(|k| k.trim())
        .filter(|k| !k.is_empty())
        .collect();
    let missing: Vec<&str> = only
        .iter()
        .copied()
        .filter(|k| !parsed.entries.iter().any(|e| e.key == *k))
        .collect();
    if !missing.is_empty() {
        bail!("not in {file}: {}", missing.join(", "));
    }
    let entries: Vec<&dotenv::Entry> = parsed
        .entries
        .iter()
        .filter(|e| only.is_empty() || only.contains(e.key.as_str()))
        .collect();
    let prefix = a.prefix.as_deref().unwrap_or("");
    let suffix = a.suffix.as_deref().unwrap_or("");
    // Every name is checked before anything is created.
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for e in &entries {
        let name = secret_name(prefix, &e.key, suffix);
        if let Err(err) = lockbox_types::validate_name(&name) {
            problems.push(format!(
                "{} (line {}): secret name {name:?}: {err}",
                e.key, e.line
            ));
        }
        if let Some(other) = seen.insert(name.to_lowercase(), &e.key) {
            problems.push(format!("{} and {other} would both be named {name}", e.key));
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    let every = a
        .rotate_every
        .as_deref()
        .map(parse_interval)
        .transpose()
        .context("invalid --rotate-every")?;
    let now = OffsetDateTime::now_utc();
    let user_labels: Vec<(String, String)> = a.labels.iter().map(|l| key_value(l)).collect();
    let existing: BTreeSet<String> = client
        .get("/secrets")
        .await?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.pointer("/Spec/Name").and_then(Value::as_str))
        .map(str::to_lowercase)
        .collect();
    let (mut created, mut skipped, mut failed) = (0usize, 0usize, 0usize);
    for e in entries {
        let name = secret_name(prefix, &e.key, suffix);
        if e.has_reference() {
            eprintln!(
                "note: {file}: line {}: {} contains ${{...}}, which is imported as written (not expanded)",
                e.line, e.key
            );
        }
        if existing.contains(&name.to_lowercase()) {
            println!(
                "skipped {name} ({}): a secret with this name already exists",
                e.key
            );
            skipped += 1;
            continue;
        }
        if e.value.is_empty() {
            println!("skipped {name} ({}): empty value", e.key);
            skipped += 1;
            continue;
        }
        if a.dry_run {
            println!("would create {name} ({})", e.key);
            created += 1;
            continue;
        }
        let mut labels: BTreeMap<String, String> = BTreeMap::new();
        if let Some((family, version)) = parse_version_name(&name) {
            labels.extend(version_labels(family, version));
        }
        if let Some(i) = &every {
            labels.extend(schedule_labels(i, now));
        }
        labels.extend(user_labels.iter().cloned());
        match create_secret(client, &name, &labels, &e.value).await {
            Ok(id) => {
                println!("created {name} ({}) {id}", e.key);
                created += 1;
            }
            Err(err) => {
                eprintln!("error: {name} ({}): {err:#}", e.key);
                failed += 1;
            }
        }
    }
    eprintln!(
        "{created} {}, {skipped} skipped{}",
        if a.dry_run { "to create" } else { "created" },
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    );
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(secret_name("", "DB_PASSWORD", ""), "db_password");
        assert_eq!(
            secret_name("roi-poc-", "JWT_SECRET", "-v1"),
            "roi-poc-jwt_secret-v1"
        );
    }
}
