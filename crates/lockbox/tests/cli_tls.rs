//! The `lockbox` CLI over TLS with client certificates, black-box: docker's global flags
//! (`--tlsverify`, `--tlscacert`, `--tlscert`, `--tlskey`) and environment (`DOCKER_TLS_VERIFY`,
//! `DOCKER_CERT_PATH`) against a daemon's `--tlsverify` listener, a bundle from
//! `lockbox user bundle`, what a viewer may do, revocation, and the errors without (usable)
//! certificates. Needs root (the unix socket's root is the admin that creates users); skips
//! with a notice otherwise.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{Daemon, is_root, lockbox_bin, run_with_timeout, skip};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Variables that would change how the CLI connects; every run starts without them.
const CLIENT_ENV: [&str; 5] = [
    "LOCKBOX_HOST",
    "DOCKER_HOST",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "DOCKER_CONFIG",
];

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

/// Asserts exit code 1 and nothing on stdout; returns stderr.
fn fails(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", show(o));
    assert!(o.stdout.is_empty(), "{}", show(o));
    let err = text(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("-----BEGIN"), "{err}");
    err
}

/// `lockbox ARGS` with `env` set (and [`CLIENT_ENV`] otherwise unset), `HOME` at `home`.
fn lockbox(home: &Path, env: &[(&str, &str)], args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(lockbox_bin());
    for k in CLIENT_ENV {
        cmd.env_remove(k);
    }
    cmd.env("HOME", home)
        .current_dir(home)
        .envs(env.iter().copied())
        .args(args);
    run_with_timeout(cmd, stdin, TIMEOUT)
}

/// A daemon on its unix socket and on `tcp://127.0.0.1:PORT` (with `extra`, e.g.
/// `--tlsverify`); returns it and `tcp://127.0.0.1:PORT`.
fn start_daemon(extra: &[&str]) -> (Daemon, String) {
    let (d, addr) = Daemon::start_on_loopback_tcp(extra);
    (d, format!("tcp://{addr}"))
}

#[test]
fn cli_speaks_tls_with_client_certificates_until_revoked() {
    if !is_root() {
        skip(
            "cli_speaks_tls_with_client_certificates_until_revoked",
            "needs root (the admin on the unix socket)",
        );
        return;
    }
    let (d, host) = start_daemon(&["--tlsverify"]);
    let home = d.dir().join("home");
    std::fs::create_dir(&home).unwrap();

    ok(&d.lockbox(&["user", "create", "alice"], None));
    ok(&d.lockbox(
        &["grant", "create", "--user", "alice", "--role", "viewer"],
        None,
    ));
    ok(&d.lockbox(&["secret", "create", "tls-one", "-"], Some(b"1")));
    let bundle = d.dir().join("alice-bundle");
    let bundle_s = bundle.display().to_string();
    ok(&d.lockbox(&["user", "bundle", "alice", "-o", &bundle_s], None));
    let key_pem = std::fs::read_to_string(bundle.join("key.pem")).unwrap();
    let ca = bundle.join("ca.pem").display().to_string();
    let cert = bundle.join("cert.pem").display().to_string();
    let key = bundle.join("key.pem").display().to_string();

    // docker's flags.
    let flags = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--tlsverify",
            "--tlscacert",
            &ca,
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
            "-H",
            &host,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let with_flags = |args: &[&str], stdin: Option<&[u8]>| {
        let a = flags(args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        lockbox(&home, &[], &a, stdin)
    };
    // docker's environment.
    let env = [
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", bundle_s.as_str()),
        ("LOCKBOX_HOST", host.as_str()),
    ];
    let with_env = |args: &[&str], stdin: Option<&[u8]>| lockbox(&home, &env, args, stdin);

    let ls = ["secret", "ls", "--format", "{{.Name}}"];
    assert_eq!(ok(&with_flags(&ls, None)), "tls-one\n");
    assert_eq!(ok(&with_env(&ls, None)), "tls-one\n");
    let me = ok(&with_flags(&["whoami", "--format", "{{.User}}"], None));
    assert_eq!(me.trim(), "alice");
    let me = ok(&with_env(&["whoami"], None));
    assert!(me.contains("alice"), "{me}");
    assert!(me.contains("tls 127.0.0.1:"), "{me}");
    // The flags also work after the subcommand, as -H does.
    let mut late = ls.to_vec();
    late.push("--tlsverify");
    assert_eq!(
        ok(&lockbox(
            &home,
            &[("DOCKER_CERT_PATH", &bundle_s), ("LOCKBOX_HOST", &host)],
            &late,
            None
        )),
        "tls-one\n"
    );
    // The service API (version negotiation and requests) goes over TLS too.
    let services = ok(&with_env(&["service", "ls", "--format", "{{.Name}}"], None));
    assert_eq!(services, "");

    // A viewer may list but not create; the daemon's 403 comes through as docker prints it.
    let err = fails(&with_flags(
        &["secret", "create", "tls-two", "-"],
        Some(b"2"),
    ));
    assert_eq!(
        err,
        "Error response from daemon: permission denied: alice lacks secret.create\n"
    );
    // The audit trail is streamed over its own connection: refused for a viewer...
    let err = fails(&with_env(&["audit", "ls"], None));
    assert!(
        err.contains("permission denied: alice lacks audit.read"),
        "{err}"
    );
    // ...and read over TLS once alice may.
    ok(&d.lockbox(
        &["grant", "create", "--user", "alice", "--role", "auditor"],
        None,
    ));
    let records = ok(&with_env(
        &["audit", "ls", "--user", "alice", "--format", "json"],
        None,
    ));
    let actions: Vec<String> = records
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            v["action"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert!(actions.iter().any(|a| a == "secret.create"), "{records}");
    assert!(actions.iter().any(|a| a == "secret.list"), "{records}");

    // Without (usable) certificates.
    // Plain HTTP on the TLS port.
    let err = fails(&lockbox(&home, &[], &["-H", &host, "secret", "ls"], None));
    assert!(
        err.contains(&format!("Cannot connect to the lockbox daemon at {host}"))
            && err.contains("--tlsverify"),
        "{err}"
    );
    // --tlsverify with no files where they are looked for (HOME/.docker): named.
    let err = fails(&lockbox(
        &home,
        &[],
        &["--tlsverify", "-H", &host, "secret", "ls"],
        None,
    ));
    let default_ca = home.join(".docker/ca.pem");
    assert!(
        err.contains(&format!(
            "cannot read the CA certificate {}",
            default_ca.display()
        )),
        "{err}"
    );
    // Only the CA: the missing certificate is named.
    let ca_only = d.dir().join("ca-only");
    std::fs::create_dir(&ca_only).unwrap();
    std::fs::copy(bundle.join("ca.pem"), ca_only.join("ca.pem")).unwrap();
    let ca_only_s = ca_only.display().to_string();
    let err = fails(&lockbox(
        &home,
        &[
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", &ca_only_s),
            ("LOCKBOX_HOST", &host),
        ],
        &ls,
        None,
    ));
    assert!(
        err.contains(&format!(
            "cannot read the client certificate {}",
            ca_only.join("cert.pem").display()
        )),
        "{err}"
    );
    // A key that is not one: named, and its content is not shown.
    let bad_key = d.dir().join("bad-key.pem");
    std::fs::write(&bad_key, "lbx-not-a-key-7f3a9c\n").unwrap();
    let bad_key_s = bad_key.display().to_string();
    let err = fails(&lockbox(
        &home,
        &[],
        &[
            "--tlsverify",
            "--tlscacert",
            &ca,
            "--tlscert",
            &cert,
            "--tlskey",
            &bad_key_s,
            "-H",
            &host,
            "secret",
            "ls",
        ],
        None,
    ));
    assert!(err.contains(&bad_key_s), "{err}");
    assert!(!err.contains("lbx-not-a-key-7f3a9c"), "{err}");
    // The wrong CA: the daemon's certificate is not trusted.
    let err = fails(&lockbox(
        &home,
        &[],
        &[
            "--tlsverify",
            "--tlscacert",
            &cert,
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
            "-H",
            &host,
            "secret",
            "ls",
        ],
        None,
    ));
    assert!(
        err.contains(&format!("Cannot connect to the lockbox daemon at {host}"))
            && err.contains("certificate signed by unknown authority"),
        "{err}"
    );
    // docker's --tls (no verification) alone is refused.
    let err = fails(&lockbox(
        &home,
        &[("DOCKER_CERT_PATH", &bundle_s)],
        &["--tls", "-H", &host, "secret", "ls"],
        None,
    ));
    assert!(err.contains("--tlsverify"), "{err}");

    // Revocation: the next command with that certificate fails, clearly, with exit 1.
    ok(&d.lockbox(&["user", "revoke", "alice"], None));
    for o in [
        with_flags(&ls, None),
        with_env(&["whoami"], None),
        with_env(&["service", "ls"], None),
        with_env(&["audit", "ls"], None),
    ] {
        let err = fails(&o);
        assert_eq!(
            err,
            format!(
                "Cannot connect to the lockbox daemon at {host}: remote error: tls: revoked certificate\n"
            ),
            "{}",
            show(&o)
        );
    }

    // The private key was never printed, whatever happened.
    let body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(body.len() > 40);
    assert!(!d.log().contains(&body[..40]));
}

#[test]
fn plain_tcp_still_works_on_the_loopback_listener() {
    if !is_root() {
        skip(
            "plain_tcp_still_works_on_the_loopback_listener",
            "needs root (the admin on the unix socket)",
        );
        return;
    }
    let (d, host) = start_daemon(&[]);
    let home = d.dir().join("home");
    std::fs::create_dir(&home).unwrap();
    ok(&d.lockbox(&["secret", "create", "plain-one", "-"], Some(b"1")));
    let ls = ["secret", "ls", "--format", "{{.Name}}"];
    assert_eq!(
        ok(&lockbox(
            &home,
            &[],
            &["-H", &host, "secret", "ls", "--format", "{{.Name}}"],
            None
        )),
        "plain-one\n"
    );
    assert_eq!(
        ok(&lockbox(&home, &[("LOCKBOX_HOST", &host)], &ls, None)),
        "plain-one\n"
    );
    // DOCKER_CERT_PATH alone does not turn TLS on; an empty DOCKER_TLS_VERIFY is off.
    assert_eq!(
        ok(&lockbox(
            &home,
            &[
                ("LOCKBOX_HOST", &host),
                ("DOCKER_CERT_PATH", "/nonexistent"),
                ("DOCKER_TLS_VERIFY", "")
            ],
            &ls,
            None
        )),
        "plain-one\n"
    );
    // TLS on the plain listener: a clear error.
    let bundle = d.dir().join("root-bundle");
    let bundle_s = bundle.display().to_string();
    ok(&d.lockbox(&["user", "create", "bob"], None));
    ok(&d.lockbox(&["user", "bundle", "bob", "-o", &bundle_s], None));
    let err = fails(&lockbox(
        &home,
        &[
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", &bundle_s),
            ("LOCKBOX_HOST", &host),
        ],
        &ls,
        None,
    ));
    assert!(
        err.contains(&format!("Cannot connect to the lockbox daemon at {host}"))
            && err.contains("did not answer with TLS"),
        "{err}"
    );
    // The unix socket never uses TLS, whatever the environment says.
    let o = Command::new(lockbox_bin())
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", "/nonexistent")
        .env_remove("LOCKBOX_HOST")
        .args(["-H", &d.host(), "secret", "ls", "--format", "{{.Name}}"])
        .output()
        .unwrap();
    assert_eq!(ok(&o), "plain-one\n");
}

/// The stock docker CLI over TLS with the bundle in `bundle` (`DOCKER_CERT_PATH`).
fn docker_tls(home: &Path, host: &str, bundle: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(common::docker_bin());
    for k in CLIENT_ENV {
        cmd.env_remove(k);
    }
    cmd.env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env("DOCKER_HOST", host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", bundle)
        .args(args);
    run_with_timeout(cmd, None, TIMEOUT)
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn tls_clients_keep_working_through_one_root_rotation() {
    if !is_root() {
        skip(
            "tls_clients_keep_working_through_one_root_rotation",
            "needs root (the admin on the unix socket)",
        );
        return;
    }
    if let Some(why) = common::docker_unavailable() {
        skip("tls_clients_keep_working_through_one_root_rotation", &why);
        return;
    }
    let (d, host) = start_daemon(&["--tlsverify"]);
    let home = d.dir().join("home");
    std::fs::create_dir(&home).unwrap();
    ok(&d.lockbox(&["user", "create", "bob"], None));
    ok(&d.lockbox(
        &["grant", "create", "--user", "bob", "--role", "viewer"],
        None,
    ));
    ok(&d.lockbox(&["secret", "create", "rot-one", "-"], Some(b"1")));
    let bundle = |name: &str| {
        let dir = d.dir().join(name);
        ok(&d.lockbox(
            &["user", "bundle", "bob", "-o", &dir.display().to_string()],
            None,
        ));
        dir
    };
    let ls = ["secret", "ls", "--format", "{{.Name}}"];
    let works = |b: &Path| {
        let o = docker_tls(&home, &host, b, &ls);
        o.status.success() && text(&o.stdout).trim() == "rot-one"
    };
    let first = bundle("bundle-1");
    assert!(works(&first));

    // A rotation: the listener moves to the new CA; the first bundle (old CA for both its
    // trust and its client certificate) keeps working, and a bundle of the new CA works.
    ok(&d.docker(&["swarm", "ca", "--rotate"], None));
    let second = bundle("bundle-2");
    assert_ne!(
        std::fs::read(first.join("ca.pem")).unwrap(),
        std::fs::read(second.join("ca.pem")).unwrap()
    );
    eventually("the listener presents a certificate of the new CA", || {
        works(&second)
    });
    assert!(works(&first), "a bundle of the previous CA stopped working");

    // A second rotation retires the first CA: its bundle is refused, the second still works.
    ok(&d.docker(&["swarm", "ca", "--rotate"], None));
    eventually("the first bundle is refused", || !works(&first));
    let o = docker_tls(&home, &host, &first, &ls);
    assert!(text(&o.stderr).contains("certificate"), "{}", show(&o));
    assert!(works(&second));
    let third = bundle("bundle-3");
    assert!(works(&third));
}
