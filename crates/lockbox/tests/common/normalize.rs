//! Normalisation of what legitimately differs between two correct servers (and between two
//! runs of the same one): object IDs, raft indexes, timestamps, humanised ages, unlock keys, join
//! tokens, version strings and the hostname; for services and tasks also 12-char truncated IDs,
//! container IDs, the test image and the order of service names in "in use by" messages.
//!
//! IDs, indexes, keys and tokens are mapped per case to numbered placeholders (`<ID1>`, `<N2>`,
//! `<KEY1>`, `<TOKEN1>`) in order of first appearance, so "the same ID" is still checked. Request
//! templates can refer back to the real values with `{ID1}`, `{ID1:5}` (a 5-char prefix),
//! `{N1}`, `{KEY1}`, `{TOKEN1}`, `{DIR}` (the case's scratch dir), `{APIVER}`, `{HOSTNAME}` and
//! `{IMAGE}` (the image services run: `busybox:local` on a real Docker, `host` on lockbox; its echo
//! in outputs reads `<IMAGE>`); `{HOSTNAME:2}` is a prefix of a variable.

use std::collections::HashMap;

/// Facts about the server under test, read once from `/version` and `/info`.
#[derive(Clone, Debug, Default)]
pub struct ServerFacts {
    pub version: Option<String>,
    pub api_version: Option<String>,
    pub min_api_version: Option<String>,
    pub hostname: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Normalizer {
    pub facts: ServerFacts,
    ids: Vec<String>,
    indexes: Vec<String>,
    keys: Vec<String>,
    tokens: Vec<String>,
    /// (actual, placeholder, boundary): literal replacements recorded while substituting.
    literals: Vec<(String, String, Bound)>,
    /// 64-hex container IDs (and digests) seen so far: `<HEX1>`...
    hexes: Vec<String>,
    vars: HashMap<String, String>,
}

/// What may not touch a literal replacement for it to count as a whole token.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Bound {
    /// Anywhere (e.g. the scratch dir).
    None,
    /// Not next to `[A-Za-z0-9]` (ID prefixes).
    Alnum,
    /// Not next to `[A-Za-z0-9_.:/@-]` (image references: `host` must not hit `localhost` or
    /// `host:port`).
    Image,
}

fn is_image_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"_.:/@-".contains(&c)
}

fn is_b36(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

fn is_b64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

/// Replace whole-token occurrences of `needle` (not preceded/followed by a `word` byte).
fn replace_bounded(s: &str, needle: &str, repl: &str, word: fn(u8) -> bool) -> String {
    if needle.is_empty() {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut last = 0;
    while let Some(off) = s[i..].find(needle) {
        let start = i + off;
        let end = start + needle.len();
        let before_ok = start == 0 || !word(b[start - 1]);
        let after_ok = end == b.len() || !word(b[end]);
        if before_ok && after_ok {
            out.push_str(&s[last..start]);
            out.push_str(repl);
            last = end;
            i = end;
        } else {
            i = start + 1;
            while !s.is_char_boundary(i) {
                i += 1;
            }
        }
        if i >= s.len() {
            break;
        }
    }
    out.push_str(&s[last..]);
    out
}

/// Scan `s` and replace every match of `matcher` (which returns the match length at a position,
/// or 0) with `repl(matched_text)`.
fn replace_scan(
    s: &str,
    mut matcher: impl FnMut(&[u8], usize) -> usize,
    mut repl: impl FnMut(&str) -> String,
) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        let n = if s.is_char_boundary(i) {
            matcher(b, i)
        } else {
            0
        };
        if n > 0 {
            out.push_str(&s[last..i]);
            out.push_str(&repl(&s[i..i + n]));
            i += n;
            last = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[last..]);
    out
}

fn digits(b: &[u8], i: usize, n: usize) -> bool {
    i + n <= b.len() && b[i..i + n].iter().all(u8::is_ascii_digit)
}

fn lit(b: &[u8], i: usize, l: &[u8]) -> bool {
    b.len() >= i + l.len() && &b[i..i + l.len()] == l
}

/// `2026-11-23T11:01:32.323275185Z`, `...+01:00`, or Go's `2026-11-23 11:01:32.32 +0000 utc`.
fn match_time(b: &[u8], i: usize) -> usize {
    if i > 0 && b[i - 1].is_ascii_digit() {
        return 0;
    }
    if !(digits(b, i, 4)
        && lit(b, i + 4, b"-")
        && digits(b, i + 5, 2)
        && lit(b, i + 7, b"-")
        && digits(b, i + 8, 2))
    {
        return 0;
    }
    let sep = b.get(i + 10).copied();
    if !(sep == Some(b'T') || sep == Some(b' ')) {
        return 0;
    }
    let t = i + 11;
    if !(digits(b, t, 2)
        && lit(b, t + 2, b":")
        && digits(b, t + 3, 2)
        && lit(b, t + 5, b":")
        && digits(b, t + 6, 2))
    {
        return 0;
    }
    let mut j = t + 8;
    if lit(b, j, b".") && digits(b, j + 1, 1) {
        j += 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
    }
    if sep == Some(b'T') {
        if lit(b, j, b"Z") {
            return j + 1 - i;
        }
        if (lit(b, j, b"+") || lit(b, j, b"-"))
            && digits(b, j + 1, 2)
            && lit(b, j + 3, b":")
            && digits(b, j + 4, 2)
        {
            return j + 6 - i;
        }
        return 0;
    }
    // Go time.String(): " +0000 UTC" (the CLI lowercases it in --pretty output)
    if lit(b, j, b" ") && (lit(b, j + 1, b"+") || lit(b, j + 1, b"-")) && digits(b, j + 2, 4) {
        let mut k = j + 6;
        if lit(b, k, b" ") && b.get(k + 1).is_some_and(u8::is_ascii_alphabetic) {
            k += 1;
            while k < b.len() && b[k].is_ascii_alphabetic() {
                k += 1;
            }
        }
        return k - i;
    }
    j - i
}

/// Humanised durations from go-units `HumanDuration` followed by " ago".
fn match_ago(b: &[u8], i: usize) -> usize {
    for fixed in [
        &b"Less than a second ago"[..],
        b"About a minute ago",
        b"About an hour ago",
        // `service ps` lowercases HumanDuration: "Running less than a second ago"
        b"less than a second ago",
        b"about a minute ago",
        b"about an hour ago",
    ] {
        if lit(b, i, fixed) {
            return fixed.len();
        }
    }
    if i > 0 && b[i - 1].is_ascii_digit() {
        return 0;
    }
    let mut j = i;
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    if j == i || !lit(b, j, b" ") {
        return 0;
    }
    j += 1;
    for unit in [
        "seconds", "second", "minutes", "hours", "days", "weeks", "months", "years",
    ] {
        if lit(b, j, unit.as_bytes()) && lit(b, j + unit.len(), b" ago") {
            return j + unit.len() + 4 - i;
        }
    }
    0
}

fn match_id(b: &[u8], i: usize) -> usize {
    if (i > 0 && is_alnum(b[i - 1])) || i + 25 > b.len() {
        return 0;
    }
    if b[i..i + 25].iter().all(|&c| is_b36(c)) && (i + 25 == b.len() || !is_alnum(b[i + 25])) {
        25
    } else {
        0
    }
}

/// `SWMTKN-1-<50 base36>-<25 base36>`
fn match_token(b: &[u8], i: usize) -> usize {
    if !lit(b, i, b"SWMTKN-1-") {
        return 0;
    }
    let j = i + 9;
    if j + 76 <= b.len()
        && b[j..j + 50].iter().all(|&c| is_b36(c))
        && b[j + 50] == b'-'
        && b[j + 51..j + 76].iter().all(|&c| is_b36(c))
    {
        85
    } else {
        0
    }
}

/// `SWMKEY-1-<43 chars of raw std base64>`
fn match_key(b: &[u8], i: usize) -> usize {
    if !lit(b, i, b"SWMKEY-1-") {
        return 0;
    }
    let j = i + 9;
    let mut k = j;
    while k < b.len() && is_b64(b[k]) {
        k += 1;
    }
    if k - j == 43 { 52 } else { 0 }
}

/// `"Index":12` / `"Index": 12` → the length of the digits part is handled by the caller.
fn match_index(b: &[u8], i: usize) -> usize {
    if !lit(b, i, b"\"Index\":") {
        return 0;
    }
    let mut j = i + 8;
    while j < b.len() && b[j] == b' ' {
        j += 1;
    }
    let d = j;
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    if j > d { j - i } else { 0 }
}

/// 64 lowercase hex characters, bounded, with at least one digit and one letter (container IDs,
/// digests; a name like `bbbb…` is left alone).
fn match_hex64(b: &[u8], i: usize) -> usize {
    if (i > 0 && is_alnum(b[i - 1])) || i + 64 > b.len() {
        return 0;
    }
    let w = &b[i..i + 64];
    let hex = w
        .iter()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    let digit = w.iter().any(u8::is_ascii_digit);
    let letter = w.iter().any(u8::is_ascii_lowercase);
    if hex && digit && letter && (i + 64 == b.len() || !is_alnum(b[i + 64])) {
        64
    } else {
        0
    }
}

/// swarmkit lists the services that block a secret's removal in memdb (service ID) order, which
/// is random with respect to their names: `...is in use by the following services: b, a` reads
/// `...: a, b` after this.
fn sort_in_use_services(s: &str) -> String {
    const MARK: &str = "is in use by the following services: ";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find(MARK) {
        let start = p + MARK.len();
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find(['"', '\n', '\\']).unwrap_or(tail.len());
        let mut names: Vec<&str> = tail[..end].split(", ").collect();
        names.sort_unstable();
        out.push_str(&names.join(", "));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn placeholder(list: &mut Vec<String>, prefix: &str, actual: &str) -> String {
    let n = match list.iter().position(|x| x == actual) {
        Some(p) => p + 1,
        None => {
            list.push(actual.to_string());
            list.len()
        }
    };
    format!("<{prefix}{n}>")
}

impl Normalizer {
    pub fn new(facts: ServerFacts) -> Normalizer {
        let mut n = Normalizer {
            facts,
            ..Default::default()
        };
        if let Some(v) = n.facts.api_version.clone() {
            n.vars.insert("APIVER".into(), v);
        }
        if let Some(v) = n.facts.hostname.clone() {
            n.vars.insert("HOSTNAME".into(), v);
        }
        n
    }

    /// Make `{IMAGE}` expand to `image` (the image services run on this target); once used in a
    /// request, `image` in outputs reads `<IMAGE>`.
    pub fn set_image(&mut self, image: &str) {
        self.vars.insert("IMAGE".into(), image.to_string());
    }

    /// Real IDs seen so far, in placeholder order (`<ID1>` first).
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Make `{DIR}` expand to `dir`, and `dir` in outputs read `<DIR>`.
    pub fn set_dir(&mut self, dir: &str) {
        self.vars.insert("DIR".into(), dir.to_string());
        self.literals
            .push((dir.to_string(), "<DIR>".to_string(), Bound::None));
    }

    /// Expand `{ID1}`, `{ID1:5}`, `{N1}`, `{KEY1}`, `{TOKEN1}`, `{DIR}`, `{APIVER}` in a request
    /// template. Anything else in braces (e.g. Go templates, JSON) is left alone.
    pub fn substitute(&mut self, s: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(p) = rest.find('{') {
            out.push_str(&rest[..p]);
            let after = &rest[p + 1..];
            let end = after.find('}');
            let name = end.map(|e| &after[..e]).unwrap_or("");
            match self.expand(name)? {
                Some(v) => {
                    out.push_str(&v);
                    rest = &after[end.expect("end") + 1..];
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn expand(&mut self, name: &str) -> Result<Option<String>, String> {
        if let Some(v) = self.vars.get(name).cloned() {
            if name == "IMAGE" && !self.literals.iter().any(|(a, _, _)| *a == v) {
                self.literals
                    .push((v.clone(), "<IMAGE>".to_string(), Bound::Image));
            }
            return Ok(Some(v));
        }
        if let Some((var, n)) = name.split_once(':')
            && let Some(v) = self.vars.get(var)
            && let Ok(n) = n.parse::<usize>()
        {
            return Ok(Some(v.chars().take(n).collect()));
        }
        if ["APIVER", "DIR", "HOSTNAME", "IMAGE"].contains(&name) {
            return Err(format!("{{{name}}} is not known for this target"));
        }
        let (head, prefix_len) = match name.split_once(':') {
            Some((h, n)) => match n.parse::<usize>() {
                Ok(n) => (h, Some(n)),
                Err(_) => return Ok(None),
            },
            None => (name, None),
        };
        let split = head
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(head.len());
        let (kind, num) = head.split_at(split);
        let Ok(num) = num.parse::<usize>() else {
            return Ok(None);
        };
        let list = match kind {
            "ID" => &self.ids,
            "N" => &self.indexes,
            "KEY" => &self.keys,
            "TOKEN" => &self.tokens,
            _ => return Ok(None),
        };
        let actual = list.get(num.wrapping_sub(1)).cloned().ok_or_else(|| {
            format!("{{{name}}} used before <{head}> appeared in any output of this case")
        })?;
        Ok(Some(match prefix_len {
            Some(n) => {
                let p: String = actual.chars().take(n).collect();
                if !self.literals.iter().any(|(a, _, _)| *a == p) {
                    self.literals
                        .push((p.clone(), format!("<{head}:{n}>"), Bound::Alnum));
                }
                p
            }
            None => actual,
        }))
    }

    /// Normalise one output. `cli` additionally collapses runs of spaces (the docker CLI pads
    /// table columns to the widest cell, and humanised ages have variable width).
    pub fn normalize(&mut self, s: &str, cli: bool) -> String {
        let mut s = s.to_string();
        for (actual, ph, bound) in self.literals.clone() {
            s = match bound {
                Bound::None => s.replace(&actual, &ph),
                Bound::Alnum => replace_bounded(&s, &actual, &ph, is_alnum),
                Bound::Image => replace_bounded(&s, &actual, &ph, is_image_char),
            };
        }
        s = replace_scan(&s, match_token, |m| {
            placeholder(&mut self.tokens, "TOKEN", m)
        });
        s = replace_scan(&s, match_key, |m| placeholder(&mut self.keys, "KEY", m));
        if let Some(v) = self.facts.version.clone().filter(|v| v.len() >= 3) {
            s = replace_bounded(&s, &v, "<VERSION>", |c| {
                c.is_ascii_alphanumeric() || c == b'.' || c == b'+' || c == b'~'
            });
        }
        s = replace_scan(&s, match_time, |_| "<TIME>".to_string());
        s = replace_scan(&s, match_id, |m| placeholder(&mut self.ids, "ID", m));
        s = replace_scan(&s, match_hex64, |m| placeholder(&mut self.hexes, "HEX", m));
        if cli {
            // The CLI's tables (`service ls`, `service ps`, `service logs`) show IDs cut to 12
            // characters: a 12-char prefix of an ID already seen reads `<IDn:12>`.
            for (n, id) in self.ids.clone().iter().enumerate() {
                if id.len() > 12 {
                    s = replace_bounded(&s, &id[..12], &format!("<ID{}:12>", n + 1), is_alnum);
                }
            }
        }
        s = replace_scan(&s, match_index, |m| {
            let d = m.find(|c: char| c.is_ascii_digit()).expect("digits");
            format!(
                "{}{}",
                &m[..d],
                placeholder(&mut self.indexes, "N", &m[d..])
            )
        });
        s = replace_scan(&s, match_ago, |_| "<AGO>".to_string());
        let verword = |c: u8| c.is_ascii_digit() || c == b'.';
        if let Some(v) = self.facts.api_version.clone() {
            s = replace_bounded(&s, &v, "<APIVER>", verword);
        }
        if let Some(v) = self.facts.min_api_version.clone() {
            s = replace_bounded(&s, &v, "<MINAPIVER>", verword);
        }
        if let Some(h) = self.facts.hostname.clone().filter(|h| h.len() >= 2) {
            s = replace_bounded(&s, &h, "<HOSTNAME>", |c| {
                c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.'
            });
        }
        s = sort_in_use_services(&s);
        if cli {
            // Keep indentation (inspect output); collapse runs of spaces inside a line.
            let mut out = String::with_capacity(s.len());
            for line in s.split_inclusive('\n') {
                let indent = line.len() - line.trim_start_matches(' ').len();
                out.push_str(&line[..indent]);
                let mut spaces = 0;
                for c in line[indent..].chars() {
                    if c == ' ' {
                        spaces += 1;
                        continue;
                    }
                    if spaces > 0 {
                        out.push_str(if spaces == 1 { " " } else { "  " });
                        spaces = 0;
                    }
                    out.push(c);
                }
                if spaces > 0 {
                    out.push_str(if spaces == 1 { " " } else { "  " });
                }
            }
            s = out;
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// JSON views of a body: sort-by, json-keys, select
// ---------------------------------------------------------------------------------------------

/// Split a JSON array's raw text into (prefix, elements, separators, suffix) without
/// re-serialising anything. `None` if `s` is not an array.
fn split_array(s: &str) -> Option<(String, Vec<String>, Vec<String>, String)> {
    let open = s.find('[')?;
    if !s[..open].trim().is_empty() {
        return None;
    }
    let b = s.as_bytes();
    let (mut depth, mut in_str, mut esc) = (0i32, false, false);
    let mut elems = Vec::new();
    let mut seps = Vec::new();
    let mut start = open + 1;
    for i in open..b.len() {
        let c = b[i];
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    let last = &s[start..i];
                    if !last.trim().is_empty() {
                        elems.push(last.to_string());
                    }
                    return Some((s[..open + 1].to_string(), elems, seps, s[i..].to_string()));
                }
            }
            b',' if depth == 1 => {
                elems.push(s[start..i].to_string());
                seps.push(",".to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    None
}

pub fn json_path<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut cur = v;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        cur = match cur {
            serde_json::Value::Object(m) => m.get(seg)?,
            serde_json::Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Reorder the elements of a JSON array body by the string (or number) at `path` in each, keeping
/// every byte of every element. Bodies that are not arrays are returned unchanged.
pub fn sort_array_by(body: &str, path: &str) -> String {
    let Some((pre, mut elems, seps, suf)) = split_array(body) else {
        return body.to_string();
    };
    let key = |e: &String| -> String {
        serde_json::from_str::<serde_json::Value>(e)
            .ok()
            .and_then(|v| {
                json_path(&v, path).map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| x.to_string())
                })
            })
            .unwrap_or_default()
    };
    elems.sort_by_key(key);
    let mut out = pre;
    for (i, e) in elems.iter().enumerate() {
        if i > 0 {
            out.push_str(seps.get(i - 1).map(String::as_str).unwrap_or(","));
        }
        out.push_str(e);
    }
    out.push_str(&suf);
    out
}

fn type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Remove the values at `paths` (dot paths into objects; a `*` segment stands for every element
/// of an array or every value of an object) and re-serialise compactly; for fields whose value is
/// not deterministic on the reference. Non-JSON bodies are unchanged.
pub fn json_drop(body: &str, paths: &[String]) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.to_string();
    };
    fn drop_at(v: &mut serde_json::Value, segs: &[&str]) {
        let Some((first, rest)) = segs.split_first() else {
            return;
        };
        if rest.is_empty() {
            if let serde_json::Value::Object(m) = v {
                if *first == "*" {
                    m.clear();
                } else {
                    m.shift_remove(*first);
                }
            }
            return;
        }
        match (v, *first) {
            (serde_json::Value::Array(a), "*") => a.iter_mut().for_each(|x| drop_at(x, rest)),
            (serde_json::Value::Object(m), "*") => m.values_mut().for_each(|x| drop_at(x, rest)),
            (v, seg) => {
                if let Some(x) = json_path_mut(v, seg) {
                    drop_at(x, rest);
                }
            }
        }
    }
    for p in paths {
        let segs: Vec<&str> = p.split('.').filter(|s| !s.is_empty()).collect();
        drop_at(&mut v, &segs);
    }
    let nl = if body.ends_with('\n') { "\n" } else { "" };
    format!("{}{nl}", serde_json::to_string(&v).expect("json"))
}

fn json_path_mut<'a>(
    v: &'a mut serde_json::Value,
    path: &str,
) -> Option<&'a mut serde_json::Value> {
    let mut cur = v;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        cur = match cur {
            serde_json::Value::Object(m) => m.get_mut(seg)?,
            serde_json::Value::Array(a) => a.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// The key structure of a JSON object, in order, one `path: type` per line, to `depth` levels.
/// For an array, the same for each element, prefixed with its index (`0.ID: string`); the
/// index does not count as a level.
pub fn json_keys(body: &str, depth: usize) -> String {
    fn walk(v: &serde_json::Value, prefix: &str, depth: usize, out: &mut String) {
        if let serde_json::Value::Object(m) = v {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push_str(&format!("{p}: {}\n", type_name(x)));
                if depth > 1 {
                    walk(x, &p, depth - 1, out);
                }
            }
        }
    }
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v @ serde_json::Value::Object(_)) => {
            let mut out = String::new();
            walk(&v, "", depth.max(1), &mut out);
            out
        }
        Ok(serde_json::Value::Array(a)) if !a.is_empty() => {
            let mut out = String::new();
            for (i, x) in a.iter().enumerate() {
                match x {
                    serde_json::Value::Object(_) => walk(x, &i.to_string(), depth.max(1), &mut out),
                    other => out.push_str(&format!("{i}: {}\n", type_name(other))),
                }
            }
            out
        }
        Ok(serde_json::Value::Array(_)) => "<empty array>\n".to_string(),
        Ok(v) => format!("<not an object: {}>\n", type_name(&v)),
        Err(e) => format!("<not JSON: {e}>\n{body}"),
    }
}

/// The value at `path` with `*` segments expanded: `*` over an array (or object) yields the
/// array of the values found below each element (elements without it are skipped). A last
/// segment `#` yields the length of an array or object.
pub fn json_lookup(v: &serde_json::Value, path: &str) -> Option<serde_json::Value> {
    fn go(v: &serde_json::Value, segs: &[&str]) -> Option<serde_json::Value> {
        let Some((first, rest)) = segs.split_first() else {
            return Some(v.clone());
        };
        match (*first, v) {
            ("#", serde_json::Value::Array(a)) if rest.is_empty() => Some(a.len().into()),
            ("#", serde_json::Value::Object(m)) if rest.is_empty() => Some(m.len().into()),
            ("*", serde_json::Value::Array(a)) => {
                Some(a.iter().filter_map(|x| go(x, rest)).collect())
            }
            ("*", serde_json::Value::Object(m)) => {
                Some(m.values().filter_map(|x| go(x, rest)).collect())
            }
            (seg, v) => go(json_path(v, seg)?, rest),
        }
    }
    let segs: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    go(v, &segs)
}

/// `PATH = <compact JSON>` for each path (`<missing>` when absent); paths may use `*` and `#`
/// as in [`json_lookup`].
pub fn json_select(body: &str, paths: &[String]) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => paths
            .iter()
            .map(|p| match json_lookup(&v, p) {
                Some(x) => format!("{p} = {}\n", serde_json::to_string(&x).expect("json")),
                None => format!("{p} = <missing>\n"),
            })
            .collect(),
        Err(e) => format!("<not JSON: {e}>\n{body}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> ServerFacts {
        ServerFacts {
            version: Some("20.10.24+dfsg1".into()),
            api_version: Some("1.41".into()),
            min_api_version: Some("1.12".into()),
            hostname: Some("vm".into()),
        }
    }

    #[test]
    fn ids_times_indexes() {
        let mut n = Normalizer::new(facts());
        let s = r#"{"ID":"dgn2zqqq0pn00wpapgu4yqfpr","Version":{"Index":12},"CreatedAt":"2026-11-23T11:01:32.323275185Z","UpdatedAt":"2026-11-23T11:01:32Z"}"#;
        assert_eq!(
            n.normalize(s, false),
            r#"{"ID":"<ID1>","Version":{"Index":<N1>},"CreatedAt":"<TIME>","UpdatedAt":"<TIME>"}"#
        );
        let s2 = "ecs8hlxuo7cvn71gtz6a8vsr9   lbx-a   Less than a second ago   2 minutes ago\n";
        assert_eq!(n.normalize(s2, true), "<ID2>  lbx-a  <AGO>  <AGO>\n");
        assert_eq!(
            n.normalize("[\n    {\n        \"a\":   1\n", true),
            "[\n    {\n        \"a\":  1\n"
        );
        assert_eq!(
            n.normalize("dgn2zqqq0pn00wpapgu4yqfpr \"Index\": 12", false),
            "<ID1> \"Index\": <N1>"
        );
        assert_eq!(
            n.substitute("x/{ID2:5}/{N1}/{{.Name}}/{\"a\":1}").unwrap(),
            "x/ecs8h/12/{{.Name}}/{\"a\":1}"
        );
        assert_eq!(
            n.normalize("secret ecs8h not found", false),
            "secret <ID2:5> not found"
        );
        assert!(n.substitute("{ID9}").is_err());
        assert_eq!(
            n.normalize(
                "Created at:        2026-11-23 11:01:32.323275185 +0000 utc\n",
                true
            ),
            "Created at:  <TIME>\n"
        );
    }

    #[test]
    fn versions_keys_tokens() {
        let mut n = Normalizer::new(facts());
        assert_eq!(
            n.normalize(
                "Server: Docker/20.10.24+dfsg1 (linux) api 1.41 min 1.12 not 1.410 host vm",
                false
            ),
            "Server: Docker/<VERSION> (linux) api <APIVER> min <MINAPIVER> not 1.410 host <HOSTNAME>"
        );
        let k = "SWMKEY-1-kZ0Qqyzf5h8fDmnFPAaEY8ygQh0hwFvEomM1x0+Z8PU";
        assert_eq!(
            n.normalize(&format!("key {k}\n{k}"), false),
            "key <KEY1>\n<KEY1>"
        );
        let t =
            "SWMTKN-1-1bzl74wlq274ytotu5oeokpwa451tzvi08adgr9h5uhe8xf7j0-dytrlj217v92oyu2q4bfp0vcc";
        assert_eq!(
            n.normalize(&format!("--token {t} 127.0.0.1:2377"), false),
            "--token <TOKEN1> 127.0.0.1:2377"
        );
        assert_eq!(n.substitute("{KEY1}").unwrap(), k);
    }

    #[test]
    fn services_and_tasks() {
        let mut n = Normalizer::new(facts());
        n.set_image("busybox:local");
        // the image reads <IMAGE> only once {IMAGE} was used, and only as a whole reference
        assert_eq!(n.normalize("busybox:local", false), "busybox:local");
        assert_eq!(
            n.substitute("{IMAGE} {HOSTNAME} {HOSTNAME:1}").unwrap(),
            "busybox:local vm v"
        );
        assert_eq!(
            n.normalize("\"Image\":\"busybox:local\" busybox:localx", false),
            "\"Image\":\"<IMAGE>\" busybox:localx"
        );
        let mut h = Normalizer::new(facts());
        h.set_image("host");
        h.substitute("{IMAGE}").unwrap();
        assert_eq!(
            h.normalize("host localhost host:2377 x/host \"host\"", false),
            "<IMAGE> localhost host:2377 x/host \"<IMAGE>\""
        );
        // 12-char prefixes of known IDs in CLI tables; lowercase ages from `service ps`
        let id = "dgn2zqqq0pn00wpapgu4yqfpr";
        assert_eq!(n.normalize(id, false), "<ID1>");
        assert_eq!(
            n.normalize(
                "dgn2zqqq0pn0   lbxt-a.1   Running less than a second ago\n",
                true
            ),
            "<ID1:12>  lbxt-a.1  Running <AGO>\n"
        );
        assert_eq!(
            n.normalize("dgn2zqqq0pn0", false),
            "dgn2zqqq0pn0",
            "only in CLI output"
        );
        assert_eq!(
            n.normalize("lbxt-a.1.dgn2zqqq0pn00wpapgu4yqfpr@vm | x", true),
            "lbxt-a.1.<ID1>@<HOSTNAME> | x"
        );
        // container IDs; a 64-letter name is not one
        let cid = "802b9b058b33cea8796c7c99650be67f50e8e91d93e7ee3e20b9171d78d12034";
        assert_eq!(
            n.normalize(&format!("{cid} {cid} {}", "b".repeat(64)), false),
            format!("<HEX1> <HEX1> {}", "b".repeat(64))
        );
        // the services blocking a secret's removal come in memdb order: sorted
        assert_eq!(
            n.normalize(
                "{\"message\":\"... is in use by the following services: lbxt-b, lbxt-a\"}\nis in use by the following services: z, y\n",
                false
            ),
            "{\"message\":\"... is in use by the following services: lbxt-a, lbxt-b\"}\nis in use by the following services: y, z\n"
        );
    }

    #[test]
    fn json_views_for_lists() {
        let b = r#"[{"ID":"a","S":{"State":"running","C":{"P":1}}},{"ID":"b","S":{"State":"shutdown"}}]"#;
        assert_eq!(
            json_keys(b, 2),
            "0.ID: string\n0.S: object\n0.S.State: string\n0.S.C: object\n1.ID: string\n1.S: object\n1.S.State: string\n"
        );
        assert_eq!(json_keys("[]", 1), "<empty array>\n");
        assert_eq!(
            json_select(b, &["*.S.State".into(), "#".into(), "*.S.C.P".into()]),
            "*.S.State = [\"running\",\"shutdown\"]\n# = 2\n*.S.C.P = [1]\n"
        );
        assert_eq!(
            json_drop(b, &["*.S.C".into(), "1.ID".into()]),
            r#"[{"ID":"a","S":{"State":"running"}},{"S":{"State":"shutdown"}}]"#
        );
        assert_eq!(
            json_drop("{\"A\":1,\"B\":2}\n", &["A".into()]),
            "{\"B\":2}\n"
        );
    }

    #[test]
    fn json_views() {
        let b = "[{\"Spec\":{\"Name\":\"b\"}},{\"Spec\":{\"Name\":\"a,]\"}}]\n";
        assert_eq!(
            sort_array_by(b, "Spec.Name"),
            "[{\"Spec\":{\"Name\":\"a,]\"}},{\"Spec\":{\"Name\":\"b\"}}]\n"
        );
        assert_eq!(sort_array_by("[]\n", "Spec.Name"), "[]\n");
        assert_eq!(
            json_keys("{\"A\":1,\"B\":{\"C\":\"x\"}}", 2),
            "A: number\nB: object\nB.C: string\n"
        );
        assert_eq!(
            json_select(
                "{\"A\":{\"B\":[1,{\"C\":true}]}}",
                &["A.B.1".into(), "X".into()]
            ),
            "A.B.1 = {\"C\":true}\nX = <missing>\n"
        );
    }
}
