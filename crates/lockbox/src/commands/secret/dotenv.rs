//! A `.env` parser that behaves as dotenv does and never lets a value into a message.
//!
//! * blank lines and lines whose first non-blank character is `#` are comments;
//! * `export KEY=value` is `KEY=value`; spaces around `=` are ignored; keys are
//!   `[A-Za-z_][A-Za-z0-9_.-]*`;
//! * `'single quotes'` are literal; `"double quotes"` understand `\n`, `\r`, `\t`, `\"`, `\\`
//!   and `\$` (other backslashes stay); `` `backticks` `` are literal; quoted values may span
//!   lines;
//! * an unquoted value ends at the end of the line or at a `#` preceded by a blank (so
//!   `pa#ss` keeps its `#`), and loses surrounding blanks;
//! * after a closing quote only blanks and a `# comment` may follow;
//! * `${VAR}` is not expanded (see [`Entry::has_reference`]);
//! * a key given twice: the last value wins.

use zeroize::Zeroizing;

/// One `KEY=value`.
pub(crate) struct Entry {
    pub(crate) key: String,
    /// The line the key is on (1-based).
    pub(crate) line: usize,
    pub(crate) value: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key)
            .field("line", &self.line)
            .field("value", &"[redacted]")
            .finish()
    }
}

impl Entry {
    /// Whether the value looks like it meant a variable reference (`${X}`), which dotenv
    /// leaves alone.
    pub(crate) fn has_reference(&self) -> bool {
        self.value.windows(2).any(|w| w == b"${")
    }
}

/// A syntax error: the line and what is wrong, never the value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) line: usize,
    pub(crate) message: &'static str,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The entries in file order (a repeated key keeps the position of its first occurrence and
/// the value of its last), and notes about lines that were ignored.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) entries: Vec<Entry>,
    pub(crate) notes: Vec<String>,
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_key_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-'
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
    line: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        if b == b'\n' {
            self.line += 1;
        }
        Some(b)
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.i += 1;
        }
    }

    /// Skips to just after the end of the current line.
    fn skip_line(&mut self) {
        while let Some(b) = self.bump() {
            if b == b'\n' {
                break;
            }
        }
    }

    fn at_line_end(&self) -> bool {
        matches!(self.peek(), None | Some(b'\n'))
            || (self.peek() == Some(b'\r') && matches!(self.s.get(self.i + 1), None | Some(b'\n')))
    }

    fn err(&self, line: usize, message: &'static str) -> ParseError {
        ParseError { line, message }
    }
}

/// Parses `.env` text.
pub(crate) fn parse(text: &[u8]) -> Result<Parsed, ParseError> {
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    let mut c = Cursor {
        s: text,
        i: 0,
        line: 1,
    };
    let mut out = Parsed::default();
    while c.peek().is_some() {
        c.skip_blanks();
        if c.at_line_end() || c.peek() == Some(b'#') {
            c.skip_line();
            continue;
        }
        let line = c.line;
        // `export ` prefix (but a key may itself be called `export`).
        if c.s[c.i..].starts_with(b"export") && c.s.get(c.i + 6).copied().is_some_and(is_blank) {
            let save = c.i;
            c.i += 6;
            c.skip_blanks();
            if !c.peek().is_some_and(is_key_start) {
                c.i = save;
            }
        }
        if !c.peek().is_some_and(is_key_start) {
            return Err(c.err(line, "expected KEY=value"));
        }
        let start = c.i;
        while c.peek().is_some_and(is_key_byte) {
            c.i += 1;
        }
        let key = String::from_utf8_lossy(&c.s[start..c.i]).into_owned();
        c.skip_blanks();
        if c.at_line_end() {
            out.notes
                .push(format!("line {line}: {key} has no '=': ignored"));
            c.skip_line();
            continue;
        }
        if c.peek() != Some(b'=') {
            return Err(c.err(line, "expected '=' after the key"));
        }
        c.i += 1;
        c.skip_blanks();
        let value = match c.peek() {
            Some(q @ (b'\'' | b'"' | b'`')) => {
                c.i += 1;
                let v = quoted(&mut c, q, line)?;
                c.skip_blanks();
                if c.peek() == Some(b'#') || c.at_line_end() {
                    c.skip_line();
                } else {
                    return Err(c.err(c.line, "unexpected text after the closing quote"));
                }
                v
            }
            _ => unquoted(&mut c),
        };
        match out.entries.iter_mut().find(|e| e.key == key) {
            Some(prev) => {
                out.notes.push(format!(
                    "line {line}: {key} repeats line {}: the later value is used",
                    prev.line
                ));
                prev.value = value;
            }
            None => out.entries.push(Entry { key, line, value }),
        }
    }
    Ok(out)
}

fn quoted(c: &mut Cursor<'_>, q: u8, line: usize) -> Result<Zeroizing<Vec<u8>>, ParseError> {
    let mut v = Zeroizing::new(Vec::new());
    loop {
        let Some(b) = c.bump() else {
            return Err(c.err(line, "unterminated quoted value"));
        };
        if b == q {
            return Ok(v);
        }
        if b == b'\\' && q == b'"' {
            match c.peek() {
                Some(n @ (b'n' | b'r' | b't' | b'"' | b'\\' | b'$')) => {
                    c.i += 1;
                    v.push(match n {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        other => other,
                    });
                }
                _ => v.push(b'\\'),
            }
            continue;
        }
        if b == b'\r' && c.peek() == Some(b'\n') {
            continue; // CRLF inside a multi-line value is a newline
        }
        v.push(b);
    }
}

fn unquoted(c: &mut Cursor<'_>) -> Zeroizing<Vec<u8>> {
    let start = c.i;
    let mut end = c.i;
    while let Some(b) = c.peek() {
        if b == b'\n' {
            break;
        }
        if b == b'#' && (c.i == start || is_blank(c.s[c.i - 1])) {
            break;
        }
        c.i += 1;
        end = c.i;
    }
    c.skip_line();
    let mut slice = &c.s[start..end];
    while let Some((&last, rest)) = slice.split_last() {
        if is_blank(last) || last == b'\r' {
            slice = rest;
        } else {
            break;
        }
    }
    Zeroizing::new(slice.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(String, String)> {
        parse(text.as_bytes())
            .unwrap()
            .entries
            .iter()
            .map(|e| (e.key.clone(), String::from_utf8(e.value.to_vec()).unwrap()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dotenv_syntax() {
        let text = "\u{feff}# comment\n\
            \n\
            export DB_PASSWORD=s3cr3t\n\
            JWT_SECRET = 'lit$eral \\n #x' # comment\n\
            A=\"line1\\nline2\\t\\\"q\\\" \\x\"\n\
            B=unquoted value # comment\n\
            C=pa#ss\n\
            D=\n\
            E=\"multi\nline\"\n\
            F=`back tick`\n\
            export=keyword\n\
            G.H-I=dots\r\n\
            J=crlf  \r\n\
            \t  K=indented\n";
        assert_eq!(
            kv(text),
            pairs(&[
                ("DB_PASSWORD", "s3cr3t"),
                ("JWT_SECRET", "lit$eral \\n #x"),
                ("A", "line1\nline2\t\"q\" \\x"),
                ("B", "unquoted value"),
                ("C", "pa#ss"),
                ("D", ""),
                ("E", "multi\nline"),
                ("F", "back tick"),
                ("export", "keyword"),
                ("G.H-I", "dots"),
                ("J", "crlf"),
                ("K", "indented"),
            ])
        );
    }

    #[test]
    fn repeats_and_notes() {
        let p = parse(b"A=1\nB\nA=2\n").unwrap();
        assert_eq!(p.entries.len(), 1);
        assert_eq!(&*p.entries[0].value, b"2");
        assert_eq!(p.entries[0].line, 1);
        assert_eq!(
            p.notes,
            vec![
                "line 2: B has no '=': ignored".to_string(),
                "line 3: A repeats line 1: the later value is used".to_string()
            ]
        );
    }

    #[test]
    fn errors_name_the_line_not_the_value() {
        let cases: [(&str, usize); 4] = [
            ("A=1\nB=\"never closed s3cr3t\n", 2),
            ("A='x' s3cr3t\n", 1),
            ("=s3cr3t\n", 1),
            ("1A=s3cr3t\n", 1),
        ];
        for (text, line) in cases {
            let e = parse(text.as_bytes()).unwrap_err();
            assert_eq!(e.line, line, "{text:?}");
            assert!(!e.to_string().contains("s3cr3t"));
        }
        let e = parse(b"A=1\nB=2\nC=\"x\n\n").unwrap_err();
        assert_eq!(e.to_string(), "line 3: unterminated quoted value");
        let p = parse(b"A=${HOME}/x\n").unwrap();
        assert!(p.entries[0].has_reference());
        assert!(!format!("{:?}", p.entries[0]).contains("HOME"));
    }
}
