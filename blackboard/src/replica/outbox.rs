//! Publishing local changes: the outbox drain. Entries are published oldest first, in
//! batches, and removed once the log acknowledges them; a failed round is retried with
//! backoff, and its error kept for [`flush`](super::Replica::flush).
//!
//! A permission the server denies (`log::Error::Denied`, a read-only agent's publish) is
//! the one failure not retried: retrying cannot fix it, and an outbox retrying for ever
//! would hide the refusal and fill the server's log. The refused entries and every entry
//! after them (all of one document, so one subject: the server refuses them all) are taken
//! out of the outbox, counted in `Stats::refused`, logged by hash, and the replica refuses
//! further writes (`Error::WriteDenied`).

use std::sync::Arc;

use tracing::{debug, error, warn};

use super::Shared;
use crate::backoff::Backoff;

/// Publishes outbox entries, oldest first, removing each once acknowledged: a round
/// whenever woken, while there is something to publish. One round at a time, whoever runs
/// it (see [`publish_now`]).
pub(super) async fn drain(shared: Arc<Shared>) {
    let mut backoff = Backoff::default();
    loop {
        stage!(shared.config.agent, "outbox: woken");
        let round = {
            let _turn = shared.publishing.lock().await;
            round(&shared).await
        };
        match round {
            Round::Empty => shared.outbox_wake.notified().await,
            Round::Unreadable | Round::Published { failed: true, .. } => backoff.wait().await,
            Round::Published { failed: false, .. } => backoff.reset(),
        }
    }
}

/// Under [`Durability::Log`](super::Durability::Log), a writer publishes its change itself
/// when no round is in flight, instead of waking the drain: a write made outside the
/// runtime's worker threads (a `#[tokio::main]` task) would otherwise wait for another
/// thread to be woken before its change left. When a round is in flight, or more is left
/// after this one, or this one failed, or this future is dropped midway, the drain is woken
/// and carries on (with its backoff).
pub(super) async fn publish_now(shared: &Shared) {
    let Ok(turn) = shared.publishing.try_lock() else {
        shared.outbox_wake.notify_one();
        return;
    };
    let mut wake = WakeDrainOnDrop {
        shared,
        armed: true,
    };
    let round = round(shared).await;
    drop(turn);
    wake.armed = matches!(
        round,
        Round::Unreadable
            | Round::Published { failed: true, .. }
            | Round::Published { full: true, .. }
    );
}

/// Wakes the drain when dropped armed: a writer's round that did not end cleanly.
struct WakeDrainOnDrop<'a> {
    shared: &'a Shared,
    armed: bool,
}

impl Drop for WakeDrainOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.outbox_wake.notify_one();
        }
    }
}

/// How a round of publishing ended.
enum Round {
    /// Nothing to publish.
    Empty,
    /// The outbox could not be read.
    Unreadable,
    /// A batch was published: `failed` if an entry of it was not acknowledged, `full` if it
    /// was as large as a batch may be (more may be waiting).
    Published { failed: bool, full: bool },
}

/// One round: the oldest entries (up to `outbox_batch`), published in order, removed once
/// acknowledged. The caller holds `publishing`.
async fn round(shared: &Shared) -> Round {
    let (space, document) = (&shared.config.space, &shared.config.document);
    let limit = shared.config.outbox_batch;
    // Under `Durability::Log`, the memory outbox too (see `unstored`), in one order of
    // ids with the sled outbox. Read first: a compaction moves the whole memory outbox
    // to sled, so reading sled second finds any entry moved in between (and both reads
    // may hold it: kept once), while reading it first could miss moved entries and
    // publish newer ones before them.
    let in_memory = shared.lock().unstored.front(limit);
    let on_disk = match shared.store.outbox(limit) {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "cannot read the outbox");
            return Round::Unreadable;
        }
    };
    let from_memory = |id: u64| in_memory.iter().any(|e| e.id == id);
    let batch = if in_memory.is_empty() {
        on_disk
    } else {
        let mut both: Vec<_> = in_memory.iter().cloned().chain(on_disk).collect();
        both.sort_by_key(|e| e.id);
        both.dedup_by_key(|e| e.id);
        both.truncate(limit);
        both
    };
    if batch.is_empty() {
        shared.outbox_rounds.send_modify(|r| *r += 1);
        return Round::Empty;
    }
    // Publish the batch in order (positions follow the order the changes were made),
    // awaiting the acknowledgements together: a batch costs about one round trip.
    let results = shared
        .log
        .publish_batch(
            space,
            document,
            batch
                .iter()
                .map(|e| (e.msg_id.clone(), e.payload.clone()))
                .collect(),
        )
        .await;
    stage!(shared.config.agent, "outbox: acknowledged");
    let mut acked = Vec::new();
    let mut failure = None;
    for (entry, result) in batch.iter().zip(results) {
        match result {
            Ok(p) => {
                debug!(seq = p.seq, duplicate = p.duplicate, msg_id = %entry.msg_id, "published");
                acked.push(entry.id);
            }
            // The first failure is the cause; later ones were not sent because of it.
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    let n = acked.len() as u64;
    let (memory, disk): (Vec<u64>, Vec<u64>) = acked.into_iter().partition(|&id| from_memory(id));
    if !disk.is_empty() {
        if let Err(e) = shared.store.remove_outbox(disk) {
            warn!(error = %e, "cannot update the outbox");
        }
    }
    if !memory.is_empty() {
        // Under the lock, as a compaction moving the memory outbox to sled is.
        let mut st = shared.lock();
        let moved = st.unstored.acknowledged(&memory);
        if !moved.is_empty() {
            if let Err(e) = shared.store.remove_outbox(moved) {
                warn!(error = %e, "cannot update the outbox");
            }
        }
    }
    if let Some(crate::log::Error::Denied(reason)) = &failure {
        refuse_all(shared, reason);
    } else if let Some(e) = &failure {
        warn!(%space, %document, error = %e, "publishing failed; the outbox will retry");
    }
    let failed = failure.is_some();
    {
        let mut st = shared.lock();
        st.stats.published += n;
        st.publish_error = failure;
    }
    shared.outbox_rounds.send_modify(|r| *r += 1);
    Round::Published {
        failed,
        full: batch.len() == limit,
    }
}

/// Takes every entry left in the outbox out of it, unpublished, after the log denied this
/// replica's publishing: the server refuses the document's subject, so every one would be
/// refused. Each is logged by hash (the change stays in this replica's copy of the
/// document), counted in `Stats::refused`, and further writes are refused.
fn refuse_all(shared: &Shared, reason: &str) {
    let (space, document) = (&shared.config.space, &shared.config.document);
    // Under the lock: a write storing entries at the same time either lands before (and is
    // refused here) or sees `denied` and is not made.
    let mut st = shared.lock();
    let entries = match shared.store.outbox(usize::MAX) {
        Ok(entries) => entries,
        Err(e) => {
            warn!(error = %e, "cannot read the outbox to drop refused changes");
            return;
        }
    };
    if let Err(e) = shared.store.remove_outbox(entries.iter().map(|e| e.id)) {
        warn!(error = %e, "cannot drop refused changes from the outbox");
        return;
    }
    let mut refused: Vec<(u64, String)> = entries.into_iter().map(|e| (e.id, e.msg_id)).collect();
    // Under `Durability::Log`, the memory outbox's too.
    refused.extend(st.unstored.take_queue());
    for (id, msg_id) in &refused {
        error!(
            %space, %document, %msg_id, outbox = id,
            "the log refused this local change for good; it is taken out of the outbox and \
             will not be published"
        );
    }
    st.stats.refused += refused.len() as u64;
    st.denied = Some(reason.to_owned());
}
