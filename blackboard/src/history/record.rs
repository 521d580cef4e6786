//! One entry of the position index: what the log said about one change.

use automerge::ChangeHash;
use blackboard_schemas::{AgentId, Provenance};

use super::HistoryError;
use crate::codec::Signature;

/// What the event log says about one change: where it is (stream sequence), when the log
/// took it, and the writer's envelope (agent, the writer's clock, message). The position
/// index is a list of these in sequence order; it ties stream sequence, automerge heads and
/// wall time together, and survives trimming inside snapshots.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    /// The event's stream sequence (the first one, if the change was published twice).
    pub seq: u64,
    /// The change.
    #[serde(serialize_with = "super::hex")]
    pub hash: ChangeHash,
    /// When the log appended the event (milliseconds since the Unix epoch, the log's clock).
    pub logged_ms: i64,
    /// When the writer made the change (milliseconds since the Unix epoch, its clock).
    pub time_ms: i64,
    /// The agent that wrote it.
    pub agent: AgentId,
    /// Why, if the writer said.
    pub message: Option<String>,
    /// Whether the event was signed and verified, and by whom (JSON: `signer`, `verified`,
    /// and `signature_error` when invalid).
    #[serde(flatten)]
    pub signature: Signature,
    /// Who acted through the agent, as the (signed, when verified) event declares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// No message (a length no real message has).
const NO_MESSAGE: u32 = u32::MAX;

/// The message tag of an extended record: the top bit set, the low 31 bits the message
/// length plus one (0: no message); the signature and provenance follow the message.
/// Records of unsigned events without provenance keep the original form, so stores and
/// snapshots written before signatures still read (and such records encode as they did).
const EXTENDED: u32 = 0x8000_0000;

impl Record {
    /// Appends the binary form: seq, hash, logged, time, agent (u8 length + bytes), message
    /// (u32 length + bytes, or `u32::MAX` for none); integers big-endian.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.hash.0);
        out.extend_from_slice(&self.logged_ms.to_be_bytes());
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        let agent = self.agent.as_str().as_bytes();
        // Agent ids are at most 64 bytes (validated), so the length fits a byte.
        out.push(agent.len() as u8);
        out.extend_from_slice(agent);
        let extended = self.signature != Signature::Unsigned || self.provenance.is_some();
        if !extended {
            match &self.message {
                Some(m) => {
                    out.extend_from_slice(&(m.len() as u32).to_be_bytes());
                    out.extend_from_slice(m.as_bytes());
                }
                None => out.extend_from_slice(&NO_MESSAGE.to_be_bytes()),
            }
            return;
        }
        // Messages are bounded by the 1 MiB envelope, far below 2^31 - 1.
        let tag = EXTENDED | self.message.as_ref().map_or(0, |m| m.len() as u32 + 1);
        out.extend_from_slice(&tag.to_be_bytes());
        if let Some(m) = &self.message {
            out.extend_from_slice(m.as_bytes());
        }
        match &self.signature {
            Signature::Unsigned => out.push(0),
            Signature::Verified(signer) => {
                out.push(1);
                put_str(out, signer);
            }
            Signature::Invalid { signer, reason } => {
                out.push(2);
                put_opt(out, signer.as_deref());
                put_str(out, reason);
            }
        }
        match &self.provenance {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                put_opt(out, p.on_behalf_of.as_deref());
                put_opt(out, p.model.as_deref());
                put_opt(out, p.tool_call.as_deref());
            }
        }
    }

    /// The binary form on its own.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.message.as_ref().map_or(0, String::len));
        self.encode_into(&mut out);
        out
    }

    /// Reads one record from the front of `bytes`, returning it and the rest. Never panics:
    /// anything malformed is an error.
    pub fn decode(bytes: &[u8]) -> Result<(Record, &[u8]), HistoryError> {
        let mut r = Reader(bytes);
        let seq = r.u64()?;
        let hash = ChangeHash(r.take(32)?.try_into().map_err(|_| bad("hash"))?);
        let logged_ms = r.u64()? as i64;
        let time_ms = r.u64()? as i64;
        let agent_len = r.take(1)?[0] as usize;
        let agent = std::str::from_utf8(r.take(agent_len)?)
            .ok()
            .and_then(|a| a.parse::<AgentId>().ok())
            .ok_or_else(|| bad("agent"))?;
        let tag = r.u32()?;
        let (message, extended) = match tag {
            NO_MESSAGE => (None, false),
            n if n & EXTENDED == 0 => (Some(r.string(n as usize, "message")?), false),
            n => match (n & !EXTENDED) as usize {
                0 => (None, true),
                len => (Some(r.string(len - 1, "message")?), true),
            },
        };
        let (signature, provenance) = if extended {
            let signature = match r.take(1)?[0] {
                0 => Signature::Unsigned,
                1 => Signature::Verified(r.str32("signer")?),
                2 => Signature::Invalid {
                    signer: r.opt("signer")?,
                    reason: r.str32("signature error")?,
                },
                _ => return Err(bad("signature status")),
            };
            let provenance = match r.take(1)?[0] {
                0 => None,
                1 => Some(Provenance {
                    on_behalf_of: r.opt("on_behalf_of")?,
                    model: r.opt("model")?,
                    tool_call: r.opt("tool_call")?,
                }),
                _ => return Err(bad("provenance")),
            };
            (signature, provenance)
        } else {
            (Signature::Unsigned, None)
        };
        Ok((
            Record {
                seq,
                hash,
                logged_ms,
                time_ms,
                agent,
                message,
                signature,
                provenance,
            },
            r.0,
        ))
    }
}

/// A u32 length, then the bytes.
fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// 0, or 1 then [`put_str`].
fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

fn bad(what: &str) -> HistoryError {
    HistoryError::Corrupt(format!("index record: unreadable {what}"))
}

/// A cursor over bytes that fails instead of panicking when they run out.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], HistoryError> {
        if self.0.len() < n {
            return Err(HistoryError::Corrupt(format!(
                "truncated: wanted {n} more bytes, {} left",
                self.0.len()
            )));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, HistoryError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(
            b.try_into().map_err(|_| bad("integer"))?,
        ))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, HistoryError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes(
            b.try_into().map_err(|_| bad("integer"))?,
        ))
    }

    fn string(&mut self, len: usize, what: &str) -> Result<String, HistoryError> {
        Ok(std::str::from_utf8(self.take(len)?)
            .map_err(|_| bad(what))?
            .to_owned())
    }

    fn str32(&mut self, what: &str) -> Result<String, HistoryError> {
        let len = self.u32()? as usize;
        self.string(len, what)
    }

    fn opt(&mut self, what: &str) -> Result<Option<String>, HistoryError> {
        match self.take(1)?[0] {
            0 => Ok(None),
            1 => self.str32(what).map(Some),
            _ => Err(bad(what)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(message: Option<&str>) -> Record {
        Record {
            seq: 42,
            hash: ChangeHash([7; 32]),
            logged_ms: 1_700_000_000_123,
            time_ms: -5,
            agent: "agent-3".parse().unwrap(),
            message: message.map(str::to_owned),
            signature: Signature::Unsigned,
            provenance: None,
        }
    }

    fn signed(message: Option<&str>) -> Vec<Record> {
        let verified = Record {
            signature: Signature::Verified("U".repeat(56)),
            ..record(message)
        };
        let invalid = Record {
            signature: Signature::Invalid {
                signer: None,
                reason: "the event names a signer but carries no signature".into(),
            },
            provenance: Some(Provenance {
                on_behalf_of: Some("bob".into()),
                model: None,
                tool_call: Some("put #3".into()),
            }),
            ..record(message)
        };
        let provenance_only = Record {
            provenance: Some(Provenance::default()),
            ..record(message)
        };
        vec![verified, invalid, provenance_only]
    }

    #[test]
    fn signed_records_round_trip_and_unsigned_ones_keep_the_original_bytes() {
        for m in [Some("because ✓"), None, Some("")] {
            for r in signed(m) {
                let bytes = r.encode();
                let (back, rest) = Record::decode(&bytes).unwrap();
                assert_eq!(back, r);
                assert!(rest.is_empty());
                for n in 0..bytes.len() {
                    assert!(Record::decode(&bytes[..n]).is_err(), "prefix of {n} bytes");
                }
            }
        }
        // The form before signatures: seq, hash, logged, time, agent, message.
        let old = record(Some("why")).encode();
        assert_eq!(old.len(), 8 + 32 + 8 + 8 + 1 + 7 + 4 + 3);
        assert_eq!(&old[old.len() - 7..], b"\0\0\0\x03why");
    }

    #[test]
    fn records_round_trip_with_and_without_a_message() {
        for r in [record(Some("because ✓")), record(None), record(Some(""))] {
            let bytes = r.encode();
            let (back, rest) = Record::decode(&bytes).unwrap();
            assert_eq!(back, r);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn every_truncation_of_a_record_is_an_error_not_a_panic() {
        let bytes = record(Some("why")).encode();
        for n in 0..bytes.len() {
            assert!(Record::decode(&bytes[..n]).is_err(), "prefix of {n} bytes");
        }
    }
}
