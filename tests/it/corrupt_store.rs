//! A damaged local store (issue 14 §1): real sled stores on disk, damaged the ways files get
//! damaged (truncated, bytes flipped, files deleted), reopened through the SDK against a real
//! nats-server. Never a panic; either a clear error saying what only the store held and how
//! to recover, or a store that opens with every loss named; and everything the log has comes
//! back.

use blackboard::store::StoreError;
use blackboard_client::{Error, Options};
use blackboard_tests::damage::{damage, Damage};
use blackboard_tests::{temp_dir, NatsServer};
use serde_json::json;

use crate::within;

/// Writes acknowledged by the log before the damage.
const ONLINE: usize = 5;
/// Writes made while the server was down: only in the store.
const OFFLINE: usize = 40;

/// Writes `ONLINE` acknowledged and `OFFLINE` unpublished changes through the SDK, closes
/// the board, damages the store, restarts the server and reopens. Checks the promise and
/// says what happened.
async fn run(server: &mut NatsServer, how: Damage, space: &str) -> String {
    let dir = temp_dir();
    let store = dir.path().join("agent");
    {
        let board = Options::new("agent")
            .unwrap()
            .store(&store)
            .connect(&server.url())
            .await
            .unwrap();
        let doc = board.doc(space, "plan").unwrap();
        for i in 0..ONLINE {
            doc.put(&format!("/online/{i}"), json!(i)).await.unwrap();
        }
        // The map the offline writes go into exists and is on the log, so each offline write
        // is exactly one change (a first write into it would also create it: one more).
        doc.put("/offline/ready", json!(true)).await.unwrap();
        within("the online writes to be acknowledged", doc.flush())
            .await
            .unwrap();
        server.stop().await;
        for i in 0..OFFLINE {
            // Returned Ok: durable in the local store, not on the log.
            doc.put(&format!("/offline/{i}"), json!(i)).await.unwrap();
        }
        assert_eq!(doc.pending(), OFFLINE);
        drop(doc);
        board.close().await.unwrap();
    }
    eprintln!(
        "SEAL before {how:?}: {:?}",
        std::fs::read_to_string(store.join("blackboard.seal"))
    );
    damage(&store, how);
    server.restart().await.unwrap();

    let opened = Options::new("agent")
        .unwrap()
        .store(&store)
        .connect(&server.url())
        .await;
    let board = match opened {
        Ok(board) => board,
        Err(Error::DamagedStore(e)) => {
            let text = e.to_string();
            assert!(matches!(e, StoreError::Unopenable { .. }), "{text}");
            assert!(text.contains("move the directory aside"), "{text}");
            // The seal knew the offline writes were only in this store, and says so.
            assert!(
                text.contains(&format!("{OFFLINE} local write(s)")),
                "the error names the unpublished writes: {text}"
            );
            // Recovering as the error says: the log gives back what it has.
            std::fs::rename(&store, dir.path().join("agent.damaged")).unwrap();
            let board = Options::new("agent")
                .unwrap()
                .store(&store)
                .connect(&server.url())
                .await
                .unwrap();
            let doc = board.doc(space, "plan").unwrap();
            within("the rebuilt store to catch up", doc.replica().sync())
                .await
                .unwrap();
            for i in 0..ONLINE {
                assert_eq!(doc.get(&format!("/online/{i}")).unwrap(), Some(json!(i)));
            }
            return format!("refused: {text}");
        }
        Err(e) => panic!("{how:?}: opening failed with an unexpected error: {e}"),
    };
    let doc = board.doc(space, "plan").unwrap();
    let stats = doc.replica().stats();
    within("the outbox to drain", doc.flush()).await.unwrap();
    within("the replica to catch up", doc.replica().sync())
        .await
        .unwrap();
    // Everything the log had is back.
    for i in 0..ONLINE {
        assert_eq!(
            doc.get(&format!("/online/{i}")).unwrap(),
            Some(json!(i)),
            "{how:?}: acknowledged write {i} is back from the log"
        );
    }
    // Every write that returned Ok is in the document, or its loss was reported.
    let offline_present = (0..OFFLINE)
        .filter(|i| doc.get(&format!("/offline/{i}")).unwrap().is_some())
        .count();
    let lost_reported = stats
        .store_loss
        .as_ref()
        .map_or(0, |l| l.unpublished_count());
    assert_eq!(
        offline_present as u64 + lost_reported,
        OFFLINE as u64,
        "{how:?}: {offline_present} offline writes present, {lost_reported} reported lost \
         ({:?})",
        stats.store_loss
    );
    board.close().await.unwrap();
    format!("opened: {offline_present} offline writes present, {lost_reported} reported lost")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_never_panics_and_every_lost_write_is_named_or_recovered_from_the_log() {
    blackboard_tests::init_tracing();
    let mut server = NatsServer::start().await.unwrap();
    let kinds = [
        Damage::TruncateDbToHalf,
        Damage::FlipBytesInTheMiddleOfDb,
        Damage::DeleteSnapshotFiles,
        Damage::DeleteConf,
        Damage::DeleteBlobs,
        Damage::DeleteSnapshotsAndTruncateDb,
        Damage::TruncateDbToAQuarter,
        Damage::EmptyDb,
        Damage::FlipBytesAtTheStartOfDb,
        Damage::GarbageConf,
    ];
    for (i, how) in kinds.into_iter().enumerate() {
        let outcome = run(&mut server, how, &format!("damage-{i}")).await;
        // The figures for NOTES-integrity.md.
        eprintln!("OUTCOME {how:?}: {outcome}");
    }
}
