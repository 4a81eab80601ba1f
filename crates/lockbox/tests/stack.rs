//! Compose stacks, black box: `lockbox stack` and the stock `docker stack` deploy, redeploy
//! (after a secret file changed), inspect and remove the seeds' compose files (adapted only in
//! image names: image `host` runs the command as a host process), and each task's
//! `/run/secrets/...` files and `*_FILE` variables are checked from its output.
//! Tasks need the process executor (root); these tests skip without it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Daemon;

fn ready(test: &str) -> bool {
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

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[track_caller]
fn ok(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {out}\nstderr: {err}",
        o.status
    );
    out
}

#[track_caller]
fn fails(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(
        !o.status.success(),
        "unexpected success\nstdout: {out}\nstderr: {err}"
    );
    err
}

/// A project directory: compose files and secret files.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn file(&self, name: &str, content: &str) -> String {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }
}

/// `lockbox -H ... ARGS` in `cwd` with extra environment variables.
fn lockbox_in(d: &Daemon, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(common::lockbox_bin());
    cmd.arg("-H").arg(d.host()).args(args).current_dir(cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::run_with_timeout(cmd, None, Duration::from_secs(180))
}

fn logs(d: &Daemon, svc: &str) -> String {
    let o = d.lockbox(&["service", "logs", "--raw", svc], None);
    text(&o).0
}

#[track_caller]
fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<String>) -> String {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn names(d: &Daemon, noun: &str) -> Vec<String> {
    let out = ok(&d.lockbox(&[noun, "ls", "--format", "{{.Name}}"], None));
    let mut v: Vec<String> = out.lines().map(str::to_owned).collect();
    v.sort();
    v
}

fn network_names(d: &Daemon) -> Vec<String> {
    let out = ok(&d.docker(&["network", "ls", "--format", "{{.Name}}"], None));
    let mut v: Vec<String> = out.lines().map(str::to_owned).collect();
    v.sort();
    v
}

/// What each task prints: its secret files (mode, owner, content) and what its `*_FILE`
/// variable points at.
const SHOW: &str = r#"for f in /run/secrets/*; do echo "FILE $$f $$(stat -c "%a %u %g" $$f) $$(cat $$f)"; done; echo "VIA_FILE $$(cat $$DB_PASSWORD_FILE)"; echo END; sleep 1000"#;

/// Seed 002's "Secret Options" and "Docker Compose (Swarm)" examples, merged, image `host`.
fn seed_002(show: &str) -> String {
    format!(
        r#"services:
  api:
    image: host
    command: sh -c '{show}'
    secrets:
      - source: db_password
        target: database_password  # Custom name
        uid: '1000'
        gid: '1000'
        mode: 0400  # Read-only by owner
      - api_key
    environment:
      DB_PASSWORD_FILE: /run/secrets/database_password
      API_KEY_FILE: /run/secrets/api_key

secrets:
  db_password:
    file: ./secrets/db_password.txt
  api_key:
    external: true
"#
    )
}

/// The newest complete output block of [`SHOW`] (its `FILE` and `VIA_FILE` lines).
fn last_block(log: &str) -> Option<String> {
    let lines: Vec<&str> = log.lines().collect();
    let end = lines.iter().rposition(|l| *l == "END")?;
    let start = lines[..end]
        .iter()
        .rposition(|l| !(l.starts_with("FILE ") || l.starts_with("VIA_FILE ")))
        .map_or(0, |i| i + 1);
    Some(lines[start..end].join("\n"))
}

#[test]
fn lockbox_stack_deploy_redeploy_changed_secret_and_docker_sees_it() {
    if !ready("lockbox_stack_deploy_redeploy_changed_secret_and_docker_sees_it") {
        return;
    }
    let d = Daemon::start();
    let p = Project::new();
    let compose = p.file("compose.yml", &seed_002(SHOW));
    p.file("secrets/db_password.txt", "first-db-password");
    ok(&d.lockbox(&["secret", "create", "api_key", "-"], Some(b"the-api-key")));

    // stack config: the resolved file.
    let cfg = ok(&lockbox_in(
        &d,
        p.dir.path(),
        &["stack", "config", "-c", "compose.yml"],
        &[],
    ));
    assert!(cfg.contains("mode: 256"), "{cfg}");
    assert!(cfg.contains("target: database_password"), "{cfg}");

    let out = lockbox_in(
        &d,
        p.dir.path(),
        &["stack", "deploy", "-c", &compose, "app"],
        &[],
    );
    let stdout = ok(&out);
    assert_eq!(
        stdout,
        "Creating network app_default\nCreating secret app_db_password\nCreating service app_api\n"
    );
    let block = wait_for("the first task's output", Duration::from_secs(30), || {
        last_block(&logs(&d, "app_api"))
    });
    assert_eq!(
        block,
        "FILE /run/secrets/api_key 444 0 0 the-api-key\n\
         FILE /run/secrets/database_password 400 1000 1000 first-db-password\n\
         VIA_FILE first-db-password"
    );

    // The stock CLI sees the same stack.
    assert_eq!(
        ok(&d.docker(&["stack", "ls"], None)),
        "NAME      SERVICES\napp       1\n"
    );
    let svcs = ok(&d.docker(
        &[
            "stack",
            "services",
            "app",
            "--format",
            "{{.Name}} {{.Replicas}}",
        ],
        None,
    ));
    assert_eq!(svcs, "app_api 1/1\n");
    let labels = ok(&d.docker(
        &[
            "service",
            "inspect",
            "app_api",
            "--format",
            "{{json .Spec.Labels}}",
        ],
        None,
    ));
    assert_eq!(
        labels.trim(),
        r#"{"com.docker.stack.image":"host","com.docker.stack.namespace":"app"}"#
    );
    let ps = ok(&d.docker(
        &[
            "stack",
            "ps",
            "app",
            "--format",
            "{{.Name}} {{.DesiredState}}",
        ],
        None,
    ));
    assert_eq!(ps, "app_api.1 Running\n");

    // Redeploy unchanged: nothing new.
    let out = ok(&lockbox_in(
        &d,
        p.dir.path(),
        &["stack", "deploy", "-c", &compose, "app"],
        &[],
    ));
    assert!(out.starts_with("Updating service app_api (id: "), "{out}");
    assert!(!out.contains("Creating"), "{out}");

    // The secret file changes: a new version, the service rolls onto it, the old one goes.
    p.file("secrets/db_password.txt", "second-db-password");
    let out = ok(&lockbox_in(
        &d,
        p.dir.path(),
        &["stack", "deploy", "-c", &compose, "app"],
        &[],
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "Creating secret app_db_password-v2 (new version of app_db_password: the value changed)"
    );
    assert!(
        lines[1].starts_with("Updating service app_api (id: "),
        "{out}"
    );
    assert_eq!(
        lines[2],
        "Removing secret app_db_password (replaced by app_db_password-v2)"
    );
    let block = wait_for("the new task's output", Duration::from_secs(30), || {
        last_block(&logs(&d, "app_api")).filter(|b| b.contains("second"))
    });
    assert_eq!(
        block,
        "FILE /run/secrets/api_key 444 0 0 the-api-key\n\
         FILE /run/secrets/database_password 400 1000 1000 second-db-password\n\
         VIA_FILE second-db-password"
    );
    assert_eq!(names(&d, "secret"), vec!["api_key", "app_db_password-v2"]);
    let running = ok(&d.docker(
        &[
            "stack",
            "ps",
            "app",
            "-f",
            "desired-state=running",
            "--format",
            "{{.Name}} {{.CurrentState}}",
        ],
        None,
    ));
    assert_eq!(running.lines().count(), 1, "{running}");
    assert!(running.starts_with("app_api.1 Running"), "{running}");
    let version = ok(&d.lockbox(
        &[
            "secret",
            "inspect",
            "app_db_password-v2",
            "--format",
            "{{json .Spec.Labels}}",
        ],
        None,
    ));
    assert_eq!(
        version.trim(),
        r#"{"com.docker.stack.namespace":"app","lockbox.family":"app_db_password","lockbox.version":"2"}"#
    );

    // docker stack rm removes everything the stack made, every version included.
    let out = ok(&d.docker(&["stack", "rm", "app"], None));
    assert_eq!(
        out,
        "Removing service app_api\nRemoving secret app_db_password-v2\nRemoving network app_default\n"
    );
    assert_eq!(names(&d, "secret"), vec!["api_key"]);
    assert!(!network_names(&d).contains(&"app_default".to_owned()));
    let err = text(&d.lockbox(&["stack", "rm", "app"], None)).1;
    assert_eq!(err, "Nothing found in stack: app\n");
}

/// Seed 000's production file: four external secrets under versioned names, `*_FILE`
/// variables, deployed with the stock CLI.
const SEED_000: &str = r#"version: '3.9'

services:
  api:
    image: host
    command: sh -c 'for s in jwt_secret jwt_refresh_secret db_password redis_password; do echo "$$s=$$(cat /run/secrets/$$s)"; done; echo "JWT_SECRET_FILE=$$(cat $$JWT_SECRET_FILE)"; echo "DB_PASSWORD_FILE=$$(cat $$DB_PASSWORD_FILE)"; echo DONE; sleep 1000'
    secrets:
      - jwt_secret
      - jwt_refresh_secret
      - db_password
      - redis_password
    environment:
      # Use _FILE suffix to read from secret file
      JWT_SECRET_FILE: /run/secrets/jwt_secret
      JWT_REFRESH_SECRET_FILE: /run/secrets/jwt_refresh_secret
      DB_PASSWORD_FILE: /run/secrets/db_password
      REDIS_PASSWORD_FILE: /run/secrets/redis_password

secrets:
  jwt_secret:
    external: true
    name: roi-poc-jwt-secret-v1
  jwt_refresh_secret:
    external: true
    name: roi-poc-jwt-refresh-secret-v1
  db_password:
    external: true
    name: roi-poc-db-password-v1
  redis_password:
    external: true
    name: roi-poc-redis-password-v1
"#;

#[test]
fn docker_stack_deploy_against_lockbox() {
    if !ready("docker_stack_deploy_against_lockbox") {
        return;
    }
    let d = Daemon::start();
    let p = Project::new();
    let compose = p.file("docker-compose.prod.yml", SEED_000);
    for (name, value) in [
        ("roi-poc-jwt-secret-v1", "jwt-1"),
        ("roi-poc-jwt-refresh-secret-v1", "refresh-1"),
        ("roi-poc-db-password-v1", "db-1"),
        ("roi-poc-redis-password-v1", "redis-1"),
    ] {
        ok(&d.docker(&["secret", "create", name, "-"], Some(value.as_bytes())));
    }
    let out = d.docker(&["stack", "deploy", "-c", &compose, "roi-poc"], None);
    assert_eq!(
        ok(&out),
        "Creating network roi-poc_default\nCreating service roi-poc_api\n"
    );
    let log = wait_for("the task's output", Duration::from_secs(30), || {
        let l = logs(&d, "roi-poc_api");
        l.contains("DONE").then_some(l)
    });
    assert_eq!(
        log,
        "jwt_secret=jwt-1\njwt_refresh_secret=refresh-1\ndb_password=db-1\nredis_password=redis-1\n\
         JWT_SECRET_FILE=jwt-1\nDB_PASSWORD_FILE=db-1\nDONE\n"
    );
    // lockbox's CLI sees docker's stack.
    assert_eq!(
        ok(&d.lockbox(&["stack", "ls"], None)),
        "NAME      SERVICES\nroi-poc   1\n"
    );
    let svcs = ok(&d.lockbox(
        &[
            "stack",
            "services",
            "roi-poc",
            "--format",
            "{{.Name}} {{.Mode}} {{.Replicas}}",
        ],
        None,
    ));
    assert_eq!(svcs, "roi-poc_api replicated 1/1\n");
    let ps = ok(&d.lockbox(
        &[
            "stack",
            "ps",
            "roi-poc",
            "--format",
            "{{.Name}} {{.DesiredState}}",
        ],
        None,
    ));
    assert_eq!(ps, "roi-poc_api.1 Running\n");

    // A redeploy with the stock CLI is an update.
    let out = ok(&d.docker(&["stack", "deploy", "-c", &compose, "roi-poc"], None));
    assert!(
        out.starts_with("Updating service roi-poc_api (id: "),
        "{out}"
    );

    // Rotation the seed's way (a -v2 name in the file), deployed by lockbox this time.
    ok(&d.docker(
        &["secret", "create", "roi-poc-db-password-v2", "-"],
        Some(b"db-2"),
    ));
    let v2 = p.file(
        "docker-compose.prod.yml",
        &SEED_000.replace("roi-poc-db-password-v1", "roi-poc-db-password-v2"),
    );
    let out = ok(&lockbox_in(
        &d,
        p.dir.path(),
        &["stack", "deploy", "-c", &v2, "roi-poc"],
        &[],
    ));
    assert!(out.starts_with("Updating service roi-poc_api"), "{out}");
    wait_for("the rolled task", Duration::from_secs(40), || {
        let l = logs(&d, "roi-poc_api");
        l.contains("DB_PASSWORD_FILE=db-2").then_some(l)
    });
    // External secrets are never removed by a stack.
    let out = ok(&d.lockbox(&["stack", "rm", "roi-poc"], None));
    assert_eq!(
        out,
        "Removing service roi-poc_api\nRemoving network roi-poc_default\n"
    );
    assert_eq!(names(&d, "secret").len(), 5);
    assert_eq!(
        text(&d.docker(&["stack", "rm", "roi-poc"], None)).1,
        "Nothing found in stack: roi-poc\n"
    );
}

#[test]
fn docker_redeploy_after_a_secret_file_changed_rolls_the_service() {
    if !ready("docker_redeploy_after_a_secret_file_changed_rolls_the_service") {
        return;
    }
    let d = Daemon::start();
    let p = Project::new();
    let compose = p.file("compose.yml", &seed_002(SHOW));
    p.file("secrets/db_password.txt", "one");
    ok(&d.docker(&["secret", "create", "api_key", "-"], Some(b"k")));
    ok(&d.docker(&["stack", "deploy", "-c", &compose, "app"], None));
    wait_for("the first task", Duration::from_secs(30), || {
        let l = logs(&d, "app_api");
        l.contains("VIA_FILE one").then_some(l)
    });
    let id_of = |name: &str| {
        ok(&d.docker(&["secret", "inspect", "-f", "{{.ID}}", name], None))
            .trim()
            .to_owned()
    };
    let old_id = id_of("app_db_password");

    // Swarm answers "only updates to Labels are allowed" here; lockbox swaps in a new object.
    p.file("secrets/db_password.txt", "two");
    let out = ok(&d.docker(&["stack", "deploy", "-c", &compose, "app"], None));
    assert!(out.contains("Updating service app_api (id: "), "{out}");
    let new_id = id_of("app_db_password");
    assert_ne!(new_id, old_id);
    let log = wait_for("the rolled task", Duration::from_secs(40), || {
        let l = logs(&d, "app_api");
        last_block(&l)
            .filter(|b| b.contains("VIA_FILE two"))
            .map(|_| l)
    });
    assert!(
        last_block(&log)
            .unwrap_or_default()
            .contains("FILE /run/secrets/database_password 400 1000 1000 two"),
        "{log}"
    );
    let refs = ok(&d.docker(
        &[
            "service",
            "inspect",
            "-f",
            "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}={{.SecretID}} {{end}}",
            "app_api",
        ],
        None,
    ));
    assert!(
        refs.contains(&format!("app_db_password={new_id}")),
        "{refs}"
    );
    // The old object is removed once no task uses it.
    wait_for(
        "the superseded secret to go",
        Duration::from_secs(30),
        || (names(&d, "secret") == vec!["api_key", "app_db_password"]).then(String::new),
    );
    assert!(
        !d.docker(&["secret", "inspect", &old_id], None)
            .status
            .success(),
        "the superseded secret is still there"
    );
    // Secrets outside stacks keep Swarm's rule.
    let version = ok(&d.docker(
        &["secret", "inspect", "-f", "{{.Version.Index}}", "api_key"],
        None,
    ));
    let body = r#"{"Name":"api_key","Data":"bmV3"}"#;
    let (status, _, resp) = d.http(
        "POST",
        &format!("/v1.47/secrets/api_key/update?version={}", version.trim()),
        Some(body.as_bytes()),
        Some("application/json"),
    );
    let resp = String::from_utf8_lossy(&resp);
    assert_eq!(status, 400, "{resp}");
    assert!(
        resp.contains("only updates to Labels are allowed"),
        "{resp}"
    );
    ok(&d.docker(&["stack", "rm", "app"], None));
}

#[test]
fn docker_redeploys_a_lockbox_stack_and_back() {
    if !ready("docker_redeploys_a_lockbox_stack_and_back") {
        return;
    }
    let d = Daemon::start();
    let p = Project::new();
    let compose = p.file("compose.yml", &seed_002(SHOW));
    p.file("secrets/db_password.txt", "one");
    ok(&d.docker(&["secret", "create", "api_key", "-"], Some(b"k")));
    // First deploy with docker, the changed file with lockbox, then docker again (unchanged).
    ok(&d.docker(&["stack", "deploy", "-c", &compose, "mix"], None));
    p.file("secrets/db_password.txt", "two");
    let out = ok(&lockbox_in(
        &d,
        p.dir.path(),
        &["stack", "deploy", "-c", &compose, "mix"],
        &[],
    ));
    assert!(
        out.contains("Creating secret mix_db_password-v1 (new version of mix_db_password"),
        "{out}"
    );
    assert!(
        out.contains("Removing secret mix_db_password (replaced by mix_db_password-v1)"),
        "{out}"
    );
    let out = ok(&d.docker(&["stack", "deploy", "-c", &compose, "mix"], None));
    assert!(out.contains("Creating secret mix_db_password\n"), "{out}");
    wait_for("docker's redeploy to run", Duration::from_secs(40), || {
        let l = logs(&d, "mix_api");
        (l.matches("400 1000 1000 two").count() >= 2).then_some(l)
    });
    // lockbox adopts docker's secret (same value) and removes its own old version.
    let out = ok(&lockbox_in(
        &d,
        p.dir.path(),
        &["stack", "deploy", "-c", &compose, "mix"],
        &[],
    ));
    assert!(
        out.contains("Removing secret mix_db_password-v1 (replaced by mix_db_password)"),
        "{out}"
    );
    assert_eq!(names(&d, "secret"), vec!["api_key", "mix_db_password"]);
    ok(&d.lockbox(&["stack", "rm", "mix"], None));
    assert_eq!(names(&d, "secret"), vec!["api_key"]);
}

#[test]
fn problems_are_reported_before_anything_is_created() {
    if !ready("problems_are_reported_before_anything_is_created") {
        return;
    }
    let d = Daemon::start();
    let p = Project::new();
    let compose = p.file(
        "compose.yml",
        r#"services:
  api:
    image: host
    command: sleep 1000
    secrets: [db_password, jwt_secret, token, present]
secrets:
  db_password:
    file: ./secrets/db_password.txt
  jwt_secret:
    external: true
    name: roi-poc-jwt-secret-v1
  token:
    environment: LBX_TEST_TOKEN_UNSET
  present:
    file: ./present.txt
"#,
    );
    p.file("present.txt", "here");
    let err = fails(&lockbox_in(
        &d,
        p.dir.path(),
        &["stack", "deploy", "-c", &compose, "bad"],
        &[],
    ));
    assert!(
        err.contains("secret \"db_password\": cannot read file ./secrets/db_password.txt: no such file or directory\n"),
        "{err}"
    );
    assert!(
        err.contains("secret \"jwt_secret\": external secret roi-poc-jwt-secret-v1 not found"),
        "{err}"
    );
    assert!(
        err.contains("secret \"token\": environment variable LBX_TEST_TOKEN_UNSET is not set"),
        "{err}"
    );
    assert!(
        err.contains("stack bad was not deployed: 3 problems"),
        "{err}"
    );
    assert!(names(&d, "secret").is_empty());
    assert!(names(&d, "service").is_empty());
    assert!(!network_names(&d).iter().any(|n| n.starts_with("bad_")));
    // stack config names the missing file too (it cannot know about the daemon's secrets).
    let o = lockbox_in(
        &d,
        p.dir.path(),
        &["stack", "config", "-c", "compose.yml"],
        &[],
    );
    let err = fails(&o);
    assert!(
        err.contains("secret \"db_password\": cannot read file"),
        "{err}"
    );
    assert!(text(&o).0.contains("name: roi-poc-jwt-secret-v1"));
    // YAML errors name the file, line and column.
    let broken = p.file(
        "broken.yml",
        "services:\n  api:\n    image: [host\n  db: 1\n",
    );
    let err = fails(&lockbox_in(
        &d,
        p.dir.path(),
        &["stack", "deploy", "-c", &broken, "bad"],
        &[],
    ));
    assert!(err.starts_with(&format!("{broken}:4:")), "{err}");
}

#[test]
fn several_files_interpolation_environment_secrets_and_prune() {
    if !ready("several_files_interpolation_environment_secrets_and_prune") {
        return;
    }
    let d = Daemon::start();
    let p = Project::new();
    p.file(".env", "GREETING=from-dotenv\nREPLICAS=1\n");
    let base = p.file(
        "compose.yml",
        r#"x-common: &common
  image: host
services:
  api:
    <<: *common
    command: sh -c 'echo "$$GREETING $$WHO token=$$(cat /run/secrets/token)"; sleep 1000'
    environment:
      GREETING: ${GREETING}
      WHO: ${WHO:-nobody}
    secrets: [token]
    deploy:
      replicas: ${REPLICAS}
secrets:
  token:
    environment: LBX_TEST_TOKEN
"#,
    );
    let over = p.file(
        "compose.override.yml",
        "services:\n  api:\n    environment:\n      WHO: override\n    deploy:\n      labels: [tier=front]\n  worker:\n    image: host\n    command: sleep 1000\n",
    );
    let env = [("LBX_TEST_TOKEN", "tok-1"), ("GREETING", "from-env")];
    let out = ok(&lockbox_in(
        &d,
        p.dir.path(),
        &["stack", "deploy", "-c", &base, "-c", &over, "multi"],
        &env,
    ));
    assert_eq!(
        out,
        "Creating network multi_default\nCreating secret multi_token\nCreating service multi_api\nCreating service multi_worker\n"
    );
    wait_for("api output", Duration::from_secs(30), || {
        let l = logs(&d, "multi_api");
        (l == "from-env override token=tok-1\n").then_some(l)
    });
    let labels = ok(&d.docker(
        &[
            "service",
            "inspect",
            "multi_api",
            "--format",
            "{{index .Spec.Labels \"tier\"}}",
        ],
        None,
    ));
    assert_eq!(labels.trim(), "front");
    // Only the first file again, with --prune: the worker goes, the api loses the override.
    let out = ok(&lockbox_in(
        &d,
        p.dir.path(),
        &["stack", "deploy", "--prune", "-c", &base, "multi"],
        &[("LBX_TEST_TOKEN", "tok-1")],
    ));
    assert!(out.contains("Removing service multi_worker\n"), "{out}");
    let svcs = ok(&d.lockbox(
        &["stack", "services", "multi", "--format", "{{.Name}}"],
        None,
    ));
    assert_eq!(svcs, "multi_api\n");
    wait_for(
        "api output without the override",
        Duration::from_secs(40),
        || {
            let l = logs(&d, "multi_api");
            l.contains("from-dotenv nobody token=tok-1").then_some(l)
        },
    );
    ok(&d.lockbox(&["stack", "rm", "multi"], None));
    assert!(names(&d, "service").is_empty());
    assert!(names(&d, "secret").is_empty());
}
