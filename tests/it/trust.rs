//! A space's roster and verify-before-apply (issue 15 §3, §4), on both logs: a table of
//! forgeries is rejected on every replica with its reason named, the honest agents' changes
//! all apply, and the replicas end with identical documents.

use std::collections::BTreeMap;
use std::sync::Arc;

use blackboard::codec::encode_event;
use blackboard::doc::{DocCore, LocalChange};
use blackboard::log::{EmbeddedLog, EventLog, JetStreamLog};
use blackboard::replica::{Config, Replica};
use blackboard::schemas::{AgentId, DocumentId, Envelope, SpaceId};
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

/// The people in the story.
struct Keys {
    admin: KeyPair,
    alice: KeyPair,
    alice2: KeyPair,
    bob: KeyPair,
    auditor: KeyPair,
    mallory: KeyPair,
}

fn body(k: &Keys, alice: &KeyPair) -> String {
    json!({
        "admins": [k.admin.public_key()],
        "agents": {
            "alice": {"keys": [alice.public_key()], "write": ["/tasks/**", "/notes/{agent}/**"]},
            "bob": {"keys": [k.bob.public_key()], "write": ["/notes/{agent}/**"]},
            "auditor": {"keys": [k.auditor.public_key()], "write": []},
        }
    })
    .to_string()
}

/// Publishes roster events and change events as agents (honest or not) would.
struct Writer {
    log: Arc<dyn EventLog>,
    n: u64,
}

impl Writer {
    async fn roster(&mut self, body: String, key: &KeyPair) -> u64 {
        self.n += 1;
        let ev = RosterEvent::sign(&space(), self.n as i64, body, key).unwrap();
        let id = format!("roster-{}", self.n);
        let s = space();
        let p = self.log.publish_roster(&s, &id, ev.encode().into());
        p.await.unwrap().seq
    }

    async fn envelope(&mut self, env: &Envelope) -> u64 {
        self.n += 1;
        let id = format!("{}:{}", env.change_hash, self.n);
        let (s, d) = (space(), doc());
        let p = self.log.publish(&s, &d, &id, env.encode().into());
        p.await.unwrap().seq
    }
}

fn envelope(agent: &str, change: &LocalChange, key: Option<&KeyPair>) -> Envelope {
    let agent: AgentId = agent.parse().unwrap();
    let mut env = encode_event(&space(), &doc(), &agent, change, 1, None);
    if let Some(key) = key {
        env.sign(key).unwrap();
    }
    env
}

/// One forged change written on a copy of the honest document: what it writes, so the test
/// can check no replica has it.
fn forged_change(honest: &DocCore, path: &str) -> (DocCore, LocalChange) {
    let mut fork = honest.fork_at(&honest.heads()).unwrap();
    let mut changes = edit(&mut fork, path, json!("forged"));
    (fork, changes.pop().unwrap())
}

async fn forgeries_are_rejected_everywhere_and_honest_changes_all_apply(log: Arc<dyn EventLog>) {
    let dir = temp_dir();
    let db = sled::open(dir.path()).unwrap();
    let observe = |name: &str| {
        let config = Config::new(space(), doc(), name.parse().unwrap());
        Replica::open(log.clone(), &db, config).unwrap()
    };
    // One replica follows from the start, live; the other starts after everything.
    let early = observe("early");
    let k = Keys {
        admin: KeyPair::new_user(),
        alice: KeyPair::new_user(),
        alice2: KeyPair::new_user(),
        bob: KeyPair::new_user(),
        auditor: KeyPair::new_user(),
        mallory: KeyPair::new_user(),
    };
    let mut w = Writer {
        log: log.clone(),
        n: 0,
    };
    let mut honest = DocCore::new();
    // Before any roster the space is open: an unsigned change applies.
    for c in edit(&mut honest, "/before", json!("open")) {
        w.envelope(&envelope("anyone", &c, None)).await;
    }
    w.roster(body(&k, &k.alice), &k.admin).await;
    // Honest writes (the recipe's containers on the way to a grant included).
    for c in edit(&mut honest, "/tasks/a", json!("alice's task")) {
        w.envelope(&envelope("alice", &c, Some(&k.alice))).await;
    }
    for c in edit(&mut honest, "/notes/bob/x", json!("bob's note")) {
        w.envelope(&envelope("bob", &c, Some(&k.bob))).await;
    }
    for c in edit(&mut honest, "/notes/alice/y", json!("alice's note")) {
        w.envelope(&envelope("alice", &c, Some(&k.alice))).await;
    }

    // The forgeries: (what, the path it writes, the reason every replica must name).
    let mut expected: Vec<(&str, String)> = Vec::new();
    let mut forged_paths = Vec::new();
    let stranger = KeyPair::new_user();

    let (fork1, c) = forged_change(&honest, "/tasks/f1");
    w.envelope(&envelope("alice", &c, None)).await;
    expected.push(("unsigned", "unsigned".into()));
    forged_paths.push("/tasks/f1");
    // A change built on the unsigned one, properly signed: its dependency is rejected.
    let mut on_top = fork1;
    let c12 = edit(&mut on_top, "/tasks/f12", json!("forged"))
        .pop()
        .unwrap();
    w.envelope(&envelope("alice", &c12, Some(&k.alice))).await;
    expected.push((
        "depends on a rejected change",
        "depends on rejected change".into(),
    ));
    forged_paths.push("/tasks/f12");

    let (_, c) = forged_change(&honest, "/tasks/f2");
    w.envelope(&envelope("alice", &c, Some(&stranger))).await;
    expected.push((
        "unknown key",
        format!("key {} is not a key of agent alice", stranger.public_key()),
    ));
    forged_paths.push("/tasks/f2");

    let (_, c) = forged_change(&honest, "/tasks/f3");
    w.envelope(&envelope("alice", &c, Some(&k.bob))).await;
    expected.push((
        "another agent's key",
        format!("key {} is not a key of agent alice", k.bob.public_key()),
    ));
    forged_paths.push("/tasks/f3");

    let (_, c) = forged_change(&honest, "/tasks/f4");
    let mut moved = encode_event(
        &space(),
        &"other".parse().unwrap(),
        &"alice".parse().unwrap(),
        &c,
        1,
        None,
    );
    moved.sign(&k.alice).unwrap();
    moved.document = doc();
    w.envelope(&moved).await;
    expected.push(("moved from another document", "does not verify".into()));
    forged_paths.push("/tasks/f4");

    let (_, c) = forged_change(&honest, "/tasks/f5");
    let mut moved = encode_event(
        &"elsewhere".parse().unwrap(),
        &doc(),
        &"alice".parse().unwrap(),
        &c,
        1,
        None,
    );
    moved.sign(&k.alice).unwrap();
    moved.space = space();
    w.envelope(&moved).await;
    expected.push(("moved from another space", "does not verify".into()));
    forged_paths.push("/tasks/f5");

    let (_, c) = forged_change(&honest, "/notes/bob/f6");
    let mut renamed = envelope("alice", &c, Some(&k.alice));
    renamed.agent = "bob".parse().unwrap();
    w.envelope(&renamed).await;
    expected.push(("replayed under another name", "does not verify".into()));
    forged_paths.push("/notes/bob/f6");

    let (_, c) = forged_change(&honest, "/tasks/f7");
    let mut cut = envelope("alice", &c, Some(&k.alice));
    let sig = cut.signature.take().unwrap();
    cut.signature = Some(sig[..sig.len() / 2].to_owned());
    w.envelope(&cut).await;
    expected.push(("truncated signature", "base64 of 64 bytes".into()));
    forged_paths.push("/tasks/f7");

    let (_, c) = forged_change(&honest, "/tasks/f8");
    w.envelope(&envelope("bob", &c, Some(&k.bob))).await;
    expected.push((
        "write outside the grants",
        "writes /tasks/f8 outside bob's grants [/notes/{agent}/**]".into(),
    ));
    forged_paths.push("/tasks/f8");

    let (_, c) = forged_change(&honest, "/notes/alice/f9");
    w.envelope(&envelope("bob", &c, Some(&k.bob))).await;
    expected.push((
        "another agent's notes",
        "writes /notes/alice/f9 outside bob's grants".into(),
    ));
    forged_paths.push("/notes/alice/f9");

    let (_, c) = forged_change(&honest, "/notes/auditor/f10");
    w.envelope(&envelope("auditor", &c, Some(&k.auditor))).await;
    expected.push(("read-only agent", "agent auditor may not write".into()));
    forged_paths.push("/notes/auditor/f10");

    // A roster change by a non-admin is ignored, so its self-made grants are worth nothing.
    let coup = json!({
        "admins": [k.mallory.public_key()],
        "agents": {"mallory": {"keys": [k.mallory.public_key()], "write": ["/**"]}}
    });
    w.roster(coup.to_string(), &k.mallory).await;
    let (_, c) = forged_change(&honest, "/tasks/f11");
    w.envelope(&envelope("mallory", &c, Some(&k.mallory))).await;
    expected.push((
        "a non-admin's roster",
        format!(
            "key {} is not a key of agent mallory",
            k.mallory.public_key()
        ),
    ));
    forged_paths.push("/tasks/f11");

    // Alice's key is replaced; her old key no longer writes, her new one does.
    w.roster(body(&k, &k.alice2), &k.admin).await;
    let (_, c) = forged_change(&honest, "/tasks/f13");
    w.envelope(&envelope("alice", &c, Some(&k.alice))).await;
    expected.push((
        "revoked key",
        format!("key {} is not a key of agent alice", k.alice.public_key()),
    ));
    forged_paths.push("/tasks/f13");

    for c in edit(&mut honest, "/tasks/b", json!("with the new key")) {
        w.envelope(&envelope("alice", &c, Some(&k.alice2))).await;
    }

    let late = observe("late");
    for replica in [&early, &late] {
        within("the honest changes", replica.wait_for(&honest.heads()))
            .await
            .unwrap();
    }
    let want = honest.to_json();
    assert_eq!(
        want,
        json!({
            "before": "open",
            "tasks": {"a": "alice's task", "b": "with the new key"},
            "notes": {"bob": {"x": "bob's note"}, "alice": {"y": "alice's note"}},
        })
    );
    for replica in [&early, &late] {
        assert_eq!(
            replica.to_json(),
            want,
            "identical documents, nothing forged"
        );
        assert_eq!(replica.heads(), honest.heads());
        let stats = replica.stats();
        assert_eq!(stats.changes_untrusted, expected.len() as u64, "{stats:?}");
        assert_eq!(stats.roster_events_ignored, 1, "the non-admin's roster");
        for path in &forged_paths {
            assert_eq!(replica.get(path).unwrap(), None, "{path} was forged");
        }
    }
    // Every forgery's reason, in order, as the replica reported it.
    let reasons: BTreeMap<usize, String> = early
        .untrusted()
        .into_iter()
        .map(|r| r.reason.to_string())
        .enumerate()
        .collect();
    assert_eq!(reasons.len(), expected.len(), "{reasons:#?}");
    for (i, (what, reason)) in expected.iter().enumerate() {
        assert!(
            reasons[&i].contains(reason.as_str()),
            "{what}: expected {reason:?}, got {:?}",
            reasons[&i]
        );
    }
    assert_eq!(
        early.untrusted(),
        late.untrusted(),
        "the same verdicts on both replicas"
    );

    // A restarted replica remembers what it rejected: a new change built on a rejected one
    // gets the same reason as before the restart.
    early.close().await.unwrap();
    let early = observe("early");
    let live_options = blackboard::watch::Options {
        rejections: true,
        ..Default::default()
    };
    let mut live = early
        .watch("/tasks/**".parse().unwrap(), live_options)
        .unwrap();
    let mut on_top = on_top;
    let after = edit(&mut on_top, "/tasks/f14", json!("forged"))
        .pop()
        .unwrap();
    w.envelope(&envelope("alice", &after, Some(&k.alice2)))
        .await;
    for c in edit(&mut honest, "/tasks/c", json!("after the restart")) {
        w.envelope(&envelope("alice", &c, Some(&k.alice2))).await;
    }
    within("the last honest change", early.wait_for(&honest.heads()))
        .await
        .unwrap();
    let last = early
        .untrusted()
        .pop()
        .expect("a rejection after the restart");
    assert!(
        last.reason
            .to_string()
            .starts_with("depends on rejected change"),
        "{}",
        last.reason
    );
    assert_eq!(early.get("/tasks/f14").unwrap(), None);
    // A watch that asked for rejections hears of it, with the reason and no patches.
    let heard = within("the rejection event", futures::StreamExt::next(&mut live))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(heard.change, after.hash);
    assert_eq!(heard.agent.as_str(), "alice");
    assert!(heard.patches.is_empty());
    assert_eq!(heard.rejected, Some(last.reason.to_string()));
    assert_eq!(
        early.get("/tasks/c").unwrap(),
        Some(json!("after the restart"))
    );

    // A watch replaying the history shows the honest changes only.
    let options = blackboard::watch::Options {
        start: blackboard::watch::Start::Beginning,
        rejections: true,
        ..Default::default()
    };
    let mut watch = late.watch("/**".parse().unwrap(), options).unwrap();
    let mut seen = Vec::new();
    let mut rejected = Vec::new();
    loop {
        let event = within("the replay", futures::StreamExt::next(&mut watch))
            .await
            .unwrap()
            .unwrap();
        seen.extend(event.patches.iter().map(|p| p.path.to_string()));
        rejected.extend(event.rejected.clone());
        if event.position.heads == honest.heads() && event.rejected.is_none() {
            break;
        }
    }
    // The replay rejects what the replica rejected, with the same reasons.
    within("the late replica", late.wait_for(&honest.heads()))
        .await
        .unwrap();
    let reasons: Vec<String> = late
        .untrusted()
        .into_iter()
        .map(|r| r.reason.to_string())
        .collect();
    assert_eq!(rejected, reasons);
    assert!(seen.contains(&"/tasks/b".to_string()), "{seen:?}");
    for path in &forged_paths {
        assert!(
            !seen.contains(&path.to_string()),
            "{path} replayed: {seen:?}"
        );
    }
}

#[tokio::test]
async fn embedded_log_forgeries_are_rejected_everywhere_and_honest_changes_all_apply() {
    let dir = temp_dir();
    let log = Arc::new(EmbeddedLog::open(sled::open(dir.path()).unwrap()).unwrap());
    forgeries_are_rejected_everywhere_and_honest_changes_all_apply(log).await;
}

#[tokio::test]
async fn jetstream_log_forgeries_are_rejected_everywhere_and_honest_changes_all_apply() {
    let server = NatsServer::start().await.unwrap();
    let client = server.connect().await.unwrap();
    let log = Arc::new(JetStreamLog::new(client, Default::default()));
    forgeries_are_rejected_everywhere_and_honest_changes_all_apply(log).await;
}

#[tokio::test]
async fn a_local_write_the_roster_would_reject_is_refused_and_leaves_nothing_behind() {
    let dir = temp_dir();
    let db = sled::open(dir.path()).unwrap();
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(db.clone()).unwrap());
    let config = Config::new(space(), doc(), "bob".parse().unwrap());
    let bob = Replica::open(log.clone(), &db, config).unwrap();
    // An open space: writes work as they always did.
    bob.put("/open", json!(1)).await.unwrap();
    bob.flush().await.unwrap();

    let admin = KeyPair::new_user();
    let roster = json!({
        "admins": [admin.public_key()],
        "agents": {"bob": {"keys": [KeyPair::new_user().public_key()], "write": ["/**"]}}
    });
    let ev = RosterEvent::sign(&space(), 1, roster.to_string(), &admin).unwrap();
    let s = space();
    let seq = log.publish_roster(&s, "genesis", ev.encode().into());
    let seq = seq.await.unwrap().seq;
    within("the roster", bob.wait_for_position(seq))
        .await
        .unwrap();
    assert!(bob.roster().is_some());

    let heads = bob.heads();
    // This replica signs nothing, so every replica would reject its write as unsigned.
    let err = bob.put("/closed", json!(2)).await.unwrap_err();
    assert!(
        matches!(&err, blackboard::Error::Untrusted(r) if r.to_string() == "unsigned"),
        "{err}"
    );
    assert_eq!(bob.get("/closed").unwrap(), None);
    assert_eq!(bob.heads(), heads, "nothing written");
    bob.flush().await.unwrap();
    let last = log.last_seq(&s, &doc()).await.unwrap();
    assert!(last < seq, "nothing published after the roster");
}
