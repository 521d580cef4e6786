//! kill -9, then damage, on real files (issue 14 §1): an SDK agent process (`fault_agent`)
//! writes tagged changes, first with the server up, then with it down (so its outbox holds
//! writes only its store has), and is killed with SIGKILL mid-write. Its store is then
//! damaged as files get damaged (truncated, bytes flipped, files deleted) and reopened
//! through the SDK with the server back. The open never panics; it either refuses the store
//! naming the damage and what only it held, or opens it with every lost write named
//! (`Stats::store_loss`); and every acknowledged write the log has comes back from the log.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

use blackboard_client::{Error, Options};
use blackboard_tests::checker::{read_stream, replica_tags};
use blackboard_tests::damage::{damage, Damage};
use blackboard_tests::{temp_dir, NatsServer};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::within;

const DOC: &str = "plan";
const AGENT: &str = "agent";

/// Acknowledged writes with the server up, then with it down, before the kill.
const ONLINE: usize = 15;
const OFFLINE: usize = 25;

/// Starts `fault_agent` on `store` (writing until killed); returns it and its stdout lines,
/// once it said it is ready.
async fn agent(
    server: &NatsServer,
    store: &Path,
    space: &str,
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fault_agent"))
        .arg(server.url())
        .arg(store)
        .args([AGENT, space, DOC, "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn fault_agent");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = within("the agent to start", lines.next_line())
        .await
        .unwrap();
    assert_eq!(ready.as_deref(), Some("ready"));
    (child, lines)
}

/// Reads `n` acknowledged tags from the agent's stdout into `acked`.
async fn take_acks(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    n: usize,
    acked: &mut BTreeSet<String>,
) {
    for _ in 0..n {
        let line = within("an ack from the agent", lines.next_line())
            .await
            .unwrap()
            .expect("the agent writes until killed");
        acked.insert(line.strip_prefix("ack ").expect("an ack line").to_owned());
    }
}

/// One round: write online and offline, kill -9, damage, restart the server, reopen.
/// Returns what happened, for the test's output.
async fn round(server: &mut NatsServer, how: Damage, space: &str) -> String {
    let dir = temp_dir();
    let store = dir.path().join("store");
    let mut acked = BTreeSet::new();
    let (mut child, mut lines) = agent(server, &store, space).await;
    take_acks(&mut lines, ONLINE, &mut acked).await;
    server.kill().await;
    take_acks(&mut lines, OFFLINE, &mut acked).await;
    child.start_kill().unwrap();
    within("the agent to die", child.wait()).await.unwrap();
    // Whatever it printed before dying was acknowledged too.
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(tag) = line.strip_prefix("ack ") {
            acked.insert(tag.to_owned());
        }
    }
    damage(&store, how);
    server.restart().await.unwrap();
    let on_log: BTreeSet<String> = read_stream(server.connect().await.unwrap(), space, DOC)
        .await
        .unwrap()
        .tags();
    let only_in_store = acked.difference(&on_log).count();
    assert!(
        only_in_store > 0,
        "{how:?}: the outbox held writes (else this proves nothing)"
    );

    // The next open: no panic (a panic fails this test), an error or a store.
    let opened = Options::new(AGENT)
        .unwrap()
        .store(&store)
        .connect(&server.url())
        .await;
    let (board, outcome) = match opened {
        Ok(board) => (board, None),
        Err(Error::DamagedStore(e)) => {
            let text = e.to_string();
            assert!(
                text.contains("not yet acknowledged") && text.contains("move"),
                "{how:?}: the refusal names what only the store held and how to recover: {text}"
            );
            // Recovering as the error says: the store moved aside, a new one rebuilds from
            // the log.
            std::fs::rename(&store, dir.path().join("aside")).unwrap();
            let board = Options::new(AGENT)
                .unwrap()
                .store(&store)
                .connect(&server.url())
                .await
                .unwrap();
            (board, Some(format!("refused ({text})")))
        }
        Err(e) => panic!("{how:?}: an unexpected error: {e}"),
    };
    let doc = board.doc(space, DOC).unwrap();
    within("the reopened agent's sync", doc.sync())
        .await
        .unwrap();
    within("the reopened agent's flush", doc.flush())
        .await
        .unwrap();
    within("the reopened agent's sync", doc.sync())
        .await
        .unwrap();
    let present = replica_tags(&doc.to_json());
    // Every acknowledged write the log has is back.
    let missing_from_log: Vec<_> = on_log.difference(&present).collect();
    assert!(
        missing_from_log.is_empty(),
        "{how:?}: {missing_from_log:?} not back from the log"
    );
    // Every acknowledged write that is gone is named: counted as lost by the open.
    let gone: BTreeSet<_> = acked.difference(&present).cloned().collect();
    let named = doc.stats().store_loss.map_or(0, |l| l.unpublished_count());
    let outcome = outcome.unwrap_or_else(|| {
        assert!(
            gone.len() as u64 <= named,
            "{how:?}: {} acknowledged writes gone, {named} named lost: {gone:?}",
            gone.len()
        );
        format!("opened, {named} named lost")
    });
    drop(doc);
    board.close().await.unwrap();
    format!(
        "{how:?}: {} acknowledged ({} only in the store), {} back, {} gone; {outcome}",
        acked.len(),
        only_in_store,
        acked.len() - gone.len(),
        gone.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_write_then_its_store_damaged_reopens_naming_what_it_lost() {
    blackboard_tests::init_tracing();
    let mut server = NatsServer::start().await.unwrap();
    let mut report = Vec::new();
    for (i, how) in [
        Damage::TruncateDbToHalf,
        Damage::FlipBytesInTheMiddleOfDb,
        Damage::DeleteSnapshotsAndTruncateDb,
        Damage::DeleteConf,
    ]
    .into_iter()
    .enumerate()
    {
        report.push(round(&mut server, how, &format!("kd{i}")).await);
    }
    eprintln!("OUTCOMES\n{}", report.join("\n"));
}
