//! Waiting: for the log to acknowledge local changes, for changes or a position to
//! arrive, for a condition on the document. Every wait follows a `tokio::sync::watch`
//! counter the replica bumps; none polls.

use automerge::ChangeHash;

use super::{Replica, Shared};
use crate::doc::DocCore;
use crate::Error;

impl Replica {
    /// Waits until every local change made before this call is acknowledged by the log.
    /// While the log is unreachable this keeps waiting (the changes are safe on disk
    /// meanwhile); wrap it in `tokio::time::timeout` to bound the wait. If the log refuses
    /// the changes for a reason retrying cannot fix (say, a misconfigured stream), this
    /// returns that error; the outbox keeps the changes and keeps retrying. If the log denied
    /// the changes (a permission violation), this returns [`Error::Publish`] naming it: the
    /// changes were taken out of the outbox and will never be published.
    pub async fn flush(&self) -> Result<(), Error> {
        let s = self.shared();
        let target = s.lock().next_outbox - 1;
        s.acknowledged_through(target).await
    }

    /// Waits until the document contains every change in `heads` (for example another
    /// agent's heads after its flush).
    pub async fn wait_for(&self, heads: &[ChangeHash]) -> Result<(), Error> {
        let s = self.shared();
        let mut version = s.version.subscribe();
        loop {
            if s.lock().core.contains(heads) {
                return Ok(());
            }
            version.changed().await.map_err(|_| Error::Closed)?;
        }
    }

    /// Waits until the replica has applied the log up to position `seq`.
    pub async fn wait_for_position(&self, seq: u64) -> Result<(), Error> {
        let s = self.shared();
        let mut version = s.version.subscribe();
        while s.lock().position < seq {
            version.changed().await.map_err(|_| Error::Closed)?;
        }
        Ok(())
    }

    /// Waits until `f` holds for the document, re-checking after every change.
    pub async fn wait_until(&self, mut f: impl FnMut(&DocCore) -> bool) -> Result<(), Error> {
        let s = self.shared();
        let mut version = s.version.subscribe();
        loop {
            if f(&s.lock().core) {
                return Ok(());
            }
            version.changed().await.map_err(|_| Error::Closed)?;
        }
    }
}

impl Shared {
    /// Waits until the log has acknowledged every outbox entry up to id `target` (see
    /// [`Replica::flush`] for the errors), wherever it waits: the sled outbox or, under
    /// [`Durability::Log`](super::Durability::Log), the memory one. [`Error::Closed`] once the
    /// replica is closed with such an entry left.
    pub(super) async fn acknowledged_through(&self, target: u64) -> Result<(), Error> {
        let mut rounds = self.outbox_rounds.subscribe();
        let waits = |first: Option<u64>| first.is_some_and(|first| first <= target);
        loop {
            // The outbox's last round says whether `target` is acknowledged: no outbox is
            // read here (a sled scan per writer per round cost 6% of the CPU with 64
            // writers).
            let (acknowledged, closed, denied) = {
                let st = self.lock();
                let acknowledged = target < st.acked_below;
                let denied = acknowledged.then(|| st.denied_error()).flatten();
                (acknowledged, st.closed, denied)
            };
            if acknowledged {
                return denied.map_or(Ok(()), Err);
            }
            if closed {
                // No round may come: read the outboxes, memory first (as the drain does).
                let in_memory = waits(self.lock().unstored.first());
                if !in_memory && !waits(self.store.outbox_first()?) {
                    return self.lock().denied_error().map_or(Ok(()), Err);
                }
                return Err(Error::Closed);
            }
            rounds.changed().await.map_err(|_| Error::Closed)?;
            let st = self.lock();
            if let Some(e) = st.denied_error() {
                return Err(e);
            }
            if let Some(e) = &st.publish_error {
                if !e.is_transient() {
                    return Err(Error::Publish(e.to_string()));
                }
            }
        }
    }
}
