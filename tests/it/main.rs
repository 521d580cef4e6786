//! Integration tests: one binary, against real nats-server processes started by the harness
//! (free ports, temporary stores, `sync_interval: always`) and real sled stores on disk.

mod bad_input;
mod claims;
mod conformance;
mod convergence;
mod offline;
mod presence;
mod restart;
mod stream_config;
mod task_board;
mod watch;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use blackboard_client::{Board, Options};
use blackboard_tests::NatsServer;

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
