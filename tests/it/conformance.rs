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
);
