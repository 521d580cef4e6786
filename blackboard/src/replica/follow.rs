//! Following the log: subscribe from the last applied position, apply what arrives in
//! batches (one lock and one sled batch for up to [`APPLY_BATCH`] events), resubscribe with
//! backoff after errors. Applying is the causal step of [`crate::apply`]; this file adds the
//! replica's bookkeeping around it: the position index, the sled batch, the statistics, the
//! snapshot policy's counter, and telling watchers.

use std::sync::Arc;
use std::time::Duration;

use automerge::ChangeHash;
use futures::StreamExt;
use tracing::{debug, error, info, warn};

use super::{snapshots, Shared, State};
use crate::apply::Origin;
use crate::apply::Rejected;
use crate::backoff::Backoff;
use crate::codec::{self, Event, EventError};
use crate::doc::{containers, Applied};
use crate::history::Record;
use crate::log::{Entry, Topic};
use crate::store::RemoteBatch;
use crate::Error;

/// How many rejected events a summary names (it counts them all).
const TOLD_EXAMPLES: usize = 8;

/// The most log entries applied under one lock (a local write waits for at most one batch).
const APPLY_BATCH: usize = 256;

/// How long the follow loop waits for the rest of a write when what has arrived ends with one
/// of its container creations (see [`Last::is_creation`]).
const REST_OF_WRITE: Duration = Duration::from_millis(200);

/// The last entry of what arrived, decoded before the replica's lock is taken: the follow
/// loop needs to know whether it is a container creation (see [`Last::is_creation`]), and
/// the decoded event is then applied as it is instead of being decoded again under the
/// lock. `None` for a roster event and for this replica's own event (which needs no decoding
/// while no roster is in force, and never waits for the rest of its write: the writer's
/// document has the whole write already).
struct Last {
    seq: u64,
    event: Result<Event, EventError>,
}

impl Last {
    fn of(shared: &Shared, batch: &[Entry]) -> Option<Self> {
        let last = batch.last()?;
        if last.topic != Topic::Change || shared.own().contains(&last.payload) {
            return None;
        }
        let (space, document) = (&shared.config.space, &shared.config.document);
        Some(Self {
            seq: last.seq,
            event: codec::decode_event(space, document, &last.payload),
        })
    }

    /// Whether it is a container creation (the container recipe's change, see
    /// [`crate::doc::containers`]). A write's creations are published just before its
    /// change, so a batch ending with one nearly always has the rest of the write in
    /// flight; applied alone, other agents would read the write half made (`/tasks/7` an
    /// empty map, its fields not yet there).
    fn is_creation(&self) -> bool {
        self.event
            .as_ref()
            .is_ok_and(|e| containers::generation_of(e.change.actor_id()).is_some())
    }
}

/// Follows the log from the last applied position, forever; resubscribes after errors.
pub(super) async fn run(shared: Arc<Shared>) {
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
        // The roster as of `from`: its events below it, folded again from the start.
        let rosters = match shared.log.roster_events(space, from).await {
            Ok(rosters) => rosters,
            Err(e) => {
                warn!(%space, %document, error = %e, "cannot read the space's roster; retrying");
                backoff.wait().await;
                continue;
            }
        };
        shared.fold_rosters(rosters);
        match shared
            .log
            .subscribe_with_roster(space, document, from)
            .await
        {
            Ok(entries) => {
                debug!(%space, %document, from, "following the log");
                // Whatever has arrived is applied as one batch (one lock, one sled batch).
                let mut arrived = entries.ready_chunks(APPLY_BATCH);
                let mut ended = false;
                while let Some(items) = arrived.next().await {
                    stage!(shared.config.agent, "follow: events arrived");
                    let mut batch = Vec::with_capacity(items.len());
                    let mut failed = None;
                    // A chunk that is not full: the stream had nothing more ready, so the
                    // replica has caught up for now: the moment to sum up what it skipped.
                    let mut caught_up = items.len() < APPLY_BATCH;
                    take(items, &mut batch, &mut failed);
                    // The rest of a write whose creations end what arrived is applied with
                    // them, under the same lock, so no reader sees the write half made. A
                    // write of creations alone waits `REST_OF_WRITE` for nothing.
                    let mut last = Last::of(&shared, &batch);
                    while failed.is_none()
                        && batch.len() < 4 * APPLY_BATCH
                        && last.as_ref().is_some_and(Last::is_creation)
                    {
                        match tokio::time::timeout(REST_OF_WRITE, arrived.next()).await {
                            Ok(Some(more)) => {
                                caught_up = more.len() < APPLY_BATCH;
                                take(more, &mut batch, &mut failed);
                                last = Last::of(&shared, &batch);
                            }
                            Ok(None) => {
                                ended = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if !batch.is_empty() {
                        backoff.reset();
                        shared.apply_entries(batch, last, !caught_up);
                    }
                    if caught_up {
                        shared.tell();
                    }
                    if let Some(e) = failed {
                        warn!(%space, %document, error = %e, "log subscription failed; resubscribing");
                        break;
                    }
                    if ended {
                        break;
                    }
                }
            }
            // A refusal (permissions, configuration) will not go away by itself, but the
            // replica has no caller to hand it to: it says so loudly and keeps trying with
            // backoff (up to 2 s apart), so a fixed permission takes effect without a restart.
            Err(e) if !e.is_transient() => error!(
                %space, %document, error = %e,
                "the log refuses this replica's subscription; retrying"
            ),
            Err(e) => warn!(%space, %document, error = %e, "cannot subscribe to the log; retrying"),
        }
        backoff.wait().await;
    }
}

/// Moves the entries of `items` into `batch`, up to the first error (kept in `failed`: what
/// follows an error is read again after resubscribing).
fn take(
    items: Vec<Result<Entry, crate::log::Error>>,
    batch: &mut Vec<Entry>,
    failed: &mut Option<crate::log::Error>,
) {
    for item in items {
        match item {
            Ok(entry) => batch.push(entry),
            Err(e) => {
                *failed = Some(e);
                return;
            }
        }
    }
}

/// What the follow loop has yet to say: bad events skipped and changes held back since it
/// last summed up.
#[derive(Debug, Default)]
pub(crate) struct Told {
    /// Events rejected up to the last summary.
    reported: u64,
    /// The first few events rejected since the last summary: position and why.
    rejected: Vec<String>,
    /// Changes held back for missing dependencies since the last summary.
    held: u64,
}

impl Shared {
    /// Sets the trust gate to the roster that `rosters` (the space's roster events below the
    /// position the follower resumes from, in order) put in force.
    fn fold_rosters(&self, rosters: Vec<Entry>) {
        let mut st = self.lock();
        let (space, pinned) = (&self.config.space, &self.config.pinned_admins);
        st.gate.restart(space.clone(), pinned.clone());
        for entry in rosters {
            // Reported when first read live; here they are only folded again.
            let _ = st.gate.roster_event(entry.seq, &entry.payload);
        }
    }

    /// Folds in a roster event read from the log.
    fn roster_entry(&self, st: &mut State, entry: &Entry, batch: &mut RemoteBatch) {
        let (space, document) = (&self.config.space, &self.config.document);
        match st.gate.roster_event(entry.seq, &entry.payload) {
            Ok(()) => info!(%space, %document, seq = entry.seq, "a new roster is in force"),
            Err(reason) => {
                warn!(%space, %document, seq = entry.seq, %reason, "ignored a roster event");
                st.stats.roster_events_ignored += 1;
            }
        }
        batch.add(entry.seq, None, None);
        st.position = entry.seq;
    }

    /// Says, once, what was skipped or held back since the last time: called when the
    /// replica has caught up with what the log had ready.
    fn tell(&self) {
        let mut st = self.lock();
        let (space, document) = (&self.config.space, &self.config.document);
        let total = st.stats.events_rejected;
        if !st.told.rejected.is_empty() {
            let count = total - st.told.reported;
            let examples = std::mem::take(&mut st.told.rejected);
            let shown = examples.len();
            warn!(
                %space, %document, count, total, reasons = %examples.join(" | "),
                "skipped {count} rejected event(s) of this document's log; they change \
                 nothing (the first {shown} are named here, every one at debug level)"
            );
            st.told.reported = total;
        }
        let held = std::mem::take(&mut st.told.held);
        let waiting = st.core.pending_len();
        if held > 0 && waiting > 0 {
            warn!(
                %space, %document, held, waiting,
                "holding back {waiting} change(s) whose dependencies the log has not delivered \
                 (they take effect when those arrive)"
            );
        } else if held > 0 {
            debug!(%space, %document, held, "changes held back for dependencies were released");
        }
    }

    /// Applies a run of entries from the log under one lock: decode, apply, remember the
    /// position. Their store writes go in one sled batch, committed before anyone is told
    /// (waiters, compaction). `behind`: the log had more ready than one batch, so the replica
    /// is catching up (compaction waits, see [`Shared::maybe_compact`]).
    fn apply_entries(&self, entries: Vec<Entry>, mut last: Option<Last>, behind: bool) {
        let mut st = self.lock();
        stage!(self.config.agent, "follow: locked");
        let mut batch = RemoteBatch::default();
        // Changes indexed by this batch, not yet visible to `seq_of`.
        // A list, not a set: it is only searched for a duplicate (rare), while every new
        // change is added to it (hashing each into a set cost more than the searches).
        let mut indexed_here = Vec::new();
        for entry in entries {
            let decoded = last.take_if(|l| l.seq == entry.seq).map(|l| l.event);
            self.apply_entry(&mut st, entry, decoded, &mut batch, &mut indexed_here);
        }
        stage!(self.config.agent, "follow: applied");
        if let Err(e) = self.store.commit_remote(batch) {
            warn!(error = %e, seq = st.position, "could not record applied events");
        }
        stage!(self.config.agent, "follow: stored in sled");
        if behind {
            self.maybe_compact_behind(&mut st);
        } else {
            self.maybe_compact(&mut st);
            // The snapshot policy's turn comes once caught up: a snapshot written while the
            // replica catches up (a whole-document load, save and check, then an upload)
            // would soon be out of date, and a 100k-event catch-up paid for ten of them.
            let every = self.config.snapshots.every_events;
            if every > 0 && st.events_since_snapshot >= every {
                self.snapshot_wake.notify_one();
            }
        }
        drop(st);
        self.version.send_modify(|v| *v += 1);
    }

    /// Applies one entry from the log into `batch`, through the causal step; `decoded` is
    /// its payload through [`codec::decode_event`] when that was done already.
    fn apply_entry(
        &self,
        st: &mut State,
        entry: Entry,
        decoded: Option<Result<Event, EventError>>,
        batch: &mut RemoteBatch,
        indexed_here: &mut Vec<ChangeHash>,
    ) {
        if entry.seq <= st.position {
            return;
        }
        if entry.topic == Topic::Roster {
            return self.roster_entry(st, &entry, batch);
        }
        st.stats.events_read += 1;
        // This replica's own event, byte for byte as it published it, still in its document
        // and not rejected: nothing to decode, judge or apply, only to index (see `own`).
        // It is the change's first event: the change was made in this opening (its actor is
        // new with each opening), only this outbox publishes it, and the entry is forgotten
        // at its first return. So no lookup by hash is needed (a later copy, re-published
        // after the log's duplicate window, finds no entry and takes the full path, which
        // looks it up).
        if st.gate.roster().is_none() {
            let own = self.own().returned(&entry.payload);
            if let Some(own) = own {
                if st.core.has_change(&own.hash) && !st.gate.rejected().contains(&own.hash) {
                    let (seq, logged_ms, hash) = (entry.seq, entry.time_ms, own.hash);
                    let record = self.index(st, own.hash, false, indexed_here, || {
                        own.record(seq, logged_ms)
                    });
                    // Under `Durability::Log`, stored now (see `unstored`).
                    let change = st.unstored.stored(&hash);
                    if change.is_some() {
                        st.stored_since_compaction += 1;
                    }
                    let change = change.as_ref().map(|c| (&hash.0, &c[..]));
                    batch.add(seq, change, record.as_ref());
                    st.position = seq;
                    st.stats.own_events_indexed += 1;
                    return;
                }
            }
        }
        let (space, document) = (&self.config.space, &self.config.document);
        let watched = st.listeners.any();
        let outcome = {
            let State {
                core, causal, gate, ..
            } = &mut *st;
            match decoded {
                Some(event) => causal.judged_decoded(core, gate, entry.seq, event, watched),
                None => {
                    let ids = (space, document);
                    causal.judged_event(core, gate, ids, entry.seq, &entry.payload, watched)
                }
            }
        };
        for (hash, rejected) in st.gate.take_journal() {
            batch.rejected(&hash.0, rejected);
        }
        if let Err(Rejected::Untrusted {
            agent,
            reason,
            change_hash,
            time_ms,
            said,
        }) = &outcome
        {
            // Said every time: a forgery is news, unlike a malformed event.
            warn!(
                %space, %document, seq = entry.seq, %agent, change = %change_hash, %reason,
                "rejected a change the space's roster does not allow"
            );
            st.stats.changes_untrusted += 1;
            if st.untrusted.len() >= super::UNTRUSTED_KEPT {
                st.untrusted.pop_front();
            }
            st.untrusted.push_back(super::RejectedChange {
                seq: entry.seq,
                agent: agent.clone(),
                change_hash: *change_hash,
                reason: (**reason).clone(),
            });
            // Kept for history, which lists the rejection at its position.
            let rejection = Record {
                seq: entry.seq,
                hash: *change_hash,
                logged_ms: entry.time_ms,
                time_ms: *time_ms,
                agent: agent.clone(),
                message: said.message.clone(),
                signature: said.signature.clone(),
                provenance: said.provenance.clone(),
            };
            batch.rejection(&rejection, &reason.to_string());
            let meta = Origin {
                seq: Some(entry.seq),
                agent: agent.clone(),
                time_ms: *time_ms,
                message: said.message.clone(),
                signature: said.signature.clone(),
                provenance: said.provenance.clone(),
            };
            self.announce_rejected(st, entry.seq, &meta, *change_hash, reason.to_string());
        }
        let event = match outcome {
            Ok(event) => event,
            Err(rejected) => {
                if rejected.damaged() {
                    // The in-memory document may be damaged: rebuild it from disk, with
                    // this batch's changes written first.
                    if let Err(e) = self.store.commit_remote(std::mem::take(batch)) {
                        warn!(error = %e, "could not record applied events");
                    }
                    if let Err(reload) = self.reload(st) {
                        warn!(error = %reload, "reloading the replica failed");
                    }
                }
                // Said once per catch-up with a count (see `tell`): a fresh replica reading
                // a log with many bad events would otherwise repeat every one on every run.
                debug!(
                    space = %space,
                    document = %document,
                    seq = entry.seq,
                    reason = %rejected,
                    "rejected event; skipping it"
                );
                if st.told.rejected.len() < TOLD_EXAMPLES {
                    st.told
                        .rejected
                        .push(format!("position {}: {rejected}", entry.seq));
                }
                st.stats.events_rejected += 1;
                st.stats.last_rejection = Some(format!("position {}: {rejected}", entry.seq));
                batch.add(entry.seq, None, None);
                st.position = entry.seq;
                return;
            }
        };
        let (envelope, signature, accepted) = (event.envelope, event.signature, event.accepted);
        let (hash, applied) = (accepted.hash, accepted.applied);
        let record = self.index(
            st,
            hash,
            applied == Applied::Duplicate,
            indexed_here,
            || Record {
                seq: entry.seq,
                hash,
                logged_ms: entry.time_ms,
                time_ms: envelope.time_ms,
                agent: envelope.agent.clone(),
                message: envelope.message.clone(),
                signature,
                provenance: envelope.provenance.clone(),
            },
        );
        if applied == Applied::Duplicate {
            // A duplicate is on disk already, unless it is this replica's own change made
            // under `Durability::Log` (see `unstored`), which is stored now.
            let change = st
                .unstored
                .stored(&hash)
                .map(|_| (&hash.0, &envelope.change[..]));
            if change.is_some() {
                st.stored_since_compaction += 1;
            }
            batch.add(entry.seq, change, record.as_ref());
        } else {
            st.stats.events_applied += 1;
            st.stored_since_compaction += 1;
            debug!(seq = entry.seq, %hash, ?applied, "applied remote change");
            if applied == Applied::Pending {
                st.told.held += 1;
            }
            batch.add(
                entry.seq,
                Some((&hash.0, &envelope.change)),
                record.as_ref(),
            );
            st.position = entry.seq;
            for effect in accepted.effects {
                let origin = effect
                    .origin
                    .unwrap_or_else(|| Origin::unknown(&self.config.agent));
                self.announce(st, &effect.hash, &origin, effect.patches);
            }
        }
        st.position = entry.seq;
    }

    /// The index record to write for change `hash` read at this position (`make` builds it),
    /// or `None` when the change is indexed already. The first event carrying a change is
    /// where the index puts it; our own changes are indexed here too, when they come back
    /// from the log. Only a change that may have been indexed before (`maybe_indexed`: a
    /// duplicate) costs a lookup; a change new to the document cannot be indexed yet.
    fn index(
        &self,
        st: &mut State,
        hash: ChangeHash,
        maybe_indexed: bool,
        indexed_here: &mut Vec<ChangeHash>,
        make: impl FnOnce() -> Record,
    ) -> Option<Record> {
        let indexed = match maybe_indexed {
            true if indexed_here.contains(&hash) => Ok(true),
            true => self.store.seq_of(&hash.0).map(|s| s.is_some()),
            false => Ok(false),
        };
        match indexed {
            Ok(true) => return None,
            Ok(false) => {}
            Err(e) => {
                warn!(error = %e, "cannot read the position index");
                return None;
            }
        }
        indexed_here.push(hash);
        st.events_since_snapshot += 1;
        Some(make())
    }
}
