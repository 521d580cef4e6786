//! A joined agent's membership: the heartbeat task and its record.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{check_status, PresenceError, Record};
use crate::lease::clock::now_ms;
use crate::lease::LeaseStore;

/// This agent's presence on a place, kept alive by a heartbeat task. [`leave`](Self::leave)
/// removes it at once. Dropping it stops the heartbeats without removing the record, which is
/// what a crash looks like: others report the agent left once its timeout passes.
#[derive(Debug)]
pub struct Membership {
    shared: Arc<Shared>,
    heartbeat: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    store: Arc<dyn LeaseStore>,
    key: String,
    record: Mutex<Record>,
}

impl Shared {
    /// Writes the record with a fresh heartbeat time.
    async fn beat(&self) -> Result<(), PresenceError> {
        let bytes = {
            let mut r = self.record.lock().unwrap_or_else(|p| p.into_inner());
            r.heartbeat_ms = now_ms();
            r.encode()
        };
        self.store.put(&self.key, bytes).await?;
        Ok(())
    }
}

impl Membership {
    pub(crate) fn start(
        store: Arc<dyn LeaseStore>,
        key: String,
        record: Record,
        every: Duration,
    ) -> Self {
        let shared = Arc::new(Shared {
            store,
            key,
            record: Mutex::new(record),
        });
        let beating = shared.clone();
        let heartbeat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate; join already wrote the record
            loop {
                tick.tick().await;
                if let Err(e) = beating.beat().await {
                    tracing::warn!(key = %beating.key, error = %e, "presence heartbeat failed; retrying");
                }
            }
        });
        Self { shared, heartbeat }
    }

    /// Sets (or clears) the status line, written at once.
    pub async fn set_status(&self, status: Option<&str>) -> Result<(), PresenceError> {
        check_status(status)?;
        self.shared
            .record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .status = status.map(str::to_owned);
        self.shared.beat().await
    }

    /// Leaves the place: stops heartbeating and deletes the record, so watchers see `Left`
    /// at once.
    pub async fn leave(self) -> Result<(), PresenceError> {
        self.heartbeat.abort();
        self.shared.store.delete(&self.shared.key).await?;
        tracing::debug!(key = %self.shared.key, "left");
        Ok(())
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}
