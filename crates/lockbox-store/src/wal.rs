//! The Raft log as append-only segment files: one `pwrite` and one `fdatasync` per append.
//!
//! The log lived in redb's `log` table before. A redb commit writes about seven pages (the
//! B-tree path, the allocator's state, the header) and costs ~270 µs here, against ~130 µs
//! for one record written into a preallocated file and synced; on one connection that was
//! most of a secret create. redb keeps everything else (vote, committed, purged, snapshots).
//!
//! Layout: `DIR/<generation>-<first index>.wal`, each file preallocated to
//! [`SEGMENT_BYTES`] (so appending changes no file size) and holding frames back to back:
//!
//! ```text
//! len: u32 LE | index: u64 LE | chain: [u8; 8] | payload: [u8; len]
//! ```
//!
//! The top bit of `len` marks the last frame of each write.
//!
//! `payload` is the entry exactly as the store seals it (`log:<index>` associated data), so
//! no plaintext reaches these files. `chain` is the first 8 bytes of SHA-256 over the previous
//! frame's chain (for a segment's first frame, a seed made of the generation and the file's
//! first index), `len`, `index` and `payload`. A segment ends at the first frame that does not
//! verify: zeros (never written), or a frame torn by a crash. Because every frame is bound to
//! its predecessor, bytes left beyond the end by a torn write or a truncation can never be
//! read back as entries once a different frame is written before them.
//!
//! A crash can only tear the last write: the next one starts after the previous one's
//! fdatasync. So a frame that does not verify but is followed, through the chain, by a frame
//! of a *later* write was durable once: that is damage, and opening fails naming the entry,
//! instead of silently dropping acknowledged entries. (What cannot be told apart from a torn
//! last write, damage to the last write itself, ends the log there.)
//!
//! The generation changes when the whole log is rewritten (moving it out of redb, re-sealing
//! with a new key): the new files are written and synced, then the store's redb metadata
//! names the new generation in one commit, then the old files are deleted. Opening keeps only
//! the generation redb names.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use lockbox_crypto::Keyring;
use sha2::{Digest, Sha256};

/// Preallocated size of a segment; a segment is closed once it holds this much.
pub(crate) const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// Bytes before a frame's payload.
const HEADER: usize = 4 + 8 + 8;

/// The top bit of `len` marks the last frame of one write (one append, one fdatasync).
const END_OF_WRITE: u32 = 0x8000_0000;

/// Where one entry's frame is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    /// The first index of the segment holding it.
    segment: u64,
    /// Offset of the frame's header in that segment.
    offset: u64,
    /// Payload length.
    len: u32,
    /// The chain value before this frame (what a truncation here restores).
    prev: [u8; 8],
    /// The data key that sealed it.
    key_id: u32,
}

struct Segment {
    first: u64,
    file: File,
    /// Where the next frame goes.
    end: u64,
    /// The chain value of the last frame (the seed if none).
    tip: [u8; 8],
    /// Index of the last entry written to it.
    last: Option<u64>,
}

/// The open log of one store.
pub(crate) struct Wal {
    dir: PathBuf,
    generation: u64,
    segments: Vec<Segment>,
    /// Index of `entries[0]`.
    base: u64,
    /// Every index from `base` on; `None` where the log has a gap (openraft's storage contract
    /// allows appends that skip indexes; each contiguous run then has its own segment).
    entries: VecDeque<Option<Loc>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("generation", &self.generation)
            .field("segments", &self.segments.len())
            .field("first", &self.first())
            .field("last", &self.last())
            .finish()
    }
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("log {what}: {e}")
}

fn seed(generation: u64, first: u64) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(b"lockbox-wal");
    h.update(generation.to_le_bytes());
    h.update(first.to_le_bytes());
    truncate8(&h.finalize())
}

fn truncate8(d: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

fn chain(prev: &[u8; 8], index: u64, payload: &[u8]) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update((payload.len() as u32).to_le_bytes());
    h.update(index.to_le_bytes());
    h.update(payload);
    truncate8(&h.finalize())
}

fn file_name(generation: u64, first: u64) -> String {
    format!("{generation:08}-{first:020}.wal")
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (g, f) = stem.split_once('-')?;
    Some((g.parse().ok()?, f.parse().ok()?))
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err("directory sync", e))
}

/// Creates a segment file (preallocated) whose first entry will be `first`.
fn create_segment(dir: &Path, generation: u64, first: u64) -> Result<Segment, String> {
    let path = dir.join(file_name(generation, first));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| err("segment create", e))?;
    // Preallocated so an append changes no file size. Without it (a file system without
    // fallocate, or too little space left for a whole segment: the daemon refuses writes
    // that would not fit before they reach the log) the file grows as frames arrive.
    if let Err(e) =
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, SEGMENT_BYTES)
    {
        tracing::debug!(error = %e, "log segment not preallocated");
    }
    file.sync_all().map_err(|e| err("segment sync", e))?;
    sync_dir(dir)?;
    Ok(Segment {
        first,
        file,
        end: 0,
        tip: seed(generation, first),
        last: None,
    })
}

/// Encodes frames for `records` (index, sealed payload), chained from `tip`, into `buf`.
/// Returns the new tip and each record's location relative to `start`.
fn encode_frames(
    records: &[(u64, Vec<u8>)],
    segment: u64,
    start: u64,
    mut tip: [u8; 8],
    buf: &mut Vec<u8>,
) -> Result<([u8; 8], Vec<Loc>), String> {
    let mut locs = Vec::with_capacity(records.len());
    for (n, (index, payload)) in records.iter().enumerate() {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l > 0 && l < END_OF_WRITE)
            .ok_or_else(|| err("append", format!("entry {index} has a bad size")))?;
        let flag = if n + 1 == records.len() {
            END_OF_WRITE
        } else {
            0
        };
        let key_id = Keyring::key_id_of(payload).map_err(|e| err("append", e))?;
        let offset = start + buf.len() as u64;
        let next = chain(&tip, *index, payload);
        buf.extend_from_slice(&(len | flag).to_le_bytes());
        buf.extend_from_slice(&index.to_le_bytes());
        buf.extend_from_slice(&next);
        buf.extend_from_slice(payload);
        locs.push(Loc {
            segment,
            offset,
            len,
            prev: tip,
            key_id,
        });
        tip = next;
    }
    Ok((tip, locs))
}

/// Writes a whole log of generation `generation` into `dir` (for a rewrite) and syncs it. Any
/// files of that generation already there are replaced.
pub(crate) fn write_generation(
    dir: &Path,
    generation: u64,
    records: &[(u64, Vec<u8>)],
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| err("directory create", e))?;
    remove_generation(dir, generation)?;
    let Some(&(first, _)) = records.first() else {
        return sync_dir(dir);
    };
    for pair in records.windows(2) {
        if pair[1].0 != pair[0].0 + 1 {
            return Err(err("rewrite", "entries are not contiguous"));
        }
    }
    let segment = create_segment(dir, generation, first)?;
    let mut buf = Vec::new();
    encode_frames(records, first, 0, segment.tip, &mut buf)?;
    segment
        .file
        .write_all_at(&buf, 0)
        .map_err(|e| err("write", e))?;
    segment.file.sync_all().map_err(|e| err("sync", e))?;
    sync_dir(dir)
}

/// Deletes every file of `generation` in `dir`.
pub(crate) fn remove_generation(dir: &Path, generation: u64) -> Result<(), String> {
    for (g, _, path) in list(dir)? {
        if g == generation {
            std::fs::remove_file(&path).map_err(|e| err("segment remove", e))?;
        }
    }
    Ok(())
}

/// The segment files in `dir`: (generation, first index, path).
fn list(dir: &Path) -> Result<Vec<(u64, u64, PathBuf)>, String> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(err("directory read", e)),
    };
    for item in rd {
        let item = item.map_err(|e| err("directory read", e))?;
        if let Some((g, f)) = item.file_name().to_str().and_then(parse_name) {
            out.push((g, f, item.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// A segment's frames as read back: the last valid frame ends the segment.
struct Scanned {
    locs: Vec<(u64, Loc)>,
    end: u64,
    tip: [u8; 8],
}

/// One frame's header.
struct Header {
    len: u32,
    end_of_write: bool,
    index: u64,
    chain: [u8; 8],
}

fn parse_header(b: &[u8; HEADER]) -> Header {
    let word = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut index = [0u8; 8];
    index.copy_from_slice(&b[4..12]);
    let mut chain = [0u8; 8];
    chain.copy_from_slice(&b[12..20]);
    Header {
        len: word & !END_OF_WRITE,
        end_of_write: word & END_OF_WRITE != 0,
        index: u64::from_le_bytes(index),
        chain,
    }
}

/// Reads the frame at `offset`: its header and payload, if the file holds them whole.
fn read_frame(file: &File, size: u64, offset: u64) -> Option<(Header, Vec<u8>)> {
    let mut b = [0u8; HEADER];
    if offset + HEADER as u64 > size || file.read_exact_at(&mut b, offset).is_err() {
        return None;
    }
    let h = parse_header(&b);
    if h.len == 0 || offset + HEADER as u64 + u64::from(h.len) > size {
        return None;
    }
    let mut payload = vec![0u8; h.len as usize];
    file.read_exact_at(&mut payload, offset + HEADER as u64)
        .ok()?;
    Some((h, payload))
}

/// Whether the frame at `offset`, which does not verify, was durable once: some frame of a
/// later write follows it through the chain (see the module notes).
fn damaged_not_torn(file: &File, size: u64, offset: u64, bad: &Header, expected: u64) -> bool {
    let mut prev = bad.chain;
    let mut index = expected;
    let mut past_write = bad.end_of_write;
    let mut at = offset + HEADER as u64 + u64::from(bad.len);
    while let Some((h, payload)) = read_frame(file, size, at) {
        if h.index != index + 1 || chain(&prev, h.index, &payload) != h.chain {
            return false;
        }
        if past_write {
            return true;
        }
        past_write = h.end_of_write;
        prev = h.chain;
        index = h.index;
        at += HEADER as u64 + u64::from(h.len);
    }
    false
}

fn scan(file: &File, generation: u64, first: u64) -> Result<Scanned, String> {
    let size = file.metadata().map_err(|e| err("read", e))?.len();
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut offset = 0u64;
    let mut tip = seed(generation, first);
    let mut locs = Vec::new();
    let mut expected = first;
    let mut raw = [0u8; HEADER];
    let mut payload = Vec::new();
    loop {
        if offset + HEADER as u64 > size || reader.read_exact(&mut raw).is_err() {
            break;
        }
        let h = parse_header(&raw);
        if h.len == 0 || offset + (HEADER as u64) + u64::from(h.len) > size {
            break;
        }
        payload.resize(h.len as usize, 0);
        if reader.read_exact(&mut payload).is_err() {
            break;
        }
        if chain(&tip, h.index, &payload) != h.chain || h.index != expected {
            if damaged_not_torn(file, size, offset, &h, expected) {
                return Err(err(
                    "read",
                    format!(
                        "segment {first}: the frame of entry {expected} is damaged (changed \
                         after it was written); later entries follow it"
                    ),
                ));
            }
            // Never written, or torn by a crash: the segment ends here.
            break;
        }
        let key_id = Keyring::key_id_of(&payload).map_err(|e| err("read", e))?;
        locs.push((
            h.index,
            Loc {
                segment: first,
                offset,
                len: h.len,
                prev: tip,
                key_id,
            },
        ));
        tip = h.chain;
        offset += HEADER as u64 + u64::from(h.len);
        expected += 1;
    }
    Ok(Scanned {
        locs,
        end: offset,
        tip,
    })
}

impl Wal {
    /// Opens the log of `generation` in `dir` (created if missing). Files of other generations
    /// are deleted (an interrupted or finished rewrite), and so are segments holding only
    /// entries up to `purged`.
    pub(crate) fn open(dir: &Path, generation: u64, purged: Option<u64>) -> Result<Wal, String> {
        std::fs::create_dir_all(dir).map_err(|e| err("directory create", e))?;
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            generation,
            segments: Vec::new(),
            base: 0,
            entries: VecDeque::new(),
        };
        let mut removed = false;
        for (g, first, path) in list(dir)? {
            if g != generation {
                std::fs::remove_file(&path).map_err(|e| err("segment remove", e))?;
                removed = true;
                continue;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| err("segment open", e))?;
            let scanned = scan(&file, generation, first)?;
            let last = scanned.locs.last().map(|(i, _)| *i);
            if last.is_none_or(|l| purged.is_some_and(|p| l <= p)) {
                // Empty (created just before a crash) or wholly purged.
                drop(file);
                std::fs::remove_file(&path).map_err(|e| err("segment remove", e))?;
                removed = true;
                continue;
            }
            for (index, loc) in scanned.locs {
                if purged.is_some_and(|p| index <= p) {
                    continue;
                }
                wal.put(index, loc)?;
            }
            wal.segments.push(Segment {
                first,
                file,
                end: scanned.end,
                tip: scanned.tip,
                last,
            });
        }
        if removed {
            sync_dir(dir)?;
        }
        Ok(wal)
    }

    /// The generation open.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The directory of the segment files.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Index of the first entry held.
    pub(crate) fn first(&self) -> Option<u64> {
        (!self.entries.is_empty()).then_some(self.base)
    }

    /// Index of the last entry held.
    pub(crate) fn last(&self) -> Option<u64> {
        (!self.entries.is_empty()).then(|| self.base + self.entries.len() as u64 - 1)
    }

    /// Records where entry `index` is; it must come after the last one held.
    fn put(&mut self, index: u64, loc: Loc) -> Result<(), String> {
        if self.entries.is_empty() {
            self.base = index;
        }
        let end = self.base + self.entries.len() as u64;
        if index < end {
            return Err(err(
                "read",
                format!("entry {index} appears again after entry {}", end - 1),
            ));
        }
        for _ in end..index {
            self.entries.push_back(None);
        }
        self.entries.push_back(Some(loc));
        Ok(())
    }

    /// The ids of the data keys sealing the entries held.
    pub(crate) fn key_ids(&self) -> BTreeSet<u32> {
        self.entries.iter().flatten().map(|l| l.key_id).collect()
    }

    /// Appends `records` (index, sealed entry), in increasing order after the last entry held,
    /// and makes them durable. Raft appends contiguous entries: one write and one fdatasync.
    pub(crate) fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), String> {
        let mut rest = records;
        while let Some(&(first, _)) = rest.first() {
            if let Some(last) = self.last()
                && first <= last
            {
                return Err(err(
                    "append",
                    format!("entry {first} does not follow entry {last}"),
                ));
            }
            let run = rest
                .iter()
                .enumerate()
                .take_while(|(i, (index, _))| *index == first + *i as u64)
                .count();
            self.append_run(&rest[..run])?;
            rest = &rest[run..];
        }
        Ok(())
    }

    /// [`Wal::append`] for contiguous records.
    fn append_run(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), String> {
        let Some(&(first, _)) = records.first() else {
            return Ok(());
        };
        let roll = match self.segments.last() {
            None => true,
            Some(s) => {
                s.end >= SEGMENT_BYTES || s.last.map_or(s.first != first, |l| l + 1 != first)
            }
        };
        if roll {
            // A segment left empty by a truncation is not kept behind the new one.
            if let Some(s) = self.segments.pop_if(|s| s.last.is_none()) {
                self.remove_segment(s)?;
            }
            let segment = create_segment(&self.dir, self.generation, first)?;
            self.segments.push(segment);
        }
        let Some(segment) = self.segments.last_mut() else {
            return Err(err("append", "no segment"));
        };
        let mut buf =
            Vec::with_capacity(records.iter().map(|(_, p)| HEADER + p.len()).sum::<usize>());
        let (tip, locs) =
            encode_frames(records, segment.first, segment.end, segment.tip, &mut buf)?;
        segment
            .file
            .write_all_at(&buf, segment.end)
            .map_err(|e| err("write", e))?;
        segment.file.sync_data().map_err(|e| err("sync", e))?;
        segment.end += buf.len() as u64;
        segment.tip = tip;
        segment.last = records.last().map(|(i, _)| *i);
        for ((index, _), loc) in records.iter().zip(locs) {
            self.put(*index, loc)?;
        }
        Ok(())
    }

    /// Closes and deletes a segment taken out of the list (the caller syncs the directory).
    fn remove_segment(&self, s: Segment) -> Result<(), String> {
        drop(s.file);
        std::fs::remove_file(self.dir.join(file_name(self.generation, s.first)))
            .map_err(|e| err("segment remove", e))
    }

    fn loc(&self, index: u64) -> Option<Loc> {
        let at = index.checked_sub(self.base)?;
        self.entries
            .get(usize::try_from(at).ok()?)
            .copied()
            .flatten()
    }

    fn segment(&self, first: u64) -> Result<&Segment, String> {
        self.segments
            .iter()
            .find(|s| s.first == first)
            .ok_or_else(|| err("read", format!("segment {first} is missing")))
    }

    /// The sealed entry at `index`, if held.
    pub(crate) fn read(&self, index: u64) -> Result<Option<Vec<u8>>, String> {
        let Some(loc) = self.loc(index) else {
            return Ok(None);
        };
        let segment = self.segment(loc.segment)?;
        let mut payload = vec![0u8; loc.len as usize];
        segment
            .file
            .read_exact_at(&mut payload, loc.offset + HEADER as u64)
            .map_err(|e| err("read", e))?;
        Ok(Some(payload))
    }

    /// The sealed entries from `start` to `end` (inclusive; to the last if `None`) that are
    /// held.
    pub(crate) fn range(
        &self,
        start: u64,
        end: Option<u64>,
    ) -> Result<Vec<(u64, Vec<u8>)>, String> {
        let (Some(first), Some(last)) = (self.first(), self.last()) else {
            return Ok(Vec::new());
        };
        let from = start.max(first);
        let to = end.map_or(last, |e| e.min(last));
        let mut out = Vec::new();
        for index in from..=to {
            if let Some(p) = self.read(index)? {
                out.push((index, p));
            }
        }
        Ok(out)
    }

    /// Removes the entries from `index` on, durably.
    pub(crate) fn truncate(&mut self, index: u64) -> Result<(), String> {
        let Some(last) = self.last() else {
            return Ok(());
        };
        // The first entry held at or after `index` (past a gap, maybe).
        let Some((index, loc)) =
            (index.max(self.base)..=last).find_map(|i| self.loc(i).map(|l| (i, l)))
        else {
            let keep = index.saturating_sub(self.base);
            self.entries
                .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
            return Ok(());
        };
        let mut removed = false;
        while self.segments.last().is_some_and(|s| s.first > loc.segment) {
            if let Some(s) = self.segments.pop() {
                self.remove_segment(s)?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        let keep = index - self.base;
        self.entries
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        while self.entries.back().is_some_and(Option::is_none) {
            self.entries.pop_back();
        }
        let Some(segment) = self.segments.last_mut() else {
            return Ok(());
        };
        // Zeros over the removed frames: the chain alone already keeps them from being read
        // back, this keeps the file plain.
        let zeros = vec![0u8; 64 * 1024];
        let mut at = loc.offset;
        while at < segment.end {
            let n = (segment.end - at).min(zeros.len() as u64) as usize;
            segment
                .file
                .write_all_at(&zeros[..n], at)
                .map_err(|e| err("truncate", e))?;
            at += n as u64;
        }
        segment.file.sync_data().map_err(|e| err("sync", e))?;
        segment.end = loc.offset;
        segment.tip = loc.prev;
        segment.last = index.checked_sub(1).filter(|&l| l >= segment.first);
        Ok(())
    }

    /// Forgets the entries up to `index` and deletes the segments that hold nothing else. The
    /// caller records the purge durably first.
    pub(crate) fn purge(&mut self, index: u64) -> Result<(), String> {
        while self.first().is_some_and(|f| f <= index)
            || self.entries.front().is_some_and(Option::is_none)
        {
            self.entries.pop_front();
            self.base += 1;
        }
        let mut removed = false;
        while self
            .segments
            .first()
            .is_some_and(|s| s.last.is_none_or(|l| l <= index))
        {
            let s = self.segments.remove(0);
            self.remove_segment(s)?;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        if self.entries.is_empty() {
            self.base = index + 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;

    fn keyring() -> Keyring {
        Keyring::generate()
    }

    /// An empty log of generation 1 in a new directory, and a keyring to seal entries with.
    fn fresh() -> (tempfile::TempDir, Keyring, Wal) {
        let dir = tempfile::tempdir().unwrap();
        let w = Wal::open(dir.path(), 1, None).unwrap();
        (dir, keyring(), w)
    }

    fn sealed(k: &Keyring, index: u64, size: usize) -> Vec<u8> {
        k.seal(format!("log:{index}").as_bytes(), &vec![index as u8; size])
    }

    fn records(k: &Keyring, from: u64, to: u64) -> Vec<(u64, Vec<u8>)> {
        (from..=to)
            .map(|i| (i, sealed(k, i, 40 + i as usize % 7)))
            .collect()
    }

    fn indexes(w: &Wal) -> Vec<u64> {
        w.range(0, None)
            .unwrap()
            .into_iter()
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn appended_entries_come_back_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let k = keyring();
        let recs = records(&k, 1, 10);
        let mut w = Wal::open(dir.path(), 1, None).unwrap();
        w.append(&recs[..3]).unwrap();
        w.append(&recs[3..]).unwrap();
        assert_eq!((w.first(), w.last()), (Some(1), Some(10)));
        drop(w);
        let w = Wal::open(dir.path(), 1, None).unwrap();
        assert_eq!(w.range(0, None).unwrap(), recs);
        assert_eq!(w.range(4, Some(6)).unwrap(), recs[3..6].to_vec());
        assert_eq!(w.read(11).unwrap(), None);
    }

    #[test]
    fn appends_go_forward_and_a_gap_starts_a_segment_of_its_own() {
        let (dir, k, mut w) = fresh();
        w.append(&records(&k, 5, 6)).unwrap();
        assert!(w.append(&records(&k, 6, 6)).is_err());
        assert!(w.append(&records(&k, 2, 3)).is_err());
        // openraft's storage contract allows gaps; Raft itself never makes one.
        w.append(&records(&k, 8, 9)).unwrap();
        assert_eq!(indexes(&w), vec![5, 6, 8, 9]);
        assert_eq!(list(dir.path()).unwrap().len(), 2);
        drop(w);
        let mut w = Wal::open(dir.path(), 1, None).unwrap();
        assert_eq!(indexes(&w), vec![5, 6, 8, 9]);
        assert_eq!(w.read(7).unwrap(), None);
        // Truncating inside the gap removes the run after it.
        w.truncate(7).unwrap();
        assert_eq!(indexes(&w), vec![5, 6]);
        w.append(&records(&k, 7, 7)).unwrap();
        drop(w);
        let w = Wal::open(dir.path(), 1, None).unwrap();
        assert_eq!(indexes(&w), vec![5, 6, 7]);
    }

    #[test]
    fn a_truncated_tail_stays_gone_even_where_new_frames_are_shorter() {
        let (dir, k, mut w) = fresh();
        w.append(&records(&k, 1, 6)).unwrap();
        w.truncate(3).unwrap();
        assert_eq!(indexes(&w), vec![1, 2]);
        // A different, shorter entry 3: nothing of the old 4..6 may come back.
        let short = vec![(3, sealed(&k, 3, 1))];
        w.append(&short).unwrap();
        drop(w);
        let w = Wal::open(dir.path(), 1, None).unwrap();
        assert_eq!(indexes(&w), vec![1, 2, 3]);
        assert_eq!(w.read(3).unwrap(), Some(short[0].1.clone()));
    }

    #[test]
    fn a_torn_last_frame_ends_the_log_and_stale_frames_behind_it_never_return() {
        let (dir, k, mut w) = fresh();
        let recs = records(&k, 1, 4);
        w.append(&recs).unwrap();
        let loc3 = w.loc(3).unwrap();
        drop(w);
        // Tear entry 3 (one byte of its payload), keeping entry 4 intact behind it.
        let path = dir.path().join(file_name(1, 1));
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xff], loc3.offset + HEADER as u64 + 2)
            .unwrap();
        drop(f);
        let mut w = Wal::open(dir.path(), 1, None).unwrap();
        assert_eq!(indexes(&w), vec![1, 2]);
        // The same sizes again: entry 4's old frame sits exactly where the new 4 goes next,
        // but it chains from the old 3, so after a new 3 it is not an entry.
        w.append(&[(3, sealed(&k, 3, recs[2].1.len() - 44))])
            .unwrap();
        drop(w);
        let w = Wal::open(dir.path(), 1, None).unwrap();
        assert_eq!(indexes(&w), vec![1, 2, 3]);
    }

    #[test]
    fn purging_deletes_whole_segments_only_and_reopen_skips_purged_entries() {
        let (dir, k, mut w) = fresh();
        // Big entries, so a few fill a segment.
        let big = |i: u64| (i, sealed(&k, i, (SEGMENT_BYTES / 3) as usize));
        for i in 1..=7 {
            w.append(&[big(i)]).unwrap();
        }
        let files = || list(dir.path()).unwrap().len();
        assert!(files() >= 2, "{} segments", files());
        let before = files();
        w.purge(2).unwrap();
        assert_eq!(w.first(), Some(3));
        assert_eq!(files(), before, "segment 1 still holds entry 3");
        w.purge(5).unwrap();
        assert!(files() < before);
        drop(w);
        let w = Wal::open(dir.path(), 1, Some(5)).unwrap();
        assert_eq!(indexes(&w), vec![6, 7]);
    }

    #[test]
    fn purging_past_the_end_lets_the_log_restart_at_any_index() {
        let (dir, k, mut w) = fresh();
        w.append(&records(&k, 1, 3)).unwrap();
        w.purge(100).unwrap();
        assert_eq!(w.last(), None);
        assert!(list(dir.path()).unwrap().is_empty());
        w.append(&records(&k, 101, 102)).unwrap();
        drop(w);
        let w = Wal::open(dir.path(), 1, Some(100)).unwrap();
        assert_eq!(indexes(&w), vec![101, 102]);
    }

    #[test]
    fn only_the_named_generation_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let k = keyring();
        let old = records(&k, 1, 3);
        let new = records(&k, 1, 5);
        write_generation(dir.path(), 1, &old).unwrap();
        write_generation(dir.path(), 2, &new).unwrap();
        let w = Wal::open(dir.path(), 2, None).unwrap();
        assert_eq!(w.range(0, None).unwrap(), new);
        assert!(list(dir.path()).unwrap().iter().all(|(g, _, _)| *g == 2));
        // Reopening generation 1 now finds nothing of it.
        drop(w);
        write_generation(dir.path(), 3, &[]).unwrap();
        let w = Wal::open(dir.path(), 3, None).unwrap();
        assert_eq!(w.last(), None);
    }

    fn flip(dir: &Path, at: u64) {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(file_name(1, 1)))
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x10], at).unwrap();
    }

    #[test]
    fn damage_before_a_later_write_fails_the_open_and_names_the_entry() {
        let (dir, k, mut w) = fresh();
        // Three writes: 1..=2, 3..=4, 5.
        w.append(&records(&k, 1, 2)).unwrap();
        w.append(&records(&k, 3, 4)).unwrap();
        w.append(&records(&k, 5, 5)).unwrap();
        let (l2, l3, l5) = (w.loc(2).unwrap(), w.loc(3).unwrap(), w.loc(5).unwrap());
        drop(w);
        // Entry 3's payload: entry 5 (a later write) follows, so 3 was durable.
        flip(dir.path(), l3.offset + HEADER as u64 + 5);
        let e = Wal::open(dir.path(), 1, None).unwrap_err();
        assert!(e.contains("entry 3 is damaged"), "{e}");
        flip(dir.path(), l3.offset + HEADER as u64 + 5);
        // Entry 2's index field (it ends the first write).
        flip(dir.path(), l2.offset + 4);
        let e = Wal::open(dir.path(), 1, None).unwrap_err();
        assert!(e.contains("entry 2 is damaged"), "{e}");
        flip(dir.path(), l2.offset + 4);
        // Entry 5 is the last write: as if a crash tore it.
        flip(dir.path(), l5.offset + HEADER as u64 + 1);
        let w = Wal::open(dir.path(), 1, None).unwrap();
        assert_eq!(indexes(&w), vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_crash_inside_one_write_is_a_torn_tail_whatever_part_of_it_persisted() {
        let (dir, k, mut w) = fresh();
        w.append(&records(&k, 1, 1)).unwrap();
        // One write of four frames; the second of them never reached the disk whole.
        w.append(&records(&k, 2, 5)).unwrap();
        let l3 = w.loc(3).unwrap();
        drop(w);
        flip(dir.path(), l3.offset + HEADER as u64 + 3);
        let w = Wal::open(dir.path(), 1, None).unwrap();
        assert_eq!(indexes(&w), vec![1, 2]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(u8),
        Truncate(u8),
        Purge(u8),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u8..6).prop_map(Op::Append),
            1 => any::<u8>().prop_map(Op::Truncate),
            1 => any::<u8>().prop_map(Op::Purge),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any sequence of appends, truncations, purges and reopens leaves the log equal to a
        /// plain in-memory model of it.
        #[test]
        fn the_log_matches_a_model(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let k = Arc::new(keyring());
            let mut w = Wal::open(dir.path(), 1, None).unwrap();
            let mut model: Vec<(u64, Vec<u8>)> = Vec::new();
            let mut purged: Option<u64> = None;
            let mut next = 1u64;
            for op in ops {
                match op {
                    Op::Append(n) => {
                        let recs: Vec<_> = (next..next + u64::from(n))
                            .map(|i| (i, sealed(&k, i, 10 + (i as usize * 13) % 50)))
                            .collect();
                        w.append(&recs).unwrap();
                        model.extend(recs);
                        next += u64::from(n);
                    }
                    Op::Truncate(at) => {
                        if model.is_empty() { continue; }
                        let i = model[at as usize % model.len()].0;
                        // Raft never truncates what is purged.
                        w.truncate(i).unwrap();
                        model.retain(|(x, _)| *x < i);
                        next = i;
                    }
                    Op::Purge(at) => {
                        let hi = next + 3;
                        let p = (u64::from(at) % hi).max(purged.unwrap_or(0));
                        w.purge(p).unwrap();
                        purged = Some(p);
                        model.retain(|(x, _)| *x > p);
                        next = next.max(p + 1);
                    }
                    Op::Reopen => {
                        drop(w);
                        w = Wal::open(dir.path(), 1, purged).unwrap();
                    }
                }
                prop_assert_eq!(w.range(0, None).unwrap(), model.clone());
                prop_assert_eq!(w.last(), model.last().map(|(i, _)| *i));
            }
            drop(w);
            let w = Wal::open(dir.path(), 1, purged).unwrap();
            prop_assert_eq!(w.range(0, None).unwrap(), model);
        }
    }
}
