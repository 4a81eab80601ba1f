//! `lockbox service …` and `lockbox node …` against the stock docker CLI, on the same daemon:
//! same stdout and exit codes for ls/ps/inspect/--pretty/--format, scale, rm, rollback, the same
//! request bodies for create and update (seen through a logging proxy), the same flag errors.
//!
//! By default the tests start a lockbox daemon (image `host`) and are skipped while it does not
//! serve `/services`. `LOCKBOX_TEST_TARGET=unix:///tmp/reference-swarm/docker.sock` runs them
//! against a real Docker swarm instead (image `busybox:local`); `LOCKBOX_TEST_IMAGE` overrides
//! the image. Everything they create is named `clisvc-t<pid>-…` and removed at the end.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, Endpoint};

/// Where the tests run: the endpoint, the image to use, a private dir.
struct Target {
    ep: Endpoint,
    image: String,
    dir: tempfile::TempDir,
    prefix: String,
    _daemon: Option<Daemon>,
}

/// The target for `test`, or `None` (after printing why) when it cannot run.
fn target(test: &str) -> Option<Target> {
    if let Some(why) = common::docker_unavailable() {
        common::skip(test, &why);
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix("lockbox-cli-service-")
        .tempdir()
        .expect("tempdir");
    std::fs::create_dir_all(dir.path().join("docker-config")).expect("mkdir");
    let image_env = std::env::var("LOCKBOX_TEST_IMAGE")
        .ok()
        .filter(|s| !s.is_empty());
    let short: String = test.split('_').filter_map(|w| w.chars().next()).collect();
    let prefix = format!("clisvc-t{}-{short}", std::process::id());
    match std::env::var("LOCKBOX_TEST_TARGET") {
        Ok(t) if !t.is_empty() => Some(Target {
            ep: Endpoint::parse(&t).unwrap_or_else(|e| panic!("LOCKBOX_TEST_TARGET: {e}")),
            image: image_env.unwrap_or_else(|| "busybox:local".into()),
            dir,
            prefix,
            _daemon: None,
        }),
        _ => {
            let d = Daemon::start();
            let (status, _, _) = d.http("GET", "/v1.47/services", None, None);
            if status != 200 {
                common::skip(
                    test,
                    &format!("the lockbox daemon does not serve /services yet (status {status})"),
                );
                return None;
            }
            Some(Target {
                ep: d.endpoint(),
                image: image_env.unwrap_or_else(|| "host".into()),
                dir,
                prefix,
                _daemon: Some(d),
            })
        }
    }
}

/// stdout, stderr, exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    out: String,
    err: String,
    code: i32,
}

fn to_run(o: Output) -> Run {
    Run {
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
        code: o.status.code().unwrap_or(-1),
    }
}

impl Target {
    fn docker_at(&self, ep: &Endpoint, args: &[&str]) -> Run {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        to_run(common::run_docker(
            ep,
            &self.dir.path().join("docker-config"),
            self.dir.path(),
            &args,
            None,
        ))
    }

    fn lockbox_at(&self, ep: &Endpoint, args: &[&str]) -> Run {
        let mut cmd = Command::new(common::lockbox_bin());
        cmd.env_remove("LOCKBOX_HOST")
            .arg("-H")
            .arg(ep.url())
            .args(args)
            .current_dir(self.dir.path());
        to_run(common::run_with_timeout(
            cmd,
            None,
            Duration::from_secs(120),
        ))
    }

    fn docker(&self, args: &[&str]) -> Run {
        self.docker_at(&self.ep, args)
    }

    fn lockbox(&self, args: &[&str]) -> Run {
        self.lockbox_at(&self.ep, args)
    }

    /// Runs `args` with both CLIs and asserts the same exit code and stdout (and stderr, with
    /// `docker` read as `lockbox`). Outputs with "X ago" can differ across a second boundary:
    /// up to three tries.
    fn same(&self, args: &[&str]) -> Run {
        let mut last = None;
        for _ in 0..3 {
            let d = self.docker(args);
            let l = self.lockbox(args);
            let d_err = d.err.replace("docker", "lockbox");
            if d.code == l.code && d.out == l.out && d_err == l.err {
                return l;
            }
            last = Some((d, l));
            std::thread::sleep(Duration::from_millis(300));
        }
        let (d, l) = last.expect("ran");
        panic!(
            "lockbox differs from docker for {args:?}\n--- docker (exit {}) ---\n{}{}\n--- lockbox (exit {}) ---\n{}{}",
            d.code, d.out, d.err, l.code, l.out, l.err
        );
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// Waits (at most 60 s) until `service ls` shows `want` for the service.
    fn wait_replicas(&self, name: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let r = self.docker(&[
                "service",
                "ls",
                "--filter",
                &format!("name={name}"),
                "--format",
                "{{.Name}} {{.Replicas}}",
            ]);
            if r.out.lines().any(|l| l == format!("{name} {want}")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("{name} did not reach {want} replicas within 60 s");
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let filter = format!("name={}", self.prefix);
        let ids = self.docker(&["service", "ls", "-q", "--filter", &filter]);
        let ids: Vec<&str> = ids.out.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["service", "rm"];
            args.extend(ids);
            self.docker(&args);
        }
        let secrets = self.docker(&["secret", "ls", "-q", "--filter", &filter]);
        let secrets: Vec<&str> = secrets.out.split_whitespace().collect();
        if !secrets.is_empty() {
            let mut args = vec!["secret", "rm"];
            args.extend(secrets);
            self.docker(&args);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A logging proxy: what the CLIs send
// ---------------------------------------------------------------------------------------------

/// A unix-socket proxy to the target that records every request byte.
struct Proxy {
    path: PathBuf,
    log: Arc<Mutex<Vec<u8>>>,
}

fn pump(
    mut from: Box<dyn ReadWrite>,
    mut to: Box<dyn ReadWrite>,
    log: Option<Arc<Mutex<Vec<u8>>>>,
) {
    let mut buf = [0u8; 65536];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(l) = &log {
                    l.lock().expect("log").extend_from_slice(&buf[..n]);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    to.shutdown_write();
}

trait ReadWrite: Read + Write + Send {
    fn try_clone_box(&self) -> Box<dyn ReadWrite>;
    fn shutdown_write(&self);
}

impl ReadWrite for UnixStream {
    fn try_clone_box(&self) -> Box<dyn ReadWrite> {
        Box::new(self.try_clone().expect("clone"))
    }
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl ReadWrite for std::net::TcpStream {
    fn try_clone_box(&self) -> Box<dyn ReadWrite> {
        Box::new(self.try_clone().expect("clone"))
    }
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl Proxy {
    fn start(target: &Endpoint, dir: &Path) -> Proxy {
        let path = dir.join("proxy.sock");
        let listener = UnixListener::bind(&path).expect("bind proxy");
        let log = Arc::new(Mutex::new(Vec::new()));
        let target = target.clone();
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let upstream: Box<dyn ReadWrite> = match &target {
                    Endpoint::Unix(p) => Box::new(UnixStream::connect(p).expect("connect target")),
                    Endpoint::Tcp(a) => {
                        Box::new(std::net::TcpStream::connect(a.as_str()).expect("connect target"))
                    }
                };
                let client: Box<dyn ReadWrite> = Box::new(client);
                let (c2, u2) = (client.try_clone_box(), upstream.try_clone_box());
                let l = Arc::clone(&log2);
                std::thread::spawn(move || pump(client, upstream, Some(l)));
                std::thread::spawn(move || pump(u2, c2, None));
            }
        });
        Proxy { path, log }
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::Unix(self.path.clone())
    }

    fn clear(&self) {
        self.log.lock().expect("log").clear();
    }

    /// The `POST` requests seen: (path, body).
    fn posts(&self) -> Vec<(String, String)> {
        let data = self.log.lock().expect("log").clone();
        let text = String::from_utf8_lossy(&data).into_owned();
        let mut out = Vec::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("POST ") {
            rest = &rest[i..];
            let Some(head_end) = rest.find("\r\n\r\n") else {
                break;
            };
            let head = &rest[..head_end];
            let path = head.split(' ').nth(1).unwrap_or_default().to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())
                        .flatten()
                })
                .unwrap_or(0);
            let body_start = head_end + 4;
            let body = rest[body_start..(body_start + len).min(rest.len())].to_string();
            out.push((path, body));
            rest = &rest[(body_start + len).min(rest.len())..];
        }
        out
    }
}

/// `s` with each `(from, to)` replaced.
fn replace_all(s: &str, pairs: &[(&str, &str)]) -> String {
    let mut s = s.to_string();
    for (from, to) in pairs {
        if !from.is_empty() {
            s = s.replace(from, to);
        }
    }
    s
}

/// `?version=N` (and `version=N&…`) made comparable.
fn without_version(path: &str) -> String {
    match path.find("version=") {
        Some(i) => {
            let end = path[i..].find('&').map_or(path.len(), |e| i + e);
            format!("{}version=N{}", &path[..i], &path[end..])
        }
        None => path.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn read_commands_print_what_docker_prints() {
    let Some(t) = target("read_commands_print_what_docker_prints") else {
        return;
    };
    let secret = t.name("secret");
    std::fs::write(t.dir.path().join("s"), "x").expect("write");
    let r = t.docker(&["secret", "create", &secret, "s"]);
    assert_eq!(r.code, 0, "{r:?}");
    let web = t.name("web");
    let single = t.name("10");
    let r = t.docker(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--name",
        &web,
        "--replicas",
        "2",
        "-l",
        "tier=front",
        "-l",
        "empty",
        "-e",
        "A=1",
        "--secret",
        &format!("source={secret},target=/run/s,mode=0400"),
        "--update-delay",
        "1500ms",
        "--rollback-monitor",
        "3s",
        "--restart-condition",
        "on-failure",
        "--stop-grace-period",
        "1m30s",
        "-w",
        "/tmp",
        "-u",
        "0",
        "--init",
        &t.image,
        "sleep",
        "1000",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = t.lockbox(&[
        "service", "create", "-d", "--name", &single, &t.image, "sleep", "1000",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.out.trim().len(), 25, "{r:?}");
    t.wait_replicas(&web, "2/2");
    t.wait_replicas(&single, "1/1");

    let filter = format!("name={}", t.prefix);
    for args in [
        vec!["service", "ls", "--filter", &filter],
        vec!["service", "ls", "-q", "--filter", &filter],
        vec!["service", "ls", "--format", "json", "--filter", &filter],
        vec!["service", "ls", "--format", "raw", "--filter", &filter],
        vec![
            "service",
            "ls",
            "--format",
            "table {{.Name}}\\t{{.Replicas}}",
            "--filter",
            &filter,
        ],
        vec![
            "service",
            "ls",
            "--format",
            "{{.Nope}}",
            "--filter",
            &filter,
        ],
        vec!["service", "ps", &web, &single],
        vec!["service", "ps", "-q", &web],
        vec!["service", "ps", "--no-trunc", &web],
        vec![
            "service",
            "ps",
            "--no-resolve",
            "--format",
            "{{.Name}} {{.Node}}",
            &single,
        ],
        vec![
            "service",
            "ps",
            "-f",
            "desired-state=running",
            "--format",
            "json",
            &web,
        ],
        vec!["service", "ps", &single, "clisvc-no-such-service"],
        vec!["service", "ps", "clisvc-no-such-service"],
        vec!["service", "inspect", &web, &single],
        vec!["service", "inspect", "--pretty", &web, &single],
        vec!["service", "inspect", "--format", "json", &web],
        vec![
            "service",
            "inspect",
            "-f",
            "{{.Spec.Name}} {{.Version}} {{json .Spec.Labels}} {{.Spec.Labels.tier}} {{.Spec.Labels.none}}",
            &web,
        ],
        vec![
            "service",
            "inspect",
            "-f",
            "{{json .Spec.TaskTemplate.ContainerSpec}}",
            &web,
            &single,
        ],
        vec!["service", "inspect", "-f", "{{.Spec.Nope}}", &web],
        vec![
            "service",
            "inspect",
            "-f",
            "{{.UpdateStatus.State}}",
            &single,
        ],
        vec!["service", "inspect", &single, "clisvc-no-such-service"],
        vec![
            "service",
            "inspect",
            "--pretty",
            &single,
            "clisvc-no-such-service",
        ],
        vec!["service", "inspect", "-f", "prettyx", &web],
        vec!["node", "ls"],
        vec!["node", "ls", "-q"],
        vec![
            "node",
            "ls",
            "--format",
            "{{.Hostname}} {{.Self}} {{.TLSStatus}}",
        ],
        vec!["node", "inspect", "self"],
        vec!["node", "inspect", "--pretty", "self"],
        vec![
            "node",
            "inspect",
            "-f",
            "{{.Description.Hostname}} {{.Spec.Role}}",
            "self",
        ],
        vec!["node", "ps", "-f", &format!("name={single}")],
        vec!["node", "ps", "-q", "-f", &format!("name={single}")],
    ] {
        t.same(&args);
    }
}

#[test]
fn create_and_update_send_what_docker_sends() {
    let Some(t) = target("create_and_update_send_what_docker_sends") else {
        return;
    };
    let proxy = Proxy::start(&t.ep, t.dir.path());
    let pep = proxy.endpoint();
    let (s1, s2) = (t.name("s1"), t.name("s2"));
    std::fs::write(t.dir.path().join("v"), "x").expect("write");
    for s in [&s1, &s2] {
        let r = t.docker(&["secret", "create", s, "v"]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    let (a, b) = (t.name("a"), t.name("b"));
    let create = |cli: &str, name: &str| -> (String, String, String) {
        let args = [
            "service",
            "create",
            "-d",
            "--no-resolve-image",
            "--name",
            name,
            "--replicas",
            "2",
            "--secret",
            &format!("source={s1},target=/run/x,uid=1,gid=2,mode=0400"),
            "-e",
            "A=1",
            "-e",
            "B=2",
            "-e",
            "A=3",
            "-l",
            "k=v",
            "-l",
            "bare",
            "--container-label",
            "c=d",
            "-u",
            "1000",
            "--group",
            "10",
            "-w",
            "/tmp",
            "--hostname",
            "h",
            "--entrypoint",
            "sh -c",
            "--restart-condition",
            "on-failure",
            "--restart-delay",
            "3s",
            "--restart-max-attempts",
            "4",
            "--restart-window",
            "10s",
            "--update-parallelism",
            "2",
            "--update-delay",
            "1s",
            "--update-order",
            "start-first",
            "--update-failure-action",
            "continue",
            "--update-monitor",
            "2s",
            "--update-max-failure-ratio",
            "0.5",
            "--rollback-parallelism",
            "3",
            "--rollback-delay",
            "2s",
            "--rollback-monitor",
            "3s",
            "--rollback-failure-action",
            "continue",
            "--rollback-max-failure-ratio",
            "0.1",
            "--rollback-order",
            "stop-first",
            "--stop-grace-period",
            "20s",
            "--stop-signal",
            "SIGTERM",
            "--constraint",
            "node.role==manager",
            "--init",
            "--read-only",
            "-t",
            &t.image,
            "sleep 1000",
        ];
        proxy.clear();
        let r = if cli == "docker" {
            t.docker_at(&pep, &args)
        } else {
            t.lockbox_at(&pep, &args)
        };
        assert_eq!(r.code, 0, "{cli}: {r:?}");
        let posts = proxy.posts();
        assert_eq!(posts.len(), 1, "{cli}: {posts:?}");
        let (path, body) = posts[0].clone();
        (path, body.replace(name, "NAME"), r.out.trim().to_string())
    };
    let (dp, db, did) = create("docker", &a);
    let (lp, lb, lid) = create("lockbox", &b);
    assert_eq!(dp, lp);
    assert_eq!(db, lb, "service create bodies differ");
    assert!(db.ends_with("}\n"), "{db}");

    let update = |cli: &str, name: &str, id: &str| -> (String, String) {
        let args = [
            "service",
            "update",
            "-d",
            "--no-resolve-image",
            "--secret-rm",
            &s1,
            "--secret-add",
            &format!("source={s2},target=/run/x"),
            "--env-add",
            "B=20",
            "--env-rm",
            "A",
            "--label-add",
            "z=1",
            "--label-rm",
            "k",
            "--replicas",
            "1",
            "--force",
            "--restart-window",
            "3s",
            "--constraint-add",
            "node.role!=worker",
            "--group-add",
            "5",
            "--tty=false",
            "--init=false",
            "--update-delay",
            "2s",
            "--rollback-max-failure-ratio",
            "0.25",
            "--image",
            &t.image,
            "--args",
            "sleep 999",
            "--workdir",
            "/",
            "--user",
            "0",
            "--stop-signal",
            "SIGINT",
            name,
        ];
        proxy.clear();
        let r = if cli == "docker" {
            t.docker_at(&pep, &args)
        } else {
            t.lockbox_at(&pep, &args)
        };
        assert_eq!(r.code, 0, "{cli}: {r:?}");
        assert_eq!(r.out, format!("{name}\n"));
        let posts = proxy.posts();
        assert_eq!(posts.len(), 1, "{cli}: {posts:?}");
        let (path, body) = posts[0].clone();
        let pairs = [(id, "ID"), (name, "NAME")];
        (
            without_version(&replace_all(&path, &pairs)),
            replace_all(&body, &pairs),
        )
    };
    let (dp, db) = update("docker", &a, &did);
    let (lp, lb) = update("lockbox", &b, &lid);
    assert_eq!(dp, lp);
    assert_eq!(db, lb, "service update bodies differ");

    // Let both updates finish first: recording the update's progress changes the service's
    // version (on a swarm too), which would race with the rollback's read-modify-write.
    for name in [&a, &b] {
        let start = std::time::Instant::now();
        loop {
            let r = t.docker_at(
                &pep,
                &[
                    "service",
                    "inspect",
                    "--format",
                    "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
                    name,
                ],
            );
            if r.out.trim() == "completed" || start.elapsed() > std::time::Duration::from_secs(30) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    // A rollback sends the current spec with rollback=previous.
    let rollback = |cli: &str, name: &str, id: &str| -> (String, String) {
        proxy.clear();
        let r = if cli == "docker" {
            t.docker_at(&pep, &["service", "rollback", "-d", name])
        } else {
            t.lockbox_at(&pep, &["service", "rollback", "-d", name])
        };
        assert_eq!(r.code, 0, "{cli}: {r:?}");
        let posts = proxy.posts();
        assert_eq!(posts.len(), 1, "{cli}: {posts:?}");
        let pairs = [(id, "ID"), (name, "NAME")];
        (
            without_version(&replace_all(&posts[0].0, &pairs)),
            replace_all(&posts[0].1, &pairs),
        )
    };
    assert_eq!(rollback("docker", &a, &did), rollback("lockbox", &b, &lid));
}

#[test]
fn scale_rm_rollback_print_what_docker_prints() {
    let Some(t) = target("scale_rm_rollback_print_what_docker_prints") else {
        return;
    };
    let (a, b) = (t.name("a"), t.name("b"));
    for n in [&a, &b] {
        let r = t.lockbox(&[
            "service",
            "create",
            "-d",
            "--replicas",
            "1",
            "--name",
            n,
            &t.image,
            "sleep",
            "1000",
        ]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    let run_both = |args_d: &[&str], args_l: &[&str], pairs: &[(&str, &str)]| {
        let d = t.docker(args_d);
        let l = t.lockbox(args_l);
        let norm = |s: &str| replace_all(s, pairs).replace("docker", "lockbox");
        assert_eq!(
            (d.code, norm(&d.out), norm(&d.err)),
            (l.code, norm(&l.out), norm(&l.err)),
            "{args_d:?} / {args_l:?}"
        );
    };
    let pairs = [(a.as_str(), "SVC"), (b.as_str(), "SVC")];
    run_both(
        &["service", "scale", "-d", &format!("{a}=2")],
        &["service", "scale", "-d", &format!("{b}=2")],
        &pairs,
    );
    run_both(
        &[
            "service",
            "scale",
            "-d",
            &format!("{a}=x"),
            "clisvc-no-such=1",
            &format!("{a}=1"),
        ],
        &[
            "service",
            "scale",
            "-d",
            &format!("{b}=x"),
            "clisvc-no-such=1",
            &format!("{b}=1"),
        ],
        &pairs,
    );
    run_both(&["service", "scale", &a], &["service", "scale", &b], &pairs);
    run_both(
        &["service", "rollback", "-d", &a],
        &["service", "rollback", "-d", &b],
        &pairs,
    );
    run_both(
        &[
            "service",
            "update",
            "-d",
            "--rollback",
            "--replicas",
            "1",
            &a,
        ],
        &[
            "service",
            "update",
            "-d",
            "--rollback",
            "--replicas",
            "1",
            &b,
        ],
        &pairs,
    );
    t.same(&["service", "rollback", "clisvc-no-such-service"]);
    t.same(&[
        "service",
        "update",
        "--replicas",
        "1",
        "clisvc-no-such-service",
    ]);
    t.same(&["service", "logs", "clisvc-no-such-service"]);
    run_both(
        &["service", "rm", &a, "clisvc-no-such-service"],
        &["service", "rm", &b, "clisvc-no-such-service"],
        &pairs,
    );
}

#[test]
fn flag_errors_match_docker() {
    let Some(t) = target("flag_errors_match_docker") else {
        return;
    };
    for args in [
        vec!["service", "create", "--replicas", "x", &t.image],
        vec!["service", "create", "--secret", "a=b", &t.image],
        vec!["service", "create", "--secret", "mode=abc,src=x", &t.image],
        vec!["service", "create", "--update-delay", "5", &t.image],
        vec![
            "service",
            "create",
            "--update-max-failure-ratio",
            "lots",
            &t.image,
        ],
        vec!["service", "create", "-l", "=x", &t.image],
        vec![
            "service",
            "create",
            "--mode",
            "global",
            "--replicas",
            "2",
            &t.image,
        ],
        vec!["service", "create", "--mode", "sometimes", &t.image],
        vec![
            "service",
            "create",
            "--mode",
            "replicated-job",
            "--update-delay",
            "1s",
            &t.image,
        ],
        vec![
            "service",
            "create",
            "--secret",
            "clisvc-no-such-secret",
            &t.image,
        ],
        vec!["service", "ls", "-f", "nope"],
    ] {
        t.same(&args);
    }
}

#[test]
fn logs_carry_task_prefixes() {
    let Some(t) = target("logs_carry_task_prefixes") else {
        return;
    };
    let svc = t.name("logs");
    let r = t.docker(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--replicas",
        "2",
        "--name",
        &svc,
        &t.image,
        "sh",
        "-c",
        "echo hello; echo oops >&2; echo 'a b  c'; sleep 1000",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    t.wait_replicas(&svc, "2/2");
    std::thread::sleep(Duration::from_secs(2));
    // The daemon interleaves the tasks' streams differently each time: compare line sets.
    for extra in [
        vec![],
        vec!["--timestamps"],
        vec!["--raw"],
        vec!["--no-task-ids"],
        vec!["--no-trunc", "--details"],
        vec!["--no-resolve"],
        vec!["--tail", "1"],
    ] {
        let mut args = vec!["service", "logs"];
        args.extend(extra.iter().copied());
        args.push(&svc);
        let d = t.docker(&args);
        let l = t.lockbox(&args);
        let lines = |r: &Run| -> BTreeSet<String> {
            r.out
                .lines()
                .chain(r.err.lines())
                .map(str::to_string)
                .collect()
        };
        assert_eq!((d.code, lines(&d)), (l.code, lines(&l)), "{args:?}");
        if extra.is_empty() {
            assert!(
                l.out
                    .lines()
                    .any(|x| x.starts_with(&format!("{svc}.1.")) && x.ends_with("    | hello")),
                "{l:?}"
            );
        }
    }
}

#[test]
fn create_and_update_wait_for_convergence() {
    let Some(t) = target("create_and_update_wait_for_convergence") else {
        return;
    };
    let (a, b) = (t.name("a"), t.name("b"));
    let d = t.docker(&[
        "service",
        "create",
        "--no-resolve-image",
        "--name",
        &a,
        "--update-monitor",
        "1s",
        &t.image,
        "sleep",
        "1000",
    ]);
    let l = t.lockbox(&[
        "service",
        "create",
        "--name",
        &b,
        "--update-monitor",
        "1s",
        &t.image,
        "sleep",
        "1000",
    ]);
    assert_eq!((d.code, &d.err), (l.code, &l.err), "{d:?}\n{l:?}");
    if d.code != 0 {
        // The daemon under test does not converge services as docker expects (both CLIs fail
        // alike, e.g. "unrecognized service mode" when it leaves Replicas out).
        common::skip(
            "create_and_update_wait_for_convergence",
            &format!("docker itself fails on this daemon: {}", d.err.trim()),
        );
        return;
    }
    // Not a terminal: one line per message; how often a line repeats, and whether a progress
    // line comes back after the task's line, depends on timing: each line counts once, where
    // it first appears.
    let shape = |r: &Run| -> Vec<String> {
        let mut lines: Vec<String> = r
            .out
            .lines()
            .skip(1)
            .map(|l| {
                let l = if l.starts_with("verify: Waiting") {
                    "verify: Waiting N seconds to verify that tasks are stable..."
                } else {
                    l
                };
                l.replace(r.out.lines().next().unwrap_or("-"), "ID")
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        lines.retain(|l| seen.insert(l.clone()));
        lines
    };
    assert_eq!(shape(&d), shape(&l), "{d:?}\n{l:?}");
    assert!(
        l.out.ends_with(&format!(
            "verify: Service {} converged\n",
            l.out.lines().next().unwrap_or_default()
        )),
        "{l:?}"
    );
    let d = t.docker(&["service", "update", "--replicas", "2", &a]);
    let l = t.lockbox(&["service", "update", "--replicas", "2", &b]);
    let norm = |r: &Run| -> Vec<String> {
        let mut v: Vec<String> = r
            .out
            .replace(&a, "SVC")
            .replace(&b, "SVC")
            .lines()
            .filter(|l| !l.starts_with("verify: Waiting") && !l.starts_with("overall progress"))
            .map(str::to_string)
            .collect();
        v.dedup();
        v
    };
    assert_eq!((d.code, norm(&d)), (l.code, norm(&l)), "{d:?}\n{l:?}");
    // -q waits silently and prints the ID only.
    let l = t.lockbox(&["service", "update", "-q", "--replicas", "1", &b]);
    assert_eq!(
        (l.code, l.out.as_str()),
        (0, format!("{b}\n").as_str()),
        "{l:?}"
    );
}
