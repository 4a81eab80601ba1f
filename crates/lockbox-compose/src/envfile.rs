//! Environment files: the `.env` file beside the compose file (variables for interpolation)
//! and a service's `env_file:` (variables for its tasks).

/// Parses a `.env` file as Compose does: `KEY=VALUE` lines, an optional `export ` prefix,
/// `#` comments, values in single quotes (literal) or double quotes (`\n`, `\t`, `\\`, `\"`
/// escapes), unquoted values trimmed and cut at ` #`. Values are not interpolated.
pub fn parse_dotenv(text: &str, name: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_start_matches('\u{feff}').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "{name}:{}: unexpected line {line:?} (expected KEY=VALUE)",
                n + 1
            ));
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("{name}:{}: invalid variable name {key:?}", n + 1));
        }
        let value = value.trim_start();
        let value = if let Some(rest) = value.strip_prefix('\'') {
            match rest.find('\'') {
                Some(end) => rest[..end].to_owned(),
                None => return Err(format!("{name}:{}: unterminated quoted value", n + 1)),
            }
        } else if let Some(rest) = value.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = rest.chars();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some('n') => v.push('\n'),
                        Some('t') => v.push('\t'),
                        Some('r') => v.push('\r'),
                        Some(o) => v.push(o),
                        None => v.push('\\'),
                    },
                    o => v.push(o),
                }
            }
            if !closed {
                return Err(format!("{name}:{}: unterminated quoted value", n + 1));
            }
            v
        } else {
            let cut = value.find(" #").map_or(value, |i| &value[..i]);
            cut.trim().to_owned()
        };
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

/// Parses a service's `env_file:` as `docker stack deploy` does (docker's `kvfile`): lines
/// trimmed on the left, `#` comments, `KEY=VALUE` taken literally (quotes included), and a
/// bare `KEY` gives `None` (its value then comes from the environment, if set there).
pub fn parse_kvfile(data: &[u8], name: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    for (n, raw) in data.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Ok(line) = std::str::from_utf8(raw) else {
            return Err(format!(
                "invalid env file ({name}): invalid utf8 bytes at line {}",
                n + 1
            ));
        };
        let line = if n == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (line, None),
        };
        if key.is_empty() {
            return Err(format!(
                "invalid env file ({name}): no variable name on line '{line}'"
            ));
        }
        if key.contains([' ', '\t']) {
            return Err(format!(
                "invalid env file ({name}): variable '{key}' contains whitespaces"
            ));
        }
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv() {
        let t = "# c\nA=1\nexport B = two words # note\nC='x # y'\nD=\"l1\\nl2\"\n\nE=\n";
        let v = parse_dotenv(t, ".env").unwrap();
        assert_eq!(
            v,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x # y".into()),
                ("D".into(), "l1\nl2".into()),
                ("E".into(), String::new()),
            ]
        );
        assert!(parse_dotenv("NOEQUALS\n", ".env").is_err());
    }

    #[test]
    fn kvfile() {
        let v = parse_kvfile(b"  # c\nA=\"q\"\nB\n\nC=x=y\r\n", "f").unwrap();
        assert_eq!(
            v,
            vec![
                ("A".into(), Some("\"q\"".into())),
                ("B".into(), None),
                ("C".into(), Some("x=y".into())),
            ]
        );
        assert!(parse_kvfile(b"A B=1\n", "f").is_err());
    }
}
