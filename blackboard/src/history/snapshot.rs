//! A snapshot: a document saved with automerge, tagged with the log position it covers, and
//! the position index up to there.
//!
//! The index travels with the document because trimming removes the events that carried the
//! agent, time and message of each change; with it, history, `at`, `diff` and `blame` give
//! the same answers from a snapshot as from the full log.

use super::record::{Reader, Record};
use super::HistoryError;

const MAGIC: &[u8; 7] = b"BBSNAP\x01";

/// A document snapshot. Binary form: `BBSNAP\x01`, then the covered position (u64), the
/// number of index records (u64) and the records, then the automerge save (u64 length and
/// bytes); integers big-endian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The last log position whose event is in the snapshot.
    pub seq: u64,
    /// The position index up to `seq`, in sequence order.
    pub records: Vec<Record>,
    /// The document in automerge's save format.
    pub document: Vec<u8>,
}

impl Snapshot {
    /// The binary form.
    pub fn encode(&self) -> Vec<u8> {
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
        if r.take(MAGIC.len()).ok() != Some(MAGIC.as_slice()) {
            return Err(HistoryError::Corrupt(
                "not a Blackboard snapshot (bad magic or version)".into(),
            ));
        }
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
        })
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
        }
    }

    #[test]
    fn snapshots_round_trip() {
        let s = snapshot();
        assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
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
