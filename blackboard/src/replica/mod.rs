//! A replica: one automerge document following one document's events.
//!
//! Writes go to the document and, in the same step, to sled (the change and an outbox entry),
//! which is flushed before the write returns: a change the caller was told about survives a
//! crash even when the log is unreachable. A background task drains the outbox into the log;
//! re-publishing after a lost acknowledgement is safe because the message id is the change
//! hash. Another task follows the log from the last applied position, decoding every event
//! with [`codec::decode_event`] and applying it; bad events are
//! logged and skipped, never fatal.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use automerge::transaction::Transaction;
use automerge::ChangeHash;
use blackboard_schemas::{AgentId, DocumentId, SpaceId, MAX_ENVELOPE_BYTES};
use futures::StreamExt;
use serde_json::Value as Json;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::codec;
use crate::doc::{Applied, DocCore, DocError, Edit, Patch, Path};
use crate::history::Record;
use crate::log::{Entry, EventLog};
use crate::store::{RemoteBatch, ReplicaStore};
use crate::watch::listeners::Listeners;
use crate::watch::{self as watches, ChangeEvent, Pattern, Watch};
use crate::Error;

mod containers;
mod history;
mod snapshots;

pub use containers::Written;
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
    /// How many change events live watchers may fall behind before they are told they lag.
    pub watch_capacity: usize,
    /// When this replica writes snapshots to the log by itself.
    pub snapshots: SnapshotPolicy,
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
            watch_capacity: 1024,
            snapshots: SnapshotPolicy::default(),
        }
    }
}

/// Where a replica (or a watcher) stands: the last log position it applied and its
/// automerge heads.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// The last applied log position (stream sequence); 0 before any.
    pub seq: u64,
    /// The document's heads, sorted.
    pub heads: Vec<ChangeHash>,
}

/// Counters describing what a replica has done since it was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// The position the replica had on disk when it was opened; it resumed after it.
    pub resumed_from: u64,
    /// Events read from the log since opening.
    pub events_read: u64,
    /// Events whose change was new to this replica.
    pub events_applied: u64,
    /// Events rejected by the decoder or by automerge.
    pub events_rejected: u64,
    /// Why the last rejected event was rejected.
    pub last_rejection: Option<String>,
    /// Local changes acknowledged by the log since opening.
    pub published: u64,
    /// The position of the snapshot this replica started (or recovered) from, if it did.
    pub snapshot_loaded: Option<u64>,
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
    /// Bumped whenever the document changes.
    version: watch::Sender<u64>,
    /// Wakes the outbox task.
    outbox_wake: Notify,
    /// Bumped after every outbox round.
    outbox_rounds: watch::Sender<u64>,
    /// Wakes the snapshot policy when enough events arrived.
    snapshot_wake: Notify,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) core: DocCore,
    pub(crate) position: u64,
    next_outbox: u64,
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
    /// Live watchers: every change made or applied is handed to them, never waited on.
    pub(crate) listeners: Listeners,
    /// Who made the changes held back for missing dependencies, to report them when they
    /// take effect.
    pending_meta: HashMap<ChangeHash, Meta>,
}

/// What an event says about a change besides its patches.
#[derive(Debug, Clone)]
struct Meta {
    seq: Option<u64>,
    agent: AgentId,
    time_ms: i64,
    message: Option<String>,
}

impl Meta {
    /// For a held-back change whose envelope was read before a restart: the log position
    /// and writer are no longer known here.
    fn unknown(fallback: &AgentId) -> Self {
        Self {
            seq: None,
            agent: AgentId::new("unknown").unwrap_or_else(|_| fallback.clone()),
            time_ms: 0,
            message: None,
        }
    }
}

impl State {
    pub(crate) fn position_now(&self) -> Position {
        Position {
            seq: self.position,
            heads: self.core.heads(),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Replica {
    /// Opens the replica stored in `db` and starts following the log. Works offline: nothing
    /// here waits for the log.
    pub fn open(log: Arc<dyn EventLog>, db: &sled::Db, config: Config) -> Result<Self, Error> {
        let store = ReplicaStore::open(db, &config.agent, &config.space, &config.document)?;
        let core = load_core(&store)?;
        let loaded = store.load()?;
        let next_outbox = loaded.outbox.last().map_or(1, |e| e.id + 1);
        let shared = Arc::new(Shared {
            log,
            store,
            state: Mutex::new(State {
                core,
                position: loaded.position,
                next_outbox,
                stored_since_compaction: loaded.changes.len(),
                history_at_compaction: 0,
                events_since_snapshot: 0,
                stats: Stats {
                    resumed_from: loaded.position,
                    ..Stats::default()
                },
                publish_error: None,
                listeners: Listeners::new(config.watch_capacity),
                pending_meta: HashMap::new(),
            }),
            version: watch::channel(0).0,
            outbox_wake: Notify::new(),
            outbox_rounds: watch::channel(0).0,
            snapshot_wake: Notify::new(),
            config,
        });
        if !loaded.outbox.is_empty() {
            shared.outbox_wake.notify_one();
        }
        let tasks = vec![
            tokio::spawn(follow(shared.clone())),
            tokio::spawn(drain_outbox(shared.clone())),
            tokio::spawn(snapshots::run_policy(shared.clone())),
        ];
        Ok(Self {
            handle: Arc::new(Handle {
                shared,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The replica's configuration.
    pub fn config(&self) -> &Config {
        &self.shared().config
    }

    /// Changes the document in one automerge transaction. Returns the closure's output and the
    /// hash of the change (`None` if the closure changed nothing). When this returns, the
    /// change is on local disk and queued for the log; [`flush`](Self::flush) waits for the
    /// log's acknowledgement. If the closure fails, nothing is changed.
    pub async fn change<O, E>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<O, E>,
    ) -> Result<(O, Option<ChangeHash>), Error>
    where
        E: Into<Error>,
    {
        self.change_with_message(None, f).await
    }

    /// Like [`change`](Self::change), with a message saying why, carried in the event.
    pub async fn change_with_message<O, E>(
        &self,
        message: Option<&str>,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<O, E>,
    ) -> Result<(O, Option<ChangeHash>), Error>
    where
        E: Into<Error>,
    {
        let s = self.shared();
        let (out, hash) = {
            let mut st = s.lock();
            let time = now_ms();
            let watched = st.listeners.any();
            let (out, local, patches) = if watched {
                st.core
                    .transact_with_patches(time, message.map(str::to_owned), f)
                    .map_err(Into::into)?
            } else {
                let (out, local) = st
                    .core
                    .transact(time, message.map(str::to_owned), f)
                    .map_err(Into::into)?;
                (out, local, Vec::new())
            };
            let Some(local) = local else {
                return Ok((out, None));
            };
            let envelope = codec::encode_event(
                &s.config.space,
                &s.config.document,
                &s.config.agent,
                &local,
                time,
                message.map(str::to_owned),
            )
            .encode();
            let id = st.next_outbox;
            let stored = if envelope.len() > MAX_ENVELOPE_BYTES {
                Err(Error::TooLarge {
                    len: envelope.len(),
                    max: MAX_ENVELOPE_BYTES,
                })
            } else {
                s.store
                    .add_local(
                        &local.hash.0,
                        &local.bytes,
                        id,
                        &local.hash.to_string(),
                        &envelope,
                    )
                    .map_err(Error::from)
            };
            if let Err(e) = stored {
                // The change exists only in memory: take it back by reloading from disk, so
                // the document never holds a change that will not reach the log.
                st.core = load_core(&s.store)?;
                return Err(e);
            }
            st.next_outbox += 1;
            st.stored_since_compaction += 1;
            s.maybe_compact(&mut st);
            // Sent under the lock, so a watch switching to live sees each change exactly once.
            let meta = Meta {
                seq: None,
                agent: s.config.agent.clone(),
                time_ms: time,
                message: message.map(str::to_owned),
            };
            s.announce(&mut st, &local.hash, &meta, patches);
            (out, local.hash)
        };
        s.version.send_modify(|v| *v += 1);
        // Publishing and the local fsync overlap: the outbox reads the entry from sled
        // before it is durable. A crash in between can leave the change on the log but not
        // on disk; the replica then reads it back from the log like any other event (and a
        // re-published outbox entry is dropped by the log's duplicate window).
        s.outbox_wake.notify_one();
        s.store.flush().await?;
        Ok((out, Some(hash)))
    }

    /// Adds changes made elsewhere (a fork's copies) as if written here, keeping each one's
    /// writer, time and message: applied, saved with outbox entries in one batch, flushed.
    /// Their message ids name this document too, since the same change may already be on
    /// the log under another document of the space.
    pub(crate) async fn import(
        &self,
        changes: Vec<(automerge::Change, Option<Record>)>,
    ) -> Result<(), Error> {
        use crate::store::LocalEntry;
        let s = self.shared();
        {
            let mut st = s.lock();
            let mut entries = Vec::with_capacity(changes.len());
            for (change, record) in &changes {
                let hash = change.hash();
                let (agent, time_ms, message) = match record {
                    Some(r) => (r.agent.clone(), r.time_ms, r.message.clone()),
                    None => (s.config.agent.clone(), change.timestamp() * 1000, None),
                };
                let local = crate::doc::LocalChange {
                    hash,
                    bytes: change.raw_bytes().to_vec(),
                };
                let envelope = codec::encode_event(
                    &s.config.space,
                    &s.config.document,
                    &agent,
                    &local,
                    time_ms,
                    message,
                )
                .encode();
                let id = st.next_outbox;
                st.next_outbox += 1;
                entries.push((
                    hash,
                    local.bytes,
                    id,
                    format!("{hash}:{}", s.config.document),
                    envelope,
                ));
            }
            s.store
                .add_locals(entries.iter().map(|(h, c, id, m, e)| LocalEntry {
                    hash: &h.0,
                    change: c,
                    outbox_id: *id,
                    msg_id: m,
                    payload: e,
                }))?;
            for (change, _) in changes {
                st.core.apply(change)?;
            }
            st.stored_since_compaction += entries.len();
            s.maybe_compact(&mut st);
        }
        s.version.send_modify(|v| *v += 1);
        s.outbox_wake.notify_one();
        s.store.flush().await?;
        Ok(())
    }

    /// Writes a JSON value at `path` (see [`Path`]), creating missing maps on the way.
    /// Returns the change's hash (`None` if nothing changed).
    /// An object is merged into the map already there, key by key; maps are created by the
    /// container recipe (see [`edit`](Self::edit)), so concurrent writers share them.
    pub async fn put(&self, path: &str, value: Json) -> Result<Option<ChangeHash>, Error> {
        let path: Path = path.parse()?;
        Ok(self.edit(None, &[Edit::put(path, value)]).await?.hash)
    }

    /// Deletes what is at `path`; nothing there is not an error.
    pub async fn delete(&self, path: &str) -> Result<Option<ChangeHash>, Error> {
        let path: Path = path.parse()?;
        Ok(self.edit(None, &[Edit::Delete { path }]).await?.hash)
    }

    /// Splices `insert` into the text at `path` at character `pos`, deleting `delete` characters
    /// first; creates the text when nothing is at `path`. Concurrent splices from several
    /// agents all survive, merged by automerge.
    pub async fn splice_text(
        &self,
        path: &str,
        pos: usize,
        delete: isize,
        insert: &str,
    ) -> Result<Option<ChangeHash>, Error> {
        let path: Path = path.parse()?;
        let edit = Edit::SpliceText {
            path,
            pos,
            delete,
            insert: insert.to_owned(),
        };
        Ok(self.edit(None, &[edit]).await?.hash)
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

    /// What the replica has done since it was opened.
    pub fn stats(&self) -> Stats {
        self.shared().lock().stats.clone()
    }

    /// The number of local changes not yet acknowledged by the log.
    pub fn pending(&self) -> usize {
        self.shared().store.outbox_len()
    }

    /// Waits until every local change made before this call is acknowledged by the log.
    /// While the log is unreachable this keeps waiting (the changes are safe on disk
    /// meanwhile); wrap it in `tokio::time::timeout` to bound the wait. If the log refuses
    /// the changes for a reason retrying cannot fix (say, a misconfigured stream), this
    /// returns that error; the outbox keeps the changes and keeps retrying.
    pub async fn flush(&self) -> Result<(), Error> {
        let s = self.shared();
        let target = s.lock().next_outbox - 1;
        let mut rounds = s.outbox_rounds.subscribe();
        loop {
            match s.store.outbox_first()? {
                Some(first) if first <= target => {}
                _ => return Ok(()),
            }
            rounds.changed().await.map_err(|_| Error::Closed)?;
            if let Some(e) = &s.lock().publish_error {
                if !e.is_transient() {
                    return Err(Error::Publish(e.to_string()));
                }
            }
        }
    }

    /// Waits until the document contains every change in `heads` (for example another
    /// agent's heads after its flush).
    pub async fn wait_for(&self, heads: &[ChangeHash]) -> Result<(), Error> {
        let s = self.shared();
        let mut version = s.version.subscribe();
        loop {
            if s.lock().core.contains(heads) {
                return Ok(());
            }
            version.changed().await.map_err(|_| Error::Closed)?;
        }
    }

    /// Watches the changes that touch `pattern` (see [`Pattern`] for the syntax), from
    /// `options.start`. See [`crate::watch`] for the guarantees.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use blackboard::{log::EmbeddedLog, replica::{Config, Replica}};
    /// use blackboard::watch::{Options, PatchOp};
    /// use futures::StreamExt;
    /// # let dir = tempfile::tempdir()?;
    /// # let db = sled::open(dir.path())?;
    /// # let log = Arc::new(EmbeddedLog::open(db.clone())?);
    /// # let doc = Replica::open(log, &db, Config::new("team".parse()?, "plan".parse()?, "me".parse()?))?;
    /// let mut statuses = doc.watch("/tasks/*/status".parse()?, Options::default())?;
    /// doc.put("/tasks/7", serde_json::json!({"title": "docs", "status": "open"})).await?;
    /// // /tasks and /tasks/7 were created (above the pattern), each by a change of its own
    /// // (the container recipe), then the status was set; the title is not watched.
    /// let mut paths = Vec::new();
    /// for _ in 0..3 {
    ///     let event = statuses.next().await.unwrap()?;
    ///     assert!(event.local);
    ///     paths.extend(event.patches.iter().map(|p| (p.path.to_string(), p.op.clone())));
    /// }
    /// assert_eq!(paths[0].0, "/tasks");
    /// assert_eq!(paths[1].0, "/tasks/7");
    /// assert_eq!(paths[2], ("/tasks/7/status".to_owned(), PatchOp::Put { value: "open".into() }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn watch(&self, pattern: Pattern, options: watches::Options) -> Result<Watch, Error> {
        let s = &self.handle.shared;
        let mut start = options.start;
        let cursor = match options.durable {
            Some(name) => {
                if let Some(position) = s.store.get_cursor(&name)? {
                    start = watches::Start::After(position);
                }
                Some((s.store.clone(), name))
            }
            None => None,
        };
        Ok(watches::spawn(s, pattern, start, options.buffer, cursor))
    }

    /// Waits until the replica has applied the log up to position `seq`.
    pub async fn wait_for_position(&self, seq: u64) -> Result<(), Error> {
        let s = self.shared();
        let mut version = s.version.subscribe();
        while s.lock().position < seq {
            version.changed().await.map_err(|_| Error::Closed)?;
        }
        Ok(())
    }

    /// Waits until `f` holds for the document, re-checking after every change.
    pub async fn wait_until(&self, mut f: impl FnMut(&DocCore) -> bool) -> Result<(), Error> {
        let s = self.shared();
        let mut version = s.version.subscribe();
        loop {
            if f(&s.lock().core) {
                return Ok(());
            }
            version.changed().await.map_err(|_| Error::Closed)?;
        }
    }

    /// Stops following the log and publishing, and makes local state durable. Unpublished
    /// changes stay in the outbox for the next opening. Other clones of this handle stop
    /// syncing too.
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
        self.shared().store.flush().await?;
        Ok(())
    }
}

fn load_core(store: &ReplicaStore) -> Result<DocCore, Error> {
    let loaded = store.load()?;
    let (core, errors) = DocCore::load(
        loaded.snapshot.as_deref(),
        loaded.changes.iter().map(Vec::as_slice),
    )?;
    for e in errors {
        warn!(error = %e, "skipped an unreadable change in the replica store");
    }
    Ok(core)
}

impl Shared {
    /// Tells live watchers about a change (if any are listening and it did something).
    fn announce(&self, st: &mut State, hash: &ChangeHash, meta: &Meta, patches: Vec<Patch>) {
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
            local: meta.agent == self.config.agent,
            patches,
        };
        st.listeners.send(Arc::new(event));
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the document half-changed (automerge
        // panics are caught in the core), so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a run of entries from the log under one lock: decode, apply, remember the
    /// position. Their store writes go in one sled batch, committed before anyone is told
    /// (waiters, compaction).
    fn apply_entries(&self, entries: Vec<Entry>) {
        let mut st = self.lock();
        let mut batch = RemoteBatch::default();
        // Changes indexed by this batch, not yet visible to `seq_of`.
        let mut indexed_here = HashSet::new();
        for entry in entries {
            self.apply_entry(&mut st, entry, &mut batch, &mut indexed_here);
        }
        if let Err(e) = self.store.commit_remote(batch) {
            warn!(error = %e, seq = st.position, "could not record applied events");
        }
        self.maybe_compact(&mut st);
        drop(st);
        self.version.send_modify(|v| *v += 1);
    }

    /// Applies one entry from the log into `batch`.
    fn apply_entry(
        &self,
        st: &mut State,
        entry: Entry,
        batch: &mut RemoteBatch,
        indexed_here: &mut HashSet<ChangeHash>,
    ) {
        if entry.seq <= st.position {
            return;
        }
        st.stats.events_read += 1;
        let (space, document) = (&self.config.space, &self.config.document);
        let outcome = codec::decode_event(space, document, &entry.payload)
            .map_err(|e| e.to_string())
            .and_then(|event| {
                let hash = event.change.hash();
                let applied = if st.listeners.any() {
                    st.core.apply_with_patches(event.change)
                } else {
                    st.core.apply(event.change).map(|a| (a, Vec::new()))
                };
                match applied {
                    Ok((applied, took_effect)) => Ok((hash, event.envelope, applied, took_effect)),
                    Err(e @ DocError::Panicked(_)) => {
                        // The in-memory document may be damaged: rebuild it from disk, with
                        // this batch's changes written first.
                        if let Err(e) = self.store.commit_remote(std::mem::take(batch)) {
                            warn!(error = %e, "could not record applied events");
                        }
                        match load_core(&self.store) {
                            Ok(core) => st.core = core,
                            Err(reload) => warn!(error = %reload, "reloading the replica failed"),
                        }
                        Err(e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                }
            });
        match outcome {
            Ok((hash, envelope, applied, took_effect)) => {
                // The first event carrying a change is where the index puts it; our own
                // changes are indexed here too, when they come back from the log. A change
                // new to the document cannot be indexed yet, so only a duplicate costs a
                // lookup.
                let indexed = match applied {
                    Applied::Duplicate if indexed_here.contains(&hash) => Ok(true),
                    Applied::Duplicate => self.store.seq_of(&hash.0).map(|s| s.is_some()),
                    _ => Ok(false),
                };
                let record = match indexed {
                    Ok(true) => None,
                    Ok(false) => Some(Record {
                        seq: entry.seq,
                        hash,
                        logged_ms: entry.time_ms,
                        time_ms: envelope.time_ms,
                        agent: envelope.agent.clone(),
                        message: envelope.message.clone(),
                    }),
                    Err(e) => {
                        warn!(error = %e, "cannot read the position index");
                        None
                    }
                };
                if record.is_some() {
                    indexed_here.insert(hash);
                    st.events_since_snapshot += 1;
                    let every = self.config.snapshots.every_events;
                    if every > 0 && st.events_since_snapshot >= every {
                        self.snapshot_wake.notify_one();
                    }
                }
                if applied == Applied::Duplicate {
                    batch.add(entry.seq, None, record.as_ref());
                } else {
                    st.stats.events_applied += 1;
                    st.stored_since_compaction += 1;
                    debug!(seq = entry.seq, %hash, ?applied, "applied remote change");
                    batch.add(
                        entry.seq,
                        Some((&hash.0, &envelope.change)),
                        record.as_ref(),
                    );
                    st.position = entry.seq;
                    let meta = Meta {
                        seq: Some(entry.seq),
                        agent: envelope.agent,
                        time_ms: envelope.time_ms,
                        message: envelope.message,
                    };
                    if applied == Applied::Pending {
                        // Reported when its dependencies arrive, with its own metadata.
                        st.pending_meta.insert(hash, meta);
                    } else {
                        for change in took_effect {
                            let meta = if change.hash == hash {
                                meta.clone()
                            } else {
                                st.pending_meta
                                    .remove(&change.hash)
                                    .unwrap_or_else(|| Meta::unknown(&self.config.agent))
                            };
                            self.announce(st, &change.hash, &meta, change.patches);
                        }
                    }
                }
            }
            Err(reason) => {
                warn!(
                    space = %space,
                    document = %document,
                    seq = entry.seq,
                    reason = %reason,
                    "rejected event; skipping it"
                );
                st.stats.events_rejected += 1;
                st.stats.last_rejection = Some(format!("position {}: {reason}", entry.seq));
                batch.add(entry.seq, None, None);
            }
        }
        st.position = entry.seq;
    }

    /// Folds stored changes into a snapshot once there are enough of them, so reopening
    /// does not replay an ever-growing list.
    ///
    /// Each compaction saves the whole document, so the threshold grows with the document:
    /// at least `compact_after` changes, and at least a quarter of the changes the document
    /// had at the last compaction. Catching up on n events then saves O(log n) times, not
    /// n / `compact_after` times (a 100k-event catch-up saved a growing document 100 times).
    fn maybe_compact(&self, st: &mut State) {
        let threshold = self.config.compact_after.max(st.history_at_compaction / 4);
        if st.stored_since_compaction < threshold {
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
                // Counting the document's changes is O(n) in automerge: count what was
                // stored instead (an undercount at first, which only compacts sooner).
                st.history_at_compaction += st.stored_since_compaction;
                st.stored_since_compaction = 0;
            }
            Err(e) => warn!(error = %e, "compaction failed; will retry"),
        }
    }
}

/// The most log entries applied under one lock (a local write waits for at most one batch).
const APPLY_BATCH: usize = 256;

/// Follows the log from the last applied position, forever; resubscribes after errors.
async fn follow(shared: Arc<Shared>) {
    let mut backoff = Backoff::default();
    loop {
        let (space, document) = (&shared.config.space, &shared.config.document);
        match snapshots::recover(&shared).await {
            Ok(()) => {}
            Err(Error::Log(e)) if e.is_transient() => {
                warn!(%space, %document, error = %e, "cannot check the stored snapshot; retrying");
                backoff.wait().await;
                continue;
            }
            // A snapshot that cannot be read must not stop the replica from following.
            Err(e) => warn!(
                %space, %document, error = %e,
                "the stored snapshot is unusable; following the log without it"
            ),
        }
        let from = shared.lock().position + 1;
        match shared.log.subscribe(space, document, from).await {
            Ok(entries) => {
                debug!(%space, %document, from, "following the log");
                // Whatever has arrived is applied as one batch (one lock, one sled batch).
                let mut arrived = entries.ready_chunks(APPLY_BATCH);
                while let Some(items) = arrived.next().await {
                    let mut batch = Vec::with_capacity(items.len());
                    let mut failed = None;
                    for item in items {
                        match item {
                            Ok(entry) => batch.push(entry),
                            // What follows an error is read again after resubscribing.
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    if !batch.is_empty() {
                        backoff.reset();
                        shared.apply_entries(batch);
                    }
                    if let Some(e) = failed {
                        warn!(%space, %document, error = %e, "log subscription failed; resubscribing");
                        break;
                    }
                }
            }
            Err(e) => warn!(%space, %document, error = %e, "cannot subscribe to the log; retrying"),
        }
        backoff.wait().await;
    }
}

/// Publishes outbox entries, oldest first, removing each once acknowledged.
async fn drain_outbox(shared: Arc<Shared>) {
    let mut backoff = Backoff::default();
    let (space, document) = (&shared.config.space, &shared.config.document);
    loop {
        let batch = match shared.store.outbox(shared.config.outbox_batch) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "cannot read the outbox");
                backoff.wait().await;
                continue;
            }
        };
        if batch.is_empty() {
            shared.outbox_rounds.send_modify(|r| *r += 1);
            shared.outbox_wake.notified().await;
            continue;
        }
        // Publish the batch in order (positions follow the order the changes were made),
        // awaiting the acknowledgements together: a batch costs about one round trip.
        let results = shared
            .log
            .publish_batch(
                space,
                document,
                batch
                    .iter()
                    .map(|e| (e.msg_id.clone(), e.payload.clone()))
                    .collect(),
            )
            .await;
        let mut acked = Vec::new();
        let mut failure = None;
        for (entry, result) in batch.iter().zip(results) {
            match result {
                Ok(p) => {
                    debug!(seq = p.seq, duplicate = p.duplicate, msg_id = %entry.msg_id, "published");
                    acked.push(entry.id);
                }
                // The first failure is the cause; later ones were not sent because of it.
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let n = acked.len() as u64;
        if let Err(e) = shared.store.remove_outbox(acked) {
            warn!(error = %e, "cannot update the outbox");
        }
        if let Some(e) = &failure {
            warn!(%space, %document, error = %e, "publishing failed; the outbox will retry");
        }
        {
            let mut st = shared.lock();
            st.stats.published += n;
            st.publish_error = failure;
        }
        shared.outbox_rounds.send_modify(|r| *r += 1);
        if shared.lock().publish_error.is_some() {
            backoff.wait().await;
        } else {
            backoff.reset();
        }
    }
}

/// Exponential backoff between retries, from 50 ms to 2 s.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(Duration::from_millis(50))
    }
}

impl Backoff {
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::json;
    use crate::log::EmbeddedLog;
    use serde_json::json;

    fn open(dir: &std::path::Path) -> (Replica, sled::Db) {
        let db = sled::open(dir).unwrap();
        let log = Arc::new(EmbeddedLog::open(db.clone()).unwrap());
        let config = Config::new(
            "s".parse().unwrap(),
            "d".parse().unwrap(),
            "a".parse().unwrap(),
        );
        (Replica::open(log, &db, config).unwrap(), db)
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

    #[tokio::test]
    async fn compaction_folds_changes_into_a_snapshot_without_losing_any() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let log = Arc::new(EmbeddedLog::open(db.clone()).unwrap());
        let mut config = Config::new(
            "s".parse().unwrap(),
            "d".parse().unwrap(),
            "a".parse().unwrap(),
        );
        config.compact_after = 10;
        let doc = Replica::open(log.clone(), &db, config.clone()).unwrap();
        for i in 0..25 {
            doc.put(&format!("/k{i}"), json!(i)).await.unwrap();
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
}
