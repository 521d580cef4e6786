//! Exponential backoff between retries, shared by every task that retries the log (the
//! replica's follow loop and outbox, replaying watches).

use std::time::Duration;

/// The first wait.
const FIRST: Duration = Duration::from_millis(50);
/// The longest wait.
const MAX: Duration = Duration::from_secs(2);

/// Exponential backoff between retries, from 50 ms to 2 s.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(FIRST)
    }
}

impl Backoff {
    /// Starts again from the shortest wait (after a success).
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// Waits, then doubles the next wait (up to 2 s).
    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(MAX);
    }
}
