//! A document handle.

use blackboard::automerge::transaction::Transaction;
use blackboard::automerge::{ChangeHash, ReadDoc};
use blackboard::doc::{DocCore, Edit, PutMode};
use blackboard::history::{At, Blame, Filter as HistoryFilter, HistoryEvent};
use blackboard::log::SnapshotInfo;
use blackboard::replica::{Position, ReplayError, ReplayStep, Stats, Trimmed, View, Written};
use blackboard::schemas::AgentId;
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

    /// A handle on the same document whose writes declare `provenance` (who acted for
    /// whom: the model, the tool call), signed with each change; a field it leaves out keeps
    /// the board's default ([`Options::provenance`](crate::Options::provenance)). History,
    /// blame and watch events show it with the change.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use blackboard_client::{Options, Provenance};
    /// use serde_json::json;
    /// # let dir = tempfile::tempdir()?;
    /// # let board = Options::new("a")?.store(dir.path()).embedded().await?;
    /// let doc = board.doc("team", "plan")?;
    /// let call = Provenance { tool_call: Some("put#7".into()), ..Default::default() };
    /// doc.with_provenance(call).put("/goal", json!("ship")).await?;
    /// doc.flush().await?;
    /// doc.sync().await?;
    /// let blame = doc.blame("/goal")?.unwrap();
    /// let provenance = blame.record.unwrap().provenance.unwrap();
    /// assert_eq!(provenance.tool_call.as_deref(), Some("put#7"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn with_provenance(&self, provenance: blackboard::schemas::Provenance) -> Doc {
        Doc::new(self.replica.with_provenance(provenance))
    }

    /// The engine's replica behind this handle.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Changes the document in one automerge transaction (the full automerge model: maps,
    /// lists, text, counters). When this returns the change is saved locally and queued for
    /// the log. Returns the closure's output and the change hash (`None` if nothing changed).
    ///
    /// Objects the closure creates (`put_object`, or a counter `put`) are its own: another
    /// agent creating one at the same place concurrently makes a rival that automerge shows
    /// instead of it. To create shared containers, use [`put`](Self::put),
    /// [`append`](Self::append), [`increment`](Self::increment),
    /// [`splice_text`](Self::splice_text) or [`edit`](Self::edit), which create them by the
    /// container recipe, or create them with those first.
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

    /// Writes a JSON value at `path`, creating missing maps on the way. An object is merged
    /// into the map already there, key by key and at every depth (keys it does not name stay);
    /// [`put_replace`](Self::put_replace) replaces instead.
    ///
    /// Agents that write below the same new map at the same moment, even offline, share that
    /// map: it is created by a change every replica makes identically (the container recipe,
    /// [`blackboard::doc::containers`]), so every agent's keys stay in view. There is no need
    /// to sync before writing into a shared map.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use blackboard_client::Options;
    /// use serde_json::json;
    /// # let dir = tempfile::tempdir()?;
    /// # let board = Options::new("a")?.store(dir.path()).embedded().await?;
    /// let doc = board.doc("team", "tasks")?;
    /// doc.put("/t1", json!({"title": "docs"})).await?;
    /// doc.put("/t1", json!({"status": "open"})).await?;
    /// assert_eq!(doc.get("/t1")?, Some(json!({"title": "docs", "status": "open"})));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn put(&self, path: &str, value: Json) -> Result<Option<ChangeHash>, Error> {
        Ok(self.replica.put(path, value).await?)
    }

    /// Writes a JSON value at `path`, replacing whatever is there with it (an object becomes
    /// a fresh map). Two agents replacing one place concurrently conflict: every replica shows
    /// the same one, watchers get a `Conflict` patch naming both, and
    /// [`conflicts`](Self::conflicts) returns both.
    pub async fn put_replace(&self, path: &str, value: Json) -> Result<Option<ChangeHash>, Error> {
        let path = parse(path)?;
        let edit = Edit::Put {
            path,
            value,
            mode: PutMode::Replace,
        };
        Ok(self.replica.edit(None, &[edit]).await?.hash)
    }

    /// Appends `value` to the list at `path`, creating the list when nothing is there.
    /// Concurrent appends all stay, and concurrent first appends share one list.
    pub async fn append(&self, path: &str, value: Json) -> Result<Option<ChangeHash>, Error> {
        let path = parse(path)?;
        Ok(self
            .replica
            .edit(None, &[Edit::Append { path, value }])
            .await?
            .hash)
    }

    /// Adds `by` to the counter at `path`, creating it at 0 when nothing is there; returns the
    /// counter's value here afterwards. Concurrent increments add up, first ones included.
    /// A sum outside the range of an `i64` is refused, not wrapped.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use blackboard_client::Options;
    /// # let dir = tempfile::tempdir()?;
    /// # let board = Options::new("a")?.store(dir.path()).embedded().await?;
    /// let stats = board.doc("team", "stats")?;
    /// assert_eq!(stats.increment("/runs/done", 2).await?, 2);
    /// assert_eq!(stats.increment("/runs/done", 1).await?, 3);
    /// assert!(stats.increment("/runs/done", i64::MAX).await.is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn increment(&self, path: &str, by: i64) -> Result<i64, Error> {
        let path = parse(path)?;
        let written = self
            .replica
            .edit(None, &[Edit::Increment { path, by }])
            .await?;
        Ok(written.counters.first().copied().unwrap_or_default())
    }

    /// Makes several edits in one change, with an optional message (why). Containers they
    /// create merge with other agents' like [`put`](Self::put)'s.
    pub async fn edit(&self, message: Option<&str>, edits: &[Edit]) -> Result<Written, Error> {
        Ok(self.replica.edit(message, edits).await?)
    }

    /// Every value concurrently at `path`, with who wrote each. automerge shows one of
    /// concurrent values (the same on every replica) and hides the others; this returns them
    /// all, the shown one marked `winner`. Empty when nothing is there, one value when there
    /// is no conflict.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use blackboard_client::Options;
    /// use serde_json::json;
    /// # let dir = tempfile::tempdir()?;
    /// # let board = Options::new("a")?.store(dir.path()).embedded().await?;
    /// let doc = board.doc("team", "plan")?;
    /// doc.put("/goal", json!("ship")).await?;
    /// let all = doc.conflicts("/goal")?;
    /// assert_eq!(all.len(), 1);
    /// assert!(all[0].winner);
    /// assert_eq!(all[0].agent.as_ref().map(|a| a.as_str()), Some("a"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn conflicts(&self, path: &str) -> Result<Vec<Conflict>, Error> {
        let path = parse(path)?;
        let candidates = self
            .replica
            .read(|core| core.conflicts(&path))
            .map_err(blackboard::Error::from)?;
        candidates.into_iter().map(|c| self.attribute(c)).collect()
    }

    /// Every path of the document that holds concurrent values, each with all of its values
    /// and who wrote each (see [`conflicts`](Self::conflicts)), sorted by path. Empty when
    /// nothing conflicts.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # use blackboard_client::Options;
    /// # let dir = tempfile::tempdir()?;
    /// # let board = Options::new("a")?.store(dir.path()).embedded().await?;
    /// let doc = board.doc("team", "plan")?;
    /// doc.put("/goal", serde_json::json!("ship")).await?;
    /// assert!(doc.all_conflicts()?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn all_conflicts(&self) -> Result<Vec<(String, Vec<Conflict>)>, Error> {
        let found = self
            .replica
            .read(|core| {
                core.conflicted_paths()
                    .into_iter()
                    .map(|p| core.conflicts(&p).map(|all| (p.to_string(), all)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(blackboard::Error::from)?;
        found
            .into_iter()
            .map(|(path, all)| {
                let all = all
                    .into_iter()
                    .map(|c| self.attribute(c))
                    .collect::<Result<_, _>>()?;
                Ok((path, all))
            })
            .collect()
    }

    /// Names the writer of one of a path's concurrent values from the log's index.
    fn attribute(&self, c: blackboard::doc::Candidate) -> Result<Conflict, Error> {
        let record = match &c.change {
            Some(hash) => self.replica.record_of(hash)?,
            None => None,
        };
        // A change of ours the log has not indexed yet is still ours.
        let agent = match (&record, c.change) {
            (Some(r), _) => Some(r.agent.clone()),
            (None, Some(hash)) if self.is_local(&hash) => Some(self.replica.config().agent.clone()),
            _ => None,
        };
        Ok(Conflict {
            value: c.value,
            winner: c.winner,
            agent,
            change: c.change,
            seq: record.map(|r| r.seq),
        })
    }

    /// Whether `hash` is one of this replica's own unacknowledged changes.
    fn is_local(&self, hash: &ChangeHash) -> bool {
        let own = self.replica.read(|core| {
            core.automerge()
                .get_change_by_hash(hash)
                .map(|c| c.actor_id() == core.automerge().get_actor())
        });
        own.unwrap_or(false)
    }

    /// Like [`put`](Self::put), recording `message` (why) with the change: history and blame
    /// show it.
    pub async fn put_with_message(
        &self,
        path: &str,
        value: Json,
        message: &str,
    ) -> Result<Option<ChangeHash>, Error> {
        let path = parse(path)?;
        let written = self
            .replica
            .edit(Some(message), &[Edit::put(path, value)])
            .await?;
        Ok(written.hash)
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
    /// tasks.put("/7", json!({"title": "docs"})).await?;
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

/// One of the values concurrently at a path: see [`Doc::conflicts`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Conflict {
    /// The value, as JSON.
    pub value: Json,
    /// Whether this is the value every replica shows.
    pub winner: bool,
    /// The agent that wrote it, from the log's index (`None` when this replica has not seen
    /// the event that carried it, say a change applied from a snapshot).
    pub agent: Option<AgentId>,
    /// The change that wrote it.
    #[serde(serialize_with = "hash_opt")]
    pub change: Option<ChangeHash>,
    /// The log position of that change's first event, when known.
    pub seq: Option<u64>,
}

fn hash_opt<S: serde::Serializer>(h: &Option<ChangeHash>, s: S) -> Result<S::Ok, S::Error> {
    match h {
        Some(h) => s.collect_str(h),
        None => s.serialize_none(),
    }
}

fn parse(path: &str) -> Result<blackboard::doc::Path, Error> {
    Ok(path.parse().map_err(blackboard::Error::from)?)
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

    /// Like [`history`](Self::history), also listing the change events the space's roster
    /// rejected, each at its position with `rejected` saying why; their changes are in no
    /// view of the history.
    pub fn history_with_rejections(
        &self,
        filter: &HistoryFilter,
    ) -> Result<Vec<HistoryEvent>, Error> {
        Ok(self.replica.history_with_rejections(filter)?)
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

    /// Who wrote each run of characters of the text at `path`, in order, each with its
    /// agent, position and message (see [`Replica::blame_text`]). `None` when nothing is at
    /// `path` or the value there is not a text.
    pub fn blame_text(&self, path: &str) -> Result<Option<Vec<crate::TextRun>>, Error> {
        Ok(self.replica.blame_text(path)?)
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
