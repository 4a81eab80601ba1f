//! The only place that installs a tracing subscriber. Logs go to stderr.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub(crate) fn init(level: &str) {
    let filter = EnvFilter::try_from_env("LOCKBOX_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,lockbox={level},lockbox_core={level},lockbox_api={level},lockbox_store={level}"
        ))
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_filter(QuietUnreachable);
    // The level filter is global, so that disabled callsites (openraft's debug spans on the
    // write path) cost nothing; the quieting filter only sees what passes it.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
}

/// Drops openraft's reports of an unreachable peer: it logs one at every retry of every
/// replication and election round (several a second per peer while one is down), and the
/// store's transport already says once when a manager stops answering and once when it
/// answers again.
struct QuietUnreachable;

impl<S> Filter<S> for QuietUnreachable {
    fn enabled(&self, _meta: &tracing::Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, _cx: &Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() > tracing::Level::WARN || !meta.target().starts_with("openraft") {
            return true;
        }
        let mut seen = MentionsUnreachable(false);
        event.record(&mut seen);
        !seen.0
    }
}

struct MentionsUnreachable(bool);

impl Visit for MentionsUnreachable {
    fn record_debug(&mut self, _field: &Field, value: &dyn fmt::Debug) {
        if !self.0 {
            self.0 = format!("{value:?}").contains("Unreachable");
        }
    }
}
