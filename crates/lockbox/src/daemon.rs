//! `lockbox daemon`: the composition root. Starts the manager (keys, store, Raft), serves the
//! Docker Engine API, and shuts down cleanly on SIGTERM or SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use lockbox_api::{AppState, Listen};
use lockbox_core::{LocalState, Manager, ManagerConfig};
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::DaemonArgs;
use crate::{logging, paths};

pub(crate) async fn run(a: DaemonArgs, hosts: &[String]) -> anyhow::Result<ExitCode> {
    logging::init(&a.log_level);
    // A process that holds secret values must not leave core dumps or be ptrace-readable by
    // other processes of the same user.
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::warn!(error = %e, "could not disable core dumps");
    }
    let data_dir = a.data_dir.unwrap_or_else(paths::data_dir);
    let listens: Vec<Listen> = if hosts.is_empty() {
        vec![Listen::Unix(paths::socket())]
    } else {
        hosts
            .iter()
            .map(|h| Listen::parse(h))
            .collect::<Result<_, _>>()?
    };
    let hostname = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let mut executors: Vec<Arc<dyn lockbox_core::Executor>> = Vec::new();
    match crate::executors::ProcessExecutor::new() {
        Ok(e) => executors.push(Arc::new(e)),
        Err(e) => {
            tracing::warn!(error = %e, "the process executor is unavailable; image `host` tasks will fail")
        }
    }
    if let Some(host) = &a.docker_host {
        let cfg = lockbox_docker::DockerConfig::new(host, &data_dir);
        let docker = lockbox_docker::DockerExecutor::new(cfg).map_err(anyhow::Error::msg)?;
        // Before any task runs: containers and secret mounts a killed daemon left behind.
        let report = docker.cleanup().await;
        if report.containers + report.mounts > 0 {
            tracing::info!(
                containers = report.containers,
                mounts = report.mounts,
                "removed the docker tasks of a previous run"
            );
        }
        for p in &report.problems {
            tracing::warn!(problem = %p, "docker executor");
        }
        executors.push(Arc::new(docker));
    }
    match lockbox_exec::cleanup_stale(std::path::Path::new(lockbox_exec::DEFAULT_STATE_DIR)) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            removed = n,
            "removed leftovers of tasks from a previous run"
        ),
        Err(e) => tracing::debug!(error = %e, "no task leftovers to clean"),
    }
    let manager = Manager::start_with(
        ManagerConfig {
            data_dir: data_dir.clone(),
            auto_init: !a.no_auto_init,
            hostname,
            advertise_addr: a.advertise_addr.clone(),
            snapshot_interval: a.snapshot_interval,
            audit_dir: (!a.no_audit).then(|| data_dir.join("audit")),
        },
        executors,
    )
    .await
    .with_context(|| format!("cannot start lockbox on {}", data_dir.display()))?;
    let manager = Arc::new(manager);
    let state = AppState::new(manager.clone());
    let router = lockbox_api::router(state);

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
    };

    let status = match manager.local_state().await {
        LocalState::Active => "active",
        LocalState::Locked => "locked (run `lockbox swarm unlock` or `docker swarm unlock`)",
        LocalState::Inactive => "not in a swarm (run `lockbox swarm init` or `docker swarm init`)",
    };
    eprintln!(
        "lockbox {} daemon, data in {}, swarm {status}",
        env!("CARGO_PKG_VERSION"),
        data_dir.display()
    );
    for l in &listens {
        eprintln!("API listening on {l}");
    }
    if let Some(first) = listens.first() {
        eprintln!("Point docker at it:  export DOCKER_HOST={first}");
    }

    let served = lockbox_api::serve(router, &listens, shutdown).await;
    manager.shutdown().await;
    served?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
