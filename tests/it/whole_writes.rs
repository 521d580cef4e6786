//! A write that creates containers on its way (`put /tasks/7 {...}` into a fresh document) is
//! published as the container recipe's creations, then the change that fills them. Another
//! replica must never show the write half made (`/tasks/7` an empty map, its fields not yet
//! there): when what has arrived ends with a creation, its follower waits a moment for the
//! rest of the write and applies them together.

use std::sync::Arc;

use blackboard::codec::encode_event;
use blackboard::doc::{DocCore, Edit, PutMode};
use blackboard::log::{EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog};
use blackboard_client::Board;
use blackboard_tests::{temp_dir, NatsServer};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;

use crate::within;

/// A writer's events for one `put` of an object into a fresh document, published one at a
/// time (each awaiting the log's acknowledgement) in a task of its own, while the reader
/// watches: when the reader's first change event arrives, the object's fields must be there.
async fn a_put_object_reaches_another_replica_whole(log: Arc<dyn EventLog>, reader: Board) {
    let (space, document) = ("team".parse().unwrap(), "board".parse().unwrap());
    let agent = "writer".parse().unwrap();
    let mut core = DocCore::new();
    let edited = core
        .edit(
            1_700_000_000_000,
            Some("add task 7".into()),
            false,
            &[Edit::Put {
                path: "/tasks/7".parse().unwrap(),
                value: json!({"title": "square 7", "status": "open"}),
                mode: PutMode::Merge,
            }],
        )
        .unwrap();
    let mut events: Vec<(String, Bytes)> = edited
        .created
        .iter()
        .map(|(c, _)| c)
        .chain(edited.change.as_ref())
        .map(|c| {
            let envelope = encode_event(&space, &document, &agent, c, 0, Some("add task 7".into()));
            (
                format!("{}:{document}", c.hash),
                Bytes::from(envelope.encode()),
            )
        })
        .collect();
    assert_eq!(events.len(), 3, "/tasks and /tasks/7 created, then filled");

    let doc = reader.doc("team", "board").unwrap();
    let mut changes = doc.watch("/**").unwrap();
    let publisher = tokio::spawn(async move {
        for (id, payload) in events.drain(..) {
            log.publish(&space, &document, &id, payload).await.unwrap();
        }
    });
    within("the reader's first change event", changes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        doc.get("/tasks/7").unwrap(),
        Some(json!({"title": "square 7", "status": "open"})),
        "the reader showed the write half made"
    );
    publisher.await.unwrap();
}

#[tokio::test]
async fn on_jetstream_a_put_object_reaches_another_replica_whole() {
    let server = NatsServer::start().await.unwrap();
    let log: Arc<dyn EventLog> = Arc::new(JetStreamLog::new(
        server.connect().await.unwrap(),
        JetStreamConfig::default(),
    ));
    let reader_log: Arc<dyn EventLog> = Arc::new(JetStreamLog::new(
        server.connect().await.unwrap(),
        JetStreamConfig::default(),
    ));
    let dir = temp_dir();
    let reader = Board::with_log(
        "reader".parse().unwrap(),
        reader_log,
        sled::open(dir.path()).unwrap(),
    );
    a_put_object_reaches_another_replica_whole(log, reader).await;
}

#[tokio::test]
async fn on_the_embedded_log_a_put_object_reaches_another_replica_whole() {
    let dir = temp_dir();
    let db = sled::open(dir.path()).unwrap();
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(db.clone()).unwrap());
    let reader = Board::with_log("reader".parse().unwrap(), log.clone(), db);
    a_put_object_reaches_another_replica_whole(log, reader).await;
}

#[tokio::test]
async fn a_write_of_container_creations_alone_still_reaches_another_replica() {
    // `put /tasks/8 {}` into a fresh document is two creations and no change after them: the
    // follower's wait for the rest of the write ends, and the empty map is shown.
    let dir = temp_dir();
    let db = sled::open(dir.path()).unwrap();
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(db.clone()).unwrap());
    let (space, document) = ("team".parse().unwrap(), "board".parse().unwrap());
    let mut core = DocCore::new();
    let edited = core
        .edit(
            0,
            None,
            false,
            &[Edit::Put {
                path: "/tasks/8".parse().unwrap(),
                value: json!({}),
                mode: PutMode::Merge,
            }],
        )
        .unwrap();
    assert!(edited.change.is_none() && edited.created.len() == 2);
    let reader = Board::with_log("reader".parse().unwrap(), log.clone(), db);
    let doc = reader.doc("team", "board").unwrap();
    let mut changes = doc.watch("/**").unwrap();
    for (c, _) in &edited.created {
        let envelope = encode_event(&space, &document, &"writer".parse().unwrap(), c, 0, None);
        log.publish(
            &space,
            &document,
            &format!("{}:{document}", c.hash),
            Bytes::from(envelope.encode()),
        )
        .await
        .unwrap();
    }
    for _ in 0..2 {
        within("the creations at the reader", changes.next())
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(doc.get("/tasks/8").unwrap(), Some(json!({})));
}
