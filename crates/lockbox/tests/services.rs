//! Services of image `host` through the stock docker CLI: secrets delivered in memory to the
//! tasks granted them, rotation without downtime, in-use protection, crash cleanup.
//! The process executor needs root (mount namespaces); these tests skip without it.

mod common;

use std::time::{Duration, Instant};

use common::Daemon;

fn root_or_skip(test: &str) -> bool {
    if !common::is_root() {
        common::skip(test, "the process executor needs root (mount namespaces)");
        return false;
    }
    true
}

fn out(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<String>) -> String {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn logs(d: &Daemon, svc: &str) -> String {
    let o = d.docker(&["service", "logs", "--raw", svc], None);
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn tasks_json(d: &Daemon, svc: &str) -> Vec<serde_json::Value> {
    let filter = format!(r#"{{"service":{{"{svc}":true}}}}"#);
    let path = format!("/v1.47/tasks?filters={}", urlencode(&filter));
    let (s, _, body) = d.http("GET", &path, None, None);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
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

fn running_tasks(d: &Daemon, svc: &str) -> Vec<serde_json::Value> {
    tasks_json(d, svc)
        .into_iter()
        .filter(|t| t["Status"]["State"] == "running")
        .collect()
}

fn host_mounts() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

fn grep_tree(dir: &std::path::Path, needle: &[u8], hits: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            grep_tree(&p, needle, hits);
        } else if ft.is_file()
            && let Ok(b) = std::fs::read(&p)
            && b.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(p.display().to_string());
        }
    }
}

const SCRIPT: &str = r#"for f in /run/secrets/*; do [ -e "$f" ] && echo "FILE $f $(stat -c '%a %u %g' $f) $(cat $f)"; done; grep ' /run/secrets ' /proc/self/mountinfo | sed 's/^/MOUNT /'; (echo x > /run/secrets/new) 2>/dev/null || echo READONLY; echo PID $$; echo ENV $DB_PASSWORD_FILE; sleep 1000"#;

#[test]
fn secrets_reach_only_granted_tasks_in_memory() {
    if !root_or_skip("secrets_reach_only_granted_tasks_in_memory") {
        return;
    }
    let d = Daemon::start();
    let value = format!("s3cr3t-{}", std::process::id());
    out(&d.docker(
        &["secret", "create", "db_password", "-"],
        Some(value.as_bytes()),
    ));
    out(&d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "api",
            "--secret",
            "source=db_password,target=db,uid=1000,gid=1000,mode=0400",
            "--secret",
            "source=db_password,target=/etc/app/db.conf,mode=0440",
            "-e",
            "DB_PASSWORD_FILE=/run/secrets/db",
            "host",
            "sh",
            "-c",
            SCRIPT,
        ],
        None,
    ));
    out(&d.docker(
        &[
            "service", "create", "-d", "--name", "other", "host", "sh", "-c", SCRIPT,
        ],
        None,
    ));
    let api = wait_for("api output", Duration::from_secs(20), || {
        let l = logs(&d, "api");
        l.contains("ENV").then_some(l)
    });
    assert!(
        api.contains(&format!("FILE /run/secrets/db 400 1000 1000 {value}")),
        "{api}"
    );
    assert!(api.contains("READONLY"), "{api}");
    assert!(
        api.contains("PID 1"),
        "the task is pid 1 of its own namespace: {api}"
    );
    assert!(api.contains("ENV /run/secrets/db"), "{api}");
    let mount = api
        .lines()
        .find(|l| l.starts_with("MOUNT"))
        .unwrap_or_default();
    assert!(
        mount.contains(" ro,")
            && mount.contains("nosuid")
            && mount.contains("nodev")
            && mount.contains("noexec"),
        "{mount}"
    );
    assert!(mount.contains("tmpfs"), "{mount}");
    let other = wait_for("other output", Duration::from_secs(20), || {
        let l = logs(&d, "other");
        l.contains("ENV").then_some(l)
    });
    assert!(
        !other.contains("FILE"),
        "a task without the grant must see no secret: {other}"
    );
    assert!(!other.contains(&value), "{other}");
    // The host sees nothing: no secret file, no task tmpfs in its mount table.
    assert!(!std::path::Path::new("/run/secrets/db").exists());
    assert!(!host_mounts().contains("/run/secrets"), "{}", host_mounts());
    let mut hits = Vec::new();
    grep_tree(&d.data_dir(), value.as_bytes(), &mut hits);
    grep_tree(std::path::Path::new("/run"), value.as_bytes(), &mut hits);
    assert!(hits.is_empty(), "secret bytes found on the host: {hits:?}");

    // In use: refused with Docker's text; both services listed when both use it.
    let o = d.docker(&["secret", "rm", "db_password"], None);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "Error response from daemon: rpc error: code = InvalidArgument desc = secret 'db_password' is in use by the following service: api"
    );
    out(&d.docker(&["service", "rm", "api", "other"], None));
    out(&d.docker(&["secret", "rm", "db_password"], None));
    wait_for("tasks gone", Duration::from_secs(20), || {
        let (_, _, b) = d.http("GET", "/v1.47/tasks", None, None);
        (b.as_slice() == b"[]\n").then(String::new)
    });
}

#[test]
fn start_first_rotation_never_leaves_zero_running_tasks() {
    if !root_or_skip("start_first_rotation_never_leaves_zero_running_tasks") {
        return;
    }
    let d = Daemon::start();
    out(&d.docker(&["secret", "create", "jwt-v1", "-"], Some(b"one")));
    out(&d.docker(&["secret", "create", "jwt-v2", "-"], Some(b"two")));
    let script = "echo VALUE $(cat /run/secrets/jwt); sleep 1000";
    out(&d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "2",
            "--update-order",
            "start-first",
            "--update-monitor",
            "1s",
            "--secret",
            "source=jwt-v1,target=jwt",
            "host",
            "sh",
            "-c",
            script,
        ],
        None,
    ));
    wait_for("2 running", Duration::from_secs(20), || {
        (running_tasks(&d, "web").len() == 2).then(String::new)
    });
    let o = d.docker(&["secret", "rm", "jwt-v1"], None);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is in use by the following service: web"));
    out(&d.docker(
        &[
            "service",
            "update",
            "-d",
            "--secret-rm",
            "jwt-v1",
            "--secret-add",
            "source=jwt-v2,target=jwt",
            "web",
        ],
        None,
    ));
    // Once the spec no longer references it, the old secret can go, even while old tasks drain.
    out(&d.docker(&["secret", "rm", "jwt-v1"], None));
    let start = Instant::now();
    let mut min_running = usize::MAX;
    loop {
        let tasks = tasks_json(&d, "web");
        let running: Vec<&serde_json::Value> = tasks
            .iter()
            .filter(|t| t["Status"]["State"] == "running")
            .collect();
        min_running = min_running.min(running.len());
        let all_new = running.len() == 2
            && running
                .iter()
                .all(|t| t["Spec"]["ContainerSpec"]["Secrets"][0]["SecretName"] == "jwt-v2");
        let svc = out(&d.docker(
            &[
                "service",
                "inspect",
                "--format",
                "{{.UpdateStatus.State}}",
                "web",
            ],
            None,
        ));
        if all_new && svc.trim() == "completed" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "update did not complete: {tasks:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        min_running >= 2,
        "start-first must never drop below the replica count: saw {min_running}"
    );
    let l = logs(&d, "web");
    assert!(l.matches("VALUE two").count() >= 2, "{l}");
}

#[test]
fn daemon_kill9_leaves_no_task_or_secret_behind_and_tasks_come_back() {
    if !root_or_skip("daemon_kill9_leaves_no_task_or_secret_behind_and_tasks_come_back") {
        return;
    }
    let mut d = Daemon::start();
    let value = format!("crash-{}", std::process::id());
    out(&d.docker(&["secret", "create", "k", "-"], Some(value.as_bytes())));
    out(&d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "c",
            "--restart-delay",
            "1s",
            "--secret",
            "k",
            "host",
            "sh",
            "-c",
            "cat /run/secrets/k; echo; sleep 1000",
        ],
        None,
    ));
    let pid = wait_for("running task", Duration::from_secs(20), || {
        running_tasks(&d, "c")
            .first()
            .and_then(|t| t["Status"]["ContainerStatus"]["PID"].as_u64())
            .map(|p| p.to_string())
    });
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    d.kill9();
    wait_for(
        "the task's process to die with the daemon",
        Duration::from_secs(10),
        || (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then(String::new),
    );
    let mut hits = Vec::new();
    grep_tree(&d.data_dir(), value.as_bytes(), &mut hits);
    grep_tree(std::path::Path::new("/run"), value.as_bytes(), &mut hits);
    assert!(hits.is_empty(), "{hits:?}");
    assert!(!host_mounts().contains("/run/secrets"));
    d.restart();
    wait_for("a new running task", Duration::from_secs(30), || {
        let r = running_tasks(&d, "c");
        (r.len() == 1 && r[0]["Status"]["ContainerStatus"]["PID"].as_u64() != pid.parse().ok())
            .then(String::new)
    });
    let tasks = tasks_json(&d, "c");
    assert!(
        tasks.iter().any(|t| t["Status"]["State"] == "failed"),
        "the lost task is recorded: {tasks:#?}"
    );
}

#[test]
fn service_commands_and_scaling() {
    if !root_or_skip("service_commands_and_scaling") {
        return;
    }
    let d = Daemon::start();
    out(&d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "s",
            "--replicas",
            "3",
            "--stop-grace-period",
            "1s",
            "host",
            "sleep",
            "1000",
        ],
        None,
    ));
    wait_for("3 running", Duration::from_secs(20), || {
        (running_tasks(&d, "s").len() == 3).then(String::new)
    });
    let ls = out(&d.docker(
        &[
            "service",
            "ls",
            "--format",
            "{{.Name}} {{.Mode}} {{.Replicas}} {{.Image}}",
        ],
        None,
    ));
    // The docker CLI tags the image it could not resolve on a registry.
    assert_eq!(ls.trim(), "s replicated 3/3 host:latest");
    out(&d.docker(&["service", "scale", "-d", "s=1"], None));
    let ps = wait_for("only s.1 running", Duration::from_secs(30), || {
        let ps = out(&d.docker(
            &[
                "service",
                "ps",
                "--format",
                "{{.Name}} {{.DesiredState}} {{.CurrentState}}",
                "s",
            ],
            None,
        ));
        let running: Vec<&str> = ps
            .lines()
            .filter(|l| l.contains(" Running Running"))
            .collect();
        (running.len() == 1 && running[0].starts_with("s.1 ")).then_some(ps)
    });
    let wanted: Vec<_> = running_tasks(&d, "s")
        .into_iter()
        .filter(|t| t["DesiredState"] == "running")
        .collect();
    assert_eq!(wanted.len(), 1, "{ps}");
    // Scaling does not restart the task that stays.
    assert!(
        !ps.contains("\\_ s.1"),
        "scaling must not replace s.1: {ps}"
    );
    let pretty = out(&d.docker(&["service", "inspect", "--pretty", "s"], None));
    assert!(
        pretty.contains("Replicas:\t1") || pretty.contains("Replicas:"),
        "{pretty}"
    );
    let nodes = out(&d.docker(
        &[
            "node",
            "ls",
            "--format",
            "{{.Self}} {{.Status}} {{.Availability}} {{.ManagerStatus}}",
        ],
        None,
    ));
    assert_eq!(nodes.trim(), "true Ready Active Leader");
    // Draining the node stops its tasks; activating it brings them back.
    let me = out(&d.docker(&["node", "inspect", "--format", "{{.ID}}", "self"], None))
        .trim()
        .to_owned();
    out(&d.docker(&["node", "update", "--availability", "drain", &me], None));
    wait_for("drained", Duration::from_secs(20), || {
        running_tasks(&d, "s").is_empty().then(String::new)
    });
    out(&d.docker(&["node", "update", "--availability", "active", &me], None));
    wait_for("back", Duration::from_secs(20), || {
        (running_tasks(&d, "s").len() == 1).then(String::new)
    });
    out(&d.docker(&["service", "rm", "s"], None));
}

#[test]
fn non_host_images_fail_with_a_clear_message() {
    let d = Daemon::start();
    out(&d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "b",
            "--restart-condition",
            "none",
            "busybox:local",
            "true",
        ],
        None,
    ));
    let err = wait_for("failed task", Duration::from_secs(20), || {
        tasks_json(&d, "b")
            .first()
            .and_then(|t| t["Status"]["Err"].as_str().map(str::to_owned))
    });
    assert!(err.contains("--docker-host"), "{err}");
}
