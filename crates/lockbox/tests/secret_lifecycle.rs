//! Secret lifecycle (issue #6), black-box: `secret create --generate`, `secret import`,
//! `secret versions`, `secret rotate` (two services, failure and rollback, `--due`, the grace
//! period), `secret ls --filter rotation=...`, and `lockbox env`.
//!
//! Values are only ever checked inside tasks (services of image `host` print what they read
//! from /run/secrets); the CLI's own output and the daemon log must never contain them. Tests
//! that run tasks need root (the process executor uses mount namespaces) and skip without it.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;
use serde_json::Value;

fn root_or_skip(test: &str) -> bool {
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
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn get(ep: &common::Endpoint, path: &str) -> (u16, Value) {
    let r = common::http_request(ep, "GET", path, &[], None)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

fn tasks(ep: &common::Endpoint, svc: &str) -> Vec<Value> {
    let filter = format!(r#"{{"service":{{"{svc}":true}}}}"#);
    let (s, v) = get(ep, &format!("/v1.47/tasks?filters={}", urlencode(&filter)));
    assert_eq!(s, 200, "{v}");
    v.as_array().cloned().unwrap_or_default()
}

fn running(ep: &common::Endpoint, svc: &str) -> Vec<Value> {
    tasks(ep, svc)
        .into_iter()
        .filter(|t| t["Status"]["State"] == "running")
        .collect()
}

/// Running tasks the service still wants (not the old ones being stopped).
fn wanted(ep: &common::Endpoint, svc: &str) -> Vec<Value> {
    running(ep, svc)
        .into_iter()
        .filter(|t| t["DesiredState"] == "running")
        .collect()
}

fn secret_ids(t: &Value) -> Vec<String> {
    t["Spec"]["ContainerSpec"]["Secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["SecretID"].as_str().map(str::to_owned))
        .collect()
}

fn secret_id(ep: &common::Endpoint, name: &str) -> Option<String> {
    let (s, v) = get(ep, &format!("/v1.47/secrets/{name}"));
    (s == 200).then(|| v["ID"].as_str().unwrap_or("").to_owned())
}

fn secret_labels(ep: &common::Endpoint, name: &str) -> BTreeMap<String, String> {
    let (s, v) = get(ep, &format!("/v1.47/secrets/{name}"));
    assert_eq!(s, 200, "{name}: {v}");
    v["Spec"]["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn service_secret_ids(ep: &common::Endpoint, svc: &str) -> Vec<String> {
    let (s, v) = get(ep, &format!("/v1.47/services/{svc}?insertDefaults=false"));
    assert_eq!(s, 200, "{v}");
    v["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["SecretID"].as_str().map(str::to_owned))
        .collect()
}

/// `docker service logs --no-trunc`: (task ID, line) pairs.
fn task_logs(d: &Daemon, svc: &str) -> Vec<(String, String)> {
    let o = d.docker(&["service", "logs", "--no-trunc", svc], None);
    stdout(&o)
        .lines()
        .filter_map(|l| {
            let (prefix, line) = l.split_once(" | ")?;
            let task = prefix
                .trim()
                .split('@')
                .next()?
                .rsplit('.')
                .next()?
                .to_owned();
            Some((task, line.to_owned()))
        })
        .collect()
}

/// The last `VAL ...` line of each running task of `svc`.
fn last_values(d: &Daemon, svc: &str) -> BTreeMap<String, String> {
    let ids: Vec<String> = wanted(&d.endpoint(), svc)
        .iter()
        .map(|t| t["ID"].as_str().unwrap_or("").to_owned())
        .collect();
    let mut out = BTreeMap::new();
    for (task, line) in task_logs(d, svc) {
        if ids.contains(&task)
            && let Some(v) = line.strip_prefix("VAL ")
        {
            out.insert(task, v.to_owned());
        }
    }
    out
}

fn lockbox_cmd(d: &Daemon, args: &[&str]) -> Command {
    let mut cmd = Command::new(common::lockbox_bin());
    cmd.arg("-H").arg(d.host()).args(args).current_dir(d.dir());
    cmd
}

fn assert_absent(haystack: &str, values: &[&str], what: &str) {
    for v in values {
        assert!(
            !haystack.contains(v),
            "a secret value appeared in {what}:\n{haystack}"
        );
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Prints every file of /run/secrets as `FILE name hex`, then waits.
const DUMP: &str = r#"for f in /run/secrets/*; do echo "FILE ${f##*/} $(od -An -v -tx1 < "$f" | tr -d ' \n')"; done; echo DONE; sleep 1000"#;

fn dumped(d: &Daemon, svc: &str) -> BTreeMap<String, Vec<u8>> {
    let logs = wait_for(&format!("{svc} output"), Duration::from_secs(30), || {
        let l = task_logs(d, svc);
        l.iter().any(|(_, l)| l == "DONE").then_some(l)
    });
    logs.iter()
        .filter_map(|(_, l)| {
            let mut p = l.strip_prefix("FILE ")?.splitn(2, ' ');
            Some((p.next()?.to_owned(), hex_decode(p.next().unwrap_or(""))))
        })
        .collect()
}

#[test]
fn generate_and_import_values_reach_tasks_and_nothing_else() {
    if !root_or_skip("generate_and_import_values_reach_tasks_and_nothing_else") {
        return;
    }
    let d = Daemon::start();
    // Generated: only the ID on stdout.
    let o = ok(d.lockbox(
        &[
            "secret",
            "create",
            "gen",
            "--generate",
            "--charset",
            "hex",
            "--length",
            "24",
        ],
        None,
    ));
    assert_eq!(stdout(&o).trim().len(), 25, "{}", text(&o));
    assert_eq!(stdout(&o).lines().count(), 1);
    // --show: the ID, then the value.
    let o = ok(d.lockbox(
        &[
            "secret",
            "create",
            "shown",
            "--generate",
            "--charset",
            "alnum",
            "--length",
            "40",
            "--show",
        ],
        None,
    ));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let shown = lines[1].to_owned();
    assert_eq!(shown.len(), 40);
    assert!(shown.bytes().all(|b| b.is_ascii_alphanumeric()));
    // --output-file: a new 0600 file; never overwritten.
    let file = d.dir().join("filed.txt");
    let o = ok(d.lockbox(
        &[
            "secret",
            "create",
            "filed",
            "--generate",
            "--output-file",
            file.to_str().unwrap(),
        ],
        None,
    ));
    assert_eq!(stdout(&o).lines().count(), 1);
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let filed = std::fs::read_to_string(&file).unwrap();
    assert_eq!(filed.len(), 44, "32 random bytes in base64");
    let o = d.lockbox(
        &[
            "secret",
            "create",
            "again",
            "--generate",
            "--output-file",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(!o.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), filed);
    assert!(
        secret_id(&d.endpoint(), "again").is_none(),
        "no secret without its file"
    );
    assert_eq!(
        secret_labels(&d.endpoint(), "gen")
            .get("lockbox.generate")
            .map(String::as_str),
        Some("hex:24")
    );

    // Import.
    let env = "# production settings\n\
        export DB_PASSWORD=\"p@ss w0rd \\\"quoted\\\" # in quotes\"\n\
        JWT_SECRET = 'single $literal # not a comment'\n\
        API_KEY=unquoted-key-value # a comment\n\
        MULTI=\"line one\nline two\"\n\
        EMPTY=\n\
        NOT_THIS=zzz-not-imported\n";
    let values = [
        "p@ss w0rd \"quoted\" # in quotes",
        "single $literal # not a comment",
        "unquoted-key-value",
        "line one\nline two",
        "zzz-not-imported",
    ];
    std::fs::write(d.dir().join(".env.production"), env).unwrap();
    ok(d.lockbox(
        &["secret", "create", "app_api_key-v1", "-"],
        Some(b"pre-existing"),
    ));
    let import = [
        "secret",
        "import",
        "--env-file",
        ".env.production",
        "--prefix",
        "app_",
        "--suffix",
        "-v1",
        "--only",
        "DB_PASSWORD,JWT_SECRET,API_KEY,MULTI,EMPTY",
        "-l",
        "env=prod",
    ];
    let mut dry = import.to_vec();
    dry.push("--dry-run");
    let o = ok(d.lockbox(&dry, None));
    assert!(
        stdout(&o).contains("would create app_db_password-v1 (DB_PASSWORD)"),
        "{}",
        text(&o)
    );
    assert!(
        secret_id(&d.endpoint(), "app_db_password-v1").is_none(),
        "a dry run creates nothing"
    );
    let o = ok(d.lockbox(&import, None));
    let out = stdout(&o);
    assert!(
        out.contains("created app_db_password-v1 (DB_PASSWORD)"),
        "{out}"
    );
    assert!(
        out.contains("created app_jwt_secret-v1 (JWT_SECRET)"),
        "{out}"
    );
    assert!(out.contains("created app_multi-v1 (MULTI)"), "{out}");
    assert!(
        out.contains("skipped app_api_key-v1 (API_KEY): a secret with this name already exists"),
        "{out}"
    );
    assert!(
        out.contains("skipped app_empty-v1 (EMPTY): empty value"),
        "{out}"
    );
    assert!(!out.contains("NOT_THIS"), "{out}");
    assert_absent(&(out.clone() + &stderr(&o)), &values, "import output");
    // Running it again skips everything, one line each.
    let o = ok(d.lockbox(&import, None));
    assert_eq!(
        stdout(&o).matches("already exists").count(),
        4,
        "{}",
        text(&o)
    );
    let labels = secret_labels(&d.endpoint(), "app_db_password-v1");
    assert_eq!(labels.get("env").map(String::as_str), Some("prod"));
    assert_eq!(
        labels.get("lockbox.family").map(String::as_str),
        Some("app_db_password")
    );
    assert_eq!(labels.get("lockbox.version").map(String::as_str), Some("1"));

    // Inside a task.
    let mut args = vec![
        "service",
        "create",
        "-d",
        "--name",
        "check",
        "--restart-condition",
        "none",
    ];
    for s in [
        "gen",
        "shown",
        "filed",
        "app_db_password-v1",
        "app_jwt_secret-v1",
        "app_multi-v1",
    ] {
        args.push("--secret");
        args.push(s);
    }
    args.extend(["host", "sh", "-c", DUMP]);
    ok(d.docker(&args, None));
    let files = dumped(&d, "check");
    let generated = &files["gen"];
    assert_eq!(generated.len(), 48, "24 random bytes in hex");
    assert!(
        generated
            .iter()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(files["shown"], shown.as_bytes());
    assert_eq!(files["filed"], filed.as_bytes());
    assert_eq!(files["app_db_password-v1"], values[0].as_bytes());
    assert_eq!(files["app_jwt_secret-v1"], values[1].as_bytes());
    assert_eq!(files["app_multi-v1"], values[3].as_bytes());
    let generated = String::from_utf8(generated.clone()).unwrap();
    assert_absent(
        &d.log(),
        &[&generated, &filed, &shown, values[0], values[1]],
        "the daemon log",
    );
}

#[test]
fn rotate_two_services_without_downtime_then_remove_the_old_version_after_the_grace() {
    if !root_or_skip(
        "rotate_two_services_without_downtime_then_remove_the_old_version_after_the_grace",
    ) {
        return;
    }
    let d = Daemon::start();
    let ep = d.endpoint();
    let (old, new) = ("old-value-1111111", "new-value-2222222");
    ok(d.lockbox(&["secret", "create", "db-v1", "-"], Some(old.as_bytes())));
    let script = r#"while :; do echo "VAL $(cat /run/secrets/db)"; sleep 0.3; done"#;
    // `a` says start-first itself; `b` says nothing, so rotation uses start-first for it (and
    // leaves its spec without an UpdateConfig afterwards).
    ok(d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "a",
            "--replicas",
            "3",
            "--update-order",
            "start-first",
            "--update-monitor",
            "1s",
            "--secret",
            "source=db-v1,target=db",
            "host",
            "sh",
            "-c",
            script,
        ],
        None,
    ));
    ok(d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "b",
            "--replicas",
            "3",
            "--secret",
            "source=db-v1,target=db,mode=0400",
            "host",
            "sh",
            "-c",
            script,
        ],
        None,
    ));
    wait_for("3 + 3 running", Duration::from_secs(30), || {
        (running(&ep, "a").len() == 3 && running(&ep, "b").len() == 3).then_some(())
    });
    let v = stdout(&ok(d.lockbox(&["secret", "versions", "db"], None)));
    let row = v.lines().find(|l| l.contains("db-v1")).unwrap_or_default();
    assert!(
        row.contains("current") && row.contains("a (db), b (db)"),
        "{v}"
    );
    let old_id = secret_id(&ep, "db-v1").unwrap();

    let grace = Duration::from_secs(4);
    let rotate = std::thread::spawn({
        let cmd = lockbox_cmd(&d, &["secret", "rotate", "db", "-", "--grace", "4s"]);
        move || common::run_with_timeout(cmd, Some(new.as_bytes()), Duration::from_secs(180))
    });
    let mut min_running = (usize::MAX, usize::MAX);
    let mut converged_at: Option<Instant> = None;
    let mut removed_at: Option<Instant> = None;
    while !rotate.is_finished() {
        let (ra, rb) = (running(&ep, "a"), running(&ep, "b"));
        min_running = (min_running.0.min(ra.len()), min_running.1.min(rb.len()));
        let (ra, rb) = (wanted(&ep, "a"), wanted(&ep, "b"));
        let new_id = secret_id(&ep, "db-v2");
        let all_new = new_id.as_ref().is_some_and(|id| {
            ra.len() == 3
                && rb.len() == 3
                && ra
                    .iter()
                    .chain(rb.iter())
                    .all(|t| secret_ids(t) == [id.clone()])
        });
        if all_new && converged_at.is_none() {
            converged_at = Some(Instant::now());
            assert!(
                secret_id(&ep, "db-v1").is_some(),
                "the old version must outlive convergence by the grace period"
            );
        }
        if removed_at.is_none() && secret_id(&ep, "db-v1").is_none() {
            removed_at = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = ok(rotate.join().unwrap());
    let out = stdout(&o);
    assert!(
        out.contains("db: rotated to db-v2 (services updated: a, b; removed db-v1)"),
        "{}",
        text(&o)
    );
    assert!(
        out.contains("Service a converged") && out.contains("Service b converged"),
        "{out}"
    );
    assert_absent(&(out.clone() + &stderr(&o)), &[old, new], "rotate output");
    assert!(
        min_running.0 >= 3 && min_running.1 >= 3,
        "start-first never drops below the replica count: {min_running:?}"
    );
    let converged_at = converged_at.expect("saw every task on db-v2");
    let removed_at = removed_at.unwrap_or_else(Instant::now);
    assert!(
        removed_at.duration_since(converged_at) >= grace - Duration::from_millis(800),
        "db-v1 removed {:?} after convergence",
        removed_at.duration_since(converged_at)
    );
    assert!(secret_id(&ep, "db-v1").is_none());
    let new_id = secret_id(&ep, "db-v2").unwrap();
    assert_ne!(new_id, old_id);
    assert_eq!(service_secret_ids(&ep, "a"), [new_id.as_str()]);
    assert_eq!(service_secret_ids(&ep, "b"), [new_id.as_str()]);
    // Every running task reads the new value.
    for svc in ["a", "b"] {
        let vals = wait_for(
            &format!("{svc}'s tasks printing"),
            Duration::from_secs(10),
            || {
                let v = last_values(&d, svc);
                (v.len() == 3).then_some(v)
            },
        );
        assert!(vals.values().all(|v| v == new), "{svc}: {vals:?}");
    }
    // Same target, owner and mode; b's spec has no UpdateConfig again; a kept its own.
    let (_, b) = get(&ep, "/v1.47/services/b?insertDefaults=false");
    assert_eq!(
        b["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["File"]["Mode"],
        256
    );
    assert!(b["Spec"]["UpdateConfig"].is_null(), "{}", b["Spec"]);
    let (_, a) = get(&ep, "/v1.47/services/a?insertDefaults=false");
    assert_eq!(a["Spec"]["UpdateConfig"]["Order"], "start-first");
    let labels = secret_labels(&ep, "db-v2");
    assert_eq!(labels.get("lockbox.family").map(String::as_str), Some("db"));
    assert_eq!(labels.get("lockbox.version").map(String::as_str), Some("2"));
    let v = stdout(&ok(d.lockbox(&["secret", "versions", "-q", "db-v2"], None)));
    assert_eq!(v, "db-v2\n");
    assert_absent(&d.log(), &[old, new], "the daemon log");
}

#[test]
fn a_failed_rotation_rolls_every_service_back_and_removes_the_new_version() {
    if !root_or_skip("a_failed_rotation_rolls_every_service_back_and_removes_the_new_version") {
        return;
    }
    let d = Daemon::start();
    let ep = d.endpoint();
    ok(d.lockbox(&["secret", "create", "k-v1", "-"], Some(b"good-value")));
    let plain = r#"while :; do echo "VAL $(cat /run/secrets/k)"; sleep 0.3; done"#;
    // The injected failure: `b` refuses to run with the value "bad-value".
    let picky = r#"v=$(cat /run/secrets/k); if [ "$v" = bad-value ]; then echo REFUSED; exit 1; fi; while :; do echo "VAL $v"; sleep 0.3; done"#;
    for (name, script) in [("a", plain), ("b", picky)] {
        ok(d.docker(
            &[
                "service",
                "create",
                "-d",
                "--name",
                name,
                "--replicas",
                "3",
                "--update-order",
                "start-first",
                "--update-monitor",
                "1s",
                "--restart-delay",
                "1s",
                "--secret",
                "source=k-v1,target=k",
                "host",
                "sh",
                "-c",
                script,
            ],
            None,
        ));
    }
    wait_for("3 + 3 running", Duration::from_secs(30), || {
        (running(&ep, "a").len() == 3 && running(&ep, "b").len() == 3).then_some(())
    });
    let old_id = secret_id(&ep, "k-v1").unwrap();
    let o = common::run_with_timeout(
        lockbox_cmd(&d, &["secret", "rotate", "k", "-"]),
        Some(b"bad-value"),
        Duration::from_secs(180),
    );
    assert!(!o.status.success(), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("rotation failed: service b"), "{}", text(&o));
    assert!(err.contains("rolled back: b, a"), "{}", text(&o));
    assert!(stdout(&o).contains("removed k-v2"), "{}", text(&o));
    assert!(
        secret_id(&ep, "k-v2").is_none(),
        "the new version is removed"
    );
    assert_eq!(secret_id(&ep, "k-v1"), Some(old_id.clone()));
    assert_eq!(service_secret_ids(&ep, "a"), [old_id.as_str()]);
    assert_eq!(service_secret_ids(&ep, "b"), [old_id.as_str()]);
    for svc in ["a", "b"] {
        let r = wait_for(&format!("{svc}: 3 tasks"), Duration::from_secs(10), || {
            let r = wanted(&ep, svc);
            (r.len() == 3).then_some(r)
        });
        assert!(
            r.iter().all(|t| secret_ids(t) == [old_id.clone()]),
            "{svc}: {r:#?}"
        );
        let vals = wait_for(
            &format!("{svc}'s tasks printing"),
            Duration::from_secs(10),
            || {
                let v = last_values(&d, svc);
                (v.len() == 3).then_some(v)
            },
        );
        assert!(vals.values().all(|v| v == "good-value"), "{svc}: {vals:?}");
    }
    assert_absent(
        &(stdout(&o) + &err),
        &["good-value", "bad-value"],
        "rotate output",
    );
}

#[test]
fn rotation_due_overdue_filter_rotate_due_and_an_interrupted_grace() {
    if !root_or_skip("rotation_due_overdue_filter_rotate_due_and_an_interrupted_grace") {
        return;
    }
    let d = Daemon::start();
    let ep = d.endpoint();
    // Overdue (an explicit -l wins over --rotate-every's date), scheduled, and overdue but not
    // generated by lockbox.
    ok(d.lockbox(
        &[
            "secret",
            "create",
            "tok",
            "--generate",
            "--charset",
            "hex",
            "--length",
            "16",
            "--rotate-every",
            "90d",
            "-l",
            "rotation-due=2001-01-01",
        ],
        None,
    ));
    ok(d.lockbox(
        &[
            "secret",
            "create",
            "fresh",
            "--generate",
            "--rotate-every",
            "90d",
        ],
        None,
    ));
    ok(d.lockbox(
        &[
            "secret",
            "create",
            "manual",
            "-",
            "-l",
            "rotation-due=2001-01-01T00:00:00Z",
        ],
        Some(b"typed-by-hand"),
    ));
    let ls = |f: &str| {
        stdout(&ok(d.lockbox(
            &["secret", "ls", "--filter", f, "--format", "{{.Name}}"],
            None,
        )))
    };
    assert_eq!(ls("rotation=overdue"), "manual\ntok\n");
    assert_eq!(ls("rotation=scheduled"), "fresh\n");
    let o = d.lockbox(&["secret", "ls", "--filter", "rotation=soon"], None);
    assert!(!o.status.success());
    ok(d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "t",
            "--secret",
            "source=tok,target=token",
            "host",
            "sh",
            "-c",
            r#"while :; do echo "VAL $(cat /run/secrets/token)"; sleep 0.3; done"#,
        ],
        None,
    ));
    wait_for("t running", Duration::from_secs(30), || {
        (wanted(&ep, "t").len() == 1).then_some(())
    });

    // Cron: tok is rotated (regenerated alike); manual cannot be, and says so.
    let o = d.lockbox(&["secret", "rotate", "--due"], None);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        stdout(&o).contains("tok: rotated to tok-v1 (services updated: t; removed tok)"),
        "{}",
        text(&o)
    );
    assert!(
        stderr(&o).contains("manual: no new value given, and manual was not generated by lockbox"),
        "{}",
        text(&o)
    );
    assert_eq!(ls("rotation=overdue"), "manual\n");
    let l = secret_labels(&ep, "tok-v1");
    assert_eq!(
        l.get("lockbox.generate").map(String::as_str),
        Some("hex:16")
    );
    assert_eq!(
        l.get("lockbox.rotate-every").map(String::as_str),
        Some("90d")
    );
    let due = l.get("rotation-due").cloned().unwrap_or_default();
    assert_eq!(due.len(), 10, "a date, 90 days ahead: {due}");
    assert!(due.as_str() > "2026-01-01");
    let tok_v1 = secret_id(&ep, "tok-v1").unwrap();
    assert_eq!(service_secret_ids(&ep, "t"), [tok_v1.as_str()]);

    // Ctrl-C during the grace period: the rotation stands, the old version stays, labelled;
    // `rotate --due` removes it once the grace is over.
    let mut child = lockbox_cmd(&d, &["secret", "rotate", "tok", "--grace", "3s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let keeping = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("tok: keeping tok-v1 until"));
    assert!(keeping.is_some(), "no grace period announced");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let tok_v2 = secret_id(&ep, "tok-v2").unwrap();
    assert_eq!(service_secret_ids(&ep, "t"), [tok_v2.as_str()]);
    assert!(secret_labels(&ep, "tok-v1").contains_key("lockbox.remove-after"));
    let v = stdout(&ok(d.lockbox(&["secret", "versions", "tok"], None)));
    assert!(v.contains("retired (remove after"), "{v}");
    std::thread::sleep(Duration::from_secs(3));
    let o = d.lockbox(&["secret", "rotate", "--due"], None);
    assert!(
        stdout(&o).contains("removed tok-v1 (its grace period is over)"),
        "{}",
        text(&o)
    );
    assert!(secret_id(&ep, "tok-v1").is_none());
    let vals = wait_for("t printing", Duration::from_secs(10), || {
        let v = last_values(&d, "t");
        (v.len() == 1).then_some(v)
    });
    assert!(
        vals.values()
            .all(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
    );
}

#[test]
fn lockbox_env_exports_x_from_x_file_and_execs() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("redis_password");
    std::fs::write(&pw, "redis-pass-value\r\n\n").unwrap();
    let env = |vars: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(common::lockbox_bin());
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .arg("env")
            .args(args);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        common::run_with_timeout(cmd, None, Duration::from_secs(30))
    };
    let pw = pw.to_str().unwrap();
    let o = env(
        &[("REDIS_PASSWORD_FILE", pw)],
        &[
            "--",
            "sh",
            "-c",
            r#"printf '[%s] %s' "$REDIS_PASSWORD" "$REDIS_PASSWORD_FILE"; exit 7"#,
        ],
    );
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert_eq!(stdout(&o), format!("[redis-pass-value] {pw}"));
    // Both set: refused, as docker-library's file_env.
    let o = env(
        &[("REDIS_PASSWORD_FILE", pw), ("REDIS_PASSWORD", "x")],
        &["--", "true"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("both REDIS_PASSWORD and REDIS_PASSWORD_FILE are set"));
    // Unreadable: a warning naming the path, the variable stays unset.
    let o = env(
        &[("NOPE_FILE", "/nonexistent/x")],
        &["--", "sh", "-c", r#"echo "[${NOPE-unset}]""#],
    );
    assert_eq!(stdout(&o), "[unset]\n", "{}", text(&o));
    assert!(stderr(&o).contains("NOPE_FILE: cannot read /nonexistent/x"));
    // --only: each must work.
    let o = env(
        &[("REDIS_PASSWORD_FILE", pw)],
        &["--only", "REDIS_PASSWORD,DB", "--", "true"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("DB_FILE is not set"));
    let o = env(&[], &["--", "/nonexistent/cmd"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(!stderr(&o).contains("redis-pass-value"));
}

#[test]
fn lockbox_env_in_a_task_gives_redis_its_password() {
    if !root_or_skip("lockbox_env_in_a_task_gives_redis_its_password") {
        return;
    }
    let d = Daemon::start();
    ok(d.lockbox(
        &[
            "secret",
            "create",
            "redis_password",
            "--generate",
            "--charset",
            "alnum",
        ],
        None,
    ));
    // The seeds' Redis, with `sh -c 'echo requirepass ...'` standing in for redis-server.
    ok(d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "redis",
            "--secret",
            "redis_password",
            "-e",
            "REDIS_PASSWORD_FILE=/run/secrets/redis_password",
            "host",
            common::lockbox_bin(),
            "env",
            "--",
            "sh",
            "-c",
            r#"echo "ARG $REDIS_PASSWORD"; echo "FILE $(cat "$REDIS_PASSWORD_FILE")"; sleep 1000"#,
        ],
        None,
    ));
    let logs = wait_for("redis output", Duration::from_secs(30), || {
        let l = task_logs(&d, "redis");
        l.iter().any(|(_, l)| l.starts_with("FILE ")).then_some(l)
    });
    let get = |p: &str| {
        logs.iter()
            .find_map(|(_, l)| l.strip_prefix(p).map(str::to_owned))
            .unwrap_or_default()
    };
    let (arg, file) = (get("ARG "), get("FILE "));
    assert_eq!(arg.len(), 32, "{logs:?}");
    assert_eq!(arg, file);
}
