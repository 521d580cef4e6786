//! The document core: one automerge document, fed changes, with no I/O.
//!
//! Everything here is plain functions and types: the replica (`crate::replica`) wraps a
//! [`DocCore`] with storage and the event log. Keeping the core free of sockets and disks lets
//! the convergence tests deliver changes in any order without a server.
//!
//! automerge is used through this module only, so its version can move without touching the
//! rest of the engine (see ARCHITECTURE.md for why it is pinned to 0.6).

pub mod containers;
mod edit;
pub mod json;
mod patch;
mod path;
pub mod touched;

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use automerge::patches::TextRepresentation;
use automerge::transaction::{CommitOptions, Transaction};
use automerge::{ActorId, Automerge, AutomergeError, Change, ChangeHash, PatchLog, ReadDoc};
use serde_json::Value as Json;

pub use edit::{Candidate, Edit, Edited};
pub use json::PutMode;
pub use patch::{diff_reading, Patch, PatchOp};
pub use path::{Path, PathError};

/// What went wrong in the document core.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// A path could not be parsed.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A path went through something that is neither a map nor a list.
    #[error("{path} is not a map or list, so nothing can be read or written below it")]
    NotAContainer {
        /// The offending prefix of the path.
        path: String,
    },
    /// A list was addressed with something that is not an index.
    #[error("{segment:?} under {path} is not a list index")]
    BadIndex {
        /// The list's path.
        path: String,
        /// The segment that is not a number.
        segment: String,
    },
    /// A list index past the end.
    #[error("{path} is out of bounds: the list has {len} elements")]
    OutOfBounds {
        /// The path written.
        path: String,
        /// The list's length.
        len: usize,
    },
    /// A text operation addressed something that is not text.
    #[error("{path} is not a text object")]
    NotText {
        /// The path addressed.
        path: String,
    },
    /// An append addressed something that is not a list.
    #[error("{path} is not a list, so nothing can be appended to it")]
    NotAList {
        /// The path addressed.
        path: String,
    },
    /// An increment addressed something that is not a counter.
    #[error(
        "{path} holds a value that is not a counter; increment only works on counters \
         (delete it first, or put a new value)"
    )]
    NotACounter {
        /// The path addressed.
        path: String,
    },
    /// An increment would take a counter past the range of an `i64`; nothing was changed.
    #[error("incrementing {path} ({value}) by {by} would overflow a 64-bit counter")]
    Overflow {
        /// The counter.
        path: String,
        /// Its value before.
        value: i64,
        /// The refused increment.
        by: i64,
    },
    /// The root is a map: it can only be written with a JSON object and cannot be deleted.
    #[error("the document root is a map: write it with a JSON object, or write below it")]
    RootNotObject,
    /// Bytes that should have been an automerge change were not.
    #[error("invalid automerge change: {0}")]
    BadChange(String),
    /// automerge panicked on input; the document must be reloaded from storage.
    #[error("automerge panicked while {0}; the document was not changed")]
    Panicked(&'static str),
    /// The queue of changes held back for missing dependencies is full, so this change
    /// (which also lacks dependencies) was refused. Nothing was changed.
    #[error(
        "refused a change with missing dependencies: {limit} changes are already held back \
         waiting for theirs (the pending limit)"
    )]
    PendingFull {
        /// The limit in force ([`DEFAULT_PENDING_LIMIT`] unless set with
        /// [`DocCore::with_pending_limit`]).
        limit: usize,
    },
    /// An error from automerge itself.
    #[error("automerge: {0}")]
    Automerge(#[from] AutomergeError),
}

/// A change made locally, ready to become an event.
#[derive(Debug, Clone)]
pub struct LocalChange {
    /// The automerge change hash.
    pub hash: ChangeHash,
    /// The change in automerge's binary format.
    pub bytes: Vec<u8>,
}

/// What applying a remote change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The change is now part of the document.
    New,
    /// The document already had it (our own change coming back, or a redelivery).
    Duplicate,
    /// automerge is holding it until the changes it depends on arrive.
    Pending,
}

/// How many changes a [`DocCore`] holds back for missing dependencies before it refuses
/// more with [`DocError::PendingFull`] (see [`DocCore::with_pending_limit`]). Dependencies that
/// never arrive (a lost, refused or forged change) would otherwise grow the queue without end.
pub const DEFAULT_PENDING_LIMIT: usize = 10_000;

/// One automerge document.
///
/// ```
/// use blackboard::doc::{DocCore, Path};
/// use serde_json::json;
///
/// let mut a = DocCore::new();
/// let (_, change) = a
///     .transact(0, None, |tx| blackboard::doc::json::put(tx, &"/k".parse::<Path>()?, &json!(1)))
///     .unwrap();
/// let mut b = DocCore::new();
/// b.apply_bytes(&change.unwrap().bytes).unwrap();
/// assert_eq!(b.to_json(), json!({"k": 1}));
/// assert_eq!(a.heads(), b.heads());
/// ```
#[derive(Debug)]
pub struct DocCore {
    doc: Automerge,
    /// Changes whose dependencies have not arrived, held here rather than in automerge's own
    /// queue so that each change is applied, and reported, on its own when it becomes ready.
    pending: HashMap<ChangeHash, Change>,
    /// For each missing dependency, the pending changes waiting for it.
    waiting: HashMap<ChangeHash, Vec<ChangeHash>>,
    /// The most changes `pending` may hold.
    pending_limit: usize,
    /// Held-back changes that automerge refused once released (see `refused_count`).
    refused: u64,
}

/// One change that took effect, with what it did.
#[derive(Debug, Clone)]
pub struct AppliedChange {
    /// The change.
    pub hash: ChangeHash,
    /// Its patches (empty when patches were not asked for).
    pub patches: Vec<Patch>,
}

impl Default for DocCore {
    fn default() -> Self {
        Self::new()
    }
}

impl DocCore {
    /// An empty document with a fresh random actor.
    ///
    /// Every opening of a replica gets its own actor, so two processes (or a process and its
    /// restarted self with a lost write) can never produce two different changes with the same
    /// actor and sequence number.
    pub fn new() -> Self {
        Self::wrap(Automerge::new().with_actor(ActorId::random()))
    }

    fn wrap(doc: Automerge) -> Self {
        Self {
            doc,
            pending: HashMap::new(),
            waiting: HashMap::new(),
            pending_limit: DEFAULT_PENDING_LIMIT,
            refused: 0,
        }
    }

    /// Sets how many changes may be held back for missing dependencies (default
    /// [`DEFAULT_PENDING_LIMIT`]). Past it, such a change is refused with
    /// [`DocError::PendingFull`]; changes whose dependencies are present are never refused.
    pub fn with_pending_limit(mut self, limit: usize) -> Self {
        self.pending_limit = limit;
        self
    }

    /// Rebuilds a document from a saved snapshot (if any) and individually stored changes.
    ///
    /// Changes that fail to decode are returned as errors beside the document instead of
    /// failing the load, so one bad record on disk does not lose the rest.
    pub fn load<'a>(
        snapshot: Option<&[u8]>,
        changes: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(Self, Vec<DocError>), DocError> {
        let mut doc = match snapshot {
            Some(bytes) => guard("loading a snapshot", || Automerge::load(bytes))??,
            None => Automerge::new(),
        };
        doc.set_actor(ActorId::random());
        let mut core = Self::wrap(doc);
        let mut errors = Vec::new();
        for bytes in changes {
            if let Err(e) = core.apply_bytes(bytes) {
                errors.push(e);
            }
        }
        Ok((core, errors))
    }

    /// Runs `f` in a transaction. Returns its output and the change it made (`None` when it
    /// changed nothing). If `f` fails, nothing is changed.
    pub fn transact<O, E>(
        &mut self,
        time_ms: i64,
        message: Option<String>,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<O, E>,
    ) -> Result<(O, Option<LocalChange>), E> {
        let (out, change, _) = self.transact_inner(time_ms, message, false, f)?;
        Ok((out, change))
    }

    /// Like [`transact`](Self::transact), also returning the change's patches.
    pub fn transact_with_patches<O, E>(
        &mut self,
        time_ms: i64,
        message: Option<String>,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<O, E>,
    ) -> Result<(O, Option<LocalChange>, Vec<Patch>), E> {
        self.transact_inner(time_ms, message, true, f)
    }

    fn transact_inner<O, E>(
        &mut self,
        time_ms: i64,
        message: Option<String>,
        with_patches: bool,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<O, E>,
    ) -> Result<(O, Option<LocalChange>, Vec<Patch>), E> {
        // automerge stores change times in seconds.
        let options = |_: &O| {
            let opts = CommitOptions::default().with_time(time_ms / 1000);
            match message {
                Some(m) => opts.with_message(m),
                None => opts,
            }
        };
        let mut success = if with_patches {
            let text_rep = TextRepresentation::String(self.doc.text_encoding());
            self.doc.transact_and_log_patches_with(text_rep, options, f)
        } else {
            self.doc.transact_with(options, f)
        }
        .map_err(|failure| failure.error)?;
        let change = success.hash.and_then(|hash| {
            self.doc.get_change_by_hash(&hash).map(|c| LocalChange {
                hash,
                bytes: c.raw_bytes().to_vec(),
            })
        });
        let patches = if with_patches {
            let raw = self.doc.make_patches(&mut success.patch_log);
            patch::convert(&self.doc, raw)
        } else {
            Vec::new()
        };
        Ok((success.result, change, patches))
    }

    /// Like [`apply`](Self::apply), also returning every change that took effect (this one,
    /// then any held-back changes it released), each with its own patches.
    pub fn apply_with_patches(
        &mut self,
        change: Change,
    ) -> Result<(Applied, Vec<AppliedChange>), DocError> {
        self.apply_inner(change, true)
    }

    /// A copy of the document as it was at `heads` (which must all be in the document).
    pub fn fork_at(&self, heads: &[ChangeHash]) -> Result<DocCore, DocError> {
        let mut doc = guard("forking", || self.doc.fork_at(heads))??;
        doc.set_actor(ActorId::random());
        Ok(Self::wrap(doc))
    }

    /// The patches that take the document from `before` to `after` (both sets of heads in
    /// this document; either may be the later one).
    pub fn diff(
        &self,
        before: &[ChangeHash],
        after: &[ChangeHash],
    ) -> Result<Vec<Patch>, DocError> {
        // Values and conflicts are read from a copy holding both positions, not from the
        // present document.
        let mut both: Vec<ChangeHash> = before.iter().chain(after).copied().collect();
        both.sort();
        both.dedup();
        let fork = guard("forking", || self.doc.fork_at(&both))??;
        let text_rep = TextRepresentation::String(fork.text_encoding());
        let raw = guard("diffing", || fork.diff(before, after, text_rep))?;
        Ok(patch::convert(&fork, raw))
    }

    /// The changes this document has that `other` lacks, in causal order.
    pub fn changes_missing_from(&self, other: &DocCore) -> Vec<Change> {
        self.doc
            .get_changes(&other.doc.get_heads())
            .into_iter()
            .filter(|c| !other.has_change(&c.hash()))
            .cloned()
            .collect()
    }

    /// Decodes one change from its binary form. Never panics.
    pub fn decode_change(bytes: &[u8]) -> Result<Change, DocError> {
        guard("decoding a change", || Change::from_bytes(bytes.to_vec()))?
            .map_err(|e| DocError::BadChange(e.to_string()))
    }

    /// Applies a change in binary form.
    pub fn apply_bytes(&mut self, bytes: &[u8]) -> Result<Applied, DocError> {
        let change = Self::decode_change(bytes)?;
        self.apply(change)
    }

    /// Applies a decoded change. Idempotent: a change already present (or already held
    /// back) is a `Duplicate`. A change whose dependencies are missing is held back
    /// (`Pending`) and applied as soon as they arrive.
    ///
    /// On `Err(DocError::Panicked)` the in-memory document may be inconsistent and must be
    /// reloaded from storage; the replica does that.
    pub fn apply(&mut self, change: Change) -> Result<Applied, DocError> {
        Ok(self.apply_inner(change, false)?.0)
    }

    fn apply_inner(
        &mut self,
        change: Change,
        with_patches: bool,
    ) -> Result<(Applied, Vec<AppliedChange>), DocError> {
        let hash = change.hash();
        if self.has_change(&hash) || self.pending.contains_key(&hash) {
            return Ok((Applied::Duplicate, Vec::new()));
        }
        let missing: Vec<ChangeHash> = change
            .deps()
            .iter()
            .filter(|d| !self.has_change(d))
            .copied()
            .collect();
        if !missing.is_empty() {
            if self.pending.len() >= self.pending_limit {
                return Err(DocError::PendingFull {
                    limit: self.pending_limit,
                });
            }
            for dep in missing {
                self.waiting.entry(dep).or_default().push(hash);
            }
            self.pending.insert(hash, change);
            return Ok((Applied::Pending, Vec::new()));
        }
        let mut applied = vec![self.apply_ready(change, with_patches)?];
        // Release what was waiting for this change, and for those, transitively.
        let mut released = vec![hash];
        while let Some(done) = released.pop() {
            for waiter in self.waiting.remove(&done).unwrap_or_default() {
                let ready = self
                    .pending
                    .get(&waiter)
                    .is_some_and(|c| c.deps().iter().all(|d| self.has_change(d)));
                if !ready {
                    continue;
                }
                let Some(c) = self.pending.remove(&waiter) else {
                    continue;
                };
                match self.apply_ready(c, with_patches) {
                    Ok(change) => {
                        applied.push(change);
                        released.push(waiter);
                    }
                    Err(e @ DocError::Panicked(_)) => return Err(e),
                    // automerge refused a held-back change (say a second change with the same
                    // actor and sequence number) and left the document as it was. The change
                    // that released it did take effect, and so may others it releases: drop
                    // only the refused one rather than fail them all.
                    Err(_) => self.refused += 1,
                }
            }
        }
        Ok((Applied::New, applied))
    }

    /// Applies a change whose dependencies are all present.
    fn apply_ready(
        &mut self,
        change: Change,
        with_patches: bool,
    ) -> Result<AppliedChange, DocError> {
        let hash = change.hash();
        self.check_objects(&change)?;
        containers::verify(&self.doc, &change)?;
        if !with_patches {
            guard("applying a change", || self.doc.apply_changes([change]))??;
            return Ok(AppliedChange {
                hash,
                patches: Vec::new(),
            });
        }
        let mut log = PatchLog::active(TextRepresentation::String(self.doc.text_encoding()));
        guard("applying a change", || {
            self.doc.apply_changes_log_patches([change], &mut log)
        })??;
        // Converting reads the document a foreign change just altered: guarded too.
        let patches = guard("computing patches", || {
            let raw = self.doc.make_patches(&mut log);
            patch::convert(&self.doc, raw)
        })?;
        Ok(AppliedChange { hash, patches })
    }

    /// Refuses a change with an operation on an object that neither the document nor an
    /// earlier operation of the change created. automerge 0.6 takes such a change into its
    /// history and then, while logging patches, stops at that operation with `NotAnObject`,
    /// leaving the change half-applied; without patches it applies it, skipping nothing
    /// visible. Replicas with and without watchers would then differ, so it is refused before
    /// either path. (Found by the `apply_change` fuzz target.)
    fn check_objects(&self, change: &Change) -> Result<(), DocError> {
        // Expanding touches no document, so a panic here is only a malformed change.
        let expanded = guard("expanding a change", || change.decode())
            .map_err(|_| DocError::BadChange("automerge could not expand its operations".into()))?;
        let start = expanded.start_op.get();
        let mut known: HashSet<String> = HashSet::new();
        for (i, op) in expanded.operations.iter().enumerate() {
            let obj = op.obj.to_string();
            if obj != "_root" && !known.contains(&obj) {
                let found = guard("looking up an object", || self.doc.import(&obj));
                if !matches!(found, Ok(Ok(_))) {
                    return Err(DocError::BadChange(format!(
                        "operation {i} is on object {obj}, which the document does not have"
                    )));
                }
                known.insert(obj);
            }
            if op.obj_type().is_some() {
                if let Some(counter) = start.checked_add(i as u64) {
                    known.insert(format!("{counter}@{}", expanded.actor_id));
                }
            }
        }
        Ok(())
    }

    /// The number of changes held back for missing dependencies.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The number of held-back changes that automerge refused when their dependencies
    /// arrived (for example a second, different change with an actor and sequence number the
    /// document already had). They were dropped; the changes that released them took effect.
    pub fn refused_count(&self) -> u64 {
        self.refused
    }

    /// Whether the document holds the change with this hash.
    pub fn has_change(&self, hash: &ChangeHash) -> bool {
        self.doc.get_change_by_hash(hash).is_some()
    }

    /// Whether every change in `heads` (and so everything before them) is in the document.
    pub fn contains(&self, heads: &[ChangeHash]) -> bool {
        heads.iter().all(|h| self.has_change(h))
    }

    /// The current heads, sorted.
    pub fn heads(&self) -> Vec<ChangeHash> {
        let mut heads = self.doc.get_heads();
        heads.sort();
        heads
    }

    /// The whole document as JSON.
    pub fn to_json(&self) -> Json {
        json::object_to_json(&self.doc, &automerge::ROOT)
    }

    /// The value at `path` as JSON, `None` when nothing is there.
    pub fn get(&self, path: &Path) -> Result<Option<Json>, DocError> {
        json::get(&self.doc, path)
    }

    /// The underlying automerge document, for reads the JSON view does not cover.
    pub fn automerge(&self) -> &Automerge {
        &self.doc
    }

    /// The whole document in automerge's compact save format.
    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }

    /// The number of changes in the document's history.
    pub fn history_len(&self) -> usize {
        self.doc.get_changes(&[]).len()
    }
}

/// Runs `f`, turning a panic inside automerge into an error.
pub(crate) fn guard<T>(what: &'static str, f: impl FnOnce() -> T) -> Result<T, DocError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| DocError::Panicked(what))
}

#[cfg(test)]
mod tests;
