//! Blackboard's scenarios, each beside a baseline measured in the same run (issue 7).
//!
//! ```text
//! cargo run --release -p blackboard-bench --bin scenarios -- [--quick] [--nats URL] [--only 1,4,8] [--history N]
//! ```
//!
//! Starts its own `nats-server -js` through the test harness's launcher
//! (`blackboard_tests::NatsServer`: a free loopback port, a temporary store, here with the
//! server's default sync settings: JetStream syncs to disk every two minutes) unless
//! `--nats URL` names one, runs the
//! scenarios and prints one markdown table on stdout: scenario, this project's figure, the
//! baseline's figure from the same run, their ratio, the target and whether it was met.
//! Progress and the details behind each row go to stderr. `--quick` shrinks every scenario
//! (CI runs it as a smoke test); the figures it prints are not meant to be compared.
//!
//! Replicas are `blackboard::Replica`s (what the SDK's `Doc` wraps), each on its own NATS
//! connection and its own sled database in a temporary directory on the same disk as
//! `$TMPDIR`, with manual snapshots (no snapshot is written unless a scenario asks for one).
//! Histories are built in-process as automerge changes of the shape a `put` makes and
//! published to the log as events, pipelined; live writes go through `Replica::put`.
//!
//! Memory (scenario 8) is counted by a global allocator wrapping the system one
//! (`peak_alloc`): bytes live on the heap, not RSS.
//!
//! The process exits non-zero if any scenario failed; its row then says why.

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use async_nats::jetstream::{self, consumer, stream};
use blackboard::automerge::{self, ReadDoc};
use blackboard::codec;
use blackboard::doc::{json, DocCore, Path};
use blackboard::log::{EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog};
use blackboard::replica::{Config, Replica, SnapshotPolicy};
use blackboard::schemas::{subject, AgentId, DocumentId, SpaceId};
use blackboard::watch::{Options as WatchOptions, Watch};
use blackboard_tests::{NatsServer, Options as ServerOptions};
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use peak_alloc::PeakAlloc;
use serde_json::json;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

/// Blackboard's benchmark scenarios, each beside a baseline measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "scenarios")]
struct Args {
    /// Run every scenario briefly (a smoke test; the figures are not comparable).
    #[arg(long)]
    quick: bool,
    /// Use this NATS server (with JetStream) instead of starting one.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// Run only these scenarios (comma-separated numbers, 1 to 11).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=11))]
    only: Vec<u8>,
    /// Events of history behind scenarios 1, 4, 5 and 8 (default 10,000 for 1 and 100,000
    /// for the others): run at 10k, 100k and 1M to see how each cost grows.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(100..))]
    history: Option<u64>,
    /// With --nats: leave the space the scenarios wrote on the server (its name is printed),
    /// for measuring the CLI against it afterwards.
    #[arg(long, requires = "nats")]
    keep: bool,
    /// Internal: run as one watcher process of scenario 6 (URL SPACE DOCUMENT STORE NAME).
    #[arg(long, hide = true, num_args = 5, value_names = ["URL", "SPACE", "DOCUMENT", "STORE", "NAME"])]
    watch_child: Option<Vec<String>>,
}

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// History of the propagation document (scenarios 1 and 9).
    history: usize,
    /// Latency samples per measurement.
    samples: usize,
    /// Fan-out samples per watcher count.
    fanout_samples: usize,
    /// Writes of the throughput scenarios (2, 9, 11).
    pipelined: usize,
    /// Concurrent writer tasks in the throughput scenarios.
    writers: usize,
    /// Writes of the awaited-ack scenario (3).
    awaited: usize,
    /// Events of the catch-up document (4, 5, 8).
    catch_up: usize,
    /// Events published after the snapshot (5).
    tail: usize,
    /// History sizes of scenario 10.
    apply_histories: [usize; 3],
    /// Remote changes applied per history size in scenario 10.
    apply_samples: usize,
}

const FULL: Sizes = Sizes {
    history: 10_000,
    samples: 300,
    fanout_samples: 100,
    pipelined: 10_000,
    writers: 64,
    awaited: 500,
    catch_up: 100_000,
    tail: 1_000,
    apply_histories: [1_000, 10_000, 100_000],
    apply_samples: 500,
};

const QUICK: Sizes = Sizes {
    history: 300,
    samples: 20,
    fanout_samples: 3,
    pipelined: 300,
    writers: 16,
    awaited: 20,
    catch_up: 2_000,
    tail: 100,
    apply_histories: [100, 1_000, 2_000],
    apply_samples: 50,
};

/// The raw baselines' window of publishes in flight.
const RAW_WINDOW: usize = 256;

/// The value written by every change: a string this long, so an event is a few hundred bytes.
const VALUE_LEN: usize = 100;

fn value(i: usize) -> serde_json::Value {
    let mut s = format!("{i:010}-");
    while s.len() < VALUE_LEN {
        s.push('x');
    }
    json!(s)
}

/// One row of the final table.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    scenario: String,
    ours: String,
    baseline: String,
    ratio: String,
    target: String,
    verdict: String,
}

impl Row {
    fn new(id: &str, scenario: impl Into<String>) -> Self {
        Self {
            id: id.to_owned(),
            scenario: scenario.into(),
            ours: String::new(),
            baseline: String::new(),
            ratio: String::new(),
            target: "report".to_owned(),
            verdict: "—".to_owned(),
        }
    }

    fn figures(mut self, ours: String, baseline: String, ratio: f64) -> Self {
        self.ours = ours;
        self.baseline = baseline;
        self.ratio = format!("{ratio:.2}×");
        self
    }

    /// A target on the ratio: met when `ratio <= max`.
    fn at_most(mut self, target: &str, ratio: f64, max: f64) -> Self {
        self.target = target.to_owned();
        self.verdict = verdict(ratio <= max, ratio, max);
        self
    }

    /// A target on the ratio: met when `ratio >= min`.
    fn at_least(mut self, target: &str, ratio: f64, min: f64) -> Self {
        self.target = target.to_owned();
        self.verdict = verdict(ratio >= min, ratio, min);
        self
    }
}

fn verdict(met: bool, ratio: f64, bound: f64) -> String {
    match (met, ratio > bound) {
        (true, _) => "met".to_owned(),
        // An upper bound: how many times over it.
        (false, true) => format!("missed: {:.1}× over", ratio / bound),
        // A lower bound: how much of it was reached.
        (false, false) => format!("missed: {:.0}% of it", 100.0 * ratio / bound),
    }
}

/// Latency percentiles of a set of samples.
#[derive(Debug, Clone, Copy)]
struct Lat {
    p50: Duration,
    p99: Duration,
    n: usize,
}

impl Lat {
    fn of(mut samples: Vec<Duration>) -> anyhow::Result<Self> {
        if samples.is_empty() {
            bail!("no samples");
        }
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Ok(Self {
            p50: at(0.50),
            p99: at(0.99),
            n: samples.len(),
        })
    }
}

impl std::fmt::Display for Lat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {} / p99 {} (n={})",
            us(self.p50),
            us(self.p99),
            self.n
        )
    }
}

fn us(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn per_s(r: f64) -> String {
    if r >= 10_000.0 {
        format!("{:.0}k/s", r / 1000.0)
    } else {
        format!("{r:.0}/s")
    }
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

macro_rules! note {
    ($($arg:tt)*) => { eprintln!("    {}", format!($($arg)*)) };
}

/// What every scenario needs.
struct Ctx {
    url: String,
    sizes: Sizes,
    quick: bool,
    space: SpaceId,
    /// Temporary directory for sled stores (on `$TMPDIR`'s disk).
    dir: tempfile::TempDir,
    /// Raw baseline stream and subject prefix.
    raw_stream: String,
    raw_prefix: String,
    /// The JetStream log and client used to publish histories.
    main: async_nats::Client,
    log: Arc<JetStreamLog>,
    /// The size of one live event (the raw baselines publish payloads this long).
    payload_len: usize,
    /// Results shared between scenarios.
    propagation_js: Option<Lat>,
    throughput_js: Option<f64>,
    counter: usize,
}

impl Ctx {
    fn doc_id(&self, name: &str) -> DocumentId {
        name.parse().expect("a valid document id")
    }

    /// A fresh directory for one sled database.
    fn store_dir(&mut self, name: &str) -> PathBuf {
        self.counter += 1;
        self.dir.path().join(format!("{}-{name}", self.counter))
    }

    async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        async_nats::connect(&self.url)
            .await
            .with_context(|| format!("connect to {}", self.url))
    }

    /// A JetStream log on a connection of its own.
    async fn js_log(&self) -> anyhow::Result<Arc<dyn EventLog>> {
        Ok(Arc::new(JetStreamLog::new(
            self.connect().await?,
            JetStreamConfig::default(),
        )))
    }

    fn config(&self, document: &str, agent: &str) -> Config {
        let mut c = Config::new(
            self.space.clone(),
            self.doc_id(document),
            agent.parse().expect("a valid agent id"),
        );
        c.snapshots = SnapshotPolicy::manual();
        c
    }

    /// A replica of `document` on `log`, with a sled database of its own under `dir`.
    async fn replica_in(
        &self,
        log: Arc<dyn EventLog>,
        dir: &FsPath,
        document: &str,
        agent: &str,
    ) -> anyhow::Result<(Replica, sled::Db)> {
        let db = sled::open(dir).with_context(|| format!("open sled at {}", dir.display()))?;
        let replica = Replica::open(log, &db, self.config(document, agent))?;
        Ok((replica, db))
    }

    /// A replica of `document` on its own connection and its own sled database.
    async fn replica(
        &mut self,
        document: &str,
        agent: &str,
    ) -> anyhow::Result<(Replica, sled::Db)> {
        let dir = self.store_dir(agent);
        let log = self.js_log().await?;
        self.replica_in(log, &dir, document, agent).await
    }

    fn raw_subject(&self, name: &str) -> String {
        format!("{}.{name}", self.raw_prefix)
    }
}

/// A document's history built in-process: `n` changes of the shape `Replica::put` makes
/// (`/k<i % 100>` = a 100-character string), by one agent, as events.
struct History {
    changes: Vec<Vec<u8>>,
    events: Vec<(String, Bytes)>,
}

fn build_history(space: &SpaceId, document: &DocumentId, n: usize) -> anyhow::Result<History> {
    let agent: AgentId = "seed".parse().expect("a valid agent id");
    let mut core = DocCore::new();
    let paths: Vec<Path> = (0..100)
        .map(|k| format!("/k{k}").parse().expect("a valid path"))
        .collect();
    let mut changes = Vec::with_capacity(n);
    let mut events = Vec::with_capacity(n);
    let time = 1_700_000_000_000;
    for i in 0..n {
        let ((), local) =
            core.transact(time, None, |tx| json::put(tx, &paths[i % 100], &value(i)))?;
        let local = local.ok_or_else(|| anyhow!("a put changed nothing"))?;
        let envelope = codec::encode_event(space, document, &agent, &local, time, None).encode();
        events.push((local.hash.to_string(), Bytes::from(envelope)));
        changes.push(local.bytes);
    }
    Ok(History { changes, events })
}

/// Publishes events to `log`, pipelined in batches; returns the position of the last one.
async fn publish_events(
    log: &dyn EventLog,
    space: &SpaceId,
    document: &DocumentId,
    events: &[(String, Bytes)],
) -> anyhow::Result<u64> {
    let mut last = 0;
    for chunk in events.chunks(1024) {
        for result in log.publish_batch(space, document, chunk.to_vec()).await {
            last = result.context("publish a history event")?.seq;
        }
    }
    Ok(last)
}

/// Waits for `f` with a generous limit, so a stuck scenario fails instead of hanging.
async fn within<T>(what: &str, f: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(600), f)
        .await
        .map_err(|_| anyhow!("timed out waiting for {what}"))
}

async fn next_event(watch: &mut Watch) -> anyhow::Result<()> {
    match watch.next().await {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(e.into()),
        None => bail!("the watch ended"),
    }
}

// ---------------------------------------------------------------------------------------
// Raw JetStream baselines.

async fn raw_stream(ctx: &Ctx) -> anyhow::Result<stream::Stream> {
    let js = jetstream::new(ctx.main.clone());
    js.get_or_create_stream(stream::Config {
        name: ctx.raw_stream.clone(),
        subjects: vec![format!("{}.>", ctx.raw_prefix)],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .context("create the raw baseline stream")
}

/// Raw publish on one connection → ordered consumer on another; one message at a time.
async fn raw_propagation(ctx: &Ctx, name: &str, samples: usize) -> anyhow::Result<Lat> {
    let stream = raw_stream(ctx).await?;
    let subject = ctx.raw_subject(name);
    let reader = jetstream::new(ctx.connect().await?);
    let consumer = reader
        .get_stream(&ctx.raw_stream)
        .await?
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subject.clone(),
            deliver_policy: consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await?;
    drop(stream);
    let mut messages = consumer.messages().await?;
    let writer = jetstream::new(ctx.connect().await?);
    let payload = Bytes::from(vec![b'x'; ctx.payload_len]);
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples + 10 {
        let t0 = Instant::now();
        let ack = writer.publish(subject.clone(), payload.clone()).await?;
        let received = async {
            let m = messages
                .next()
                .await
                .ok_or_else(|| anyhow!("consumer ended"))??;
            anyhow::Ok((m, t0.elapsed()))
        };
        let (ack, received) = tokio::join!(ack, received);
        ack?;
        let (_, took) = received?;
        if i >= 10 {
            lat.push(took);
        }
    }
    Lat::of(lat)
}

/// Raw publishes of `n` messages with up to `window` acknowledgements outstanding.
async fn raw_publish(ctx: &Ctx, name: &str, n: usize, window: usize) -> anyhow::Result<f64> {
    raw_stream(ctx).await?;
    let subject = ctx.raw_subject(name);
    let js = jetstream::new(ctx.connect().await?);
    let payload = Bytes::from(vec![b'x'; ctx.payload_len]);
    let start = Instant::now();
    let mut in_flight = VecDeque::with_capacity(window);
    for _ in 0..n {
        if in_flight.len() >= window {
            let ack: jetstream::context::PublishAckFuture =
                in_flight.pop_front().expect("a publish in flight");
            ack.await?;
        }
        in_flight.push_back(js.publish(subject.clone(), payload.clone()).await?);
    }
    for ack in in_flight {
        ack.await?;
    }
    Ok(rate(n, start.elapsed()))
}

// ---------------------------------------------------------------------------------------
// Shared measurements of this project.

/// Agent A writes `/live`, agent B (its own log handle) receives the watch event; the
/// document first gets `history` events. Returns the latencies.
async fn propagation(
    ctx: &mut Ctx,
    logs: (Arc<dyn EventLog>, Arc<dyn EventLog>),
    dirs: (PathBuf, PathBuf),
    document: &str,
    history: usize,
) -> anyhow::Result<Lat> {
    let doc_id = ctx.doc_id(document);
    let mut last = 0;
    if history > 0 {
        let h = build_history(&ctx.space, &doc_id, history)?;
        last = publish_events(logs.0.as_ref(), &ctx.space, &doc_id, &h.events).await?;
    }
    let (a, _db_a) = ctx.replica_in(logs.0, &dirs.0, document, "a").await?;
    let (b, _db_b) = ctx.replica_in(logs.1, &dirs.1, document, "b").await?;
    within("the history", async {
        a.wait_for_position(last).await?;
        b.wait_for_position(last).await
    })
    .await??;
    let mut watch = b.watch("/live".parse()?, WatchOptions::default())?;
    let samples = ctx.sizes.samples;
    let mut lat = Vec::with_capacity(samples);
    let mut puts = Vec::with_capacity(samples);
    for i in 0..samples + 10 {
        let t0 = Instant::now();
        let put = async {
            a.put("/live", value(i)).await?;
            anyhow::Ok(t0.elapsed())
        };
        let received = async {
            next_event(&mut watch).await?;
            anyhow::Ok(t0.elapsed())
        };
        let (put, received) =
            within("a watch event", async { tokio::join!(put, received) }).await?;
        let (put, received) = (put?, received?);
        if i >= 10 {
            lat.push(received);
            puts.push(put);
        }
    }
    note!(
        "  (put returned, the change durable in A's store: {})",
        Lat::of(puts)?
    );
    a.flush().await?;
    a.close().await?;
    b.close().await?;
    Lat::of(lat)
}

/// `writers` tasks share `n` puts on one replica; returns changes per second until every
/// change is acknowledged by the log, and the raw bytes of the changes.
async fn pipelined_writes(
    replica: &Replica,
    n: usize,
    writers: usize,
) -> anyhow::Result<(f64, usize)> {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let r = replica.clone();
        let count = n / writers + usize::from(w < n % writers);
        tasks.push(tokio::spawn(async move {
            let path = format!("/w{w}");
            for i in 0..count {
                r.put(&path, value(i)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        within("the writers", t).await???;
    }
    within("the acknowledgements", replica.flush()).await??;
    let took = start.elapsed();
    let bytes = replica.read(|core| {
        core.automerge()
            .get_changes(&[])
            .iter()
            .map(|c| c.raw_bytes().len())
            .sum()
    });
    Ok((rate(n, took), bytes))
}

fn dir_size(path: &FsPath) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

// ---------------------------------------------------------------------------------------
// The scenarios.

async fn s1_propagation(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let history = ctx.sizes.history;
    let logs = (ctx.js_log().await?, ctx.js_log().await?);
    let dirs = (ctx.store_dir("s1a"), ctx.store_dir("s1b"));
    let ours = propagation(ctx, logs, dirs, "propagation", history).await?;
    let raw = raw_propagation(ctx, "propagation", ctx.sizes.samples).await?;
    note!("this project (history {history}): {ours}");
    note!(
        "raw JetStream publish → ordered consumer ({} B): {raw}",
        ctx.payload_len
    );
    ctx.propagation_js = Some(ours);
    let r50 = ours.p50.as_secs_f64() / raw.p50.as_secs_f64();
    let r99 = ours.p99.as_secs_f64() / raw.p99.as_secs_f64();
    Ok(vec![
        Row::new(
            "1",
            format!("propagation p50, A put → B watch, {history} events of history"),
        )
        .figures(us(ours.p50), us(raw.p50), r50)
        .at_most("≤ 1.5×", r50, 1.5),
        Row::new("1", "propagation p99")
            .figures(us(ours.p99), us(raw.p99), r99)
            .at_most("≤ 2×", r99, 2.0),
    ])
}

async fn s2_throughput(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let (n, writers) = (ctx.sizes.pipelined, ctx.sizes.writers);
    let (replica, _db) = ctx.replica("throughput", "w").await?;
    let (ours, _) = pipelined_writes(&replica, n, writers).await?;
    replica.close().await?;
    let raw = raw_publish(ctx, "throughput", n, RAW_WINDOW).await?;
    note!(
        "this project ({writers} writer tasks, {n} puts, until all acknowledged): {}",
        per_s(ours)
    );
    note!(
        "raw pipelined publish ({RAW_WINDOW} in flight, {} B): {}",
        ctx.payload_len,
        per_s(raw)
    );
    ctx.throughput_js = Some(ours);
    let ratio = ours / raw;
    Ok(vec![Row::new(
        "2",
        format!("write throughput, one document, {writers} concurrent writers"),
    )
    .figures(per_s(ours), per_s(raw), ratio)
    .at_least("≥ 0.5×", ratio, 0.5)])
}

async fn s3_awaited(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let n = ctx.sizes.awaited;
    let (replica, _db) = ctx.replica("awaited", "w").await?;
    let start = Instant::now();
    for i in 0..n {
        replica.put("/live", value(i)).await?;
        within("an acknowledgement", replica.flush()).await??;
    }
    let ours = rate(n, start.elapsed());
    replica.close().await?;
    let raw = raw_publish(ctx, "awaited", n, 1).await?;
    note!(
        "this project (put, then flush until acknowledged, {n} times): {}",
        per_s(ours)
    );
    note!("raw publish awaiting each ack: {}", per_s(raw));
    let ratio = ours / raw;
    Ok(vec![Row::new("3", "writes each awaiting its ack (rate)")
        .figures(per_s(ours), per_s(raw), ratio)
        .at_least("≥ 0.8×", ratio, 0.8)])
}

/// Scenarios 4, 5 and 8 share one 100k-event document.
async fn s4_5_8_catch_up(ctx: &mut Ctx, which: &[u8]) -> anyhow::Result<Vec<Row>> {
    let (n, tail) = (ctx.sizes.catch_up, ctx.sizes.tail);
    let document = "catchup";
    let doc_id = ctx.doc_id(document);
    let h = build_history(&ctx.space, &doc_id, n + tail)?;
    let last = publish_events(ctx.log.as_ref(), &ctx.space, &doc_id, &h.events[..n]).await?;
    let mut rows = Vec::new();

    // Baseline: automerge applying the same changes in-process, one at a time (decode
    // included), as a replica does; its retained heap is scenario 8's baseline.
    let heap0 = HEAP.current_usage();
    let start = Instant::now();
    let mut am = automerge::Automerge::new();
    for bytes in &h.changes[..n] {
        let change = automerge::Change::from_bytes(bytes.clone())?;
        am.apply_changes([change])?;
    }
    let am_rate = rate(n, start.elapsed());
    let am_heap = HEAP.current_usage().saturating_sub(heap0);
    let am_json = blackboard::doc::json::object_to_json(&am, &automerge::ROOT);
    drop(am);

    // Baseline: a raw ordered consumer reading the document's events.
    let reader = jetstream::new(ctx.connect().await?);
    let start = Instant::now();
    let consumer = reader
        .get_stream(subject::stream_name(&ctx.space))
        .await?
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subject::changes(&ctx.space, &doc_id),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut read = 0;
    within("the raw consumer", async {
        while read < n {
            messages
                .next()
                .await
                .ok_or_else(|| anyhow!("consumer ended"))??;
            read += 1;
        }
        anyhow::Ok(())
    })
    .await??;
    let raw_rate = rate(n, start.elapsed());
    drop(messages);

    // This project: a new replica (own connection, empty store) catching up.
    let dir = ctx.store_dir("catchup");
    let heap1 = HEAP.current_usage();
    let start = Instant::now();
    let log = ctx.js_log().await?;
    let (replica, db) = ctx.replica_in(log, &dir, document, "reader").await?;
    within("the catch-up", replica.wait_for_position(last)).await??;
    let ours_rate = rate(n, start.elapsed());
    let replica_heap = HEAP.current_usage().saturating_sub(heap1);
    if replica.to_json() != am_json {
        bail!("the replica's document differs from automerge's");
    }
    note!(
        "this project: a new replica applies {n} events: {}",
        per_s(ours_rate)
    );
    note!(
        "automerge 0.6 applying the same changes one at a time: {}",
        per_s(am_rate)
    );
    note!(
        "raw ordered consumer reading the events: {}",
        per_s(raw_rate)
    );
    note!(
        "heap: replica (engine, sled, connection) {} vs automerge document {}",
        mib(replica_heap),
        mib(am_heap)
    );
    if which.contains(&4) {
        let ratio = ours_rate / am_rate;
        rows.push(
            Row::new(
                "4",
                format!(
                    "catch-up: a new replica applies {n} events (raw read {})",
                    per_s(raw_rate)
                ),
            )
            .figures(per_s(ours_rate), per_s(am_rate), ratio)
            .at_least("≥ 0.7× automerge", ratio, 0.7),
        );
    }
    if which.contains(&8) {
        let ratio = replica_heap as f64 / am_heap.max(1) as f64;
        rows.push(
            Row::new(
                "8",
                format!("memory: replica heap after {n} events (counting allocator)"),
            )
            .figures(mib(replica_heap), mib(am_heap), ratio)
            .at_most("≤ 1.5×", ratio, 1.5),
        );
    }
    if !which.contains(&5) {
        replica.close().await?;
        return Ok(rows);
    }

    // Scenario 5: snapshot at `last`, a tail of events after it, then a cold start.
    let info = within("the snapshot", replica.snapshot()).await??;
    replica.close().await?;
    drop(db);
    let last2 = publish_events(ctx.log.as_ref(), &ctx.space, &doc_id, &h.events[n..]).await?;
    let mut am = automerge::Automerge::new();
    am.apply_changes(
        h.changes
            .iter()
            .map(|b| automerge::Change::from_bytes(b.clone()))
            .collect::<Result<Vec<_>, _>>()?,
    )?;
    let saved = am.save();
    drop(am);
    let mut loads = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let doc = automerge::Automerge::load(&saved)?;
        loads.push(start.elapsed());
        if doc.length(automerge::ROOT) == 0 {
            bail!("loaded an empty document");
        }
    }
    loads.sort();
    let load = loads[1];
    let dir = ctx.store_dir("cold");
    let start = Instant::now();
    let log = ctx.js_log().await?;
    let (cold, _db) = ctx.replica_in(log, &dir, document, "cold").await?;
    within("the cold start", cold.wait_for_position(last2)).await??;
    let took = start.elapsed();
    let loaded = cold.stats().snapshot_loaded;
    cold.close().await?;
    if loaded != Some(info.seq) {
        bail!(
            "the cold replica did not start from the snapshot at {} ({loaded:?})",
            info.seq
        );
    }
    note!(
        "cold start from the snapshot at {} ({} B) + {tail} events: {}; automerge load of the saved document ({} B, median of 3): {}",
        info.seq, info.size, us(took), saved.len(), us(load)
    );
    let ratio = took.as_secs_f64() / load.as_secs_f64();
    rows.push(
        Row::new(
            "5",
            format!("cold start, {n} events: snapshot + {tail}-event tail"),
        )
        .figures(us(took), us(load), ratio)
        .at_most("≤ 1.5×", ratio, 1.5),
    );
    Ok(rows)
}

async fn s6_fanout(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let samples = ctx.sizes.fanout_samples;
    let mut rows = Vec::new();
    let mut one: Option<Lat> = None;
    for watchers in [1usize, 10, 100] {
        let document = format!("fanout{watchers}");
        let (writer, _db) = ctx.replica(&document, "writer").await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let mut held = Vec::new();
        let mut tasks = Vec::new();
        for w in 0..watchers {
            let (r, db) = ctx.replica(&document, &format!("watcher{w}")).await?;
            let mut watch = r.watch("/live".parse()?, WatchOptions::default())?;
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(Ok(_)) = watch.next().await {
                    if tx.send(Instant::now()).is_err() {
                        break;
                    }
                }
            }));
            held.push((r, db));
        }
        let mut lat = Vec::with_capacity(samples * watchers);
        for i in 0..samples + 10 {
            let t0 = Instant::now();
            writer.put("/live", value(i)).await?;
            for _ in 0..watchers {
                let at = within("the watchers", rx.recv())
                    .await?
                    .ok_or_else(|| anyhow!("a watcher stopped"))?;
                if i >= 10 {
                    lat.push(at - t0);
                }
            }
        }
        for t in &tasks {
            t.abort();
        }
        writer.close().await?;
        for (r, _db) in held {
            r.close().await?;
        }
        let lat = Lat::of(lat)?;
        note!("{watchers} watchers, each its own connection and replica: {lat}");
        let base = *one.get_or_insert(lat);
        let ratio = lat.p99.as_secs_f64() / base.p99.as_secs_f64();
        let row = Row::new(
            "6",
            format!("fan-out p99, {watchers} watcher(s) (p50 {})", us(lat.p50)),
        )
        .figures(us(lat.p99), us(base.p99), ratio);
        rows.push(if watchers == 100 {
            row.at_most("≤ 5× the 1-watcher p99", ratio, 5.0)
        } else {
            row
        });
    }
    rows.extend(s6_watches_on_one_replica(ctx).await?);
    rows.extend(s6_watcher_processes(ctx).await?);
    Ok(rows)
}

/// 100 watches on one replica against one watch: what a watch costs once the replica has
/// the change (p99 of the time until every watch has the event).
async fn s6_watches_on_one_replica(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let samples = ctx.sizes.fanout_samples;
    let mut rows = Vec::new();
    let mut one: Option<Lat> = None;
    for watches in [1usize, 100] {
        let document = format!("watches{watches}");
        let (writer, _wdb) = ctx.replica(&document, "writer").await?;
        let (reader, _rdb) = ctx.replica(&document, "reader").await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let mut tasks = Vec::new();
        for _ in 0..watches {
            let mut watch = reader.watch("/live".parse()?, WatchOptions::default())?;
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(Ok(_)) = watch.next().await {
                    if tx.send(Instant::now()).is_err() {
                        break;
                    }
                }
            }));
        }
        let mut lat = Vec::with_capacity(samples);
        for i in 0..samples + 10 {
            let t0 = Instant::now();
            writer.put("/live", value(i)).await?;
            let mut last = t0;
            for _ in 0..watches {
                let at = within("the watches", rx.recv())
                    .await?
                    .ok_or_else(|| anyhow!("a watch stopped"))?;
                last = last.max(at);
            }
            if i >= 10 {
                lat.push(last - t0);
            }
        }
        for t in &tasks {
            t.abort();
        }
        writer.close().await?;
        reader.close().await?;
        let lat = Lat::of(lat)?;
        note!("{watches} watch(es) on one replica, until the last has the event: {lat}");
        let base = *one.get_or_insert(lat);
        let ratio = lat.p99.as_secs_f64() / base.p99.as_secs_f64();
        let row = Row::new(
            "6",
            format!(
                "{watches} watch(es) on one replica, p99 until the last has it (p50 {})",
                us(lat.p50)
            ),
        )
        .figures(us(lat.p99), us(base.p99), ratio);
        rows.push(if watches == 100 {
            row.at_most("≤ 1.2× one watch", ratio, 1.2)
        } else {
            row
        });
    }
    Ok(rows)
}

/// Fan-out with each watcher in a process of its own (this binary, `--watch-child`), as
/// agents are deployed: each its own connection, store and replica. A watcher prints the
/// wall-clock time at which its watch yielded; the latency is that minus the time the
/// writer started its put (one machine, one clock).
async fn s6_watcher_processes(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    use tokio::io::AsyncBufReadExt as _;

    let samples = ctx.sizes.fanout_samples;
    let counts: &[usize] = if ctx.quick { &[1, 3] } else { &[1, 10, 100] };
    let exe = std::env::current_exe().context("the bench's own path")?;
    let mut rows = Vec::new();
    let mut one: Option<Lat> = None;
    for &watchers in counts {
        let document = format!("procs{watchers}");
        let (writer, _db) = ctx.replica(&document, "writer").await?;
        // The document exists before the watchers start, so each can catch up first.
        writer.put("/live", value(0)).await?;
        writer.flush().await?;
        let mut children = Vec::with_capacity(watchers);
        for w in 0..watchers {
            let store = ctx.store_dir(&format!("proc{w}"));
            let mut child = tokio::process::Command::new(&exe)
                .arg("--watch-child")
                .args([
                    ctx.url.as_str(),
                    ctx.space.as_str(),
                    document.as_str(),
                    &store.display().to_string(),
                    &format!("watcher{w}"),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("starting a watcher process")?;
            let out = child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("the watcher's stdout"))?;
            children.push((child, tokio::io::BufReader::new(out).lines()));
        }
        for (_, lines) in &mut children {
            let line = within("a watcher process to start", lines.next_line()).await??;
            if line.as_deref() != Some("ready") {
                bail!("a watcher process said {line:?} instead of ready");
            }
        }
        let mut lat = Vec::with_capacity(samples * watchers);
        for i in 1..=samples + 10 {
            let t0 = wall_ns()?;
            writer.put("/live", value(i)).await?;
            for (_, lines) in &mut children {
                let line = within("a watcher process", lines.next_line())
                    .await??
                    .ok_or_else(|| anyhow!("a watcher process stopped"))?;
                let at: u128 = line
                    .parse()
                    .with_context(|| format!("a watcher's time {line:?}"))?;
                if i > 10 {
                    lat.push(Duration::from_nanos(at.saturating_sub(t0) as u64));
                }
            }
        }
        for (mut child, _) in children {
            let _ = child.kill().await;
        }
        writer.close().await?;
        let lat = Lat::of(lat)?;
        note!("{watchers} watcher process(es): {lat}");
        let base = *one.get_or_insert(lat);
        let ratio = lat.p99.as_secs_f64() / base.p99.as_secs_f64();
        let row = Row::new(
            "6",
            format!(
                "fan-out p99, {watchers} watcher process(es) (p50 {})",
                us(lat.p50)
            ),
        )
        .figures(us(lat.p99), us(base.p99), ratio);
        rows.push(if watchers == 100 {
            row.at_most("≤ 5× the 1-process p99", ratio, 5.0)
        } else {
            row
        });
    }
    Ok(rows)
}

/// Nanoseconds since the Unix epoch, the clock watcher processes report in.
fn wall_ns() -> anyhow::Result<u128> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos())
}

/// One watcher process of scenario 6: opens a replica of the document, catches up, watches
/// `/live`, says `ready`, then prints the wall-clock time of every event its watch yields.
async fn watch_child(args: Vec<String>) -> anyhow::Result<()> {
    use std::io::Write as _;

    let [url, space, document, store, name] = <[String; 5]>::try_from(args)
        .map_err(|a| anyhow!("--watch-child takes 5 values, got {}", a.len()))?;
    let client = async_nats::connect(&url)
        .await
        .with_context(|| format!("connect to {url}"))?;
    let log: Arc<dyn EventLog> = Arc::new(JetStreamLog::new(client, JetStreamConfig::default()));
    let db = sled::open(&store).with_context(|| format!("open sled at {store}"))?;
    let mut config = Config::new(space.parse()?, document.parse()?, name.parse()?);
    config.snapshots = SnapshotPolicy::manual();
    let replica = Replica::open(log, &db, config)?;
    replica.sync().await?;
    let mut watch = replica.watch("/live".parse()?, WatchOptions::default())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    while let Some(Ok(_)) = watch.next().await {
        writeln!(out, "{}", wall_ns()?)?;
        out.flush()?;
    }
    Ok(())
}

async fn s7_kv(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let samples = ctx.sizes.samples;
    let bucket = format!("{}_kv", ctx.raw_stream.to_lowercase());
    let js = jetstream::new(ctx.connect().await?);
    let kv = js
        .create_key_value(jetstream::kv::Config {
            bucket: bucket.clone(),
            history: 1,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let watcher = jetstream::new(ctx.connect().await?)
        .get_key_value(&bucket)
        .await?;
    let mut watch = watcher.watch("k").await?;
    let payload = Bytes::from(vec![b'x'; ctx.payload_len]);
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples + 10 {
        let t0 = Instant::now();
        let put = kv.put("k", payload.clone());
        let received = async {
            watch
                .next()
                .await
                .ok_or_else(|| anyhow!("KV watch ended"))??;
            anyhow::Ok(t0.elapsed())
        };
        let (put, received) =
            within("a KV watch event", async { tokio::join!(put, received) }).await?;
        put?;
        let took = received?;
        if i >= 10 {
            lat.push(took);
        }
    }
    let kv_lat = Lat::of(lat)?;
    let logs = (ctx.js_log().await?, ctx.js_log().await?);
    let dirs = (ctx.store_dir("s7a"), ctx.store_dir("s7b"));
    let ours = propagation(ctx, logs, dirs, "kvlike", 0).await?;
    note!(
        "NATS KV put → KV watch, one key ({} B): {kv_lat}",
        ctx.payload_len
    );
    note!("this project, put /live → watch /live, fresh document: {ours}");
    let r50 = ours.p50.as_secs_f64() / kv_lat.p50.as_secs_f64();
    let r99 = ours.p99.as_secs_f64() / kv_lat.p99.as_secs_f64();
    Ok(vec![
        Row::new(
            "7",
            "change → watch on one field vs NATS KV put → watch, p50",
        )
        .figures(us(ours.p50), us(kv_lat.p50), r50),
        Row::new("7", "… p99").figures(us(ours.p99), us(kv_lat.p99), r99),
    ])
}

async fn s9_embedded(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let history = ctx.sizes.history;
    let dir = ctx.store_dir("embedded");
    let db = sled::open(&dir)?;
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(db.clone())?);
    // Two agents of one process on one embedded log; each replica gets its own sled
    // database for its state, as on JetStream.
    let dirs = (ctx.store_dir("s9a"), ctx.store_dir("s9b"));
    let lat = propagation(
        ctx,
        (log.clone(), log.clone()),
        dirs,
        "propagation",
        history,
    )
    .await?;
    let wdir = ctx.store_dir("s9w");
    let (replica, _rdb) = ctx
        .replica_in(log.clone(), &wdir, "throughput", "w")
        .await?;
    let (n, writers) = (ctx.sizes.pipelined, ctx.sizes.writers);
    let (tput, _) = pipelined_writes(&replica, n, writers).await?;
    replica.close().await?;
    note!("embedded log, propagation (history {history}): {lat}");
    note!("embedded log, {writers} writers: {}", per_s(tput));
    let mut rows = Vec::new();
    match ctx.propagation_js {
        Some(js) => {
            let ratio = lat.p50.as_secs_f64() / js.p50.as_secs_f64();
            rows.push(
                Row::new(
                    "9",
                    format!(
                        "embedded log: propagation p50 (p99 {}) vs JetStream",
                        us(lat.p99)
                    ),
                )
                .figures(us(lat.p50), us(js.p50), ratio),
            );
        }
        None => rows.push(Row {
            ours: us(lat.p50),
            baseline: "(scenario 1 not run)".into(),
            ..Row::new("9", "embedded log: propagation p50")
        }),
    }
    match ctx.throughput_js {
        Some(js) => {
            let ratio = tput / js;
            rows.push(
                Row::new("9", "embedded log: write throughput vs JetStream").figures(
                    per_s(tput),
                    per_s(js),
                    ratio,
                ),
            );
        }
        None => rows.push(Row {
            ours: per_s(tput),
            baseline: "(scenario 2 not run)".into(),
            ..Row::new("9", "embedded log: write throughput")
        }),
    }
    Ok(rows)
}

async fn s10_apply_cost(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let sizes = ctx.sizes.apply_histories;
    let m = ctx.sizes.apply_samples;
    let max = *sizes.iter().max().expect("sizes");
    let doc_id = ctx.doc_id("apply");
    let h = build_history(&ctx.space, &doc_id, max)?;
    let mut rows = Vec::new();
    let mut first: Option<Lat> = None;
    for size in sizes {
        // A second agent's replica at `size` events makes `m` changes; a replica at the same
        // history applies them one at a time, as remote events.
        let prefix = || h.changes[..size].iter().map(Vec::as_slice);
        let (mut writer, errors) = DocCore::load(None, prefix())?;
        if !errors.is_empty() {
            bail!("history did not load: {:?}", errors[0]);
        }
        let path: Path = "/remote".parse()?;
        let mut remote = Vec::with_capacity(m);
        for i in 0..m {
            let ((), local) = writer.transact(0, None, |tx| json::put(tx, &path, &value(i)))?;
            remote.push(local.ok_or_else(|| anyhow!("a put changed nothing"))?.bytes);
        }
        let (mut reader, _) = DocCore::load(None, prefix())?;
        let mut lat = Vec::with_capacity(m);
        for bytes in &remote {
            let start = Instant::now();
            reader.apply_bytes(bytes)?;
            lat.push(start.elapsed());
        }
        let lat = Lat::of(lat)?;
        note!("DocCore::apply_bytes of one remote change at {size} events of history: {lat}");
        let base = *first.get_or_insert(lat);
        let ratio = lat.p50.as_secs_f64() / base.p50.as_secs_f64();
        let row = Row::new(
            "10",
            format!(
                "apply one remote change at {size} events (p99 {})",
                us(lat.p99)
            ),
        )
        .figures(us(lat.p50), us(base.p50), ratio);
        rows.push(if size == max {
            row.at_most(&format!("p50 ≤ 2× the {} figure", sizes[0]), ratio, 2.0)
        } else {
            row
        });
    }
    Ok(rows)
}

async fn s11_persistence(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let (n, writers) = (ctx.sizes.pipelined, ctx.sizes.writers);
    // The same workload with the replica's sled on disk and on tmpfs (where fsync costs
    // nothing): the difference is what local durability costs.
    let disk_dir = ctx.store_dir("disk");
    let log = ctx.js_log().await?;
    let (replica, db) = ctx.replica_in(log, &disk_dir, "persist-disk", "w").await?;
    let (disk_rate, change_bytes) = pipelined_writes(&replica, n, writers).await?;
    replica.close().await?;
    db.flush()?;
    drop(db);
    let on_disk = dir_size(&disk_dir)?;
    let shm = FsPath::new("/dev/shm");
    let tmpfs = if shm.is_dir() {
        tempfile::tempdir_in(shm)?
    } else {
        tempfile::tempdir()?
    };
    let log = ctx.js_log().await?;
    let (replica, _db) = ctx
        .replica_in(log, tmpfs.path(), "persist-tmpfs", "w")
        .await?;
    let (mem_rate, _) = pipelined_writes(&replica, n, writers).await?;
    replica.close().await?;
    let lost = 1.0 - disk_rate / mem_rate;
    note!(
        "{writers} writers, {n} puts: sled on disk {} vs sled on tmpfs{} {}",
        per_s(disk_rate),
        if shm.is_dir() {
            ""
        } else {
            " (no /dev/shm: same disk!)"
        },
        per_s(mem_rate)
    );
    note!("store after {n} writes: {on_disk} B on disk for {change_bytes} B of changes");
    let bytes_ratio = on_disk as f64 / change_bytes.max(1) as f64;
    Ok(vec![
        Row::new(
            "11",
            format!(
                "persistence: throughput lost to sled on disk ({:.0}%)",
                lost * 100.0
            ),
        )
        .figures(per_s(disk_rate), per_s(mem_rate), disk_rate / mem_rate)
        .at_least("≤ 10% lost (≥ 0.9×)", disk_rate / mem_rate, 0.9),
        Row::new("11", format!("persistence: bytes on disk after {n} writes"))
            .figures(
                mib(on_disk as usize),
                format!("{} of changes", mib(change_bytes)),
                bytes_ratio,
            )
            .at_most("≤ 3×", bytes_ratio, 3.0),
    ])
}

// ---------------------------------------------------------------------------------------

fn print_table(rows: &[Row]) {
    println!("| # | scenario | this project | baseline (same run) | ratio | target | result |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.id, r.scenario, r.ours, r.baseline, r.ratio, r.target, r.verdict
        );
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let _server;
    let url = match &args.nats {
        Some(url) => url.clone(),
        None => {
            // The test harness's launcher, with the server's default sync settings
            // (JetStream syncs to disk every two minutes, as deployed; the tests' servers
            // sync on every write instead, for their crash tests).
            let server = NatsServer::start_with(ServerOptions::default_sync()).await?;
            let url = server.url();
            _server = server;
            url
        }
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let space: SpaceId = format!("bench{stamp}").parse()?;
    let main = async_nats::connect(&url)
        .await
        .with_context(|| format!("connect to {url}"))?;
    let log = Arc::new(JetStreamLog::new(main.clone(), JetStreamConfig::default()));
    log.ensure_stream(&space).await?;
    let mut sizes = if args.quick { QUICK } else { FULL };
    if let Some(n) = args.history {
        sizes.history = n as usize;
        sizes.catch_up = n as usize;
    }
    // The size of one live event, for the raw baselines.
    let sample = build_history(&space, &"propagation".parse()?, 1)?;
    let mut ctx = Ctx {
        url: url.clone(),
        sizes,
        quick: args.quick,
        dir: tempfile::Builder::new()
            .prefix("blackboard-bench-")
            .tempdir()?,
        raw_stream: format!("BENCH_RAW_{stamp}"),
        raw_prefix: format!("benchraw{stamp}"),
        space,
        main,
        log,
        payload_len: sample.events[0].1.len(),
        propagation_js: None,
        throughput_js: None,
        counter: 0,
    };
    let only = |n: u8| args.only.is_empty() || args.only.contains(&n);
    eprintln!(
        "scenarios ({}) on {url}; stores under {}; events of {} B",
        if ctx.quick { "quick" } else { "full" },
        ctx.dir.path().display(),
        ctx.payload_len
    );
    let mut rows = Vec::new();
    let mut ok = true;
    let catch_up: Vec<u8> = [4, 5, 8].into_iter().filter(|&n| only(n)).collect();
    let steps: [(u8, &str); 9] = [
        (1, "propagation"),
        (2, "write throughput"),
        (3, "writes awaiting acks"),
        (6, "fan-out"),
        (7, "NATS KV"),
        (9, "embedded log"),
        (10, "apply cost against history"),
        (11, "persistence overhead"),
        // Last: its 100k-event stream and stores keep the disk busy for a while after.
        (4, "catch-up, cold start, memory"),
    ];
    for (n, name) in steps {
        if n == 4 {
            if catch_up.is_empty() {
                continue;
            }
        } else if !only(n) {
            continue;
        }
        eprintln!("==> scenario {n}: {name}");
        let started = Instant::now();
        let result = match n {
            1 => s1_propagation(&mut ctx).await,
            2 => s2_throughput(&mut ctx).await,
            3 => s3_awaited(&mut ctx).await,
            4 => s4_5_8_catch_up(&mut ctx, &catch_up).await,
            6 => s6_fanout(&mut ctx).await,
            7 => s7_kv(&mut ctx).await,
            9 => s9_embedded(&mut ctx).await,
            10 => s10_apply_cost(&mut ctx).await,
            _ => s11_persistence(&mut ctx).await,
        };
        eprintln!("    ({:.1} s)", started.elapsed().as_secs_f64());
        match result {
            Ok(r) => rows.extend(r),
            Err(e) => {
                ok = false;
                eprintln!("    FAILED: {e:#}");
                rows.push(Row {
                    ours: format!("error: {e:#}").replace('|', "/"),
                    verdict: "error".into(),
                    ..Row::new(&n.to_string(), name)
                });
            }
        }
    }
    if args.keep {
        eprintln!("kept space {} on the server", ctx.space);
    } else if args.nats.is_some() {
        // Leave a shared server as we found it.
        let js = jetstream::new(ctx.main.clone());
        let _ = js.delete_stream(&ctx.raw_stream).await;
        let _ = js
            .delete_key_value(format!("{}_kv", ctx.raw_stream.to_lowercase()))
            .await;
        let _ = js.delete_stream(subject::stream_name(&ctx.space)).await;
        let _ = js
            .delete_object_store(subject::snapshot_bucket(&ctx.space))
            .await;
    }
    print_table(&rows);
    Ok(ok)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some(child) = args.watch_child {
        return match rt.block_on(watch_child(child)) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: watcher process: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match rt.block_on(run(args)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
