//! The one decoder for events arriving from the log, and the matching encoder.
//!
//! Every byte read back from the network goes through [`decode_event`], which returns an error
//! naming what was wrong and never panics: the envelope is validated by the wire contract, its
//! space and document must match the subscription, the change must parse, its hash must be
//! the one the envelope claims, and it must survive a round trip through automerge's
//! encoding.
//!
//! The round trip matters because a document is saved (compaction, snapshots) in automerge's
//! columnar format, which re-encodes every change: a change whose bytes hash correctly but are
//! not what automerge would encode for the same operations gets a different hash once saved
//! and loaded, so the saved document no longer loads ("mismatching heads"). Accepting one
//! would let a snapshot destroy the document when the log is trimmed below it (issue 14 §6).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use automerge::{Change, ChangeHash};
use blackboard_schemas::nkeys::KeyPair;
use blackboard_schemas::signature::SignatureError;
use blackboard_schemas::{
    AgentId, DecodeError, DocumentId, Envelope, Provenance, SpaceId, WIRE_VERSION,
};

use crate::doc::{DocCore, DocError, LocalChange};

/// A decoded, validated event.
#[derive(Debug)]
pub struct Event {
    /// Its envelope (which still holds the change's bytes).
    pub envelope: Envelope,
    /// The parsed change.
    pub change: Change,
    /// Whether the envelope is signed, and whether its signature verifies. Computed, never
    /// acted on here: an open space accepts every change whatever its status (a space's
    /// roster decides what to reject).
    pub signature: Signature,
}

/// The signature status of an event: unsigned, verified by a key, or invalid (with why).
///
/// Serialized as `{"signer": "U…" | null, "verified": bool}` plus `"signature_error"` when
/// a signature is present but does not check out, so history, blame and watch events carry
/// the same three fields in JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Signature {
    /// No signer and no signature.
    #[default]
    Unsigned,
    /// The signature verifies against this nkey user public key (`U…`).
    Verified(String),
    /// A signer or signature is present but does not check out.
    Invalid {
        /// The signer the envelope names, if any (not to be trusted: it did not verify).
        signer: Option<String>,
        /// Why it did not verify.
        reason: String,
    },
}

impl Signature {
    /// Checks `envelope`'s signature. Never panics, whatever the fields hold.
    pub fn of(envelope: &Envelope) -> Self {
        match envelope.verify() {
            Ok(signer) => Signature::Verified(signer.to_owned()),
            Err(SignatureError::Unsigned) => Signature::Unsigned,
            Err(e) => Signature::Invalid {
                signer: envelope.signer.clone(),
                reason: e.to_string(),
            },
        }
    }

    /// The verified signer's public key; `None` when unsigned or invalid.
    pub fn verified_signer(&self) -> Option<&str> {
        match self {
            Signature::Verified(s) => Some(s),
            _ => None,
        }
    }

    /// The signer the envelope names, verified or not.
    pub fn signer(&self) -> Option<&str> {
        match self {
            Signature::Unsigned => None,
            Signature::Verified(s) => Some(s),
            Signature::Invalid { signer, .. } => signer.as_deref(),
        }
    }

    /// Whether the signature verified.
    pub fn is_verified(&self) -> bool {
        matches!(self, Signature::Verified(_))
    }

    /// Why the signature did not verify; `None` when unsigned or verified.
    pub fn error(&self) -> Option<&str> {
        match self {
            Signature::Invalid { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signature::Unsigned => f.write_str("unsigned"),
            Signature::Verified(s) => write!(f, "verified by {s}"),
            Signature::Invalid { reason, .. } => write!(f, "invalid: {reason}"),
        }
    }
}

impl serde::Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("signer", &self.signer())?;
        map.serialize_entry("verified", &self.is_verified())?;
        if let Some(reason) = self.error() {
            map.serialize_entry("signature_error", reason)?;
        }
        map.end()
    }
}

/// How a writer stamps the envelopes it publishes: the key it signs with (when it has one)
/// and the provenance it declares by default. Applied when an envelope is built, before it
/// is stored in the outbox, so the signed bytes are the ones every retry publishes.
#[derive(Clone, Default)]
pub struct Stamp {
    /// The agent's nkey user key pair (with its seed); `None` writes unsigned envelopes.
    pub key: Option<Arc<KeyPair>>,
    /// Who and what stands behind this writer's changes, declared in every envelope.
    pub provenance: Option<Provenance>,
}

impl std::fmt::Debug for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the seed: only the public key.
        f.debug_struct("Stamp")
            .field("key", &self.key.as_ref().map(|k| k.public_key()))
            .field("provenance", &self.provenance)
            .finish()
    }
}

impl Stamp {
    /// The status of a change this writer made and stamped: verified by its own key when
    /// it has one (it made the signature), unsigned otherwise.
    pub fn local_signature(&self) -> Signature {
        match &self.key {
            Some(key) => Signature::Verified(key.public_key()),
            None => Signature::Unsigned,
        }
    }

    /// Declares this writer's provenance on `envelope`, then signs it with the key (if any).
    pub fn apply(&self, envelope: &mut Envelope) -> Result<(), SignatureError> {
        if envelope.provenance.is_none() {
            envelope.provenance = self.provenance.clone();
        }
        match &self.key {
            Some(key) => envelope.sign(key),
            None => Ok(()),
        }
    }
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
    /// The change does not survive a round trip through automerge's encoding: decoded and
    /// encoded again, its bytes differ (or automerge cannot re-encode it at all). Saving a
    /// document holding it would make a save that does not load.
    #[error(
        "envelope's change {hash} is not in automerge's canonical encoding ({detail}); \
         a document holding it would save as a snapshot that does not load"
    )]
    NotCanonical {
        /// The change's hash.
        hash: String,
        /// How the re-encoded bytes differ.
        detail: String,
    },
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
    if !hash_is(&change.hash(), &envelope.change_hash) {
        return Err(EventError::HashMismatch {
            claimed: envelope.change_hash,
            actual: change.hash().to_string(),
        });
    }
    check_canonical(&change)?;
    // Last, and only for an event otherwise sound: an ed25519 check costs tens of
    // microseconds, more than the checks above.
    let signature = Signature::of(&envelope);
    Ok(Event {
        envelope,
        change,
        signature,
    })
}

/// Checks that `change` survives a round trip through automerge's encoding: decoded to its
/// operations and encoded again, it has the same bytes (and so the same hash). Never panics:
/// automerge's decoder and encoder both can on crafted input.
pub fn check_canonical(change: &Change) -> Result<(), EventError> {
    let original = change.raw_bytes();
    let again = catch_unwind(AssertUnwindSafe(|| {
        Change::from(change.decode()).raw_bytes().to_vec()
    }))
    .map_err(|_| EventError::NotCanonical {
        hash: change.hash().to_string(),
        detail: "automerge cannot re-encode it".into(),
    })?;
    if again == original {
        return Ok(());
    }
    let hash = change.hash().to_string();
    let at = original
        .iter()
        .zip(&again)
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| original.len().min(again.len()));
    Err(EventError::NotCanonical {
        hash,
        detail: format!(
            "re-encoded, its {} bytes become {} bytes, first differing at byte {at}",
            original.len(),
            again.len()
        ),
    })
}

/// Whether `hex` is `hash` in lowercase hex, without building the hash's string (this runs
/// for every event read).
fn hash_is(hash: &ChangeHash, hex: &str) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let hex = hex.as_bytes();
    hex.len() == 64
        && hash.0.iter().enumerate().all(|(i, b)| {
            hex[2 * i] == DIGITS[usize::from(b >> 4)]
                && hex[2 * i + 1] == DIGITS[usize::from(b & 15)]
        })
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
        provenance: None,
        signer: None,
        signature: None,
        change: change.bytes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;

    #[test]
    fn hash_is_matches_exactly_the_lowercase_hex_of_the_hash() {
        let hash = ChangeHash([0xa7; 32]);
        let hex = hash.to_string();
        assert!(hash_is(&hash, &hex));
        assert!(!hash_is(&hash, &hex.to_uppercase()));
        assert!(!hash_is(&hash, &hex[..62]));
        assert!(!hash_is(&hash, &format!("{}b7", &hex[..62])));
        assert!(!hash_is(&ChangeHash([0; 32]), &hex));
    }

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
    fn decoding_reports_the_signature_status_and_rejects_nothing_for_it() {
        let (s, d, a) = ids();
        let c = local();
        let key = Arc::new(KeyPair::new_user());
        let provenance = Provenance {
            on_behalf_of: Some("bob".into()),
            model: None,
            tool_call: Some("put".into()),
        };
        let stamp = Stamp {
            key: Some(key.clone()),
            provenance: Some(provenance.clone()),
        };
        let mut env = encode_event(&s, &d, &a, &c, 5, None);
        let unsigned = decode_event(&s, &d, &env.encode()).unwrap();
        assert_eq!(unsigned.signature, Signature::Unsigned);

        stamp.apply(&mut env).unwrap();
        let signed = decode_event(&s, &d, &env.encode()).unwrap();
        assert_eq!(signed.signature, Signature::Verified(key.public_key()));
        assert_eq!(signed.signature, stamp.local_signature());
        assert_eq!(signed.envelope.provenance, Some(provenance));
        let json = serde_json::to_value(&signed.signature).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"signer": key.public_key(), "verified": true})
        );

        // Another agent's name on the same signature: still decoded, reported invalid.
        env.agent = "mallory".parse().unwrap();
        let forged = decode_event(&s, &d, &env.encode()).unwrap();
        assert!(
            matches!(&forged.signature, Signature::Invalid { signer: Some(k), reason }
                if *k == key.public_key() && reason.contains("does not verify")),
            "{:?}",
            forged.signature
        );
        let json = serde_json::to_value(&forged.signature).unwrap();
        assert_eq!(json["verified"], false);
        assert!(json["signature_error"].is_string(), "{json}");
        assert_eq!(forged.signature.verified_signer(), None);
    }

    #[test]
    fn a_stamp_with_a_key_that_cannot_sign_fails_and_its_debug_never_shows_the_seed() {
        let (s, d, a) = ids();
        let mut env = encode_event(&s, &d, &a, &local(), 5, None);
        let account = Stamp {
            key: Some(Arc::new(KeyPair::new_account())),
            provenance: None,
        };
        assert!(account.apply(&mut env).is_err());
        let key = KeyPair::new_user();
        let seed = key.seed().unwrap();
        let shown = format!(
            "{:?}",
            Stamp {
                key: Some(Arc::new(key)),
                provenance: None
            }
        );
        assert!(
            !shown.contains(&seed) && shown.contains("Some(\"U"),
            "{shown}"
        );
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

#[cfg(test)]
pub(crate) mod readme_example {
    use super::*;
    use base64::Engine as _;

    const README: &str = include_str!("../../schemas/README.md");

    /// The example envelope of `schemas/README.md`, as printed.
    fn example() -> Envelope {
        let start = README
            .find("```json\n{\n  \"v\": 1,")
            .expect("the README's example envelope")
            + "```json\n".len();
        let len = README[start..].find("```").unwrap();
        Envelope::decode(&README.as_bytes()[start..start + len]).unwrap()
    }

    /// The example as issue 14 §6 found it printed: its change ends `…YW4/AA==` where
    /// automerge's encoding ends `…YW5/AA==`, with a `change_hash` that matches those bytes.
    pub(crate) fn issue_example() -> Envelope {
        let engine = base64::engine::general_purpose::STANDARD;
        let mut env = example();
        let mut text = engine.encode(&env.change);
        assert!(text.ends_with("YW5/AA=="), "{text}");
        text.replace_range(text.len() - 8.., "YW4/AA==");
        env.change = engine.decode(text).unwrap();
        env.change_hash = DocCore::decode_change(&env.change)
            .expect("the bad bytes still parse")
            .hash()
            .to_string();
        env
    }

    #[test]
    fn the_readme_example_envelope_decodes_and_its_hash_matches() {
        let env = example();
        let ev = decode_event(&env.space, &env.document, &env.encode()).unwrap();
        assert_eq!(ev.change.hash().to_string(), env.change_hash);
    }

    #[test]
    fn the_issues_example_envelope_hashes_correctly_but_is_rejected_as_not_canonical() {
        let env = issue_example();
        let err = decode_event(&env.space, &env.document, &env.encode()).unwrap_err();
        assert!(matches!(err, EventError::NotCanonical { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&env.change_hash), "{text}");
        assert!(text.contains("snapshot that does not load"), "{text}");
    }

    #[test]
    fn a_document_holding_a_non_canonical_change_saves_as_a_snapshot_that_does_not_load() {
        // Why the check exists: past the decoder (as `apply_bytes` is), such a change goes
        // in, and the save does not load back.
        let env = issue_example();
        let mut doc = DocCore::new();
        doc.apply_bytes(&env.change).unwrap();
        let saved = doc.save();
        let reloaded = DocCore::load(Some(&saved), []).map(|(d, _)| d.heads());
        assert!(
            !reloaded.as_ref().is_ok_and(|h| h == &doc.heads()),
            "{reloaded:?}"
        );
    }
}
