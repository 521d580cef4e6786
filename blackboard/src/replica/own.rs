//! This replica's own events on their way back from the log.
//!
//! Every change a replica writes comes back to it from the log, where it is a duplicate: the
//! document has it already. The full path for an event (decode the envelope, decode the
//! change and hash it, re-encode it to check it is canonical, verify a signature, judge it,
//! apply it as a duplicate) was about a third of the follow loop's CPU in the write and
//! propagation scenarios. A replica knows the exact bytes it published, so an event whose
//! payload is byte for byte one it published, still in its document, only needs indexing,
//! and without a lookup by hash: it is the change's first event (see the follow loop), so
//! a replica that only writes and follows never builds the index's hash map.
//!
//! Only while no roster is in force: with one, every event, this replica's own included, is
//! judged, so that all replicas reach the same verdicts.

use std::collections::HashMap;

use automerge::ChangeHash;
use blackboard_schemas::{AgentId, Provenance};

use super::write::LocalWrite;

use crate::codec::Signature;
use crate::history::Record;

/// The most own events remembered; past it the oldest half is forgotten (those events take
/// the full path, which is always correct).
const KEPT: usize = 4096;

/// What the index records about an own change, except what only the log knows.
#[derive(Debug, Clone)]
pub(super) struct OwnEvent {
    pub(super) hash: ChangeHash,
    pub(super) time_ms: i64,
    pub(super) agent: AgentId,
    pub(super) message: Option<String>,
    pub(super) signature: Signature,
    pub(super) provenance: Option<Provenance>,
    /// Insertion order, for forgetting the oldest.
    order: u64,
}

impl OwnEvent {
    /// Its index record at log position `seq`, appended at `logged_ms`.
    pub(super) fn record(self, seq: u64, logged_ms: i64) -> Record {
        Record {
            seq,
            hash: self.hash,
            logged_ms,
            time_ms: self.time_ms,
            agent: self.agent,
            message: self.message,
            signature: self.signature,
            provenance: self.provenance,
        }
    }
}

/// Own events published (or queued) and not yet read back, by their exact payload.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    events: HashMap<Vec<u8>, OwnEvent>,
    next: u64,
}

impl InFlight {
    /// Remembers the event this replica queued for `write`, written as `agent`, with the
    /// signature status its own stamp gives it.
    pub(super) fn queued(&mut self, write: &LocalWrite, agent: &AgentId, signature: &Signature) {
        if self.events.len() >= KEPT {
            let cut = self.next.saturating_sub(KEPT as u64 / 2);
            self.events.retain(|_, e| e.order >= cut);
        }
        self.next += 1;
        self.events.insert(
            write.payload.clone(),
            OwnEvent {
                hash: write.hash,
                time_ms: write.time_ms,
                agent: agent.clone(),
                message: write.message.clone(),
                signature: signature.clone(),
                provenance: write.provenance.clone(),
                order: self.next,
            },
        );
    }

    /// Whether `payload` is exactly one of this replica's own events still in flight.
    pub(super) fn contains(&self, payload: &[u8]) -> bool {
        !self.events.is_empty() && self.events.contains_key(payload)
    }

    /// The own event whose payload is exactly `payload`, forgotten as it is returned.
    pub(super) fn returned(&mut self, payload: &[u8]) -> Option<OwnEvent> {
        if self.events.is_empty() {
            return None;
        }
        self.events.remove(payload)
    }
}
