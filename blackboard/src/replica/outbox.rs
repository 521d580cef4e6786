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
        let batch = match shared.store.outbox(shared.config.outbox_batch) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "cannot read the outbox");
                backoff.wait().await;
                continue;
            }
        };
        if batch.is_empty() {
            shared.outbox_rounds.send_modify(|r| *r += 1);
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
        if let Err(e) = shared.store.remove_outbox(acked) {
            warn!(error = %e, "cannot update the outbox");
        }
        if let Some(crate::log::Error::Denied(reason)) = &failure {
            refuse_all(&shared, reason);
        } else if let Some(e) = &failure {
            warn!(%space, %document, error = %e, "publishing failed; the outbox will retry");
        }
        {
            let mut st = shared.lock();
            st.stats.published += n;
            st.publish_error = failure;
        }
        shared.outbox_rounds.send_modify(|r| *r += 1);
        if shared.lock().publish_error.is_some() {
            backoff.wait().await;
        } else {
            backoff.reset();
        }
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
    for entry in &entries {
        error!(
            %space, %document, msg_id = %entry.msg_id, outbox = entry.id,
            "the log refused this local change for good; it is taken out of the outbox and \
             will not be published"
        );
    }
    if let Err(e) = shared.store.remove_outbox(entries.iter().map(|e| e.id)) {
        warn!(error = %e, "cannot drop refused changes from the outbox");
        return;
    }
    st.stats.refused += entries.len() as u64;
    st.denied = Some(reason.to_owned());
}
