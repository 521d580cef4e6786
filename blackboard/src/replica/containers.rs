//! The write path for path-addressed edits: the container creations an edit needs are stored
//! and queued with the edit itself, in one sled batch and in causal order.
//!
//! Kept apart from `mod.rs` so that the write path's other half (`change_with_message`, raw
//! automerge transactions) stays as it was: this file is the whole of the hook.

use automerge::ChangeHash;
use blackboard_schemas::MAX_ENVELOPE_BYTES;

use super::write::{now_ms, LocalWrite};
use super::{Replica, Shared, State};
use crate::apply::Origin;
use crate::codec;
use crate::doc::{Edit, LocalChange};
use crate::Error;
use blackboard_schemas::Provenance;

/// What [`Replica::edit`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// The change holding the edits (`None` when they changed nothing).
    pub hash: Option<ChangeHash>,
    /// The container creations published before it (see [`crate::doc::containers`]); empty
    /// when every container was already there.
    pub created: Vec<ChangeHash>,
    /// For each [`Edit::Increment`], in order, the counter's value afterwards.
    pub counters: Vec<i64>,
}

impl Replica {
    /// Makes `edits` in one change, with `message` (why) carried in its event. Containers
    /// the edits create on their way (maps on a path, the map an object is merged into, the
    /// list of a first append, the counter of a first increment, the text of a first splice)
    /// are created by the container recipe, so agents doing so concurrently share one
    /// container and all their writes stay in view. When this returns, the creations and the
    /// change are on local disk (one atomic batch) and queued for the log in that order. If it
    /// fails, nothing is changed.
    ///
    /// With [`Config::coalesce_writes`](super::Config::coalesce_writes), edits of writers
    /// queued behind one another may share one change (see its docs): the hash is then the
    /// shared change's.
    pub async fn edit(&self, message: Option<&str>, edits: &[Edit]) -> Result<Written, Error> {
        let s = self.shared();
        if s.config.coalesce_writes {
            return super::group::edit(&self.handle.shared, message, self.provenance(), edits)
                .await;
        }
        let provenance = self.provenance();
        let (mut written, last) = {
            let mut st = s.lock();
            s.write_groups(&mut st, message, &provenance, &[edits])?
        };
        if let Some(last) = last {
            s.made_durable(last).await?;
            stage!(s.config.agent, "write: fsynced, returns");
        }
        Ok(written.pop().unwrap_or_default())
    }
}

impl Shared {
    /// The part of a write made under the replica's lock: makes the `groups` of edits in one
    /// change (one group but for coalesced writes), with its container creations, then
    /// stores or queues them (see [`store_locals`](Self::store_locals)) and announces them.
    /// Returns what each group wrote and the last outbox id given (`None` when nothing was
    /// written), for [`made_durable`](Self::made_durable). If it fails, nothing is changed.
    pub(super) fn write_groups(
        &self,
        st: &mut State,
        message: Option<&str>,
        provenance: &Option<Provenance>,
        groups: &[&[Edit]],
    ) -> Result<(Vec<Written>, Option<u64>), Error> {
        let time = now_ms();
        let watched = st.listeners.any();
        let before = st.core.heads();
        let edited = st
            .core
            .edit_groups(time, message.map(str::to_owned), watched, groups);
        let (edited, changed) = match edited {
            Ok(edited) => edited,
            Err(e) => {
                if st.core.heads() != before {
                    // Only an automerge failure after the dry run gets here: take the
                    // creations back out by reloading from disk.
                    self.reload(st)?;
                }
                return Err(e.into());
            }
        };
        // Each group's increments' counters, in order.
        let mut counters = edited.counters.into_iter();
        let mut counters_of = |group: &[Edit]| -> Vec<i64> {
            let n = group
                .iter()
                .filter(|e| matches!(e, Edit::Increment { .. }))
                .count();
            counters.by_ref().take(n).collect()
        };
        if edited.created.is_empty() && edited.change.is_none() {
            let written = groups
                .iter()
                .map(|g| Written {
                    counters: counters_of(g),
                    ..Written::default()
                })
                .collect();
            return Ok((written, None));
        }
        let envelope = |local: &LocalChange, message: Option<String>| {
            let mut env = codec::encode_event(
                &self.config.space,
                &self.config.document,
                &self.config.agent,
                local,
                time,
                message,
            );
            env.provenance = provenance.clone();
            self.config
                .stamp
                .apply(&mut env)
                .map(|()| (env.encode(), env.signature, env.provenance))
        };
        // Creations first, under `<hash>:<document>`: the same creation may be made in
        // another document of the space, and the log's duplicate window spans the space.
        // A creation's bytes depend only on its place, so anyone can publish them first
        // under that id and make the honest one a dropped duplicate: a signed creation's
        // id also carries the start of its signature, which nobody else can make (a
        // retry publishes the same signed bytes, so it is still deduplicated).
        let mut writes: Vec<LocalWrite> = Vec::new();
        for (local, _) in &edited.created {
            let (payload, signature, provenance) = match envelope(local, None) {
                Ok(p) => p,
                Err(e) => {
                    self.reload(st)?;
                    return Err(Error::Sign(e));
                }
            };
            let msg_id = match signature {
                Some(sig) => format!(
                    "{}:{}:{}",
                    local.hash,
                    self.config.document,
                    sig.get(..22).unwrap_or(&sig)
                ),
                None => format!("{}:{}", local.hash, self.config.document),
            };
            writes.push(LocalWrite {
                hash: local.hash,
                change: local.bytes.clone(),
                msg_id,
                payload,
                time_ms: time,
                message: None,
                provenance,
            });
        }
        if let Some(local) = &edited.change {
            let (payload, provenance) = match envelope(local, message.map(str::to_owned)) {
                Ok((p, _, provenance)) => (p, provenance),
                Err(e) => {
                    self.reload(st)?;
                    return Err(Error::Sign(e));
                }
            };
            if payload.len() > MAX_ENVELOPE_BYTES {
                self.reload(st)?;
                return Err(Error::TooLarge {
                    len: payload.len(),
                    max: MAX_ENVELOPE_BYTES,
                });
            }
            writes.push(LocalWrite {
                hash: local.hash,
                change: local.bytes.clone(),
                msg_id: local.hash.to_string(),
                payload,
                time_ms: time,
                message: message.map(str::to_owned),
                provenance,
            });
        }
        stage!(self.config.agent, "write: transaction and envelopes made");
        let last = self.store_locals(st, &writes)?;
        // Under `Durability::Log`, queued in memory rather than stored.
        stage!(self.config.agent, "write: stored in sled (or queued)");
        // Sent under the lock, so a watch switching to live sees each change exactly once.
        let meta = |message: Option<String>| Origin {
            seq: None,
            agent: self.config.agent.clone(),
            time_ms: time,
            message,
            signature: self.config.stamp.local_signature(),
            provenance: provenance.clone(),
        };
        let mut created = Vec::with_capacity(edited.created.len());
        for (local, patches) in edited.created {
            self.announce(st, &local.hash, &meta(None), patches);
            created.push(local.hash);
        }
        if let Some(local) = &edited.change {
            let m = meta(message.map(str::to_owned));
            self.announce(st, &local.hash, &m, edited.patches);
        }
        let hash = edited.change.map(|c| c.hash);
        let written = groups
            .iter()
            .zip(changed)
            .map(|(g, changed)| Written {
                hash: hash.filter(|_| changed),
                created: created.clone(),
                counters: counters_of(g),
            })
            .collect();
        Ok((written, Some(last)))
    }
}
