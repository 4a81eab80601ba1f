//! Changing the managers of a swarm with the stock docker CLI, each manager in its own network
//! namespace: `node demote` (and swarm's safeguards: the last manager, quorum), `node rm`
//! (a manager must be demoted first, a node that is up needs `--force`, a removed node's
//! certificate no longer passes the cluster listener), `swarm leave` of one manager of
//! several, and autolock on every manager (the same unlock key everywhere, also after
//! rotation).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Daemon;
use common::cluster::*;
use common::netns::Net;

/// Runs the docker CLI and insists it succeeds; returns its stdout.
fn ok(d: &Daemon, args: &[&str], stdin: Option<&[u8]>) -> String {
    let o = d.docker(args, stdin);
    assert!(
        o.status.success(),
        "docker {}: {}\n--- daemon log ---\n{}",
        args.join(" "),
        err(&o),
        d.log()
    );
    out(&o)
}

/// Runs the docker CLI and insists it fails; returns its stderr.
fn fails(d: &Daemon, args: &[&str], stdin: Option<&[u8]>) -> String {
    let o = d.docker(args, stdin);
    assert!(
        !o.status.success(),
        "docker {} should have failed: {}",
        args.join(" "),
        out(&o)
    );
    err(&o)
}

fn node_id(d: &Daemon) -> String {
    ok(d, &["info", "--format", "{{.Swarm.NodeID}}"], None)
}

fn local_state(d: &Daemon) -> String {
    out(&d.docker(
        &[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
        ],
        None,
    ))
}

/// `docker node ls` as sorted `ID role manager-status status` rows.
fn nodes(d: &Daemon) -> Vec<String> {
    let o = ok(
        d,
        &[
            "node",
            "ls",
            "--format",
            "{{.ID}} {{if .ManagerStatus}}manager {{.ManagerStatus}}{{else}}worker -{{end}} {{.Status}}",
        ],
        None,
    );
    let mut rows: Vec<String> = o.lines().map(str::to_owned).collect();
    rows.sort();
    rows
}

fn managers(d: &Daemon) -> Vec<String> {
    let o = ok(d, &["node", "ls", "--filter", "role=manager", "-q"], None);
    let mut ids: Vec<String> = o.lines().map(str::to_owned).collect();
    ids.sort();
    ids
}

/// Which of `m` is the leader now (by its own `node ls`).
fn leader(m: &[&Daemon]) -> usize {
    let mut found = None;
    eventually("a leader", Duration::from_secs(15), || {
        found = m.iter().position(|d| {
            let o = d.docker(
                &["node", "ls", "--format", "{{.Self}} {{.ManagerStatus}}"],
                None,
            );
            o.status.success() && out(&o).lines().any(|l| l == "true Leader")
        });
        found.is_some()
    });
    found.unwrap()
}

/// Copies node `d`'s certificate, key and CA certificate aside.
fn save_certs(d: &Daemon, to: &Path) -> PathBuf {
    let dir = to.join("saved-certs");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["ca.pem", "node.pem", "node-key.pem"] {
        std::fs::copy(d.data_dir().join("certs").join(f), dir.join(f)).unwrap();
    }
    dir
}

/// A Raft vote request (garbage body) to `addr`, from namespace `ns`, presenting the node
/// certificate in `certs`: the HTTP status and body. A current manager's certificate gets past
/// the listener (to a decoding error); another's is refused with 403.
fn raft_with_cert(ns: &str, certs: &Path, addr: &str) -> (u16, String) {
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
            "not a vote",
            "-w",
            "\n%{http_code}",
            &format!("https://{addr}/raft/vote"),
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn demote_and_remove_managers_with_swarms_safeguards() {
    if !prerequisites("demote_and_remove_managers_with_swarms_safeguards") {
        return;
    }
    let net = Net::new(3).expect("network namespaces");
    let m = three_managers(&net);
    let ids: Vec<String> = m.iter().map(node_id).collect();
    let keep = tempfile::tempdir().unwrap();
    let certs2 = save_certs(&m[2], keep.path());

    // Node 2's certificate passes the listener while it is a manager.
    let (code, body) = raft_with_cert(net.ns(2), &certs2, &net.addr(0));
    assert_ne!(code, 403, "a manager's raft message was refused: {body}");
    assert_ne!(code, 0, "curl could not reach the listener");

    // A manager cannot be removed: it must be demoted first (with or without --force).
    for args in [vec!["node", "rm"], vec!["node", "rm", "--force"]] {
        let mut args = args.clone();
        args.push(&ids[1]);
        let e = fails(&m[0], &args, None);
        assert!(
            e.contains(&format!(
                "rpc error: code = FailedPrecondition desc = node {} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal",
                ids[1]
            )),
            "{e}"
        );
    }

    // Cut node 2 off: demoting node 1 would leave the leader alone with an unreachable
    // manager, no quorum.
    net.cut(2).unwrap();
    eventually(
        "the leader sees node 2 unreachable",
        Duration::from_secs(20),
        || {
            nodes(&m[0])
                .iter()
                .any(|r| r == &format!("{} manager Unreachable Down", ids[2]))
        },
    );
    let e = fails(&m[0], &["node", "demote", &ids[1]], None);
    assert!(
        e.contains("rpc error: code = FailedPrecondition desc = can't remove member from the raft: this would result in a loss of quorum"),
        "{e}"
    );
    assert_eq!(managers(&m[0]).len(), 3);

    // The unreachable one can be demoted: the two left are a quorum.
    let o = ok(&m[0], &["node", "demote", &ids[2]], None);
    assert_eq!(o, format!("Manager {} demoted in the swarm.", ids[2]));
    let mut two = vec![ids[0].clone(), ids[1].clone()];
    two.sort();
    assert_eq!(managers(&m[0]), two);
    let rows = nodes(&m[0]);
    assert!(
        rows.contains(&format!("{} manager Leader Ready", ids[0])),
        "{rows:?}"
    );
    assert!(
        rows.contains(&format!("{} manager Reachable Ready", ids[1])),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with(&format!("{} worker", ids[2]))),
        "{rows:?}"
    );
    // Writes go on with two managers.
    ok(
        &m[1],
        &["secret", "create", "after-demote", "-"],
        Some(b"v1"),
    );

    // Back on the network, node 2 learns it was demoted: it stops serving as a manager and
    // answers as a worker.
    net.heal(2).unwrap();
    eventually(
        "node 2 notices its demotion",
        Duration::from_secs(30),
        || local_state(&m[2]) == "active false",
    );
    let e = fails(&m[2], &["secret", "ls"], None);
    assert!(
        e.contains("This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state."),
        "{e}"
    );
    assert!(
        m[2].log().contains("this node was demoted"),
        "{}",
        m[2].log()
    );
    // Its certificate no longer passes the listener for raft.
    let (code, body) = raft_with_cert(net.ns(2), &certs2, &net.addr(0));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("only managers of this cluster"), "{body}");
    assert!(!managers(&m[0]).contains(&ids[2]));

    // As a worker it is up: removing it needs --force.
    eventually(
        "node 2 reports in as a worker",
        Duration::from_secs(20),
        || nodes(&m[0]).contains(&format!("{} worker - Ready", ids[2])),
    );
    let e = fails(&m[0], &["node", "rm", &ids[2]], None);
    assert!(
        e.contains(&format!(
            "rpc error: code = FailedPrecondition desc = node {} is not down and can't be removed",
            ids[2]
        )),
        "{e}"
    );
    assert_eq!(ok(&m[0], &["node", "rm", "--force", &ids[2]], None), ids[2]);
    let rows = nodes(&m[0]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let e = fails(&m[0], &["node", "inspect", &ids[2]], None);
    assert!(
        e.contains(&format!("node {} not found", ids[2])) || e.contains("No such node"),
        "{e}"
    );
    let (code, body) = raft_with_cert(net.ns(2), &certs2, &net.addr(1));
    assert_eq!(code, 403, "{body}");

    // A follower demotes itself: the request goes to the leader.
    let o = ok(&m[1], &["node", "demote", &ids[1]], None);
    assert_eq!(o, format!("Manager {} demoted in the swarm.", ids[1]));
    assert_eq!(managers(&m[0]), vec![ids[0].clone()]);
    eventually(
        "node 1 notices its demotion",
        Duration::from_secs(30),
        || local_state(&m[1]) == "active false",
    );

    // The last manager cannot be demoted; the cluster still writes.
    let e = fails(&m[0], &["node", "demote", &ids[0]], None);
    assert!(
        e.contains("rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the swarm"),
        "{e}"
    );
    let o = m[0].lockbox(&["node", "demote", &ids[0]], None);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("attempting to demote the last manager of the swarm"),
        "{}",
        err(&o)
    );
    ok(
        &m[0],
        &["secret", "create", "one-manager", "-"],
        Some(b"v2"),
    );
    let names = secret_names(&m[0]);
    assert!(names.contains(&"after-demote".to_owned()), "{names:?}");

    // Promoting a worker is not possible (yet), and says so.
    let e = fails(&m[0], &["node", "promote", &ids[1]], None);
    assert!(e.contains("cannot be promoted"), "{e}");
}

#[test]
fn a_manager_leaves_a_swarm_of_several() {
    if !prerequisites("a_manager_leaves_a_swarm_of_several") {
        return;
    }
    let net = Net::new(3).expect("network namespaces");
    let mut m = three_managers(&net);
    let ids: Vec<String> = m.iter().map(node_id).collect();

    // Without --force: refused in dockerd's words (three reachable: no loss of quorum).
    let e = fails(&m[0], &["swarm", "leave"], None);
    assert_eq!(
        e,
        "Error response from daemon: You are attempting to leave the swarm on a node that is participating as a manager. The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message."
    );
    assert_eq!(local_state(&m[0]), "active true");

    // The leader leaves with --force: it takes itself out of the group; the others go on.
    let o = m[0].docker(&["swarm", "leave", "--force"], None);
    assert!(
        o.status.success() && out(&o) == "Node left the swarm.",
        "{} {}\n--- leaving ---\n{}\n--- node 1 ---\n{}\n--- node 2 ---\n{}",
        out(&o),
        err(&o),
        m[0].log(),
        m[1].log(),
        m[2].log()
    );
    assert_eq!(local_state(&m[0]), "inactive false");
    assert!(
        !m[0].data_dir().join("store.redb").exists() && !m[0].data_dir().join("certs").exists(),
        "local state left behind"
    );
    let rest = [&m[1], &m[2]];
    let l = leader(&rest);
    let mut two = vec![ids[1].clone(), ids[2].clone()];
    two.sort();
    eventually(
        "two managers left, the old leader a worker",
        Duration::from_secs(15),
        || managers(rest[l]) == two,
    );
    let rows = nodes(rest[l]);
    assert!(
        rows.iter()
            .any(|r| r.starts_with(&format!("{} worker", ids[0]))),
        "{rows:?}"
    );
    for (i, d) in rest.iter().enumerate() {
        ok(
            d,
            &["secret", "create", &format!("after-leave-{i}"), "-"],
            Some(b"v"),
        );
    }
    for d in rest {
        eventually("both writes everywhere", Duration::from_secs(10), || {
            let names = secret_names(d);
            names.contains(&"after-leave-0".to_owned())
                && names.contains(&"after-leave-1".to_owned())
        });
    }

    // Two managers: leaving one would lose the quorum, and the text says so.
    let e = fails(&m[2], &["swarm", "leave"], None);
    assert_eq!(
        e,
        "Error response from daemon: You are attempting to leave the swarm on a node that is participating as a manager. Removing this node leaves 1 managers out of 2. Without a Raft quorum your swarm will be inaccessible. The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message."
    );

    // The node that left can join again, as a new node, once its old entry is removed.
    // (with the lockbox CLI, which has docker's node commands)
    let o = rest[l].lockbox(&["node", "rm", "--force", &ids[0]], None);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), ids[0]);
    let token = ok(rest[l], &["swarm", "join-token", "-q", "manager"], None);
    let addr = net.addr(if l == 0 { 1 } else { 2 });
    let o = m[0].docker(
        &[
            "swarm",
            "join",
            "--token",
            &token,
            "--listen-addr",
            &net.addr(0),
            "--advertise-addr",
            &net.addr(0),
            &addr,
        ],
        None,
    );
    assert!(o.status.success(), "{}\n{}", err(&o), m[0].log());
    assert_ne!(node_id(&m[0]), ids[0]);
    eventually(
        "the rejoined node has the state",
        Duration::from_secs(10),
        || secret_names(&m[0]).contains(&"after-leave-1".to_owned()),
    );
    m[0].restart();
    assert_eq!(local_state(&m[0]), "active true");
}

#[test]
fn autolock_reaches_every_manager() {
    if !prerequisites("autolock_reaches_every_manager") {
        return;
    }
    let net = Net::new(3).expect("network namespaces");
    let mut m = three_managers(&net);

    // Turned on at the leader after the others joined: every manager takes the same key.
    let o = ok(&m[0], &["swarm", "update", "--autolock=true"], None);
    assert!(o.contains("SWMKEY-1-"), "{o}");
    let key = ok(&m[0], &["swarm", "unlock-key", "-q"], None);
    assert!(key.starts_with("SWMKEY-1-"), "{key}");
    for d in &m[1..] {
        eventually(
            "a follower takes the cluster's unlock key",
            Duration::from_secs(15),
            || out(&d.docker(&["swarm", "unlock-key", "-q"], None)) == key,
        );
    }

    // A restarted follower is locked, opens with that key and catches up.
    m[2].restart();
    assert_eq!(local_state(&m[2]), "locked false");
    ok(
        &m[0],
        &["secret", "create", "while-locked", "-"],
        Some(b"v"),
    );
    let e = fails(
        &m[2],
        &["swarm", "unlock"],
        Some(b"SWMKEY-1-7c37Cc8654o6p38HnroywCi19pllOnGtbdZEgtKxZu8\n"),
    );
    assert!(e.contains("invalid key"), "{e}");
    ok(
        &m[2],
        &["swarm", "unlock"],
        Some(format!("{key}\n").as_bytes()),
    );
    assert_eq!(local_state(&m[2]), "active true");
    eventually(
        "the unlocked follower catches up",
        Duration::from_secs(10),
        || secret_names(&m[2]).contains(&"while-locked".to_owned()),
    );

    // Rotated through a follower: the leader makes the key, every manager takes it.
    let rotated = ok(&m[1], &["swarm", "unlock-key", "--rotate", "-q"], None);
    assert!(
        rotated.starts_with("SWMKEY-1-") && rotated != key,
        "{rotated}"
    );
    for d in [&m[0], &m[2]] {
        eventually(
            "every manager takes the rotated key",
            Duration::from_secs(15),
            || out(&d.docker(&["swarm", "unlock-key", "-q"], None)) == rotated,
        );
    }

    // The leader restarts locked too; the old key no longer opens it, the new one does.
    m[0].restart();
    assert_eq!(local_state(&m[0]), "locked false");
    let e = fails(
        &m[0],
        &["swarm", "unlock"],
        Some(format!("{key}\n").as_bytes()),
    );
    assert!(e.contains("invalid key"), "{e}");
    ok(
        &m[0],
        &["swarm", "unlock"],
        Some(format!("{rotated}\n").as_bytes()),
    );
    assert_eq!(local_state(&m[0]), "active true");
    // The other two elected a leader meanwhile.
    leader(&[&m[0], &m[1], &m[2]]);
    ok(
        &m[1],
        &["secret", "create", "after-rotation", "-"],
        Some(b"v"),
    );
    eventually(
        "writes reach the unlocked leader",
        Duration::from_secs(10),
        || secret_names(&m[0]).contains(&"after-rotation".to_owned()),
    );

    // Turned off again: a restarted manager comes up unlocked.
    ok(&m[0], &["swarm", "update", "--autolock=false"], None);
    for d in &m {
        eventually("autolock off everywhere", Duration::from_secs(15), || {
            err(&d.docker(&["swarm", "unlock-key", "-q"], None)).contains("no unlock key is set")
        });
    }
    m[1].restart();
    assert_eq!(local_state(&m[1]), "active true");
}
