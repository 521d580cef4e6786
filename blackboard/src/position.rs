//! Where a replica or a watcher stands in a document's history.
//!
//! The bottom of the engine's module graph: the store, watches, history and the replica all
//! name positions, so the type lives here, below all of them.

use automerge::ChangeHash;

/// Where a replica (or a watcher) stands: the last log position it applied and its
/// automerge heads.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// The last applied log position (stream sequence); 0 before any.
    pub seq: u64,
    /// The document's heads, sorted.
    pub heads: Vec<ChangeHash>,
}
