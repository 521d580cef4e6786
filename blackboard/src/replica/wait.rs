//! Waiting: for the log to acknowledge local changes, for changes or a position to
//! arrive, for a condition on the document. Every wait follows a `tokio::sync::watch`
//! counter the replica bumps; none polls.

use automerge::ChangeHash;

use super::Replica;
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
        let mut rounds = s.outbox_rounds.subscribe();
        loop {
            match s.store.outbox_first()? {
                Some(first) if first <= target => {}
                _ => return s.lock().denied_error().map_or(Ok(()), Err),
            }
            rounds.changed().await.map_err(|_| Error::Closed)?;
            let st = s.lock();
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
