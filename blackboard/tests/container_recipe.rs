//! The container recipe as `schemas/README.md` states it, built here from that text alone
//! (SHA-256 and automerge's public API, not the engine's helper), agrees with the changes the
//! engine makes. A client in another language that follows the README merges with Rust.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, Automerge, Change, ChangeHash, ExpandedChange, ObjType, ReadDoc, ScalarValue, ROOT,
};
use blackboard::doc::{DocCore, Edit, Path, PutMode};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The README's actor id: `bbc1`, the generation (u32, big-endian), then the first 16 bytes of
/// SHA-256 over the domain, parent, key and kind, each preceded by its byte length (u32 BE).
fn readme_actor(parent: &str, key: &str, kind: &str, generation: u32) -> ActorId {
    let mut input = Vec::new();
    for field in ["blackboard/container/v1", parent, key, kind] {
        input.extend_from_slice(&(field.len() as u32).to_be_bytes());
        input.extend_from_slice(field.as_bytes());
    }
    let digest = Sha256::digest(&input);
    let mut actor = b"bbc1".to_vec();
    actor.extend_from_slice(&generation.to_be_bytes());
    actor.extend_from_slice(&digest[..16]);
    ActorId::from(actor)
}

/// The README's way with automerge's ordinary API: a scratch document holding only `deps`'
/// changes (for a parent made by the recipe, its creation chain), the actor set, one
/// operation, committed at time 0 with no message.
fn scratch_creation(
    actor: ActorId,
    ancestors: &[Vec<u8>],
    op: impl FnOnce(&mut automerge::transaction::Transaction<'_>),
) -> Change {
    let mut doc = Automerge::new();
    for bytes in ancestors {
        doc.apply_changes([Change::from_bytes(bytes.clone()).unwrap()])
            .unwrap();
    }
    doc.set_actor(actor);
    let mut tx = doc.transaction();
    op(&mut tx);
    let (hash, _) = tx.commit_with(CommitOptions::default().with_time(0));
    doc.get_change_by_hash(&hash.unwrap()).unwrap().clone()
}

/// The engine's creations for one edit on `core`.
fn engine_creations(core: &mut DocCore, edit: Edit) -> Vec<(ChangeHash, Vec<u8>)> {
    let edited = core
        .edit(1_234_000, Some("why".into()), false, &[edit])
        .unwrap();
    edited
        .created
        .into_iter()
        .map(|(c, _)| (c.hash, c.bytes))
        .collect()
}

fn p(s: &str) -> Path {
    s.parse().unwrap()
}

#[test]
fn the_readme_example_hashes_are_what_the_engine_makes() {
    // The worked example in schemas/README.md: the map /tasks, then the map /tasks/t1.
    let actor = readme_actor("_root", "tasks", "map", 0);
    assert_eq!(
        actor.to_hex_string(),
        "626263310000000031e3f6981e0f2886d1d43bb3c6963e87"
    );
    let mut core = DocCore::new();
    let made = engine_creations(&mut core, Edit::put(p("/tasks/t1/status"), json!("open")));
    assert_eq!(
        made[0].0.to_string(),
        "eb77809737a83b3dd6a3afb5f4bd851a19b5c7086522df08ce3a55cc4a5d3308"
    );
    assert_eq!(
        hex(&made[0].1),
        "856f4a83eb77809701380018626263310000000031e3f6981e0f2886d1d43bb3c6963e87010100000005150734014202560270027f057461736b73017f007f007f00"
    );
    assert_eq!(
        made[1].0.to_string(),
        "f91f0c07942319bc84b8021f0fd620c75b44d8401c73b3f553472887208294cf"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_scratch_document_following_the_readme_makes_the_engines_creation_changes() {
    // The engine's document has unrelated history first: it must not matter.
    let mut core = DocCore::new();
    core.edit(0, None, false, &[Edit::put(p("/other"), json!(1))])
        .unwrap();
    let made = engine_creations(&mut core, Edit::put(p("/tasks/t1/status"), json!("open")));
    assert_eq!(made.len(), 2);

    let tasks = scratch_creation(readme_actor("_root", "tasks", "map", 0), &[], |tx| {
        tx.put_object(ROOT, "tasks", ObjType::Map).unwrap();
    });
    assert_eq!(tasks.hash(), made[0].0, "/tasks");
    assert_eq!(tasks.raw_bytes(), made[0].1.as_slice(), "byte for byte");

    let parent = format!("1@{}", readme_actor("_root", "tasks", "map", 0));
    let t1 = scratch_creation(
        readme_actor(&parent, "t1", "map", 0),
        &[tasks.raw_bytes().to_vec()],
        |tx| {
            let (_, obj) = tx.get(ROOT, "tasks").unwrap().unwrap();
            tx.put_object(&obj, "t1", ObjType::Map).unwrap();
        },
    );
    assert_eq!(t1.deps(), [tasks.hash()]);
    assert_eq!(t1.start_op().get(), 2);
    assert_eq!(t1.hash(), made[1].0, "/tasks/t1");
}

/// One operation made in a scratch transaction.
type Op = Box<dyn Fn(&mut automerge::transaction::Transaction<'_>)>;

#[test]
fn lists_texts_and_counters_follow_the_same_recipe() {
    let cases: [(&str, Edit, Op); 3] = [
        (
            "list",
            Edit::Append {
                path: p("/log"),
                value: json!(1),
            },
            Box::new(|tx| {
                tx.put_object(ROOT, "log", ObjType::List).unwrap();
            }),
        ),
        (
            "text",
            Edit::SpliceText {
                path: p("/notes"),
                pos: 0,
                delete: 0,
                insert: "hi".into(),
            },
            Box::new(|tx| {
                tx.put_object(ROOT, "notes", ObjType::Text).unwrap();
            }),
        ),
        (
            "counter",
            Edit::Increment {
                path: p("/runs"),
                by: 5,
            },
            Box::new(|tx| {
                tx.put(ROOT, "runs", ScalarValue::counter(0)).unwrap();
            }),
        ),
    ];
    for (kind, edit, op) in cases {
        let key = match &edit {
            Edit::Append { path, .. }
            | Edit::SpliceText { path, .. }
            | Edit::Increment { path, .. } => path.segments()[0].clone(),
            _ => unreachable!(),
        };
        let made = engine_creations(&mut DocCore::new(), edit);
        let expected = scratch_creation(readme_actor("_root", &key, kind, 0), &[], op);
        assert_eq!(expected.hash(), made[0].0, "{kind}");
    }
}

#[test]
fn below_a_parent_made_without_the_recipe_the_decoded_form_gives_the_engines_change() {
    // /tasks made by a plain transaction, in a change with several operations.
    let mut core = DocCore::new();
    core.edit(
        0,
        None,
        false,
        &[Edit::Put {
            path: p("/tasks"),
            value: json!({"a": 1, "b": 2}),
            mode: PutMode::Replace,
        }],
    )
    .unwrap();
    let doc = core.automerge();
    let (_, tasks) = doc.get(ROOT, "tasks").unwrap().unwrap();
    let creator = doc.hash_for_opid(&tasks).unwrap();
    let creator_change = doc.get_change_by_hash(&creator).unwrap();
    let start_op = creator_change.start_op().get() + creator_change.len() as u64;
    let parent = tasks.to_string();

    // The README's decoded form (automerge's `decodeChange` JSON), encoded by automerge.
    let decoded = json!({
        "actor": readme_actor(&parent, "t1", "map", 0).to_hex_string(),
        "seq": 1,
        "startOp": start_op,
        "time": 0,
        "message": null,
        "deps": [creator.to_string()],
        "ops": [{"action": "makeMap", "obj": parent, "key": "t1", "pred": []}],
    });
    let expected = Change::from(serde_json::from_value::<ExpandedChange>(decoded).unwrap());
    let made = engine_creations(&mut core, Edit::put(p("/tasks/t1/x"), json!(1)));
    assert_eq!(made[0].0, expected.hash());
}

#[test]
fn a_deleted_container_is_created_again_in_the_next_generation() {
    let mut core = DocCore::new();
    core.edit(0, None, false, &[Edit::put(p("/tasks/a"), json!(1))])
        .unwrap();
    core.edit(0, None, false, &[Edit::Delete { path: p("/tasks") }])
        .unwrap();
    let made = engine_creations(&mut core, Edit::put(p("/tasks/b"), json!(2)));
    let expected = scratch_creation(readme_actor("_root", "tasks", "map", 1), &[], |tx| {
        tx.put_object(ROOT, "tasks", ObjType::Map).unwrap();
    });
    assert_eq!(made[0].0, expected.hash());
}
