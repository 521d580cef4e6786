//! Concurrent writes never vanish from view (issue 13), at the level of the document core,
//! with no sockets: replicas write offline, then exchange every change in random orders.

use std::collections::{BTreeMap, BTreeSet};

use automerge::{ActorId, ReadDoc};
use blackboard::doc::containers::{self, Kind};
use blackboard::doc::{DocCore, DocError, Edit, Path, PutMode};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as Json};

fn p(s: &str) -> Path {
    s.parse().unwrap()
}

/// A replica and every change it made, in order.
struct Agent {
    core: DocCore,
    made: Vec<Vec<u8>>,
}

impl Agent {
    fn new() -> Self {
        Self {
            core: DocCore::new(),
            made: Vec::new(),
        }
    }

    fn edit(&mut self, edits: &[Edit]) -> Result<(), DocError> {
        let edited = self.core.edit(0, None, false, edits)?;
        self.made
            .extend(edited.created.into_iter().map(|(c, _)| c.bytes));
        self.made.extend(edited.change.map(|c| c.bytes));
        Ok(())
    }

    fn put(&mut self, path: &str, value: Json) {
        self.edit(&[Edit::put(p(path), value)]).unwrap();
    }

    /// Takes in every change of `others` (this agent's own included), in a random order with
    /// some delivered twice.
    fn receive(&mut self, all: &[Vec<u8>], rng: &mut impl Rng) {
        let mut delivery: Vec<&Vec<u8>> = all.iter().collect();
        for _ in 0..all.len() / 3 {
            delivery.push(&all[rng.gen_range(0..all.len())]);
        }
        delivery.shuffle(rng);
        for bytes in delivery {
            self.core.apply_bytes(bytes).unwrap();
        }
        assert_eq!(
            self.core.pending_len(),
            0,
            "every change found its dependencies"
        );
    }
}

/// Every change made by any agent; then each agent receives all of them.
fn exchange(agents: &mut [Agent], seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let all: Vec<Vec<u8>> = agents.iter().flat_map(|a| a.made.clone()).collect();
    for a in agents.iter_mut() {
        a.receive(&all, &mut rng);
    }
    let first = agents[0].core.heads();
    for a in agents.iter() {
        assert_eq!(a.core.heads(), first, "replicas converge");
        assert_eq!(a.core.to_json(), agents[0].core.to_json());
    }
}

fn agents(n: usize) -> Vec<Agent> {
    (0..n).map(|_| Agent::new()).collect()
}

#[test]
fn agents_writing_offline_below_the_same_fresh_paths_all_stay_visible_everywhere() {
    for n in [2, 5] {
        for depth in 1..=3 {
            for seed in 0..4 {
                let dir: String = (0..depth).map(|d| format!("/m{d}")).collect();
                let mut agents = agents(n);
                for (i, a) in agents.iter_mut().enumerate() {
                    a.put(&format!("{dir}/k{i}"), json!(i));
                    a.put(&format!("{dir}/obj"), json!({ format!("o{i}"): {"by": i} }));
                    a.edit(&[
                        Edit::Increment {
                            path: p(&format!("{dir}/count")),
                            by: 1,
                        },
                        Edit::Append {
                            path: p(&format!("{dir}/log")),
                            value: json!(i),
                        },
                        Edit::SpliceText {
                            path: p(&format!("{dir}/text")),
                            pos: 0,
                            delete: 0,
                            insert: format!("<{i}>"),
                        },
                    ])
                    .unwrap();
                }
                exchange(&mut agents, seed);
                let got = agents[0].core.get(&p(&dir)).unwrap().unwrap();
                for i in 0..n {
                    assert_eq!(got[format!("k{i}")], json!(i), "{n} agents, {dir}: {got}");
                    assert_eq!(got["obj"][format!("o{i}")], json!({"by": i}), "{got}");
                    assert!(got["text"].as_str().unwrap().contains(&format!("<{i}>")));
                }
                assert_eq!(got["count"], json!(n), "every first increment counted");
                let mut log: Vec<i64> = serde_json::from_value(got["log"].clone()).unwrap();
                log.sort();
                assert_eq!(
                    log,
                    (0..n as i64).collect::<Vec<_>>(),
                    "every first append kept"
                );
            }
        }
    }
}

#[test]
fn every_replica_creating_a_container_makes_the_same_change() {
    let mut agents = agents(3);
    let mut hashes = BTreeSet::new();
    for (i, a) in agents.iter_mut().enumerate() {
        let edited = a
            .core
            .edit(
                i as i64 * 1000,
                Some(format!("agent {i}")),
                true,
                &[Edit::put(p("/a/b/c"), json!(i))],
            )
            .unwrap();
        assert_eq!(edited.created.len(), 2, "a and b were created");
        hashes.insert(
            edited
                .created
                .iter()
                .map(|(c, _)| c.hash)
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        hashes.len(),
        1,
        "times, messages and actors of the writers do not matter"
    );
}

#[test]
fn concurrent_object_puts_to_one_new_place_merge_key_by_key() {
    let mut agents = agents(2);
    agents[0].put("/tasks/t1", json!({"title": "docs", "meta": {"a": 1}}));
    agents[1].put("/tasks/t1", json!({"status": "open", "meta": {"b": 2}}));
    exchange(&mut agents, 1);
    assert_eq!(
        agents[0].core.get(&p("/tasks/t1")).unwrap(),
        Some(json!({"title": "docs", "status": "open", "meta": {"a": 1, "b": 2}}))
    );
}

#[test]
fn concurrent_replacing_puts_conflict_and_every_value_stays_readable() {
    let mut agents = agents(2);
    for (i, a) in agents.iter_mut().enumerate() {
        let value = json!({ format!("k{i}"): i });
        a.edit(&[Edit::Put {
            path: p("/t1"),
            value,
            mode: PutMode::Replace,
        }])
        .unwrap();
    }
    exchange(&mut agents, 2);
    let all = agents[0].core.conflicts(&p("/t1")).unwrap();
    let values: BTreeSet<String> = all.iter().map(|c| c.value.to_string()).collect();
    assert_eq!(
        values,
        BTreeSet::from([r#"{"k0":0}"#.to_owned(), r#"{"k1":1}"#.to_owned()])
    );
    assert_eq!(all.iter().filter(|c| c.winner).count(), 1);
    let winner = all.iter().find(|c| c.winner).unwrap();
    assert_eq!(
        agents[1].core.get(&p("/t1")).unwrap(),
        Some(winner.value.clone())
    );
    assert!(all.iter().all(|c| c.change.is_some()));
}

#[test]
fn a_merge_into_an_existing_map_keeps_the_keys_it_does_not_name_and_replace_drops_them() {
    let mut a = Agent::new();
    a.put("/t", json!({"a": 1, "n": {"x": 1}}));
    a.put("/t", json!({"b": 2, "n": {"y": 2}}));
    assert_eq!(
        a.core.get(&p("/t")).unwrap(),
        Some(json!({"a": 1, "b": 2, "n": {"x": 1, "y": 2}}))
    );
    a.edit(&[Edit::Put {
        path: p("/t"),
        value: json!({"c": 3}),
        mode: PutMode::Replace,
    }])
    .unwrap();
    assert_eq!(a.core.get(&p("/t")).unwrap(), Some(json!({"c": 3})));
}

#[test]
fn first_writes_at_the_root_merge_their_maps() {
    let mut agents = agents(3);
    for (i, a) in agents.iter_mut().enumerate() {
        a.put(
            "/",
            json!({"tasks": { format!("t{i}"): {"by": i} }, "top": i}),
        );
    }
    exchange(&mut agents, 3);
    let got = agents[0].core.to_json();
    for i in 0..3 {
        assert_eq!(got["tasks"][format!("t{i}")], json!({"by": i}), "{got}");
    }
    assert_eq!(agents[0].core.conflicts(&p("/top")).unwrap().len(), 3);
}

#[test]
fn containers_below_an_ancestor_made_without_the_recipe_merge_too() {
    // `tasks` is made by a plain automerge transaction (an old client, or a replacing put).
    let mut base = Agent::new();
    base.edit(&[Edit::Put {
        path: p("/tasks"),
        value: json!({"old": true}),
        mode: PutMode::Replace,
    }])
    .unwrap();
    let mut agents = agents(3);
    let mut creations = BTreeSet::new();
    for (i, a) in agents.iter_mut().enumerate() {
        for bytes in &base.made {
            a.core.apply_bytes(bytes).unwrap();
        }
        let edited = a
            .core
            .edit(
                0,
                None,
                false,
                &[Edit::put(p(&format!("/tasks/t1/k{i}")), json!(i))],
            )
            .unwrap();
        creations.insert(edited.created[0].0.hash);
        a.made
            .extend(edited.created.into_iter().map(|(c, _)| c.bytes));
        a.made.extend(edited.change.map(|c| c.bytes));
        a.made.extend(base.made.clone());
    }
    assert_eq!(
        creations.len(),
        1,
        "t1 is the same change on every replica with tasks"
    );
    exchange(&mut agents, 4);
    assert_eq!(
        agents[0].core.get(&p("/tasks")).unwrap(),
        Some(json!({"old": true, "t1": {"k0": 0, "k1": 1, "k2": 2}}))
    );
}

#[test]
fn containers_inside_list_elements_merge() {
    let mut base = Agent::new();
    base.put("/rows", json!([{"id": 0}]));
    let mut agents = agents(2);
    for (i, a) in agents.iter_mut().enumerate() {
        for bytes in &base.made {
            a.core.apply_bytes(bytes).unwrap();
        }
        a.made.extend(base.made.clone());
        a.put(&format!("/rows/0/cells/c{i}"), json!(i));
        a.edit(&[Edit::Append {
            path: p("/rows"),
            value: json!({"id": i + 1}),
        }])
        .unwrap();
    }
    exchange(&mut agents, 5);
    let rows = agents[0].core.get(&p("/rows")).unwrap().unwrap();
    assert_eq!(rows[0], json!({"id": 0, "cells": {"c0": 0, "c1": 1}}));
    assert_eq!(
        rows.as_array().unwrap().len(),
        3,
        "both appended rows kept: {rows}"
    );
}

#[test]
fn objects_appended_with_a_dash_or_put_at_an_index_go_into_the_list() {
    let mut a = Agent::new();
    a.put("/t/done", json!([]));
    a.put("/t/done/-", json!({"by": "a"}));
    a.put("/t/done/1", json!({"by": "b"}));
    a.put("/t/done/0", json!({"at": 1}));
    assert_eq!(
        a.core.get(&p("/t/done")).unwrap(),
        Some(json!([{"by": "a", "at": 1}, {"by": "b"}]))
    );
    let err = a.edit(&[Edit::put(p("/t/done/x"), json!({}))]).unwrap_err();
    assert!(matches!(err, DocError::BadIndex { .. }), "{err}");
}

#[test]
fn a_container_deleted_and_created_again_is_a_new_generation_that_merges_too() {
    let mut first = Agent::new();
    first.put("/tasks/old", json!(1));
    first.edit(&[Edit::Delete { path: p("/tasks") }]).unwrap();
    let mut agents = agents(2);
    for (i, a) in agents.iter_mut().enumerate() {
        for bytes in &first.made {
            a.core.apply_bytes(bytes).unwrap();
        }
        a.made.extend(first.made.clone());
        a.put(&format!("/tasks/new{i}"), json!(i));
    }
    exchange(&mut agents, 6);
    assert_eq!(
        agents[0].core.get(&p("/tasks")).unwrap(),
        Some(json!({"new0": 0, "new1": 1}))
    );
}

#[test]
fn a_write_into_a_container_another_agent_deletes_concurrently_goes_with_it() {
    // The documented outcome: a delete removes the container its writer saw, which is the
    // one concurrent writers share; a write below it made concurrently goes with it.
    let mut base = Agent::new();
    base.put("/tasks/a", json!(1));
    let mut agents = agents(2);
    for a in agents.iter_mut() {
        for bytes in &base.made {
            a.core.apply_bytes(bytes).unwrap();
        }
        a.made.extend(base.made.clone());
    }
    agents[0]
        .edit(&[Edit::Delete { path: p("/tasks") }])
        .unwrap();
    agents[1].put("/tasks/b", json!(2));
    exchange(&mut agents, 7);
    assert_eq!(agents[0].core.get(&p("/tasks")).unwrap(), None);
}

#[test]
fn a_scalar_written_where_another_agent_creates_a_map_conflicts_visibly() {
    let mut agents = agents(2);
    agents[0].put("/x", json!(5));
    agents[1].put("/x/y", json!(1));
    exchange(&mut agents, 8);
    let all = agents[0].core.conflicts(&p("/x")).unwrap();
    let values: BTreeSet<String> = all.iter().map(|c| c.value.to_string()).collect();
    assert_eq!(
        values,
        BTreeSet::from(["5".to_owned(), r#"{"y":1}"#.to_owned()])
    );
    assert_eq!(all.iter().filter(|c| c.winner).count(), 1);
}

#[test]
fn counters_and_text_created_implicitly_merge_and_overflow_is_refused() {
    let mut agents = agents(3);
    for (i, a) in agents.iter_mut().enumerate() {
        a.edit(&[Edit::Increment {
            path: p("/stats/runs"),
            by: 10 + i as i64,
        }])
        .unwrap();
        a.edit(&[Edit::SpliceText {
            path: p("/notes/body"),
            pos: 99,
            delete: 0,
            insert: format!("[{i}]"),
        }])
        .unwrap();
    }
    exchange(&mut agents, 9);
    assert_eq!(
        agents[0].core.get(&p("/stats/runs")).unwrap(),
        Some(json!(33))
    );
    let body = agents[0].core.get(&p("/notes/body")).unwrap().unwrap();
    assert_eq!(body.as_str().unwrap().len(), 9, "{body}");

    let a = &mut agents[0];
    let before = a.core.heads();
    let err = a
        .edit(&[Edit::Increment {
            path: p("/stats/runs"),
            by: i64::MAX,
        }])
        .unwrap_err();
    assert!(matches!(err, DocError::Overflow { value: 33, .. }), "{err}");
    assert_eq!(a.core.heads(), before, "nothing was changed");
}

#[test]
fn a_failing_edit_creates_no_containers() {
    let mut a = Agent::new();
    a.put("/s", json!("scalar"));
    let before = a.core.heads();
    // The first edit would create /new; the second fails: neither happens.
    let err = a
        .edit(&[
            Edit::put(p("/new/k"), json!(1)),
            Edit::Append {
                path: p("/s"),
                value: json!(1),
            },
        ])
        .unwrap_err();
    assert!(matches!(err, DocError::NotAList { .. }), "{err}");
    assert_eq!(a.core.heads(), before);
    assert_eq!(a.core.get(&p("/new")).unwrap(), None);
}

/// A change with the given actor, made by a transaction on a scratch document.
fn forged(actor: ActorId, f: impl FnOnce(&mut automerge::transaction::Transaction<'_>)) -> Vec<u8> {
    let mut doc = automerge::Automerge::new().with_actor(actor);
    let mut tx = doc.transaction();
    f(&mut tx);
    let (hash, _) = tx.commit_with(automerge::transaction::CommitOptions::default().with_time(0));
    doc.get_change_by_hash(&hash.unwrap())
        .unwrap()
        .raw_bytes()
        .to_vec()
}

#[test]
fn a_forged_creation_claiming_a_container_actor_is_refused_and_takes_nothing_away() {
    use automerge::transaction::Transactable;
    let actor = containers::actor("_root", "tasks", Kind::Map, 0);
    // The right actor, but more than the creation: a second operation.
    let smuggler = forged(actor.clone(), |tx| {
        tx.put_object(automerge::ROOT, "tasks", automerge::ObjType::Map)
            .unwrap();
        tx.put(automerge::ROOT, "evil", "yes").unwrap();
    });
    // The right actor and shape, but at another key: it would take the actor of /tasks.
    let squatter = forged(actor, |tx| {
        tx.put_object(automerge::ROOT, "other", automerge::ObjType::Map)
            .unwrap();
    });
    let mut agents = agents(2);
    for (i, a) in agents.iter_mut().enumerate() {
        for bad in [&smuggler, &squatter] {
            let err = a.core.apply_bytes(bad).unwrap_err();
            assert!(
                err.to_string().contains("not the container recipe"),
                "{err}"
            );
        }
        a.put(&format!("/tasks/k{i}"), json!(i));
    }
    exchange(&mut agents, 10);
    assert_eq!(
        agents[0].core.to_json(),
        json!({"tasks": {"k0": 0, "k1": 1}}),
        "the forged changes changed nothing"
    );
}

// ---- the property test --------------------------------------------------------------------

/// Containers are named `a` or `b`, leaves `x` or `y`, so a place is never both.
#[derive(Debug, Clone)]
enum Op {
    /// A scalar at `dir/leaf`.
    Put(Vec<u8>, u8, i64),
    /// An object `{x: v, b: {y: v}}` merged at `dir` (or `{x: v}` when `nested` is false).
    PutObject(Vec<u8>, bool, i64),
    /// Deletes `dir/leaf` (`leaf` 0 or 1) or `dir` itself (`leaf` 2).
    Delete(Vec<u8>, u8),
}

fn dir_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..2, 1..=3)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (dir_strategy(), 0u8..2, 0i64..100).prop_map(|(d, l, v)| Op::Put(d, l, v)),
        2 => (dir_strategy(), any::<bool>(), 0i64..100).prop_map(|(d, n, v)| Op::PutObject(d, n, v)),
        1 => (dir_strategy(), 0u8..3).prop_map(|(d, l)| Op::Delete(d, l)),
    ]
}

const DIRS: [&str; 2] = ["a", "b"];
const LEAVES: [&str; 2] = ["x", "y"];

fn dir_path(d: &[u8]) -> String {
    d.iter()
        .map(|i| format!("/{}", DIRS[*i as usize]))
        .collect()
}

/// The oracle: every replica's view as a tree of container identities. A container is the
/// identity (parent, key, generation) the recipe gives it; the generation at a place is how
/// many times this replica deleted the container there. Offline replicas see only their own
/// writes, so a delete removes only what its writer saw.
#[derive(Default)]
struct Model {
    /// Per replica: container path → identity of the container it sees there.
    views: Vec<BTreeMap<String, String>>,
    /// Per replica, per identity: how many times it deleted a container at each child key.
    generations: Vec<BTreeMap<(String, String), u32>>,
    /// Deleted container identities (by anyone).
    dead: BTreeSet<String>,
    /// Leaf writes: (container identity, leaf, replica) → value (the replica's latest).
    leaves: BTreeMap<(String, String, usize), i64>,
    /// (container identity, key) → child identities ever created there.
    children: BTreeMap<(String, String), BTreeSet<String>>,
}

impl Model {
    fn new(n: usize) -> Self {
        Self {
            views: vec![BTreeMap::new(); n],
            generations: vec![BTreeMap::new(); n],
            ..Self::default()
        }
    }

    /// The identity of the container at `d` for replica `r`, creating missing ones.
    fn ensure(&mut self, r: usize, d: &[u8]) -> String {
        let mut id = "root".to_owned();
        let mut path = String::new();
        for i in d {
            let key = DIRS[*i as usize].to_owned();
            path.push('/');
            path.push_str(&key);
            if let Some(existing) = self.views[r].get(&path) {
                id = existing.clone();
                continue;
            }
            let gen = self.generations[r]
                .get(&(id.clone(), key.clone()))
                .copied()
                .unwrap_or(0);
            let child = format!("{id}/{key}#{gen}");
            self.children
                .entry((id.clone(), key))
                .or_default()
                .insert(child.clone());
            self.views[r].insert(path.clone(), child.clone());
            id = child;
        }
        id
    }

    fn apply(&mut self, r: usize, op: &Op) {
        match op {
            Op::Put(d, l, v) => {
                let id = self.ensure(r, d);
                self.leaves
                    .insert((id, LEAVES[*l as usize].to_owned(), r), *v);
            }
            Op::PutObject(d, nested, v) => {
                let id = self.ensure(r, d);
                self.leaves.insert((id, "x".to_owned(), r), *v);
                if *nested {
                    let mut inner = d.clone();
                    inner.push(1);
                    let id = self.ensure(r, &inner);
                    self.leaves.insert((id, "y".to_owned(), r), *v);
                }
            }
            Op::Delete(d, 2) => {
                let path = dir_path(d);
                let Some(id) = self.views[r].get(&path).cloned() else {
                    return;
                };
                self.dead.insert(id);
                // This replica no longer sees anything at or below the path.
                self.views[r].retain(|k, _| !(k == &path || k.starts_with(&format!("{path}/"))));
                let (parent_path, key) = path.rsplit_once('/').unwrap();
                let parent = if parent_path.is_empty() {
                    "root".to_owned()
                } else {
                    self.views[r][parent_path].clone()
                };
                *self.generations[r]
                    .entry((parent, key.to_owned()))
                    .or_default() += 1;
            }
            Op::Delete(d, l) => {
                if let Some(id) = self.views[r].get(&dir_path(d)).cloned() {
                    self.leaves.remove(&(id, LEAVES[*l as usize].to_owned(), r));
                }
            }
        }
    }

    /// Checks `got` (the JSON of the container `id`) against the model.
    fn check(&self, id: &str, got: &Json) -> Result<(), String> {
        let obj = got
            .as_object()
            .ok_or(format!("{id}: not an object: {got}"))?;
        let mut expected = BTreeSet::new();
        for leaf in LEAVES {
            let candidates: BTreeSet<i64> = self
                .leaves
                .iter()
                .filter(|((c, l, _), _)| c == id && l == leaf)
                .map(|(_, v)| *v)
                .collect();
            if candidates.is_empty() {
                continue;
            }
            expected.insert(leaf.to_owned());
            let v = obj.get(leaf).and_then(Json::as_i64);
            if !v.is_some_and(|v| candidates.contains(&v)) {
                return Err(format!(
                    "{id}/{leaf}: {v:?}, expected one of {candidates:?}"
                ));
            }
        }
        for key in DIRS {
            let live: Vec<&String> = self
                .children
                .get(&(id.to_owned(), key.to_owned()))
                .into_iter()
                .flatten()
                .filter(|c| !self.dead.contains(*c))
                .collect();
            match live.as_slice() {
                [] => {}
                [child] => {
                    expected.insert(key.to_owned());
                    let inner = obj.get(key).ok_or(format!("{id}/{key} missing: {got}"))?;
                    self.check(child, inner)?;
                }
                more => return Err(format!("model: several live containers {more:?}")),
            }
        }
        let keys: BTreeSet<String> = obj.keys().cloned().collect();
        if keys != expected {
            return Err(format!("{id}: keys {keys:?}, expected {expected:?}"));
        }
        Ok(())
    }
}

fn edit_of(op: &Op) -> Edit {
    match op {
        Op::Put(d, l, v) => Edit::put(
            p(&format!("{}/{}", dir_path(d), LEAVES[*l as usize])),
            json!(v),
        ),
        Op::PutObject(d, nested, v) => {
            let value = if *nested {
                json!({"x": v, "b": {"y": v}})
            } else {
                json!({"x": v})
            };
            Edit::put(p(&dir_path(d)), value)
        }
        Op::Delete(d, 2) => Edit::Delete {
            path: p(&dir_path(d)),
        },
        Op::Delete(d, l) => Edit::Delete {
            path: p(&format!("{}/{}", dir_path(d), LEAVES[*l as usize])),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn offline_replicas_exchanging_in_any_order_show_every_write_not_deleted(
        ops in prop::collection::vec(prop::collection::vec(op_strategy(), 1..8), 3..=5),
        seed in any::<u64>(),
    ) {
        let mut model = Model::new(ops.len());
        let mut agents = agents(ops.len());
        for (r, (agent, ops)) in agents.iter_mut().zip(&ops).enumerate() {
            for op in ops {
                agent.edit(&[edit_of(op)]).unwrap();
                model.apply(r, op);
            }
        }
        exchange(&mut agents, seed);
        for agent in &agents {
            if let Err(e) = model.check("root", &agent.core.to_json()) {
                prop_assert!(false, "{e}\ndocument: {}", agent.core.to_json());
            }
        }
    }
}

#[test]
fn conflicted_paths_lists_every_path_with_concurrent_values_nested_and_in_lists() {
    let mut base = Agent::new();
    base.put(
        "/",
        json!({"plan": {"lead": "none"}, "steps": ["a", "b"], "calm": 1}),
    );
    let shared = base.made.clone();
    let mut agents = agents(2);
    for (i, a) in agents.iter_mut().enumerate() {
        for bytes in &shared {
            a.core.apply_bytes(bytes).unwrap();
        }
        // Each writes its own value at the same map key, list slot and top-level key.
        a.put("/plan/lead", json!(format!("agent{i}")));
        a.put("/steps/1", json!(format!("b{i}")));
        a.put("/top", json!(i));
    }
    agents[0].made.extend(shared);
    exchange(&mut agents, 7);
    let found: Vec<String> = agents[0]
        .core
        .conflicted_paths()
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(found, ["/plan/lead", "/steps/1", "/top"]);
    for path in &found {
        assert_eq!(
            agents[1].core.conflicts(&p(path)).unwrap().len(),
            2,
            "{path}"
        );
    }
    // A document without concurrent writes has none.
    assert!(base.core.conflicted_paths().is_empty());
}
