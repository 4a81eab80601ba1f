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
            .map(|h| Listen::parse_tls(h, a.tlsverify))
            .collect::<Result<_, _>>()?
    };
    let socket_gid = match &a.socket_group {
        Some(g) => Some(group_id(g).with_context(|| format!("--socket-group {g}"))?),
        None => None,
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
        if report.containers + report.mounts + report.networks > 0 {
            tracing::info!(
                containers = report.containers,
                mounts = report.mounts,
                networks = report.networks,
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
            audit_segment_bytes: a.audit_segment_mb.saturating_mul(1 << 20),
            audit_max_segments: a.audit_max_segments,
            listen_addr: a.listen_addr.clone(),
        },
        executors,
    )
    .await
    .with_context(|| format!("cannot start lockbox on {}", data_dir.display()))?;
    let manager = Arc::new(manager);
    let state = AppState::new(manager.clone());
    let revocations = state.revocations();
    revocations.replace(manager.revoked_serials().await);
    let tls = if listens.iter().any(|l| matches!(l, Listen::Tls(_))) {
        let server = tls_server(
            &manager,
            &data_dir,
            &listens,
            &a.tls_san,
            revocations.clone(),
        )
        .await?;
        Some(lockbox_api::TlsConfig {
            server: lockbox_pki::ServerSlot::new(server),
        })
    } else {
        None
    };
    // After a root rotation starts or completes, the listener presents a certificate of the
    // CA that signs now and accepts clients of the new CA.
    if let Some(slot) = tls.as_ref().map(|t| t.server.clone()) {
        let manager = manager.clone();
        let data_dir = data_dir.clone();
        let listens = listens.clone();
        let extra = a.tls_san.clone();
        let revocations = revocations.clone();
        tokio::spawn(async move {
            let mut seen = manager.ca_generation().await;
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                let now = manager.ca_generation().await;
                if now.is_none() || now == seen {
                    continue;
                }
                match tls_server(&manager, &data_dir, &listens, &extra, revocations.clone()).await {
                    Ok(server) => {
                        slot.set(server);
                        seen = now;
                        tracing::info!(
                            "the TLS listener now presents a certificate of the cluster's current CA"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "re-issuing the TLS listener's certificate")
                    }
                }
            }
        });
    }
    // Keep the TLS revocation list in step with the replicated one (changes on other
    // managers, and the list of a store unlocked after start).
    {
        let manager = manager.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                // Revocation is for good: only add, so that an older list read while a
                // revocation was committed cannot take it back.
                for serial in manager.revoked_serials().await {
                    revocations.revoke(&serial);
                }
            }
        });
    }
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
        LocalState::Worker => "active (worker)",
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

    let served = lockbox_api::serve(router, &listens, tls, socket_gid, shutdown).await;
    manager.shutdown().await;
    served?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The gid of a group name (or a number), from `/etc/group`.
fn group_id(name: &str) -> anyhow::Result<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let table = std::fs::read_to_string("/etc/group").context("reading /etc/group")?;
    table
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(name))
                .then(|| f.nth(1).and_then(|g| g.parse().ok()))
                .flatten()
        })
        .ok_or_else(|| anyhow::anyhow!("no group named {name} in /etc/group"))
}

/// The TLS listener's configuration: a server certificate from the cluster CA naming this
/// host, its listen addresses and `--tls-san`s. It is kept in DATA_DIR/tls (key 0600) so the
/// listener also works while the store is locked (for `swarm unlock`), as dockerd keeps its
/// `key.pem`.
async fn tls_server(
    manager: &Manager,
    data_dir: &std::path::Path,
    listens: &[Listen],
    extra: &[String],
    revocations: lockbox_pki::Revocations,
) -> anyhow::Result<Arc<lockbox_pki::rustls::ServerConfig>> {
    use std::net::IpAddr;
    let dir = data_dir.join("tls");
    let material = if manager.local_state().await == LocalState::Active {
        let mut names: Vec<String> = vec!["localhost".into()];
        names.push(
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
        );
        names.extend(extra.iter().cloned());
        let mut ips: Vec<IpAddr> = vec![
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ];
        for l in listens {
            if let Listen::Tls(addr) = l
                && !addr.ip().is_unspecified()
                && !ips.contains(&addr.ip())
            {
                ips.push(addr.ip());
            }
        }
        names.retain(|n| {
            !n.is_empty()
                && n.parse::<IpAddr>()
                    .map(|ip| {
                        if !ips.contains(&ip) {
                            ips.push(ip);
                        }
                        false
                    })
                    .unwrap_or(true)
        });
        names.dedup();
        let m = manager
            .issue_server_cert(&names, &ips)
            .await
            .context("issuing the TLS server certificate")?;
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        write_private(&dir.join("ca.pem"), m.ca_pem.as_bytes())?;
        write_private(&dir.join("client-ca.pem"), m.client_ca_pem.as_bytes())?;
        write_private(&dir.join("server-chain.pem"), m.chain_pem.as_bytes())?;
        write_private(&dir.join("server-cert.pem"), m.issued.cert_pem.as_bytes())?;
        write_private(&dir.join("server-key.pem"), m.issued.key_pem.as_bytes())?;
        (m.client_ca_pem, m.issued, m.chain_pem)
    } else {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f)).with_context(|| {
                format!(
                    "the store is locked and there is no TLS certificate from an earlier start in {}; unlock over the unix socket first",
                    dir.display()
                )
            })
        };
        // Written by earlier versions: only ca.pem (clients of that CA), no chain.
        let ca = read("client-ca.pem").or_else(|_| read("ca.pem"))?;
        let chain = std::fs::read_to_string(dir.join("server-chain.pem")).unwrap_or_default();
        let cert = read("server-cert.pem")?;
        let key = zeroize::Zeroizing::new(read("server-key.pem")?);
        let issued = lockbox_pki::Issued::from_pem(&cert, &key)
            .context("the stored TLS server certificate")?;
        (ca, issued, chain)
    };
    let (client_ca, server, chain) = material;
    lockbox_pki::server_config_with_chain(&client_ca, &server, &chain, revocations)
        .context("the TLS server configuration")
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
