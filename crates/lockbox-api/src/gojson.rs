//! A JSON syntax check that reports the first error in the words of Go's `encoding/json`
//! scanner, so clients see dockerd's messages (`invalid character 'x' looking for beginning
//! of value`, `unexpected EOF`, ...). Only syntax is checked here; serde_json then parses.

/// Where the first value ends, or Go's error text.
pub(crate) fn check(input: &[u8]) -> Result<usize, String> {
    let mut s = Scanner { b: input, i: 0 };
    s.ws();
    s.value()?;
    Ok(s.i)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

/// Go's `quoteChar`.
fn quote(c: u8) -> String {
    match c {
        b'\'' => r"'\''".to_owned(),
        b'"' => "'\"'".to_owned(),
        b'\n' => r"'\n'".to_owned(),
        b'\r' => r"'\r'".to_owned(),
        b'\t' => r"'\t'".to_owned(),
        0x20..=0x7e => format!("'{}'", c as char),
        c if c < 0x20 || c == 0x7f => format!("'\\x{c:02x}'"),
        _ => "'\u{fffd}'".to_owned(),
    }
}

const EOF: &str = "unexpected EOF";

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn err(c: u8, ctx: &str) -> String {
        format!("invalid character {} {ctx}", quote(c))
    }

    fn value(&mut self) -> Result<(), String> {
        match self.peek() {
            None => Err(EOF.into()),
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(c) => Err(Self::err(c, "looking for beginning of value")),
        }
    }

    fn object(&mut self) -> Result<(), String> {
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            match self.peek() {
                None => return Err(EOF.into()),
                Some(b'"') => self.string()?,
                Some(c) => return Err(Self::err(c, "looking for beginning of object key string")),
            }
            self.ws();
            match self.peek() {
                None => return Err(EOF.into()),
                Some(b':') => self.i += 1,
                Some(c) => return Err(Self::err(c, "after object key")),
            }
            self.ws();
            self.value()?;
            self.ws();
            match self.peek() {
                None => return Err(EOF.into()),
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(c) => return Err(Self::err(c, "after object key:value pair")),
            }
        }
    }

    fn array(&mut self) -> Result<(), String> {
        self.i += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value()?;
            self.ws();
            match self.peek() {
                None => return Err(EOF.into()),
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(c) => return Err(Self::err(c, "after array element")),
            }
        }
    }

    fn string(&mut self) -> Result<(), String> {
        self.i += 1;
        loop {
            match self.peek() {
                None => return Err(EOF.into()),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        None => return Err(EOF.into()),
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            self.i += 1;
                            for _ in 0..4 {
                                match self.peek() {
                                    None => return Err(EOF.into()),
                                    Some(c) if c.is_ascii_hexdigit() => self.i += 1,
                                    Some(c) => {
                                        return Err(Self::err(
                                            c,
                                            "in \\u hexadecimal character escape",
                                        ));
                                    }
                                }
                            }
                        }
                        Some(c) => return Err(Self::err(c, "in string escape code")),
                    }
                }
                Some(c) if c < 0x20 => return Err(Self::err(c, "in string literal")),
                Some(_) => self.i += 1,
            }
        }
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
    }

    fn number(&mut self) -> Result<(), String> {
        if self.peek() == Some(b'-') {
            self.i += 1;
            match self.peek() {
                None => return Err(EOF.into()),
                Some(b'0'..=b'9') => {}
                Some(c) => return Err(Self::err(c, "in numeric literal")),
            }
        }
        if self.peek() == Some(b'0') {
            self.i += 1;
        } else {
            self.digits();
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            match self.peek() {
                None => return Err(EOF.into()),
                Some(b'0'..=b'9') => self.digits(),
                Some(c) => return Err(Self::err(c, "after decimal point in numeric literal")),
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            match self.peek() {
                None => return Err(EOF.into()),
                Some(b'0'..=b'9') => self.digits(),
                Some(c) => return Err(Self::err(c, "in exponent of numeric literal")),
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), String> {
        let name = String::from_utf8_lossy(word).into_owned();
        for (k, &want) in word.iter().enumerate() {
            match self.peek() {
                None => return Err(EOF.into()),
                Some(c) if c == want => self.i += 1,
                Some(c) => {
                    return Err(Self::err(
                        c,
                        &format!("in literal {name} (expecting {})", quote(word[k])),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_messages() {
        assert_eq!(
            check(br#"{"Name":x}"#).unwrap_err(),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(check(br#"{"Name":"#).unwrap_err(), "unexpected EOF");
        assert_eq!(
            check(b"{b").unwrap_err(),
            "invalid character 'b' looking for beginning of object key string"
        );
        assert_eq!(
            check(br#"{"a" 1}"#).unwrap_err(),
            "invalid character '1' after object key"
        );
        assert_eq!(
            check(br#"{"a":1 "b":2}"#).unwrap_err(),
            "invalid character '\"' after object key:value pair"
        );
        assert_eq!(
            check(b"[1 2]").unwrap_err(),
            "invalid character '2' after array element"
        );
        assert_eq!(
            check(b"tru!").unwrap_err(),
            "invalid character '!' in literal true (expecting 'e')"
        );
        assert_eq!(
            check(b"\"a\nb\"").unwrap_err(),
            "invalid character '\\n' in string literal"
        );
        assert_eq!(
            check(b"-x").unwrap_err(),
            "invalid character 'x' in numeric literal"
        );
        assert_eq!(check(br#"{"a":[1,2.5e3,{"b":null}]} tail"#), Ok(26));
    }

    proptest::proptest! {
        /// Whatever serde_json accepts as one complete value, the scanner accepts too.
        #[test]
        fn accepts_what_serde_accepts(s in "[\\[\\]{}\",:0-9a-z \\-.]{0,24}") {
            if serde_json::from_str::<serde_json::Value>(&s).is_ok() {
                let end = check(s.as_bytes());
                proptest::prop_assert!(end.is_ok(), "{s:?}: {end:?}");
            }
        }
    }
}
