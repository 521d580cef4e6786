//! The replica's live watchers: one bounded channel each.
//!
//! The replica hands every event to every listener with `try_send`, under its lock, and never
//! waits: a listener whose channel is full is dropped on the spot and marked as lagged, so a
//! slow watcher costs the replica nothing and holds at most `capacity` events.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::{self, error::TrySendError};

use super::ChangeEvent;

#[derive(Debug)]
struct Listener {
    tx: mpsc::Sender<Arc<ChangeEvent>>,
    lagged: Arc<AtomicBool>,
}

/// The listeners of one replica.
#[derive(Debug)]
pub(crate) struct Listeners {
    list: Vec<Listener>,
    capacity: usize,
}

/// What a live watcher receives next.
#[derive(Debug)]
pub(crate) enum Live {
    Event(Arc<ChangeEvent>),
    /// The watcher fell `capacity` events behind and was dropped.
    Lagged,
    /// The replica is gone.
    Closed,
}

/// The receiving end of one listener.
#[derive(Debug)]
pub(crate) struct LiveReceiver {
    rx: mpsc::Receiver<Arc<ChangeEvent>>,
    lagged: Arc<AtomicBool>,
}

impl LiveReceiver {
    pub(crate) async fn recv(&mut self) -> Live {
        match self.rx.recv().await {
            Some(event) => Live::Event(event),
            None if self.lagged.load(Ordering::Acquire) => Live::Lagged,
            None => Live::Closed,
        }
    }
}

impl Listeners {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            list: Vec::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether anyone is listening (forgetting listeners whose watch is gone).
    pub(crate) fn any(&mut self) -> bool {
        self.list.retain(|l| !l.tx.is_closed());
        !self.list.is_empty()
    }

    /// A new listener; it receives every event sent from now on.
    pub(crate) fn listen(&mut self) -> LiveReceiver {
        let (tx, rx) = mpsc::channel(self.capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        self.list.push(Listener {
            tx,
            lagged: lagged.clone(),
        });
        LiveReceiver { rx, lagged }
    }

    /// Hands `event` to every listener without waiting; drops the ones that are full.
    pub(crate) fn send(&mut self, event: Arc<ChangeEvent>) {
        self.list.retain(|l| match l.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                l.lagged.store(true, Ordering::Release);
                false
            }
            Err(TrySendError::Closed(_)) => false,
        });
    }
}
