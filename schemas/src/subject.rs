//! The subject scheme and stream naming.
//!
//! Every space has one JetStream stream, `BB_<space>`, holding the subjects `bb.<space>.>`.
//! A document's changes travel on `bb.<space>.doc.<document>.ch`. Keeping the space in both
//! the stream name and the subject lets an operator give each space its own retention,
//! replicas and permissions, and lets a consumer filter one document with a literal subject.

use crate::{DocumentId, SpaceId};

/// The first token of every Blackboard subject.
pub const PREFIX: &str = "bb";

/// The subject a document's change events are published on: `bb.<space>.doc.<document>.ch`.
///
/// ```
/// use blackboard_schemas::{subject, DocumentId, SpaceId};
/// let s = subject::changes(&SpaceId::new("team").unwrap(), &DocumentId::new("plan").unwrap());
/// assert_eq!(s, "bb.team.doc.plan.ch");
/// ```
pub fn changes(space: &SpaceId, document: &DocumentId) -> String {
    format!("{PREFIX}.{space}.doc.{document}.ch")
}

/// The wildcard covering every subject of a space: `bb.<space>.>`.
pub fn space_wildcard(space: &SpaceId) -> String {
    format!("{PREFIX}.{space}.>")
}

/// The wildcard covering every document's changes in a space: `bb.<space>.doc.*.ch`.
pub fn space_changes(space: &SpaceId) -> String {
    format!("{PREFIX}.{space}.doc.*.ch")
}

/// The JetStream object store bucket that holds a space's document snapshots:
/// `BB_SNAP_<space>`, one object per document, named after the document. Each object carries
/// metadata `seq` (the last event position it covers) and `trimmed_through` (how far the
/// document's events were trimmed from the stream; `0` when not at all).
///
/// ```
/// use blackboard_schemas::{subject, SpaceId};
/// assert_eq!(subject::snapshot_bucket(&SpaceId::new("team").unwrap()), "BB_SNAP_team");
/// ```
pub fn snapshot_bucket(space: &SpaceId) -> String {
    format!("BB_SNAP_{space}")
}

/// The JetStream stream that holds a space: `BB_<space>`.
///
/// ```
/// use blackboard_schemas::{subject, SpaceId};
/// assert_eq!(subject::stream_name(&SpaceId::new("team").unwrap()), "BB_team");
/// ```
pub fn stream_name(space: &SpaceId) -> String {
    format!("BB_{space}")
}

/// Splits a change subject back into its space and document, if it is one.
///
/// ```
/// use blackboard_schemas::subject;
/// let (space, doc) = subject::parse_changes("bb.team.doc.plan.ch").unwrap();
/// assert_eq!((space.as_str(), doc.as_str()), ("team", "plan"));
/// assert!(subject::parse_changes("bb.team.presence").is_none());
/// ```
pub fn parse_changes(subject: &str) -> Option<(SpaceId, DocumentId)> {
    let mut parts = subject.split('.');
    let (p, space, d, doc, ch) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if parts.next().is_some() || p != PREFIX || d != "doc" || ch != "ch" {
        return None;
    }
    Some((SpaceId::new(space).ok()?, DocumentId::new(doc).ok()?))
}

/// The JetStream KV bucket that holds a space's claims: `BB_CLAIMS_<space>`.
///
/// ```
/// use blackboard_schemas::{subject, SpaceId};
/// assert_eq!(subject::claims_bucket(&SpaceId::new("team").unwrap()), "BB_CLAIMS_team");
/// ```
pub fn claims_bucket(space: &SpaceId) -> String {
    format!("BB_CLAIMS_{space}")
}

/// The JetStream KV bucket that holds a space's presence: `BB_PRESENCE_<space>`.
///
/// ```
/// use blackboard_schemas::{subject, SpaceId};
/// assert_eq!(subject::presence_bucket(&SpaceId::new("team").unwrap()), "BB_PRESENCE_team");
/// ```
pub fn presence_bucket(space: &SpaceId) -> String {
    format!("BB_PRESENCE_{space}")
}
