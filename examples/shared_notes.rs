//! Two agents writing one document at the same time, on the embedded log.
//!
//! Run with `cargo run -p blackboard-examples --example shared_notes`; pass a NATS URL
//! (`-- nats://127.0.0.1:4222`) to run the same story over JetStream.

use blackboard_client::automerge::{transaction::Transactable, ROOT};
use blackboard_client::{Board, Options};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
struct Task {
    title: String,
    status: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let dir = tempfile::tempdir()?;
    let url = std::env::args().nth(1);
    let (planner, reviewer): (Board, Board) = match &url {
        Some(url) => (
            Options::new("planner")?
                .store(dir.path().join("planner"))
                .connect(url)
                .await?,
            Options::new("reviewer")?
                .store(dir.path().join("reviewer"))
                .connect(url)
                .await?,
        ),
        None => {
            let planner = Options::new("planner")?
                .store(dir.path())
                .embedded()
                .await?;
            let reviewer = planner.as_agent("reviewer")?;
            (planner, reviewer)
        }
    };

    let plan = planner.doc("team", "plan")?;
    plan.put(
        "/tasks/1",
        json!({"title": "write the parser", "status": "open"}),
    )
    .await?;
    plan.splice_text("/notes", 0, 0, "Plan: ").await?;
    plan.flush().await?;

    // The reviewer opens the same document, waits for the planner's changes, and then both
    // write at once: the same status field, and the same text.
    let review = reviewer.doc("team", "plan")?;
    review.wait_for(&plan.heads()).await?;
    let (a, b) = tokio::join!(
        async {
            plan.change_with_message("planner starts the work", |tx| {
                tx.put(ROOT, "owner", "planner")
            })
            .await?;
            plan.put("/tasks/1/status", json!("in progress")).await?;
            plan.splice_text("/notes", 6, 0, "parse first. ").await
        },
        async {
            review.put("/tasks/1/status", json!("needs review")).await?;
            review.splice_text("/notes", 6, 0, "add tests. ").await
        }
    );
    a?;
    b?;
    plan.flush().await?;
    review.flush().await?;
    plan.wait_for(&review.heads()).await?;
    review.wait_for(&plan.heads()).await?;

    let task: Task = plan.get_as("/tasks/1")?.expect("task 1 exists");
    println!("task 1: {} ({})", task.title, task.status);
    println!("notes: {}", plan.get("/notes")?.unwrap_or_default());
    println!("planner sees:  {}", plan.to_json());
    println!("reviewer sees: {}", review.to_json());
    assert_eq!(plan.heads(), review.heads());
    println!("same heads on both: {:?}", plan.heads());
    Ok(())
}
