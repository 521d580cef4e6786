//! What reading and refused writes do on NATS: reading a space nobody has published to
//! creates nothing, and a publish the server's permissions refuse fails at once as a
//! permanent error, taken out of the outbox instead of being retried forever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use blackboard::log::{self, EventLog, JetStreamConfig, JetStreamLog};
use blackboard::replica::{Config, Replica, SnapshotPolicy};
use blackboard_tests::{temp_dir, NatsServer, Options};
use futures::StreamExt;
use serde_json::json;

use crate::within;

/// The names of every stream on the server (the snapshot buckets are streams too).
async fn stream_names(server: &NatsServer) -> Vec<String> {
    let js = jetstream::new(server.connect().await.unwrap());
    let mut names: Vec<String> = js
        .stream_names()
        .map(|n| n.unwrap())
        .collect::<Vec<_>>()
        .await;
    names.sort();
    names
}

#[tokio::test]
async fn reading_a_space_nobody_published_to_creates_no_stream_and_goes_live_once_one_is() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let log = JetStreamLog::new(server.connect().await.unwrap(), JetStreamConfig::default());
    let (space, doc) = ("ghost".parse().unwrap(), "plan".parse().unwrap());

    // Every read answers "nothing yet".
    assert_eq!(log.last_seq(&space, &doc).await.unwrap(), 0);
    assert!(log.list(&space).await.unwrap().is_empty());
    assert_eq!(log.snapshot_info(&space, &doc).await.unwrap(), None);
    assert!(log.get_snapshot(&space, &doc).await.unwrap().is_none());
    assert_eq!(log.trim(&space, &doc, 10).await.unwrap(), 0);
    let mut entries = log.subscribe(&space, &doc, 1).await.unwrap();
    let (last, mut documents) = log.documents(&space).await.unwrap();
    assert_eq!(last, 0);
    // A replica opened to read syncs to "nothing" (it checks the snapshot and the last
    // position, and subscribes).
    let dir = temp_dir();
    let db = sled::open(dir.path()).unwrap();
    let mut config = Config::new(space.clone(), doc.clone(), "reader".parse().unwrap());
    config.snapshots = SnapshotPolicy::manual();
    let reader = Replica::open(Arc::new(log.clone()), &db, config).unwrap();
    assert_eq!(within("sync", reader.sync()).await.unwrap(), 0);
    assert_eq!(reader.to_json(), json!({}));
    assert!(
        stream_names(&server).await.is_empty(),
        "reading created {:?}",
        stream_names(&server).await
    );

    // Publishing creates the stream, and the waiting readers go live from its start.
    let writer = JetStreamLog::new(server.connect().await.unwrap(), JetStreamConfig::default());
    let published = writer
        .publish(
            &space,
            &doc,
            "m1",
            bytes::Bytes::from_static(b"not an envelope"),
        )
        .await
        .unwrap();
    let entry = within("the first entry", entries.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.seq, published.seq);
    assert_eq!(&entry.payload[..], b"not an envelope");
    let named = within("the document", documents.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(named, doc);
    assert_eq!(stream_names(&server).await, ["BB_ghost"]);
}

/// A user that may do anything but publish events (`bb.>`); unauthenticated connections
/// (the harness's probe and `connect`) are the admin.
const USERS: &str = r#"
authorization {
  users = [
    { user: admin, password: admin }
    { user: writer, password: writer, permissions: { publish: { deny: ["bb.>"] } } }
  ]
}
no_auth_user: admin
"#;

#[tokio::test]
async fn a_publish_the_servers_permissions_refuse_fails_at_once_and_leaves_nothing_in_the_outbox() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start_with(Options::config(USERS))
        .await
        .unwrap();
    // A long acknowledgement timeout: the refusal must not wait for it.
    let ack_timeout = Duration::from_secs(30);
    let config = JetStreamConfig {
        ack_timeout,
        ..JetStreamConfig::default()
    };
    let options =
        async_nats::ConnectOptions::new().user_and_password("writer".into(), "writer".into());
    let log = JetStreamLog::connect(&server.url(), options, config)
        .await
        .unwrap();
    let (space, doc) = ("team".parse().unwrap(), "plan".parse().unwrap());

    let started = Instant::now();
    let err = within(
        "the refusal",
        log.publish(&space, &doc, "m1", bytes::Bytes::from_static(b"x")),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, log::Error::Denied(_)), "{err:?}");
    assert!(!err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("bb.team.doc.plan"),
        "the error names the refused subject: {err}"
    );
    assert!(
        started.elapsed() < ack_timeout / 2,
        "refused after {:?}, not at once",
        started.elapsed()
    );

    // A replica's flush reports it instead of waiting forever, and the refused change is
    // taken out of the outbox: retrying cannot fix a permission.
    let dir = temp_dir();
    let db = sled::open(dir.path()).unwrap();
    let mut config = Config::new(space, doc, "writer".parse().unwrap());
    config.snapshots = SnapshotPolicy::manual();
    let replica = Replica::open(Arc::new(log), &db, config).unwrap();
    replica.put("/k", json!(1)).await.unwrap();
    let err = within("flush to report the refusal", replica.flush())
        .await
        .unwrap_err();
    assert!(matches!(err, blackboard::Error::Publish(_)), "{err:?}");
    assert!(err.to_string().contains("refused access"), "{err}");
    assert!(err.to_string().contains("never be published"), "{err}");
    assert_eq!(replica.pending(), 0, "nothing left in the outbox to retry");
    assert_eq!(replica.stats().refused, 1);
    // Later writes are refused at once and change nothing.
    let before = replica.to_json();
    let err = replica.put("/k2", json!(2)).await.unwrap_err();
    assert!(matches!(err, blackboard::Error::WriteDenied(_)), "{err:?}");
    assert_eq!(replica.to_json(), before);
}
