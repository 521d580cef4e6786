//! Snapshots in the log: writing them (on demand, or by policy in the background), starting
//! or recovering from them, and trimming the log below them.
//!
//! A snapshot is built from the replica's sled store, not from the live document, so writing
//! one never holds the lock writers need: the store is read (changes first, then the stored
//! document, which finds every change even if compaction runs meanwhile), loaded into a
//! throwaway document on a blocking thread, saved, and uploaded.

use std::sync::Arc;
use std::time::Duration;

use automerge::ChangeHash;
use tracing::{debug, info, warn};

use super::{Replica, Shared, State};
use crate::apply::Origin;
use crate::backoff::Backoff;
use crate::doc::DocCore;
use crate::history::{HistoryError, Snapshot};
use crate::log::SnapshotInfo;
use crate::trust::RosterFold;
use crate::Error;

/// When a replica writes snapshots of its document to the log by itself.
///
/// Every replica may write them; one that finds a recent enough snapshot already stored
/// (by another agent) skips its turn, so a crowd of replicas does not multiply the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Write one after this many new events (0: never by count).
    pub every_events: u64,
    /// Write one this often when there were new events (`None`: never by time).
    pub every: Option<Duration>,
    /// After writing a snapshot, trim the document's events below it from the log. Off by
    /// default: a trimmed log can only be read from the snapshot on.
    pub trim: bool,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self {
            every_events: 10_000,
            every: Some(Duration::from_secs(600)),
            trim: false,
        }
    }
}

impl SnapshotPolicy {
    /// A policy that never writes snapshots by itself ([`Replica::snapshot`] still can).
    pub fn manual() -> Self {
        Self {
            every_events: 0,
            every: None,
            trim: false,
        }
    }
}

/// What [`Replica::trim`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    /// The snapshot the log was trimmed below.
    pub snapshot: SnapshotInfo,
    /// How many of the document's events were removed.
    pub removed: u64,
}

impl Replica {
    /// Writes a snapshot of the document, as far as this replica has applied the log, to the
    /// log for any replica to start from. If a snapshot at least as recent is already stored,
    /// returns that one instead. Does not block writers.
    pub async fn snapshot(&self) -> Result<SnapshotInfo, Error> {
        write(self.shared(), false, 0).await
    }

    /// Writes a snapshot and trims the document's events below it from the log. History,
    /// [`at`](Self::at), [`diff`](Self::diff) and [`blame`](Self::blame) keep working for
    /// every replica: the snapshot carries the document's whole change history and the
    /// position index. A replica whose position was trimmed away recovers from the snapshot.
    pub async fn trim(&self) -> Result<Trimmed, Error> {
        trim(self.shared()).await
    }

    /// Waits until this replica has applied every event of its document that the log holds
    /// now; returns that position.
    ///
    /// While the log cannot be reached (a timeout, a lost connection, a server restarting)
    /// this keeps asking, with backoff from 50 ms to 2 s, rather than failing on the first
    /// try: bound the wait with `tokio::time::timeout`. An error that retrying cannot fix
    /// (access denied, a refused request) is returned at once.
    pub async fn sync(&self) -> Result<u64, Error> {
        let mut backoff = Backoff::default();
        let last = loop {
            match last_position(self.shared()).await {
                Ok(last) => break last,
                Err(Error::Log(e)) if e.is_transient() => {
                    debug!(error = %e, "cannot ask the log for its last position; retrying");
                    backoff.wait().await;
                }
                Err(e) => return Err(e),
            }
        };
        self.wait_for_position(last).await?;
        Ok(last)
    }
}

/// The position of the document's newest event: on the stream, or in the snapshot (after
/// trimming, the newest events may be in the snapshot rather than the stream); or of the
/// space's newest roster event, if later: a replica that has synced judges its own writes
/// against the roster in force now, not an older one (a fresh replica that had read no
/// roster would publish writes every replica rejects).
async fn last_position(s: &Shared) -> Result<u64, Error> {
    let (space, document) = (&s.config.space, &s.config.document);
    let stream = s.log.last_seq(space, document).await?;
    let snapshot = s.log.snapshot_info(space, document).await?;
    let roster = s
        .log
        .roster_events(space, u64::MAX)
        .await?
        .last()
        .map_or(0, |e| e.seq);
    Ok(stream.max(snapshot.map_or(0, |i| i.seq)).max(roster))
}

async fn trim(s: &Shared) -> Result<Trimmed, Error> {
    let (snapshot, heads) = write_checked(s, true, 0).await?;
    // What is trimmed is gone for good: the snapshot the log holds now must load, with the
    // heads of the document it was built from, before any event goes. `write` checked the
    // bytes it built; reading them back from the log checks what readers will get.
    let (space, document) = (&s.config.space, &s.config.document);
    let stored = s.log.get_snapshot(space, document).await?;
    let Some((info, bytes)) = stored else {
        return Err(unverified(snapshot.seq, "the log holds no snapshot after writing one").into());
    };
    // Another replica may have written a newer one meanwhile: its heads are not known here,
    // so it is checked for loading only.
    let expected = (info.seq == snapshot.seq).then_some(heads).flatten();
    tokio::task::spawn_blocking(move || verify(&bytes, expected.as_deref()))
        .await
        .map_err(|e| unverified(info.seq, format!("checking it failed: {e}")))??;
    let removed = s
        .log
        .trim(
            &s.config.space,
            &s.config.document,
            snapshot.trimmed_through,
        )
        .await?;
    info!(
        space = %s.config.space,
        document = %s.config.document,
        through = snapshot.trimmed_through,
        removed,
        "trimmed the log below a snapshot"
    );
    Ok(Trimmed { snapshot, removed })
}

/// Builds a snapshot from the store and uploads it, unless the stored one is no more than
/// `fresh_enough` events behind (then returns that). With `trim`, it is marked as the floor
/// the log is about to be trimmed to, and written whatever is stored.
async fn write(s: &Shared, trim: bool, fresh_enough: u64) -> Result<SnapshotInfo, Error> {
    Ok(write_checked(s, trim, fresh_enough).await?.0)
}

/// [`write`], also returning the heads of the document the snapshot was built from (`None`
/// when an existing snapshot was returned instead). The snapshot is checked to load back
/// with those heads before it is uploaded.
async fn write_checked(
    s: &Shared,
    trim: bool,
    fresh_enough: u64,
) -> Result<(SnapshotInfo, Option<Vec<ChangeHash>>), Error> {
    let (space, document) = (&s.config.space, &s.config.document);
    let seq = s.store.position()?;
    let guarded = may_write(s)?;
    let existing = s.log.snapshot_info(space, document).await?;
    if let Some(e) = existing {
        // In a space with a roster, the stored one may be a snapshot no replica loads (its
        // signer is not trusted with snapshots), which its info cannot tell: write anyway.
        if !trim && !guarded && e.seq.saturating_add(fresh_enough) >= seq {
            return Ok((e, None));
        }
    }
    let store = s.store.clone();
    let key = s.config.stamp.key.clone();
    let (space_id, document_id) = (space.clone(), document.clone());
    let (bytes, heads) = tokio::task::spawn_blocking(move || -> Result<_, Error> {
        let (saved, changes) = store.document_parts()?;
        let (doc, _) = DocCore::load(saved.as_deref(), changes.iter().map(Vec::as_slice))?;
        let records = store.records(..=seq).collect::<Result<Vec<_>, _>>()?;
        let mut snapshot = Snapshot {
            seq,
            records,
            document: doc.save(),
            signature: None,
        };
        if let Some(key) = key {
            snapshot
                .sign(&space_id, &document_id, &key)
                .map_err(|e| HistoryError::Corrupt(format!("signing the snapshot failed: {e}")))?;
        }
        let bytes = snapshot.encode();
        // A snapshot that does not load back with the same heads must never be uploaded:
        // a reader would start from it, and a trim would make it the only copy.
        let heads = doc.heads();
        verify(&bytes, Some(&heads))?;
        Ok((bytes, heads))
    })
    .await
    .map_err(|e| HistoryError::Corrupt(format!("building the snapshot failed: {e}")))??;
    let carried = existing.map_or(0, |e| e.trimmed_through);
    let info = SnapshotInfo {
        seq,
        trimmed_through: if trim { carried.max(seq) } else { carried },
        size: bytes.len() as u64,
    };
    s.log
        .put_snapshot(space, document, info, bytes.into())
        .await?;
    debug!(%space, %document, seq, size = info.size, "wrote a snapshot");
    Ok((info, Some(heads)))
}

/// Whether the space has a roster in force (as far as this replica has read), after
/// checking that it lets this replica's key write snapshots; refused (no replica would load
/// the snapshot) when it does not.
fn may_write(s: &Shared) -> Result<bool, Error> {
    let st = s.lock();
    let Some(roster) = st.gate.roster() else {
        return Ok(false);
    };
    let key = s.config.stamp.key.as_ref().map(|k| k.public_key());
    match key {
        Some(key) if roster.may_snapshot(&key) => Ok(true),
        key => Err(HistoryError::NotAllowed(format!(
            "space {}'s roster lets only its admins and agents listed with \"snapshots\": true \
             sign snapshots, and this replica's key ({}) is neither: no replica would load a \
             snapshot it wrote",
            s.config.space,
            key.as_deref().unwrap_or("none: it signs nothing"),
        ))
        .into()),
    }
}

/// Whether a replica may load `snapshot` of its document: always in an open space; in a
/// space with a roster (the one in force at the snapshot's position, folded from the log
/// as every replica folds it), only when a key that roster trusts with snapshots signed
/// it. `Err` says why not.
async fn trusted(s: &Shared, snapshot: &Snapshot) -> Result<Result<(), String>, Error> {
    let (space, document) = (&s.config.space, &s.config.document);
    let rosters = s
        .log
        .roster_events(space, snapshot.seq.saturating_add(1))
        .await?;
    let mut fold = RosterFold::new(space.clone(), s.config.pinned_admins.clone());
    for entry in rosters {
        // An ignored roster event is reported by the follow loop, which folds them too.
        let _ = fold.apply(entry.seq, &entry.payload);
    }
    let Some(roster) = fold.current() else {
        return Ok(Ok(()));
    };
    Ok(match snapshot.verify(space, document) {
        Ok(signer) if roster.may_snapshot(signer) => Ok(()),
        Ok(signer) => Err(format!(
            "it is signed by {signer}, which the roster in force at its position neither lists \
             as an admin nor lets write snapshots"
        )),
        Err(e) => Err(format!("its signature: {e}")),
    })
}

/// A snapshot that failed its check, at position `seq`.
fn unverified(seq: u64, why: impl std::fmt::Display) -> HistoryError {
    HistoryError::Corrupt(format!(
        "the snapshot at position {seq} failed its check, so nothing was trimmed: {why}"
    ))
}

/// Checks that the encoded snapshot `bytes` decodes, that its document loads, and (when
/// known) that it has the heads `expected`. Runs automerge's load: call it off the runtime.
pub(crate) fn verify(bytes: &[u8], expected: Option<&[ChangeHash]>) -> Result<(), HistoryError> {
    let snapshot = Snapshot::decode(bytes)?;
    let seq = snapshot.seq;
    let (doc, _) = DocCore::load(Some(&snapshot.document), [])
        .map_err(|e| unverified(seq, format!("its document does not load: {e}")))?;
    if let Some(expected) = expected {
        let heads = doc.heads();
        if heads != expected {
            return Err(unverified(
                seq,
                format!(
                    "it loads with heads {} where the document has {}",
                    show_heads(&heads),
                    show_heads(expected)
                ),
            ));
        }
    }
    Ok(())
}

fn show_heads(heads: &[ChangeHash]) -> String {
    let short: Vec<String> = heads
        .iter()
        .map(|h| h.to_string()[..12].to_owned())
        .collect();
    format!("[{}]", short.join(", "))
}

/// Before following the log: a replica with nothing applied starts from the stored snapshot
/// instead of the first event, and a replica whose position was trimmed away recovers from it.
pub(super) async fn recover(s: &Shared) -> Result<(), Error> {
    let (space, document) = (&s.config.space, &s.config.document);
    let position = s.lock().position;
    let Some(info) = s.log.snapshot_info(space, document).await? else {
        return Ok(());
    };
    let needed = match position {
        0 => info.seq > 0,
        p => info.trimmed_through > p,
    };
    if !needed {
        return Ok(());
    }
    let Some((info, bytes)) = s.log.get_snapshot(space, document).await? else {
        return Ok(());
    };
    let snapshot = Snapshot::decode(&bytes)?;
    if let Err(why) = trusted(s, &snapshot).await? {
        // Its changes were judged by nobody: following the log judges each of them.
        warn!(
            %space, %document, snapshot = snapshot.seq, %why,
            "ignoring the stored snapshot: the space's roster does not trust it; following \
             the log instead"
        );
        s.lock().stats.snapshots_refused += 1;
        return Ok(());
    }
    if position > 0 {
        warn!(
            %space, %document, position,
            trimmed_through = info.trimmed_through,
            snapshot = snapshot.seq,
            "this replica's position was trimmed from the log; recovering from the snapshot"
        );
    } else {
        info!(%space, %document, snapshot = snapshot.seq, "starting from the stored snapshot");
    }
    let document_bytes = snapshot.document.clone();
    let loaded = tokio::task::spawn_blocking(move || DocCore::load(Some(&document_bytes), []))
        .await
        .map_err(|e| HistoryError::Corrupt(format!("loading the snapshot failed: {e}")))??
        .0;
    s.take_snapshot(snapshot, loaded)
}

impl Shared {
    /// Merges a fetched snapshot into the replica and moves its position to the snapshot's.
    fn take_snapshot(&self, snapshot: Snapshot, loaded: DocCore) -> Result<(), Error> {
        let mut st = self.lock();
        if st.position >= snapshot.seq {
            return Ok(());
        }
        let fresh = st.core.heads().is_empty() && st.core.pending_len() == 0 && !st.listeners.any();
        if fresh {
            // Nothing to merge with and nobody to tell: take the document as it is.
            self.store.add_snapshot(
                snapshot.seq,
                Some(&snapshot.document),
                [],
                &snapshot.records,
            )?;
            st.core = loaded;
            // The stored snapshot is a compaction: do not save the document again soon.
            st.history_at_compaction = snapshot.records.len();
        } else {
            let records: std::collections::HashMap<_, _> =
                snapshot.records.iter().map(|r| (r.hash, r)).collect();
            let missing = loaded.changes_missing_from(&st.core);
            let raw: Vec<([u8; 32], Vec<u8>)> = missing
                .iter()
                .map(|c| (c.hash().0, c.raw_bytes().to_vec()))
                .collect();
            self.store.add_snapshot(
                snapshot.seq,
                None,
                raw.iter().map(|(h, b)| (h, b.as_slice())),
                &snapshot.records,
            )?;
            let watched = st.listeners.any();
            for change in missing {
                let origin = match records.get(&change.hash()) {
                    Some(r) => Origin {
                        seq: Some(r.seq),
                        agent: r.agent.clone(),
                        time_ms: r.time_ms,
                        message: r.message.clone(),
                        signature: r.signature.clone(),
                        provenance: r.provenance.clone(),
                    },
                    None => Origin::unknown(&self.config.agent),
                };
                let accepted = {
                    let State { core, causal, .. } = &mut *st;
                    causal.change(core, change, origin, watched)?
                };
                for effect in accepted.effects {
                    let origin = effect
                        .origin
                        .unwrap_or_else(|| Origin::unknown(&self.config.agent));
                    self.announce(&mut st, &effect.hash, &origin, effect.patches);
                }
            }
        }
        st.position = snapshot.seq;
        st.stats.snapshot_loaded = Some(snapshot.seq);
        drop(st);
        self.version.send_modify(|v| *v += 1);
        Ok(())
    }
}

/// Writes snapshots by the replica's policy, in the background, for as long as it lives.
pub(super) async fn run_policy(s: Arc<Shared>) {
    let policy = s.config.snapshots.clone();
    if policy.every_events == 0 && policy.every.is_none() {
        return;
    }
    let mut timer = policy.every.map(|d| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        let timed = tokio::select! {
            _ = s.snapshot_wake.notified() => false,
            _ = async {
                match timer.as_mut() {
                    Some(t) => { t.tick().await; }
                    None => std::future::pending::<()>().await,
                }
            } => true,
        };
        let (new, position) = {
            let st = s.lock();
            (st.events_since_snapshot, st.position)
        };
        let due = (policy.every_events > 0 && new >= policy.every_events) || (timed && new > 0);
        if !due {
            continue;
        }
        // Still catching up (more than half a period behind the log's end): not yet. The
        // follow loop wakes this again once it has caught up (the count is kept).
        let (space, document) = (&s.config.space, &s.config.document);
        let slack = match policy.every_events {
            0 => 1024,
            every => every / 2,
        };
        // A log that cannot say where it ends cannot take a snapshot either: `write` below
        // fails the same way and says so.
        if let Ok(end) = s.log.last_seq(space, document).await {
            if position.saturating_add(slack) < end {
                continue;
            }
        }
        s.lock().events_since_snapshot = 0;
        let result = if policy.trim {
            trim(&s).await.map(|_| true)
        } else {
            // A snapshot half a period old, written by another replica, is recent enough.
            write_checked(&s, false, policy.every_events / 2)
                .await
                .map(|(_, heads)| heads.is_some())
        };
        if let Ok(true) = result {
            s.lock().stats.snapshots_written += 1;
        }
        if let Err(Error::History(HistoryError::NotAllowed(why))) = &result {
            // Not this replica's job in this space (until a roster lets its key): quietly.
            debug!(space = %s.config.space, document = %s.config.document, %why, "not writing snapshots");
            continue;
        }
        if let Err(e) = result {
            warn!(
                space = %s.config.space,
                document = %s.config.document,
                error = %e,
                "writing a snapshot failed; will try again after more events"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::super::Config;
    use super::*;
    use crate::log::{EmbeddedLog, EventLog};
    use crate::store::RemoteBatch;

    /// A replica of s/d on an embedded log in `dir`, snapshotting only when asked.
    fn manual(dir: &std::path::Path) -> (Replica, Arc<EmbeddedLog>, Config) {
        let db = sled::open(dir).unwrap();
        let log = Arc::new(EmbeddedLog::open(db.clone()).unwrap());
        let mut config = Config::new(
            "s".parse().unwrap(),
            "d".parse().unwrap(),
            "a".parse().unwrap(),
        );
        config.snapshots = SnapshotPolicy::manual();
        let replica = Replica::open(log.clone(), &db, config.clone()).unwrap();
        (replica, log, config)
    }

    #[tokio::test]
    async fn a_snapshot_that_does_not_load_back_is_never_uploaded_and_nothing_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let (replica, log, config) = manual(dir.path());
        let (space, document) = (config.space, config.document);
        replica.put("/a", json!(1)).await.unwrap();
        replica.flush().await.unwrap();
        let last = replica.sync().await.unwrap();
        // A change automerge would encode differently, stored behind the decoder's back (as
        // a version without the decoder's check did): the document it is in saves as bytes
        // that do not load back with the same heads.
        let bad = crate::codec::readme_example::issue_example();
        let hash = DocCore::decode_change(&bad.change).unwrap().hash();
        let mut batch = RemoteBatch::default();
        batch.add(last, Some((&hash.0, &bad.change)), None);
        replica.shared().store.commit_remote(batch).unwrap();

        let err = replica.trim().await.unwrap_err();
        assert!(err.to_string().contains("failed its check"), "{err}");
        assert!(err.to_string().contains("nothing was trimmed"), "{err}");
        assert_eq!(log.snapshot_info(&space, &document).await.unwrap(), None);
        assert_eq!(log.last_seq(&space, &document).await.unwrap(), last);
        let err = replica.snapshot().await.unwrap_err();
        assert!(err.to_string().contains("failed its check"), "{err}");
    }

    #[tokio::test]
    async fn trimming_checks_the_snapshot_the_log_holds_and_a_good_one_passes() {
        let dir = tempfile::tempdir().unwrap();
        let (replica, log, config) = manual(dir.path());
        for i in 0..5 {
            replica.put(&format!("/k{i}"), json!(i)).await.unwrap();
        }
        replica.flush().await.unwrap();
        replica.sync().await.unwrap();
        let trimmed = replica.trim().await.unwrap();
        assert_eq!(trimmed.removed, 5);
        let (_, bytes) = log
            .get_snapshot(&config.space, &config.document)
            .await
            .unwrap()
            .unwrap();
        verify(&bytes, Some(&replica.heads())).unwrap();
        // A snapshot with other heads than the document is refused, naming both.
        let err = verify(&bytes, Some(&[])).unwrap_err();
        assert!(err.to_string().contains("loads with heads"), "{err}");
    }
}
