//! A replica's local state in sled: its document, last applied position and outbox.
//!
//! One tree per replica, `replica/<agent>/<space>/<document>`, with these keys:
//! - `p`: the last applied log position (u64, big-endian);
//! - `s`: a snapshot of the document in automerge's save format (written on compaction);
//! - `c` + change hash (32 bytes): a change not yet folded into the snapshot;
//! - `b` + position (u64, big-endian): the changes that a run of log events brought, not yet
//!   folded into the snapshot, keyed by the position of the run's first new change: a list of
//!   (change hash, u32 big-endian length, change bytes). One key per applied run rather than
//!   one per change, because every sled insert costs about 10 µs (catch-up);
//! - `o` + counter (u64, big-endian): an outbox entry, a local change not yet acknowledged by
//!   the log, stored as the message id (one length byte, then the id) followed by the
//!   encoded envelope;
//! - `w` + name: the position of a durable watch (u64 big-endian sequence, then 32-byte heads);
//! - `I` + position (u64, big-endian): the position index, one [`Record`] per change seen on
//!   the log, at the position of its first event, stored in runs of consecutive records keyed
//!   by the first one's position (see `store/index.rs`); change hash → position is a map in memory,
//!   built from the runs when first needed. Stores written before runs had one `i` +
//!   position key per record and one `x` + change hash key per change; opening one moves
//!   them into runs, once, in one batch;
//! - `r` + change hash: a change the space's roster rejected (see [`crate::trust`]), so a
//!   restarted replica rejects its dependents with the same reason;
//! - `j` + position (u64, big-endian): a change event the space's roster rejected there, for
//!   history to list: its [`Record`] (as the index encodes one), then the reason (UTF-8);
//! - `n`: the highest outbox id ever written (u64, big-endian), which the outbox itself
//!   forgets once it is drained; the [seal](crate::seal) compares it with what it remembers.
//!
//! Sled's default tree holds the store's format number (`blackboard/format`, see
//! [`STORE_FORMAT`]); a later version's store is refused rather than misread.
//!
//! Stores opened with [`open_db`] are checked against their seal, a file beside the
//! database that remembers how far the store had got (see [`crate::seal`]); sled's own open and the
//! reads of that check run inside `catch_unwind`, because sled 0.34 panics on some damaged
//! files.
//!
//! Every write that must stay consistent (a change and its outbox entry, a change and the
//! position it came from) goes in one atomic sled batch.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use blackboard_schemas::{AgentId, DocumentId, SpaceId};
use bytes::Bytes;

use crate::history::Record;
use crate::position::Position;

use crate::seal::{ReplicaMarks, Seal};

mod format;
mod index;
mod outbox;
pub use format::STORE_FORMAT;
use index::{Positions, RunBuf};

/// Errors of the replica store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("replica store: {0}")]
    Sled(#[from] sled::Error),
    /// The store cannot be opened: sled refused or panicked on its files. Nothing was
    /// changed; the message says what the seal knew was in it and how to recover.
    #[error(
        "the local store {} is damaged and cannot be opened: {reason}. {known}To recover, move \
         the directory aside (keep it for inspection) and open again: a new store rebuilds from \
         the log whatever the log has.",
        path.display()
    )]
    Unopenable {
        /// The store directory.
        path: PathBuf,
        /// What sled said (or where it panicked).
        reason: String,
        /// What the seal says the store held that only it had (may be empty).
        known: String,
    },
    /// Reading the store panicked inside sled (damaged files).
    #[error("replica store {tree}: reading it failed inside sled (damaged files): {reason}")]
    Unreadable {
        /// The tree being read.
        tree: String,
        /// Where sled panicked.
        reason: String,
    },
    /// The store was written by a later version of Blackboard, in a format this version
    /// does not know (see [`STORE_FORMAT`]). Nothing was read or changed.
    #[error(
        "the local store {} was written by a newer Blackboard (store format {found}; this \
         version reads up to {supported}). Open it with that version, or move the directory \
         aside and open again: a new store rebuilds from the log whatever the log has.",
        path.display()
    )]
    NewerFormat {
        /// The store directory.
        path: PathBuf,
        /// The format number the store holds.
        found: u64,
        /// The highest format this version reads.
        supported: u64,
    },
    /// Something on disk is not what this version wrote.
    #[error("replica store {tree}: corrupt {what}")]
    Corrupt {
        /// The tree holding it.
        tree: String,
        /// What was unreadable.
        what: String,
    },
}

/// A local change waiting for the log's acknowledgement.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    /// Its place in the outbox.
    pub id: u64,
    /// The change hash, hex: the log's message id.
    pub msg_id: String,
    /// The encoded envelope.
    pub payload: Bytes,
}

/// A local change to record with [`ReplicaStore::add_locals`].
#[derive(Debug, Clone, Copy)]
pub struct LocalEntry<'a> {
    /// The change hash.
    pub hash: &'a [u8; 32],
    /// The change's bytes.
    pub change: &'a [u8],
    /// Its place in the outbox.
    pub outbox_id: u64,
    /// The log's message id for it.
    pub msg_id: &'a str,
    /// The encoded envelope.
    pub payload: &'a [u8],
}

/// What a replica had on disk when it was opened.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The last applied position (0: nothing applied yet).
    pub position: u64,
    /// The snapshot, if one was written.
    pub snapshot: Option<Vec<u8>>,
    /// Changes stored since the snapshot.
    pub changes: Vec<Vec<u8>>,
    /// The outbox, oldest first.
    pub outbox: Vec<OutboxEntry>,
}

/// One replica's tree. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReplicaStore {
    db: sled::Db,
    tree: sled::Tree,
    name: String,
    group: Arc<GroupCommit>,
    /// The seal of the store directory, if it was opened with [`open_db`].
    seal: Option<Arc<Seal>>,
    /// The highest outbox id written and the highest acknowledged, for the seal.
    written: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
    /// What opening found missing against the seal.
    loss: Option<Loss>,
    /// Change hash → indexed position (see `store/index.rs`).
    positions: Arc<Positions>,
}

/// Group commit: concurrent [`ReplicaStore::flush`] calls share fsyncs. Each call takes a
/// ticket after its writes; a flush that starts after ticket `n` was taken makes every write
/// of tickets up to `n` durable, so callers queued behind a running flush usually find their
/// ticket covered when it ends, and at most one more flush serves all of them.
#[derive(Debug, Default)]
struct GroupCommit {
    /// The last ticket handed out.
    tickets: AtomicU64,
    /// Every ticket up to this one is durable.
    durable: AtomicU64,
    /// One flush at a time (tokio's mutex is fair: callers are served in order).
    flushing: tokio::sync::Mutex<()>,
}

/// The writes recording a run of log events, committed as one atomic sled batch by
/// [`ReplicaStore::commit_remote`].
#[derive(Debug, Default)]
pub struct RemoteBatch {
    batch: sled::Batch,
    events: usize,
    /// The position of the first new change, and the encoded changes (see `b` keys).
    changes: Option<(u64, Vec<u8>)>,
    /// The index records of the run (see `I` keys).
    index: RunBuf,
}

impl RemoteBatch {
    /// Records that the log position `seq` was applied, with the change it carried (if it
    /// was new to this replica) and its index record (if it was not indexed yet).
    pub fn add(&mut self, seq: u64, change: Option<(&[u8; 32], &[u8])>, record: Option<&Record>) {
        self.batch.insert(POSITION, &seq.to_be_bytes());
        if let Some((hash, bytes)) = change {
            let (_, out) = self.changes.get_or_insert_with(|| (seq, Vec::new()));
            out.extend_from_slice(hash);
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        if let Some(r) = record {
            self.index.push(r);
        }
        self.events += 1;
    }

    /// Records that change `hash` was rejected (`true`) or is no longer (`false`: an
    /// accepted copy arrived).
    pub fn rejected(&mut self, hash: &[u8; 32], rejected: bool) {
        let mut k = [b'r'; 33];
        k[1..].copy_from_slice(hash);
        match rejected {
            true => self.batch.insert(&k[..], &[][..]),
            false => self.batch.remove(&k[..]),
        }
    }

    /// Records the rejection of the change event at `record.seq`, with `reason`, for
    /// history ([`ReplicaStore::rejections`]).
    pub fn rejection(&mut self, record: &Record, reason: &str) {
        let mut v = record.encode();
        v.extend_from_slice(reason.as_bytes());
        self.batch.insert(&rejection_key(record.seq)[..], v);
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }
}

/// The document as stored: the snapshot, if any, and the changes stored beside it.
pub type DocumentParts = (Option<Vec<u8>>, Vec<Vec<u8>>);

const POSITION: &[u8] = b"p";
const SNAPSHOT: &[u8] = b"s";
const WRITTEN: &[u8] = b"n";

fn change_key(hash: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(b'c');
    k.extend_from_slice(hash);
    k
}

fn changes_key(seq: u64) -> [u8; 9] {
    let mut k = [b'b'; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Splits the value of a `b` key into (hash, change bytes) pairs; `None` if malformed.
fn split_changes(mut v: &[u8]) -> Option<Vec<([u8; 32], &[u8])>> {
    let mut out = Vec::new();
    while !v.is_empty() {
        let hash: [u8; 32] = v.get(..32)?.try_into().ok()?;
        let len = u32::from_be_bytes(v.get(32..36)?.try_into().ok()?) as usize;
        let bytes = v.get(36..36usize.checked_add(len)?)?;
        out.push((hash, bytes));
        v = &v[36 + len..];
    }
    Some(out)
}

fn cursor_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(b'w');
    k.extend_from_slice(name.as_bytes());
    k
}

/// A record's key in stores written before runs (see [`ReplicaStore::migrate_index`]).
const OLD_RECORD: &[u8] = b"i";
/// A change's hash key in stores written before runs.
const OLD_HASH: &[u8] = b"x";

fn rejection_key(seq: u64) -> [u8; 9] {
    let mut k = [b'j'; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn outbox_key(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'o');
    k.extend_from_slice(&id.to_be_bytes());
    k
}

impl ReplicaStore {
    /// Opens (or creates) the tree of `agent`'s replica of `space`/`document` in `db`. If the
    /// database was opened with [`open_db`], the tree is compared with the seal: what it
    /// lacks is in [`loss`](Self::loss).
    pub fn open(
        db: &sled::Db,
        agent: &AgentId,
        space: &SpaceId,
        document: &DocumentId,
    ) -> Result<Self, StoreError> {
        let name = format!("replica/{agent}/{space}/{document}");
        let tree = guarded(&name, || db.open_tree(&name))??;
        let marks = guarded(&name, || replica_marks(&tree))??;
        let seal = Seal::of(db);
        let loss = seal
            .as_ref()
            .and_then(|s| s.found_replica(&name))
            .and_then(|found| Loss::of_replica(&name, found, marks));
        let store = Self {
            tree,
            db: db.clone(),
            name,
            group: Arc::default(),
            seal,
            written: Arc::new(AtomicU64::new(marks.written)),
            acked: Arc::new(AtomicU64::new(marks.acked)),
            loss,
            positions: Arc::default(),
        };
        guarded(&store.name, || store.migrate_index())??;
        Ok(store)
    }

    /// Moves the index of a store written before runs (one `i` key per record, one `x` key
    /// per change) into runs, in one atomic batch; nothing to do on a store without them.
    fn migrate_index(&self) -> Result<(), StoreError> {
        if self.tree.scan_prefix(OLD_RECORD).next().is_none() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let mut run = RunBuf::default();
        let mut in_run = 0;
        for kv in self.tree.scan_prefix(OLD_RECORD) {
            let (k, v) = kv?;
            run.push(&self.decode_record(&v)?);
            batch.remove(k);
            in_run += 1;
            if in_run == index::RUN_MAX {
                run.write(&mut batch);
                in_run = 0;
            }
        }
        run.write(&mut batch);
        for k in self.tree.scan_prefix(OLD_HASH).keys() {
            batch.remove(k?);
        }
        self.tree.apply_batch(batch)?;
        tracing::info!(tree = %self.name, records = run.indexed.len(), "moved the position index into runs");
        Ok(())
    }

    /// The highest outbox id ever written to this tree (0: none).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// What this tree lacked, when opened, of what its seal says it had held: `None` when it
    /// had everything (or there was no seal to compare with).
    pub fn loss(&self) -> Option<&Loss> {
        self.loss.as_ref()
    }

    fn corrupt(&self, what: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            tree: self.name.clone(),
            what: what.into(),
        }
    }

    fn u64_at(&self, bytes: &[u8], what: &str) -> Result<u64, StoreError> {
        let arr: [u8; 8] = bytes.try_into().map_err(|_| self.corrupt(what))?;
        Ok(u64::from_be_bytes(arr))
    }

    /// Reads everything back. A panic inside sled (damaged files) is an error.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        guarded(&self.name, || self.load_unguarded())?
    }

    fn load_unguarded(&self) -> Result<Loaded, StoreError> {
        let position = match self.tree.get(POSITION)? {
            Some(v) => self.u64_at(&v, "position")?,
            None => 0,
        };
        let snapshot = self.tree.get(SNAPSHOT)?.map(|v| v.to_vec());
        let changes = self.stored_changes()?;
        let outbox = self
            .tree
            .scan_prefix(b"o")
            .map(|kv| {
                let (k, v) = kv?;
                self.decode_outbox(&k, &v)
            })
            .collect::<Result<_, _>>()?;
        Ok(Loaded {
            position,
            snapshot,
            changes,
            outbox,
        })
    }

    fn decode_outbox(&self, k: &[u8], v: &[u8]) -> Result<OutboxEntry, StoreError> {
        let id = self.u64_at(&k[1..], "outbox key")?;
        let stored = outbox::decode(v).ok_or_else(|| self.corrupt(format!("outbox entry {id}")))?;
        let payload = match stored.body {
            outbox::Body::Whole(payload) => Bytes::copy_from_slice(payload),
            outbox::Body::Spliced { hash, at, rest } => {
                let change = self.tree.get(change_key(&hash))?.ok_or_else(|| {
                    self.corrupt(format!(
                        "outbox entry {id} (its change {} is missing)",
                        automerge::ChangeHash(hash)
                    ))
                })?;
                Bytes::from(outbox::splice(rest, at, &change))
            }
        };
        Ok(OutboxEntry {
            id,
            msg_id: stored.msg_id.to_owned(),
            payload,
        })
    }

    /// Records a local change and its outbox entry in one atomic batch. Not yet durable: call
    /// [`flush`](Self::flush) before telling anyone it is saved.
    pub fn add_local(
        &self,
        hash: &[u8; 32],
        change: &[u8],
        outbox_id: u64,
        msg_id: &str,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        self.add_locals([LocalEntry {
            hash,
            change,
            outbox_id,
            msg_id,
            payload,
        }])
    }

    /// Records several local changes and their outbox entries in one atomic batch.
    pub fn add_locals<'a>(
        &self,
        entries: impl IntoIterator<Item = LocalEntry<'a>>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut highest = 0;
        for e in entries {
            highest = highest.max(e.outbox_id);
            // The envelope without the change, which the change key holds (see `outbox`).
            let value = outbox::encode(e.msg_id, e.hash, e.change, e.payload);
            batch.insert(change_key(e.hash), e.change);
            batch.insert(outbox_key(e.outbox_id), value);
        }
        let mark = self.written.load(Ordering::SeqCst).max(highest);
        batch.insert(WRITTEN, &mark.to_be_bytes());
        self.tree.apply_batch(batch)?;
        // Raised only once sled has the entries, so a flush that reads it covers them.
        self.written.fetch_max(highest, Ordering::SeqCst);
        Ok(())
    }

    /// Commits the writes of a run of log events in one atomic batch (not yet durable).
    pub fn commit_remote(&self, mut batch: RemoteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some((seq, changes)) = batch.changes {
            batch.batch.insert(&changes_key(seq)[..], changes);
        }
        batch.index.write(&mut batch.batch);
        self.tree.apply_batch(batch.batch)?;
        self.positions.note(&batch.index.indexed);
        Ok(())
    }

    /// Takes in a snapshot fetched from the log, in one atomic batch: the saved document
    /// (when it replaces an empty one) or the changes it added, its index records, and the
    /// position moved to `seq` (never back).
    pub fn add_snapshot<'a>(
        &self,
        seq: u64,
        document: Option<&[u8]>,
        changes: impl IntoIterator<Item = (&'a [u8; 32], &'a [u8])>,
        records: &[Record],
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        if let Some(doc) = document {
            batch.insert(SNAPSHOT, doc);
        }
        let position = match self.tree.get(POSITION)? {
            Some(v) => self.u64_at(&v, "position")?,
            None => 0,
        };
        batch.insert(POSITION, &seq.max(position).to_be_bytes());
        for (hash, bytes) in changes {
            batch.insert(change_key(hash), bytes);
        }
        let indexed = self.add_records(&mut batch, records)?;
        self.tree.apply_batch(batch)?;
        self.positions.note(&indexed);
        Ok(())
    }

    /// Adds to `batch` the index runs for those of `records` (in position order) not indexed
    /// yet; returns what they index. A store that has indexed nothing yet (a replica starting
    /// from a snapshot) looks nothing up and writes runs of [`index::RUN_MAX`] records. A
    /// record that falls inside the span of existing runs (a snapshot merged into a running
    /// replica that missed it) is merged into the run that spans it, so runs never overlap.
    fn add_records(
        &self,
        batch: &mut sled::Batch,
        records: &[Record],
    ) -> Result<Vec<([u8; 32], u64)>, StoreError> {
        let last = self.last_record()?;
        let mut fresh = RunBuf::default();
        let mut in_run = 0;
        // Runs rewritten with merged records: run key → its records.
        let mut merged: std::collections::BTreeMap<u64, Vec<Record>> = Default::default();
        let mut indexed = Vec::new();
        for r in records {
            if last.is_some() && self.seq_of(&r.hash.0)?.is_some() {
                continue;
            }
            match last {
                Some(last) if r.seq <= last => {
                    let key = self.run_spanning(r.seq)?.unwrap_or(r.seq);
                    let run = match merged.entry(key) {
                        std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::btree_map::Entry::Vacant(v) => {
                            let stored = match self.tree.get(index::run_key(key))? {
                                Some(v) => self.decode_run(&v)?,
                                None => Vec::new(),
                            };
                            v.insert(stored)
                        }
                    };
                    if let Err(at) = run.binary_search_by_key(&r.seq, |x| x.seq) {
                        run.insert(at, r.clone());
                        indexed.push((r.hash.0, r.seq));
                    }
                }
                _ => {
                    fresh.push(r);
                    in_run += 1;
                    if in_run == index::RUN_MAX {
                        fresh.write(batch);
                        in_run = 0;
                    }
                }
            }
        }
        fresh.write(batch);
        for (key, run) in merged {
            let mut out = Vec::new();
            for r in &run {
                r.encode_into(&mut out);
            }
            // A run keyed after its new first record moves to that record's position.
            let first = run.first().map_or(key, |r| r.seq);
            if first != key {
                batch.remove(&index::run_key(key)[..]);
            }
            batch.insert(&index::run_key(first)[..], out);
        }
        indexed.extend(fresh.indexed);
        Ok(indexed)
    }

    /// The position of the last indexed record, if any.
    fn last_record(&self) -> Result<Option<u64>, StoreError> {
        let (lo, hi) = (index::run_key(0), index::run_key(u64::MAX));
        match self.tree.range(lo..=hi).next_back() {
            Some(kv) => Ok(self.decode_run(&kv?.1)?.last().map(|r| r.seq)),
            None => Ok(None),
        }
    }

    /// The key (first position) of the run whose span includes `seq`: the last run starting
    /// at or before it.
    fn run_spanning(&self, seq: u64) -> Result<Option<u64>, StoreError> {
        let (lo, hi) = (index::run_key(0), index::run_key(seq));
        match self.tree.range(lo..=hi).next_back() {
            Some(kv) => Ok(Some(self.u64_at(&kv?.0[1..], "index run key")?)),
            None => Ok(None),
        }
    }

    fn decode_run(&self, v: &[u8]) -> Result<Vec<Record>, StoreError> {
        index::decode_run(v).map_err(|e| self.corrupt(format!("index run: {e}")))
    }

    /// The position change `hash` is indexed at, if it has been seen on the log.
    /// The first call reads the whole index to build the map (see `store/index.rs`).
    pub fn seq_of(&self, hash: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        self.positions.get(hash, || {
            let mut map = std::collections::HashMap::new();
            for r in self.records(..) {
                let r = r?;
                map.entry(r.hash.0).or_insert(r.seq);
            }
            Ok(map)
        })
    }

    /// Whether the hash → position map has been built (tests of when it is needed).
    #[cfg(test)]
    pub(crate) fn positions_built(&self) -> bool {
        self.positions.built()
    }

    /// The index record at position `seq`, if a change is indexed there.
    pub fn record(&self, seq: u64) -> Result<Option<Record>, StoreError> {
        self.records(seq..=seq).next().transpose()
    }

    /// The index record of change `hash`, if it has been seen on the log.
    pub fn record_of(&self, hash: &[u8; 32]) -> Result<Option<Record>, StoreError> {
        match self.seq_of(hash)? {
            Some(seq) => self.record(seq),
            None => Ok(None),
        }
    }

    /// The index records at positions in `range`, in position order.
    pub fn records(
        &self,
        range: impl std::ops::RangeBounds<u64>,
    ) -> impl DoubleEndedIterator<Item = Result<Record, StoreError>> + '_ {
        use std::ops::Bound;
        let lo = match range.start_bound() {
            Bound::Included(s) => Some(*s),
            Bound::Excluded(s) => s.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let hi = match range.end_bound() {
            Bound::Included(e) => Some(*e),
            Bound::Excluded(e) => e.checked_sub(1),
            Bound::Unbounded => Some(u64::MAX),
        };
        let (lo, hi) = match (lo, hi) {
            (Some(lo), Some(hi)) if lo <= hi => (lo, hi),
            // An empty range: a range of runs that holds no key.
            _ => (1, 0),
        };
        // The run holding `lo` may start before it.
        let (first, failed) = match self.run_spanning(lo) {
            Ok(key) => (key.unwrap_or(lo), None),
            Err(e) => (lo, Some(e)),
        };
        let runs = (lo <= hi)
            .then(|| self.tree.range(index::run_key(first)..=index::run_key(hi)))
            .into_iter()
            .flatten();
        failed.map(Err).into_iter().chain(runs.flat_map(move |kv| {
            let records = kv
                .map_err(StoreError::from)
                .and_then(|(_, v)| self.decode_run(&v));
            match records {
                Ok(rs) => rs
                    .into_iter()
                    .filter(|r| (lo..=hi).contains(&r.seq))
                    .map(Ok)
                    .collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            }
        }))
    }

    fn decode_record(&self, v: &[u8]) -> Result<Record, StoreError> {
        Record::decode(v)
            .map(|(r, _)| r)
            .map_err(|e| self.corrupt(e.to_string()))
    }

    /// The change events the space's roster rejected at positions in `range` (the `j`
    /// keys), in position order: what the log said about each, and why.
    pub fn rejections(
        &self,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Vec<(Record, String)>, StoreError> {
        let (start, end) = (rejection_key(*range.start()), rejection_key(*range.end()));
        self.tree
            .range(&start[..]..=&end[..])
            .map(|kv| {
                let (_, v) = kv?;
                let (record, rest) = Record::decode(&v).map_err(|e| self.corrupt(e.to_string()))?;
                let reason = std::str::from_utf8(rest)
                    .map_err(|_| self.corrupt("a rejection's reason is not UTF-8"))?;
                Ok((record, reason.to_owned()))
            })
            .collect()
    }

    /// The changes the space's roster rejected (the `r` keys).
    pub fn rejected(&self) -> Result<Vec<[u8; 32]>, StoreError> {
        self.tree
            .scan_prefix(b"r")
            .keys()
            .map(|k| {
                let k = k?;
                k[1..].try_into().map_err(|_| StoreError::Corrupt {
                    tree: self.name.clone(),
                    what: "rejected change key".into(),
                })
            })
            .collect()
    }

    /// The stored position (what the replica had applied when last written).
    pub fn position(&self) -> Result<u64, StoreError> {
        match self.tree.get(POSITION)? {
            Some(v) => self.u64_at(&v, "position"),
            None => Ok(0),
        }
    }

    /// Every change stored beside the snapshot: the runs (`b`) first, then the single ones
    /// (`c`). In that order a concurrent compaction, which may move a run's held-back changes
    /// to `c` keys, cannot hide a change from the reader.
    fn stored_changes(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut changes = Vec::new();
        for kv in self.tree.scan_prefix(b"b") {
            let (k, v) = kv?;
            let run = split_changes(&v)
                .ok_or_else(|| self.corrupt(format!("stored changes {:?}", &k[1..])))?;
            changes.extend(run.into_iter().map(|(_, c)| c.to_vec()));
        }
        for kv in self.tree.scan_prefix(b"c") {
            changes.push(kv?.1.to_vec());
        }
        Ok(changes)
    }

    /// The document as stored: every individually stored change, then the snapshot. Read in
    /// that order, a change folded into the snapshot meanwhile is still found (compaction
    /// writes the snapshot and removes the changes in one batch), without locking writers.
    pub fn document_parts(&self) -> Result<DocumentParts, StoreError> {
        guarded(&self.name, || self.document_parts_unguarded())?
    }

    fn document_parts_unguarded(&self) -> Result<DocumentParts, StoreError> {
        let changes = self.stored_changes()?;
        let snapshot = self.tree.get(SNAPSHOT)?.map(|v| v.to_vec());
        Ok((snapshot, changes))
    }

    /// The outbox's oldest entries, up to `limit`.
    pub fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.tree
            .scan_prefix(b"o")
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                self.decode_outbox(&k, &v)
            })
            .collect()
    }

    /// The id of the oldest outbox entry, if any.
    pub fn outbox_first(&self) -> Result<Option<u64>, StoreError> {
        match self.tree.scan_prefix(b"o").next() {
            Some(kv) => Ok(Some(self.u64_at(&kv?.0[1..], "outbox key")?)),
            None => Ok(None),
        }
    }

    /// The number of entries in the outbox.
    pub fn outbox_len(&self) -> usize {
        self.tree.scan_prefix(b"o").count()
    }

    /// Removes acknowledged outbox entries.
    pub fn remove_outbox(&self, ids: impl IntoIterator<Item = u64>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut highest = 0;
        for id in ids {
            highest = highest.max(id);
            batch.remove(outbox_key(id));
        }
        self.tree.apply_batch(batch)?;
        self.acked.fetch_max(highest, Ordering::SeqCst);
        Ok(())
    }

    /// Replaces the stored changes that `folded` says are in `snapshot` with the snapshot,
    /// atomically. A run of changes (`b`) is removed whole; its changes not folded (held back
    /// for missing dependencies) stay, moved to `c` keys in the same batch.
    pub fn compact(
        &self,
        snapshot: &[u8],
        folded: impl Fn(&[u8; 32]) -> bool,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.insert(SNAPSHOT, snapshot);
        // An outbox entry is read back with its change key's bytes: keep those it names.
        let mut named = std::collections::HashSet::new();
        for v in self.tree.scan_prefix(b"o").values() {
            if let Some(outbox::Stored {
                body: outbox::Body::Spliced { hash, .. },
                ..
            }) = outbox::decode(&v?)
            {
                named.insert(hash);
            }
        }
        for k in self.tree.scan_prefix(b"c").keys() {
            let k = k?;
            let hash: [u8; 32] = k[1..].try_into().map_err(|_| self.corrupt("change key"))?;
            if folded(&hash) && !named.contains(&hash) {
                batch.remove(k);
            }
        }
        for kv in self.tree.scan_prefix(b"b") {
            let (k, v) = kv?;
            let run = split_changes(&v)
                .ok_or_else(|| self.corrupt(format!("stored changes {:?}", &k[1..])))?;
            for (hash, bytes) in run {
                if !folded(&hash) {
                    batch.insert(change_key(&hash), bytes);
                }
            }
            batch.remove(k);
        }
        Ok(self.tree.apply_batch(batch)?)
    }

    /// Saves the position of the durable watch `name`.
    pub fn put_cursor(&self, name: &str, position: &Position) -> Result<(), StoreError> {
        let mut v = Vec::with_capacity(8 + 32 * position.heads.len());
        v.extend_from_slice(&position.seq.to_be_bytes());
        for h in &position.heads {
            v.extend_from_slice(&h.0);
        }
        self.tree.insert(cursor_key(name), v)?;
        Ok(())
    }

    /// The saved position of the durable watch `name`, if any.
    pub fn get_cursor(&self, name: &str) -> Result<Option<Position>, StoreError> {
        let Some(v) = self.tree.get(cursor_key(name))? else {
            return Ok(None);
        };
        if v.len() < 8 || (v.len() - 8) % 32 != 0 {
            return Err(self.corrupt(format!("position of watch {name:?}")));
        }
        let seq = self.u64_at(&v[..8], "watch position")?;
        let heads = v[8..]
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                automerge::ChangeHash(h)
            })
            .collect();
        Ok(Some(Position { seq, heads }))
    }

    /// Makes every write so far durable (fsync). Concurrent calls share fsyncs (group
    /// commit): a call returns once a flush that started after it was made has completed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let g = &self.group;
        let ticket = g.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let _turn = g.flushing.lock().await;
        if g.durable.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        // Every ticket taken so far was taken after its writes, so this flush covers them.
        let covered = g.tickets.load(Ordering::SeqCst);
        // The seal's marks are taken before the fsync, so it never claims more than is durable.
        let seal = match &self.seal {
            Some(seal) => {
                let marks = ReplicaMarks {
                    written: self.written.load(Ordering::SeqCst),
                    acked: self.acked.load(Ordering::SeqCst),
                    position: self.position()?,
                };
                seal.set_replica(&self.name, marks);
                Some((seal, seal.snapshot()))
            }
            None => None,
        };
        flush_db(&self.db).await?;
        if let Some((seal, text)) = seal {
            seal.write(&text);
        }
        g.durable.fetch_max(covered, Ordering::SeqCst);
        Ok(())
    }
}

pub use crate::log::flush_db;

/// Runs a sled call that may panic on damaged files, turning the panic into an error.
fn guarded<T>(tree: &str, f: impl FnOnce() -> T) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| StoreError::Unreadable {
        tree: tree.to_owned(),
        reason: panic_text(&*p),
    })
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .map_or_else(|| "sled panicked".into(), |m| format!("sled panicked: {m}"))
}

fn u64_of(v: Option<sled::IVec>) -> u64 {
    v.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes)
}

/// How far a replica tree has got, as it is on disk.
fn replica_marks(tree: &sled::Tree) -> Result<ReplicaMarks, sled::Error> {
    let last_outbox = match tree.scan_prefix(b"o").keys().next_back() {
        Some(k) => u64_of(Some(sled::IVec::from(&k?[1..]))),
        None => 0,
    };
    let written = u64_of(tree.get(WRITTEN)?).max(last_outbox);
    // What was acknowledged is not on disk (acknowledged entries are removed); everything
    // before the oldest entry left was, or was never written.
    let acked = match tree.scan_prefix(b"o").keys().next() {
        Some(k) => u64_of(Some(sled::IVec::from(&k?[1..]))).saturating_sub(1),
        None => written,
    };
    Ok(ReplicaMarks {
        written,
        acked,
        position: u64_of(tree.get(POSITION)?),
    })
}

/// What a store lacked when it was opened, against what its seal remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// The sled tree: `replica/<agent>/<space>/<document>`, or `log/<space>` for an
    /// embedded log.
    pub tree: String,
    /// Local writes that had returned Ok but that the log had not acknowledged, now gone:
    /// their outbox ids (first, last). They were only in this store.
    pub unpublished: Option<(u64, u64)>,
    /// Log positions the replica had applied and no longer has: (first, last). The
    /// replica reads them from the log again (a log that still has them gives them back).
    pub reread: Option<(u64, u64)>,
    /// Events of an embedded log that are gone: (first, last). The store was the log, so
    /// they were the only copy.
    pub log_events: Option<(u64, u64)>,
}

impl Loss {
    fn of_replica(tree: &str, found: ReplicaMarks, now: ReplicaMarks) -> Option<Loss> {
        let from = now.written.max(found.acked) + 1;
        let unpublished = (found.written >= from).then_some((from, found.written));
        let reread = (found.position > now.position).then_some((now.position + 1, found.position));
        (unpublished.is_some() || reread.is_some()).then(|| Loss {
            tree: tree.to_owned(),
            unpublished,
            reread,
            log_events: None,
        })
    }

    /// How many local writes that had returned Ok are gone for good.
    pub fn unpublished_count(&self) -> u64 {
        self.unpublished.map_or(0, |(a, b)| b + 1 - a)
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some((a, b)) = self.unpublished {
            parts.push(format!(
                "{} local write(s) not yet acknowledged by the log are lost (outbox {a}..={b}): \
                 they were only in this store",
                b + 1 - a
            ));
        }
        if let Some((a, b)) = self.reread {
            parts.push(format!(
                "log positions {a}..={b} it had applied are gone from the store and are read \
                 from the log again"
            ));
        }
        if let Some((a, b)) = self.log_events {
            parts.push(format!(
                "the embedded log lost events {a}..={b} ({} event(s)): this store was the \
                 log, the only copy of them, so they cannot be recovered",
                b + 1 - a
            ));
        }
        write!(f, "{}: {}", self.tree, parts.join("; "))
    }
}

/// The documents of `agent` whose replica trees in `db` hold local changes the log has not
/// acknowledged (a non-empty outbox), so that opening a board can publish them without
/// waiting for someone to open those documents again.
pub fn unpublished(
    db: &sled::Db,
    agent: &AgentId,
) -> Result<Vec<(SpaceId, DocumentId)>, StoreError> {
    let prefix = format!("replica/{agent}/");
    let mut found = Vec::new();
    for name in db.tree_names() {
        let Some(rest) = std::str::from_utf8(&name)
            .ok()
            .and_then(|n| n.strip_prefix(prefix.as_str()))
        else {
            continue;
        };
        let Some((space, document)) = rest.split_once('/') else {
            continue;
        };
        let (Ok(space), Ok(document)) = (space.parse(), document.parse()) else {
            continue;
        };
        if db.open_tree(&name)?.scan_prefix(b"o").next().is_some() {
            found.push((space, document));
        }
    }
    Ok(found)
}

/// Opens the sled database of a store directory, guarded and checked: sled's open runs inside
/// `catch_unwind` (sled 0.34 panics on some damaged files), and what the database holds is
/// compared with its seal. The rule:
///
/// - a store sled cannot open (an error or a panic) is refused with
///   [`StoreError::Unopenable`], which says what the seal knew only this store held and how to
///   recover (move it aside; a new store rebuilds from the log);
/// - a store that opens but holds less than its seal remembers (sled recovers up to the first
///   damaged record and drops the rest) is opened: what it has is consistent, and the replica
///   reads from the log whatever the log has. What is gone is logged as an error, appended to
///   `blackboard.losses` in the directory, and reported by each replica opened on it
///   ([`ReplicaStore::loss`], `Stats::store_loss`). The seal is then rewritten, so a loss is
///   reported once;
/// - a store written by a later version, in a format this one does not read (its number
///   above [`STORE_FORMAT`]), is refused untouched with [`StoreError::NewerFormat`]. A store
///   with no format number (new, or older than the number) is given this version's.
pub fn open_db(dir: &Path) -> Result<sled::Db, StoreError> {
    open_db_with(dir, |dir| sled::open(dir))
}

/// [`open_db`] with `open` in place of `sled::open` (tests give one that panics as sled does).
fn open_db_with(
    dir: &Path,
    open: impl FnOnce(&Path) -> sled::Result<sled::Db>,
) -> Result<sled::Db, StoreError> {
    let seal = Seal::read(dir);
    let known = describe_found(&seal);
    let unopenable = |reason: String| StoreError::Unopenable {
        path: dir.to_owned(),
        reason,
        known: known.clone(),
    };
    let db = match catch_unwind(AssertUnwindSafe(|| open(dir))) {
        Ok(Ok(db)) => db,
        // A lock held by another process, a missing permission: not damage.
        Ok(Err(sled::Error::Io(e))) => return Err(StoreError::Sled(sled::Error::Io(e))),
        Ok(Err(e)) => return Err(unopenable(e.to_string())),
        Err(p) => return Err(unopenable(panic_text(&*p))),
    };
    // Before anything else reads the store, or the seal is compared: a later version's
    // store is refused untouched.
    match guarded("(default)", || format::check(&db, dir)) {
        Ok(Ok(())) => {}
        // A later version's store, or a refusal that is not damage (permissions).
        Ok(Err(e @ (StoreError::NewerFormat { .. } | StoreError::Sled(sled::Error::Io(_))))) => {
            return Err(e)
        }
        Ok(Err(e)) | Err(e) => return Err(unopenable(e.to_string())),
    }
    let losses = match guarded("(all)", || check(&db, &seal)) {
        Ok(Ok(losses)) => losses,
        Ok(Err(e)) => return Err(unopenable(e.to_string())),
        Err(e) => return Err(unopenable(e.to_string())),
    };
    if !losses.is_empty() {
        let report: Vec<String> = losses.iter().map(ToString::to_string).collect();
        let note = dir.join("blackboard.losses");
        tracing::error!(
            store = %dir.display(),
            losses = %report.join(" | "),
            record = %note.display(),
            "the local store is missing data it once held (damaged or truncated files); it was \
             opened with what it has"
        );
        record_losses(&note, &report);
        // Reported once: the seal now describes what the store has.
        seal.write(&seal.snapshot());
    }
    seal.attach(&db).map_err(StoreError::Sled)?;
    Ok(db)
}

/// Compares every tree the seal names with the database; updates the seal's marks to what
/// the database has where it has less.
fn check(db: &sled::Db, seal: &Seal) -> Result<Vec<Loss>, sled::Error> {
    let (replicas, logs) = seal.found_all();
    let mut losses = Vec::new();
    for (name, found) in replicas {
        let now = replica_marks(&db.open_tree(&name)?)?;
        if let Some(loss) = Loss::of_replica(&name, found, now) {
            seal.set_replica(&name, now);
            losses.push(loss);
        }
    }
    for (space, found) in logs {
        let now = u64_of(db.open_tree(format!("log/{space}"))?.get(b"s")?);
        if found > now {
            seal.set_log(&space, now);
            losses.push(Loss {
                tree: format!("log/{space}"),
                unpublished: None,
                reread: None,
                log_events: Some((now + 1, found)),
            });
        }
    }
    Ok(losses)
}

/// What the seal says only this store held, for the error of a store that cannot be opened.
fn describe_found(seal: &Seal) -> String {
    let (replicas, logs) = seal.found_all();
    let mut parts = Vec::new();
    for (tree, m) in replicas {
        if m.written > m.acked {
            parts.push(format!(
                "{} local write(s) of {tree} not yet acknowledged by the log (outbox {}..={})",
                m.written - m.acked,
                m.acked + 1,
                m.written
            ));
        }
    }
    for (space, last) in logs {
        parts.push(format!(
            "the embedded log of space {space}, events 1..={last}: this store is that log, \
             the only copy"
        ));
    }
    if parts.is_empty() {
        return String::new();
    }
    format!(
        "Its seal ({}) says it held what no other copy has: {}. ",
        seal.path().display(),
        parts.join("; ")
    )
}

fn record_losses(note: &Path, report: &[String]) {
    use std::io::Write as _;
    let when = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let result = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(note)
        .and_then(|mut f| {
            report
                .iter()
                .try_for_each(|line| writeln!(f, "{when} {line}"))
        });
    if let Err(e) = result {
        tracing::warn!(file = %note.display(), error = %e, "cannot record the store's losses");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(db: &sled::Db) -> ReplicaStore {
        ReplicaStore::open(
            db,
            &"a".parse().unwrap(),
            &"s".parse().unwrap(),
            &"d".parse().unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn an_outbox_entry_reads_back_its_envelope_whole_across_a_compaction_that_folds_its_change() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let s = store(&db);
        let change: Vec<u8> = (0..200u8).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&change);
        let payload = format!(r#"{{"v":1,"change":"{b64}","signature":null}}"#).into_bytes();
        s.add_local(&[4; 32], &change, 1, "m1", &payload).unwrap();
        let stored = s.tree.get(outbox_key(1)).unwrap().unwrap();
        assert!(
            stored.len() < payload.len(),
            "the outbox does not store the change again"
        );
        // Every change is folded into the snapshot, yet the outbox still names this one.
        s.compact(b"snapshot", |_| true).unwrap();
        let entries = s.outbox(10).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].id, entries[0].msg_id.as_str()), (1, "m1"));
        assert_eq!(entries[0].payload, payload, "the envelope as it was signed");
        assert_eq!(s.load().unwrap().outbox[0].payload, payload);
        // Once acknowledged, the next compaction lets the change go.
        s.remove_outbox([1]).unwrap();
        s.compact(b"snapshot", |_| true).unwrap();
        assert!(s.tree.get(change_key(&[4; 32])).unwrap().is_none());
    }

    #[test]
    fn an_outbox_entry_whose_change_is_gone_is_reported_as_corrupt_naming_it() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let s = store(&db);
        let change = b"the change".to_vec();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&change);
        let payload = format!(r#"{{"change":"{b64}"}}"#).into_bytes();
        s.add_local(&[5; 32], &change, 7, "m7", &payload).unwrap();
        s.tree.remove(change_key(&[5; 32])).unwrap();
        let err = s.outbox(10).unwrap_err().to_string();
        assert!(err.contains("outbox entry 7"), "{err}");
        assert!(err.contains(&"05".repeat(32)), "{err}");
    }

    #[test]
    fn a_run_of_remote_changes_is_one_key_and_compaction_keeps_what_was_not_folded() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let s = store(&db);
        // A change stored by an earlier version, one key per change, still loads.
        s.tree.insert(change_key(&[9; 32]), &b"old"[..]).unwrap();
        let mut batch = RemoteBatch::default();
        batch.add(1, Some((&[1; 32], b"one")), None);
        batch.add(2, None, None);
        batch.add(3, Some((&[3; 32], b"three")), None);
        s.commit_remote(batch).unwrap();
        assert_eq!(s.tree.scan_prefix(b"b").count(), 1);
        assert_eq!(s.position().unwrap(), 3);
        let loaded = s.load().unwrap();
        assert_eq!(loaded.changes, [&b"one"[..], b"three", b"old"]);
        // Change 3 is held back: the run goes, change 3 stays as a single change.
        s.compact(b"snap", |h| h != &[3; 32]).unwrap();
        let (snapshot, changes) = s.document_parts().unwrap();
        assert_eq!(snapshot.as_deref(), Some(&b"snap"[..]));
        assert_eq!(changes, [&b"three"[..]]);
        assert_eq!(s.tree.scan_prefix(b"b").count(), 0);
    }

    #[tokio::test]
    async fn a_store_sled_panics_on_is_refused_naming_what_only_it_held_and_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open_db(dir.path()).unwrap();
            let s = store(&db);
            for id in 1..=7 {
                let hash = [id as u8; 32];
                s.add_local(&hash, b"change", id, "msg", b"payload")
                    .unwrap();
            }
            s.remove_outbox([1, 2]).unwrap();
            s.flush().await.unwrap();
        }
        let err =
            open_db_with(dir.path(), |_| panic!("tried to serialize Uninitialized")).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Unopenable { .. }), "{text}");
        assert!(text.contains("tried to serialize Uninitialized"), "{text}");
        assert!(
            text.contains(
                "5 local write(s) of replica/a/s/d not yet acknowledged by the log (outbox 3..=7)"
            ),
            "{text}"
        );
        assert!(text.contains("move the directory aside"), "{text}");
        // Nothing was changed: the store opens as it was.
        let db = open_db(dir.path()).unwrap();
        assert_eq!(store(&db).outbox_len(), 5);
    }

    #[tokio::test]
    async fn a_store_that_opens_with_less_than_its_seal_remembers_reports_the_loss_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open_db(dir.path()).unwrap();
            let s = store(&db);
            s.add_local(&[1; 32], b"c", 1, "m", b"p").unwrap();
            s.flush().await.unwrap();
        }
        // The seal remembers more than the store has (as after sled dropped a damaged tail).
        let text = std::fs::read_to_string(dir.path().join(crate::seal::FILE)).unwrap();
        let body = text[..text.rfind("sum ").unwrap()].replace("written=1", "written=4");
        let sum = body.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        std::fs::write(
            dir.path().join(crate::seal::FILE),
            format!("{body}sum {sum:016x}\n"),
        )
        .unwrap();
        {
            let db = open_db(dir.path()).unwrap();
            let loss = store(&db).loss().cloned().expect("a loss is reported");
            assert_eq!(loss.unpublished, Some((2, 4)));
            assert_eq!(loss.unpublished_count(), 3);
            assert!(loss.to_string().contains("only in this store"), "{loss}");
        }
        let note = std::fs::read_to_string(dir.path().join("blackboard.losses")).unwrap();
        assert!(note.contains("outbox 2..=4"), "{note}");
        // Reported once: the seal now describes the store as it is.
        let db = open_db(dir.path()).unwrap();
        assert_eq!(store(&db).loss(), None);
    }

    #[test]
    fn a_new_store_records_this_versions_format_and_opens_again() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open_db(dir.path()).unwrap();
            assert_eq!(format::get(&db), Some(STORE_FORMAT.to_be_bytes().to_vec()));
        }
        let db = open_db(dir.path()).unwrap();
        assert_eq!(format::get(&db), Some(STORE_FORMAT.to_be_bytes().to_vec()));
    }

    /// Sets the format number of the store in `dir` with sled alone, as another version
    /// would have left it.
    fn set_format(dir: &Path, value: &[u8]) {
        let db = sled::open(dir).unwrap();
        format::set(&db, value);
        db.flush().unwrap();
    }

    #[tokio::test]
    async fn a_store_of_a_later_format_is_refused_untouched_naming_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open_db(dir.path()).unwrap();
            store(&db).add_local(&[1; 32], b"c", 1, "m", b"p").unwrap();
            store(&db).flush().await.unwrap();
        }
        let later = STORE_FORMAT + 1;
        set_format(dir.path(), &later.to_be_bytes());
        let seal = std::fs::read(dir.path().join(crate::seal::FILE)).unwrap();
        let err = open_db(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, StoreError::NewerFormat { found, supported, .. }
                if found == later && supported == STORE_FORMAT),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "store format {later}; this version reads up to {STORE_FORMAT}"
            )),
            "{text}"
        );
        assert!(text.contains("move the directory aside"), "{text}");
        // Untouched: the seal is as it was, and the number is still the later one.
        assert_eq!(
            std::fs::read(dir.path().join(crate::seal::FILE)).unwrap(),
            seal
        );
        {
            let db = sled::open(dir.path()).unwrap();
            assert_eq!(format::get(&db), Some(later.to_be_bytes().to_vec()));
        }
        // Put back to this version's number, the store opens with its outbox entry.
        set_format(dir.path(), &STORE_FORMAT.to_be_bytes());
        let db = open_db(dir.path()).unwrap();
        assert_eq!(store(&db).outbox_len(), 1);
    }

    #[tokio::test]
    async fn a_store_without_a_format_number_opens_and_is_given_this_versions() {
        let dir = tempfile::tempdir().unwrap();
        {
            // Written as by a version before format numbers: sled alone, no number.
            let db = sled::open(dir.path()).unwrap();
            store(&db).add_local(&[1; 32], b"c", 1, "m", b"p").unwrap();
            store(&db).flush().await.unwrap();
            assert_eq!(format::get(&db), None);
        }
        let db = open_db(dir.path()).unwrap();
        assert_eq!(store(&db).outbox_len(), 1);
        assert_eq!(format::get(&db), Some(STORE_FORMAT.to_be_bytes().to_vec()));
    }

    #[test]
    fn a_garbled_format_number_is_refused_as_damage() {
        let dir = tempfile::tempdir().unwrap();
        drop(open_db(dir.path()).unwrap());
        set_format(dir.path(), b"xyz");
        let err = open_db(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Unopenable { .. }), "{text}");
        assert!(text.contains("store format number: 3 bytes"), "{text}");
    }

    #[test]
    fn a_malformed_run_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let s = store(&db);
        s.tree.insert(changes_key(5), &[1u8; 40][..]).unwrap();
        assert!(matches!(s.load(), Err(StoreError::Corrupt { .. })));
    }

    fn rec(seq: u64, h: u8) -> Record {
        Record {
            seq,
            hash: automerge::ChangeHash([h; 32]),
            logged_ms: seq as i64,
            time_ms: seq as i64,
            agent: "a".parse().unwrap(),
            message: None,
            signature: crate::codec::Signature::Unsigned,
            provenance: None,
        }
    }

    fn seqs(s: &ReplicaStore, range: impl std::ops::RangeBounds<u64>) -> Vec<u64> {
        s.records(range).map(|r| r.unwrap().seq).collect()
    }

    #[test]
    fn an_applied_batch_indexes_its_records_as_one_run_readable_by_position_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let s = store(&db);
        let mut batch = RemoteBatch::default();
        batch.add(1, Some((&[1; 32], b"one")), Some(&rec(1, 1)));
        batch.add(2, None, None);
        batch.add(3, Some((&[3; 32], b"three")), Some(&rec(3, 3)));
        s.commit_remote(batch).unwrap();
        // Built from disk on first use...
        assert_eq!(s.seq_of(&[3; 32]).unwrap(), Some(3));
        let mut batch = RemoteBatch::default();
        batch.add(4, Some((&[4; 32], b"four")), Some(&rec(4, 4)));
        batch.add(6, Some((&[6; 32], b"six")), Some(&rec(6, 6)));
        s.commit_remote(batch).unwrap();
        // ...and kept up to date by commits after it.
        assert_eq!(s.seq_of(&[6; 32]).unwrap(), Some(6));
        assert_eq!(s.seq_of(&[2; 32]).unwrap(), None);
        assert_eq!(s.tree.scan_prefix([index::RUN]).count(), 2);
        assert_eq!(s.record(3).unwrap(), Some(rec(3, 3)));
        assert_eq!(s.record(2).unwrap(), None);
        assert_eq!(s.record(5).unwrap(), None);
        assert_eq!(s.record_of(&[4; 32]).unwrap(), Some(rec(4, 4)));
        assert_eq!(seqs(&s, ..), [1, 3, 4, 6]);
        assert_eq!(seqs(&s, 3..=4), [3, 4]);
        assert_eq!(seqs(&s, 2..6), [3, 4]);
        assert_eq!(seqs(&s, 5..), [6]);
        assert_eq!(seqs(&s, 7..), Vec::<u64>::new());
        assert_eq!(seqs(&s, 4..4), Vec::<u64>::new());
        let back: Vec<u64> = s.records(..=4).rev().map(|r| r.unwrap().seq).collect();
        assert_eq!(back, [4, 3, 1]);
        // A reopened store builds the map again from the runs.
        drop(s);
        let s = store(&db);
        assert_eq!(s.seq_of(&[4; 32]).unwrap(), Some(4));
    }

    #[test]
    fn a_store_with_one_key_per_record_is_moved_into_runs_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        {
            // As an earlier version wrote the index: `i` + position, `x` + hash.
            let tree = db.open_tree("replica/a/s/d").unwrap();
            for (seq, h) in [(2u64, 2u8), (5, 5), (9, 9)] {
                let mut k = b"i".to_vec();
                k.extend_from_slice(&seq.to_be_bytes());
                tree.insert(k, rec(seq, h).encode()).unwrap();
                let mut k = b"x".to_vec();
                k.extend_from_slice(&[h; 32]);
                tree.insert(k, &seq.to_be_bytes()).unwrap();
            }
        }
        let s = store(&db);
        assert_eq!(s.tree.scan_prefix(OLD_RECORD).count(), 0);
        assert_eq!(s.tree.scan_prefix(OLD_HASH).count(), 0);
        assert_eq!(seqs(&s, ..), [2, 5, 9]);
        assert_eq!(s.record(5).unwrap(), Some(rec(5, 5)));
        assert_eq!(s.seq_of(&[9; 32]).unwrap(), Some(9));
    }

    #[test]
    fn a_snapshot_merged_into_an_index_adds_only_what_it_lacks_and_runs_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let s = store(&db);
        let mut batch = RemoteBatch::default();
        batch.add(10, Some((&[10; 32], b"ten")), Some(&rec(10, 10)));
        batch.add(20, Some((&[20; 32], b"twenty")), Some(&rec(20, 20)));
        s.commit_remote(batch).unwrap();
        // The snapshot knows 5 (before every run), 10 (indexed already), 15 (inside the run
        // 10..20) and 30 (after it).
        let records = [rec(5, 5), rec(10, 10), rec(15, 15), rec(30, 30)];
        s.add_snapshot(30, None, [], &records).unwrap();
        assert_eq!(seqs(&s, ..), [5, 10, 15, 20, 30]);
        assert_eq!(seqs(&s, 11..=25), [15, 20]);
        assert_eq!(s.record(15).unwrap(), Some(rec(15, 15)));
        assert_eq!(s.seq_of(&[5; 32]).unwrap(), Some(5));
        assert_eq!(s.seq_of(&[30; 32]).unwrap(), Some(30));
        assert_eq!(s.position().unwrap(), 30);
        // Every run's records lie before the next run's first.
        let runs: Vec<Vec<u64>> = s
            .tree
            .scan_prefix([index::RUN])
            .map(|kv| {
                let (k, v) = kv.unwrap();
                let rs = index::decode_run(&v).unwrap();
                assert_eq!(rs[0].seq.to_be_bytes(), k[1..]);
                rs.iter().map(|r| r.seq).collect()
            })
            .collect();
        for pair in runs.windows(2) {
            assert!(pair[0].last() < pair[1].first(), "{runs:?}");
        }
    }

    #[test]
    fn a_malformed_index_run_is_reported_as_corrupt_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let s = store(&db);
        s.tree.insert(index::run_key(3), &[7u8; 20][..]).unwrap();
        let err = s.record(3).unwrap_err();
        assert!(err.to_string().contains("index run"), "{err}");
        assert!(s.seq_of(&[1; 32]).is_err());
    }
}
