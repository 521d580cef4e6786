//! Snapshots in a space with a roster (issue 15): a replica loads only a snapshot signed by
//! a key the roster trusts with snapshots (an admin's, or an agent's listed with
//! `"snapshots": true`); a forged or unsigned one is ignored, counted, and the replica
//! follows the log instead, ending with the honest document. On both logs.

use std::sync::Arc;

use blackboard::codec::Stamp;
use blackboard::doc::{Edit, Path};
use blackboard::history::{HistoryError, Snapshot};
use blackboard::log::{EmbeddedLog, EventLog, JetStreamLog, SnapshotInfo};
use blackboard::replica::{Config, Replica, SnapshotPolicy};
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

async fn only_snapshots_the_roster_trusts_are_loaded(log: Arc<dyn EventLog>) {
    let dir = temp_dir();
    let db = sled::open(dir.path()).unwrap();
    let (admin, alice, bob, archivist) = (
        KeyPair::new_user(),
        KeyPair::new_user(),
        KeyPair::new_user(),
        KeyPair::new_user(),
    );
    let open = |name: &str, key: Option<&KeyPair>| {
        let mut config = Config::new(space(), doc(), name.parse().unwrap());
        config.snapshots = SnapshotPolicy::manual();
        config.stamp = Stamp {
            key: key.map(|k| Arc::new(KeyPair::from_seed(&k.seed().unwrap()).unwrap())),
            provenance: None,
        };
        Replica::open(log.clone(), &db, config).unwrap()
    };
    let roster = json!({
        "admins": [admin.public_key()],
        "agents": {
            "alice": {"keys": [alice.public_key()], "write": ["/tasks/**"]},
            "bob": {"keys": [bob.public_key()], "write": ["/notes/{agent}/**"]},
            "archivist": {"keys": [archivist.public_key()], "write": [], "snapshots": true},
        }
    });
    let ev = RosterEvent::sign(&space(), 1, roster.to_string(), &admin).unwrap();
    let s = space();
    let genesis = log.publish_roster(&s, "genesis", ev.encode().into());
    let genesis = genesis.await.unwrap().seq;

    let writer = open("alice", Some(&alice));
    within("the roster", writer.wait_for_position(genesis))
        .await
        .unwrap();
    writer.put("/tasks/a", json!("alice's")).await.unwrap();
    writer.put("/tasks/b", json!(2)).await.unwrap();
    writer.flush().await.unwrap();
    let last = within("the log", writer.sync()).await.unwrap();
    let honest = writer.to_json();

    // Alice may write, but not snapshots: her replica refuses to write one no replica would
    // load, naming why, and nothing is stored.
    let err = writer.snapshot().await.unwrap_err();
    assert!(
        matches!(
            &err,
            blackboard::Error::History(HistoryError::NotAllowed(_))
        ),
        "{err}"
    );
    assert!(err.to_string().contains("snapshots"), "{err}");
    let (s, d) = (space(), doc());
    assert_eq!(log.snapshot_info(&s, &d).await.unwrap(), None);

    // Forged snapshots: the honest document plus a forged value, signed by bob (listed, but
    // not trusted with snapshots), and the same unsigned.
    let mut forged = writer.read(|c| c.fork_at(&c.heads())).unwrap();
    let path: Path = "/tasks/a".parse().unwrap();
    forged
        .edit(1, None, false, &[Edit::put(path, json!("forged"))])
        .unwrap();
    let records = writer.records(0, last).unwrap();
    let mut by_bob = Snapshot {
        seq: last,
        records,
        document: forged.save(),
        signature: None,
    };
    let unsigned = by_bob.clone();
    by_bob.sign(&space(), &doc(), &bob).unwrap();
    for (i, (what, snapshot)) in [("bob's", by_bob), ("unsigned", unsigned)]
        .into_iter()
        .enumerate()
    {
        let bytes = snapshot.encode();
        let info = SnapshotInfo {
            seq: last,
            trimmed_through: 0,
            size: bytes.len() as u64,
        };
        log.put_snapshot(&s, &d, info, bytes.into()).await.unwrap();
        let reader = open(&format!("reader{i}"), None);
        within("the reader", reader.wait_for_position(last))
            .await
            .unwrap();
        let stats = reader.stats();
        assert_eq!(stats.snapshots_refused, 1, "{what}: {stats:?}");
        assert_eq!(stats.snapshot_loaded, None, "{what}");
        assert_eq!(reader.to_json(), honest, "{what}: nothing forged");
        assert_eq!(reader.heads(), writer.heads(), "{what}");
        reader.close().await.unwrap();
    }

    // Honest snapshots: the archivist's (trusted with snapshots), then an admin's, each
    // loaded by a new replica.
    for (name, key) in [("archivist", &archivist), ("admin", &admin)] {
        let snapshotter = open(name, Some(key));
        within("the snapshotter", snapshotter.wait_for_position(last))
            .await
            .unwrap();
        let info = snapshotter.snapshot().await.unwrap();
        assert_eq!(info.seq, last, "{name}: written over the forged one");
        snapshotter.close().await.unwrap();
        let reader = open(&format!("after-{name}"), None);
        within("the reader", reader.wait_for_position(last))
            .await
            .unwrap();
        let stats = reader.stats();
        assert_eq!(stats.snapshot_loaded, Some(last), "{name}: {stats:?}");
        assert_eq!(stats.snapshots_refused, 0, "{name}");
        assert_eq!(reader.to_json(), honest, "{name}");
        reader.close().await.unwrap();
    }
    writer.close().await.unwrap();
}

#[tokio::test]
async fn embedded_log_a_snapshot_forged_by_a_non_admin_is_not_loaded_and_a_trusted_one_is() {
    let dir = temp_dir();
    let log = Arc::new(EmbeddedLog::open(sled::open(dir.path()).unwrap()).unwrap());
    only_snapshots_the_roster_trusts_are_loaded(log).await;
}

#[tokio::test]
async fn jetstream_log_a_snapshot_forged_by_a_non_admin_is_not_loaded_and_a_trusted_one_is() {
    let server = NatsServer::start().await.unwrap();
    let client = server.connect().await.unwrap();
    let log = Arc::new(JetStreamLog::new(client, Default::default()));
    only_snapshots_the_roster_trusts_are_loaded(log).await;
}
