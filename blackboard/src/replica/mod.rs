//! A replica: one automerge document following one document's events.
//!
//! Writes go to the document and, in the same step, to sled (the change and an outbox entry),
//! which is flushed before the write returns: a change the caller was told about survives a
//! crash even when the log is unreachable. A background task drains the outbox into the log;
//! re-publishing after a lost acknowledgement is safe because the message id is the change
//! hash. Another task follows the log from the last applied position, decoding every event
//! with [`codec::decode_event`](crate::codec::decode_event) and applying it through the
//! causal apply step ([`crate::apply`]); bad events are logged and skipped, never fatal.
//!
//! The replica is the one owner of its state (`Shared` and the `State` behind its lock).
//! The files here split its jobs: `mod.rs` the handle, opening and closing, and reads;
//! `write.rs` local changes; `follow.rs` following the log; `outbox.rs` publishing local
//! changes; `wait.rs` waiting for the log and for the document; `watching.rs` what watches
//! get from the replica; `history.rs` history queries; `snapshots.rs` snapshots.

use std::sync::{Arc, Mutex, MutexGuard};

use automerge::ChangeHash;
use blackboard_schemas::{AgentId, DocumentId, SpaceId};
use serde_json::Value as Json;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::apply::{Causal, Gate, Origin};
use crate::doc::{DocCore, Patch, Path};
use crate::log::EventLog;
use crate::store::ReplicaStore;
use crate::watch::listeners::Listeners;
use crate::watch::ChangeEvent;
use crate::Error;

mod containers;
mod durability;
mod follow;
mod group;
mod history;
mod outbox;
mod own;
mod snapshots;
mod unstored;
mod wait;
mod watching;
mod write;

pub use crate::position::Position;
pub use containers::Written;
pub use durability::Durability;
pub use history::{ReplayError, ReplayStep, View};
pub use snapshots::{SnapshotPolicy, Trimmed};

/// How a replica is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The space of the document.
    pub space: SpaceId,
    /// The document.
    pub document: DocumentId,
    /// The agent writing through this replica; named in every event it publishes.
    pub agent: AgentId,
    /// Fold stored changes into a snapshot after this many.
    pub compact_after: usize,
    /// Publish at most this many outbox entries at once.
    pub outbox_batch: usize,
    /// What a local write waits for before it returns: local disk (the default) or the
    /// log's acknowledgement (see [`Durability`]).
    pub durability: Durability,
    /// How many change events live watchers may fall behind before they are told they lag.
    pub watch_capacity: usize,
    /// When this replica writes snapshots to the log by itself.
    pub snapshots: SnapshotPolicy,
    /// The agent's key and default provenance: with a key, every envelope this replica
    /// publishes (changes, container creations, imports) is signed when it is built, before
    /// it enters the outbox. Default: unsigned, no provenance.
    pub stamp: crate::codec::Stamp,
    /// The admin keys the space's first roster must be signed by (`None`: any roster signed
    /// by one of its own admins may found the space's trust; see [`crate::trust`]).
    pub pinned_admins: Option<Vec<String>>,
    /// Make the [`edit`](Replica::edit)s of writers queued behind one another in one change
    /// (default: off, one change per call). While one write holds the document, the writes
    /// that arrive meanwhile wait in a queue; the next round makes as many of them as fit
    /// in one change and one event, then each caller gets its own answer (the shared
    /// change's hash, its own counters and errors). Writes are grouped only when they carry
    /// the same message and provenance and their paths do not overlap (neither is a prefix
    /// of the other), so no value written is overwritten inside a change and each write's
    /// value is in the history. A group that fails is made again one write at a time, so
    /// one bad write fails alone. Once queued, a write is made even if its caller stops
    /// waiting. Raw transactions ([`change`](Replica::change)) are never grouped.
    pub coalesce_writes: bool,
}

impl Config {
    /// A configuration with default tuning.
    pub fn new(space: SpaceId, document: DocumentId, agent: AgentId) -> Self {
        Self {
            space,
            document,
            agent,
            compact_after: 1000,
            outbox_batch: 128,
            durability: Durability::Local,
            watch_capacity: 1024,
            snapshots: SnapshotPolicy::default(),
            stamp: crate::codec::Stamp::default(),
            pinned_admins: None,
            coalesce_writes: false,
        }
    }
}

/// A change the space's roster did not allow (see [`crate::trust`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedChange {
    /// Its log position.
    pub seq: u64,
    /// The agent its envelope names.
    pub agent: AgentId,
    /// The change.
    pub change_hash: automerge::ChangeHash,
    /// Why it was rejected.
    pub reason: crate::trust::Reason,
}

/// How many rejected changes a replica remembers for [`Replica::untrusted`].
pub const UNTRUSTED_KEPT: usize = 1024;

/// Counters describing what a replica has done since it was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// The position the replica had on disk when it was opened; it resumed after it.
    pub resumed_from: u64,
    /// Events read from the log since opening.
    pub events_read: u64,
    /// Events whose change was new to this replica.
    pub events_applied: u64,
    /// This replica's own events read back from the log exactly as it published them, with
    /// no roster in force: indexed without being decoded, judged or applied again (they are
    /// in the document already). Counted in `events_read`.
    pub own_events_indexed: u64,
    /// Events rejected by the decoder or by automerge.
    pub events_rejected: u64,
    /// Why the last rejected event was rejected.
    pub last_rejection: Option<String>,
    /// Changes the space's roster did not allow (counted in `events_rejected` too).
    pub changes_untrusted: u64,
    /// Roster events ignored (bad signature, non-admin signer, bad body, ...).
    pub roster_events_ignored: u64,
    /// Local changes acknowledged by the log since opening.
    pub published: u64,
    /// Local changes the log refused for good since opening (a permission the server
    /// denies, such as a read-only agent's): taken out of the outbox, never published. They
    /// stay in this replica's own copy of the document; no other replica sees them.
    pub refused: u64,
    /// The position of the snapshot this replica started (or recovered) from, if it did.
    pub snapshot_loaded: Option<u64>,
    /// Stored snapshots this replica would not load because the space's roster does not
    /// trust their signer (or they are unsigned); it followed the log instead.
    pub snapshots_refused: u64,
    /// Snapshots this replica's policy wrote to the log since opening.
    pub snapshots_written: u64,
    /// What the local store lacked when this replica was opened, against what its seal
    /// remembered (damaged or truncated files): lost unpublished writes, positions read from
    /// the log again. `None` when nothing was missing (or the store has no seal).
    pub store_loss: Option<crate::store::Loss>,
}

/// A handle to a replica. Cheap to clone; the replica stops when the last handle is dropped.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use blackboard::{log::EmbeddedLog, replica::{Config, Replica}};
/// use serde_json::json;
///
/// let dir = tempfile::tempdir()?;
/// let db = sled::open(dir.path())?;
/// let log = Arc::new(EmbeddedLog::open(db.clone())?);
/// let config = Config::new("team".parse()?, "plan".parse()?, "me".parse()?);
/// let doc = Replica::open(log, &db, config)?;
/// doc.put("/tasks/1/status", json!("open")).await?;
/// assert_eq!(doc.get("/tasks/1")?, Some(json!({"status": "open"})));
/// doc.flush().await?; // every local change is now acknowledged by the log
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Replica {
    handle: Arc<Handle>,
    /// The provenance this handle's writes declare over the configured default (see
    /// [`Replica::with_provenance`]).
    provenance: Option<Arc<blackboard_schemas::Provenance>>,
}

#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        for t in self
            .tasks
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            t.abort();
        }
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) log: Arc<dyn EventLog>,
    store: ReplicaStore,
    state: Mutex<State>,
    /// This replica's own events not yet read back from the log (see [`own`]). Apart from
    /// `state` so the follow loop can tell an own event without the replica's lock; taken
    /// inside it or alone, never the other way round.
    own: Mutex<own::InFlight>,
    /// Bumped whenever the document changes.
    version: watch::Sender<u64>,
    /// Wakes the outbox task.
    outbox_wake: Notify,
    /// Bumped after every outbox round.
    outbox_rounds: watch::Sender<u64>,
    /// Wakes the snapshot policy when enough events arrived.
    snapshot_wake: Notify,
    /// Writes waiting for a round, under [`Config::coalesce_writes`] (see [`group`]).
    queue: group::Queue,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) core: DocCore,
    pub(crate) position: u64,
    next_outbox: u64,
    /// Every outbox id below this was acknowledged by the log (or refused for good), as of
    /// the outbox's last round: what a waiting write compares its id with, instead of
    /// reading both outboxes itself on every round (see `outbox::end_round`).
    acked_below: u64,
    /// Local changes not on local disk yet, under [`Durability::Log`] (see [`unstored`]).
    unstored: unstored::Unstored,
    /// Set by [`Replica::close`]: writes still waiting for the log stop waiting.
    closed: bool,
    stored_since_compaction: usize,
    /// About how many changes the document had at the last compaction: the changes
    /// stored since the replica was opened, or the snapshot it started from.
    pub(crate) history_at_compaction: usize,
    /// Changes indexed since the last snapshot this replica wrote or checked.
    events_since_snapshot: u64,
    stats: Stats,
    /// The error of the last outbox round, if it failed; `flush` reports it when it is not
    /// one that retrying can fix.
    publish_error: Option<crate::log::Error>,
    /// Set once the log denied this replica's publishing (a permission violation): the
    /// server's reason.
    /// Further local writes fail with `Error::WriteDenied` instead of queueing changes that
    /// can never be published; `flush` reports it.
    pub(crate) denied: Option<String>,
    /// Live watchers: every change made or applied is handed to them, never waited on.
    pub(crate) listeners: Listeners,
    /// The causal apply step's memory: who made the changes the document holds back for
    /// missing dependencies, to report them when they take effect.
    causal: Causal<Origin>,
    /// The trust gate: the space's roster as of the position read, and the changes it
    /// rejected (see [`crate::trust`]).
    pub(crate) gate: Gate,
    /// The last [`UNTRUSTED_KEPT`] changes the gate rejected, oldest first.
    pub(crate) untrusted: std::collections::VecDeque<RejectedChange>,
    /// What the follow loop has said so far about bad and held-back events (it says each
    /// once per catch-up, with a count, not once per event).
    pub(crate) told: follow::Told,
}

impl State {
    /// The error `flush` reports once the log denied this replica's publishing: an empty
    /// outbox is then not "all published".
    pub(crate) fn denied_error(&self) -> Option<Error> {
        self.denied.as_ref().map(|reason| {
            Error::Publish(format!(
                "{}; {} local change(s) were taken out of the outbox and will never be \
                 published",
                crate::log::Error::Denied(reason.clone()),
                self.stats.refused
            ))
        })
    }

    pub(crate) fn position_now(&self) -> Position {
        Position {
            seq: self.position,
            heads: self.core.heads(),
        }
    }
}

impl Replica {
    /// Opens the replica stored in `db` and starts following the log. Works offline: nothing
    /// here waits for the log.
    pub fn open(log: Arc<dyn EventLog>, db: &sled::Db, config: Config) -> Result<Self, Error> {
        let store = ReplicaStore::open(db, &config.agent, &config.space, &config.document)?;
        if let Some(loss) = store.loss() {
            // `store::open_db` logged the whole store's losses; this names the replica's.
            warn!(%loss, "this replica's store lost data it once held");
        }
        let core = load_core(&store)?;
        let loaded = store.load()?;
        // Outbox ids never go back, even once the outbox is drained: the seal counts writes
        // by them.
        let next_outbox = loaded
            .outbox
            .last()
            .map_or(0, |e| e.id)
            .max(store.written())
            + 1;
        let store_loss = store.loss().cloned();
        let mut gate = Gate::new(config.space.clone(), config.pinned_admins.clone());
        gate.remember_rejected(store.rejected()?.into_iter().map(ChangeHash));
        let shared = Arc::new(Shared {
            log,
            store,
            state: Mutex::new(State {
                core,
                position: loaded.position,
                next_outbox,
                // What the outbox held at opening is unacknowledged.
                acked_below: loaded.outbox.first().map_or(next_outbox, |e| e.id),
                unstored: Default::default(),
                closed: false,
                stored_since_compaction: loaded.changes.len(),
                history_at_compaction: 0,
                events_since_snapshot: 0,
                stats: Stats {
                    resumed_from: loaded.position,
                    store_loss,
                    ..Stats::default()
                },
                publish_error: None,
                denied: None,
                listeners: Listeners::new(config.watch_capacity),
                causal: Causal::new(),
                gate,
                untrusted: Default::default(),
                told: follow::Told::default(),
            }),
            own: Mutex::default(),
            version: watch::channel(0).0,
            outbox_wake: Notify::new(),
            outbox_rounds: watch::channel(0).0,
            snapshot_wake: Notify::new(),
            queue: group::Queue::default(),
            config,
        });
        if !loaded.outbox.is_empty() {
            shared.outbox_wake.notify_one();
        }
        let tasks = vec![
            tokio::spawn(follow::run(shared.clone())),
            tokio::spawn(outbox::drain(shared.clone())),
            tokio::spawn(snapshots::run_policy(shared.clone())),
        ];
        Ok(Self {
            handle: Arc::new(Handle {
                shared,
                tasks: Mutex::new(tasks),
            }),
            provenance: None,
        })
    }

    /// A handle on the same replica whose writes declare `provenance` (who acted for whom:
    /// the model, the tool call) in their envelopes, signed with each change; a field it
    /// leaves out keeps the configured default ([`Config::stamp`]). For one write or a few:
    /// `replica.with_provenance(p).put(path, value)`. Everything else (reads, watches,
    /// [`close`](Self::close)) is the same replica's.
    pub fn with_provenance(&self, provenance: blackboard_schemas::Provenance) -> Replica {
        Replica {
            handle: self.handle.clone(),
            provenance: Some(Arc::new(provenance)),
        }
    }

    /// The provenance this handle's writes declare: [`with_provenance`](Self::with_provenance)'s
    /// fields over the configured default's.
    pub fn provenance(&self) -> Option<blackboard_schemas::Provenance> {
        let default = self.shared().config.stamp.provenance.as_ref();
        let Some(over) = self.provenance.as_deref() else {
            return default.cloned();
        };
        let field = |f: fn(&blackboard_schemas::Provenance) -> &Option<String>| {
            f(over)
                .clone()
                .or_else(|| default.and_then(|d| f(d).clone()))
        };
        let merged = blackboard_schemas::Provenance {
            on_behalf_of: field(|p| &p.on_behalf_of),
            model: field(|p| &p.model),
            tool_call: field(|p| &p.tool_call),
        };
        // Nothing declared is no provenance, not an empty one.
        (merged != blackboard_schemas::Provenance::default()).then_some(merged)
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The replica's configuration.
    pub fn config(&self) -> &Config {
        &self.shared().config
    }

    /// The whole document as JSON.
    pub fn to_json(&self) -> Json {
        self.shared().lock().core.to_json()
    }

    /// The value at `path` as JSON; `None` when nothing is there.
    pub fn get(&self, path: &str) -> Result<Option<Json>, Error> {
        let path: Path = path.parse()?;
        Ok(self.shared().lock().core.get(&path)?)
    }

    /// Reads the document with `f` (for reads the JSON view does not cover).
    pub fn read<T>(&self, f: impl FnOnce(&DocCore) -> T) -> T {
        f(&self.shared().lock().core)
    }

    /// The document's heads, sorted.
    pub fn heads(&self) -> Vec<ChangeHash> {
        self.shared().lock().core.heads()
    }

    /// The last applied log position and the heads.
    pub fn position(&self) -> Position {
        let st = self.shared().lock();
        Position {
            seq: st.position,
            heads: st.core.heads(),
        }
    }

    /// The changes the space's roster did not allow since this replica was opened (the last
    /// [`UNTRUSTED_KEPT`]), oldest first.
    pub fn untrusted(&self) -> Vec<RejectedChange> {
        self.shared().lock().untrusted.iter().cloned().collect()
    }

    /// Every change the space's roster rejected on this replica and that the document does
    /// not hold (remembered across restarts, unlike [`untrusted`](Self::untrusted)): the set
    /// every replica that read the same log agrees on.
    pub fn rejected_changes(&self) -> std::collections::BTreeSet<ChangeHash> {
        self.shared()
            .lock()
            .gate
            .rejected()
            .iter()
            .copied()
            .collect()
    }

    /// The roster in force as of the position this replica has read (`None`: an open space).
    pub fn roster(&self) -> Option<crate::trust::Roster> {
        self.shared().lock().gate.roster().cloned()
    }

    /// What the replica has done since it was opened.
    pub fn stats(&self) -> Stats {
        self.shared().lock().stats.clone()
    }

    /// The number of local changes not yet acknowledged by the log.
    pub fn pending(&self) -> usize {
        let s = self.shared();
        s.store.outbox_len() + s.lock().unstored.len()
    }

    /// Stops following the log and publishing, and makes local state durable. Unpublished
    /// changes stay in the outbox for the next opening (under [`Durability::Log`], those
    /// still in memory are written to it now, and the writes waiting for them return
    /// [`Error::ClosedUnacknowledged`]). Other clones of this handle stop syncing too.
    pub async fn close(self) -> Result<(), Error> {
        let tasks: Vec<_> =
            std::mem::take(&mut *self.handle.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in &tasks {
            t.abort();
        }
        // Wait for the tasks to be gone, so the store is no longer in use when this returns
        // (the same directory can then be reopened).
        for t in tasks {
            let _ = t.await;
        }
        let s = self.shared();
        {
            let mut st = s.lock();
            s.store_queue(&mut st)?;
            st.closed = true;
        }
        s.outbox_rounds.send_modify(|r| *r += 1);
        s.store.flush().await?;
        Ok(())
    }
}

fn load_core(store: &ReplicaStore) -> Result<DocCore, Error> {
    load_core_with(store, std::iter::empty())
}

/// [`load_core`], with `unstored` changes (see [`unstored`]) applied after the stored ones.
fn load_core_with<'a>(
    store: &ReplicaStore,
    unstored: impl Iterator<Item = &'a [u8]>,
) -> Result<DocCore, Error> {
    let loaded = store.load()?;
    let (core, errors) = DocCore::load(
        loaded.snapshot.as_deref(),
        loaded
            .changes
            .iter()
            .map(Vec::as_slice)
            .chain(unstored.map(|c| -> &[u8] { c })),
    )?;
    for e in errors {
        warn!(error = %e, "skipped an unreadable change in the replica store");
    }
    Ok(core)
}

impl Shared {
    /// Tells live watchers about a change (if any are listening and it did something).
    fn announce(&self, st: &mut State, hash: &ChangeHash, meta: &Origin, patches: Vec<Patch>) {
        if patches.is_empty() || !st.listeners.any() {
            return;
        }
        let event = ChangeEvent {
            document: self.config.document.clone(),
            change: *hash,
            seq: meta.seq,
            position: st.position_now(),
            agent: meta.agent.clone(),
            time_ms: meta.time_ms,
            message: meta.message.clone(),
            signature: meta.signature.clone(),
            provenance: meta.provenance.clone(),
            local: meta.agent == self.config.agent,
            patches,
            rejected: None,
        };
        stage!(self.config.agent, "announced to watches");
        st.listeners.send(Arc::new(event));
    }

    /// Tells watchers (those that asked for rejections) that the change at `seq` was
    /// rejected by the space's roster.
    fn announce_rejected(
        &self,
        st: &mut State,
        seq: u64,
        meta: &Origin,
        hash: ChangeHash,
        reason: String,
    ) {
        if !st.listeners.any() {
            return;
        }
        let event = ChangeEvent {
            document: self.config.document.clone(),
            change: hash,
            seq: Some(seq),
            position: Position {
                seq,
                heads: st.core.heads(),
            },
            agent: meta.agent.clone(),
            time_ms: meta.time_ms,
            // What the envelope claims, as for the agent: the event says it was rejected.
            message: meta.message.clone(),
            signature: meta.signature.clone(),
            provenance: meta.provenance.clone(),
            local: meta.agent == self.config.agent,
            patches: Vec::new(),
            rejected: Some(reason),
        };
        st.listeners.send(Arc::new(event));
    }

    /// Refuses local `writes` (changes already in the document, not yet stored) that the
    /// roster in force would have every replica reject: the verdict they will get on the log,
    /// given now. A refused write is taken back out (the document is reloaded from disk).
    fn check_trusted(&self, st: &mut State, writes: &[write::LocalWrite]) -> Result<(), Error> {
        let Some(roster) = st.gate.roster() else {
            return Ok(());
        };
        let mut refusal = None;
        // A write accepted here that the gate had rejected (a container creation a forger
        // published first: its bytes depend only on the place) is accepted from the log as
        // well, and leaves the rejected set there: so too for the writes after it here.
        let mut cleared: Option<std::collections::HashSet<ChangeHash>> = None;
        for w in writes {
            let rejected = cleared.as_ref().unwrap_or(st.gate.rejected());
            let verdict = match blackboard_schemas::Envelope::decode(&w.payload) {
                Ok(envelope) => {
                    let change = DocCore::decode_change(&w.change)?;
                    let core = &st.core;
                    crate::trust::judge(
                        Some(roster),
                        &envelope,
                        &crate::codec::Signature::of(&envelope),
                        change.deps(),
                        rejected,
                        || crate::doc::touched::touched(core.automerge(), &change),
                    )
                }
                // Our own encoder made it; a failure here is a bug, refused like a forgery.
                Err(e) => crate::trust::Verdict::Rejected(crate::trust::Reason::BadSignature(
                    format!("our own envelope does not decode: {e}"),
                )),
            };
            if let crate::trust::Verdict::Rejected(reason) = verdict {
                refusal = Some(reason);
                break;
            }
            if rejected.contains(&w.hash) {
                let mut set = cleared.take().unwrap_or_else(|| st.gate.rejected().clone());
                set.remove(&w.hash);
                cleared = Some(set);
            }
        }
        let Some(reason) = refusal else {
            return Ok(());
        };
        self.reload(st)?;
        Err(Error::Untrusted(Box::new(reason)))
    }

    /// Rebuilds the document from disk after a write was refused midway (it is in memory
    /// only), with the changes not on disk yet (see [`unstored`]) applied again.
    fn reload(&self, st: &mut State) -> Result<(), Error> {
        st.core = load_core_with(&self.store, st.unstored.changes())?;
        Ok(())
    }

    /// Writes the memory outbox (see [`unstored`]) to the sled outbox, emptying it: before a
    /// compaction, and on closing. Not yet durable (the next flush makes it so).
    fn store_queue(&self, st: &mut State) -> Result<(), Error> {
        if st.unstored.len() == 0 {
            return Ok(());
        }
        self.store.add_locals(st.unstored.entries())?;
        st.unstored.take_queue();
        Ok(())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the document half-changed (automerge
        // panics are caught in the core), so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The own events in flight (see [`own`]): under the replica's lock, or alone.
    fn own(&self) -> MutexGuard<'_, own::InFlight> {
        self.own.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Folds stored changes into a snapshot once there are enough of them, so reopening
    /// does not replay an ever-growing list.
    ///
    /// Each compaction saves the whole document, so the threshold grows with the document:
    /// at least `compact_after` changes, and at least a quarter of the changes the document
    /// had at the last compaction. Catching up on n events then saves O(log n) times, not
    /// n / `compact_after` times (a 100k-event catch-up saved a growing document 100 times).
    fn maybe_compact(&self, st: &mut State) {
        self.compact_past(st, 1);
    }

    /// [`maybe_compact`](Self::maybe_compact) for a replica catching up (the log had more
    /// ready than one batch): waits for eight times as many stored changes. Each compaction
    /// saves the whole document, and a catch-up of 100k events spent about a tenth of its
    /// time in them; the one that matters comes when the replica has caught up. The factor
    /// still bounds what a reopening after a crash mid-catch-up has to replay.
    fn maybe_compact_behind(&self, st: &mut State) {
        self.compact_past(st, 8);
    }

    fn compact_past(&self, st: &mut State, factor: usize) {
        let threshold = self.config.compact_after.max(st.history_at_compaction / 4) * factor;
        if st.stored_since_compaction < threshold {
            return;
        }
        // The snapshot saves the whole document, changes not yet on the log included: their
        // outbox entries go to disk first, so a crash after it still publishes them.
        if let Err(e) = self.store_queue(st) {
            warn!(error = %e, "could not store the outbox before compacting; will retry");
            return;
        }
        let snapshot = st.core.save();
        // Changes automerge still holds back (missing dependencies) are not in the snapshot:
        // keep them.
        let result = self
            .store
            .compact(&snapshot, |h| st.core.has_change(&ChangeHash(*h)));
        match result {
            Ok(()) => {
                // Every change not yet stored is in the snapshot now.
                st.unstored.all_stored();
                // Counting the document's changes is O(n) in automerge: count what was
                // stored instead (an undercount at first, which only compacts sooner).
                st.history_at_compaction += st.stored_since_compaction;
                st.stored_since_compaction = 0;
            }
            Err(e) => warn!(error = %e, "compaction failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::json;
    use crate::log::EmbeddedLog;
    use blackboard_schemas::MAX_ENVELOPE_BYTES;
    use serde_json::json;

    fn open(dir: &std::path::Path) -> (Replica, sled::Db) {
        let (doc, db, _, _) = open_tuned(dir, |_| {});
        (doc, db)
    }

    #[tokio::test]
    async fn a_change_too_large_for_the_log_is_refused_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (doc, _db) = open(dir.path());
        doc.put("/small", json!(1)).await.unwrap();
        let heads = doc.heads();
        let huge = "x".repeat(MAX_ENVELOPE_BYTES);
        let err = doc.put("/huge", json!(huge)).await.unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        assert_eq!(doc.heads(), heads);
        assert_eq!(doc.to_json(), json!({"small": 1}));
        doc.flush().await.unwrap();
        assert_eq!(doc.pending(), 0);
        // And the replica keeps working.
        doc.put("/after", json!(2)).await.unwrap();
        assert_eq!(doc.get("/after").unwrap(), Some(json!(2)));
    }

    #[tokio::test]
    async fn a_failing_closure_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (doc, _db) = open(dir.path());
        let err = doc
            .change(|tx| {
                json::put(tx, &"/a".parse::<Path>()?, &json!(1))?;
                json::put(tx, &"/a/b".parse::<Path>()?, &json!(2))
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/a is not a map or list"), "{err}");
        assert_eq!(doc.to_json(), json!({}));
        assert!(doc.heads().is_empty());
    }

    #[tokio::test]
    async fn reopening_the_store_restores_document_outbox_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let (heads, position) = {
            let (doc, _db) = open(dir.path());
            for i in 0..5 {
                doc.put(&format!("/k{i}"), json!(i)).await.unwrap();
            }
            doc.flush().await.unwrap();
            let heads = doc.heads();
            // The embedded log numbers this space's events 1..=5; the replica reads its own
            // changes back from the log.
            doc.wait_for_position(5).await.unwrap();
            let position = doc.position();
            assert_eq!(position.seq, 5);
            doc.close().await.unwrap();
            (heads, position)
        };
        let (doc, _db) = open(dir.path());
        assert_eq!(doc.heads(), heads);
        assert_eq!(doc.stats().resumed_from, position.seq);
        assert_eq!(doc.get("/k4").unwrap(), Some(json!(4)));
    }

    /// A replica on the embedded log in `dir` with its config `tune`d, with its database, log
    /// and config (to reopen it).
    pub(super) fn open_tuned(
        dir: &std::path::Path,
        tune: impl FnOnce(&mut Config),
    ) -> (Replica, sled::Db, Arc<EmbeddedLog>, Config) {
        let db = sled::open(dir).unwrap();
        let log = Arc::new(EmbeddedLog::open(db.clone()).unwrap());
        let mut config = Config::new(
            "s".parse().unwrap(),
            "d".parse().unwrap(),
            "a".parse().unwrap(),
        );
        tune(&mut config);
        let doc = Replica::open(log.clone(), &db, config.clone()).unwrap();
        (doc, db, log, config)
    }

    /// [`open_tuned`] compacting after 10 stored changes.
    fn compacting_after_10(dir: &std::path::Path) -> (Replica, sled::Db, Arc<EmbeddedLog>, Config) {
        open_tuned(dir, |c| c.compact_after = 10)
    }

    #[tokio::test]
    async fn compaction_folds_changes_into_a_snapshot_without_losing_any() {
        let dir = tempfile::tempdir().unwrap();
        let (doc, db, log, config) = compacting_after_10(dir.path());
        // Each write is acknowledged before the next: compaction keeps the change key of a
        // write still in the outbox (its entry is read back with those bytes), so how many
        // keys a compaction leaves would otherwise depend on how far the outbox had got.
        for i in 0..25 {
            doc.put(&format!("/k{i}"), json!(i)).await.unwrap();
            doc.flush().await.unwrap();
        }
        let heads = doc.heads();
        let json = doc.to_json();
        doc.close().await.unwrap();
        let store =
            ReplicaStore::open(&db, &config.agent, &config.space, &config.document).unwrap();
        let loaded = store.load().unwrap();
        assert!(loaded.snapshot.is_some());
        assert!(
            loaded.changes.len() < 10,
            "{} changes left",
            loaded.changes.len()
        );
        let doc = Replica::open(log, &db, config).unwrap();
        assert_eq!(doc.heads(), heads);
        assert_eq!(doc.to_json(), json);
    }

    /// The replica stored in `db` under `config`, opened on a log with no events: all it
    /// holds comes from its local store.
    fn reopened_on_an_empty_log(db: &sled::Db, config: Config) -> Replica {
        let empty = sled::Config::new().temporary(true).open().unwrap();
        let empty = Arc::new(EmbeddedLog::open(empty).unwrap());
        Replica::open(empty, db, config).unwrap()
    }

    /// Four concurrent tasks put `/w<task>/k<i>` = i for i below `each`, each awaiting its
    /// writes.
    async fn four_writers_put(doc: &Replica, each: usize) {
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let doc = doc.clone();
                tokio::spawn(async move {
                    for i in 0..each {
                        doc.put(&format!("/w{w}/k{i}"), json!(i)).await.unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn log_durable_writes_are_stored_from_the_log_across_compactions_and_need_no_log_to_reopen(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (doc, db, _log, config) = open_tuned(dir.path(), |c| {
            c.compact_after = 10;
            c.durability = Durability::Log;
        });
        four_writers_put(&doc, 30).await;
        // Each write returned acknowledged. A compaction writes the entries still waiting to
        // the sled outbox first; acknowledged there, they are taken out of it too.
        assert_eq!(doc.pending(), 0);
        let store =
            ReplicaStore::open(&db, &config.agent, &config.space, &config.document).unwrap();
        assert_eq!(store.outbox_len(), 0);
        doc.sync().await.unwrap();
        let (heads, json) = (doc.heads(), doc.to_json());
        doc.close().await.unwrap();
        let loaded = store.load().unwrap();
        assert!(loaded.snapshot.is_some(), "compactions ran");
        // Reopened on an empty log: everything comes from the local store.
        let doc = reopened_on_an_empty_log(&db, config);
        assert_eq!(doc.heads(), heads);
        assert_eq!(doc.to_json(), json);
        assert_eq!(doc.get("/w3/k29").unwrap(), Some(json!(29)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn log_durable_writes_under_a_roster_are_judged_when_they_come_back_and_stored_then() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let log = Arc::new(EmbeddedLog::open(db.clone()).unwrap());
        let admin = nkeys::KeyPair::new_user();
        let space: SpaceId = "s".parse().unwrap();
        let body = json!({
            "admins": [admin.public_key()],
            "agents": {"a": {"keys": [admin.public_key()], "write": ["/tasks/**"]}},
        })
        .to_string();
        let roster = crate::trust::RosterEvent::sign(&space, 1, body, &admin).unwrap();
        log.publish_roster(&space, "roster-1", roster.encode().into())
            .await
            .unwrap();
        let mut config = Config::new(space, "d".parse().unwrap(), "a".parse().unwrap());
        config.durability = Durability::Log;
        config.stamp = crate::codec::Stamp {
            key: Some(Arc::new(admin)),
            provenance: None,
        };
        let doc = Replica::open(log, &db, config.clone()).unwrap();
        doc.sync().await.unwrap();
        assert!(doc.roster().is_some(), "the roster is in force");
        for i in 0..5 {
            doc.put(&format!("/tasks/k{i}"), json!(i)).await.unwrap();
        }
        doc.sync().await.unwrap();
        // With a roster in force every event, own ones included, takes the full path.
        let stats = doc.stats();
        assert_eq!(stats.own_events_indexed, 0);
        assert_eq!(stats.changes_untrusted, 0);
        let (heads, json) = (doc.heads(), doc.to_json());
        doc.close().await.unwrap();
        // Reopened on an empty log: everything comes from the local store.
        let doc = reopened_on_an_empty_log(&db, config);
        assert_eq!(doc.heads(), heads);
        assert_eq!(doc.to_json(), json);
        assert_eq!(doc.get("/tasks/k4").unwrap(), Some(json!(4)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compactions_while_writers_write_lose_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let (doc, db, log, config) = compacting_after_10(dir.path());
        four_writers_put(&doc, 60).await;
        doc.flush().await.unwrap();
        let (heads, json) = (doc.heads(), doc.to_json());
        doc.close().await.unwrap();
        let store =
            ReplicaStore::open(&db, &config.agent, &config.space, &config.document).unwrap();
        let loaded = store.load().unwrap();
        assert!(loaded.snapshot.is_some());
        let doc = Replica::open(log, &db, config).unwrap();
        assert_eq!(doc.heads(), heads);
        assert_eq!(doc.to_json(), json);
        assert_eq!(doc.get("/w3/k59").unwrap(), Some(json!(59)));
    }

    #[tokio::test]
    async fn a_replica_that_writes_and_reads_its_own_events_back_never_looks_a_change_up_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let (doc, _db) = open(dir.path());
        for i in 0..5 {
            doc.put(&format!("/k{i}"), json!(i)).await.unwrap();
        }
        doc.flush().await.unwrap();
        let end = doc.sync().await.unwrap();
        assert_eq!(doc.stats().own_events_indexed, end);
        assert_eq!(doc.records(0, end).unwrap().len() as u64, end);
        assert!(!doc.shared().store.positions_built());
        // A lookup by hash builds it, and finds the own change where it was indexed.
        let first = doc.records(0, end).unwrap()[0].clone();
        assert_eq!(doc.record_of(&first.hash).unwrap(), Some(first));
        assert!(doc.shared().store.positions_built());
    }

    #[tokio::test]
    async fn a_watch_of_a_quiet_path_does_not_lag_behind_a_busy_document_it_is_not_read_during() {
        use futures::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let (doc, _db, _log, _) = open_tuned(dir.path(), |c| c.watch_capacity = 4);
        let mut quiet = doc
            .watch("/quiet/**".parse().unwrap(), Default::default())
            .unwrap();
        let mut busy = doc
            .watch("/busy/**".parse().unwrap(), Default::default())
            .unwrap();
        // Ten times the capacity on another path, with neither watch read meanwhile.
        for i in 0..40 {
            doc.put(&format!("/busy/k{i}"), json!(i)).await.unwrap();
        }
        doc.put("/quiet/note", json!("hello")).await.unwrap();
        // The map /quiet is made first (the container recipe), then the note written in it.
        let mut paths = Vec::new();
        while !paths.iter().any(|p| p == "/quiet/note") {
            let event = tokio::time::timeout(std::time::Duration::from_secs(10), quiet.next())
                .await
                .expect("the quiet watch answers")
                .expect("the quiet watch goes on")
                .expect("the quiet watch did not lag");
            paths.extend(event.patches.iter().map(|p| p.path.to_string()));
            assert!(paths.len() <= 2, "{paths:?}");
        }
        // The busy one, unread, lagged after what it could hold, and says where to resume.
        let mut delivered = 0;
        loop {
            match busy.next().await {
                Some(Ok(_)) => delivered += 1,
                Some(Err(crate::watch::WatchError::Lagged { .. })) => break,
                other => panic!("expected the busy watch to lag, got {other:?}"),
            }
        }
        assert!(delivered <= 4, "{delivered} delivered before the lag");
        assert!(busy.next().await.is_none());
    }
}
