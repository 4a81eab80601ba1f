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
    /// Show the lockbox version information
    Version(FormatArg),
    /// Display system-wide information
    Info(FormatArg),
}

#[derive(Debug, ClapArgs)]
pub(crate) struct DaemonArgs {
    /// Directory for keys and the store
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Do not initialize a one-node swarm on first start; wait for `swarm init`
    #[arg(long)]
    pub(crate) no_auto_init: bool,
    /// Address advertised to other nodes
    #[arg(long, default_value = "127.0.0.1:2377")]
    pub(crate) advertise_addr: String,
    /// Log level (error, warn, info, debug, trace); LOCKBOX_LOG overrides
    #[arg(long, default_value = "info")]
    pub(crate) log_level: String,
    /// Raft log entries between snapshots
    #[arg(long, default_value_t = 10_000, hide = true)]
    pub(crate) snapshot_interval: u64,
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
}
