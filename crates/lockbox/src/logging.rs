//! The only place that installs a tracing subscriber. Logs go to stderr.

use tracing_subscriber::EnvFilter;

pub(crate) fn init(level: &str) {
    let filter = EnvFilter::try_from_env("LOCKBOX_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,lockbox={level},lockbox_core={level},lockbox_api={level},lockbox_store={level}"
        ))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
