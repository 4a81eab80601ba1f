//! Renders a results file (one JSON object per line, from `run --out` and from bench/compare)
//! into `docs/performance.md` and an SVG plot of throughput by connection count.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    /// The results file (JSON lines)
    #[arg(long)]
    results: PathBuf,
    /// The markdown file to write
    #[arg(long)]
    out: PathBuf,
    /// The SVG file to write (linked from the markdown by file name)
    #[arg(long)]
    svg: PathBuf,
    /// The exact command that produced the results
    #[arg(long)]
    command: String,
    /// The date of the run
    #[arg(long)]
    date: String,
    /// A file with the machine facts (quoted verbatim)
    #[arg(long)]
    machine: Option<PathBuf>,
    /// Markdown files appended verbatim (notes from the run, analysis)
    #[arg(long)]
    append: Vec<PathBuf>,
}

#[derive(Clone, Copy)]
enum Metric {
    Throughput,
    P50,
    P99,
    Value,
}

#[derive(Clone, Copy)]
enum Goal {
    None,
    /// lockbox/swarm at least this.
    RatioAtLeast(f64),
    /// lockbox/swarm at most this.
    RatioAtMost(f64),
    /// lockbox's own figure at most this.
    AtMost(f64),
}

struct Row {
    figure: &'static str,
    op: &'static str,
    /// `None`: the best figure over every connection count.
    conns: Option<u64>,
    tag: Option<&'static str>,
    /// lockbox's figure comes from the runs with this tag instead (Swarm's from `tag`'s).
    lockbox_tag: Option<&'static str>,
    metric: Metric,
    unit: &'static str,
    goal: Goal,
    goal_text: &'static str,
}

const ROWS: &[Row] = &[
    row(
        "secret create, 32 connections",
        "create",
        Some(32),
        None,
        Metric::Throughput,
        "/s",
        Goal::RatioAtLeast(10.0),
        "≥ 10× Swarm",
    ),
    row(
        "  p50 latency",
        "create",
        Some(32),
        None,
        Metric::P50,
        "ms",
        Goal::None,
        "",
    ),
    row(
        "  p99 latency",
        "create",
        Some(32),
        None,
        Metric::P99,
        "ms",
        Goal::None,
        "",
    ),
    row(
        "secret create, 8 connections",
        "create",
        Some(8),
        None,
        Metric::Throughput,
        "/s",
        Goal::None,
        "",
    ),
    row(
        "secret create, 1 connection",
        "create",
        Some(1),
        None,
        Metric::Throughput,
        "/s",
        Goal::RatioAtLeast(3.0),
        "≥ 3× Swarm",
    ),
    row(
        "  p50 latency",
        "create",
        Some(1),
        None,
        Metric::P50,
        "ms",
        Goal::AtMost(0.5),
        "≤ 0.5 ms",
    ),
    row(
        "  p99 latency",
        "create",
        Some(1),
        None,
        Metric::P99,
        "ms",
        Goal::None,
        "",
    ),
    row(
        "secret inspect by name, 1 connection",
        "inspect",
        Some(1),
        None,
        Metric::Throughput,
        "/s",
        Goal::None,
        "",
    ),
    row(
        "secret inspect by name, 8 connections",
        "inspect",
        Some(8),
        None,
        Metric::Throughput,
        "/s",
        Goal::None,
        "",
    ),
    row(
        "secret inspect by name, 32 connections",
        "inspect",
        Some(32),
        None,
        Metric::Throughput,
        "/s",
        Goal::None,
        "",
    ),
    row(
        "secret inspect by name, best of 1/8/32",
        "inspect",
        None,
        None,
        Metric::Throughput,
        "/s",
        Goal::RatioAtLeast(5.0),
        "≥ 5× Swarm",
    ),
    row(
        "  p50 latency, 1 connection",
        "inspect",
        Some(1),
        None,
        Metric::P50,
        "ms",
        Goal::None,
        "",
    ),
    row(
        "list 40,000 secrets (p50 time)",
        "list",
        Some(1),
        Some("all"),
        Metric::P50,
        "s",
        Goal::RatioAtMost(0.2),
        "≥ 5× faster",
    ),
    row(
        "list, name-prefix filter (5,000 of 40,000)",
        "list-filter",
        Some(1),
        Some("name"),
        Metric::P50,
        "s",
        Goal::None,
        "",
    ),
    row(
        "list, label filter (5,000 of 40,000)",
        "list-filter",
        Some(1),
        Some("label"),
        Metric::P50,
        "s",
        Goal::None,
        "",
    ),
    row(
        "daemon RSS with 40,000 secrets",
        "rss",
        None,
        Some("40k"),
        Metric::Value,
        "MB",
        Goal::RatioAtMost(1.0 / 3.0),
        "≤ 1/3 of dockerd",
    ),
    row(
        "  after the list and inspect runs",
        "rss",
        None,
        Some("40k-after-reads"),
        Metric::Value,
        "MB",
        Goal::None,
        "",
    ),
    row(
        "  lockbox after kill -9 and restart",
        "rss",
        None,
        Some("restart"),
        Metric::Value,
        "MB",
        Goal::None,
        "",
    ),
    row(
        "secret remove, 1 connection",
        "remove",
        Some(1),
        None,
        Metric::Throughput,
        "/s",
        Goal::None,
        "",
    ),
    row(
        "secret remove, 8 connections",
        "remove",
        Some(8),
        None,
        Metric::Throughput,
        "/s",
        Goal::None,
        "",
    ),
    row(
        "secret remove, 32 connections",
        "remove",
        Some(32),
        None,
        Metric::Throughput,
        "/s",
        Goal::None,
        "",
    ),
    row(
        "service create → 3 tasks running, with a secret, process executor (p50)",
        "service",
        Some(1),
        None,
        Metric::P50,
        "ms",
        Goal::AtMost(100.0),
        "process executor < 100 ms",
    ),
    row(
        "  p99 / slowest",
        "service",
        Some(1),
        None,
        Metric::P99,
        "ms",
        Goal::None,
        "",
    ),
    row(
        "service create → 3 tasks running, with a secret, docker executor (p50)",
        "service",
        Some(1),
        None,
        Metric::P50,
        "ms",
        Goal::RatioAtMost(1.0),
        "no slower than Swarm",
    )
    .with_lockbox_tag("docker"),
    row(
        "  p99 / slowest",
        "service",
        Some(1),
        None,
        Metric::P99,
        "ms",
        Goal::None,
        "",
    )
    .with_lockbox_tag("docker"),
];

#[allow(clippy::too_many_arguments)]
const fn row(
    figure: &'static str,
    op: &'static str,
    conns: Option<u64>,
    tag: Option<&'static str>,
    metric: Metric,
    unit: &'static str,
    goal: Goal,
    goal_text: &'static str,
) -> Row {
    Row {
        figure,
        op,
        conns,
        tag,
        lockbox_tag: None,
        metric,
        unit,
        goal,
        goal_text,
    }
}

impl Row {
    /// lockbox's figure from the runs tagged `tag` (Swarm's still from the row's own tag).
    const fn with_lockbox_tag(mut self, tag: &'static str) -> Row {
        self.lockbox_tag = Some(tag);
        self
    }
}

fn load(path: &PathBuf) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad line: {l}")))
        .collect()
}

fn figure(records: &[Value], target: &str, r: &Row) -> Option<f64> {
    let tag = match r.lockbox_tag {
        Some(t) if target == "lockbox" => Some(t),
        _ => r.tag,
    };
    let matching = records.iter().filter(|v| {
        v["target"] == target
            && v["op"] == r.op
            && r.conns.is_none_or(|c| v["connections"].as_u64() == Some(c))
            && match tag {
                Some(t) => v["tag"] == t,
                None => v.get("tag").is_none_or(Value::is_null),
            }
    });
    // The last matching record wins, except for the "best of" rows.
    let mut values = matching.filter_map(|v| {
        let x = match r.metric {
            Metric::Throughput => v["throughput"].as_f64(),
            Metric::P50 => v["p50_ms"].as_f64(),
            Metric::P99 => v["p99_ms"].as_f64(),
            Metric::Value => v["value"].as_f64(),
        }?;
        // Lists are reported in seconds.
        Some(if r.unit == "s" { x / 1000.0 } else { x })
    });
    if r.conns.is_none() && matches!(r.metric, Metric::Throughput) {
        values.fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
    } else {
        values.next_back()
    }
}

fn fmt(x: Option<f64>, unit: &str) -> String {
    let Some(x) = x else { return "n/a".into() };
    match unit {
        "/s" => format!("{} /s", thousands(x.round() as u64)),
        "ms" if x < 1.0 => format!("{x:.3} ms"),
        "ms" if x < 100.0 => format!("{x:.2} ms"),
        "ms" => format!("{x:.0} ms"),
        "s" => format!("{x:.3} s"),
        "MB" => format!("{x:.1} MB"),
        _ => format!("{x} {unit}"),
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn render(a: &ReportArgs) -> Result<()> {
    let records = load(&a.results)?;
    let mut md = String::new();
    writeln!(md, "# Performance: lockbox against Docker Swarm")?;
    writeln!(md)?;
    writeln!(
        md,
        "Generated by `bench/compare` on {}. Both daemons ran on this machine in the same run, \
         driven by the same load generator (`bench/loadgen`, package `lockbox-bench`) over their \
         unix sockets. Ratios are lockbox / Swarm: above 1 is better for throughput, below 1 is \
         better for times and memory.",
        a.date
    )?;
    writeln!(md)?;
    writeln!(
        md,
        "lockbox runs with `--no-audit` here (Swarm keeps no audit trail either). By default \
         the daemon records every request durably before answering; what that costs, on and \
         off side by side: [performance-audit.md](performance-audit.md) (`bench/audit-cost`)."
    )?;
    writeln!(md)?;
    writeln!(md, "```sh\n{}\n```", a.command)?;
    writeln!(md)?;
    writeln!(
        md,
        "| figure | Swarm | lockbox | lockbox/Swarm | target | met |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---|---|")?;
    for r in ROWS {
        let s = figure(&records, "swarm", r);
        let l = figure(&records, "lockbox", r);
        let ratio = match (s, l) {
            (Some(s), Some(l)) if s > 0.0 => Some(l / s),
            _ => None,
        };
        let met = match r.goal {
            Goal::None => "",
            Goal::RatioAtLeast(x) => match ratio {
                Some(q) if q >= x => "yes",
                Some(_) => "**no**",
                None => "n/a",
            },
            Goal::RatioAtMost(x) => match ratio {
                Some(q) if q <= x => "yes",
                Some(_) => "**no**",
                None => "n/a",
            },
            Goal::AtMost(x) => match l {
                Some(v) if v <= x => "yes",
                Some(_) => "**no**",
                None => "n/a",
            },
        };
        let figure = r
            .figure
            .strip_prefix("  ")
            .map_or_else(|| r.figure.to_owned(), |rest| format!("&nbsp;&nbsp;{rest}"));
        writeln!(
            md,
            "| {figure} | {} | {} | {} | {} | {met} |",
            fmt(s, r.unit),
            fmt(l, r.unit),
            ratio.map_or("n/a".into(), |q| format!("{q:.2}")),
            r.goal_text
        )?;
    }
    writeln!(md)?;
    let svg_name = a
        .svg
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    writeln!(md, "![throughput by connection count]({svg_name})")?;
    writeln!(md)?;
    if let Some(m) = &a.machine {
        let facts = std::fs::read_to_string(m)?;
        writeln!(md, "## Machine\n\n```text\n{}\n```\n", facts.trim_end())?;
    }
    writeln!(md, "## Every run\n")?;
    writeln!(
        md,
        "| target | op | tag | conns | ops | errors | elapsed | throughput | p50 | p99 | max |"
    )?;
    writeln!(md, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for v in &records {
        if v.get("throughput").is_none() {
            continue;
        }
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.2} s | {} | {} | {} | {} |",
            v["target"].as_str().unwrap_or(""),
            v["op"].as_str().unwrap_or(""),
            v["tag"].as_str().unwrap_or(""),
            v["connections"],
            v["ops"],
            v["errors"],
            v["elapsed_s"].as_f64().unwrap_or(0.0),
            fmt(v["throughput"].as_f64(), "/s"),
            fmt(v["p50_ms"].as_f64(), "ms"),
            fmt(v["p99_ms"].as_f64(), "ms"),
            fmt(v["max_ms"].as_f64(), "ms"),
        )?;
    }
    writeln!(md)?;
    for p in &a.append {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        writeln!(md, "{}\n", text.trim_end())?;
    }
    std::fs::write(&a.out, md)?;
    std::fs::write(&a.svg, svg(&records))?;
    Ok(())
}

/// A log-scale line chart: throughput (ops/s) against connections (1, 8, 32) for create,
/// inspect and remove, solid for lockbox and dashed for Swarm.
fn svg(records: &[Value]) -> String {
    const W: f64 = 760.0;
    const H: f64 = 440.0;
    const L: f64 = 80.0;
    const R: f64 = 200.0;
    const T: f64 = 40.0;
    const B: f64 = 60.0;
    let conns = [1u64, 8, 32];
    let ops = [
        ("create", "#d62728"),
        ("inspect", "#1f77b4"),
        ("remove", "#2ca02c"),
    ];
    let targets = [("lockbox", ""), ("swarm", "6,4")];
    let mut series = Vec::new();
    for (op, color) in ops {
        for (target, dash) in targets {
            let pts: Vec<(usize, f64)> = conns
                .iter()
                .enumerate()
                .filter_map(|(i, &c)| {
                    records
                        .iter()
                        .rfind(|v| {
                            v["target"] == target
                                && v["op"] == op
                                && v["connections"].as_u64() == Some(c)
                                && v.get("tag").is_none_or(Value::is_null)
                        })
                        .and_then(|v| v["throughput"].as_f64())
                        .filter(|&x| x > 0.0)
                        .map(|x| (i, x))
                })
                .collect();
            if !pts.is_empty() {
                series.push((op, target, color, dash, pts));
            }
        }
    }
    let all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.4.iter().map(|p| p.1))
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).max(1.0);
    let hi = all.iter().copied().fold(1.0, f64::max);
    let (d0, d1) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let x = |i: usize| L + (W - L - R) * (i as f64) / 2.0;
    let y = |v: f64| T + (H - T - B) * (1.0 - (v.log10() - d0) / (d1 - d0));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">Throughput by connection count (log scale)</text>"#,
        (L + W - R) / 2.0
    );
    let mut d = d0;
    while d <= d1 + 1e-9 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powf(d);
            if v.log10() > d1 + 1e-9 {
                continue;
            }
            let yy = y(v);
            let (stroke, label) = if m == 1.0 {
                ("#bbb", true)
            } else {
                ("#eee", true)
            };
            let _ = writeln!(
                s,
                r#"<line x1="{L}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{stroke}"/>"#,
                W - R
            );
            if label {
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                    L - 6.0,
                    yy + 4.0,
                    thousands(v.round() as u64)
                );
            }
        }
        d += 1.0;
    }
    for (i, c) in conns.iter().enumerate() {
        let xx = x(i);
        let _ = writeln!(
            s,
            r#"<line x1="{xx:.1}" y1="{T}" x2="{xx:.1}" y2="{:.1}" stroke="rgb(238,238,238)"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{c}</text>"#,
            H - B,
            H - B + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">concurrent connections</text>"#,
        (L + W - R) / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">requests per second</text>"#,
        (T + H - B) / 2.0
    );
    for (k, (op, target, color, dash, pts)) in series.iter().enumerate() {
        let path: Vec<String> = pts
            .iter()
            .map(|&(i, v)| format!("{:.1},{:.1}", x(i), y(v)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2.5" stroke-dasharray="{dash}"/>"#,
            path.join(" ")
        );
        for &(i, v) in pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"><title>{target} {op} c={}: {} /s</title></circle>"#,
                x(i),
                y(v),
                conns[i],
                thousands(v.round() as u64)
            );
        }
        let ly = T + 10.0 + 22.0 * k as f64;
        let lx = W - R + 20.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{color}" stroke-width="2.5" stroke-dasharray="{dash}"/><text x="{:.1}" y="{:.1}">{target} {op}</text>"#,
            lx + 34.0,
            lx + 42.0,
            ly + 4.0
        );
    }
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_docker_executor_row_compares_swarm_with_lockbox_docker_runs() {
        let records = vec![
            json!({"target": "swarm", "op": "service", "connections": 1, "p50_ms": 400.0}),
            json!({"target": "lockbox", "op": "service", "connections": 1, "p50_ms": 50.0}),
            json!({"target": "lockbox", "op": "service", "connections": 1, "tag": "docker", "p50_ms": 300.0}),
        ];
        let process = ROWS
            .iter()
            .find(|r| r.figure.contains("process executor"))
            .unwrap();
        let docker = ROWS
            .iter()
            .find(|r| r.figure.contains("docker executor"))
            .unwrap();
        assert_eq!(figure(&records, "swarm", process), Some(400.0));
        assert_eq!(figure(&records, "lockbox", process), Some(50.0));
        assert_eq!(figure(&records, "swarm", docker), Some(400.0));
        assert_eq!(figure(&records, "lockbox", docker), Some(300.0));
        // No docker run: no figure (the table says n/a).
        assert_eq!(figure(&records[..2], "lockbox", docker), None);
    }
}
