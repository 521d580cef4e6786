//! History queries over a document and its position index. Pure: no I/O.

use std::collections::{BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};

use automerge::{ActorId, Automerge, ChangeHash, ObjType, Prop, ReadDoc, Value};

use super::Record;
use crate::apply::HeadTracker;
use crate::doc::{json, DocCore, DocError, Path};

/// The heads of the document made of exactly the changes of `records` (in sequence order),
/// applied in that order the way a replica would. See [`HeadTracker`].
pub fn heads_after<'a>(
    core: &DocCore,
    records: impl IntoIterator<Item = &'a Record>,
) -> Vec<ChangeHash> {
    let mut t = HeadTracker::default();
    for r in records {
        t.add(core, &r.hash);
    }
    t.heads()
}

/// The paths change `hash` touched, as they were right after it: map keys it set or
/// deleted, and the lists and texts it edited. Sorted, without repeats; empty when the
/// document lacks the change.
pub fn touched_paths(core: &DocCore, hash: &ChangeHash) -> Vec<Path> {
    let doc = core.automerge();
    let Some(change) = doc.get_change_by_hash(hash) else {
        return Vec::new();
    };
    // Decoding and looking up object ids run automerge on stored bytes: guard them.
    let expanded = match catch_unwind(AssertUnwindSafe(|| change.decode())) {
        Ok(e) => e,
        Err(_) => return Vec::new(),
    };
    let at = [*hash];
    let mut objects: HashMap<String, Option<Path>> = HashMap::new();
    let mut out = BTreeSet::new();
    for op in &expanded.operations {
        let obj = op.obj.to_string();
        let path = objects
            .entry(obj.clone())
            .or_insert_with(|| object_path(doc, &obj, &at))
            .clone();
        let Some(path) = path else { continue };
        // automerge does not export the key type; a map key serializes as its string.
        let key = match op.key.is_map_key() {
            true => serde_json::to_value(&op.key).ok(),
            false => None,
        };
        match key {
            Some(serde_json::Value::String(k)) => out.insert(path.join(k)),
            _ => out.insert(path),
        };
    }
    out.into_iter().collect()
}

/// The path of the object with legacy id `obj` at heads `at`.
fn object_path(doc: &Automerge, obj: &str, at: &[ChangeHash]) -> Option<Path> {
    catch_unwind(AssertUnwindSafe(|| {
        let id = doc.import_obj(obj).ok()?;
        let parents = doc.parents_at(&id, at).ok()?;
        let mut path = Path::root();
        for (_, prop) in parents.path() {
            path = path.join(match prop {
                Prop::Map(k) => k,
                Prop::Seq(i) => i.to_string(),
            });
        }
        Some(path)
    }))
    .ok()
    .flatten()
}

/// Who produced a value: the change that wrote it and what the log says about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Blame {
    /// The path asked about.
    #[serde(serialize_with = "display")]
    pub path: Path,
    /// The change that wrote the current value (for an object, the change that created it).
    #[serde(serialize_with = "super::hex")]
    pub change: ChangeHash,
    /// What the log says about that change; `None` if this replica has not seen it on the
    /// log yet (a local change not yet acknowledged).
    pub record: Option<Record>,
    /// For text: who wrote each run of characters, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<BlameSpan>,
}

/// A run of characters of a text written by one change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlameSpan {
    /// The first character's index.
    pub start: usize,
    /// The characters.
    pub text: String,
    /// The change that inserted them.
    #[serde(serialize_with = "super::hex")]
    pub change: ChangeHash,
    /// What the log says about it, if known.
    pub record: Option<Record>,
}

fn display<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(p)
}

/// Finds the change that produced the current value at `path` (and, for text, each run of
/// characters). `record` looks up what the log says about a change. `Ok(None)` when nothing
/// is at `path`.
pub fn blame(
    core: &DocCore,
    path: &Path,
    record: impl Fn(&ChangeHash) -> Option<Record>,
) -> Result<Option<Blame>, DocError> {
    let doc = core.automerge();
    let (value, id) = if path.is_root() {
        (Value::Object(ObjType::Map), automerge::ROOT)
    } else {
        match json::resolve(doc, path)? {
            Some(found) => found,
            None => return Ok(None),
        }
    };
    let owners = OpOwners::new(doc);
    let change = match owners.change_of(&id) {
        Some(c) => c,
        // The root was made by no change: blame the earliest change that depends on nothing.
        // Several can (container creations, concurrent first writes), and automerge's own
        // order of them differs between a replica that applied events and one loaded from a
        // snapshot, so pick by (writer's time, hash): the same answer on every replica.
        None => match doc
            .get_changes(&[])
            .into_iter()
            .filter(|c| c.deps().is_empty())
            .min_by_key(|c| (c.timestamp(), c.hash()))
        {
            Some(c) => c.hash(),
            None => return Ok(None),
        },
    };
    let mut spans: Vec<BlameSpan> = Vec::new();
    if matches!(value, Value::Object(ObjType::Text)) {
        for (index, item) in doc.list_range(&id, ..).enumerate() {
            let Some(owner) = owners.change_of(&item.id) else {
                continue;
            };
            let ch = match &item.value {
                Value::Scalar(s) => match s.as_ref() {
                    automerge::ScalarValue::Str(s) => s.to_string(),
                    _ => String::new(),
                },
                Value::Object(_) => String::new(),
            };
            match spans.last_mut() {
                Some(last) if last.change == owner => last.text.push_str(&ch),
                _ => spans.push(BlameSpan {
                    start: index,
                    text: ch,
                    change: owner,
                    record: None,
                }),
            }
        }
        for s in &mut spans {
            s.record = record(&s.change);
        }
    }
    Ok(Some(Blame {
        path: path.clone(),
        record: record(&change),
        change,
        spans,
    }))
}

/// Maps operation ids to the changes that contain them.
struct OpOwners {
    /// Per actor: (first op counter, last op counter, change), sorted.
    by_actor: HashMap<ActorId, Vec<(u64, u64, ChangeHash)>>,
}

impl OpOwners {
    fn new(doc: &Automerge) -> Self {
        let mut by_actor: HashMap<ActorId, Vec<(u64, u64, ChangeHash)>> = HashMap::new();
        for c in doc.get_changes(&[]) {
            let start = c.start_op().get();
            let end = start + c.len() as u64;
            by_actor.entry(c.actor_id().clone()).or_default().push((
                start,
                end.saturating_sub(1).max(start),
                c.hash(),
            ));
        }
        for v in by_actor.values_mut() {
            v.sort();
        }
        Self { by_actor }
    }

    fn change_of(&self, id: &automerge::ObjId) -> Option<ChangeHash> {
        let automerge::ObjId::Id(counter, actor, _) = id else {
            return None;
        };
        let ranges = self.by_actor.get(actor)?;
        let i = ranges.partition_point(|(start, _, _)| start <= counter);
        let (start, end, hash) = ranges.get(i.checked_sub(1)?)?;
        (start <= counter && counter <= end).then_some(*hash)
    }
}
