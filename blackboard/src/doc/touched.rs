//! Which paths a change touches, for judging it against an agent's write grants.
//!
//! A change names the objects it writes by id, not by path, so its paths are resolved against
//! a document that holds its dependencies. The answer must be the same on every replica
//! whatever else that document holds, so an object's path is the one given by the operation
//! that *created* it (its parent object and key), which no later change can alter:
//!
//! - a map key is a segment of its own ([`Segment::Key`]);
//! - a list element is [`Segment::Element`] (written `*`): an element's index moves when
//!   another replica inserts before it concurrently, so an index must never decide a verdict;
//! - an edit inside a text object (splices, marks) touches the text's own path: a text is one
//!   value, however its characters are stored;
//! - objects made in the same change resolve through that change's own operations.
//!
//! A touch is either [`TouchKind::MadeEmpty`] (an empty map or list made by the container
//! recipe, which only ever builds the way down to a write) or [`TouchKind::Written`]
//! (everything else: values set, deleted, incremented, inserted, and containers made by any
//! other change, which could replace what is there).

use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use automerge::{Automerge, Change, ObjType, Prop, ReadDoc};

use super::containers;

/// One segment of a touched path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    /// A map key.
    Key(String),
    /// Some element of a list (which one is deliberately not said; see the module docs).
    Element,
}

/// A path as a change touches it: segments from the root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TouchedPath(pub Vec<Segment>);

impl TouchedPath {
    /// The segments, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    fn join(&self, segment: Segment) -> Self {
        let mut v = self.0.clone();
        v.push(segment);
        Self(v)
    }
}

impl fmt::Display for TouchedPath {
    /// JSON-Pointer style, with `*` for a list element: `/tasks/*/title`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for s in &self.0 {
            match s {
                Segment::Key(k) => write!(f, "/{}", k.replace('~', "~0").replace('/', "~1"))?,
                Segment::Element => f.write_str("/*")?,
            }
        }
        Ok(())
    }
}

/// How a change touches a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TouchKind {
    /// An empty map or list made by the container recipe.
    MadeEmpty,
    /// Anything else.
    Written,
}

/// One path a change touches, and how.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Touch {
    /// The path.
    pub path: TouchedPath,
    /// How.
    pub kind: TouchKind,
}

/// Why the paths of a change could not be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TouchError {
    /// automerge could not expand the change's operations.
    #[error("automerge could not expand change {0}'s operations")]
    Expand(String),
    /// An operation names an object neither the document nor the change itself created.
    #[error("change {change} writes object {object}, which the document does not hold")]
    UnknownObject {
        /// The change.
        change: String,
        /// The object id, as automerge writes it (`counter@actor`).
        object: String,
    },
}

/// An object's path and type.
#[derive(Debug, Clone)]
struct Located {
    path: TouchedPath,
    text: bool,
}

/// The paths `change` touches, resolved against `doc`, which must hold the change's
/// dependencies (it may hold more, or the change itself: neither alters the answer). Sorted,
/// without repeats. Never panics.
pub fn touched(doc: &Automerge, change: &Change) -> Result<Vec<Touch>, TouchError> {
    let hash = change.hash().to_string();
    let expanded = catch_unwind(AssertUnwindSafe(|| change.decode()))
        .map_err(|_| TouchError::Expand(hash.clone()))?;
    let recipe = containers::generation_of(&expanded.actor_id).is_some();
    let actor = expanded.actor_id.to_hex_string();
    let start = expanded.start_op.get();

    // Objects made by this change, by id: parent object id, key, type.
    let mut made: HashMap<String, (String, Option<String>, bool)> = HashMap::new();
    let mut ops = Vec::with_capacity(expanded.operations.len());
    for (i, op) in expanded.operations.iter().enumerate() {
        let action = serde_json::to_value(&op.action).unwrap_or_default();
        let action = action.as_str().unwrap_or_default().to_owned();
        let obj = op.obj.to_string();
        // automerge does not export the key type; a map key serializes as its string.
        let key = match op.key.is_map_key() {
            true => serde_json::to_value(&op.key)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned)),
            false => None,
        };
        if action.starts_with("make") {
            // A crafted start could overflow; the id is only looked up, never trusted.
            let id = format!("{}@{actor}", start.wrapping_add(i as u64));
            made.insert(id, (obj.clone(), key.clone(), action == "makeText"));
        }
        ops.push((action, obj, key));
    }

    let mut cache: HashMap<String, Located> = HashMap::new();
    let mut out = std::collections::BTreeSet::new();
    for (action, obj, key) in ops {
        let at = locate(doc, &made, &mut cache, &obj, &hash, 0)?;
        let path = match (at.text, key) {
            (true, _) => at.path,
            (false, Some(k)) => at.path.join(Segment::Key(k)),
            (false, None) => at.path.join(Segment::Element),
        };
        let kind = match (recipe, action.as_str()) {
            (true, "makeMap" | "makeList" | "makeTable") => TouchKind::MadeEmpty,
            _ => TouchKind::Written,
        };
        out.insert(Touch { path, kind });
    }
    Ok(out.into_iter().collect())
}

/// Where object `obj` is: through the change's own creations first, else the document.
fn locate(
    doc: &Automerge,
    made: &HashMap<String, (String, Option<String>, bool)>,
    cache: &mut HashMap<String, Located>,
    obj: &str,
    change: &str,
    depth: usize,
) -> Result<Located, TouchError> {
    if obj == "_root" {
        return Ok(Located {
            path: TouchedPath::default(),
            text: false,
        });
    }
    if let Some(found) = cache.get(obj) {
        return Ok(found.clone());
    }
    let unknown = || TouchError::UnknownObject {
        change: change.to_owned(),
        object: obj.to_owned(),
    };
    let found = match made.get(obj) {
        // A change's objects form a tree under objects it did not make, so the depth is
        // bounded by its operations; the guard only stops a crafted cycle.
        Some(_) if depth > made.len() => return Err(unknown()),
        Some((parent, key, text)) => {
            let parent = locate(doc, made, cache, parent, change, depth + 1)?;
            let path = match (parent.text, key) {
                (true, _) => parent.path,
                (false, Some(k)) => parent.path.join(Segment::Key(k.clone())),
                (false, None) => parent.path.join(Segment::Element),
            };
            Located { path, text: *text }
        }
        None => in_document(doc, obj).ok_or_else(unknown)?,
    };
    cache.insert(obj.to_owned(), found.clone());
    Ok(found)
}

/// The path of an object the document holds, from the operations that created it and its
/// ancestors (`parents` reads those, visible or not); list indices become [`Segment::Element`].
fn in_document(doc: &Automerge, obj: &str) -> Option<Located> {
    catch_unwind(AssertUnwindSafe(|| {
        let id = doc.import_obj(obj).ok()?;
        let text = matches!(doc.object_type(&id).ok()?, ObjType::Text);
        let mut path = TouchedPath::default();
        let mut in_text = false;
        for parent in doc.parents(&id).ok()?.path() {
            // Whatever sits inside a text (a rich-text block, say) is the text's.
            if in_text {
                continue;
            }
            match parent.1 {
                Prop::Map(k) => path = path.join(Segment::Key(k)),
                Prop::Seq(_) => {
                    if matches!(doc.object_type(&parent.0).ok()?, ObjType::Text) {
                        in_text = true;
                    } else {
                        path = path.join(Segment::Element);
                    }
                }
            }
        }
        Some(Located {
            path,
            text: text || in_text,
        })
    }))
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{DocCore, Edit, Edited, Path};
    use automerge::transaction::Transactable;
    use serde_json::json;

    fn p(s: &str) -> Path {
        s.parse().unwrap()
    }

    fn show(t: &[Touch]) -> Vec<String> {
        t.iter()
            .map(|t| {
                let k = match t.kind {
                    TouchKind::MadeEmpty => "made",
                    TouchKind::Written => "wrote",
                };
                format!("{k} {}", t.path)
            })
            .collect()
    }

    fn local_changes(out: Edited) -> Vec<crate::doc::LocalChange> {
        out.created
            .into_iter()
            .map(|(c, _)| c)
            .chain(out.change)
            .collect()
    }

    /// Applies `bytes` to `core` after telling its touches against the core as it was.
    fn touches_then_apply(core: &mut DocCore, bytes: &[u8]) -> Vec<String> {
        let change = DocCore::decode_change(bytes).unwrap();
        let t = touched(core.automerge(), &change).unwrap();
        core.apply_bytes(bytes).unwrap();
        show(&t)
    }

    #[test]
    fn a_map_write_touches_its_key_under_the_path_of_each_enclosing_map() {
        let mut a = DocCore::new();
        let mut seen = DocCore::new();
        let out = a
            .edit(
                0,
                None,
                false,
                &[Edit::put(p("/notes/alice/today"), json!("tea"))],
            )
            .unwrap();
        let mut all = Vec::new();
        for c in local_changes(out) {
            all.extend(touches_then_apply(&mut seen, &c.bytes));
        }
        assert_eq!(
            all,
            [
                "made /notes",
                "made /notes/alice",
                "wrote /notes/alice/today"
            ]
        );
    }

    #[test]
    fn list_elements_are_a_star_segment_whatever_their_index() {
        let mut a = DocCore::new();
        let mut seen = DocCore::new();
        let mut all = Vec::new();
        for v in [json!({"title": "one"}), json!({"title": "two"})] {
            let edit = Edit::Append {
                path: p("/tasks"),
                value: v,
            };
            let out = a.edit(0, None, false, &[edit]).unwrap();
            for c in local_changes(out) {
                all.push(touches_then_apply(&mut seen, &c.bytes));
            }
        }
        let flat: Vec<String> = all.concat();
        assert!(flat.contains(&"made /tasks".to_string()), "{flat:?}");
        assert!(flat.contains(&"wrote /tasks/*".to_string()), "{flat:?}");
        assert!(
            flat.contains(&"wrote /tasks/*/title".to_string()),
            "{flat:?}"
        );
        assert!(flat.iter().all(|s| !s.contains("/0") && !s.contains("/1")));
    }

    #[test]
    fn objects_made_in_the_same_change_resolve_through_its_own_operations() {
        let mut a = DocCore::new();
        let (_, change) = a
            .transact(0, None, |tx| {
                let m = tx.put_object(automerge::ROOT, "plan", automerge::ObjType::Map)?;
                let l = tx.put_object(&m, "steps", automerge::ObjType::List)?;
                let s = tx.insert_object(&l, 0, automerge::ObjType::Map)?;
                tx.put(&s, "who", "bob")?;
                Ok::<_, automerge::AutomergeError>(())
            })
            .unwrap();
        let change = DocCore::decode_change(&change.unwrap().bytes).unwrap();
        // Resolved against an empty document: every object is the change's own.
        let t = touched(DocCore::new().automerge(), &change).unwrap();
        // Not the recipe: containers made by an ordinary change are writes.
        assert_eq!(
            show(&t),
            [
                "wrote /plan",
                "wrote /plan/steps",
                "wrote /plan/steps/*",
                "wrote /plan/steps/*/who"
            ]
        );
    }

    #[test]
    fn a_text_edit_touches_the_text_itself_and_a_delete_its_key() {
        let mut a = DocCore::new();
        let mut seen = DocCore::new();
        let (_, c1) = a
            .transact(0, None, |tx| {
                let t = tx.put_object(automerge::ROOT, "essay", automerge::ObjType::Text)?;
                tx.splice_text(&t, 0, 0, "hi")?;
                tx.put(automerge::ROOT, "old", 1)?;
                Ok::<_, automerge::AutomergeError>(())
            })
            .unwrap();
        assert_eq!(
            touches_then_apply(&mut seen, &c1.unwrap().bytes),
            ["wrote /essay", "wrote /old"]
        );
        let (_, c2) = a
            .transact(0, None, |tx| {
                let t = tx.get(automerge::ROOT, "essay")?.unwrap().1;
                tx.splice_text(&t, 1, 0, "!")?;
                tx.delete(automerge::ROOT, "old")?;
                Ok::<_, automerge::AutomergeError>(())
            })
            .unwrap();
        assert_eq!(
            touches_then_apply(&mut seen, &c2.unwrap().bytes),
            ["wrote /essay", "wrote /old"]
        );
    }

    #[test]
    fn a_path_stays_the_one_its_creation_gave_after_the_object_is_replaced() {
        let mut a = DocCore::new();
        let mut seen = DocCore::new();
        let (_, c1) = a
            .transact(0, None, |tx| {
                let m = tx.put_object(automerge::ROOT, "box", automerge::ObjType::Map)?;
                tx.put(&m, "x", 1)?;
                Ok::<_, automerge::AutomergeError>(m)
            })
            .unwrap();
        let c1 = c1.unwrap();
        seen.apply_bytes(&c1.bytes).unwrap();
        // A fork writes into the old map while, concurrently, the key is overwritten.
        let mut fork = DocCore::new();
        fork.apply_bytes(&c1.bytes).unwrap();
        let (_, late) = fork
            .transact(0, None, |tx| {
                let m = tx.get(automerge::ROOT, "box")?.unwrap().1;
                tx.put(&m, "y", 2)?;
                Ok::<_, automerge::AutomergeError>(())
            })
            .unwrap();
        let (_, c2) = a
            .transact(0, None, |tx| {
                tx.put(automerge::ROOT, "box", "gone")?;
                Ok::<_, automerge::AutomergeError>(())
            })
            .unwrap();
        seen.apply_bytes(&c2.unwrap().bytes).unwrap();
        let late = DocCore::decode_change(&late.unwrap().bytes).unwrap();
        assert_eq!(
            show(&touched(seen.automerge(), &late).unwrap()),
            ["wrote /box/y"]
        );
    }

    #[test]
    fn a_change_into_an_object_the_document_lacks_is_an_error_naming_it() {
        let mut a = DocCore::new();
        let (_, c1) = a
            .transact(0, None, |tx| {
                tx.put_object(automerge::ROOT, "m", automerge::ObjType::Map)?;
                Ok::<_, automerge::AutomergeError>(())
            })
            .unwrap();
        let _ = c1;
        let (_, c2) = a
            .transact(0, None, |tx| {
                let m = tx.get(automerge::ROOT, "m")?.unwrap().1;
                tx.put(&m, "k", 1)?;
                Ok::<_, automerge::AutomergeError>(())
            })
            .unwrap();
        let c2 = DocCore::decode_change(&c2.unwrap().bytes).unwrap();
        let err = touched(DocCore::new().automerge(), &c2).unwrap_err();
        assert!(matches!(err, TouchError::UnknownObject { .. }), "{err}");
    }
}
