//! The causal apply step, written once: decode, check, hold back until the dependencies
//! arrive, apply, attribute, patches.
//!
//! Every place that feeds changes into a document goes through [`Causal`]: the replica's
//! follow loop (events from the log), a replaying watch (its own copy of the document), the
//! hand-over of a watch to live, a snapshot merged into a running replica, and history's
//! replays. Each keeps one `Causal` beside its [`DocCore`]; the `Causal` remembers who made
//! each change the core holds back, so that when the change finally takes effect it is
//! reported with its own writer, time, message and log position, not with those of the
//! event that released it.
//!
//! Pure, in the "sans-IO" style: an event (or a decoded change) and its attribution go in;
//! the document changes, and what happened comes out as a value ([`Accepted`], or why
//! not: [`Rejected`]). No locks, no sockets, no clocks: callers hold whatever lock they need and
//! do the I/O (the replica writes the outcome to sled and tells its watchers).
//!
//! [`HeadTracker`] is the same causal rule over change hashes only, for history: the heads
//! of a replica fed exactly a given run of events, without building that document.

use std::collections::{BTreeSet, HashMap, HashSet};

use automerge::{Change, ChangeHash, ReadDoc};
use blackboard_schemas::{AgentId, DocumentId, Envelope, Provenance, SpaceId};

use crate::codec;
use crate::doc::{touched, Applied, DocCore, DocError, Patch};
use crate::trust::{judge, Reason, Roster, RosterError, RosterFold, Verdict};

/// Who a change belongs to: what its event said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The log position of the event that carried it; `None` for a change not read from the
    /// log (a local one, or one whose event is no longer known).
    pub seq: Option<u64>,
    /// The agent that made it.
    pub agent: AgentId,
    /// The writer's clock when it was made, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Why it was made, if the writer said.
    pub message: Option<String>,
    /// Whether its event was signed, and by whom (see [`codec::Signature`]).
    pub signature: codec::Signature,
    /// Who acted through the agent, as the event declares.
    pub provenance: Option<Provenance>,
}

impl Origin {
    /// The origin a decoded event at log position `seq` names.
    pub fn of_event(event: &codec::Event, seq: u64) -> Self {
        let envelope = &event.envelope;
        Self {
            seq: Some(seq),
            agent: envelope.agent.clone(),
            time_ms: envelope.time_ms,
            message: envelope.message.clone(),
            signature: event.signature.clone(),
            provenance: envelope.provenance.clone(),
        }
    }

    /// For a held-back change whose event was read before a restart: its position and
    /// writer are no longer known.
    pub fn unknown(fallback: &AgentId) -> Self {
        Self {
            seq: None,
            agent: AgentId::new("unknown").unwrap_or_else(|_| fallback.clone()),
            time_ms: 0,
            message: None,
            signature: codec::Signature::Unsigned,
            provenance: None,
        }
    }
}

/// One change that took effect.
#[derive(Debug, Clone)]
pub struct Effect<A> {
    /// The change.
    pub hash: ChangeHash,
    /// Who it belongs to; `None` for a change released from hold-back whose attribution
    /// this `Causal` never saw (held back before a restart).
    pub origin: Option<A>,
    /// What it did (empty when patches were not asked for).
    pub patches: Vec<Patch>,
}

/// An event or change the document took (or already had, or holds back).
#[derive(Debug)]
pub struct Accepted<A> {
    /// The change's hash.
    pub hash: ChangeHash,
    /// New, already there (`Duplicate`), or held back for missing dependencies (`Pending`).
    pub applied: Applied,
    /// The changes that took effect, in order: this one (when `New`), then the held-back
    /// changes it released, each with its own attribution.
    pub effects: Vec<Effect<A>>,
}

/// An accepted event: what [`Causal::event`] returns.
#[derive(Debug)]
pub struct AcceptedEvent<A> {
    /// The event's envelope (its change bytes, writer, time and message).
    pub envelope: Envelope,
    /// Its signature status (see [`codec::Signature`]).
    pub signature: codec::Signature,
    /// What applying it did.
    pub accepted: Accepted<A>,
}

/// Why an event was not applied.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// The event did not decode (see [`codec::decode_event`]).
    #[error(transparent)]
    Event(#[from] codec::EventError),
    /// The document refused its change.
    #[error(transparent)]
    Doc(#[from] DocError),
    /// The space's roster does not allow the change (see [`crate::trust`]).
    #[error("change {change_hash} by {agent} rejected: {reason}")]
    Untrusted {
        /// The agent the envelope names.
        agent: AgentId,
        /// Why (boxed: it is large, and rare).
        reason: Box<Reason>,
        /// The change.
        change_hash: ChangeHash,
        /// The writer's clock in the envelope, milliseconds since the Unix epoch.
        time_ms: i64,
        /// Its signature status and what else the envelope said, kept for the history of
        /// the rejection (boxed: it is large, and rare).
        said: Box<Said>,
    },
}

/// What a rejected event's envelope said beside its change, agent and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    /// Whether the event was signed, and by whom.
    pub signature: codec::Signature,
    /// Why the writer said it made the change.
    pub message: Option<String>,
    /// Who the envelope says acted through the agent.
    pub provenance: Option<Provenance>,
}

impl Rejected {
    /// Whether automerge panicked: the document may be damaged and must be rebuilt from
    /// storage before it is used again.
    pub fn damaged(&self) -> bool {
        matches!(self, Rejected::Doc(DocError::Panicked(_)))
    }
}

/// The causal apply step for one document; see the module docs. `A` is what a change is
/// attributed to ([`Origin`] for the replica and watches, an index record for replays).
#[derive(Debug, Clone)]
pub struct Causal<A> {
    /// The attribution of each change the document holds back.
    held: HashMap<ChangeHash, A>,
}

impl<A> Default for Causal<A> {
    fn default() -> Self {
        Self {
            held: HashMap::new(),
        }
    }
}

impl<A: Clone> Causal<A> {
    /// A step with nothing held back.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many held-back changes this step is keeping an attribution for.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Applies `change`, made by `origin`, to `core`. With `patches`, every effect carries
    /// what it did (computing them costs; ask only when someone listens).
    pub fn change(
        &mut self,
        core: &mut DocCore,
        change: Change,
        origin: A,
        patches: bool,
    ) -> Result<Accepted<A>, DocError> {
        let hash = change.hash();
        let (applied, took_effect) = if patches {
            core.apply_with_patches(change)?
        } else {
            (core.apply(change)?, Vec::new())
        };
        let mut effects = Vec::new();
        match applied {
            // Reported when its dependencies arrive, with its own attribution.
            Applied::Pending => {
                self.held.insert(hash, origin);
            }
            Applied::Duplicate => {}
            Applied::New if patches => {
                effects = took_effect
                    .into_iter()
                    .map(|c| Effect {
                        origin: if c.hash == hash {
                            Some(origin.clone())
                        } else {
                            self.held.remove(&c.hash)
                        },
                        hash: c.hash,
                        patches: c.patches,
                    })
                    .collect();
            }
            Applied::New => {
                // Without patches the core does not list what it released: forget the
                // attributions of the changes it now has (held back is rare, so this is
                // usually an empty map).
                if self.held.len() > core.pending_len() {
                    self.held.retain(|h, _| !core.has_change(h));
                }
                effects.push(Effect {
                    hash,
                    origin: Some(origin),
                    patches: Vec::new(),
                });
            }
        }
        Ok(Accepted {
            hash,
            applied,
            effects,
        })
    }
}

impl Causal<Origin> {
    /// Decodes the event at log position `seq` received on `space`/`document`'s subject
    /// (see [`codec::decode_event`]), and applies its change attributed to its envelope.
    pub fn event(
        &mut self,
        core: &mut DocCore,
        (space, document): (&SpaceId, &DocumentId),
        seq: u64,
        payload: &[u8],
        patches: bool,
    ) -> Result<AcceptedEvent<Origin>, Rejected> {
        let event = codec::decode_event(space, document, payload)?;
        self.decoded(core, event, seq, patches)
    }

    /// Applies a decoded event at log position `seq`, attributed to its envelope: the common
    /// tail of [`event`](Self::event) and [`judged_event`](Self::judged_event).
    fn decoded(
        &mut self,
        core: &mut DocCore,
        event: codec::Event,
        seq: u64,
        patches: bool,
    ) -> Result<AcceptedEvent<Origin>, Rejected> {
        let origin = Origin::of_event(&event, seq);
        let accepted = self.change(core, event.change, origin, patches)?;
        Ok(AcceptedEvent {
            envelope: event.envelope,
            signature: event.signature,
            accepted,
        })
    }
}

/// The trust gate of one document's follower: the space's roster as of the position read so
/// far, and the changes rejected so far. Fed roster events and change events in stream order
/// (one ordered subscription delivers both), it gives every replica the same verdicts.
#[derive(Debug, Clone)]
pub struct Gate {
    fold: RosterFold,
    rejected: HashSet<ChangeHash>,
    /// Changes added to (`true`) or removed from (`false`) `rejected` since the last
    /// [`take_journal`](Self::take_journal), for the caller to persist.
    journal: Vec<(ChangeHash, bool)>,
}

impl Gate {
    /// A gate for `space`, open until a roster arrives; with `pinned` admin keys, only a
    /// genesis signed by one of them is adopted.
    pub fn new(space: SpaceId, pinned: Option<Vec<String>>) -> Self {
        Self {
            fold: RosterFold::new(space, pinned),
            rejected: HashSet::new(),
            journal: Vec::new(),
        }
    }

    /// Remembers changes rejected before (read back from a store).
    pub fn remember_rejected(&mut self, hashes: impl IntoIterator<Item = ChangeHash>) {
        self.rejected.extend(hashes);
    }

    /// What changed in the rejected set since the last call: (change, now rejected).
    pub fn take_journal(&mut self) -> Vec<(ChangeHash, bool)> {
        std::mem::take(&mut self.journal)
    }

    /// Forgets the roster (not the rejected changes): before folding the roster events again
    /// from the start, when a follower resubscribes.
    pub fn restart(&mut self, space: SpaceId, pinned: Option<Vec<String>>) {
        self.fold = RosterFold::new(space, pinned);
    }

    /// The roster in force, if any.
    pub fn roster(&self) -> Option<&Roster> {
        self.fold.current().map(|r| &**r)
    }

    /// Folds in the roster event at `seq`; an error is why it was ignored.
    pub fn roster_event(&mut self, seq: u64, payload: &[u8]) -> Result<(), RosterError> {
        self.fold.apply(seq, payload).map(|_| ())
    }

    /// The changes rejected so far.
    pub fn rejected(&self) -> &HashSet<ChangeHash> {
        &self.rejected
    }

    /// Judges a decoded event against the roster in force and `core` (which holds what the
    /// stream delivered before it). With a roster, a change whose dependencies `core` lacks
    /// is rejected rather than held back: its paths cannot be told, and a dependency that is
    /// not before it in the stream is not one every replica has.
    fn judge(&self, core: &DocCore, event: &codec::Event) -> Verdict {
        let deps = event.change.deps();
        let roster = self.roster();
        let missing = deps.iter().find(|d| !core.has_change(d));
        // Paths are told only against a document holding every dependency.
        let verdict = judge(
            roster,
            &event.envelope,
            &event.signature,
            deps,
            &self.rejected,
            || match missing {
                Some(_) => Ok(Vec::new()),
                None => touched::touched(core.automerge(), &event.change),
            },
        );
        match (roster, verdict, missing) {
            (Some(_), Verdict::Accepted(_), Some(missing)) => {
                Verdict::Rejected(Reason::NotBefore(missing.to_string()))
            }
            (_, verdict, _) => verdict,
        }
    }
}

impl Causal<Origin> {
    /// Like [`event`](Self::event), judged first by `gate`: a rejected change is not applied
    /// and comes back as [`Rejected::Untrusted`], and is remembered so its dependents are
    /// rejected too (unless the document has it already, from an accepted copy).
    pub fn judged_event(
        &mut self,
        core: &mut DocCore,
        gate: &mut Gate,
        (space, document): (&SpaceId, &DocumentId),
        seq: u64,
        payload: &[u8],
        patches: bool,
    ) -> Result<AcceptedEvent<Origin>, Rejected> {
        let event = codec::decode_event(space, document, payload);
        self.judged_decoded(core, gate, seq, event, patches)
    }

    /// [`judged_event`](Self::judged_event) for an event already through
    /// [`codec::decode_event`] (a follower decodes some outside its lock): `event` is what
    /// the decoder returned.
    pub fn judged_decoded(
        &mut self,
        core: &mut DocCore,
        gate: &mut Gate,
        seq: u64,
        event: Result<codec::Event, codec::EventError>,
        patches: bool,
    ) -> Result<AcceptedEvent<Origin>, Rejected> {
        let event = event?;
        let hash = event.change.hash();
        if let Verdict::Rejected(reason) = gate.judge(core, &event) {
            if !core.has_change(&hash) && gate.rejected.insert(hash) {
                gate.journal.push((hash, true));
            }
            return Err(Rejected::Untrusted {
                agent: event.envelope.agent,
                reason: Box::new(reason),
                change_hash: hash,
                time_ms: event.envelope.time_ms,
                said: Box::new(Said {
                    signature: event.signature,
                    message: event.envelope.message,
                    provenance: event.envelope.provenance,
                }),
            });
        }
        if gate.rejected.remove(&hash) {
            gate.journal.push((hash, false));
        }
        self.decoded(core, event, seq, patches)
    }
}

/// Follows the heads of a replica fed changes one at a time, by hash: a change whose
/// dependencies are not all in yet is held back, and joins when they arrive, as in the
/// document core. Changes the reference document does not have are skipped.
#[derive(Debug, Default, Clone)]
pub struct HeadTracker {
    have: HashSet<ChangeHash>,
    heads: BTreeSet<ChangeHash>,
    /// Held-back changes, by a dependency they wait for.
    waiting: HashMap<ChangeHash, Vec<ChangeHash>>,
    held: HashMap<ChangeHash, Vec<ChangeHash>>,
}

impl HeadTracker {
    /// Feeds change `hash` (looked up in `core`).
    pub fn add(&mut self, core: &DocCore, hash: &ChangeHash) {
        let Some(change) = core.automerge().get_change_by_hash(hash) else {
            return;
        };
        if self.have.contains(hash) || self.held.contains_key(hash) {
            return;
        }
        let deps = change.deps().to_vec();
        let missing: Vec<ChangeHash> = deps
            .iter()
            .filter(|d| !self.have.contains(d))
            .copied()
            .collect();
        if !missing.is_empty() {
            for m in missing {
                self.waiting.entry(m).or_default().push(*hash);
            }
            self.held.insert(*hash, deps);
            return;
        }
        let mut ready = vec![(*hash, deps)];
        while let Some((hash, deps)) = ready.pop() {
            for d in &deps {
                self.heads.remove(d);
            }
            self.heads.insert(hash);
            self.have.insert(hash);
            for w in self.waiting.remove(&hash).unwrap_or_default() {
                let complete = self
                    .held
                    .get(&w)
                    .is_some_and(|ds| ds.iter().all(|d| self.have.contains(d)));
                if complete {
                    if let Some(ds) = self.held.remove(&w) {
                        ready.push((w, ds));
                    }
                }
            }
        }
    }

    /// Whether change `hash` is in (not held back, not unknown).
    pub fn contains(&self, hash: &ChangeHash) -> bool {
        self.have.contains(hash)
    }

    /// The heads so far, sorted.
    pub fn heads(&self) -> Vec<ChangeHash> {
        self.heads.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::LocalChange;
    use automerge::transaction::Transactable;

    fn ids() -> (SpaceId, DocumentId) {
        ("s".parse().unwrap(), "d".parse().unwrap())
    }

    /// `n` changes in a chain, each setting key `k<i>`, made by one writer.
    fn chain(n: usize) -> Vec<LocalChange> {
        let mut doc = DocCore::new();
        (0..n)
            .map(|i| {
                doc.transact(i as i64, Some(format!("step {i}")), |tx| {
                    tx.put(automerge::ROOT, format!("k{i}"), i as i64)
                })
                .unwrap()
                .1
                .unwrap()
            })
            .collect()
    }

    fn event(change: &LocalChange, agent: &str, time: i64) -> Vec<u8> {
        let (s, d) = ids();
        codec::encode_event(
            &s,
            &d,
            &agent.parse().unwrap(),
            change,
            time,
            Some(format!("by {agent}")),
        )
        .encode()
    }

    /// A gate for space `s` whose roster lets `alice` (signing with `key`) write anywhere.
    fn gate_with_roster(key: &nkeys::KeyPair) -> Gate {
        let admin = nkeys::KeyPair::new_user();
        let body = serde_json::json!({
            "admins": [admin.public_key()],
            "agents": {"alice": {"keys": [key.public_key()], "write": ["/**"]}}
        });
        let ev = crate::trust::RosterEvent::sign(&ids().0, 1, body.to_string(), &admin).unwrap();
        let mut gate = Gate::new(ids().0, None);
        gate.roster_event(1, &ev.encode()).unwrap();
        gate
    }

    fn signed(change: &LocalChange, key: &nkeys::KeyPair) -> Vec<u8> {
        let (s, d) = ids();
        let mut env = codec::encode_event(&s, &d, &"alice".parse().unwrap(), change, 1, None);
        env.sign(key).unwrap();
        env.encode()
    }

    #[test]
    fn with_a_roster_a_change_before_its_dependency_is_rejected_not_held_back() {
        let (s, d) = ids();
        let key = nkeys::KeyPair::new_user();
        let mut gate = gate_with_roster(&key);
        let changes = chain(2);
        let mut core = DocCore::new();
        let mut causal = Causal::new();
        let early = causal.judged_event(
            &mut core,
            &mut gate,
            (&s, &d),
            2,
            &signed(&changes[1], &key),
            false,
        );
        let Err(Rejected::Untrusted { reason, .. }) = early else {
            panic!("accepted a change whose dependency is not before it: {early:?}");
        };
        assert!(
            reason.to_string().contains("not before it in the log"),
            "{reason}"
        );
        assert_eq!(core.pending_len(), 0, "nothing held back");
        let first = causal.judged_event(
            &mut core,
            &mut gate,
            (&s, &d),
            3,
            &signed(&changes[0], &key),
            false,
        );
        assert!(first.is_ok(), "{first:?}");
        // The rejected change is remembered (and journaled for the store).
        assert_eq!(gate.take_journal(), vec![(changes[1].hash, true)]);
    }

    #[test]
    fn without_a_roster_a_change_before_its_dependency_is_held_back_as_before() {
        let (s, d) = ids();
        let mut gate = Gate::new(ids().0, None);
        let changes = chain(2);
        let mut core = DocCore::new();
        let mut causal = Causal::new();
        let early = causal
            .judged_event(
                &mut core,
                &mut gate,
                (&s, &d),
                1,
                &event(&changes[1], "x", 0),
                false,
            )
            .unwrap();
        assert_eq!(early.accepted.applied, Applied::Pending);
        causal
            .judged_event(
                &mut core,
                &mut gate,
                (&s, &d),
                2,
                &event(&changes[0], "x", 0),
                false,
            )
            .unwrap();
        assert_eq!(core.heads(), vec![changes[1].hash]);
    }

    #[test]
    fn a_change_held_back_is_reported_with_its_own_origin_when_its_dependency_arrives() {
        let (s, d) = ids();
        let changes = chain(2);
        let mut core = DocCore::new();
        let mut causal = Causal::new();
        // The second change arrives first, from bob at position 1.
        let second = causal
            .event(&mut core, (&s, &d), 1, &event(&changes[1], "bob", 20), true)
            .unwrap();
        assert_eq!(second.accepted.applied, Applied::Pending);
        assert!(second.accepted.effects.is_empty());
        assert_eq!(causal.held(), 1);
        // Its dependency, from alice at position 2, releases it.
        let first = causal
            .event(
                &mut core,
                (&s, &d),
                2,
                &event(&changes[0], "alice", 10),
                true,
            )
            .unwrap();
        assert_eq!(first.accepted.applied, Applied::New);
        let effects = &first.accepted.effects;
        assert_eq!(effects.len(), 2);
        assert_eq!(effects[0].hash, changes[0].hash);
        let alice = effects[0].origin.as_ref().unwrap();
        assert_eq!((alice.seq, alice.agent.as_str()), (Some(2), "alice"));
        assert_eq!(effects[1].hash, changes[1].hash);
        let bob = effects[1].origin.as_ref().unwrap();
        assert_eq!(
            (bob.seq, bob.agent.as_str(), bob.time_ms),
            (Some(1), "bob", 20)
        );
        assert_eq!(bob.message.as_deref(), Some("by bob"));
        assert_eq!(
            effects[1].patches.len(),
            1,
            "the released change has its patches"
        );
        assert_eq!(causal.held(), 0);
        assert_eq!(core.to_json(), serde_json::json!({"k0": 0, "k1": 1}));
    }

    #[test]
    fn without_patches_a_released_change_is_forgotten_and_effects_carry_no_patches() {
        let (s, d) = ids();
        let changes = chain(3);
        let mut core = DocCore::new();
        let mut causal = Causal::new();
        for (seq, c) in [(1, &changes[2]), (2, &changes[1])] {
            let e = causal
                .event(&mut core, (&s, &d), seq, &event(c, "bob", 0), false)
                .unwrap();
            assert_eq!(e.accepted.applied, Applied::Pending);
        }
        assert_eq!(causal.held(), 2);
        let e = causal
            .event(&mut core, (&s, &d), 3, &event(&changes[0], "bob", 0), false)
            .unwrap();
        assert_eq!(e.accepted.applied, Applied::New);
        assert!(e.accepted.effects.iter().all(|e| e.patches.is_empty()));
        assert_eq!(
            causal.held(),
            0,
            "no attribution is kept for changes in the document"
        );
        assert_eq!(core.heads(), vec![changes[2].hash]);
    }

    #[test]
    fn a_duplicate_is_accepted_with_no_effect_and_garbage_is_rejected_without_damage() {
        let (s, d) = ids();
        let changes = chain(1);
        let mut core = DocCore::new();
        let mut causal = Causal::new();
        let bytes = event(&changes[0], "bob", 0);
        causal.event(&mut core, (&s, &d), 1, &bytes, true).unwrap();
        let again = causal.event(&mut core, (&s, &d), 2, &bytes, true).unwrap();
        assert_eq!(again.accepted.applied, Applied::Duplicate);
        assert!(again.accepted.effects.is_empty());
        let err = causal
            .event(&mut core, (&s, &d), 3, b"not an envelope", true)
            .unwrap_err();
        assert!(!err.damaged(), "{err}");
        let other: DocumentId = "other".parse().unwrap();
        let err = causal
            .event(&mut core, (&s, &other), 4, &bytes, true)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("arrived on the subject of s/other"),
            "{err}"
        );
    }

    #[test]
    fn the_head_tracker_holds_back_like_the_document_core() {
        let changes = chain(3);
        let mut core = DocCore::new();
        for c in &changes {
            core.apply_bytes(&c.bytes).unwrap();
        }
        let mut t = HeadTracker::default();
        t.add(&core, &changes[2].hash);
        t.add(&core, &changes[1].hash);
        assert!(t.heads().is_empty());
        assert!(!t.contains(&changes[2].hash));
        t.add(&core, &changes[0].hash);
        assert_eq!(t.heads(), vec![changes[2].hash]);
        assert!(t.contains(&changes[1].hash));
    }
}
