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
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if matches!(args.command, cli::Command::Daemon(_)) {
        builder.worker_threads(daemon_workers());
    }
    let runtime = match builder.build() {
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

/// The daemon's API worker threads: one per core but the one the store's Raft thread keeps
/// busy (lockbox-store runs Raft, and the log writes, on a thread of its own), at least one;
/// `TOKIO_WORKER_THREADS` overrides it. On two cores one API thread made creates faster than
/// two, on one connection (4,470 against 4,190/s) and on 32 (39,300 against 36,200/s), with
/// the same inspect throughput (interleaved runs, bench/analysis.md): two API threads woke
/// each other for work stealing and competed with the Raft thread for the second core.
fn daemon_workers() -> usize {
    if let Some(n) = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return n;
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    cores.saturating_sub(1).max(1)
}

async fn run(args: cli::Args) -> anyhow::Result<ExitCode> {
    match args.command {
        cli::Command::Daemon(d) => daemon::run(d, &args.global.host).await,
        other => commands::run(&args.global, other).await,
    }
}
