//! History on a replica: the position index read back, the document at any position,
//! diffs, blame and replays. Everything here reads local state only (the automerge document
//! and the sled index); [`Replica::sync`] first to include what the log has now.

use automerge::{Change, ChangeHash, ReadDoc};
use serde_json::Value as Json;

use super::{Position, Replica};
use crate::apply::Causal;
use crate::doc::{DocCore, Patch, Path};
use crate::history::{
    self, At, Blame, Filter, HeadTracker, HistoryError, HistoryEvent, Record, TextRun,
};
use crate::Error;

/// A read-only view of a document at a past position (see [`Replica::at`]).
#[derive(Debug)]
pub struct View {
    position: Position,
    doc: DocCore,
}

impl View {
    /// The position viewed: the last event included and the heads.
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// The whole document as JSON.
    pub fn to_json(&self) -> Json {
        self.doc.to_json()
    }

    /// The value at `path`; `None` when nothing was there.
    pub fn get(&self, path: &str) -> Result<Option<Json>, Error> {
        Ok(self.doc.get(&path.parse::<Path>()?)?)
    }

    /// The document core, for reads the JSON view does not cover.
    pub fn doc(&self) -> &DocCore {
        &self.doc
    }
}

/// One step of a [`Replica::replay`]: an event, what it did, and the document right after.
#[derive(Debug)]
pub struct ReplayStep<'a> {
    /// The event.
    pub record: &'a Record,
    /// What the change did (empty for a change held back for missing dependencies; it is
    /// reported when they arrive).
    pub patches: &'a [Patch],
    /// The document after this event.
    pub doc: &'a DocCore,
    /// Why the space's roster rejected this event's change: it changed nothing (no
    /// patches, the document as before), and is listed so a replay shows what the log held.
    pub rejected: Option<&'a str>,
}

impl Replica {
    /// The position index between `after` (exclusive) and `until` (inclusive), in order.
    pub fn records(&self, after: u64, until: u64) -> Result<Vec<Record>, Error> {
        if until <= after {
            return Ok(Vec::new());
        }
        Ok(self
            .shared()
            .store
            .records(after + 1..=until)
            .collect::<Result<_, _>>()?)
    }

    /// What the log says about change `hash`, if this replica has seen it there.
    pub fn record_of(&self, hash: &ChangeHash) -> Result<Option<Record>, Error> {
        Ok(self.shared().store.record_of(&hash.0)?)
    }

    /// Turns any way of naming a moment into a position: a stream sequence and the heads
    /// of the document made of exactly the events up to it.
    ///
    /// - `Seq(n)`: `n` must not be past this replica's position;
    /// - `Time(t)`: the last event the log appended at or before `t`;
    /// - `Heads(h)`: every hash must be in the document; the sequence is the highest one
    ///   among them that the index knows (0 if none).
    pub fn resolve(&self, at: &At) -> Result<Position, Error> {
        let s = self.shared();
        let position = s.lock().position;
        let seq = match at {
            At::Seq(n) if *n > position => {
                return Err(HistoryError::UnknownPosition(format!(
                    "sequence {n} is past this replica's position {position}; sync first"
                ))
                .into())
            }
            At::Seq(n) => *n,
            At::Time(t) => {
                let mut found = 0;
                for r in s.store.records(..=position).rev() {
                    let r = r?;
                    if r.logged_ms <= *t {
                        found = r.seq;
                        break;
                    }
                }
                found
            }
            At::Heads(heads) => {
                let st = s.lock();
                if let Some(h) = heads.iter().find(|h| !st.core.has_change(h)) {
                    return Err(HistoryError::UnknownPosition(format!(
                        "change {h} is not in this document"
                    ))
                    .into());
                }
                drop(st);
                let mut seq = 0;
                for h in heads {
                    seq = seq.max(s.store.seq_of(&h.0)?.unwrap_or(0));
                }
                let mut heads = heads.clone();
                heads.sort();
                heads.dedup();
                return Ok(Position { seq, heads });
            }
        };
        let records = self.records(0, seq)?;
        let heads = history::heads_after(&s.lock().core, &records);
        Ok(Position { seq, heads })
    }

    /// A read-only view of the document at `at`. At sequence N it equals a replica that
    /// applied exactly the events up to N.
    pub fn at(&self, at: &At) -> Result<View, Error> {
        let position = self.resolve(at)?;
        let doc = self.shared().lock().core.fork_at(&position.heads)?;
        Ok(View { position, doc })
    }

    /// The patches that take the document from position `from` to position `to`.
    pub fn diff(&self, from: &At, to: &At) -> Result<Vec<Patch>, Error> {
        let (a, b) = (self.resolve(from)?, self.resolve(to)?);
        Ok(self.shared().lock().core.diff(&a.heads, &b.heads)?)
    }

    /// Runs `f` on the document, under the lock, with a lookup of a change's index record
    /// (`None` when it is not indexed, or the index cannot be read).
    fn with_index<T>(
        &self,
        f: impl FnOnce(&DocCore, &dyn Fn(&ChangeHash) -> Option<Record>) -> T,
    ) -> T {
        let s = self.shared();
        let st = s.lock();
        f(&st.core, &|h: &ChangeHash| {
            s.store.record_of(&h.0).ok().flatten()
        })
    }

    /// Who wrote the current value at `path`: the change, and what the log says about it
    /// (agent, position, times, message); for text, also who wrote each run of characters.
    /// `None` when nothing is at `path`.
    pub fn blame(&self, path: &str) -> Result<Option<Blame>, Error> {
        let path: Path = path.parse()?;
        self.with_index(|core, record_of| Ok(history::blame(core, &path, record_of)?))
    }

    /// Who wrote each run of characters of the text at `path`: the runs in order, each with
    /// its change, agent, position and message. `None` when nothing is at `path` or the
    /// value there is not a text.
    pub fn blame_text(&self, path: &str) -> Result<Option<Vec<TextRun>>, Error> {
        let path: Path = path.parse()?;
        self.with_index(|core, record_of| Ok(history::blame_text(core, &path, record_of)?))
    }

    /// The document's events matching `filter`, in order, each with the heads after it and
    /// the paths it touched.
    pub fn history(&self, filter: &Filter) -> Result<Vec<HistoryEvent>, Error> {
        self.history_listing(filter, false)
    }

    /// Like [`history`](Self::history), also listing the change events the space's roster
    /// rejected, each at its position with [`HistoryEvent::rejected`] saying why (they touched
    /// no path of the document, so a `path` filter leaves them out). Their changes are in no
    /// view of the history either way: not in [`at`](Self::at), [`diff`](Self::diff),
    /// [`blame`](Self::blame) or any event's heads.
    pub fn history_with_rejections(&self, filter: &Filter) -> Result<Vec<HistoryEvent>, Error> {
        self.history_listing(filter, true)
    }

    fn history_listing(
        &self,
        filter: &Filter,
        with_rejections: bool,
    ) -> Result<Vec<HistoryEvent>, Error> {
        let s = self.shared();
        let after = match &filter.after {
            Some(at) => self.resolve(at)?.seq,
            None => 0,
        };
        let until = match &filter.until {
            Some(at) => self.resolve(at)?.seq,
            None => s.lock().position,
        };
        let records = self.records(0, until)?;
        let rejections = match with_rejections && after < until {
            true => s.store.rejections(after.saturating_add(1)..=until)?,
            false => Vec::new(),
        };
        let mut rejections = rejections.into_iter().peekable();
        let st = s.lock();
        let mut tracker = HeadTracker::default();
        let mut out = Vec::new();
        let full = |out: &Vec<HistoryEvent>| filter.limit.is_some_and(|n| out.len() >= n);
        // A rejection is listed where it sits among the accepted events, with the heads
        // of the document as they were (it moved nothing).
        let listed = |r: &Record| {
            filter.path.is_none() && filter.agent.as_ref().is_none_or(|a| *a == r.agent)
        };
        // A rejection changed nothing: the heads are those before it, and it touched no path.
        let rejection = |record, reason, heads| HistoryEvent {
            heads,
            paths: Vec::new(),
            record,
            rejected: Some(reason),
        };
        for r in records {
            while let Some((rejected, _)) = rejections.peek() {
                if rejected.seq > r.seq || full(&out) {
                    break;
                }
                if let Some((record, reason)) = rejections.next() {
                    if listed(&record) {
                        out.push(rejection(record, reason, tracker.heads()));
                    }
                }
            }
            tracker.add(&st.core, &r.hash);
            if r.seq <= after || filter.agent.as_ref().is_some_and(|a| *a != r.agent) {
                continue;
            }
            if full(&out) {
                break;
            }
            let paths = history::touched_paths(&st.core, &r.hash);
            if let Some(p) = &filter.path {
                if !paths.iter().any(|path| p.matches(path)) {
                    continue;
                }
            }
            out.push(HistoryEvent {
                heads: tracker.heads(),
                paths,
                record: r,
                rejected: None,
            });
        }
        for (record, reason) in rejections {
            if full(&out) {
                break;
            }
            if listed(&record) {
                out.push(rejection(record, reason, tracker.heads()));
            }
        }
        Ok(out)
    }

    /// Runs the document's events after `from` through `step`, in order, on a copy of the
    /// document at `from`: to rebuild a derived view. Deterministic: the same events give the
    /// same calls with the same patches and documents, on any replica. Runs without holding
    /// the replica, so `step` may take its time (and may use the replica).
    pub fn replay<E>(
        &self,
        from: &At,
        mut step: impl FnMut(ReplayStep<'_>) -> Result<(), E>,
    ) -> Result<(), ReplayError<E>> {
        let start = self.resolve(from).map_err(ReplayError::Replica)?;
        let until = self.shared().lock().position;
        let records = self
            .records(start.seq, until)
            .map_err(ReplayError::Replica)?;
        let rejections = match start.seq < until {
            true => self
                .shared()
                .store
                .rejections(start.seq + 1..=until)
                .map_err(|e| ReplayError::Replica(e.into()))?,
            false => Vec::new(),
        };
        let (mut doc, changes) = {
            let st = self.shared().lock();
            let doc = st
                .core
                .fork_at(&start.heads)
                .map_err(|e| ReplayError::Replica(e.into()))?;
            let changes: Vec<Option<Change>> = records
                .iter()
                .map(|r| st.core.automerge().get_change_by_hash(&r.hash).cloned())
                .collect();
            (doc, changes)
        };
        // The causal step attributes a held-back change to its own record when it takes
        // effect.
        let mut causal = Causal::new();
        let mut rejections = rejections.iter().peekable();
        // A rejected change is never applied: its step only says so, at its position.
        let mut rejected_until =
            |seq: u64, doc: &DocCore, step: &mut dyn FnMut(ReplayStep<'_>) -> Result<(), E>| {
                while let Some((record, reason)) = rejections.next_if(|(r, _)| r.seq < seq) {
                    step(ReplayStep {
                        record,
                        patches: &[],
                        doc,
                        rejected: Some(reason),
                    })
                    .map_err(ReplayError::Step)?;
                }
                Ok(())
            };
        for (record, change) in records.iter().zip(changes) {
            rejected_until(record.seq, &doc, &mut step)?;
            let Some(change) = change else { continue };
            let accepted = causal
                .change(&mut doc, change, record, true)
                .map_err(|e| ReplayError::Replica(e.into()))?;
            if accepted.effects.is_empty() {
                step(ReplayStep {
                    record,
                    patches: &[],
                    doc: &doc,
                    rejected: None,
                })
                .map_err(ReplayError::Step)?;
            }
            for effect in &accepted.effects {
                step(ReplayStep {
                    record: effect.origin.unwrap_or(record),
                    patches: &effect.patches,
                    doc: &doc,
                    rejected: None,
                })
                .map_err(ReplayError::Step)?;
            }
        }
        rejected_until(u64::MAX, &doc, &mut step)?;
        Ok(())
    }
}

impl Replica {
    /// Starts `target`, a replica of a document with no history yet (in this space or
    /// another), as a copy of this document at `at`: a branch to try something on without
    /// disturbing this one. The copied changes keep their agents, times and messages, so
    /// history and blame on the fork tell where its state came from. They are saved and
    /// queued for the log like local writes; [`flush`](Self::flush) the target to wait for
    /// them. Returns the position copied.
    pub async fn fork_to(&self, at: &At, target: &Replica) -> Result<Position, Error> {
        let position = self.resolve(at)?;
        let t = target.shared();
        if !target.heads().is_empty()
            || target.position().seq > 0
            || t.log.last_seq(&t.config.space, &t.config.document).await? > 0
        {
            return Err(HistoryError::NotEmpty(format!(
                "{}/{} already has history; a fork needs a new document",
                t.config.space, t.config.document
            ))
            .into());
        }
        let copied: Vec<(Change, Option<Record>)> = {
            let st = self.shared().lock();
            let fork = st.core.fork_at(&position.heads)?;
            fork.changes_missing_from(&DocCore::new())
                .into_iter()
                .map(|c| {
                    let r = self.shared().store.record_of(&c.hash().0).ok().flatten();
                    (c, r)
                })
                .collect()
        };
        target.import(copied).await?;
        Ok(position)
    }
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError<E> {
    /// The replica could not provide the history.
    #[error(transparent)]
    Replica(Error),
    /// The step function failed.
    #[error("replay step failed: {0}")]
    Step(E),
}
