//! Bad input to the document core and the event decoder harms nothing: garbage is refused
//! with an error, the document is left as it was, and no change that arrived honestly is
//! lost because of a bad one.

use blackboard::automerge::transaction::{CommitOptions, Transactable};
use blackboard::automerge::{ActorId, Automerge, AutomergeError, ROOT};
use blackboard::codec::{self, EventError};
use blackboard::doc::{Applied, DocCore, DocError, LocalChange, DEFAULT_PENDING_LIMIT};
use blackboard::schemas::{DecodeError, DocumentId, Envelope, SpaceId};
use rand::{Rng, SeedableRng};
use serde_json::json;

/// The bytes of the last change of `doc` after running `f` in a transaction.
fn commit(
    doc: &mut Automerge,
    f: impl FnOnce(
        &mut blackboard::automerge::transaction::Transaction<'_>,
    ) -> Result<(), AutomergeError>,
) -> Vec<u8> {
    doc.transact_with(|_| CommitOptions::default().with_time(1), f)
        .expect("the edit applies");
    doc.get_last_local_change()
        .expect("the edit made a change")
        .raw_bytes()
        .to_vec()
}

fn actor(name: &str) -> ActorId {
    ActorId::from(name.as_bytes())
}

fn hash(bytes: &[u8]) -> blackboard::automerge::ChangeHash {
    DocCore::decode_change(bytes).expect("decodes").hash()
}

#[test]
fn a_second_change_with_the_same_actor_and_seq_is_refused_and_the_first_kept() {
    // Two documents with the same actor each make their first change: same actor, seq 1,
    // different content. Only a forger can do this (each replica opening gets a fresh actor).
    let mut one = Automerge::new().with_actor(actor("twin"));
    let mut two = Automerge::new().with_actor(actor("twin"));
    let first = commit(&mut one, |tx| tx.put(ROOT, "k", "first"));
    let second = commit(&mut two, |tx| tx.put(ROOT, "k", "second"));
    assert_ne!(hash(&first), hash(&second));

    let mut core = DocCore::new();
    assert_eq!(core.apply_bytes(&first).unwrap(), Applied::New);
    let before = (core.heads(), core.to_json());
    let err = core.apply_bytes(&second).unwrap_err();
    assert!(
        matches!(
            err,
            DocError::Automerge(AutomergeError::DuplicateSeqNumber(1, _))
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("duplicate seq 1"), "{err}");
    assert_eq!((core.heads(), core.to_json()), before);
    assert_eq!(core.to_json(), json!({"k": "first"}));
    // The refused one was not kept anywhere: offering it again is refused again.
    assert!(core.apply_bytes(&second).is_err());
    assert_eq!(core.pending_len(), 0);
}

#[test]
fn a_held_back_equivocating_change_is_dropped_on_release_without_losing_the_others() {
    // x1 <- x2 and x1 <- x2' (same actor, seq 2, different content), and y1 <- x1 by someone
    // honest. All three arrive before x1; x1 releases them all.
    let mut x = Automerge::new().with_actor(actor("x"));
    let x1 = commit(&mut x, |tx| tx.put(ROOT, "base", 1));
    let mut x_twin = x.fork().with_actor(actor("x"));
    let x2 = commit(&mut x, |tx| tx.put(ROOT, "k", "x2"));
    let x2_forged = commit(&mut x_twin, |tx| tx.put(ROOT, "k", "forged"));
    let mut y = x_twin.fork_at(&[hash(&x1)]).unwrap().with_actor(actor("y"));
    let y1 = commit(&mut y, |tx| tx.put(ROOT, "y", true));

    let mut core = DocCore::new();
    for bytes in [&x2, &x2_forged, &y1] {
        assert_eq!(core.apply_bytes(bytes).unwrap(), Applied::Pending);
    }
    assert_eq!(core.pending_len(), 3);
    let (applied, took_effect) = core
        .apply_with_patches(DocCore::decode_change(&x1).unwrap())
        .expect("x1 applies even though a change it releases is refused");
    assert_eq!(applied, Applied::New);
    let took: Vec<_> = took_effect.iter().map(|c| c.hash).collect();
    assert_eq!(took, [hash(&x1), hash(&x2), hash(&y1)]);
    assert_eq!(core.refused_count(), 1);
    assert_eq!(core.pending_len(), 0);
    assert_eq!(core.to_json(), json!({"base": 1, "k": "x2", "y": true}));
    assert!(!core.has_change(&hash(&x2_forged)));
}

/// `n` changes of one chain after a first change that is withheld, so every one of them
/// lacks a dependency. Returns (the withheld change, the chain).
fn chain_after_a_missing_change(n: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut doc = Automerge::new().with_actor(actor("chain"));
    let missing = commit(&mut doc, |tx| tx.put(ROOT, "start", 0));
    let chain = (0..n)
        .map(|i| commit(&mut doc, |tx| tx.put(ROOT, "i", i as i64)))
        .collect();
    (missing, chain)
}

#[test]
fn the_pending_queue_refuses_past_its_limit_with_pending_full() {
    let (missing, chain) = chain_after_a_missing_change(4);
    let mut core = DocCore::new().with_pending_limit(3);
    for bytes in &chain[..3] {
        assert_eq!(core.apply_bytes(bytes).unwrap(), Applied::Pending);
    }
    let err = core.apply_bytes(&chain[3]).unwrap_err();
    assert!(matches!(err, DocError::PendingFull { limit: 3 }), "{err:?}");
    assert!(
        err.to_string().contains("3 changes are already held back"),
        "{err}"
    );
    assert_eq!(core.pending_len(), 3);
    // A change whose dependencies are present is never refused for a full queue.
    let mut other = Automerge::new().with_actor(actor("other"));
    let ready = commit(&mut other, |tx| tx.put(ROOT, "other", 1));
    assert_eq!(core.apply_bytes(&ready).unwrap(), Applied::New);
    // The missing change releases the three held back; the refused one can then be resent.
    assert_eq!(core.apply_bytes(&missing).unwrap(), Applied::New);
    assert_eq!(core.pending_len(), 0);
    assert_eq!(core.apply_bytes(&chain[3]).unwrap(), Applied::New);
    assert_eq!(core.to_json(), json!({"start": 0, "i": 3, "other": 1}));
}

#[test]
fn changes_whose_dependencies_never_arrive_stop_at_the_default_limit() {
    let (_, chain) = chain_after_a_missing_change(DEFAULT_PENDING_LIMIT + 1);
    let mut core = DocCore::new();
    for bytes in &chain[..DEFAULT_PENDING_LIMIT] {
        assert_eq!(core.apply_bytes(bytes).unwrap(), Applied::Pending);
    }
    let err = core.apply_bytes(&chain[DEFAULT_PENDING_LIMIT]).unwrap_err();
    assert!(
        matches!(
            err,
            DocError::PendingFull {
                limit: DEFAULT_PENDING_LIMIT
            }
        ),
        "{err:?}"
    );
    assert_eq!(core.pending_len(), DEFAULT_PENDING_LIMIT);
    assert_eq!(core.to_json(), json!({}));
}

/// A change chunk with a valid header (magic bytes, checksum field, the change chunk type
/// and a correct length) around `body`.
fn with_valid_header(body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1];
    let mut len = body.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(body);
    bytes
}

#[test]
fn changes_with_a_valid_header_and_a_garbage_body_are_refused_without_harm() {
    let mut base = Automerge::new().with_actor(actor("base"));
    let baseline = commit(&mut base, |tx| tx.put(ROOT, "k", "v"));
    let fresh = || {
        let mut core = DocCore::new();
        core.apply_bytes(&baseline).unwrap();
        core
    };
    let before = {
        let core = fresh();
        (core.heads(), core.to_json(), core.history_len())
    };
    // Also the body of a real change with bytes replaced past its header.
    let mut real = base.fork().with_actor(actor("real"));
    let valid = commit(&mut real, |tx| tx.put(ROOT, "z", 1));
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut refused = 0;
    for i in 0..2000 {
        let bytes = if i % 2 == 0 {
            let body: Vec<u8> = (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect();
            with_valid_header(&body)
        } else {
            let mut b = valid.clone();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(10..b.len());
                b[at] = rng.gen();
            }
            b
        };
        let mut core = fresh();
        match core.apply_bytes(&bytes) {
            Err(DocError::Panicked(what)) => {
                panic!("automerge panicked while {what} on {bytes:?}")
            }
            Err(_) => {
                refused += 1;
                assert_eq!((core.heads(), core.to_json(), core.history_len()), before);
            }
            // A replaced byte can leave a well-formed change (another value, say): it is
            // then a legitimate change, and the document must still read.
            Ok(_) => {
                let _ = core.to_json();
            }
        }
    }
    assert!(
        refused > 1000,
        "only {refused} of 2000 garbage bodies were refused"
    );
}

#[test]
fn truncated_envelopes_are_refused_with_an_error() {
    let mut doc = DocCore::new();
    let (_, change) = doc.transact(0, None, |tx| tx.put(ROOT, "k", "v")).unwrap();
    let change: LocalChange = change.unwrap();
    let (space, document): (SpaceId, DocumentId) = ("s".parse().unwrap(), "d".parse().unwrap());
    let agent = "a".parse().unwrap();
    let bytes =
        codec::encode_event(&space, &document, &agent, &change, 1, Some("m".into())).encode();
    assert!(codec::decode_event(&space, &document, &bytes).is_ok());
    for cut in 0..bytes.len() {
        let err = codec::decode_event(&space, &document, &bytes[..cut])
            .expect_err("a truncated envelope is refused");
        assert!(
            matches!(err, EventError::Envelope(DecodeError::Malformed(_))),
            "{cut}: {err}"
        );
    }
}

#[test]
fn envelopes_of_an_unknown_version_are_refused_naming_the_version() {
    for v in [0u64, 2, 7, u32::MAX as u64] {
        // An unknown version may have any shape: only `v` is read.
        let bytes = format!(r#"{{"v":{v},"whatever":[1,2,3]}}"#).into_bytes();
        let err = Envelope::decode(&bytes).unwrap_err();
        assert_eq!(err, DecodeError::UnsupportedVersion(v as u32));
        assert!(
            err.to_string()
                .contains(&format!("version {v} is not supported")),
            "{err}"
        );
        let (space, document): (SpaceId, DocumentId) = ("s".parse().unwrap(), "d".parse().unwrap());
        assert!(codec::decode_event(&space, &document, &bytes).is_err());
    }
    // A version that does not fit the field is malformed, not a panic.
    for v in ["-1", "4294967296", "1.5", "\"1\"", "null"] {
        let bytes = format!(r#"{{"v":{v}}}"#).into_bytes();
        assert!(
            matches!(Envelope::decode(&bytes), Err(DecodeError::Malformed(_))),
            "v = {v}"
        );
    }
}

#[test]
fn random_bytes_are_refused_by_every_decoder_without_panicking() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let (space, document): (SpaceId, DocumentId) = ("s".parse().unwrap(), "d".parse().unwrap());
    let mut core = DocCore::new();
    for _ in 0..5000 {
        // Not empty: automerge loads zero bytes as an empty document, which is harmless.
        let bytes: Vec<u8> = (0..rng.gen_range(1..256)).map(|_| rng.gen()).collect();
        assert!(Envelope::decode(&bytes).is_err());
        assert!(codec::decode_event(&space, &document, &bytes).is_err());
        assert!(core.apply_bytes(&bytes).is_err());
        assert!(DocCore::load(Some(&bytes), []).is_err());
    }
    assert_eq!(core.to_json(), json!({}));
    assert_eq!(core.history_len(), 0);
}

#[test]
fn a_change_on_an_object_the_document_lacks_is_refused_on_both_apply_paths() {
    // Found by the apply_change fuzz target: the corpus change `valid-list-delete` with one
    // byte of an actor id changed, so it deletes from a list the document does not have.
    // automerge 0.6 applied it without patches and half-applied it (history, no ops) with.
    let bytes = include_bytes!("../../fuzz/corpus/apply_change/found-dangling-object");
    let mut plain = blackboard::fuzzing::base_doc();
    let before = (plain.heads(), plain.to_json(), plain.history_len());
    let err = plain.apply_bytes(bytes).unwrap_err();
    assert!(
        err.to_string().contains("which the document does not have"),
        "{err}"
    );
    assert_eq!(
        (plain.heads(), plain.to_json(), plain.history_len()),
        before
    );

    let mut patched = blackboard::fuzzing::base_doc();
    let change = DocCore::decode_change(bytes).unwrap();
    assert!(matches!(
        patched.apply_with_patches(change),
        Err(DocError::BadChange(_))
    ));
    assert_eq!(
        (patched.heads(), patched.to_json(), patched.history_len()),
        before
    );
}
