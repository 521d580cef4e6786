//! Process faults against real nats-server processes (JetStream file store, `sync_interval:
//! always`): the server killed with SIGKILL again and again while agents write, an agent
//! process killed mid-write, and a control that proves the checker can see a loss.
//!
//! Every change carries a unique tag (`blackboard_tests::checker`). "Acknowledged" has two
//! levels, and both are checked: a tag whose write returned Ok is durable locally and must
//! end up on the stream and in every replica; a tag whose `flush` completed before a kill
//! is on the stream and must still be there after the restart.
//!
//! `BLACKBOARD_SOAK=1` turns the server-kill test into a soak run (100 kills unless
//! `BLACKBOARD_SOAK_KILLS` says otherwise); see RELIABILITY.md.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use blackboard_client::{Board, Doc};
use blackboard_tests::checker::{check, read_stream, replica_tags, write_tag};
use blackboard_tests::{temp_dir, NatsServer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::{nats_board, within};

pub const SPACE: &str = "faults";
pub const DOC: &str = "ledger";
/// How often a [`Writer`] writes.
const WRITE_EVERY: Duration = Duration::from_millis(10);

/// One agent writing tagged changes as fast as it can, and flushing behind itself.
pub struct Writer {
    pub doc: Doc,
    /// Tags whose write returned Ok, in order.
    acked: Arc<Mutex<Vec<String>>>,
    /// How many of `acked` (a prefix) a completed `flush` covered.
    flushed: watch::Receiver<usize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Writer {
    /// Starts writing tags `<name>-<n>` to `doc`, with a flusher task behind it.
    pub fn start(name: &str, doc: Doc) -> Writer {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let wrote = Arc::new(Notify::new());
        let (flushed_tx, flushed) = watch::channel(0);
        let writer = tokio::spawn({
            let (doc, acked, stop, wrote) =
                (doc.clone(), acked.clone(), stop.clone(), wrote.clone());
            let name = name.to_owned();
            async move {
                // The agent's pace: a write every few milliseconds, not as fast as sled can
                // fsync, so a run stays small enough to check quickly.
                let mut pace = tokio::time::interval(WRITE_EVERY);
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    pace.tick().await;
                    let tag = format!("{name}-{n}");
                    write_tag(&doc, &tag).await.expect("a tagged write");
                    acked.lock().unwrap().push(tag);
                    wrote.notify_one();
                    n += 1;
                }
                wrote.notify_one();
            }
        });
        let flusher = tokio::spawn({
            let (doc, acked, stop) = (doc.clone(), acked.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    wrote.notified().await;
                    // Every tag counted here was written before the flush began.
                    let covered = acked.lock().unwrap().len();
                    doc.flush().await.expect("flush");
                    flushed_tx.send_modify(|f| *f = (*f).max(covered));
                }
            }
        });
        Writer {
            doc,
            acked,
            flushed,
            stop,
            tasks: vec![writer, flusher],
        }
    }

    /// The tags acknowledged so far.
    pub fn acked(&self) -> Vec<String> {
        self.acked.lock().unwrap().clone()
    }

    /// The tags a completed flush covered so far.
    pub fn flushed(&self) -> Vec<String> {
        let n = *self.flushed.borrow();
        self.acked.lock().unwrap()[..n].to_vec()
    }

    /// Waits until a flush has covered at least `n` tags.
    pub async fn wait_flushed(&mut self, n: usize) {
        self.flushed
            .wait_for(|f| *f >= n)
            .await
            .expect("the flusher runs");
    }

    /// Stops writing, then waits until the log acknowledged every write; returns the tags.
    pub async fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let writer = self.tasks.remove(0);
        within("the writer to stop", writer).await.unwrap();
        // The flusher may be waiting for a write that will not come.
        self.tasks[0].abort();
        within("the last flush", self.doc.flush()).await.unwrap();
        self.acked()
    }
}

/// Each replica's tags, named `replica <i>` in the checker's report.
pub fn numbered_replicas(docs: &[Doc]) -> Vec<(String, BTreeSet<String>)> {
    docs.iter()
        .enumerate()
        .map(|(i, d)| (format!("replica {i}"), replica_tags(&d.to_json())))
        .collect()
}

/// The union of `sets`.
pub fn union<'a>(sets: impl IntoIterator<Item = &'a Vec<String>>) -> BTreeSet<String> {
    sets.into_iter().flatten().cloned().collect()
}

/// Waits until each of `docs` holds every change of every other one, then asserts that
/// they converged: the same heads and the same JSON.
pub async fn converge(docs: &[&Doc]) {
    for doc in docs {
        for other in docs {
            within("a replica to catch up", doc.wait_for(&other.heads()))
                .await
                .unwrap();
        }
    }
    let mut first = docs[0].heads();
    first.sort();
    for doc in &docs[1..] {
        let mut heads = doc.heads();
        heads.sort();
        assert_eq!(heads, first, "replicas hold the same heads");
        assert_eq!(
            doc.to_json(),
            docs[0].to_json(),
            "replicas hold the same JSON"
        );
    }
}

/// How many times to kill the server: 10 in CI, more in a soak run.
fn server_kills() -> usize {
    if std::env::var_os("BLACKBOARD_SOAK").is_none() {
        return 10;
    }
    std::env::var("BLACKBOARD_SOAK_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_again_and_again_loses_no_acknowledged_change() {
    blackboard_tests::init_tracing();
    let started = Instant::now();
    let kills = server_kills();
    let mut server = NatsServer::start().await.unwrap();
    let dirs: Vec<_> = (0..4).map(|_| temp_dir()).collect();
    let mut boards = Vec::new();
    let mut writers = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let name = format!("w{i}");
        let board = nats_board(&server, &name, dir.path()).await.unwrap();
        writers.push(Writer::start(&name, board.doc(SPACE, DOC).unwrap()));
        boards.push(board);
    }

    let mut flushed_checked = BTreeSet::new();
    for kill in 0..kills {
        // The fault schedule: let the agents write (and the log acknowledge) for a while,
        // then kill the server, leave it down for a moment (writes go on into the outboxes),
        // and start it again on the same store.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let flushed = union(&writers.iter().map(Writer::flushed).collect::<Vec<_>>());
        server.kill().await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        server.restart().await.unwrap();

        // Everything a flush covered before the kill is still on the stream.
        let client = server.connect().await.unwrap();
        let read = within("a read of the stream", read_stream(client, SPACE, DOC))
            .await
            .unwrap();
        let on_stream = read.tags();
        let gone: Vec<_> = flushed.difference(&on_stream).collect();
        assert!(
            gone.is_empty(),
            "kill {kill}: flushed changes missing after the restart: {gone:?}"
        );
        flushed_checked.extend(flushed);
    }

    let mut acked = Vec::new();
    let mut docs = Vec::new();
    for writer in writers {
        docs.push(writer.doc.clone());
        acked.push(writer.finish().await);
    }
    let acked = union(&acked);
    let fresh_dir = temp_dir();
    let fresh = nats_board(&server, "fresh", fresh_dir.path())
        .await
        .unwrap();
    let fresh_doc = fresh.doc(SPACE, DOC).unwrap();
    docs.push(fresh_doc);
    converge(&docs.iter().collect::<Vec<_>>()).await;

    let read = read_stream(server.connect().await.unwrap(), SPACE, DOC)
        .await
        .unwrap();
    let report = check(&acked, &read, &numbered_replicas(&docs));
    println!(
        "server kill -9: {kills} kills, {} changes acknowledged, {} of them flushed before a \
         kill and found after it, {report}, {:.1} s",
        acked.len(),
        flushed_checked.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(report.is_clean(), "{report}");
    assert!(
        acked.len() >= 4 * kills,
        "the agents wrote: {}",
        acked.len()
    );
    // Nothing is on the stream that nobody acknowledged (a write that did not return Ok
    // is not in this test: every write returned Ok).
    assert_eq!(read.tags(), acked);
    assert_eq!(read.untagged, 0);
    // The four agents each created /tags before seeing the others' writes: the container
    // recipe made that one change (same hash, same message id), so the log's duplicate
    // window keeps one copy; a copy stored again across a server restart would be harmless
    // (applying is idempotent), so up to one per agent is allowed.
    assert!(
        (1..=4).contains(&read.creations),
        "creations of /tags on the stream: {}",
        read.creations
    );
    drop(boards);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_reports_exactly_the_one_event_the_harness_dropped() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let dirs: Vec<_> = (0..3).map(|_| temp_dir()).collect();
    let mut boards: Vec<Board> = Vec::new();
    let mut docs = Vec::new();
    let mut acked = BTreeSet::new();
    for (i, dir) in dirs[..2].iter().enumerate() {
        let board = nats_board(&server, &format!("w{i}"), dir.path())
            .await
            .unwrap();
        let doc = board.doc(SPACE, DOC).unwrap();
        for n in 0..20 {
            let tag = format!("w{i}-{n}");
            write_tag(&doc, &tag).await.unwrap();
            acked.insert(tag);
        }
        within("a flush", doc.flush()).await.unwrap();
        docs.push(doc);
        boards.push(board);
    }
    converge(&docs.iter().collect::<Vec<_>>()).await;
    let read = read_stream(server.connect().await.unwrap(), SPACE, DOC)
        .await
        .unwrap();
    let report = check(&acked, &read, &numbered_replicas(&docs));
    assert!(report.is_clean(), "nothing dropped yet: {report}");

    // Drop one event in the harness' view of the stream: exactly that tag is reported.
    let (seq, dropped) = read.events[17].clone();
    let report = check(&acked, &read.without(seq), &numbered_replicas(&docs));
    assert_eq!(report.missing_on_stream, BTreeSet::from([dropped.clone()]));
    assert_eq!(report.lost(), BTreeSet::from([dropped]));

    // Drop one event from the stream itself: the last one, so no later change depends on it
    // (a replica missing a change in the middle would hold back its successors too). A fresh
    // replica never sees it, and the checker reports exactly that tag, on the stream and in
    // that replica, and nowhere else.
    let (last, dropped) = read.events.last().cloned().unwrap();
    let js = jetstream::new(server.connect().await.unwrap());
    let stream = js.get_stream(format!("BB_{SPACE}")).await.unwrap();
    assert!(stream.delete_message(last).await.unwrap());
    let fresh = nats_board(&server, "fresh", dirs[2].path()).await.unwrap();
    let fresh_doc = fresh.doc(SPACE, DOC).unwrap();
    within("the fresh replica to sync", fresh_doc.sync())
        .await
        .unwrap();
    docs.push(fresh_doc);
    let read = read_stream(server.connect().await.unwrap(), SPACE, DOC)
        .await
        .unwrap();
    let report = check(&acked, &read, &numbered_replicas(&docs));
    println!("control: {report}");
    let only = BTreeSet::from([dropped]);
    assert_eq!(report.missing_on_stream, only);
    assert_eq!(report.missing_in["replica 0"], BTreeSet::new());
    assert_eq!(report.missing_in["replica 1"], BTreeSet::new());
    assert_eq!(report.missing_in["replica 2"], only);
    assert_eq!(report.lost(), only);
    assert_eq!(report.acknowledged, 40);
    drop(boards);
}

/// A `fault_agent` process writing to `server` from the store in `store`; its stdout lines
/// are read as they come.
struct AgentProcess {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl AgentProcess {
    fn spawn(server: &NatsServer, store: &std::path::Path, run: u32, count: Option<u64>) -> Self {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_fault_agent"));
        command
            .arg(server.url())
            .arg(store)
            .args(["agent", SPACE, DOC, &run.to_string()])
            .args(count.map(|c| c.to_string()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn fault_agent");
        let stdout = child.stdout.take().expect("piped stdout");
        AgentProcess {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next line the agent printed, or `None` once it exited.
    async fn line(&mut self) -> Option<String> {
        within("a line from the agent", self.lines.next_line())
            .await
            .expect("read the agent's stdout")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_write_loses_no_change_it_returned_ok_for() {
    blackboard_tests::init_tracing();
    let started = Instant::now();
    let server = NatsServer::start().await.unwrap();
    let store = temp_dir();
    let (o1_dir, o2_dir) = (temp_dir(), temp_dir());
    let observers = [
        nats_board(&server, "observer-1", o1_dir.path())
            .await
            .unwrap(),
        nats_board(&server, "observer-2", o2_dir.path())
            .await
            .unwrap(),
    ];
    let observer_docs: Vec<Doc> = observers
        .iter()
        .map(|b| b.doc(SPACE, DOC).unwrap())
        .collect();

    let mut acked = BTreeSet::new();
    let kills = 3;
    for run in 0..kills {
        // Writes until killed: SIGKILL (`Child::start_kill` on Unix) after a number of
        // acknowledged writes that differs from run to run, while it is writing.
        let mut agent = AgentProcess::spawn(&server, store.path(), run, None);
        assert_eq!(agent.line().await.as_deref(), Some("ready"));
        let kill_after = 20 + 17 * run as usize;
        let mut seen = 0;
        while seen < kill_after {
            let line = agent.line().await.expect("the agent writes until killed");
            acked.insert(line.strip_prefix("ack ").expect("an ack line").to_owned());
            seen += 1;
        }
        agent.child.start_kill().unwrap();
        let status = within("the agent to die", agent.child.wait())
            .await
            .unwrap();
        assert!(!status.success(), "killed, not exited: {status}");
        // Whatever it printed before dying was acknowledged too.
        while let Some(line) = agent.line().await {
            acked.insert(line.strip_prefix("ack ").expect("an ack line").to_owned());
        }
    }

    // How many acknowledged changes only the dead process' outbox held (timing decides).
    let before = read_stream(server.connect().await.unwrap(), SPACE, DOC)
        .await
        .unwrap()
        .tags();
    let only_in_outbox = acked.difference(&before).count();

    // Restarted on the same store: it drains what the killed runs left in the outbox,
    // writes a few more, flushes and exits.
    let mut agent = AgentProcess::spawn(&server, store.path(), kills, Some(5));
    assert_eq!(agent.line().await.as_deref(), Some("ready"));
    loop {
        match agent.line().await.as_deref() {
            Some("flushed") => break,
            Some(line) => {
                acked.insert(line.strip_prefix("ack ").expect("an ack line").to_owned());
            }
            None => panic!("the agent exited without flushing"),
        }
    }
    let status = within("the agent to exit", agent.child.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status}");

    // Every replica: the observers, the agent's own store reopened, and a fresh one.
    let own = nats_board(&server, "agent", store.path()).await.unwrap();
    let fresh_dir = temp_dir();
    let fresh = nats_board(&server, "fresh", fresh_dir.path())
        .await
        .unwrap();
    let mut docs = observer_docs.clone();
    docs.push(own.doc(SPACE, DOC).unwrap());
    docs.push(fresh.doc(SPACE, DOC).unwrap());
    for doc in &docs {
        within("a replica to sync", doc.sync()).await.unwrap();
    }
    converge(&docs.iter().collect::<Vec<_>>()).await;
    let read = read_stream(server.connect().await.unwrap(), SPACE, DOC)
        .await
        .unwrap();
    let names = [
        "observer 1",
        "observer 2",
        "agent's own store",
        "fresh replica",
    ];
    let replicas: Vec<_> = names
        .iter()
        .zip(&docs)
        .map(|(name, d)| ((*name).to_owned(), replica_tags(&d.to_json())))
        .collect();
    let report = check(&acked, &read, &replicas);
    println!(
        "agent kill -9: {kills} kills, {} changes acknowledged, {only_in_outbox} of them only \
         in the killed process' outbox, {report}, {:.1} s",
        acked.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.duplicates, 0, "re-publishes are deduplicated");
}

/// How long after the server is back a reader may take to see the next change (issue 14
/// §4: it was about 15 s, the client retrying the lost consumer before the replica
/// resubscribed).
const RESUME_BOUND: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_sees_the_next_change_within_two_seconds_of_a_killed_server_coming_back() {
    let mut server = NatsServer::start().await.unwrap();
    let (writer_dir, reader_dir) = (temp_dir(), temp_dir());
    let writer = nats_board(&server, "writer", writer_dir.path())
        .await
        .unwrap();
    let reader = nats_board(&server, "reader", reader_dir.path())
        .await
        .unwrap();
    let (w, r) = (
        writer.doc(SPACE, "resume").unwrap(),
        reader.doc(SPACE, "resume").unwrap(),
    );
    let has = |n: i64| move |d: &blackboard::doc::DocCore| d.to_json()["n"] == n;
    w.put("/n", 0.into()).await.unwrap();
    w.flush().await.unwrap();
    within("the reader to follow", r.replica().wait_until(has(0)))
        .await
        .unwrap();

    let mut figures = Vec::new();
    for round in 1..=3i64 {
        server.kill().await;
        server.restart().await.unwrap();
        // The server answers from here on: the clock starts.
        let back = Instant::now();
        // Written to the writer's store at once, published when its connection is back.
        w.put("/n", round.into()).await.unwrap();
        within(
            "the reader to see the change",
            r.replica().wait_until(has(round)),
        )
        .await
        .unwrap();
        figures.push(back.elapsed());
    }
    let worst = figures.iter().max().copied().unwrap_or_default();
    println!(
        "server kill -9 + restart: the next change reached a running reader {:?} after the \
         server was back (worst {worst:?})",
        figures
    );
    assert!(
        worst < RESUME_BOUND,
        "a reader took {worst:?} (> {RESUME_BOUND:?}) to resume after a restart: {figures:?}"
    );
}
