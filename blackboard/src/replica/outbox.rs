//! Publishing local changes: the outbox drain. Entries are published oldest first, in
//! batches, and removed once the log acknowledges them; a failed round is retried with
//! backoff, and its error kept for [`flush`](super::Replica::flush).

use std::sync::Arc;

use tracing::{debug, warn};

use super::Shared;
use crate::backoff::Backoff;

/// Publishes outbox entries, oldest first, removing each once acknowledged.
pub(super) async fn drain(shared: Arc<Shared>) {
    let mut backoff = Backoff::default();
    let (space, document) = (&shared.config.space, &shared.config.document);
    loop {
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
        if let Some(e) = &failure {
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
