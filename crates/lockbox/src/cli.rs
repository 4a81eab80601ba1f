//! Command-line arguments: docker's nouns and flags.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};

/// lockbox: Docker Swarm secrets, end to end.
#[derive(Debug, Parser)]
#[command(name = "lockbox", version, about, propagate_version = true)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options for every CLI command.
#[derive(Debug, ClapArgs)]
pub(crate) struct Global {
    /// Daemon socket: for the CLI, where to connect; for `daemon`, where to listen
    /// (unix:///PATH or loopback tcp://HOST:PORT; repeatable for the daemon)
    #[arg(
        short = 'H',
        long = "host",
        env = "LOCKBOX_HOST",
        global = true,
        value_delimiter = ','
    )]
    pub(crate) host: Vec<String>,
    /// Use TLS; implied by --tlsverify. lockbox always verifies the daemon's certificate, so
    /// --tls alone (docker's TLS without verification) is refused
    #[arg(long, global = true)]
    pub(crate) tls: bool,
    /// Use TLS with a client certificate and verify the daemon (tcp:// addresses; unix
    /// sockets never use TLS). Also on when DOCKER_TLS_VERIFY is set to anything non-empty.
    /// The files default to the directory DOCKER_CERT_PATH, else DOCKER_CONFIG, else ~/.docker
    #[arg(long, global = true)]
    pub(crate) tlsverify: bool,
    /// Trust only daemon certificates signed by this CA [default: ~/.docker/ca.pem]
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) tlscacert: Option<PathBuf>,
    /// TLS client certificate [default: ~/.docker/cert.pem]
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) tlscert: Option<PathBuf>,
    /// TLS client key [default: ~/.docker/key.pem]
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) tlskey: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the lockbox daemon
    Daemon(DaemonArgs),
    /// Manage secrets
    #[command(subcommand)]
    Secret(SecretCmd),
    /// Manage the swarm
    #[command(subcommand)]
    Swarm(SwarmCmd),
    /// Manage Swarm services
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Manage Swarm nodes
    #[command(subcommand)]
    Node(NodeCmd),
    /// Manage Swarm stacks (compose files)
    #[command(subcommand)]
    Stack(StackCmd),
    /// Show the lockbox version information
    Version(FormatArg),
    /// Display system-wide information
    Info(FormatArg),
    /// Run a command with X set to the content of the file each X_FILE names
    Env(EnvArgs),
    /// Run a one-off task with secrets, its output attached and its exit code
    Run(Box<RunArgs>),
    /// Show who the daemon takes you for, and what you may do
    Whoami(FormatArg),
    /// Manage users and their client certificates
    #[command(subcommand)]
    User(crate::commands::access::UserCmd),
    /// Manage roles (named sets of permissions)
    #[command(subcommand)]
    Role(crate::commands::access::RoleCmd),
    /// Manage grants (a role given to a user or a group, on a scope)
    #[command(subcommand)]
    Grant(crate::commands::access::GrantCmd),
    /// List, export and verify the audit trail
    #[command(subcommand)]
    Audit(crate::commands::audit::AuditCmd),
}

#[derive(Debug, ClapArgs)]
pub(crate) struct DaemonArgs {
    /// Directory for keys and the store
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Do not initialize a one-node swarm on first start; wait for `swarm init`
    #[arg(long)]
    pub(crate) no_auto_init: bool,
    /// Keep no audit trail (by default every request and every delivery of a secret is
    /// recorded under DATA_DIR/audit)
    #[arg(long)]
    pub(crate) no_audit: bool,
    /// Start a new audit segment file (audit-<seq>.jsonl) past this size, in MiB
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) audit_segment_mb: u64,
    /// Keep only the newest N audit segment files; older ones are deleted and
    /// audit-anchor.json records where the kept chain starts (default: keep all)
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    pub(crate) audit_max_segments: Option<usize>,
    /// Address advertised to other nodes
    #[arg(long, default_value = "127.0.0.1:2377")]
    pub(crate) advertise_addr: String,
    /// Listen for other nodes (Raft between managers, joins) on this address, with mutual TLS
    /// from the cluster CA; by default only where `swarm init`/`swarm join` say (port 2377)
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub(crate) listen_addr: Option<String>,
    /// Log level (error, warn, info, debug, trace); LOCKBOX_LOG overrides
    #[arg(long, default_value = "info")]
    pub(crate) log_level: String,
    /// Raft log entries between snapshots
    #[arg(long, default_value_t = 10_000, hide = true)]
    pub(crate) snapshot_interval: u64,
    /// Docker Engine on this host that runs the tasks of real images as containers
    /// (unix:///var/run/docker.sock or tcp://127.0.0.1:PORT)
    #[arg(long, value_name = "URL")]
    pub(crate) docker_host: Option<String>,
    /// Serve `-H tcp://` addresses over TLS, requiring client certificates issued by the
    /// cluster CA (`lockbox user bundle`); then any address may be used, not only loopback
    #[arg(long)]
    pub(crate) tlsverify: bool,
    /// Extra host name or IP address for the TLS server certificate (repeatable)
    #[arg(long = "tls-san", value_name = "NAME")]
    pub(crate) tls_san: Vec<String>,
    /// Group that may connect to the unix socket (mode 0660); by default only root can
    #[arg(long, value_name = "GROUP")]
    pub(crate) socket_group: Option<String>,
}

#[derive(Debug, ClapArgs)]
pub(crate) struct FormatArg {
    /// Format output using a custom template ('json' or a Go template)
    #[arg(short = 'f', long)]
    pub(crate) format: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretCmd {
    /// Create a secret from a file or STDIN as content
    Create {
        /// Secret labels
        #[arg(short = 'l', long = "label", value_name = "key=value")]
        labels: Vec<String>,
        /// Secret driver
        #[arg(short = 'd', long)]
        driver: Option<String>,
        /// Template driver
        #[arg(long)]
        template_driver: Option<String>,
        /// Secret name
        name: String,
        /// File to read the value from, or - for STDIN
        file: Option<String>,
        #[command(flatten)]
        generate: GenerateArgs,
        /// Schedule rotation: set the rotation-due label this far ahead (e.g. 90d, 12h)
        #[arg(long, value_name = "duration")]
        rotate_every: Option<String>,
    },
    /// List secrets
    #[command(alias = "list")]
    Ls {
        /// Only display IDs
        #[arg(short, long)]
        quiet: bool,
        /// Filter output based on conditions provided
        #[arg(short = 'f', long = "filter")]
        filters: Vec<String>,
        /// Format output using a custom template
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on one or more secrets
    Inspect {
        /// Print the information in a human friendly format
        #[arg(long)]
        pretty: bool,
        /// Format output using a custom template
        #[arg(short = 'f', long)]
        format: Option<String>,
        /// Secrets (ID or name)
        #[arg(required = true)]
        secrets: Vec<String>,
    },
    /// Remove one or more secrets
    #[command(alias = "remove")]
    Rm {
        /// Secrets (ID or name)
        #[arg(required = true)]
        secrets: Vec<String>,
    },
    /// Create one secret per variable of a dotenv file (values are never printed)
    Import(Box<SecretImportArgs>),
    /// List the versions of a secret (NAME, NAME-v1, NAME-v2, ...) and the services using each
    Versions {
        /// Only display names
        #[arg(short, long)]
        quiet: bool,
        /// Format output using a custom template
        #[arg(long)]
        format: Option<String>,
        /// Secret family, or any of its versions
        name: String,
    },
    /// Create the next version of a secret and move every service using it to the new one
    Rotate(Box<SecretRotateArgs>),
}

/// How `--generate` makes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Charset {
    /// Standard base64 of --length random bytes (as `openssl rand -base64 N`)
    Base64,
    /// Lower-case hex of --length random bytes (as `openssl rand -hex N`)
    Hex,
    /// --length characters from A-Z, a-z, 0-9
    Alnum,
    /// --length printable ASCII characters (! to ~)
    Ascii,
}

/// `--generate` and what may reveal the generated value.
#[derive(Debug, Clone, ClapArgs)]
pub(crate) struct GenerateArgs {
    /// Generate the value with the operating system's CSPRNG (it is not printed)
    #[arg(long)]
    pub(crate) generate: bool,
    /// Random bytes for base64 and hex, characters for alnum and ascii [default: 32]
    #[arg(long, value_name = "N", requires = "generate")]
    pub(crate) length: Option<usize>,
    /// Character set of the generated value [default: base64]
    #[arg(long, value_enum, requires = "generate")]
    pub(crate) charset: Option<Charset>,
    /// Print the generated value on stdout
    #[arg(long, requires = "generate")]
    pub(crate) show: bool,
    /// Also write the generated value to this new file (mode 0600)
    #[arg(long, value_name = "file", requires = "generate")]
    pub(crate) output_file: Option<PathBuf>,
}

#[derive(Debug, ClapArgs)]
pub(crate) struct SecretImportArgs {
    /// The dotenv file (KEY=value lines), or - for STDIN
    #[arg(long = "env-file", value_name = "file")]
    pub(crate) env_file: String,
    /// Put this before each secret name
    #[arg(long, value_name = "string", allow_hyphen_values = true)]
    pub(crate) prefix: Option<String>,
    /// Put this after each secret name (e.g. -v1)
    #[arg(long, value_name = "string", allow_hyphen_values = true)]
    pub(crate) suffix: Option<String>,
    /// Import only these keys
    #[arg(long, value_name = "KEY,...", value_delimiter = ',')]
    pub(crate) only: Vec<String>,
    /// Secret labels
    #[arg(short = 'l', long = "label", value_name = "key=value")]
    pub(crate) labels: Vec<String>,
    /// Schedule rotation: set the rotation-due label this far ahead (e.g. 90d)
    #[arg(long, value_name = "duration")]
    pub(crate) rotate_every: Option<String>,
    /// Show what would be created, create nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, ClapArgs)]
pub(crate) struct SecretRotateArgs {
    /// Secret family, or any of its versions
    #[arg(required_unless_present = "due", conflicts_with = "due")]
    pub(crate) name: Option<String>,
    /// File to read the new value from, or - for STDIN
    #[arg(conflicts_with = "due")]
    pub(crate) file: Option<String>,
    #[command(flatten)]
    pub(crate) generate: GenerateArgs,
    /// Rotate every secret whose rotation-due date has passed, and remove old versions whose
    /// grace period is over
    #[arg(long)]
    pub(crate) due: bool,
    /// Keep the old version this long after every service moved to the new one
    #[arg(long, value_name = "duration", default_value = "0s")]
    pub(crate) grace: String,
    /// Schedule the next rotation (sets rotation-due on the new version; e.g. 90d)
    #[arg(long, value_name = "duration")]
    pub(crate) rotate_every: Option<String>,
    /// Labels for the new version (added to the current version's)
    #[arg(short = 'l', long = "label", value_name = "key=value")]
    pub(crate) labels: Vec<String>,
    /// Suppress progress output (print only the new version's name)
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

#[derive(Debug, ClapArgs)]
pub(crate) struct EnvArgs {
    /// Only these variables (X for X_FILE); each must then be readable
    #[arg(long, value_name = "X,...", value_delimiter = ',')]
    pub(crate) only: Vec<String>,
    /// CMD [ARG...]
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD [ARG...]"
    )]
    pub(crate) command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SwarmCmd {
    /// Initialize a swarm
    Init {
        /// Enable manager autolocking (requiring an unlock key to start a stopped manager)
        #[arg(long)]
        autolock: bool,
        /// Advertised address (format: <ip|interface>[:port])
        #[arg(long)]
        advertise_addr: Option<String>,
        /// Listen address for other nodes (format: <ip>[:port])
        #[arg(long, default_value = "0.0.0.0:2377")]
        listen_addr: String,
        /// Force create a new cluster from current state (a manager whose cluster lost its quorum)
        #[arg(long)]
        force_new_cluster: bool,
    },
    /// Join a swarm as a manager or a worker
    Join {
        /// Token for entry into the swarm
        #[arg(long)]
        token: String,
        /// Advertised address (format: <ip>[:port])
        #[arg(long)]
        advertise_addr: Option<String>,
        /// Listen address (format: <ip>[:port])
        #[arg(long, default_value = "0.0.0.0:2377")]
        listen_addr: String,
        /// Availability of the node ("active", "pause", "drain")
        #[arg(long, default_value = "active")]
        availability: String,
        /// A manager's address (format: <ip>[:port])
        remote: String,
    },
    /// Update the swarm
    Update {
        /// Change manager autolocking setting (true|false)
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        autolock: Option<bool>,
    },
    /// Unlock swarm
    Unlock,
    /// Manage the unlock key
    UnlockKey {
        /// Rotate unlock key
        #[arg(long)]
        rotate: bool,
        /// Only display token
        #[arg(short, long)]
        quiet: bool,
    },
    /// Manage join tokens
    JoinToken {
        /// Rotate join token
        #[arg(long)]
        rotate: bool,
        /// Only display token
        #[arg(short, long)]
        quiet: bool,
        /// worker or manager
        role: String,
    },
    /// Leave the swarm
    Leave {
        /// Force this node to leave the swarm, ignoring warnings
        #[arg(short, long)]
        force: bool,
    },
    /// Replace the data encryption key and re-encrypt the store (online)
    RotateKey,
    /// Write an encrypted backup of the whole swarm state, taken online
    Backup(crate::commands::swarm_backup::BackupArgs),
    /// Create a data directory from a backup (offline: no daemon may run on it)
    Restore(crate::commands::swarm_backup::RestoreArgs),
}

/// Flags `service create` and `service update` share (docker's
/// `addServiceFlags`). Values are kept as typed so that they are parsed,
/// and their errors worded, as docker does; `Some` means "flag given".
#[derive(Debug, ClapArgs)]
pub(crate) struct ServiceFlags {
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short = 'd', long)]
    pub(crate) detach: bool,
    /// Suppress progress output
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub(crate) workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub(crate) user: Option<String>,
    /// Container hostname
    #[arg(long)]
    pub(crate) hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long, value_name = "command")]
    pub(crate) entrypoint: Option<String>,
    /// Number of tasks
    #[arg(long, value_name = "uint")]
    pub(crate) replicas: Option<String>,
    /// Restart when condition is met ("none", "on-failure", "any") (default "any")
    #[arg(long, value_name = "string")]
    pub(crate) restart_condition: Option<String>,
    /// Delay between restart attempts (ns|us|ms|s|m|h) (default 5s)
    #[arg(long, value_name = "duration")]
    pub(crate) restart_delay: Option<String>,
    /// Maximum number of restarts before giving up
    #[arg(long, value_name = "uint")]
    pub(crate) restart_max_attempts: Option<String>,
    /// Window used to evaluate the restart policy (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub(crate) restart_window: Option<String>,
    /// Maximum number of tasks updated simultaneously (0 to update all at once) (default 1)
    #[arg(long, value_name = "uint")]
    pub(crate) update_parallelism: Option<String>,
    /// Delay between updates (ns|us|ms|s|m|h) (default 0s)
    #[arg(long, value_name = "duration")]
    pub(crate) update_delay: Option<String>,
    /// Duration after each task update to monitor for failure (ns|us|ms|s|m|h) (default 5s)
    #[arg(long, value_name = "duration")]
    pub(crate) update_monitor: Option<String>,
    /// Action on update failure ("pause", "continue", "rollback") (default "pause")
    #[arg(long, value_name = "string")]
    pub(crate) update_failure_action: Option<String>,
    /// Failure rate to tolerate during an update (default 0)
    #[arg(long, value_name = "float")]
    pub(crate) update_max_failure_ratio: Option<String>,
    /// Update order ("start-first", "stop-first") (default "stop-first")
    #[arg(long, value_name = "string")]
    pub(crate) update_order: Option<String>,
    /// Maximum number of tasks rolled back simultaneously (0 to roll back all at once) (default 1)
    #[arg(long, value_name = "uint")]
    pub(crate) rollback_parallelism: Option<String>,
    /// Delay between task rollbacks (ns|us|ms|s|m|h) (default 0s)
    #[arg(long, value_name = "duration")]
    pub(crate) rollback_delay: Option<String>,
    /// Duration after each task rollback to monitor for failure (ns|us|ms|s|m|h) (default 5s)
    #[arg(long, value_name = "duration")]
    pub(crate) rollback_monitor: Option<String>,
    /// Action on rollback failure ("pause", "continue") (default "pause")
    #[arg(long, value_name = "string")]
    pub(crate) rollback_failure_action: Option<String>,
    /// Failure rate to tolerate during a rollback (default 0)
    #[arg(long, value_name = "float")]
    pub(crate) rollback_max_failure_ratio: Option<String>,
    /// Rollback order ("start-first", "stop-first") (default "stop-first")
    #[arg(long, value_name = "string")]
    pub(crate) rollback_order: Option<String>,
    /// Time to wait before force killing a container (ns|us|ms|s|m|h) (default 10s)
    #[arg(long, value_name = "duration")]
    pub(crate) stop_grace_period: Option<String>,
    /// Signal to stop the container
    #[arg(long, value_name = "string")]
    pub(crate) stop_signal: Option<String>,
    /// Do not query the registry to resolve image digest and supported platforms
    /// (lockbox never queries a registry)
    #[arg(long)]
    pub(crate) no_resolve_image: bool,
    /// Use an init inside each service container to forward signals and reap processes
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) init: Option<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) read_only: Option<String>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long, value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) tty: Option<String>,
    /// Endpoint mode (vip or dnsrr) (default "vip")
    #[arg(long, value_name = "string")]
    pub(crate) endpoint_mode: Option<String>,
}

#[derive(Debug, ClapArgs)]
pub(crate) struct ServiceCreateArgs {
    #[command(flatten)]
    pub(crate) common: ServiceFlags,
    /// Service mode ("replicated", "global", "replicated-job", "global-job") (default "replicated")
    #[arg(long, value_name = "string")]
    pub(crate) mode: Option<String>,
    /// Service name
    #[arg(long, value_name = "string")]
    pub(crate) name: Option<String>,
    /// Service labels
    #[arg(short = 'l', long = "label", value_name = "list")]
    pub(crate) labels: Vec<String>,
    /// Container labels
    #[arg(long = "container-label", value_name = "list")]
    pub(crate) container_labels: Vec<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "list")]
    pub(crate) env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "list")]
    pub(crate) env_file: Vec<String>,
    /// Placement constraints
    #[arg(long = "constraint", value_name = "list")]
    pub(crate) constraints: Vec<String>,
    /// Specify secrets to expose to the service
    #[arg(long = "secret", value_name = "secret")]
    pub(crate) secrets: Vec<String>,
    /// Set one or more supplementary user groups for the container
    #[arg(long = "group", value_name = "list")]
    pub(crate) groups: Vec<String>,
    /// IMAGE [COMMAND] [ARG...]
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE [COMMAND] [ARG...]"
    )]
    pub(crate) image_and_args: Vec<String>,
}

#[derive(Debug, ClapArgs)]
pub(crate) struct ServiceUpdateArgs {
    #[command(flatten)]
    pub(crate) common: ServiceFlags,
    /// Service image tag
    #[arg(long, value_name = "string")]
    pub(crate) image: Option<String>,
    /// Service command args
    #[arg(long, value_name = "command")]
    pub(crate) args: Option<String>,
    /// Rollback to previous specification
    #[arg(long)]
    pub(crate) rollback: bool,
    /// Force update even if no changes require it
    #[arg(long)]
    pub(crate) force: bool,
    /// Add or update a secret on a service
    #[arg(long = "secret-add", value_name = "secret")]
    pub(crate) secret_add: Vec<String>,
    /// Remove a secret
    #[arg(long = "secret-rm", value_name = "list")]
    pub(crate) secret_rm: Vec<String>,
    /// Add or update an environment variable
    #[arg(long = "env-add", value_name = "list")]
    pub(crate) env_add: Vec<String>,
    /// Remove an environment variable
    #[arg(long = "env-rm", value_name = "list")]
    pub(crate) env_rm: Vec<String>,
    /// Add or update a service label
    #[arg(long = "label-add", value_name = "list")]
    pub(crate) label_add: Vec<String>,
    /// Remove a label by its key
    #[arg(long = "label-rm", value_name = "list")]
    pub(crate) label_rm: Vec<String>,
    /// Add or update a container label
    #[arg(long = "container-label-add", value_name = "list")]
    pub(crate) container_label_add: Vec<String>,
    /// Remove a container label by its key
    #[arg(long = "container-label-rm", value_name = "list")]
    pub(crate) container_label_rm: Vec<String>,
    /// Add or update a placement constraint
    #[arg(long = "constraint-add", value_name = "list")]
    pub(crate) constraint_add: Vec<String>,
    /// Remove a constraint
    #[arg(long = "constraint-rm", value_name = "list")]
    pub(crate) constraint_rm: Vec<String>,
    /// Add an additional supplementary user group to the container
    #[arg(long = "group-add", value_name = "list")]
    pub(crate) group_add: Vec<String>,
    /// Remove a previously added supplementary user group from the container
    #[arg(long = "group-rm", value_name = "list")]
    pub(crate) group_rm: Vec<String>,
    /// SERVICE
    pub(crate) service: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ServiceCmd {
    /// Create a new service
    Create(Box<ServiceCreateArgs>),
    /// Update a service
    Update(Box<ServiceUpdateArgs>),
    /// List services
    #[command(alias = "list")]
    Ls {
        /// Only display IDs
        #[arg(short, long)]
        quiet: bool,
        /// Filter output based on conditions provided
        #[arg(short = 'f', long = "filter", value_name = "filter")]
        filters: Vec<String>,
        /// Format output using a custom template
        #[arg(long, value_name = "string")]
        format: Option<String>,
    },
    /// List the tasks of one or more services
    Ps {
        /// Only display task IDs
        #[arg(short, long)]
        quiet: bool,
        /// Do not truncate output
        #[arg(long)]
        no_trunc: bool,
        /// Do not map IDs to Names
        #[arg(long)]
        no_resolve: bool,
        /// Pretty-print tasks using a Go template
        #[arg(long, value_name = "string")]
        format: Option<String>,
        /// Filter output based on conditions provided
        #[arg(short = 'f', long = "filter", value_name = "filter")]
        filters: Vec<String>,
        /// SERVICE [SERVICE...]
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Display detailed information on one or more services
    Inspect {
        /// Print the information in a human friendly format
        #[arg(long)]
        pretty: bool,
        /// Format output using a custom template
        #[arg(short = 'f', long, value_name = "string")]
        format: Option<String>,
        /// SERVICE [SERVICE...]
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Fetch the logs of a service or task
    Logs(ServiceLogsArgs),
    /// Scale one or multiple replicated services
    Scale {
        /// Exit immediately instead of waiting for the service to converge
        #[arg(short = 'd', long)]
        detach: bool,
        /// SERVICE=REPLICAS [SERVICE=REPLICAS...]
        #[arg(required = true)]
        specs: Vec<String>,
    },
    /// Remove one or more services
    #[command(alias = "remove")]
    Rm {
        /// SERVICE [SERVICE...]
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Revert changes to a service's configuration
    Rollback {
        /// Suppress progress output
        #[arg(short, long)]
        quiet: bool,
        /// Exit immediately instead of waiting for the service to converge
        #[arg(short = 'd', long)]
        detach: bool,
        /// SERVICE
        service: String,
    },
}

#[derive(Debug, ClapArgs)]
pub(crate) struct ServiceLogsArgs {
    /// Do not map IDs to Names in output
    #[arg(long)]
    pub(crate) no_resolve: bool,
    /// Do not truncate output
    #[arg(long)]
    pub(crate) no_trunc: bool,
    /// Do not neatly format logs
    #[arg(long)]
    pub(crate) raw: bool,
    /// Do not include task IDs in output
    #[arg(long)]
    pub(crate) no_task_ids: bool,
    /// Follow log output
    #[arg(short = 'f', long)]
    pub(crate) follow: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long, value_name = "string")]
    pub(crate) since: Option<String>,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub(crate) timestamps: bool,
    /// Show extra details provided to logs
    #[arg(long)]
    pub(crate) details: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all", value_name = "string")]
    pub(crate) tail: String,
    /// SERVICE|TASK
    pub(crate) target: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum NodeCmd {
    /// List nodes in the swarm
    #[command(alias = "list")]
    Ls {
        /// Only display IDs
        #[arg(short, long)]
        quiet: bool,
        /// Filter output based on conditions provided
        #[arg(short = 'f', long = "filter", value_name = "filter")]
        filters: Vec<String>,
        /// Format output using a custom template
        #[arg(long, value_name = "string")]
        format: Option<String>,
    },
    /// Display detailed information on one or more nodes
    Inspect {
        /// Print the information in a human friendly format
        #[arg(long)]
        pretty: bool,
        /// Format output using a custom template
        #[arg(short = 'f', long, value_name = "string")]
        format: Option<String>,
        /// self|NODE [NODE...]
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Update a node
    Update {
        /// Role of the node ("worker", "manager")
        #[arg(long, value_name = "string")]
        role: Option<String>,
        /// Availability of the node ("active", "pause", "drain")
        #[arg(long, value_name = "string")]
        availability: Option<String>,
        /// Add or update a node label ("key=value")
        #[arg(long = "label-add", value_name = "list")]
        label_add: Vec<String>,
        /// Remove a node label if exists
        #[arg(long = "label-rm", value_name = "list")]
        label_rm: Vec<String>,
        /// NODE
        node: String,
    },
    /// List tasks running on one or more nodes, defaults to current node
    Ps {
        /// Do not truncate output
        #[arg(long)]
        no_trunc: bool,
        /// Do not map IDs to Names
        #[arg(long)]
        no_resolve: bool,
        /// Filter output based on conditions provided
        #[arg(short = 'f', long = "filter", value_name = "filter")]
        filters: Vec<String>,
        /// Pretty-print tasks using a Go template
        #[arg(long, value_name = "string")]
        format: Option<String>,
        /// Only display task IDs
        #[arg(short, long)]
        quiet: bool,
        /// [NODE...]
        nodes: Vec<String>,
    },
    /// Demote one or more nodes from manager in the swarm
    Demote {
        /// NODE [NODE...]
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Promote one or more nodes to manager in the swarm
    Promote {
        /// NODE [NODE...]
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Remove one or more nodes from the swarm
    #[command(alias = "remove")]
    Rm {
        /// Force remove a node from the swarm
        #[arg(short, long)]
        force: bool,
        /// NODE [NODE...]
        #[arg(required = true)]
        nodes: Vec<String>,
    },
}

/// `lockbox stack` (see `docs/stacks.md`).
#[derive(Debug, Subcommand)]
pub(crate) enum StackCmd {
    /// Deploy a new stack or update an existing stack
    #[command(alias = "up")]
    Deploy(StackDeployArgs),
    /// List stacks
    #[command(alias = "list")]
    Ls {
        /// Format output using a custom template
        #[arg(long, value_name = "string")]
        format: Option<String>,
    },
    /// List the services in the stack
    Services {
        /// Only display IDs
        #[arg(short, long)]
        quiet: bool,
        /// Format output using a custom template
        #[arg(long, value_name = "string")]
        format: Option<String>,
        /// Filter output based on conditions provided
        #[arg(short = 'f', long = "filter", value_name = "filter")]
        filters: Vec<String>,
        /// STACK
        stack: String,
    },
    /// List the tasks in the stack
    Ps {
        /// Do not truncate output
        #[arg(long)]
        no_trunc: bool,
        /// Do not map IDs to Names
        #[arg(long)]
        no_resolve: bool,
        /// Filter output based on conditions provided
        #[arg(short = 'f', long = "filter", value_name = "filter")]
        filters: Vec<String>,
        /// Only display task IDs
        #[arg(short, long)]
        quiet: bool,
        /// Format output using a custom template
        #[arg(long, value_name = "string")]
        format: Option<String>,
        /// STACK
        stack: String,
    },
    /// Remove one or more stacks
    #[command(aliases = ["remove", "down"])]
    Rm {
        /// Do not wait for stack removal (default true)
        #[arg(short = 'd', long, value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
        detach: Option<bool>,
        /// STACK [STACK...]
        #[arg(required = true)]
        stacks: Vec<String>,
    },
    /// Outputs the final config file, after doing merges and interpolations
    Config {
        /// Path to a Compose file, or "-" to read from stdin
        #[arg(
            short = 'c',
            long = "compose-file",
            value_name = "strings",
            value_delimiter = ','
        )]
        compose_files: Vec<String>,
        /// Skip interpolation and output only merged config
        #[arg(long)]
        skip_interpolation: bool,
    },
}

/// `lockbox stack deploy`.
#[derive(Debug, ClapArgs)]
pub(crate) struct StackDeployArgs {
    /// Path to a Compose file, or "-" to read from stdin
    #[arg(
        short = 'c',
        long = "compose-file",
        value_name = "strings",
        value_delimiter = ','
    )]
    pub(crate) compose_files: Vec<String>,
    /// Prune services that are no longer referenced
    #[arg(long)]
    pub(crate) prune: bool,
    /// Query the registry to resolve image digest and supported platforms ("always", "changed", "never"); lockbox never queries a registry
    #[arg(long, default_value = "always", value_name = "string")]
    pub(crate) resolve_image: String,
    /// Send registry authentication details to Swarm agents (no effect on lockbox)
    #[arg(long)]
    pub(crate) with_registry_auth: bool,
    /// Exit immediately instead of waiting for the stack services to converge (default true)
    #[arg(short = 'd', long, value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) detach: Option<bool>,
    /// Suppress progress output
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// STACK
    pub(crate) stack: String,
}

/// `lockbox run` (see `commands/run.rs`).
#[derive(Debug, ClapArgs)]
pub(crate) struct RunArgs {
    /// Remove the task (its service) when it ends
    #[arg(long)]
    pub(crate) rm: bool,
    /// Run in the background and print the run's service ID
    #[arg(short = 'd', long)]
    pub(crate) detach: bool,
    /// Set environment variables (K=V, or K for this environment's value)
    #[arg(short = 'e', long = "env", value_name = "list")]
    pub(crate) env: Vec<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub(crate) user: Option<String>,
    /// Working directory inside the task
    #[arg(short = 'w', long)]
    pub(crate) workdir: Option<String>,
    /// Task hostname
    #[arg(long)]
    pub(crate) hostname: Option<String>,
    /// Name of the run's service (default run-<id>)
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long, value_name = "command")]
    pub(crate) entrypoint: Option<String>,
    /// Secret to expose: NAME, or source=NAME,target=PATH,uid=UID,gid=GID,mode=MODE
    #[arg(long = "secret", value_name = "secret")]
    pub(crate) secrets: Vec<String>,
    /// Container labels
    #[arg(short = 'l', long = "label", value_name = "list")]
    pub(crate) labels: Vec<String>,
    /// Supplementary user groups
    #[arg(long = "group", value_name = "list")]
    pub(crate) groups: Vec<String>,
    /// IMAGE [COMMAND] [ARG...] (image `host` runs a host process)
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE [COMMAND] [ARG...]"
    )]
    pub(crate) image_and_args: Vec<String>,
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}
