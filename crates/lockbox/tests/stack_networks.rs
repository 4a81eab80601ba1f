//! Networks on the docker executor, black box: the stock docker CLI deploys a stack (and
//! creates services on an overlay network) against lockbox, whose docker executor runs the
//! tasks on a private plain Docker Engine (`../shared/tools/reference-swarm start-plain`,
//! which imports `busybox:local`). Each lockbox network becomes a local bridge network of the
//! same name on the engine, so the containers reach each other by service name; it goes away
//! with the last container on it.
//!
//! Needs root (dockerd, the secrets tmpfs). Skips, saying why, when that or the engine is not
//! available.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::Daemon;
use common::engine::{Engine, daemon_with, lines};

/// The engine's state directory prefix.
const ENGINE_PREFIX: &str = "lbxnet-engine-";

/// What these tests ask of the engine.
trait EngineExt {
    fn all_containers(&self) -> Vec<String>;
    fn networks(&self) -> Vec<String>;
    fn containers_of(&self, service: &str) -> Vec<String>;
}

impl EngineExt for Engine {
    fn all_containers(&self) -> Vec<String> {
        lines(&ok(&self.docker(&["ps", "-aq", "--no-trunc"])))
    }

    /// The names of the engine's networks, sorted.
    fn networks(&self) -> Vec<String> {
        let mut v = lines(&ok(&self.docker(&[
            "network",
            "ls",
            "--format",
            "{{.Name}}",
        ])));
        v.sort();
        v
    }

    /// The containers of a lockbox service.
    fn containers_of(&self, service: &str) -> Vec<String> {
        let filter = format!("label=com.lockbox.service.name={service}");
        lines(&ok(&self.docker(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &filter,
        ])))
    }
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A service's output as `docker service logs --raw` gives it through lockbox.
fn logs(d: &Daemon, service: &str) -> String {
    let o = d.docker(&["service", "logs", "--raw", service], None);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The engine network `name`'s driver, internal flag and labels.
fn engine_network(engine: &Engine, name: &str) -> (String, serde_json::Value) {
    let o = ok(&engine.docker(&[
        "network",
        "inspect",
        "-f",
        "{{.Driver}} {{json .Labels}}",
        name,
    ]));
    let (driver, labels) = o.trim().split_once(' ').unwrap();
    (driver.to_owned(), serde_json::from_str(labels).unwrap())
}

/// A lockbox network's ID.
fn lockbox_network_id(d: &Daemon, name: &str) -> String {
    ok(&d.docker(&["network", "inspect", "-f", "{{.Id}}", name], None))
        .trim()
        .to_owned()
}

const SECRET: &str = "lbxnet-secret-value-7f3a";

#[test]
fn stack_services_reach_each_other_by_service_name() {
    let test = "stack_services_reach_each_other_by_service_name";
    let Some(engine) = Engine::start(test, ENGINE_PREFIX) else {
        return;
    };
    let d = daemon_with(&engine);
    let project = tempfile::tempdir().unwrap();
    let secret_file = project.path().join("page.txt");
    std::fs::write(&secret_file, SECRET).unwrap();
    let compose = project.path().join("compose.yml");
    std::fs::write(
        &compose,
        format!(
            r#"services:
  web:
    image: busybox:local
    command: ["busybox", "httpd", "-f", "-p", "8080", "-h", "/run/secrets"]
    stop_grace_period: 1s
    secrets:
      - page
  client:
    image: busybox:local
    command: ["sh", "-c", "while true; do busybox wget -qO- http://web:8080/page; echo; sleep 1; done"]
    stop_grace_period: 1s
secrets:
  page:
    file: {}
"#,
            secret_file.display()
        ),
    )
    .unwrap();
    let compose = compose.display().to_string();
    ok(&d.docker(&["stack", "deploy", "-c", &compose, "app"], None));

    // The client reaches `web` by its short service name and gets the secret web serves.
    wait_for(
        "the client to fetch the secret from web",
        Duration::from_secs(90),
        || logs(&d, "app_client").contains(SECRET).then_some(()),
    );

    // On the engine: a bridge network of the stack network's name, labelled for this daemon
    // and this lockbox network, with both containers on it under their service names.
    let (driver, labels) = engine_network(&engine, "app_default");
    assert_eq!(driver, "bridge");
    let instance = lockbox_docker::instance_of(&d.data_dir());
    assert_eq!(
        labels["com.lockbox.instance"],
        instance.as_str(),
        "{labels}"
    );
    assert_eq!(
        labels["com.lockbox.network.id"],
        lockbox_network_id(&d, "app_default").as_str(),
        "{labels}"
    );
    assert_eq!(labels["com.docker.stack.namespace"], "app", "{labels}");
    let web = engine.containers_of("app_web");
    assert_eq!(web.len(), 1, "{web:?}");
    let aliases = ok(&engine.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.NetworkMode}} {{json (index .NetworkSettings.Networks \"app_default\").Aliases}}",
        &web[0],
    ]));
    assert!(
        aliases.starts_with("app_default [\"web\",\"app_web\""),
        "{aliases}"
    );
    // The full service name resolves too.
    let client = engine.containers_of("app_client");
    assert_eq!(client.len(), 1, "{client:?}");
    let fetched = ok(&engine.docker(&[
        "exec",
        &client[0],
        "busybox",
        "wget",
        "-qO-",
        "http://app_web:8080/page",
    ]));
    assert_eq!(fetched, SECRET);

    // Removing the stack removes the containers and the engine network.
    ok(&d.docker(&["stack", "rm", "app"], None));
    wait_for(
        "the stack's containers and engine network to go",
        Duration::from_secs(60),
        || {
            (engine.all_containers().is_empty()
                && !engine.networks().contains(&"app_default".to_owned()))
            .then_some(())
        },
    );
}

#[test]
fn services_on_an_overlay_network_and_a_users_network() {
    let test = "services_on_an_overlay_network_and_a_users_network";
    let Some(engine) = Engine::start(test, ENGINE_PREFIX) else {
        return;
    };
    let d = daemon_with(&engine);
    ok(&d.docker(
        &["secret", "create", "lbxnet-s", "-"],
        Some(SECRET.as_bytes()),
    ));
    ok(&d.docker(&["network", "create", "-d", "overlay", "mynet"], None));
    let create = |args: &[&str]| {
        let mut a = vec![
            "service",
            "create",
            "-d",
            "--stop-grace-period",
            "1s",
            "--network",
        ];
        a.extend_from_slice(args);
        ok(&d.docker(&a, None));
    };
    create(&[
        "mynet",
        "--name",
        "lbxnet-srv",
        "--secret",
        "lbxnet-s",
        "busybox:local",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/run/secrets",
    ]);
    create(&[
        "mynet",
        "--name",
        "lbxnet-cli",
        "busybox:local",
        "sh",
        "-c",
        "while true; do busybox wget -qO- http://lbxnet-srv:8080/lbxnet-s; echo; sleep 1; done",
    ]);
    wait_for(
        "the client to reach the server by its service name",
        Duration::from_secs(90),
        || logs(&d, "lbxnet-cli").contains(SECRET).then_some(()),
    );
    let (driver, labels) = engine_network(&engine, "mynet");
    assert_eq!(driver, "bridge");
    assert_eq!(
        labels["com.lockbox.network.id"],
        lockbox_network_id(&d, "mynet").as_str(),
        "{labels}"
    );

    // A network of the same name that the user made on the engine is not lockbox's to use:
    // the task fails, naming it, and the user's network is left alone.
    ok(&engine.docker(&["network", "create", "usernet"]));
    ok(&d.docker(&["network", "create", "-d", "overlay", "usernet"], None));
    create(&[
        "usernet",
        "--name",
        "lbxnet-user",
        "--restart-condition",
        "none",
        "busybox:local",
        "true",
    ]);
    let err = wait_for(
        "the task on the user's network to fail",
        Duration::from_secs(60),
        || {
            let o = d.docker(
                &[
                    "service",
                    "ps",
                    "--no-trunc",
                    "--format",
                    "{{.CurrentState}}|{{.Error}}",
                    "lbxnet-user",
                ],
                None,
            );
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            out.starts_with("Failed").then_some(out)
        },
    );
    assert!(
        err.contains("network usernet already exists on the Docker Engine and is not one of this lockbox daemon's"),
        "{err}"
    );
    let (_, labels) = engine_network(&engine, "usernet");
    assert_eq!(labels, serde_json::json!({}));

    // Removed services take the engine network with their last container.
    ok(&d.docker(
        &["service", "rm", "lbxnet-srv", "lbxnet-cli", "lbxnet-user"],
        None,
    ));
    wait_for(
        "the containers and the engine network to go",
        Duration::from_secs(60),
        || {
            (engine.all_containers().is_empty() && !engine.networks().contains(&"mynet".to_owned()))
                .then_some(())
        },
    );
    assert!(engine.networks().contains(&"usernet".to_owned()));
}
