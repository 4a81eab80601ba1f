//! The node PKI of a running cluster, driven with the stock docker CLI: `docker swarm ca
//! --rotate` moves every node (managers and workers) to a new CA without stopping anything,
//! the join tokens follow the new CA, certificates of the old CA and of removed nodes are
//! refused; a locked manager leaving with `--force` uses its certificate to leave the Raft
//! group.
//!
//! Each node runs in its own network namespace (root needed, like the other cluster tests).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Daemon;
use common::cluster::*;
use common::netns::Net;

fn docker_ok(d: &Daemon, args: &[&str], stdin: Option<&[u8]>) -> String {
    let o = d.docker(args, stdin);
    assert!(
        o.status.success(),
        "docker {args:?}: {}\n--- log ---\n{}",
        err(&o),
        d.log()
    );
    out(&o)
}

fn certs(d: &Daemon) -> PathBuf {
    d.data_dir().join("certs")
}

/// `openssl verify` of a node's certificate against `ca` (with its intermediates when
/// `chain` is set): whether it verifies.
fn verifies(node: &Path, ca: &Path, chain: bool) -> bool {
    let mut cmd = Command::new("openssl");
    cmd.arg("verify").arg("-CAfile").arg(ca);
    let chain_file = node.join("chain.pem");
    if chain && std::fs::read_to_string(&chain_file).is_ok_and(|c| !c.trim().is_empty()) {
        cmd.arg("-untrusted").arg(&chain_file);
    }
    cmd.arg(node.join("node.pem"));
    cmd.output().expect("openssl").status.success()
}

/// Seconds until the certificate `pem` expires.
fn seconds_left(pem: &Path) -> i64 {
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-checkend"])
        .arg("0")
        .arg("-in")
        .arg(pem)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "certificate {} expired", pem.display());
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-in"])
        .arg(pem)
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&o.stdout);
    let date = text.trim().trim_start_matches("notAfter=");
    let o = Command::new("date")
        .args(["-d", date, "+%s"])
        .output()
        .expect("date");
    let end: i64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    end - std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A dispatcher session call to `addr` from namespace `ns` with the certificate in `dir`:
/// the HTTP status (0 when the TLS handshake fails).
fn session_with_cert(ns: &str, dir: &Path, addr: &str) -> u16 {
    post_with_cert(ns, dir, addr, "/dispatcher/session").0
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn a_root_rotation_moves_every_node_to_the_new_ca_while_the_swarm_runs() {
    if !prerequisites("a_root_rotation_moves_every_node_to_the_new_ca_while_the_swarm_runs") {
        return;
    }
    let net = Net::new(5).expect("network namespaces");
    let managers = three_managers(&net);
    let leader = &managers[0];
    let old_wtoken = docker_ok(leader, &["swarm", "join-token", "-q", "worker"], None);
    let worker = node_daemon(&net, 3, false, false);
    let o = join(&net, &worker, 3, &old_wtoken);
    assert!(o.status.success(), "{}", err(&o));

    // New node certificates are issued for 2 hours (swarm's --cert-expiry).
    docker_ok(leader, &["swarm", "update", "--cert-expiry", "2h"], None);

    // A service on the worker, reading a secret, keeps running through the rotation.
    docker_ok(
        leader,
        &["secret", "create", "pki-s1", "-"],
        Some(b"pki-canary-1"),
    );
    docker_ok(
        leader,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "on-worker",
            "--constraint",
            "node.role==worker",
            "--secret",
            "pki-s1",
            "host",
            "sh",
            "-c",
            "cat /run/secrets/pki-s1; echo; sleep 300",
        ],
        None,
    );
    let running = |svc: &str| {
        out(&leader.docker(
            &[
                "service",
                "ps",
                svc,
                "--filter",
                "desired-state=running",
                "--format",
                "{{.ID}} {{.CurrentState}}",
            ],
            None,
        ))
    };
    eventually(
        "the task runs on the worker",
        Duration::from_secs(20),
        || running("on-worker").contains("Running"),
    );
    let task_before = running("on-worker");

    let old_root = docker_ok(leader, &["swarm", "ca"], None);
    let old_root_file = net_file(&managers[0], "old-root.pem", &old_root);
    let saved_worker = save(&worker, "worker-before");
    let old_mtoken = docker_ok(leader, &["swarm", "join-token", "-q", "manager"], None);

    // The stock CLI waits until every node has moved, then prints the new root.
    let started = std::time::Instant::now();
    let printed = docker_ok(leader, &["swarm", "ca", "--rotate"], None);
    let took = started.elapsed();
    let new_root = docker_ok(leader, &["swarm", "ca"], None);
    assert_ne!(new_root, old_root);
    assert!(
        printed.ends_with(&new_root),
        "swarm ca --rotate printed:\n{printed}"
    );
    assert!(
        printed.contains("rotated TLS certificates") && printed.contains("rotated CA certificates"),
        "{printed}"
    );
    let info = json(&docker_ok(
        leader,
        &["info", "--format", "{{json .Swarm.Cluster.TLSInfo}}"],
        None,
    ));
    assert_eq!(
        docker_ok(
            leader,
            &[
                "info",
                "--format",
                "{{.Swarm.Cluster.RootRotationInProgress}}"
            ],
            None
        ),
        "false"
    );
    assert_eq!(info["TrustRoot"].as_str().unwrap().trim(), new_root);

    // Every node reports the new root and a certificate issued by it.
    let ids = docker_ok(leader, &["node", "ls", "-q"], None);
    for id in ids.lines() {
        let tls = json(&docker_ok(
            leader,
            &[
                "node",
                "inspect",
                id,
                "--format",
                "{{json .Description.TLSInfo}}",
            ],
            None,
        ));
        assert_eq!(tls["TrustRoot"].as_str().unwrap().trim(), new_root, "{id}");
        assert_eq!(tls["CertIssuerSubject"], info["CertIssuerSubject"], "{id}");
        assert_eq!(
            tls["CertIssuerPublicKey"], info["CertIssuerPublicKey"],
            "{id}"
        );
    }
    // On disk: each node trusts the new root only, and its certificate chains to it, not
    // to the old root; it was issued for the 2 hours the swarm asks for.
    let new_root_file = net_file(&managers[0], "new-root.pem", &new_root);
    for d in managers.iter().chain([&worker]) {
        let dir = certs(d);
        eventually(
            "the node trusts the new root",
            Duration::from_secs(5),
            || std::fs::read_to_string(dir.join("ca.pem")).is_ok_and(|c| c.trim() == new_root),
        );
        assert!(verifies(&dir, &new_root_file, false), "{}", d.log());
        assert!(!verifies(&dir, &old_root_file, false));
        let left = seconds_left(&dir.join("node.pem"));
        assert!((6600..=7300).contains(&left), "{left} s left");
    }
    // The worker's old certificate chained to the old root.
    assert!(verifies(&saved_worker, &old_root_file, false));

    // Nothing stopped: the same task runs; writes replicate over the new certificates.
    let id_of = |row: &str| row.split_whitespace().next().unwrap_or_default().to_owned();
    let now_running = running("on-worker");
    assert_eq!(id_of(&now_running), id_of(&task_before));
    assert!(now_running.contains("Running"), "{now_running}");
    docker_ok(
        &managers[2],
        &["secret", "create", "pki-s2", "-"],
        Some(b"pki-canary-2"),
    );
    eventually("the write replicates", Duration::from_secs(5), || {
        secret_names(&managers[1]).contains(&"pki-s2".to_owned())
    });
    // The worker's session works with its renewed certificate: a new task reaches it.
    docker_ok(
        leader,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "after",
            "--constraint",
            "node.role==worker",
            "--secret",
            "pki-s2",
            "host",
            "sh",
            "-c",
            "cat /run/secrets/pki-s2; echo; sleep 300",
        ],
        None,
    );
    eventually(
        "the new task's output reaches the manager",
        Duration::from_secs(20),
        || out(&leader.docker(&["service", "logs", "--raw", "after"], None)) == "pki-canary-2",
    );

    // The join tokens name the new CA: the old one is refused, the new one works.
    let new_wtoken = docker_ok(leader, &["swarm", "join-token", "-q", "worker"], None);
    let new_mtoken = docker_ok(leader, &["swarm", "join-token", "-q", "manager"], None);
    assert_ne!(new_wtoken, old_wtoken);
    assert_ne!(new_mtoken, old_mtoken);
    // Only the CA digest changed; the secret parts stay.
    assert_eq!(new_wtoken.rsplit('-').next(), old_wtoken.rsplit('-').next());
    let late = node_daemon(&net, 4, false, false);
    let o = join(&net, &late, 4, &old_wtoken);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("remote CA does not match fingerprint in the join token"),
        "{}",
        err(&o)
    );
    let o = join(&net, &late, 4, &new_wtoken);
    assert!(o.status.success(), "{}\n{}", err(&o), late.log());
    assert!(verifies(&certs(&late), &new_root_file, true));

    // The worker's certificate from before the rotation no longer gets in (its CA is no
    // longer trusted); its current one does (to a decoding error: the body is garbage).
    let addr = net.addr(0);
    assert_eq!(session_with_cert(net.ns(3), &saved_worker, &addr), 0);
    assert_eq!(session_with_cert(net.ns(3), &certs(&worker), &addr), 400);

    // A removed worker's certificate is refused, and the worker says why.
    let wid = json(&docker_ok(
        &worker,
        &["info", "--format", "{{json .Swarm.NodeID}}"],
        None,
    ));
    let wid = wid.as_str().unwrap().to_owned();
    docker_ok(leader, &["service", "rm", "on-worker", "after"], None);
    docker_ok(leader, &["node", "rm", "--force", &wid], None);
    eventually(
        "the removed worker is told",
        Duration::from_secs(10),
        || {
            worker
                .log()
                .contains("has been revoked or the node is no longer a member")
        },
    );

    // A manager restarted after the rotation comes back with the new certificates.
    let mut managers = managers;
    let m2 = &mut managers[2];
    m2.kill9();
    m2.restart();
    let m2 = &managers[2];
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let o = m2.docker(&["secret", "ls", "--format", "{{.Name}}"], None);
        if out(&o).lines().any(|l| l == "pki-s2") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restarted manager does not serve: {}\n--- its log ---\n{}",
            err(&o),
            m2.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A demoted manager gets a certificate naming its new role.
    let m1 = json(&docker_ok(
        &managers[1],
        &["info", "--format", "{{json .Swarm.NodeID}}"],
        None,
    ));
    let m1 = m1.as_str().unwrap().to_owned();
    docker_ok(&managers[0], &["node", "demote", &m1], None);
    eventually(
        "the demoted manager holds a worker certificate",
        Duration::from_secs(15),
        || subject(&certs(&managers[1]).join("node.pem")).contains("OU=lockbox-worker"),
    );
    // Promoted back, it gets a manager certificate of the new CA and votes again.
    docker_ok(&managers[0], &["node", "promote", &m1], None);
    eventually(
        "the promoted node is a reachable manager again",
        Duration::from_secs(30),
        || {
            subject(&certs(&managers[1]).join("node.pem")).contains("OU=lockbox-manager")
                && manager_rows(&managers[0])
                    .iter()
                    .filter(|r| *r == "Reachable" || *r == "Leader")
                    .count()
                    == 3
        },
    );
    assert!(verifies(&certs(&managers[1]), &new_root_file, true));
    eprintln!("swarm ca --rotate took {took:?} on 3 managers and a worker");
}

/// The subject of the certificate `pem` (openssl's one-line form).
fn subject(pem: &Path) -> String {
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "compat", "-in"])
        .arg(pem)
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Writes `text` into a file beside `d`'s data directory.
fn net_file(d: &Daemon, name: &str, text: &str) -> PathBuf {
    let path = d.dir().join(name);
    std::fs::write(&path, format!("{text}\n")).unwrap();
    path
}

/// Copies `d`'s node certificates aside.
fn save(d: &Daemon, name: &str) -> PathBuf {
    let dir = d.dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["ca.pem", "node.pem", "node-key.pem"] {
        std::fs::copy(certs(d).join(f), dir.join(f)).unwrap();
    }
    dir
}

/// `{{.ManagerStatus}}` of every node in `d`'s `node ls` (empty for a worker), sorted.
fn manager_rows(d: &Daemon) -> Vec<String> {
    // Each row starts with the ID: a worker's empty status is not lost to trimming.
    let mut rows: Vec<String> = docker_ok(
        d,
        &["node", "ls", "--format", "{{.ID}} {{.ManagerStatus}}"],
        None,
    )
    .lines()
    .map(|l| l.split_once(' ').map_or("", |(_, m)| m).trim().to_owned())
    .collect();
    rows.sort();
    rows
}

#[test]
fn a_locked_manager_that_leaves_with_force_takes_itself_out_of_the_raft_group() {
    if !prerequisites("a_locked_manager_that_leaves_with_force_takes_itself_out_of_the_raft_group")
    {
        return;
    }
    let net = Net::new(3).expect("network namespaces");
    let mut m = three_managers(&net);
    docker_ok(&m[0], &["swarm", "update", "--autolock=true"], None);
    let key = docker_ok(&m[0], &["swarm", "unlock-key", "-q"], None);
    eventually(
        "every manager has the unlock key",
        Duration::from_secs(10),
        || {
            m.iter()
                .all(|d| out(&d.docker(&["swarm", "unlock-key", "-q"], None)) == key)
        },
    );
    // Manager 2 knows the others' addresses before it goes down.
    std::thread::sleep(Duration::from_millis(1500));
    m[2].restart();
    assert_eq!(
        docker_ok(
            &m[2],
            &["info", "--format", "{{.Swarm.LocalNodeState}}"],
            None
        ),
        "locked"
    );
    let o = m[2].docker(&["swarm", "leave"], None);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("Swarm is encrypted and locked"),
        "{}",
        err(&o)
    );
    docker_ok(&m[2], &["swarm", "leave", "--force"], None);
    // With its node certificate (its store is locked) it asked the others to take it out of
    // the group: they are two managers now, and it is recorded as a worker.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while manager_rows(&m[0]) != ["", "Leader", "Reachable"] {
        assert!(
            std::time::Instant::now() < deadline,
            "the locked manager is still in the raft group: {:?}\n--- its log ---\n{}\n--- the leader's ---\n{}",
            manager_rows(&m[0]),
            m[2].log(),
            m[0].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(m[2].log().contains("left the raft group"), "{}", m[2].log());
    docker_ok(&m[1], &["secret", "create", "after-leave", "-"], Some(b"x"));
}
