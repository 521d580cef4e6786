//! Watches against a real nats-server: pattern semantics, replay-then-live, durable resume,
//! slow watchers, and conflicts.

use std::collections::{BTreeMap, BTreeSet};

use blackboard_client::automerge::transaction::{Transactable, Transaction};
use blackboard_client::automerge::{ChangeHash, ScalarValue, ROOT};
use blackboard_client::{
    ChangeEvent, Doc, Options, PatchOp, Start, Watch, WatchError, WatchOptions,
};
use blackboard_tests::{temp_dir, NatsServer};
use futures::StreamExt;
use serde_json::json;

use crate::{nats_board, within};

/// Writes `value` at `path` and returns every change it made: the containers the container
/// recipe created on the way (each an event of its own), then the write.
async fn put_all(doc: &Doc, path: &str, value: serde_json::Value) -> Vec<ChangeHash> {
    let edit = blackboard_client::Edit::put(path.parse().unwrap(), value);
    let w = doc.edit(None, &[edit]).await.unwrap();
    w.created.into_iter().chain(w.hash).collect()
}

async fn next(watch: &mut Watch) -> Result<ChangeEvent, WatchError> {
    within("the next watch event", watch.next())
        .await
        .expect("watch ended")
}

/// One edit of the pattern table.
type Edit = Box<dyn Fn(&mut Transaction<'_>) -> Result<(), blackboard::Error>>;

/// An edit writing `value` at `path`.
fn put(path: &'static str, value: serde_json::Value) -> Edit {
    Box::new(move |tx| Ok(blackboard::doc::json::put(tx, &path.parse()?, &value)?))
}

/// The changes of the pattern table, each with a message naming it.
async fn table_changes(doc: &Doc) {
    let changes: Vec<(&str, Edit)> = vec![
        (
            "c0",
            put("/tasks/1", json!({"status": "open", "title": "a"})),
        ),
        ("c1", put("/tasks/1/status", json!("done"))),
        ("c2", put("/tasks/2/status", json!("open"))),
        ("c3", put("/users/1/status", json!("away"))),
        ("c4", put("/tasks/1/title", json!("b"))),
        (
            "c5",
            Box::new(|tx| Ok(blackboard::doc::json::delete(tx, &"/tasks/2".parse()?)?)),
        ),
        ("c6", put("/log", json!([]))),
        ("c7", put("/log/-", json!("x"))),
        ("c8", put("/log/0", json!("y"))),
        (
            "c9",
            Box::new(|tx| {
                let t = blackboard::doc::json::ensure_text(tx, &"/notes".parse()?)?;
                Ok(tx.splice_text(&t, 0, 0, "hi")?)
            }),
        ),
        (
            "c10",
            Box::new(|tx| Ok(tx.put(ROOT, "n", ScalarValue::counter(0))?)),
        ),
        ("c11", Box::new(|tx| Ok(tx.increment(ROOT, "n", 5)?))),
    ];
    for (message, f) in changes {
        doc.change_with_message(message, |tx| f(tx)).await.unwrap();
    }
}

/// Each pattern, the table changes it must hear about (in order), and a marker change that
/// it matches, written after the table to mark its end.
fn table() -> Vec<(
    &'static str,
    Vec<&'static str>,
    &'static str,
    serde_json::Value,
)> {
    vec![
        (
            "/tasks/1/status",
            vec!["c0", "c1"],
            "/tasks/1/status",
            json!("m"),
        ),
        (
            "/tasks/*/status",
            vec!["c0", "c1", "c2", "c5"],
            "/tasks/9/status",
            json!("m"),
        ),
        (
            "/tasks/**",
            vec!["c0", "c1", "c2", "c4", "c5"],
            "/tasks/8",
            json!("m"),
        ),
        (
            "/**/status",
            vec!["c0", "c1", "c2", "c3"],
            "/x/status",
            json!("m"),
        ),
        ("/users/*", vec!["c3"], "/users/2", json!("m")),
        ("/log/0", vec!["c6", "c7", "c8"], "/log/0", json!("m")),
        ("/log/1", vec!["c6"], "/log/-", json!("m")),
        ("/notes", vec!["c9"], "/notes", json!("replaced")),
        ("/n", vec!["c10", "c11"], "/n", json!(0)),
        ("/nothing/here", vec![], "/nothing/here", json!("m")),
    ]
}

/// Reads a watch up to the first marker; returns the messages of the changes before it.
async fn until_marker(watch: &mut Watch) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let event = next(watch).await.unwrap();
        let message = event.message.clone().unwrap_or_default();
        if message == "marker" {
            return got;
        }
        got.push(message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_pattern_receives_exactly_the_changes_under_it_live_and_replayed() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let (wd, rd) = (temp_dir(), temp_dir());
    let writer = nats_board(&server, "writer", wd.path())
        .await
        .unwrap()
        .doc("team", "t")
        .unwrap();
    let reader = nats_board(&server, "reader", rd.path())
        .await
        .unwrap()
        .doc("team", "t")
        .unwrap();

    let mut live: Vec<Watch> = table()
        .iter()
        .map(|(p, ..)| reader.watch(p).unwrap())
        .collect();
    table_changes(&writer).await;
    for (_, _, path, value) in table() {
        writer
            .change_with_message("marker", |tx| {
                blackboard::doc::json::put(tx, &path.parse()?, &value)
            })
            .await
            .unwrap();
    }
    writer.flush().await.unwrap();

    for ((pattern, want, ..), watch) in table().into_iter().zip(live.iter_mut()) {
        assert_eq!(until_marker(watch).await, want, "live watch of {pattern}");
    }
    // The same table, replayed from the log by watches opened afterwards.
    within("the reader to catch up", reader.wait_for(&writer.heads()))
        .await
        .unwrap();
    for (pattern, want, ..) in table() {
        let mut replay = reader
            .watch_with(pattern, WatchOptions::start(Start::Beginning))
            .unwrap();
        assert_eq!(
            until_marker(&mut replay).await,
            want,
            "replayed watch of {pattern}"
        );
    }
}

#[tokio::test]
async fn a_malformed_pattern_is_an_error_not_an_empty_stream() {
    let dir = temp_dir();
    let board = Options::new("a")
        .unwrap()
        .store(dir.path())
        .embedded()
        .await
        .unwrap();
    let doc = board.doc("s", "d").unwrap();
    let err = doc.watch("tasks/*").unwrap_err();
    assert!(err.to_string().contains("must start with '/'"), "{err}");
    let err = doc.watch("/tasks/a*").unwrap_err();
    assert!(
        err.to_string().contains("wildcards are whole segments"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_then_live_delivers_every_event_once_in_stream_order_under_concurrent_writers() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let dirs: Vec<_> = (0..4).map(|_| temp_dir()).collect();
    let mut writers = Vec::new();
    for (w, dir) in dirs[..3].iter().enumerate() {
        let board = nats_board(&server, &format!("w{w}"), dir.path())
            .await
            .unwrap();
        writers.push(board.doc("team", "busy").unwrap());
    }
    let reader = nats_board(&server, "reader", dirs[3].path())
        .await
        .unwrap()
        .doc("team", "busy")
        .unwrap();

    // Some history first.
    let mut written: BTreeSet<ChangeHash> = BTreeSet::new();
    for (w, doc) in writers.iter().enumerate() {
        for i in 0..10 {
            written.extend(put_all(doc, &format!("/tasks/w{w}-{i}"), json!(i)).await);
        }
        doc.flush().await.unwrap();
    }
    // Writers keep going while the watch replays and switches to live.
    let busy: Vec<_> = writers
        .iter()
        .cloned()
        .enumerate()
        .map(|(w, doc)| {
            tokio::spawn(async move {
                let mut hashes = Vec::new();
                for i in 10..40 {
                    hashes.extend(put_all(&doc, &format!("/tasks/w{w}-{i}"), json!(i)).await);
                }
                doc.flush().await.unwrap();
                hashes
            })
        })
        .collect();
    let mut watch = reader
        .watch_with("/tasks/**", WatchOptions::start(Start::Beginning))
        .unwrap();
    let mut seen = Vec::new();
    let mut last_seq = 0;
    // Every write, and the one creation of /tasks all three writers made (the same change,
    // stored once).
    while seen.len() < 3 * 40 + 1 {
        let event = next(&mut watch).await.unwrap();
        let seq = event.seq.expect("remote events carry their position");
        assert!(seq > last_seq, "position {seq} after {last_seq}");
        last_seq = seq;
        assert!(!event.local);
        seen.push(event.change);
    }
    for b in busy {
        written.extend(b.await.unwrap());
    }
    let unique: BTreeSet<ChangeHash> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no event twice");
    assert_eq!(unique, written, "every change, none missing at the switch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_watch_resumes_after_a_restart_at_the_first_event_not_handed_out() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let (wd, rd) = (temp_dir(), temp_dir());
    let writer = nats_board(&server, "writer", wd.path())
        .await
        .unwrap()
        .doc("team", "jobs")
        .unwrap();
    let mut hashes = Vec::new();
    for i in 0..5 {
        hashes.extend(put_all(&writer, &format!("/tasks/{i}"), json!(i)).await);
    }
    writer.flush().await.unwrap();

    {
        let board = nats_board(&server, "worker", rd.path()).await.unwrap();
        let doc = board.doc("team", "jobs").unwrap();
        let mut watch = doc
            .watch_with("/tasks/*", WatchOptions::durable("worker"))
            .unwrap();
        for want in &hashes[..3] {
            assert_eq!(next(&mut watch).await.unwrap().change, *want);
        }
        drop(watch);
        drop(doc);
        board.close().await.unwrap();
    }
    for i in 5..7 {
        hashes.extend(put_all(&writer, &format!("/tasks/{i}"), json!(i)).await);
    }
    writer.flush().await.unwrap();

    let board = nats_board(&server, "worker", rd.path()).await.unwrap();
    let doc = board.doc("team", "jobs").unwrap();
    let mut watch = doc
        .watch_with("/tasks/*", WatchOptions::durable("worker"))
        .unwrap();
    for want in &hashes[3..] {
        assert_eq!(
            next(&mut watch).await.unwrap().change,
            *want,
            "resumed in order"
        );
    }
    // A second durable watch under another name starts from the beginning.
    let mut other = doc
        .watch_with("/tasks/*", WatchOptions::durable("auditor"))
        .unwrap();
    assert_eq!(next(&mut other).await.unwrap().change, hashes[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_lags_with_a_resume_position_while_writers_and_other_watchers_keep_pace() {
    blackboard_tests::init_tracing();
    const N: usize = 1500;
    const CAPACITY: usize = 256;
    let server = NatsServer::start().await.unwrap();
    let (wd, rd) = (temp_dir(), temp_dir());
    let writer = nats_board(&server, "writer", wd.path())
        .await
        .unwrap()
        .doc("team", "firehose")
        .unwrap();
    let watcher_board = Options::new("watcher")
        .unwrap()
        .store(rd.path())
        .watch_capacity(CAPACITY)
        .connect(&server.url())
        .await
        .unwrap();
    let watched = watcher_board.doc("team", "firehose").unwrap();
    let mut slow = watched.watch("/**").unwrap(); // never read until the end
    let mut fast = watched.watch("/**").unwrap();
    let fast_reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < N {
            let event = within(&format!("fast event {} of {N}", got.len() + 1), fast.next())
                .await
                .expect("the fast watch goes on");
            got.push(event.expect("the fast watcher never lags").change);
        }
        got
    });

    let mut written = Vec::new();
    for i in 0..N {
        written.push(
            writer
                .put(&format!("/k{}", i % 50), json!(i))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    writer.flush().await.unwrap();
    assert_eq!(
        within("the fast watcher", fast_reader).await.unwrap(),
        written
    );

    // The slow watcher kept only a bounded number of events, then was told where to resume.
    let mut before_lag = Vec::new();
    let resume_after = loop {
        match next(&mut slow).await {
            Ok(event) => before_lag.push(event.change),
            Err(WatchError::Lagged { resume_after, .. }) => break resume_after,
            Err(e) => panic!("unexpected {e}"),
        }
    };
    assert!(
        before_lag.len() <= CAPACITY + 64 + 1,
        "{} events buffered",
        before_lag.len()
    );
    assert!(before_lag.len() < N);
    assert!(within("the slow watch to end", slow.next()).await.is_none());
    // Resuming from the position it named delivers the rest, with no gap and no repeat.
    let mut resumed = watched
        .watch_with("/**", WatchOptions::start(Start::After(resume_after)))
        .unwrap();
    let mut all = before_lag.clone();
    while all.len() < N {
        all.push(next(&mut resumed).await.unwrap().change);
    }
    assert_eq!(all, written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_to_one_field_are_a_conflict_event_with_all_values_and_one_winner() {
    blackboard_tests::init_tracing();
    let mut server = NatsServer::start().await.unwrap();
    let (ad, bd) = (temp_dir(), temp_dir());
    let a = nats_board(&server, "alice", ad.path())
        .await
        .unwrap()
        .doc("team", "c")
        .unwrap();
    let b = nats_board(&server, "bob", bd.path())
        .await
        .unwrap()
        .doc("team", "c")
        .unwrap();
    let mut a_watch = a.watch("/status").unwrap();
    let mut b_watch = b.watch("/status").unwrap();

    // With the server down neither sees the other's write: they are truly concurrent.
    server.stop().await;
    a.put("/status", json!("alice's")).await.unwrap();
    b.put("/status", json!("bob's")).await.unwrap();
    server.restart().await.unwrap();
    within("alice's ack", a.flush()).await.unwrap();
    within("bob's ack", b.flush()).await.unwrap();

    let mut winners = BTreeMap::new();
    for (name, watch, doc) in [("alice", &mut a_watch, &a), ("bob", &mut b_watch, &b)] {
        let own = next(watch).await.unwrap();
        assert!(own.local, "{name}'s own write comes first, flagged local");
        let theirs = next(watch).await.unwrap();
        assert!(!theirs.local, "then the other's, flagged remote");
        let [patch] = theirs.patches.as_slice() else {
            panic!("one patch: {:?}", theirs.patches)
        };
        let PatchOp::Conflict { winner, values } = &patch.op else {
            panic!("{name} sees a conflict, got {:?}", patch.op)
        };
        let values: BTreeSet<String> = values.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            values,
            BTreeSet::from(["\"alice's\"".to_owned(), "\"bob's\"".to_owned()])
        );
        assert_eq!(doc.get("/status").unwrap().as_ref(), Some(winner));
        winners.insert(name, winner.clone());
    }
    assert_eq!(
        winners["alice"], winners["bob"],
        "the same winner on every replica"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_space_watch_hears_every_document_including_new_ones() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let (wd, rd) = (temp_dir(), temp_dir());
    let writer = nats_board(&server, "writer", wd.path()).await.unwrap();
    let old = writer.doc("team", "old").unwrap();
    old.put("/before", json!(1)).await.unwrap();
    old.flush().await.unwrap();

    let reader = nats_board(&server, "reader", rd.path()).await.unwrap();
    let mut watch = reader
        .watch_space("team", "/**", WatchOptions::default())
        .await
        .unwrap();
    old.put("/after", json!(2)).await.unwrap();
    let fresh = writer.doc("team", "fresh").unwrap();
    fresh.put("/hello", json!(true)).await.unwrap();
    old.flush().await.unwrap();
    fresh.flush().await.unwrap();

    let mut got = BTreeSet::new();
    while got.len() < 2 {
        let event = within("space events", watch.next()).await.unwrap().unwrap();
        let paths: Vec<String> = event.patches.iter().map(|p| p.path.to_string()).collect();
        got.insert((event.document.to_string(), paths));
    }
    assert_eq!(
        got,
        BTreeSet::from([
            ("fresh".to_owned(), vec!["/hello".to_owned()]),
            ("old".to_owned(), vec!["/after".to_owned()]),
        ]),
        "only changes made after the watch started"
    );
}
