//! Convergence of the core with no sockets: the same changes, delivered in any order and any
//! number of times, give the same document.

use super::*;
use automerge::transaction::Transactable;
use automerge::{ObjType, ScalarValue, ROOT};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Builds a shared base, then lets `writers` replicas make concurrent edits of every kind
/// (conflicting map writes, list inserts, text splices, counter increments), syncing only
/// now and then. Returns every change's bytes, in the order they were made.
fn concurrent_history(writers: usize, rounds: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut all = Vec::new();
    let mut base = DocCore::new();
    let (_, c) = base
        .transact(0, Some("base".into()), |tx| {
            tx.put_object(ROOT, "text", ObjType::Text)?;
            tx.put_object(ROOT, "list", ObjType::List)?;
            tx.put(ROOT, "hits", ScalarValue::counter(0))?;
            Ok::<_, AutomergeError>(())
        })
        .unwrap();
    all.push(c.unwrap().bytes);
    let mut replicas: Vec<DocCore> = (0..writers)
        .map(|_| {
            let mut r = DocCore::new();
            r.apply_bytes(&all[0]).unwrap();
            r
        })
        .collect();
    for round in 0..rounds {
        for (w, r) in replicas.iter_mut().enumerate() {
            let pick: u8 = rng.gen_range(0..4);
            let pos: usize = rng.gen_range(0..=2);
            let (_, c) = r
                .transact(round as i64, None, |tx| {
                    let text = tx.get(ROOT, "text")?.unwrap().1;
                    let list = tx.get(ROOT, "list")?.unwrap().1;
                    match pick {
                        0 => tx.put(ROOT, "winner", format!("w{w}r{round}"))?,
                        1 => {
                            let at = pos.min(tx.length(&list));
                            tx.insert(&list, at, w as i64)?
                        }
                        2 => {
                            let at = pos.min(tx.length(&text));
                            tx.splice_text(&text, at, 0, &format!("<{w}>"))?
                        }
                        _ => tx.increment(ROOT, "hits", 1)?,
                    }
                    Ok::<_, AutomergeError>(())
                })
                .unwrap();
            all.push(c.unwrap().bytes);
        }
        // Occasionally one replica catches up with everything so far, so later changes
        // depend on a mix of heads rather than only on the base.
        if round % 3 == 2 {
            let i = rng.gen_range(0..writers);
            for bytes in &all {
                replicas[i].apply_bytes(bytes).unwrap();
            }
        }
    }
    all
}

#[test]
fn shuffled_and_duplicated_deliveries_converge_to_identical_state() {
    let changes = concurrent_history(5, 30, 7);
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut results = Vec::new();
    for _ in 0..8 {
        let mut delivery: Vec<&Vec<u8>> = changes.iter().collect();
        // Duplicate a third of the changes, then shuffle everything.
        for _ in 0..changes.len() / 3 {
            delivery.push(&changes[rng.gen_range(0..changes.len())]);
        }
        delivery.shuffle(&mut rng);
        let mut doc = DocCore::new();
        for bytes in delivery {
            doc.apply_bytes(bytes).unwrap();
        }
        results.push((doc.heads(), doc.to_json(), doc.history_len()));
    }
    let (heads, json, len) = &results[0];
    assert_eq!(*len, changes.len(), "every change applied exactly once");
    assert!(json["text"].as_str().unwrap().contains("<"));
    for r in &results[1..] {
        assert_eq!(&r.0, heads);
        assert_eq!(&r.1, json);
    }
}

#[test]
fn a_change_with_missing_dependencies_waits_then_applies() {
    let mut a = DocCore::new();
    let (_, first) = a.transact(0, None, |tx| tx.put(ROOT, "x", 1)).unwrap();
    let (_, second) = a.transact(0, None, |tx| tx.put(ROOT, "y", 2)).unwrap();
    let mut b = DocCore::new();
    assert_eq!(
        b.apply_bytes(&second.unwrap().bytes).unwrap(),
        Applied::Pending
    );
    assert_eq!(b.to_json(), json!({}));
    assert_eq!(b.apply_bytes(&first.unwrap().bytes).unwrap(), Applied::New);
    assert_eq!(b.to_json(), json!({"x": 1, "y": 2}));
    assert_eq!(b.heads(), a.heads());
}

#[test]
fn garbage_bytes_are_an_error_and_leave_the_document_untouched() {
    let mut doc = DocCore::new();
    doc.transact(0, None, |tx| tx.put(ROOT, "k", "v")).unwrap();
    let mut before = (doc.heads(), doc.to_json());
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let valid = {
        let mut other = DocCore::new();
        other
            .transact(0, None, |tx| tx.put(ROOT, "z", 1))
            .unwrap()
            .1
            .unwrap()
            .bytes
    };
    for i in 0..300 {
        let bytes: Vec<u8> = if i % 2 == 0 {
            (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect()
        } else {
            // A valid change with a few bytes flipped: the checksum or parser must catch it.
            let mut b = valid.clone();
            let at = rng.gen_range(0..b.len());
            b[at] ^= 0xff;
            b
        };
        if doc.apply_bytes(&bytes).is_ok() {
            // A flip outside the checksummed region (the checksum itself) can leave a change
            // that still parses: it is then a legitimate change, and the new baseline.
            before = (doc.heads(), doc.to_json());
            continue;
        }
        assert_eq!((doc.heads(), doc.to_json()), before);
    }
}

#[test]
fn load_rebuilds_from_snapshot_plus_changes_and_reports_bad_records() {
    let mut a = DocCore::new();
    a.transact(0, None, |tx| tx.put(ROOT, "a", 1)).unwrap();
    let snapshot = a.save();
    let (_, c) = a.transact(0, None, |tx| tx.put(ROOT, "b", 2)).unwrap();
    let c = c.unwrap().bytes;
    let garbage = vec![1u8, 2, 3];
    let (b, errors) = DocCore::load(Some(&snapshot), [c.as_slice(), garbage.as_slice()]).unwrap();
    assert_eq!(b.to_json(), json!({"a": 1, "b": 2}));
    assert_eq!(b.heads(), a.heads());
    assert_eq!(errors.len(), 1);
    assert!(DocCore::load(Some(&garbage), []).is_err());
}

#[test]
fn each_released_change_is_reported_on_its_own_with_its_own_patches() {
    let mut a = DocCore::new();
    let c1 = a
        .transact(0, None, |tx| tx.put(ROOT, "x", 1))
        .unwrap()
        .1
        .unwrap();
    let c2 = a
        .transact(0, None, |tx| tx.put(ROOT, "y", 2))
        .unwrap()
        .1
        .unwrap();
    let c3 = a
        .transact(0, None, |tx| tx.put(ROOT, "z", 3))
        .unwrap()
        .1
        .unwrap();
    let mut b = DocCore::new();
    let decode = |c: &LocalChange| DocCore::decode_change(&c.bytes).unwrap();
    assert_eq!(
        b.apply_with_patches(decode(&c3)).unwrap().0,
        Applied::Pending
    );
    assert_eq!(
        b.apply_with_patches(decode(&c2)).unwrap().0,
        Applied::Pending
    );
    assert_eq!(b.pending_len(), 2);
    // A held-back change again is a duplicate, not a second copy.
    assert_eq!(
        b.apply_with_patches(decode(&c3)).unwrap().0,
        Applied::Duplicate
    );
    let (applied, took_effect) = b.apply_with_patches(decode(&c1)).unwrap();
    assert_eq!(applied, Applied::New);
    let order: Vec<_> = took_effect.iter().map(|c| c.hash).collect();
    assert_eq!(order, [c1.hash, c2.hash, c3.hash]);
    let paths: Vec<String> = took_effect
        .iter()
        .map(|c| {
            c.patches
                .iter()
                .map(|p| p.path.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    assert_eq!(paths, ["/x", "/y", "/z"]);
    assert_eq!(b.pending_len(), 0);
    assert_eq!(b.heads(), a.heads());
}
