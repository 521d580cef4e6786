//! `blackboard get` on a damaged embedded `--store` (issue 14 §1): the embedded log is kept
//! in the same sled database as the replicas, so that store is the only copy of its events.
//! Whatever the damage, the command does not show part of the document as if it were all of
//! it: it fails naming the damage (exit 1), or it answers and exits 4, saying on stderr which
//! events are gone and that they had no other copy, on that run and every later one.

use std::path::Path;
use std::process::Command;

use blackboard_client::Options;
use blackboard_tests::damage::{damage, Damage};
use serde_json::json;

const KEYS: usize = 60;

/// Runs `blackboard get` on the store: (exit status, stdout, stderr).
fn get(store: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_blackboard"))
        .env_remove("NATS_URL")
        .env_remove("NATS_CREDS")
        .args(["get", "--store"])
        .arg(store)
        .args(["--space", "team", "plan", "--json", "--timeout", "20"])
        .output()
        .expect("the blackboard binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An embedded store with `KEYS` keys written one change each, as an SDK application writes
/// it.
async fn write_store(store: &Path) {
    let board = Options::new("writer")
        .unwrap()
        .store(store)
        .embedded()
        .await
        .unwrap();
    let doc = board.doc("team", "plan").unwrap();
    for i in 0..KEYS {
        doc.put(&format!("/k{i}"), json!(i)).await.unwrap();
    }
    doc.flush().await.unwrap();
    drop(doc);
    board.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_on_a_damaged_embedded_store_fails_or_names_the_events_it_lost_as_the_only_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    write_store(&store).await;
    let (code, stdout, stderr) = get(&store);
    assert_eq!(code, Some(0), "the undamaged store reads: {stderr}");
    let whole: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(whole.as_object().unwrap().len(), KEYS);

    damage(&store, Damage::DeleteSnapshotsAndTruncateDb);
    let (code, stdout, stderr) = get(&store);
    assert!(
        !stderr.contains("panicked"),
        "no panic on a damaged store: {stderr}"
    );
    match code {
        Some(4) => {
            let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            let shown = shown.as_object().map_or(0, |m| m.len());
            // The damage cost events (else this test would prove nothing).
            assert!(shown < KEYS, "{shown} of {KEYS} keys after the damage");
            assert!(
                stderr.contains("store damaged")
                    && stderr.contains("embedded log lost events")
                    && stderr.contains("only copy"),
                "showing {shown} of {KEYS} keys, stderr must say which events are gone and \
                 that the store was their only copy: {stderr}"
            );
            // Not only on the run that found the damage: every answer lacks the events.
            let (again, _, stderr) = get(&store);
            assert_eq!(again, Some(4), "the next get says it too: {stderr}");
            assert!(stderr.contains("embedded log lost events"), "{stderr}");
            eprintln!("OUTCOME opened, showing {shown} of {KEYS} keys, exit 4; stderr: {stderr}");
        }
        Some(1) => {
            assert!(
                stderr.contains("damaged") && stderr.contains("only copy"),
                "the error names the damage and that the store was the log's only copy: \
                 {stderr}"
            );
            eprintln!("OUTCOME refused; stderr: {stderr}");
        }
        other => panic!(
            "a damaged store must fail (1) or answer with exit 4 naming the loss, not \
             {other:?}; stderr: {stderr}"
        ),
    }
}

/// Sets the store's format number with sled alone, as another version would leave it (the
/// key is the one `blackboard::store`'s module documentation names).
fn set_format(store: &Path, format: u64) {
    let db = sled::open(store).unwrap();
    db.insert(b"blackboard/format", &format.to_be_bytes())
        .unwrap();
    db.flush().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_on_a_store_of_a_newer_format_fails_naming_both_formats_and_leaves_it_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    write_store(&store).await;
    let later = blackboard::store::STORE_FORMAT + 1;
    set_format(&store, later);
    let (code, stdout, stderr) = get(&store);
    assert_eq!(code, Some(1), "stdout: {stdout}; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("written by a newer Blackboard")
            && stderr.contains(&format!(
                "store format {later}; this version reads up to {}",
                blackboard::store::STORE_FORMAT
            )),
        "the error names both formats: {stderr}"
    );
    assert!(stdout.is_empty(), "nothing shown: {stdout}");
    // Left as it was: back at this version's number, every key is there.
    set_format(&store, blackboard::store::STORE_FORMAT);
    let (code, stdout, stderr) = get(&store);
    assert_eq!(code, Some(0), "{stderr}");
    let whole: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(whole.as_object().unwrap().len(), KEYS);
}
