//! What a replica says about bad and held-back events (issue 14 §7): once per catch-up, with
//! a count, not once per event, so a fresh reader of a log full of garbage does not repeat
//! every bad message on every run; and a change held back for a dependency that does not
//! come is said.

use std::sync::Arc;

use blackboard::automerge::transaction::Transactable;
use blackboard::codec::encode_event;
use blackboard::doc::DocCore;
use blackboard::log::{EmbeddedLog, EventLog};
use blackboard_client::Board;
use blackboard_tests::temp_dir;
use bytes::Bytes;

use crate::{capture, within};

// current_thread: the captured log subscriber sees every task's lines.
#[tokio::test(flavor = "current_thread")]
async fn a_fresh_replica_sums_up_many_bad_events_in_one_warning_with_a_count() {
    let dir = temp_dir();
    let db = sled::open(dir.path()).unwrap();
    let log = Arc::new(EmbeddedLog::open(db.clone()).unwrap());
    let (space, document) = ("team".parse().unwrap(), "notes".parse().unwrap());
    // Written straight to the log (no writer replica, which would log the garbage too).
    let mut core = DocCore::new();
    let agent = "writer".parse().unwrap();
    let mut put = |key: &str, i: i64| {
        let change = core
            .transact(i, None, |tx| tx.put(blackboard::automerge::ROOT, key, i))
            .unwrap()
            .1
            .unwrap();
        let event = encode_event(&space, &document, &agent, &change, 0, None).encode();
        (change.hash, Bytes::from(event))
    };
    let (before, after) = (put("before", 1), put("after", 2));
    log.publish(&space, &document, &before.0.to_string(), before.1)
        .await
        .unwrap();
    for i in 0..50 {
        log.publish(
            &space,
            &document,
            &format!("bad-{i}"),
            Bytes::from(format!("junk {i}")),
        )
        .await
        .unwrap();
    }
    log.publish(&space, &document, &after.0.to_string(), after.1)
        .await
        .unwrap();

    let (logs, _guard) = capture();
    let reader = Board::with_log("reader".parse().unwrap(), log.clone(), db);
    let doc = reader.doc("team", "notes").unwrap();
    within("the reader to catch up", doc.wait_for(&[after.0]))
        .await
        .unwrap();
    assert_eq!(doc.stats().events_rejected, 50);
    let text = logs.text();
    let summaries = text.matches("rejected event(s)").count();
    assert_eq!(summaries, 1, "one summary for the catch-up:\n{text}");
    assert!(text.contains("skipped 50 rejected event(s)"), "{text}");
    assert!(
        text.contains("position 2: "),
        "the first reasons are named:\n{text}"
    );
    assert_eq!(
        text.lines().count(),
        1,
        "nothing else at warning level:\n{text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_change_held_back_for_a_dependency_that_does_not_come_is_said() {
    let dir = temp_dir();
    let db = sled::open(dir.path()).unwrap();
    let log = Arc::new(EmbeddedLog::open(db.clone()).unwrap());
    let (space, document) = ("team".parse().unwrap(), "notes".parse().unwrap());
    // Two changes in a chain; only the second reaches the log.
    let mut core = DocCore::new();
    let mut chain = (0..2).map(|i| {
        core.transact(i, None, |tx| tx.put(blackboard::automerge::ROOT, "k", i))
            .unwrap()
            .1
            .unwrap()
    });
    let (_first, second) = (chain.next().unwrap(), chain.next().unwrap());
    let agent = "writer".parse().unwrap();
    let event = encode_event(&space, &document, &agent, &second, 0, None).encode();
    log.publish(&space, &document, &second.hash.to_string(), event.into())
        .await
        .unwrap();

    let (logs, _guard) = capture();
    let reader = Board::with_log("reader".parse().unwrap(), log.clone(), db);
    let doc = reader.doc("team", "notes").unwrap();
    within("the reader to read the log", doc.replica().sync())
        .await
        .unwrap();
    let text = logs.text();
    assert!(
        text.contains("holding back 1 change(s) whose dependencies the log has not delivered"),
        "{text}"
    );
}
