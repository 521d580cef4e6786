//! Blackboard's scenarios, each beside a baseline measured in the same run (issue 7): the
//! code of `blackboard bench` (`cli/src/bench/`), on a server of its own.
//!
//! ```text
//! cargo run --release -p blackboard-bench --bin scenarios -- [--quick] [--only 1,4,8] [--history N]
//!     [--cluster] [--nats URL [--replicas 3] [--keep]]
//! ```
//!
//! Unless `--nats URL` names a server, starts its own `nats-server -js` through the test
//! harness's launcher (`blackboard_tests::NatsServer`: a free loopback port, a temporary
//! store, here with the server's default sync settings: JetStream syncs to disk every two
//! minutes), or with `--cluster` a three-server cluster whose streams are kept by all three
//! (R3). Prints one markdown table on stdout: scenario, this project's figure, the baseline's
//! figure from the same run, their ratio, the target and whether it was met. Progress and
//! the details behind each row go to stderr. `--quick` shrinks every scenario (CI runs it as
//! a smoke test); the figures it prints are not meant to be compared.
//!
//! Unlike `blackboard bench`, this binary counts heap bytes with a global allocator wrapping
//! the system one (`peak_alloc`), for scenario 8 (memory): bytes live on the heap, not RSS.
//!
//! The process exits non-zero if any scenario failed; its row then says why.

use std::sync::Arc;

use blackboard_cli::bench::{self, Setup};
use blackboard_tests::{NatsCluster, NatsServer, Options as ServerOptions};
use clap::Parser;
use peak_alloc::PeakAlloc;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

/// Blackboard's benchmark scenarios, each beside a baseline measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "scenarios")]
struct Scenarios {
    /// Start a three-server cluster and keep every stream on all three (R3), instead of
    /// one server.
    #[arg(long, conflicts_with = "nats")]
    cluster: bool,
    /// Print where scenario 1's time goes: each stage of a change's way from `put` to the
    /// other replica's watch, as the median time since the put began (to stderr).
    #[arg(long)]
    stages: bool,
    #[command(flatten)]
    bench: bench::Args,
}

async fn run(mut args: Scenarios) -> anyhow::Result<bool> {
    let child_prefix = Vec::new();
    let heap = Some((|| HEAP.current_usage()) as fn() -> usize);
    if let Some(child) = args.bench.watch_child.clone() {
        bench::watch_child(&args.bench, child).await?;
        return Ok(true);
    }
    // The test harness's launcher, with the server's default sync settings (JetStream
    // syncs to disk every two minutes, as deployed; the tests' servers sync on every write
    // instead, for their crash tests).
    // The servers the run started, kept (and stopped when dropped) until it ends.
    let (mut server, mut cluster) = (None, None);
    let mut restart: Option<bench::Restart> = None;
    let url = match (&args.bench.server.nats, args.cluster) {
        (Some(url), _) => url.clone(),
        (None, true) => {
            let started = NatsCluster::start_with(3, ServerOptions::default_sync()).await?;
            args.bench.replicas = 3;
            cluster.insert(started).url(0)
        }
        (None, false) => {
            let started = NatsServer::start_with(ServerOptions::default_sync()).await?;
            let url = started.url();
            let shared = Arc::new(tokio::sync::Mutex::new(started));
            let held = shared.clone();
            restart = Some(Arc::new(move || {
                let server = held.clone();
                Box::pin(async move { server.lock().await.restart().await })
            }));
            server = Some(shared);
            url
        }
    };
    let own_server = args.bench.server.nats.is_none();
    let ok = bench::run(
        args.bench,
        Setup {
            url,
            own_server,
            heap,
            restart,
            child_prefix,
        },
    )
    .await?;
    drop((server, cluster));
    Ok(ok)
}

fn main() -> std::process::ExitCode {
    let args = Scenarios::parse();
    {
        use tracing_subscriber::filter::{LevelFilter, Targets};
        use tracing_subscriber::prelude::*;
        let logs = std::env::var_os("RUST_LOG").is_some().then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::EnvFilter::from_default_env())
        });
        let stages = args.stages.then(|| {
            bench::stages::layer()
                .with_filter(Targets::new().with_target("blackboard::stage", LevelFilter::TRACE))
        });
        tracing_subscriber::registry()
            .with(logs)
            .with(stages)
            .init();
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
