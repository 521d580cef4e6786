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
    /// The log refused local changes for a reason retrying cannot fix; they stay in the
    /// outbox, and publishing is retried.
    #[error("the log refuses this replica's changes: {0}")]
    Publish(String),
    /// The space's roster does not allow this write (see [`crate::trust`]); every replica
    /// would reject it, so it was not made.
    #[error("the space's roster refuses this write: {0}; nothing was changed")]
    Untrusted(Box<crate::trust::Reason>),
    /// The replica was closed.
    #[error("replica closed")]
    Closed,
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
