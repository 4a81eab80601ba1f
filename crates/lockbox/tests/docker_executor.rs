//! The docker executor, black-box: each test starts its own plain Docker Engine (not in swarm
//! mode; `../shared/tools/reference-swarm start-plain`, which installs Debian's docker.io and
//! imports a `busybox:local` image when missing) and a lockbox daemon with `--docker-host`
//! pointed at it, then drives lockbox with the stock docker CLI and looks into the containers
//! on the plain engine with `docker exec`.
//!
//! Needs root (dockerd, the secrets tmpfs). Skips, saying why, when that or the engine is not
//! available. `matches_a_real_swarm` also needs the reference swarm at
//! `/tmp/reference-swarm/docker.sock` (`reference-swarm start`; `LOCKBOX_REFERENCE_SWARM`
//! names another socket); it creates `lbxdx-*` objects there only and removes them.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::engine::{Engine, daemon_with, lines};
use common::{Daemon, Endpoint};

/// The reference swarm's socket; `LOCKBOX_REFERENCE_SWARM` overrides it.
fn reference_swarm() -> String {
    std::env::var("LOCKBOX_REFERENCE_SWARM")
        .unwrap_or_else(|_| "/tmp/reference-swarm/docker.sock".to_owned())
}

/// The engine's state directory prefix.
const ENGINE_PREFIX: &str = "lbxdx-engine-";

/// What these tests ask of the engine.
trait EngineExt {
    fn containers_of(&self, task_id: &str) -> Vec<String>;
    fn network_ids(&self, name: &str) -> Vec<String>;
    fn all_containers(&self) -> Vec<String>;
    fn exec(&self, container: &str, script: &str) -> String;
}

impl EngineExt for Engine {
    /// Containers (all states) of a lockbox task.
    fn containers_of(&self, task_id: &str) -> Vec<String> {
        let filter = format!("label=com.lockbox.task.id={task_id}");
        let o = self.docker(&["ps", "-aq", "--no-trunc", "--filter", &filter]);
        lines(&out(&o))
    }

    /// The IDs of the engine's networks named exactly `name`.
    fn network_ids(&self, name: &str) -> Vec<String> {
        let o = self.docker(&[
            "network",
            "ls",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Name}}",
        ]);
        lines(&out(&o))
            .into_iter()
            .filter_map(|l| {
                let (id, n) = l.split_once(' ')?;
                (n == name).then(|| id.to_owned())
            })
            .collect()
    }

    fn all_containers(&self) -> Vec<String> {
        lines(&out(&self.docker(&["ps", "-aq", "--no-trunc"])))
    }

    fn exec(&self, container: &str, script: &str) -> String {
        out(&self.docker(&["exec", container, "sh", "-c", script]))
    }
}

fn out(o: &Output) -> String {
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
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The service's tasks as the API gives them.
fn tasks(d: &Daemon, svc: &str) -> Vec<serde_json::Value> {
    let filter = format!(r#"{{"service":{{"{svc}":true}}}}"#);
    let enc: String = filter
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let (s, _, body) = d.http("GET", &format!("/v1.47/tasks?filters={enc}"), None, None);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// The ID of the service's one running task, once it runs.
fn running_task(d: &Daemon, svc: &str, not: &[String]) -> String {
    wait_for(
        &format!("a running task of {svc}"),
        Duration::from_secs(60),
        || {
            tasks(d, svc)
                .into_iter()
                .find(|t| t["Status"]["State"] == "running" && !not.iter().any(|n| t["ID"] == **n))
                .and_then(|t| t["ID"].as_str().map(str::to_owned))
        },
    )
}

/// A task's final status, once it has one.
fn final_status(d: &Daemon, svc: &str) -> serde_json::Value {
    wait_for(&format!("{svc} to end"), Duration::from_secs(60), || {
        tasks(d, svc).into_iter().find_map(|t| {
            let st = t["Status"]["State"].as_str().unwrap_or("");
            matches!(st, "complete" | "failed" | "rejected" | "shutdown")
                .then(|| t["Status"].clone())
        })
    })
}

fn mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

/// Mount lines and directories of a task's secrets tmpfs on the host.
fn host_traces(task_id: &str) -> Vec<String> {
    let mut found: Vec<String> = mountinfo()
        .lines()
        .filter(|l| l.contains(task_id))
        .map(str::to_owned)
        .collect();
    if let Ok(rd) = std::fs::read_dir("/run/lockbox/docker") {
        for inst in rd.flatten() {
            let p = inst.path().join(task_id);
            if p.exists() {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

fn secret(d: &Daemon, name: &str, value: &[u8]) {
    out(&d.docker(&["secret", "create", name, "-"], Some(value)));
}

/// `ls -la` without dates, sizes of directories and block totals (lockbox's /run/secrets is
/// a tmpfs directory, swarm's one of the container's root filesystem), for comparing two
/// engines.
fn ls_shape(s: &str) -> String {
    s.lines()
        .filter(|l| !l.starts_with("total "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() >= 9 {
                // mode links uid gid size (month day time) name
                let size = if f[0].starts_with('d') { "-" } else { f[4] };
                format!("{} {} {} {} {}", f[0], f[2], f[3], size, f[8..].join(" "))
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const SCRIPT: &str = "ls -la /run/secrets /run/secrets/sub/dir /etc/app; \
     echo ---; mount | grep -E 'secrets|/etc/app' | sort; \
     echo ---; stat -c '%n %a %u %g %s' /run/secrets/lbxdx-s1 /etc/app/key /run/secrets/sub/dir/x; \
     echo ---; cat /run/secrets/lbxdx-s1 /etc/app/key /run/secrets/sub/dir/x";

fn create_args(name: &str) -> Vec<&str> {
    vec![
        "service",
        "create",
        "-d",
        "--name",
        name,
        "--secret",
        "lbxdx-s1",
        "--secret",
        "source=lbxdx-s2,target=/etc/app/key,uid=1000,gid=1001,mode=0400",
        "--secret",
        "source=lbxdx-s1,target=sub/dir/x",
        "busybox:local",
        "sleep",
        "1000",
    ]
}

#[test]
fn service_secrets_rotation_and_removal() {
    let test = "service_secrets_rotation_and_removal";
    let Some(engine) = Engine::start(test, ENGINE_PREFIX) else {
        return;
    };
    let d = daemon_with(&engine);
    secret(&d, "lbxdx-s1", b"hunter2");
    secret(&d, "lbxdx-s2", b"abc\n");
    out(&d.docker(&create_args("lbxdx-svc"), None));
    let t1 = running_task(&d, "lbxdx-svc", &[]);
    let c1 = engine.containers_of(&t1);
    assert_eq!(c1.len(), 1, "one container for task {t1}: {c1:?}");
    let c1 = c1[0].clone();

    // Named as swarm names it, labelled for lockbox, not for swarm.
    let name = out(&engine.docker(&["inspect", "-f", "{{.Name}}", &c1]));
    assert_eq!(name.trim(), format!("/lbxdx-svc.1.{t1}"));
    let labels = out(&engine.docker(&["inspect", "-f", "{{json .Config.Labels}}", &c1]));
    assert!(
        labels.contains("\"com.lockbox.service.name\":\"lbxdx-svc\""),
        "{labels}"
    );
    assert!(!labels.contains("com.docker.swarm"), "{labels}");
    // The engine is a plain one.
    let state = out(&engine.docker(&["info", "-f", "{{.Swarm.LocalNodeState}}"]));
    assert_eq!(state.trim(), "inactive");

    // Inside: the bytes, owners and modes asked for, on read-only in-memory mounts.
    let inside = engine.exec(&c1, SCRIPT);
    let parts: Vec<&str> = inside.split("---\n").collect();
    assert_eq!(parts.len(), 4, "{inside}");
    assert_eq!(
        parts[2],
        "/run/secrets/lbxdx-s1 444 0 0 7\n/etc/app/key 400 1000 1001 4\n/run/secrets/sub/dir/x 444 0 0 7\n"
    );
    assert_eq!(parts[3], "hunter2abc\nhunter2");
    // /run/secrets is one read-only mount of the task's directory of secrets (so that a live
    // update's rename shows through it); other targets are files mounted one by one.
    assert_eq!(
        lines(parts[1])
            .iter()
            .map(|l| l.split(" type ").next().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["tmpfs on /etc/app/key", "tmpfs on /run/secrets"],
        "{}",
        parts[1]
    );
    for target in ["/etc/app/key", "/run/secrets"] {
        assert!(
            parts[1].contains(&format!("tmpfs on {target} type tmpfs (ro,")),
            "{}",
            parts[1]
        );
    }
    // The secret bytes reach the container only through the tmpfs: not its env or config.
    let cfg = out(&engine.docker(&["inspect", &c1]));
    assert!(!cfg.contains("hunter2"));
    // On the host: one read-only, noswap tmpfs under /run/lockbox.
    let traces = host_traces(&t1);
    let mnt = traces
        .iter()
        .find(|l| l.contains(" - tmpfs "))
        .unwrap_or_else(|| panic!("no tmpfs for {t1}: {traces:?}"));
    assert!(mnt.contains("/run/lockbox/docker/"), "{mnt}");
    assert!(mnt.contains(" ro,nosuid,nodev,noexec"), "{mnt}");
    assert!(mnt.ends_with("ro,noswap"), "{mnt}");
    // The staging directory of live updates is not in the container.
    let inside = engine.exec(&c1, "ls -a /run/secrets | sort | tr '\\n' ' '");
    assert_eq!(inside.trim(), ". .. lbxdx-s1 sub");

    // Rotation: a new task with the new secret at the same target; the old one goes away.
    secret(&d, "lbxdx-s3", b"rotated");
    out(&d.docker(
        &[
            "service",
            "update",
            "-d",
            "--stop-grace-period",
            "1s",
            "--secret-rm",
            "lbxdx-s1",
            "--secret-add",
            "source=lbxdx-s3,target=lbxdx-s1,mode=0440,uid=5",
            "lbxdx-svc",
        ],
        None,
    ));
    let t2 = running_task(&d, "lbxdx-svc", std::slice::from_ref(&t1));
    let c2 = engine.containers_of(&t2);
    assert_eq!(c2.len(), 1);
    let inside = engine.exec(
        &c2[0],
        "stat -c '%a %u %g' /run/secrets/lbxdx-s1; cat /run/secrets/lbxdx-s1; ls /run/secrets",
    );
    assert_eq!(inside, "440 5 0\nrotatedlbxdx-s1\n");
    wait_for(
        "the old task's container and tmpfs to go",
        Duration::from_secs(30),
        || (engine.containers_of(&t1).is_empty() && host_traces(&t1).is_empty()).then_some(()),
    );
    out(&d.docker(&["secret", "rm", "lbxdx-s1"], None));

    // Removal: no container, mount or file left.
    out(&d.docker(&["service", "rm", "lbxdx-svc"], None));
    wait_for(
        "the service's container and tmpfs to go",
        Duration::from_secs(30),
        || (engine.all_containers().is_empty() && host_traces(&t2).is_empty()).then_some(()),
    );
}

#[test]
fn failures_and_crash_cleanup() {
    let test = "failures_and_crash_cleanup";
    let Some(engine) = Engine::start(test, ENGINE_PREFIX) else {
        return;
    };
    let mut d = daemon_with(&engine);
    let none = ["--restart-condition", "none"];
    let svc = |name: &str, rest: &[&str]| {
        let mut a = vec!["service", "create", "-d", "--name", name];
        a.extend_from_slice(&none);
        a.extend_from_slice(rest);
        out(&d.docker(&a, None));
    };
    svc("lbxdx-nocmd", &["busybox:local", "nosuchcmd"]);
    svc("lbxdx-noimg", &["lbxdx/no-such-image:1", "true"]);
    svc(
        "lbxdx-exit3",
        &["busybox:local", "sh", "-c", "echo out; exit 3"],
    );
    svc("lbxdx-ok", &["busybox:local", "true"]);
    let st = final_status(&d, "lbxdx-nocmd");
    assert_eq!(st["State"], "failed");
    let err = st["Err"].as_str().unwrap();
    assert!(err.starts_with("starting container failed: "), "{err}");
    assert!(
        err.contains(r#"exec: "nosuchcmd": executable file not found in $PATH"#),
        "{err}"
    );
    let st = final_status(&d, "lbxdx-noimg");
    assert_eq!(st["State"], "rejected");
    assert_eq!(st["Message"], "preparing");
    assert_eq!(st["Err"], "No such image: lbxdx/no-such-image:1");
    let st = final_status(&d, "lbxdx-exit3");
    assert_eq!(st["State"], "failed");
    assert_eq!(st["Err"], "task: non-zero exit (3)");
    assert_eq!(st["ContainerStatus"]["ExitCode"], 3);
    let st = final_status(&d, "lbxdx-ok");
    assert_eq!(st["State"], "complete");
    let logs = out(&d.docker(&["service", "logs", "--raw", "lbxdx-exit3"], None));
    assert_eq!(logs, "out\n");
    // Ended tasks leave no container behind.
    wait_for(
        "ended tasks' containers to go",
        Duration::from_secs(30),
        || engine.all_containers().is_empty().then_some(()),
    );

    // A killed daemon leaves its containers; the next start removes them and their mounts,
    // and the orchestrator replaces the lost task.
    secret(&d, "lbxdx-s1", b"hunter2");
    out(&d.docker(&["network", "create", "-d", "overlay", "lbxdx-net"], None));
    out(&d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "lbxdx-crash",
            "--network",
            "lbxdx-net",
            "--secret",
            "lbxdx-s1",
            "busybox:local",
            "sleep",
            "1000",
        ],
        None,
    ));
    let t1 = running_task(&d, "lbxdx-crash", &[]);
    assert_eq!(engine.containers_of(&t1).len(), 1);
    let net1 = engine.network_ids("lbxdx-net");
    assert_eq!(net1.len(), 1, "{net1:?}");
    d.kill9();
    assert_eq!(
        engine.containers_of(&t1).len(),
        1,
        "the container outlives a killed daemon"
    );
    assert!(!host_traces(&t1).is_empty());
    d.restart();
    wait_for(
        "the stale container, tmpfs and network to go",
        Duration::from_secs(30),
        || {
            (engine.containers_of(&t1).is_empty()
                && host_traces(&t1).is_empty()
                && engine.network_ids("lbxdx-net") != net1)
                .then_some(())
        },
    );
    let t2 = running_task(&d, "lbxdx-crash", std::slice::from_ref(&t1));
    assert_eq!(engine.containers_of(&t2).len(), 1);
    // The replacement is on a network made afresh.
    let net2 = engine.network_ids("lbxdx-net");
    assert_eq!(net2.len(), 1, "{net2:?}");
    assert_ne!(net2, net1);

    // A clean stop stops and removes the containers and their networks and unmounts their
    // secrets.
    let st = d.sigterm();
    assert!(st.success(), "{st:?}");
    assert!(engine.all_containers().is_empty());
    assert!(engine.network_ids("lbxdx-net").is_empty());
    assert!(host_traces(&t2).is_empty());
}

#[test]
fn lockbox_run_on_docker() {
    let test = "lockbox_run_on_docker";
    let Some(engine) = Engine::start(test, ENGINE_PREFIX) else {
        return;
    };
    let d = daemon_with(&engine);
    secret(&d, "lbxdx-s1", b"hunter2");
    let o = d.lockbox(
        &[
            "run",
            "--rm",
            "-e",
            "A=1",
            "--user",
            "1000:1000",
            "--secret",
            "source=lbxdx-s1,target=k,uid=1000,mode=0400",
            "busybox:local",
            "sh",
            "-c",
            "echo A=$A; id -u; stat -c '%a %u' /run/secrets/k; cat /run/secrets/k; echo; echo oops >&2; exit 7",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(7), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "A=1\n1000\n400 1000\nhunter2\n"
    );
    assert_eq!(String::from_utf8_lossy(&o.stderr), "oops\n");
    // --rm: nothing left, in lockbox or on the engine.
    wait_for("the run to be removed", Duration::from_secs(30), || {
        (out(&d.docker(&["service", "ls", "-q"], None))
            .trim()
            .is_empty()
            && engine.all_containers().is_empty())
        .then_some(())
    });

    let o = d.lockbox(&["run", "--rm", "busybox:local", "nosuchcmd"], None);
    assert_eq!(o.status.code(), Some(127), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("executable file not found"));
    let o = d.lockbox(&["run", "--rm", "lbxdx/none:1", "true"], None);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such image: lbxdx/none:1"));

    // -d: the service ID, the task keeps running, its logs are there.
    let o = d.lockbox(
        &[
            "run",
            "-d",
            "--name",
            "lbxdx-bg",
            "--secret",
            "lbxdx-s1",
            "busybox:local",
            "sh",
            "-c",
            "wc -c /run/secrets/lbxdx-s1; sleep 1000",
        ],
        None,
    );
    let id = out(&o);
    assert_eq!(id.trim().len(), 25, "{id}");
    let t = running_task(&d, "lbxdx-bg", &[]);
    assert_eq!(engine.containers_of(&t).len(), 1);
    wait_for("the run's logs", Duration::from_secs(10), || {
        let l = out(&d.docker(&["service", "logs", "--raw", "lbxdx-bg"], None));
        (l == "7 /run/secrets/lbxdx-s1\n").then_some(())
    });
    out(&d.docker(&["service", "rm", "lbxdx-bg"], None));
    wait_for("the run's container to go", Duration::from_secs(30), || {
        engine.all_containers().is_empty().then_some(())
    });
}

/// The view from inside a container of lockbox's docker executor, side by side with a real
/// swarm's for the same service.
#[test]
fn matches_a_real_swarm() {
    let test = "matches_a_real_swarm";
    let reference_sock = reference_swarm();
    if !Path::new(&reference_sock).exists() {
        common::skip(
            test,
            &format!("no reference swarm at {reference_sock} (reference-swarm start)"),
        );
        return;
    }
    let Some(engine) = Engine::start(test, ENGINE_PREFIX) else {
        return;
    };
    let reference = Endpoint::parse(&format!("unix://{reference_sock}")).unwrap();
    let cfg = tempfile::tempdir().unwrap();
    let swarm = |args: &[&str], stdin: Option<&[u8]>| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        common::run_docker(&reference, cfg.path(), cfg.path(), &args, stdin)
    };
    let state = swarm(&["info", "-f", "{{.Swarm.LocalNodeState}}"], None);
    if String::from_utf8_lossy(&state.stdout).trim() != "active" {
        common::skip(test, "the reference engine is not in swarm mode");
        return;
    }
    let suffix = &lockbox_suffix();
    let (s1, s2, svc) = (
        format!("lbxdx-s1-{suffix}"),
        format!("lbxdx-s2-{suffix}"),
        format!("lbxdx-cmp-{suffix}"),
    );
    let script = SCRIPT.replace("lbxdx-s1", &s1).replace("lbxdx-s2", &s2);
    let args = |name: &str| -> Vec<String> {
        create_args(name)
            .into_iter()
            .map(|a| a.replace("lbxdx-s1", &s1).replace("lbxdx-s2", &s2))
            .collect()
    };

    // The real swarm.
    type DockerFn<'a> = &'a dyn Fn(&[&str], Option<&[u8]>) -> Output;
    let cleanup = |swarm: DockerFn<'_>| {
        let _ = swarm(&["service", "rm", &svc], None);
        std::thread::sleep(Duration::from_secs(2));
        let _ = swarm(&["secret", "rm", &s1, &s2], None);
    };
    let _ = swarm(&["secret", "create", &s1, "-"], Some(b"hunter2"));
    let _ = swarm(&["secret", "create", &s2, "-"], Some(b"abc\n"));
    let a = args(&svc);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let created = swarm(&a, None);
    let theirs = (|| {
        if !created.status.success() {
            return Err(format!("service create: {created:?}"));
        }
        let start = Instant::now();
        loop {
            let o = swarm(
                &[
                    "ps",
                    "-q",
                    "--filter",
                    &format!("label=com.docker.swarm.service.name={svc}"),
                ],
                None,
            );
            let id = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            if !id.is_empty() {
                let o = swarm(&["exec", &id, "sh", "-c", &script], None);
                return Ok(String::from_utf8_lossy(&o.stdout).into_owned());
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err("the reference swarm did not start the service".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })();
    cleanup(&swarm);
    let theirs = match theirs {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };

    // lockbox.
    let d = daemon_with(&engine);
    secret(&d, &s1, b"hunter2");
    secret(&d, &s2, b"abc\n");
    out(&d.docker(&a, None));
    let t = running_task(&d, &svc, &[]);
    let c = engine.containers_of(&t);
    let ours = engine.exec(&c[0], &script);

    let t_parts: Vec<&str> = theirs.split("---\n").collect();
    let o_parts: Vec<&str> = ours.split("---\n").collect();
    eprintln!("--- real swarm ---\n{theirs}\n--- lockbox ---\n{ours}");
    assert_eq!(ls_shape(t_parts[0]), ls_shape(o_parts[0]), "ls -la");
    // lockbox's tmpfs adds `noswap` (never swapped out), and mounts the directory of the
    // secrets under /run/secrets there as one (swarm mounts each file; lockbox needs the
    // directory for live updates); otherwise the same mounts.
    let under = |l: &str| l.starts_with("tmpfs on /run/secrets");
    let mine: Vec<String> = lines(&o_parts[1].replace(",noswap", ""));
    let theirs_lines: Vec<String> = lines(t_parts[1]);
    let (t_dir, t_other): (Vec<&String>, Vec<&String>) =
        theirs_lines.iter().partition(|l| under(l));
    let (o_dir, o_other): (Vec<&String>, Vec<&String>) = mine.iter().partition(|l| under(l));
    assert_eq!(t_other, o_other, "mount (other targets)");
    assert_eq!(o_dir.len(), 1, "{mine:?}");
    let opts = |l: &str| l.split_once(" type ").map(|(_, o)| o.to_owned());
    for t in &t_dir {
        assert_eq!(opts(t), opts(o_dir[0]), "mount options of {t}");
    }
    assert_eq!(t_parts[2], o_parts[2], "stat");
    assert_eq!(t_parts[3], o_parts[3], "contents");
}

fn lockbox_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )
}

#[test]
fn live_update_on_the_docker_executor() {
    let test = "live_update_on_the_docker_executor";
    let Some(engine) = Engine::start(test, ENGINE_PREFIX) else {
        return;
    };
    let d = daemon_with(&engine);
    out(&d.lockbox(
        &["secret", "create", "lbxdx-live", "-"],
        Some(b"first-value"),
    ));
    out(&d.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "lbxdx-live",
            "--label",
            "lockbox.live-update.targets=cfg",
            "--secret",
            "source=lbxdx-live,target=cfg",
            "busybox:local",
            "sh",
            "-c",
            r#"trap 'echo "HUP $(cat /run/secrets/cfg)"' HUP; echo "START $(cat /run/secrets/cfg)"; while :; do sleep 0.05; done"#,
        ],
        None,
    ));
    let task = running_task(&d, "lbxdx-live", &[]);
    let container = engine.containers_of(&task);
    assert_eq!(container.len(), 1, "{container:?}");
    wait_for("the task's first line", Duration::from_secs(30), || {
        out(&d.docker(&["service", "logs", "--raw", "lbxdx-live"], None))
            .contains("START first-value")
            .then_some(())
    });
    let rotated = d.lockbox(
        &["secret", "rotate", "lbxdx-live", "-"],
        Some(b"second-value"),
    );
    let returned = Instant::now();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&rotated.stdout),
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(rotated.status.success(), "{said}");
    assert!(
        said.contains("service lbxdx-live: 1 task(s) updated in place (SIGHUP)"),
        "{said}"
    );
    wait_for("the new value after SIGHUP", Duration::from_secs(5), || {
        out(&d.docker(&["service", "logs", "--raw", "lbxdx-live"], None))
            .contains("HUP second-value")
            .then_some(())
    });
    assert!(
        returned.elapsed() < Duration::from_millis(1500),
        "seen only after {:?}",
        returned.elapsed()
    );
    // The same task and container, and inside it the new file.
    assert_eq!(running_task(&d, "lbxdx-live", &[]), task);
    assert_eq!(engine.containers_of(&task), container);
    assert_eq!(
        engine.exec(&container[0], "cat /run/secrets/cfg"),
        "second-value"
    );
    assert!(
        engine
            .exec(&container[0], "touch /run/secrets/x 2>&1; echo rc=$?")
            .contains("rc=1"),
        "/run/secrets must stay read-only"
    );
}
