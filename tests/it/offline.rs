//! An agent keeps writing while the server is down; nothing it wrote is lost or duplicated.

use std::collections::BTreeSet;

use async_nats::jetstream::{self, consumer};
use blackboard::schemas::Envelope;
use blackboard_client::Edit;
use blackboard_tests::{temp_dir, NatsServer};
use futures::StreamExt;
use serde_json::json;

use crate::{nats_board, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_made_while_the_server_is_down_drain_after_restart_exactly_once() {
    blackboard_tests::init_tracing();
    let mut server = NatsServer::start().await.unwrap();
    let dir = temp_dir();
    let board = nats_board(&server, "field-agent", dir.path())
        .await
        .unwrap();
    let doc = board.doc("team", "log").unwrap();

    // Every change written: the writes and the containers they create (`/online`, `/offline`:
    // the container recipe makes each with a change of its own, published before the write).
    let mut written = BTreeSet::new();
    let put = |path: String, value| {
        let doc = doc.clone();
        async move {
            let w = doc
                .edit(None, &[Edit::put(path.parse().unwrap(), value)])
                .await
                .unwrap();
            w.created.into_iter().chain(w.hash)
        }
    };
    for i in 0..3 {
        written.extend(put(format!("/online/{i}"), json!(i)).await);
    }
    doc.flush().await.unwrap();
    assert_eq!(doc.pending(), 0);

    server.stop().await;
    for i in 0..20 {
        // Each write returns once it is on local disk, server or not.
        written.extend(put(format!("/offline/{i}"), json!(i)).await);
    }
    assert_eq!(
        doc.pending(),
        21,
        "offline writes (and the creation of /offline) wait in the outbox"
    );
    assert_eq!(doc.get("/offline/19").unwrap(), Some(json!(19)));

    server.restart().await.unwrap();
    within("the outbox to drain after the restart", doc.flush())
        .await
        .unwrap();
    assert_eq!(doc.pending(), 0);

    // Read the stream itself: every change is there, exactly once.
    let js = jetstream::new(server.connect().await.unwrap());
    let mut stream = js.get_stream("BB_team").await.unwrap();
    let count = stream.info().await.unwrap().state.messages;
    assert_eq!(count, written.len() as u64, "one stream message per change");
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: "bb.team.doc.log.ch".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap().take(count as usize);
    let mut on_stream = BTreeSet::new();
    while let Some(m) = within("a stream message", messages.next()).await {
        let env = Envelope::decode(&m.unwrap().payload).unwrap();
        assert_eq!(env.agent.as_str(), "field-agent");
        on_stream.insert(env.change_hash);
    }
    let written: BTreeSet<String> = written.iter().map(|h| h.to_string()).collect();
    assert_eq!(on_stream, written);

    // Another agent sees everything.
    let other_dir = temp_dir();
    let other = nats_board(&server, "reader", other_dir.path())
        .await
        .unwrap();
    let other_doc = other.doc("team", "log").unwrap();
    within("the reader to catch up", other_doc.wait_for(&doc.heads()))
        .await
        .unwrap();
    assert_eq!(other_doc.to_json(), doc.to_json());
}
