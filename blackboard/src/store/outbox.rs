//! How an outbox entry is stored: its message id and its envelope, without the change.
//!
//! A local change is stored twice in one batch: as its change key (`c<hash>`, what the
//! document is rebuilt from) and inside its envelope in the outbox, base64 in JSON. The
//! second copy was a third of the bytes a write put on disk, and those bytes are fsynced
//! with every write. So the outbox keeps the envelope with the base64 cut out and where it
//! was; reading the entry back splices in the change key's bytes, encoded again. Base64 is
//! deterministic, so the payload published is byte for byte the one that was signed.
//!
//! Layout of a value: `[id length][message id]`, then either the whole envelope (it starts
//! with `{`: stores written before this layout, and an envelope whose change could not be
//! found in it) or `[0][change hash: 32][offset: u32 BE][the envelope without the
//! change's base64]`.
//!
//! Compaction keeps the change key of every change an outbox entry still names (see
//! [`ReplicaStore::compact`](super::ReplicaStore::compact)).

use base64::Engine as _;

/// Marks a value whose envelope has its change cut out (a whole envelope starts with `{`).
const SPLICED: u8 = 0;

/// An outbox value read back, before the change is spliced in.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Stored<'a> {
    pub(super) msg_id: &'a str,
    pub(super) body: Body<'a>,
}

/// The envelope of an outbox value.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Body<'a> {
    /// The whole envelope.
    Whole(&'a [u8]),
    /// The envelope without change `hash`'s base64, which goes at byte `at` of `rest`.
    Spliced {
        hash: [u8; 32],
        at: usize,
        rest: &'a [u8],
    },
}

/// The stored value of an outbox entry: `payload` is the envelope of `change`.
pub(super) fn encode(msg_id: &str, hash: &[u8; 32], change: &[u8], payload: &[u8]) -> Vec<u8> {
    // Message ids are a change hash (64 characters), or a hash and a document (and a
    // signature's start) for copies and creations: well under 256 bytes.
    let id = &msg_id.as_bytes()[..msg_id.len().min(255)];
    let mut value = Vec::with_capacity(1 + id.len() + 37 + payload.len());
    value.push(id.len() as u8);
    value.extend_from_slice(id);
    let b64 = base64::engine::general_purpose::STANDARD.encode(change);
    // The change as the envelope holds it: a JSON string, so between quotes.
    let quoted = format!("\"{b64}\"");
    match find(payload, quoted.as_bytes()) {
        Some(start) => {
            let at = start + 1;
            value.push(SPLICED);
            value.extend_from_slice(hash);
            value.extend_from_slice(&(at as u32).to_be_bytes());
            value.extend_from_slice(&payload[..at]);
            value.extend_from_slice(&payload[at + b64.len()..]);
        }
        None => value.extend_from_slice(payload),
    }
    value
}

/// Reads a stored value; `None` when it is malformed.
pub(super) fn decode(v: &[u8]) -> Option<Stored<'_>> {
    let len = *v.first()? as usize;
    let msg_id = std::str::from_utf8(v.get(1..1 + len)?).ok()?;
    let rest = &v[1 + len..];
    let body = match rest.first()? {
        &SPLICED => {
            let hash: [u8; 32] = rest.get(1..33)?.try_into().ok()?;
            let at = u32::from_be_bytes(rest.get(33..37)?.try_into().ok()?) as usize;
            let rest = &rest[37..];
            if at > rest.len() {
                return None;
            }
            Body::Spliced { hash, at, rest }
        }
        _ => Body::Whole(rest),
    };
    Some(Stored { msg_id, body })
}

/// The envelope `rest` was cut from, with `change` put back at `at`.
pub(super) fn splice(rest: &[u8], at: usize, change: &[u8]) -> Vec<u8> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut payload = Vec::with_capacity(rest.len() + change.len().div_ceil(3) * 4);
    payload.extend_from_slice(&rest[..at]);
    payload.extend_from_slice(engine.encode(change).as_bytes());
    payload.extend_from_slice(&rest[at..]);
    payload
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(change: &[u8]) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(change);
        format!(r#"{{"v":1,"agent":"a","change":"{b64}","signature":null}}"#).into_bytes()
    }

    #[test]
    fn an_envelope_stored_without_its_change_is_rebuilt_byte_for_byte() {
        // About the size of a put's change.
        let change: Vec<u8> = (0..200u8).collect();
        let payload = envelope(&change);
        let value = encode("msg-1", &[7; 32], &change, &payload);
        assert!(
            value.len() < 1 + 5 + payload.len(),
            "the base64 is not stored"
        );
        let stored = decode(&value).expect("a well-formed value");
        assert_eq!(stored.msg_id, "msg-1");
        let Body::Spliced { hash, at, rest } = stored.body else {
            panic!("the change was cut out: {:?}", stored.body);
        };
        assert_eq!(hash, [7; 32]);
        assert_eq!(splice(rest, at, &change), payload);
    }

    #[test]
    fn a_value_in_the_older_layout_reads_as_the_whole_envelope() {
        let payload = envelope(b"abc");
        let mut old = vec![5];
        old.extend_from_slice(b"msg-1");
        old.extend_from_slice(&payload);
        let stored = decode(&old).expect("a well-formed value");
        assert_eq!(stored.msg_id, "msg-1");
        assert_eq!(stored.body, Body::Whole(&payload));
    }

    #[test]
    fn an_envelope_without_its_change_in_it_is_stored_whole() {
        let payload = envelope(b"other bytes");
        let value = encode("m", &[1; 32], b"not the change", &payload);
        assert_eq!(
            decode(&value).expect("well formed").body,
            Body::Whole(&payload)
        );
    }

    #[test]
    fn truncated_or_garbage_values_are_refused_not_misread() {
        let change = b"change".to_vec();
        let value = encode("m", &[1; 32], &change, &envelope(&change));
        // Cut inside the header (id, marker, hash, offset): never a value.
        for cut in 0..1 + 1 + 1 + 32 + 4 {
            assert_eq!(decode(&value[..cut]), None, "cut at {cut}");
        }
        // An offset past the end.
        let mut bad = value.clone();
        bad[1 + 1 + 1 + 32..1 + 1 + 1 + 32 + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&bad), None);
        assert_eq!(
            decode(&[3, 0xff, 0xfe, 0xfd]),
            None,
            "an id that is not UTF-8"
        );
    }
}
