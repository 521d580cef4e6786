//! The Blackboard wire contract: validated ids, the event envelope and the subject scheme.
//!
//! This crate knows nothing of tokio, NATS or sled: it is what a client in any language has
//! to agree on. `schemas/README.md` describes the same contract for non-Rust readers, and
//! `schemas/json/*.schema.json` are JSON Schemas generated from these types.
//!
//! ```
//! use blackboard_schemas::{subject, DocumentId, SpaceId};
//!
//! let space = SpaceId::new("team")?;
//! let doc = DocumentId::new("plan")?;
//! assert_eq!(subject::changes(&space, &doc), "bb.team.doc.plan.ch");
//! # Ok::<(), blackboard_schemas::IdError>(())
//! ```

#![warn(missing_docs)]

mod envelope;
mod id;
pub mod signature;
pub mod subject;

pub use envelope::{DecodeError, Envelope, Provenance, MAX_ENVELOPE_BYTES, WIRE_VERSION};
pub use id::{AgentId, DocumentId, IdError, SpaceId, MAX_ID_LEN};
/// The nkeys crate, whose user key pairs are agents' identities and change signers;
/// re-exported so every crate of the workspace names the same version.
pub use nkeys;
pub use signature::SignatureError;

/// The JSON Schemas generated from the wire types, as `(file name, pretty JSON)` pairs.
///
/// The committed files under `schemas/json/` must equal these; a test checks it.
pub fn json_schemas() -> Vec<(&'static str, String)> {
    let envelope = schemars::schema_for!(Envelope);
    vec![(
        "envelope.schema.json",
        serde_json::to_string_pretty(&envelope).unwrap_or_default() + "\n",
    )]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Regenerates the committed JSON Schemas; when one is stale it is rewritten and the test
    /// fails, so a rerun passes and the diff shows up in review.
    #[test]
    fn committed_json_schemas_are_fresh() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("json");
        std::fs::create_dir_all(&dir).unwrap();
        let mut stale = Vec::new();
        for (name, want) in super::json_schemas() {
            let path = dir.join(name);
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            if have != want {
                std::fs::write(&path, want).unwrap();
                stale.push(path.display().to_string());
            }
        }
        assert!(
            stale.is_empty(),
            "JSON Schemas were stale and have been regenerated, commit them: {stale:?}"
        );
    }
}
