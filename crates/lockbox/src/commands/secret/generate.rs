//! `--generate`: random values from the operating system's CSPRNG, and what may reveal them
//! (`--show`, `--output-file`).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::cli::{Charset, GenerateArgs};

/// Records how a value was generated (`CHARSET:LENGTH`), so that `secret rotate` and
/// `secret rotate --due` can generate the next one alike.
pub(crate) const GENERATE_LABEL: &str = "lockbox.generate";

/// The default `--length`.
pub(crate) const DEFAULT_LENGTH: usize = 32;

/// The largest value the daemon stores (docker's 500 KiB).
const MAX_VALUE: usize = 500 * 1024;

/// A generator: the character set and `--length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GenSpec {
    pub(crate) charset: Charset,
    /// Random bytes for `base64` and `hex` (the value is their encoding, as with
    /// `openssl rand -base64 N`); characters for `alnum` and `ascii`.
    pub(crate) length: usize,
}

fn charset_name(c: Charset) -> &'static str {
    match c {
        Charset::Base64 => "base64",
        Charset::Hex => "hex",
        Charset::Alnum => "alnum",
        Charset::Ascii => "ascii",
    }
}

impl GenSpec {
    /// From `--generate [--length N] [--charset C]`; `None` without `--generate`.
    pub(crate) fn from_args(a: &GenerateArgs) -> anyhow::Result<Option<GenSpec>> {
        if !a.generate {
            return Ok(None);
        }
        let spec = GenSpec {
            charset: a.charset.unwrap_or(Charset::Base64),
            length: a.length.unwrap_or(DEFAULT_LENGTH),
        };
        spec.validate()?;
        Ok(Some(spec))
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.length == 0 {
            bail!("--length must be at least 1");
        }
        if self.output_len() > MAX_VALUE {
            bail!(
                "--length {} gives a value larger than the 500 KiB a secret may hold",
                self.length
            );
        }
        Ok(())
    }

    /// The label value, `CHARSET:LENGTH`.
    pub(crate) fn label(&self) -> String {
        format!("{}:{}", charset_name(self.charset), self.length)
    }

    /// Parses a [`GENERATE_LABEL`] value.
    pub(crate) fn parse_label(s: &str) -> Option<GenSpec> {
        let (c, n) = s.split_once(':')?;
        let charset = match c {
            "base64" => Charset::Base64,
            "hex" => Charset::Hex,
            "alnum" => Charset::Alnum,
            "ascii" => Charset::Ascii,
            _ => return None,
        };
        let spec = GenSpec {
            charset,
            length: n.parse().ok()?,
        };
        spec.validate().ok()?;
        Some(spec)
    }

    /// The length of a generated value in bytes.
    fn output_len(&self) -> usize {
        match self.charset {
            Charset::Base64 => self.length.div_ceil(3).saturating_mul(4),
            Charset::Hex => self.length.saturating_mul(2),
            Charset::Alnum | Charset::Ascii => self.length,
        }
    }

    /// Bits of entropy of a value.
    pub(crate) fn entropy_bits(&self) -> f64 {
        let per = match self.charset {
            Charset::Base64 | Charset::Hex => 8.0,
            Charset::Alnum => 62f64.log2(),
            Charset::Ascii => 94f64.log2(),
        };
        per * self.length as f64
    }

    /// A new value. Every buffer that held random bytes is zeroized.
    pub(crate) fn generate(&self) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        let out = match self.charset {
            Charset::Base64 => {
                let raw = random(self.length)?;
                let mut s = Zeroizing::new(String::with_capacity(self.output_len()));
                base64::engine::general_purpose::STANDARD.encode_string(&*raw, &mut s);
                Zeroizing::new(std::mem::take(&mut *s).into_bytes())
            }
            Charset::Hex => {
                let raw = random(self.length)?;
                let mut v = Zeroizing::new(Vec::with_capacity(self.output_len()));
                for b in raw.iter() {
                    v.push(HEX[usize::from(b >> 4)]);
                    v.push(HEX[usize::from(b & 15)]);
                }
                v
            }
            Charset::Alnum => pick(ALNUM, self.length)?,
            Charset::Ascii => pick(&ASCII, self.length)?,
        };
        debug_assert_eq!(out.len(), self.output_len());
        Ok(out)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Printable ASCII without the space: `!` to `~`.
const ASCII: [u8; 94] = {
    let mut a = [0u8; 94];
    let mut i = 0;
    while i < 94 {
        a[i] = b'!' + i as u8;
        i += 1;
    }
    a
};

fn random(n: usize) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(vec![0u8; n]);
    getrandom::fill(&mut buf)
        .map_err(|e| anyhow::anyhow!("the operating system's random generator failed: {e}"))?;
    Ok(buf)
}

/// `n` characters drawn uniformly from `set` (rejection sampling: no modulo bias).
fn pick(set: &[u8], n: usize) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let limit = 256 - 256 % set.len();
    let mut out = Zeroizing::new(Vec::with_capacity(n));
    while out.len() < n {
        let raw = random((n - out.len()) * 2 + 16)?;
        for &b in raw.iter() {
            if usize::from(b) < limit && out.len() < n {
                out.push(set[usize::from(b) % set.len()]);
            }
        }
    }
    Ok(out)
}

/// Where a generated value may go besides the store.
pub(crate) struct Reveal {
    show: bool,
    file: Option<(PathBuf, std::fs::File)>,
}

impl Reveal {
    /// Opens `--output-file` (a new file, mode 0600) before anything is created, so that a
    /// bad path fails early and no value is generated that nobody can know.
    pub(crate) fn open(a: &GenerateArgs) -> anyhow::Result<Reveal> {
        let file = match &a.output_file {
            None => None,
            Some(p) => Some((p.clone(), create_private(p)?)),
        };
        Ok(Reveal { show: a.show, file })
    }

    /// Nothing to reveal.
    pub(crate) fn none() -> Reveal {
        Reveal {
            show: false,
            file: None,
        }
    }

    pub(crate) fn is_none(&self) -> bool {
        !self.show && self.file.is_none()
    }

    /// Writes the value where asked (the file without a newline, stdout with one).
    pub(crate) fn write(&mut self, value: &[u8]) -> anyhow::Result<()> {
        if let Some((path, f)) = &mut self.file {
            f.write_all(value)
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if self.show {
            let mut out = std::io::stdout().lock();
            out.write_all(value)?;
            out.write_all(b"\n")?;
            out.flush()?;
        }
        Ok(())
    }

    /// Removes the output file (after a failure, before the value was written).
    pub(crate) fn abandon(&mut self) {
        if let Some((path, _)) = self.file.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {} (--output-file never overwrites a file)",
                path.display()
            )
        })
}

/// A warning when a generated value is weaker than 128 bits.
pub(crate) fn warn_if_weak(spec: &GenSpec) {
    let bits = spec.entropy_bits();
    if bits < 128.0 {
        eprintln!(
            "warning: --length {} --charset {} gives only {bits:.0} bits of entropy (128 or more is recommended)",
            spec.length,
            charset_name(spec.charset)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(charset: Charset, length: usize) -> GenSpec {
        GenSpec { charset, length }
    }

    #[test]
    fn shapes() {
        let v = spec(Charset::Base64, 32).generate().unwrap();
        assert_eq!(v.len(), 44);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&*v)
                .unwrap()
                .len(),
            32
        );
        let v = spec(Charset::Hex, 16).generate().unwrap();
        assert_eq!(v.len(), 32);
        assert!(v.iter().all(|b| HEX.contains(b)));
        let v = spec(Charset::Alnum, 50).generate().unwrap();
        assert_eq!(v.len(), 50);
        assert!(v.iter().all(u8::is_ascii_alphanumeric));
        let v = spec(Charset::Ascii, 200).generate().unwrap();
        assert_eq!(v.len(), 200);
        assert!(v.iter().all(|b| (b'!'..=b'~').contains(b)));
        assert_ne!(
            *spec(Charset::Alnum, 32).generate().unwrap(),
            *spec(Charset::Alnum, 32).generate().unwrap()
        );
    }

    #[test]
    fn uniform_enough() {
        // 62 symbols, 62 000 draws: every symbol appears (a modulo bias or a stuck generator
        // would show as missing or dominant symbols).
        let v = spec(Charset::Alnum, 62_000).generate().unwrap();
        let mut counts = [0usize; 256];
        for b in v.iter() {
            counts[usize::from(*b)] += 1;
        }
        for c in ALNUM {
            let n = counts[usize::from(*c)];
            assert!(
                (700..1300).contains(&n),
                "{} appeared {n} times",
                *c as char
            );
        }
    }

    #[test]
    fn labels_round_trip() {
        for s in [spec(Charset::Base64, 32), spec(Charset::Ascii, 7)] {
            assert_eq!(GenSpec::parse_label(&s.label()), Some(s));
        }
        assert_eq!(spec(Charset::Hex, 24).label(), "hex:24");
        assert_eq!(GenSpec::parse_label("hex:0"), None);
        assert_eq!(GenSpec::parse_label("b64:3"), None);
        assert_eq!(GenSpec::parse_label("hex:999999999"), None);
        assert!(spec(Charset::Hex, 16).entropy_bits() >= 128.0);
        assert!(spec(Charset::Alnum, 16).entropy_bits() < 128.0);
    }
}
