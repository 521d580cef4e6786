//! The event log: where every change becomes an event with a position.
//!
//! [`EventLog`] is the I/O edge the replica talks to. Two implementations share one
//! conformance suite (`tests/it/conformance.rs`):
//! - [`JetStreamLog`]: NATS JetStream, the real, distributed log;
//! - [`EmbeddedLog`]: sled on disk plus in-process fan-out, for one process with no server.
//!
//! Semantics both keep:
//! - `publish` returns only once the event is durable, with its position (a number that
//!   increases with every event of the space); publishing the same `msg_id` again returns the
//!   original position with `duplicate: true` and adds nothing;
//! - `subscribe(.., from)` yields the document's events with position `>= from` in position
//!   order, then keeps yielding new ones as they are published, with no gap and no repeat;
//! - each event carries the log's own time of the append, which never goes backwards within
//!   a space (the wall-clock axis of history);
//! - a document's newest snapshot is stored beside its events, for any replica to fetch; a
//!   document may be trimmed below a snapshot, and the snapshot records how far;
//! - reading never creates anything: on a space nobody has published to, `subscribe` and
//!   `documents` answer with streams that stay empty until the first event is published
//!   (then go live), `last_seq` and `list` answer 0 and nothing, `snapshot_info` and
//!   `get_snapshot` answer `None`, and `trim` removes nothing. Only publishing (and
//!   `put_snapshot`) creates a space's stream and snapshot bucket. (The embedded log opens
//!   an empty sled tree for a space on first access, which no reader can tell from none.)

mod embedded;
mod jetstream;

use std::fmt;

use async_trait::async_trait;
use blackboard_schemas::{DocumentId, SpaceId};
use bytes::Bytes;
use futures::stream::BoxStream;

pub use embedded::EmbeddedLog;
pub use jetstream::{redact_url, Config as JetStreamConfig, JetStreamLog, Refusals};

/// The subject of a space's roster events.
pub fn roster_subject(space: &SpaceId) -> String {
    format!("{}.{space}.roster", blackboard_schemas::subject::PREFIX)
}

/// Which subject of a space an entry was published on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Topic {
    /// A document's changes (`bb.<space>.doc.<document>.ch`).
    #[default]
    Change,
    /// The space's roster (`bb.<space>.roster`, see [`crate::trust::roster`]).
    Roster,
}

/// An event as stored in the log: its position and its raw bytes (an encoded envelope, or
/// anything else someone published on the subject; the replica's decoder decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The subject it was published on.
    pub topic: Topic,
    /// The event's position: its stream sequence.
    pub seq: u64,
    /// When the log appended it, in milliseconds since the Unix epoch (the log's clock, not
    /// the writer's).
    pub time_ms: i64,
    /// The message payload.
    pub payload: Bytes,
}

/// The acknowledgement of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The event's position.
    pub seq: u64,
    /// Whether the log already had an event with this message id (and `seq` is that event's).
    pub duplicate: bool,
}

/// What the log holds about a document's stored snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapshotInfo {
    /// The snapshot covers the document's events up to and including this position.
    pub seq: u64,
    /// The document's events up to and including this position have been trimmed from the
    /// log (0: none). Never more than `seq`.
    pub trimmed_through: u64,
    /// The snapshot's size in bytes.
    pub size: u64,
}

/// A document of a space as [`EventLog::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentSummary {
    /// The document.
    pub document: DocumentId,
    /// How many of its events the log holds now (events trimmed below a snapshot are not
    /// counted).
    pub events: u64,
}

/// A live stream of a document's entries.
pub type EntryStream = BoxStream<'static, Result<Entry, Error>>;

/// A live stream of the documents of a space (see [`EventLog::documents`]).
pub type DocumentStream = BoxStream<'static, Result<DocumentId, Error>>;

/// Errors from an event log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log cannot be reached right now (no connection, timeout). Retrying later is safe:
    /// publishes are deduplicated by message id.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// The server refused access: a permissions or authorization violation. Retrying cannot
    /// fix it; the user or account needs the permission named in the message.
    #[error("event log refused access: {0}")]
    Denied(String),
    /// The server refused the connection's credentials (a wrong password, an unknown user
    /// or key). Permanent for the call; local writes stay queued for when the agent connects
    /// with credentials the server accepts.
    #[error("the NATS server refused the credentials: {0}")]
    Credentials(String),
    /// The log refused the request for a reason retrying cannot fix (a JetStream API error
    /// about configuration, names or limits).
    #[error("event log refused the request: {0}")]
    Refused(String),
    /// A stream exists under the expected name but is configured in a way that would break
    /// the log's guarantees.
    #[error("stream {stream} exists but {reason}")]
    StreamMismatch {
        /// The stream's name.
        stream: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The payload is larger than the log accepts.
    #[error("payload of {len} bytes exceeds the log's limit of {max} bytes")]
    TooLarge {
        /// The payload's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The log was closed.
    #[error("event log closed")]
    Closed,
    /// The embedded log's storage failed.
    #[error("embedded log storage: {0}")]
    Storage(#[from] sled::Error),
    /// The log answered something unexpected.
    #[error("event log protocol error: {0}")]
    Protocol(String),
}

/// The results of a batch whose `n` events all failed because of `first`: the first event
/// reports the cause, the others that they were not sent.
pub(crate) fn failed_batch(first: Error, n: usize) -> Vec<Result<Published, Error>> {
    let reason = first.to_string();
    std::iter::once(Err(first))
        .chain((1..n).map(|_| Err(not_sent(&reason))))
        .take(n)
        .collect()
}

/// The error of an event not sent because an earlier one of its batch failed.
pub(crate) fn not_sent(reason: &str) -> Error {
    Error::Unavailable(format!("not sent after an earlier failure: {reason}"))
}

impl Error {
    /// Whether retrying the same call later can succeed: true for `Unavailable` (timeouts,
    /// a lost connection, no responders while a server restarts or a cluster elects a
    /// leader); false for everything else (`Denied`, `Credentials`, `Refused`,
    /// `StreamMismatch`, ...), which the callers that retry report instead of retrying
    /// forever.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

/// Makes everything written to `db` durable, waiting on tokio's blocking pool.
///
/// Every flush in the project goes through here, never through sled's `flush_async`: in sled
/// 0.34 concurrent `flush_async` calls can wait forever (spacejam/sled#1308, fixed only on
/// sled's unreleased main branch). Two integration tests hung in CI that way; a stress run of
/// 50 tasks flushing one database hangs within a second with `flush_async` and never with
/// the blocking `flush`.
pub async fn flush_db(db: &sled::Db) -> sled::Result<()> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || db.flush().map(drop))
        .await
        .map_err(|e| {
            sled::Error::Io(std::io::Error::other(format!("the flush task failed: {e}")))
        })?
}

/// An append-only, per-space log of document events. See the module docs for the contract.
#[async_trait]
pub trait EventLog: Send + Sync + fmt::Debug + 'static {
    /// Appends `payload` as an event of `document`, deduplicated by `msg_id`, and returns once
    /// it is durable.
    async fn publish(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<Published, Error> {
        let mut results = self
            .publish_batch(space, document, vec![(msg_id.to_owned(), payload)])
            .await;
        results.pop().unwrap_or(Err(Error::Closed))
    }

    /// Publishes several events of `document` in order, so they take positions in that
    /// order, deduplicated by message id; returns one result per event once they are
    /// durable. After one fails the rest are not sent (they fail too), so a retry cannot put
    /// them out of order.
    async fn publish_batch(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        batch: Vec<(String, Bytes)>,
    ) -> Vec<Result<Published, Error>>;

    /// Streams `document`'s events from position `from` (1 is the beginning), then live.
    async fn subscribe(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        from: u64,
    ) -> Result<EntryStream, Error>;

    /// Appends `payload` as a roster event of `space` (`bb.<space>.roster`), deduplicated by
    /// `msg_id`, and returns once it is durable. Like a change, it creates the space's stream.
    async fn publish_roster(
        &self,
        space: &SpaceId,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<Published, Error>;

    /// Streams `document`'s events and `space`'s roster events together, in one position
    /// order, from position `from`, then live: a reader never sees a change before a roster
    /// event with a lower position (the trust verdict depends on it). Entries say which they
    /// are by their [`Topic`].
    async fn subscribe_with_roster(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        from: u64,
    ) -> Result<EntryStream, Error>;

    /// The roster events of `space` at positions below `below`, in order: what a replica
    /// starting at `below` (from a snapshot, say) folds first.
    async fn roster_events(&self, space: &SpaceId, below: u64) -> Result<Vec<Entry>, Error>;

    /// The space's last position now, and its documents: every document that has events,
    /// then each document again whenever an event arrives for it (so repeats are normal).
    async fn documents(&self, space: &SpaceId) -> Result<(u64, DocumentStream), Error>;

    /// The documents of `space` that have events on the log now, in name order. Unlike
    /// [`documents`](Self::documents) this is one answer, not a live stream, and it creates
    /// nothing: a space nobody wrote to has no documents.
    async fn list(&self, space: &SpaceId) -> Result<Vec<DocumentSummary>, Error>;

    /// The position of `document`'s last event (0 when it has none): a reader that has
    /// applied up to here has seen everything published before this call.
    async fn last_seq(&self, space: &SpaceId, document: &DocumentId) -> Result<u64, Error>;

    /// Stores `bytes` as `document`'s snapshot, replacing the one stored before. The caller
    /// makes sure `info.seq` does not go backwards and `info.trimmed_through` is kept.
    async fn put_snapshot(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        info: SnapshotInfo,
        bytes: Bytes,
    ) -> Result<(), Error>;

    /// What is known about `document`'s stored snapshot, without fetching it.
    async fn snapshot_info(
        &self,
        space: &SpaceId,
        document: &DocumentId,
    ) -> Result<Option<SnapshotInfo>, Error>;

    /// Fetches `document`'s stored snapshot.
    async fn get_snapshot(
        &self,
        space: &SpaceId,
        document: &DocumentId,
    ) -> Result<Option<(SnapshotInfo, Bytes)>, Error>;

    /// Removes `document`'s events at positions up to and including `through`; returns how
    /// many were removed. Other documents' events are untouched. Only call this once a
    /// snapshot with `trimmed_through >= through` is stored, so readers can recover.
    async fn trim(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        through: u64,
    ) -> Result<u64, Error>;
}
