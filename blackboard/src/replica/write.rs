//! Local changes: a transaction on the document, its change and outbox entry written to
//! sled and flushed before the caller is told, and the path-addressed conveniences.

use std::time::{SystemTime, UNIX_EPOCH};

use automerge::transaction::Transaction;
use automerge::ChangeHash;
use blackboard_schemas::MAX_ENVELOPE_BYTES;
use serde_json::Value as Json;

use super::{Durability, Replica, Shared, State};
use crate::apply::Origin;
use crate::codec;
use crate::doc::{Edit, Path};
use crate::history::Record;
use crate::store::LocalEntry;
use crate::Error;

impl Replica {
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
        let provenance = self.provenance();
        let (out, hash, last) = {
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
            let mut envelope = codec::encode_event(
                &s.config.space,
                &s.config.document,
                &s.config.agent,
                &local,
                time,
                message.map(str::to_owned),
            );
            envelope.provenance = provenance.clone();
            if let Err(e) = s.config.stamp.apply(&mut envelope) {
                s.reload(&mut st)?;
                return Err(Error::Sign(e));
            }
            let payload = envelope.encode();
            if payload.len() > MAX_ENVELOPE_BYTES {
                // The change exists only in memory: take it back by reloading from disk, so
                // the document never holds a change that will not reach the log.
                s.reload(&mut st)?;
                return Err(Error::TooLarge {
                    len: payload.len(),
                    max: MAX_ENVELOPE_BYTES,
                });
            }
            let entry = LocalWrite {
                hash: local.hash,
                change: local.bytes,
                msg_id: local.hash.to_string(),
                payload,
                time_ms: time,
                message: envelope.message.clone(),
                provenance: envelope.provenance.clone(),
            };
            let last = s.store_locals(&mut st, &[entry])?;
            // Sent under the lock, so a watch switching to live sees each change exactly once.
            let meta = Origin {
                seq: None,
                agent: s.config.agent.clone(),
                time_ms: time,
                message: message.map(str::to_owned),
                signature: s.config.stamp.local_signature(),
                provenance,
            };
            s.announce(&mut st, &local.hash, &meta, patches);
            (out, local.hash, last)
        };
        s.made_durable(last).await?;
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
                let mut envelope = codec::encode_event(
                    &s.config.space,
                    &s.config.document,
                    &agent,
                    &local,
                    time_ms,
                    message,
                );
                // A copy keeps its writer's provenance; this replica's key vouches for the
                // copy (a roster accepts it only if the key is one of that writer's).
                envelope.provenance = record.as_ref().and_then(|r| r.provenance.clone());
                s.config.stamp.apply(&mut envelope).map_err(Error::Sign)?;
                let envelope = envelope.encode();
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
}

/// A local change to store and queue: its hash and bytes, the message id it is published
/// under, and its encoded envelope.
pub(super) struct LocalWrite {
    pub(super) hash: ChangeHash,
    pub(super) change: Vec<u8>,
    pub(super) msg_id: String,
    pub(super) payload: Vec<u8>,
    /// What the envelope says beside the change (for the index when it comes back).
    pub(super) time_ms: i64,
    pub(super) message: Option<String>,
    pub(super) provenance: Option<blackboard_schemas::Provenance>,
}

impl Shared {
    /// Stores `writes` (changes already in the document, in causal order) with outbox entries
    /// in one sled batch, under the lock; under [`Durability::Log`], queues them in memory
    /// instead (see [`super::unstored`]). If the batch fails, the changes exist only in
    /// memory: the document is reloaded from disk, so it never holds a change that will not
    /// reach the log. Returns the last outbox id given, for [`made_durable`](Self::made_durable).
    pub(super) fn store_locals(&self, st: &mut State, writes: &[LocalWrite]) -> Result<u64, Error> {
        if let Some(reason) = &st.denied {
            // The log denies this agent's publishing: a change made now could never reach
            // it. Take it back out of memory, as for a failed batch.
            let err = Error::WriteDenied(format!(
                "{}/{}: {}",
                self.config.space,
                self.config.document,
                crate::log::Error::Denied(reason.clone())
            ));
            self.reload(st)?;
            return Err(err);
        }
        self.check_trusted(st, writes)?;
        let first = st.next_outbox;
        match self.config.durability {
            Durability::Local => {
                let stored = self
                    .store
                    .add_locals(writes.iter().zip(first..).map(|(w, id)| LocalEntry {
                        hash: &w.hash.0,
                        change: &w.change,
                        outbox_id: id,
                        msg_id: &w.msg_id,
                        payload: &w.payload,
                    }));
                if let Err(e) = stored {
                    self.reload(st)?;
                    return Err(e.into());
                }
                // Counted now; under `Log`, when they come back from the log and are stored.
                st.stored_since_compaction += writes.len();
            }
            Durability::Log => {
                for (w, id) in writes.iter().zip(first..) {
                    st.unstored.push(id, w);
                }
            }
        }
        st.next_outbox = first + writes.len() as u64;
        let signature = self.config.stamp.local_signature();
        let mut own = self.own();
        for w in writes {
            own.queued(w, &self.config.agent, &signature);
        }
        drop(own);
        self.maybe_compact(st);
        Ok(st.next_outbox - 1)
    }

    /// After local changes up to outbox id `last` were stored and announced (and the lock
    /// released): wakes waiters and the outbox, then waits for what the configured
    /// [`Durability`] promises.
    ///
    /// Under `Local`, the fsync. Publishing and the local fsync overlap: the outbox reads
    /// the entries from sled before they are durable. A crash in between can leave a change
    /// on the log but not on disk; the replica then reads it back from the log like any
    /// other event (and a re-published outbox entry is dropped by the log's duplicate
    /// window).
    ///
    /// Under `Log`, the log's acknowledgement of every entry up to `last`.
    pub(super) async fn made_durable(&self, last: u64) -> Result<(), Error> {
        self.version.send_modify(|v| *v += 1);
        self.outbox_wake.notify_one();
        match self.config.durability {
            Durability::Local => self.store.flush().await?,
            Durability::Log => match self.acknowledged_through(last).await {
                Err(Error::Closed) => return Err(Error::ClosedUnacknowledged),
                other => other?,
            },
        }
        Ok(())
    }
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
