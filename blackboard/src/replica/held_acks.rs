//! Test-only: an event log whose publish acknowledgements are held back until released,
//! while the events themselves are on the log (and delivered) at once. It shows what a
//! write waits for: the log having the change, not the acknowledgement's arrival.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use crate::log::{
    DocumentStream, DocumentSummary, EmbeddedLog, Entry, EntryStream, Error, EventLog, Published,
    SnapshotInfo,
};
use blackboard_schemas::{DocumentId, SpaceId};

/// [`EmbeddedLog`] with held acknowledgements: `publish_batch` appends at once and answers
/// once [`release`](Self::release) is called.
#[derive(Debug)]
pub(crate) struct HeldAcks {
    inner: Arc<EmbeddedLog>,
    released: watch::Sender<bool>,
}

impl HeldAcks {
    pub(crate) fn new(inner: Arc<EmbeddedLog>) -> Self {
        Self {
            inner,
            released: watch::channel(false).0,
        }
    }

    /// Lets every held and later acknowledgement through.
    pub(crate) fn release(&self) {
        self.released.send_replace(true);
    }
}

#[async_trait]
impl EventLog for HeldAcks {
    async fn publish_batch(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        batch: Vec<(String, Bytes)>,
    ) -> Vec<Result<Published, Error>> {
        let results = self.inner.publish_batch(space, document, batch).await;
        let mut released = self.released.subscribe();
        // The sender lives as long as `self`.
        let _ = released.wait_for(|r| *r).await;
        results
    }

    async fn subscribe(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        from: u64,
    ) -> Result<EntryStream, Error> {
        self.inner.subscribe(space, document, from).await
    }

    async fn publish_roster(
        &self,
        space: &SpaceId,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<Published, Error> {
        self.inner.publish_roster(space, msg_id, payload).await
    }

    async fn subscribe_with_roster(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        from: u64,
    ) -> Result<EntryStream, Error> {
        self.inner
            .subscribe_with_roster(space, document, from)
            .await
    }

    async fn roster_events(&self, space: &SpaceId, below: u64) -> Result<Vec<Entry>, Error> {
        self.inner.roster_events(space, below).await
    }

    async fn documents(&self, space: &SpaceId) -> Result<(u64, DocumentStream), Error> {
        self.inner.documents(space).await
    }

    async fn list(&self, space: &SpaceId) -> Result<Vec<DocumentSummary>, Error> {
        self.inner.list(space).await
    }

    async fn last_seq(&self, space: &SpaceId, document: &DocumentId) -> Result<u64, Error> {
        self.inner.last_seq(space, document).await
    }

    async fn put_snapshot(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        info: SnapshotInfo,
        bytes: Bytes,
    ) -> Result<(), Error> {
        self.inner.put_snapshot(space, document, info, bytes).await
    }

    async fn snapshot_info(
        &self,
        space: &SpaceId,
        document: &DocumentId,
    ) -> Result<Option<SnapshotInfo>, Error> {
        self.inner.snapshot_info(space, document).await
    }

    async fn get_snapshot(
        &self,
        space: &SpaceId,
        document: &DocumentId,
    ) -> Result<Option<(SnapshotInfo, Bytes)>, Error> {
        self.inner.get_snapshot(space, document).await
    }

    async fn trim(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        through: u64,
    ) -> Result<u64, Error> {
        self.inner.trim(space, document, through).await
    }
}
