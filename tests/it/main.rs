//! Integration tests: one binary, against real nats-server processes started by the harness
//! (free ports, temporary stores, `sync_interval: always`) and real sled stores on disk.

mod bad_input;
mod claims;
mod cluster;
mod coalesce;
mod conformance;
mod convergence;
mod corrupt_store;
mod durability;
mod faults;
mod history;
mod kill_damage;
mod log_access;
mod never_vanish;
mod offline;
mod own_events;
mod permissions;
mod presence;
mod restart;
mod said_once;
mod signing;
mod stream_config;
mod task_board;
mod trust;
mod trust_history;
mod trust_limits;
mod trust_property;
mod trust_provenance;
mod trust_snapshot;
mod truthful;
mod watch;
mod whole_writes;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use blackboard_client::{Board, Options};
use blackboard_tests::NatsServer;

/// The changes of a `put` of `value` at `path` on `core`, the recipe's container creations
/// first, as a writer publishes them.
pub fn edit(
    core: &mut blackboard::doc::DocCore,
    path: &str,
    value: serde_json::Value,
) -> Vec<blackboard::doc::LocalChange> {
    let path: blackboard::doc::Path = path.parse().unwrap();
    let out = core
        .edit(1, None, false, &[blackboard::doc::Edit::put(path, value)])
        .unwrap();
    out.created
        .into_iter()
        .map(|(c, _)| c)
        .chain(out.change)
        .collect()
}

/// Awaits `f`, failing the test with `what` if it takes longer than a generous bound. This
/// is a guard against hangs, not a stand-in for an event: every `f` awaits a real event.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A board for `agent` on `server`, with its own connection and its store in `dir`.
pub async fn nats_board(server: &NatsServer, agent: &str, dir: &Path) -> anyhow::Result<Board> {
    Ok(Options::new(agent)?
        .store(dir)
        .connect(&server.url())
        .await?)
}

/// Another agent ("reader", its store in `dir`) that has read `space`/`document` up to
/// the log's end when this returns.
pub async fn caught_up_reader(
    server: &NatsServer,
    dir: &Path,
    space: &str,
    document: &str,
) -> (Board, blackboard_client::Doc) {
    let reader = nats_board(server, "reader", dir).await.unwrap();
    let seen = reader.doc(space, document).unwrap();
    within("the reader to catch up", seen.sync()).await.unwrap();
    (reader, seen)
}

/// Log lines written through tracing, captured for a test to assert on.
#[derive(Debug, Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Captures this thread's log lines (warnings and up) until the guard is dropped. Use it in
/// a `current_thread` test, so every task logs on this thread.
pub fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}
