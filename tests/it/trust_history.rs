//! History is gated like the present (issue 15): forged changes sit in the log between honest
//! ones, and `at`, `diff`, `blame`, `history` and `replay` across them never show them; the
//! listings that name events show each rejection at its position, with the reason, also
//! after a restart. On both logs.

use std::sync::Arc;

use blackboard::codec::encode_event;
use blackboard::doc::{DocCore, LocalChange};
use blackboard::history::{At, Filter};
use blackboard::log::{EmbeddedLog, EventLog, JetStreamLog};
use blackboard::replica::{Config, Replica};
use blackboard::schemas::{AgentId, DocumentId, SpaceId};
use blackboard::trust::RosterEvent;
use blackboard_tests::{temp_dir, NatsServer};
use nkeys::KeyPair;
use serde_json::json;

use crate::edit;
use crate::within;

fn space() -> SpaceId {
    "team".parse().unwrap()
}

fn doc() -> DocumentId {
    "plan".parse().unwrap()
}

/// Publishes `change` as `agent`, signed by `key` if any; returns its position.
async fn publish(
    log: &Arc<dyn EventLog>,
    agent: &str,
    change: &LocalChange,
    key: Option<&KeyPair>,
) -> u64 {
    publish_saying(log, agent, change, key, None).await
}

/// [`publish`] with the writer's message.
async fn publish_saying(
    log: &Arc<dyn EventLog>,
    agent: &str,
    change: &LocalChange,
    key: Option<&KeyPair>,
    message: Option<&str>,
) -> u64 {
    let agent: AgentId = agent.parse().unwrap();
    let mut env = encode_event(
        &space(),
        &doc(),
        &agent,
        change,
        1,
        message.map(str::to_owned),
    );
    if let Some(key) = key {
        env.sign(key).unwrap();
    }
    let (s, d) = (space(), doc());
    let id = format!("{}:{}", change.hash, env.agent);
    let p = log.publish(&s, &d, &id, env.encode().into());
    p.await.unwrap().seq
}

async fn forged_changes_never_show_in_history(log: Arc<dyn EventLog>) {
    let dir = temp_dir();
    let db = sled::open(dir.path()).unwrap();
    let observe = || {
        let config = Config::new(space(), doc(), "reader".parse().unwrap());
        Replica::open(log.clone(), &db, config).unwrap()
    };
    let (admin, alice, bob) = (
        KeyPair::new_user(),
        KeyPair::new_user(),
        KeyPair::new_user(),
    );
    let roster = json!({
        "admins": [admin.public_key()],
        "agents": {
            "alice": {"keys": [alice.public_key()], "write": ["/tasks/**"]},
            "bob": {"keys": [bob.public_key()], "write": ["/notes/{agent}/**"]},
        }
    });
    let ev = RosterEvent::sign(&space(), 1, roster.to_string(), &admin).unwrap();
    let s = space();
    log.publish_roster(&s, "genesis", ev.encode().into())
        .await
        .unwrap();

    let mut honest = DocCore::new();
    let mut first = 0;
    for c in edit(&mut honest, "/tasks/a", json!("alice's")) {
        first = publish(&log, "alice", &c, Some(&alice)).await;
    }
    // Two forgeries of /tasks/a, each built on the honest document, so it would apply
    // cleanly if nothing judged it: unsigned, and signed by bob outside his grants.
    let mut fork = honest.fork_at(&honest.heads()).unwrap();
    let unsigned = edit(&mut fork, "/tasks/a", json!("forged")).pop().unwrap();
    let unsigned_seq = publish(&log, "alice", &unsigned, None).await;
    let mut fork = honest.fork_at(&honest.heads()).unwrap();
    let outside = edit(&mut fork, "/tasks/a", json!("bob's")).pop().unwrap();
    let outside_seq = publish_saying(&log, "bob", &outside, Some(&bob), Some("bob's reason")).await;
    let mut last = 0;
    for c in edit(&mut honest, "/tasks/b", json!("after")) {
        last = publish(&log, "alice", &c, Some(&alice)).await;
    }

    let reader = observe();
    within("the last change", reader.wait_for_position(last))
        .await
        .unwrap();
    assert_eq!(reader.to_json(), honest.to_json());

    // `at` across the forgeries: the document before them, at them and after them has
    // alice's value, with the same heads until the next honest change.
    let before = reader.at(&At::Seq(unsigned_seq - 1)).unwrap();
    for seq in [unsigned_seq, outside_seq] {
        let view = reader.at(&At::Seq(seq)).unwrap();
        assert_eq!(
            view.get("/tasks/a").unwrap(),
            Some(json!("alice's")),
            "at {seq}"
        );
        assert_eq!(view.position().heads, before.position().heads, "at {seq}");
    }
    let now = reader.at(&At::Seq(last)).unwrap();
    assert_eq!(now.to_json(), honest.to_json());
    for hash in [unsigned.hash, outside.hash] {
        let err = reader.at(&At::Heads(vec![hash])).unwrap_err();
        assert!(err.to_string().contains("not in this document"), "{err}");
    }

    // `diff` over the forgeries: nothing.
    let across = reader
        .diff(&At::Seq(unsigned_seq - 1), &At::Seq(outside_seq))
        .unwrap();
    assert!(across.is_empty(), "{across:?}");

    // `blame`: alice's change, at its position.
    let blame = reader.blame("/tasks/a").unwrap().unwrap();
    let record = blame.record.unwrap();
    assert_eq!(record.agent.as_str(), "alice");
    assert_eq!(record.seq, first);

    // `history`: no forged change; with rejections, each at its position, saying why, with
    // the heads unmoved.
    let events = reader.history(&Filter::default()).unwrap();
    assert!(events
        .iter()
        .all(|e| e.record.hash != unsigned.hash && e.record.hash != outside.hash));
    assert!(events.iter().all(|e| e.rejected.is_none()));
    let check_listing = |reader: &Replica| {
        let listed = reader.history_with_rejections(&Filter::default()).unwrap();
        assert_eq!(listed.len(), events.len() + 2);
        let rejected: Vec<_> = listed.iter().filter(|e| e.rejected.is_some()).collect();
        assert_eq!(rejected.len(), 2, "{listed:#?}");
        assert_eq!(
            (rejected[0].record.seq, rejected[0].record.hash),
            (unsigned_seq, unsigned.hash)
        );
        assert_eq!(rejected[0].rejected.as_deref(), Some("unsigned"));
        assert_eq!(
            (rejected[1].record.seq, rejected[1].record.hash),
            (outside_seq, outside.hash)
        );
        assert_eq!(rejected[1].record.agent.as_str(), "bob");
        // What the forged envelope said is kept, marked rejected.
        assert_eq!(rejected[1].record.message.as_deref(), Some("bob's reason"));
        assert_eq!(rejected[0].record.message, None);
        let reason = rejected[1].rejected.as_deref().unwrap();
        assert!(reason.contains("outside bob's grants"), "{reason}");
        for r in &rejected {
            assert_eq!(r.heads, before.position().heads);
            assert!(r.paths.is_empty());
        }
        // Only the events after a position, by an agent.
        let bobs = reader
            .history_with_rejections(&Filter {
                after: Some(At::Seq(unsigned_seq)),
                agent: Some("bob".parse().unwrap()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(bobs.len(), 1);
        assert_eq!(bobs[0].record.seq, outside_seq);
    };
    check_listing(&reader);

    // `replay`: the forgeries are steps that change nothing and say why; the document the
    // replay ends with is the replica's.
    let mut steps = Vec::new();
    let mut end = None;
    reader
        .replay(&At::Seq(0), |step| {
            let paths: Vec<String> = step.patches.iter().map(|p| p.path.to_string()).collect();
            steps.push((step.record.seq, step.rejected.map(str::to_owned), paths));
            end = Some(step.doc.to_json());
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap();
    assert_eq!(end, Some(honest.to_json()));
    let rejected: Vec<_> = steps.iter().filter(|(_, r, _)| r.is_some()).collect();
    assert_eq!(rejected.len(), 2, "{steps:?}");
    assert_eq!(rejected[0].0, unsigned_seq);
    assert_eq!(rejected[1].0, outside_seq);
    assert!(rejected.iter().all(|(_, _, paths)| paths.is_empty()));
    let a_writes: Vec<_> = steps
        .iter()
        .filter(|(_, _, paths)| paths.iter().any(|p| p == "/tasks/a"))
        .collect();
    assert_eq!(
        a_writes.len(),
        1,
        "only alice's write of /tasks/a: {steps:?}"
    );
    let positions: Vec<u64> = steps.iter().map(|(seq, _, _)| *seq).collect();
    assert!(positions.is_sorted(), "{positions:?}");

    // A restarted replica lists the same rejections (they are kept in its store).
    reader.close().await.unwrap();
    let reader = observe();
    within("the reopened replica", reader.wait_for_position(last))
        .await
        .unwrap();
    check_listing(&reader);
    reader.close().await.unwrap();
}

#[tokio::test]
async fn embedded_log_at_diff_blame_history_and_replay_across_forged_changes_never_show_them() {
    let dir = temp_dir();
    let log = Arc::new(EmbeddedLog::open(sled::open(dir.path()).unwrap()).unwrap());
    forged_changes_never_show_in_history(log).await;
}

#[tokio::test]
async fn jetstream_log_at_diff_blame_history_and_replay_across_forged_changes_never_show_them() {
    let server = NatsServer::start().await.unwrap();
    let client = server.connect().await.unwrap();
    let log = Arc::new(JetStreamLog::new(client, Default::default()));
    forged_changes_never_show_in_history(log).await;
}
