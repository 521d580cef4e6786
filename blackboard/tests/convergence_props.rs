//! Property tests of the document core's convergence, with no sockets and no disk.
//!
//! 3 to 5 replicas of one document make random edits of every kind (map puts, nested maps
//! and deletes, list inserts and deletes, text splices, counter increments) on whatever state
//! they have, while a simulated network delivers each change to every other replica out of
//! order, sometimes twice, and sometimes drops it for now (a dropped change is redelivered at
//! the end, after the changes that depend on it). Afterwards every replica must hold the same
//! heads and the same JSON, nothing may be held back, and every change must have taken effect
//! exactly once on every replica.
//!
//! 1,000 cases per run by default; `PROPTEST_CASES=N` runs N instead.

use std::collections::HashMap;

use blackboard::automerge::transaction::{Transactable, Transaction};
use blackboard::automerge::{
    AutomergeError, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue, ROOT,
};
use blackboard::doc::{Applied, DocCore};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// One edit inside a transaction. Positions are taken modulo the current length.
#[derive(Debug, Clone)]
enum Op {
    /// Put a scalar at `/map/<key>`.
    Put { key: usize, value: i64 },
    /// Put a new map holding `{"v": value}` at `/map/<key>`.
    PutMap { key: usize, value: i64 },
    /// Delete `/map/<key>` (when present).
    Delete { key: usize },
    /// Insert into `/list`.
    Insert { at: usize, value: i64 },
    /// Delete from `/list` (when not empty).
    Remove { at: usize },
    /// Splice `/text`.
    Splice {
        at: usize,
        delete: usize,
        insert: String,
    },
    /// Increment the counter `/hits`.
    Increment { by: i64 },
}

const KEYS: [&str; 3] = ["a", "b", "c"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..KEYS.len(), any::<i64>()).prop_map(|(key, value)| Op::Put { key, value }),
        (0..KEYS.len(), any::<i64>()).prop_map(|(key, value)| Op::PutMap { key, value }),
        (0..KEYS.len()).prop_map(|key| Op::Delete { key }),
        (0..8usize, any::<i64>()).prop_map(|(at, value)| Op::Insert { at, value }),
        (0..8usize).prop_map(|at| Op::Remove { at }),
        (0..16usize, 0..3usize, "[a-z é🙂]{0,4}").prop_map(|(at, delete, insert)| Op::Splice {
            at,
            delete,
            insert
        }),
        (-3i64..=3).prop_map(|by| Op::Increment { by }),
    ]
}

/// One step of a run.
#[derive(Debug, Clone)]
enum Step {
    /// A replica makes one transaction of 1 to 3 edits, on the state it has now.
    Edit { replica: Index, ops: Vec<Op> },
    /// A replica's network delivers one change waiting for it, picked at random (so out of
    /// order). Sometimes the same change is delivered again later (`duplicate`), sometimes it
    /// is dropped now and redelivered at the end (`drop`).
    Deliver {
        replica: Index,
        pick: Index,
        duplicate: bool,
        drop: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (any::<Index>(), prop::collection::vec(op(), 1..=3))
            .prop_map(|(replica, ops)| Step::Edit { replica, ops }),
        3 => (any::<Index>(), any::<Index>(), prop::bool::weighted(0.15), prop::bool::weighted(0.15))
            .prop_map(|(replica, pick, duplicate, drop)| Step::Deliver { replica, pick, duplicate, drop }),
    ]
}

/// A whole run: how many replicas, the steps, and the seed of the final redelivery order.
fn run() -> impl Strategy<Value = (usize, Vec<Step>, u64)> {
    (
        3usize..=5,
        prop::collection::vec(step(), 20..160),
        any::<u64>(),
    )
}

fn obj(tx: &Transaction<'_>, key: &str) -> ObjId {
    tx.get(ROOT, key)
        .expect("reading the root")
        .expect("the base made the object")
        .1
}

fn edit(tx: &mut Transaction<'_>, op: &Op) -> Result<(), AutomergeError> {
    let (map, list, text) = (obj(tx, "map"), obj(tx, "list"), obj(tx, "text"));
    match op {
        Op::Put { key, value } => tx.put(&map, KEYS[*key], *value),
        Op::PutMap { key, value } => {
            let inner = tx.put_object(&map, KEYS[*key], ObjType::Map)?;
            tx.put(&inner, "v", *value)
        }
        Op::Delete { key } => match tx.get(&map, KEYS[*key])? {
            Some(_) => tx.delete(&map, KEYS[*key]),
            None => Ok(()),
        },
        Op::Insert { at, value } => {
            let at = at % (tx.length(&list) + 1);
            tx.insert(&list, at, *value)
        }
        Op::Remove { at } => match tx.length(&list) {
            0 => Ok(()),
            len => tx.delete(&list, at % len),
        },
        Op::Splice { at, delete, insert } => {
            let len = tx.length(&text);
            let at = at % (len + 1);
            let delete = (*delete).min(len - at) as isize;
            tx.splice_text(&text, at, delete, insert)
        }
        Op::Increment { by } => tx.increment(ROOT, "hits", *by),
    }
}

/// A replica and what it has been handed.
struct Replica {
    core: DocCore,
    /// Changes sent to it and not yet delivered.
    inbox: Vec<usize>,
    /// Changes dropped on the way, redelivered at the end.
    dropped: Vec<usize>,
    /// How many times each change took effect here (made locally or applied), when the
    /// replica applies with patches and so learns which changes took effect.
    took_effect: Option<HashMap<ChangeHash, usize>>,
}

impl Replica {
    /// Delivers change `i`. Replicas with an even index apply with patches (and record which
    /// changes took effect); the others apply the bytes, as a replica without watchers does.
    fn deliver(&mut self, i: usize, changes: &[(ChangeHash, Vec<u8>)]) {
        let (hash, bytes) = &changes[i];
        let had = self.core.has_change(hash);
        let applied = match &mut self.took_effect {
            Some(counts) => {
                let change = DocCore::decode_change(bytes).expect("a change the core made decodes");
                let (applied, took_effect) = self
                    .core
                    .apply_with_patches(change)
                    .expect("a change the core made applies");
                for c in took_effect {
                    *counts.entry(c.hash).or_default() += 1;
                }
                applied
            }
            None => self
                .core
                .apply_bytes(bytes)
                .expect("a change the core made applies"),
        };
        if had {
            assert_eq!(
                applied,
                Applied::Duplicate,
                "a change the replica had came back"
            );
        }
    }
}

/// What a run left: the replicas, every change made (in order), and the sum of every
/// increment made, which the counter must show.
struct Played {
    replicas: Vec<Replica>,
    changes: Vec<(ChangeHash, Vec<u8>)>,
    hits: i64,
}

/// Runs the scenario.
fn play(replicas: usize, steps: &[Step], seed: u64) -> Played {
    let mut hits = 0;
    let mut changes: Vec<(ChangeHash, Vec<u8>)> = Vec::new();
    let mut base = DocCore::new();
    let (_, made) = base
        .transact(0, Some("base".into()), |tx| {
            tx.put_object(ROOT, "map", ObjType::Map)?;
            tx.put_object(ROOT, "list", ObjType::List)?;
            tx.put_object(ROOT, "text", ObjType::Text)?;
            tx.put(ROOT, "hits", ScalarValue::counter(0))?;
            Ok::<_, AutomergeError>(())
        })
        .expect("the base transaction");
    let made = made.expect("the base made a change");
    changes.push((made.hash, made.bytes));
    let mut reps: Vec<Replica> = (0..replicas)
        .map(|r| {
            let mut core = DocCore::new();
            core.apply_bytes(&changes[0].1).expect("the base applies");
            let took_effect = (r % 2 == 0).then(|| HashMap::from([(changes[0].0, 1)]));
            Replica {
                core,
                inbox: Vec::new(),
                dropped: Vec::new(),
                took_effect,
            }
        })
        .collect();

    for step in steps {
        match step {
            Step::Edit { replica, ops } => {
                let r = replica.index(replicas);
                let (_, made) = reps[r]
                    .core
                    .transact(changes.len() as i64, None, |tx| {
                        ops.iter().try_for_each(|op| edit(tx, op))
                    })
                    .expect("edits with in-range positions succeed");
                // An edit can change nothing (deleting what is not there).
                let Some(made) = made else { continue };
                for op in ops {
                    if let Op::Increment { by } = op {
                        hits += by;
                    }
                }
                if let Some(counts) = &mut reps[r].took_effect {
                    *counts.entry(made.hash).or_default() += 1;
                }
                let i = changes.len();
                changes.push((made.hash, made.bytes));
                for (other, rep) in reps.iter_mut().enumerate() {
                    if other != r {
                        rep.inbox.push(i);
                    }
                }
            }
            Step::Deliver {
                replica,
                pick,
                duplicate,
                drop,
            } => {
                let rep = &mut reps[replica.index(replicas)];
                if rep.inbox.is_empty() {
                    continue;
                }
                let i = rep.inbox.swap_remove(pick.index(rep.inbox.len()));
                if *drop {
                    rep.dropped.push(i);
                    continue;
                }
                rep.deliver(i, &changes);
                if *duplicate {
                    rep.inbox.push(i);
                }
            }
        }
    }

    // Redeliver everything still in flight or dropped, shuffled, with some changes twice.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for rep in &mut reps {
        let mut rest: Vec<usize> = rep.inbox.drain(..).chain(rep.dropped.drain(..)).collect();
        let again: Vec<usize> = rest.iter().step_by(3).copied().collect();
        rest.extend(again);
        rest.shuffle(&mut rng);
        for i in rest {
            rep.deliver(i, &changes);
        }
    }
    Played {
        replicas: reps,
        changes,
        hits,
    }
}

fn config() -> ProptestConfig {
    let mut config = ProptestConfig {
        // A failing case is saved beside this file (tests/ has no lib.rs for the default).
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 1000;
    }
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn replicas_converge_under_reordered_duplicated_and_dropped_deliveries(
        (replicas, steps, seed) in run()
    ) {
        let Played { replicas: reps, changes, hits } = play(replicas, &steps, seed);
        let heads = reps[0].core.heads();
        let json = reps[0].core.to_json();
        for (r, rep) in reps.iter().enumerate() {
            prop_assert_eq!(rep.core.pending_len(), 0, "replica {} still holds changes back", r);
            prop_assert_eq!(rep.core.history_len(), changes.len(), "replica {}'s history", r);
            prop_assert_eq!(&rep.core.heads(), &heads, "replica {}'s heads", r);
            prop_assert_eq!(&rep.core.to_json(), &json, "replica {}'s JSON", r);
        }
        // No increment is lost or counted twice.
        prop_assert_eq!(json["hits"].as_i64(), Some(hits));
    }

    #[test]
    fn every_change_takes_effect_exactly_once_on_every_replica(
        (replicas, steps, seed) in run()
    ) {
        let Played { replicas: reps, changes, .. } = play(replicas, &steps, seed);
        for (r, rep) in reps.iter().enumerate() {
            let Some(counts) = &rep.took_effect else { continue };
            for (hash, _) in &changes {
                prop_assert_eq!(
                    counts.get(hash).copied().unwrap_or(0), 1,
                    "change {} on replica {}", hash, r
                );
            }
            prop_assert_eq!(counts.len(), changes.len(), "replica {} reported unknown changes", r);
        }
    }
}
