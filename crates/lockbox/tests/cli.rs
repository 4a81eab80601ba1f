//! The lockbox CLI against the stock docker CLI, on the same daemon: same data on stdout,
//! same exit codes, for the secret and swarm commands lockbox implements.

mod common;

use common::Daemon;

fn run(d: &Daemon, docker: bool, args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let o = if docker {
        d.docker(args, stdin)
    } else {
        d.lockbox(args, stdin)
    };
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs `args` with both CLIs and asserts identical exit codes and stdout.
fn same(d: &Daemon, args: &[&str]) -> String {
    let a = run(d, true, args, None);
    let b = run(d, false, args, None);
    assert_eq!(
        a.0, b.0,
        "exit codes differ for {args:?}\ndocker: {a:?}\nlockbox: {b:?}"
    );
    assert_eq!(
        a.1, b.1,
        "stdout differs for {args:?}\ndocker stderr: {}\nlockbox stderr: {}",
        a.2, b.2
    );
    a.1
}

#[test]
fn secret_commands_print_what_docker_prints() {
    if let Some(why) = common::docker_unavailable() {
        common::skip("secret_commands_print_what_docker_prints", &why);
        return;
    }
    let d = Daemon::start();
    let (code, id, _) = run(
        &d,
        false,
        &[
            "secret",
            "create",
            "-l",
            "env=prod",
            "-l",
            "team",
            "db_password",
            "-",
        ],
        Some(b"s3cret"),
    );
    assert_eq!(code, 0);
    assert_eq!(id.trim().len(), 25);
    std::fs::write(d.dir().join("value.txt"), "from a file\n").unwrap();
    let (code, _, err) = run(
        &d,
        false,
        &["secret", "create", "api_key", "value.txt"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    run(&d, true, &["secret", "create", "Alpha10", "-"], Some(b"x"));
    run(&d, true, &["secret", "create", "alpha9", "-"], Some(b"x"));

    let table = same(&d, &["secret", "ls"]);
    assert!(table.starts_with("ID  "), "{table}");
    same(&d, &["secret", "ls", "-q"]);
    // docker 28 prints .Labels in map order (random); lockbox sorts them, as docker/cli master.
    let (_, labels, _) = run(
        &d,
        false,
        &["secret", "ls", "--format", "{{.Name}} {{.Labels}}"],
        None,
    );
    assert_eq!(
        labels,
        "Alpha10 \nalpha9 \napi_key \ndb_password env=prod,team=\n"
    );
    same(
        &d,
        &[
            "secret",
            "ls",
            "--format",
            "table {{.ID}}\t{{.Name}}\t{{.Label \"env\"}}",
        ],
    );
    // Secrets without labels only: docker 28 prints .Labels in random map order.
    same(
        &d,
        &["secret", "ls", "-f", "name=a", "--format", "{{json .}}"],
    );
    same(
        &d,
        &["secret", "ls", "-f", "name=alpha", "--format", "{{.Name}}"],
    );
    same(&d, &["secret", "ls", "-f", "label=env=prod", "-q"]);
    same(
        &d,
        &["secret", "ls", "-f", "label=team", "--format", "{{.Name}}"],
    );
    same(
        &d,
        &[
            "secret",
            "ls",
            "-f",
            &format!("id={}", &id.trim()[..6]),
            "--format",
            "{{.Name}}",
        ],
    );
    let inspected = same(&d, &["secret", "inspect", "db_password", "api_key"]);
    assert!(!inspected.contains("Data"), "{inspected}");
    same(&d, &["secret", "inspect", "--pretty", "db_password"]);
    same(
        &d,
        &[
            "secret",
            "inspect",
            "--format",
            "{{.Spec.Name}} {{.Spec.Labels}}",
            id.trim(),
        ],
    );
    same(&d, &["secret", "inspect", &id.trim()[..8]]);

    // Errors: same exit code and the daemon's message on stderr.
    let (a, b) = (
        run(&d, true, &["secret", "inspect", "nope"], None),
        run(&d, false, &["secret", "inspect", "nope"], None),
    );
    assert_eq!(a.0, b.0);
    assert_eq!(a.2.trim(), b.2.trim());
    let dup = run(
        &d,
        false,
        &["secret", "create", "DB_PASSWORD", "-"],
        Some(b"x"),
    );
    assert_eq!(dup.0, 1);
    assert_eq!(
        dup.2.trim(),
        "Error response from daemon: rpc error: code = AlreadyExists desc = secret DB_PASSWORD already exists"
    );
    let empty = run(&d, false, &["secret", "create", "empty", "-"], Some(b""));
    assert_eq!(empty.0, 1);
    assert!(empty.2.contains("data is empty"), "{}", empty.2);
    let bad = run(&d, false, &["secret", "create", "-bad-", "-"], Some(b"x"));
    assert_ne!(bad.0, 0);

    let (code, out, _) = run(
        &d,
        false,
        &["secret", "rm", "api_key", "nope", "db_password"],
        None,
    );
    assert_eq!(code, 1);
    assert_eq!(out, "api_key\ndb_password\n");
    same(&d, &["secret", "ls", "--format", "{{.Name}}"]);
}

#[test]
fn swarm_commands() {
    let d = Daemon::start();
    let (code, _, err) = run(&d, false, &["swarm", "unlock-key"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no unlock key is set"), "{err}");
    let (code, out, _) = run(&d, false, &["swarm", "update", "--autolock=true"], None);
    assert_eq!(code, 0);
    assert!(out.contains("SWMKEY-1-"), "{out}");
    let (_, key, _) = run(&d, false, &["swarm", "unlock-key", "-q"], None);
    let (_, docker_key, _) = run(&d, true, &["swarm", "unlock-key", "-q"], None);
    assert_eq!(key, docker_key);
    let (code, out, _) = run(&d, false, &["swarm", "unlock-key", "--rotate", "-q"], None);
    assert_eq!(code, 0);
    assert_ne!(out, key, "rotation must give a new key");
    let (code, worker, _) = run(&d, false, &["swarm", "join-token", "-q", "worker"], None);
    assert_eq!(code, 0);
    assert!(worker.starts_with("SWMTKN-1-"), "{worker}");
    let (_, rotated, _) = run(
        &d,
        false,
        &["swarm", "join-token", "--rotate", "-q", "worker"],
        None,
    );
    assert_ne!(rotated, worker);
    assert_eq!(rotated[..60], worker[..60], "the CA digest part stays");
    let (_, docker_worker, _) = run(&d, true, &["swarm", "join-token", "-q", "worker"], None);
    assert_eq!(rotated, docker_worker);
    let (code, out, _) = run(
        &d,
        false,
        &[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
        ],
        None,
    );
    assert_eq!((code, out.as_str()), (0, "active true\n"));
    let (code, out, _) = run(
        &d,
        false,
        &["version", "--format", "{{.Server.ApiVersion}}"],
        None,
    );
    assert_eq!((code, out.as_str()), (0, "1.47\n"));
    let (code, _, err) = run(&d, false, &["swarm", "init"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("This node is already part of a swarm"),
        "{err}"
    );
}

#[test]
fn events_for_secret_changes() {
    let d = Daemon::start();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let o = d.docker(&["secret", "create", "-l", "a=b", "ev", "-"], Some(b"v"));
    assert!(o.status.success());
    let id = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    let v = d.docker(
        &["secret", "inspect", "--format", "{{.Version.Index}}", "ev"],
        None,
    );
    let v = String::from_utf8_lossy(&v.stdout).trim().to_owned();
    let (s, _, _) = d.http(
        "POST",
        &format!("/v1.47/secrets/ev/update?version={v}"),
        Some(br#"{"Name":"ev","Labels":{}}"#),
        Some("application/json"),
    );
    assert_eq!(s, 200);
    assert!(d.docker(&["secret", "rm", "ev"], None).status.success());
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let o = d.docker(
        &[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &until.to_string(),
            "--filter",
            "type=secret",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}} {{.Scope}}",
        ],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!(
            "secret create {id} ev swarm\nsecret update {id} ev swarm\nsecret remove {id} ev swarm\n"
        )
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let d = Daemon::start();
    assert!(
        d.docker(&["secret", "create", "-l", "k=v", "keep", "-"], Some(b"v"))
            .status
            .success()
    );
    let snapshot = || {
        String::from_utf8_lossy(&d.docker(&["secret", "inspect", "keep"], None).stdout).into_owned()
    };
    let before = snapshot();
    let huge = vec![b'a'; 5 * 1024 * 1024];
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "POST",
            "/v1.47/secrets/create",
            huge,
            400,
            "request body too large",
        ),
        (
            "POST",
            "/v1.47/secrets/create",
            br#"{"Name":"x","Data":"#.to_vec(),
            400,
            "invalid JSON: unexpected EOF",
        ),
        (
            "POST",
            "/v1.47/secrets/create",
            br#"{"Name":"a b","Data":"YQ=="}"#.to_vec(),
            400,
            "invalid name",
        ),
        (
            "POST",
            "/v1.47/secrets/create",
            br#"{"Name":"keep","Data":"YQ=="}"#.to_vec(),
            409,
            "already exists",
        ),
        (
            "POST",
            "/v1.47/secrets/keep/update?version=1",
            br#"{"Name":"renamed"}"#.to_vec(),
            400,
            "only updates to Labels are allowed",
        ),
        (
            "POST",
            "/v1.47/secrets/keep/update?version=1",
            br#"{"Name":"keep","Labels":{}}"#.to_vec(),
            500,
            "update out of sequence",
        ),
        (
            "GET",
            "/v1.47/secrets?filters=%7B%22nope%22%3A%7B%22x%22%3Atrue%7D%7D",
            vec![],
            400,
            "invalid filter 'nope'",
        ),
        ("GET", "/v1.47/no/such/route", vec![], 404, "page not found"),
        (
            "DELETE",
            "/v1.47/secrets/nope",
            vec![],
            404,
            "secret nope not found",
        ),
        (
            "GET",
            "/v9.99/secrets",
            vec![],
            400,
            "client version 9.99 is too new",
        ),
    ];
    for (method, path, body, status, text) in cases {
        let body = (!body.is_empty()).then_some(body);
        let (s, headers, b) = d.http(
            method,
            path,
            body.as_deref(),
            body.as_ref().map(|_| "application/json"),
        );
        let b = String::from_utf8_lossy(&b);
        assert_eq!(s, status, "{method} {path}: {b}");
        assert!(b.contains(text), "{method} {path}: {b}");
        let ct = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str());
        assert_eq!(ct, Some("application/json"), "{method} {path}");
    }
    assert_eq!(snapshot(), before, "bad input must not change the store");
    let listed = String::from_utf8_lossy(&d.docker(&["secret", "ls", "-q"], None).stdout)
        .lines()
        .count();
    assert_eq!(listed, 1);
}
