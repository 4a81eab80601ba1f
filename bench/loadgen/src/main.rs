//! `lockbox-bench`: a load generator for the Docker Engine API, pointed at lockbox or at a
//! real Docker Engine in swarm mode, and the renderer of `docs/performance.md`.
//!
//! ```text
//! lockbox-bench run --endpoint unix:///run/lockbox/lockbox.sock --op create -c 32 --count 20000
//! lockbox-bench run --endpoint tcp://127.0.0.1:23760 --op inspect --prefix bench-c1- -c 8 -d 5
//! lockbox-bench count --endpoint ...
//! lockbox-bench report --results results.jsonl --out docs/performance.md ...
//! ```
//!
//! Each connection is one HTTP/1.1 keep-alive connection driven by one task that sends the
//! next request as soon as the previous response is read (closed loop). A run that saw any
//! error prints it and exits with status 1: it is not a result.

mod http;
mod load;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "lockbox-bench",
    about = "Docker Engine API load generator (lockbox vs swarm)"
)]
struct Args {
    /// Runtime worker threads of the load generator itself
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run one load and print throughput, p50/p99 latency and errors
    Run(RunArgs),
    /// Print how many secrets the endpoint holds
    Count {
        /// unix:///PATH or tcp://HOST:PORT
        #[arg(short = 'H', long)]
        endpoint: String,
        /// Only names starting with this
        #[arg(long, default_value = "")]
        prefix: String,
        /// API version used in paths
        #[arg(long, default_value = "1.41")]
        api: String,
    },
    /// Render the results file as docs/performance.md and an SVG plot
    Report(report::ReportArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// unix:///PATH or tcp://HOST:PORT
    #[arg(short = 'H', long)]
    endpoint: String,
    /// What each request does
    #[arg(long, value_enum)]
    op: load::Op,
    /// Concurrent keep-alive connections (one request in flight on each)
    #[arg(short = 'c', long, default_value_t = 1)]
    connections: usize,
    /// Stop after this many requests (over all connections)
    #[arg(short = 'n', long, conflicts_with = "duration")]
    count: Option<u64>,
    /// Stop after this many seconds
    #[arg(short = 'd', long)]
    duration: Option<f64>,
    /// Secret name prefix: create names PREFIX<n>; inspect/remove use the secrets named PREFIX*
    #[arg(long, default_value = "bench-")]
    prefix: String,
    /// Secret value size in bytes (create)
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// `filters` JSON for --op list-filter, e.g. '{"label":["bench=bench-c1-"]}'
    #[arg(long)]
    filter: Option<String>,
    /// For list ops: the number of secrets the answer must hold (otherwise an error)
    #[arg(long)]
    expect: Option<usize>,
    /// Image for --op service (`host` for lockbox's process executor, `busybox:local` for swarm)
    #[arg(long, default_value = "host")]
    image: String,
    /// Tasks per service for --op service
    #[arg(long, default_value_t = 3)]
    replicas: u64,
    /// Task poll interval in milliseconds for --op service
    #[arg(long, default_value_t = 2)]
    poll_ms: u64,
    /// Per-service timeout in seconds for --op service
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// API version used in paths (1.41 is Docker 20.10's)
    #[arg(long, default_value = "1.41")]
    api: String,
    /// Name of the system under test, recorded in the results
    #[arg(long, default_value = "target")]
    target: String,
    /// A tag recorded with the result (to tell runs apart in the report)
    #[arg(long)]
    tag: Option<String>,
    /// Append the result as one JSON line to this file
    #[arg(long)]
    out: Option<PathBuf>,
    /// Report errors but exit 0
    #[arg(long)]
    allow_errors: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lockbox-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(real_main(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lockbox-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn real_main(args: Args) -> Result<ExitCode> {
    match args.cmd {
        Cmd::Run(a) => run(a).await,
        Cmd::Count {
            endpoint,
            prefix,
            api,
        } => {
            let ep = http::Endpoint::parse(&endpoint)?;
            let mut conn = http::Conn::connect(&ep).await?;
            let names = load::names_with_prefix(&mut conn, &api, &prefix).await?;
            println!("{}", names.len());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Report(a) => {
            report::render(&a)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run(a: RunArgs) -> Result<ExitCode> {
    let stop = match (a.count, a.duration) {
        (Some(n), _) => load::Stop::Count(n),
        (None, Some(d)) if d > 0.0 => load::Stop::Duration(Duration::from_secs_f64(d)),
        (None, None) if matches!(a.op, load::Op::Remove) => load::Stop::Count(u64::MAX),
        _ => bail!("give --count N or --duration SECS"),
    };
    if a.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if a.op == load::Op::ListFilter && a.filter.is_none() {
        bail!("--op list-filter needs --filter");
    }
    let plan = load::Plan {
        endpoint: http::Endpoint::parse(&a.endpoint)?,
        api: a.api,
        op: a.op,
        connections: a.connections,
        stop,
        prefix: a.prefix,
        size: a.size,
        filter: a.filter,
        expect: a.expect,
        image: a.image,
        replicas: a.replicas,
        poll: Duration::from_millis(a.poll_ms),
        timeout: Duration::from_secs(a.timeout),
        tag: a.tag,
    };
    let o = load::run(plan, &a.target).await?;
    let what = match &o.tag {
        Some(t) => format!("{:?} [{t}]", o.op),
        None => format!("{:?}", o.op),
    };
    println!(
        "{:<8} {:<22} c={:<3} ops={:<7} errors={:<3} {:>9.1}/s  p50={:.3}ms p99={:.3}ms max={:.3}ms{}",
        o.target,
        what,
        o.connections,
        o.ops,
        o.errors,
        o.throughput,
        o.p50_ms,
        o.p99_ms,
        o.max_ms,
        o.items.map(|n| format!("  items={n}")).unwrap_or_default()
    );
    if let Some(e) = &o.first_error {
        eprintln!("first error: {e}");
    }
    if let Some(path) = &a.out {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{}", serde_json::to_string(&o)?)?;
    }
    if o.errors > 0 && !a.allow_errors {
        eprintln!(
            "lockbox-bench: the run had {} errors: it is not a result",
            o.errors
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
