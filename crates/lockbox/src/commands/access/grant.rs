//! `lockbox grant ls|create|rm`: a role given to a user or a group, on a scope.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use http::Method;
use lockbox_client::Client;
use serde_json::{Value, json};

use super::{ago, get, list_text, remove_each, send, str_of};

/// `lockbox grant`.
#[derive(Debug, Subcommand)]
pub(crate) enum GrantCmd {
    /// List grants
    #[command(alias = "list")]
    Ls {
        /// Only display IDs
        #[arg(short, long)]
        quiet: bool,
        /// Format output using a custom template ('json' or a Go template)
        #[arg(long)]
        format: Option<String>,
    },
    /// Give a role to a user or a group, on all objects or some (prints the grant's ID)
    Create(GrantCreateArgs),
    /// Remove grants
    #[command(alias = "remove")]
    Rm {
        /// GRANT [GRANT...]
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct GrantCreateArgs {
    #[command(flatten)]
    subject: SubjectArgs,
    /// The role to give
    #[arg(long, value_name = "ROLE")]
    role: String,
    #[command(flatten)]
    scope: ScopeArgs,
}

/// Who gets the role.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct SubjectArgs {
    /// Give the role to this user
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Give the role to the members of this group
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
}

impl SubjectArgs {
    /// `user:NAME` or `group:NAME`.
    fn subject(&self) -> anyhow::Result<String> {
        let (kind, name) = match (&self.user, &self.group) {
            (Some(u), _) => ("user", u),
            (None, Some(g)) => ("group", g),
            (None, None) => bail!("give --user or --group"),
        };
        if name.trim().is_empty() {
            bail!("--{kind} needs a name");
        }
        Ok(format!("{kind}:{}", name.trim()))
    }
}

/// Where the role applies (default: everywhere).
#[derive(Debug, Args)]
#[group(multiple = false)]
struct ScopeArgs {
    /// The scope as text: all, name:GLOB or label:KEY=VALUE [default: all]
    #[arg(long, value_name = "SCOPE")]
    scope: Option<String>,
    /// Only objects whose name matches GLOB (* and ?), e.g. app-*
    #[arg(long, value_name = "GLOB")]
    name: Option<String>,
    /// Only objects with the label KEY=VALUE
    #[arg(long, value_name = "KEY=VALUE")]
    label: Option<String>,
}

impl ScopeArgs {
    /// `all`, `name:GLOB` or `label:KEY=VALUE`.
    fn scope(&self) -> anyhow::Result<String> {
        match (&self.scope, &self.name, &self.label) {
            (Some(s), _, _) => parse_scope(s),
            (None, Some(g), _) => parse_scope(&format!("name:{g}")),
            (None, None, Some(l)) => parse_scope(&format!("label:{l}")),
            (None, None, None) => Ok("all".to_owned()),
        }
    }
}

/// Checks the shape of a scope; the daemon has the last word.
fn parse_scope(s: &str) -> anyhow::Result<String> {
    let s = s.trim();
    if s == "all" {
        return Ok(s.to_owned());
    }
    if let Some(glob) = s.strip_prefix("name:") {
        if glob.is_empty() {
            bail!("invalid scope {s:?}: name:GLOB needs a pattern");
        }
        return Ok(s.to_owned());
    }
    if let Some(kv) = s.strip_prefix("label:") {
        match kv.split_once('=') {
            Some((k, _)) if !k.is_empty() => return Ok(s.to_owned()),
            _ => bail!("invalid scope {s:?}: label:KEY=VALUE needs a key and a value"),
        }
    }
    bail!("invalid scope {s:?}: use all, name:GLOB or label:KEY=VALUE")
}

const LS_FORMAT: &str = "table {{.ID}}\t{{.Subject}}\t{{.Role}}\t{{.Scope}}\t{{.CreatedAt}}";
const LS_HEADERS: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("Subject", "SUBJECT"),
    ("Role", "ROLE"),
    ("Scope", "SCOPE"),
    ("CreatedAt", "CREATED"),
];

pub(super) async fn run(client: &Client, cmd: GrantCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        GrantCmd::Ls { quiet, format } => {
            let list = get(client, "/lockbox/v1/grants").await?;
            let rows = ls_rows(&list, time::OffsetDateTime::now_utc());
            print!(
                "{}",
                list_text(
                    format.as_deref(),
                    quiet.then_some("ID"),
                    LS_FORMAT,
                    LS_HEADERS,
                    &rows
                )?
            );
            Ok(ExitCode::SUCCESS)
        }
        GrantCmd::Create(a) => {
            let body = create_body(&a)?;
            let resp = send(client, Method::POST, "/lockbox/v1/grants", Some(&body))
                .await?
                .json()?;
            println!("{}", str_of(&resp, "ID"));
            Ok(ExitCode::SUCCESS)
        }
        GrantCmd::Rm { ids } => remove_each(client, "/lockbox/v1/grants", &ids).await,
    }
}

/// The body of `POST /lockbox/v1/grants`.
fn create_body(a: &GrantCreateArgs) -> anyhow::Result<Value> {
    if a.role.trim().is_empty() {
        bail!("--role needs a name");
    }
    Ok(json!({
        "Subject": a.subject.subject()?,
        "Role": a.role.trim(),
        "Scope": a.scope.scope()?,
    }))
}

/// The formatter contexts of `grant ls`.
fn ls_rows(list: &Value, now: time::OffsetDateTime) -> Vec<Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            json!({
                "ID": str_of(g, "ID"),
                "Subject": str_of(g, "Subject"),
                "Role": str_of(g, "Role"),
                "Scope": str_of(g, "Scope"),
                "CreatedAt": ago(str_of(g, "CreatedAt"), now),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(subcommand)]
        cmd: GrantCmd,
    }

    fn body(args: &[&str]) -> anyhow::Result<Value> {
        let t = T::try_parse_from(["grant", "create"].into_iter().chain(args.iter().copied()))?;
        match t.cmd {
            GrantCmd::Create(a) => create_body(&a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subject_and_scope_flags() {
        assert_eq!(
            body(&["--user", "alice", "--role", "viewer"]).unwrap(),
            json!({"Subject": "user:alice", "Role": "viewer", "Scope": "all"})
        );
        assert_eq!(
            body(&["--group", "devs", "--role", "deployer", "--name", "app-*"]).unwrap(),
            json!({"Subject": "group:devs", "Role": "deployer", "Scope": "name:app-*"})
        );
        assert_eq!(
            body(&["--user", "a", "--role", "r", "--label", "team=payments"]).unwrap()["Scope"],
            json!("label:team=payments")
        );
        assert_eq!(
            body(&[
                "--user",
                "a",
                "--role",
                "r",
                "--scope",
                "label:team=payments"
            ])
            .unwrap()["Scope"],
            json!("label:team=payments")
        );
        assert_eq!(
            body(&["--user", "a", "--role", "r", "--scope", "all"]).unwrap()["Scope"],
            json!("all")
        );
        // Exactly one subject, at most one scope, a role.
        assert!(body(&["--role", "r"]).is_err());
        assert!(body(&["--user", "a", "--group", "g", "--role", "r"]).is_err());
        assert!(body(&["--user", "a"]).is_err());
        assert!(
            body(&[
                "--user", "a", "--role", "r", "--name", "x", "--label", "k=v"
            ])
            .is_err()
        );
        assert!(
            body(&[
                "--user", "a", "--role", "r", "--scope", "all", "--name", "x"
            ])
            .is_err()
        );
        assert!(body(&["--user", "", "--role", "r"]).is_err());
    }

    #[test]
    fn scopes() {
        assert_eq!(parse_scope("all").unwrap(), "all");
        assert_eq!(parse_scope("name:app-*").unwrap(), "name:app-*");
        assert_eq!(parse_scope("label:k=").unwrap(), "label:k=");
        assert!(parse_scope("name:").is_err());
        assert!(parse_scope("label:k").is_err());
        assert!(parse_scope("label:=v").is_err());
        assert!(parse_scope("everything").is_err());
    }

    #[test]
    fn ls_table() {
        let list = json!([
            {"ID": "g1a2b3", "Subject": "user:alice", "Role": "viewer", "Scope": "all",
             "CreatedAt": "2026-11-23T11:59:00Z"},
            {"ID": "g4c5d6", "Subject": "group:devs", "Role": "deployer",
             "Scope": "name:app-*", "CreatedAt": "2026-11-21T12:00:00Z"}
        ]);
        let now = time::macros::datetime!(2026-11-23 12:00 UTC);
        let rows = ls_rows(&list, now);
        assert_eq!(
            list_text(None, None, LS_FORMAT, LS_HEADERS, &rows).unwrap(),
            "ID        SUBJECT      ROLE       SCOPE        CREATED\n\
             g1a2b3    user:alice   viewer     all          About a minute ago\n\
             g4c5d6    group:devs   deployer   name:app-*   2 days ago\n"
        );
        assert_eq!(
            list_text(None, Some("ID"), LS_FORMAT, LS_HEADERS, &rows).unwrap(),
            "g1a2b3\ng4c5d6\n"
        );
    }
}
