//! `Durability::Log`: a write returns once the log has acknowledged it, with nothing written
//! to local disk on the way; the change is stored locally when it comes back from the log.

use std::path::Path;

use async_nats::jetstream;
use blackboard_client::{Board, Durability, Options};
use blackboard_tests::{temp_dir, NatsServer};
use serde_json::json;

use crate::{caught_up_reader, within};

async fn log_durable_board(server: &NatsServer, agent: &str, dir: &Path) -> Board {
    Options::new(agent)
        .unwrap()
        .store(dir)
        .durability(Durability::Log)
        .connect(&server.url())
        .await
        .unwrap()
}

/// A log-durable board that wrote `/before` = 1, and its server, stopped.
struct Stopped {
    server: NatsServer,
    dir: tempfile::TempDir,
    board: Board,
    doc: blackboard_client::Doc,
}

async fn wrote_then_stopped() -> Stopped {
    blackboard_tests::init_tracing();
    let mut server = NatsServer::start().await.unwrap();
    let dir = temp_dir();
    let board = log_durable_board(&server, "bulk", dir.path()).await;
    let doc = board.doc("team", "facts").unwrap();
    doc.put("/before", json!(1)).await.unwrap();
    server.stop().await;
    Stopped {
        server,
        dir,
        board,
        doc,
    }
}

/// The number of messages on space `space`'s stream, read from the server itself.
async fn on_stream(server: &NatsServer, space: &str) -> u64 {
    let js = jetstream::new(server.connect().await.unwrap());
    let mut stream = js.get_stream(format!("BB_{space}")).await.unwrap();
    stream.info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_log_durability_a_write_that_returned_is_on_the_stream_and_stored_locally_once_back()
{
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let dir = temp_dir();
    let board = log_durable_board(&server, "bulk", dir.path()).await;
    let doc = board.doc("team", "facts").unwrap();
    // Concurrent writers share the publish round trips.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let doc = doc.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    doc.put(&format!("/w{w}-{i}"), json!(i)).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        within("the writers", w).await.unwrap();
    }
    // Every write returned, so every one is on the stream, and none waits anywhere.
    assert_eq!(on_stream(&server, "team").await, 80);
    assert_eq!(doc.pending(), 0);
    assert_eq!(doc.stats().published, 80);

    // Once back from the log, the changes are in the local store: a replica opened on it
    // with no server at all has every one.
    within("the writes to come back", doc.sync()).await.unwrap();
    board.close().await.unwrap();
    drop((doc, server));
    let offline = Options::new("bulk")
        .unwrap()
        .store(dir.path())
        .embedded()
        .await
        .unwrap();
    let doc = offline.doc("team", "facts").unwrap();
    assert_eq!(doc.get("/w7-9").unwrap(), Some(json!(9)));
    assert_eq!(doc.get("/w0-0").unwrap(), Some(json!(0)));
    assert_eq!(doc.replica().to_json().as_object().unwrap().len(), 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_durable_write_waits_out_a_downed_server_and_close_saves_it_for_the_next_opening() {
    let Stopped {
        mut server,
        dir,
        board,
        doc,
    } = wrote_then_stopped().await;
    let writing = {
        let doc = doc.clone();
        tokio::spawn(async move { doc.put("/during", json!(2)).await })
    };
    // The change is in the document (and seen there) while its write waits for the log.
    within("the change in the document", async {
        doc.replica()
            .wait_until(|core| {
                core.get(&"/during".parse().unwrap())
                    .ok()
                    .flatten()
                    .is_some()
            })
            .await
    })
    .await
    .unwrap();
    assert!(!writing.is_finished(), "the write waits for the log");
    assert_eq!(doc.pending(), 1);
    // A write refused midway (too large: the change was made, then taken back by reloading
    // the document from disk) leaves the waiting change, which is not on disk, in view.
    let huge = "x".repeat(blackboard::schemas::MAX_ENVELOPE_BYTES);
    let err = doc.put("/huge", json!(huge)).await.unwrap_err();
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    assert_eq!(doc.get("/during").unwrap(), Some(json!(2)));
    assert_eq!(doc.get("/huge").unwrap(), None);

    // Closing moves it to the outbox on disk; the waiting write says so.
    board.close().await.unwrap();
    let err = within("the waiting write", writing)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "saved in the local outbox and is published when the replica is opened again"
        ),
        "{err}"
    );

    // The next opening publishes it.
    drop(doc);
    server.restart().await.unwrap();
    let board = log_durable_board(&server, "bulk", dir.path()).await;
    let doc = board.doc("team", "facts").unwrap();
    assert_eq!(doc.pending(), 1);
    within("the outbox to drain", doc.flush()).await.unwrap();
    assert_eq!(on_stream(&server, "team").await, 2);
    let reader_dir = temp_dir();
    let (_reader, seen) = caught_up_reader(&server, reader_dir.path(), "team", "facts").await;
    assert_eq!(seen.get("/during").unwrap(), Some(json!(2)));
    assert_eq!(seen.get("/before").unwrap(), Some(json!(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_durable_write_its_caller_gave_up_on_is_still_published_once_the_server_is_back() {
    let Stopped {
        mut server,
        dir: _dir,
        board: _board,
        doc,
    } = wrote_then_stopped().await;
    // The caller stops waiting: the change stays queued in memory, and the outbox keeps
    // trying to publish it.
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        doc.put("/abandoned", json!(2)),
    )
    .await;
    assert!(gave_up.is_err(), "the write waits while the server is down");
    assert_eq!(doc.pending(), 1);
    assert_eq!(doc.get("/abandoned").unwrap(), Some(json!(2)));

    server.restart().await.unwrap();
    within("the outbox to drain after the restart", doc.flush())
        .await
        .unwrap();
    assert_eq!(doc.pending(), 0);
    assert_eq!(on_stream(&server, "team").await, 2);
}
