//! The `lockbox` command: argument parsing, the daemon's composition root, and the CLI verbs.

#![forbid(unsafe_code)]

mod cli;
mod commands;
mod daemon;
mod executors;
mod logging;
mod paths;

use std::process::ExitCode;

use clap::Parser;

/// Entry point: parses arguments, runs the command, and turns its result into an exit code.
pub fn main() -> ExitCode {
    // The process executor re-executes this binary as a single-threaded helper that sets up a
    // task's namespace and secrets: it must run before any thread or runtime exists.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == lockbox_exec::HELPER_ARG)
    {
        lockbox_exec::helper_main();
    }
    let args = cli::Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lockbox: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(args));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: cli::Args) -> anyhow::Result<ExitCode> {
    match args.command {
        cli::Command::Daemon(d) => daemon::run(d, &args.global.host).await,
        other => commands::run(&args.global, other).await,
    }
}
