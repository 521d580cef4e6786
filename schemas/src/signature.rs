//! Signatures: how an agent's key vouches for an event, in a form any language can check.
//!
//! An agent's identity is a NATS nkey *user* key pair: an ed25519 key whose public half is
//! written `U…` (56 characters, base32 with a checksum) and whose seed `SU…` is the secret. One
//! key is both the agent's NATS identity and the signer of its changes.
//!
//! What is signed is never the JSON (whose bytes another encoder would choose differently)
//! but a *signing input* built from the fields, each framed so no two different field lists
//! can produce the same bytes:
//!
//! ```text
//! input   = field(TAG) field(f1) field(f2) ...
//! field(x) = u32 big-endian length of x, then x
//! opt(x)   = 0x00 when absent; 0x01 then field(x) when present
//! ```
//!
//! A change event's input ([`change_signing_input`]), with `TAG = "blackboard-change-v1"`:
//! `field(space) field(document) field(agent) field(signer) field(change hash as its 32 raw
//! bytes) field(time_ms as 8 bytes, big-endian two's complement) opt(message)
//! opt(on_behalf_of) opt(model) opt(tool_call)`. The change hash binds the change's bytes,
//! the space and document bind where it may be applied, the agent and signer bind who. The
//! signature is ed25519 over the input, carried as standard base64 with padding.
//! `schemas/README.md` gives the same definition with a test vector.

use base64::Engine as _;
use nkeys::KeyPair;

use crate::Envelope;

/// The domain-separation tag of a change event's signing input.
pub const CHANGE_TAG: &[u8] = b"blackboard-change-v1";

/// Why a signature could not be made or did not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Neither a signer nor a signature is present.
    #[error("the event is not signed")]
    Unsigned,
    /// A signature without a signer, or a signer without a signature.
    #[error("the event names a signer but carries no signature, or the other way round")]
    Incomplete,
    /// The signer is not a valid nkey user public key.
    #[error("signer {0:?} is not an nkey user public key (U…, 56 characters): {1}")]
    BadSigner(String, String),
    /// The signature is not base64 of 64 bytes.
    #[error("signature is not standard base64 of 64 bytes: {0}")]
    BadEncoding(String),
    /// The signature is well formed but was not made by the signer's key over this input.
    #[error("signature does not verify against signer {0}")]
    DoesNotVerify(String),
    /// The change hash is not 64 lowercase hex digits, so there is no input to sign.
    #[error("change_hash {0:?} is not 64 lowercase hex digits")]
    BadChangeHash(String),
    /// The key pair cannot sign (it holds no seed, or is not a user key).
    #[error("this key cannot sign changes: {0}")]
    BadKey(String),
}

/// Builds a framed signing input (see the module docs).
///
/// ```
/// use blackboard_schemas::signature::Framer;
/// let input = Framer::new(b"t").field(b"ab").opt(None::<&[u8]>).finish();
/// assert_eq!(input, [0, 0, 0, 1, b't', 0, 0, 0, 2, b'a', b'b', 0]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Framer(Vec<u8>);

impl Framer {
    /// Starts an input with its domain-separation tag.
    pub fn new(tag: &[u8]) -> Self {
        Self::default().field(tag)
    }

    /// Appends one framed field.
    pub fn field(mut self, bytes: impl AsRef<[u8]>) -> Self {
        let bytes = bytes.as_ref();
        // Every field we frame is bounded by the envelope's 1 MiB limit, far below u32::MAX.
        self.0
            .extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    /// Appends an optional field: a 0 byte when absent, a 1 byte and the field when present.
    pub fn opt(mut self, bytes: Option<impl AsRef<[u8]>>) -> Self {
        match bytes {
            None => {
                self.0.push(0);
                self
            }
            Some(b) => {
                self.0.push(1);
                self.field(b)
            }
        }
    }

    /// The input's bytes.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Decodes 64 lowercase hex digits into 32 bytes.
fn hash_bytes(hex: &str) -> Result<[u8; 32], SignatureError> {
    let bad = || SignatureError::BadChangeHash(hex.to_string());
    let digits = hex.as_bytes();
    if digits.len() != 64 {
        return Err(bad());
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0]).ok_or_else(bad)? << 4) | nibble(pair[1]).ok_or_else(bad)?;
    }
    Ok(out)
}

/// The bytes a change event's signature covers, for the signer `signer` (which must be the
/// envelope's `signer` when verifying).
pub fn change_signing_input(env: &Envelope, signer: &str) -> Result<Vec<u8>, SignatureError> {
    let provenance = env.provenance.as_ref();
    Ok(Framer::new(CHANGE_TAG)
        .field(env.space.as_str())
        .field(env.document.as_str())
        .field(env.agent.as_str())
        .field(signer)
        .field(hash_bytes(&env.change_hash)?)
        .field(env.time_ms.to_be_bytes())
        .opt(env.message.as_deref())
        .opt(provenance.and_then(|p| p.on_behalf_of.as_deref()))
        .opt(provenance.and_then(|p| p.model.as_deref()))
        .opt(provenance.and_then(|p| p.tool_call.as_deref()))
        .finish())
}

/// Reads a user public key (`U…`), naming what is wrong with a bad one.
pub fn user_public_key(signer: &str) -> Result<KeyPair, SignatureError> {
    let key = KeyPair::from_public_key(signer)
        .map_err(|e| SignatureError::BadSigner(signer.to_string(), e.to_string()))?;
    if !signer.starts_with('U') {
        return Err(SignatureError::BadSigner(
            signer.to_string(),
            "not a user key".into(),
        ));
    }
    Ok(key)
}

/// Signs `input` with `key`, returning the signature in standard base64.
pub fn sign_detached(key: &KeyPair, input: &[u8]) -> Result<String, SignatureError> {
    let sig = key
        .sign(input)
        .map_err(|e| SignatureError::BadKey(e.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sig))
}

/// Checks that `signature` (standard base64) is `signer`'s signature over `input`.
pub fn verify_detached(signer: &str, input: &[u8], signature: &str) -> Result<(), SignatureError> {
    let key = user_public_key(signer)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature.as_bytes())
        .map_err(|e| SignatureError::BadEncoding(e.to_string()))?;
    if sig.len() != 64 {
        return Err(SignatureError::BadEncoding(format!(
            "{} bytes instead of 64",
            sig.len()
        )));
    }
    key.verify(input, &sig)
        .map_err(|_| SignatureError::DoesNotVerify(signer.to_string()))
}

impl Envelope {
    /// Signs the envelope with `key`: sets `signer` to its public key and `signature` to its
    /// signature over [`change_signing_input`]. Set every other field first.
    ///
    /// ```
    /// use blackboard_schemas::{AgentId, DocumentId, Envelope, SpaceId, WIRE_VERSION};
    ///
    /// let key = nkeys::KeyPair::new_user();
    /// let mut env = Envelope {
    ///     v: WIRE_VERSION,
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
    /// env.sign(&key).unwrap();
    /// assert_eq!(env.verify().unwrap(), key.public_key());
    /// env.message = Some("something else".into());
    /// assert!(env.verify().is_err());
    /// ```
    pub fn sign(&mut self, key: &KeyPair) -> Result<(), SignatureError> {
        let signer = key.public_key();
        user_public_key(&signer).map_err(|e| SignatureError::BadKey(e.to_string()))?;
        let input = change_signing_input(self, &signer)?;
        self.signature = Some(sign_detached(key, &input)?);
        self.signer = Some(signer);
        Ok(())
    }

    /// Checks the envelope's signature, returning the signer's public key when it verifies.
    /// Never panics, whatever the fields hold.
    pub fn verify(&self) -> Result<&str, SignatureError> {
        match (&self.signer, &self.signature) {
            (None, None) => Err(SignatureError::Unsigned),
            (Some(signer), Some(signature)) => {
                let input = change_signing_input(self, signer)?;
                verify_detached(signer, &input, signature)?;
                Ok(signer)
            }
            _ => Err(SignatureError::Incomplete),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentId, DocumentId, Provenance, SpaceId, WIRE_VERSION};

    /// The README's test vector key: the ed25519 seed of 32 bytes 0x42.
    fn vector_key() -> KeyPair {
        KeyPair::new_from_raw(nkeys::KeyPairType::User, [0x42; 32]).unwrap()
    }

    fn vector() -> Envelope {
        Envelope {
            v: WIRE_VERSION,
            space: SpaceId::new("team").unwrap(),
            document: DocumentId::new("plan").unwrap(),
            agent: AgentId::new("alice").unwrap(),
            change_hash: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".into(),
            time_ms: 1_700_000_000_000,
            message: Some("add task 7".into()),
            provenance: Some(Provenance {
                on_behalf_of: Some("bob".into()),
                model: None,
                tool_call: Some("put".into()),
            }),
            signer: None,
            signature: None,
            change: vec![1, 2, 3],
        }
    }

    #[test]
    fn the_readme_test_vector_signs_and_verifies_to_the_same_bytes() {
        let key = vector_key();
        let mut env = vector();
        env.sign(&key).unwrap();
        let input = change_signing_input(&env, env.signer.as_deref().unwrap()).unwrap();
        let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
        // Printed for the README; the assertions below pin them.
        println!(
            "signer {}\ninput {hex}\nsignature {}",
            key.public_key(),
            env.signature.clone().unwrap()
        );
        assert_eq!(env.verify(), Ok(key.public_key().as_str()));
        assert_eq!(
            &input[..24],
            b"\0\0\0\x14blackboard-change-v1",
            "the input starts with the framed tag"
        );
        assert_eq!(
            key.public_key(),
            "UAQVF6GRTN4R2JCFGJBOCXZOVNWLPT72PNVF5UYAS6LA4BUYQHNRFBIE"
        );
        assert_eq!(
            env.signature.as_deref(),
            Some(
                "dybgTaoy1J7qAzdpfsqnzyMVivVO4STedG6MC6hYAbs3F/vJvkXN05q45YEhLKUrfyGUOjdONFyue1+ul7dCDw=="
            ),
            "ed25519 is deterministic: the vector's signature never changes"
        );
        // ed25519 signatures are deterministic: signing again gives the same bytes.
        let mut again = vector();
        again.sign(&key).unwrap();
        assert_eq!(again.signature, env.signature);
    }

    #[test]
    fn the_readme_prints_the_test_vectors_input_and_signature_exactly() {
        const README: &str = include_str!("../README.md");
        let key = vector_key();
        let mut env = vector();
        env.sign(&key).unwrap();
        let input = change_signing_input(&env, &key.public_key()).unwrap();
        let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
        let start = README
            .find("00000014 626c")
            .expect("the README's vector input");
        let len = README[start..].find("```").unwrap();
        let printed: String = README[start..start + len]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        assert_eq!(printed, hex);
        assert!(README.contains(&format!("`{}`", env.signature.unwrap())));
        assert!(README.contains(&format!("`{}`", key.public_key())));
        assert!(README.contains(&format!("hex, {} bytes", input.len())));
    }

    #[test]
    fn changing_any_signed_field_breaks_the_signature() {
        let key = KeyPair::new_user();
        let mut env = vector();
        env.sign(&key).unwrap();
        type Tamper = Box<dyn Fn(&mut Envelope)>;
        let tamper: Vec<(&str, Tamper)> = vec![
            (
                "space",
                Box::new(|e| e.space = SpaceId::new("other").unwrap()),
            ),
            (
                "document",
                Box::new(|e| e.document = DocumentId::new("x").unwrap()),
            ),
            (
                "agent",
                Box::new(|e| e.agent = AgentId::new("mallory").unwrap()),
            ),
            ("hash", Box::new(|e| e.change_hash = "11".repeat(32))),
            ("time", Box::new(|e| e.time_ms += 1)),
            ("message", Box::new(|e| e.message = None)),
            (
                "empty message",
                Box::new(|e| e.message = Some(String::new())),
            ),
            ("on_behalf_of", Box::new(|e| e.provenance = None)),
            (
                "tool_call",
                Box::new(|e| e.provenance.as_mut().unwrap().tool_call = Some("get".into())),
            ),
            (
                "signer",
                Box::new(|e| e.signer = Some(KeyPair::new_user().public_key())),
            ),
        ];
        for (what, change) in tamper {
            let mut forged = env.clone();
            change(&mut forged);
            assert!(
                matches!(forged.verify(), Err(SignatureError::DoesNotVerify(_))),
                "changing the {what} must break the signature: {:?}",
                forged.verify()
            );
        }
    }

    #[test]
    fn malformed_signatures_and_signers_are_named_errors_not_panics() {
        let key = KeyPair::new_user();
        let mut env = vector();
        env.sign(&key).unwrap();
        let sig = env.signature.clone().unwrap();
        let cases: Vec<(Option<String>, Option<String>, &str)> = vec![
            (None, None, "not signed"),
            (env.signer.clone(), None, "no signature"),
            (None, Some(sig.clone()), "no signature"),
            (
                Some("U123".into()),
                Some(sig.clone()),
                "not an nkey user public key",
            ),
            (
                Some(KeyPair::new_account().public_key()),
                Some(sig.clone()),
                "not an nkey user public key",
            ),
            (
                env.signer.clone(),
                Some("***".into()),
                "not standard base64",
            ),
            (env.signer.clone(), Some(sig[..40].to_string()), "base64"),
            (
                env.signer.clone(),
                Some("AAAA".into()),
                "3 bytes instead of 64",
            ),
        ];
        for (signer, signature, want) in cases {
            let mut e = env.clone();
            e.signer = signer;
            e.signature = signature;
            let err = e.verify().expect_err(want).to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    #[test]
    fn only_user_keys_with_seeds_can_sign() {
        let mut env = vector();
        let public_only = KeyPair::from_public_key(&KeyPair::new_user().public_key()).unwrap();
        assert!(matches!(
            env.sign(&public_only),
            Err(SignatureError::BadKey(_))
        ));
        assert!(matches!(
            env.sign(&KeyPair::new_account()),
            Err(SignatureError::BadKey(_))
        ));
        assert_eq!(env.signer, None);
    }
}
