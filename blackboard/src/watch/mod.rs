//! Watches: path-scoped, resumable, gapless streams of change events.
//!
//! A watch is a [`Stream`] of [`ChangeEvent`]s for the changes that touch a [`Pattern`].
//! It starts [now](Start::Now), from the [beginning](Start::Beginning) of the document's
//! history, or [after a position](Start::After) it was handed earlier.
//!
//! How it works, and why it is gapless:
//! - **Live**, a watch listens to its replica, which hands one event per change it makes or
//!   applies (local changes at once, remote ones as they arrive from the log) to each live
//!   watcher's bounded channel. Handing over never waits, so a slow watcher cannot slow the
//!   replica, the writers or other watchers.
//! - **Replaying**, a watch reads the durable log itself, applying events to its own copy of
//!   the document to compute patches. A replaying watcher reads at its own pace: nothing is
//!   buffered on its behalf.
//! - **The switch** from replay to live happens under the replica's lock, at a moment the
//!   watch has read at least as far as the replica has applied: it starts listening, and
//!   hands over the replica's changes its copy lacks (local changes not yet back from the
//!   log). Live events at positions it already read are skipped. So every change is
//!   delivered once, with no gap.
//! - **Lagging**: a live watcher that falls more than its channel's capacity behind is cut
//!   off; it delivers what it holds, then a final [`WatchError::Lagged`] naming the position
//!   to resume after. Events are never dropped silently.
//! - **Durable watches** have a name; after each event handed to the caller, its position is
//!   written to the replica's sled tree, and a watch opened again under the same name resumes
//!   after it. The cursor lives with the replica (not in a JetStream durable consumer) because
//!   events need the replica's document to compute patches, and local changes that never
//!   reached the log must resume correctly too.

mod event;
pub(crate) mod listeners;
mod pattern;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use blackboard_schemas::DocumentId;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use listeners::{Live, LiveReceiver};
use tokio::task::JoinHandle;
use tracing::debug;

pub use crate::doc::{Patch, PatchOp};
pub use event::ChangeEvent;
pub use pattern::{Pattern, PatternError};

use crate::codec;
use crate::doc::{Applied, DocCore};
use crate::replica::{Position, Shared};
use crate::store::ReplicaStore;

/// Where a watch starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Start {
    /// Only changes made or received from now on.
    #[default]
    Now,
    /// The whole history, then live.
    Beginning,
    /// Everything after this position (as carried by [`ChangeEvent::position`] or
    /// [`WatchError::Lagged`]), then live. A position with no heads counts log events only:
    /// the history up to its `seq` is read silently.
    After(Position),
}

/// How a watch is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Where to start (ignored when a durable watch resumes from its stored position).
    pub start: Start,
    /// A name makes the watch durable: it resumes after the last event it handed out.
    pub durable: Option<String>,
    /// How many filtered events may wait for the caller before the watch stops reading.
    pub buffer: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            start: Start::Now,
            durable: None,
            buffer: 64,
        }
    }
}

impl Options {
    /// Options starting at `start`.
    pub fn start(start: Start) -> Self {
        Self {
            start,
            ..Self::default()
        }
    }

    /// Durable options named `name`, starting from the beginning the first time.
    pub fn durable(name: impl Into<String>) -> Self {
        Self {
            start: Start::Beginning,
            durable: Some(name.into()),
            ..Self::default()
        }
    }
}

/// Why a watch stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The watcher fell too far behind the live changes. Nothing after `resume_after` was
    /// delivered; start a watch with [`Start::After`] at it to continue without a gap.
    #[error("watch of {document} fell behind; resume after position {}", resume_after.seq)]
    Lagged {
        /// The document watched.
        document: DocumentId,
        /// The position of the last event the watch processed.
        resume_after: Position,
    },
    /// The replica's state could not be used to start the watch.
    #[error("watch of {document} could not start: {reason}")]
    Failed {
        /// The document watched.
        document: DocumentId,
        /// Why.
        reason: String,
    },
}

/// A stream of change events; see the module docs. Dropping it stops the watch.
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::Receiver<Result<ChangeEvent, WatchError>>,
    cursor: Option<(ReplicaStore, String)>,
    task: JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream for Watch {
    type Item = Result<ChangeEvent, WatchError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.rx.poll_recv(cx);
        if let (Poll::Ready(Some(Ok(event))), Some((store, name))) = (&item, &self.cursor) {
            // The event is being handed to the caller: a restart resumes after it.
            if let Err(e) = store.put_cursor(name, &event.position) {
                tracing::warn!(watch = %name, error = %e, "could not save the watch position");
            }
        }
        item
    }
}

/// What a watch task needs from its replica.
pub(crate) struct Source {
    pub(crate) shared: Weak<Shared>,
    pub(crate) document: DocumentId,
}

/// Starts a watch. Called by [`Replica::watch`](crate::Replica::watch).
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    pattern: Pattern,
    start: Start,
    buffer: usize,
    cursor: Option<(ReplicaStore, String)>,
) -> Watch {
    let (tx, rx) = mpsc::channel(buffer.max(1));
    let source = Source {
        shared: Arc::downgrade(shared),
        document: shared.config.document.clone(),
    };
    let task = match start {
        Start::Now => {
            // Listening and reading the position under the lock: the first live event is
            // the first change after this position.
            let (live, position) = {
                let mut st = shared.lock();
                (st.listeners.listen(), st.position_now())
            };
            let skip_upto = position.seq;
            tokio::spawn(run_live(source, live, position, skip_upto, pattern, tx))
        }
        start => tokio::spawn(replay_then_live(source, start, pattern, tx)),
    };
    Watch { rx, cursor, task }
}

type Tx = mpsc::Sender<Result<ChangeEvent, WatchError>>;

/// Sends `event` if it touches the pattern. Returns false when the caller has gone.
async fn deliver(tx: &Tx, pattern: &Pattern, event: &ChangeEvent) -> bool {
    match event.filtered(pattern) {
        Some(e) => tx.send(Ok(e)).await.is_ok(),
        None => !tx.is_closed(),
    }
}

/// Follows the replica's live events. Events at positions up to `skip_upto` are not
/// delivered: the watch read them already (the replica had not applied them yet at the
/// switch), or they come before the requested start.
async fn run_live(
    source: Source,
    mut live: LiveReceiver,
    mut last: Position,
    skip_upto: u64,
    pattern: Pattern,
    tx: Tx,
) {
    drop(source.shared);
    loop {
        match live.recv().await {
            Live::Event(event) => {
                if event.seq.is_some_and(|s| s <= skip_upto) {
                    continue;
                }
                last = event.position.clone();
                if !deliver(&tx, &pattern, &event).await {
                    return;
                }
            }
            Live::Lagged => {
                debug!(document = %source.document, "watch lagged");
                let _ = tx
                    .send(Err(WatchError::Lagged {
                        document: source.document,
                        resume_after: last,
                    }))
                    .await;
                return;
            }
            Live::Closed => return,
        }
    }
}

async fn replay_then_live(source: Source, start: Start, pattern: Pattern, tx: Tx) {
    let fail = |reason: String| WatchError::Failed {
        document: source.document.clone(),
        reason,
    };
    let Some(shared) = source.shared.upgrade() else {
        return;
    };
    let (space, document, agent) = (
        shared.config.space.clone(),
        shared.config.document.clone(),
        shared.config.agent.clone(),
    );
    let log = shared.log.clone();
    // The watch's own copy of the document, and how far into the log it has read.
    // The watch's own copy of the document, the last log position it has read, and the
    // position up to which it reads silently (history before the requested start).
    let base = match &start {
        Start::After(pos) if !pos.heads.is_empty() => {
            let st = shared.lock();
            if st.core.contains(&pos.heads) {
                st.core
                    .fork_at(&pos.heads)
                    .map(|copy| (copy, pos.seq, pos.seq))
            } else {
                // The heads are unknown here (another store's cursor?): rebuild from the log.
                Ok((DocCore::new(), 0, pos.seq))
            }
        }
        Start::After(pos) => Ok((DocCore::new(), 0, pos.seq)),
        _ => Ok((DocCore::new(), 0, 0)),
    };
    let (mut copy, mut read, silent_until) = match base {
        Ok(base) => base,
        Err(e) => {
            let _ = tx.send(Err(fail(e.to_string()))).await;
            return;
        }
    };
    drop(shared);

    let mut entries = None;
    let mut backoff = crate::replica::Backoff::default();
    // Writers of changes held back for missing dependencies.
    let mut held_back = HashMap::new();
    loop {
        // Switch to live as soon as the copy has read as far as the replica has applied.
        let Some(shared) = source.shared.upgrade() else {
            return;
        };
        if let Some((live, handover, position)) = switch(&shared, &mut copy, read) {
            drop(shared);
            for event in &handover {
                if !deliver(&tx, &pattern, event).await {
                    return;
                }
            }
            let skip_upto = read.max(silent_until);
            return run_live(source, live, position, skip_upto, pattern, tx).await;
        }
        drop(shared);
        if entries.is_none() {
            match log.subscribe(&space, &document, read + 1).await {
                Ok(s) => entries = Some(s),
                Err(e) => {
                    // Like the replica, keep trying: the log may be briefly unreachable.
                    debug!(%document, error = %e, "watch cannot read the log; retrying");
                    if tx.is_closed() {
                        return;
                    }
                    backoff.wait().await;
                    continue;
                }
            }
            backoff.reset();
        }
        let Some(stream) = entries.as_mut() else {
            return;
        };
        let entry = match stream.next().await {
            Some(Ok(entry)) => entry,
            Some(Err(e)) => {
                debug!(%document, error = %e, "watch's log subscription failed; resubscribing");
                entries = None;
                backoff.wait().await;
                continue;
            }
            None => {
                entries = None;
                backoff.wait().await;
                continue;
            }
        };
        if entry.seq <= read {
            continue;
        }
        read = entry.seq;
        // The replica logs bad events; the watch just skips them.
        let Ok(event) = codec::decode_event(&space, &document, &entry.payload) else {
            continue;
        };
        let hash = event.change.hash();
        let (applied, took_effect) = match copy.apply_with_patches(event.change) {
            Ok(result) => result,
            Err(e) => {
                debug!(%document, seq = entry.seq, error = %e, "watch skipped an event its copy cannot apply");
                continue;
            }
        };
        let env = event.envelope;
        let meta = (entry.seq, env.agent, env.time_ms, env.message);
        if applied == Applied::Pending {
            // Reported once its dependencies arrive, with its own position and writer.
            held_back.insert(hash, meta);
            continue;
        }
        for change in took_effect {
            let meta = if change.hash == hash {
                Some(meta.clone())
            } else {
                held_back.remove(&change.hash)
            };
            let Some((seq, writer, time_ms, message)) = meta else {
                continue;
            };
            if seq <= silent_until || change.patches.is_empty() {
                continue;
            }
            let event = ChangeEvent {
                document: document.clone(),
                change: change.hash,
                seq: Some(seq),
                position: Position {
                    seq: read,
                    heads: copy.heads(),
                },
                local: writer == agent,
                agent: writer,
                time_ms,
                message,
                patches: change.patches,
            };
            if !deliver(&tx, &pattern, &event).await {
                return;
            }
        }
    }
}

/// Under the replica's lock: if the copy has read as far as the replica applied, start
/// listening and return the events for the replica's changes the copy lacks.
fn switch(
    shared: &Shared,
    copy: &mut DocCore,
    read: u64,
) -> Option<(LiveReceiver, Vec<ChangeEvent>, Position)> {
    let mut st = shared.lock();
    if st.position > read {
        return None;
    }
    let live = st.listeners.listen();
    let mut handover = Vec::new();
    for change in st.core.changes_missing_from(copy) {
        let hash = change.hash();
        let time_ms = change.timestamp() * 1000;
        let message = change.message().cloned();
        let took_effect = match copy.apply_with_patches(change) {
            Ok((_, took_effect)) => took_effect,
            Err(e) => {
                debug!(%hash, error = %e, "watch skipped a local change its copy cannot apply");
                continue;
            }
        };
        let patches: Vec<_> = took_effect.into_iter().flat_map(|c| c.patches).collect();
        if patches.is_empty() {
            continue;
        }
        handover.push(ChangeEvent {
            document: shared.config.document.clone(),
            change: hash,
            seq: None,
            position: Position {
                seq: read,
                heads: copy.heads(),
            },
            agent: shared.config.agent.clone(),
            time_ms,
            message,
            local: true,
            patches,
        });
    }
    let position = Position {
        seq: read,
        heads: copy.heads(),
    };
    Some((live, handover, position))
}
