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

/// A store with more secrets than the daemon lists on its API thread (lists beyond 2,000
/// secrets are serialized on the blocking pool): the stock CLI lists every one, a filter
/// selects its share, and a create sent while long lists are being answered is answered too.
#[test]
fn a_large_store_lists_whole_while_writes_go_on() {
    if let Some(why) = docker_unavailable() {
        return skip("a_large_store_lists_whole_while_writes_go_on", &why);
    }
    const N: usize = 2_400;
    let d = Daemon::start();
    let ep = d.endpoint();
    std::thread::scope(|s| {
        for t in 0..8 {
            let ep = &ep;
            s.spawn(move || {
                for i in (t..N).step_by(8) {
                    let label = if i % 3 == 0 { "third" } else { "rest" };
                    let body = format!(
                        r#"{{"Name":"many-{i}","Labels":{{"part":"{label}"}},"Data":"dmFsdWU="}}"#
                    );
                    let ct = [("Content-Type".to_string(), "application/json".to_string())];
                    let r = common::http_request(
                        ep,
                        "POST",
                        "/v1.41/secrets/create",
                        &ct,
                        Some(body.as_bytes()),
                    )
                    .expect("create");
                    assert_eq!(r.status, 201, "{}", r.body_str());
                }
            });
        }
    });
    let ls = d.docker(&["secret", "ls", "-q"], None);
    check(&ls, "secret ls");
    assert_eq!(stdout(&ls).lines().count(), N);
    let third = d.docker(
        &["secret", "ls", "-q", "--filter", "label=part=third"],
        None,
    );
    check(&third, "secret ls --filter");
    assert_eq!(stdout(&third).lines().count(), N.div_ceil(3));
    // Lists and a create at the same time: every answer arrives, and the list is whole.
    std::thread::scope(|s| {
        let lists: Vec<_> = (0..3)
            .map(|_| s.spawn(|| d.http("GET", "/v1.41/secrets", None, None)))
            .collect();
        let create = d.docker(&["secret", "create", "during-lists", "-"], Some(b"v"));
        check(&create, "secret create during lists");
        for l in lists {
            let (status, _, body) = l.join().expect("list thread");
            assert_eq!(status, 200);
            let v: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("JSON list");
            assert!(v.len() == N || v.len() == N + 1, "listed {}", v.len());
            assert!(
                v.iter().all(|s| s.pointer("/Spec/Data").is_none()),
                "no values in a list"
            );
        }
    });
    let ls = d.docker(&["secret", "ls", "-q"], None);
    assert_eq!(stdout(&ls).lines().count(), N + 1);
}
