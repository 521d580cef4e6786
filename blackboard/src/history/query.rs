//! History queries over a document and its position index. Pure: no I/O.

use std::collections::{BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};

use automerge::{ActorId, Automerge, ChangeHash, ObjType, Prop, ReadDoc, Value};

use blackboard_schemas::AgentId;

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

/// A run of characters of a text written by one change, with its writer spelled out (see
/// [`blame_text`]): characters `start..end` (indices in the text, end exclusive) are `text`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TextRun {
    /// The first character's index.
    pub start: usize,
    /// One past the last character's index.
    pub end: usize,
    /// The characters.
    pub text: String,
    /// The change that inserted them.
    #[serde(serialize_with = "super::hex")]
    pub change: ChangeHash,
    /// The agent that wrote them; `None` while the change is not on the log (a local change
    /// not yet acknowledged).
    pub agent: Option<AgentId>,
    /// The change's log position, if known.
    pub seq: Option<u64>,
    /// The change's message, if its writer gave one.
    pub message: Option<String>,
}

impl TextRun {
    fn of(span: &BlameSpan) -> TextRun {
        let r = span.record.as_ref();
        TextRun {
            start: span.start,
            end: span.start + span.text.chars().count(),
            text: span.text.clone(),
            change: span.change,
            agent: r.map(|r| r.agent.clone()),
            seq: r.map(|r| r.seq),
            message: r.and_then(|r| r.message.clone()),
        }
    }
}

/// Who wrote each run of characters of the text at `path`, in order: the runs put the text
/// back together, and each names its change and (through `record`, as [`blame`] does) the
/// agent, position and message. `Ok(None)` when nothing is at `path` or the value there is
/// not a text.
pub fn blame_text(
    core: &DocCore,
    path: &Path,
    record: impl Fn(&ChangeHash) -> Option<Record>,
) -> Result<Option<Vec<TextRun>>, DocError> {
    if path.is_root() {
        return Ok(None);
    }
    match json::resolve(core.automerge(), path)? {
        Some((Value::Object(ObjType::Text), _)) => {}
        _ => return Ok(None),
    }
    Ok(blame(core, path, record)?.map(|b| b.spans.iter().map(TextRun::of).collect()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Signature;
    use automerge::transaction::Transactable as _;

    fn record(seq: u64, hash: ChangeHash, agent: &str, message: &str) -> Record {
        Record {
            seq,
            hash,
            logged_ms: 1_700_000_000_000,
            time_ms: 1_700_000_000_000,
            agent: agent.parse().unwrap(),
            message: Some(message.to_owned()),
            signature: Signature::Unsigned,
            provenance: None,
        }
    }

    #[test]
    fn blame_text_names_the_agent_position_and_message_of_each_run_of_characters() {
        // alice writes "hello world"; bob, on a copy, inserts "big " before "world"; alice's
        // document merges bob's change.
        let mut alice = DocCore::new();
        let (_, first) = alice
            .transact(1, None, |tx| {
                let text = tx.put_object(automerge::ROOT, "notes", ObjType::Text)?;
                tx.splice_text(&text, 0, 0, "hello world")
            })
            .unwrap();
        let first = first.unwrap();
        let mut bob = alice.fork_at(&alice.heads()).unwrap();
        let (_, second) = bob
            .transact(2, None, |tx| {
                let text = tx.get(automerge::ROOT, "notes")?.unwrap().1;
                tx.splice_text(&text, 6, 0, "big ")
            })
            .unwrap();
        let second = second.unwrap();
        alice.apply_bytes(&second.bytes).unwrap();
        let records = [
            record(1, first.hash, "alice", "a greeting"),
            record(2, second.hash, "bob", "bigger"),
        ];
        let lookup = |h: &ChangeHash| records.iter().find(|r| r.hash == *h).cloned();
        let runs = blame_text(&alice, &"/notes".parse().unwrap(), lookup)
            .unwrap()
            .unwrap();
        type Seen<'a> = (
            usize,
            usize,
            &'a str,
            Option<&'a str>,
            Option<u64>,
            Option<&'a str>,
        );
        let seen: Vec<Seen<'_>> = runs
            .iter()
            .map(|r| {
                (
                    r.start,
                    r.end,
                    r.text.as_str(),
                    r.agent.as_ref().map(|a| a.as_str()),
                    r.seq,
                    r.message.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (0, 6, "hello ", Some("alice"), Some(1), Some("a greeting")),
                (6, 10, "big ", Some("bob"), Some(2), Some("bigger")),
                (10, 15, "world", Some("alice"), Some(1), Some("a greeting")),
            ]
        );
        // A change not on the log yet: its run names no agent.
        let runs = blame_text(&alice, &"/notes".parse().unwrap(), |_| None)
            .unwrap()
            .unwrap();
        assert!(runs.iter().all(|r| r.agent.is_none() && r.seq.is_none()));
        // Not a text, or nothing there: no runs.
        assert_eq!(blame_text(&alice, &Path::root(), lookup).unwrap(), None);
        assert_eq!(
            blame_text(&alice, &"/nothing".parse().unwrap(), lookup).unwrap(),
            None
        );
    }
}
