//! The one decoder for events arriving from the log, and the matching encoder.
//!
//! Every byte read back from the network goes through [`decode_event`], which returns an error
//! naming what was wrong and never panics: the envelope is validated by the wire contract, its
//! space and document must match the subscription, the change must parse, and its hash must
//! be the one the envelope claims.

use automerge::Change;
use blackboard_schemas::{AgentId, DecodeError, DocumentId, Envelope, SpaceId, WIRE_VERSION};

use crate::doc::{DocCore, DocError, LocalChange};

/// A decoded, validated event.
#[derive(Debug)]
pub struct Event {
    /// Its envelope (which still holds the change's bytes).
    pub envelope: Envelope,
    /// The parsed change.
    pub change: Change,
}

/// Why an event was rejected.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The envelope itself was malformed.
    #[error(transparent)]
    Envelope(#[from] DecodeError),
    /// The envelope names another space or document than the subject it arrived on.
    #[error("envelope is for {space}/{document}, but arrived on the subject of {expected}")]
    WrongDocument {
        /// The envelope's space.
        space: SpaceId,
        /// The envelope's document.
        document: DocumentId,
        /// The document subscribed to, as `space/document`.
        expected: String,
    },
    /// The change bytes did not parse.
    #[error("envelope's change is unusable: {0}")]
    Change(#[from] DocError),
    /// The change's real hash differs from the envelope's claim.
    #[error("envelope claims change hash {claimed} but the change's hash is {actual}")]
    HashMismatch {
        /// The hash in the envelope.
        claimed: String,
        /// The hash of the bytes.
        actual: String,
    },
}

/// Decodes an event received on `space`/`document`'s subject. Never panics.
pub fn decode_event(
    space: &SpaceId,
    document: &DocumentId,
    bytes: &[u8],
) -> Result<Event, EventError> {
    let envelope = Envelope::decode(bytes)?;
    if &envelope.space != space || &envelope.document != document {
        return Err(EventError::WrongDocument {
            space: envelope.space,
            document: envelope.document,
            expected: format!("{space}/{document}"),
        });
    }
    let change = DocCore::decode_change(&envelope.change)?;
    let actual = change.hash().to_string();
    if actual != envelope.change_hash {
        return Err(EventError::HashMismatch {
            claimed: envelope.change_hash,
            actual,
        });
    }
    Ok(Event { envelope, change })
}

/// Wraps a local change in its envelope.
pub fn encode_event(
    space: &SpaceId,
    document: &DocumentId,
    agent: &AgentId,
    change: &LocalChange,
    time_ms: i64,
    message: Option<String>,
) -> Envelope {
    Envelope {
        v: WIRE_VERSION,
        space: space.clone(),
        document: document.clone(),
        agent: agent.clone(),
        change_hash: change.hash.to_string(),
        time_ms,
        message,
        signature: None,
        change: change.bytes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;

    fn ids() -> (SpaceId, DocumentId, AgentId) {
        (
            "s".parse().unwrap(),
            "d".parse().unwrap(),
            "a".parse().unwrap(),
        )
    }

    fn local() -> LocalChange {
        let mut doc = DocCore::new();
        doc.transact(0, None, |tx| tx.put(automerge::ROOT, "k", 1))
            .unwrap()
            .1
            .unwrap()
    }

    #[test]
    fn an_encoded_event_decodes_to_the_same_change() {
        let (s, d, a) = ids();
        let c = local();
        let bytes = encode_event(&s, &d, &a, &c, 5, Some("why".into())).encode();
        let ev = decode_event(&s, &d, &bytes).unwrap();
        assert_eq!(ev.change.hash(), c.hash);
        assert_eq!(ev.envelope.message.as_deref(), Some("why"));
    }

    #[test]
    fn events_for_another_document_or_with_a_forged_hash_are_rejected() {
        let (s, d, a) = ids();
        let c = local();
        let mut env = encode_event(&s, &d, &a, &c, 5, None);
        let other: DocumentId = "other".parse().unwrap();
        let err = decode_event(&s, &other, &env.encode()).unwrap_err();
        assert!(matches!(err, EventError::WrongDocument { .. }), "{err}");
        env.change_hash = "00".repeat(32);
        let err = decode_event(&s, &d, &env.encode()).unwrap_err();
        assert!(err.to_string().contains("claims change hash"), "{err}");
        env.change = vec![1, 2, 3];
        let err = decode_event(&s, &d, &env.encode()).unwrap_err();
        assert!(
            err.to_string().contains("invalid automerge change"),
            "{err}"
        );
    }
}
