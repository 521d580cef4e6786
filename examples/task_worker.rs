//! A worker agent that watches `/tasks/*/status` and reacts, beside a writer agent.
//!
//! The writer posts tasks with status "open". The worker wakes on every status change,
//! claims open tasks ("working"), does the work, and marks them "done". The writer watches
//! the same paths and stops once every task is done.
//!
//! Run with `cargo run -p blackboard-examples --example task_worker`; pass a NATS URL
//! (`-- nats://127.0.0.1:4222`) to run the two agents over JetStream instead.

use blackboard_client::{Board, Options, PatchOp};
use futures::StreamExt;
use serde_json::json;

const TASKS: usize = 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let dir = tempfile::tempdir()?;
    let (writer, worker): (Board, Board) = match std::env::args().nth(1) {
        Some(url) => (
            Options::new("writer")?
                .store(dir.path().join("writer"))
                .connect(&url)
                .await?,
            Options::new("worker")?
                .store(dir.path().join("worker"))
                .connect(&url)
                .await?,
        ),
        None => {
            let writer = Options::new("writer")?.store(dir.path()).embedded().await?;
            let worker = writer.as_agent("worker")?;
            (writer, worker)
        }
    };

    // The worker: wake on status changes, react to "open".
    let jobs = worker.doc("team", "jobs")?;
    let mut statuses = jobs.watch("/tasks/*/status")?;
    let worker_task = tokio::spawn(async move {
        let mut done = 0;
        while let Some(event) = statuses.next().await {
            let event = event?;
            for patch in &event.patches {
                let PatchOp::Put { value } = &patch.op else {
                    continue;
                };
                if value != "open" {
                    continue;
                }
                // patch.path is /tasks/<id>/status; claim the task, do it, finish it.
                let path = patch.path.to_string();
                let task = path.trim_end_matches("/status").to_owned();
                println!(
                    "worker: {} from {} says {value}; claiming it",
                    task, event.agent
                );
                jobs.put(&path, json!("working")).await?;
                let title: String = jobs.get_as(&format!("{task}/title"))?.unwrap_or_default();
                jobs.put(&format!("{task}/result"), json!(title.to_uppercase()))
                    .await?;
                jobs.put(&path, json!("done")).await?;
                done += 1;
                if done == TASKS {
                    jobs.flush().await?;
                    return anyhow::Ok(());
                }
            }
        }
        anyhow::Ok(())
    });

    // The writer: post tasks, then wait until every one is done.
    let plan = writer.doc("team", "jobs")?;
    let mut progress = plan.watch("/tasks/*/status")?;
    for i in 0..TASKS {
        plan.put(
            &format!("/tasks/{i}"),
            json!({"title": format!("task number {i}"), "status": "open"}),
        )
        .await?;
    }
    let mut finished = 0;
    while finished < TASKS {
        let event = progress.next().await.expect("the watch runs")?;
        for patch in &event.patches {
            if patch.op
                == (PatchOp::Put {
                    value: json!("done"),
                })
            {
                finished += 1;
                println!("writer: {} is done ({}/{TASKS})", patch.path, finished);
            }
        }
    }
    worker_task.await??;
    println!("{}", serde_json::to_string_pretty(&plan.get("/tasks")?)?);
    Ok(())
}
