//! `lockbox role ls|create|rm|inspect`.

use std::process::ExitCode;

use clap::Subcommand;
use http::Method;
use lockbox_client::Client;
use serde_json::{Value, json};

use super::{ellipsis, get, inspect_named, list_text, remove_each, send, str_of, strings_of};

/// `lockbox role`.
#[derive(Debug, Subcommand)]
pub(crate) enum RoleCmd {
    /// List roles
    #[command(alias = "list")]
    Ls {
        /// Only display names
        #[arg(short, long)]
        quiet: bool,
        /// Do not truncate the list of permissions
        #[arg(long)]
        no_trunc: bool,
        /// Format output using a custom template ('json' or a Go template)
        #[arg(long)]
        format: Option<String>,
    },
    /// Create a role: a named set of permissions (`lockbox role permissions` lists them)
    Create {
        /// Permission of the role (repeatable, or comma separated), e.g. secret.list
        #[arg(short = 'p', long = "permission", value_name = "P", required = true)]
        permissions: Vec<String>,
        /// Role name
        name: String,
    },
    /// Remove roles (not built-in ones, nor roles a grant uses)
    #[command(alias = "remove")]
    Rm {
        /// ROLE [ROLE...]
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Display detailed information on one or more roles
    Inspect {
        /// Format output using a custom template ('json' or a Go template)
        #[arg(short = 'f', long)]
        format: Option<String>,
        /// ROLE [ROLE...]
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List the permissions roles can hold
    Permissions,
}

const LS_FORMAT: &str = "table {{.Name}}\t{{.Builtin}}\t{{.Permissions}}";
const LS_HEADERS: &[(&str, &str)] = &[
    ("Name", "NAME"),
    ("Builtin", "BUILT-IN"),
    ("Permissions", "PERMISSIONS"),
];

pub(super) async fn run(client: &Client, cmd: RoleCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        RoleCmd::Ls {
            quiet,
            no_trunc,
            format,
        } => {
            let list = get(client, "/lockbox/v1/roles").await?;
            print!(
                "{}",
                list_text(
                    format.as_deref(),
                    quiet.then_some("Name"),
                    LS_FORMAT,
                    LS_HEADERS,
                    &ls_rows(&list, !no_trunc),
                )?
            );
            Ok(ExitCode::SUCCESS)
        }
        RoleCmd::Create { permissions, name } => {
            let permissions = parse_permissions(&permissions)?;
            send(
                client,
                Method::POST,
                "/lockbox/v1/roles",
                Some(&json!({ "Name": name, "Permissions": permissions })),
            )
            .await?;
            println!("{name}");
            Ok(ExitCode::SUCCESS)
        }
        RoleCmd::Rm { names } => remove_each(client, "/lockbox/v1/roles", &names).await,
        RoleCmd::Inspect { format, names } => {
            let list = get(client, "/lockbox/v1/roles").await?;
            inspect_named(&list, &names, "role", format.as_deref())
        }
        RoleCmd::Permissions => {
            let list = get(client, "/lockbox/v1/permissions").await?;
            for p in list
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                println!("{p}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The `--permission` values: split at commas, trimmed, without duplicates, in the order given.
/// The daemon checks that each one exists.
pub(super) fn parse_permissions(values: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for p in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if p.is_empty() {
            continue;
        }
        if p.chars().any(char::is_whitespace) {
            anyhow::bail!("invalid permission {p:?}");
        }
        if !out.iter().any(|o| o == p) {
            out.push(p.to_owned());
        }
    }
    if out.is_empty() {
        anyhow::bail!("a role needs at least one --permission");
    }
    Ok(out)
}

/// Width of the `PERMISSIONS` column unless `--no-trunc`.
const PERMISSIONS_WIDTH: usize = 60;

/// The formatter contexts of `role ls`.
fn ls_rows(list: &Value, trunc: bool) -> Vec<Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let builtin = r.get("Builtin").and_then(Value::as_bool).unwrap_or(false);
            let permissions = strings_of(r, "Permissions").join(",");
            json!({
                "Name": str_of(r, "Name"),
                "Builtin": if builtin { "yes" } else { "no" },
                "Permissions": if trunc {
                    ellipsis(&permissions, PERMISSIONS_WIDTH)
                } else {
                    permissions
                },
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
        cmd: RoleCmd,
    }

    fn permissions_of(args: &[&str]) -> anyhow::Result<Vec<String>> {
        let t = T::try_parse_from(std::iter::once("role").chain(args.iter().copied()))?;
        match t.cmd {
            RoleCmd::Create { permissions, .. } => parse_permissions(&permissions),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn permission_flags() {
        assert_eq!(
            permissions_of(&[
                "create",
                "deployer",
                "-p",
                "secret.list,secret.use",
                "--permission",
                "service.manage",
                "-p",
                " secret.list , ",
            ])
            .unwrap(),
            ["secret.list", "secret.use", "service.manage"]
        );
        assert!(permissions_of(&["create", "deployer"]).is_err());
        let e = permissions_of(&["create", "deployer", "-p", ","]).unwrap_err();
        assert_eq!(e.to_string(), "a role needs at least one --permission");
        assert!(permissions_of(&["create", "deployer", "-p", "secret list"]).is_err());
    }

    #[test]
    fn ls_table() {
        let list = json!([
            {"Name": "admin", "Permissions": ["access.manage", "audit.read"], "Builtin": true},
            {"Name": "deployer", "Permissions": ["secret.use", "service.manage"], "Builtin": false}
        ]);
        let table = |format: Option<&str>, quiet: bool| {
            list_text(
                format,
                quiet.then_some("Name"),
                LS_FORMAT,
                LS_HEADERS,
                &ls_rows(&list, true),
            )
            .unwrap()
        };
        assert_eq!(
            table(None, false),
            "NAME       BUILT-IN   PERMISSIONS\n\
             admin      yes        access.manage,audit.read\n\
             deployer   no         secret.use,service.manage\n"
        );
        assert_eq!(table(Some("table"), true), "admin\ndeployer\n");
        assert_eq!(
            table(Some("{{.Name}} {{.Builtin}}"), false),
            "admin yes\ndeployer no\n"
        );
        let all: Vec<String> = (0..12).map(|i| format!("perm.number{i}")).collect();
        let long = json!([{"Name": "admin", "Permissions": all, "Builtin": true}]);
        let cut = ls_rows(&long, true)[0]["Permissions"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(cut.chars().count(), PERMISSIONS_WIDTH);
        assert!(cut.ends_with('…'), "{cut}");
        assert_eq!(
            ls_rows(&long, false)[0]["Permissions"],
            json!(all.join(","))
        );
    }
}
