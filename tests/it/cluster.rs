//! Node loss in a three-server NATS cluster with an R3 stream: one server is killed with
//! SIGKILL while agents write. Writes go on, nothing acknowledged is lost, and the replicas
//! converge after the server returns.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use blackboard_client::{JetStreamConfig, Options};
use blackboard_tests::checker::{check, read_stream};
use blackboard_tests::{temp_dir, NatsCluster};

use crate::faults::{converge, numbered_replicas, union, Writer, DOC, SPACE};
use crate::within;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_server_of_three_keeps_writes_going_and_loses_nothing() {
    blackboard_tests::init_tracing();
    let started = Instant::now();
    let mut cluster = NatsCluster::start(3).await.unwrap();
    let r3 = JetStreamConfig {
        replicas: 3,
        ..Default::default()
    };
    // One agent per server, so the one on the killed server has to fail over.
    let dirs: Vec<_> = (0..3).map(|_| temp_dir()).collect();
    let mut boards = Vec::new();
    let mut writers = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let name = format!("c{i}");
        let board = Options::new(&name)
            .unwrap()
            .store(dir.path())
            .jetstream(r3.clone())
            .connect(&cluster.url(i))
            .await
            .unwrap();
        writers.push(Writer::start(&name, board.doc(SPACE, DOC).unwrap()));
        boards.push(board);
    }
    for writer in &mut writers {
        within("the first flushes", writer.wait_flushed(10)).await;
    }

    // Kill the stream's leader: the hardest server to lose.
    let js = jetstream::new(cluster.node(0).connect().await.unwrap());
    let mut stream = js.get_stream(format!("BB_{SPACE}")).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3, "an R3 stream");
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .unwrap();
    let victim = (0..3).find(|&i| NatsCluster::name(i) == leader).unwrap();
    let survivor = (victim + 1) % 3;
    drop(js);
    let flushed = union(&writers.iter().map(Writer::flushed).collect::<Vec<_>>());
    let acked_at_kill: Vec<usize> = writers.iter().map(|w| w.acked().len()).collect();
    cluster.kill(victim).await;

    // Writes continue: every agent's changes made after the kill are acknowledged by the
    // log (a flush covering them completes) while the server is down.
    for (writer, at_kill) in writers.iter_mut().zip(&acked_at_kill) {
        within(
            "writes made after the kill to be flushed",
            writer.wait_flushed(at_kill + 20),
        )
        .await;
    }
    let down_flushed = union(&writers.iter().map(Writer::flushed).collect::<Vec<_>>());
    // Right after the kill the stream may still be electing a leader: a failed read is
    // retried (with a short backoff) until one succeeds.
    let read = within("a read of the stream from a surviving server", async {
        loop {
            let client = cluster.node(survivor).connect().await.unwrap();
            match read_stream(client, SPACE, DOC).await {
                Ok(read) => break read,
                Err(e) => {
                    tracing::debug!(error = %e, "reading the stream failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .await;
    let on_stream = read.tags();
    let gone: Vec<_> = flushed.difference(&on_stream).collect();
    assert!(
        gone.is_empty(),
        "flushed before the kill, now missing: {gone:?}"
    );
    let gone: Vec<_> = down_flushed.difference(&on_stream).collect();
    assert!(gone.is_empty(), "flushed while down, now missing: {gone:?}");

    // The fault schedule: the server stays down while the agents write on, then returns.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.restart(victim).await.unwrap();

    // The returned server catches up: every peer of the stream is current again.
    let js = jetstream::new(cluster.node(victim).connect().await.unwrap());
    within("the stream's peers to be current", async {
        loop {
            if let Ok(mut stream) = js.get_stream(format!("BB_{SPACE}")).await {
                if let Ok(info) = stream.info().await {
                    let peers = info.cluster.clone().map(|c| c.replicas).unwrap_or_default();
                    if peers.len() == 2 && peers.iter().all(|p| p.current && !p.offline) {
                        return;
                    }
                }
            }
            // Polling the server's view of its peers: there is no event to await.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    let mut acked = Vec::new();
    let mut docs = Vec::new();
    for writer in writers {
        docs.push(writer.doc.clone());
        acked.push(writer.finish().await);
    }
    let acked = union(&acked);
    let fresh_dir = temp_dir();
    let fresh = Options::new("fresh")
        .unwrap()
        .store(fresh_dir.path())
        .jetstream(r3)
        .connect(&cluster.url(victim))
        .await
        .unwrap();
    docs.push(fresh.doc(SPACE, DOC).unwrap());
    converge(&docs.iter().collect::<Vec<_>>()).await;
    let read = read_stream(cluster.node(victim).connect().await.unwrap(), SPACE, DOC)
        .await
        .unwrap();
    let report = check(&acked, &read, &numbered_replicas(&docs));
    println!(
        "cluster node loss: killed {leader} (the stream leader), {} changes acknowledged, \
         {} flushed while it was down, {report}, {:.1} s",
        acked.len(),
        down_flushed.len() - flushed.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(report.is_clean(), "{report}");
    assert_eq!(read.tags(), acked.iter().cloned().collect::<BTreeSet<_>>());
    drop(boards);
}
