//! Daemon lifecycle through the harness: start, ping, SIGTERM, restart, kill -9. What a real
//! swarm manager also does: secrets survive a clean restart and a crash.

mod common;

use common::{Daemon, docker_unavailable, skip};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn check(o: &std::process::Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn ping_answers_ok() {
    let d = Daemon::start();
    let (status, headers, body) = d.http("GET", "/_ping", None, None);
    assert_eq!(status, 200, "{}", d.log());
    assert_eq!(body, b"OK");
    assert!(
        headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("Api-Version")),
        "no Api-Version header: {headers:?}"
    );
}

#[test]
fn sigterm_exits_cleanly() {
    let mut d = Daemon::start();
    let st = d.sigterm();
    assert!(
        st.success(),
        "lockbox daemon exited with {st} on SIGTERM\n{}",
        d.log()
    );
}

#[test]
fn secrets_survive_restart_and_kill9() {
    if let Some(why) = docker_unavailable() {
        return skip("secrets_survive_restart_and_kill9", &why);
    }
    let mut d = Daemon::start();
    let o = d.docker(
        &["secret", "create", "-l", "k=v", "lbxt-life", "-"],
        Some(b"payload"),
    );
    check(&o, "secret create");
    let id = stdout(&o).trim().to_string();
    let fmt = [
        "secret",
        "inspect",
        "--format",
        "{{.ID}} {{.Spec.Name}} {{.Spec.Labels}}",
        "lbxt-life",
    ];
    let want = format!("{id} lbxt-life map[k:v]\n");

    d.restart();
    let o = d.docker(&fmt, None);
    check(&o, "inspect after restart");
    assert_eq!(stdout(&o), want);

    d.kill9();
    d.restart();
    let o = d.docker(&fmt, None);
    check(&o, "inspect after kill -9");
    assert_eq!(stdout(&o), want);
    assert!(d.data_dir().is_dir());
}
