//! Issue 15's property test: one forging writer among honest ones, on both logs.
//!
//! **What one case covers.** A space whose roster lets alice write `/tasks/**` and her notes,
//! bob his notes, and makes the auditor read-only. After a few honest writes that build the
//! containers, a random run of 4 to 24 steps interleaves honest writes (alice's tasks and
//! notes, bob's notes, the admin publishing the roster again) with forgeries of every kind in
//! `trust.rs`' table (unsigned, a stranger's key, another agent's key, moved from another
//! document or space, replayed under another name, a truncated signature, outside the
//! grants, another agent's notes, the read-only agent, a non-admin's roster followed by a
//! write it would allow, a change built on an earlier forgery, an honest change re-sent in a
//! forged envelope). Three replicas read the space: one follows live from the start, one is
//! closed and reopened at two random steps (so it resumes mid-way from its store), one opens
//! after the last step. The property: every replica ends with the honest writers' document
//! exactly (the same JSON, the same heads), no forged path, and the same set of rejected
//! change hashes, which is exactly the set of forged changes.
//!
//! Cases are few (24 on the embedded log, 12 on JetStream; each publishes up to ~60 events
//! and opens three replicas, about a tenth of a second): the suite runs on 2 cores in CI.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use blackboard::automerge::ChangeHash;
use blackboard::codec::encode_event;
use blackboard::doc::{DocCore, LocalChange};
use blackboard::log::{EmbeddedLog, EventLog, JetStreamLog};
use blackboard::replica::{Config, Replica};
use blackboard::schemas::{AgentId, DocumentId, Envelope, SpaceId};
use blackboard::trust::RosterEvent;
use blackboard_tests::{temp_dir, NatsServer};
use nkeys::KeyPair;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::json;

use crate::edit;
use crate::within;

/// How many forgery kinds [`Forgery::from`] knows.
const KINDS: u8 = 12;

/// One step of a case.
#[derive(Debug, Clone)]
enum Step {
    /// An honest write: 0 alice's task, 1 alice's note, 2 bob's note; 3 the admin publishes
    /// the same roster again.
    Honest(u8, u8),
    /// A forgery of kind `0..KINDS` (see [`Case::forge`]).
    Forge(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..4, any::<u8>()).prop_map(|(who, v)| Step::Honest(who, v)),
        (0u8..KINDS).prop_map(Step::Forge),
    ]
}

/// A case: the steps, and the two steps the restarted replica closes and reopens after.
fn scenario() -> impl Strategy<Value = (Vec<Step>, usize, usize)> {
    prop::collection::vec(step(), 4..24).prop_flat_map(|steps| {
        let n = steps.len();
        (Just(steps), 0..n)
            .prop_flat_map(move |(steps, close)| (Just(steps), Just(close), close..n))
    })
}

struct Keys {
    admin: KeyPair,
    alice: KeyPair,
    bob: KeyPair,
    auditor: KeyPair,
    mallory: KeyPair,
    stranger: KeyPair,
}

/// The state of one case: the log, the honest document, what was forged.
struct Case {
    log: Arc<dyn EventLog>,
    space: SpaceId,
    keys: Keys,
    honest: DocCore,
    /// The last forged document, for a forgery built on an earlier one.
    forged_fork: Option<DocCore>,
    /// The last honest change, for re-sending it in a forged envelope.
    last_honest: Option<LocalChange>,
    forged_hashes: BTreeSet<ChangeHash>,
    forged_paths: Vec<String>,
    n: u64,
    last_seq: u64,
}

fn doc() -> DocumentId {
    "plan".parse().unwrap()
}

impl Case {
    fn roster_body(&self) -> String {
        let k = &self.keys;
        json!({
            "admins": [k.admin.public_key()],
            "agents": {
                "alice": {"keys": [k.alice.public_key()], "write": ["/tasks/**", "/notes/{agent}/**"]},
                "bob": {"keys": [k.bob.public_key()], "write": ["/notes/{agent}/**"]},
                "auditor": {"keys": [k.auditor.public_key()], "write": []},
            }
        })
        .to_string()
    }

    async fn roster(&mut self, body: String, key: &KeyPair) {
        self.n += 1;
        let ev = RosterEvent::sign(&self.space, self.n as i64, body, key).unwrap();
        let id = format!("roster-{}", self.n);
        let p = self
            .log
            .publish_roster(&self.space, &id, ev.encode().into());
        self.last_seq = p.await.unwrap().seq;
    }

    async fn publish(&mut self, env: &Envelope) {
        self.n += 1;
        let id = format!("{}:{}", env.change_hash, self.n);
        let d = doc();
        let p = self.log.publish(&self.space, &d, &id, env.encode().into());
        self.last_seq = p.await.unwrap().seq;
    }

    fn envelope(&self, agent: &str, change: &LocalChange, key: Option<&KeyPair>) -> Envelope {
        let agent: AgentId = agent.parse().unwrap();
        let mut env = encode_event(&self.space, &doc(), &agent, change, 1, None);
        if let Some(key) = key {
            env.sign(key).unwrap();
        }
        env
    }

    /// An honest write by `agent` (signed with its key), its containers first.
    async fn honest_write(&mut self, agent: &str, path: &str, value: serde_json::Value) {
        let key = match agent {
            "alice" => self.keys.alice.clone(),
            _ => self.keys.bob.clone(),
        };
        for c in edit(&mut self.honest, path, value) {
            let env = self.envelope(agent, &c, Some(&key));
            self.publish(&env).await;
            self.last_honest = Some(c);
        }
    }

    /// A forged change writing `path` on a copy of the honest document (or, with `on_forged`,
    /// of the last forged one); remembered as forged.
    fn forged_change(&mut self, path: String, on_forged: bool) -> LocalChange {
        let base = match (&self.forged_fork, on_forged) {
            (Some(f), true) => f,
            _ => &self.honest,
        };
        let mut fork = base.fork_at(&base.heads()).unwrap();
        let change = edit(&mut fork, &path, json!("forged")).pop().unwrap();
        self.forged_fork = Some(fork);
        self.forged_hashes.insert(change.hash);
        self.forged_paths.push(path);
        change
    }

    /// Publishes forgery `kind` (the `i`-th step, for a fresh path).
    async fn forge(&mut self, kind: u8, i: usize) {
        let alice = self.keys.alice.clone();
        let bob = self.keys.bob.clone();
        match kind {
            0 => {
                let c = self.forged_change(format!("/tasks/f{i}"), false);
                let env = self.envelope("alice", &c, None);
                self.publish(&env).await;
            }
            1 => {
                let c = self.forged_change(format!("/tasks/f{i}"), false);
                let env = self.envelope("alice", &c, Some(&self.keys.stranger));
                self.publish(&env).await;
            }
            2 => {
                let c = self.forged_change(format!("/tasks/f{i}"), false);
                let env = self.envelope("alice", &c, Some(&bob));
                self.publish(&env).await;
            }
            3 | 4 => {
                let c = self.forged_change(format!("/tasks/f{i}"), false);
                let (space, document) = match kind {
                    3 => (self.space.clone(), "other".parse().unwrap()),
                    _ => ("elsewhere".parse().unwrap(), doc()),
                };
                let agent = "alice".parse().unwrap();
                let mut moved = encode_event(&space, &document, &agent, &c, 1, None);
                moved.sign(&alice).unwrap();
                moved.space = self.space.clone();
                moved.document = doc();
                self.publish(&moved).await;
            }
            5 => {
                let c = self.forged_change(format!("/notes/bob/f{i}"), false);
                let mut renamed = self.envelope("alice", &c, Some(&alice));
                renamed.agent = "bob".parse().unwrap();
                self.publish(&renamed).await;
            }
            6 => {
                let c = self.forged_change(format!("/tasks/f{i}"), false);
                let mut cut = self.envelope("alice", &c, Some(&alice));
                let sig = cut.signature.take().unwrap();
                cut.signature = Some(sig[..sig.len() / 2].to_owned());
                self.publish(&cut).await;
            }
            7 => {
                let c = self.forged_change(format!("/tasks/f{i}"), false);
                let env = self.envelope("bob", &c, Some(&bob));
                self.publish(&env).await;
            }
            8 => {
                let c = self.forged_change(format!("/notes/alice/f{i}"), false);
                let env = self.envelope("bob", &c, Some(&bob));
                self.publish(&env).await;
            }
            9 => {
                let c = self.forged_change(format!("/notes/auditor/f{i}"), false);
                let env = self.envelope("auditor", &c, Some(&self.keys.auditor));
                self.publish(&env).await;
            }
            10 => {
                let mallory = self.keys.mallory.clone();
                let coup = json!({
                    "admins": [mallory.public_key()],
                    "agents": {"mallory": {"keys": [mallory.public_key()], "write": ["/**"]}}
                });
                self.roster(coup.to_string(), &mallory).await;
                let c = self.forged_change(format!("/tasks/f{i}"), false);
                let env = self.envelope("mallory", &c, Some(&mallory));
                self.publish(&env).await;
            }
            11 => {
                // Properly signed, but built on an earlier forgery (or on the honest document
                // when there was none: then it is only outside bob's grants).
                let c = self.forged_change(format!("/tasks/f{i}"), true);
                let env = self.envelope("bob", &c, Some(&bob));
                self.publish(&env).await;
            }
            _ => {
                // An honest change the document already holds, re-sent as someone else: it
                // is rejected, but the document holds the change anyway, so it is not one of
                // the changes the replica rejected.
                let Some(c) = self.last_honest.clone() else {
                    return;
                };
                let env = self.envelope("mallory", &c, Some(&self.keys.mallory));
                self.publish(&env).await;
            }
        }
    }
}

/// Runs one case on `log` in space `space`; panics when the property fails.
async fn run_case(
    log: Arc<dyn EventLog>,
    space: SpaceId,
    steps: &[Step],
    close: usize,
    reopen: usize,
) {
    let dir = temp_dir();
    let db = sled::open(dir.path()).unwrap();
    let observe = |name: &str| {
        let config = Config::new(space.clone(), doc(), name.parse().unwrap());
        Replica::open(log.clone(), &db, config).unwrap()
    };
    let live = observe("live");
    let mut restarted = Some(observe("restarted"));
    let mut case = Case {
        log: log.clone(),
        space: space.clone(),
        keys: Keys {
            admin: KeyPair::new_user(),
            alice: KeyPair::new_user(),
            bob: KeyPair::new_user(),
            auditor: KeyPair::new_user(),
            mallory: KeyPair::new_user(),
            stranger: KeyPair::new_user(),
        },
        honest: DocCore::new(),
        forged_fork: None,
        last_honest: None,
        forged_hashes: BTreeSet::new(),
        forged_paths: Vec::new(),
        n: 0,
        last_seq: 0,
    };
    let admin = case.keys.admin.clone();
    case.roster(case.roster_body(), &admin).await;
    case.honest_write("alice", "/tasks/start", json!(0)).await;
    case.honest_write("alice", "/notes/alice/start", json!(0))
        .await;
    case.honest_write("bob", "/notes/bob/start", json!(0)).await;
    for (i, step) in steps.iter().enumerate() {
        match *step {
            Step::Honest(0, v) => {
                case.honest_write("alice", &format!("/tasks/t{i}"), json!(v))
                    .await
            }
            Step::Honest(1, v) => {
                case.honest_write("alice", &format!("/notes/alice/n{i}"), json!(v))
                    .await
            }
            Step::Honest(2, v) => {
                case.honest_write("bob", &format!("/notes/bob/n{i}"), json!(v))
                    .await
            }
            Step::Honest(..) => case.roster(case.roster_body(), &admin).await,
            Step::Forge(kind) => case.forge(kind, i).await,
        }
        if i == close {
            if let Some(r) = restarted.take() {
                r.close().await.unwrap();
            }
        }
        if i == reopen {
            restarted = Some(observe("restarted"));
        }
    }
    let restarted = restarted.expect("reopened at a step no later than the last");
    let late = observe("late");
    let want = case.honest.to_json();
    let mut rejected_sets = Vec::new();
    for (name, replica) in [("live", &live), ("restarted", &restarted), ("late", &late)] {
        within("every event", replica.wait_for_position(case.last_seq))
            .await
            .unwrap();
        assert_eq!(
            replica.to_json(),
            want,
            "{name}: the honest document exactly"
        );
        assert_eq!(
            replica.heads(),
            case.honest.heads(),
            "{name}: the honest heads"
        );
        for path in &case.forged_paths {
            assert_eq!(
                replica.get(path).unwrap(),
                None,
                "{name}: {path} was forged"
            );
        }
        rejected_sets.push((name, replica.rejected_changes()));
    }
    for (name, set) in &rejected_sets {
        assert_eq!(
            *set, case.forged_hashes,
            "{name}: the rejected changes are exactly the forged ones"
        );
    }
    for r in [live, restarted, late] {
        r.close().await.unwrap();
    }
}

/// Runs the property on the logs `make` opens (one per case, in a fresh space).
fn property(
    rt: &tokio::runtime::Runtime,
    cases: u32,
    make: impl Fn(u64) -> (Arc<dyn EventLog>, SpaceId),
) {
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        // A failing case runs against a real log: shrinking is slow, so it is kept short.
        max_shrink_iters: 32,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let counter = AtomicU64::new(0);
    // Opening a log may spawn its tasks: on this runtime.
    let _entered = rt.enter();
    runner
        .run(&scenario(), |(steps, close, reopen)| {
            let (log, space) = make(counter.fetch_add(1, Ordering::Relaxed));
            rt.block_on(run_case(log, space, &steps, close, reopen));
            Ok(())
        })
        .unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn on_the_embedded_log_honest_replicas_agree_with_a_forger_among_them() {
    let dirs = std::sync::Mutex::new(Vec::new());
    property(&runtime(), 24, |_| {
        let dir = temp_dir();
        let log = Arc::new(EmbeddedLog::open(sled::open(dir.path()).unwrap()).unwrap());
        dirs.lock().unwrap().push(dir);
        (log, "team".parse().unwrap())
    });
}

#[test]
fn on_jetstream_honest_replicas_agree_with_a_forger_among_them() {
    let rt = runtime();
    let server = rt.block_on(NatsServer::start()).unwrap();
    property(&rt, 12, |n| {
        let client = rt.block_on(server.connect()).unwrap();
        let log = Arc::new(JetStreamLog::new(client, Default::default()));
        (log, format!("team{n}").parse().unwrap())
    });
}
