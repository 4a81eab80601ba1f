//! The docker executor of lockbox: runs tasks whose image is a real image as containers on a
//! plain (not swarm-mode) Docker Engine on the same host, through its API (bollard), and gives
//! each container its secrets at `/run/secrets/<target>` (or the absolute target) exactly as a
//! swarm node does: read-only, in memory, with the requested uid, gid and mode.
//!
//! # A task's life
//!
//! ```text
//! prepare   the image: used when the engine has it, pulled otherwise; neither → rejected,
//!           "No such image: <image>" (as swarm)
//! start     1. a tmpfs for the task on the host (see below), one file per secret reference
//!           2. the task's networks on the engine (see below), made when missing
//!           3. POST /containers/create  name <service>.<slot>.<task id>, the template's image,
//!              command (entrypoint), args (cmd), env, user, groups, workdir, hostname,
//!              labels, stop signal, init, tty, read-only rootfs, capabilities, sysctls,
//!              limits; the secrets bind-mounted read-only; restart "no"; on its first
//!              network (none: the engine's default), then connected to the others
//!           4. attach (stdout, stderr) → the agent's in-memory logs; 5. start
//!           a failed start → the engine's error in the task status ("starting container
//!           failed: …"); the container, the tmpfs and networks nobody uses are removed
//! update    live secret update (TaskHandle::update_secrets): see "Secrets on the host"
//! wait      /containers/{id}/wait → exit code (128+signal when killed; an OOM kill is 137)
//! stop      /containers/{id}/stop with the grace period (the container's stop signal,
//!           then SIGKILL)
//! end       the container is removed (with its anonymous volumes), then the tmpfs is
//!           unmounted and its directory removed, then its networks if no container uses
//!           them
//! ```
//!
//! # Secrets on the host
//!
//! `<secrets_root>/<instance>/<task id>` (default root `/run/lockbox/docker`, directories
//! 0700 root) is a tmpfs mounted `nosuid,nodev,noexec,noswap` and checked to be one before a
//! byte is written. The secrets whose target is under `/run/secrets` (every relative target)
//! become files of its `secrets/` directory, by target name (subdirectories 0755), with their
//! uid, gid and mode; each other (absolute) target becomes a file of its own. Then the tmpfs is
//! remounted read-only, `secrets/` is bind-mounted (`ro`, `rprivate`) at `/run/secrets` and
//! each other file at its target. dockerd does the same for swarm tasks (a tmpfs under the
//! container's directory, bind-mounted), except that it mounts every file on its own: inside
//! the container `ls -la` of the secrets shows the same names, owners, modes and sizes, but
//! `mount` shows one read-only tmpfs at `/run/secrets` (with lockbox's `noswap`) where swarm
//! shows one per file, and the image's own files under `/run/secrets`, if any, are hidden.
//! Secret values travel only from the agent's memory into that tmpfs: never through the
//! engine's API, an argument, an environment variable, a label or a log line.
//!
//! Why the directory: a live update (`TaskHandle::update_secrets`) remounts the tmpfs
//! read-write (the container's mounts stay read-only: that flag is per mount), writes each
//! new value to a file outside what the container sees, gives it its owner and mode, renames
//! it over the old file and makes the tmpfs read-only again. A rename is atomic, and a mount
//! of the directory shows it: a reader in the container opens the old file or the new one,
//! never a mix (a file it holds open keeps the old value). A bind mount of a single file
//! pins that file (its inode), so a rename beside it would never reach the container; the
//! files of absolute targets, mounted one by one, are therefore rewritten in place
//! (truncated, then written), which a reader at that instant can see empty or partly
//! written. While a reader still holds a replaced file open the kernel refuses to make the
//! tmpfs read-only again (EBUSY); the host's mount of it is made read-only instead, so that
//! no mount of it is writable, and the next update retries.
//!
//! # Networks
//!
//! Each lockbox network a task is attached to (its `TaskTemplate.Networks`: a stack's
//! networks, `docker service create --network`) becomes a local `bridge` network on the
//! engine, whatever the lockbox network's driver (`overlay` included): the engine is one host.
//! It has the lockbox network's name (`app_default`), is `internal` when that one is
//! (`attachable` means nothing for a bridge) and carries its labels plus
//! `com.lockbox.instance` and `com.lockbox.network.id` (the lockbox network's ID). The
//! container is created on the first network and connected to the others before it starts,
//! with these DNS aliases on each: the attachment's (`docker stack deploy` gives the short
//! service name, `web`), then the service name (`app_web`); the engine's DNS also resolves the
//! container's name. So a stack's containers reach each other by service name, as on swarm,
//! though by the containers' own addresses (no virtual IP, no `tasks.<service>` name, no
//! routing mesh).
//!
//! An engine network of that name that this daemon did not make (no `com.lockbox.instance`
//! label of its own: a user's network, another daemon's) is never used: the task fails,
//! naming it. One made for an earlier lockbox network of that name (a stack removed and
//! deployed again while its old containers were still stopping) is removed when unused and
//! shared with the old containers otherwise. Networks are made and removed under one lock per
//! executor, held from the check that a network exists until the new container refers to it,
//! so an ending task never removes a network a starting one is about to use; and as the engine
//! (before API 1.44) may let two networks share a name, a creator looks for twins afterwards
//! and keeps the smallest ID. When a task's container has been removed, each of its networks
//! that no container (in any state) refers to is removed.
//!
//! # Containers and labels
//!
//! Containers are named as swarm names them (`<service>.<slot>.<task id>`, the node ID in place
//! of the slot for global services) and labelled `com.lockbox.instance` (the daemon that owns
//! them: a hash of its data directory, so that several lockbox daemons can share one engine),
//! `com.lockbox.task.id`, `com.lockbox.task.name`, `com.lockbox.service.id`,
//! `com.lockbox.service.name` and `com.lockbox.node.id`, besides the template's container
//! labels. lockbox does not use swarm's `com.docker.swarm.*` labels: the engine is not in swarm
//! mode and tools that see those labels take the containers for swarm's.
//!
//! # After a crash
//!
//! A daemon that stops cleanly stops and removes its containers, their networks and unmounts
//! their secrets. A daemon that was killed leaves them; [`DockerExecutor::cleanup`], called at
//! the next start before any task runs, removes every container labelled with this instance,
//! then every network labelled with it that no container uses, and unmounts and removes every
//! tmpfs under this instance's directory. The agent then reports those tasks lost, and the
//! orchestrator replaces them as its restart policy says.
//!
//! # Limits
//!
//! * The engine must run on this host (its bind mounts come from this host's tmpfs): a unix
//!   socket, or TCP on a loopback address.
//! * Needs root (mounting the tmpfs, owning files for any uid).
//! * Networks are local bridges: no virtual IPs (a service name resolves to its containers'
//!   addresses), no `tasks.<service>` name, no encryption, no ingress; network names are the
//!   lockbox names, so two lockbox daemons on one engine cannot both use a network named
//!   alike (the second one's tasks fail), nor can lockbox use a name the user already took.
//! * A live update of a secret whose target is outside `/run/secrets` is not atomic (see
//!   "Secrets on the host").
//! * No published ports, volumes or configs are set up; no registry credentials are sent
//!   when pulling.

#![forbid(unsafe_code)]

mod container;
mod mounts;
mod network;
mod task;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    InspectContainerOptions, ListContainersOptionsBuilder, StartContainerOptions,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use lockbox_core::{Executor, Launch, TaskHandle};
use sha2::{Digest, Sha256};

pub use container::{
    LABEL_INSTANCE, LABEL_NODE_ID, LABEL_SERVICE_ID, LABEL_SERVICE_NAME, LABEL_TASK_ID,
    LABEL_TASK_NAME,
};
pub use network::LABEL_NETWORK_ID;

use crate::mounts::SecretDir;
use crate::network::{EngineNetwork, Networks};
use crate::task::DockerTask;

/// Where the per-task secret tmpfs mounts live, by default.
pub const DEFAULT_SECRETS_ROOT: &str = "/run/lockbox/docker";

/// Seconds an engine request may take to answer (long-running calls answer at once and
/// stream).
const REQUEST_TIMEOUT: u64 = 120;
/// How long a pull may go without progress before it is given up.
const PULL_IDLE: Duration = Duration::from_secs(60);

/// How the docker executor is set up.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// The engine: `unix:///var/run/docker.sock` or `tcp://127.0.0.1:2375`.
    pub host: String,
    /// The directory under which task tmpfs mounts are made.
    pub secrets_root: PathBuf,
    /// This daemon's instance: labels its containers and names its tmpfs directory.
    pub instance: String,
}

impl DockerConfig {
    /// The configuration of a daemon whose data directory is `data_dir`: its instance is a
    /// hash of that directory's absolute path.
    pub fn new(host: &str, data_dir: &Path) -> DockerConfig {
        DockerConfig {
            host: host.to_owned(),
            secrets_root: PathBuf::from(DEFAULT_SECRETS_ROOT),
            instance: instance_of(data_dir),
        }
    }

    /// `<secrets_root>/<instance>`.
    pub fn instance_dir(&self) -> PathBuf {
        self.secrets_root.join(&self.instance)
    }
}

/// The instance name of the daemon with this data directory (16 hex digits).
pub fn instance_of(data_dir: &Path) -> String {
    let abs = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = Sha256::digest(abs.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..8])
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostAddr {
    Unix(String),
    Tcp(String),
}

fn parse_host(host: &str) -> Result<HostAddr, String> {
    let local = "the docker executor needs an engine on this host, whose containers can bind-mount this host's tmpfs: use unix:///var/run/docker.sock or tcp://127.0.0.1:PORT";
    if let Some(p) = host.strip_prefix("unix://") {
        if !p.starts_with('/') {
            return Err(format!("invalid --docker-host {host:?}: {local}"));
        }
        return Ok(HostAddr::Unix(p.to_owned()));
    }
    if host.starts_with('/') {
        return Ok(HostAddr::Unix(host.to_owned()));
    }
    let rest = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
        .ok_or_else(|| format!("invalid --docker-host {host:?}: {local}"))?;
    let rest = rest.trim_end_matches('/');
    let addr: std::net::SocketAddr = rest
        .parse()
        .or_else(|_| {
            let (h, port) = rest.rsplit_once(':').ok_or(())?;
            if h == "localhost" {
                format!("127.0.0.1:{port}").parse().map_err(|_| ())
            } else {
                Err(())
            }
        })
        .map_err(|_| format!("invalid --docker-host {host:?}: {local}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--docker-host {host:?} is not on this host: {local}"
        ));
    }
    Ok(HostAddr::Tcp(addr.to_string()))
}

/// The engine's words for an error (its message, without bollard's wrapping).
pub(crate) fn engine_error(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// What [`DockerExecutor::cleanup`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// Containers of a previous run removed.
    pub containers: usize,
    /// Secret tmpfs directories of a previous run unmounted and removed.
    pub mounts: usize,
    /// Engine networks of a previous run that no container used, removed.
    pub networks: usize,
    /// What could not be done (the engine unreachable, a mount busy, ...).
    pub problems: Vec<String>,
}

struct Inner {
    cfg: DockerConfig,
    addr: HostAddr,
    client: tokio::sync::OnceCell<Docker>,
    networks: Arc<Networks>,
}

impl Inner {
    async fn client(&self) -> Result<Docker, String> {
        self.client
            .get_or_try_init(|| async {
                let cannot = |e: &dyn std::fmt::Display| {
                    format!(
                        "Cannot connect to the Docker daemon at {}. Is the docker daemon running? ({e})",
                        self.cfg.host
                    )
                };
                let docker = match &self.addr {
                    HostAddr::Unix(p) => {
                        Docker::connect_with_unix(p, REQUEST_TIMEOUT, bollard::API_DEFAULT_VERSION)
                    }
                    HostAddr::Tcp(a) => {
                        Docker::connect_with_http(a, REQUEST_TIMEOUT, bollard::API_DEFAULT_VERSION)
                    }
                }
                .map_err(|e| cannot(&e))?;
                // bollard speaks 1.53; an older engine refuses that: use the lower version.
                let docker = docker.negotiate_version().await.map_err(|e| cannot(&e))?;
                if let Ok(info) = docker.info().await
                    && info
                        .swarm
                        .as_ref()
                        .and_then(|s| s.local_node_state.as_ref())
                        .is_some_and(|s| format!("{s:?}").eq_ignore_ascii_case("active"))
                {
                    tracing::warn!(
                        host = %self.cfg.host,
                        "the docker executor's engine is in swarm mode; lockbox runs plain containers on it"
                    );
                }
                Ok(docker)
            })
            .await
            .cloned()
    }

    /// The image is there, or pulled; otherwise swarm's "No such image".
    async fn ensure_image(&self, docker: &Docker, image: &str) -> Result<(), String> {
        if image.is_empty() {
            return Err("no image specified".into());
        }
        match docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(engine_error(&e)),
        }
        let reference = container::tagged(image);
        let opts = CreateImageOptionsBuilder::new()
            .from_image(&reference)
            .build();
        let mut pull = docker.create_image(Some(opts), None, None);
        loop {
            match tokio::time::timeout(PULL_IDLE, pull.next()).await {
                Ok(None) => break,
                Ok(Some(Ok(_progress))) => {}
                Ok(Some(Err(e))) => {
                    tracing::info!(image, error = %engine_error(&e), "pull failed");
                    return Err(format!("No such image: {image}"));
                }
                Err(_) => {
                    tracing::info!(image, "pull made no progress for 60 s; given up");
                    return Err(format!("No such image: {image}"));
                }
            }
        }
        match docker.inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("No such image: {image}")),
        }
    }

    /// The engine networks of the task's attachments (each lockbox network once, in the
    /// order of the spec), made when missing, with the container's aliases on each. Call with
    /// the network lock held.
    async fn ensure_networks(
        &self,
        docker: &Docker,
        launch: &Launch,
        out: &mut Vec<EngineNetwork>,
    ) -> Result<(), String> {
        for (i, att) in launch.networks.iter().enumerate() {
            if launch.networks[..i].iter().any(|a| a.id == att.id) {
                continue;
            }
            let id = network::ensure(docker, &self.cfg.instance, att).await?;
            out.push(EngineNetwork {
                id,
                name: att.name.clone(),
                aliases: network::aliases(att, &launch.service_name),
            });
        }
        Ok(())
    }

    async fn start(self: Arc<Self>, launch: Launch) -> Result<DockerTask, String> {
        let docker = self.client().await?;
        self.ensure_image(&docker, &launch.spec.image).await?;

        // 1. The secrets tmpfs (blocking syscalls: off the async threads).
        let root = self.cfg.secrets_root.clone();
        let base = self.cfg.instance_dir();
        let task_id = launch.task_id.clone();
        let secrets = launch.secrets.clone();
        let sd = tokio::task::spawn_blocking(move || {
            mounts::ensure_private_dir(&root)?;
            mounts::ensure_private_dir(&base)?;
            SecretDir::create(&base, &task_id, &secrets)
        })
        .await
        .map_err(|e| format!("preparing secrets: {e}"))?
        .map_err(|e| format!("preparing secrets: {e}"))?;

        // 2. The container, on its networks. The network lock is held from making sure the
        //    networks exist until the container refers to all of them, so that no ending task
        //    removes one in between.
        let guard = if launch.networks.is_empty() {
            None
        } else {
            Some(self.networks.lock().await)
        };
        let mut nets = Vec::new();
        if let Err(e) = self.ensure_networks(&docker, &launch, &mut nets).await {
            drop(guard);
            task::remove_secrets(Some(sd)).await;
            task::TaskNetworks {
                lock: self.networks.clone(),
                list: nets,
            }
            .remove_unused(&docker)
            .await;
            return Err(e);
        }
        let body = container::create_body(&launch, &self.cfg.instance, &sd.files, nets.first());
        let name = container::container_name(&launch);
        let created = {
            let opts = CreateContainerOptionsBuilder::new().name(&name).build();
            match docker
                .create_container(Some(opts.clone()), body.clone())
                .await
            {
                Err(BollardError::DockerResponseServerError {
                    status_code: 409, ..
                }) => {
                    // A leftover of an earlier attempt of this very task.
                    task::remove_container(&docker, &name).await;
                    docker.create_container(Some(opts), body).await
                }
                other => other,
            }
        };
        let mut connected = created.map_err(|e| engine_error(&e));
        if let Ok(c) = &connected {
            for n in nets.iter().skip(1) {
                if let Err(e) = network::connect(&docker, &c.id, n).await {
                    task::remove_container(&docker, &c.id).await;
                    connected = Err(e);
                    break;
                }
            }
        }
        drop(guard);
        let task_nets = task::TaskNetworks {
            lock: self.networks.clone(),
            list: nets,
        };
        let id = match connected {
            Ok(c) => c.id,
            Err(e) => {
                task::remove_secrets(Some(sd)).await;
                task_nets.remove_unused(&docker).await;
                return Err(e);
            }
        };
        let fail = |sd: SecretDir, nets: task::TaskNetworks, msg: String| {
            let docker = docker.clone();
            let id = id.clone();
            async move {
                task::remove_container(&docker, &id).await;
                task::remove_secrets(Some(sd)).await;
                nets.remove_unused(&docker).await;
                msg
            }
        };

        // 3. Output, attached before the start so that nothing is missed.
        let attach = AttachContainerOptionsBuilder::new()
            .stream(true)
            .stdout(true)
            .stderr(true)
            .build();
        let attached = match docker.attach_container(&id, Some(attach)).await {
            Ok(a) => a,
            Err(e) => return Err(fail(sd, task_nets, engine_error(&e)).await),
        };
        let (stdout, stderr, pump_done) = task::pump(attached.output);

        // 4. Start.
        if let Err(e) = docker
            .start_container(&id, None::<StartContainerOptions>)
            .await
        {
            return Err(fail(sd, task_nets, engine_error(&e)).await);
        }
        let pid = docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|i| i.state)
            .and_then(|s| s.pid)
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0);
        tracing::debug!(task = %launch.task_id, container = %id, "task container started");
        Ok(DockerTask {
            docker,
            container: id,
            pid,
            stdout: Some(stdout),
            stderr: Some(stderr),
            pump_done: Some(pump_done),
            secrets: Some(sd),
            networks: Some(task_nets),
            exited: None,
            finished: false,
        })
    }
}

/// Runs tasks whose image is not `host` as containers on a Docker Engine.
#[derive(Clone)]
pub struct DockerExecutor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DockerExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerExecutor")
            .field("host", &self.inner.cfg.host)
            .field("instance", &self.inner.cfg.instance)
            .finish_non_exhaustive()
    }
}

/// Whether `image` names lockbox's reserved `host` image (`host`, `host:latest`, with or
/// without a digest), which the process executor runs.
pub fn is_host_image(image: &str) -> bool {
    let name = image.split('@').next().unwrap_or("");
    if name.contains('/') {
        return false;
    }
    let (repo, tag) = name.split_once(':').unwrap_or((name, "latest"));
    repo == "host" && tag == "latest"
}

impl DockerExecutor {
    /// An executor for `cfg`. Checks the address only: the engine is connected to on first use
    /// (so the daemon starts while the engine is still coming up).
    pub fn new(cfg: DockerConfig) -> Result<DockerExecutor, String> {
        let addr = parse_host(&cfg.host)?;
        Ok(DockerExecutor {
            inner: Arc::new(Inner {
                cfg,
                addr,
                client: tokio::sync::OnceCell::new(),
                networks: Arc::new(Networks::default()),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DockerConfig {
        &self.inner.cfg
    }

    /// Connects to the engine now; the error says why not.
    pub async fn check(&self) -> Result<(), String> {
        self.inner.client().await.map(|_| ())
    }

    /// Removes what a previous run of this daemon left: its containers (they ran tasks the
    /// agent no longer tracks), its engine networks that no container uses, then its secret
    /// tmpfs mounts. Call before any task starts.
    pub async fn cleanup(&self) -> CleanupReport {
        let mut report = CleanupReport::default();
        match self.inner.client().await {
            Ok(docker) => {
                let filters = std::collections::HashMap::from([(
                    "label".to_owned(),
                    vec![format!("{LABEL_INSTANCE}={}", self.inner.cfg.instance)],
                )]);
                let opts = ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build();
                match docker.list_containers(Some(opts)).await {
                    Ok(list) => {
                        for c in list {
                            let Some(id) = c.id else { continue };
                            let task = c
                                .labels
                                .as_ref()
                                .and_then(|l| l.get(LABEL_TASK_ID).cloned())
                                .unwrap_or_default();
                            tracing::info!(container = %id, task, "removing a container of a previous run");
                            task::remove_container(&docker, &id).await;
                            report.containers += 1;
                        }
                    }
                    Err(e) => report
                        .problems
                        .push(format!("listing containers: {}", engine_error(&e))),
                }
                // Then its networks that no container uses any more.
                match network::of_instance(&docker, &self.inner.cfg.instance).await {
                    Ok(list) => {
                        let _guard = self.inner.networks.lock().await;
                        for (id, name) in list {
                            if network::remove_if_unused(&docker, &id, &name).await {
                                tracing::info!(network = %name, "removed a network of a previous run");
                                report.networks += 1;
                            }
                        }
                    }
                    Err(e) => report.problems.push(e),
                }
            }
            Err(e) => report.problems.push(e),
        }
        let base = self.inner.cfg.instance_dir();
        match tokio::task::spawn_blocking(move || mounts::cleanup_stale(&base)).await {
            Ok(Ok(n)) => report.mounts = n,
            Ok(Err(e)) => report.problems.push(format!(
                "removing stale secret mounts under {}: {e}",
                self.inner.cfg.instance_dir().display()
            )),
            Err(e) => report.problems.push(e.to_string()),
        }
        report
    }
}

impl Executor for DockerExecutor {
    fn handles(&self, image: &str) -> bool {
        !is_host_image(image)
    }

    fn prepare(&self, launch: &Launch) -> BoxFuture<'static, Result<(), String>> {
        let inner = self.inner.clone();
        let image = launch.spec.image.clone();
        Box::pin(async move {
            let docker = inner.client().await?;
            inner.ensure_image(&docker, &image).await
        })
    }

    fn start(&self, launch: Launch) -> BoxFuture<'static, Result<Box<dyn TaskHandle>, String>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let t = inner.start(launch).await?;
            Ok(Box::new(t) as Box<dyn TaskHandle>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            parse_host("unix:///var/run/docker.sock"),
            Ok(HostAddr::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            parse_host("/run/d.sock"),
            Ok(HostAddr::Unix("/run/d.sock".into()))
        );
        assert_eq!(
            parse_host("tcp://127.0.0.1:2375"),
            Ok(HostAddr::Tcp("127.0.0.1:2375".into()))
        );
        assert_eq!(
            parse_host("tcp://localhost:2375"),
            Ok(HostAddr::Tcp("127.0.0.1:2375".into()))
        );
        assert!(parse_host("tcp://10.0.0.1:2375").is_err());
        assert!(parse_host("ssh://host").is_err());
        assert!(parse_host("unix://relative").is_err());
    }

    #[test]
    fn instances() {
        let a = instance_of(Path::new("/var/lib/lockbox"));
        assert_eq!(a.len(), 16);
        assert_eq!(a, instance_of(Path::new("/var/lib/lockbox")));
        assert_ne!(a, instance_of(Path::new("/var/lib/lockbox2")));
    }

    #[test]
    fn host_images() {
        assert!(is_host_image("host"));
        assert!(is_host_image("host:latest@sha256:ab"));
        assert!(!is_host_image("busybox:local"));
        assert!(!is_host_image("library/host"));
    }
}
