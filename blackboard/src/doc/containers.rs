//! The container recipe: containers that a write creates on its way are created by a change
//! whose bytes are the same on every replica, so concurrent creations are one change.
//!
//! automerge keeps two maps created concurrently under one key as a conflict and shows one of
//! them, so an agent writing `/tasks/a` and another writing `/tasks/b` into a fresh document
//! would each make a `tasks` map and one key would vanish from view. Here, the map (or list,
//! text or counter) is created by a change that depends only on where it goes: every replica
//! that creates it produces the same change, with the same hash, and automerge (and the log's
//! duplicate window) treat the copies as one. The write itself is a second change depending on
//! it. `schemas/README.md` states the recipe for clients in other languages; in short:
//!
//! - **actor**: 24 bytes: `bbc1` (ASCII), the generation as a big-endian u32, then the first
//!   16 bytes of SHA-256 over `blackboard/container/v1` and the parent object id, the key and
//!   the kind, each preceded by its length as a big-endian u32;
//! - **seq** 1, **time** 0, no message, no extra bytes;
//! - **deps**: none when the parent is the root, else the hash of the change that created the
//!   parent object;
//! - **startOp**: 1 when the parent is the root, else that change's `startOp` plus its number
//!   of operations;
//! - **one operation**: `makeMap`, `makeList`, `makeText`, or `set` of a counter 0, on the parent
//!   at the key, with no predecessors.
//!
//! The parent object id and key name the place rather than the path, because a path through a
//! list shifts when elements are inserted before it, and because two different objects can sit
//! at one path over time (a map replaced by another). The space and document are deliberately
//! not part of the actor: any core (history views, watch replays, tools in other languages) can
//! verify a container change from its bytes alone. The replica publishes these changes with
//! the message id `<hash>:<document>`, so the log's space-wide duplicate window never drops the
//! same creation made in two documents.
//!
//! The generation counts how many times the place was emptied: when the generation-0 change is
//! already in the document but nothing is at the key (the container was deleted), generation 1
//! is used, and so on. Replicas that have seen the same deletions create the same generation.

use std::num::NonZeroU64;

use automerge::{ActorId, Automerge, Change, ChangeHash, ExpandedChange, ObjId, ReadDoc, ROOT};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::DocError;

/// The first four bytes of every container actor id.
pub const ACTOR_MARKER: &[u8; 4] = b"bbc1";

/// The domain separator hashed first into a container actor id.
pub const DOMAIN: &str = "blackboard/container/v1";

/// The kind of a container the recipe creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A map (the intermediate containers of a path, and object values).
    Map,
    /// A list (created by a first append).
    List,
    /// A text object (created by a first splice).
    Text,
    /// A counter starting at 0 (created by a first increment).
    Counter,
}

impl Kind {
    /// The name hashed into the actor id.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Map => "map",
            Kind::List => "list",
            Kind::Text => "text",
            Kind::Counter => "counter",
        }
    }

    fn op(self, obj: &str, key: &str) -> serde_json::Value {
        match self {
            Kind::Map => json!({"action": "makeMap", "obj": obj, "key": key, "pred": []}),
            Kind::List => json!({"action": "makeList", "obj": obj, "key": key, "pred": []}),
            Kind::Text => json!({"action": "makeText", "obj": obj, "key": key, "pred": []}),
            Kind::Counter => json!({
                "action": "set", "obj": obj, "key": key, "datatype": "counter", "value": 0,
                "pred": []
            }),
        }
    }
}

/// The actor id of the creation of `kind` at `key` of the object `parent` (automerge's textual
/// object id, `_root` for the root), `generation` times emptied before.
pub fn actor(parent: &str, key: &str, kind: Kind, generation: u32) -> ActorId {
    let mut h = Sha256::new();
    for field in [DOMAIN, parent, key, kind.name()] {
        h.update((field.len() as u32).to_be_bytes());
        h.update(field.as_bytes());
    }
    let digest = h.finalize();
    let mut bytes = Vec::with_capacity(24);
    bytes.extend_from_slice(ACTOR_MARKER);
    bytes.extend_from_slice(&generation.to_be_bytes());
    bytes.extend_from_slice(&digest[..16]);
    ActorId::from(bytes)
}

/// The generation encoded in a container actor id, or `None` when `actor` is not one.
pub fn generation_of(actor: &ActorId) -> Option<u32> {
    let b = actor.to_bytes();
    if b.len() != 24 || &b[..4] != ACTOR_MARKER {
        return None;
    }
    Some(u32::from_be_bytes([b[4], b[5], b[6], b[7]]))
}

/// The dependencies and start op of a creation under `parent`: what the recipe derives from
/// the change that created the parent.
fn anchor(doc: &Automerge, parent: &ObjId) -> Result<(Vec<ChangeHash>, u64), DocError> {
    if *parent == ROOT {
        return Ok((Vec::new(), 1));
    }
    let missing = || DocError::BadChange(format!("no change in the document created {parent}"));
    let hash = doc.hash_for_opid(parent).ok_or_else(missing)?;
    let change = doc.get_change_by_hash(&hash).ok_or_else(missing)?;
    Ok((vec![hash], change.start_op().get() + change.len() as u64))
}

/// The recipe's change creating `kind` at `key` of `parent`, in generation `generation`.
/// `doc` must hold the parent (it supplies the change that created it).
pub fn creation(
    doc: &Automerge,
    parent: &ObjId,
    key: &str,
    kind: Kind,
    generation: u32,
) -> Result<Change, DocError> {
    let (deps, start_op) = anchor(doc, parent)?;
    let parent_id = parent.to_string();
    build(
        &actor(&parent_id, key, kind, generation),
        start_op,
        &deps,
        &parent_id,
        key,
        kind,
    )
}

/// Encodes a creation change from its parts, through automerge's expanded (JSON) form: the
/// same form `decodeChange`/`encodeChange` use in automerge's JavaScript API.
fn build(
    actor: &ActorId,
    start_op: u64,
    deps: &[ChangeHash],
    parent: &str,
    key: &str,
    kind: Kind,
) -> Result<Change, DocError> {
    let start_op = NonZeroU64::new(start_op)
        .ok_or_else(|| DocError::BadChange("a creation's start op cannot be 0".into()))?;
    let expanded = json!({
        "actor": actor.to_hex_string(),
        "seq": 1,
        "startOp": start_op,
        "time": 0,
        "message": null,
        "deps": deps.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "ops": [kind.op(parent, key)],
    });
    let expanded: ExpandedChange = serde_json::from_value(expanded)
        .map_err(|e| DocError::BadChange(format!("cannot build a creation change: {e}")))?;
    // Encoding sorts nothing that could be out of order (no predecessors), but guard anyway:
    // nothing here may panic.
    super::guard("encoding a creation change", || Change::from(expanded))
}

/// Checks a change whose actor is a container actor: it must be exactly the recipe's change
/// for the place its one operation names. Anything else (more operations, another time, a
/// message, other dependencies, or an actor that belongs to another place) is refused, so a
/// forged change can neither smuggle operations in under a container actor nor take the actor
/// (and sequence number 1) of a place away from the real creation. Changes from other actors
/// pass untouched.
pub fn verify(doc: &Automerge, change: &Change) -> Result<(), DocError> {
    let Some(generation) = generation_of(change.actor_id()) else {
        return Ok(());
    };
    let refuse = |why: &str| {
        Err(DocError::BadChange(format!(
            "change {} has a container actor but is not the container recipe: {why}",
            change.hash()
        )))
    };
    if change.len() != 1 {
        return refuse("it must hold exactly one operation");
    }
    let expanded = super::guard("expanding a change", || change.decode())
        .map_err(|_| DocError::BadChange("automerge could not expand its operations".into()))?;
    let Some(op) = expanded.operations.first() else {
        return refuse("it must hold exactly one operation");
    };
    // Read the operation back through its JSON form, the recipe's own vocabulary.
    let op = serde_json::to_value(op).unwrap_or_default();
    let (Some(obj), Some(key)) = (op["obj"].as_str(), op["key"].as_str()) else {
        return refuse("its operation must be on a map key");
    };
    let kind = match (op["action"].as_str(), op["datatype"].as_str()) {
        (Some("makeMap"), _) => Kind::Map,
        (Some("makeList"), _) => Kind::List,
        (Some("makeText"), _) => Kind::Text,
        (Some("set"), Some("counter")) => Kind::Counter,
        _ => return refuse("its operation must create a map, list, text or counter"),
    };
    let parent = if obj == "_root" {
        ROOT
    } else {
        match doc.import(obj) {
            Ok((id, _)) => id,
            Err(_) => return refuse("its parent object is not in the document"),
        }
    };
    let expected = creation(doc, &parent, key, kind, generation)?;
    if expected.hash() != change.hash() {
        return refuse("its bytes differ from the recipe's for the place it names");
    }
    Ok(())
}
