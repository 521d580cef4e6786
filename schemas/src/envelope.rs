//! The event envelope: one automerge change plus who made it, when and why.
//!
//! On the wire an event is the envelope encoded as a JSON object (UTF-8), with the change's
//! bytes in base64. [`Envelope::decode`] is the one decoder for bytes that arrive from the
//! network or disk: it never panics, and every rejection names what was wrong.

use base64::Engine as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{AgentId, DocumentId, SpaceId};

/// The envelope version this crate writes and reads.
pub const WIRE_VERSION: u32 = 1;

/// The largest encoded envelope accepted, in bytes (NATS' default `max_payload` is 1 MiB).
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;

/// One event: an automerge change and its metadata.
///
/// ```
/// use blackboard_schemas::{AgentId, DocumentId, Envelope, SpaceId};
///
/// let env = Envelope {
///     v: blackboard_schemas::WIRE_VERSION,
///     space: SpaceId::new("team").unwrap(),
///     document: DocumentId::new("plan").unwrap(),
///     agent: AgentId::new("writer").unwrap(),
///     change_hash: "ab".repeat(32),
///     time_ms: 1_700_000_000_000,
///     message: Some("add task 7".into()),
///     provenance: None,
///     signer: None,
///     signature: None,
///     change: vec![1, 2, 3],
/// };
/// let bytes = env.encode();
/// assert_eq!(Envelope::decode(&bytes).unwrap(), env);
/// assert!(Envelope::decode(b"not json").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "Blackboard event envelope",
    description = "One event on a Blackboard document's subject (bb.<space>.doc.<document>.ch): \
                   one automerge change plus who made it, when and why. Unknown fields are \
                   ignored by readers of the same version."
)]
pub struct Envelope {
    /// Envelope version; readers reject versions they do not know. Currently 1.
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// The space the document lives in; must match the subject.
    pub space: SpaceId,
    /// The document the change belongs to; must match the subject.
    pub document: DocumentId,
    /// The agent that made the change.
    pub agent: AgentId,
    /// The automerge change hash, 64 lowercase hex digits. Also the `Nats-Msg-Id` header.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub change_hash: String,
    /// Wall-clock time of the change at the writer, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Optional human-readable reason for the change ("why").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who acted through the agent, when the writer says so (see [`Provenance`]). Signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// The nkey user public key (`U…`) that signed the event; absent when unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The signer's ed25519 signature over the event's signing input (see
    /// [`crate::signature`]), standard base64; null when unsigned.
    #[serde(default)]
    pub signature: Option<String>,
    /// The automerge change in its binary format, standard base64 with padding.
    #[serde(with = "base64_bytes")]
    #[schemars(with = "String", extend("contentEncoding" = "base64"))]
    pub change: Vec<u8>,
}

/// Who and what stood behind an agent's change, as the writer declares it: the person or
/// agent it acted for, the model that decided, the tool call that made it. Covered by the
/// signature, so a verified change's provenance is the signer's own claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Provenance {
    /// The person or agent this change was made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// The model behind the change (for example `claude-sonnet-4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The tool call that made the change (for example an MCP tool name and call id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<String>,
}

/// Why bytes could not be decoded as an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message was larger than [`MAX_ENVELOPE_BYTES`].
    #[error("envelope is {len} bytes, the limit is {max}")]
    TooLarge {
        /// Size of the rejected message.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message was not a JSON object of the envelope's shape.
    #[error("envelope is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    /// The envelope's version is not one this reader knows.
    #[error("envelope version {0} is not supported (this reader knows version {WIRE_VERSION})")]
    UnsupportedVersion(u32),
    /// The change hash was not 64 lowercase hex digits.
    #[error("change_hash {0:?} is not 64 lowercase hex digits")]
    BadChangeHash(String),
    /// The change field was empty.
    #[error("envelope carries an empty change")]
    EmptyChange,
}

impl Envelope {
    /// Encodes the envelope as its JSON wire form.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain strings, integers and options into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes and validates an envelope from its wire form. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_ENVELOPE_BYTES,
            });
        }
        // Read the version first, so a newer envelope is reported as such rather than as a
        // shape mismatch.
        #[derive(Deserialize)]
        struct Probe {
            v: u32,
        }
        let probe: Probe =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if probe.v != WIRE_VERSION {
            return Err(DecodeError::UnsupportedVersion(probe.v));
        }
        let env: Envelope =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if env.change_hash.len() != 64
            || !env
                .change_hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DecodeError::BadChangeHash(env.change_hash));
        }
        if env.change.is_empty() {
            return Err(DecodeError::EmptyChange);
        }
        Ok(env)
    }
}

mod base64_bytes {
    use super::*;

    pub(super) fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("change is not valid base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            v: WIRE_VERSION,
            space: SpaceId::new("s").unwrap(),
            document: DocumentId::new("d").unwrap(),
            agent: AgentId::new("a").unwrap(),
            change_hash: "0f".repeat(32),
            time_ms: 42,
            message: None,
            provenance: None,
            signer: None,
            signature: None,
            change: vec![0x85, 0x6f, 0x4a, 0x83],
        }
    }

    #[test]
    fn envelope_round_trips_through_its_wire_form() {
        let env = sample();
        assert_eq!(Envelope::decode(&env.encode()), Ok(env));
    }

    #[test]
    fn decoder_names_what_is_wrong_with_bad_input() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0xff, 0x00, 0x13], "not valid JSON"),
            (b"{}".to_vec(), "missing field `v`"),
            (br#"{"v":2}"#.to_vec(), "version 2 is not supported"),
            (br#"{"v":1,"space":"s"}"#.to_vec(), "missing field"),
            (
                sample().encode().replace_hash("zz"),
                "is not 64 lowercase hex digits",
            ),
            (
                String::from_utf8(sample().encode())
                    .unwrap()
                    .replace("hW9Kgw==", "***")
                    .into_bytes(),
                "not valid base64",
            ),
            (
                String::from_utf8(sample().encode())
                    .unwrap()
                    .replace(r#""space":"s""#, r#""space":"a.b""#)
                    .into_bytes(),
                "contains '.'",
            ),
            (vec![b' '; MAX_ENVELOPE_BYTES + 1], "the limit is"),
        ];
        for (bytes, want) in cases {
            let err = Envelope::decode(&bytes).expect_err(want).to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    trait ReplaceHash {
        fn replace_hash(self, with: &str) -> Vec<u8>;
    }
    impl ReplaceHash for Vec<u8> {
        fn replace_hash(self, with: &str) -> Vec<u8> {
            String::from_utf8(self)
                .unwrap()
                .replace(&"0f".repeat(32), with)
                .into_bytes()
        }
    }

    #[test]
    fn decoder_ignores_unknown_fields_of_the_same_version() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().encode()).unwrap();
        v["added_later"] = serde_json::json!(true);
        assert_eq!(
            Envelope::decode(&serde_json::to_vec(&v).unwrap()),
            Ok(sample())
        );
    }
}
