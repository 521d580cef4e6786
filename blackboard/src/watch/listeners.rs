//! The replica's live watchers: one bounded channel each.
//!
//! The replica hands every event a listener [wants](Wants) to it with `try_send`, under its
//! lock, and never waits: a listener whose channel is full is dropped on the spot and marked
//! as lagged, so a slow watcher costs the replica nothing and holds at most `capacity`
//! events. Events outside a listener's pattern never enter its channel, so a watch of a quiet
//! path does not lag behind a busy document, without a task draining them on its behalf.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc::{self, error::TrySendError};

use super::{ChangeEvent, Pattern};

/// Which events a listener wants: those with a patch under its pattern, and rejections if it
/// asked for them.
#[derive(Debug, Clone)]
pub(crate) struct Wants {
    pub(crate) pattern: Pattern,
    pub(crate) rejections: bool,
}

impl Wants {
    fn wants(&self, event: &ChangeEvent) -> bool {
        match event.rejected {
            Some(_) => self.rejections,
            None => event.patches.iter().any(|p| self.pattern.matches(&p.path)),
        }
    }
}

#[derive(Debug)]
struct Listener {
    tx: mpsc::Sender<Arc<ChangeEvent>>,
    lagged: Arc<AtomicBool>,
    wants: Wants,
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
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Live> {
        self.rx.poll_recv(cx).map(|event| match event {
            Some(event) => Live::Event(event),
            None if self.lagged.load(Ordering::Acquire) => Live::Lagged,
            None => Live::Closed,
        })
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

    /// A new listener; it receives every event it `wants` sent from now on.
    pub(crate) fn listen(&mut self, wants: Wants) -> LiveReceiver {
        let (tx, rx) = mpsc::channel(self.capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        self.list.push(Listener {
            tx,
            lagged: lagged.clone(),
            wants,
        });
        LiveReceiver { rx, lagged }
    }

    /// Hands `event` to every listener that wants it, without waiting; drops the ones that
    /// are full.
    pub(crate) fn send(&mut self, event: Arc<ChangeEvent>) {
        self.list.retain(|l| {
            if !l.wants.wants(&event) {
                return !l.tx.is_closed();
            }
            match l.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    l.lagged.store(true, Ordering::Release);
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
    }
}
