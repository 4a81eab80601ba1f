//! Access control and the audit trail, black-box: real OS users on the unix socket (created with
//! `useradd` and run through `runuser`), client certificates over TLS with the stock docker CLI,
//! the audit trail's contents, tampering with its files, and what happens when it cannot be
//! written. Most tests need root; they skip with a notice otherwise.

mod common;

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Daemon, docker_bin, docker_unavailable, is_root, run_with_timeout, skip};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Root and the docker CLI, or a skip notice.
fn can_run(test: &str) -> bool {
    if !is_root() {
        skip(test, "needs root (OS users, socket ownership, mounts)");
        return false;
    }
    if let Some(why) = docker_unavailable() {
        skip(test, &why);
        return false;
    }
    true
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// Asserts success; returns stdout.
fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", show(o));
    text(&o.stdout)
}

/// Asserts failure; returns stderr.
fn fails(o: &Output) -> String {
    assert!(!o.status.success(), "unexpectedly succeeded: {}", show(o));
    text(&o.stderr)
}

/// The last non-empty line of `s` (docker prints warnings before the error).
fn last_line(s: &str) -> &str {
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// Runs a system tool; panics unless it succeeds.
fn sys(prog: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    ok(&run_with_timeout(cmd, None, TIMEOUT))
}

fn have(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Lets other users reach the daemon's socket (the harness's temp dir is 0700).
fn open_dir_for_others(d: &Daemon) {
    std::fs::set_permissions(d.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
}

/// Runs the stock docker CLI with exactly `env` (no other `DOCKER_*` variable) and
/// `DOCKER_CONFIG` set to `config`.
fn docker_env(
    config: &Path,
    env: &[(&str, String)],
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Output {
    let mut cmd = Command::new(docker_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("DOCKER_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("DOCKER_CONFIG", config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args);
    run_with_timeout(cmd, stdin, TIMEOUT)
}

/// OS users and groups made for one test, removed again on drop (also when the test panics).
/// Names carry the test's tag and the process id, so concurrent runs do not collide.
struct OsAccounts {
    tag: &'static str,
    users: Vec<String>,
    groups: Vec<String>,
}

impl OsAccounts {
    fn new(tag: &'static str) -> OsAccounts {
        OsAccounts {
            tag,
            users: Vec::new(),
            groups: Vec::new(),
        }
    }

    fn name(&self, short: &str) -> String {
        format!("lbx{}{short}{}", self.tag, std::process::id())
    }

    /// Runs a shadow-utils command, retrying while another process holds /etc/passwd's lock.
    fn shadow(prog: &str, args: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let o = Command::new(prog).args(args).output().unwrap();
            if o.status.success() {
                return;
            }
            let err = text(&o.stderr);
            if Instant::now() >= deadline || !err.contains("lock") {
                panic!("{prog} {args:?}: {}", show(&o));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn group(&mut self, short: &str) -> String {
        let name = self.name(short);
        Self::shadow("groupadd", &[&name]);
        self.groups.push(name.clone());
        name
    }

    /// A user with primary group `group` and supplementary `extra`; returns (name, uid).
    fn user(&mut self, short: &str, group: &str, extra: &[&str]) -> (String, u32) {
        let name = self.name(short);
        let mut args = vec!["-M", "-N", "-s", "/bin/sh", "-g", group];
        let extra = extra.join(",");
        if !extra.is_empty() {
            args.extend(["-G", extra.as_str()]);
        }
        args.push(&name);
        Self::shadow("useradd", &args);
        self.users.push(name.clone());
        let uid = sys("id", &["-u", &name]).trim().parse().unwrap();
        (name, uid)
    }
}

impl Drop for OsAccounts {
    fn drop(&mut self) {
        for u in &self.users {
            let _ = Command::new("userdel").arg(u).output();
        }
        for g in &self.groups {
            let _ = Command::new("groupdel").arg(g).output();
        }
    }
}

/// Runs the stock docker CLI as OS user `user` on the daemon's unix socket, with a clean
/// environment.
fn docker_as(d: &Daemon, user: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    docker_as_on(d, &d.host(), user, args, stdin)
}

/// The same on `host` (another of the daemon's addresses).
fn docker_as_on(d: &Daemon, host: &str, user: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let cfg = d.dir().join("docker-config");
    let mut cmd = Command::new("runuser");
    cmd.args([
        "-u",
        user,
        "--",
        "env",
        "-i",
        "PATH=/usr/local/bin:/usr/bin:/bin",
    ])
    .arg(format!("HOME={}", cfg.display()))
    .arg(format!("DOCKER_CONFIG={}", cfg.display()))
    .arg(format!("DOCKER_HOST={host}"))
    .arg(docker_bin())
    .args(args);
    run_with_timeout(cmd, stdin, TIMEOUT)
}

/// Runs `lockbox -H <socket> ARGS` as OS user `user`.
fn lockbox_as(d: &Daemon, user: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("runuser");
    cmd.args([
        "-u",
        user,
        "--",
        "env",
        "-i",
        "PATH=/usr/local/bin:/usr/bin:/bin",
    ])
    .arg(common::lockbox_bin())
    .arg("-H")
    .arg(d.host())
    .args(args);
    run_with_timeout(cmd, None, TIMEOUT)
}

/// `lockbox audit ls --format json FILTER...`, parsed.
fn audit(d: &Daemon, filter: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", "ls", "--format", "json"];
    args.extend_from_slice(filter);
    ok(&d.lockbox(&args, None))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// (action, status, error) of a record.
fn outcome(r: &Value) -> (String, u64, Option<String>) {
    (
        r["action"].as_str().unwrap().to_owned(),
        r["outcome"]["status"].as_u64().unwrap(),
        r["outcome"]["error"].as_str().map(str::to_owned),
    )
}

fn act(action: &str, status: u64, error: Option<&str>) -> (String, u64, Option<String>) {
    (action.to_owned(), status, error.map(str::to_owned))
}

/// The names of a record's objects of `kind`.
fn object_names(r: &Value, kind: &str) -> Vec<String> {
    r["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == kind)
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect()
}

fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn marker() -> String {
    let mut b = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    format!(
        "lbx-value-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const SEGMENT: &str = "audit-00000000000000000001.jsonl";

fn segment(d: &Daemon) -> PathBuf {
    d.data_dir().join("audit").join(SEGMENT)
}

/// The lines of a segment, each with its newline.
fn split_lines(data: &str) -> Vec<String> {
    data.split_inclusive('\n').map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Real OS users on the unix socket
// ---------------------------------------------------------------------------------------------

#[test]
fn os_users_on_the_socket_get_what_their_grants_allow() {
    if !can_run("os_users_on_the_socket_get_what_their_grants_allow") {
        return;
    }
    let mut os = OsAccounts::new("a");
    let sock_group = os.group("g");
    let team = os.group("t");
    let (viewer, viewer_uid) = os.user("v", &sock_group, &[]);
    let (writer, writer_uid) = os.user("w", &sock_group, &[]);
    let (deployer, deployer_uid) = os.user("o", &sock_group, &[]);
    // No lockbox user: first nothing, then a grant to its OS group `team`.
    let (stranger, stranger_uid) = os.user("n", &sock_group, &[&team]);
    // Not in the socket group: cannot even connect.
    let (outsider, _) = os.user("x", &team, &[]);

    let d = Daemon::start_with(&["--socket-group", &sock_group]);
    open_dir_for_others(&d);
    let meta = std::fs::metadata(d.socket()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    let gid: u32 = sys("getent", &["group", &sock_group])
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(meta.gid(), gid);

    // Root (uid 0) is admin.
    let lb = |args: &[&str]| ok(&d.lockbox(args, None));
    lb(&[
        "user",
        "create",
        "viewer1",
        "--uid",
        &viewer_uid.to_string(),
    ]);
    lb(&["grant", "create", "--user", "viewer1", "--role", "viewer"]);
    lb(&[
        "user",
        "create",
        "writer1",
        "--uid",
        &writer_uid.to_string(),
    ]);
    lb(&[
        "grant",
        "create",
        "--user",
        "writer1",
        "--role",
        "secret-writer",
        "--name",
        "app-*",
    ]);
    ok(&d.docker(&["secret", "create", "app-a", "-"], Some(b"a")));
    ok(&d.docker(&["secret", "create", "db-one", "-"], Some(b"db")));

    let ls = ["secret", "ls", "--format", "{{.Name}}"];

    // viewer: may list and inspect, not create.
    assert_eq!(
        lines(&ok(&docker_as(&d, &viewer, &ls, None))),
        ["app-a", "db-one"]
    );
    let err = fails(&docker_as(
        &d,
        &viewer,
        &["secret", "create", "app-v", "-"],
        Some(b"v"),
    ));
    assert_eq!(
        err,
        "Error response from daemon: permission denied: viewer1 lacks secret.create\n"
    );

    // secret-writer on name:app-*.
    let id = ok(&docker_as(
        &d,
        &writer,
        &["secret", "create", "app-x", "-"],
        Some(b"x"),
    ));
    assert_eq!(id.trim().len(), 25, "{id}");
    let err = fails(&docker_as(
        &d,
        &writer,
        &["secret", "create", "db-x", "-"],
        Some(b"x"),
    ));
    assert_eq!(
        err,
        "Error response from daemon: permission denied: writer1 lacks secret.create on secret db-x\n"
    );
    ok(&docker_as(
        &d,
        &writer,
        &["secret", "inspect", "app-a"],
        None,
    ));
    let denied_existing = fails(&docker_as(
        &d,
        &writer,
        &["secret", "inspect", "db-one"],
        None,
    ));
    assert_eq!(
        denied_existing,
        "Error response from daemon: permission denied: writer1 lacks secret.inspect on secret db-one\n"
    );
    let denied_missing = fails(&docker_as(
        &d,
        &writer,
        &["secret", "inspect", "db-nope"],
        None,
    ));
    // The same words whether or not the secret exists.
    assert_eq!(
        denied_missing,
        denied_existing.replace("db-one", "db-nope"),
        "a caller out of scope can tell which secrets exist"
    );
    // Someone in scope is told the truth.
    assert_eq!(
        fails(&docker_as(
            &d,
            &viewer,
            &["secret", "inspect", "db-nope"],
            None
        )),
        "Error response from daemon: secret db-nope not found\n"
    );
    assert_eq!(
        lines(&ok(&docker_as(&d, &writer, &ls, None))),
        ["app-a", "app-x"]
    );
    // Nothing was created by the refused requests.
    assert_eq!(
        lines(&ok(&d.docker(&ls, None))),
        ["app-a", "app-x", "db-one"]
    );

    // No service.manage: no service, whatever the secrets.
    let svc = |name: &str, secret: &str| {
        [
            "service", "create", "-d", "--name", name, "--secret", secret, "host", "sleep", "1000",
        ]
        .map(str::to_owned)
    };
    let args = svc("s0", "app-x");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The daemon reads a refused request's body before answering, so docker gets the answer
    // (`denied_requests_are_answered_even_when_the_body_comes_late` pins that down).
    let denied = docker_as(&d, &writer, &args, None);
    assert_eq!(
        last_line(&fails(&denied)),
        "Error response from daemon: permission denied: writer1 lacks service.manage"
    );

    // Services on all, secret.use only on app-*.
    lb(&[
        "role",
        "create",
        "svc",
        "-p",
        "service.manage,service.view,secret.list,secret.inspect,network.view",
    ]);
    lb(&["role", "create", "use-secrets", "-p", "secret.use"]);
    lb(&[
        "user",
        "create",
        "deployer1",
        "--uid",
        &deployer_uid.to_string(),
    ]);
    lb(&["grant", "create", "--user", "deployer1", "--role", "svc"]);
    lb(&[
        "grant",
        "create",
        "--user",
        "deployer1",
        "--role",
        "use-secrets",
        "--name",
        "app-*",
    ]);
    let args = svc("s1", "app-x");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let svc_id = ok(&docker_as(&d, &deployer, &args, None));
    assert_eq!(svc_id.trim().len(), 25, "{svc_id}");
    let args = svc("s2", "db-one");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(
        last_line(&fails(&docker_as(&d, &deployer, &args, None))),
        "Error response from daemon: permission denied: deployer1 lacks secret.use on secret db-one"
    );
    // Adding the secret to an existing service is refused the same way.
    assert_eq!(
        last_line(&fails(&docker_as(
            &d,
            &deployer,
            &["service", "update", "-d", "--secret-add", "db-one", "s1"],
            None
        ))),
        "Error response from daemon: permission denied: deployer1 lacks secret.use on secret db-one"
    );
    assert_eq!(
        lines(&ok(
            &d.docker(&["service", "ls", "--format", "{{.Name}}"], None)
        )),
        ["s1"]
    );
    let secrets_of_s1 = ok(&d.docker(
        &[
            "service",
            "inspect",
            "s1",
            "--format",
            "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}} {{end}}",
        ],
        None,
    ));
    assert_eq!(secrets_of_s1.trim(), "app-x");

    // An OS user the daemon does not know: nothing.
    assert_eq!(
        fails(&docker_as(&d, &stranger, &ls, None)),
        format!(
            "Error response from daemon: permission denied: uid:{stranger_uid} lacks secret.list\n"
        )
    );
    // A grant to one of its OS groups is enough.
    lb(&["grant", "create", "--group", &team, "--role", "viewer"]);
    assert_eq!(
        lines(&ok(&docker_as(&d, &stranger, &ls, None))),
        ["app-a", "app-x", "db-one"]
    );
    assert_eq!(
        fails(&docker_as(
            &d,
            &stranger,
            &["secret", "create", "app-n", "-"],
            Some(b"n")
        )),
        format!(
            "Error response from daemon: permission denied: uid:{stranger_uid} lacks secret.create\n"
        )
    );
    // Not in the socket group: the socket itself refuses (and the group grant does not help).
    let err = fails(&docker_as(&d, &outsider, &ls, None));
    assert!(err.contains("permission denied"), "{err}");
    assert!(!err.contains("Error response from daemon"), "{err}");

    // The audit trail has all of it, denied and allowed, under the lockbox user's name.
    let records = audit(&d, &["--user", "writer1"]);
    for r in &records {
        assert_eq!(r["actor"], "writer1", "{r}");
        let source = r["source"].as_str().unwrap();
        assert!(
            source.starts_with(&format!("unix uid={writer_uid} pid=")),
            "{source}"
        );
    }
    let interesting: Vec<_> = records
        .iter()
        .map(outcome)
        .filter(|(a, ..)| a != "secret.list" && a != "http.unknown")
        .collect();
    assert_eq!(
        interesting,
        [
            act("secret.create", 201, None),
            act(
                "secret.create",
                403,
                Some("permission denied: writer1 lacks secret.create on secret db-x")
            ),
            act("secret.inspect", 200, None),
            act(
                "secret.inspect",
                403,
                Some("permission denied: writer1 lacks secret.inspect on secret db-one")
            ),
            act(
                "secret.inspect",
                403,
                Some("permission denied: writer1 lacks secret.inspect on secret db-nope")
            ),
            act(
                "service.create",
                403,
                Some("permission denied: writer1 lacks service.manage")
            ),
        ]
    );
    assert!(
        records
            .iter()
            .any(|r| outcome(r) == act("secret.list", 200, None)),
        "{records:?}"
    );

    let creates = audit(&d, &["--action", "secret.create"]);
    let summary: Vec<_> = creates
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap().to_owned(),
                r["outcome"]["status"].as_u64().unwrap(),
                object_names(r, "secret"),
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        summary,
        [
            ("root".to_owned(), 201, s(&["app-a"])),
            ("root".to_owned(), 201, s(&["db-one"])),
            ("viewer1".to_owned(), 403, s(&[])),
            ("writer1".to_owned(), 201, s(&["app-x"])),
            ("writer1".to_owned(), 403, s(&["db-x"])),
            (format!("uid:{stranger_uid}"), 403, s(&[])),
        ]
    );
    for r in creates.iter().filter(|r| r["outcome"]["status"] == 201) {
        let hmac = r["details"]["value_hmac"].as_str().unwrap();
        assert!(hmac.starts_with("hmac-sha256:"), "{r}");
    }

    let deployer_records: Vec<_> = audit(&d, &["--user", "deployer1", "--action", "service.*"])
        .iter()
        .map(outcome)
        .collect();
    assert_eq!(
        deployer_records,
        [
            act("service.create", 201, None),
            act(
                "service.create",
                403,
                Some("permission denied: deployer1 lacks secret.use on secret db-one")
            ),
            // `docker service update` reads the service first.
            act("service.inspect", 200, None),
            act(
                "service.update",
                403,
                Some("permission denied: deployer1 lacks secret.use on secret db-one")
            ),
        ]
    );

    // Who asked about db-one: the owner who made it and the writer who was refused.
    let about_db_one: Vec<_> = audit(&d, &["--secret", "db-one"])
        .iter()
        .map(|r| {
            let (a, st, _) = outcome(r);
            (r["actor"].as_str().unwrap().to_owned(), a, st)
        })
        .collect();
    assert!(
        about_db_one.contains(&("root".into(), "secret.create".into(), 201)),
        "{about_db_one:?}"
    );
    assert!(
        about_db_one.contains(&("writer1".into(), "secret.inspect".into(), 403)),
        "{about_db_one:?}"
    );
    // A refused create names the secret it asked for.
    let about_db_x: Vec<_> = audit(&d, &["--secret", "db-x"])
        .iter()
        .map(outcome)
        .collect();
    assert_eq!(
        about_db_x,
        [act(
            "secret.create",
            403,
            Some("permission denied: writer1 lacks secret.create on secret db-x")
        )]
    );

    // Reading the trail needs audit.read, which viewer lacks.
    assert_eq!(
        fails(&lockbox_as(&d, &viewer, &["audit", "ls"])),
        "Error response from daemon: permission denied: viewer1 lacks audit.read\n"
    );
}

/// A client that sends its headers, then its body a little later, as the Go client may.
const LATE_BODY: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
body = b'{"Name":"late","Data":"eA=="}'
s.sendall(b"POST /v1.47/secrets/create HTTP/1.1\r\nHost: d\r\nConnection: close\r\n"
          b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
time.sleep(0.3)
try:
    s.sendall(body)
    print("body sent")
except OSError as e:
    print("body not sent:", e)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.decode(errors="replace").split("\r\n")[0])
"#;

#[test]
fn os_users_on_loopback_tcp_are_told_apart_as_on_the_socket() {
    if !can_run("os_users_on_loopback_tcp_are_told_apart_as_on_the_socket") {
        return;
    }
    let mut os = OsAccounts::new("l");
    let group = os.group("g");
    let (viewer, viewer_uid) = os.user("v", &group, &[]);
    let (stranger, stranger_uid) = os.user("n", &group, &[]);
    let (d, addr) = Daemon::start_on_loopback_tcp(&[]);
    open_dir_for_others(&d);
    let tcp = format!("tcp://{addr}");
    let lb = |args: &[&str]| ok(&d.lockbox(args, None));
    lb(&[
        "user",
        "create",
        "tcpview",
        "--uid",
        &viewer_uid.to_string(),
    ]);
    lb(&["grant", "create", "--user", "tcpview", "--role", "viewer"]);
    ok(&d.docker(&["secret", "create", "tcp-a", "-"], Some(b"a")));
    let ls = ["secret", "ls", "--format", "{{.Name}}"];

    // The owner of the client's socket decides, over TCP as over the unix socket.
    assert_eq!(
        lines(&ok(&docker_as_on(&d, &tcp, &viewer, &ls, None))),
        ["tcp-a"]
    );
    let err = fails(&docker_as_on(
        &d,
        &tcp,
        &viewer,
        &["secret", "create", "tcp-b", "-"],
        Some(b"b"),
    ));
    assert!(
        err.starts_with(
            "Error response from daemon: permission denied: tcpview lacks secret.create"
        ),
        "{err}"
    );
    assert_eq!(
        fails(&docker_as_on(&d, &tcp, &stranger, &ls, None)),
        format!(
            "Error response from daemon: permission denied: uid:{stranger_uid} lacks secret.list\n"
        )
    );
    // Root over TCP is root.
    let root_ls = docker_env(
        &d.dir().join("docker-config"),
        &[("DOCKER_HOST", tcp.clone())],
        &ls,
        None,
    );
    assert_eq!(lines(&ok(&root_ls)), ["tcp-a"]);

    // Each request of a connection is attributed to its owner (the docker CLI sends more than
    // one on a connection), and the trail says it came over TCP.
    let records = audit(&d, &["--user", "tcpview"]);
    assert!(records.len() >= 2, "{records:?}");
    for r in &records {
        let source = r["source"].as_str().unwrap();
        assert!(
            source.starts_with("tcp 127.0.0.1:") && source.ends_with(&format!(" uid={viewer_uid}")),
            "{source}"
        );
    }
    let denied = err
        .trim_start_matches("Error response from daemon: ")
        .trim_end();
    let creates: Vec<_> = records
        .iter()
        .map(outcome)
        .filter(|(a, ..)| a == "secret.create")
        .collect();
    assert_eq!(creates, [act("secret.create", 403, Some(denied))]);
}

#[test]
fn denied_requests_are_answered_even_when_the_body_comes_late() {
    let test = "denied_requests_are_answered_even_when_the_body_comes_late";
    if !can_run(test) {
        return;
    }
    if !have("python3") {
        skip(test, "needs python3");
        return;
    }
    let mut os = OsAccounts::new("b");
    let group = os.group("g");
    let (stranger, _) = os.user("n", &group, &[]);
    let d = Daemon::start_with(&["--socket-group", &group]);
    open_dir_for_others(&d);
    let socket = d.socket().display().to_string();
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", &stranger, "--", "python3", "-c", LATE_BODY, &socket]);
    let o = run_with_timeout(cmd, None, TIMEOUT);
    // The request is refused by its route's permission, before its body is read. The daemon
    // must still take the body (as dockerd does) rather than close the connection under the
    // client, or the docker CLI reports "write: broken pipe" instead of the 403.
    assert_eq!(
        ok(&o),
        "body sent\nHTTP/1.1 403 Forbidden\n",
        "{}",
        show(&o)
    );
    // Root's request with a late body works.
    let mut cmd = Command::new("python3");
    cmd.args(["-c", LATE_BODY, &socket]);
    assert_eq!(
        ok(&run_with_timeout(cmd, None, TIMEOUT)),
        "body sent\nHTTP/1.1 201 Created\n"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. TLS client certificates with the stock docker CLI
// ---------------------------------------------------------------------------------------------

#[test]
fn tls_client_bundles_work_with_docker_until_revoked() {
    if !can_run("tls_client_bundles_work_with_docker_until_revoked") {
        return;
    }
    let (d, addr) = Daemon::start_on_loopback_tcp(&["--tlsverify"]);
    let cfg = d.dir().join("docker-config");
    let host = format!("tcp://{addr}");
    let tls = |dir: &Path, args: &[&str], stdin: Option<&[u8]>| {
        docker_env(
            &cfg,
            &[
                ("DOCKER_HOST", host.clone()),
                ("DOCKER_TLS_VERIFY", "1".into()),
                ("DOCKER_CERT_PATH", dir.display().to_string()),
            ],
            args,
            stdin,
        )
    };
    let ls = ["secret", "ls", "--format", "{{.Name}}"];

    ok(&d.lockbox(&["user", "create", "alice"], None));
    ok(&d.lockbox(
        &["grant", "create", "--user", "alice", "--role", "viewer"],
        None,
    ));
    ok(&d.docker(&["secret", "create", "tls-one", "-"], Some(b"1")));

    let bundle = d.dir().join("alice-bundle");
    let o = d.lockbox(
        &[
            "user",
            "bundle",
            "alice",
            "-o",
            &bundle.display().to_string(),
        ],
        None,
    );
    let serial = ok(&o).trim().to_owned();
    assert!(
        !serial.is_empty() && serial.bytes().all(|b| b.is_ascii_hexdigit()),
        "{serial:?}"
    );
    assert!(!text(&o.stderr).contains("PRIVATE KEY"), "{}", show(&o));
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        assert!(bundle.join(f).is_file(), "{f} missing");
    }
    assert_eq!(
        std::fs::metadata(bundle.join("key.pem")).unwrap().mode() & 0o777,
        0o600
    );

    // The viewer's certificate: list yes, create no.
    assert_eq!(lines(&ok(&tls(&bundle, &ls, None))), ["tls-one"]);
    assert_eq!(
        fails(&tls(
            &bundle,
            &["secret", "create", "tls-two", "-"],
            Some(b"2")
        )),
        "Error response from daemon: permission denied: alice lacks secret.create\n"
    );
    let alice_records = audit(&d, &["--user", "alice"]);
    let summary: Vec<_> = alice_records.iter().map(outcome).collect();
    assert_eq!(
        summary,
        [
            act("secret.list", 200, None),
            act(
                "secret.create",
                403,
                Some("permission denied: alice lacks secret.create")
            ),
        ]
    );
    for r in &alice_records {
        let source = r["source"].as_str().unwrap();
        assert!(
            source.starts_with("tls 127.0.0.1:")
                && source.ends_with(&format!(" cn=alice serial={serial}")),
            "{source}"
        );
    }

    // No client certificate: refused during the handshake.
    let ca_only = d.dir().join("ca-only");
    std::fs::create_dir(&ca_only).unwrap();
    std::fs::copy(bundle.join("ca.pem"), ca_only.join("ca.pem")).unwrap();
    let err = fails(&tls(&ca_only, &ls, None));
    assert!(err.contains("tls: certificate required"), "{err}");
    // Plain HTTP on the TLS port.
    let err = fails(&docker_env(
        &cfg,
        &[("DOCKER_HOST", host.clone())],
        &ls,
        None,
    ));
    assert!(!err.contains("Error response from daemon"), "{err}");
    if have("curl") {
        for args in [
            vec!["-sSk".to_owned(), format!("https://{addr}/v1.47/secrets")],
            vec![
                "-sS".to_owned(),
                "--cacert".to_owned(),
                bundle.join("ca.pem").display().to_string(),
                format!("https://{addr}/_ping"),
            ],
        ] {
            let mut cmd = Command::new("curl");
            cmd.args(&args);
            let o = run_with_timeout(cmd, None, TIMEOUT);
            assert!(!o.status.success(), "curl {args:?}: {}", show(&o));
            assert!(o.stdout.is_empty(), "curl {args:?}: {}", show(&o));
        }
    }

    // A bundle for a user of the same name from another cluster (another CA).
    let other = Daemon::start();
    ok(&other.lockbox(&["user", "create", "alice"], None));
    let foreign = other.dir().join("alice-bundle");
    ok(&other.lockbox(
        &[
            "user",
            "bundle",
            "alice",
            "-o",
            &foreign.display().to_string(),
        ],
        None,
    ));
    // docker does not trust our server with the other CA...
    let err = fails(&tls(&foreign, &ls, None));
    assert!(
        err.contains("certificate signed by unknown authority"),
        "{err}"
    );
    // ...and with our CA but the foreign certificate the server refuses it.
    let mixed = d.dir().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    std::fs::copy(bundle.join("ca.pem"), mixed.join("ca.pem")).unwrap();
    std::fs::copy(foreign.join("cert.pem"), mixed.join("cert.pem")).unwrap();
    std::fs::copy(foreign.join("key.pem"), mixed.join("key.pem")).unwrap();
    let err = fails(&tls(&mixed, &ls, None));
    assert!(err.contains("remote error: tls:"), "{err}");
    if have("curl") {
        // curl presents the certificate whatever CA names the server asks for.
        let mut cmd = Command::new("curl");
        cmd.arg("-sS")
            .arg("--cacert")
            .arg(mixed.join("ca.pem"))
            .arg("--cert")
            .arg(mixed.join("cert.pem"))
            .arg("--key")
            .arg(mixed.join("key.pem"))
            .arg(format!("https://{addr}/v1.47/secrets"));
        let o = run_with_timeout(cmd, None, TIMEOUT);
        assert!(!o.status.success(), "{}", show(&o));
        assert!(o.stdout.is_empty(), "{}", show(&o));
    }
    // Nothing was recorded for alice from the refused connections.
    let again = audit(&d, &["--user", "alice"]);
    assert_eq!(again.len(), 2, "{again:?}");

    // Revocation: the next connection with that certificate is refused.
    assert_eq!(
        ok(&d.lockbox(&["user", "revoke", "alice"], None)),
        format!("{serial}\n")
    );
    let err = fails(&tls(&bundle, &ls, None));
    assert!(
        err.contains("revoked certificate") || err.contains("bad certificate"),
        "{err}"
    );
    // A new certificate for alice works; revoking it by serial leaves nothing usable.
    let bundle2 = d.dir().join("alice-bundle-2");
    let serial2 = ok(&d.lockbox(
        &[
            "user",
            "bundle",
            "alice",
            "-o",
            &bundle2.display().to_string(),
        ],
        None,
    ))
    .trim()
    .to_owned();
    assert_ne!(serial2, serial);
    assert_eq!(lines(&ok(&tls(&bundle2, &ls, None))), ["tls-one"]);
    let err = fails(&tls(&bundle, &ls, None));
    assert!(err.contains("revoked certificate"), "{err}");
    assert_eq!(
        ok(&d.lockbox(&["user", "revoke", "alice", "--serial", &serial2], None)),
        format!("{serial2}\n")
    );
    let err = fails(&tls(&bundle2, &ls, None));
    assert!(err.contains("revoked certificate"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 3. The audit trail: deliveries, value fingerprints, no values, tampering
// ---------------------------------------------------------------------------------------------

#[test]
fn audit_records_deliveries_and_fingerprints_but_never_values() {
    if !can_run("audit_records_deliveries_and_fingerprints_but_never_values") {
        return;
    }
    let mut d = Daemon::start();
    let value = marker();
    let secret_id = ok(&d.docker(&["secret", "create", "app-x", "-"], Some(value.as_bytes())))
        .trim()
        .to_owned();

    let creates = audit(&d, &["--action", "secret.create"]);
    assert_eq!(creates.len(), 1, "{creates:?}");
    let create = &creates[0];
    assert_eq!(
        create["objects"],
        json!([{"kind": "secret", "id": secret_id, "name": "app-x"}])
    );
    assert_eq!(create["outcome"], json!({"status": 201, "error": null}));
    let hmac = create["details"]["value_hmac"].as_str().unwrap().to_owned();
    assert!(hmac.starts_with("hmac-sha256:"), "{hmac}");
    let create_seq = create["seq"].as_u64().unwrap().to_string();

    let check = |seq: &str, candidate: &[u8]| {
        d.lockbox(&["audit", "check-value", seq, "-"], Some(candidate))
    };
    let o = check(&create_seq, value.as_bytes());
    assert_eq!(ok(&o), "match\n");
    let o = check(&create_seq, format!("{value}x").as_bytes());
    assert_eq!(
        (o.status.code(), text(&o.stdout)),
        (Some(1), "no match\n".into()),
        "{}",
        show(&o)
    );

    // A service using it: one delivery record, before the task sees the file.
    let svc_id = ok(&d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "api",
            "--secret",
            "source=app-x,target=db",
            "host",
            "sh",
            "-c",
            "trap 'exit 0' TERM; cat /run/secrets/db; sleep 1000 & wait",
        ],
        None,
    ))
    .trim()
    .to_owned();
    let deliver = wait_for("a secret.deliver record", Duration::from_secs(20), || {
        audit(&d, &["--action", "secret.deliver"])
            .into_iter()
            .next()
    });
    let task_id = ok(&d.docker(&["service", "ps", "api", "-q", "--no-trunc"], None))
        .trim()
        .to_owned();
    let node_id = ok(&d.docker(&["info", "--format", "{{.Swarm.NodeID}}"], None))
        .trim()
        .to_owned();
    assert_eq!(deliver["actor"], "daemon");
    assert_eq!(deliver["source"], "agent");
    assert_eq!(deliver["method"], Value::Null);
    assert_eq!(
        deliver["objects"],
        json!([
            {"kind": "secret", "id": secret_id, "name": "app-x"},
            {"kind": "task", "id": task_id, "name": ""},
            {"kind": "service", "id": svc_id, "name": "api"},
        ])
    );
    assert_eq!(deliver["details"]["target"], "db");
    assert_eq!(deliver["details"]["node"], node_id.as_str());
    assert_eq!(deliver["details"]["value_hmac"], hmac.as_str());
    assert_eq!(deliver["outcome"], json!({"status": 0, "error": null}));
    let deliver_seq = deliver["seq"].as_u64().unwrap().to_string();
    assert_eq!(ok(&check(&deliver_seq, value.as_bytes())), "match\n");

    // `--secret` finds both, by name and by ID.
    for key in ["app-x", secret_id.as_str()] {
        let actions: Vec<_> = audit(&d, &["--secret", key])
            .iter()
            .map(|r| r["action"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            actions.contains(&"secret.create".to_owned())
                && actions.contains(&"secret.deliver".to_owned()),
            "--secret {key}: {actions:?}"
        );
    }
    // `export` gives the records naming the secret: its create, the service that attaches
    // it, the delivery (and the create's "begin" record, which names no secret yet).
    let export = ok(&d.lockbox(&["audit", "export", "--secret", "app-x"], None));
    let actions: Vec<String> = export
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        actions,
        ["secret.create", "service.create", "secret.deliver"],
        "{export}"
    );

    ok(&d.docker(&["service", "rm", "api"], None));
    let _ = d.sigterm();
    // The value is nowhere in the trail, in clear or in base64.
    let dir = d.data_dir().join("audit");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        seen += data.len();
        for needle in [value.clone(), b64(value.as_bytes())] {
            assert!(
                !contains(&data, needle.as_bytes()),
                "{} contains {needle}",
                p.display()
            );
        }
    }
    assert!(seen > 0, "empty audit trail");
}

/// `lockbox audit verify [--dir]`: (exit code, stdout, stderr).
fn verify(d: &Daemon, dir: Option<&Path>) -> (Option<i32>, String, String) {
    let dir = dir.map(|p| p.display().to_string());
    let mut args = vec!["audit", "verify"];
    if let Some(dir) = &dir {
        args.extend(["--dir", dir.as_str()]);
    }
    let o = d.lockbox(&args, None);
    (o.status.code(), text(&o.stdout), text(&o.stderr))
}

fn failed(line: usize, seq: usize, reason: &str) -> (Option<i32>, String) {
    (
        Some(1),
        format!("FAILED: first bad record: file {SEGMENT} line {line} (seq {seq}): {reason}\n"),
    )
}

#[test]
fn audit_tampering_is_detected() {
    if !can_run("audit_tampering_is_detected") {
        return;
    }
    let mut d = Daemon::start();
    for i in 0..4 {
        ok(&d.lockbox(&["secret", "create", &format!("s{i}"), "-"], Some(b"v")));
    }
    for _ in 0..10 {
        let (status, ..) = d.http("GET", "/v1.47/secrets", None, None);
        assert_eq!(status, 200);
    }
    let n = std::fs::read_to_string(segment(&d))
        .unwrap()
        .lines()
        .count();
    let (code, out, err) = verify(&d, None);
    assert_eq!(
        (code, out),
        (Some(0), format!("OK: {n} records in 1 files verified\n")),
        "{err}"
    );
    let _ = d.sigterm();

    let original = std::fs::read_to_string(segment(&d)).unwrap();
    let recs = split_lines(&original);
    let total = recs.len();
    assert_eq!(total, n + 2); // + the verify request and the daemon.stop record
    let mid = total / 2; // 1-based line number of a middle record
    let i = mid - 1;

    let scratch = tempfile::tempdir().unwrap();
    let offline = |name: &str, content: String| {
        let dir = scratch.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(SEGMENT), content).unwrap();
        let (code, out, err) = verify(&d, Some(&dir));
        (code, out, err)
    };
    let flip = |line: &str| {
        // One byte: the case of the actor's first letter ("root" -> "Root").
        let at = line.find("\"actor\":\"").unwrap() + "\"actor\":\"".len();
        let mut b = line.as_bytes().to_vec();
        b[at] ^= 0x20;
        String::from_utf8(b).unwrap()
    };

    // Untouched.
    let (code, out, err) = offline("untouched", original.clone());
    assert_eq!(
        (code, out),
        (
            Some(0),
            format!("OK: {total} records in 1 files verified\n")
        ),
        "{err}"
    );

    // One byte changed in a middle record.
    let mut v = recs.clone();
    v[i] = flip(&v[i]);
    let (code, out, _) = offline("byte", v.concat());
    assert_eq!(
        (code, out),
        failed(mid, mid, "hash mismatch: the record was modified")
    );

    // One byte that breaks the JSON.
    let mut v = recs.clone();
    v[i] = v[i].replacen("\"seq\":", "\"seq\";", 1);
    let (code, out, _) = offline("json", v.concat());
    assert_eq!(code, Some(1));
    assert!(
        out.starts_with(&format!(
            "FAILED: first bad record: file {SEGMENT} line {mid} (seq {mid}): "
        )),
        "{out}"
    );

    // A middle record deleted: the line now holds the next seq.
    let mut v = recs.clone();
    v.remove(i);
    let (code, out, _) = offline("deleted", v.concat());
    assert_eq!(
        (code, out),
        failed(
            mid,
            mid + 1,
            &format!("records missing: expected seq {mid}, found {}", mid + 1)
        )
    );

    // Two records swapped.
    let mut v = recs.clone();
    v.swap(i, i + 1);
    let (code, out, _) = offline("swapped", v.concat());
    assert_eq!(
        (code, out),
        failed(
            mid,
            mid + 1,
            &format!("records missing: expected seq {mid}, found {}", mid + 1)
        )
    );

    // The last record cut mid-line.
    let cut = original[..original.len() - 10].to_owned();
    let (code, out, _) = offline("truncated", cut.clone());
    assert_eq!(
        (code, out),
        failed(total, total, "truncated line: no newline at the end")
    );

    // The last record deleted: offline verification cannot know, and says so.
    let (code, out, err) = offline("last-deleted", recs[..total - 1].concat());
    assert_eq!(
        (code, out),
        (
            Some(0),
            format!("OK: {} records in 1 files verified\n", total - 1)
        )
    );
    assert!(
        err.contains("offline verification cannot tell whether records were cut from the end"),
        "{err}"
    );

    // Through the daemon after a restart: a changed middle record.
    let mut v = recs.clone();
    v[i] = flip(&v[i]);
    std::fs::write(segment(&d), v.concat()).unwrap();
    d.restart();
    let (code, out, _) = verify(&d, None);
    assert_eq!(
        (code, out),
        failed(mid, mid, "hash mismatch: the record was modified")
    );
    let _ = d.sigterm();

    // Back to the original: verifies again.
    std::fs::write(segment(&d), &original).unwrap();
    d.restart();
    let (code, out, err) = verify(&d, None);
    assert_eq!(
        (code, out),
        (
            Some(0),
            // + the daemon.start record of the restart
            format!("OK: {} records in 1 files verified\n", total + 1)
        ),
        "{err}"
    );
    let _ = d.sigterm();

    // A partial last line (as a crash mid-write leaves it) is cut away at start, with a warning;
    // everything before it verifies.
    let now = std::fs::read_to_string(segment(&d)).unwrap();
    let k = now.lines().count();
    std::fs::write(segment(&d), &now[..now.len() - 10]).unwrap();
    d.restart();
    assert!(
        d.log().contains("audit segment ends with a partial line"),
        "{}",
        d.log()
    );
    let (code, out, err) = verify(&d, None);
    assert_eq!(
        (code, out),
        (
            Some(0),
            // the partial line is gone; the restart's daemon.start record is added
            format!("OK: {k} records in 1 files verified\n")
        ),
        "{err}"
    );

    // The last record deleted while the daemon runs: it knows the head it wrote.
    let now = std::fs::read(segment(&d)).unwrap();
    let k = now.iter().filter(|&&b| b == b'\n').count();
    let keep = now[..now.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(segment(&d))
        .unwrap();
    f.set_len(keep as u64).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let (code, out, _) = verify(&d, None);
    assert_eq!(
        (code, out),
        failed(
            k,
            k,
            &format!(
                "trail ends at seq {} but the expected head is seq {k}: records were removed from the end",
                k - 1
            )
        )
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Fail closed when the trail cannot be written
// ---------------------------------------------------------------------------------------------

/// Lazily unmounts a mount point on drop (also when the test panics).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// Fills the file system at `dir` with `filler` until it has no room left.
fn fill(filler: &Path) {
    let mut f = std::fs::File::create(filler).unwrap();
    let chunk = [0u8; 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("fill {}: {e}", filler.display()),
        }
    }
}

#[test]
fn requests_and_deliveries_fail_closed_when_the_trail_cannot_be_written() {
    let test = "requests_and_deliveries_fail_closed_when_the_trail_cannot_be_written";
    if !can_run(test) {
        return;
    }
    let mut d = Daemon::start();
    ok(&d.docker(&["secret", "create", "before", "-"], Some(b"b")));
    ok(&d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "flap",
            "--secret",
            "before",
            "--restart-condition",
            "any",
            "--restart-delay",
            "300ms",
            "host",
            "sh",
            "-c",
            "sleep 0.2; exit 1",
        ],
        None,
    ));
    let _ = d.sigterm();

    // Put the trail on a tiny tmpfs.
    let audit_dir = d.data_dir().join("audit");
    let saved = d.dir().join("audit.saved");
    std::fs::rename(&audit_dir, &saved).unwrap();
    std::fs::create_dir(&audit_dir).unwrap();
    std::fs::set_permissions(&audit_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let o = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs"])
        .arg(&audit_dir)
        .output()
        .unwrap();
    if !o.status.success() {
        skip(test, &format!("cannot mount a tmpfs: {}", show(&o)));
        return;
    }
    let _mount = Mount(audit_dir.clone());
    for e in std::fs::read_dir(&saved).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), audit_dir.join(e.file_name())).unwrap();
    }
    d.restart();
    ok(&d.docker(&["secret", "ls"], None));

    // Fill it. The segment's last page may still take a record or two: go until a request fails.
    let filler = audit_dir.join("filler");
    fill(&filler);
    let first_failure = wait_for(
        "a request refused for the audit trail",
        Duration::from_secs(10),
        || {
            let (status, _, body) = d.http("GET", "/v1.47/secrets", None, None);
            (status != 200).then_some((status, text(&body)))
        },
    );
    assert_eq!(first_failure.0, 500, "{}", first_failure.1);
    assert!(
        first_failure
            .1
            .contains("the audit trail could not be written"),
        "{}",
        first_failure.1
    );

    // A write now: refused, and it must not have happened.
    let (status, _, body) = d.http(
        "POST",
        "/v1.47/secrets/create",
        Some(br#"{"Name":"during","Data":"ZHVyaW5n"}"#),
        Some("application/json"),
    );
    assert_eq!(status, 500, "{}", text(&body));
    let err = fails(&d.docker(&["secret", "create", "during2", "-"], Some(b"x")));
    assert!(
        err.contains("the audit trail could not be written"),
        "{err}"
    );
    // Give the flapping task time to try a few deliveries while the trail is full.
    std::thread::sleep(Duration::from_millis(1500));

    // Room again. Deliveries that could not be recorded did not happen: the task failed instead
    // (looked at first, before task history retention drops the failed tasks).
    std::fs::remove_file(&filler).unwrap();
    let errors = ok(&d.docker(
        &[
            "service",
            "ps",
            "flap",
            "--no-trunc",
            "--format",
            "{{.Error}}",
        ],
        None,
    ));
    assert!(
        errors.lines().any(
            |l| l.contains("secret before not delivered: the audit trail could not be written")
        ),
        "{errors}"
    );
    ok(&d.docker(&["service", "rm", "flap"], None));

    // The trail is intact: failed writes were rolled back.
    let (code, out, _) = verify(&d, None);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("OK: "), "{out}");

    // Nothing a refused request asked for exists.
    assert_eq!(
        lines(&ok(
            &d.docker(&["secret", "ls", "--format", "{{.Name}}"], None)
        )),
        ["before"],
        "a request answered 500 for want of an audit record still changed the state"
    );
}
