//! What the container recipe costs: every container it creates adds an actor, and automerge's
//! load and fork costs grow with the number of actors. Ignored by default (it measures, it does
//! not check); run with
//! `cargo test -p blackboard --test container_cost -- --ignored --nocapture`
//! (`CONTAINERS=100000` for the larger size). Dependencies build with opt-level 2 in the dev
//! profile, so automerge's own figures are close to a release build's.

use std::time::Instant;

use blackboard::doc::{DocCore, Edit, Path, PutMode};
use serde_json::json;

fn p(s: &str) -> Path {
    s.parse().unwrap()
}

/// A document of `n` one-key maps at `/objs/<i>`, written one change each by one replica:
/// merged (each map created by the recipe, one actor each) or replaced (plain maps).
fn build(n: usize, mode: PutMode) -> DocCore {
    let mut core = DocCore::new();
    for i in 0..n {
        let edit = Edit::Put {
            path: p(&format!("/objs/{i}")),
            value: json!({"v": i}),
            mode,
        };
        core.edit(0, None, false, &[edit]).unwrap();
    }
    core
}

#[test]
#[ignore = "a measurement; run by hand"]
fn measure_the_cost_of_one_actor_per_container() {
    let n: usize = std::env::var("CONTAINERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    println!("| {n} maps | build | save | saved size | load | fork_at(heads) | actors |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (name, mode) in [
        ("recipe (merge)", PutMode::Merge),
        ("plain (replace)", PutMode::Replace),
    ] {
        let t = Instant::now();
        let core = build(n, mode);
        let build_time = t.elapsed();
        let t = Instant::now();
        let saved = core.save();
        let save_time = t.elapsed();
        let t = Instant::now();
        let (loaded, errors) = DocCore::load(Some(&saved), []).unwrap();
        let load_time = t.elapsed();
        assert!(errors.is_empty());
        assert_eq!(loaded.to_json()["objs"].as_object().unwrap().len(), n);
        // fork_at replays every change; past 10,000 actors it takes minutes (FORK=0 skips it).
        let fork_time = if std::env::var("FORK").as_deref() == Ok("0") {
            None
        } else {
            let t = Instant::now();
            loaded.fork_at(&loaded.heads()).unwrap();
            Some(t.elapsed())
        };
        let actors: std::collections::HashSet<_> = loaded
            .automerge()
            .get_changes(&[])
            .iter()
            .map(|c| c.actor_id().clone())
            .collect();
        println!(
            "| {name} | {build_time:.2?} | {save_time:.2?} | {} KB | {load_time:.2?} | {fork_time:.2?} | {} |",
            saved.len() / 1000,
            actors.len()
        );
    }
}
