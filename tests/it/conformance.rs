//! The event-log conformance suite: the same checks against the embedded log and JetStream.

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;

use blackboard::log::{EmbeddedLog, Entry, EntryStream, Error, EventLog, JetStreamLog};
use blackboard::schemas::{DocumentId, SpaceId};
use blackboard_tests::{temp_dir, NatsServer};
use bytes::Bytes;
use futures::StreamExt;

use crate::within;

/// A log under test, and whatever must live as long as it (server, temp dir).
struct Fixture {
    log: Arc<dyn EventLog>,
    _keep: Box<dyn Any + Send>,
}

async fn embedded() -> Fixture {
    let dir = temp_dir();
    let db = sled::open(dir.path()).unwrap();
    Fixture {
        log: Arc::new(EmbeddedLog::open(db).unwrap()),
        _keep: Box::new(dir),
    }
}

async fn jetstream() -> Fixture {
    let server = NatsServer::start().await.unwrap();
    let client = server.connect().await.unwrap();
    Fixture {
        log: Arc::new(JetStreamLog::new(client, Default::default())),
        _keep: Box::new(server),
    }
}

fn ids(space: &str, doc: &str) -> (SpaceId, DocumentId) {
    (space.parse().unwrap(), doc.parse().unwrap())
}

async fn next(stream: &mut EntryStream) -> Entry {
    within("the next log entry", stream.next())
        .await
        .expect("stream ended")
        .expect("stream error")
}

async fn publish_n(
    log: &dyn EventLog,
    space: &SpaceId,
    doc: &DocumentId,
    tag: &str,
    n: usize,
) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in 0..n {
        let p = log
            .publish(
                space,
                doc,
                &format!("{tag}-{i}"),
                Bytes::from(format!("{tag}-{i}")),
            )
            .await
            .unwrap();
        assert!(!p.duplicate);
        seqs.push(p.seq);
    }
    seqs
}

async fn publish_returns_increasing_positions_and_subscribe_replays_them_in_order(f: Fixture) {
    let (s, d) = ids("space", "doc");
    let seqs = publish_n(&*f.log, &s, &d, "e", 5).await;
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let mut sub = f.log.subscribe(&s, &d, 1).await.unwrap();
    for (i, seq) in seqs.iter().enumerate() {
        let e = next(&mut sub).await;
        assert_eq!((e.seq, e.payload), (*seq, Bytes::from(format!("e-{i}"))));
    }
}

async fn republishing_a_message_id_returns_the_original_position_and_stores_nothing(f: Fixture) {
    let (s, d) = ids("space", "doc");
    let first = f.log.publish(&s, &d, "same", "one".into()).await.unwrap();
    let again = f.log.publish(&s, &d, "same", "one".into()).await.unwrap();
    assert_eq!(again.seq, first.seq);
    assert!(again.duplicate);
    let other = f.log.publish(&s, &d, "other", "two".into()).await.unwrap();
    assert!(!other.duplicate && other.seq > first.seq);
    let mut sub = f.log.subscribe(&s, &d, 1).await.unwrap();
    assert_eq!(next(&mut sub).await.payload, Bytes::from("one"));
    // The very next entry is the other message: the duplicate was not stored.
    assert_eq!(next(&mut sub).await.payload, Bytes::from("two"));
}

async fn subscribing_from_a_position_skips_everything_before_it(f: Fixture) {
    let (s, d) = ids("space", "doc");
    let seqs = publish_n(&*f.log, &s, &d, "e", 5).await;
    let mut sub = f.log.subscribe(&s, &d, seqs[2]).await.unwrap();
    for seq in &seqs[2..] {
        assert_eq!(next(&mut sub).await.seq, *seq);
    }
}

async fn documents_and_spaces_do_not_see_each_others_events(f: Fixture) {
    let (s, a) = ids("space", "a");
    let (_, b) = ids("space", "b");
    let (s2, _) = ids("other", "a");
    for i in 0..3 {
        f.log
            .publish(&s, &a, &format!("a{i}"), "a".into())
            .await
            .unwrap();
        f.log
            .publish(&s, &b, &format!("b{i}"), "b".into())
            .await
            .unwrap();
        f.log
            .publish(&s2, &a, &format!("c{i}"), "c".into())
            .await
            .unwrap();
    }
    let last = f
        .log
        .publish(&s, &a, "a-last", "a-last".into())
        .await
        .unwrap();
    let mut sub = f.log.subscribe(&s, &a, 1).await.unwrap();
    let mut got = Vec::new();
    loop {
        let e = next(&mut sub).await;
        got.push(e.payload);
        if e.seq == last.seq {
            break;
        }
    }
    assert_eq!(got, ["a", "a", "a", "a-last"].map(Bytes::from));
}

async fn replay_then_live_has_no_gap_and_no_repeat_under_concurrent_publishers(f: Fixture) {
    let (s, d) = ids("space", "doc");
    let mut expected: BTreeSet<Bytes> = BTreeSet::new();
    for i in 0..20 {
        expected.insert(format!("early-{i}").into());
    }
    publish_n(&*f.log, &s, &d, "early", 20).await;
    let mut sub = f.log.subscribe(&s, &d, 1).await.unwrap();
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let log = f.log.clone();
            let (s, d) = (s.clone(), d.clone());
            tokio::spawn(async move { publish_n(&*log, &s, &d, &format!("w{w}"), 30).await })
        })
        .collect();
    for w in 0..3 {
        for i in 0..30 {
            expected.insert(format!("w{w}-{i}").into());
        }
    }
    let mut got = Vec::new();
    let mut last = 0;
    while got.len() < expected.len() {
        let e = next(&mut sub).await;
        assert!(
            e.seq > last,
            "position {} after {last}: out of order or repeated",
            e.seq
        );
        last = e.seq;
        got.push(e.payload);
    }
    for w in writers {
        w.await.unwrap();
    }
    let got_set: BTreeSet<Bytes> = got.iter().cloned().collect();
    assert_eq!(got_set.len(), got.len(), "no event delivered twice");
    assert_eq!(got_set, expected, "every event delivered");
}

async fn an_oversized_payload_is_refused_as_too_large(f: Fixture) {
    let (s, d) = ids("space", "doc");
    let big = Bytes::from(vec![b'x'; blackboard::schemas::MAX_ENVELOPE_BYTES + 1]);
    let err = f.log.publish(&s, &d, "big", big).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    // And the log still works.
    f.log.publish(&s, &d, "small", "ok".into()).await.unwrap();
}

async fn last_seq_is_the_documents_last_event_and_zero_before_any(f: Fixture) {
    let (s, d) = ids("space", "doc");
    let other: DocumentId = "other".parse().unwrap();
    assert_eq!(f.log.last_seq(&s, &d).await.unwrap(), 0);
    let seqs = publish_n(&*f.log, &s, &d, "e", 3).await;
    publish_n(&*f.log, &s, &other, "o", 2).await;
    assert_eq!(f.log.last_seq(&s, &d).await.unwrap(), seqs[2]);
}

async fn append_times_never_go_backwards_and_are_near_now(f: Fixture) {
    let (s, d) = ids("space", "doc");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    publish_n(&*f.log, &s, &d, "e", 20).await;
    let mut sub = f.log.subscribe(&s, &d, 1).await.unwrap();
    let mut last = 0;
    for _ in 0..20 {
        let e = next(&mut sub).await;
        assert!(e.time_ms >= last, "time {} after {last}", e.time_ms);
        // Same machine: the log's clock is this clock, give or take a second.
        assert!(
            e.time_ms >= before - 1000,
            "{} is before {before}",
            e.time_ms
        );
        last = e.time_ms;
    }
}

async fn a_snapshot_is_stored_described_and_replaced(f: Fixture) {
    use blackboard::log::SnapshotInfo;
    let (s, d) = ids("space", "doc");
    assert!(f.log.snapshot_info(&s, &d).await.unwrap().is_none());
    assert!(f.log.get_snapshot(&s, &d).await.unwrap().is_none());
    // Bigger than one object-store chunk (128 KiB), to cover chunking.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let first = SnapshotInfo {
        seq: 7,
        trimmed_through: 0,
        size: big.len() as u64,
    };
    f.log
        .put_snapshot(&s, &d, first, big.clone().into())
        .await
        .unwrap();
    assert_eq!(f.log.snapshot_info(&s, &d).await.unwrap(), Some(first));
    let (info, bytes) = f.log.get_snapshot(&s, &d).await.unwrap().unwrap();
    assert_eq!((info, bytes.as_ref()), (first, big.as_slice()));
    let second = SnapshotInfo {
        seq: 9,
        trimmed_through: 9,
        size: 3,
    };
    f.log
        .put_snapshot(&s, &d, second, Bytes::from_static(b"new"))
        .await
        .unwrap();
    let (info, bytes) = f.log.get_snapshot(&s, &d).await.unwrap().unwrap();
    assert_eq!((info, bytes.as_ref()), (second, b"new".as_slice()));
    // Another document has none.
    let other: DocumentId = "other".parse().unwrap();
    assert!(f.log.snapshot_info(&s, &other).await.unwrap().is_none());
}

async fn trim_removes_only_that_documents_events_up_to_the_bound(f: Fixture) {
    let (s, d) = ids("space", "doc");
    let other: DocumentId = "other".parse().unwrap();
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    for round in 0..4 {
        mine.extend(publish_n(&*f.log, &s, &d, &format!("d{round}"), 2).await);
        theirs.extend(publish_n(&*f.log, &s, &other, &format!("o{round}"), 1).await);
    }
    let through = mine[4];
    let removed = f.log.trim(&s, &d, through).await.unwrap();
    assert_eq!(removed, 5);
    let mut sub = f.log.subscribe(&s, &d, 1).await.unwrap();
    for seq in &mine[5..] {
        assert_eq!(next(&mut sub).await.seq, *seq);
    }
    let mut sub = f.log.subscribe(&s, &other, 1).await.unwrap();
    for seq in &theirs {
        assert_eq!(
            next(&mut sub).await.seq,
            *seq,
            "the other document is untouched"
        );
    }
    assert_eq!(f.log.last_seq(&s, &d).await.unwrap(), mine[7]);
}

async fn list_names_each_document_with_its_event_count_and_an_unwritten_space_has_none(f: Fixture) {
    use blackboard::log::DocumentSummary;
    let (s, d) = ids("space", "doc");
    let empty: SpaceId = "empty".parse().unwrap();
    assert_eq!(f.log.list(&empty).await.unwrap(), Vec::new());
    publish_n(&*f.log, &s, &"zeta".parse().unwrap(), "z", 1).await;
    let seqs = publish_n(&*f.log, &s, &d, "e", 3).await;
    publish_n(&*f.log, &s, &"alpha".parse().unwrap(), "a", 2).await;
    let summary = |name: &str, events| DocumentSummary {
        document: name.parse().unwrap(),
        events,
    };
    assert_eq!(
        f.log.list(&s).await.unwrap(),
        vec![summary("alpha", 2), summary("doc", 3), summary("zeta", 1)]
    );
    // Trimmed events are not counted; a fully trimmed document is not listed.
    f.log.trim(&s, &d, seqs[0]).await.unwrap();
    f.log
        .trim(&s, &"zeta".parse().unwrap(), u64::MAX)
        .await
        .unwrap();
    assert_eq!(
        f.log.list(&s).await.unwrap(),
        vec![summary("alpha", 2), summary("doc", 2)]
    );
    assert_eq!(f.log.list(&empty).await.unwrap(), Vec::new(), "still none");
}

async fn roster_events_arrive_with_the_documents_events_in_one_position_order(f: Fixture) {
    use blackboard::log::Topic;
    let (s, d) = ids("space", "doc");
    let (_, other) = ids("space", "other");
    let mut expected = Vec::new();
    for i in 0..3 {
        let id = format!("r{i}");
        let r = f
            .log
            .publish_roster(&s, &id, id.clone().into())
            .await
            .unwrap();
        expected.push((r.seq, Topic::Roster, format!("r{i}")));
        publish_n(&*f.log, &s, &other, &format!("o{i}"), 1).await;
        let c = publish_n(&*f.log, &s, &d, &format!("c{i}"), 1).await[0];
        expected.push((c, Topic::Change, format!("c{i}-0")));
    }
    let got = |e: Entry| {
        (
            e.seq,
            e.topic,
            String::from_utf8(e.payload.to_vec()).unwrap(),
        )
    };
    let mut sub = f.log.subscribe_with_roster(&s, &d, 1).await.unwrap();
    for want in &expected {
        assert_eq!(&got(next(&mut sub).await), want);
    }
    // Live: the next roster event and change, in the order published.
    let r = f
        .log
        .publish_roster(&s, "r-live", "r-live".into())
        .await
        .unwrap();
    let c = publish_n(&*f.log, &s, &d, "live", 1).await[0];
    assert_eq!(
        got(next(&mut sub).await),
        (r.seq, Topic::Roster, "r-live".into())
    );
    assert_eq!(
        got(next(&mut sub).await),
        (c, Topic::Change, "live-0".into())
    );
    // The document's own subscription sees no roster event.
    let mut plain = f.log.subscribe(&s, &d, 1).await.unwrap();
    assert_eq!(next(&mut plain).await.topic, Topic::Change);
    // From a position: later entries only; the roster below it, on request.
    let from = expected[2].0;
    let mut later = f.log.subscribe_with_roster(&s, &d, from).await.unwrap();
    assert_eq!(got(next(&mut later).await), expected[2]);
    let below = f.log.roster_events(&s, from).await.unwrap();
    let below: Vec<_> = below.into_iter().map(got).collect();
    assert_eq!(below, vec![expected[0].clone()]);
    // A republished roster message id adds nothing.
    let again = f.log.publish_roster(&s, "r0", "r0".into()).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.seq, expected[0].0);
}

async fn an_unwritten_space_has_no_roster_events(f: Fixture) {
    let (s, _) = ids("nobody", "doc");
    assert_eq!(f.log.roster_events(&s, u64::MAX).await.unwrap(), Vec::new());
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod embedded_log {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(super::embedded().await).await
                }
            )*
        }
        mod jetstream_log {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(super::jetstream().await).await
                }
            )*
        }
    };
}

conformance!(
    publish_returns_increasing_positions_and_subscribe_replays_them_in_order,
    republishing_a_message_id_returns_the_original_position_and_stores_nothing,
    subscribing_from_a_position_skips_everything_before_it,
    documents_and_spaces_do_not_see_each_others_events,
    replay_then_live_has_no_gap_and_no_repeat_under_concurrent_publishers,
    an_oversized_payload_is_refused_as_too_large,
    last_seq_is_the_documents_last_event_and_zero_before_any,
    append_times_never_go_backwards_and_are_near_now,
    a_snapshot_is_stored_described_and_replaced,
    trim_removes_only_that_documents_events_up_to_the_bound,
    list_names_each_document_with_its_event_count_and_an_unwritten_space_has_none,
    roster_events_arrive_with_the_documents_events_in_one_position_order,
    an_unwritten_space_has_no_roster_events,
);
