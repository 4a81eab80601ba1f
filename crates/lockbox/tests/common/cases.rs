//! Parser and writer for the `.cases` files (format described in `tests/cases/README.md`).
//!
//! The writer only replaces `expect` lines (and their heredocs); everything else — comments,
//! blank lines, request lines, hand-written `modern` overrides — is kept byte for byte.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A value expression: `"json string"`, `'raw string'`, `repeat "s" N`, joined with ` + `,
/// or a heredoc `<<TAG` (lines up to a line `TAG`, each ending in `\n`).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Literal(String),
    Repeat(String, usize),
    Concat(Vec<Value>),
}

impl Value {
    pub fn eval(&self) -> String {
        match self {
            Value::Literal(s) => s.clone(),
            Value::Repeat(s, n) => s.repeat(*n),
            Value::Concat(v) => v.iter().map(Value::eval).collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum StepKind {
    /// `step docker ARGS...`: the stock CLI.
    Docker(Vec<String>),
    /// `step http METHOD PATH`
    Http { method: String, path: String },
    /// `step restart`: restart the daemon under test (same data).
    Restart,
}

/// What a step's result is compared against. Every field is optional; a missing field is not
/// checked. Headers hold `None` for "must be absent".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expect {
    pub exit: Option<i32>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub status: Option<u16>,
    pub headers: Vec<(String, Option<String>)>,
    pub body: Option<String>,
}

impl Expect {
    pub fn is_empty(&self) -> bool {
        *self == Expect::default()
    }

    pub fn header(&self, name: &str) -> Option<&Option<String>> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

#[derive(Clone, Debug)]
pub struct Step {
    pub line: usize,
    /// The `step ...` line as written (for reports).
    pub title: String,
    pub kind: StepKind,
    pub stdin: Option<Value>,
    pub files: Vec<(String, Value)>,
    pub content_type: Option<String>,
    pub req_headers: Vec<(String, String)>,
    pub query: Vec<(String, Value)>,
    pub body: Option<Value>,
    /// Response headers to record and compare.
    pub check_headers: Vec<String>,
    pub sort_by: Option<String>,
    pub json_keys: Option<usize>,
    pub select: Vec<String>,
    pub drop: Vec<String>,
    /// `until PATH VALUE` (repeatable): re-run the step until every condition holds (or a
    /// timeout), then compare/capture the last run. PATH `stdout`/`stderr`/`body` = the
    /// normalised output contains VALUE; any other PATH is a JSON path into the body (after
    /// `drop`/`sort-by`, `*` and `#` allowed) whose compact JSON must equal VALUE.
    pub until: Vec<(String, Value)>,
    /// `lines-with VALUE` (repeatable, docker steps): keep only the stdout/stderr lines that
    /// contain one of these (after normalisation).
    pub lines_with: Vec<Value>,
    /// `uniq` (docker steps): collapse runs of identical lines (after `lines-with`).
    pub uniq: bool,
    /// Captured from the real Docker (written by `scripts/capture-reference`).
    pub expect: Expect,
    /// Hand-written: what current Docker (API 1.47) does where the reference build differs.
    pub modern: Expect,
}

#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub line: usize,
    pub tags: Vec<String>,
    pub daemon_args: Vec<String>,
    pub steps: Vec<Step>,
}

impl Case {
    pub fn has_tag(&self, t: &str) -> bool {
        self.tags.iter().any(|x| x == t)
    }
}

/// One physical chunk of the file: a directive (with its heredoc lines) or a free line.
#[derive(Clone, Debug)]
struct Chunk {
    text: String,
    /// (case index, step index) of the step this chunk belongs to, if any.
    step: Option<(usize, usize)>,
    is_expect: bool,
    /// Comment or blank line.
    free: bool,
}

#[derive(Clone, Debug)]
pub struct CaseFile {
    pub path: PathBuf,
    pub cases: Vec<Case>,
    chunks: Vec<Chunk>,
}

fn err(path: &Path, line: usize, msg: impl std::fmt::Display) -> String {
    format!("{}:{line}: {msg}", path.display())
}

/// Split a line into shell-like words: whitespace separates, `'...'` is literal, `"..."` allows
/// `\"` and `\\`.
pub fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            '\'' => {
                have = true;
                loop {
                    match it.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated '".into()),
                    }
                }
            }
            '"' => {
                have = true;
                loop {
                    match it.next() {
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated \"".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated \"".into()),
                    }
                }
            }
            c => {
                have = true;
                cur.push(c);
            }
        }
    }
    if have {
        out.push(cur);
    }
    Ok(out)
}

/// Parse one JSON string literal at the start of `s`; returns it and the rest.
fn json_string_prefix(s: &str) -> Result<(String, &str), String> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'"') {
        return Err(format!("expected a JSON string at {s:?}"));
    }
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => {
                let lit = &s[..=i];
                let v: String =
                    serde_json::from_str(lit).map_err(|e| format!("bad JSON string {lit}: {e}"))?;
                return Ok((v, &s[i + 1..]));
            }
            _ => i += 1,
        }
    }
    Err(format!("unterminated JSON string {s:?}"))
}

/// Parse a (non-heredoc) value expression that makes up the whole of `s`.
pub fn parse_value_expr(s: &str) -> Result<Value, String> {
    let mut parts = Vec::new();
    let mut rest = s.trim_start();
    loop {
        let (v, r) = if rest.starts_with('"') {
            let (v, r) = json_string_prefix(rest)?;
            (Value::Literal(v), r)
        } else if let Some(r) = rest.strip_prefix('\'') {
            let end = r
                .find('\'')
                .ok_or_else(|| format!("unterminated ' in {s:?}"))?;
            (Value::Literal(r[..end].to_string()), &r[end + 1..])
        } else if let Some(r) = rest.strip_prefix("repeat ") {
            let r = r.trim_start();
            let (unit, r) = if r.starts_with('"') {
                json_string_prefix(r)?
            } else if let Some(r2) = r.strip_prefix('\'') {
                let end = r2.find('\'').ok_or("unterminated '")?;
                (r2[..end].to_string(), &r2[end + 1..])
            } else {
                return Err(format!("repeat needs a quoted string: {s:?}"));
            };
            let r = r.trim_start();
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            let n: usize = r[..end]
                .parse()
                .map_err(|_| format!("repeat needs a count: {s:?}"))?;
            (Value::Repeat(unit, n), &r[end..])
        } else {
            return Err(format!(
                "bad value {s:?}: use \"json\", 'raw', repeat \"x\" N, or <<TAG"
            ));
        };
        parts.push(v);
        let r = r.trim_start();
        if r.is_empty() {
            break;
        }
        rest = r
            .strip_prefix('+')
            .ok_or_else(|| format!("expected + or end of line in {s:?}"))?
            .trim_start();
    }
    Ok(if parts.len() == 1 {
        parts.pop().expect("one")
    } else {
        Value::Concat(parts)
    })
}

fn is_heredoc(s: &str) -> Option<&str> {
    let t = s.trim();
    let tag = t.strip_prefix("<<")?;
    (!tag.is_empty() && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(tag)
}

impl CaseFile {
    pub fn load(path: &Path) -> Result<CaseFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        CaseFile::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<CaseFile, String> {
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let mut cases: Vec<Case> = Vec::new();
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let lineno = i + 1;
            let raw = lines[i];
            let line = raw.trim_end_matches(['\n', '\r']);
            let trimmed = line.trim();
            let cur_step = cases
                .last()
                .and_then(|c| (!c.steps.is_empty()).then(|| (cases.len() - 1, c.steps.len() - 1)));
            if trimmed.is_empty() || trimmed.starts_with('#') {
                chunks.push(Chunk {
                    text: raw.to_string(),
                    step: cur_step,
                    is_expect: false,
                    free: true,
                });
                i += 1;
                continue;
            }
            let (kw, rest) = trimmed
                .split_once(char::is_whitespace)
                .unwrap_or((trimmed, ""));
            let rest = rest.trim();
            // Collect a heredoc value if the value part is `<<TAG`.
            let mut chunk_text = raw.to_string();
            let mut value_src = rest.to_string();
            let heredoc_for = |s: &str| -> Option<String> {
                // for `expect header NAME <<TAG`, `expect stdout <<TAG`, `body <<TAG`, `file N <<TAG`
                let last = s.rsplit(char::is_whitespace).next().unwrap_or(s);
                is_heredoc(last).map(|t| t.to_string())
            };
            let mut heredoc: Option<String> = None;
            let takes_value = matches!(
                kw,
                "stdin" | "file" | "body" | "query" | "expect" | "modern" | "until" | "lines-with"
            );
            if let Some(tag) = heredoc_for(rest).filter(|_| takes_value) {
                let mut body = String::new();
                let mut j = i + 1;
                loop {
                    if j >= lines.len() {
                        return Err(err(path, lineno, format!("heredoc <<{tag} not terminated")));
                    }
                    let l = lines[j];
                    chunk_text.push_str(l);
                    if l.trim_end_matches(['\n', '\r']) == tag {
                        break;
                    }
                    body.push_str(l.trim_end_matches('\n'));
                    body.push('\n');
                    j += 1;
                }
                heredoc = Some(body);
                let cut = rest.len()
                    - rest
                        .rsplit(char::is_whitespace)
                        .next()
                        .unwrap_or(rest)
                        .len();
                value_src = rest[..cut].trim().to_string();
                i = j + 1;
            } else {
                i += 1;
            }
            // `value_src` is the text before the heredoc (e.g. a header name) or the whole rest.
            let value = |src: &str| -> Result<Value, String> {
                match &heredoc {
                    Some(h) => Ok(Value::Literal(h.clone())),
                    None => parse_value_expr(src).map_err(|e| err(path, lineno, e)),
                }
            };
            let text_value = |src: &str| -> Result<String, String> { value(src).map(|v| v.eval()) };
            let mut is_expect = false;
            match kw {
                "case" => {
                    if rest.is_empty()
                        || !rest
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    {
                        return Err(err(path, lineno, "case needs a name of [a-zA-Z0-9_-]"));
                    }
                    if cases.iter().any(|c| c.name == rest) {
                        return Err(err(path, lineno, format!("duplicate case {rest}")));
                    }
                    cases.push(Case {
                        name: rest.to_string(),
                        line: lineno,
                        tags: vec![],
                        daemon_args: vec![],
                        steps: vec![],
                    });
                }
                "tags" | "daemon-args" => {
                    let c = cases
                        .last_mut()
                        .ok_or_else(|| err(path, lineno, format!("{kw} outside a case")))?;
                    if !c.steps.is_empty() {
                        return Err(err(
                            path,
                            lineno,
                            format!("{kw} must come before the first step"),
                        ));
                    }
                    let words = shell_words(rest).map_err(|e| err(path, lineno, e))?;
                    if kw == "tags" {
                        c.tags.extend(words);
                    } else {
                        c.daemon_args.extend(words);
                    }
                }
                "step" => {
                    let c = cases
                        .last_mut()
                        .ok_or_else(|| err(path, lineno, "step outside a case"))?;
                    let (sk, srest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    let kind = match sk {
                        "docker" => {
                            StepKind::Docker(shell_words(srest).map_err(|e| err(path, lineno, e))?)
                        }
                        "http" => {
                            let w = shell_words(srest).map_err(|e| err(path, lineno, e))?;
                            if w.len() != 2 {
                                return Err(err(path, lineno, "step http METHOD PATH"));
                            }
                            StepKind::Http {
                                method: w[0].clone(),
                                path: w[1].clone(),
                            }
                        }
                        "restart" => StepKind::Restart,
                        other => {
                            return Err(err(path, lineno, format!("unknown step kind {other:?}")));
                        }
                    };
                    c.steps.push(Step {
                        line: lineno,
                        title: trimmed.to_string(),
                        kind,
                        stdin: None,
                        files: vec![],
                        content_type: None,
                        req_headers: vec![],
                        query: vec![],
                        body: None,
                        check_headers: vec![],
                        sort_by: None,
                        json_keys: None,
                        select: vec![],
                        drop: vec![],
                        until: vec![],
                        lines_with: vec![],
                        uniq: false,
                        expect: Expect::default(),
                        modern: Expect::default(),
                    });
                }
                _ => {
                    let step = cases
                        .last_mut()
                        .and_then(|c| c.steps.last_mut())
                        .ok_or_else(|| err(path, lineno, format!("{kw} outside a step")))?;
                    match kw {
                        "stdin" => step.stdin = Some(value(&value_src)?),
                        "file" => {
                            let (name, v) = value_src
                                .split_once(char::is_whitespace)
                                .unwrap_or((value_src.as_str(), ""));
                            step.files.push((name.to_string(), value(v)?));
                        }
                        "content-type" => step.content_type = Some(rest.to_string()),
                        "header" => {
                            let (k, v) = rest
                                .split_once(':')
                                .ok_or_else(|| err(path, lineno, "header Name: value"))?;
                            step.req_headers
                                .push((k.trim().to_string(), v.trim().to_string()));
                        }
                        "query" => {
                            let (k, v) = value_src
                                .split_once(char::is_whitespace)
                                .unwrap_or((value_src.as_str(), ""));
                            step.query.push((k.to_string(), value(v)?));
                        }
                        "body" => step.body = Some(value(&value_src)?),
                        "headers" => step
                            .check_headers
                            .extend(rest.split_whitespace().map(str::to_string)),
                        "sort-by" => step.sort_by = Some(rest.to_string()),
                        "json-keys" => {
                            step.json_keys = Some(
                                rest.parse()
                                    .map_err(|_| err(path, lineno, "json-keys DEPTH"))?,
                            )
                        }
                        "select" => step.select.push(rest.to_string()),
                        "drop" => step.drop.push(rest.to_string()),
                        "until" => {
                            let (at, v) = value_src
                                .split_once(char::is_whitespace)
                                .ok_or_else(|| err(path, lineno, "until PATH VALUE"))?;
                            step.until.push((at.to_string(), value(v)?));
                        }
                        "lines-with" => step.lines_with.push(value(&value_src)?),
                        "uniq" => {
                            if !rest.is_empty() {
                                return Err(err(path, lineno, "uniq takes no argument"));
                            }
                            step.uniq = true;
                        }
                        "expect" | "modern" => {
                            is_expect = kw == "expect";
                            let target = if kw == "expect" {
                                &mut step.expect
                            } else {
                                &mut step.modern
                            };
                            let (field, frest) = value_src
                                .split_once(char::is_whitespace)
                                .unwrap_or((value_src.as_str(), ""));
                            let frest = frest.trim();
                            match field {
                                "exit" => {
                                    target.exit = Some(
                                        frest
                                            .parse()
                                            .map_err(|_| err(path, lineno, "expect exit N"))?,
                                    )
                                }
                                "status" => {
                                    target.status = Some(
                                        frest
                                            .parse()
                                            .map_err(|_| err(path, lineno, "expect status N"))?,
                                    )
                                }
                                "stdout" => target.stdout = Some(text_value(frest)?),
                                "stderr" => target.stderr = Some(text_value(frest)?),
                                "body" => target.body = Some(text_value(frest)?),
                                "header" => {
                                    let (name, v) = frest
                                        .split_once(char::is_whitespace)
                                        .unwrap_or((frest, ""));
                                    let v = v.trim();
                                    let val = if heredoc.is_none() && v == "<absent>" {
                                        None
                                    } else {
                                        Some(text_value(v)?)
                                    };
                                    target.headers.push((name.to_string(), val));
                                }
                                other => {
                                    return Err(err(
                                        path,
                                        lineno,
                                        format!("unknown {kw} field {other:?}"),
                                    ));
                                }
                            }
                        }
                        other => {
                            return Err(err(path, lineno, format!("unknown keyword {other:?}")));
                        }
                    }
                }
            }
            let step_pos = cases
                .last()
                .and_then(|c| (!c.steps.is_empty()).then(|| (cases.len() - 1, c.steps.len() - 1)));
            let step_pos = if kw == "case" || kw == "tags" || kw == "daemon-args" {
                None
            } else {
                step_pos
            };
            chunks.push(Chunk {
                text: chunk_text,
                step: step_pos,
                is_expect,
                free: false,
            });
        }
        Ok(CaseFile {
            path: path.to_path_buf(),
            cases,
            chunks,
        })
    }

    /// Render the file with new `expect` blocks for the steps in `captured`
    /// (`captured[case][step]`, `None` = keep what is there).
    pub fn render(&self, captured: &[Vec<Option<Expect>>]) -> String {
        let new_for = |pos: (usize, usize)| {
            captured
                .get(pos.0)
                .and_then(|c| c.get(pos.1))
                .and_then(|e| e.as_ref())
        };
        // The last non-free, non-expect chunk of each step: new expects go right after it.
        let mut anchor = std::collections::HashMap::new();
        for (idx, ch) in self.chunks.iter().enumerate() {
            if let Some(pos) = ch.step
                && !ch.free
                && !ch.is_expect
            {
                anchor.insert(pos, idx);
            }
        }
        let mut out = String::new();
        for (idx, ch) in self.chunks.iter().enumerate() {
            let replaced = ch.step.is_some_and(|p| new_for(p).is_some());
            if !(ch.is_expect && replaced) {
                out.push_str(&ch.text);
                if !ch.text.ends_with('\n') {
                    out.push('\n');
                }
            }
            if let Some(pos) = ch.step
                && anchor.get(&pos) == Some(&idx)
                && let Some(e) = new_for(pos)
            {
                out.push_str(&render_expect("expect", e));
            }
        }
        out
    }
}

/// Render a captured value: a heredoc when it is newline-terminated printable text, else a JSON
/// string literal.
pub fn render_value(v: &str) -> String {
    let printable = v
        .chars()
        .all(|c| c == '\n' || c == '\t' || (!c.is_control() && c != '\u{2028}' && c != '\u{2029}'));
    // Trailing blanks would not survive editors that strip them: keep those values quoted.
    let trailing_blank = v.lines().any(|l| l.ends_with(' ') || l.ends_with('\t'));
    if !v.is_empty() && v.ends_with('\n') && printable && !trailing_blank {
        let mut tag = "EOT".to_string();
        let mut n = 0;
        while v.lines().any(|l| l == tag) {
            n += 1;
            tag = format!("EOT{n}");
        }
        format!("<<{tag}\n{v}{tag}\n")
    } else {
        format!("{}\n", serde_json::to_string(v).expect("json"))
    }
}

pub fn render_expect(kw: &str, e: &Expect) -> String {
    let mut s = String::new();
    if let Some(x) = e.exit {
        let _ = writeln!(s, "{kw} exit {x}");
    }
    if let Some(x) = &e.stdout {
        let _ = write!(s, "{kw} stdout {}", render_value(x));
    }
    if let Some(x) = &e.stderr {
        let _ = write!(s, "{kw} stderr {}", render_value(x));
    }
    if let Some(x) = e.status {
        let _ = writeln!(s, "{kw} status {x}");
    }
    for (k, v) in &e.headers {
        match v {
            Some(v) => {
                let _ = write!(s, "{kw} header {k} {}", render_value(v));
            }
            None => {
                let _ = writeln!(s, "{kw} header {k} <absent>");
            }
        }
    }
    if let Some(x) = &e.body {
        let _ = write!(s, "{kw} body {}", render_value(x));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_replace() {
        let src = "# top\ncase a\ntags isolated\n\nstep docker secret ls --format '{{.Name}}'\nstdin <<EOT\nhi\nEOT\nexpect exit 1\nexpect stdout <<EOT\nold\nEOT\n# trailing comment\n\nstep http GET /x\nmodern status 400\n";
        let f = CaseFile::parse(Path::new("t.cases"), src).unwrap();
        assert_eq!(f.render(&[]), src);
        let c = &f.cases[0];
        assert_eq!(
            c.steps[0].kind,
            StepKind::Docker(vec![
                "secret".into(),
                "ls".into(),
                "--format".into(),
                "{{.Name}}".into()
            ])
        );
        assert_eq!(c.steps[0].stdin, Some(Value::Literal("hi\n".into())));
        assert_eq!(c.steps[0].expect.stdout.as_deref(), Some("old\n"));
        assert_eq!(c.steps[1].modern.status, Some(400));
        let e = Expect {
            exit: Some(0),
            stdout: Some("new\n".into()),
            stderr: Some(String::new()),
            ..Default::default()
        };
        let out = f.render(&[vec![Some(e), None]]);
        assert!(out.contains("EOT\nexpect exit 0\nexpect stdout <<EOT\nnew\nEOT\nexpect stderr \"\"\n# trailing comment\n"), "{out}");
        assert!(!out.contains("old"));
        let again = CaseFile::parse(Path::new("t.cases"), &out).unwrap();
        assert_eq!(
            again.cases[0].steps[0].expect.stdout.as_deref(),
            Some("new\n")
        );
    }

    #[test]
    fn until_lines_with_uniq() {
        let src = "case a\nstep http GET /x\nuntil 0.Status.State '\"running\"'\nuntil body 'x y'\n\nstep docker service ls\nlines-with 'converged'\nlines-with \"1 out of\"\nuniq\n";
        let f = CaseFile::parse(Path::new("t.cases"), src).unwrap();
        assert_eq!(f.render(&[]), src);
        let s = &f.cases[0].steps;
        assert_eq!(
            s[0].until,
            vec![
                (
                    "0.Status.State".to_string(),
                    Value::Literal("\"running\"".into())
                ),
                ("body".to_string(), Value::Literal("x y".into()))
            ]
        );
        assert_eq!(s[1].lines_with.len(), 2);
        assert!(s[1].uniq && !s[0].uniq);
        assert!(CaseFile::parse(Path::new("t"), "case a\nstep http GET /x\nuntil x\n").is_err());
    }

    #[test]
    fn values() {
        assert_eq!(
            parse_value_expr("\"a\\n\" + repeat 'x' 3 + 'y'")
                .unwrap()
                .eval(),
            "a\nxxxy"
        );
        assert_eq!(
            parse_value_expr("'{\"Name\":1}'").unwrap().eval(),
            "{\"Name\":1}"
        );
        assert_eq!(render_value("OK"), "\"OK\"\n");
        assert_eq!(render_value("a\nb\n"), "<<EOT\na\nb\nEOT\n");
        assert_eq!(render_value("a \nb\n"), "\"a \\nb\\n\"\n");
    }
}
