//! Live secret updates (issue #6, part 5), black-box: a service that opts in with
//! `lockbox.live-update.targets` gets the new value swapped into its running tasks' tmpfs and a
//! signal when `lockbox secret rotate` runs — same tasks, no restart — while a service that
//! does not opt in is rotated with a rolling update. Needs root (the process executor).

mod common;

use std::collections::BTreeSet;
use std::process::Output;
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

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (task ID, state, desired state) of every task of `svc`.
fn tasks(d: &Daemon, svc: &str) -> Vec<(String, String, String)> {
    let out = ok(d.docker(
        &[
            "service",
            "ps",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.CurrentState}} {{.DesiredState}}",
            svc,
        ],
        None,
    ));
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.to_owned(),
                f.next()?.to_lowercase(),
                f.last()?.to_lowercase(),
            ))
        })
        .collect()
}

fn running(d: &Daemon, svc: &str) -> BTreeSet<String> {
    tasks(d, svc)
        .into_iter()
        .filter(|(_, s, _)| s == "running")
        .map(|(id, _, _)| id)
        .collect()
}

/// `docker service logs --no-trunc` as (task ID, line).
fn logs(d: &Daemon, svc: &str) -> Vec<(String, String)> {
    let o = d.docker(&["service", "logs", "--no-trunc", svc], None);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let (prefix, line) = l.split_once(" | ")?;
            let task = prefix.trim().split('@').next()?.rsplit('.').next()?;
            Some((task.to_owned(), line.to_owned()))
        })
        .collect()
}

/// Prints the value at start and on every SIGHUP; never restarts by itself.
const SCRIPT: &str = r#"trap 'echo "HUP $(cat /run/secrets/db) $(stat -c %a /run/secrets/db)"' HUP; echo "START $(cat /run/secrets/db)"; while :; do sleep 0.05; done"#;

#[test]
fn rotate_swaps_the_file_in_running_tasks_and_signals_them() {
    if !root_or_skip("rotate_swaps_the_file_in_running_tasks_and_signals_them") {
        return;
    }
    let d = Daemon::start();
    ok(d.lockbox(&["secret", "create", "db", "-"], Some(b"value-one")));
    ok(d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "live",
            "--replicas",
            "2",
            "--label",
            "lockbox.live-update.targets=db",
            "--label",
            "lockbox.live-update.signal=SIGHUP",
            "--secret",
            "source=db,target=db,mode=0440",
            "host",
            "sh",
            "-c",
            SCRIPT,
        ],
        None,
    ));
    // A service that did not opt in: rolled as usual.
    ok(d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "rolled",
            "--secret",
            "source=db,target=db",
            "host",
            "sh",
            "-c",
            SCRIPT,
        ],
        None,
    ));
    let before = wait_for("2 + 1 running tasks", Duration::from_secs(30), || {
        let l = running(&d, "live");
        let started = logs(&d, "live")
            .iter()
            .filter(|(_, line)| line == "START value-one")
            .count();
        (l.len() == 2 && started == 2 && running(&d, "rolled").len() == 1).then_some(l)
    });
    let rolled_before = running(&d, "rolled");

    let out = d.lockbox(&["secret", "rotate", "db", "-"], Some(b"value-two"));
    let returned = Instant::now();
    let stderr = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ok(out);
    assert!(
        stderr.contains("live-updating service live: db -> db-v1 (no restart)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("service live: 2 task(s) updated in place (SIGHUP)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("value-two"),
        "the value was printed: {stderr}"
    );
    // Within 1 s of the command returning, every task has printed the new value on SIGHUP.
    let seen = wait_for(
        "both tasks to print the new value",
        Duration::from_secs(5),
        || {
            let hups: BTreeSet<String> = logs(&d, "live")
                .into_iter()
                .filter(|(_, line)| line == "HUP value-two 440")
                .map(|(t, _)| t)
                .collect();
            (hups.len() == 2).then_some(hups)
        },
    );
    assert!(
        returned.elapsed() < Duration::from_secs(1) + Duration::from_millis(500),
        "the tasks saw the new value only after {:?}",
        returned.elapsed()
    );
    // The same tasks, never restarted: no START line with the new value, no new task.
    assert_eq!(seen, before);
    assert_eq!(running(&d, "live"), before);
    assert_eq!(tasks(&d, "live").len(), 2, "{:?}", tasks(&d, "live"));
    assert!(
        !logs(&d, "live")
            .iter()
            .any(|(_, l)| l.starts_with("START value-two")),
        "a task was restarted"
    );
    // The service now names the new version, and the old one is gone.
    let refs = ok(d.docker(
        &[
            "service",
            "inspect",
            "-f",
            "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}:{{.File.Name}} {{end}}",
            "live",
        ],
        None,
    ));
    assert_eq!(refs.trim(), "db-v1:db");
    // The rolled service got new tasks with the new value.
    wait_for(
        "the rolled service's new task",
        Duration::from_secs(30),
        || {
            let now = running(&d, "rolled");
            (now.len() == 1
                && now.is_disjoint(&rolled_before)
                && logs(&d, "rolled")
                    .iter()
                    .any(|(_, l)| l == "START value-two"))
            .then_some(())
        },
    );
    let names = ok(d.docker(&["secret", "ls", "--format", "{{.Name}}"], None));
    assert_eq!(names.trim(), "db-v1", "{names}");
    // Each live delivery is in the audit trail.
    let audit = ok(d.lockbox(
        &[
            "audit",
            "ls",
            "--action",
            "secret.deliver",
            "--format",
            "json",
        ],
        None,
    ));
    let live: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["details"]["live"] == "true")
        .collect();
    assert_eq!(live.len(), 2, "{audit}");
    assert!(!audit.contains("value-two"));
}

#[test]
fn a_service_that_does_not_allow_the_target_is_refused_by_the_swap_endpoint() {
    if !root_or_skip("a_service_that_does_not_allow_the_target_is_refused_by_the_swap_endpoint") {
        return;
    }
    let d = Daemon::start();
    ok(d.lockbox(&["secret", "create", "a1", "-"], Some(b"x")));
    ok(d.lockbox(&["secret", "create", "a2", "-"], Some(b"y")));
    ok(d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "s",
            "--label",
            "lockbox.live-update.targets=other",
            "--secret",
            "source=a1,target=db",
            "host",
            "sleep",
            "100",
        ],
        None,
    ));
    let (status, _, body) = d.http(
        "POST",
        "/lockbox/v1/services/s/secrets/swap",
        Some(br#"{"From":"a1","To":"a2"}"#),
        Some("application/json"),
    );
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("does not allow a live update of db"),
        "{body}"
    );
    let (status, _, body) = d.http(
        "POST",
        "/lockbox/v1/services/s/secrets/swap",
        Some(br#"{"From":"a2","To":"a1"}"#),
        Some("application/json"),
    );
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("service s does not use secret a2"), "{body}");
}
