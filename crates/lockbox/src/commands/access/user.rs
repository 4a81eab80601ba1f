//! `lockbox user ls|create|update|rm|inspect|bundle|revoke`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use http::Method;
use lockbox_client::Client;
use serde_json::{Map, Value, json};

use super::{ago, get, inspect_named, list_text, remove_each, seg, send, str_of, strings_of};

/// `lockbox user`.
#[derive(Debug, Subcommand)]
pub(crate) enum UserCmd {
    /// List users
    #[command(alias = "list")]
    Ls {
        /// Only display names
        #[arg(short, long)]
        quiet: bool,
        /// Format output using a custom template ('json' or a Go template)
        #[arg(long)]
        format: Option<String>,
    },
    /// Create a user
    Create {
        /// Unix uid that authenticates as this user on the daemon's unix socket
        #[arg(long, value_name = "N")]
        uid: Option<u32>,
        /// Group of the user (repeatable, or comma separated)
        #[arg(long = "group", value_name = "G", value_delimiter = ',')]
        groups: Vec<String>,
        /// User name
        name: String,
    },
    /// Change a user's uid or groups (what is not given stays unchanged)
    Update {
        /// Set the unix uid
        #[arg(long, value_name = "N", conflicts_with = "no_uid")]
        uid: Option<u32>,
        /// Remove the unix uid
        #[arg(long)]
        no_uid: bool,
        /// Replace the groups with these (repeatable, or comma separated)
        #[arg(
            long = "group",
            value_name = "G",
            value_delimiter = ',',
            conflicts_with = "no_groups"
        )]
        groups: Option<Vec<String>>,
        /// Remove every group
        #[arg(long)]
        no_groups: bool,
        /// User name
        name: String,
    },
    /// Remove users (revokes their certificates and removes their grants)
    #[command(alias = "remove")]
    Rm {
        /// USER [USER...]
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Display detailed information on one or more users
    Inspect {
        /// Format output using a custom template ('json' or a Go template)
        #[arg(short = 'f', long)]
        format: Option<String>,
        /// USER [USER...]
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Issue a client certificate: write ca.pem, cert.pem and key.pem for docker --tlsverify
    Bundle {
        /// Directory to write the files to [default: ./NAME-bundle]
        #[arg(short = 'o', long, value_name = "DIR")]
        output: Option<PathBuf>,
        /// Days the certificate is valid [default: the daemon's, 365]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        days: Option<u32>,
        /// Overwrite existing files
        #[arg(long)]
        force: bool,
        /// User name
        name: String,
    },
    /// Revoke a user's client certificates (all of them unless --serial is given)
    Revoke {
        /// Revoke only the certificate with this serial number (hex)
        #[arg(long, value_name = "S")]
        serial: Option<String>,
        /// User name
        name: String,
    },
}

const LS_FORMAT: &str =
    "table {{.Name}}\t{{.Uid}}\t{{.Groups}}\t{{.Certificates}}\t{{.CreatedAt}}\t{{.UpdatedAt}}";
const LS_HEADERS: &[(&str, &str)] = &[
    ("Name", "NAME"),
    ("Uid", "UID"),
    ("Groups", "GROUPS"),
    ("Certificates", "CERTIFICATES"),
    ("CreatedAt", "CREATED"),
    ("UpdatedAt", "UPDATED"),
];

pub(super) async fn run(client: &Client, cmd: UserCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        UserCmd::Ls { quiet, format } => {
            let list = get(client, "/lockbox/v1/users").await?;
            let rows = ls_rows(&list, time::OffsetDateTime::now_utc());
            print!(
                "{}",
                list_text(
                    format.as_deref(),
                    quiet.then_some("Name"),
                    LS_FORMAT,
                    LS_HEADERS,
                    &rows
                )?
            );
            Ok(ExitCode::SUCCESS)
        }
        UserCmd::Create { uid, groups, name } => {
            let body = create_body(&name, uid, &groups);
            let resp = send(client, Method::POST, "/lockbox/v1/users", Some(&body))
                .await?
                .json()?;
            let created = str_of(&resp, "Name");
            println!("{}", if created.is_empty() { &name } else { created });
            Ok(ExitCode::SUCCESS)
        }
        UserCmd::Update {
            uid,
            no_uid,
            groups,
            no_groups,
            name,
        } => {
            let body = update_body(uid, no_uid, groups.as_deref(), no_groups);
            if body.as_object().is_some_and(Map::is_empty) {
                anyhow::bail!("nothing to update: give --uid, --no-uid, --group or --no-groups");
            }
            send(
                client,
                Method::POST,
                &format!("/lockbox/v1/users/{}/update", seg(&name)),
                Some(&body),
            )
            .await?;
            println!("{name}");
            Ok(ExitCode::SUCCESS)
        }
        UserCmd::Rm { names } => remove_each(client, "/lockbox/v1/users", &names).await,
        UserCmd::Inspect { format, names } => {
            let list = get(client, "/lockbox/v1/users").await?;
            inspect_named(&list, &names, "user", format.as_deref())
        }
        UserCmd::Bundle {
            output,
            days,
            force,
            name,
        } => super::bundle::run(client, &name, output, days, force).await,
        UserCmd::Revoke { serial, name } => {
            let body = match &serial {
                Some(s) => json!({ "Serial": s }),
                None => json!({}),
            };
            let resp = send(
                client,
                Method::POST,
                &format!("/lockbox/v1/users/{}/revoke", seg(&name)),
                Some(&body),
            )
            .await?
            .json()?;
            let revoked = strings_of(&resp, "Revoked");
            if revoked.is_empty() {
                eprintln!("{name} has no certificate to revoke");
            }
            for s in &revoked {
                println!("{s}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The body of `POST /lockbox/v1/users`.
fn create_body(name: &str, uid: Option<u32>, groups: &[String]) -> Value {
    let mut body = json!({ "Name": name });
    if let Some(u) = uid {
        body["Uid"] = json!(u);
    }
    let groups = clean_groups(groups);
    if !groups.is_empty() {
        body["Groups"] = json!(groups);
    }
    body
}

/// The body of `POST /lockbox/v1/users/{name}/update`: only the fields to change.
fn update_body(
    uid: Option<u32>,
    no_uid: bool,
    groups: Option<&[String]>,
    no_groups: bool,
) -> Value {
    let mut body = json!({});
    if let Some(u) = uid {
        body["Uid"] = json!(u);
    } else if no_uid {
        body["Uid"] = Value::Null;
    }
    if no_groups {
        body["Groups"] = json!([]);
    } else if let Some(g) = groups {
        body["Groups"] = json!(clean_groups(g));
    }
    body
}

/// Trimmed, without empty entries and duplicates, in the order given.
fn clean_groups(groups: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for g in groups.iter().map(|g| g.trim()).filter(|g| !g.is_empty()) {
        if !out.iter().any(|o| o == g) {
            out.push(g.to_owned());
        }
    }
    out
}

/// The formatter contexts of `user ls`.
fn ls_rows(list: &Value, now: time::OffsetDateTime) -> Vec<Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            let active = u
                .get("Certificates")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|c| certificate_active(c, now))
                .count();
            json!({
                "Name": str_of(u, "Name"),
                "Uid": u.get("Uid").and_then(Value::as_u64).map(|n| n.to_string()).unwrap_or_default(),
                "Groups": strings_of(u, "Groups").join(","),
                "Certificates": active.to_string(),
                "CreatedAt": ago(str_of(u, "CreatedAt"), now),
                "UpdatedAt": ago(str_of(u, "UpdatedAt"), now),
            })
        })
        .collect()
}

/// Not revoked and not expired.
fn certificate_active(c: &Value, now: time::OffsetDateTime) -> bool {
    let revoked = c.get("Revoked").and_then(Value::as_bool).unwrap_or(false);
    let expired = lockbox_format::parse_time(str_of(c, "NotAfter")).is_ok_and(|t| t <= now);
    !revoked && !expired
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(subcommand)]
        cmd: UserCmd,
    }

    fn parse(args: &[&str]) -> Result<UserCmd, clap::Error> {
        T::try_parse_from(std::iter::once("user").chain(args.iter().copied())).map(|t| t.cmd)
    }

    #[test]
    fn create_flags() {
        let UserCmd::Create { uid, groups, name } = parse(&[
            "create", "alice", "--uid", "1001", "--group", "devs,ops", "--group", "qa",
        ])
        .unwrap() else {
            panic!("not create")
        };
        assert_eq!(
            create_body(&name, uid, &groups),
            json!({"Name": "alice", "Uid": 1001, "Groups": ["devs", "ops", "qa"]})
        );
        assert_eq!(create_body("bob", None, &[]), json!({"Name": "bob"}));
        assert!(parse(&["create", "alice", "--uid", "-1"]).is_err());
        assert!(parse(&["create"]).is_err());
    }

    #[test]
    fn update_flags() {
        let body = |args: &[&str]| match parse(args).unwrap() {
            UserCmd::Update {
                uid,
                no_uid,
                groups,
                no_groups,
                ..
            } => update_body(uid, no_uid, groups.as_deref(), no_groups),
            other => panic!("{other:?}"),
        };
        assert_eq!(body(&["update", "a"]), json!({}));
        assert_eq!(body(&["update", "a", "--uid", "7"]), json!({"Uid": 7}));
        assert_eq!(body(&["update", "a", "--no-uid"]), json!({"Uid": null}));
        assert_eq!(
            body(&["update", "a", "--group", "x", "--group", " x ,y"]),
            json!({"Groups": ["x", "y"]})
        );
        assert_eq!(body(&["update", "a", "--no-groups"]), json!({"Groups": []}));
        assert!(parse(&["update", "a", "--uid", "7", "--no-uid"]).is_err());
        assert!(parse(&["update", "a", "--group", "x", "--no-groups"]).is_err());
    }

    #[test]
    fn bundle_and_revoke_flags() {
        match parse(&["bundle", "alice", "-o", "/tmp/b", "--days", "30", "--force"]).unwrap() {
            UserCmd::Bundle {
                output,
                days,
                force,
                name,
            } => {
                assert_eq!(output, Some(PathBuf::from("/tmp/b")));
                assert_eq!((days, force, name.as_str()), (Some(30), true, "alice"));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["bundle", "alice", "--days", "0"]).is_err());
        match parse(&["revoke", "alice", "--serial", "0a1b"]).unwrap() {
            UserCmd::Revoke { serial, name } => {
                assert_eq!((serial.as_deref(), name.as_str()), (Some("0a1b"), "alice"));
            }
            other => panic!("{other:?}"),
        }
    }

    fn sample() -> Value {
        json!([
            {"Name": "alice", "Uid": 1001, "Groups": ["devs", "ops"],
             "CreatedAt": "2026-11-23T10:00:00Z", "UpdatedAt": "2026-11-23T11:30:00Z",
             "Certificates": [
                 {"Serial": "01", "NotAfter": "2027-11-23T10:00:00Z", "Revoked": false},
                 {"Serial": "02", "NotAfter": "2027-11-23T10:00:00Z", "Revoked": true},
                 {"Serial": "03", "NotAfter": "2026-01-01T00:00:00Z", "Revoked": false}]},
            {"Name": "ci", "Uid": null, "Groups": [],
             "CreatedAt": "2026-11-20T12:00:00Z", "UpdatedAt": "2026-11-20T12:00:00Z",
             "Certificates": []}
        ])
    }

    fn render(format: Option<&str>, quiet: bool) -> String {
        let now = time::macros::datetime!(2026-11-23 12:00 UTC);
        let rows = ls_rows(&sample(), now);
        list_text(
            format,
            quiet.then_some("Name"),
            LS_FORMAT,
            LS_HEADERS,
            &rows,
        )
        .unwrap()
    }

    #[test]
    fn ls_table_and_formats() {
        assert_eq!(
            render(None, false),
            "NAME      UID       GROUPS     CERTIFICATES   CREATED       UPDATED\n\
             alice     1001      devs,ops   1              2 hours ago   30 minutes ago\n\
             ci                             0              3 days ago    3 days ago\n"
        );
        assert_eq!(render(None, true), "alice\nci\n");
        assert_eq!(
            render(Some("{{.Name}}:{{.Uid}}"), false),
            "alice:1001\nci:\n"
        );
        assert_eq!(
            render(Some("json"), false).lines().next().unwrap(),
            r#"{"Certificates":"1","CreatedAt":"2 hours ago","Groups":"devs,ops","Name":"alice","Uid":"1001","UpdatedAt":"30 minutes ago"}"#
        );
    }
}
