//! `lockbox whoami|user|role|grant|audit` from outside: what the CLI decides on its own (usage
//! errors, refusing to overwrite a bundle, reading the value of `check-value`), offline
//! verification of audit files, and the commands against a daemon.

mod common;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use common::Daemon;

/// No daemon listens here: commands that get that far fail to connect.
fn nowhere(dir: &Path) -> String {
    format!("unix://{}", dir.join("nobody.sock").display())
}

/// Runs `lockbox -H host ARGS` in `cwd`; returns exit code, stdout, stderr.
fn lockbox(host: &str, cwd: &Path, args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockbox"))
        .arg("-H")
        .arg(host)
        .args(args)
        .current_dir(cwd)
        .env_remove("LOCKBOX_HOST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lockbox");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(data) = stdin {
        input.write_all(data).expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().expect("wait for lockbox");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let host = nowhere(tmp.path());
    for args in [
        &[
            "grant", "create", "--user", "a", "--group", "g", "--role", "r",
        ][..],
        &["grant", "create", "--role", "r"],
        &[
            "grant", "create", "--user", "a", "--role", "r", "--name", "x", "--label", "k=v",
        ],
        &["user", "update", "a", "--uid", "1", "--no-uid"],
        &["user", "bundle", "a", "--days", "0"],
        &["role", "create", "r"],
        &["audit", "check-value", "1"],
        &["audit", "ls", "--limit", "many"],
    ] {
        let (code, out, err) = lockbox(&host, tmp.path(), args, None);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
}

#[test]
fn commands_need_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let host = nowhere(tmp.path());
    for args in [
        &["whoami"][..],
        &["user", "ls"],
        &["role", "ls"],
        &["grant", "ls"],
        &["audit", "ls"],
        &["audit", "export"],
        &["audit", "verify"],
    ] {
        let (code, out, err) = lockbox(&host, tmp.path(), args, None);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(
            err.starts_with("Cannot connect to the lockbox daemon at unix://"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn bundle_refuses_to_overwrite_before_asking_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let host = nowhere(tmp.path());
    let dir = tmp.path().join("alice-bundle");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("key.pem"), "old key").unwrap();
    let (code, out, err) = lockbox(&host, tmp.path(), &["user", "bundle", "alice"], None);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("key.pem already exists"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("key.pem")).unwrap(),
        "old key"
    );
    // With --force it gets as far as the daemon.
    let (code, _, err) = lockbox(
        &host,
        tmp.path(),
        &["user", "bundle", "alice", "--force"],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("Cannot connect"), "{err}");
}

#[test]
fn bad_times_and_empty_values_fail_before_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let host = nowhere(tmp.path());
    let (code, _, err) = lockbox(&host, tmp.path(), &["audit", "ls", "--since", "soon"], None);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("invalid --since: invalid time \"soon\""),
        "{err}"
    );
    let (code, _, err) = lockbox(
        &host,
        tmp.path(),
        &["audit", "check-value", "1", "-"],
        Some(b""),
    );
    assert_eq!(code, 1);
    assert!(err.contains("data is empty"), "{err}");
    let (code, _, err) = lockbox(
        &host,
        tmp.path(),
        &["audit", "check-value", "1", "missing.txt"],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("missing.txt"), "{err}");
}

/// Appends `n` records to a new trail in `dir`.
fn write_trail(dir: &Path, n: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = lockbox_audit::AuditLog::open(dir, lockbox_audit::Options::default()).unwrap();
        for i in 0..n {
            log.append(lockbox_audit::Record {
                time: time::OffsetDateTime::now_utc(),
                actor: "alice".into(),
                source: "unix:uid=1001,pid=77".into(),
                action: "secret.create".into(),
                method: Some("POST".into()),
                path: Some("/v1.47/secrets/create".into()),
                objects: vec![lockbox_audit::ObjectRef {
                    kind: "secret".into(),
                    id: format!("id{i}"),
                    name: format!("s{i}"),
                }],
                outcome: lockbox_audit::Outcome {
                    status: 201,
                    error: None,
                },
                details: Default::default(),
            })
            .await
            .unwrap();
        }
        log.close().await;
    });
}

#[test]
fn verify_audit_files_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let host = nowhere(tmp.path());
    let trail = tmp.path().join("audit");
    write_trail(&trail, 3);
    let dir = trail.display().to_string();
    let (code, out, err) = lockbox(&host, tmp.path(), &["audit", "verify", "--dir", &dir], None);
    assert_eq!(
        (code, out.as_str()),
        (0, "OK: 3 records in 1 files verified\n"),
        "{err}"
    );

    // One changed byte in the second record.
    let file = trail.join("audit-00000000000000000001.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let second = text.find("\n").unwrap() + 1;
    let tampered = format!(
        "{}{}",
        &text[..second],
        text[second..].replacen("\"alice\"", "\"alicf\"", 1)
    );
    std::fs::write(&file, tampered).unwrap();
    let (code, out, err) = lockbox(&host, tmp.path(), &["audit", "verify", "--dir", &dir], None);
    assert_eq!(code, 1, "{err}");
    assert!(
        out.starts_with(
            "FAILED: first bad record: file audit-00000000000000000001.jsonl line 2 (seq 2): "
        ),
        "{out}"
    );
}

/// `lockbox ARGS` against `d` in its temp dir: exit code, stdout, stderr.
fn on(d: &Daemon, args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    lockbox(&d.host(), d.dir(), args, stdin)
}

/// `lockbox ARGS` against `d`, which must succeed; its stdout.
fn ok(d: &Daemon, args: &[&str]) -> String {
    let (code, out, err) = on(d, args, None);
    assert_eq!(code, 0, "lockbox {args:?}: {err}");
    out
}

#[test]
fn access_commands_against_the_daemon() {
    let d = Daemon::start();
    let me = ok(&d, &["whoami", "--format", "{{.Admin}}"]);
    if me.trim() != "true" {
        common::skip(
            "access_commands_against_the_daemon",
            "the daemon does not take this user for an administrator",
        );
        return;
    }
    assert!(ok(&d, &["whoami"]).starts_with("User:    "));

    // Users.
    assert_eq!(
        ok(
            &d,
            &[
                "user", "create", "alice", "--uid", "4242", "--group", "devs"
            ]
        ),
        "alice\n"
    );
    let (code, _, err) = on(&d, &["user", "create", "alice"], None);
    assert_eq!(code, 1);
    assert!(err.starts_with("Error response from daemon: "), "{err}");
    assert_eq!(ok(&d, &["user", "ls", "-q"]), "alice\n");
    let table = ok(&d, &["user", "ls"]);
    assert!(table.starts_with("NAME "), "{table}");
    assert!(table.contains("4242"), "{table}");
    ok(
        &d,
        &["user", "update", "alice", "--no-uid", "--group", "devs,ops"],
    );
    assert_eq!(
        ok(
            &d,
            &[
                "user",
                "inspect",
                "alice",
                "--format",
                "{{json .Uid}} {{json .Groups}}"
            ]
        ),
        "null [\"devs\",\"ops\"]\n"
    );
    let (code, _, err) = on(&d, &["user", "inspect", "nobody"], None);
    assert_eq!((code, err.as_str()), (1, "Error: No such user: nobody\n"));

    // Roles and grants.
    assert_eq!(
        ok(
            &d,
            &[
                "role",
                "create",
                "deployer",
                "-p",
                "secret.use,service.manage"
            ]
        ),
        "deployer\n"
    );
    assert!(ok(&d, &["role", "permissions"]).contains("audit.read\n"));
    assert!(ok(&d, &["role", "ls", "-q"]).contains("deployer\n"));
    let id = ok(
        &d,
        &[
            "grant", "create", "--group", "devs", "--role", "deployer", "--name", "app-*",
        ],
    );
    let id = id.trim();
    assert!(!id.is_empty());
    assert_eq!(
        ok(
            &d,
            &[
                "grant",
                "ls",
                "--format",
                "{{.ID}} {{.Subject}} {{.Role}} {{.Scope}}"
            ]
        ),
        format!("{id} group:devs deployer name:app-*\n")
    );
    let (code, _, _) = on(&d, &["role", "rm", "deployer"], None);
    assert_eq!(code, 1, "a role in use cannot be removed");
    assert_eq!(ok(&d, &["grant", "rm", id]), format!("{id}\n"));
    assert_eq!(ok(&d, &["role", "rm", "deployer"]), "deployer\n");

    // A bundle: files and modes, the serial on stdout, never the key.
    let (code, serial, err) = on(&d, &["user", "bundle", "alice"], None);
    assert_eq!(code, 0, "{err}");
    let dir = d.dir().join("alice-bundle");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("key.pem")), 0o600);
    let key = std::fs::read_to_string(dir.join("key.pem")).unwrap();
    assert!(key.contains("PRIVATE KEY"), "{key}");
    assert!(
        std::fs::read_to_string(dir.join("cert.pem"))
            .unwrap()
            .contains("CERTIFICATE")
    );
    assert!(
        !serial.contains("PRIVATE") && !err.contains("PRIVATE"),
        "{err}"
    );
    assert!(
        err.contains("DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="),
        "{err}"
    );
    let (code, _, err) = on(&d, &["user", "bundle", "alice"], None);
    assert_eq!(code, 1);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(ok(&d, &["user", "revoke", "alice"]), serial);
    assert_eq!(ok(&d, &["user", "rm", "alice"]), "alice\n");

    // The audit trail.
    let (code, id, err) = on(
        &d,
        &["secret", "create", "db_password", "-"],
        Some(b"s3cret"),
    );
    assert_eq!(code, 0, "{err}");
    let records = ok(
        &d,
        &["audit", "ls", "--secret", "db_password", "--format", "json"],
    );
    let created: Vec<serde_json::Value> = records
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["action"] == "secret.create")
        .collect();
    assert_eq!(created.len(), 1, "{records}");
    assert_eq!(created[0]["objects"][0]["id"], id.trim());
    let seq = created[0]["seq"].to_string();
    let table = ok(
        &d,
        &["audit", "ls", "--action", "secret.*", "--since", "1h"],
    );
    assert!(table.starts_with("SEQ "), "{table}");
    assert!(table.contains("secret:db_password"), "{table}");
    assert_eq!(
        on(&d, &["audit", "check-value", &seq, "-"], Some(b"s3cret")).1,
        "match\n"
    );
    let (code, out, _) = on(&d, &["audit", "check-value", &seq, "-"], Some(b"other"));
    assert_eq!((code, out.as_str()), (1, "no match\n"));
    ok(&d, &["audit", "export", "-o", "trail.jsonl"]);
    let exported = std::fs::read_to_string(d.dir().join("trail.jsonl")).unwrap();
    assert!(exported.starts_with("{\"seq\":1,"), "{exported}");
    assert_eq!(mode(&d.dir().join("trail.jsonl")), 0o600);
    let verified = ok(&d, &["audit", "verify"]);
    assert!(
        verified.starts_with("OK: ") && verified.ends_with(" files verified\n"),
        "{verified}"
    );
}
