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

/// Publishes outbox entries, oldest first, removing each once acknowledged.
pub(super) async fn drain(shared: Arc<Shared>) {
    let mut backoff = Backoff::default();
    let (space, document) = (&shared.config.space, &shared.config.document);
    loop {
        stage!(shared.config.agent, "outbox: woken");
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
                backoff.wait().await;
                continue;
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
            end_round(&shared, None);
            shared.outbox_wake.notified().await;
            continue;
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
        let (memory, disk): (Vec<u64>, Vec<u64>) =
            acked.into_iter().partition(|&id| from_memory(id));
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
            refuse_all(&shared, reason);
        } else if let Some(e) = &failure {
            warn!(%space, %document, error = %e, "publishing failed; the outbox will retry");
        }
        let failed = failure.is_some();
        end_round(&shared, Some((n, failure)));
        if failed {
            backoff.wait().await;
        } else {
            backoff.reset();
        }
    }
}

/// Ends a round: counts the `published` entries and keeps the round's failure (for a round
/// that published), notes below which id every entry is acknowledged, then wakes the
/// waiting writers. The two outboxes are read under the replica's lock, as a compaction
/// moves one to the other, and once per round rather than by every waiting writer.
fn end_round(shared: &Shared, published: Option<(u64, Option<crate::log::Error>)>) {
    {
        let mut st = shared.lock();
        if let Some((n, failure)) = published {
            st.stats.published += n;
            st.publish_error = failure;
        }
        match shared.store.outbox_first() {
            Ok(on_disk) => {
                st.acked_below = [st.unstored.first(), on_disk]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(st.next_outbox);
            }
            // Left as it was: writers wait for a later round.
            Err(e) => warn!(error = %e, "cannot read the outbox"),
        }
    }
    shared.outbox_rounds.send_modify(|r| *r += 1);
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
