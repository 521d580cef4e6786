//! The engine's error type.

use crate::doc::DocError;
use crate::log;
use crate::store::StoreError;

/// Errors from replicas and the engine's public operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A change would make an event larger than the log accepts; the change was not made.
    #[error("change would make an event of {len} bytes, the limit is {max}; nothing was changed")]
    TooLarge {
        /// The encoded event's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The log refused local changes for a reason retrying cannot fix. A misconfigured
    /// stream (`Refused`, `StreamMismatch`): the changes stay in the outbox and publishing is
    /// retried, since fixing the stream lets them through. A permission the server denies
    /// (`log::Error::Denied`): the changes are taken out of the outbox (they will never be
    /// published; retrying for ever would only spam the server) and further writes to the
    /// document fail with [`Error::WriteDenied`].
    #[error("the log refuses this replica's changes: {0}")]
    Publish(String),
    /// The replica's key could not sign a change (a key without its seed, or not a user
    /// key); the change was not made.
    #[error("cannot sign the change, nothing was changed: {0}")]
    Sign(blackboard_schemas::SignatureError),
    /// A write to a document whose log has denied this agent's publishing (a permission the
    /// server refuses, such as a read-only agent's): nothing was changed. Reopen the replica
    /// once the permission is granted.
    #[error("this agent may not write to {0}")]
    WriteDenied(String),
    /// The space's roster does not allow this write (see [`crate::trust`]); every replica
    /// would reject it, so it was not made.
    #[error("the space's roster refuses this write: {0}; nothing was changed")]
    Untrusted(Box<crate::trust::Reason>),
    /// The replica was closed.
    #[error("replica closed")]
    Closed,
    /// A write under [`Durability::Log`](crate::replica::Durability::Log) was waiting for
    /// the log's acknowledgement when the replica was closed: the change is in the local
    /// outbox on disk, and is published when the replica is opened again.
    #[error(
        "replica closed before the log acknowledged the write; the change was saved in the \
         local outbox and is published when the replica is opened again"
    )]
    ClosedUnacknowledged,
    /// A document operation failed (bad path, wrong type, automerge error).
    #[error(transparent)]
    Doc(#[from] DocError),
    /// The event log failed.
    #[error(transparent)]
    Log(#[from] log::Error),
    /// Local storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A history query or snapshot failed.
    #[error(transparent)]
    History(#[from] crate::history::HistoryError),
    /// The caller's own code in a transaction (a `change` closure) gave up with its own
    /// error; the change was not made. The error is carried as it was, so the caller can
    /// take it back out with `downcast`.
    #[error(transparent)]
    Aborted(Box<dyn std::error::Error + Send + Sync>),
}

impl From<automerge::AutomergeError> for Error {
    fn from(e: automerge::AutomergeError) -> Self {
        Error::Doc(DocError::Automerge(e))
    }
}

impl From<crate::doc::PathError> for Error {
    fn from(e: crate::doc::PathError) -> Self {
        Error::Doc(DocError::Path(e))
    }
}
