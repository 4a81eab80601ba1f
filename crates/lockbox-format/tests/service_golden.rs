//! Golden tests for the service, task and node formatters: outputs captured
//! from the stock docker CLI 28.2.2 with the Engine API JSON they were made
//! from (`tests/fixtures/service/capture.py`) must be reproduced byte for
//! byte.

use std::path::{Path, PathBuf};

use lockbox_format::{
    TaskNames, node_inspect_with_errors, node_list, parse_time, service_inspect_with_errors,
    service_list, task_list,
};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/service")
}

fn read(rel: &str) -> String {
    let path = fixtures().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The docker flags of a case.
#[derive(Default)]
struct Flags {
    quiet: bool,
    pretty: bool,
    no_trunc: bool,
    no_resolve: bool,
    format: Option<String>,
}

fn flags(argv: &[String]) -> Flags {
    let mut f = Flags::default();
    let mut i = 0;
    while i < argv.len() {
        match argv[i].as_str() {
            "-q" => f.quiet = true,
            "--pretty" => f.pretty = true,
            "--no-trunc" => f.no_trunc = true,
            "--no-resolve" => f.no_resolve = true,
            "--format" => {
                f.format = argv.get(i + 1).cloned();
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    f
}

fn list(v: &Value, key: &str) -> Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn names(input: &Value) -> TaskNames {
    let mut n = TaskNames::default();
    for s in list(input, "services") {
        n.services.insert(
            s["ID"].as_str().unwrap_or_default().to_string(),
            s["Spec"]["Name"].as_str().unwrap_or_default().to_string(),
        );
    }
    for node in list(input, "nodes") {
        let name = node["Spec"]["Name"]
            .as_str()
            .filter(|s| !s.is_empty())
            .or(node["Description"]["Hostname"].as_str())
            .unwrap_or_default();
        n.nodes.insert(
            node["ID"].as_str().unwrap_or_default().to_string(),
            name.to_string(),
        );
    }
    n
}

/// (stdout, stderr, exit code) lockbox-format gives for a case.
fn run(
    kind: &str,
    argv: &[String],
    input: &Value,
    now: time::OffsetDateTime,
) -> (String, String, i64) {
    let f = flags(argv);
    let result = |r: Result<String, lockbox_format::FormatError>| match r {
        Ok(s) => (s, String::new(), 0),
        Err(e) => (String::new(), format!("{e}\n"), 1),
    };
    let joined = |(out, errs): (String, Vec<lockbox_format::FormatError>)| {
        let code = if errs.is_empty() { 0 } else { 1 };
        let err: String = errs.iter().map(|e| format!("{e}\n")).collect();
        (out, err, code)
    };
    match kind {
        "service_ls" => result(service_list(
            &list(input, "services"),
            f.format.as_deref(),
            f.quiet,
        )),
        "service_ps" | "node_ps" => {
            let n = if f.no_resolve {
                TaskNames::default()
            } else {
                names(input)
            };
            let trunc = !(f.no_trunc || (f.quiet && kind == "service_ps"));
            result(task_list(
                &list(input, "tasks"),
                &n,
                f.format.as_deref(),
                f.quiet,
                trunc,
                now,
            ))
        }
        "service_inspect" => joined(service_inspect_with_errors(
            &list(input, "services"),
            f.format.as_deref(),
            f.pretty,
            now,
        )),
        "node_ls" => result(node_list(
            &list(input, "nodes"),
            (!f.quiet).then(|| &input["info"]),
            f.format.as_deref(),
            f.quiet,
        )),
        "node_inspect" => joined(node_inspect_with_errors(
            &list(input, "nodes"),
            f.format.as_deref(),
            f.pretty,
        )),
        other => panic!("unknown kind {other}"),
    }
}

#[test]
fn outputs_match_docker() {
    let doc: Value = serde_json::from_str(&read("cases.json")).expect("cases.json is JSON");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for c in cases {
        let name = c["name"].as_str().unwrap_or_default();
        let argv: Vec<String> = c["argv"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        // docker read the clock between `now` and `now_after`.
        let before = parse_time(c["now"].as_str().unwrap_or_default()).expect("now");
        let after = c["now_after"]
            .as_str()
            .and_then(|t| parse_time(t).ok())
            .unwrap_or(before);
        let expected = (
            read(c["stdout"].as_str().unwrap_or_default()),
            read(c["stderr"].as_str().unwrap_or_default()),
            c["exit_code"].as_i64().unwrap_or(-1),
        );
        let kind = c["kind"].as_str().unwrap_or_default();
        let steps = 8;
        let mut got = run(kind, &argv, &c["input"], before);
        for i in 1..=steps {
            if got == expected {
                break;
            }
            got = run(
                kind,
                &argv,
                &c["input"],
                before + (after - before) * i / steps,
            );
        }
        if got != expected {
            failures.push(format!(
                "{name} ({argv:?}):\n--- docker ---\n{}{}[exit {}]\n--- lockbox-format ---\n{}{}[exit {}]",
                expected.0, expected.1, expected.2, got.0, got.1, got.2
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
