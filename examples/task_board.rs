//! A task board: tasks are added to a shared document, several workers watch it, claim a
//! task, do it, write the result and status into the document, and release the claim.
//!
//! Run with `cargo run -p blackboard-examples --example task_board -- --workers 4 --tasks 20`
//! (embedded, one process), or add `--nats nats://127.0.0.1:4222` to give every worker its
//! own connection to a JetStream server. It prints who did what and exits non-zero if any
//! task was not done exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use blackboard_client::{Board, Options};
use blackboard_examples::tasks::{self, WorkerOptions};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Workers share a task board through claims with leases")]
struct Args {
    /// How many worker agents.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// How many tasks.
    #[arg(long, default_value_t = 20)]
    tasks: usize,
    /// A NATS URL; without it everything runs on the embedded log.
    #[arg(long)]
    nats: Option<String>,
    /// Milliseconds of work per task.
    #[arg(long, default_value_t = 50)]
    work_ms: u64,
    /// The lease on a task, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    ttl_ms: u64,
    /// The space (use a fresh one per run against a long-lived server).
    #[arg(long, default_value = "taskboard")]
    space: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let args = Args::parse();
    anyhow::ensure!(
        args.workers > 0 && args.tasks > 0,
        "need at least one worker and one task"
    );
    let dir = tempfile::tempdir()?;
    let open = |agent: String| {
        let (nats, path) = (args.nats.clone(), dir.path().join(&agent));
        async move {
            let options = Options::new(&agent)?.store(path);
            anyhow::Ok(match nats {
                Some(url) => options.connect(&url).await?,
                None => options.embedded().await?,
            })
        }
    };
    let planner: Board = open("planner".to_owned()).await?;
    tasks::add_tasks(&planner, &args.space, "board", args.tasks).await?;
    println!(
        "{} tasks on {}/board, {} workers",
        args.tasks, args.space, args.workers
    );

    let mut workers = Vec::new();
    for i in 0..args.workers {
        let name = format!("worker-{i}");
        let board = match args.nats {
            Some(_) => open(name.clone()).await?,
            None => planner.as_agent(&name)?,
        };
        let mut options = WorkerOptions::new(&args.space, "board");
        options.work = Duration::from_millis(args.work_ms);
        options.ttl = Duration::from_millis(args.ttl_ms);
        workers.push((name, tokio::spawn(tasks::work(board, options))));
    }
    let mut did: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, handle) in workers {
        did.insert(name, handle.await??);
    }

    let doc = planner.doc(&args.space, "board")?;
    doc.wait_until(|json| {
        json["tasks"]
            .as_object()
            .is_some_and(|t| t.values().all(|t| t["status"] == "done"))
    })
    .await?;
    let board = tasks::tasks(&doc)?;
    for (worker, ids) in &did {
        println!("{worker} did {} tasks: {}", ids.len(), ids.join(" "));
    }
    let mut by_number: Vec<_> = board.iter().collect();
    by_number.sort_by_key(|(id, _)| id.parse::<usize>().unwrap_or(usize::MAX));
    for (id, t) in by_number {
        println!(
            "task {id:>3} {:<12} = {:<6} by {}",
            t.title,
            t.result.as_deref().unwrap_or("-"),
            t.by.as_deref().unwrap_or("-")
        );
    }
    match tasks::verify(&board, args.tasks) {
        Ok(()) => {
            println!("verified: {} tasks, each done exactly once", args.tasks);
            Ok(())
        }
        Err(e) => {
            eprintln!("NOT VERIFIED:\n{e}");
            std::process::exit(1);
        }
    }
}
