//! The diff between two positions, read in place.
//!
//! `Doc::diff` forks the document at the two positions (automerge replays every change up
//! to them into a new document) to read the values of the diff; `Doc::at` forks it once
//! more for the document there, so each click on the timeline of a 100k-event document cost
//! two forks of its whole history (BENCHMARKS.md, "Web view on a 100k-event document").
//! automerge diffs two sets of heads within one document, so the page's "diff to the event
//! before" is taken here from the replica's document itself, with its values read from the
//! fork `Doc::at` made for the document there: one fork a click instead of two.
//!
//! Why not read the document there in place too (automerge's `*_at` reads): automerge 0.6
//! leaves out a counter that was incremented when read at past heads (the test below
//! checks it), so the fork stays the reference for values.

use std::panic::{catch_unwind, AssertUnwindSafe};

use blackboard_client::automerge::patches::TextRepresentation;
use blackboard_client::automerge::{
    Automerge, ChangeHash, ObjId, ObjType, PatchAction, Prop, ReadDoc, Value,
};
use blackboard_client::json::{object_to_json, value_to_json};
use blackboard_client::{Patch, PatchOp, Path};
use serde_json::Value as Json;

/// Runs `f` over automerge, turning a panic into an error naming `what`.
pub fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| format!("automerge failed while {what}"))
}

/// The JSON of `value` (with id `id`) in `now`, the document at the diff's later end.
fn value_in(now: &Automerge, value: Value<'_>, id: &ObjId) -> Json {
    match value {
        Value::Object(_) => object_to_json(now, id),
        scalar => value_to_json(now, scalar, id),
    }
}

fn segment(p: &Prop) -> String {
    match p {
        Prop::Map(k) => k.clone(),
        Prop::Seq(i) => i.to_string(),
    }
}

/// Every concurrent value at `prop` of `obj` in `now`, and the one shown.
fn conflict_in(now: &Automerge, obj: &ObjId, prop: Prop) -> Option<PatchOp> {
    let (winner, id) = now.get(obj, prop.clone()).ok().flatten()?;
    let values = now
        .get_all(obj, prop)
        .ok()?
        .into_iter()
        .map(|(v, id)| value_in(now, v, &id))
        .collect();
    Some(PatchOp::Conflict {
        winner: value_in(now, winner, &id),
        values,
    })
}

/// The patches that take the document from `before` to `after` (both in `doc`), with values
/// and conflicts read from `now`, a copy of the document at `after` (`View::doc`): what
/// `Doc::diff` answers, without forking again.
pub fn diff(
    doc: &Automerge,
    before: &[ChangeHash],
    after: &[ChangeHash],
    now: &Automerge,
) -> Vec<Patch> {
    let text = TextRepresentation::String(doc.text_encoding());
    let mut out = Vec::new();
    for p in doc.diff(before, after, text) {
        let base = p
            .path
            .iter()
            .fold(Path::root(), |acc, (_, prop)| acc.join(segment(prop)));
        let put = |prop: Prop, value: (Value<'_>, ObjId), conflict: bool| {
            let op = conflict.then(|| conflict_in(now, &p.obj, prop)).flatten();
            op.unwrap_or_else(|| PatchOp::Put {
                value: value_in(now, value.0, &value.1),
            })
        };
        let (path, op) = match p.action {
            PatchAction::PutMap {
                key,
                value,
                conflict,
            } => (base.join(key.clone()), put(Prop::Map(key), value, conflict)),
            PatchAction::PutSeq {
                index,
                value,
                conflict,
            } => (
                base.join(index.to_string()),
                put(Prop::Seq(index), value, conflict),
            ),
            PatchAction::Insert { index, values } => (
                base.join(index.to_string()),
                PatchOp::Insert {
                    values: values
                        .iter()
                        .map(|(v, id, _)| value_in(now, v.clone(), id))
                        .collect(),
                },
            ),
            PatchAction::SpliceText { index, value, .. } => (
                base,
                PatchOp::SpliceText {
                    index,
                    text: value.make_string(),
                },
            ),
            PatchAction::Increment { prop, value } => {
                let total = now
                    .get(&p.obj, prop.clone())
                    .ok()
                    .flatten()
                    .map_or(Json::Null, |(v, id)| value_in(now, v, &id));
                (
                    base.join(segment(&prop)),
                    PatchOp::Increment {
                        by: value,
                        value: total,
                    },
                )
            }
            PatchAction::Conflict { prop } => {
                let Some(op) = conflict_in(now, &p.obj, prop.clone()) else {
                    continue;
                };
                (base.join(segment(&prop)), op)
            }
            PatchAction::DeleteMap { key } => (
                base.join(key),
                PatchOp::Delete {
                    index: None,
                    count: 1,
                },
            ),
            PatchAction::DeleteSeq { index, length } => {
                let path = match doc.object_type(&p.obj) {
                    Ok(ObjType::Text) => base,
                    _ => base.join(index.to_string()),
                };
                (
                    path,
                    PatchOp::Delete {
                        index: Some(index),
                        count: length,
                    },
                )
            }
            PatchAction::Mark { .. } => continue,
        };
        out.push(Patch { path, op });
    }
    out
}

#[cfg(test)]
mod tests {
    use blackboard::doc::DocCore;
    use blackboard_client::automerge::transaction::{Transactable as _, Transaction};
    use blackboard_client::automerge::{Automerge, ObjType, ScalarValue, ROOT};
    use serde_json::json;

    use super::*;

    fn step(doc: &mut Automerge, f: impl FnOnce(&mut Transaction<'_>)) -> Vec<ChangeHash> {
        let mut tx = doc.transaction();
        f(&mut tx);
        tx.commit();
        doc.get_heads()
    }

    #[test]
    fn the_diff_read_in_place_equals_the_engines_diff_on_a_fork() {
        // A map, a list, a text, a counter, a nested object, a deletion and a conflict, over
        // three positions.
        let mut a = Automerge::new();
        let mut heads = vec![a.get_heads()];
        heads.push(step(&mut a, |tx| {
            tx.put(ROOT, "goal", "ship v1").unwrap();
            let list = tx.put_object(ROOT, "todo", ObjType::List).unwrap();
            tx.insert(&list, 0, "docs").unwrap();
            let text = tx.put_object(ROOT, "notes", ObjType::Text).unwrap();
            tx.splice_text(&text, 0, 0, "hello").unwrap();
            tx.put(ROOT, "hits", ScalarValue::counter(1)).unwrap();
        }));
        let mut b = a.fork();
        heads.push(step(&mut a, |tx| {
            tx.put(ROOT, "goal", "ship v2").unwrap();
            let nested = tx.put_object(ROOT, "owner", ObjType::Map).unwrap();
            tx.put(&nested, "name", "alice").unwrap();
            tx.increment(ROOT, "hits", 2).unwrap();
        }));
        step(&mut b, |tx| {
            tx.put(ROOT, "goal", "ship v3").unwrap();
            let text = tx.get(ROOT, "notes").unwrap().unwrap().1;
            tx.splice_text(&text, 5, 0, " world").unwrap();
            tx.delete(ROOT, "todo").unwrap();
        });
        a.merge(&mut b).unwrap();
        heads.push(a.get_heads());
        // A later change, so every position above is in the past.
        step(&mut a, |tx| tx.put(ROOT, "goal", "done").unwrap());

        let saved = a.save();
        let (engine, errors) = DocCore::load(Some(&saved), []).unwrap();
        assert!(errors.is_empty());
        for (i, w) in heads.windows(2).enumerate() {
            let (before, after) = (&w[0], &w[1]);
            let there = engine.fork_at(after).unwrap();
            assert_eq!(
                diff(&a, before, after, there.automerge()),
                engine.diff(before, after).unwrap(),
                "the diff to position {}",
                i + 1
            );
        }
        // The merge's diff holds the conflict at /goal, with both values.
        let there = engine.fork_at(&heads[3]).unwrap();
        let merged = diff(&a, &heads[2], &heads[3], there.automerge());
        assert!(
            merged.iter().any(|p| p.path.to_string() == "/goal"
                && matches!(&p.op, PatchOp::Conflict { values, .. } if values.len() == 2)),
            "{merged:?}"
        );
        // Why the values come from the fork: automerge 0.6 reads an incremented counter at
        // past heads as absent. When this fails, automerge was fixed and the document there
        // could be read in place too.
        assert_eq!(a.get_at(ROOT, "hits", &heads[2]).unwrap(), None);
        assert_eq!(there.to_json()["hits"], json!(3));
    }
}
