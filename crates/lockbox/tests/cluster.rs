//! Several managers, each in its own network namespace (a separate host on a bridge), built
//! and driven with the stock docker CLI: joins over mutual TLS, replication, writes through
//! any manager, loss of the leader, a cut link, and what travels between the nodes.

mod common;

use std::time::{Duration, Instant};

use common::Daemon;
use common::cluster::*;
use common::netns::{self, Net};

/// `GET /lockbox/v1/agent` of a node: its ID, tasks and the IDs of the secrets it holds.
fn agent_state(d: &Daemon) -> serde_json::Value {
    let (status, _, body) = d.http("GET", "/lockbox/v1/agent", None, None);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn held(d: &Daemon) -> Vec<String> {
    agent_state(d)["HeldSecrets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The audit records of `action` in a node's trail.
fn audit_records(d: &Daemon, action: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(d.data_dir().join("audit")) else {
        return out;
    };
    for e in entries.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                && v["action"] == action
            {
                out.push(v);
            }
        }
    }
    out
}

/// `docker node ls` as (manager status, status) rows, sorted.
fn node_rows(d: &Daemon) -> Vec<String> {
    let o = d.docker(
        &["node", "ls", "--format", "{{.ManagerStatus}} {{.Status}}"],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    // Not trimmed at the front: a worker's row starts with its empty manager status.
    let mut rows: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim_end().to_owned())
        .collect();
    rows.sort();
    rows
}

#[test]
fn three_managers_replicate_and_survive_the_loss_of_the_leader() {
    if !prerequisites("three_managers_replicate_and_survive_the_loss_of_the_leader") {
        return;
    }
    let net = Net::new(3).expect("network namespaces");
    let mut m = three_managers(&net);

    // Every manager sees the three, one of them the leader, all reachable from the leader.
    assert_eq!(
        node_rows(&m[0]),
        ["Leader Ready", "Reachable Ready", "Reachable Ready"]
    );
    // A follower shows what the leader sees (it asks the leader).
    for d in &m[1..] {
        assert_eq!(
            node_rows(d),
            ["Leader Ready", "Reachable Ready", "Reachable Ready"]
        );
    }

    // A write through a follower is forwarded to the leader and readable everywhere.
    let o = m[2].docker(&["secret", "create", "via-follower", "-"], Some(b"v-f"));
    assert!(o.status.success(), "{}\n{}", err(&o), m[2].log());
    for d in &m {
        eventually(
            "the follower's write reaches every manager",
            Duration::from_secs(5),
            || secret_names(d).contains(&"via-follower".to_owned()),
        );
    }

    // A stream of creates through manager 1 while the leader (manager 0) is killed.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let first_after_kill = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let killed_at = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let writer = {
        let host = m[1].host();
        let cfg = m[1].dir().join("docker-config");
        let acked = acked.clone();
        let first_after_kill = first_after_kill.clone();
        let killed_at = killed_at.clone();
        std::thread::spawn(move || {
            let ep = common::Endpoint::parse(&host).expect("endpoint");
            for i in 0..60 {
                let name = format!("stream-{i}");
                let o = common::run_docker(
                    &ep,
                    &cfg,
                    std::path::Path::new("/"),
                    &["secret".into(), "create".into(), name.clone(), "-".into()],
                    Some(b"stream-value"),
                );
                if o.status.success() {
                    acked.lock().unwrap().push(name);
                    let killed = *killed_at.lock().unwrap();
                    if let Some(k) = killed {
                        let mut f = first_after_kill.lock().unwrap();
                        if f.is_none() {
                            *f = Some(Instant::now());
                            let _ = k;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(800));
    // Make sure the write right after the kill counts from the kill.
    {
        let mut k = killed_at.lock().unwrap();
        m[0].kill9();
        *k = Some(Instant::now());
    }
    writer.join().unwrap();
    let killed = killed_at.lock().unwrap().unwrap();
    let resumed = first_after_kill
        .lock()
        .unwrap()
        .expect("no write succeeded after the leader was killed");
    let gap = resumed.duration_since(killed);
    eprintln!("writes resumed {gap:?} after the leader was killed");
    assert!(
        gap < Duration::from_secs(3),
        "writes resumed only after {gap:?}"
    );

    // Every acknowledged create is on both survivors.
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "too few writes acknowledged: {}",
        acked.len()
    );
    for d in &m[1..] {
        let names = secret_names(d);
        for a in &acked {
            assert!(names.contains(a), "{a} acknowledged but missing");
        }
    }
    // The survivors elected a new leader; the old one shows as down.
    let rows = node_rows(&m[1]);
    assert!(rows.iter().any(|r| r == "Leader Ready"), "{rows:?}");

    // The old leader comes back as a follower and catches up.
    m[0].restart();
    let want = secret_names(&m[1]);
    eventually(
        "the restarted manager catches up",
        Duration::from_secs(10),
        || secret_names(&m[0]) == want,
    );
    eventually(
        "three reachable managers again",
        Duration::from_secs(10),
        || {
            let leader = m.iter().find(|d| {
                node_rows(d).contains(&"Leader Ready".to_owned()) && {
                    let o = d.docker(
                        &["node", "ls", "--format", "{{.Self}} {{.ManagerStatus}}"],
                        None,
                    );
                    out(&o).lines().any(|l| l == "true Leader")
                }
            });
            leader.is_some_and(|l| {
                node_rows(l) == ["Leader Ready", "Reachable Ready", "Reachable Ready"]
            })
        },
    );
}

#[test]
fn joins_with_a_wrong_token_or_another_clusters_token_are_refused() {
    if !prerequisites("joins_with_a_wrong_token_or_another_clusters_token_are_refused") {
        return;
    }
    let net = Net::new(3).expect("network namespaces");
    let leader = manager(&net, 0, true);
    let other_cluster = manager(&net, 1, true);
    let joiner = manager(&net, 2, false);
    let token = out(&leader.docker(&["swarm", "join-token", "-q", "manager"], None));

    // Right CA digest, wrong secret.
    let (prefix, _) = token.rsplit_once('-').unwrap();
    let wrong = format!("{prefix}-{}", "0".repeat(25));
    let o = join(&net, &joiner, 2, &wrong);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("A valid join token is necessary to join this cluster"),
        "{}",
        err(&o)
    );

    // Another cluster's token: its CA digest does not match the manager we dial.
    let foreign = out(&other_cluster.docker(&["swarm", "join-token", "-q", "manager"], None));
    let o = join(&net, &joiner, 2, &foreign);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("remote CA does not match fingerprint"),
        "{}",
        err(&o)
    );

    // A node certificate of another cluster's CA is refused at the handshake: it cannot send
    // Raft messages (or anything else that needs a certificate of this cluster).
    let foreign_certs = other_cluster.data_dir().join("certs");
    let (code, body) = post_with_cert(net.ns(1), &foreign_certs, &net.addr(0), "/raft/vote");
    assert_eq!(code, 0, "{body}");
    eventually(
        "the leader logs the refused handshake and why",
        Duration::from_secs(5),
        || {
            leader
                .log()
                .lines()
                .any(|l| l.contains("cluster TLS handshake refused") && l.contains("UnknownIssuer"))
        },
    );

    // Garbage.
    let o = join(&net, &joiner, 2, "SWMTKN-1-nonsense");
    assert!(!o.status.success());
    assert!(err(&o).contains("invalid join token"), "{}", err(&o));

    // Nothing changed: the joiner is in no swarm, the cluster still has one node.
    let o = joiner.docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"], None);
    assert_eq!(out(&o), "inactive");
    assert_eq!(node_rows(&leader), ["Leader Ready"]);
    assert!(
        leader
            .log()
            .contains("refused a join with an invalid token")
    );

    // And the right token still works.
    let o = join(&net, &joiner, 2, &token);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(node_rows(&leader).len(), 2);
}

#[test]
fn a_cut_off_manager_heals_and_traffic_between_managers_is_encrypted() {
    if !prerequisites("a_cut_off_manager_heals_and_traffic_between_managers_is_encrypted") {
        return;
    }
    if std::process::Command::new("tshark")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        panic!("tshark is needed (scripts/test installs it: apt-get install tshark)");
    }
    let net = Net::new(3).expect("network namespaces");
    let m = three_managers(&net);
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("managers.pcap");
    let capture = net.capture(&pcap).expect("capture");

    // A distinctive value crosses the wire twice (leader → each follower).
    let value = b"plaintext-canary-7f3a9c2e5b";
    let o = m[1].docker(&["secret", "create", "canary", "-"], Some(value));
    assert!(o.status.success(), "{}", err(&o));

    // Cut manager 2 off: the other two keep a quorum and keep writing.
    net.cut(2).unwrap();
    let o = m[0].docker(&["secret", "create", "while-cut", "-"], Some(value));
    assert!(o.status.success(), "{}", err(&o));
    eventually(
        "the leader sees manager 2 as down",
        Duration::from_secs(15),
        || node_rows(&m[0]).contains(&"Unreachable Down".to_owned()),
    );
    assert!(!secret_names(&m[2]).contains(&"while-cut".to_owned()));

    // Heal: manager 2 catches up.
    net.heal(2).unwrap();
    eventually(
        "manager 2 catches up after the cut",
        Duration::from_secs(15),
        || secret_names(&m[2]).contains(&"while-cut".to_owned()),
    );
    eventually("manager 2 reachable again", Duration::from_secs(15), || {
        node_rows(&m[0]) == ["Leader Ready", "Reachable Ready", "Reachable Ready"]
    });
    std::thread::sleep(Duration::from_millis(500));
    netns::stop_capture(capture);

    // The leader said once that manager 2 stopped answering and once that it answers again,
    // not at every retry.
    let log = m[0].log();
    let lost = log.matches("manager unreachable; retrying").count();
    let back = log.matches("manager answers again").count();
    assert!(
        (1..=2).contains(&lost),
        "{lost} reports of the lost manager:\n{log}"
    );
    assert!(
        (1..=2).contains(&back),
        "{back} reports of its return:\n{log}"
    );
    assert!(
        !log.contains("Unreachable node"),
        "openraft's retries reached the log:\n{log}"
    );

    let bytes = std::fs::read(&pcap).unwrap();
    assert!(
        bytes.len() > 10_000,
        "the capture is too small: {} bytes",
        bytes.len()
    );
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!has(value), "the secret value crossed the wire in clear");
    assert!(!has(b"canary"), "the secret name crossed the wire in clear");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(value);
    assert!(
        !has(&b64.as_bytes()[..20]),
        "the value crossed the wire in base64"
    );
    // The capture did see the managers talking: TLS records on port 2377.
    let o = std::process::Command::new("tshark")
        .args(["-r"])
        .arg(&pcap)
        .args([
            "-Y",
            "tls && tcp.port == 2377",
            "-T",
            "fields",
            "-e",
            "tls.record.version",
        ])
        .output()
        .unwrap();
    let tls_records = String::from_utf8_lossy(&o.stdout).lines().count();
    assert!(
        tls_records > 50,
        "only {tls_records} TLS records between managers"
    );
}

#[test]
fn workers_receive_only_the_secrets_their_tasks_need_and_lost_nodes_are_replaced() {
    if !prerequisites(
        "workers_receive_only_the_secrets_their_tasks_need_and_lost_nodes_are_replaced",
    ) {
        return;
    }
    let net = Net::new(5).expect("network namespaces");
    // Three managers (the first keeps an audit trail), two workers (with trails).
    let leader = node_daemon(&net, 0, true, true);
    let mtoken = out(&leader.docker(&["swarm", "join-token", "-q", "manager"], None));
    let wtoken = out(&leader.docker(&["swarm", "join-token", "-q", "worker"], None));
    let mut managers = vec![leader];
    for i in 1..3 {
        let d = manager(&net, i, false);
        let o = join(&net, &d, i, &mtoken);
        assert!(o.status.success(), "{}", err(&o));
        managers.push(d);
    }
    let mut workers = Vec::new();
    for i in 3..5 {
        let d = node_daemon(&net, i, false, true);
        let o = join(&net, &d, i, &wtoken);
        assert!(o.status.success(), "{}\n{}", err(&o), d.log());
        assert_eq!(out(&o), "This node joined a swarm as a worker.");
        workers.push(d);
    }
    let leader = &managers[0];
    assert_eq!(
        node_rows(leader),
        [
            " Ready",
            " Ready",
            "Leader Ready",
            "Reachable Ready",
            "Reachable Ready"
        ]
    );
    for follower in &managers[1..] {
        assert_eq!(node_rows(follower), node_rows(leader));
    }
    // A worker is no manager: the cluster's state is not there.
    let o = workers[0].docker(&["secret", "ls"], None);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("Worker nodes can't be used to view or modify cluster state"),
        "{}",
        err(&o)
    );
    let o = workers[0].docker(
        &[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
        ],
        None,
    );
    assert_eq!(out(&o), "active false");

    let w0 = agent_state(&workers[0])["NodeID"]
        .as_str()
        .unwrap()
        .to_owned();
    let w1 = agent_state(&workers[1])["NodeID"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = leader.docker(&["node", "update", "--label-add", "zone=a", &w0], None);
    assert!(o.status.success(), "{}", err(&o));

    let value = b"worker-canary-51c2d9";
    let o = leader.docker(&["secret", "create", "w-secret", "-"], Some(value));
    assert!(o.status.success(), "{}", err(&o));
    let secret_id = out(&o);
    let o = leader.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "zonal",
            "--replicas",
            "2",
            "--constraint",
            "node.labels.zone==a",
            "--secret",
            "w-secret",
            "host",
            "sh",
            "-c",
            "echo \"got $(cat /run/secrets/w-secret)\"; sleep 300",
        ],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    eventually(
        "both tasks run on the labelled worker",
        Duration::from_secs(20),
        || {
            let o = leader.docker(
                &[
                    "service",
                    "ps",
                    "zonal",
                    "--format",
                    "{{.Node}} {{.CurrentState}}",
                ],
                None,
            );
            let tasks = agent_state(&workers[0])["Tasks"]
                .as_array()
                .map_or(0, |a| a.len());
            out(&o).lines().filter(|l| l.contains("Running")).count() == 2 && tasks == 2
        },
    );
    // The task read the value from its tmpfs; its output reached the manager.
    eventually(
        "the tasks' output reaches service logs",
        Duration::from_secs(10),
        || {
            let o = leader.docker(&["service", "logs", "--raw", "zonal"], None);
            out(&o)
                .lines()
                .filter(|l| *l == "got worker-canary-51c2d9")
                .count()
                == 2
        },
    );
    // Only the worker running the tasks holds the secret; the other never did.
    assert_eq!(held(&workers[0]), std::slice::from_ref(&secret_id));
    for _ in 0..5 {
        assert!(held(&workers[1]).is_empty());
        std::thread::sleep(Duration::from_millis(200));
    }
    let dispatched = audit_records(leader, "secret.dispatch");
    assert!(!dispatched.is_empty(), "no dispatch recorded");
    for r in &dispatched {
        let text = r.to_string();
        assert!(text.contains(&w0), "dispatched to another node: {text}");
        assert!(
            !text.contains(&w1),
            "dispatched to the other worker: {text}"
        );
        assert!(
            !text.contains("worker-canary"),
            "a value in the audit trail"
        );
    }
    let delivered = audit_records(&workers[0], "secret.deliver");
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    assert!(audit_records(&workers[1], "secret.deliver").is_empty());
    // Nothing of the value on either worker's disk.
    for w in &workers {
        let o = std::process::Command::new("grep")
            .args(["-r", "-l", "worker-canary"])
            .arg(w.dir())
            .output()
            .unwrap();
        assert!(
            out(&o).is_empty(),
            "the value is on a worker's disk: {}",
            out(&o)
        );
    }

    // The service goes: the worker drops the secret.
    let o = leader.docker(&["service", "rm", "zonal"], None);
    assert!(o.status.success(), "{}", err(&o));
    eventually(
        "the worker drops the secret once no task needs it",
        Duration::from_secs(15),
        || held(&workers[0]).is_empty(),
    );

    // A worker dies: its tasks are replaced on the other one.
    let o = leader.docker(
        &[
            "service",
            "create",
            "-d",
            "--name",
            "spread",
            "--replicas",
            "2",
            "--constraint",
            "node.role==worker",
            "host",
            "sleep",
            "300",
        ],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    eventually("one task per worker", Duration::from_secs(20), || {
        agent_state(&workers[0])["Tasks"]
            .as_array()
            .map_or(0, |a| a.len())
            >= 1
            && agent_state(&workers[1])["Tasks"]
                .as_array()
                .map_or(0, |a| a.len())
                == 1
    });
    workers[0].kill9();
    eventually(
        "the dead worker shows as down",
        Duration::from_secs(20),
        || node_rows(leader).contains(&" Down".to_owned()),
    );
    eventually(
        "its task is replaced on the live worker",
        Duration::from_secs(20),
        || {
            let o = leader.docker(
                &[
                    "service",
                    "ps",
                    "spread",
                    "--filter",
                    "desired-state=running",
                    "--format",
                    "{{.Node}} {{.CurrentState}}",
                ],
                None,
            );
            let running = out(&o).lines().filter(|l| l.contains("Running")).count();
            running == 2
                && agent_state(&workers[1])["Tasks"]
                    .as_array()
                    .map_or(0, |a| a.len())
                    >= 2
        },
    );
}

#[test]
fn force_new_cluster_recovers_an_autolocked_survivor() {
    if !prerequisites("force_new_cluster_recovers_an_autolocked_survivor") {
        return;
    }
    let net = Net::new(3).expect("network namespaces");
    let first = manager(&net, 0, true);
    let o = first.docker(&["swarm", "update", "--autolock=true"], None);
    assert!(o.status.success(), "{}", err(&o));
    let key = out(&first.docker(&["swarm", "unlock-key", "-q"], None));
    assert!(key.starts_with("SWMKEY-1-"), "{key}");
    let token = out(&first.docker(&["swarm", "join-token", "-q", "manager"], None));
    let mut m = vec![first];
    for i in 1..3 {
        let d = manager(&net, i, false);
        let o = join(&net, &d, i, &token);
        assert!(o.status.success(), "{}", err(&o));
        m.push(d);
    }
    let o = m[0].docker(&["secret", "create", "kept", "-"], Some(b"kept-value"));
    assert!(o.status.success(), "{}", err(&o));
    eventually("replicated to manager 2", Duration::from_secs(5), || {
        secret_names(&m[2]).contains(&"kept".to_owned())
    });

    // Two of three managers are lost: no quorum.
    m[0].kill9();
    m[1].kill9();
    let o = m[2].docker(&["secret", "create", "no-quorum", "-"], Some(b"x"));
    assert!(!o.status.success());
    assert!(
        err(&o).contains("The swarm does not have a leader"),
        "{}",
        err(&o)
    );

    // The survivor restarts locked, is unlocked with the cluster's key, and is made the
    // only manager.
    m[2].restart();
    let o = m[2].docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"], None);
    assert_eq!(out(&o), "locked");
    let o = m[2].docker(&["swarm", "unlock"], Some(format!("{key}\n").as_bytes()));
    assert!(o.status.success(), "{}", err(&o));
    let o = m[2].docker(
        &[
            "swarm",
            "init",
            "--force-new-cluster",
            "--advertise-addr",
            &net.addr(2),
        ],
        None,
    );
    assert!(o.status.success(), "{}\n{}", err(&o), m[2].log());
    assert_eq!(node_rows(&m[2]), ["Leader Ready"]);
    assert_eq!(secret_names(&m[2]), ["kept"]);
    let o = m[2].docker(&["secret", "create", "after-recovery", "-"], Some(b"y"));
    assert!(o.status.success(), "{}", err(&o));

    // It stays a one-manager cluster across a restart (still autolocked).
    m[2].restart();
    let o = m[2].docker(&["swarm", "unlock"], Some(format!("{key}\n").as_bytes()));
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(secret_names(&m[2]), ["after-recovery", "kept"]);
    assert_eq!(node_rows(&m[2]), ["Leader Ready"]);
}
