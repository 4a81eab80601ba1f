//! openraft storage over redb: the Raft log and vote ([`LogStore`]) and the state machine with
//! its snapshots ([`StateMachine`]). Every value written is sealed with the node's keyring.

// openraft's trait methods return its `StorageError`, which is large; our helpers return the
// same type so errors flow through unchanged.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use lockbox_crypto::{Keyring, SEALED_OVERHEAD, SEALED_PREFIX};
use lockbox_types::Outcome;
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, LogState,
    RaftLogReader, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use zeroize::{Zeroize, Zeroizing};

use crate::proposal::Proposal;
use crate::state::State;
use crate::wal::{self, Wal};

openraft::declare_raft_types!(
    /// lockbox's Raft type configuration.
    pub(crate) TypeConfig:
        D = Proposal,
        R = Vec<Outcome>,
        NodeId = u64,
        Node = BasicNode,
        Entry = Entry<TypeConfig>,
        SnapshotData = SnapshotBuf,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type NodeId = u64;
type StoreResult<T> = Result<T, StorageError<NodeId>>;

/// Where the log lived before it moved to its own files ([`crate::wal`]); read once, to move
/// an older store's log out of it.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "purged";
/// The generation of the log files ([`crate::wal`]); absent while the log is still in `LOG`.
const KEY_WAL: &str = "wal";

/// The directory of the log files, inside the store's directory.
pub const WAL_DIR: &str = "raft-log";
pub(crate) const KEY_SNAPSHOT: &str = "snapshot";

/// How many recent entries are kept decoded in memory so `apply` need not read them back.
/// Apply follows the flush closely, so a few suffice.
const CACHE_ENTRIES: usize = 256;

/// How many commands the cached entries may carry in all (beyond [`CACHE_MIN_ENTRIES`]): an
/// entry may carry a batch of up to 64 commands with their secret values, so the cache is
/// bounded by commands too (256 full batches would be 16,384 secrets held twice).
const CACHE_COMMANDS: usize = 1024;

/// How far the committed index on disk may trail the one openraft reported, in entries (see
/// [`Committed`]): writing it with every append would add a redb commit per entry.
const COMMITTED_EVERY: u64 = 64;

/// Appends up to this size (approximately, in bytes of secret values) are written on the
/// calling task's thread; larger ones in the blocking pool.
const INLINE_WRITE_BYTES: usize = 256 * 1024;

/// Entries always kept, however many commands they carry: more than the proposer has in
/// flight, so apply still finds what was just flushed.
const CACHE_MIN_ENTRIES: usize = 8;

/// Snapshot bytes in memory; zeroized when dropped because they hold secret values.
#[derive(Debug, Default)]
pub struct SnapshotBuf(Cursor<Vec<u8>>);

impl SnapshotBuf {
    fn new(data: Vec<u8>) -> Self {
        SnapshotBuf(Cursor::new(data))
    }
    fn bytes(&self) -> &[u8] {
        self.0.get_ref()
    }
}

impl Drop for SnapshotBuf {
    fn drop(&mut self) {
        self.0.get_mut().zeroize();
    }
}

impl AsyncRead for SnapshotBuf {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}
impl AsyncWrite for SnapshotBuf {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
impl AsyncSeek for SnapshotBuf {
    fn start_seek(mut self: Pin<&mut Self>, position: std::io::SeekFrom) -> std::io::Result<()> {
        Pin::new(&mut self.0).start_seek(position)
    }
    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Pin::new(&mut self.0).poll_complete(cx)
    }
}

/// Shared handles to the database file and the keyring.
#[derive(Clone)]
pub(crate) struct Disk {
    pub(crate) db: Arc<Database>,
    pub(crate) keyring: Arc<RwLock<Keyring>>,
}

fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::error(e.to_string())).into()
}

fn log_aad(index: u64) -> Vec<u8> {
    format!("log:{index}").into_bytes()
}
fn meta_aad(key: &str) -> Vec<u8> {
    format!("meta:{key}").into_bytes()
}

/// Encodes `value` with postcard into a buffer of exactly its size, after `prefix`. The size is
/// measured first, so the buffer never grows: growing would leave copies of the plaintext
/// (secret values) behind in freed memory, and cost a reallocation per doubling.
pub(crate) fn encode_exact<T: Serialize + ?Sized>(
    prefix: &[u8],
    value: &T,
) -> Result<Zeroizing<Vec<u8>>, postcard::Error> {
    let size = postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())?;
    let mut out = Zeroizing::new(Vec::with_capacity(prefix.len() + size));
    out.extend_from_slice(prefix);
    postcard::to_extend(value, InPlace(&mut out))?;
    Ok(out)
}

/// Appends to a borrowed buffer (postcard's `to_extend` takes its writer by value).
struct InPlace<'a>(&'a mut Vec<u8>);

impl Extend<u8> for InPlace<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl Disk {
    pub(crate) fn seal<T: Serialize>(&self, aad: &[u8], value: &T) -> Result<Vec<u8>, String> {
        let plain = encode_exact(&[], value).map_err(|e| e.to_string())?;
        self.seal_bytes(aad, &plain)
    }

    /// Seals bytes that are already encoded.
    fn seal_bytes(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, String> {
        let keyring = self
            .keyring
            .read()
            .map_err(|_| "keyring lock poisoned".to_string())?;
        Ok(keyring.seal(aad, plain))
    }

    pub(crate) fn open<T: for<'de> Deserialize<'de>>(
        &self,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<T, String> {
        let keyring = self
            .keyring
            .read()
            .map_err(|_| "keyring lock poisoned".to_string())?;
        let place = String::from_utf8_lossy(aad);
        let plain = keyring
            .open(aad, sealed)
            .map_err(|e| format!("record {place} is corrupt or was tampered with ({e})"))?;
        postcard::from_bytes(&plain)
            .map_err(|e| format!("record {place} is corrupt: undecodable ({e})"))
    }

    fn read_meta<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<Option<T>, String> {
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        let table = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        match table.get(key).map_err(|e| e.to_string())? {
            None => Ok(None),
            Some(v) => self.open(&meta_aad(key), v.value()).map(Some),
        }
    }

    pub(crate) fn write_meta<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        durable: bool,
    ) -> Result<(), String> {
        let plain = encode_exact(&[], value).map_err(|e| e.to_string())?;
        self.write_meta_encoded(key, &plain, durable)
    }

    /// [`Disk::write_meta`] for a value already encoded with postcard.
    fn write_meta_encoded(&self, key: &str, plain: &[u8], durable: bool) -> Result<(), String> {
        let sealed = self.seal_bytes(&meta_aad(key), plain)?;
        let mut txn = self.db.begin_write().map_err(|e| e.to_string())?;
        if !durable {
            txn.set_durability(Durability::None)
                .map_err(|e| e.to_string())?;
        }
        {
            let mut table = txn.open_table(META).map_err(|e| e.to_string())?;
            table
                .insert(key, sealed.as_slice())
                .map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())
    }

    /// Re-seals every record that is not sealed with the current key. Returns how many changed.
    /// The log is rewritten as a new generation of files, which the same redb commit that
    /// re-seals the metadata makes current.
    pub(crate) fn reseal_all(&self, log: &Mutex<Wal>) -> Result<usize, String> {
        let mut wal = log.lock().map_err(|_| "log lock poisoned")?;
        let current = self
            .keyring
            .read()
            .map_err(|_| "keyring lock poisoned")?
            .current_id();
        let mut changed = 0;
        let (next, records) = {
            let keyring = self.keyring.read().map_err(|_| "keyring lock poisoned")?;
            let mut records = wal.range(0, None)?;
            for (index, sealed) in &mut records {
                if Keyring::key_id_of(sealed).map_err(|e| e.to_string())? != current {
                    let plain = keyring
                        .open(&log_aad(*index), sealed)
                        .map_err(|e| e.to_string())?;
                    *sealed = keyring.seal(&log_aad(*index), &plain);
                    changed += 1;
                }
            }
            (wal.generation() + 1, records)
        };
        let dir = wal.dir().to_path_buf();
        let rewrite = changed > 0;
        if rewrite {
            wal::write_generation(&dir, next, &records)?;
        }
        let txn = self.db.begin_write().map_err(|e| e.to_string())?;
        {
            let keyring = self.keyring.read().map_err(|_| "keyring lock poisoned")?;
            let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
            if rewrite {
                let plain = encode_exact(&[], &next).map_err(|e| e.to_string())?;
                meta.insert(KEY_WAL, keyring.seal(&meta_aad(KEY_WAL), &plain).as_slice())
                    .map_err(|e| e.to_string())?;
            }
            let mut stale = Vec::new();
            for item in meta.iter().map_err(|e| e.to_string())? {
                let (k, v) = item.map_err(|e| e.to_string())?;
                if Keyring::key_id_of(v.value()).map_err(|e| e.to_string())? != current {
                    stale.push(k.value().to_owned());
                }
            }
            for key in stale {
                let sealed = meta
                    .get(key.as_str())
                    .map_err(|e| e.to_string())?
                    .map(|v| v.value().to_vec());
                if let Some(sealed) = sealed {
                    let plain = keyring
                        .open(&meta_aad(&key), &sealed)
                        .map_err(|e| e.to_string())?;
                    meta.insert(
                        key.as_str(),
                        keyring.seal(&meta_aad(&key), &plain).as_slice(),
                    )
                    .map_err(|e| e.to_string())?;
                    changed += 1;
                }
            }
        }
        if let Err(e) = txn.commit() {
            if rewrite {
                let _ = wal::remove_generation(&dir, next);
            }
            return Err(e.to_string());
        }
        if rewrite {
            let purged: Option<LogId<NodeId>> = self.read_meta(KEY_PURGED)?;
            *wal = Wal::open(&dir, next, purged.map(|p| p.index))?;
        }
        Ok(changed)
    }

    /// Opens the log files, first moving the log out of redb's `log` table for a store written
    /// before the log had files of its own. The move writes generation 1 and then, in one
    /// commit, names it and empties the table; a crash before that commit leaves the table as
    /// it was, and the files are written again at the next start.
    pub(crate) fn open_wal(&self, dir: &Path) -> Result<Wal, String> {
        let purged: Option<LogId<NodeId>> = self.read_meta(KEY_PURGED)?;
        let purged = purged.map(|p| p.index);
        if let Some(generation) = self.read_meta::<u64>(KEY_WAL)? {
            return Wal::open(dir, generation, purged);
        }
        let records = {
            let txn = self.db.begin_read().map_err(|e| e.to_string())?;
            let mut records = Vec::new();
            if let Ok(table) = txn.open_table(LOG) {
                for item in table.iter().map_err(|e| e.to_string())? {
                    let (k, v) = item.map_err(|e| e.to_string())?;
                    if purged.is_none_or(|p| k.value() > p) {
                        records.push((k.value(), v.value().to_vec()));
                    }
                }
            }
            records
        };
        wal::write_generation(dir, 1, &records)?;
        let sealed = self.seal(&meta_aad(KEY_WAL), &1u64)?;
        let txn = self.db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
            meta.insert(KEY_WAL, sealed.as_slice())
                .map_err(|e| e.to_string())?;
            let mut log = txn.open_table(LOG).map_err(|e| e.to_string())?;
            log.retain(|_, _| false).map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())?;
        Wal::open(dir, 1, purged)
    }

    /// Ids of the keys that seal at least one record.
    pub(crate) fn key_ids_in_use(&self, log: &Mutex<Wal>) -> Result<Vec<u32>, String> {
        let mut ids = log.lock().map_err(|_| "log lock poisoned")?.key_ids();
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        if let Ok(t) = txn.open_table(META) {
            for item in t.iter().map_err(|e| e.to_string())? {
                let (_, v) = item.map_err(|e| e.to_string())?;
                ids.insert(Keyring::key_id_of(v.value()).map_err(|e| e.to_string())?);
            }
        }
        Ok(ids.into_iter().collect())
    }

    /// Creates the tables so readers never see them missing.
    pub(crate) fn init_tables(&self) -> Result<(), String> {
        let txn = self.db.begin_write().map_err(|e| e.to_string())?;
        txn.open_table(LOG).map_err(|e| e.to_string())?;
        txn.open_table(META).map_err(|e| e.to_string())?;
        txn.commit().map_err(|e| e.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Log storage

/// The Raft log and vote.
#[derive(Clone)]
pub(crate) struct LogStore {
    disk: Disk,
    /// The entries on disk ([`crate::wal`]).
    pub(crate) wal: Arc<Mutex<Wal>>,
    cache: Arc<Mutex<LogCache>>,
    committed: Arc<Mutex<Committed>>,
    /// Reads through this handle move cached entries out instead of copying them. Set only on
    /// the handle openraft's core owns ([`LogStore::for_core`]): the core reads entries to
    /// apply them and for nothing else once it runs (at start it reads membership entries,
    /// before anything is cached), so an applied entry is never asked for there again.
    /// Replication reads through [`RaftLogStorage::get_log_reader`]'s copies, which copy; an
    /// entry they ask for after its apply is read back from the file.
    take: bool,
}

/// Recently appended entries, decoded, and how many commands they carry.
#[derive(Default)]
struct LogCache {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    commands: usize,
}

fn commands_in(e: &Entry<TypeConfig>) -> usize {
    match &e.payload {
        EntryPayload::Normal(p) => p.len(),
        _ => 1,
    }
}

impl LogCache {
    fn insert(&mut self, e: Entry<TypeConfig>) {
        self.commands += commands_in(&e);
        if let Some(old) = self.entries.insert(e.log_id.index, e) {
            self.commands -= commands_in(&old);
        }
        while self.entries.len() > CACHE_ENTRIES
            || (self.entries.len() > CACHE_MIN_ENTRIES && self.commands > CACHE_COMMANDS)
        {
            match self.entries.pop_first() {
                Some((_, old)) => self.commands -= commands_in(&old),
                None => break,
            }
        }
    }

    fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.entries.retain(|&k, _| keep(k));
        self.commands = self.entries.values().map(commands_in).sum();
    }

    /// The range, moved out of the cache, when the cache covers all of it.
    fn take_range(
        &mut self,
        start: u64,
        end_inclusive: Option<u64>,
    ) -> Option<Vec<Entry<TypeConfig>>> {
        let (&first, _) = self.entries.first_key_value()?;
        let end = end_inclusive?;
        if first > start || !self.entries.contains_key(&end) {
            return None;
        }
        let mut out = Vec::with_capacity((end - start + 1) as usize);
        for index in start..=end {
            let e = self.entries.remove(&index)?;
            self.commands -= commands_in(&e);
            out.push(e);
        }
        Some(out)
    }

    /// The range, when the cache covers all of it.
    fn range(&self, start: u64, end_inclusive: Option<u64>) -> Option<Vec<Entry<TypeConfig>>> {
        let (&first, _) = self.entries.first_key_value()?;
        let end = end_inclusive?;
        (first <= start && self.entries.contains_key(&end)).then(|| {
            self.entries
                .range(start..=end)
                .map(|(_, e)| e.clone())
                .collect()
        })
    }
}

/// The committed log id. openraft reports it after every commit, before it applies the
/// entries (`save_committed`, awaited on the write path). It need not be durable: a restarted
/// node applies the entries up to what the file holds at once, and the rest once a leader
/// (itself, for a one-node store) commits again. So it is kept here and written off the write
/// path: in a redb commit of its own on the blocking pool every [`COMMITTED_EVERY`] entries,
/// and with every purge. The log's appends (segment files, `wal.rs`) never wait for it.
///
/// Except for entries that change the nodes (a manager added, promoted, demoted, removed):
/// once one is committed, the committed index is written at once, in its own durable commit.
/// The cluster listener accepts Raft messages only from nodes that are managers in the
/// applied state, so a restarted manager that re-applied only up to an older committed index
/// would refuse a manager added since, which may lead the group by then, and never catch up.
#[derive(Default)]
struct Committed {
    /// The latest value reported.
    latest: Option<LogId<NodeId>>,
    /// The value the file holds (as far as this process wrote it).
    written: Option<LogId<NodeId>>,
    /// The index of the last entry in the log that changes the nodes and that the written
    /// value may not cover yet (at start, the last entry: what came before is not known).
    node_change: Option<u64>,
}

impl LogStore {
    /// Opens the log of the store in `dir` (see [`Disk::open_wal`]).
    pub(crate) fn open(disk: Disk, dir: &Path) -> Result<Self, String> {
        let wal = disk.open_wal(&dir.join(WAL_DIR))?;
        Ok(LogStore {
            disk,
            wal: Arc::new(Mutex::new(wal)),
            cache: Arc::new(Mutex::new(LogCache::default())),
            committed: Arc::new(Mutex::new(Committed::default())),
            take: false,
        })
    }

    /// The handle to give openraft's core: the same log, whose cached entries its reads (the
    /// entries it applies) move out of the cache instead of copying them (see `take`).
    pub(crate) fn for_core(&self) -> LogStore {
        LogStore {
            take: true,
            ..self.clone()
        }
    }

    fn wal(&self) -> Result<std::sync::MutexGuard<'_, Wal>, String> {
        self.wal.lock().map_err(|_| "log lock poisoned".to_string())
    }

    /// Writes the committed log id in a redb commit of its own, if it changed (and, unless
    /// `force`, if it is due; see [`LogStore::committed_to_write`]). Forced (a change of the
    /// nodes is committed) it is durable at once; otherwise it need not be (see
    /// [`Committed`]): the commit is not synced, and the next durable one (a purge, a
    /// snapshot, a vote) carries it to the disk. Syncing it cost a flush every 64 entries,
    /// which the next log append then waited behind.
    fn commit_committed(&self, force: bool) -> Result<(), String> {
        let mut txn = self.disk.db.begin_write().map_err(|e| e.to_string())?;
        if !force {
            txn.set_durability(Durability::None)
                .map_err(|e| e.to_string())?;
        }
        let committed = self.write_committed(&txn, force)?;
        txn.commit().map_err(|e| e.to_string())?;
        if let Some(c) = committed {
            self.committed_written(c);
        }
        Ok(())
    }

    /// Writes the committed log id, if due, off the write path (it need not be durable; see
    /// [`Committed`]).
    fn write_committed_later(&self) {
        if self.committed_to_write(false).is_none() {
            return;
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = this.commit_committed(false) {
                tracing::warn!(error = %e, "could not record the committed index");
            }
        });
    }

    /// The committed log id to write with the next transaction: if it changed, and, unless
    /// `force`, if it moved [`COMMITTED_EVERY`] entries since it was last written.
    fn committed_to_write(&self, force: bool) -> Option<Option<LogId<NodeId>>> {
        let c = self.committed.lock().ok()?;
        let index = |l: Option<LogId<NodeId>>| l.map_or(0, |l| l.index);
        let due = force || index(c.latest) >= index(c.written) + COMMITTED_EVERY;
        (c.latest > c.written && due).then_some(c.latest)
    }

    /// Records that the file now holds `written`.
    fn committed_written(&self, written: Option<LogId<NodeId>>) {
        if let Ok(mut c) = self.committed.lock()
            && c.written < written
        {
            c.written = written;
            let index = written.map_or(0, |l| l.index);
            if c.node_change.is_some_and(|n| n <= index) {
                c.node_change = None;
            }
        }
    }

    /// Notes appended entries that change the nodes (see [`Committed`]).
    fn note_appended(&self, entries: &[Entry<TypeConfig>]) {
        let last = entries
            .iter()
            .filter(|e| matches!(&e.payload, EntryPayload::Normal(p) if p.changes_nodes()))
            .map(|e| e.log_id.index)
            .max();
        self.note_node_change(last);
    }

    fn note_node_change(&self, index: Option<u64>) {
        if let Some(index) = index
            && let Ok(mut c) = self.committed.lock()
        {
            c.node_change = c.node_change.max(Some(index));
        }
    }

    /// Whether the committed value must be written now: it covers an entry that changes the
    /// nodes, which the file's value does not.
    fn node_change_committed(&self) -> bool {
        self.committed.lock().is_ok_and(|c| {
            let index = |l: Option<LogId<NodeId>>| l.map_or(0, |l| l.index);
            c.node_change
                .is_some_and(|n| index(c.written) < n && n <= index(c.latest))
        })
    }

    /// Puts the committed log id into `txn` (sealed), if it changed since it was last written.
    /// Returns what was written, for [`LogStore::committed_written`] once `txn` is committed.
    fn write_committed(
        &self,
        txn: &redb::WriteTransaction,
        force: bool,
    ) -> Result<Option<Option<LogId<NodeId>>>, String> {
        let Some(committed) = self.committed_to_write(force) else {
            return Ok(None);
        };
        let sealed = self.disk.seal(&meta_aad(KEY_COMMITTED), &committed)?;
        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
        meta.insert(KEY_COMMITTED, sealed.as_slice())
            .map_err(|e| e.to_string())?;
        Ok(Some(committed))
    }

    /// The range from the cache, when the cache covers all of it (moved out of it through a
    /// handle that takes; see `take`).
    fn cached_range(
        &self,
        start: u64,
        end_inclusive: Option<u64>,
    ) -> Option<Vec<Entry<TypeConfig>>> {
        let mut cache = self.cache.lock().ok()?;
        if self.take {
            cache.take_range(start, end_inclusive)
        } else {
            cache.range(start, end_inclusive)
        }
    }

    fn read_range(
        &self,
        start: u64,
        end_inclusive: Option<u64>,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        // Served from the cache when it covers the whole range.
        if let Some(hit) = self.cached_range(start, end_inclusive) {
            return Ok(hit);
        }
        let sealed = self
            .wal()
            .and_then(|w| w.range(start, end_inclusive))
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let mut out = Vec::with_capacity(sealed.len());
        for (index, bytes) in sealed {
            let entry: Entry<TypeConfig> = self
                .disk
                .open(&log_aad(index), &bytes)
                .map_err(|e| io_err(ErrorSubject::LogIndex(index), ErrorVerb::Read, e))?;
            out.push(entry);
        }
        Ok(out)
    }

    fn last_entry(&self) -> StoreResult<Option<Entry<TypeConfig>>> {
        let last = self
            .wal()
            .and_then(|w| match w.last() {
                None => Ok(None),
                Some(index) => Ok(w.read(index)?.map(|bytes| (index, bytes))),
            })
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        match last {
            None => Ok(None),
            Some((index, bytes)) => {
                let entry = self
                    .disk
                    .open(&log_aad(index), &bytes)
                    .map_err(|e| io_err(ErrorSubject::LogIndex(index), ErrorVerb::Read, e))?;
                Ok(Some(entry))
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => Some(e),
            Bound::Excluded(&0) => return Ok(Vec::new()),
            Bound::Excluded(&e) => Some(e - 1),
            Bound::Unbounded => None,
        };
        if let Some(end) = end
            && end < start
        {
            return Ok(Vec::new());
        }
        // Entries just appended (the ones being applied) are served from the cache without
        // a trip through the blocking pool.
        if let Some(hit) = self.cached_range(start, end) {
            return Ok(hit);
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_range(start, end))
            .await
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let purged: Option<LogId<NodeId>> = this
                .disk
                .read_meta(KEY_PURGED)
                .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))?;
            let last = this.last_entry()?.map(|e| e.log_id).max(purged);
            // Entries from before this start may change the nodes.
            this.note_node_change(last.map(|l| l.index));
            Ok(LogState {
                last_purged_log_id: purged,
                last_log_id: last,
            })
        })
        .await
        .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogStore {
            take: false,
            ..self.clone()
        }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        let disk = self.disk.clone();
        let vote = *vote;
        tokio::task::spawn_blocking(move || disk.write_meta(KEY_VOTE, &vote, true))
            .await
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        self.disk
            .read_meta(KEY_VOTE)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        // Written by the next log write (see `Committed`), unless it covers a change of the
        // nodes: this is on the write path of every proposal, between the flush and the apply.
        {
            let mut c = self.committed.lock().map_err(|_| {
                io_err(
                    ErrorSubject::Store,
                    ErrorVerb::Write,
                    "committed lock poisoned",
                )
            })?;
            if c.latest < committed {
                c.latest = committed;
            }
        }
        if !self.node_change_committed() {
            return Ok(());
        }
        // A change of the nodes is committed: durable now (see `Committed`).
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.commit_committed(true))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        if let Ok(c) = self.committed.lock()
            && c.latest.is_some()
        {
            return Ok(c.latest);
        }
        let v: Option<Option<LogId<NodeId>>> = self
            .disk
            .read_meta(KEY_COMMITTED)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))?;
        let v = v.flatten();
        if let Ok(mut c) = self.committed.lock() {
            c.written = c.written.max(v);
            c.latest = c.latest.max(v);
        }
        Ok(v)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let bytes: usize = entries
            .iter()
            .map(|e| match &e.payload {
                EntryPayload::Normal(p) => p.approx_size(),
                _ => 64,
            })
            .sum();
        let this = self.clone();
        let write = move || -> Result<(), String> {
            let mut sealed = Vec::with_capacity(entries.len());
            for e in &entries {
                sealed.push((e.log_id.index, this.disk.seal(&log_aad(e.log_id.index), e)?));
            }
            // One write and one fdatasync, before the callback below tells openraft the
            // entries are flushed.
            this.wal()?.append(&sealed)?;
            this.note_appended(&entries);
            if let Ok(mut cache) = this.cache.lock() {
                for e in entries {
                    cache.insert(e);
                }
            }
            Ok(())
        };
        // Written on this task's thread (openraft's core, which waits for the append anyway):
        // a hand-off to the blocking pool and back cost a create on one connection ~0.05 ms
        // and two context switches (interleaved runs, docs/performance.md). Large entries
        // still go to the blocking pool, so a runtime thread is never held for long.
        let result = if bytes <= INLINE_WRITE_BYTES {
            write()
        } else {
            tokio::task::spawn_blocking(write)
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
        };
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                self.write_committed_later();
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.clone())));
                Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            this.wal()?.truncate(log_id.index)?;
            if let Ok(mut cache) = this.cache.lock() {
                cache.retain(|k| k < log_id.index);
            }
            Ok(())
        })
        .await
        .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?
        .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            let sealed = this.disk.seal(&meta_aad(KEY_PURGED), &log_id)?;
            let txn = this.disk.db.begin_write().map_err(|e| e.to_string())?;
            let committed = this.write_committed(&txn, true)?;
            {
                let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
                meta.insert(KEY_PURGED, sealed.as_slice())
                    .map_err(|e| e.to_string())?;
            }
            // The purge is durable before any file goes: a crash between the two leaves
            // segments that the next open skips and deletes.
            txn.commit().map_err(|e| e.to_string())?;
            if let Some(c) = committed {
                this.committed_written(c);
            }
            this.wal()?.purge(log_id.index)?;
            if let Ok(mut cache) = this.cache.lock() {
                cache.retain(|k| k > log_id.index);
            }
            Ok(())
        })
        .await
        .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?
        .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

// ---------------------------------------------------------------------------------------------
// State machine

/// The version of the next command applied from the entry at `index`: the log index, as
/// swarmkit uses its raft index, except after a batch, whose commands each took one version
/// past the entry's index. Versions stay unique and increasing, and equal the log index in a
/// log without batches. A pure function of the state and the index, so replay agrees.
fn next_version(state: &State, index: u64) -> u64 {
    index.max(state.version + 1)
}

/// Applies one log entry's commands to `state` as the state machine does (membership and
/// blank entries only move the version). For a state rebuilt outside the state machine.
pub(crate) fn apply_entry(state: &mut State, entry: &Entry<TypeConfig>) {
    let index = entry.log_id.index;
    match &entry.payload {
        EntryPayload::Normal(Proposal::One(cmd)) => {
            let version = next_version(state, index);
            let _ = state.apply(version, cmd);
        }
        EntryPayload::Normal(Proposal::Batch(cmds)) => {
            for cmd in cmds {
                let version = next_version(state, index);
                let _ = state.apply(version, cmd);
            }
        }
        EntryPayload::Blank | EntryPayload::Membership(_) => {
            state.version = state.version.max(index);
        }
    }
}

/// What the state machine holds besides the state itself.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub(crate) last_applied: Option<LogId<NodeId>>,
    pub(crate) membership: StoredMembership<NodeId, BasicNode>,
    pub(crate) state: State,
}

/// The serialized form of a snapshot (inside the sealed record): [`SNAPSHOT_MAGIC`], a
/// little-endian u16 format version, then the postcard encoding. Snapshots written before
/// versions existed are the bare postcard encoding of [`SnapshotPayloadV1`] (their first byte,
/// an `Option` tag, is 0 or 1, never the magic's).
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotPayload {
    pub(crate) last_applied: Option<LogId<NodeId>>,
    pub(crate) membership: StoredMembership<NodeId, BasicNode>,
    pub(crate) state: State,
}

/// Marks a versioned snapshot payload.
pub(crate) const SNAPSHOT_MAGIC: &[u8; 4] = b"LBXS";
/// The snapshot format this build writes: 2 added the access model and the cluster keys,
/// 3 the node PKI state (root rotation, node certificates).
pub(crate) const SNAPSHOT_VERSION: u16 = 3;

/// A snapshot payload of format version 2.
#[derive(Deserialize)]
struct SnapshotPayloadV2 {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    state: crate::state::StateV2,
}

/// A snapshot payload from before format versions.
#[derive(Deserialize)]
struct SnapshotPayloadV1 {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    state: crate::state::StateV1,
}

/// [`SnapshotPayload`] borrowed from the state machine: the same encoding, without a copy of
/// the state.
#[derive(Serialize)]
struct SnapshotPayloadRef<'a> {
    last_applied: &'a Option<LogId<NodeId>>,
    membership: &'a StoredMembership<NodeId, BasicNode>,
    state: &'a State,
}

/// The header of a versioned snapshot payload.
fn snapshot_header() -> [u8; 6] {
    let mut h = [0u8; 6];
    h[..4].copy_from_slice(SNAPSHOT_MAGIC);
    h[4..].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    h
}

impl SnapshotPayload {
    pub(crate) fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut out = encode_exact(&snapshot_header(), self)?;
        Ok(std::mem::take(&mut *out))
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<SnapshotPayload, String> {
        match bytes.strip_prefix(SNAPSHOT_MAGIC) {
            Some(rest) => {
                let (v, body) = rest
                    .split_first_chunk::<2>()
                    .ok_or("a truncated snapshot header")?;
                match u16::from_le_bytes(*v) {
                    SNAPSHOT_VERSION => postcard::from_bytes(body).map_err(|e| e.to_string()),
                    2 => {
                        let old: SnapshotPayloadV2 =
                            postcard::from_bytes(body).map_err(|e| e.to_string())?;
                        Ok(SnapshotPayload {
                            last_applied: old.last_applied,
                            membership: old.membership,
                            state: old.state.into(),
                        })
                    }
                    other => Err(format!(
                        "snapshot format {other} is newer than this lockbox understands ({SNAPSHOT_VERSION})"
                    )),
                }
            }
            None => {
                let old: SnapshotPayloadV1 =
                    postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
                Ok(SnapshotPayload {
                    last_applied: old.last_applied,
                    membership: old.membership,
                    state: old.state.into(),
                })
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: SnapshotMeta<NodeId, BasicNode>,
    pub(crate) data: Vec<u8>,
}

/// The record [`StoredSnapshot`] { `meta`, data: the encoding of `payload` }, measured so it
/// can be encoded straight into the buffer that will hold it, byte for byte as postcard
/// encodes the struct: `meta`, the payload's length as a varint, the payload. The state is
/// encoded from `payload`'s borrow: no copy of it, and no buffer that grows (each doubling
/// would leave a copy of the plaintext behind in freed memory).
struct SnapshotRecord<'a> {
    /// `meta` and the payload's length.
    prefix: Vec<u8>,
    payload: &'a SnapshotPayloadRef<'a>,
    /// The payload's encoded length, its header included.
    payload_len: usize,
}

impl<'a> SnapshotRecord<'a> {
    fn new(
        meta: &SnapshotMeta<NodeId, BasicNode>,
        payload: &'a SnapshotPayloadRef<'a>,
    ) -> Result<Self, postcard::Error> {
        let payload_len = snapshot_header().len()
            + postcard::serialize_with_flavor(payload, postcard::ser_flavors::Size::default())?;
        let mut prefix = postcard::to_allocvec(meta)?;
        // A byte sequence's length is a varint usize, as a u64 is encoded.
        prefix.extend_from_slice(&postcard::to_allocvec(&(payload_len as u64))?);
        Ok(SnapshotRecord {
            prefix,
            payload,
            payload_len,
        })
    }

    /// The record's encoded length.
    fn len(&self) -> usize {
        self.prefix.len() + self.payload_len
    }

    /// Encodes the record into `out`, which is exactly [`SnapshotRecord::len`] long.
    fn encode_into(&self, out: &mut [u8]) -> Result<(), postcard::Error> {
        if out.len() != self.len() {
            return Err(postcard::Error::SerializeBufferFull);
        }
        let header = snapshot_header();
        let (prefix, rest) = out.split_at_mut(self.prefix.len());
        prefix.copy_from_slice(&self.prefix);
        let (h, body) = rest.split_at_mut(header.len());
        h.copy_from_slice(&header);
        let used = postcard::to_slice(self.payload, body)?.len();
        if used != body.len() {
            return Err(postcard::Error::SerializeBufferFull);
        }
        Ok(())
    }
}

impl Drop for StoredSnapshot {
    fn drop(&mut self) {
        self.data.zeroize();
    }
}

/// The state machine: the in-memory [`State`] plus sealed snapshots on disk.
#[derive(Clone)]
pub(crate) struct StateMachine {
    pub(crate) applied: Arc<RwLock<Applied>>,
    disk: Disk,
    snapshot_seq: Arc<std::sync::atomic::AtomicU64>,
}

fn poisoned() -> StorageError<NodeId> {
    io_err(
        ErrorSubject::StateMachine,
        ErrorVerb::Read,
        "state lock poisoned",
    )
}

impl StateMachine {
    /// Loads the last snapshot, if any.
    pub(crate) fn open(disk: Disk) -> Result<Self, String> {
        let mut applied = Applied::default();
        let stored: Option<StoredSnapshot> = disk.read_meta(KEY_SNAPSHOT)?;
        if let Some(stored) = stored {
            let payload = SnapshotPayload::decode(&stored.data)
                .map_err(|e| format!("undecodable snapshot: {e}"))?;
            applied.last_applied = payload.last_applied;
            applied.membership = payload.membership;
            applied.state = payload.state;
            applied.state.reindex();
        }
        Ok(StateMachine {
            applied: Arc::new(RwLock::new(applied)),
            disk,
            snapshot_seq: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        })
    }

    fn build(&self) -> StoreResult<Snapshot<TypeConfig>> {
        let seq = self
            .snapshot_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let write_err = |e: String| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e);
        let keyring = self
            .disk
            .keyring
            .read()
            .map_err(|_| write_err("keyring lock poisoned".into()))?;
        // The transaction is open before the state is locked, so applies never wait for
        // another write to the database.
        let txn = self
            .disk
            .db
            .begin_write()
            .map_err(|e| write_err(e.to_string()))?;
        // Encoded under the read lock, straight from the state into the database's own buffer
        // for the record, and sealed there: the plaintext is never copied, and the only
        // transient memory is that buffer (the record's size). Reads go on meanwhile; applies
        // wait for the encoding, not for the sync.
        let meta = {
            let applied = self.applied.read().map_err(|_| poisoned())?;
            let snapshot_id = match applied.last_applied {
                Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
                None => format!("--{seq}"),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
                snapshot_id,
            };
            let payload = SnapshotPayloadRef {
                last_applied: &applied.last_applied,
                membership: &applied.membership,
                state: &applied.state,
            };
            let record = SnapshotRecord::new(&meta, &payload)
                .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
            let mut table = txn.open_table(META).map_err(|e| write_err(e.to_string()))?;
            let mut reserved = table
                .insert_reserve(KEY_SNAPSHOT, SEALED_OVERHEAD + record.len())
                .map_err(|e| write_err(e.to_string()))?;
            let buf = reserved.as_mut();
            let end = buf.len() - (SEALED_OVERHEAD - SEALED_PREFIX);
            if let Err(e) = record.encode_into(&mut buf[SEALED_PREFIX..end]) {
                // Nothing is committed; what was encoded is wiped before the buffer goes.
                buf.zeroize();
                return Err(io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e));
            }
            keyring.seal_in_place(&meta_aad(KEY_SNAPSHOT), buf);
            meta
        };
        drop(keyring);
        txn.commit().map_err(|e| write_err(e.to_string()))?;
        // openraft keeps only the meta of a snapshot it built (0.9: the state machine worker
        // answers the core with `snap.meta` and drops the data); a follower is sent the stored
        // record (`get_current_snapshot`). So no copy of the payload is made for it.
        Ok(Snapshot {
            meta,
            snapshot: Box::default(),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.build())
            .await
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let applied = self.applied.read().map_err(|_| poisoned())?;
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<Vec<Outcome>>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut applied = self.applied.write().map_err(|_| poisoned())?;
        let mut out = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            applied.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {
                    applied.state.version = applied.state.version.max(index);
                    out.push(vec![Outcome::Applied { version: index }]);
                }
                EntryPayload::Normal(Proposal::One(cmd)) => {
                    let version = next_version(&applied.state, index);
                    let kind = cmd.kind();
                    let outcome = applied.state.apply_owned(version, cmd);
                    tracing::trace!(index, version, kind, "applied");
                    out.push(vec![outcome]);
                }
                EntryPayload::Normal(Proposal::Batch(cmds)) => {
                    // Applied in order; each command gets its own version, as it would have
                    // had in an entry of its own.
                    let n = cmds.len();
                    let outcomes = cmds
                        .into_iter()
                        .map(|cmd| {
                            let version = next_version(&applied.state, index);
                            applied.state.apply_owned(version, cmd)
                        })
                        .collect();
                    tracing::trace!(index, commands = n, "applied batch");
                    out.push(outcomes);
                }
                EntryPayload::Membership(m) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    applied.state.version = applied.state.version.max(index);
                    out.push(vec![Outcome::Applied { version: index }]);
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<SnapshotBuf>> {
        Ok(Box::new(SnapshotBuf::default()))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<SnapshotBuf>,
    ) -> StoreResult<()> {
        let payload = SnapshotPayload::decode(snapshot.bytes()).map_err(|e| {
            io_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                std::io::Error::other(e),
            )
        })?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.bytes().to_vec(),
        };
        let disk = self.disk.clone();
        tokio::task::spawn_blocking(move || disk.write_meta(KEY_SNAPSHOT, &stored, true))
            .await
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        let mut applied = self.applied.write().map_err(|_| poisoned())?;
        applied.last_applied = payload.last_applied;
        applied.membership = payload.membership;
        applied.state = payload.state;
        applied.state.reindex();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        let stored: Option<StoredSnapshot> = self
            .disk
            .read_meta(KEY_SNAPSHOT)
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(SnapshotBuf::new(s.data.clone())),
        }))
    }
}

#[cfg(test)]
mod conformance {
    //! openraft's storage conformance suite against the redb-backed log and state machine.

    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
            let dir = tempfile::tempdir()
                .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
            let db = Database::create(dir.path().join("store.redb"))
                .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
            let disk = Disk {
                db: Arc::new(db),
                keyring: Arc::new(RwLock::new(Keyring::generate())),
            };
            disk.init_tables()
                .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
            let sm = StateMachine::open(disk.clone())
                .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))?;
            let log = LogStore::open(disk, dir.path())
                .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))?;
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).expect("storage suite");
    }
}

#[cfg(test)]
mod committed_and_cache {
    use lockbox_types::Command;
    use openraft::CommittedLeaderId;

    use super::*;

    fn disk() -> (tempfile::TempDir, Disk) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("store.redb")).unwrap();
        let disk = Disk {
            db: Arc::new(db),
            keyring: Arc::new(RwLock::new(Keyring::generate())),
        };
        disk.init_tables().unwrap();
        (dir, disk)
    }

    fn log_id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn on_disk(disk: &Disk) -> Option<LogId<NodeId>> {
        disk.read_meta::<Option<LogId<NodeId>>>(KEY_COMMITTED)
            .unwrap()
            .flatten()
    }

    /// Writes what `write_committed` puts into a transaction, as an append would.
    fn log_write(log: &LogStore, force: bool) {
        let txn = log.disk.db.begin_write().unwrap();
        let c = log.write_committed(&txn, force).unwrap();
        txn.commit().unwrap();
        if let Some(c) = c {
            log.committed_written(c);
        }
    }

    #[tokio::test]
    async fn committed_is_kept_in_memory_and_rides_along_with_log_writes() {
        let (_dir, disk) = disk();
        let mut log = LogStore::open(disk.clone(), _dir.path()).unwrap();
        assert_eq!(log.read_committed().await.unwrap(), None);
        log.save_committed(Some(log_id(3))).await.unwrap();
        // Nothing written by save_committed itself.
        assert_eq!(on_disk(&disk), None);
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(3)));
        // Not due yet for an append (3 < COMMITTED_EVERY), due for a purge.
        log_write(&log, false);
        assert_eq!(on_disk(&disk), None);
        log_write(&log, true);
        assert_eq!(on_disk(&disk), Some(log_id(3)));
        // Written again only once it moved COMMITTED_EVERY entries.
        log.save_committed(Some(log_id(3 + COMMITTED_EVERY - 1)))
            .await
            .unwrap();
        log_write(&log, false);
        assert_eq!(on_disk(&disk), Some(log_id(3)));
        log.save_committed(Some(log_id(3 + COMMITTED_EVERY)))
            .await
            .unwrap();
        log_write(&log, false);
        assert_eq!(on_disk(&disk), Some(log_id(3 + COMMITTED_EVERY)));
        // It never goes back.
        log.save_committed(Some(log_id(1))).await.unwrap();
        assert_eq!(
            log.read_committed().await.unwrap(),
            Some(log_id(3 + COMMITTED_EVERY))
        );
        // A new log store over the same file reads what was written.
        let mut again = LogStore::open(disk.clone(), _dir.path()).unwrap();
        assert_eq!(
            again.read_committed().await.unwrap(),
            Some(log_id(3 + COMMITTED_EVERY))
        );
        assert_eq!(again.committed_to_write(true), None);
    }

    #[tokio::test]
    async fn a_committed_change_of_the_nodes_is_written_at_once() {
        let (_dir, disk) = disk();
        let mut log = LogStore::open(disk.clone(), _dir.path()).unwrap();
        let remove = |index| Entry::<TypeConfig> {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Proposal::Batch(vec![
                Command::Noop,
                Command::RemoveNode { id: "n".into() },
            ])),
        };
        log.note_appended(&[entry(1, 1), entry(2, 3)]);
        log.note_appended(&[remove(3), entry(4, 1)]);
        // Committed up to before the change: kept in memory only.
        log.save_committed(Some(log_id(2))).await.unwrap();
        assert_eq!(on_disk(&disk), None);
        // Covering it: on disk at once, and not again for entries that change nothing.
        log.save_committed(Some(log_id(4))).await.unwrap();
        assert_eq!(on_disk(&disk), Some(log_id(4)));
        log.note_appended(&[entry(5, 1)]);
        log.save_committed(Some(log_id(5))).await.unwrap();
        assert_eq!(on_disk(&disk), Some(log_id(4)));
        // After a start, what the log held may have changed the nodes.
        let mut again = LogStore::open(disk.clone(), _dir.path()).unwrap();
        assert_eq!(again.read_committed().await.unwrap(), Some(log_id(4)));
        again.note_node_change(Some(6));
        again.save_committed(Some(log_id(5))).await.unwrap();
        assert_eq!(on_disk(&disk), Some(log_id(4)));
        again.save_committed(Some(log_id(6))).await.unwrap();
        assert_eq!(on_disk(&disk), Some(log_id(6)));
    }

    fn entry(index: u64, commands: usize) -> Entry<TypeConfig> {
        let payload = if commands == 1 {
            Proposal::One(Command::Noop)
        } else {
            Proposal::Batch(vec![Command::Noop; commands])
        };
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(payload),
        }
    }

    #[tokio::test]
    async fn a_log_kept_in_redb_moves_to_its_files_once() {
        let (dir, disk) = disk();
        // A store as earlier versions wrote it: entries 1..=5 in the `log` table, 1 and 2
        // purged.
        let txn = disk.db.begin_write().unwrap();
        {
            let mut table = txn.open_table(LOG).unwrap();
            for i in 1..=5 {
                let sealed = disk.seal(&log_aad(i), &entry(i, 2)).unwrap();
                table.insert(i, sealed.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        disk.write_meta(KEY_PURGED, &log_id(2), true).unwrap();

        let mut log = LogStore::open(disk.clone(), dir.path()).unwrap();
        let got = log.try_get_log_entries(0..).await.unwrap();
        assert_eq!(
            got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(got[0], entry(3, 2));
        assert_eq!(disk.read_meta::<u64>(KEY_WAL).unwrap(), Some(1));
        let txn = disk.db.begin_read().unwrap();
        assert_eq!(
            redb::ReadableTableMetadata::len(&txn.open_table(LOG).unwrap()).unwrap(),
            0
        );
        drop(txn);
        // Appends go to the files, and a second open reads them without moving anything.
        log.wal()
            .unwrap()
            .append(&[(6, disk.seal(&log_aad(6), &entry(6, 1)).unwrap())])
            .unwrap();
        drop(log);
        let mut again = LogStore::open(disk.clone(), dir.path()).unwrap();
        let got = again.try_get_log_entries(0..).await.unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[3], entry(6, 1));
    }

    #[tokio::test]
    async fn resealing_rewrites_the_log_files_as_a_new_generation() {
        let (dir, disk) = disk();
        let mut log = LogStore::open(disk.clone(), dir.path()).unwrap();
        let sealed: Vec<_> = (1..=4)
            .map(|i| (i, disk.seal(&log_aad(i), &entry(i, 1)).unwrap()))
            .collect();
        log.wal().unwrap().append(&sealed).unwrap();
        let old = disk.keyring.read().unwrap().current_id();
        let new = disk.keyring.write().unwrap().rotate();
        assert_eq!(disk.key_ids_in_use(&log.wal).unwrap(), vec![old]);
        disk.reseal_all(&log.wal).unwrap();
        assert_eq!(disk.key_ids_in_use(&log.wal).unwrap(), vec![new]);
        assert_eq!(disk.read_meta::<u64>(KEY_WAL).unwrap(), Some(2));
        let names: Vec<_> = std::fs::read_dir(dir.path().join(WAL_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| n.starts_with("00000002-")),
            "{names:?}"
        );
        // Readable with the new key alone.
        disk.keyring.write().unwrap().retire_old();
        let got = log.try_get_log_entries(1..=4).await;
        // (served from the files: the cache was never filled by this test)
        assert_eq!(
            got.unwrap(),
            (1..=4).map(|i| entry(i, 1)).collect::<Vec<_>>()
        );
        let mut again = LogStore::open(disk.clone(), dir.path()).unwrap();
        assert_eq!(again.try_get_log_entries(0..).await.unwrap().len(), 4);
    }

    #[test]
    fn the_cache_is_bounded_by_entries_and_by_commands() {
        let mut c = LogCache::default();
        for i in 1..=(CACHE_ENTRIES as u64 + 10) {
            c.insert(entry(i, 1));
        }
        assert_eq!(c.entries.len(), CACHE_ENTRIES);
        assert_eq!(c.commands, CACHE_ENTRIES);
        assert_eq!(c.entries.first_key_value().map(|(k, _)| *k), Some(11));
        // Full batches: bounded by commands, but the newest few entries always stay.
        let mut c = LogCache::default();
        for i in 1..=100u64 {
            c.insert(entry(i, 64));
        }
        assert_eq!(c.entries.len(), CACHE_MIN_ENTRIES.max(CACHE_COMMANDS / 64));
        assert_eq!(c.commands, 64 * c.entries.len());
        assert!(c.range(100, Some(100)).is_some());
        assert!(c.range(1, Some(100)).is_none());
        c.retain(|k| k < 98);
        assert_eq!(c.commands, 64 * c.entries.len());
        assert_eq!(c.entries.last_key_value().map(|(k, _)| *k), Some(97));
        // Re-inserting an index replaces it.
        c.insert(entry(97, 1));
        assert_eq!(c.commands, 64 * (c.entries.len() - 1) + 1);
        // Taking a covered range moves exactly it out, and the count follows.
        let before = c.entries.len();
        let taken = c.take_range(96, Some(97)).expect("covered");
        assert_eq!(
            taken.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            [96, 97]
        );
        assert_eq!(c.entries.len(), before - 2);
        assert_eq!(c.commands, 64 * c.entries.len());
        assert!(
            c.take_range(96, Some(96)).is_none(),
            "taken entries are gone"
        );
        assert!(
            c.take_range(1, Some(95)).is_none(),
            "a range not all cached stays put"
        );
        assert!(c.range(95, Some(95)).is_some());
    }

    #[tokio::test]
    async fn the_cores_handle_takes_what_it_reads_and_others_copy() {
        let (_dir, disk) = disk();
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(disk, dir.path()).unwrap();
        let (mut core, mut reader) = (store.for_core(), store.clone());
        let mut replication = core.get_log_reader().await;
        let entries: Vec<_> = (1..=3).map(|i| entry(i, 2)).collect();
        store
            .wal()
            .unwrap()
            .append(
                &entries
                    .iter()
                    .map(|e| {
                        (
                            e.log_id.index,
                            store.disk.seal(&log_aad(e.log_id.index), e).unwrap(),
                        )
                    })
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        for e in entries.clone() {
            store.cache.lock().unwrap().insert(e);
        }
        // Readers copy: the cache still holds everything afterwards.
        assert_eq!(reader.try_get_log_entries(1..=3).await.unwrap(), entries);
        assert_eq!(
            replication.try_get_log_entries(1..=3).await.unwrap(),
            entries
        );
        assert_eq!(store.cache.lock().unwrap().entries.len(), 3);
        // The core's reads (the entries it applies) move them out of the cache.
        assert_eq!(core.try_get_log_entries(1..=2).await.unwrap(), entries[..2]);
        assert_eq!(store.cache.lock().unwrap().entries.len(), 1);
        // What was taken is still in the log: read back from the file, the same entries.
        assert_eq!(
            replication.try_get_log_entries(1..=3).await.unwrap(),
            entries
        );
    }
}

#[cfg(test)]
mod snapshot_format {
    use std::collections::BTreeMap;

    use lockbox_types::{Meta, Secret, SecretSpec};
    use serde::Serialize;

    use super::*;

    /// The state's shape before format version 2, for writing a legacy snapshot.
    #[derive(Serialize)]
    struct LegacyState {
        cluster: Option<lockbox_types::Cluster>,
        nodes: BTreeMap<String, lockbox_types::Node>,
        secrets: BTreeMap<String, Secret>,
        services: BTreeMap<String, lockbox_types::Service>,
        tasks: BTreeMap<String, lockbox_types::Task>,
        networks: BTreeMap<String, lockbox_types::Network>,
        version: u64,
    }

    #[derive(Serialize)]
    struct LegacyPayload {
        last_applied: Option<LogId<NodeId>>,
        membership: StoredMembership<NodeId, BasicNode>,
        state: LegacyState,
    }

    fn secret(id: &str, name: &str) -> Secret {
        Secret {
            id: id.into(),
            meta: Meta {
                version: 7,
                ..Meta::default()
            },
            spec: SecretSpec {
                name: name.into(),
                labels: Default::default(),
                data: lockbox_crypto::SecretBytes::new(b"v".to_vec()),
                driver: None,
                templating: None,
            },
        }
    }

    #[test]
    fn a_snapshot_from_before_versions_is_upgraded() {
        let legacy = LegacyPayload {
            last_applied: None,
            membership: StoredMembership::default(),
            state: LegacyState {
                cluster: None,
                nodes: BTreeMap::new(),
                secrets: [("a".to_owned(), secret("a", "Alpha"))].into(),
                services: BTreeMap::new(),
                tasks: BTreeMap::new(),
                networks: BTreeMap::new(),
                version: 9,
            },
        };
        let bytes = postcard::to_allocvec(&legacy).unwrap();
        let p = SnapshotPayload::decode(&bytes).unwrap();
        assert_eq!(p.state.version, 9);
        assert_eq!(p.state.secrets["a"], secret("a", "Alpha"));
        // The name index is rebuilt, the new parts start empty.
        assert!(p.state.secret_by_name("alpha").is_some());
        assert!(p.state.access.users.is_empty() && p.state.keys.is_none());
    }

    fn sample_state(n: usize) -> State {
        let mut state = State::default();
        for i in 0..n {
            let mut s = secret(&format!("id{i}"), &format!("name{i}"));
            s.spec.labels.insert("k".into(), format!("v{i}"));
            state.secrets.insert(s.id.clone(), s);
        }
        state.version = 42;
        state.reindex();
        state
    }

    #[test]
    fn the_borrowed_snapshot_record_is_byte_identical_to_the_owned_one() {
        for n in [0, 1, 3, 200] {
            let state = sample_state(n);
            let last_applied = Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 77));
            let membership = StoredMembership::new(
                last_applied,
                openraft::Membership::new(
                    vec![[1u64].into()],
                    BTreeMap::from([(1u64, BasicNode { addr: "a:1".into() })]),
                ),
            );
            let meta = SnapshotMeta {
                last_log_id: last_applied,
                last_membership: membership.clone(),
                snapshot_id: "3-1-77-0".into(),
            };
            let owned = SnapshotPayload {
                last_applied,
                membership: membership.clone(),
                state: state.clone(),
            };
            let data = owned.encode().unwrap();
            let want = postcard::to_allocvec(&StoredSnapshot {
                meta: meta.clone(),
                data: data.clone(),
            })
            .unwrap();
            let payload = SnapshotPayloadRef {
                last_applied: &last_applied,
                membership: &membership,
                state: &state,
            };
            let record = SnapshotRecord::new(&meta, &payload).unwrap();
            let mut got = vec![0u8; record.len()];
            record.encode_into(&mut got).unwrap();
            assert_eq!(&got[..], &want[..], "{n} secrets");
            assert_eq!(&got[record.prefix.len()..], &data[..]);
            // A buffer of any other size is refused, never overrun or left half written.
            assert!(
                record
                    .encode_into(&mut vec![0u8; record.len() - 1])
                    .is_err()
            );
            assert!(
                record
                    .encode_into(&mut vec![0u8; record.len() + 1])
                    .is_err()
            );
            let back: StoredSnapshot = postcard::from_bytes(&got).unwrap();
            let mut p = SnapshotPayload::decode(&back.data).unwrap();
            p.state.reindex();
            assert_eq!(p.state, state);
        }
    }

    #[test]
    fn exact_encoding_matches_postcard() {
        let state = sample_state(50);
        let plain = encode_exact(b"xy", &state).unwrap();
        assert_eq!(plain.capacity(), plain.len());
        assert_eq!(&plain[..2], b"xy");
        assert_eq!(&plain[2..], &postcard::to_allocvec(&state).unwrap()[..]);
    }

    /// A snapshot payload holding one secret.
    fn one_secret_payload() -> SnapshotPayload {
        let mut state = State::default();
        state.secrets.insert("a".into(), secret("a", "x"));
        state.reindex();
        SnapshotPayload {
            last_applied: None,
            membership: StoredMembership::default(),
            state,
        }
    }

    #[test]
    fn versioned_round_trip_and_a_newer_format_is_refused() {
        let p = one_secret_payload();
        let bytes = p.encode().unwrap();
        assert!(bytes.starts_with(SNAPSHOT_MAGIC));
        let mut back = SnapshotPayload::decode(&bytes).unwrap();
        back.state.reindex(); // as the state machine does after loading
        assert_eq!(back.state, p.state);
        let mut newer = bytes.clone();
        newer[4..6].copy_from_slice(&(SNAPSHOT_VERSION + 1).to_le_bytes());
        let e = SnapshotPayload::decode(&newer).err().unwrap();
        assert!(e.contains("snapshot format 4 is newer"), "{e}");
        assert!(SnapshotPayload::decode(&bytes[..5]).is_err());
    }

    #[test]
    fn a_format_2_snapshot_is_upgraded() {
        let p = one_secret_payload();
        // Format 3 appended the node PKI state to the end of the payload: an empty one is
        // five zero bytes (no rotation, no certificates, no trust, no previous root and
        // cross-signed certificate).
        let bytes = p.encode().unwrap();
        assert_eq!(&bytes[bytes.len() - 5..], &[0, 0, 0, 0, 0]);
        let mut v2 = bytes[..bytes.len() - 5].to_vec();
        v2[4..6].copy_from_slice(&2u16.to_le_bytes());
        let mut back = SnapshotPayload::decode(&v2).unwrap();
        back.state.reindex();
        assert_eq!(back.state, p.state);
    }
}
