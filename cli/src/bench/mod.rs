//! `blackboard bench`: the project's benchmark scenarios against a NATS deployment of the
//! user's choice, each beside a raw JetStream (or automerge) baseline measured in the same run,
//! printed as one markdown table, in the spirit of `nats bench`.
//!
//! ```text
//! blackboard bench --nats nats://host:4222 [--creds FILE | --key FILE] [--replicas 3]
//!                  [--quick] [--only 1,2,3] [--history N] [--keep]
//! ```
//!
//! The same code is the workspace's `scenarios` binary (`bench/src/bin/scenarios.rs`), which
//! starts its own nats-server (or a three-server cluster) through the test harness and counts
//! heap bytes with a counting allocator; this command measures the server it is pointed at
//! and leaves scenario 8 (heap) to that binary, since the shipped one keeps the system
//! allocator.
//!
//! Replicas are `blackboard::Replica`s (what the SDK's `Doc` wraps), each on its own NATS
//! connection and its own sled database in a temporary directory on the same disk as
//! `$TMPDIR`, with manual snapshots (no snapshot is written unless a scenario asks for one).
//! Histories are built in-process as automerge changes of the shape a `put` makes and
//! published to the log as events, pipelined; live writes go through `Replica::put`.
//!
//! Every stream, bucket and space the run creates is deleted at the end (unless `--keep`).
//! The run fails (exit 1) if any scenario failed; its row then says why.
//!
//! Code map: [`table`] (rows, percentiles, formatting), `ctx` (what every scenario shares:
//! connections, replicas, histories), `raw` (the raw JetStream baselines), then one module per
//! group of scenarios: `propagation` (1, 7), `throughput` (2, 3, 11), `catch_up` (4, 5, 8),
//! `fanout` (6, with its watcher processes), `embedded` (9), `apply_cost` (10).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;

use async_nats::jetstream;
use blackboard::log::JetStreamConfig;
use blackboard::schemas::{subject, SpaceId};
use serde_json::json;

/// A detail line of a scenario, on stderr (the table goes to stdout).
macro_rules! note {
    ($($arg:tt)*) => { eprintln!("    {}", format!($($arg)*)) };
}

mod apply_cost;
mod catch_up;
mod ctx;
mod embedded;
mod fanout;
mod propagation;
mod raw;
mod recovery;
pub mod stages;
mod table;
mod throughput;

use ctx::{build_history, Ctx};
pub use fanout::watch_child;
use table::{print_table, Row};

/// `blackboard bench`'s arguments (the `scenarios` binary flattens them into its own).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The server to measure and who connects to it (every command's `--nats`, `--creds`
    /// and `--key`).
    #[command(flatten)]
    pub server: crate::connect::ServerArgs,
    /// How many servers keep each stream and bucket the run creates: 1 on a single server,
    /// 3 or 5 on a cluster (the raw baselines use the same).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// Run every scenario briefly (a smoke test; the figures are not comparable).
    #[arg(long)]
    pub quick: bool,
    /// Run only these scenarios (comma-separated numbers, 1 to 12).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=12))]
    pub only: Vec<u8>,
    /// Events of history behind scenarios 1, 4, 5 and 8 (default 10,000 for 1 and 100,000
    /// for the others): run at 10k, 100k and 1M to see how each cost grows.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(100..))]
    pub history: Option<u64>,
    /// Keys the histories of scenarios 1, 4, 5 and 8 write, in turn (default 100): with
    /// --history N, each key is overwritten N/keys times. Few keys keep the document small
    /// while its history grows; keys = N/100 grow both together.
    #[arg(long, value_name = "K", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub keys: u64,
    /// Leave the space the scenarios wrote on the server (its name is printed), for
    /// measuring the CLI against it afterwards.
    #[arg(long)]
    pub keep: bool,
    /// The replicas' snapshot policy: `manual` (the default here: no background snapshots,
    /// so each figure is the write or read path alone) or `sdk`, the SDK's default policy
    /// (a snapshot every 10,000 events or 10 minutes), which agents pay.
    #[arg(long, value_enum, default_value_t = Snapshots::Manual)]
    pub snapshots: Snapshots,
    /// Internal: run as one watcher process of scenario 6 (URL SPACE DOCUMENT STORE NAME).
    #[arg(long, hide = true, num_args = 5, value_names = ["URL", "SPACE", "DOCUMENT", "STORE", "NAME"])]
    pub watch_child: Option<Vec<String>>,
}

/// What the program running the scenarios provides.
#[derive(Clone)]
pub struct Setup {
    /// The server's URL.
    pub url: String,
    /// Whether the run owns the server (started it): nothing to clean up on it afterwards.
    pub own_server: bool,
    /// Reads the bytes live on the heap, when the program counts its allocations; scenario 8
    /// (memory) needs it and is skipped without it.
    pub heap: Option<fn() -> usize>,
    /// Kills the server and starts it again on the same port and store, when the program
    /// started it; scenario 12 (recovery) needs it and is skipped without it.
    pub restart: Option<Restart>,
    /// The arguments that come before `--watch-child` when the program starts itself as a
    /// watcher process of scenario 6: `["bench"]` for `blackboard`, none for `scenarios`.
    pub child_prefix: Vec<String>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("url", &blackboard::log::redact_url(&self.url))
            .field("own_server", &self.own_server)
            .field("heap", &self.heap.is_some())
            .field("restart", &self.restart.is_some())
            .field("child_prefix", &self.child_prefix)
            .finish()
    }
}

/// Restarts the server the run measures (see [`Setup::restart`]).
pub type Restart = std::sync::Arc<
    dyn Fn() -> futures::future::BoxFuture<'static, anyhow::Result<()>> + Send + Sync,
>;

/// `blackboard bench`: runs the scenarios against the server `args` names and prints the
/// table on stdout. Returns whether every scenario ran.
pub async fn command(args: Args) -> anyhow::Result<bool> {
    if let Some(child) = args.watch_child.clone() {
        watch_child(&args, child).await?;
        return Ok(true);
    }
    let url = args.server.url().ok_or_else(|| {
        crate::verbs::Usage(
            "bench measures a NATS JetStream server: give --nats URL or set $NATS_URL".to_owned(),
        )
    })?;
    run(
        args,
        Setup {
            url,
            own_server: false,
            heap: None,
            restart: None,
            child_prefix: vec!["bench".to_owned()],
        },
    )
    .await
}

/// The snapshot policy of the bench's replicas (`--snapshots`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Snapshots {
    /// `SnapshotPolicy::manual()`: none in the background.
    Manual,
    /// `SnapshotPolicy::default()`, the SDK's.
    Sdk,
}

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sizes {
    /// History of the propagation document (scenarios 1 and 9).
    pub history: usize,
    /// Latency samples per measurement.
    pub samples: usize,
    /// Fan-out samples per watcher count.
    pub fanout_samples: usize,
    /// Samples per watch count of the watches-on-one-replica rows: a p99 of 100 samples
    /// swung threefold between runs of one binary.
    pub watch_samples: usize,
    /// Writes of the throughput scenarios (2, 9, 11).
    pub pipelined: usize,
    /// Concurrent writer tasks in the throughput scenarios.
    pub writers: usize,
    /// Writes of the awaited-ack scenario (3).
    pub awaited: usize,
    /// Keys the histories of 1, 4, 5 and 8 overwrite in turn.
    pub keys: usize,
    /// Events of the catch-up document (4, 5, 8).
    pub catch_up: usize,
    /// Events published after the snapshot (5).
    pub tail: usize,
    /// History sizes of scenario 10.
    pub apply_histories: [usize; 3],
    /// Remote changes applied per history size in scenario 10.
    pub apply_samples: usize,
}

pub(super) const FULL: Sizes = Sizes {
    history: 10_000,
    samples: 300,
    fanout_samples: 100,
    watch_samples: 1_000,
    pipelined: 10_000,
    writers: 64,
    awaited: 500,
    keys: 100,
    catch_up: 100_000,
    tail: 1_000,
    apply_histories: [1_000, 10_000, 100_000],
    apply_samples: 500,
};

pub(super) const QUICK: Sizes = Sizes {
    history: 300,
    samples: 20,
    fanout_samples: 3,
    watch_samples: 3,
    pipelined: 300,
    writers: 16,
    awaited: 20,
    keys: 100,
    catch_up: 2_000,
    tail: 100,
    apply_histories: [100, 1_000, 2_000],
    apply_samples: 50,
};

/// The raw baselines' window of publishes in flight.
pub(super) const RAW_WINDOW: usize = 256;

/// The value written by every change: a string this long, so an event is a few hundred bytes.
pub(super) const VALUE_LEN: usize = 100;

/// The value of the `i`th write.
pub(super) fn value(i: usize) -> serde_json::Value {
    let mut s = format!("{i:010}-");
    while s.len() < VALUE_LEN {
        s.push('x');
    }
    json!(s)
}

/// Runs the scenarios `args` selects on `setup`'s server and prints the table on stdout.
/// Returns whether every scenario ran.
pub async fn run(args: Args, setup: Setup) -> anyhow::Result<bool> {
    let url = setup.url.clone();
    let nats = ctx::nats_options(&args)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let space: SpaceId = format!("bench{stamp}").parse()?;
    let jetstream = JetStreamConfig {
        replicas: usize::from(args.replicas),
        ..JetStreamConfig::default()
    };
    // Opened as the SDK opens one, listening to the connection's events: a server that
    // refuses to create the stream reports it out of band, and a log over a bare client
    // would wait out the request's timeout instead of naming the refused subject.
    let log = Arc::new(ctx::js_log(&nats, &url, &jetstream).await?);
    let main = log.client();
    log.ensure_stream(&space).await.with_context(|| {
        format!(
            "creating the space's stream on {}",
            blackboard::log::redact_url(&url)
        )
    })?;
    let mut sizes = if args.quick { QUICK } else { FULL };
    sizes.keys = args.keys as usize;
    if let Some(n) = args.history {
        sizes.history = n as usize;
        sizes.catch_up = n as usize;
    }
    // The size of one live event, for the raw baselines.
    let sample = build_history(&space, &"propagation".parse()?, 1, 1)?;
    let mut ctx = Ctx {
        url: url.clone(),
        nats,
        jetstream,
        setup: setup.clone(),
        child_flags: ctx::child_flags(&args),
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
        snapshots: match args.snapshots {
            Snapshots::Manual => blackboard::replica::SnapshotPolicy::manual(),
            Snapshots::Sdk => blackboard::replica::SnapshotPolicy::default(),
        },
    };
    let only = |n: u8| args.only.is_empty() || args.only.contains(&n);
    // What the server made of the space's stream, not what was asked for.
    let replicas = jetstream::new(ctx.main.clone())
        .get_stream(subject::stream_name(&ctx.space))
        .await
        .context("the space's stream")?
        .cached_info()
        .config
        .num_replicas;
    eprintln!(
        "scenarios ({}) on {}; the space's stream has {replicas} replicas; stores under {}; \
         events of {} B",
        if ctx.quick { "quick" } else { "full" },
        blackboard::log::redact_url(&url),
        ctx.dir.path().display(),
        ctx.payload_len
    );
    let mut rows = Vec::new();
    let mut ok = true;
    let catch_up_ids: Vec<u8> = [4, 5, 8].into_iter().filter(|&n| only(n)).collect();
    let steps: [(u8, &str); 10] = [
        (1, "propagation"),
        (2, "write throughput"),
        (3, "writes awaiting acks"),
        (6, "fan-out"),
        (7, "NATS KV"),
        (9, "embedded log"),
        (10, "apply cost against history"),
        (11, "persistence overhead"),
        (12, "recovery after a server restart"),
        // Last: its 100k-event stream and stores keep the disk busy for a while after.
        (4, "catch-up, cold start, memory"),
    ];
    for (n, name) in steps {
        if n == 4 {
            if catch_up_ids.is_empty() {
                continue;
            }
        } else if !only(n) {
            continue;
        }
        eprintln!("==> scenario {n}: {name}");
        let started = Instant::now();
        let result = match n {
            1 => propagation::s1_propagation(&mut ctx).await,
            2 => throughput::s2_throughput(&mut ctx).await,
            3 => throughput::s3_awaited(&mut ctx).await,
            4 => catch_up::s4_5_8_catch_up(&mut ctx, &catch_up_ids).await,
            6 => fanout::s6_fanout(&mut ctx).await,
            7 => propagation::s7_kv(&mut ctx).await,
            9 => embedded::s9_embedded(&mut ctx).await,
            10 => apply_cost::s10_apply_cost(&mut ctx).await,
            11 => throughput::s11_persistence(&mut ctx).await,
            _ => recovery::s12_recovery(&mut ctx).await,
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
    } else if !setup.own_server {
        // Leave the server as we found it.
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
