//! The convergence display of `docker service create|update|scale|rollback`
//! (docker/cli `cli/command/service/progress`) and how docker's
//! `jsonmessage.DisplayJSONMessagesStream` renders it: on a terminal, one
//! line per ID redrawn in place with ANSI cursor moves; otherwise one line
//! per message, progress bars left out.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value as Json;

use crate::display::truncate_id;
use crate::service::{ptr, s, u};

/// Task states in the order docker's progress counts them.
fn state_number(state: &str) -> i64 {
    match state {
        "new" => 1,
        "allocated" => 2,
        "pending" => 3,
        "assigned" => 4,
        "accepted" => 5,
        "preparing" => 6,
        "ready" => 7,
        "starting" => 8,
        "running" => 9,
        "complete" => 10,
        "shutdown" => 11,
        "failed" => 12,
        "rejected" => 13,
        _ => 0,
    }
}

/// The longest state name shown ("allocated", "preparing").
const LONGEST_STATE: usize = 9;
const MAX_PROGRESS: i64 = 9;
const MAX_PROGRESS_BARS: u64 = 20;
const MAX_JOB_PROGRESS: i64 = 10;

fn terminal_state(state: &str) -> bool {
    state_number(state) > state_number("running")
}

/// Renders docker's JSON progress messages as `docker` prints them.
#[derive(Debug)]
pub struct ProgressDisplay {
    terminal: bool,
    width: usize,
    ids: HashMap<String, usize>,
}

impl ProgressDisplay {
    /// `terminal`: stdout is a terminal; `width`: its columns (docker uses
    /// 200 when the size cannot be read). Bars are drawn only on terminals
    /// wider than 110 columns.
    pub fn new(terminal: bool, width: usize) -> ProgressDisplay {
        ProgressDisplay {
            terminal,
            width,
            ids: HashMap::new(),
        }
    }

    /// `JSONProgress.String()` for docker's progress (no byte counts).
    fn bar(&self, current: i64, total: i64, hide_counts: bool) -> String {
        if current <= 0 && total <= 0 {
            return String::new();
        }
        if total <= 0 {
            return format!("{current:>8}B");
        }
        let mut percentage = ((current as f64 / total as f64 * 100.0) as i64) / 2;
        percentage = percentage.min(50);
        let mut out = String::new();
        if self.width > 110 {
            let spaces = (50 - percentage).max(0) as usize;
            out = format!(
                "[{}>{}] ",
                "=".repeat(percentage.max(0) as usize),
                " ".repeat(spaces)
            );
        }
        if !hide_counts {
            out.push_str(&format!("{current}B/{total}B"));
        }
        out
    }

    /// The text for a progress message (`progress.Progress` with an action).
    pub fn progress(
        &mut self,
        id: &str,
        action: &str,
        current: i64,
        total: i64,
        hide_counts: bool,
    ) -> String {
        let mut out = String::new();
        let mut diff = 0;
        if !id.is_empty() {
            let line = match self.ids.get(id) {
                Some(l) => *l,
                None => {
                    let l = self.ids.len();
                    self.ids.insert(id.to_string(), l);
                    if self.terminal {
                        out.push('\n');
                    }
                    l
                }
            };
            diff = self.ids.len() - line;
            if self.terminal {
                out.push_str(&format!("\x1b[{diff}A"));
            }
        } else {
            self.ids.clear();
        }
        let bar = self.bar(current, total, hide_counts);
        if self.terminal {
            out.push_str("\x1b[2K\r");
        } else if !bar.is_empty() {
            return out;
        }
        if !id.is_empty() {
            out.push_str(id);
            out.push_str(": ");
        }
        if self.terminal {
            out.push_str(action);
            out.push(' ');
            out.push_str(&bar);
            out.push('\r');
        } else {
            out.push_str(action);
            out.push('\n');
        }
        if !id.is_empty() && self.terminal {
            out.push_str(&format!("\x1b[{diff}B"));
        }
        out
    }

    /// The text for a plain message (`progress.Message`).
    pub fn message(&mut self, id: &str, message: &str) -> String {
        self.ids.clear();
        if id.is_empty() {
            format!("{message}\n")
        } else {
            format!("{id}: {message}\n")
        }
    }
}

/// One thing the progress writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// `progress.Progress{ID, Action, Current, Total, HideCounts}`.
    Progress {
        /// Line ID.
        id: String,
        /// Text.
        action: String,
        /// Position.
        current: i64,
        /// End.
        total: i64,
        /// No numbers.
        hide_counts: bool,
    },
    /// `progress.Message`.
    Message {
        /// Line ID.
        id: String,
        /// Text.
        message: String,
    },
}

impl ProgressEvent {
    fn update(id: impl Into<String>, action: impl Into<String>) -> ProgressEvent {
        ProgressEvent::Progress {
            id: id.into(),
            action: action.into(),
            current: 0,
            total: 0,
            hide_counts: false,
        }
    }

    /// Render with `display`.
    pub fn render(&self, display: &mut ProgressDisplay) -> String {
        match self {
            ProgressEvent::Progress {
                id,
                action,
                current,
                total,
                hide_counts,
            } => display.progress(id, action, *current, *total, *hide_counts),
            ProgressEvent::Message { id, message } => display.message(id, message),
        }
    }
}

fn overall(numerator: u64, denominator: u64, rollback: bool) -> ProgressEvent {
    if rollback {
        ProgressEvent::update(
            "overall progress",
            format!("rolling back update: {numerator} out of {denominator} tasks"),
        )
    } else {
        ProgressEvent::update(
            "overall progress",
            format!("{numerator} out of {denominator} tasks"),
        )
    }
}

/// `truncError`: newlines become spaces, at most 75 bytes.
fn trunc_error(msg: &str) -> String {
    let msg = msg.replace('\n', " ");
    if msg.len() > 75 {
        let mut end = 74;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &msg[..end])
    } else {
        msg
    }
}

fn task_state(t: &Json) -> &str {
    s(t, "/Status/State")
}

fn desired(t: &Json) -> &str {
    s(t, "/DesiredState")
}

fn padded(state: &str) -> String {
    format!("{state:<LONGEST_STATE$}")
}

/// Which updater the service's mode needs (docker's `initializeUpdater`).
#[derive(Debug)]
enum Updater {
    Replicated {
        slot_map: HashMap<String, usize>,
        initialized: bool,
        done: bool,
    },
    Global {
        initialized: bool,
        done: bool,
    },
    ReplicatedJob {
        iteration: u64,
        concurrent: i64,
        total: i64,
        initialized: bool,
        progress_digits: usize,
        active_digits: usize,
    },
    GlobalJob {
        initialized: bool,
        total: usize,
        progress_digits: usize,
        nodes: HashSet<String>,
    },
}

/// The state of docker's progress updater for one service.
#[derive(Debug)]
pub struct ProgressState {
    updater: Updater,
}

impl ProgressState {
    /// The updater for `service` (as `GET /services/{id}` returns it);
    /// `Err` with docker's message for an unknown mode.
    pub fn new(service: &Json) -> Result<ProgressState, String> {
        let updater = if ptr(service, "/Spec/Mode/Replicated/Replicas").is_some() {
            Updater::Replicated {
                slot_map: HashMap::new(),
                initialized: false,
                done: false,
            }
        } else if ptr(service, "/Spec/Mode/Global").is_some() {
            Updater::Global {
                initialized: false,
                done: false,
            }
        } else if ptr(service, "/Spec/Mode/ReplicatedJob").is_some() {
            let concurrent = u(service, "/Spec/Mode/ReplicatedJob/MaxConcurrent") as i64;
            let total = u(service, "/Spec/Mode/ReplicatedJob/TotalCompletions") as i64;
            Updater::ReplicatedJob {
                iteration: u(service, "/JobStatus/JobIteration/Index"),
                concurrent,
                total,
                initialized: false,
                progress_digits: total.to_string().len(),
                active_digits: concurrent.to_string().len(),
            }
        } else if ptr(service, "/Spec/Mode/GlobalJob").is_some() {
            Updater::GlobalJob {
                initialized: false,
                total: 0,
                progress_digits: 0,
                nodes: HashSet::new(),
            }
        } else {
            return Err("unrecognized service mode".into());
        };
        Ok(ProgressState { updater })
    }

    /// One poll: `tasks` are the service's up-to-date tasks, `active_nodes`
    /// the nodes not down. Returns whether the service converged (or the
    /// docker error) and appends what docker writes to `out`.
    pub fn update(
        &mut self,
        service: &Json,
        tasks: &[Json],
        active_nodes: &HashSet<String>,
        rollback: bool,
        out: &mut Vec<ProgressEvent>,
    ) -> Result<bool, String> {
        match &mut self.updater {
            Updater::Replicated {
                slot_map,
                initialized,
                done,
            } => {
                let Some(replicas) =
                    ptr(service, "/Spec/Mode/Replicated/Replicas").and_then(Json::as_u64)
                else {
                    return Err("no replica count".into());
                };
                if !*initialized {
                    slot_map.clear();
                    out.push(overall(0, replicas, rollback));
                    if replicas <= MAX_PROGRESS_BARS {
                        for i in 1..=replicas {
                            out.push(ProgressEvent::update(format!("{i}/{replicas}"), " "));
                        }
                    }
                    *initialized = true;
                }
                let by_slot = tasks_by_key(tasks, |t| Some(slot_key(t)), Some(active_nodes));
                if *done && by_slot.values().any(|t| task_state(t) != "running") {
                    *done = false;
                }
                let mut running = 0u64;
                for (slot, t) in &by_slot {
                    let next = slot_map.len() + 1;
                    let mapped = *slot_map.entry(slot.clone()).or_insert(next);
                    if !terminal_state(desired(t)) && task_state(t) == "running" {
                        running += 1;
                    }
                    if *done || replicas > MAX_PROGRESS_BARS || mapped as u64 > replicas {
                        continue;
                    }
                    let id = format!("{mapped}/{replicas}");
                    write_task(out, id, t, MAX_PROGRESS, !terminal_state(task_state(t)));
                }
                if !*done {
                    out.push(overall(running, replicas, rollback));
                    if running == replicas {
                        *done = true;
                    }
                }
                Ok(running == replicas)
            }
            Updater::Global { initialized, done } => {
                let by_node = tasks_by_key(tasks, |t| Some(s(t, "/NodeID").to_string()), None);
                let node_count = by_node.len() as u64;
                if !*initialized {
                    if node_count == 0 {
                        out.push(ProgressEvent::update(
                            "overall progress",
                            "waiting for new tasks",
                        ));
                        return Ok(false);
                    }
                    out.push(overall(0, node_count, rollback));
                    *initialized = true;
                }
                if *done && by_node.values().any(|t| task_state(t) != "running") {
                    *done = false;
                }
                let mut running = 0u64;
                for t in by_node.values() {
                    if !active_nodes.contains(s(t, "/NodeID")) {
                        continue;
                    }
                    if !terminal_state(desired(t)) && task_state(t) == "running" {
                        running += 1;
                    }
                    if *done || node_count > MAX_PROGRESS_BARS {
                        continue;
                    }
                    let id = truncate_id(s(t, "/NodeID"));
                    write_task(out, id, t, MAX_PROGRESS, !terminal_state(task_state(t)));
                }
                if !*done {
                    out.push(overall(running, node_count, rollback));
                    if running == node_count {
                        *done = true;
                    }
                }
                Ok(running == node_count)
            }
            Updater::ReplicatedJob {
                iteration,
                concurrent,
                total,
                initialized,
                progress_digits,
                active_digits,
            } => {
                let job_overall = |out: &mut Vec<ProgressEvent>, active: i64, completed: i64| {
                    out.push(ProgressEvent::Progress {
                        id: "job progress".into(),
                        action: format!(
                            "{completed:>w$} out of {total} complete",
                            w = *progress_digits
                        ),
                        current: completed,
                        total: *total,
                        hide_counts: true,
                    });
                    let actual = (*total - completed).min(*concurrent);
                    out.push(ProgressEvent::update(
                        "active tasks",
                        format!("{active:>w$} out of {actual:>w$} tasks", w = *active_digits),
                    ));
                };
                if !*initialized {
                    job_overall(out, 0, 0);
                    if *total as u64 <= MAX_PROGRESS_BARS {
                        for i in 1..=*total {
                            out.push(ProgressEvent::update(format!("{i}/{total}"), " "));
                        }
                    }
                    *initialized = true;
                }
                let mut by_slot: BTreeMap<i64, &Json> = BTreeMap::new();
                for t in tasks {
                    if job_iteration(t) != Some(*iteration) {
                        continue;
                    }
                    if state_number(desired(t)) == 0 || state_number(task_state(t)) == 0 {
                        continue;
                    }
                    let slot = t.pointer("/Slot").and_then(Json::as_i64).unwrap_or(0);
                    match by_slot.get(&slot) {
                        Some(e) if state_number(task_state(e)) <= state_number(task_state(t)) => {}
                        _ => {
                            by_slot.insert(slot, t);
                        }
                    }
                }
                let mut active = 0;
                let mut complete = 0;
                // docker walks slots 0..len (missing slots count as a zero task).
                for i in 0..by_slot.len() as i64 {
                    let t = by_slot.get(&i).copied();
                    let state = t.map(task_state).unwrap_or("");
                    if *total as u64 <= MAX_PROGRESS_BARS {
                        match t {
                            Some(t) => {
                                let id = format!("{}/{}", i + 1, total);
                                write_task(out, id, t, MAX_JOB_PROGRESS, true);
                            }
                            // docker's zero task: slot 0.
                            None => out.push(ProgressEvent::Progress {
                                id: format!("1/{total}"),
                                action: padded(""),
                                current: 0,
                                total: MAX_JOB_PROGRESS,
                                hide_counts: true,
                            }),
                        }
                    }
                    if state_number(state) < state_number("complete") {
                        active += 1;
                    }
                    if state == "complete" {
                        complete += 1;
                    }
                }
                job_overall(out, active, complete);
                Ok(complete == *total)
            }
            Updater::GlobalJob {
                initialized,
                total,
                progress_digits,
                nodes,
            } => {
                let iteration = u(service, "/JobStatus/JobIteration/Index");
                let in_iteration = |t: &&Json| job_iteration(t) == Some(iteration);
                if !*initialized {
                    if tasks.is_empty() && !active_nodes.is_empty() {
                        out.push(ProgressEvent::update("job progress", "waiting for tasks"));
                        return Ok(false);
                    }
                    nodes.clear();
                    for t in tasks.iter().filter(in_iteration) {
                        nodes.insert(s(t, "/NodeID").to_string());
                    }
                    *total = nodes.len();
                    *progress_digits = total.to_string().len();
                    out.push(global_job_overall(0, *total, *progress_digits));
                    *initialized = true;
                }
                let mut by_node: BTreeMap<String, &Json> = BTreeMap::new();
                for t in tasks.iter().filter(in_iteration) {
                    let node = s(t, "/NodeID").to_string();
                    if !nodes.contains(&node) {
                        continue;
                    }
                    match by_node.get(&node) {
                        Some(old)
                            if state_number(task_state(old)) <= state_number(task_state(t)) => {}
                        _ => {
                            by_node.insert(node, t);
                        }
                    }
                }
                let mut complete = 0;
                for (node, t) in &by_node {
                    if *total as u64 <= MAX_PROGRESS_BARS {
                        write_task(out, node.clone(), t, MAX_JOB_PROGRESS, true);
                    }
                    if task_state(t) == "complete" {
                        complete += 1;
                    }
                }
                out.push(global_job_overall(complete, *total, *progress_digits));
                Ok(complete == *total)
            }
        }
    }
}

/// A task's `JobIteration.Index` (`None` when it has no job iteration).
fn job_iteration(t: &Json) -> Option<u64> {
    ptr(t, "/JobIteration").map(|j| u(j, "/Index"))
}

fn global_job_overall(complete: usize, total: usize, digits: usize) -> ProgressEvent {
    ProgressEvent::Progress {
        id: "job progress".into(),
        action: format!("{complete:>digits$} out of {total} complete"),
        current: complete as i64,
        total: total as i64,
        hide_counts: true,
    }
}

/// A task's line: its error, or its state as a bar (`show_state`: docker
/// skips terminal states for services, not for jobs).
fn write_task(out: &mut Vec<ProgressEvent>, id: String, t: &Json, max: i64, show_state: bool) {
    let err = s(t, "/Status/Err");
    if !err.is_empty() {
        out.push(ProgressEvent::update(id, trunc_error(err)));
        return;
    }
    if max == MAX_PROGRESS && (terminal_state(desired(t)) || !show_state) {
        return;
    }
    out.push(ProgressEvent::Progress {
        id,
        action: padded(task_state(t)),
        current: state_number(task_state(t)),
        total: max,
        hide_counts: true,
    });
}

/// A slot as a key that sorts numerically.
fn slot_key(t: &Json) -> String {
    let slot = t.pointer("/Slot").and_then(Json::as_i64).unwrap_or(0);
    format!("{:020}", i128::from(slot) - i128::from(i64::MIN))
}

/// docker's `tasksBySlot` / `tasksByNode`: one task per key, the one with
/// the lowest desired state (then the lowest observed state); tasks on
/// inactive nodes are left out when `active` is given.
fn tasks_by_key<'a>(
    tasks: &'a [Json],
    key: impl Fn(&Json) -> Option<String>,
    active: Option<&HashSet<String>>,
) -> BTreeMap<String, &'a Json> {
    let mut map: BTreeMap<String, &Json> = BTreeMap::new();
    for t in tasks {
        if state_number(desired(t)) == 0 || state_number(task_state(t)) == 0 {
            continue;
        }
        let Some(k) = key(t) else { continue };
        if let Some(existing) = map.get(&k) {
            if state_number(desired(existing)) < state_number(desired(t)) {
                continue;
            }
            if state_number(desired(existing)) == state_number(desired(t))
                && state_number(task_state(existing)) <= state_number(task_state(t))
            {
                continue;
            }
        }
        if let Some(active) = active {
            let node = s(t, "/NodeID");
            if !node.is_empty() && !active.contains(node) {
                continue;
            }
        }
        map.insert(k, t);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn terminal_and_plain_rendering() {
        let mut tty = ProgressDisplay::new(true, 0);
        assert_eq!(
            tty.progress("overall progress", "0 out of 2 tasks", 0, 0, false),
            "\n\x1b[1A\x1b[2K\roverall progress: 0 out of 2 tasks \r\x1b[1B"
        );
        assert_eq!(
            tty.progress("1/2", " ", 0, 0, false),
            "\n\x1b[1A\x1b[2K\r1/2:   \r\x1b[1B"
        );
        assert_eq!(
            tty.progress("1/2", "pending  ", 3, 9, true),
            "\x1b[1A\x1b[2K\r1/2: pending   \r\x1b[1B"
        );
        let mut wide = ProgressDisplay::new(true, 200);
        assert_eq!(
            wide.progress("1/1", "running  ", 9, 9, true),
            "\n\x1b[1A\x1b[2K\r1/1: running   [==================================================>] \r\x1b[1B"
        );
        let mut plain = ProgressDisplay::new(false, 200);
        assert_eq!(
            plain.progress("overall progress", "0 out of 1 tasks", 0, 0, false),
            "overall progress: 0 out of 1 tasks\n"
        );
        assert_eq!(plain.progress("1/1", "running  ", 9, 9, true), "");
        assert_eq!(plain.progress("1/1", " ", 0, 0, false), "1/1:  \n");
        assert_eq!(plain.message("", "job complete"), "job complete\n");
    }

    #[test]
    fn replicated_updater() {
        let svc = json!({"Spec": {"Mode": {"Replicated": {"Replicas": 1}}}});
        let mut st = ProgressState::new(&svc).unwrap_or_else(|e| panic!("{e}"));
        let nodes: HashSet<String> = ["n1".to_string()].into_iter().collect();
        let mut out = Vec::new();
        let tasks = vec![
            json!({"Slot": 1, "NodeID": "n1", "DesiredState": "running", "Status": {"State": "preparing"}}),
        ];
        assert_eq!(st.update(&svc, &tasks, &nodes, false, &mut out), Ok(false));
        let mut plain = ProgressDisplay::new(false, 200);
        let text: String = out.iter().map(|e| e.render(&mut plain)).collect();
        assert_eq!(
            text,
            "overall progress: 0 out of 1 tasks\n1/1:  \noverall progress: 0 out of 1 tasks\n"
        );
        out.clear();
        let tasks = vec![
            json!({"Slot": 1, "NodeID": "n1", "DesiredState": "running", "Status": {"State": "running"}}),
        ];
        assert_eq!(st.update(&svc, &tasks, &nodes, false, &mut out), Ok(true));
        assert_eq!(out.len(), 2);
        out.clear();
        assert_eq!(st.update(&svc, &tasks, &nodes, false, &mut out), Ok(true));
        assert!(out.is_empty());
    }
}
