//! A snapshot: a document saved with automerge, tagged with the log position it covers, and
//! the position index up to there; optionally signed by the agent key that wrote it.
//!
//! The index travels with the document because trimming removes the events that carried the
//! agent, time and message of each change; with it, history, `at`, `diff` and `blame` give
//! the same answers from a snapshot as from the full log.
//!
//! A snapshot holds changes no replica judged one by one, so in a space with a roster a
//! replica loads only a snapshot signed by a key that roster trusts with snapshots
//! ([`crate::trust::Roster::may_snapshot`]; ARCHITECTURE.md, "Trust").

use blackboard_schemas::signature::{sign_detached, verify_detached, Framer, SignatureError};
use blackboard_schemas::{DocumentId, SpaceId};
use nkeys::KeyPair;
use sha2::{Digest, Sha256};

use super::record::{Reader, Record};
use super::HistoryError;

const MAGIC: &[u8; 7] = b"BBSNAP\x01";

/// The magic of a signed snapshot: the same body, then the signer and the signature.
const MAGIC_SIGNED: &[u8; 7] = b"BBSNAP\x02";

/// The domain tag of a snapshot's signing input.
pub const SNAPSHOT_TAG: &[u8] = b"blackboard-snapshot-v1";

/// Who signed a snapshot, and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSignature {
    /// The signer's public key (`U…`).
    pub signer: String,
    /// The signature, standard base64 of 64 bytes.
    pub signature: String,
}

/// A document snapshot. Binary form: `BBSNAP\x01`, then the covered position (u64), the
/// number of index records (u64) and the records, then the automerge save (u64 length and
/// bytes); integers big-endian. A signed snapshot starts `BBSNAP\x02` instead and ends with
/// the signer and the signature (each a u16 length and the ASCII text). The signature is
/// over the framed input (`schemas/README.md`'s framing) of [`SNAPSHOT_TAG`], the space, the
/// document, the signer, and the SHA-256 of the unsigned (`\x01`) form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The last log position whose event is in the snapshot.
    pub seq: u64,
    /// The position index up to `seq`, in sequence order.
    pub records: Vec<Record>,
    /// The document in automerge's save format.
    pub document: Vec<u8>,
    /// Who signed it (`None`: unsigned).
    pub signature: Option<SnapshotSignature>,
}

/// The signing input of the snapshot whose unsigned form is `unsigned`.
fn signing_input(space: &SpaceId, document: &DocumentId, signer: &str, unsigned: &[u8]) -> Vec<u8> {
    Framer::new(SNAPSHOT_TAG)
        .field(space.as_str())
        .field(document.as_str())
        .field(signer)
        .field(Sha256::digest(unsigned))
        .finish()
}

impl Snapshot {
    /// Signs the snapshot, as a snapshot of `space`/`document`, with `key`.
    pub fn sign(
        &mut self,
        space: &SpaceId,
        document: &DocumentId,
        key: &KeyPair,
    ) -> Result<(), SignatureError> {
        let signer = key.public_key();
        let input = signing_input(space, document, &signer, &self.encode_unsigned());
        let signature = sign_detached(key, &input)?;
        self.signature = Some(SnapshotSignature { signer, signature });
        Ok(())
    }

    /// Checks the signature as a snapshot of `space`/`document`, returning the signer. A
    /// snapshot moved from another document or space, or altered, does not verify.
    pub fn verify(&self, space: &SpaceId, document: &DocumentId) -> Result<&str, SignatureError> {
        let Some(SnapshotSignature { signer, signature }) = &self.signature else {
            return Err(SignatureError::Unsigned);
        };
        let input = signing_input(space, document, signer, &self.encode_unsigned());
        verify_detached(signer, &input, signature)?;
        Ok(signer)
    }

    /// The binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_unsigned();
        if let Some(sig) = &self.signature {
            out[..MAGIC_SIGNED.len()].copy_from_slice(MAGIC_SIGNED);
            for text in [&sig.signer, &sig.signature] {
                // Keys and signatures are short ASCII (a decoded snapshot's are checked).
                out.extend_from_slice(&(text.len().min(u16::MAX as usize) as u16).to_be_bytes());
                out.extend_from_slice(&text.as_bytes()[..text.len().min(u16::MAX as usize)]);
            }
        }
        out
    }

    /// The binary form without the signature (what the signature covers).
    fn encode_unsigned(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.records.len() * 96 + self.document.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&(self.records.len() as u64).to_be_bytes());
        for r in &self.records {
            r.encode_into(&mut out);
        }
        out.extend_from_slice(&(self.document.len() as u64).to_be_bytes());
        out.extend_from_slice(&self.document);
        out
    }

    /// Reads the binary form. Never panics; anything malformed (as bytes from the network
    /// may be) is an error naming what was wrong.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, HistoryError> {
        let mut r = Reader(bytes);
        let signed = match r.take(MAGIC.len()).ok() {
            Some(m) if m == MAGIC.as_slice() => false,
            Some(m) if m == MAGIC_SIGNED.as_slice() => true,
            _ => {
                return Err(HistoryError::Corrupt(
                    "not a Blackboard snapshot (bad magic or version)".into(),
                ))
            }
        };
        let seq = r.u64()?;
        let count = r.u64()?;
        // Each record takes at least 61 bytes: a count beyond that is a lie, not a reason to
        // allocate.
        if count > (bytes.len() / 61) as u64 {
            return Err(HistoryError::Corrupt(format!(
                "snapshot claims {count} index records in {} bytes",
                bytes.len()
            )));
        }
        let mut records = Vec::with_capacity(count as usize);
        let mut rest = r.0;
        for _ in 0..count {
            let (record, after) = Record::decode(rest)?;
            records.push(record);
            rest = after;
        }
        let mut r = Reader(rest);
        let len = r.u64()?;
        let document = r.take(usize::try_from(len).unwrap_or(usize::MAX))?.to_vec();
        let signature = match signed {
            true => Some(SnapshotSignature {
                signer: text(&mut r, "signer")?,
                signature: text(&mut r, "signature")?,
            }),
            false => None,
        };
        if !r.0.is_empty() {
            return Err(HistoryError::Corrupt(format!(
                "{} unexpected bytes after the snapshot",
                r.0.len()
            )));
        }
        Ok(Snapshot {
            seq,
            records,
            document,
            signature,
        })
    }
}

/// A u16-length-prefixed ASCII text of a signed snapshot's trailer.
fn text(r: &mut Reader<'_>, what: &str) -> Result<String, HistoryError> {
    let len = r.take(2)?;
    let len = u16::from_be_bytes([len[0], len[1]]) as usize;
    let bytes = r.take(len)?;
    match bytes.is_ascii() {
        true => Ok(String::from_utf8_lossy(bytes).into_owned()),
        false => Err(HistoryError::Corrupt(format!(
            "the snapshot's {what} is not ASCII"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::ChangeHash;

    fn snapshot() -> Snapshot {
        Snapshot {
            seq: 9,
            records: (1..=3)
                .map(|i| Record {
                    seq: i * 3,
                    hash: ChangeHash([i as u8; 32]),
                    logged_ms: 1000 + i as i64,
                    time_ms: 990 + i as i64,
                    agent: format!("agent-{i}").parse().unwrap(),
                    message: (i % 2 == 0).then(|| format!("step {i}")),
                    signature: match i {
                        1 => crate::codec::Signature::Unsigned,
                        _ => crate::codec::Signature::Verified(format!("U{i}")),
                    },
                    provenance: None,
                })
                .collect(),
            document: vec![1, 2, 3, 4],
            signature: None,
        }
    }

    #[test]
    fn snapshots_round_trip() {
        let s = snapshot();
        assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn a_signed_snapshot_round_trips_and_verifies_only_as_itself() {
        let (space, doc): (SpaceId, DocumentId) = ("s".parse().unwrap(), "d".parse().unwrap());
        let key = KeyPair::new_user();
        let mut s = snapshot();
        assert!(matches!(
            s.verify(&space, &doc),
            Err(SignatureError::Unsigned)
        ));
        s.sign(&space, &doc, &key).unwrap();
        let back = Snapshot::decode(&s.encode()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.verify(&space, &doc).unwrap(), key.public_key());
        // Moved to another document or space, or altered: it no longer verifies.
        assert!(back.verify(&space, &"e".parse().unwrap()).is_err());
        assert!(back.verify(&"t".parse().unwrap(), &doc).is_err());
        let mut altered = back.clone();
        altered.document.push(5);
        assert!(altered.verify(&space, &doc).is_err());
        let mut altered = back;
        altered.seq += 1;
        assert!(altered.verify(&space, &doc).is_err());
        // Every prefix of the signed form is an error, not a panic.
        let bytes = s.encode();
        for n in 0..bytes.len() {
            assert!(
                Snapshot::decode(&bytes[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
    }

    #[test]
    fn damaged_snapshots_are_errors_not_panics() {
        let bytes = snapshot().encode();
        for n in 0..bytes.len() {
            assert!(
                Snapshot::decode(&bytes[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(Snapshot::decode(&extra).is_err());
        let mut lying = bytes;
        lying[15] = 0xff; // the record count
        let err = Snapshot::decode(&lying).unwrap_err();
        assert!(err.to_string().contains("index records"), "{err}");
        assert!(Snapshot::decode(b"garbage").is_err());
    }
}
