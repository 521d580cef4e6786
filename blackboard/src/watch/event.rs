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
        // Most events concern a watch whole (a watch of the path a change wrote): one
        // clone of the event, not a clone and a second copy of its patches.
        let matching = self
            .patches
            .iter()
            .filter(|p| pattern.matches(&p.path))
            .count();
        if matching == 0 {
            return None;
        }
        if matching == self.patches.len() {
            return Some(self.clone());
        }
        let patches: Vec<Patch> = self
            .patches
            .iter()
            .filter(|p| pattern.matches(&p.path))
            .cloned()
            .collect();
        Some(ChangeEvent {
            document: self.document.clone(),
            change: self.change,
            seq: self.seq,
            position: self.position.clone(),
            agent: self.agent.clone(),
            time_ms: self.time_ms,
            message: self.message.clone(),
            signature: self.signature.clone(),
            provenance: self.provenance.clone(),
            local: self.local,
            patches,
            rejected: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::PatchOp;

    fn event(paths: &[&str]) -> ChangeEvent {
        ChangeEvent {
            document: "plan".parse().unwrap(),
            change: ChangeHash([7; 32]),
            seq: Some(9),
            position: Position {
                seq: 9,
                heads: vec![ChangeHash([7; 32])],
            },
            agent: "alice".parse().unwrap(),
            time_ms: 1_700_000_000_000,
            message: Some("why".into()),
            signature: Signature::Verified("UABC".into()),
            provenance: None,
            local: false,
            patches: paths
                .iter()
                .map(|p| Patch {
                    path: p.parse().unwrap(),
                    op: PatchOp::Put {
                        value: serde_json::json!(1),
                    },
                })
                .collect(),
            rejected: None,
        }
    }

    #[test]
    fn filtering_keeps_everything_but_the_patches_outside_the_pattern() {
        let whole = event(&["/tasks/1", "/notes/a"]);
        let tasks = whole.filtered(&"/tasks/**".parse().unwrap()).unwrap();
        assert_eq!(
            tasks,
            ChangeEvent {
                patches: vec![whole.patches[0].clone()],
                ..whole.clone()
            }
        );
        assert_eq!(whole.filtered(&"/**".parse().unwrap()), Some(whole.clone()));
        assert_eq!(whole.filtered(&"/other".parse().unwrap()), None);
    }
}
