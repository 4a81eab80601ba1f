//! Changing the managers of a swarm with the stock docker CLI, each manager in its own network
//! namespace: `node demote` (and swarm's safeguards: the last manager, quorum), `node promote`
//! (a worker becomes a voting manager with its own replica, and can be demoted again),
//! `node rm` (a manager must be demoted first, a node that is up needs `--force`, a removed
//! node's certificate no longer passes the cluster listener), `swarm leave` of one manager of
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

/// The audit records of `action` in a node's trail.
fn audit_records(d: &Daemon, action: &str) -> Vec<serde_json::Value> {
    let mut records = Vec::new();
    let Ok(entries) = std::fs::read_dir(d.data_dir().join("audit")) else {
        return records;
    };
    for e in entries.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                && v["action"] == action
            {
                records.push(v);
            }
        }
    }
    records
}

/// Prints the daemons' logs if the test fails while it is alive.
struct LogsOnFailure(Vec<(String, PathBuf)>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, path) in &self.0 {
                let log = std::fs::read_to_string(path).unwrap_or_default();
                eprintln!("--- {name} ---\n{log}");
            }
        }
    }
}

/// Creates secret `name` through `d`, retrying while the swarm elects a leader (a try that
/// timed out may have been applied: then the name is taken).
fn create_eventually(d: &Daemon, name: &str) {
    eventually(
        &format!("secret {name} created"),
        Duration::from_secs(20),
        || {
            let o = d.docker(&["secret", "create", name, "-"], Some(b"v"));
            o.status.success() || err(&o).contains("already exists")
        },
    );
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
    post_with_cert(ns, certs, addr, "/raft/vote")
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

    // The demoted node can be promoted again: it becomes a manager with the state anew.
    let o = ok(&m[0], &["node", "promote", &ids[1]], None);
    assert_eq!(
        o,
        format!("Node {} promoted to a manager in the swarm.", ids[1])
    );
    eventually("node 1 is a manager again", Duration::from_secs(30), || {
        local_state(&m[1]) == "active true"
    });
    eventually("node 1 has the state", Duration::from_secs(20), || {
        let o = m[1].docker(&["secret", "ls", "--format", "{{.Name}}"], None);
        o.status.success() && out(&o).lines().any(|l| l == "one-manager")
    });
    let mut two = vec![ids[0].clone(), ids[1].clone()];
    two.sort();
    assert_eq!(managers(&m[0]), two);
    eventually(
        "the leader hears from node 1 as a manager",
        Duration::from_secs(20),
        || nodes(&m[0]).contains(&format!("{} manager Reachable Ready", ids[1])),
    );
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

#[test]
fn a_worker_is_promoted_votes_survives_the_loss_of_a_manager_and_is_demoted_again() {
    if !prerequisites(
        "a_worker_is_promoted_votes_survives_the_loss_of_a_manager_and_is_demoted_again",
    ) {
        return;
    }
    let net = Net::new(4).expect("network namespaces");
    // Two managers, a worker (keeping an audit trail) to promote, and a worker that dies.
    let m0 = manager(&net, 0, true);
    let mtoken = ok(&m0, &["swarm", "join-token", "-q", "manager"], None);
    let wtoken = ok(&m0, &["swarm", "join-token", "-q", "worker"], None);
    let m1 = manager(&net, 1, false);
    let o = join(&net, &m1, 1, &mtoken);
    assert!(o.status.success(), "{}\n{}", err(&o), m1.log());
    let w = node_daemon(&net, 2, false, true);
    let o = join(&net, &w, 2, &wtoken);
    assert!(o.status.success(), "{}\n{}", err(&o), w.log());
    assert_eq!(out(&o), "This node joined a swarm as a worker.");
    let mut gone = node_daemon(&net, 3, false, false);
    let o = join(&net, &gone, 3, &wtoken);
    assert!(o.status.success(), "{}\n{}", err(&o), gone.log());
    let (wid, gid) = (node_id(&w), node_id(&gone));
    gone.kill9();
    let mut m = vec![m0, m1, w];
    let _logs = LogsOnFailure(vec![
        ("manager 0".into(), m[0].log_path()),
        ("manager 1".into(), m[1].log_path()),
        ("promoted".into(), m[2].log_path()),
    ]);

    // Autolock on: the promoted node's keys are wrapped with the cluster's unlock key too.
    ok(&m[0], &["swarm", "update", "--autolock=true"], None);
    let key = ok(&m[0], &["swarm", "unlock-key", "-q"], None);
    assert!(key.starts_with("SWMKEY-1-"), "{key}");

    // The worker's certificate is no manager's: its raft messages are refused.
    let keep = tempfile::tempdir().unwrap();
    let (before, after) = (keep.path().join("before"), keep.path().join("after"));
    let worker_certs = save_certs(&m[2], &before);
    let (code, body) = raft_with_cert(net.ns(2), &worker_certs, &net.addr(0));
    assert_eq!(code, 403, "{body}");

    // Promoted through the follower (forwarded to the leader) while the worker is cut off:
    // it is recorded as a manager at once and becomes one at its next session.
    assert_eq!(leader(&[&m[0], &m[1]]), 0);
    net.cut(2).unwrap();
    let o = ok(&m[1], &["node", "promote", &wid], None);
    assert_eq!(o, format!("Node {wid} promoted to a manager in the swarm."));
    assert!(managers(&m[0]).contains(&wid), "{:?}", nodes(&m[0]));
    assert_eq!(local_state(&m[2]), "active false");
    net.heal(2).unwrap();
    eventually(
        "the promoted worker serves as a manager",
        Duration::from_secs(20),
        || local_state(&m[2]) == "active true",
    );
    eventually(
        "the leader hears from the promoted node in the raft group",
        Duration::from_secs(20),
        || nodes(&m[0]).contains(&format!("{wid} manager Reachable Ready")),
    );
    let info = ok(&m[2], &["info"], None);
    assert!(info.contains("Is Manager: true"), "{info}");
    assert!(
        m[2].log().contains("this node was promoted"),
        "{}",
        m[2].log()
    );
    let promoted = audit_records(&m[2], "swarm.promoted");
    assert_eq!(promoted.len(), 1, "{promoted:?}");
    assert!(
        promoted[0]["objects"].to_string().contains(&wid),
        "{promoted:?}"
    );
    // Its new certificate is a manager's.
    let manager_certs = save_certs(&m[2], &after);
    let (code, body) = raft_with_cert(net.ns(2), &manager_certs, &net.addr(0));
    assert!(code != 403 && code != 0, "{code} {body}");
    assert_eq!(ok(&m[2], &["swarm", "unlock-key", "-q"], None), key);

    // It replicates both ways.
    ok(
        &m[2],
        &["secret", "create", "from-promoted", "-"],
        Some(b"v1"),
    );
    ok(
        &m[1],
        &["secret", "create", "to-promoted", "-"],
        Some(b"v2"),
    );
    for d in &m {
        eventually("both writes everywhere", Duration::from_secs(10), || {
            let names = secret_names(d);
            names.contains(&"from-promoted".to_owned()) && names.contains(&"to-promoted".to_owned())
        });
    }

    // A worker that is down cannot be promoted.
    eventually(
        "the dead worker shows as down",
        Duration::from_secs(20),
        || nodes(&m[0]).contains(&format!("{gid} worker - Down")),
    );
    let e = fails(&m[0], &["node", "promote", &gid], None);
    assert!(
        e.contains(&format!(
            "rpc error: code = FailedPrecondition desc = node {gid} is down and can't be promoted"
        )),
        "{e}"
    );
    assert!(!managers(&m[0]).contains(&gid));

    // Restarted, it is an autolocked manager: the cluster's key opens it.
    m[2].restart();
    assert_eq!(local_state(&m[2]), "locked false");
    ok(
        &m[2],
        &["swarm", "unlock"],
        Some(format!("{key}\n").as_bytes()),
    );
    assert_eq!(local_state(&m[2]), "active true");

    // An original manager dies (the leader, unless the promoted node leads): the other one
    // and the promoted node are two votes of three, a quorum. Writes go on.
    let l = leader(&[&m[0], &m[1], &m[2]]);
    let victim = if l < 2 { l } else { 0 };
    let other = 1 - victim;
    m[victim].kill9();
    create_eventually(&m[other], "after-loss");
    eventually(
        "the write reaches the promoted node",
        Duration::from_secs(10),
        || secret_names(&m[2]).contains(&"after-loss".to_owned()),
    );
    leader(&[&m[other], &m[2]]);

    // The dead manager comes back; then the promoted node is demoted again.
    m[victim].restart();
    ok(
        &m[victim],
        &["swarm", "unlock"],
        Some(format!("{key}\n").as_bytes()),
    );
    eventually(
        "the restarted manager catches up",
        Duration::from_secs(10),
        || secret_names(&m[victim]).contains(&"after-loss".to_owned()),
    );
    let mut demoted = String::new();
    eventually(
        "the promoted node is demoted",
        Duration::from_secs(20),
        || {
            // Refused for the quorum until the leader hears from the restarted manager.
            let o = m[other].docker(&["node", "demote", &wid], None);
            demoted = out(&o);
            o.status.success()
        },
    );
    assert_eq!(demoted, format!("Manager {wid} demoted in the swarm."));
    eventually(
        "the demoted node continues as a worker",
        Duration::from_secs(30),
        || local_state(&m[2]) == "active false",
    );
    let l = leader(&[&m[0], &m[1]]);
    eventually(
        "the leader hears from it as a worker",
        Duration::from_secs(20),
        || nodes(&m[l]).contains(&format!("{wid} worker - Ready")),
    );
    assert_eq!(audit_records(&m[2], "swarm.demoted").len(), 1);
    create_eventually(&m[other], "after-demote");
}
