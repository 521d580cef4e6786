//! Patches: what one change did to a document, path by path.
//!
//! automerge reports a change's effects as patches against object ids; these are the same
//! effects against [`Path`]s, with new values as JSON, and conflicts spelled out.

use automerge::patches::TextRepresentation;
use automerge::{Automerge, ChangeHash, ObjId, ObjType, PatchAction, Prop, ReadDoc, Value};
use serde::Serialize;
use serde_json::Value as Json;

use super::json::{object_to_json, value_to_json};
use super::Path;

/// One effect of a change at one path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Patch {
    /// Where: for map keys and list elements, the path of the key or element; for text,
    /// the path of the text.
    #[serde(serialize_with = "display")]
    pub path: Path,
    /// What happened there.
    #[serde(flatten)]
    pub op: PatchOp,
}

fn display<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(p)
}

/// The kind of a patch, with its new value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PatchOp {
    /// A map key or list element was set to `value` (objects as their full JSON).
    Put {
        /// The new value.
        value: Json,
    },
    /// Elements were inserted into a list, the first at the patch's path.
    Insert {
        /// The inserted values, in order.
        values: Vec<Json>,
    },
    /// A map key, or `count` list elements or characters from `index`, were deleted.
    Delete {
        /// For lists and text: where the deletion starts.
        index: Option<usize>,
        /// How many elements or characters (1 for a map key).
        count: usize,
    },
    /// Text was inserted at character `index`.
    SpliceText {
        /// Where, in characters.
        index: usize,
        /// The inserted text.
        text: String,
    },
    /// A counter was incremented.
    Increment {
        /// By how much.
        by: i64,
        /// The counter's value afterwards.
        value: Json,
    },
    /// Concurrent writes to this key or element were merged: every replica keeps all of
    /// `values` and shows the same `winner`.
    Conflict {
        /// The value every replica shows (automerge's deterministic winner).
        winner: Json,
        /// Every concurrent value, the winner included.
        values: Vec<Json>,
    },
}

fn prop_seg(p: &Prop) -> String {
    match p {
        Prop::Map(k) => k.clone(),
        Prop::Seq(i) => i.to_string(),
    }
}

fn conflict_at(doc: &Automerge, obj: &ObjId, prop: Prop) -> Option<PatchOp> {
    let winner = doc.get(obj, prop.clone()).ok().flatten()?;
    let values = doc
        .get_all(obj, prop)
        .ok()?
        .into_iter()
        .map(|(v, id)| value_to_json(doc, v, &id))
        .collect();
    Some(PatchOp::Conflict {
        winner: value_to_json(doc, winner.0, &winner.1),
        values,
    })
}

/// The patches that take `doc` from heads `before` to heads `after`, with their values and
/// conflicts read from `now`: a copy of the document at `after` (a fork, or `doc` itself when
/// `after` are its heads). One automerge diff within `doc`, no fork of its own.
pub fn diff_reading(
    doc: &Automerge,
    before: &[ChangeHash],
    after: &[ChangeHash],
    now: &Automerge,
) -> Vec<Patch> {
    let text = TextRepresentation::String(doc.text_encoding());
    convert(now, doc.diff(before, after, text))
}

/// Converts automerge's patches (taken right after applying a change to `doc`) into ours.
pub fn convert(doc: &Automerge, patches: Vec<automerge::Patch>) -> Vec<Patch> {
    let mut out = Vec::with_capacity(patches.len());
    for p in patches {
        let base = p
            .path
            .iter()
            .fold(Path::root(), |acc, (_, prop)| acc.join(prop_seg(prop)));
        let is_text = matches!(doc.object_type(&p.obj), Ok(ObjType::Text));
        let (path, op) = match p.action {
            PatchAction::PutMap {
                key,
                value,
                conflict,
            } => {
                let op = if conflict {
                    conflict_at(doc, &p.obj, Prop::Map(key.clone()))
                } else {
                    None
                };
                let op = op.unwrap_or_else(|| PatchOp::Put {
                    value: value_json(doc, value),
                });
                (base.join(key), op)
            }
            PatchAction::PutSeq {
                index,
                value,
                conflict,
            } => {
                let op = if conflict {
                    conflict_at(doc, &p.obj, Prop::Seq(index))
                } else {
                    None
                };
                let op = op.unwrap_or_else(|| PatchOp::Put {
                    value: value_json(doc, value),
                });
                (base.join(index.to_string()), op)
            }
            PatchAction::Insert { index, values } => {
                let values = values
                    .iter()
                    .map(|(v, id, _)| value_json(doc, (v.clone(), id.clone())))
                    .collect();
                (base.join(index.to_string()), PatchOp::Insert { values })
            }
            PatchAction::SpliceText { index, value, .. } => (
                base,
                PatchOp::SpliceText {
                    index,
                    text: value.make_string(),
                },
            ),
            PatchAction::Increment { prop, value } => {
                let now = doc
                    .get(&p.obj, prop.clone())
                    .ok()
                    .flatten()
                    .map_or(Json::Null, |(v, id)| value_to_json(doc, v, &id));
                (
                    base.join(prop_seg(&prop)),
                    PatchOp::Increment {
                        by: value,
                        value: now,
                    },
                )
            }
            PatchAction::Conflict { prop } => {
                let Some(op) = conflict_at(doc, &p.obj, prop.clone()) else {
                    continue;
                };
                (base.join(prop_seg(&prop)), op)
            }
            PatchAction::DeleteMap { key } => (
                base.join(key),
                PatchOp::Delete {
                    index: None,
                    count: 1,
                },
            ),
            PatchAction::DeleteSeq { index, length } => {
                let path = if is_text {
                    base
                } else {
                    base.join(index.to_string())
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

fn value_json(doc: &Automerge, (value, id): (Value<'_>, ObjId)) -> Json {
    match value {
        Value::Object(_) => object_to_json(doc, &id),
        scalar => value_to_json(doc, scalar, &id),
    }
}
