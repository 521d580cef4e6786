//! Local changes under [`Durability::Log`](super::Durability::Log): in the document, not on
//! local disk.
//!
//! Such a change waits here twice over:
//! - in the **queue** (the memory outbox) until the log acknowledges it, or it comes back
//!   from the log, whichever is first: an event read back proves the log has it, often
//!   before the acknowledgement is processed. The outbox task publishes it from here,
//!   beside the entries of the sled outbox, in one order of ids;
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

use std::collections::{HashMap, HashSet, VecDeque};

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
    /// Ids taken out of the queue because their event came back before their
    /// acknowledgement: already counted as published, so the acknowledgement is not.
    returned: HashSet<u64>,
    /// Set when an entry came back, until [`take_returned`](Self::take_returned).
    newly_returned: bool,
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

    /// Takes acknowledged entries `ids` (oldest first) out of the queue. Returns how many of
    /// them came back from the log first (counted as published then), and the ids that were
    /// in neither place: a compaction moved them to the sled outbox meanwhile, so they are
    /// removed there.
    pub(super) fn acknowledged(&mut self, ids: &[u64]) -> (usize, Vec<u64>) {
        let mut moved = Vec::new();
        let mut counted = 0;
        for &id in ids {
            // Acknowledgements come oldest first, so the entry is at the front.
            match self.queue.iter().position(|q| q.id == id) {
                Some(i) => {
                    self.queue.remove(i);
                }
                None if self.returned.remove(&id) => counted += 1,
                None => moved.push(id),
            }
        }
        // An entry that came back before an acknowledged later one will not be published
        // again (it left the queue), so its acknowledgement will not come.
        if let Some(&last) = ids.last() {
            self.returned.retain(|&id| id > last);
        }
        (counted, moved)
    }

    /// The change `hash` came back from the log: takes its entry out of the queue, if it is
    /// still there (the log has it, whether or not the acknowledgement has come), and
    /// returns whether it did, and its bytes if it was not yet stored (see
    /// [`stored`](Self::stored)).
    pub(super) fn returned(&mut self, hash: &ChangeHash) -> (bool, Option<Bytes>) {
        if self.changes.is_empty() && self.queue.is_empty() {
            return (false, None);
        }
        // Events come back oldest first, so the entry is at the front.
        let left = match self.queue.iter().position(|q| q.hash == *hash) {
            Some(i) => {
                let id = self.queue.remove(i).map(|q| q.id);
                self.returned.extend(id);
                self.newly_returned = true;
                true
            }
            None => false,
        };
        (left, self.stored(hash))
    }

    /// Whether an entry came back from the log since the last call.
    pub(super) fn take_returned(&mut self) -> bool {
        std::mem::take(&mut self.newly_returned)
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
        assert_eq!(u.acknowledged(&[1]), (0, Vec::<u64>::new()));
        assert_eq!(u.first(), Some(2));
        // A compaction moved the rest to sled while 2 was being published.
        assert_eq!(u.take_queue(), [(2, "m2".to_owned()), (3, "m3".to_owned())]);
        assert_eq!(u.acknowledged(&[2]), (0, vec![2]));
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

    #[test]
    fn an_entry_back_from_the_log_leaves_the_queue_and_its_acknowledgement_counts_once() {
        let mut u = Unstored::default();
        for n in 1..=3 {
            u.push(n as u64, &write(n));
        }
        // 2 comes back first: out of the queue, stored, noted once.
        let (left, change) = u.returned(&ChangeHash([2; 32]));
        assert!(left);
        assert_eq!(change, Some(Bytes::from(vec![2; 10])));
        assert!(u.take_returned());
        assert!(!u.take_returned());
        assert_eq!(u.first(), Some(1), "1 is still unacknowledged");
        assert_eq!(u.len(), 2);
        // The acknowledgements of 1 and 2: 2 was counted when it came back.
        assert_eq!(u.acknowledged(&[1, 2]), (1, Vec::<u64>::new()));
        // 3 is acknowledged first, then comes back: nothing left to take out.
        assert_eq!(u.acknowledged(&[3]), (0, Vec::<u64>::new()));
        let (left, change) = u.returned(&ChangeHash([3; 32]));
        assert!(!left);
        assert_eq!(change, Some(Bytes::from(vec![3; 10])));
        assert_eq!(u.len(), 0);
    }
}
