//! Path-addressed edits whose implicitly created containers merge across agents.
//!
//! An [`Edit`] is one write (put, delete, append, increment, text splice).
//! [`DocCore::edit`] first creates, by the container recipe ([`super::containers`]), every
//! container the edits need and do not find: the maps on the way to a path, the map an object
//! value is merged into (and the maps inside it), the list of a first append, the counter of a
//! first increment, the text of a first splice. Then it makes the edits in one transaction that
//! depends on those creations. Agents that create the same container concurrently make the
//! same change, so they share one container and every write stays in view.

use automerge::transaction::Transactable as _;
use automerge::{ObjId, ObjType, ReadDoc, Value, ROOT};
use serde_json::Value as Json;

use super::containers::{self, Kind};
use super::json::{self, PutMode};
use super::{AppliedChange, DocCore, DocError, LocalChange, Patch, Path};

/// One path-addressed write.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Writes `value` at `path` (see [`json::put_with`]).
    Put {
        /// Where.
        path: Path,
        /// What.
        value: Json,
        /// Merge an object into the map already there (the default), or replace it.
        mode: PutMode,
    },
    /// Deletes what is at `path`; nothing there is not an error.
    Delete {
        /// Where.
        path: Path,
    },
    /// Appends `value` to the list at `path`, creating the list when nothing is there.
    Append {
        /// The list.
        path: Path,
        /// The new last element.
        value: Json,
    },
    /// Adds `by` (which may be negative) to the counter at `path`, creating it at 0 when
    /// nothing is there. A sum outside the range of an `i64` is refused
    /// ([`DocError::Overflow`]).
    Increment {
        /// The counter.
        path: Path,
        /// How much to add.
        by: i64,
    },
    /// Deletes `delete` characters at `pos` of the text at `path` (`pos` past the end means
    /// the end), then inserts `insert` there; creates the text when nothing is there.
    SpliceText {
        /// The text.
        path: Path,
        /// Where, in characters.
        pos: usize,
        /// How many characters to delete (negative: before `pos`).
        delete: isize,
        /// What to insert.
        insert: String,
    },
}

impl Edit {
    /// Where the edit writes: the path it names.
    pub fn path(&self) -> &Path {
        match self {
            Edit::Put { path, .. }
            | Edit::Delete { path }
            | Edit::Append { path, .. }
            | Edit::Increment { path, .. }
            | Edit::SpliceText { path, .. } => path,
        }
    }

    /// About how many bytes the edit adds to a change: its value's JSON text, roughly (a
    /// walk of the value, nothing is encoded).
    pub fn size_hint(&self) -> usize {
        fn json(v: &Json) -> usize {
            match v {
                Json::Null | Json::Bool(_) => 5,
                Json::Number(_) => 9,
                Json::String(s) => s.len() + 2,
                Json::Array(items) => items.iter().map(json).sum::<usize>() + 2,
                Json::Object(map) => {
                    map.iter()
                        .map(|(k, v)| k.len() + 3 + json(v))
                        .sum::<usize>()
                        + 2
                }
            }
        }
        let value = match self {
            Edit::Put { value, .. } | Edit::Append { value, .. } => json(value),
            Edit::Delete { .. } | Edit::Increment { .. } => 9,
            Edit::SpliceText { insert, .. } => insert.len() + 9,
        };
        // The path as text, without building it: each segment and its slash.
        let path: usize = self.path().segments().iter().map(|s| s.len() + 1).sum();
        value + path
    }

    /// A merging [`Edit::Put`].
    pub fn put(path: Path, value: Json) -> Self {
        Edit::Put {
            path,
            value,
            mode: PutMode::Merge,
        }
    }
}

/// What [`DocCore::edit`] did.
#[derive(Debug, Clone, Default)]
pub struct Edited {
    /// The container creations it made (new to this document), in causal order, each with its
    /// patches (empty when patches were not asked for). They must reach the log before
    /// `change`, which depends on them.
    pub created: Vec<(LocalChange, Vec<Patch>)>,
    /// The change holding the edits (`None` when they changed nothing).
    pub change: Option<LocalChange>,
    /// The patches of `change` (empty when not asked for).
    pub patches: Vec<Patch>,
    /// For each [`Edit::Increment`], in order, the counter's value afterwards.
    pub counters: Vec<i64>,
}

/// Whether a walk may create what is missing, or only reports it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Probe,
    Create { with_patches: bool },
}

/// What a walk found at the end of a path.
enum Place {
    /// Nothing, and the walk was a probe.
    Missing,
    /// A container of this type.
    Container(ObjType),
    /// A scalar (a counter included), or a place inside a list or text the recipe does not
    /// create into.
    Other,
}

/// Makes one edit inside a transaction, creating plainly whatever is still missing.
pub(super) fn apply<T: automerge::transaction::Transactable>(
    tx: &mut T,
    edit: &Edit,
    counters: &mut Vec<i64>,
) -> Result<(), DocError> {
    match edit {
        Edit::Put { path, value, mode } => json::put_with(tx, path, value, *mode),
        Edit::Delete { path } => json::delete(tx, path),
        Edit::Append { path, value } => json::append(tx, path, value),
        Edit::Increment { path, by } => {
            counters.push(json::increment(tx, path, *by)?);
            Ok(())
        }
        Edit::SpliceText {
            path,
            pos,
            delete,
            insert,
        } => {
            let text = json::ensure_text(tx, path)?;
            let pos = (*pos).min(tx.length(&text));
            Ok(tx.splice_text(&text, pos, *delete, insert)?)
        }
    }
}

impl DocCore {
    /// Makes `edits` in one change, after creating by the container recipe every container
    /// they need and do not find (see the module docs of `doc/edit.rs`). Returns the creations
    /// and the change. When it fails, nothing was changed: a path's errors surface while it is
    /// walked, before anything is created, and several edits that need creations are first
    /// tried in a transaction that is rolled back.
    ///
    /// ```
    /// use blackboard::doc::{DocCore, Edit};
    /// use serde_json::json;
    ///
    /// // Two agents, offline, each write below a map neither has seen.
    /// let (mut a, mut b) = (DocCore::new(), DocCore::new());
    /// let ea = a.edit(0, None, false, &[Edit::put("/tasks/a".parse()?, json!(1))])?;
    /// let eb = b.edit(0, None, false, &[Edit::put("/tasks/b".parse()?, json!(2))])?;
    /// // They created `tasks` with the same change.
    /// assert_eq!(ea.created[0].0.hash, eb.created[0].0.hash);
    /// for (c, _) in eb.created.iter().chain([(eb.change.clone().unwrap(), vec![])].iter()) {
    ///     a.apply_bytes(&c.bytes)?;
    /// }
    /// assert_eq!(a.to_json(), json!({"tasks": {"a": 1, "b": 2}}));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn edit(
        &mut self,
        time_ms: i64,
        message: Option<String>,
        with_patches: bool,
        edits: &[Edit],
    ) -> Result<Edited, DocError> {
        self.edit_groups(time_ms, message, with_patches, &[edits])
            .map(|(edited, _)| edited)
    }

    /// Like [`edit`](Self::edit), for several writers' edits made in one change (see
    /// `replica/group.rs`): the groups' edits in order, as one list. Also returns, for each
    /// group, whether its edits changed anything. The counters of every group's increments
    /// are in `counters`, in order. When it fails, nothing was changed, and which group
    /// failed is not said: the caller makes each group alone to find out.
    ///
    /// ```
    /// use blackboard::doc::{DocCore, Edit};
    /// use serde_json::json;
    ///
    /// let mut doc = DocCore::new();
    /// doc.edit(0, None, false, &[Edit::put("/a".parse()?, json!(1))])?;
    /// let a: &[Edit] = &[Edit::put("/a".parse()?, json!(1))];
    /// let b: &[Edit] = &[Edit::put("/tasks/b".parse()?, json!(2))];
    /// let (edited, changed) = doc.edit_groups(0, None, false, &[a, b])?;
    /// assert!(edited.change.is_some());
    /// assert_eq!(changed, [false, true]); // /a held 1 already
    /// assert_eq!(doc.to_json(), json!({"a": 1, "tasks": {"b": 2}}));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn edit_groups(
        &mut self,
        time_ms: i64,
        message: Option<String>,
        with_patches: bool,
        groups: &[&[Edit]],
    ) -> Result<(Edited, Vec<bool>), DocError> {
        let edits = || groups.iter().flat_map(|g| g.iter());
        let mut needs = false;
        for e in edits() {
            if self.prepare(e, Mode::Probe, &mut Vec::new())? {
                needs = true;
                break;
            }
        }
        let mut created = Vec::new();
        // A dry run, rolled back: errors must surface before any container is created, since
        // a created container cannot be taken back out of the document. One edit needs none:
        // it can only fail where it creates nothing (the probe above walked its path with the
        // same checks; a leaf that exists means every container above it exists), and the
        // rollback costs about a quarter of a creating write.
        if needs && edits().nth(1).is_some() {
            let mut tx = self.doc.transaction();
            let mut counters = Vec::new();
            let tried = edits().try_for_each(|e| apply(&mut tx, e, &mut counters));
            tx.rollback();
            tried?;
        }
        if needs {
            for e in edits() {
                self.prepare(e, Mode::Create { with_patches }, &mut created)?;
            }
        }
        let ((counters, changed), change, patches) =
            self.transact_inner(time_ms, message, with_patches, |tx| {
                let mut counters = Vec::new();
                let mut changed = Vec::with_capacity(groups.len());
                for group in groups {
                    let before = tx.pending_ops();
                    group.iter().try_for_each(|e| apply(tx, e, &mut counters))?;
                    changed.push(tx.pending_ops() > before);
                }
                Ok::<_, DocError>((counters, changed))
            })?;
        let edited = Edited {
            created,
            change,
            patches,
            counters,
        };
        Ok((edited, changed))
    }

    /// Walks what `edit` needs; returns whether something is missing (in a probe) and, when
    /// creating, pushes each creation onto `created`.
    fn prepare(
        &mut self,
        edit: &Edit,
        mode: Mode,
        created: &mut Vec<(LocalChange, Vec<Patch>)>,
    ) -> Result<bool, DocError> {
        let place = match edit {
            Edit::Delete { .. } => return Ok(false),
            Edit::Put {
                path,
                value,
                mode: put_mode,
            } => {
                let merge_object = *put_mode == PutMode::Merge && value.is_object();
                if path.is_root() {
                    let root = Place::Container(ObjType::Map);
                    self.ensure_value_maps(path, root, value, mode, created)?
                } else if merge_object {
                    let place = self.ensure(path, Some(Kind::Map), mode, created)?;
                    self.ensure_value_maps(path, place, value, mode, created)?
                } else {
                    let (parent, _) = path.split_last().expect("not the root");
                    self.ensure(&parent, None, mode, created)?
                }
            }
            Edit::Append { path, .. } => self.ensure(path, Some(Kind::List), mode, created)?,
            Edit::Increment { path, .. } => {
                self.ensure(path, Some(Kind::Counter), mode, created)?
            }
            Edit::SpliceText { path, .. } => self.ensure(path, Some(Kind::Text), mode, created)?,
        };
        Ok(matches!(place, Place::Missing))
    }

    /// With `place` (the map at `path`) found, ensures the maps of the object `value`'s nested
    /// objects, at every depth. Returns `Missing` as soon as a probe finds one missing.
    fn ensure_value_maps(
        &mut self,
        path: &Path,
        place: Place,
        value: &Json,
        mode: Mode,
        created: &mut Vec<(LocalChange, Vec<Patch>)>,
    ) -> Result<Place, DocError> {
        let (Place::Container(ObjType::Map | ObjType::Table), Json::Object(map)) = (&place, value)
        else {
            return Ok(place);
        };
        for (k, v) in map {
            if !v.is_object() {
                continue;
            }
            let child = path.join(k.clone());
            let found = self.ensure(&child, Some(Kind::Map), mode, created)?;
            if let Place::Missing = self.ensure_value_maps(&child, found, v, mode, created)? {
                return Ok(Place::Missing);
            }
        }
        Ok(place)
    }

    /// Walks `path`, treating every segment as a container on the way, except the last when
    /// `leaf` names the kind of thing the path itself should hold. Missing maps on the way and
    /// a missing leaf are created by the recipe (or reported, in a probe).
    fn ensure(
        &mut self,
        path: &Path,
        leaf: Option<Kind>,
        mode: Mode,
        created: &mut Vec<(LocalChange, Vec<Patch>)>,
    ) -> Result<Place, DocError> {
        let mut obj = ROOT;
        let mut here = Path::root();
        let n = path.segments().len();
        for (i, seg) in path.segments().iter().enumerate() {
            let kind = match leaf {
                Some(k) if i + 1 == n => Some(k),
                _ => None,
            };
            let at = here.join(seg.clone());
            let found = match self.doc.object_type(&obj)? {
                ObjType::Map | ObjType::Table => self.doc.get(&obj, seg.as_str())?,
                ObjType::List => {
                    let index = match seg.parse::<usize>() {
                        Ok(i) => i,
                        // The last segment may be `-` (append): the transaction inserts there,
                        // and reports a bad index itself.
                        Err(_) if kind.is_some() => return Ok(Place::Other),
                        Err(_) => {
                            return Err(DocError::BadIndex {
                                path: here.to_string(),
                                segment: seg.clone(),
                            })
                        }
                    };
                    match self.doc.get(&obj, index)? {
                        Some(got) => Some(got),
                        // The recipe does not create inside lists (a new element's place is
                        // not a key that concurrent writers could share).
                        None if kind.is_some() => return Ok(Place::Other),
                        None => {
                            return Err(DocError::OutOfBounds {
                                path: at.to_string(),
                                len: self.doc.length(&obj),
                            })
                        }
                    }
                }
                ObjType::Text => {
                    return Err(DocError::NotAContainer {
                        path: here.to_string(),
                    })
                }
            };
            match (found, kind) {
                (Some((Value::Object(ty), _)), Some(_)) => return Ok(Place::Container(ty)),
                (Some(_), Some(_)) => return Ok(Place::Other),
                (
                    Some((Value::Object(ObjType::Map | ObjType::Table | ObjType::List), id)),
                    None,
                ) => {
                    obj = id;
                }
                (Some(_), None) => {
                    return Err(DocError::NotAContainer {
                        path: at.to_string(),
                    })
                }
                (None, kind) => {
                    let Mode::Create { with_patches } = mode else {
                        return Ok(Place::Missing);
                    };
                    let new =
                        self.create(&obj, seg, kind.unwrap_or(Kind::Map), with_patches, created)?;
                    match (new, kind) {
                        (Some((_, ty)), Some(_)) => return Ok(Place::Container(ty)),
                        (None, _) => return Ok(Place::Other),
                        (Some((id, _)), None) => obj = id,
                    }
                }
            }
            here = at;
        }
        let ty = self.doc.object_type(&obj)?;
        Ok(Place::Container(ty))
    }

    /// Creates `kind` at `key` of `parent` by the recipe, in the first generation not already
    /// in the document. Returns the new object (`None` for a counter).
    fn create(
        &mut self,
        parent: &ObjId,
        key: &str,
        kind: Kind,
        with_patches: bool,
        created: &mut Vec<(LocalChange, Vec<Patch>)>,
    ) -> Result<Option<(ObjId, ObjType)>, DocError> {
        let mut generation = 0u32;
        let change = loop {
            let change = containers::creation(&self.doc, parent, key, kind, generation)?;
            if !self.has_change(&change.hash()) && !self.pending.contains_key(&change.hash()) {
                break change;
            }
            // That generation was created before and has since been deleted (nothing is at
            // the key, or this would not be creating): use the next.
            generation = generation.checked_add(1).ok_or_else(|| {
                DocError::BadChange(format!("{key} was recreated too many times"))
            })?;
        };
        let hash = change.hash();
        let bytes = change.raw_bytes().to_vec();
        let obj_id = format!("{}@{}", change.start_op(), change.actor_id());
        let (_, applied) = self.apply_inner(change, with_patches)?;
        let patches = applied
            .into_iter()
            .flat_map(|AppliedChange { patches, .. }| patches)
            .collect();
        created.push((LocalChange { hash, bytes }, patches));
        if kind == Kind::Counter {
            return Ok(None);
        }
        let (id, ty) = self.doc.import(&obj_id)?;
        Ok(Some((id, ty)))
    }

    /// Every path that holds concurrent values (see [`conflicts`](Self::conflicts)), sorted
    /// by segment. Walks the visible document once; below a conflicted path only the
    /// winning value's subtree is visible, so only that one is walked.
    pub fn conflicted_paths(&self) -> Vec<Path> {
        let mut found = Vec::new();
        let mut todo = vec![(ROOT, Path::root())];
        while let Some((obj, path)) = todo.pop() {
            let slots: Vec<(String, Vec<(Value<'_>, ObjId)>)> = match self.doc.object_type(&obj) {
                Ok(ObjType::Map | ObjType::Table) => self
                    .doc
                    .keys(&obj)
                    .map(|k| {
                        let all = self.doc.get_all(&obj, k.as_str()).unwrap_or_default();
                        (k, all)
                    })
                    .collect(),
                Ok(ObjType::List) => (0..self.doc.length(&obj))
                    .map(|i| (i.to_string(), self.doc.get_all(&obj, i).unwrap_or_default()))
                    .collect(),
                // Text is edited character by character: no values to conflict.
                Ok(ObjType::Text) | Err(_) => Vec::new(),
            };
            for (key, all) in slots {
                let child = path.join(key.clone());
                if all.len() > 1 {
                    found.push(child.clone());
                }
                let winner = match self.doc.object_type(&obj) {
                    Ok(ObjType::List) => key
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| self.doc.get(&obj, i).ok().flatten()),
                    _ => self.doc.get(&obj, key.as_str()).ok().flatten(),
                };
                if let Some((Value::Object(_), id)) = winner {
                    todo.push((id, child));
                }
            }
        }
        found.sort_by(|a, b| a.segments().cmp(b.segments()));
        found
    }

    /// Every value concurrently at `path` (automerge shows one, the winner, and hides the
    /// rest), with the operation and change that wrote each. Empty when nothing is there; one
    /// element when there is no conflict. The root has no conflicts.
    pub fn conflicts(&self, path: &Path) -> Result<Vec<Candidate>, DocError> {
        let Some((parent, last)) = path.split_last() else {
            return Ok(Vec::new());
        };
        let Some((Value::Object(ty), obj)) = json::resolve_or_root(&self.doc, &parent)? else {
            return Ok(Vec::new());
        };
        let all = match ty {
            ObjType::Map | ObjType::Table => self.doc.get_all(&obj, last)?,
            ObjType::List => {
                let i: usize = last.parse().map_err(|_| DocError::BadIndex {
                    path: parent.to_string(),
                    segment: last.to_owned(),
                })?;
                self.doc.get_all(&obj, i)?
            }
            ObjType::Text => return Ok(Vec::new()),
        };
        let winner = match ty {
            ObjType::Map | ObjType::Table => self.doc.get(&obj, last)?,
            _ => self
                .doc
                .get(&obj, last.parse::<usize>().unwrap_or(usize::MAX))?,
        }
        .map(|(_, id)| id);
        Ok(all
            .into_iter()
            .map(|(v, id)| Candidate {
                value: json::value_to_json(&self.doc, v, &id),
                winner: winner.as_ref() == Some(&id),
                change: self.doc.hash_for_opid(&id),
                op: id.to_string(),
            })
            .collect())
    }
}

/// One of the values concurrently at a path (see [`DocCore::conflicts`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Candidate {
    /// The value, as JSON.
    pub value: Json,
    /// Whether this is the value every replica shows.
    pub winner: bool,
    /// The change that wrote it: the history index maps it to the agent.
    #[serde(serialize_with = "hash_opt")]
    pub change: Option<automerge::ChangeHash>,
    /// automerge's id of the operation that wrote it (`counter@actor`).
    pub op: String,
}

fn hash_opt<S: serde::Serializer>(
    h: &Option<automerge::ChangeHash>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match h {
        Some(h) => s.collect_str(h),
        None => s.serialize_none(),
    }
}
