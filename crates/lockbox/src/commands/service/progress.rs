//! docker's `WaitOnService`: poll the service, its up-to-date tasks and the
//! nodes every 200 ms and show the convergence until the service is stable
//! for `UpdateConfig.Monitor` (5 s by default).

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use lockbox_format::{ProgressDisplay, ProgressEvent, ProgressState};
use serde_json::Value;

use super::api::{Api, Filters, path_escape, with_query};

/// The columns of the terminal on stdout, as docker's `term.GetWinsize`
/// (200 when it cannot be read).
fn stdout_width() -> usize {
    match rustix::termios::tcgetwinsize(rustix::stdio::stdout()) {
        Ok(ws) => usize::from(ws.ws_col),
        Err(_) => 200,
    }
}

struct Out {
    display: ProgressDisplay,
    quiet: bool,
}

impl Out {
    fn emit(&mut self, events: &[ProgressEvent]) {
        let text: String = events.iter().map(|e| e.render(&mut self.display)).collect();
        if !self.quiet && !text.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }
}

fn update(id: &str, action: String) -> ProgressEvent {
    ProgressEvent::Progress {
        id: id.into(),
        action,
        current: 0,
        total: 0,
        hide_counts: false,
    }
}

async fn active_nodes(api: &Api<'_>) -> anyhow::Result<HashSet<String>> {
    let nodes = api.get("/nodes").await?;
    Ok(nodes
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|n| n.pointer("/Status/State").and_then(Value::as_str) != Some("down"))
                .filter_map(|n| n.get("ID").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Waits for `service_id` (as the user named it) to converge; `quiet`
/// hides the progress.
pub(crate) async fn wait_on_service(
    api: &Api<'_>,
    service_id: &str,
    quiet: bool,
) -> anyhow::Result<()> {
    let mut out = Out {
        display: ProgressDisplay::new(std::io::stdout().is_terminal(), stdout_width()),
        quiet,
    };
    let mut state: Option<ProgressState> = None;
    let mut converged = false;
    let mut converged_at: Option<Instant> = None;
    let mut monitor = Duration::from_secs(5);
    let mut rollback = false;
    let mut message: Option<ProgressEvent> = None;
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        let service = api
            .get(&format!(
                "/services/{}?insertDefaults=false",
                path_escape(service_id)
            ))
            .await?;
        if let Some(m) = service
            .pointer("/Spec/UpdateConfig/Monitor")
            .and_then(Value::as_i64)
            .filter(|m| *m != 0)
        {
            monitor = Duration::from_nanos(m.max(0) as u64);
        }
        if state.is_none() {
            state = Some(ProgressState::new(&service).map_err(anyhow::Error::msg)?);
        }
        let status_msg = service
            .pointer("/UpdateStatus/Message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match service
            .pointer("/UpdateStatus/State")
            .and_then(Value::as_str)
        {
            Some("updating") => rollback = false,
            Some("completed") if !converged => return Ok(()),
            Some("paused") => anyhow::bail!("service update paused: {status_msg}"),
            Some("rollback_started") => {
                if !rollback && !status_msg.is_empty() {
                    out.emit(&[update("rollback", status_msg.clone())]);
                }
                rollback = true;
            }
            Some("rollback_paused") => anyhow::bail!("service rollback paused: {status_msg}"),
            Some("rollback_completed") => {
                if !converged {
                    message = Some(ProgressEvent::Message {
                        id: "rollback".into(),
                        message: status_msg.clone(),
                    });
                }
                rollback = true;
            }
            _ => {}
        }
        if converged && converged_at.is_some_and(|t| t.elapsed() >= monitor) {
            let mut events = vec![update("verify", format!("Service {service_id} converged"))];
            events.extend(message.take());
            out.emit(&events);
            return Ok(());
        }
        let svc_id = service.get("ID").and_then(Value::as_str).unwrap_or("");
        let mut filters = Filters::default();
        filters.add("service", svc_id);
        filters.add("_up-to-date", "true");
        let tasks = api.get(&with_query("/tasks", &[filters.query()])).await?;
        let tasks = tasks.as_array().cloned().unwrap_or_default();
        let nodes = active_nodes(api).await?;
        let mut events = Vec::new();
        let result = match state.as_mut() {
            Some(st) => st.update(&service, &tasks, &nodes, rollback, &mut events),
            None => Ok(false),
        };
        out.emit(&events);
        converged = result.map_err(anyhow::Error::msg)?;
        if converged {
            if service.get("JobStatus").is_some_and(|j| !j.is_null()) {
                out.emit(&[ProgressEvent::Message {
                    id: String::new(),
                    message: "job complete".into(),
                }]);
                return Ok(());
            }
            let at = *converged_at.get_or_insert_with(Instant::now);
            if let Some(wait) = monitor.checked_sub(at.elapsed()) {
                out.emit(&[update(
                    "verify",
                    format!(
                        "Waiting {} seconds to verify that tasks are stable...",
                        wait.as_secs() + 1
                    ),
                )]);
            }
        } else {
            if converged_at.is_some() {
                out.emit(&[update("verify", "Detected task failure".into())]);
            }
            converged_at = None;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = &mut interrupt => {
                if !converged {
                    out.emit(&[
                        ProgressEvent::Message { id: String::new(), message: "Operation continuing in background.".into() },
                        ProgressEvent::Message {
                            id: String::new(),
                            message: format!("Use `lockbox service ps {service_id}` to check progress."),
                        },
                    ]);
                }
                return Ok(());
            }
        }
    }
}
