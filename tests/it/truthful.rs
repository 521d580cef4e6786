//! Truthful answers across outages (issue 14 §2, §3): an agent starts while the server is
//! down and keeps working, and waiting for the log outlasts transient failures instead of
//! reporting the first one.

use std::time::Duration;

use blackboard_tests::{temp_dir, NatsServer};
use serde_json::json;

use crate::{nats_board, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_during_an_outage_starts_writes_and_drains_when_the_server_is_back() {
    let mut server = NatsServer::start().await.unwrap();
    let dir = temp_dir();
    {
        let board = nats_board(&server, "agent", dir.path()).await.unwrap();
        let doc = board.doc("team", "plan").unwrap();
        doc.put("/before", json!(1)).await.unwrap();
        doc.flush().await.unwrap();
        server.stop().await;
        // Queued in the store, not on the log: the agent then stops.
        doc.put("/queued", json!(2)).await.unwrap();
        board.close().await.unwrap();
    }

    // The agent starts again while the server is still down: it opens, says it is not
    // connected, reads its own state and writes.
    let board = nats_board(&server, "agent", dir.path()).await.unwrap();
    assert!(!board.is_connected());
    let doc = board.doc("team", "plan").unwrap();
    assert_eq!(doc.get("/queued").unwrap(), Some(json!(2)));
    doc.put("/offline", json!(3)).await.unwrap();
    assert_eq!(doc.pending(), 2);

    server.restart().await.unwrap();
    within("the board to connect", board.connected()).await;
    assert!(board.is_connected());
    within("the queued writes to drain", doc.flush())
        .await
        .unwrap();
    assert_eq!(doc.pending(), 0);

    // Another agent reads both from the log.
    let other_dir = temp_dir();
    let other = nats_board(&server, "other", other_dir.path())
        .await
        .unwrap();
    let theirs = other.doc("team", "plan").unwrap();
    within("the other agent to catch up", theirs.replica().sync())
        .await
        .unwrap();
    assert_eq!(
        theirs.get("/").unwrap(),
        Some(json!({"before": 1, "queued": 2, "offline": 3}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_keeps_asking_through_a_server_restart_instead_of_failing_on_the_first_error() {
    let mut server = NatsServer::start().await.unwrap();
    let dir = temp_dir();
    let board = nats_board(&server, "agent", dir.path()).await.unwrap();
    let doc = board.doc("team", "plan").unwrap();
    doc.put("/k", json!(1)).await.unwrap();
    doc.flush().await.unwrap();

    server.stop().await;
    // Started while the server is down: its first attempts fail (no connection); it must
    // keep asking until the server is back, within the caller's bound.
    let replica = doc.replica().clone();
    let sync =
        tokio::spawn(
            async move { tokio::time::timeout(Duration::from_secs(30), replica.sync()).await },
        );
    server.restart().await.unwrap();
    let synced = within("sync to return", sync).await.unwrap();
    let last = synced
        .expect("sync answered within 30 s")
        .expect("sync retried transient errors instead of returning the first");
    assert_eq!(last, doc.replica().position().seq);
}

#[tokio::test]
async fn writes_left_unpublished_are_published_when_the_board_opens_without_their_document() {
    let mut server = NatsServer::start().await.unwrap();
    let dir = temp_dir();
    let heads = {
        let board = nats_board(&server, "agent", dir.path()).await.unwrap();
        let (plan, notes) = (
            board.doc("team", "plan").unwrap(),
            board.doc("team", "notes").unwrap(),
        );
        server.stop().await;
        // Durable in the store, not on the log; then the agent stops.
        plan.put("/queued", json!(1)).await.unwrap();
        notes.put("/queued", json!(2)).await.unwrap();
        assert_eq!((plan.pending(), notes.pending()), (1, 1));
        let heads = (plan.heads(), notes.heads());
        board.close().await.unwrap();
        heads
    };
    server.restart().await.unwrap();

    // The agent starts again and opens no document at all.
    let board = nats_board(&server, "agent", dir.path()).await.unwrap();

    // Another agent sees both writes on the log.
    let other_dir = temp_dir();
    let other = nats_board(&server, "other", other_dir.path())
        .await
        .unwrap();
    let (plan, notes) = (
        other.doc("team", "plan").unwrap(),
        other.doc("team", "notes").unwrap(),
    );
    within(
        "plan's queued write to reach the log",
        plan.wait_for(&heads.0),
    )
    .await
    .unwrap();
    within(
        "notes' queued write to reach the log",
        notes.wait_for(&heads.1),
    )
    .await
    .unwrap();
    assert_eq!(plan.get("/queued").unwrap(), Some(json!(1)));
    assert_eq!(notes.get("/queued").unwrap(), Some(json!(2)));
    board.close().await.unwrap();
}
