//! Event history: who changed what, when and why; the document at any position; snapshots.
//!
//! Every replica keeps a **position index**: one [`Record`] per change it has seen on the
//! log, keyed by stream sequence, naming the change hash, the log's time, and the writer's
//! agent, clock and message. The index ties the three ways of naming a moment together, so
//! every history call takes an [`At`]: a stream sequence, a wall-clock time (the log's
//! clock, which never goes backwards within a space), or automerge heads.
//!
//! The state at sequence N is the state of a replica that applied exactly the events up to
//! N: the changes indexed at or below N, less any whose dependencies were not among them
//! (such a replica would still be holding those back). The automerge document keeps every
//! change, so the state at any position is rebuilt from the document itself; the index
//! only says which changes belong.
//!
//! [`Snapshot`]s carry the document and the index up to their position, so both survive
//! trimming the log below them.

mod query;
mod record;
mod snapshot;

use std::fmt;
use std::str::FromStr;

use automerge::ChangeHash;

pub use crate::apply::HeadTracker;
pub use query::{blame, blame_text, heads_after, touched_paths, Blame, BlameSpan, TextRun};
pub use record::Record;
pub use snapshot::{Snapshot, SnapshotSignature, SNAPSHOT_TAG};

use crate::doc::Path;

/// Errors specific to history queries and snapshots.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A position that names nothing this replica knows.
    #[error("unknown position: {0}")]
    UnknownPosition(String),
    /// A string that is not a position.
    #[error(
        "{0:?} is not a position: give a stream sequence (42), a time (2026-11-24T10:00:00Z), \
         or heads (64 hex digits, comma-separated)"
    )]
    BadPosition(String),
    /// Stored or received history bytes are unreadable.
    #[error("history data is corrupt: {0}")]
    Corrupt(String),
    /// An operation that needs a document with no history got one with history.
    #[error("{0}")]
    NotEmpty(String),
    /// The log holds no snapshot for this document.
    #[error("no snapshot is stored for this document")]
    NoSnapshot,
    /// The space's roster does not let this replica's key write snapshots: no replica would
    /// load one.
    #[error("{0}")]
    NotAllowed(String),
}

/// A moment in a document's history.
///
/// Parsed from a string by [`FromStr`]: digits are a stream sequence, 64-digit hex hashes
/// (comma-separated) are heads, anything else must be an RFC 3339 time.
///
/// ```
/// use blackboard::history::At;
/// assert_eq!("42".parse::<At>().unwrap(), At::Seq(42));
/// assert_eq!("2026-11-24T10:00:00Z".parse::<At>().unwrap(), At::Time(1_795_514_400_000));
/// assert!(matches!(format!("{}", "a".repeat(64)).parse::<At>().unwrap(), At::Heads(h) if h.len() == 1));
/// assert!("yesterday".parse::<At>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum At {
    /// After the event at this stream sequence (0: before anything).
    Seq(u64),
    /// After the last event the log appended at or before this time (milliseconds since
    /// the Unix epoch).
    Time(i64),
    /// At these automerge heads.
    Heads(Vec<ChangeHash>),
}

impl FromStr for At {
    type Err = HistoryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || HistoryError::BadPosition(s.to_owned());
        let t = s.trim();
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            return t.parse().map(At::Seq).map_err(|_| bad());
        }
        let parts: Vec<&str> = t.split(',').map(str::trim).collect();
        if parts
            .iter()
            .all(|p| p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return parts
                .iter()
                .map(|p| p.parse::<ChangeHash>().map_err(|_| bad()))
                .collect::<Result<_, _>>()
                .map(At::Heads);
        }
        let time = humantime::parse_rfc3339_weak(t).map_err(|_| bad())?;
        let ms = time
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| bad())?
            .as_millis();
        Ok(At::Time(i64::try_from(ms).map_err(|_| bad())?))
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Seq(n) => write!(f, "{n}"),
            At::Time(ms) => f.write_str(&format_time(*ms)),
            At::Heads(h) => {
                let hex: Vec<String> = h.iter().map(ToString::to_string).collect();
                f.write_str(&hex.join(","))
            }
        }
    }
}

/// Formats milliseconds since the epoch as RFC 3339 (UTC, milliseconds).
pub fn format_time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// One event of a document's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistoryEvent {
    /// What the log says about the change.
    #[serde(flatten)]
    pub record: Record,
    /// The document's heads after this event (and every event before it).
    #[serde(serialize_with = "hexes")]
    pub heads: Vec<ChangeHash>,
    /// The paths the change touched, as they were when it was made (for list and text
    /// edits, the list or text); empty for a rejected change.
    #[serde(serialize_with = "paths")]
    pub paths: Vec<Path>,
    /// Why the space's roster rejected the change this event carried (such events are
    /// listed only by `Replica::history_with_rejections`): its change is in no document and
    /// no position of the history, and `heads` do not move.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
}

/// Which events a history query returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only events after this position (exclusive); from the beginning when `None`.
    pub after: Option<At>,
    /// Only events up to this position (inclusive); to the end when `None`.
    pub until: Option<At>,
    /// Only events written by this agent.
    pub agent: Option<blackboard_schemas::AgentId>,
    /// Only events that touched a path matching this pattern (as a watch would match it).
    pub path: Option<crate::watch::Pattern>,
    /// At most this many events (the earliest ones).
    pub limit: Option<usize>,
}

pub(crate) fn hex<S: serde::Serializer>(h: &ChangeHash, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(h)
}

fn hexes<S: serde::Serializer>(h: &[ChangeHash], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(h.iter().map(ToString::to_string))
}

fn paths<S: serde::Serializer>(p: &[Path], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(p.iter().map(ToString::to_string))
}
