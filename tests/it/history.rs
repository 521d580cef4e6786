//! Event history against a real nats-server: the state at any position, cold starts from a
//! snapshot, trimming, the three ways of naming a position, and replays.

use std::collections::BTreeMap;
use std::path::Path;

use blackboard::automerge::transaction::Transactable;
use blackboard::automerge::{ScalarValue, ROOT};
use blackboard::codec::decode_event;
use blackboard::doc::DocCore;
use blackboard::log::{EventLog, JetStreamLog};
use blackboard::schemas::{DocumentId, SpaceId};
use blackboard_client::{At, Board, Doc, HistoryFilter, SnapshotPolicy};
use blackboard_tests::{temp_dir, NatsServer};
use futures::StreamExt;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value as Json};
use tempfile::TempDir;

use crate::{capture, within};

const SPACE: &str = "team";
const DOC: &str = "plan";

/// A board whose replicas write no snapshots by themselves, so each test decides when.
async fn board(server: &NatsServer, agent: &str, dir: &std::path::Path) -> Board {
    blackboard_client::Options::new(agent)
        .unwrap()
        .store(dir)
        .snapshots(SnapshotPolicy::manual())
        .connect(&server.url())
        .await
        .unwrap()
}

/// Three agents on their own connections write `rounds` rounds each, concurrently: their
/// own keys, a contended key, text splices, a counter and deletes, with messages. Returns
/// the writers' documents once every change is acknowledged.
async fn write_history(server: &NatsServer, rounds: usize, seed: u64) -> (Vec<Doc>, Vec<TempDir>) {
    let mut docs = Vec::new();
    let mut dirs = Vec::new();
    for a in 0..3 {
        let dir = temp_dir();
        let b = board(server, &format!("agent-{a}"), dir.path()).await;
        docs.push(b.doc(SPACE, DOC).unwrap());
        dirs.push(dir);
    }
    docs[0]
        .change(|tx| tx.put(ROOT, "runs", ScalarValue::counter(0)))
        .await
        .unwrap();
    docs[0].flush().await.unwrap();
    for d in &docs[1..] {
        within("the counter", d.wait_for(&docs[0].heads()))
            .await
            .unwrap();
    }
    let writers: Vec<_> = docs
        .iter()
        .enumerate()
        .map(|(a, doc)| {
            let doc = doc.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed + a as u64);
                for i in 0..rounds {
                    match rng.gen_range(0..5) {
                        0 => doc
                            .put_with_message(
                                &format!("/tasks/{a}-{i}/status"),
                                json!("open"),
                                &format!("agent {a} opens {i}"),
                            )
                            .await
                            .map(|_| ()),
                        1 => doc
                            .put_with_message("/owner", json!(format!("agent-{a}")), "taking over")
                            .await
                            .map(|_| ()),
                        2 => doc
                            .splice_text("/notes", rng.gen_range(0..4), 0, &format!("[{a}.{i}]"))
                            .await
                            .map(|_| ()),
                        3 => doc
                            .change(|tx| tx.increment(ROOT, "runs", 1))
                            .await
                            .map(|_| ()),
                        _ => doc
                            .delete(&format!("/tasks/{a}-{}", i / 2))
                            .await
                            .map(|_| ()),
                    }
                    .unwrap();
                }
                doc.flush().await.unwrap();
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    (docs, dirs)
}

/// Every event of the document on the stream, read straight from JetStream.
async fn raw_events(server: &NatsServer) -> Vec<(u64, Vec<u8>)> {
    let (space, doc): (SpaceId, DocumentId) = (SPACE.parse().unwrap(), DOC.parse().unwrap());
    let log = JetStreamLog::new(server.connect().await.unwrap(), Default::default());
    let last = log.last_seq(&space, &doc).await.unwrap();
    if last == 0 {
        return Vec::new();
    }
    let mut sub = log.subscribe(&space, &doc, 1).await.unwrap();
    let mut out = Vec::new();
    while out.last().is_none_or(|(seq, _)| *seq < last) {
        let e = within("raw events", sub.next()).await.unwrap().unwrap();
        out.push((e.seq, e.payload.to_vec()));
    }
    out
}

/// A replica with no storage and no log fed exactly the events up to `n`.
fn fed_up_to(events: &[(u64, Vec<u8>)], n: u64) -> DocCore {
    let (space, doc): (SpaceId, DocumentId) = (SPACE.parse().unwrap(), DOC.parse().unwrap());
    let mut core = DocCore::new();
    for (_, payload) in events.iter().take_while(|(seq, _)| *seq <= n) {
        let event = decode_event(&space, &doc, payload).unwrap();
        core.apply(event.change).unwrap();
    }
    core
}

/// A new agent's replica of the document, caught up with the log.
async fn fresh_reader(server: &NatsServer, agent: &str) -> (Doc, TempDir) {
    let dir = temp_dir();
    let doc = board(server, agent, dir.path())
        .await
        .doc(SPACE, DOC)
        .unwrap();
    within("the reader to sync", doc.sync()).await.unwrap();
    (doc, dir)
}

/// `agent`'s replica of the document, its store in `dir`, writing snapshots as `policy` says.
async fn with_policy(server: &NatsServer, agent: &str, dir: &Path, policy: SnapshotPolicy) -> Doc {
    blackboard_client::Options::new(agent)
        .unwrap()
        .store(dir)
        .snapshots(policy)
        .connect(&server.url())
        .await
        .unwrap()
        .doc(SPACE, DOC)
        .unwrap()
}

/// Awaits the next snapshot announced on `announced` (the object store's metadata subject),
/// and returns a log on `client` with the stored snapshot's info.
async fn announced_snapshot(
    client: async_nats::Client,
    announced: &mut async_nats::Subscriber,
) -> (JetStreamLog, blackboard::log::SnapshotInfo) {
    within("the policy's snapshot", announced.next())
        .await
        .unwrap();
    let log = JetStreamLog::new(client, Default::default());
    let info = log
        .snapshot_info(&SPACE.parse().unwrap(), &DOC.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    (log, info)
}

/// A policy of a snapshot every `every_events` events, and none by time.
fn every(every_events: u64) -> SnapshotPolicy {
    SnapshotPolicy {
        every_events,
        every: None,
        trim: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_at_random_positions_equals_a_fresh_replica_fed_exactly_the_events_up_to_there() {
    let server = NatsServer::start().await.unwrap();
    let (writers, _dirs) = write_history(&server, 40, 1).await;
    let events = raw_events(&server).await;
    let (reader, _rd) = fresh_reader(&server, "reader").await;
    let last = events.last().unwrap().0;
    let mut rng = StdRng::seed_from_u64(7);
    let mut positions: Vec<u64> = (0..12).map(|_| rng.gen_range(0..=last)).collect();
    positions.extend([0, 1, last]);
    for n in positions {
        let expected = fed_up_to(&events, n);
        for doc in [&reader, &writers[1]] {
            within("the writer to sync", doc.sync()).await.unwrap();
            let view = doc.at(&At::Seq(n)).unwrap();
            assert_eq!(view.position().seq, n);
            assert_eq!(view.position().heads, expected.heads(), "heads at {n}");
            assert_eq!(view.to_json(), expected.to_json(), "state at {n}");
        }
    }
    // Past the replica's position is an error, not a guess.
    let err = reader.at(&At::Seq(last + 100)).unwrap_err();
    assert!(
        err.to_string().contains("past this replica's position"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_from_a_snapshot_and_the_tail_equals_a_full_replay_and_reads_only_the_tail() {
    let server = NatsServer::start().await.unwrap();
    let (writers, _dirs) = write_history(&server, 100, 2).await;
    within("the snapshotter to sync", writers[0].sync())
        .await
        .unwrap();
    let snap = writers[0].snapshot().await.unwrap();
    assert_eq!(
        snap.seq,
        writers[0].position().seq,
        "the snapshot covers the history"
    );
    // A tail after the snapshot.
    for i in 0..10 {
        writers[1]
            .put(&format!("/tail/{i}"), json!(i))
            .await
            .unwrap();
    }
    writers[1].flush().await.unwrap();
    let events = raw_events(&server).await;
    let full = fed_up_to(&events, u64::MAX);

    let (cold, _cd) = fresh_reader(&server, "cold").await;
    let stats = cold.stats();
    assert_eq!(stats.snapshot_loaded, Some(snap.seq));
    // The tail: the creation of /tail (the container recipe's change) and ten writes.
    assert_eq!(stats.events_read, 11, "only the tail is read: {stats:?}");
    assert!(events.len() > 150, "{} events on the stream", events.len());
    assert_eq!(cold.heads(), full.heads());
    assert_eq!(cold.to_json(), full.to_json());
    // And its history is whole: every event, with its agent and message.
    let history = cold.history(&HistoryFilter::default()).unwrap();
    assert_eq!(history.len(), events.len());
    let writer_history = writers[1].history(&HistoryFilter::default()).unwrap();
    assert_eq!(history, writer_history);
}

/// Everything the history API answers about the document, to compare before and after.
#[derive(Debug, PartialEq)]
struct Answers {
    history: Vec<blackboard_client::HistoryEvent>,
    states: Vec<(u64, Json)>,
    diffs: Vec<Json>,
    blames: Vec<Json>,
}

fn answers(doc: &Doc) -> Answers {
    let history = doc.history(&HistoryFilter::default()).unwrap();
    let seqs: Vec<u64> = history.iter().map(|e| e.record.seq).collect();
    let picks = [0, seqs.len() / 4, seqs.len() / 2, seqs.len() - 1].map(|i| seqs[i]);
    let states = picks
        .iter()
        .map(|n| (*n, doc.at(&At::Seq(*n)).unwrap().to_json()))
        .collect();
    let diffs = picks
        .windows(2)
        .map(|w| serde_json::to_value(doc.diff(&At::Seq(w[0]), &At::Seq(w[1])).unwrap()).unwrap())
        .collect();
    let blames = ["/owner", "/notes", "/runs", "/"]
        .iter()
        .map(|p| serde_json::to_value(doc.blame(p).unwrap()).unwrap())
        .collect();
    Answers {
        history,
        states,
        diffs,
        blames,
    }
}

// current_thread: the captured log subscriber sees every task's lines.
#[tokio::test(flavor = "current_thread")]
async fn after_trimming_below_a_snapshot_history_at_diff_and_blame_answer_as_before() {
    let (logs, _guard) = capture();
    let server = NatsServer::start().await.unwrap();
    let (writers, _dirs) = write_history(&server, 40, 3).await;
    // A reader that will be away while the log is trimmed past its position.
    let away_dir = temp_dir();
    let away = board(&server, "away", away_dir.path()).await;
    let away_doc = away.doc(SPACE, DOC).unwrap();
    let away_position = within("the away reader", away_doc.sync()).await.unwrap();
    drop(away_doc);
    away.close().await.unwrap();
    for i in 0..5 {
        writers[2]
            .put_with_message(&format!("/late/{i}"), json!(i), "late")
            .await
            .unwrap();
    }
    writers[2].flush().await.unwrap();

    let (before_reader, _bd) = fresh_reader(&server, "before").await;
    let before = answers(&before_reader);
    assert!(before
        .history
        .iter()
        .any(|e| e.record.message.as_deref() == Some("taking over")));

    within("the trimmer to sync", writers[0].sync())
        .await
        .unwrap();
    let trimmed = writers[0].trim().await.unwrap();
    assert!(trimmed.snapshot.trimmed_through > away_position);
    assert!(
        trimmed.removed as usize >= before.history.len() - 1,
        "{trimmed:?}"
    );
    // The stream really lost those events.
    let left = raw_events(&server).await;
    assert!(left
        .iter()
        .all(|(seq, _)| *seq > trimmed.snapshot.trimmed_through));

    let (after_reader, _ad) = fresh_reader(&server, "after").await;
    assert_eq!(
        after_reader.stats().snapshot_loaded,
        Some(trimmed.snapshot.seq)
    );
    assert_eq!(answers(&after_reader), before);
    // The writer that trimmed still answers the same from its own index.
    assert_eq!(answers(&writers[0]), before);

    // The reader that was away recovers from the snapshot, and says so.
    let away = board(&server, "away", away_dir.path()).await;
    let away_doc = away.doc(SPACE, DOC).unwrap();
    within("the away reader to recover", away_doc.sync())
        .await
        .unwrap();
    assert_eq!(away_doc.stats().snapshot_loaded, Some(trimmed.snapshot.seq));
    assert_eq!(away_doc.to_json(), before_reader.to_json());
    assert_eq!(answers(&away_doc), before);
    let text = logs.text();
    assert!(
        text.contains("position was trimmed from the log; recovering from the snapshot"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_wall_clock_time_and_at_heads_agree_with_at_the_sequence() {
    let server = NatsServer::start().await.unwrap();
    let (_writers, _dirs) = write_history(&server, 30, 4).await;
    let (reader, _rd) = fresh_reader(&server, "reader").await;
    let history = reader.history(&HistoryFilter::default()).unwrap();
    assert!(history.len() > 50);
    for (i, e) in history.iter().enumerate() {
        let by_seq = reader.at(&At::Seq(e.record.seq)).unwrap();
        // By heads: the heads history reports after the event name the same state.
        let by_heads = reader.at(&At::Heads(e.heads.clone())).unwrap();
        assert_eq!(
            by_heads.to_json(),
            by_seq.to_json(),
            "heads after {}",
            e.record.seq
        );
        assert_eq!(by_heads.position().seq, e.record.seq);
        // By time: the log's time of this event includes every event logged in the same
        // millisecond, so it agrees with the last of those.
        let same_ms = history[i..]
            .iter()
            .take_while(|later| later.record.logged_ms <= e.record.logged_ms)
            .last()
            .unwrap();
        let by_time = reader.at(&At::Time(e.record.logged_ms)).unwrap();
        assert_eq!(by_time.position().seq, same_ms.record.seq);
        let expected = reader.at(&At::Seq(same_ms.record.seq)).unwrap();
        assert_eq!(by_time.to_json(), expected.to_json());
        // And through the string form a person would type.
        let typed: At = blackboard::history::format_time(e.record.logged_ms)
            .parse()
            .unwrap();
        assert_eq!(reader.at(&typed).unwrap().position(), by_time.position());
    }
    // Before the first event: the empty document.
    let first = history[0].record.logged_ms;
    assert_eq!(
        reader.at(&At::Time(first - 1)).unwrap().to_json(),
        json!({})
    );
}

/// A projection: per path, the kinds of patches seen and by whom, plus one line per step.
fn project(doc: &Doc) -> (Vec<String>, BTreeMap<String, usize>) {
    let mut lines = Vec::new();
    let mut per_agent = BTreeMap::new();
    doc.replay(
        &At::Seq(0),
        |step| -> Result<(), std::convert::Infallible> {
            *per_agent.entry(step.record.agent.to_string()).or_insert(0) += 1;
            for p in step.patches {
                lines.push(format!(
                    "{} {} {}",
                    step.record.seq,
                    step.record.agent,
                    serde_json::to_string(p).unwrap()
                ));
            }
            Ok(())
        },
    )
    .unwrap();
    (lines, per_agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_projection_run_twice_or_on_another_replica_gives_identical_output() {
    let server = NatsServer::start().await.unwrap();
    let (writers, _dirs) = write_history(&server, 30, 5).await;
    let (reader, _rd) = fresh_reader(&server, "reader").await;
    let first = project(&reader);
    let second = project(&reader);
    assert_eq!(first, second);
    assert!(first.0.len() > 30, "{} lines", first.0.len());
    // Every agent that wrote shows up, with one step per event it wrote.
    let history = reader.history(&HistoryFilter::default()).unwrap();
    let mut expected = BTreeMap::new();
    for e in &history {
        *expected.entry(e.record.agent.to_string()).or_insert(0) += 1;
    }
    assert_eq!(first.1, expected);
    // Another replica, with another path through the same events, projects the same.
    within("the writer to sync", writers[2].sync())
        .await
        .unwrap();
    assert_eq!(project(&writers[2]), first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_filters_by_agent_and_path_and_blame_names_the_last_writer() {
    let server = NatsServer::start().await.unwrap();
    let (writers, _dirs) = write_history(&server, 20, 6).await;
    writers[1]
        .put_with_message("/owner", json!("agent-1, finally"), "final say")
        .await
        .unwrap();
    writers[1].flush().await.unwrap();
    let (reader, _rd) = fresh_reader(&server, "reader").await;
    let all = reader.history(&HistoryFilter::default()).unwrap();
    let by_agent = reader
        .history(&HistoryFilter {
            agent: Some("agent-2".parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
    assert!(!by_agent.is_empty());
    assert!(by_agent
        .iter()
        .all(|e| e.record.agent.as_str() == "agent-2"));
    assert_eq!(
        by_agent.len(),
        all.iter()
            .filter(|e| e.record.agent.as_str() == "agent-2")
            .count()
    );
    let owner = reader
        .history(&HistoryFilter {
            path: Some("/owner".parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
    assert!(owner
        .iter()
        .all(|e| e.paths.iter().any(|p| p.to_string() == "/owner")));
    let last = owner.last().unwrap();
    assert_eq!(last.record.message.as_deref(), Some("final say"));
    let blame = reader.blame("/owner").unwrap().unwrap();
    let record = blame.record.unwrap();
    assert_eq!(
        (record.agent.as_str(), record.seq),
        ("agent-1", last.record.seq)
    );
    assert_eq!(record.message.as_deref(), Some("final say"));
    // Text blame: the spans put the text back together, each naming a writer.
    let notes = reader.blame("/notes").unwrap().unwrap();
    let text: String = notes.spans.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(json!(text), reader.get("/notes").unwrap().unwrap());
    assert!(notes.spans.iter().all(|s| s.record.is_some()));
    // Filters by position: after/until bound the sequence range.
    let (a, b) = (all[3].record.seq, all[10].record.seq);
    let window = reader
        .history(&HistoryFilter {
            after: Some(At::Seq(a)),
            until: Some(At::Seq(b)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(window, all[4..=10].to_vec());
    assert!(reader.blame("/nothing/here").unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_starts_as_the_state_at_a_position_and_then_goes_its_own_way() {
    let server = NatsServer::start().await.unwrap();
    let (writers, _dirs) = write_history(&server, 20, 8).await;
    let source = &writers[0];
    within("sync", source.sync()).await.unwrap();
    let history = source.history(&HistoryFilter::default()).unwrap();
    let middle = history[history.len() / 2].record.seq;
    let expected = source.at(&At::Seq(middle)).unwrap().to_json();
    let dir = temp_dir();
    let brancher = board(&server, "brancher", dir.path()).await;
    let fork = brancher.doc(SPACE, "plan-b").unwrap();
    source.fork_to(&At::Seq(middle), &fork).await.unwrap();
    assert_eq!(fork.to_json(), expected);
    fork.flush().await.unwrap();
    // Another agent sees the fork from the log, with the original writers in its history.
    let (reader_doc, _rd) = {
        let d = temp_dir();
        let b = board(&server, "reader", d.path()).await;
        let doc = b.doc(SPACE, "plan-b").unwrap();
        within("the fork to arrive", doc.sync()).await.unwrap();
        (doc, d)
    };
    assert_eq!(reader_doc.to_json(), expected);
    let agents: std::collections::BTreeSet<String> = reader_doc
        .history(&HistoryFilter::default())
        .unwrap()
        .iter()
        .map(|e| e.record.agent.to_string())
        .collect();
    assert!(agents.iter().all(|a| a.starts_with("agent-")), "{agents:?}");
    // The fork changes on its own; the source does not see it.
    fork.put("/branch", json!(true)).await.unwrap();
    fork.flush().await.unwrap();
    within("sync", source.sync()).await.unwrap();
    assert_eq!(source.get("/branch").unwrap(), None);
    // A fork needs a new document.
    let err = source.fork_to(&At::Seq(middle), &fork).await.unwrap_err();
    assert!(err.to_string().contains("already has history"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_policy_writes_one_after_enough_events_and_new_replicas_start_from_it() {
    let server = NatsServer::start().await.unwrap();
    // The object store announces each object's metadata on `$O.<bucket>.M.<name>`: listen
    // there for the snapshot the policy writes in the background.
    let client = server.connect().await.unwrap();
    let mut announced = client.subscribe("$O.BB_SNAP_team.M.>").await.unwrap();
    client.flush().await.unwrap();
    let dir = temp_dir();
    let writer = with_policy(&server, "writer", dir.path(), every(50)).await;
    for i in 0..60 {
        writer.put(&format!("/k{i}"), json!(i)).await.unwrap();
    }
    writer.flush().await.unwrap();
    let (_, info) = announced_snapshot(client, &mut announced).await;
    assert!(info.seq >= 50, "{info:?}");
    assert_eq!(info.trimmed_through, 0, "trimming is off by default");
    let (reader, _rd) = fresh_reader(&server, "reader").await;
    assert_eq!(reader.stats().snapshot_loaded, Some(info.seq));
    assert_eq!(reader.to_json(), writer.to_json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_catching_up_writes_its_policys_snapshot_once_caught_up_not_on_the_way() {
    let server = NatsServer::start().await.unwrap();
    let (period, events) = (300, 1_200);
    let wdir = temp_dir();
    let writer = with_policy(&server, "writer", wdir.path(), SnapshotPolicy::manual()).await;
    // Each a new value, so each is a change.
    let puts: Vec<(String, u64)> = (0..events).map(|i| (format!("/k{}", i % 40), i)).collect();
    for chunk in puts.chunks(50) {
        let puts = chunk.iter().map(|(p, i)| writer.put(p, json!(i)));
        for put in futures::future::join_all(puts).await {
            put.unwrap();
        }
    }
    writer.flush().await.unwrap();
    // Every snapshot written is announced on the object store's metadata subject.
    let client = server.connect().await.unwrap();
    let mut announced = client.subscribe("$O.BB_SNAP_team.M.>").await.unwrap();
    client.flush().await.unwrap();

    // A new replica catches up with four periods of events behind it.
    let rdir = temp_dir();
    let reader = with_policy(&server, "reader", rdir.path(), every(period)).await;
    within("the catch-up", reader.sync()).await.unwrap();
    // One more event, so the follow loop surely sees a batch that is not full (caught up).
    writer.put("/last", json!(true)).await.unwrap();
    writer.flush().await.unwrap();
    within("the reader to follow", reader.wait_for(&writer.heads()))
        .await
        .unwrap();
    let (log, info) = announced_snapshot(client, &mut announced).await;
    // The first snapshot written covers (nearly) the whole log: none was written on the way.
    let end = log
        .last_seq(&SPACE.parse().unwrap(), &DOC.parse().unwrap())
        .await
        .unwrap();
    assert!(
        info.seq + period / 2 >= end,
        "{info:?}, the log ends at {end}"
    );
    assert_eq!(reader.stats().snapshots_written, 1);
}
