//! Golden tests: outputs captured from the stock docker CLI (see
//! `tests/fixtures/capture.py` and `tests/fixtures/cases.json`) must be
//! reproduced byte for byte from the same Engine API JSON.

use std::path::{Path, PathBuf};

use lockbox_format::{FormatError, parse_time, secret_inspect_with_errors, secret_list};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(rel: &str) -> String {
    let path = fixtures().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Case {
    name: String,
    kind: String,
    argv: Vec<String>,
    now: String,
    exit_code: i64,
    stdout: String,
    stderr: String,
    secrets: Vec<Value>,
}

fn cases() -> Vec<Case> {
    let doc: Value = serde_json::from_str(&read("cases.json")).expect("cases.json is JSON");
    let list = doc["cases"].as_array().expect("cases array");
    list.iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap_or_default().to_string(),
            kind: c["kind"].as_str().unwrap_or_default().to_string(),
            argv: c["argv"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            now: c["now"].as_str().unwrap_or_default().to_string(),
            exit_code: c["exit_code"].as_i64().unwrap_or(-1),
            stdout: read(c["stdout"].as_str().unwrap_or_default()),
            stderr: read(c["stderr"].as_str().unwrap_or_default()),
            secrets: c["secret_ids"]
                .as_array()
                .map(|ids| {
                    ids.iter()
                        .map(|id| doc["secrets"][id.as_str().unwrap_or_default()].clone())
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// The flags of a captured `docker secret ls|inspect` command line.
#[derive(Default)]
struct Flags {
    quiet: bool,
    pretty: bool,
    format: Option<String>,
}

fn flags(argv: &[String]) -> Flags {
    let mut f = Flags::default();
    let mut it = argv.iter().skip(2);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-q" => f.quiet = true,
            "--pretty" => f.pretty = true,
            "--format" => f.format = it.next().cloned(),
            "--filter" => {
                it.next();
            }
            _ => {}
        }
    }
    f
}

/// Returns (stdout, stderr, failed) as lockbox would print them.
fn run(case: &Case) -> (String, String, bool) {
    let f = flags(&case.argv);
    let fmt = f.format.as_deref();
    match case.kind.as_str() {
        "ls" => {
            let now = parse_time(&case.now).expect("capture time");
            match secret_list(&case.secrets, fmt, f.quiet, now) {
                Ok(out) => (out, String::new(), false),
                Err(e) => (String::new(), format!("{e}\n"), true),
            }
        }
        "inspect" => {
            let (out, errors) = secret_inspect_with_errors(&case.secrets, fmt, f.pretty);
            let failed = !errors.is_empty();
            let stderr: String = errors.iter().map(|e| format!("{e}\n")).collect();
            (out, stderr, failed)
        }
        other => panic!("unknown case kind {other}"),
    }
}

/// Cases where lockbox knowingly prints something else than docker 28.2.2.
const KNOWN_DIVERGENCES: &[(&str, &str)] = &[(
    "inspect-time-method",
    "methods of Go's time.Time (`.CreatedAt.Year`, `.CreatedAt.Format`) are not emulated",
)];

#[test]
fn golden_outputs_match_docker() {
    let cases = cases();
    assert!(cases.len() >= 40, "expected the captured corpus");
    let mut failures = Vec::new();
    for case in &cases {
        if let Some((_, why)) = KNOWN_DIVERGENCES.iter().find(|(n, _)| *n == case.name) {
            let (stdout, stderr, _) = run(case);
            assert!(
                stdout != case.stdout || stderr != case.stderr,
                "{} now matches docker: remove it from KNOWN_DIVERGENCES ({why})",
                case.name
            );
            continue;
        }
        let (stdout, stderr, failed) = run(case);
        let want_failed = case.exit_code != 0;
        if stdout != case.stdout || stderr != case.stderr || failed != want_failed {
            failures.push(format!(
                "case {} ({:?})\n--- docker stdout\n{}--- lockbox stdout\n{}--- docker stderr\n{}--- lockbox stderr\n{}",
                case.name, case.argv, case.stdout, stdout, case.stderr, stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_covers_the_brief() {
    let names: Vec<String> = cases().into_iter().map(|c| c.name).collect();
    for want in [
        "ls-default",
        "ls-quiet",
        "ls-name",
        "ls-table-id-name",
        "ls-json-dot",
        "ls-label",
        "inspect-funcs",
        "inspect-default",
        "inspect-pretty",
    ] {
        assert!(names.iter().any(|n| n == want), "missing case {want}");
    }
}

#[test]
fn inspect_error_is_joined() {
    let secrets: Vec<Value> = cases()
        .into_iter()
        .find(|c| c.name == "inspect-err-field")
        .map(|c| c.secrets)
        .unwrap_or_default();
    let err = lockbox_format::inspect(&secrets, Some("{{.Foo}}"));
    let msg = "template parsing error: template: :1:2: executing \"\" at <.Foo>: map has no entry for key \"Foo\"";
    assert_eq!(err, Err(FormatError::Exec(format!("{msg}\n{msg}"))));
}
