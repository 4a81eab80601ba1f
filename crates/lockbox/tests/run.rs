//! `lockbox run` with image `host` (the process executor: needs root, skips otherwise), and
//! the choice of executor: without `--docker-host`, a real image fails with a message naming
//! the flag.

mod common;

use std::time::{Duration, Instant};

use common::Daemon;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn services(d: &Daemon) -> String {
    text(&d.docker(&["service", "ls", "-q"], None).stdout)
}

#[test]
fn run_host_with_a_secret_file() {
    if !common::is_root() {
        common::skip(
            "run_host_with_a_secret_file",
            "the process executor needs root (mount namespaces)",
        );
        return;
    }
    let d = Daemon::start();
    let o = d.docker(
        &["secret", "create", "lbxdx-npmrc", "-"],
        Some(b"//registry/:_authToken=s3cr3t\n"),
    );
    assert!(o.status.success(), "{o:?}");
    let target = format!("/tmp/lbxdx-run-{}/.npmrc", std::process::id());
    let script = format!(
        "stat -c '%a %u' {target}; cat {target}; mount | grep -c ' {target} '; echo to-stderr >&2; exit 4"
    );
    let secret = format!("lbxdx-npmrc,target={target},mode=0400");
    let o = d.lockbox(
        &[
            "run", "--rm", "--secret", &secret, "-e", "X=y", "host", "--", "sh", "-c", &script,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    assert_eq!(text(&o.stdout), "400 0\n//registry/:_authToken=s3cr3t\n1\n");
    assert_eq!(text(&o.stderr), "to-stderr\n");
    // The file never existed on the host, and --rm left nothing in lockbox.
    assert!(!std::path::Path::new(&target).exists());
    let start = Instant::now();
    while !services(&d).trim().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the run was not removed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The value is in no argument or environment the daemon was given, nor in its log.
    assert!(!d.log().contains("s3cr3t"));

    // Exit codes as docker run's.
    let o = d.lockbox(&["run", "--rm", "host", "true"], None);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = d.lockbox(&["run", "--rm", "host", "lbxdx-no-such-command"], None);
    assert_eq!(o.status.code(), Some(127), "{o:?}");
    let o = d.lockbox(
        &["run", "--rm", "--secret", "lbxdx-missing", "host", "true"],
        None,
    );
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(text(&o.stderr).contains("lbxdx-missing"), "{o:?}");

    // Without --rm the run stays, as a service whose task completed; -d prints its ID.
    let o = d.lockbox(
        &[
            "run",
            "--name",
            "lbxdx-kept",
            "host",
            "sh",
            "-c",
            "echo kept",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(text(&o.stdout), "kept\n");
    let o = d.docker(&["service", "logs", "--raw", "lbxdx-kept"], None);
    assert_eq!(text(&o.stdout), "kept\n");
    let o = d.lockbox(
        &["run", "-d", "--name", "lbxdx-bg", "host", "sleep", "100"],
        None,
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(text(&o.stdout).trim().len(), 25, "{o:?}");
    let o = d.docker(
        &["service", "ps", "--format", "{{.CurrentState}}", "lbxdx-bg"],
        None,
    );
    assert!(text(&o.stdout).starts_with("Running"), "{o:?}");
    let o = d.docker(&["service", "rm", "lbxdx-bg", "lbxdx-kept"], None);
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn real_images_need_the_docker_executor() {
    let d = Daemon::start();
    let o = d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "lbxdx-img",
            "--restart-condition",
            "none",
            "busybox:local",
            "true",
        ],
        None,
    );
    assert!(o.status.success(), "{o:?}");
    let start = Instant::now();
    let err = loop {
        let o = d.docker(
            &[
                "service",
                "ps",
                "--no-trunc",
                "--format",
                "{{.CurrentState}}|{{.Error}}",
                "lbxdx-img",
            ],
            None,
        );
        let s = text(&o.stdout);
        if s.starts_with("Failed") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "task did not fail: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(err.contains("--docker-host"), "{err}");
    // The same through lockbox run.
    let o = d.lockbox(&["run", "--rm", "busybox:local", "true"], None);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(text(&o.stderr).contains("--docker-host"), "{o:?}");
}
