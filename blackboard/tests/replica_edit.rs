//! The replica's write path for edits: container creations and the write are stored together,
//! and a refused write takes its creations back with it.

use std::sync::Arc;

use blackboard::doc::Edit;
use blackboard::log::EmbeddedLog;
use blackboard::replica::{Config, Replica};
use blackboard::Error;
use serde_json::json;

fn open(dir: &std::path::Path) -> Replica {
    // sled releases its directory lock when the last handle's pagecache is dropped, which
    // crossbeam's epoch reclamation may defer to another thread for a moment after a close:
    // reopening at once can find it still locked. Wait for the lock (bounded), as a process
    // restarting on the directory would.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let db = loop {
        match sled::open(dir) {
            Ok(db) => break db,
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::yield_now();
            }
            Err(e) => panic!("opening the store: {e}"),
        }
    };
    let log = Arc::new(EmbeddedLog::open(db.clone()).unwrap());
    let config = Config::new(
        "team".parse().unwrap(),
        "plan".parse().unwrap(),
        "me".parse().unwrap(),
    );
    Replica::open(log, &db, config).unwrap()
}

#[tokio::test]
async fn a_write_too_large_for_the_log_takes_its_container_creations_back() {
    let dir = tempfile::tempdir().unwrap();
    let doc = open(dir.path());
    let before = doc.heads();
    let big = "x".repeat(2 * 1024 * 1024);
    let err = doc
        .edit(None, &[Edit::put("/new/big".parse().unwrap(), json!(big))])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert_eq!(
        doc.heads(),
        before,
        "the creation of /new was taken back too"
    );
    assert_eq!(doc.get("/new").unwrap(), None);
    assert_eq!(doc.pending(), 0, "nothing was queued");

    let written = doc
        .edit(None, &[Edit::put("/new/small".parse().unwrap(), json!(1))])
        .await
        .unwrap();
    assert_eq!(written.created.len(), 1, "/new is created now");
    doc.flush().await.unwrap();
    doc.sync().await.unwrap();
    assert_eq!(doc.get("/new").unwrap(), Some(json!({"small": 1})));
    // On the log: the creation, then the write, in that order.
    let logged: Vec<_> = doc
        .history(&Default::default())
        .unwrap()
        .into_iter()
        .map(|e| e.record.hash)
        .collect();
    assert_eq!(logged, [written.created[0], written.hash.unwrap()]);
}

#[tokio::test]
async fn creations_and_writes_survive_a_reopening_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let doc = open(dir.path());
        doc.edit(
            Some("counting"),
            &[
                Edit::Increment {
                    path: "/stats/runs".parse().unwrap(),
                    by: 2,
                },
                Edit::Append {
                    path: "/log".parse().unwrap(),
                    value: json!("started"),
                },
            ],
        )
        .await
        .unwrap();
        doc.close().await.unwrap();
    }
    let doc = open(dir.path());
    assert_eq!(
        doc.to_json(),
        json!({"stats": {"runs": 2}, "log": ["started"]})
    );
}
