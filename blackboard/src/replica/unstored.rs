//! Local changes under [`Durability::Log`](super::Durability::Log): in the document, not on
//! local disk.
//!
//! Such a change waits here twice over:
//! - in the **queue** (the memory outbox) until the log acknowledges it. The outbox task
//!   publishes it from here, beside the entries of the sled outbox, in one order of ids;
//! - in **changes** until it comes back from the log, where the follow loop stores it with
//!   the other events read (one sled batch per run of events, not one per write).
//!
//! Invariants, all under the replica's lock:
//! - the document holds no change that is neither on disk, nor on the log, nor in the queue.
//!   Before a compaction saves the whole document as a snapshot, the queue is written to the
//!   sled outbox (see [`Shared::compact_past`](super::Shared)); a crash after it publishes
//!   those changes at the next opening, as for `Durability::Local`;
//! - a document reloaded from disk (after a write refused midway) gets `changes` applied
//!   again, so no change of this opening drops out of view.

use std::collections::{HashMap, VecDeque};

use automerge::ChangeHash;
use bytes::Bytes;

use super::write::LocalWrite;
use crate::store::{LocalEntry, OutboxEntry};

/// A queued change: what the sled outbox would hold for it.
#[derive(Debug, Clone)]
struct Queued {
    id: u64,
    hash: ChangeHash,
    change: Bytes,
    msg_id: String,
    payload: Bytes,
}

/// The memory outbox, and the changes not yet stored (see the module's doc).
#[derive(Debug, Default)]
pub(super) struct Unstored {
    queue: VecDeque<Queued>,
    changes: HashMap<ChangeHash, Bytes>,
}

impl Unstored {
    /// Queues `write` under outbox id `id`.
    pub(super) fn push(&mut self, id: u64, write: &LocalWrite) {
        let change = Bytes::copy_from_slice(&write.change);
        self.changes.insert(write.hash, change.clone());
        self.queue.push_back(Queued {
            id,
            hash: write.hash,
            change,
            msg_id: write.msg_id.clone(),
            payload: Bytes::copy_from_slice(&write.payload),
        });
    }

    /// The oldest queued entries, up to `limit`.
    pub(super) fn front(&self, limit: usize) -> Vec<OutboxEntry> {
        self.queue
            .iter()
            .take(limit)
            .map(|q| OutboxEntry {
                id: q.id,
                msg_id: q.msg_id.clone(),
                payload: q.payload.clone(),
            })
            .collect()
    }

    /// The id of the oldest queued entry.
    pub(super) fn first(&self) -> Option<u64> {
        self.queue.front().map(|q| q.id)
    }

    /// How many entries are queued.
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Takes acknowledged entries `ids` out of the queue. Returns the ids that were no longer
    /// in it: a compaction moved them to the sled outbox meanwhile, so they are removed there.
    pub(super) fn acknowledged(&mut self, ids: &[u64]) -> Vec<u64> {
        let mut moved = Vec::new();
        for &id in ids {
            // Acknowledgements come oldest first, so the entry is at the front.
            match self.queue.iter().position(|q| q.id == id) {
                Some(i) => {
                    self.queue.remove(i);
                }
                None => moved.push(id),
            }
        }
        moved
    }

    /// Empties the queue, oldest first (the entries go to the sled outbox, or are refused).
    pub(super) fn take_queue(&mut self) -> Vec<(u64, String)> {
        self.queue.drain(..).map(|q| (q.id, q.msg_id)).collect()
    }

    /// The queued entries as the sled outbox takes them.
    pub(super) fn entries(&self) -> impl Iterator<Item = LocalEntry<'_>> {
        self.queue.iter().map(|q| LocalEntry {
            hash: &q.hash.0,
            change: &q.change,
            outbox_id: q.id,
            msg_id: &q.msg_id,
            payload: &q.payload,
        })
    }

    /// The change `hash`'s bytes if it is one of these, forgotten: it is being stored now.
    pub(super) fn stored(&mut self, hash: &ChangeHash) -> Option<Bytes> {
        if self.changes.is_empty() {
            return None;
        }
        self.changes.remove(hash)
    }

    /// Every change not yet stored, to apply again to a document reloaded from disk.
    pub(super) fn changes(&self) -> impl Iterator<Item = &[u8]> {
        self.changes.values().map(|c| &c[..])
    }

    /// Forgets the changes not yet stored: a compaction's snapshot has them all.
    pub(super) fn all_stored(&mut self) {
        self.changes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(n: u8) -> LocalWrite {
        LocalWrite {
            hash: ChangeHash([n; 32]),
            change: vec![n; 10],
            msg_id: format!("m{n}"),
            payload: vec![n; 20],
            time_ms: 0,
            message: None,
            provenance: None,
        }
    }

    #[test]
    fn acknowledged_entries_leave_the_queue_and_moved_ones_are_named() {
        let mut u = Unstored::default();
        for n in 1..=3 {
            u.push(n as u64, &write(n));
        }
        assert_eq!(u.front(2).iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(u.acknowledged(&[1]), Vec::<u64>::new());
        assert_eq!(u.first(), Some(2));
        // A compaction moved the rest to sled while 2 was being published.
        assert_eq!(u.take_queue(), [(2, "m2".to_owned()), (3, "m3".to_owned())]);
        assert_eq!(u.acknowledged(&[2]), [2]);
        assert_eq!(u.len(), 0);
        // Every change stays unstored until it comes back from the log.
        assert_eq!(u.changes().count(), 3);
        assert_eq!(
            u.stored(&ChangeHash([2; 32])),
            Some(Bytes::from(vec![2; 10]))
        );
        assert_eq!(u.stored(&ChangeHash([2; 32])), None, "stored once");
        u.all_stored();
        assert_eq!(u.changes().count(), 0);
    }
}
