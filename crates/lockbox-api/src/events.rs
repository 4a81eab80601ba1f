//! `/events`: a recent history (for `since`) and a live stream of object events.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderValue, StatusCode};
use lockbox_core::{Event, Manager};
use serde_json::json;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;

const HISTORY: usize = 1024;

/// The last [`HISTORY`] events, kept for `since`.
#[derive(Debug, Default)]
pub(crate) struct EventLog {
    recent: Mutex<VecDeque<Event>>,
}

impl EventLog {
    /// Starts recording the manager's events.
    pub(crate) fn start(manager: &Manager) -> Arc<EventLog> {
        let log = Arc::new(EventLog::default());
        let mut rx = manager.subscribe();
        let weak = Arc::downgrade(&log);
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) => match weak.upgrade() {
                        Some(log) => {
                            if let Ok(mut q) = log.recent.lock() {
                                q.push_back(e);
                                while q.len() > HISTORY {
                                    q.pop_front();
                                }
                            }
                        }
                        None => break,
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
        });
        log
    }

    fn since(&self, t: i64) -> Vec<Event> {
        self.recent
            .lock()
            .map(|q| q.iter().filter(|e| e.time.0 >= t).cloned().collect())
            .unwrap_or_default()
    }
}

/// Parses docker's `since`/`until`: Unix seconds with an optional fraction.
fn parse_ts(s: &str) -> ApiResult<i64> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid timestamp: {s}")))?;
    let mut nanos: i64 = 0;
    if !frac.is_empty() {
        let f = format!("{frac:0<9}");
        nanos = f
            .get(..9)
            .unwrap_or("0")
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid timestamp: {s}")))?;
    }
    Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

fn message(e: &Event) -> String {
    let mut s = json!({
        "Type": e.kind,
        "Action": e.action,
        "Actor": { "ID": e.id, "Attributes": { "name": e.name } },
        "scope": "swarm",
        "time": e.time.0.div_euclid(1_000_000_000),
        "timeNano": e.time.0,
    })
    .to_string();
    s.push('\n');
    s
}

fn matches(f: &Filters, e: &Event) -> bool {
    let types = f.values("type");
    let actions = f.values("event");
    let scopes = f.values("scope");
    let secrets = f.values("secret");
    (types.is_empty() || types.iter().any(|t| t == e.kind))
        && (actions.is_empty() || actions.iter().any(|a| a == e.action))
        && (scopes.is_empty() || scopes.iter().any(|s| s == "swarm"))
        && (secrets.is_empty()
            || (e.kind == "secret" && secrets.iter().any(|s| *s == e.id || *s == e.name)))
}

pub(crate) async fn events(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let filters = Filters::parse(q.get("filters").map(String::as_str))?;
    let since = q
        .get("since")
        .filter(|s| !s.is_empty())
        .map(|s| parse_ts(s))
        .transpose()?;
    let until = q
        .get("until")
        .filter(|s| !s.is_empty())
        .map(|s| parse_ts(s))
        .transpose()?;
    let rx = app.manager.subscribe();
    let history: Vec<Event> = match since {
        Some(t) => app.events.since(t),
        None => Vec::new(),
    };
    let last_seen = history.last().map(|e| (e.time, e.id.clone(), e.action));
    let now = lockbox_types::Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64),
    );
    let f2 = filters.clone();
    let past = futures::stream::iter(
        history
            .into_iter()
            .filter(move |e| matches(&filters, e) && until.is_none_or(|u| e.time.0 <= u))
            .map(|e| Ok::<_, std::io::Error>(message(&e))),
    );
    let live = futures::stream::unfold((rx, last_seen), move |(mut rx, last_seen)| async move {
        loop {
            let next = match until {
                Some(u) => {
                    let wait = u.saturating_sub(now.0).max(0) as u64;
                    match tokio::time::timeout(Duration::from_nanos(wait), rx.recv()).await {
                        Ok(r) => r,
                        Err(_) => return None,
                    }
                }
                None => rx.recv().await,
            };
            match next {
                Ok(e) => {
                    if let Some((t, id, action)) = &last_seen
                        && e.time <= *t
                        && (e.id == *id && e.action == *action || e.time < *t)
                    {
                        continue;
                    }
                    if until.is_some_and(|u| e.time.0 > u) {
                        return None;
                    }
                    return Some((e, (rx, last_seen)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    })
    .filter(move |e| futures::future::ready(matches(&f2, e)))
    .map(|e| Ok::<_, std::io::Error>(message(&e)));
    let stream = past.chain(live);
    let mut resp = (StatusCode::OK, Body::from_stream(stream)).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
