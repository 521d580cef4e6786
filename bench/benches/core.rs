//! Criterion micro-benchmarks of the document core, the per-event work of a replica:
//!
//! * `core/decode_event`: `codec::decode_event` (envelope JSON, base64, automerge change
//!   decode and hash) of 1 000 events;
//! * `core/apply`: `DocCore::apply` of 1 000 decoded changes one at a time, without
//!   patches (nobody watches);
//! * `core/apply_with_patches`: the same with patches computed and converted to the
//!   path-addressed `Patch`es a watch event carries (the cost a watcher adds);
//! * `core/pattern_matches`: `Pattern::matches` of 1 000 paths against three patterns.
//!
//! ```text
//! cargo bench -p blackboard-bench --bench core -- --warm-up-time 1 --measurement-time 5
//! ```

use std::time::Duration;

use blackboard::codec;
use blackboard::doc::{json, DocCore, Path};
use blackboard::schemas::{AgentId, DocumentId, SpaceId};
use blackboard::watch::Pattern;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::json;

const N: usize = 1_000;

fn ids() -> (SpaceId, DocumentId, AgentId) {
    (
        "bench".parse().expect("a space id"),
        "core".parse().expect("a document id"),
        "seed".parse().expect("an agent id"),
    )
}

/// `N` events of the shape `Replica::put` makes: `/tasks/<i % 50>/status` = a string.
fn events() -> Vec<Vec<u8>> {
    let (space, document, agent) = ids();
    let mut core = DocCore::new();
    (0..N)
        .map(|i| {
            let path: Path = format!("/tasks/{}/status", i % 50).parse().expect("a path");
            let ((), local) = core
                .transact(0, None, |tx| {
                    json::put(tx, &path, &json!(format!("state {i}")))
                })
                .expect("a put");
            let local = local.expect("a change");
            codec::encode_event(&space, &document, &agent, &local, 0, None).encode()
        })
        .collect()
}

fn decoded(events: &[Vec<u8>]) -> Vec<blackboard::automerge::Change> {
    let (space, document, _) = ids();
    events
        .iter()
        .map(|e| {
            codec::decode_event(&space, &document, e)
                .expect("an event")
                .change
        })
        .collect()
}

fn core(c: &mut Criterion) {
    let events = events();
    let (space, document, _) = ids();
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("decode_event", |b| {
        b.iter(|| {
            for e in &events {
                codec::decode_event(&space, &document, e).expect("an event");
            }
        })
    });
    let changes = decoded(&events);
    group.bench_function("apply", |b| {
        b.iter_batched(
            || changes.clone(),
            |changes| {
                let mut core = DocCore::new();
                for change in changes {
                    core.apply(change).expect("applied");
                }
                core
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("apply_with_patches", |b| {
        b.iter_batched(
            || changes.clone(),
            |changes| {
                let mut core = DocCore::new();
                let mut patches = 0;
                for change in changes {
                    let (_, applied) = core.apply_with_patches(change).expect("applied");
                    patches += applied.iter().map(|a| a.patches.len()).sum::<usize>();
                }
                assert!(patches >= N, "every change made a patch");
                core
            },
            BatchSize::LargeInput,
        )
    });
    let paths: Vec<Path> = (0..N)
        .map(|i| match i % 4 {
            0 => format!("/tasks/{i}/status"),
            1 => format!("/tasks/{i}/title"),
            2 => format!("/notes/{i}"),
            _ => format!("/tasks/{i}/subtasks/{}/status", i % 7),
        })
        .map(|p| p.parse().expect("a path"))
        .collect();
    let patterns: Vec<Pattern> = ["/tasks/*/status", "/tasks/**", "/**"]
        .iter()
        .map(|p| p.parse().expect("a pattern"))
        .collect();
    group.bench_function("pattern_matches", |b| {
        b.iter(|| {
            let mut hits = 0;
            for path in &paths {
                for pattern in &patterns {
                    hits += usize::from(pattern.matches(path));
                }
            }
            hits
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = core
}
criterion_main!(benches);
