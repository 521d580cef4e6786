//! Known limits of issue 15 that are closed: a forger can no longer occupy the message id of
//! an honest container creation (its bytes depend only on the place, so anyone can publish
//! them first); a fresh replica that syncs knows the roster before it writes. On both logs.

use std::sync::Arc;

use blackboard::codec::{encode_event, Stamp};
use blackboard::doc::{DocCore, Edit, Path};
use blackboard::log::{EmbeddedLog, EventLog, JetStreamLog};
use blackboard::replica::{Config, Replica};
use blackboard::schemas::{DocumentId, SpaceId};
use blackboard::trust::RosterEvent;
use blackboard_tests::{temp_dir, NatsServer};
use nkeys::KeyPair;
use serde_json::json;

use crate::within;

fn space() -> SpaceId {
    "team".parse().unwrap()
}

fn doc() -> DocumentId {
    "plan".parse().unwrap()
}

async fn a_forger_cannot_occupy_an_honest_container_creation(log: Arc<dyn EventLog>) {
    let dir = temp_dir();
    let db = sled::open(dir.path()).unwrap();
    let (admin, alice, mallory) = (
        KeyPair::new_user(),
        KeyPair::new_user(),
        KeyPair::new_user(),
    );
    let roster = json!({
        "admins": [admin.public_key()],
        "agents": {"alice": {"keys": [alice.public_key()], "write": ["/tasks/**"]}}
    });
    let ev = RosterEvent::sign(&space(), 1, roster.to_string(), &admin).unwrap();
    let (s, d) = (space(), doc());
    log.publish_roster(&s, "genesis", ev.encode().into())
        .await
        .unwrap();

    // The forger publishes the creation of /tasks (the recipe's bytes, the same for
    // everyone) first, under the id an unsigned creation of it would have.
    let mut empty = DocCore::new();
    let path: Path = "/tasks/x".parse().unwrap();
    let made = empty
        .edit(1, None, false, &[Edit::put(path, json!(0))])
        .unwrap();
    let (creation, _) = made
        .created
        .first()
        .expect("/tasks is created by the recipe");
    let mut env = encode_event(
        &space(),
        &doc(),
        &"mallory".parse().unwrap(),
        creation,
        1,
        None,
    );
    env.sign(&mallory).unwrap();
    let id = format!("{}:{}", creation.hash, doc());
    let forged = log.publish(&s, &d, &id, env.encode().into());
    let forged = forged.await.unwrap().seq;

    // Alice writes below /tasks: her replica creates it by the recipe too.
    let mut config = Config::new(space(), doc(), "alice".parse().unwrap());
    config.stamp = Stamp {
        key: Some(Arc::new(alice)),
        provenance: None,
    };
    let writer = Replica::open(log.clone(), &db, config).unwrap();
    within("the forgery", writer.wait_for_position(forged))
        .await
        .unwrap();
    assert_eq!(
        writer.untrusted().len(),
        1,
        "the forged creation is rejected"
    );
    writer.put("/tasks/x", json!("alice's")).await.unwrap();
    writer.flush().await.unwrap();
    let last = log.last_seq(&s, &d).await.unwrap();

    // Every replica has her write: her creation was published, not dropped as a duplicate.
    let config = Config::new(space(), doc(), "reader".parse().unwrap());
    let reader = Replica::open(log.clone(), &db, config).unwrap();
    within("the log", reader.wait_for_position(last))
        .await
        .unwrap();
    assert_eq!(reader.get("/tasks/x").unwrap(), Some(json!("alice's")));
    assert_eq!(reader.heads(), writer.heads());
    assert_eq!(
        reader.untrusted().len(),
        1,
        "only the forgery: {:?}",
        reader.untrusted()
    );
}

#[tokio::test]
async fn embedded_log_a_forger_publishing_a_container_creation_first_does_not_drop_the_honest_one()
{
    let dir = temp_dir();
    let log = Arc::new(EmbeddedLog::open(sled::open(dir.path()).unwrap()).unwrap());
    a_forger_cannot_occupy_an_honest_container_creation(log).await;
}

#[tokio::test]
async fn jetstream_log_a_forger_publishing_a_container_creation_first_does_not_drop_the_honest_one()
{
    let server = NatsServer::start().await.unwrap();
    let client = server.connect().await.unwrap();
    let log = Arc::new(JetStreamLog::new(client, Default::default()));
    a_forger_cannot_occupy_an_honest_container_creation(log).await;
}

/// A fresh replica that syncs before writing judges its write against the roster in force:
/// `sync` waits for the space's roster events too, not only the document's, so a write every
/// replica would reject is refused before it is published.
async fn a_synced_fresh_replica_knows_the_roster_before_it_writes(log: Arc<dyn EventLog>) {
    let dir = temp_dir();
    let db = sled::open(dir.path()).unwrap();
    let admin = KeyPair::new_user();
    let roster = json!({
        "admins": [admin.public_key()],
        "agents": {"alice": {"keys": [KeyPair::new_user().public_key()], "write": ["/**"]}}
    });
    let ev = RosterEvent::sign(&space(), 1, roster.to_string(), &admin).unwrap();
    let (s, d) = (space(), doc());
    let genesis = log.publish_roster(&s, "genesis", ev.encode().into());
    let genesis = genesis.await.unwrap().seq;
    // The document has no event: its own last position is 0, below the roster's.
    assert_eq!(log.last_seq(&s, &d).await.unwrap(), 0);

    let config = Config::new(space(), doc(), "cli".parse().unwrap());
    let fresh = Replica::open(log.clone(), &db, config).unwrap();
    let synced = within("sync", fresh.sync()).await.unwrap();
    assert_eq!(synced, genesis, "sync reaches the roster");
    assert!(fresh.roster().is_some());
    let err = fresh.put("/x", json!(1)).await.unwrap_err();
    assert!(
        matches!(&err, blackboard::Error::Untrusted(_)),
        "refused before it is published: {err}"
    );
    fresh.flush().await.unwrap();
    assert_eq!(log.last_seq(&s, &d).await.unwrap(), 0, "nothing published");
}

#[tokio::test]
async fn embedded_log_a_synced_fresh_replica_refuses_a_write_the_roster_on_the_log_forbids() {
    let dir = temp_dir();
    let log = Arc::new(EmbeddedLog::open(sled::open(dir.path()).unwrap()).unwrap());
    a_synced_fresh_replica_knows_the_roster_before_it_writes(log).await;
}

#[tokio::test]
async fn jetstream_log_a_synced_fresh_replica_refuses_a_write_the_roster_on_the_log_forbids() {
    let server = NatsServer::start().await.unwrap();
    let client = server.connect().await.unwrap();
    let log = Arc::new(JetStreamLog::new(client, Default::default()));
    a_synced_fresh_replica_knows_the_roster_before_it_writes(log).await;
}
