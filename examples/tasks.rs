//! A task board: tasks in a shared document, workers that claim them, do them, write the
//! result into the document and release them.
//!
//! The document holds `/tasks/<id>`: `{"title", "status": "open" | "working" | "done",
//! "result", "by", "completions": [{"worker", "token"}]}`. Every completion appends to
//! `completions` (a list, so concurrent appends by two workers would both survive), which is
//! how [`verify`] proves that nothing was done twice.
//!
//! A worker claims `task-<id>` before touching a task. Its lease is renewed while it works
//! and checked once more before it writes the result. After writing it waits for the log to
//! acknowledge the write, then releases the claim with a note naming its document heads; the
//! next holder of the claim waits for those heads before reading the task's status, so it
//! never redoes a task because its replica was behind. A worker that dies mid-task stops
//! renewing; its lease expires and another worker (woken by the claim watch's `Expired`)
//! takes the task over.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _};
use blackboard_client::automerge::ChangeHash;
use blackboard_client::{Board, Claim, ClaimError, ClaimEventKind, Claims, Doc};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

/// How a worker works.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The space and document of the board.
    pub space: String,
    /// The document holding `/tasks`.
    pub doc: String,
    /// The lease on a task; renewed every third of it while working.
    pub ttl: Duration,
    /// How long one task takes.
    pub work: Duration,
    /// Told `(task id, fencing token)` each time this worker claims a task.
    pub claimed: Option<mpsc::UnboundedSender<(String, u64)>>,
}

impl WorkerOptions {
    /// Options for the board `space`/`doc`: 2 s leases, 20 ms of work per task.
    pub fn new(space: &str, doc: &str) -> Self {
        Self {
            space: space.to_owned(),
            doc: doc.to_owned(),
            ttl: Duration::from_secs(2),
            work: Duration::from_millis(20),
            claimed: None,
        }
    }
}

/// One task as stored in the document.
#[derive(Debug, Clone, Deserialize)]
pub struct Task {
    /// What to do.
    pub title: String,
    /// `open`, `working` or `done`.
    pub status: String,
    /// The result, once done.
    #[serde(default)]
    pub result: Option<String>,
    /// Who did it, once done.
    #[serde(default)]
    pub by: Option<String>,
    /// One entry per completion: exactly one when all is well.
    #[serde(default)]
    pub completions: Vec<Completion>,
}

/// One completion of a task.
#[derive(Debug, Clone, Deserialize)]
pub struct Completion {
    /// The worker.
    pub worker: String,
    /// Its claim's fencing token.
    pub token: u64,
}

/// Adds tasks `0..count` (all open) to the board's document in one change, and waits until
/// the log has them.
pub async fn add_tasks(board: &Board, space: &str, doc: &str, count: usize) -> anyhow::Result<()> {
    let doc = board.doc(space, doc)?;
    let tasks: serde_json::Map<String, serde_json::Value> = (0..count)
        .map(|i| {
            (
                i.to_string(),
                json!({"title": format!("square {i}"), "status": "open", "completions": []}),
            )
        })
        .collect();
    doc.put("/tasks", tasks.into()).await?;
    doc.flush().await?;
    Ok(())
}

/// The tasks as the document holds them, by id.
pub fn tasks(doc: &Doc) -> anyhow::Result<BTreeMap<String, Task>> {
    Ok(doc.get_as("/tasks")?.unwrap_or_default())
}

/// Runs a worker until every task of the document is done; returns the ids of the tasks it
/// did.
pub async fn work(board: Board, options: WorkerOptions) -> anyhow::Result<Vec<String>> {
    let doc = board.doc(&options.space, &options.doc)?;
    let claims = board.claims(&options.space).await?;
    let mut changes = doc.watch("/tasks/**")?;
    let mut claim_events = claims.watch().await?;
    let mut done = Vec::new();
    loop {
        let tasks = tasks(&doc)?;
        if !tasks.is_empty() && tasks.values().all(|t| t.status == "done") {
            return Ok(done);
        }
        let mut did = false;
        for (id, task) in tasks.iter().filter(|(_, t)| t.status != "done") {
            match claims.claim(&format!("task-{id}"), options.ttl).await {
                Ok(claim) => {
                    if let Some(tx) = &options.claimed {
                        let _ = tx.send((id.clone(), claim.token));
                    }
                    if do_task(&doc, &claims, claim, id, task, &options).await? {
                        done.push(id.clone());
                    }
                    did = true;
                    break;
                }
                Err(ClaimError::Held { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if did {
            continue;
        }
        // Nothing to take: sleep until a task changes or a claim is freed.
        tokio::select! {
            e = changes.next() => { e.context("the document watch ended")??; }
            e = claim_events.next() => {
                let e = e.context("the claim watch ended")??;
                if !matches!(e.kind, ClaimEventKind::Released | ClaimEventKind::Expired) {
                    continue;
                }
            }
        }
    }
}

/// Does one claimed task; returns whether this worker completed it (false if it turned out
/// to be done already, or the lease lapsed before the result was written).
async fn do_task(
    doc: &Doc,
    claims: &Claims,
    mut claim: Claim,
    id: &str,
    task: &Task,
    options: &WorkerOptions,
) -> anyhow::Result<bool> {
    let me = claims.agent().to_string();
    // The previous holder's result may not have reached this replica yet: wait for it.
    if let Some(note) = &claim.note {
        let heads = note
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::parse::<ChangeHash>)
            .collect::<Result<Vec<_>, _>>()
            .context("a release note that is not a list of heads")?;
        doc.wait_for(&heads).await?;
    }
    let status: Option<String> = doc.get_as(&format!("/tasks/{id}/status"))?;
    if status.as_deref() == Some("done") {
        let note = heads_note(doc);
        claims.release_with_note(claim, &note).await?;
        return Ok(false);
    }
    doc.put(&format!("/tasks/{id}/status"), json!("working"))
        .await?;
    // The work, renewing the lease every third of its ttl.
    let mut left = options.work;
    while !left.is_zero() {
        let step = left.min(options.ttl / 3);
        tokio::time::sleep(step).await;
        left -= step;
        claim = match claims.renew(&claim).await {
            Ok(c) => c,
            Err(e @ ClaimError::Lapsed { .. }) => {
                tracing::warn!("{me}: {e}; abandoning task {id}");
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
    }
    // Still ours? (Never write a result under a lapsed lease.)
    claim = match claims.renew(&claim).await {
        Ok(c) => c,
        Err(e @ ClaimError::Lapsed { .. }) => {
            tracing::warn!("{me}: {e}; abandoning task {id}");
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    let n: u64 = task
        .title
        .trim_start_matches("square ")
        .parse()
        .unwrap_or(0);
    let base = format!("/tasks/{id}");
    doc.put(
        &format!("{base}/completions/-"),
        json!({"worker": me, "token": claim.token}),
    )
    .await?;
    doc.put(&format!("{base}/result"), json!((n * n).to_string()))
        .await?;
    doc.put(&format!("{base}/by"), json!(me)).await?;
    doc.put(&format!("{base}/status"), json!("done")).await?;
    doc.flush().await?;
    let note = heads_note(doc);
    claims.release_with_note(claim, &note).await?;
    Ok(true)
}

fn heads_note(doc: &Doc) -> String {
    doc.heads()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Checks that every one of `expected` tasks is done exactly once; the error lists every
/// task that is not.
pub fn verify(tasks: &BTreeMap<String, Task>, expected: usize) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    if tasks.len() != expected {
        problems.push(format!(
            "{} tasks on the board, {expected} added",
            tasks.len()
        ));
    }
    for (id, t) in tasks {
        if t.status != "done" {
            problems.push(format!("task {id} is {}", t.status));
        }
        if t.completions.len() != 1 {
            let who: Vec<String> = t
                .completions
                .iter()
                .map(|c| format!("{} (token {})", c.worker, c.token))
                .collect();
            problems.push(format!(
                "task {id} was completed {} times: {}",
                t.completions.len(),
                who.join(", ")
            ));
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}
