//! Reading records back: [`query`] and [`export`].

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use time::OffsetDateTime;

use crate::record::parse_line;
use crate::segment::{Segment, list_segments, read_anchor};
use crate::{AuditError, StoredRecord};

/// Which records [`query`] and [`export`] yield. Every condition set must
/// hold; the default matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Filter {
    /// Only records at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only records strictly before this time.
    pub until: Option<OffsetDateTime>,
    /// Only records with exactly this actor.
    pub actor: Option<String>,
    /// Only records with exactly this action or, if it ends with `*`, an
    /// action starting with what precedes the `*` (`secret.*`).
    pub action: Option<String>,
    /// Only records concerning an object whose ID or name is exactly this,
    /// or whose ID starts with this.
    pub object: Option<String>,
    /// Stop after this many records.
    pub limit: Option<usize>,
    /// Leave out records whose `details` map this key to this value (e.g. `phase` =
    /// `begin`).
    pub without_detail: Option<(String, String)>,
    /// Only records with this seq or a later one.
    pub from_seq: Option<u64>,
}

impl Filter {
    /// Whether `r` passes every condition (`limit` aside).
    pub fn matches(&self, r: &StoredRecord) -> bool {
        let rec = &r.record;
        self.from_seq.is_none_or(|s| r.seq >= s)
            && self
                .without_detail
                .as_ref()
                .is_none_or(|(k, v)| rec.details.get(k) != Some(v))
            && self.since.is_none_or(|t| rec.time >= t)
            && self.until.is_none_or(|t| rec.time < t)
            && self.actor.as_ref().is_none_or(|a| rec.actor == *a)
            && self
                .action
                .as_ref()
                .is_none_or(|a| match a.strip_suffix('*') {
                    Some(prefix) => rec.action.starts_with(prefix),
                    None => rec.action == *a,
                })
            && self.object.as_ref().is_none_or(|o| {
                rec.objects
                    .iter()
                    .any(|obj| obj.id.starts_with(o.as_str()) || obj.name == *o)
            })
    }
}

/// Streams the records of the trail in `dir` that match `filter`, in seq
/// order, one segment file at a time.
///
/// A line that cannot be read as a record is yielded as
/// [`AuditError::Malformed`] and reading goes on. Records are not verified:
/// use [`verify`](crate::verify) for that. A partial line at the very end
/// (a write in progress) is not yielded.
pub fn query(dir: &Path, filter: &Filter) -> Result<Query, AuditError> {
    Ok(Query {
        lines: Lines::new(dir, filter)?,
    })
}

/// Like [`query`], but yields the stored lines themselves, unchanged and with
/// their newline, so that the output is a valid trail fragment anyone can
/// re-verify (each line's `prev` links it to the line before).
pub fn export(dir: &Path, filter: &Filter) -> Result<Export, AuditError> {
    Ok(Export {
        lines: Lines::new(dir, filter)?,
    })
}

/// The iterator returned by [`query`].
#[derive(Debug)]
pub struct Query {
    lines: Lines,
}

impl Iterator for Query {
    type Item = Result<StoredRecord, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.lines.next_match()?.map(|(_, r)| r))
    }
}

/// The iterator returned by [`export`].
#[derive(Debug)]
pub struct Export {
    lines: Lines,
}

impl Iterator for Export {
    type Item = Result<String, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.lines.next_match()?.map(|(line, _)| line))
    }
}

#[derive(Debug)]
struct Lines {
    pending: VecDeque<Segment>,
    current: Option<Current>,
    filter: Filter,
    yielded: usize,
}

#[derive(Debug)]
struct Current {
    name: String,
    reader: BufReader<File>,
    line_no: u64,
    is_last: bool,
}

impl Lines {
    fn new(dir: &Path, filter: &Filter) -> Result<Self, AuditError> {
        let segments = list_segments(dir)?;
        // Skip segments retired by retention but not deleted yet, and those
        // wholly before `from_seq`.
        let mut start = filter.from_seq.unwrap_or(0);
        if let Ok(Some((anchor, _))) = read_anchor(dir) {
            start = start.max(anchor.seq);
        }
        let skip = segments
            .windows(2)
            .take_while(|w| w[1].first <= start)
            .count();
        Ok(Self {
            pending: segments.into_iter().skip(skip).collect(),
            current: None,
            filter: filter.clone(),
            yielded: 0,
        })
    }

    fn next_match(&mut self) -> Option<Result<(String, StoredRecord), AuditError>> {
        if self.filter.limit.is_some_and(|l| self.yielded >= l) {
            return None;
        }
        loop {
            let item = self.next_line()?;
            match item {
                Ok((line, rec)) if self.filter.matches(&rec) => {
                    self.yielded += 1;
                    return Some(Ok((line, rec)));
                }
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// The next stored line and its record, across segments.
    fn next_line(&mut self) -> Option<Result<(String, StoredRecord), AuditError>> {
        loop {
            let Some(cur) = self.current.as_mut() else {
                let seg = self.pending.pop_front()?;
                match File::open(&seg.path) {
                    Ok(f) => {
                        self.current = Some(Current {
                            name: seg.name(),
                            reader: BufReader::new(f),
                            line_no: 0,
                            is_last: self.pending.is_empty(),
                        });
                    }
                    // Deleted by retention since it was listed.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Some(Err(AuditError::io("open", &seg.path, e))),
                }
                continue;
            };
            let mut line = Vec::new();
            match cur.reader.read_until(b'\n', &mut line) {
                Ok(0) => {
                    self.current = None;
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    let err = AuditError::Malformed {
                        file: cur.name.clone(),
                        line: cur.line_no + 1,
                        reason: format!("read failed: {e}"),
                    };
                    self.current = None;
                    return Some(Err(err));
                }
            }
            cur.line_no += 1;
            let malformed = |reason: String| AuditError::Malformed {
                file: cur.name.clone(),
                line: cur.line_no,
                reason,
            };
            if line.last() != Some(&b'\n') {
                if cur.is_last {
                    // A write in progress, or a crash the next open repairs.
                    self.current = None;
                    continue;
                }
                return Some(Err(malformed(
                    "truncated line: no newline at the end".into(),
                )));
            }
            let rec = match parse_line(&line[..line.len() - 1]) {
                Ok(r) => r,
                Err(reason) => return Some(Err(malformed(reason))),
            };
            return Some(match String::from_utf8(line) {
                Ok(text) => Ok((text, rec)),
                Err(_) => Err(malformed("line is not UTF-8".into())),
            });
        }
    }
}
