//! Stale-read protection: did another agent change what a write touches after the position
//! its author read at?
//!
//! The replica's history records, for every event, the paths its change touched. A write
//! that passes `read_at` is checked against the events after that position: an event of
//! another agent conflicts when one of its paths and one of the written paths is a prefix of
//! the other (a write to `/tasks/3/status` conflicts with a change of `/tasks/3`, and with a
//! change of `/tasks/3/status/note`). The write still merges (automerge merges it); the
//! answer names who changed what, so the model can re-read and reconsider.

use blackboard_client::{AgentId, At, HistoryFilter as Filter, Path, Replica};
use serde::Serialize;

/// A change by another agent, after the caller's read, to a path the write touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleChange {
    /// The agent that made it.
    pub agent: String,
    /// Its log position.
    pub seq: u64,
    /// The paths it touched that overlap the write.
    pub paths: Vec<String>,
    /// Why it was made, if its writer said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Whether `a` is a prefix of `b` or `b` of `a`, segment by segment.
pub fn overlaps(a: &Path, b: &Path) -> bool {
    let (a, b) = (a.segments(), b.segments());
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// The changes by agents other than `me`, after position `read_at`, that touched a path
/// overlapping one of `written`. The replica must have caught up first.
pub fn check(
    replica: &Replica,
    read_at: u64,
    written: &[Path],
    me: &AgentId,
) -> Result<Vec<StaleChange>, blackboard_client::EngineError> {
    if read_at >= replica.position().seq {
        // Nothing after the read (or a position from the future): nothing to warn about.
        return Ok(Vec::new());
    }
    // Only the events after the read have their touched paths worked out.
    let events = replica.history(&Filter {
        after: Some(At::Seq(read_at)),
        ..Filter::default()
    })?;
    Ok(events
        .into_iter()
        .filter(|e| e.record.seq > read_at && e.record.agent != *me)
        .filter_map(|e| {
            let paths: Vec<String> = e
                .paths
                .iter()
                .filter(|p| written.iter().any(|w| overlaps(w, p)))
                .map(ToString::to_string)
                .collect();
            (!paths.is_empty()).then(|| StaleChange {
                agent: e.record.agent.to_string(),
                seq: e.record.seq,
                paths,
                reason: e.record.message,
            })
        })
        .collect())
}

/// The warning a model reads first in a write's answer.
pub fn warning(read_at: u64, changes: &[StaleChange]) -> String {
    let parts: Vec<String> = changes
        .iter()
        .map(|c| {
            format!(
                "{} changed {} at position {}{}",
                c.agent,
                c.paths.join(", "),
                c.seq,
                c.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    format!(
        "STALE READ: you read at position {read_at}, but since then {}. Your write was \
         merged anyway; read the document again and check that it still makes sense.",
        parts.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        s.parse().unwrap()
    }

    #[test]
    fn paths_overlap_when_one_is_a_prefix_of_the_other() {
        assert!(overlaps(&p("/tasks/3"), &p("/tasks/3/status")));
        assert!(overlaps(&p("/tasks/3/status"), &p("/tasks/3")));
        assert!(overlaps(&p("/tasks/3"), &p("/tasks/3")));
        assert!(overlaps(&p("/"), &p("/anything")));
        assert!(!overlaps(&p("/tasks/3"), &p("/tasks/30")));
        assert!(!overlaps(&p("/tasks/3/status"), &p("/tasks/4/status")));
    }
}
