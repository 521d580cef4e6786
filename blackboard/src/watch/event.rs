//! Change events: what a watch hands its caller.

use automerge::ChangeHash;
use blackboard_schemas::{AgentId, DocumentId, Provenance};
use serde::Serialize;

use super::Pattern;
use crate::codec::Signature;
use crate::doc::Patch;
use crate::position::Position;

/// One change to a document, with the patches it made to the watched paths.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeEvent {
    /// The document changed.
    pub document: DocumentId,
    /// The change's hash.
    pub change: ChangeHash,
    /// The change's log position; `None` for a local change not yet read back from the log.
    pub seq: Option<u64>,
    /// Where the watcher stands after this event: the last log position it covers and the
    /// document's heads. A watch started after this position resumes with the next event.
    pub position: Position,
    /// The agent that made the change.
    pub agent: AgentId,
    /// The change's wall-clock time at its writer, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Why the change was made, if the writer said.
    pub message: Option<String>,
    /// Whether the change's event was signed and verified, and by whom (JSON: `signer`,
    /// `verified`, and `signature_error` when invalid). Unsigned for a local change not
    /// yet read back from the log when this replica has no key.
    #[serde(flatten)]
    pub signature: Signature,
    /// Who acted through the agent, as its event declares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// Whether this agent made the change (through this replica or an earlier run of it).
    pub local: bool,
    /// What the change did, restricted to the watched paths.
    pub patches: Vec<Patch>,
    /// `Some(reason)`: a **rejected** change: the space's roster did not allow it (see
    /// [`crate::trust`]), so it was not applied and `patches` is empty. Delivered only to
    /// watches opened with [`Options::rejections`](super::Options::rejections).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
}

impl ChangeEvent {
    /// This event with only the patches that concern `pattern`; `None` when none do.
    pub fn filtered(&self, pattern: &Pattern) -> Option<ChangeEvent> {
        // A rejection touched nothing: it is delivered by opt-in, not by path.
        if self.rejected.is_some() {
            return None;
        }
        let patches: Vec<Patch> = self
            .patches
            .iter()
            .filter(|p| pattern.matches(&p.path))
            .cloned()
            .collect();
        if patches.is_empty() {
            return None;
        }
        Some(ChangeEvent {
            patches,
            ..self.clone()
        })
    }
}
