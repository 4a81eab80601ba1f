//! Conformance: every case in `tests/cases/*.cases`, captured from a real Docker swarm by
//! `scripts/capture-reference`, run against a fresh `lockbox daemon` per case.
//!
//! `LOCKBOX_TEST_TARGET=unix:///tmp/reference-swarm/docker.sock cargo test -p lockbox --test
//! conformance` runs the same cases against a real Docker instead (to check the harness and the
//! normaliser). See `tests/cases/README.md` for the format and the other variables.

mod common;

use common::runner::{case_file_stems, run_case_file};

macro_rules! case_files {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_case_file(stringify!($name));
            }
        )*

        const STEMS: &[&str] = &[$(stringify!($name)),*];
    };
}

case_files!(
    http,
    secret_create,
    secret_ls,
    secret_inspect_rm,
    secret_api,
    swarm,
    autolock,
    service_api,
    service_cli,
    task_api,
    node
);

#[test]
fn every_case_file_has_a_test() {
    let missing: Vec<String> = case_file_stems()
        .into_iter()
        .filter(|s| !STEMS.contains(&s.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "add these case files to case_files!() in tests/conformance.rs: {missing:?}"
    );
}

#[test]
fn case_files_parse() {
    for stem in case_file_stems() {
        let path = common::runner::cases_dir().join(format!("{stem}.cases"));
        let f = common::cases::CaseFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            f.render(&[]),
            text,
            "{} does not round-trip through the writer",
            path.display()
        );
        assert!(!f.cases.is_empty(), "{} has no case", path.display());
    }
}
