//! A replica's own events coming back from the log are indexed without being decoded or
//! applied again (no roster in force): the index it builds that way is the one a replica
//! reading the same events in full builds, to the byte, signatures and provenance included;
//! with a roster in force, its own events are judged like any other. On both logs.

use std::sync::Arc;

use blackboard::codec::Stamp;
use blackboard::log::{EmbeddedLog, EventLog, JetStreamLog};
use blackboard::replica::{Config, Replica};
use blackboard::schemas::Provenance;
use blackboard::trust::RosterEvent;
use blackboard_tests::{temp_dir, NatsServer};
use nkeys::KeyPair;
use serde_json::json;

use crate::within;

fn config(agent: &str) -> Config {
    Config::new(
        "team".parse().unwrap(),
        "plan".parse().unwrap(),
        agent.parse().unwrap(),
    )
}

/// A signed writer with default provenance writes; it and a reader each read the events
/// back. Returns (writer, reader), both at the log's end.
async fn write_and_read_back(log: Arc<dyn EventLog>, dir: &std::path::Path) -> (Replica, Replica) {
    let db = sled::open(dir).unwrap();
    let key = Arc::new(KeyPair::new_user());
    let mut wc = config("alice");
    wc.stamp = Stamp {
        key: Some(key),
        provenance: Some(Provenance {
            on_behalf_of: Some("carol".into()),
            model: Some("m".into()),
            tool_call: None,
        }),
    };
    let writer = Replica::open(log.clone(), &db, wc).unwrap();
    for i in 0..20 {
        writer
            .edit(
                (i % 3 == 0).then_some("why not"),
                &[blackboard::doc::Edit::put(
                    format!("/tasks/{}", i % 4).parse().unwrap(),
                    json!({"n": i}),
                )],
            )
            .await
            .unwrap();
    }
    writer.flush().await.unwrap();
    let end = within("the writer reads its events back", writer.sync())
        .await
        .unwrap();
    let reader = Replica::open(log, &db, config("reader")).unwrap();
    within("the reader", reader.wait_for_position(end))
        .await
        .unwrap();
    (writer, reader)
}

async fn own_events_are_indexed_as_a_full_reading_would(log: Arc<dyn EventLog>) {
    let dir = temp_dir();
    let (writer, reader) = write_and_read_back(log, dir.path()).await;
    let end = writer.position().seq;
    let mine = writer.records(0, end).unwrap();
    let theirs = reader.records(0, end).unwrap();
    assert!(!mine.is_empty());
    assert_eq!(mine, theirs);
    assert!(mine.iter().all(|r| r.signature.is_verified()), "{mine:#?}");
    // Every one of the writer's events took the short path; the reader's none.
    let (w, r) = (writer.stats(), reader.stats());
    assert_eq!(w.own_events_indexed, w.events_read, "{w:?}");
    assert_eq!(w.own_events_indexed, mine.len() as u64, "{w:?}");
    assert_eq!(r.own_events_indexed, 0, "{r:?}");
    assert_eq!(writer.to_json(), reader.to_json());
}

#[tokio::test]
async fn own_events_are_indexed_as_a_full_reading_would_on_the_embedded_log() {
    let dir = temp_dir();
    let log = EmbeddedLog::open(sled::open(dir.path()).unwrap()).unwrap();
    own_events_are_indexed_as_a_full_reading_would(Arc::new(log)).await;
}

#[tokio::test]
async fn own_events_are_indexed_as_a_full_reading_would_on_jetstream() {
    let server = NatsServer::start().await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let log = JetStreamLog::new(client, Default::default());
    own_events_are_indexed_as_a_full_reading_would(Arc::new(log)).await;
}

#[tokio::test]
async fn with_a_roster_in_force_own_events_are_judged_like_any_other() {
    let dir = temp_dir();
    let log: Arc<dyn EventLog> =
        Arc::new(EmbeddedLog::open(sled::open(dir.path().join("log")).unwrap()).unwrap());
    let (admin, alice) = (KeyPair::new_user(), Arc::new(KeyPair::new_user()));
    let roster = json!({
        "admins": [admin.public_key()],
        "agents": {"alice": {"keys": [alice.public_key()], "write": ["/**"]}}
    });
    let space = "team".parse().unwrap();
    let ev = RosterEvent::sign(&space, 1, roster.to_string(), &admin).unwrap();
    log.publish_roster(&space, "genesis", ev.encode().into())
        .await
        .unwrap();
    let db = sled::open(dir.path().join("store")).unwrap();
    let mut wc = config("alice");
    wc.stamp = Stamp {
        key: Some(alice),
        provenance: None,
    };
    let writer = Replica::open(log, &db, wc).unwrap();
    within("the roster", writer.sync()).await.unwrap();
    writer.put("/a", json!(1)).await.unwrap();
    writer.flush().await.unwrap();
    within("the writer reads its event back", writer.sync())
        .await
        .unwrap();
    assert!(writer.roster().is_some());
    let stats = writer.stats();
    assert_eq!(stats.own_events_indexed, 0, "{stats:?}");
    assert_eq!(stats.events_read, 1, "{stats:?}");
    assert_eq!(stats.changes_untrusted, 0, "{stats:?}");
    assert_eq!(writer.records(0, writer.position().seq).unwrap().len(), 1);
}
