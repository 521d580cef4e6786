//! What live watchers cost a replica: the claim under test is *"a slow watcher does not slow
//! the replica, the writers or other watchers"* (see `blackboard::watch`).
//!
//! ```text
//! cargo bench -p blackboard-bench --bench watch -- --warm-up-time 1 --measurement-time 5
//! ```
//!
//! Four cases, all measured in the same run, for each group:
//!
//! * `no_watchers`: the baseline. The replica applies changes without computing patches.
//! * `one_fast`: one watcher on `/**`, consumed by a spawned task as fast as it can.
//! * `fast_and_slow`: one fast watcher plus one watcher on `/**` that is never polled. It
//!   fills its channels, is cut off (it would report `WatchError::Lagged`) and the replica
//!   goes on. A fresh slow watcher is opened before every iteration, so every iteration has
//!   one; after the iteration the bench reads it to check it was indeed cut off.
//! * `ten_fast`: ten fast watchers.
//!
//! Groups:
//!
//! * `replica_apply_with_watchers/<case>`: two replicas, `writer` and `reader`, on one
//!   `EmbeddedLog` over a sled database in a temporary directory (one document per case, so
//!   every case starts from an empty document). An iteration is: the writer puts 500 changes
//!   (`/k{i % 50}` = `i`, each flushed to disk before `put` returns), `flush`es (the log has
//!   acknowledged them all), and the **reader** has applied them all
//!   (`reader.wait_for(&writer.heads())`). The watchers are on the reader. The reader's
//!   `watch_capacity` is 256 in every case of this group (default 1 024), so that the slow
//!   watcher is cut off within each 500-change iteration (after 256 + 64 + 1 events).
//!   Throughput is in changes.
//! * `replica_catch_up_with_watchers/<case>`: the reader side alone, without the writer's
//!   fsyncs. 2 000 envelopes (same workload) are built once. Each iteration uses a fresh sled
//!   database: a reader replica is opened on the empty document (default `watch_capacity`),
//!   its watchers are attached, the 2 000 envelopes are published to the embedded log in one
//!   batch (untimed), and the time is taken until `reader.wait_for(heads)` returns: decoding,
//!   applying, storing (without fsync), computing patches when anyone watches, and handing
//!   events to the watchers. Watchers attach before anything is published, so they see every
//!   change. Throughput is in changes.
//!
//! In both groups the timed part ends when the replica has applied everything. Then, untimed,
//! the bench waits for every fast watcher to have received every change (a fast watcher that
//! was cut off is counted and replaced), checks the slow watcher ended with `Lagged`, and
//! prints a tally per case: iterations, watchers cut off, and how much longer the fast
//! watchers needed than the replica.
//!
//! The tally also gives the process's CPU time (user + system, all threads: replica tasks,
//! watcher tasks, sled) spent in the timed parts, from `/proc/self/stat` (Linux; 10 ms ticks,
//! so it is only meaningful summed over a case's iterations). Wall time on 2 cores hides work
//! done in parallel, and fsync waits are not CPU: CPU time shows what computing patches and
//! feeding watchers cost even when the wall time does not move.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blackboard::codec;
use blackboard::doc::{json, DocCore, Path};
use blackboard::log::{EmbeddedLog, EventLog};
use blackboard::replica::{Config, Replica};
use blackboard::watch::{Options, Pattern, Watch};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use futures::StreamExt;
use serde_json::json;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Changes per iteration of `replica_apply_with_watchers`.
const CHANGES: u64 = 500;
/// Distinct keys the workload cycles over.
const KEYS: u64 = 50;
/// Changes per iteration of `replica_catch_up_with_watchers`.
const CATCH_UP: u64 = 2_000;
/// The reader's `watch_capacity` in `replica_apply_with_watchers`.
const APPLY_WATCH_CAPACITY: usize = 256;

#[derive(Debug, Clone, Copy)]
enum Case {
    NoWatchers,
    OneFast,
    FastAndSlow,
    TenFast,
}

const CASES: [Case; 4] = [
    Case::NoWatchers,
    Case::OneFast,
    Case::FastAndSlow,
    Case::TenFast,
];

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::NoWatchers => "no_watchers",
            Case::OneFast => "one_fast",
            Case::FastAndSlow => "fast_and_slow",
            Case::TenFast => "ten_fast",
        }
    }

    fn fast(self) -> usize {
        match self {
            Case::NoWatchers => 0,
            Case::OneFast | Case::FastAndSlow => 1,
            Case::TenFast => 10,
        }
    }

    fn slow(self) -> bool {
        matches!(self, Case::FastAndSlow)
    }
}

fn everything() -> Pattern {
    "/**".parse().expect("a pattern")
}

/// A watcher on `/**` read by a spawned task as fast as it can.
#[derive(Debug)]
struct Fast {
    received: Arc<AtomicU64>,
    lagged: Arc<AtomicBool>,
    /// How many events it should have received once the replica applied everything so far.
    expected: u64,
    task: JoinHandle<()>,
}

impl Fast {
    fn spawn(replica: &Replica, progress: &Arc<Notify>) -> Self {
        let mut watch = replica
            .watch(everything(), Options::default())
            .expect("a watch");
        let received = Arc::new(AtomicU64::new(0));
        let lagged = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (received, lagged, progress) = (received.clone(), lagged.clone(), progress.clone());
            async move {
                while let Some(item) = watch.next().await {
                    match item {
                        Ok(event) => {
                            std::hint::black_box(&event);
                            received.fetch_add(1, Ordering::Release);
                        }
                        Err(_) => lagged.store(true, Ordering::Release),
                    }
                    progress.notify_one();
                }
            }
        });
        Self {
            received,
            lagged,
            expected: 0,
            task,
        }
    }

    fn lagged(&self) -> bool {
        self.lagged.load(Ordering::Acquire)
    }

    fn done(&self) -> bool {
        self.lagged() || self.received.load(Ordering::Acquire) >= self.expected
    }
}

impl Drop for Fast {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The watchers of one case.
#[derive(Debug)]
struct Watchers {
    case: Case,
    fast: Vec<Fast>,
    progress: Arc<Notify>,
}

impl Watchers {
    fn attach(case: Case, replica: &Replica) -> Self {
        let progress = Arc::new(Notify::new());
        let fast = (0..case.fast())
            .map(|_| Fast::spawn(replica, &progress))
            .collect();
        Self {
            case,
            fast,
            progress,
        }
    }

    /// A slow watcher for the next iteration, if the case has one.
    fn slow(&self, replica: &Replica) -> Option<Watch> {
        self.case.slow().then(|| {
            replica
                .watch(everything(), Options::default())
                .expect("a watch")
        })
    }

    fn expect(&mut self, events: u64) {
        for f in &mut self.fast {
            f.expected += events;
        }
    }

    /// After an iteration (untimed): waits for the fast watchers to have received
    /// everything, checks the slow one was cut off, and replaces fast watchers that were.
    async fn settle(&mut self, replica: &Replica, slow: Option<Watch>, tally: &mut Tally) {
        let start = Instant::now();
        let waited = tokio::time::timeout(Duration::from_secs(30), async {
            while !self.fast.iter().all(Fast::done) {
                self.progress.notified().await;
            }
        })
        .await;
        assert!(waited.is_ok(), "fast watchers stalled");
        tally.drain += start.elapsed();
        for f in &mut self.fast {
            if f.lagged() {
                tally.fast_cut_off += 1;
                *f = Fast::spawn(replica, &self.progress);
            } else {
                tally.fast_events += f.received.load(Ordering::Acquire);
                f.received.store(0, Ordering::Release);
                f.expected = 0;
            }
        }
        if let Some(mut slow) = slow {
            let mut held = 0u64;
            let ended = tokio::time::timeout(Duration::from_secs(30), async {
                while let Some(item) = slow.next().await {
                    match item {
                        Ok(_) => held += 1,
                        Err(_) => return true,
                    }
                }
                false
            })
            .await;
            tally.slow += 1;
            tally.slow_held += held;
            if ended == Ok(true) {
                tally.slow_cut_off += 1;
            }
        }
    }
}

/// What happened in one case, printed after it.
#[derive(Debug, Default)]
struct Tally {
    iterations: u64,
    timed: Duration,
    /// Time after the replica had applied everything until the fast watchers had too.
    drain: Duration,
    /// CPU time of the whole process during the timed parts.
    cpu: Duration,
    fast_events: u64,
    fast_cut_off: u64,
    slow: u64,
    slow_cut_off: u64,
    slow_held: u64,
}

impl Tally {
    fn print(&self, group: &str, case: Case) {
        let n = self.iterations.max(1);
        eprintln!(
            "{group}/{}: {} iterations, {:.2} ms each, CPU {:.2} ms each; fast watchers: {} events received, \
             {} cut off, done {:.3} ms after the replica on average; slow watchers: {}/{} cut \
             off, {:.0} events delivered each before the cut-off",
            case.name(),
            self.iterations,
            self.timed.as_secs_f64() * 1e3 / n as f64,
            self.cpu.as_secs_f64() * 1e3 / n as f64,
            self.fast_events,
            self.fast_cut_off,
            self.drain.as_secs_f64() * 1e3 / n as f64,
            self.slow_cut_off,
            self.slow,
            self.slow_held as f64 / self.slow.max(1) as f64,
        );
    }
}

/// The process's CPU time so far (user + system), from `/proc/self/stat`; zero elsewhere.
fn cpu_time() -> Duration {
    const TICKS_PER_SECOND: u64 = 100; // `getconf CLK_TCK` on Linux
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may contain spaces): state is field 3, utime 14,
    // stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}

fn config(document: &str, agent: &str) -> Config {
    Config::new(
        "bench".parse().expect("a space id"),
        document.parse().expect("a document id"),
        agent.parse().expect("an agent id"),
    )
}

fn apply_with_watchers(c: &mut Criterion) {
    let rt = Runtime::new().expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = sled::open(dir.path()).expect("a sled database");
    let log = Arc::new(EmbeddedLog::open(db.clone()).expect("the embedded log"));

    let mut group = c.benchmark_group("replica_apply_with_watchers");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(CHANGES));
    for case in CASES {
        let document = format!("apply-{}", case.name().replace('_', "-"));
        let (writer, reader, mut watchers) = {
            let _runtime = rt.enter();
            let writer =
                Replica::open(log.clone(), &db, config(&document, "writer")).expect("the writer");
            let mut reader_config = config(&document, "reader");
            reader_config.watch_capacity = APPLY_WATCH_CAPACITY;
            let reader = Replica::open(log.clone(), &db, reader_config).expect("the reader");
            let watchers = Watchers::attach(case, &reader);
            (writer, reader, watchers)
        };
        let mut tally = Tally::default();
        let mut next = 0u64;
        group.bench_function(case.name(), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let from = next;
                        next += CHANGES;
                        watchers.expect(CHANGES);
                        let slow = watchers.slow(&reader);
                        let (start, cpu) = (Instant::now(), cpu_time());
                        for i in from..from + CHANGES {
                            writer
                                .put(&format!("/k{}", i % KEYS), json!(i))
                                .await
                                .expect("the write");
                        }
                        writer.flush().await.expect("the log acknowledges");
                        reader
                            .wait_for(&writer.heads())
                            .await
                            .expect("the reader applies");
                        let elapsed = start.elapsed();
                        tally.cpu += cpu_time().saturating_sub(cpu);
                        timed += elapsed;
                        tally.iterations += 1;
                        tally.timed += elapsed;
                        watchers.settle(&reader, slow, &mut tally).await;
                    }
                    timed
                })
            })
        });
        tally.print("replica_apply_with_watchers", case);
        assert_eq!(reader.to_json(), writer.to_json(), "the replicas converge");
        drop(watchers);
        rt.block_on(async {
            writer.close().await.expect("the writer closes");
            reader.close().await.expect("the reader closes");
        });
    }
    group.finish();
}

fn catch_up_with_watchers(c: &mut Criterion) {
    let rt = Runtime::new().expect("a tokio runtime");
    let writer = config("catch-up", "writer");
    // The writer's changes, built once without a replica, and their envelopes.
    let mut core = DocCore::new();
    let time_ms = 1_700_000_000_000;
    let envelopes: Vec<(String, Vec<u8>)> = (0..CATCH_UP)
        .map(|i| {
            let path: Path = format!("/k{}", i % KEYS).parse().expect("a path");
            let (_, change) = core
                .transact(time_ms, None, |tx| json::put(tx, &path, &json!(i)))
                .expect("the change");
            let change = change.expect("a change");
            let envelope = codec::encode_event(
                &writer.space,
                &writer.document,
                &writer.agent,
                &change,
                time_ms,
                None,
            );
            (change.hash.to_string(), envelope.encode())
        })
        .collect();
    let heads = core.heads();

    let mut group = c.benchmark_group("replica_catch_up_with_watchers");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(CATCH_UP));
    for case in CASES {
        let mut tally = Tally::default();
        group.bench_function(case.name(), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let dir = tempfile::tempdir().expect("a temporary directory");
                        let db = sled::open(dir.path()).expect("a sled database");
                        let log = Arc::new(EmbeddedLog::open(db.clone()).expect("the log"));
                        let reader = Replica::open(log.clone(), &db, config("catch-up", "reader"))
                            .expect("the reader");
                        let mut watchers = Watchers::attach(case, &reader);
                        watchers.expect(CATCH_UP);
                        let slow = watchers.slow(&reader);
                        let batch = envelopes
                            .iter()
                            .map(|(id, payload)| (id.clone(), payload.clone().into()))
                            .collect();
                        let published = log
                            .publish_batch(&writer.space, &writer.document, batch)
                            .await;
                        assert!(
                            published.iter().all(Result::is_ok),
                            "the log takes them all"
                        );
                        let (start, cpu) = (Instant::now(), cpu_time());
                        reader.wait_for(&heads).await.expect("the reader applies");
                        let elapsed = start.elapsed();
                        tally.cpu += cpu_time().saturating_sub(cpu);
                        timed += elapsed;
                        tally.iterations += 1;
                        tally.timed += elapsed;
                        watchers.settle(&reader, slow, &mut tally).await;
                        drop(watchers);
                        reader.close().await.expect("the reader closes");
                    }
                    timed
                })
            })
        });
        tally.print("replica_catch_up_with_watchers", case);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = apply_with_watchers, catch_up_with_watchers
}
criterion_main!(benches);
