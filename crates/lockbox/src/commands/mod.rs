//! The CLI verbs. Data goes to stdout, messages and errors to stderr.

pub(crate) mod access;
pub(crate) mod audit;
mod env;
mod node;
mod run;
mod secret;
mod service;
mod stack;
mod swarm;
mod system;

use std::process::ExitCode;

use lockbox_client::{Client, Endpoint};

use crate::cli::{Command, Global};

pub(crate) async fn run(g: &Global, cmd: Command) -> anyhow::Result<ExitCode> {
    // `env` needs no daemon.
    let cmd = match cmd {
        Command::Env(a) => return env::run(a),
        other => other,
    };
    let host = g
        .host
        .last()
        .cloned()
        .unwrap_or_else(crate::paths::default_host);
    let client = Client::new(Endpoint::parse(&host)?);
    match cmd {
        Command::Secret(c) => secret::run(&client, c).await,
        Command::Swarm(c) => swarm::run(&client, c).await,
        Command::Service(c) => service::run(&client, c).await,
        Command::Node(c) => node::run(&client, c).await,
        Command::Stack(c) => stack::run(&client, c).await,
        Command::Run(a) => run::run(&client, &a).await,
        Command::Version(f) => system::version(&client, f.format.as_deref()).await,
        Command::Info(f) => system::info(&client, f.format.as_deref()).await,
        Command::Whoami(f) => access::whoami(&client, f.format.as_deref()).await,
        Command::User(c) => access::user(&client, c).await,
        Command::Role(c) => access::role(&client, c).await,
        Command::Grant(c) => access::grant(&client, c).await,
        Command::Audit(c) => audit::run(&client, c).await,
        Command::Daemon(_) | Command::Env(_) => unreachable!("handled before"),
    }
}

/// Parses `key=value` (a bare `key` gives an empty value), as docker's `-l`.
pub(crate) fn key_value(s: &str) -> (String, String) {
    match s.split_once('=') {
        Some((k, v)) => (k.to_owned(), v.to_owned()),
        None => (s.to_owned(), String::new()),
    }
}
