//! Helpers for the multi-node tests: daemons in network namespaces joined with the stock
//! docker CLI.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use super::Daemon;
use super::netns::{self, Net};

pub fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

pub fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_owned()
}

/// Skips (printing why) when namespaces or the docker CLI are not available.
pub fn prerequisites(test: &str) -> bool {
    if let Some(why) = netns::unavailable().or_else(super::docker_unavailable) {
        super::skip(test, &why);
        return false;
    }
    true
}

/// A manager daemon on node `i` of `net`: listening for other nodes on its address.
pub fn manager(net: &Net, i: usize, first: bool) -> Daemon {
    node_daemon(net, i, first, false)
}

/// `docker swarm join` of `d` (on node `i`) to the manager on node 0.
pub fn join(net: &Net, d: &Daemon, i: usize, token: &str) -> std::process::Output {
    d.docker(
        &[
            "swarm",
            "join",
            "--token",
            token,
            "--listen-addr",
            &net.addr(i),
            "--advertise-addr",
            &net.addr(i),
            &net.addr(0),
        ],
        None,
    )
}

/// Three managers built with the stock CLI.
pub fn three_managers(net: &Net) -> Vec<Daemon> {
    let first = manager(net, 0, true);
    let token = first.docker(&["swarm", "join-token", "-q", "manager"], None);
    assert!(token.status.success(), "{}", err(&token));
    let token = out(&token);
    let mut all = vec![first];
    for i in 1..3 {
        let d = manager(net, i, false);
        let o = join(net, &d, i, &token);
        assert!(
            o.status.success(),
            "join of node {i}: {}\n--- joiner log ---\n{}\n--- leader log ---\n{}",
            err(&o),
            d.log(),
            all[0].log()
        );
        assert_eq!(out(&o), "This node joined a swarm as a manager.");
        all.push(d);
    }
    all
}

pub fn secret_names(d: &Daemon) -> Vec<String> {
    let o = d.docker(&["secret", "ls", "--format", "{{.Name}}"], None);
    assert!(o.status.success(), "{}", err(&o));
    let mut names: Vec<String> = out(&o).lines().map(str::to_owned).collect();
    names.sort();
    names
}

/// Waits until `f` holds (or panics after `timeout` with `what`).
pub fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A daemon on node `i`; `audit` keeps its audit trail.
pub fn node_daemon(net: &Net, i: usize, first: bool, audit: bool) -> Daemon {
    let addr = net.addr(i);
    let mut args = vec!["--listen-addr", &addr, "--advertise-addr", &addr];
    if !audit {
        args.push("--no-audit");
    }
    if !first {
        args.push("--no-auto-init");
    }
    Daemon::try_start_in(net.ns(i), &args).unwrap_or_else(|e| panic!("{e}"))
}

/// A POST with a garbage body to `path` on the cluster listener at `addr`, from namespace
/// `ns`, presenting the node certificate and key in `certs` (`node.pem`, `node-key.pem`):
/// the HTTP status (0 when the TLS handshake fails) and the body.
pub fn post_with_cert(ns: &str, certs: &std::path::Path, addr: &str, path: &str) -> (u16, String) {
    let o = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sk", "--http2", "-m", "10"])
        .arg("--cert")
        .arg(certs.join("node.pem"))
        .arg("--key")
        .arg(certs.join("node-key.pem"))
        .args([
            "-X",
            "POST",
            "--data-binary",
            "garbage",
            "-w",
            "\n%{http_code}",
        ])
        .arg(format!("https://{addr}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}
