//! A document handle.

use blackboard::automerge::transaction::Transaction;
use blackboard::automerge::ChangeHash;
use blackboard::doc::DocCore;
use blackboard::history::{At, Blame, Filter as HistoryFilter, HistoryEvent};
use blackboard::log::SnapshotInfo;
use blackboard::replica::{Position, ReplayError, ReplayStep, Stats, Trimmed, View};
use blackboard::watch::{Options as WatchOptions, Pattern, Watch};
use blackboard::Replica;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;

use crate::Error;

/// One shared document, as seen by this agent. Cheap to clone.
///
/// Paths are JSON-Pointer-like: `/tasks/7/status`; `/` is the whole document.
#[derive(Debug, Clone)]
pub struct Doc {
    replica: Replica,
}

impl Doc {
    pub(crate) fn new(replica: Replica) -> Self {
        Self { replica }
    }

    /// The engine's replica behind this handle.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Changes the document in one automerge transaction (the full automerge model: maps,
    /// lists, text, counters). When this returns the change is saved locally and queued for
    /// the log. Returns the closure's output and the change hash (`None` if nothing changed).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use blackboard_client::{automerge::{transaction::Transactable, ScalarValue, ROOT}, Options};
    /// # let dir = tempfile::tempdir()?;
    /// # let board = Options::new("a")?.store(dir.path()).embedded().await?;
    /// let doc = board.doc("team", "stats")?;
    /// doc.change(|tx| tx.put(ROOT, "runs", ScalarValue::counter(0))).await?;
    /// doc.change(|tx| tx.increment(ROOT, "runs", 1)).await?;
    /// assert_eq!(doc.get("/runs")?, Some(serde_json::json!(1)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn change<O, E>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<O, E>,
    ) -> Result<(O, Option<ChangeHash>), Error>
    where
        E: Into<blackboard::Error>,
    {
        Ok(self.replica.change(f).await?)
    }

    /// Like [`change`](Self::change), recording `message` (why) with the change.
    pub async fn change_with_message<O, E>(
        &self,
        message: &str,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<O, E>,
    ) -> Result<(O, Option<ChangeHash>), Error>
    where
        E: Into<blackboard::Error>,
    {
        Ok(self.replica.change_with_message(Some(message), f).await?)
    }

    /// Writes a JSON value at `path`, creating missing maps on the way.
    pub async fn put(&self, path: &str, value: Json) -> Result<Option<ChangeHash>, Error> {
        Ok(self.replica.put(path, value).await?)
    }

    /// Like [`put`](Self::put), recording `message` (why) with the change: history and blame
    /// show it.
    pub async fn put_with_message(
        &self,
        path: &str,
        value: Json,
        message: &str,
    ) -> Result<Option<ChangeHash>, Error> {
        let path: blackboard::doc::Path = path.parse().map_err(blackboard::Error::from)?;
        let (_, hash) = self
            .replica
            .change_with_message(Some(message), |tx| {
                blackboard::doc::json::put(tx, &path, &value)
            })
            .await?;
        Ok(hash)
    }

    /// Writes any serializable value at `path`.
    pub async fn put_as<T: Serialize>(
        &self,
        path: &str,
        value: &T,
    ) -> Result<Option<ChangeHash>, Error> {
        let json = serde_json::to_value(value).map_err(|source| Error::Type {
            path: path.to_owned(),
            source,
        })?;
        self.put(path, json).await
    }

    /// Deletes what is at `path`.
    pub async fn delete(&self, path: &str) -> Result<Option<ChangeHash>, Error> {
        Ok(self.replica.delete(path).await?)
    }

    /// Splices text at `path` (creating the text if needed): deletes `delete` characters at
    /// `pos`, then inserts `insert`. Concurrent splices by several agents all survive.
    pub async fn splice_text(
        &self,
        path: &str,
        pos: usize,
        delete: isize,
        insert: &str,
    ) -> Result<Option<ChangeHash>, Error> {
        Ok(self.replica.splice_text(path, pos, delete, insert).await?)
    }

    /// The value at `path` as JSON; `None` when nothing is there.
    pub fn get(&self, path: &str) -> Result<Option<Json>, Error> {
        Ok(self.replica.get(path)?)
    }

    /// The value at `path` as `T`; `None` when nothing is there.
    pub fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, Error> {
        self.get(path)?
            .map(|v| {
                serde_json::from_value(v).map_err(|source| Error::Type {
                    path: path.to_owned(),
                    source,
                })
            })
            .transpose()
    }

    /// The whole document as JSON.
    pub fn to_json(&self) -> Json {
        self.replica.to_json()
    }

    /// The whole document as `T`.
    pub fn read_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_value(self.to_json()).map_err(|source| Error::Type {
            path: "/".to_owned(),
            source,
        })
    }

    /// Reads the automerge document directly.
    pub fn read<T>(&self, f: impl FnOnce(&DocCore) -> T) -> T {
        self.replica.read(f)
    }

    /// The document's current heads, sorted.
    pub fn heads(&self) -> Vec<ChangeHash> {
        self.replica.heads()
    }

    /// The last applied log position and the heads.
    pub fn position(&self) -> Position {
        self.replica.position()
    }

    /// What this replica has done since it was opened.
    pub fn stats(&self) -> Stats {
        self.replica.stats()
    }

    /// The number of local changes the log has not acknowledged yet.
    pub fn pending(&self) -> usize {
        self.replica.pending()
    }

    /// Waits until every local change made so far is acknowledged by the log.
    pub async fn flush(&self) -> Result<(), Error> {
        Ok(self.replica.flush().await?)
    }

    /// Waits until this replica has every change in `heads` (another agent's, say).
    pub async fn wait_for(&self, heads: &[ChangeHash]) -> Result<(), Error> {
        Ok(self.replica.wait_for(heads).await?)
    }

    /// Watches changes under `pattern` from now on: a [`Watch`] stream of
    /// [`ChangeEvent`](crate::ChangeEvent)s carrying only the patches that touch it.
    /// Patterns are paths with `*` (one segment) and `**` (any depth): `/tasks/*/status`,
    /// `/tasks/**`. A malformed pattern is an error here, not an empty stream.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use blackboard_client::{Options, PatchOp};
    /// use futures::StreamExt;
    /// use serde_json::json;
    /// # let dir = tempfile::tempdir()?;
    /// # let board = Options::new("a")?.store(dir.path()).embedded().await?;
    /// let tasks = board.doc("team", "tasks")?;
    /// let mut statuses = tasks.watch("/*/status")?;
    /// tasks.put("/7", json!({"status": "open"})).await?;
    /// let event = statuses.next().await.unwrap()?;
    /// let status = event.patches.last().unwrap();
    /// assert_eq!(status.path.to_string(), "/7/status");
    /// assert_eq!(status.op, PatchOp::Put { value: json!("open") });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn watch(&self, pattern: &str) -> Result<Watch, Error> {
        self.watch_with(pattern, WatchOptions::default())
    }

    /// Watches changes under `pattern` with explicit options: start from the beginning or
    /// after a position, or make the watch durable under a name.
    pub fn watch_with(&self, pattern: &str, options: WatchOptions) -> Result<Watch, Error> {
        let pattern: Pattern = pattern.parse()?;
        Ok(self.replica.watch(pattern, options)?)
    }

    /// Waits until this replica has applied the log up to position `seq`.
    pub async fn wait_for_position(&self, seq: u64) -> Result<(), Error> {
        Ok(self.replica.wait_for_position(seq).await?)
    }

    /// Waits until `f` holds for the document's JSON, re-checking after every change.
    pub async fn wait_until(&self, mut f: impl FnMut(&Json) -> bool) -> Result<(), Error> {
        Ok(self.replica.wait_until(|core| f(&core.to_json())).await?)
    }
}

/// History: who changed what, when and why, and the document at any moment. These read
/// this agent's replica; call [`sync`](Doc::sync) first to include everything the log holds
/// now. Positions ([`At`]) are a stream sequence, a time, or heads; parse them from strings
/// (`"42"`, `"2026-11-24T10:00:00Z"`, a hash) or build them.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use blackboard_client::{At, HistoryFilter, Options};
/// use serde_json::json;
/// # let dir = tempfile::tempdir()?;
/// # let board = Options::new("planner")?.store(dir.path()).embedded().await?;
/// let plan = board.doc("team", "plan")?;
/// plan.put_with_message("/goal", json!("ship"), "first idea").await?;
/// plan.put("/goal", json!("ship v2")).await?;
/// plan.flush().await?;
/// plan.sync().await?;
///
/// // Audit: who set /goal, when, and why.
/// let events = plan.history(&HistoryFilter { path: Some("/goal".parse()?), ..Default::default() })?;
/// assert_eq!(events.len(), 2);
/// assert_eq!(events[0].record.message.as_deref(), Some("first idea"));
/// assert_eq!(plan.blame("/goal")?.unwrap().record.unwrap().agent.as_str(), "planner");
///
/// // Time travel: the document after the first event.
/// let then = plan.at(&At::Seq(events[0].record.seq))?;
/// assert_eq!(then.get("/goal")?, Some(json!("ship")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
impl Doc {
    /// Waits until this replica has applied every event the log holds for the document
    /// now; returns that position.
    pub async fn sync(&self) -> Result<u64, Error> {
        Ok(self.replica.sync().await?)
    }

    /// The events matching `filter`, in order: position, heads after, agent, times,
    /// message, change hash, and the paths each touched.
    pub fn history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryEvent>, Error> {
        Ok(self.replica.history(filter)?)
    }

    /// A read-only view of the document at `at`.
    pub fn at(&self, at: &At) -> Result<View, Error> {
        Ok(self.replica.at(at)?)
    }

    /// Resolves any way of naming a moment to a position (sequence and heads).
    pub fn resolve(&self, at: &At) -> Result<Position, Error> {
        Ok(self.replica.resolve(at)?)
    }

    /// The patches that take the document from `from` to `to`.
    pub fn diff(&self, from: &At, to: &At) -> Result<Vec<blackboard::doc::Patch>, Error> {
        Ok(self.replica.diff(from, to)?)
    }

    /// Who wrote the current value at `path` (and, for text, each run of characters).
    pub fn blame(&self, path: &str) -> Result<Option<Blame>, Error> {
        Ok(self.replica.blame(path)?)
    }

    /// Runs the events after `from` through `step`, in order, on a copy of the document:
    /// to rebuild a derived view. Deterministic.
    pub fn replay<E>(
        &self,
        from: &At,
        step: impl FnMut(ReplayStep<'_>) -> Result<(), E>,
    ) -> Result<(), ReplayError<E>> {
        self.replica.replay(from, step)
    }

    /// Starts `target` (a document with no history yet) as a copy of this one at `at`.
    pub async fn fork_to(&self, at: &At, target: &Doc) -> Result<Position, Error> {
        Ok(self.replica.fork_to(at, &target.replica).await?)
    }

    /// Writes a snapshot of the document to the log now, for new replicas to start from.
    pub async fn snapshot(&self) -> Result<SnapshotInfo, Error> {
        Ok(self.replica.snapshot().await?)
    }

    /// Writes a snapshot and trims the document's events below it from the log.
    pub async fn trim(&self) -> Result<Trimmed, Error> {
        Ok(self.replica.trim().await?)
    }
}
