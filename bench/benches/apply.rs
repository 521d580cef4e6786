//! Applying remote changes one at a time with automerge 0.6.1 (the baseline) and 0.12 (the
//! candidate), measured in the same run; and the Blackboard replica's local write throughput.
//!
//! ```text
//! cargo bench -p blackboard-bench --bench apply -- --warm-up-time 1 --measurement-time 5
//! ```
//!
//! * `apply_one_at_a_time/text/<version>/<inserts>`: decode and apply, one `apply_changes` call
//!   per change, the changes of a text document built from `<inserts>` sequential
//!   single-character inserts (plus the change creating the text object) into a fresh
//!   document. Throughput is in changes.
//! * `apply_one_at_a_time/map/<version>/<puts>`: the same with changes each putting one key
//!   (cycling over 100 names) into the root map.
//! * `replica/local_write_embedded`: `Replica::put("/k", i)` on an `EmbeddedLog` in a sled
//!   database in a temporary directory, 200 writes per iteration; every write is flushed to
//!   disk before it returns. Throughput is in writes.
//!
//! The change bytes are built once with automerge 0.6.1 and the same bytes are given to both
//! versions; each version's result is checked once before it is timed.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use blackboard::log::EmbeddedLog;
use blackboard::replica::{Config, Replica};
use blackboard_bench::{expected_text, map_changes, text_changes, v012, v06, MAP_KEYS};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use serde_json::json;

/// Document sizes, in changes made by the workload (1 000 shows the growth, 5 000 the effect).
const SIZES: [usize; 2] = [1_000, 5_000];

/// Replica writes per iteration.
const WRITES: u64 = 200;

fn apply_text(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_one_at_a_time/text");
    // Iterations take from milliseconds to seconds: the same number of them in every sample.
    group.sampling_mode(SamplingMode::Flat);
    for n in SIZES {
        let changes = text_changes(n);
        let want = expected_text(n);
        let got06 = v06::apply_one_at_a_time(&changes).expect("0.6.1 applies");
        assert_eq!(v06::text(&got06).as_deref(), Some(want.as_str()));
        let got012 = v012::apply_one_at_a_time(&changes).expect("0.12 applies");
        assert_eq!(v012::text(&got012).as_deref(), Some(want.as_str()));

        group.throughput(Throughput::Elements(changes.len() as u64));
        group.bench_with_input(BenchmarkId::new(v06::VERSION, n), &changes, |b, changes| {
            b.iter(|| v06::apply_one_at_a_time(black_box(changes)).expect("0.6.1 applies"))
        });
        group.bench_with_input(
            BenchmarkId::new(v012::VERSION, n),
            &changes,
            |b, changes| {
                b.iter(|| v012::apply_one_at_a_time(black_box(changes)).expect("0.12 applies"))
            },
        );
    }
    group.finish();
}

fn apply_map(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_one_at_a_time/map");
    group.sampling_mode(SamplingMode::Flat);
    for n in SIZES {
        let changes = map_changes(n);
        let got06 = v06::apply_one_at_a_time(&changes).expect("0.6.1 applies");
        assert_eq!(v06::root_keys(&got06), MAP_KEYS.min(n));
        let got012 = v012::apply_one_at_a_time(&changes).expect("0.12 applies");
        assert_eq!(v012::root_keys(&got012), MAP_KEYS.min(n));

        group.throughput(Throughput::Elements(changes.len() as u64));
        group.bench_with_input(BenchmarkId::new(v06::VERSION, n), &changes, |b, changes| {
            b.iter(|| v06::apply_one_at_a_time(black_box(changes)).expect("0.6.1 applies"))
        });
        group.bench_with_input(
            BenchmarkId::new(v012::VERSION, n),
            &changes,
            |b, changes| {
                b.iter(|| v012::apply_one_at_a_time(black_box(changes)).expect("0.12 applies"))
            },
        );
    }
    group.finish();
}

fn replica_writes(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = sled::open(dir.path()).expect("a sled database");
    let log = Arc::new(EmbeddedLog::open(db.clone()).expect("the embedded log"));
    let config = Config::new(
        "bench".parse().expect("a space id"),
        "doc".parse().expect("a document id"),
        "writer".parse().expect("an agent id"),
    );
    let replica = {
        // The replica spawns its publisher and follower tasks on the runtime.
        let _runtime = rt.enter();
        Replica::open(log, &db, config).expect("the replica opens")
    };

    let mut group = c.benchmark_group("replica");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(WRITES));
    let mut next = 0u64;
    group.bench_function("local_write_embedded", |b| {
        b.to_async(&rt).iter(|| {
            let (from, replica) = (next, &replica);
            next += WRITES;
            async move {
                for i in from..from + WRITES {
                    replica.put("/k", json!(i)).await.expect("the write");
                }
            }
        })
    });
    group.finish();

    assert_eq!(
        replica.get("/k").expect("a read"),
        Some(json!(next - 1)),
        "the last write is what the replica holds"
    );
    rt.block_on(replica.flush())
        .expect("the log acknowledges every write");
    drop(replica);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = apply_text, apply_map, replica_writes
}
criterion_main!(benches);
