//! `Options::coalesce_writes`: concurrent writes through one board share changes, and every
//! write is still answered, on the log, seen by other agents and signed.

use blackboard::schemas::nkeys::KeyPair;
use blackboard_client::{Durability, HistoryFilter, Options};
use blackboard_tests::{temp_dir, NatsServer};
use futures::StreamExt;
use serde_json::json;

use crate::{caught_up_reader, nats_board, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_writes_reach_another_agent_in_fewer_signed_events_than_writes() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let (writer_dir, reader_dir) = (temp_dir(), temp_dir());
    let key = KeyPair::new_user();
    let public = key.public_key();
    let writer = Options::new("loader")
        .unwrap()
        .store(writer_dir.path())
        .key(key)
        .unwrap()
        .durability(Durability::Log)
        .coalesce_writes(true)
        .connect(&server.url())
        .await
        .unwrap();
    let reader = nats_board(&server, "reader", reader_dir.path())
        .await
        .unwrap();
    let seen = reader.doc("team", "facts").unwrap();
    let mut watch = seen.watch("/w7/**").unwrap();
    let doc = writer.doc("team", "facts").unwrap();
    let (writers, each) = (64, 20);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let doc = doc.clone();
            tokio::spawn(async move {
                for i in 0..each {
                    let hash = doc.put(&format!("/w{w}/k{i}"), json!(i)).await.unwrap();
                    assert!(
                        hash.is_some(),
                        "a write that changed something names its change"
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        within("the writers", t).await.unwrap();
    }
    // Each write returned acknowledged (Durability::Log); rounds of them shared changes.
    assert_eq!(doc.pending(), 0);
    let published = doc.stats().published;
    assert!(
        published < (writers * each) as u64,
        "{published} events for {} writes: none were coalesced",
        writers * each
    );
    // The other agent sees every value, and a watcher of one writer's paths is told of each
    // of its writes.
    let expected: serde_json::Map<_, _> = (0..writers)
        .map(|w| {
            let keys: serde_json::Map<_, _> =
                (0..each).map(|i| (format!("k{i}"), json!(i))).collect();
            (format!("w{w}"), json!(keys))
        })
        .collect();
    let expected = json!(expected);
    within("the reader to see every write", async {
        seen.wait_until(|d| *d == expected).await
    })
    .await
    .unwrap();
    let mut told = std::collections::BTreeSet::new();
    while told.len() < each {
        let event = within("the watcher's events", watch.next())
            .await
            .unwrap()
            .unwrap();
        for patch in &event.patches {
            let path = patch.path.to_string();
            // The watch's own paths only (and the map /w7 itself, when it is made).
            assert!(path.starts_with("/w7"), "{path}");
            if path.starts_with("/w7/k") {
                told.insert(path);
            }
        }
    }
    // Every event the reader has from the writer verifies against the writer's key.
    let history = seen.history(&HistoryFilter::default()).unwrap();
    assert!(!history.is_empty());
    for event in &history {
        assert_eq!(
            event.record.signature,
            blackboard::codec::Signature::Verified(public.clone()),
            "{event:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_writes_waiting_out_a_downed_server_each_get_their_answer_at_close_and_are_published_later(
) {
    blackboard_tests::init_tracing();
    let mut server = NatsServer::start().await.unwrap();
    let dir = temp_dir();
    let options = Options::new("loader")
        .unwrap()
        .store(dir.path())
        .durability(Durability::Log)
        .coalesce_writes(true);
    let board = options.clone().connect(&server.url()).await.unwrap();
    let doc = board.doc("team", "facts").unwrap();
    doc.put("/before", json!(0)).await.unwrap();
    server.stop().await;
    // Eight writers whose rounds wait for a log that is gone.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let doc = doc.clone();
            tokio::spawn(async move { doc.put(&format!("/w{w}"), json!(w)).await })
        })
        .collect();
    within("the writes in the document", async {
        doc.replica()
            .wait_until(|core| core.to_json().as_object().is_some_and(|m| m.len() == 9))
            .await
    })
    .await
    .unwrap();
    assert!(
        writers.iter().all(|w| !w.is_finished()),
        "the writes wait for the log"
    );
    // Closing saves them in the outbox; every writer is told so, each with its own error.
    board.close().await.unwrap();
    for w in writers {
        let err = within("a waiting write", w).await.unwrap().unwrap_err();
        assert!(
            err.to_string().contains("saved in the local outbox"),
            "{err}"
        );
    }
    drop(doc);
    // The next opening publishes them.
    server.restart().await.unwrap();
    let board = options.connect(&server.url()).await.unwrap();
    let doc = board.doc("team", "facts").unwrap();
    within("the outbox to drain", doc.flush()).await.unwrap();
    let reader_dir = temp_dir();
    let (_reader, seen) = caught_up_reader(&server, reader_dir.path(), "team", "facts").await;
    for w in 0..8 {
        assert_eq!(seen.get(&format!("/w{w}")).unwrap(), Some(json!(w)));
    }
}
