//! The task board example's worker loop on a real JetStream server, with a worker killed
//! mid-task.

use std::time::Duration;

use blackboard_examples::tasks::{self, WorkerOptions};
use blackboard_tests::{temp_dir, NatsServer};
use tokio::sync::mpsc;

use crate::{nats_board, within};

const TASKS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_board_with_a_worker_killed_mid_task_ends_with_every_task_done_exactly_once() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let dirs: Vec<_> = (0..5).map(|_| temp_dir()).collect();
    let planner = nats_board(&server, "planner", dirs[0].path())
        .await
        .unwrap();
    tasks::add_tasks(&planner, "work", "board", TASKS)
        .await
        .unwrap();

    let mut options = WorkerOptions::new("work", "board");
    options.ttl = Duration::from_secs(1);

    // The victim takes a task and works on it "forever", renewing, until it is killed.
    let (claimed_tx, mut claimed) = mpsc::unbounded_channel();
    let victim = nats_board(&server, "victim", dirs[1].path()).await.unwrap();
    let victim = tokio::spawn(tasks::work(
        victim,
        WorkerOptions {
            work: Duration::from_secs(600),
            claimed: Some(claimed_tx),
            ..options.clone()
        },
    ));
    let (victims_task, victims_token) = within("the victim's claim", claimed.recv()).await.unwrap();

    let mut workers = Vec::new();
    for (i, dir) in dirs[2..].iter().enumerate() {
        let board = nats_board(&server, &format!("worker-{i}"), dir.path())
            .await
            .unwrap();
        workers.push(tokio::spawn(tasks::work(board, options.clone())));
    }
    // Kill the victim while it holds its claim (mid-task: its work never ends).
    victim.abort();
    assert!(victim.await.unwrap_err().is_cancelled());

    let mut done = Vec::new();
    for w in workers {
        done.extend(within("the workers", w).await.unwrap().unwrap());
    }
    done.sort();
    let mut expected: Vec<String> = (0..TASKS).map(|i| i.to_string()).collect();
    expected.sort();
    assert_eq!(done, expected, "each task done once, by the live workers");

    let doc = planner.doc("work", "board").unwrap();
    within(
        "the planner to see every task done",
        doc.wait_until(|json| {
            json["tasks"]
                .as_object()
                .is_some_and(|t| t.values().all(|t| t["status"] == "done"))
        }),
    )
    .await
    .unwrap();
    let board = tasks::tasks(&doc).unwrap();
    tasks::verify(&board, TASKS).unwrap();
    let taken_over = &board[&victims_task];
    assert_ne!(taken_over.by.as_deref(), Some("victim"));
    assert!(
        taken_over.completions[0].token > victims_token,
        "the successor's token is above the killed worker's"
    );
}

#[tokio::test]
async fn the_task_board_runs_on_the_embedded_log_too() {
    let dir = temp_dir();
    let planner = blackboard_client::Options::new("planner")
        .unwrap()
        .store(dir.path())
        .embedded()
        .await
        .unwrap();
    tasks::add_tasks(&planner, "work", "board", 8)
        .await
        .unwrap();
    let workers: Vec<_> = (0..3)
        .map(|i| {
            let board = planner.as_agent(&format!("w{i}")).unwrap();
            tokio::spawn(tasks::work(board, WorkerOptions::new("work", "board")))
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += within("the workers", w).await.unwrap().unwrap().len();
    }
    assert_eq!(total, 8);
    let doc = planner.doc("work", "board").unwrap();
    tasks::verify(&tasks::tasks(&doc).unwrap(), 8).unwrap();
}
