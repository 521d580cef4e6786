//! The Blackboard agent SDK.
//!
//! An agent opens a [`Board`] (over NATS JetStream, or embedded in one process), opens named
//! documents in a space, changes and reads them. Every agent on the same document sees every
//! change; concurrent writes merge the same way everywhere (automerge), with no leader.
//! Writes are saved locally before they return, and reach the log as soon as it is reachable.
//! [`Doc::watch`] wakes an agent on the changes under a path pattern (`/tasks/*/status`),
//! live, from the beginning of the history, or durably across restarts; see
//! [`blackboard::watch`] for the guarantees. [`Board::claims`] gives leases on named
//! resources (one holder at a time, fencing tokens, expiry), and [`Board::presence`] shows who
//! is on a document or space.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use blackboard_client::Options;
//! use serde_json::json;
//!
//! let dir = tempfile::tempdir()?;
//! // Options::new("planner")?.connect("nats://localhost:4222") for the distributed log.
//! let board = Options::new("planner")?.store(dir.path()).embedded().await?;
//! let tasks = board.doc("team", "tasks")?;
//! tasks.put("/7", json!({"title": "write docs", "status": "open"})).await?;
//! tasks.splice_text("/notes", 0, 0, "started").await?;
//! tasks.flush().await?; // acknowledged by the log
//! assert_eq!(tasks.get("/7/status")?, Some(json!("open")));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

#![warn(missing_docs)]

mod board;
mod doc;
mod error;
mod options;
mod roster;
mod space_watch;

pub use blackboard::automerge;
pub use blackboard::claim::{Claim, ClaimError, ClaimEvent, ClaimEventKind, ClaimWatch, Claims};
/// A change's signature status (unsigned, verified by a key, invalid), as history, blame
/// and watch events report it.
pub use blackboard::codec::Signature;
/// JSON values in automerge transactions: `json::put(tx, &path, &value)` writes a JSON value
/// at a path inside a [`Doc::change`] closure, as [`Doc::put`] does.
pub use blackboard::doc::json;
pub use blackboard::doc::{diff_reading, Edit, PutMode};
pub use blackboard::doc::{DocError, Path};
pub use blackboard::history::{
    format_time, touched_paths, At, Blame, BlameSpan, Filter as HistoryFilter, HistoryEvent,
    Record, TextRun,
};
pub use blackboard::log::JetStreamConfig;
pub use blackboard::log::{DocumentSummary, SnapshotInfo};
pub use blackboard::presence::{
    Config as PresenceConfig, LeftReason, Member, Membership, Presence, PresenceError,
    PresenceEvent, PresenceWatch,
};
pub use blackboard::replica::Written;
pub use blackboard::replica::{
    Durability, Position, ReplayError, ReplayStep, SnapshotPolicy, Stats, Trimmed, View,
};
/// The wire contract: ids, the event envelope, subject and stream names.
pub use blackboard::schemas;
pub use blackboard::schemas::{AgentId, DocumentId, Provenance, SpaceId};
/// A space's roster and why a roster event is ignored ([`Board::roster`],
/// [`Board::publish_roster`]).
pub use blackboard::trust::{AgentEntry, Grant, Roster, RosterError};
pub use blackboard::watch::{
    ChangeEvent, Options as WatchOptions, Patch, PatchOp, Pattern, Start, Watch, WatchError,
};
/// The engine's error, which [`Error::Engine`] wraps. A [`Doc::change`] closure may return it;
/// [`EngineError::Aborted`] carries the closure's own error out of the transaction.
pub use blackboard::Error as EngineError;
/// The engine's replica behind a [`Doc`] ([`Doc::replica`]).
pub use blackboard::Replica;
pub use board::Board;
pub use doc::{Conflict, Doc};
pub use error::Error;
pub use options::Options;
pub use roster::{IgnoredRoster, RosterBody, RosterInForce};
pub use space_watch::SpaceWatch;
