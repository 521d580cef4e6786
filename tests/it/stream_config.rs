//! The stream is created when missing and verified when present.

use async_nats::jetstream::{self, stream};
use blackboard_tests::{temp_dir, NatsServer};
use serde_json::json;

use crate::{nats_board, within};

#[tokio::test]
async fn the_space_stream_is_created_with_file_storage_and_a_duplicate_window() {
    let server = NatsServer::start().await.unwrap();
    let dir = temp_dir();
    let board = nats_board(&server, "a", dir.path()).await.unwrap();
    let doc = board.doc("team", "plan").unwrap();
    doc.put("/k", json!(1)).await.unwrap();
    within("the ack", doc.flush()).await.unwrap();
    let js = jetstream::new(server.connect().await.unwrap());
    let info = js
        .get_stream("BB_team")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.subjects, ["bb.team.>"]);
    assert_eq!(info.config.storage, stream::StorageType::File);
    assert!(!info.config.duplicate_window.is_zero());
}

#[tokio::test]
async fn a_misconfigured_stream_makes_flush_fail_with_the_reason_and_keeps_the_change() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let js = jetstream::new(server.connect().await.unwrap());
    js.create_stream(stream::Config {
        name: "BB_team".into(),
        subjects: vec!["bb.team.>".into()],
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = temp_dir();
    let board = nats_board(&server, "a", dir.path()).await.unwrap();
    let doc = board.doc("team", "plan").unwrap();
    doc.put("/k", json!(1)).await.unwrap();
    let err = within("flush to report the refusal", doc.flush())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("memory storage"), "{err}");
    assert_eq!(doc.pending(), 1, "the change stays in the outbox");
    assert_eq!(doc.get("/k").unwrap(), Some(json!(1)));
}
