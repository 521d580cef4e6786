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
//! - `i` + position (u64, big-endian): the position index, one [`Record`] per change seen on
//!   the log, at the position of its first event;
//! - `x` + change hash: the position the change is indexed at.
//!
//! Every write that must stay consistent (a change and its outbox entry, a change and the
//! position it came from) goes in one atomic sled batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use blackboard_schemas::{AgentId, DocumentId, SpaceId};
use bytes::Bytes;

use crate::history::Record;
use crate::position::Position;

/// Errors of the replica store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("replica store: {0}")]
    Sled(#[from] sled::Error),
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
            self.batch.insert(&index_key(r.seq)[..], r.encode());
            self.batch
                .insert(&hash_key(&r.hash.0)[..], &r.seq.to_be_bytes());
        }
        self.events += 1;
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

fn index_key(seq: u64) -> [u8; 9] {
    let mut k = [b'i'; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn hash_key(hash: &[u8; 32]) -> [u8; 33] {
    let mut k = [b'x'; 33];
    k[1..].copy_from_slice(hash);
    k
}

fn outbox_key(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'o');
    k.extend_from_slice(&id.to_be_bytes());
    k
}

impl ReplicaStore {
    /// Opens (or creates) the tree of `agent`'s replica of `space`/`document` in `db`.
    pub fn open(
        db: &sled::Db,
        agent: &AgentId,
        space: &SpaceId,
        document: &DocumentId,
    ) -> Result<Self, StoreError> {
        let name = format!("replica/{agent}/{space}/{document}");
        Ok(Self {
            tree: db.open_tree(&name)?,
            db: db.clone(),
            name,
            group: Arc::default(),
        })
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

    /// Reads everything back.
    pub fn load(&self) -> Result<Loaded, StoreError> {
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
        let len = *v
            .first()
            .ok_or_else(|| self.corrupt(format!("outbox entry {id}")))? as usize;
        let msg_id = v
            .get(1..1 + len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| self.corrupt(format!("outbox entry {id} id")))?
            .to_owned();
        Ok(OutboxEntry {
            id,
            msg_id,
            payload: Bytes::copy_from_slice(&v[1 + len..]),
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
        for e in entries {
            // Message ids are a change hash (64 characters), or a hash and a document for a
            // fork's copies: well under 256 bytes.
            let id = &e.msg_id.as_bytes()[..e.msg_id.len().min(255)];
            let mut value = Vec::with_capacity(1 + id.len() + e.payload.len());
            value.push(id.len() as u8);
            value.extend_from_slice(id);
            value.extend_from_slice(e.payload);
            batch.insert(change_key(e.hash), e.change);
            batch.insert(outbox_key(e.outbox_id), value);
        }
        Ok(self.tree.apply_batch(batch)?)
    }

    /// Commits the writes of a run of log events in one atomic batch (not yet durable).
    pub fn commit_remote(&self, mut batch: RemoteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some((seq, changes)) = batch.changes {
            batch.batch.insert(&changes_key(seq)[..], changes);
        }
        Ok(self.tree.apply_batch(batch.batch)?)
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
        // A store that has indexed nothing yet (a replica starting from a snapshot) needs no
        // lookup per record: 100k lookups were a good part of a cold start.
        let indexed = self.tree.scan_prefix(b"x").next().is_some();
        for r in records {
            if indexed && self.tree.contains_key(hash_key(&r.hash.0))? {
                continue;
            }
            batch.insert(&index_key(r.seq)[..], r.encode());
            batch.insert(&hash_key(&r.hash.0)[..], &r.seq.to_be_bytes());
        }
        Ok(self.tree.apply_batch(batch)?)
    }

    /// The position change `hash` is indexed at, if it has been seen on the log.
    pub fn seq_of(&self, hash: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        match self.tree.get(hash_key(hash))? {
            Some(v) => Ok(Some(self.u64_at(&v, "index position")?)),
            None => Ok(None),
        }
    }

    /// The index record at position `seq`, if a change is indexed there.
    pub fn record(&self, seq: u64) -> Result<Option<Record>, StoreError> {
        match self.tree.get(index_key(seq))? {
            Some(v) => Ok(Some(self.decode_record(&v)?)),
            None => Ok(None),
        }
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
        let start = match range.start_bound() {
            Bound::Included(s) => index_key(*s),
            Bound::Excluded(s) => index_key(s.saturating_add(1)),
            Bound::Unbounded => index_key(0),
        };
        let end = match range.end_bound() {
            Bound::Included(e) => Bound::Included(index_key(*e)),
            Bound::Excluded(e) => Bound::Excluded(index_key(*e)),
            Bound::Unbounded => Bound::Included(index_key(u64::MAX)),
        };
        self.tree
            .range::<&[u8], _>((Bound::Included(&start[..]), end.as_ref().map(|k| &k[..])))
            .map(move |kv| {
                let (_, v) = kv?;
                self.decode_record(&v)
            })
    }

    fn decode_record(&self, v: &[u8]) -> Result<Record, StoreError> {
        Record::decode(v)
            .map(|(r, _)| r)
            .map_err(|e| self.corrupt(e.to_string()))
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
        for id in ids {
            batch.remove(outbox_key(id));
        }
        Ok(self.tree.apply_batch(batch)?)
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
        for k in self.tree.scan_prefix(b"c").keys() {
            let k = k?;
            let hash: [u8; 32] = k[1..].try_into().map_err(|_| self.corrupt("change key"))?;
            if folded(&hash) {
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
        flush_db(&self.db).await?;
        g.durable.fetch_max(covered, Ordering::SeqCst);
        Ok(())
    }
}

pub use crate::log::flush_db;

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

    #[test]
    fn a_malformed_run_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let s = store(&db);
        s.tree.insert(changes_key(5), &[1u8; 40][..]).unwrap();
        assert!(matches!(s.load(), Err(StoreError::Corrupt { .. })));
    }
}
