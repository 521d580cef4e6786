//! Coalesced writes ([`Config::coalesce_writes`](super::Config::coalesce_writes)): the
//! edits of writers queued behind one another made in one change and one event.
//!
//! Each write is a request in a queue. The writer that finds nobody leading becomes the
//! leader: it takes rounds from the queue (a prefix of compatible requests, see
//! [`Queue::take_round`]) and makes each round under the replica's lock, answering every
//! request in it, until the queue is empty. The others wait for their answer. Nothing
//! awaits while leading, so a leader cannot be cancelled halfway; after [`MAX_ROUNDS`] it
//! hands the queue to a task of its own, so that its caller is not kept waiting by a
//! queue that never empties. Each caller then waits, on its own, for what its
//! [`Durability`](super::Durability) promises.
//!
//! Why writes may share a change: a change's cost (the transaction's commit, the envelope,
//! the outbox entry, publishing it, reading it back, storing it) is paid once per change,
//! not per put, so under many writers most of a write's cost goes. What it changes: a round
//! is one event with several writers' edits, carrying their shared message and provenance
//! (a round holds only writes whose message and provenance are equal, and the agent is the
//! replica's), and watchers wake once for it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use blackboard_schemas::{Provenance, MAX_ENVELOPE_BYTES};
use tokio::sync::oneshot;
use tracing::debug;

use super::{Durability, Shared, Written};
use crate::doc::Edit;
use crate::Error;

/// At most this many writes share a change.
pub(super) const MAX_WRITES: usize = 64;

/// A round's edits add at most about this many bytes to its change (their
/// [`Edit::size_hint`]s): a quarter of what an event may hold, so a round's change fits
/// with room to spare. A write larger than this is made alone.
const MAX_ROUND_BYTES: usize = MAX_ENVELOPE_BYTES / 4;

/// How many rounds a writer leads before it hands the queue to a task.
const MAX_ROUNDS: usize = 8;

/// What a request is answered: what it wrote, and the last outbox id its caller still has
/// to wait for (`None`: nothing was written, or the round's wait is over).
type Answer = Result<(Written, Option<u64>), Error>;

/// One queued write.
struct Request {
    edits: Vec<Edit>,
    message: Option<String>,
    provenance: Option<Provenance>,
    answer: oneshot::Sender<Answer>,
}

impl Request {
    /// Whether this request carries the same message and provenance as `other`.
    fn says_as(&self, other: &Request) -> bool {
        self.message == other.message && self.provenance == other.provenance
    }

    /// Whether no path of this request is at or under a path of `other`, or the reverse.
    fn apart_from(&self, other: &Request) -> bool {
        self.edits.iter().all(|a| {
            other.edits.iter().all(|b| {
                let (a, b) = (a.path().segments(), b.path().segments());
                !(a.starts_with(b) || b.starts_with(a))
            })
        })
    }

    fn size_hint(&self) -> usize {
        self.edits.iter().map(Edit::size_hint).sum()
    }
}

/// The queue of writes waiting for a round, and whether a writer is leading.
#[derive(Default)]
pub(super) struct Queue {
    pending: Mutex<VecDeque<Request>>,
    leading: AtomicBool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("pending", &self.pending().len())
            .field("leading", &self.leading.load(Ordering::SeqCst))
            .finish()
    }
}

impl Queue {
    fn pending(&self) -> std::sync::MutexGuard<'_, VecDeque<Request>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Becomes the leader, unless someone is.
    fn try_lead(&self) -> bool {
        self.leading
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Stops leading. Returns whether requests are waiting: a writer that queued after the
    /// leader's last round and found it still leading would otherwise wait for nobody.
    fn release(&self) -> bool {
        self.leading.store(false, Ordering::SeqCst);
        !self.pending().is_empty()
    }

    /// The next round: the oldest request, and after it the requests with its message and
    /// provenance whose paths are apart from every one taken so far, in order, stopping at
    /// the first that does not fit (so a writer's
    /// writes keep their order), at [`MAX_WRITES`], or at [`MAX_ROUND_BYTES`].
    fn take_round(&self) -> Vec<Request> {
        let mut pending = self.pending();
        let Some(first) = pending.pop_front() else {
            return Vec::new();
        };
        let mut bytes = first.size_hint();
        let mut round = vec![first];
        while round.len() < MAX_WRITES {
            let Some(next) = pending.front() else { break };
            let size = next.size_hint();
            let fits = next.says_as(&round[0]) && round.iter().all(|r| r.apart_from(next));
            if bytes + size > MAX_ROUND_BYTES || !fits {
                break;
            }
            bytes += size;
            round.extend(pending.pop_front());
        }
        round
    }
}

/// [`Replica::edit`](super::Replica::edit) with coalescing: queues the write, leads if
/// nobody does, and waits for the answer, then for the durability the configuration asks.
pub(super) async fn edit(
    shared: &Arc<Shared>,
    message: Option<&str>,
    provenance: Option<Provenance>,
    edits: &[Edit],
) -> Result<Written, Error> {
    let (answer, answered) = oneshot::channel();
    shared.queue.pending().push_back(Request {
        edits: edits.to_vec(),
        message: message.map(str::to_owned),
        provenance,
        answer,
    });
    // Let the other writers that are ready to run queue their writes first: a writer that
    // led at once would mostly make a round of one, since the writers on its thread only
    // run once it is done.
    tokio::task::yield_now().await;
    lead(shared);
    // Every request taken from the queue is answered before it is dropped; a closed channel
    // would mean a leader panicked midway (its round's writes are then unknown).
    let (written, last) = answered.await.map_err(|_| Error::Closed)??;
    if let Some(last) = last {
        shared.made_durable(last).await?;
    }
    Ok(written)
}

/// Leads while the queue has requests, unless another writer leads.
fn lead(shared: &Arc<Shared>) {
    let queue = &shared.queue;
    let mut rounds = 0;
    while queue.try_lead() {
        // A leader that panicked would otherwise keep the place for ever, and every later
        // write would wait for nobody; the next writer leads instead.
        let _unwinding = ReleaseOnPanic(queue);
        loop {
            let round = queue.take_round();
            if round.is_empty() {
                break;
            }
            shared.write_round(round);
            rounds += 1;
            if rounds == MAX_ROUNDS {
                // Hand over: this caller has its answer and should not wait for a queue
                // that others keep filling.
                if queue.release() {
                    let shared = shared.clone();
                    tokio::spawn(async move { lead(&shared) });
                }
                return;
            }
        }
        if !queue.release() {
            return;
        }
    }
}

/// Gives up the leader's place if the leader panics.
struct ReleaseOnPanic<'a>(&'a Queue);

impl Drop for ReleaseOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.leading.store(false, Ordering::SeqCst);
        }
    }
}

impl Shared {
    /// Makes one round under the lock and answers each of its requests. A round of several
    /// that fails is made again one request at a time, so each gets its own answer (and a
    /// bad write fails alone).
    fn write_round(self: &Arc<Self>, round: Vec<Request>) {
        let mut st = self.lock();
        if round.len() > 1 {
            let groups: Vec<&[Edit]> = round.iter().map(|r| r.edits.as_slice()).collect();
            let (message, provenance) = (round[0].message.as_deref(), &round[0].provenance);
            match self.write_groups(&mut st, message, provenance, &groups) {
                Ok((written, last)) => {
                    drop(st);
                    self.answer_round(round, written, last);
                    return;
                }
                Err(e) => {
                    debug!(error = %e, writes = round.len(), "a round failed; making each write alone")
                }
            }
        }
        let mut answers = Vec::with_capacity(round.len());
        for request in round {
            let made = self.write_groups(
                &mut st,
                request.message.as_deref(),
                &request.provenance,
                &[&request.edits],
            );
            let answer = made.map(|(mut written, last)| (written.pop().unwrap_or_default(), last));
            answers.push((request.answer, answer));
        }
        drop(st);
        for (to, answer) in answers {
            // A caller that stopped waiting has nobody to tell.
            let _ = to.send(answer);
        }
    }

    /// Answers the requests of a round made together, with what each wrote and outbox id
    /// `last`. Under `Durability::Log`, one task waits for the log on the round's behalf
    /// (each writer waiting on its own was woken by every outbox round); on an error each
    /// writer waits again by itself, to get its own. Under `Local` each writer waits for the
    /// shared fsync itself (one waiter per round measured slower there).
    fn answer_round(
        self: &Arc<Self>,
        round: Vec<Request>,
        written: Vec<Written>,
        last: Option<u64>,
    ) {
        let answers = round.into_iter().zip(written);
        let round_waits = self.config.durability == Durability::Log;
        let Some(last) = last.filter(|_| round_waits) else {
            for (request, written) in answers {
                let _ = request.answer.send(Ok((written, last)));
            }
            return;
        };
        let answers: Vec<_> = answers.collect();
        let shared = self.clone();
        tokio::spawn(async move {
            let wait = match shared.made_durable(last).await {
                Ok(()) => None,
                Err(_) => Some(last),
            };
            for (request, written) in answers {
                let _ = request.answer.send(Ok((written, wait)));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Filter;
    use crate::replica::tests::open_tuned;
    use crate::replica::{Durability, Replica};
    use serde_json::json;

    /// Holds the leader's place, so that writes queue up; [`release`](Self::release) makes
    /// them in rounds.
    struct Held(Arc<Shared>);

    impl Held {
        fn hold(doc: &Replica) -> Self {
            let shared = doc.handle.shared.clone();
            assert!(shared.queue.try_lead(), "nobody leads yet");
            Held(shared)
        }

        /// Waits until `n` writes are queued (each writer task queues before it first
        /// waits), then leads them.
        async fn release(self, n: usize) {
            while self.0.queue.pending().len() < n {
                tokio::task::yield_now().await;
            }
            self.0.queue.release();
            lead(&self.0);
        }
    }

    /// Spawns one task per edit list, each making it with `message`.
    fn spawn_writers(
        doc: &Replica,
        message: Option<&str>,
        writes: Vec<Vec<Edit>>,
    ) -> Vec<tokio::task::JoinHandle<Result<Written, Error>>> {
        writes
            .into_iter()
            .map(|edits| {
                let doc = doc.clone();
                let message = message.map(str::to_owned);
                tokio::spawn(async move { doc.edit(message.as_deref(), &edits).await })
            })
            .collect()
    }

    fn put(path: &str, value: serde_json::Value) -> Vec<Edit> {
        vec![Edit::put(path.parse().unwrap(), value)]
    }

    async fn coalesced_writes_share_one_change_and_one_event(durability: Durability) {
        let dir = tempfile::tempdir().unwrap();
        let (doc, _db, _log, _) = open_tuned(dir.path(), |c| {
            c.coalesce_writes = true;
            c.durability = durability;
        });
        let held = Held::hold(&doc);
        let writes = (0..20).map(|i| put(&format!("/w{i}"), json!(i))).collect();
        let writers = spawn_writers(&doc, Some("bulk"), writes);
        held.release(20).await;
        let mut hashes = Vec::new();
        for w in writers {
            hashes.push(w.await.unwrap().unwrap().hash.expect("each write changed"));
        }
        // One change for the twenty writes, each answered with its hash.
        assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
        doc.flush().await.unwrap();
        doc.sync().await.unwrap();
        let events = doc.history(&Filter::default()).unwrap();
        assert_eq!(events.len(), 1, "one event: {events:?}");
        assert_eq!(events[0].record.message.as_deref(), Some("bulk"));
        assert_eq!(events[0].paths.len(), 20);
        for i in 0..20 {
            assert_eq!(doc.get(&format!("/w{i}")).unwrap(), Some(json!(i)));
        }
        assert_eq!(doc.stats().published, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_writes_share_one_change_and_one_event_durable_locally() {
        coalesced_writes_share_one_change_and_one_event(Durability::Local).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_writes_share_one_change_and_one_event_acknowledged_by_the_log() {
        coalesced_writes_share_one_change_and_one_event(Durability::Log).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_write_in_a_round_fails_alone_and_the_others_are_made() {
        let dir = tempfile::tempdir().unwrap();
        let (doc, _db, _log, _) = open_tuned(dir.path(), |c| c.coalesce_writes = true);
        doc.put("/scalar", json!(1)).await.unwrap();
        let held = Held::hold(&doc);
        let writes = vec![
            put("/a", json!("a")),
            // Through a number: refused.
            put("/scalar/x", json!(2)),
            vec![Edit::Increment {
                path: "/n".parse().unwrap(),
                by: 5,
            }],
            vec![Edit::Increment {
                path: "/m".parse().unwrap(),
                by: -2,
            }],
        ];
        let writers = spawn_writers(&doc, None, writes);
        held.release(4).await;
        let mut answers = Vec::new();
        for w in writers {
            answers.push(w.await.unwrap());
        }
        let err = answers[1].as_ref().unwrap_err();
        assert!(err.to_string().contains("/scalar"), "{err}");
        assert!(answers[0].as_ref().unwrap().hash.is_some());
        // Each increment is answered with its own counter.
        assert_eq!(answers[2].as_ref().unwrap().counters, [5]);
        assert_eq!(answers[3].as_ref().unwrap().counters, [-2]);
        assert_eq!(
            doc.to_json(),
            json!({"scalar": 1, "a": "a", "n": 5, "m": -2})
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overlapping_paths_and_different_messages_are_not_grouped() {
        let dir = tempfile::tempdir().unwrap();
        let (doc, _db, _log, _) = open_tuned(dir.path(), |c| c.coalesce_writes = true);
        let held = Held::hold(&doc);
        // Queued in this order: /t and /t/x overlap, so the second starts a new round; the
        // third differs in message.
        let mut writers = spawn_writers(&doc, None, vec![put("/t", json!({"x": 1}))]);
        held_until(&doc, 1).await;
        writers.extend(spawn_writers(&doc, None, vec![put("/t/x", json!(2))]));
        held_until(&doc, 2).await;
        writers.extend(spawn_writers(
            &doc,
            Some("other"),
            vec![put("/u", json!(3))],
        ));
        held.release(3).await;
        let mut hashes = Vec::new();
        for w in writers {
            hashes.push(w.await.unwrap().unwrap().hash.unwrap());
        }
        assert_ne!(hashes[0], hashes[1]);
        assert_ne!(hashes[1], hashes[2]);
        doc.flush().await.unwrap();
        doc.sync().await.unwrap();
        // Every value written is in some event's state: /t/x was 1, then 2.
        let events = doc.history(&Filter::default()).unwrap();
        let changes: Vec<_> = events.iter().map(|e| e.record.hash).collect();
        assert!(hashes.iter().all(|h| changes.contains(h)), "{events:?}");
        assert_eq!(doc.to_json(), json!({"t": {"x": 2}, "u": 3}));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leader_hands_a_long_queue_to_a_task_and_every_write_is_made_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (doc, _db, _log, _) = open_tuned(dir.path(), |c| c.coalesce_writes = true);
        let held = Held::hold(&doc);
        // One path, so each write is a round of its own: more rounds than a leader makes.
        let n = MAX_ROUNDS * 2 + 3;
        let mut writers = Vec::new();
        for i in 0..n {
            writers.extend(spawn_writers(&doc, None, vec![put("/same", json!(i))]));
            held_until(&doc, i + 1).await;
        }
        held.release(n).await;
        let mut hashes = Vec::new();
        for w in writers {
            let answered = tokio::time::timeout(std::time::Duration::from_secs(30), w).await;
            let written = answered.expect("every queued write is answered");
            hashes.push(written.unwrap().unwrap().hash.unwrap());
        }
        hashes.dedup();
        assert_eq!(hashes.len(), n, "a change per write");
        // Made in the order queued: the last write's value stands.
        assert_eq!(doc.get("/same").unwrap(), Some(json!(n - 1)));
        // And the queue is not left to a leader that is gone: a later write is made.
        let later = doc.put("/after", json!(1));
        let written = tokio::time::timeout(std::time::Duration::from_secs(30), later).await;
        assert!(written.expect("a later write is made").unwrap().is_some());
    }

    /// Waits until `n` writes are queued.
    async fn held_until(doc: &Replica, n: usize) {
        while doc.handle.shared.queue.pending().len() < n {
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn a_round_stops_at_the_first_write_that_does_not_fit() {
        let queue = Queue::default();
        let push = |path: &str, message: Option<&str>| {
            let (answer, _) = oneshot::channel();
            queue.pending().push_back(Request {
                edits: put(path, json!(1)),
                message: message.map(str::to_owned),
                provenance: None,
                answer,
            });
        };
        push("/a", None);
        push("/b", None);
        push("/a/c", None); // under /a: stops the round
        push("/d", None);
        push("/e", Some("why"));
        let lens: Vec<usize> = std::iter::from_fn(|| {
            let round = queue.take_round();
            (!round.is_empty()).then_some(round.len())
        })
        .collect();
        assert_eq!(lens, [2, 2, 1]);
        for i in 0..MAX_WRITES + 3 {
            push(&format!("/k{i}"), None);
        }
        assert_eq!(queue.take_round().len(), MAX_WRITES);
        assert_eq!(queue.take_round().len(), 3);
    }
}
