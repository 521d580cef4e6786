//! Watches: path-scoped, resumable, gapless streams of change events.
//!
//! A watch is a [`Stream`] of [`ChangeEvent`]s for the changes that touch a [`Pattern`].
//! It starts [now](Start::Now), from the [beginning](Start::Beginning) of the document's
//! history, or [after a position](Start::After) it was handed earlier.
//!
//! How it works, and why it is gapless:
//! - **Live**, a watch listens to its replica, which hands one event per change it makes or
//!   applies (local changes at once, remote ones as they arrive from the log) to each live
//!   watcher's bounded channel, if the watcher's pattern wants it. Handing over never waits,
//!   so a slow watcher cannot slow the replica, the writers or other watchers. A watch that
//!   starts now reads that channel itself, in the caller's task: one wake-up per event, not
//!   two (a relay task per watch cost about 4 µs per watch and event).
//! - **Replaying**, a watch reads the durable log itself, applying events to its own copy of
//!   the document through the causal apply step ([`crate::apply`]) to compute patches. A
//!   replaying watcher reads at its own pace: nothing is buffered on its behalf.
//! - **The switch** from replay to live is one step of the replica (under its lock, see
//!   `Source::listen_if_caught_up`), at a moment the watch has read at least as far as the
//!   replica has applied: it starts listening, and hands over the replica's changes the
//!   watch's copy lacks (local changes not yet back from the log). Live events at positions
//!   it already read are skipped. So every change is delivered once, with no gap.
//!
//! The watch never touches the replica's state: it asks through `Source`, which the
//! replica implements, and saves durable cursors through `Cursors`. So this module depends
//! on nothing above it (not on the replica, not on the store).
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

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use automerge::{Change, ChangeHash};
use blackboard_schemas::{AgentId, DocumentId, SpaceId};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use listeners::{Live, LiveReceiver, Wants};

pub use crate::doc::{Patch, PatchOp};
use crate::position::Position;
pub use event::ChangeEvent;
pub use pattern::{Pattern, PatternError};

use crate::apply::{Causal, Gate, Origin};
use crate::backoff::Backoff;
use crate::doc::{DocCore, DocError};
use crate::log::{EventLog, Topic};

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
    /// Also deliver the changes the space's roster rejected, whatever the pattern, as events
    /// with [`ChangeEvent::rejected`] set (and no patches).
    pub rejections: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            start: Start::Now,
            durable: None,
            buffer: 64,
            rejections: false,
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
    feed: Feeding,
    cursor: Option<(Box<dyn Cursors>, String)>,
}

/// Where a watch's events come from.
#[derive(Debug)]
enum Feeding {
    /// Straight from the replica: a watch that starts now reads its listener's channel
    /// itself, with no task between (the replica hands it only the events it wants).
    Live(Box<Direct>),
    /// From a task that replays the log, then relays the replica's live events.
    Task {
        rx: mpsc::Receiver<Result<ChangeEvent, WatchError>>,
        task: JoinHandle<()>,
    },
}

/// A live watch read by its caller's task (see [`Feeding::Live`]).
#[derive(Debug)]
struct Direct {
    live: LiveReceiver,
    document: DocumentId,
    pattern: Pattern,
    rejections: bool,
    /// Events at positions up to this one are not delivered: they come before the start.
    skip_upto: u64,
    /// Where the replica stood when the watch started.
    start: Position,
    /// The last event processed, kept whole: its position is needed only if the watch lags.
    last: Option<Arc<ChangeEvent>>,
    /// Set once the lag (or the end) was reported.
    ended: bool,
}

impl Direct {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<ChangeEvent, WatchError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        loop {
            let event = match self.live.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Live::Event(event))
                    if event.seq.is_some_and(|s| s <= self.skip_upto) =>
                {
                    continue
                }
                Poll::Ready(Live::Event(event)) => event,
                Poll::Ready(Live::Lagged) => {
                    debug!(document = %self.document, "watch lagged");
                    self.ended = true;
                    let resume_after = self
                        .last
                        .take()
                        .map_or_else(|| self.start.clone(), |e| e.position.clone());
                    return Poll::Ready(Some(Err(WatchError::Lagged {
                        document: self.document.clone(),
                        resume_after,
                    })));
                }
                Poll::Ready(Live::Closed) => {
                    self.ended = true;
                    return Poll::Ready(None);
                }
            };
            let out = if event.rejected.is_some() && self.rejections {
                Some((*event).clone())
            } else {
                event.filtered(&self.pattern)
            };
            self.last = Some(event);
            if let Some(out) = out {
                return Poll::Ready(Some(Ok(out)));
            }
        }
    }
}

/// Where durable watches keep their positions (the replica's store).
pub(crate) trait Cursors: std::fmt::Debug + Send + Sync {
    /// Saves the position of the durable watch `name`.
    fn save(&self, name: &str, position: &Position) -> Result<(), String>;
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Feeding::Task { task, .. } = &self.feed {
            task.abort();
        }
    }
}

impl Stream for Watch {
    type Item = Result<ChangeEvent, WatchError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = match &mut self.feed {
            Feeding::Live(direct) => direct.poll_next(cx),
            Feeding::Task { rx, .. } => rx.poll_recv(cx),
        };
        if let (Poll::Ready(Some(Ok(event))), Some((store, name))) = (&item, &self.cursor) {
            // The event is being handed to the caller: a restart resumes after it.
            if let Err(e) = store.save(name, &event.position) {
                tracing::warn!(watch = %name, error = %e, "could not save the watch position");
            }
        }
        item
    }
}

/// What a watch needs from its replica, which implements it. The watch asks; it never
/// locks the replica's state itself, so the replica stays the one owner of that state.
pub(crate) trait Source: Send + Sync + 'static {
    /// Starts listening and says where the replica stands, in one step: the first live
    /// event is the first change after this position.
    fn listen_now(&self, wants: Wants) -> (LiveReceiver, Position);

    /// A copy of the document at `heads`; `None` when the replica lacks one of them.
    fn fork_at(&self, heads: &[ChangeHash]) -> Option<Result<DocCore, DocError>>;

    /// In one step: if the replica has applied the log no further than `read`, starts
    /// listening and returns the changes it has that `copy` lacks (local changes not yet
    /// back from the log), in causal order.
    fn listen_if_caught_up(
        &self,
        read: u64,
        copy: &DocCore,
        wants: Wants,
    ) -> Option<(LiveReceiver, Vec<Change>)>;
}

/// Everything a watch task reads: its replica (weakly: a watch does not keep it alive), the
/// log to replay from, and the names of the document and of the replica's agent.
pub(crate) struct Feed {
    pub(crate) source: Weak<dyn Source>,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) space: SpaceId,
    pub(crate) document: DocumentId,
    pub(crate) agent: AgentId,
    /// How the replica stamps its own changes (for local changes the watch reports).
    pub(crate) stamp: crate::codec::Stamp,
    /// The replica's pinned admin keys, for the replay's own trust gate.
    pub(crate) pinned_admins: Option<Vec<String>>,
    /// Whether rejected changes are delivered too ([`Options::rejections`]).
    pub(crate) rejections: bool,
}

/// Starts a watch. Called by [`Replica::watch`](crate::Replica::watch).
pub(crate) fn spawn(
    source: &Arc<dyn Source>,
    feed: Feed,
    pattern: Pattern,
    start: Start,
    buffer: usize,
    cursor: Option<(Box<dyn Cursors>, String)>,
) -> Watch {
    let wants = Wants {
        pattern: pattern.clone(),
        rejections: feed.rejections,
    };
    if start == Start::Now {
        let (live, position) = source.listen_now(wants);
        let direct = Direct {
            live,
            document: feed.document,
            pattern,
            rejections: feed.rejections,
            skip_upto: position.seq,
            start: position,
            last: None,
            ended: false,
        };
        return Watch {
            feed: Feeding::Live(Box::new(direct)),
            cursor,
        };
    }
    let (tx, rx) = mpsc::channel(buffer.max(1));
    let task = tokio::spawn(replay_then_live(feed, start, pattern, tx));
    Watch {
        feed: Feeding::Task { rx, task },
        cursor,
    }
}

type Tx = mpsc::Sender<Result<ChangeEvent, WatchError>>;

/// Sends `event` if it touches the pattern (or, with `rejections`, if it is a rejection).
/// Returns false when the caller has gone.
async fn deliver(tx: &Tx, (pattern, rejections): (&Pattern, bool), event: &ChangeEvent) -> bool {
    if event.rejected.is_some() && rejections {
        return tx.send(Ok(event.clone())).await.is_ok();
    }
    match event.filtered(pattern) {
        Some(e) => tx.send(Ok(e)).await.is_ok(),
        None => !tx.is_closed(),
    }
}

/// Follows the replica's live events. Events at positions up to `skip_upto` are not
/// delivered: the watch read them already (the replica had not applied them yet at the
/// switch), or they come before the requested start.
async fn run_live(
    feed: Feed,
    mut live: LiveReceiver,
    start: Position,
    skip_upto: u64,
    pattern: Pattern,
    tx: Tx,
) {
    let rejections = feed.rejections;
    drop(feed.source);
    // The last event processed, kept whole (an `Arc`): its position is needed only if the
    // watch lags, so it is not copied out for every event.
    let mut last: Option<Arc<ChangeEvent>> = None;
    loop {
        match live.recv().await {
            Live::Event(event) => {
                if event.seq.is_some_and(|s| s <= skip_upto) {
                    continue;
                }
                if !deliver(&tx, (&pattern, rejections), &event).await {
                    return;
                }
                last = Some(event);
            }
            Live::Lagged => {
                debug!(document = %feed.document, "watch lagged");
                let _ = tx
                    .send(Err(WatchError::Lagged {
                        document: feed.document,
                        resume_after: last.map_or(start, |e| e.position.clone()),
                    }))
                    .await;
                return;
            }
            Live::Closed => return,
        }
    }
}

async fn replay_then_live(feed: Feed, start: Start, pattern: Pattern, tx: Tx) {
    let rejections = feed.rejections;
    let Some(source) = feed.source.upgrade() else {
        return;
    };
    // The watch's own copy of the document, the last log position it has read, and the
    // position up to which it reads silently (history before the requested start).
    let base = match &start {
        Start::After(pos) if !pos.heads.is_empty() => match source.fork_at(&pos.heads) {
            Some(copy) => copy.map(|copy| (copy, pos.seq, pos.seq)),
            // The heads are unknown here (another store's cursor?): rebuild from the log.
            None => Ok((DocCore::new(), 0, pos.seq)),
        },
        Start::After(pos) => Ok((DocCore::new(), 0, pos.seq)),
        _ => Ok((DocCore::new(), 0, 0)),
    };
    drop(source);
    let (mut copy, mut read, silent_until) = match base {
        Ok(base) => base,
        Err(e) => {
            let _ = tx
                .send(Err(WatchError::Failed {
                    document: feed.document.clone(),
                    reason: e.to_string(),
                }))
                .await;
            return;
        }
    };
    let (space, document) = (feed.space.clone(), feed.document.clone());
    let mut entries = None;
    let mut backoff = Backoff::default();
    // The copy's causal step: it remembers the writers of held-back changes.
    let mut causal = Causal::new();
    // The copy's trust gate: a replay shows only what the replica itself would apply.
    let mut gate = Gate::new(space.clone(), feed.pinned_admins.clone());
    loop {
        // Switch to live as soon as the copy has read as far as the replica has applied.
        let Some(source) = feed.source.upgrade() else {
            return;
        };
        let wants = Wants {
            pattern: pattern.clone(),
            rejections,
        };
        let switched = source.listen_if_caught_up(read, &copy, wants);
        drop(source);
        if let Some((live, missing)) = switched {
            for change in missing {
                let origin = Origin {
                    seq: None,
                    agent: feed.agent.clone(),
                    time_ms: change.timestamp() * 1000,
                    message: change.message().cloned(),
                    signature: feed.stamp.local_signature(),
                    provenance: feed.stamp.provenance.clone(),
                };
                let hash = change.hash();
                let accepted = match causal.change(&mut copy, change, origin, true) {
                    Ok(a) => a,
                    Err(e) => {
                        debug!(%hash, error = %e, "watch skipped a local change its copy cannot apply");
                        continue;
                    }
                };
                for event in events(&feed, &copy, read, silent_until, accepted.effects) {
                    if !deliver(&tx, (&pattern, rejections), &event).await {
                        return;
                    }
                }
            }
            let position = Position {
                seq: read,
                heads: copy.heads(),
            };
            let skip_upto = read.max(silent_until);
            return run_live(feed, live, position, skip_upto, pattern, tx).await;
        }
        if entries.is_none() {
            // The roster as of where the copy resumes, then its events and the document's
            // through one ordered subscription, as the replica reads them.
            let subscribed = match feed.log.roster_events(&space, read + 1).await {
                Ok(rosters) => {
                    gate.restart(space.clone(), feed.pinned_admins.clone());
                    for r in rosters {
                        let _ = gate.roster_event(r.seq, &r.payload);
                    }
                    feed.log
                        .subscribe_with_roster(&space, &document, read + 1)
                        .await
                }
                Err(e) => Err(e),
            };
            match subscribed {
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
        if entry.topic == Topic::Roster {
            let _ = gate.roster_event(entry.seq, &entry.payload);
            continue;
        }
        // The replica logs bad events; the watch just skips them.
        let applied = causal.judged_event(
            &mut copy,
            &mut gate,
            (&space, &document),
            entry.seq,
            &entry.payload,
            true,
        );
        // The copy is not stored: nothing to persist.
        gate.take_journal();
        let accepted = match applied {
            Ok(a) => a.accepted,
            Err(crate::apply::Rejected::Untrusted {
                agent,
                reason,
                change_hash,
                time_ms,
                said,
            }) => {
                if entry.seq <= silent_until || !rejections {
                    continue;
                }
                let event = ChangeEvent {
                    document: feed.document.clone(),
                    change: change_hash,
                    seq: Some(entry.seq),
                    position: Position {
                        seq: read,
                        heads: copy.heads(),
                    },
                    local: agent == feed.agent,
                    agent,
                    time_ms,
                    message: said.message,
                    signature: said.signature,
                    provenance: said.provenance,
                    patches: Vec::new(),
                    rejected: Some(reason.to_string()),
                };
                if !deliver(&tx, (&pattern, rejections), &event).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                debug!(%document, seq = entry.seq, error = %e, "watch skipped an event its copy cannot apply");
                continue;
            }
        };
        for event in events(&feed, &copy, read, silent_until, accepted.effects) {
            if !deliver(&tx, (&pattern, rejections), &event).await {
                return;
            }
        }
    }
}

/// The change events for what took effect on a watch's copy, read up to `read`: not those
/// at or before `silent_until`, nor those that did nothing, nor released changes whose
/// writer is unknown.
fn events(
    feed: &Feed,
    copy: &DocCore,
    read: u64,
    silent_until: u64,
    effects: Vec<crate::apply::Effect<Origin>>,
) -> Vec<ChangeEvent> {
    let mut out = Vec::new();
    for effect in effects {
        let Some(origin) = effect.origin else {
            continue;
        };
        if origin.seq.is_some_and(|s| s <= silent_until) || effect.patches.is_empty() {
            continue;
        }
        out.push(ChangeEvent {
            document: feed.document.clone(),
            change: effect.hash,
            seq: origin.seq,
            position: Position {
                seq: read,
                heads: copy.heads(),
            },
            local: origin.agent == feed.agent,
            agent: origin.agent,
            time_ms: origin.time_ms,
            message: origin.message,
            signature: origin.signature,
            provenance: origin.provenance,
            patches: effect.patches,
            rejected: None,
        });
    }
    out
}
