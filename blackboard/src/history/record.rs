//! One entry of the position index: what the log said about one change.

use automerge::ChangeHash;
use blackboard_schemas::AgentId;

use super::HistoryError;

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
}

/// No message (a length no real message has).
const NO_MESSAGE: u32 = u32::MAX;

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
        match &self.message {
            Some(m) => {
                out.extend_from_slice(&(m.len() as u32).to_be_bytes());
                out.extend_from_slice(m.as_bytes());
            }
            None => out.extend_from_slice(&NO_MESSAGE.to_be_bytes()),
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
        let message = match r.u32()? {
            NO_MESSAGE => None,
            n => Some(
                std::str::from_utf8(r.take(n as usize)?)
                    .map_err(|_| bad("message"))?
                    .to_owned(),
            ),
        };
        Ok((
            Record {
                seq,
                hash,
                logged_ms,
                time_ms,
                agent,
                message,
            },
            r.0,
        ))
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
        }
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
