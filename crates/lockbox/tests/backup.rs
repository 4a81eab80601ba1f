//! Online encrypted backup and offline restore, black-box: `lockbox swarm backup FILE` against
//! a running daemon, then `lockbox swarm restore FILE --data-dir DIR` into a wiped data dir and
//! a daemon started on it, checked with the stock docker CLI (same IDs, names, labels, the
//! service, users and grants, the cluster's ID, CA and join tokens) and a task that reads the
//! original value from /run/secrets. Also: the file holds no value, a wrong passphrase or an
//! altered file writes nothing, a directory in use is refused, autolock survives, and only an
//! admin may take a backup.
//!
//! Tests that run tasks need root (the process executor uses mount namespaces) and the docker
//! CLI; they skip without them.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::Daemon;
use serde_json::Value;

const PASSPHRASE: &str = "correct horse battery staple";
const DB_VALUE: &str = "s3cret-Db-Pa55word-for-the-backup-test";
const API_VALUE: &str = "api-key-9f8e7d6c5b4a\nwith a second line";

fn root_and_docker(test: &str) -> bool {
    if !common::is_root() {
        common::skip(test, "the process executor needs root (mount namespaces)");
        return false;
    }
    if let Some(why) = common::docker_unavailable() {
        common::skip(test, &why);
        return false;
    }
    true
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", text(&o));
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn get(d: &Daemon, path: &str) -> Value {
    let (status, _, body) = d.http("GET", path, None, None);
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}

/// `lockbox ARGS` against `d` (or no daemon) with exactly these extra environment variables.
fn lockbox_env(d: &Daemon, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(common::lockbox_bin());
    cmd.env_remove("LOCKBOX_BACKUP_PASSPHRASE")
        .arg("-H")
        .arg(d.host())
        .args(args)
        .current_dir(d.dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::run_with_timeout(cmd, stdin, Duration::from_secs(120))
}

/// Everything of the swarm that a restore must bring back, as the API shows it.
#[derive(Debug, PartialEq)]
struct Snapshot {
    cluster_id: String,
    join_tokens: Value,
    trust_root: Value,
    node_ids: Vec<String>,
    secrets: BTreeMap<String, (String, Value, Value)>,
    services: BTreeMap<String, (String, Value)>,
    users: String,
    grants: String,
}

fn snapshot(d: &Daemon) -> Snapshot {
    let swarm = get(d, "/v1.47/swarm");
    let mut node_ids: Vec<String> = get(d, "/v1.47/nodes")
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n["ID"].as_str().unwrap_or("").to_owned())
        .collect();
    node_ids.sort();
    let secrets = get(d, "/v1.47/secrets")
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["ID"].as_str().unwrap_or("").to_owned(),
                (
                    s["Spec"]["Name"].as_str().unwrap_or("").to_owned(),
                    s["Spec"]["Labels"].clone(),
                    s["CreatedAt"].clone(),
                ),
            )
        })
        .collect();
    let services = get(d, "/v1.47/services")
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["ID"].as_str().unwrap_or("").to_owned(),
                (
                    s["Spec"]["Name"].as_str().unwrap_or("").to_owned(),
                    s["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"].clone(),
                ),
            )
        })
        .collect();
    Snapshot {
        cluster_id: swarm["ID"].as_str().unwrap_or("").to_owned(),
        join_tokens: swarm["JoinTokens"].clone(),
        trust_root: swarm["TLSInfo"]["TrustRoot"].clone(),
        node_ids,
        secrets,
        services,
        users: stdout(&ok(d.lockbox(&["user", "ls", "-q"], None))),
        grants: stdout(&ok(d.lockbox(
            &[
                "grant",
                "ls",
                "--format",
                "{{.ID}} {{.Subject}} {{.Role}} {{.Scope}}",
            ],
            None,
        ))),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Prints every file of /run/secrets as `FILE name hex`, then waits.
const DUMP: &str = r#"for f in /run/secrets/*; do echo "FILE ${f##*/} $(od -An -v -tx1 < "$f" | tr -d ' \n')"; done; echo DONE; sleep 1000"#;

/// The `FILE name hex` lines of a service's tasks.
fn dumped(d: &Daemon, svc: &str) -> BTreeMap<String, String> {
    let logs = wait_for(&format!("{svc} output"), Duration::from_secs(60), || {
        let o = d.docker(&["service", "logs", "--raw", svc], None);
        let out = stdout(&o);
        out.lines().any(|l| l.trim() == "DONE").then_some(out)
    });
    logs.lines()
        .filter_map(|l| {
            let mut p = l.trim().strip_prefix("FILE ")?.splitn(2, ' ');
            Some((p.next()?.to_owned(), p.next().unwrap_or("").to_owned()))
        })
        .collect()
}

fn assert_no_value(haystack: &[u8], what: &str) {
    for v in [DB_VALUE, API_VALUE] {
        let forms = [
            v.as_bytes().to_vec(),
            base64::engine::general_purpose::STANDARD
                .encode(v)
                .into_bytes(),
            hex(v.as_bytes()).into_bytes(),
            // A distinctive part, in case the value were split or re-encoded around it.
            v.as_bytes()[..12].to_vec(),
        ];
        for f in forms {
            assert!(
                !haystack.windows(f.len()).any(|w| w == f.as_slice()),
                "{what} contains a secret value ({})",
                String::from_utf8_lossy(&f)
            );
        }
    }
}

fn dir_is_empty_or_absent(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut it) => it.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

#[test]
fn backup_online_then_restore_into_a_new_data_dir() {
    if !root_and_docker("backup_online_then_restore_into_a_new_data_dir") {
        return;
    }
    let mut d = Daemon::start();
    ok(d.docker(
        &[
            "secret",
            "create",
            "--label",
            "env=prod",
            "--label",
            "team=core",
            "db_password",
            "-",
        ],
        Some(DB_VALUE.as_bytes()),
    ));
    ok(d.docker(
        &["secret", "create", "--label", "kind=api", "api_key", "-"],
        Some(API_VALUE.as_bytes()),
    ));
    ok(d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "app",
            "--secret",
            "db_password",
            "--secret",
            "api_key",
            "host",
            "sh",
            "-c",
            DUMP,
        ],
        None,
    ));
    ok(d.lockbox(&["user", "create", "alice", "--uid", "4242"], None));
    ok(d.lockbox(
        &[
            "grant", "create", "--user", "alice", "--role", "viewer", "--name", "db_*",
        ],
        None,
    ));
    // The service runs before the backup, so the backup holds a running task.
    let before_files = dumped(&d, "app");
    assert_eq!(before_files["db_password"], hex(DB_VALUE.as_bytes()));
    let before = snapshot(&d);
    assert_eq!(before.secrets.len(), 2);
    assert_eq!(before.services.len(), 1);

    // Online backup: the daemon keeps serving.
    let pass_file = d.dir().join("passphrase");
    std::fs::write(&pass_file, format!("{PASSPHRASE}\n")).unwrap();
    let file = d.dir().join("swarm.lbx");
    let o = ok(d.lockbox(
        &[
            "swarm",
            "backup",
            file.to_str().unwrap(),
            "--passphrase-file",
            pass_file.to_str().unwrap(),
        ],
        None,
    ));
    assert_eq!(stdout(&o), "", "{}", text(&o));
    assert!(stderr(&o).contains("Backup written to"), "{}", text(&o));
    assert!(stderr(&o).contains("2 secrets, 1 services"), "{}", text(&o));
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"LBXBAK1"), "not a backup file");
    assert_no_value(&bytes, "the backup file");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // No temporary file was left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(d.dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    ok(d.docker(&["secret", "ls"], None));
    // Audited as swarm.backup, without the passphrase.
    let trail = stdout(&ok(d.lockbox(
        &[
            "audit",
            "ls",
            "--action",
            "swarm.backup",
            "--format",
            "json",
        ],
        None,
    )));
    assert!(trail.contains("\"swarm.backup\""), "{trail}");
    let last: Value = serde_json::from_str(trail.lines().last().unwrap_or("null")).unwrap();
    assert_eq!(last["outcome"]["status"], 200, "{trail}");
    assert_eq!(last["details"]["secrets"], "2", "{trail}");

    // A restore into the data dir of the running daemon is refused, even with --force.
    let o = lockbox_env(
        &d,
        &[
            "swarm",
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            d.data_dir().to_str().unwrap(),
            "--force",
        ],
        &[("LOCKBOX_BACKUP_PASSPHRASE", PASSPHRASE)],
        None,
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        stderr(&o).contains("in use by a running lockbox daemon"),
        "{}",
        text(&o)
    );

    let log = d.log();
    assert!(
        !log.contains(PASSPHRASE),
        "the daemon log holds the passphrase"
    );
    assert_no_value(log.as_bytes(), "the daemon log");
    d.sigterm();
    // The stopped daemon's directory still holds a store: refused without --force.
    let o = lockbox_env(
        &d,
        &[
            "swarm",
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            d.data_dir().to_str().unwrap(),
        ],
        &[("LOCKBOX_BACKUP_PASSPHRASE", PASSPHRASE)],
        None,
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        stderr(&o).contains("already holds a lockbox store"),
        "{}",
        text(&o)
    );
    for entry in walk(&d.data_dir()) {
        let content = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !content
                .windows(PASSPHRASE.len())
                .any(|w| w == PASSPHRASE.as_bytes()),
            "{} holds the passphrase",
            entry.display()
        );
    }
    std::fs::remove_dir_all(d.data_dir()).unwrap();

    // A wrong passphrase: a clear error, nothing written.
    let restore = |env: &[(&str, &str)], f: &Path| {
        lockbox_env(
            &d,
            &[
                "swarm",
                "restore",
                f.to_str().unwrap(),
                "--data-dir",
                d.data_dir().to_str().unwrap(),
            ],
            env,
            None,
        )
    };
    let o = restore(
        &[("LOCKBOX_BACKUP_PASSPHRASE", "not the passphrase")],
        &file,
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        stderr(&o).contains("backup: wrong passphrase or corrupted file"),
        "{}",
        text(&o)
    );
    assert!(dir_is_empty_or_absent(&d.data_dir()));
    // One altered byte: the same error, nothing written.
    let mut altered = bytes.clone();
    let mid = altered.len() / 2;
    altered[mid] ^= 0x20;
    let altered_file = d.dir().join("altered.lbx");
    std::fs::write(&altered_file, &altered).unwrap();
    let o = restore(&[("LOCKBOX_BACKUP_PASSPHRASE", PASSPHRASE)], &altered_file);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        stderr(&o).contains("backup: wrong passphrase or corrupted file"),
        "{}",
        text(&o)
    );
    // A truncated file too.
    std::fs::write(&altered_file, &bytes[..bytes.len() - 100]).unwrap();
    let o = restore(&[("LOCKBOX_BACKUP_PASSPHRASE", PASSPHRASE)], &altered_file);
    assert!(
        stderr(&o).contains("backup: wrong passphrase or corrupted file"),
        "{}",
        text(&o)
    );
    // No passphrase at all (stdin is no terminal): refused before anything is read.
    let o = restore(&[], &file);
    assert!(stderr(&o).contains("no backup passphrase"), "{}", text(&o));
    let o = restore(&[("LOCKBOX_BACKUP_PASSPHRASE", "")], &file);
    assert!(stderr(&o).contains("passphrase is empty"), "{}", text(&o));
    assert!(dir_is_empty_or_absent(&d.data_dir()));

    // The restore.
    let o = ok(restore(&[("LOCKBOX_BACKUP_PASSPHRASE", PASSPHRASE)], &file));
    assert_eq!(stdout(&o), "", "{}", text(&o));
    assert!(stderr(&o).contains("is the only manager"), "{}", text(&o));
    for f in ["keys.json", "kek", "store.redb", "node.json"] {
        let path = d.data_dir().join(f);
        assert!(path.exists(), "{f}");
        assert_no_value(&std::fs::read(&path).unwrap(), f);
    }
    d.restart();
    let after = snapshot(&d);
    assert_eq!(after, before);
    let node = get(&d, &format!("/v1.47/nodes/{}", after.node_ids[0]));
    assert_eq!(node["ManagerStatus"]["Leader"], true, "{node}");
    // A task of the service reads the original values from /run/secrets.
    let files = dumped(&d, "app");
    assert_eq!(files["db_password"], hex(DB_VALUE.as_bytes()));
    assert_eq!(files["api_key"], hex(API_VALUE.as_bytes()));
    // The restored store takes writes and survives a restart.
    ok(d.docker(&["secret", "create", "after_restore", "-"], Some(b"x")));
    d.restart();
    let again = snapshot(&d);
    assert_eq!(again.secrets.len(), 3);
    assert_eq!(again.cluster_id, before.cluster_id);
    assert_no_value(d.log().as_bytes(), "the daemon log");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn an_autolocked_swarm_is_restored_autolocked() {
    if !root_and_docker("an_autolocked_swarm_is_restored_autolocked") {
        return;
    }
    let mut d = Daemon::start();
    ok(d.docker(
        &["secret", "create", "db_password", "-"],
        Some(DB_VALUE.as_bytes()),
    ));
    let o = ok(d.lockbox(&["swarm", "update", "--autolock=true"], None));
    let key = stdout(&o)
        .split_whitespace()
        .find(|w| w.starts_with("SWMKEY-1-"))
        .unwrap_or_else(|| panic!("no unlock key: {}", text(&o)))
        .to_owned();
    let before = snapshot(&d);
    let file = d.dir().join("locked.lbx");
    let o = ok(lockbox_env(
        &d,
        &["swarm", "backup", file.to_str().unwrap()],
        &[("LOCKBOX_BACKUP_PASSPHRASE", PASSPHRASE)],
        None,
    ));
    assert!(stderr(&o).contains("autolock on"), "{}", text(&o));
    d.sigterm();
    std::fs::remove_dir_all(d.data_dir()).unwrap();

    let key_file = d.dir().join("unlock-key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let o = ok(lockbox_env(
        &d,
        &[
            "swarm",
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            d.data_dir().to_str().unwrap(),
            "--unlock-key-file",
            key_file.to_str().unwrap(),
        ],
        &[("LOCKBOX_BACKUP_PASSPHRASE", PASSPHRASE)],
        None,
    ));
    assert!(stderr(&o).contains("autolocked"), "{}", text(&o));
    assert!(
        !d.data_dir().join("kek").exists(),
        "no key file with autolock"
    );
    d.restart();
    let info = get(&d, "/v1.47/info");
    assert_eq!(info["Swarm"]["LocalNodeState"], "locked", "{info}");
    let o = d.lockbox(
        &["swarm", "unlock"],
        Some(b"SWMKEY-1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"),
    );
    assert!(!o.status.success(), "a wrong key unlocked: {}", text(&o));
    ok(d.lockbox(&["swarm", "unlock"], Some(format!("{key}\n").as_bytes())));
    assert_eq!(snapshot(&d), before);
    let o = ok(d.lockbox(&["swarm", "unlock-key", "-q"], None));
    assert_eq!(stdout(&o).trim(), key);
}

#[test]
fn only_an_admin_may_take_a_backup() {
    if !common::is_root() {
        return common::skip(
            "only_an_admin_may_take_a_backup",
            "running the CLI as another uid needs root",
        );
    }
    // A loopback TCP listener identifies callers by the uid owning their socket.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tcp = format!("tcp://127.0.0.1:{port}");
    let d = Daemon::start_with(&["-H", &tcp]);
    ok(d.lockbox(&["user", "create", "alice", "--uid", "4243"], None));
    let as_alice = || {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=4243",
            "--regid=4243",
            "--clear-groups",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
        ])
        .arg(format!("LOCKBOX_BACKUP_PASSPHRASE={PASSPHRASE}"))
        .arg(common::lockbox_bin())
        .args(["-H", &tcp, "swarm", "backup", "-"])
        .current_dir("/");
        common::run_with_timeout(cmd, None, Duration::from_secs(60))
    };
    let o = as_alice();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(stderr(&o).contains("lacks swarm.manage"), "{}", text(&o));
    // swarm.manage alone is not enough: a backup holds every secret.
    ok(d.lockbox(
        &[
            "role",
            "create",
            "swarm-admin",
            "-p",
            "swarm.manage,swarm.view",
        ],
        None,
    ));
    ok(d.lockbox(
        &[
            "grant",
            "create",
            "--user",
            "alice",
            "--role",
            "swarm-admin",
        ],
        None,
    ));
    let o = as_alice();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        stderr(&o).contains("permission denied: alice lacks"),
        "{}",
        text(&o)
    );
    assert!(o.stdout.is_empty());
    ok(d.lockbox(
        &["grant", "create", "--user", "alice", "--role", "admin"],
        None,
    ));
    let o = ok(as_alice());
    assert!(o.stdout.starts_with(b"LBXBAK1"), "{}", text(&o));
    // Each attempt is in the trail, refused or not.
    let trail = stdout(&ok(d.lockbox(
        &[
            "audit",
            "ls",
            "--action",
            "swarm.backup",
            "--format",
            "json",
        ],
        None,
    )));
    let records: Vec<Value> = trail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let statuses: Vec<u64> = records
        .iter()
        .filter(|r| r["actor"] == "alice")
        .filter_map(|r| r["outcome"]["status"].as_u64())
        .collect();
    assert_eq!(statuses, vec![403, 403, 200], "{trail}");
}
