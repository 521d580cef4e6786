//! A session's resource subscriptions: the watch tasks behind `resources/subscribe`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

/// The session's resource subscriptions: one watch task per subscribed URI, stopped on
/// unsubscribe or when the session ends.
#[derive(Debug, Clone, Default)]
pub struct Subscriptions(Arc<Mutex<HashMap<String, JoinHandle<()>>>>);

impl Subscriptions {
    /// Keeps `task` as the subscription to `uri`, stopping the one it replaces.
    pub fn insert(&self, uri: String, task: JoinHandle<()>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = map.insert(uri, task) {
            old.abort();
        }
    }

    /// Stops the subscription to `uri`, if there is one.
    pub fn remove(&self, uri: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = map.remove(uri) {
            task.abort();
        }
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        // The last session handle gone: stop its watches.
        if Arc::strong_count(&self.0) == 1 {
            let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            for task in map.values() {
                task.abort();
            }
        }
    }
}
