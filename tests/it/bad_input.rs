//! Garbage and malformed envelopes on a document's subject: logged, skipped, harmless.

use std::sync::Arc;

use async_nats::jetstream;
use blackboard::automerge::transaction::Transactable;
use blackboard::automerge::ReadDoc;
use blackboard::schemas::{AgentId, DocumentId, Envelope, SpaceId, WIRE_VERSION};
use blackboard_client::{Board, Doc};
use blackboard_tests::{temp_dir, NatsServer};
use bytes::Bytes;
use serde_json::json;

use crate::{capture, nats_board, within, Captured};

/// A valid change of some other document, to build forged envelopes around.
async fn foreign_change() -> (Vec<u8>, String) {
    let dir = temp_dir();
    let board = blackboard_client::Options::new("x")
        .unwrap()
        .store(dir.path())
        .embedded()
        .await
        .unwrap();
    let doc = board.doc("s", "d").unwrap();
    let hash = doc.put("/forged", json!(true)).await.unwrap().unwrap();
    let bytes = doc.read(|core| {
        core.automerge()
            .get_change_by_hash(&hash)
            .unwrap()
            .raw_bytes()
            .to_vec()
    });
    (bytes, hash.to_string())
}

/// Bad payloads, each with the words its rejection must contain.
async fn bad_payloads() -> Vec<(Bytes, &'static str)> {
    let (change, hash) = foreign_change().await;
    let envelope = |space: &str, doc: &str, hash: &str, change: &[u8]| Envelope {
        v: WIRE_VERSION,
        space: space.parse::<SpaceId>().unwrap(),
        document: doc.parse::<DocumentId>().unwrap(),
        agent: "mallory".parse::<AgentId>().unwrap(),
        change_hash: hash.to_owned(),
        time_ms: 0,
        message: None,
        provenance: None,
        signer: None,
        signature: None,
        change: change.to_vec(),
    };
    vec![
        (
            Bytes::from_static(&[0xff, 0xfe, 0x00, 0x42, 0x13]),
            "not valid JSON",
        ),
        (Bytes::from_static(b"{}"), "missing field `v`"),
        (
            Bytes::from_static(br#"{"v": 99, "future": true}"#),
            "version 99",
        ),
        (
            envelope("team", "other", &hash, &change).encode().into(),
            "arrived on the subject of team/notes",
        ),
        (
            envelope("team", "notes", &"ab".repeat(32), &change)
                .encode()
                .into(),
            "claims change hash",
        ),
        (
            envelope("team", "notes", &hash, b"not an automerge change")
                .encode()
                .into(),
            "invalid automerge change",
        ),
    ]
}

/// Checks that `doc` skipped every bad payload with a logged reason and kept working.
async fn assert_survives(
    doc: &Doc,
    writer: &Doc,
    before: serde_json::Value,
    expected: &[(Bytes, &str)],
    logs: &Captured,
) {
    // A good change after the garbage still arrives.
    writer.put("/after", json!("still working")).await.unwrap();
    writer.flush().await.unwrap();
    within(
        "the good change after the garbage",
        doc.wait_for(&writer.heads()),
    )
    .await
    .unwrap();

    let stats = doc.stats();
    assert_eq!(stats.events_rejected, expected.len() as u64, "{stats:?}");
    let mut want = before;
    want["after"] = json!("still working");
    assert_eq!(doc.to_json(), want, "state untouched by the garbage");
    let logs = logs.text();
    for (_, reason) in expected {
        assert!(
            logs.contains("rejected event") && logs.contains(reason),
            "log should say {reason:?}; got:\n{logs}"
        );
    }
}

async fn setup(board: &Board, writer: &Board) -> (Doc, Doc, serde_json::Value) {
    let doc = board.doc("team", "notes").unwrap();
    let w = writer.doc("team", "notes").unwrap();
    doc.put("/title", json!("plan")).await.unwrap();
    doc.change(|tx| {
        tx.put_object(
            blackboard::automerge::ROOT,
            "body",
            blackboard::automerge::ObjType::Text,
        )
    })
    .await
    .unwrap();
    doc.flush().await.unwrap();
    within("the writer to see the setup", w.wait_for(&doc.heads()))
        .await
        .unwrap();
    let before = doc.to_json();
    (doc, w, before)
}

// current_thread: every task runs on this thread, so the captured subscriber sees the
// replica's logs.
#[tokio::test(flavor = "current_thread")]
async fn garbage_on_a_jetstream_subject_is_logged_and_skipped_and_the_replica_keeps_working() {
    let (logs, _guard) = capture();
    let server = NatsServer::start().await.unwrap();
    let (d1, d2) = (temp_dir(), temp_dir());
    let board = nats_board(&server, "victim", d1.path()).await.unwrap();
    let writer = nats_board(&server, "writer", d2.path()).await.unwrap();
    let (doc, w, before) = setup(&board, &writer).await;

    // Publish straight onto the document's subject, as a misbehaving client would.
    let js = jetstream::new(server.connect().await.unwrap());
    let bad = bad_payloads().await;
    for (payload, _) in &bad {
        js.publish("bb.team.doc.notes.ch", payload.clone())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    assert_survives(&doc, &w, before, &bad, &logs).await;
}

#[tokio::test(flavor = "current_thread")]
async fn garbage_in_the_embedded_log_is_logged_and_skipped_and_the_replica_keeps_working() {
    use blackboard::log::{EmbeddedLog, EventLog};
    let (logs, _guard) = capture();
    let dir = temp_dir();
    let db = sled::open(dir.path()).unwrap();
    let log = Arc::new(EmbeddedLog::open(db.clone()).unwrap());
    let board = Board::with_log("victim".parse().unwrap(), log.clone(), db.clone());
    let writer = Board::with_log("writer".parse().unwrap(), log.clone(), db);
    let (doc, w, before) = setup(&board, &writer).await;

    let bad = bad_payloads().await;
    let (space, document) = ("team".parse().unwrap(), "notes".parse().unwrap());
    for (i, (payload, _)) in bad.iter().enumerate() {
        log.publish(&space, &document, &format!("bad-{i}"), payload.clone())
            .await
            .unwrap();
    }
    assert_survives(&doc, &w, before, &bad, &logs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_change_republished_under_another_message_id_is_a_no_op() {
    use blackboard::log::{EventLog, JetStreamLog};
    use futures::StreamExt;
    let server = NatsServer::start().await.unwrap();
    let (d1, d2) = (temp_dir(), temp_dir());
    let reader = nats_board(&server, "reader", d1.path()).await.unwrap();
    let writer = nats_board(&server, "writer", d2.path()).await.unwrap();
    let w = writer.doc("team", "notes").unwrap();
    let hash = w.put("/k", json!("v")).await.unwrap().unwrap();
    w.flush().await.unwrap();
    let doc = reader.doc("team", "notes").unwrap();
    within("the change", doc.wait_for(&[hash])).await.unwrap();
    let (heads, json_before, applied) = (doc.heads(), doc.to_json(), doc.stats().events_applied);

    // The same envelope again, under a message id the log has not seen: stored again.
    let log = JetStreamLog::new(server.connect().await.unwrap(), Default::default());
    let (space, document) = ("team".parse().unwrap(), "notes".parse().unwrap());
    let mut events = log.subscribe(&space, &document, 1).await.unwrap();
    let original = within("the original event", events.next())
        .await
        .unwrap()
        .unwrap();
    let again = log
        .publish(&space, &document, "another-id", original.payload.clone())
        .await
        .unwrap();
    assert!(!again.duplicate && again.seq > original.seq);

    within(
        "the reader to pass the copy",
        doc.wait_for_position(again.seq),
    )
    .await
    .unwrap();
    assert_eq!(doc.heads(), heads);
    assert_eq!(doc.to_json(), json_before);
    assert_eq!(
        doc.stats().events_applied,
        applied,
        "nothing new was applied"
    );
    assert_eq!(doc.stats().events_rejected, 0, "a copy is not an error");
    // History keeps the change at its first position.
    let history = doc.history(&Default::default()).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].record.seq, original.seq);
}

// current_thread: the captured log subscriber sees every task's lines.
#[tokio::test(flavor = "current_thread")]
async fn an_unreadable_stored_snapshot_is_logged_and_the_replica_follows_the_log_without_it() {
    use blackboard::log::{EmbeddedLog, EventLog, SnapshotInfo};
    let (logs, _guard) = capture();
    let dir = temp_dir();
    let db = sled::open(dir.path()).unwrap();
    let log = Arc::new(EmbeddedLog::open(db.clone()).unwrap());
    let writer = Board::with_log("writer".parse().unwrap(), log.clone(), db.clone());
    let w = writer.doc("team", "notes").unwrap();
    for i in 0..5 {
        w.put(&format!("/k{i}"), json!(i)).await.unwrap();
    }
    w.flush().await.unwrap();
    // Someone stores garbage as the document's snapshot.
    let (space, document) = ("team".parse().unwrap(), "notes".parse().unwrap());
    let info = SnapshotInfo {
        seq: 5,
        trimmed_through: 0,
        size: 7,
    };
    log.put_snapshot(&space, &document, info, Bytes::from_static(b"garbage"))
        .await
        .unwrap();
    let reader = Board::with_log("reader".parse().unwrap(), log, db);
    let doc = reader.doc("team", "notes").unwrap();
    within("the reader to sync", doc.sync()).await.unwrap();
    assert_eq!(doc.to_json(), w.to_json());
    assert_eq!(doc.stats().snapshot_loaded, None);
    assert_eq!(doc.stats().events_read, 5, "it read the log instead");
    let text = logs.text();
    assert!(
        text.contains("the stored snapshot is unusable; following the log without it")
            && text.contains("not a Blackboard snapshot"),
        "{text}"
    );
}
