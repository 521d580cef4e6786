//! Claims: leases on named resources, so that exactly one agent works on something at a time,
//! without a manager.
//!
//! [`Claims::claim`] takes a resource (`"task-7"`) for a duration. It returns a [`Claim`]
//! (holder, fencing token, expiry) or [`ClaimError::Held`] naming who has it and until when.
//! The holder [`renew`](Claims::renew)s before the lease runs out and
//! [`release`](Claims::release)s when done. A holder that crashes simply stops renewing: once
//! its lease expires, another agent can claim the resource. A holder whose lease has lapsed
//! learns it on its next renew or release, which fail with [`ClaimError::Lapsed`].
//!
//! Atomicity comes from the [`LeaseStore`]'s compare-and-set (JetStream KV or sled), never from
//! a local lock: a claim reads the resource's latest version and writes its lease only if that
//! version is still the latest, so of two racers exactly one wins. The **fencing token** is the
//! revision of the lease's write; it grows on every claim, renew and release, so successive
//! holders have strictly increasing tokens. Pass it along with the work (to a store that
//! rejects smaller tokens) to fence off a paused holder that has not noticed its lease lapsed.
//!
//! **Clocks.** Expiry is wall-clock time written by the holder (`now + ttl`) and compared by
//! other agents against their own clocks, so clocks must agree to well within a lease's
//! duration (NTP is ample for leases of seconds). A holder's own renew and release check its
//! local expiry first, so a holder never believes it holds a lease longer than it does.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::{sync::Arc, time::Duration};
//! use blackboard::claim::{ClaimError, Claims};
//! use blackboard::lease::{EmbeddedLeases, LeaseBuckets};
//!
//! let dir = tempfile::tempdir()?;
//! let leases = EmbeddedLeases::new(sled::open(dir.path())?);
//! let bucket = leases.open("BB_CLAIMS_team").await?;
//! let alice = Claims::new(bucket.clone(), "alice".parse()?);
//! let bob = Claims::new(bucket, "bob".parse()?);
//!
//! let claim = alice.claim("task-7", Duration::from_secs(30)).await?;
//! match bob.claim("task-7", Duration::from_secs(30)).await {
//!     Err(ClaimError::Held { holder, .. }) => assert_eq!(holder.as_str(), "alice"),
//!     other => panic!("{other:?}"),
//! }
//! let claim = alice.renew(&claim).await?;     // a new expiry and a larger token
//! alice.release(claim).await?;
//! let bobs = bob.claim("task-7", Duration::from_secs(30)).await?;
//! assert_eq!(bobs.holder.as_str(), "bob");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod error;
mod record;
mod watch;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use blackboard_schemas::AgentId;

pub use error::ClaimError;
pub use record::{
    validate_resource, validate_ttl, MAX_NOTE_LEN, MAX_RESOURCE_LEN, MAX_TTL, MIN_TTL,
};
pub use watch::{ClaimEvent, ClaimEventKind, ClaimWatch};

use crate::lease::clock::{from_ms, now_ms};
use crate::lease::{LeaseStore, StoreError};
use record::{Next, Op, Record};

/// How many lost compare-and-sets one claim tolerates before giving up. Each loss means
/// someone else wrote the resource, so the next read almost always finds it held.
const MAX_ATTEMPTS: usize = 16;

/// A lease this agent holds on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The resource.
    pub resource: String,
    /// The holder (this agent).
    pub holder: AgentId,
    /// The fencing token: the revision of the lease's last write. It grows with every claim,
    /// renew and release of the resource.
    pub token: u64,
    /// When the holder first claimed it (kept across renewals).
    pub since: SystemTime,
    /// When the lease runs out unless renewed.
    pub expires: SystemTime,
    /// The lease's duration; a renew extends the lease by this much from the renew's time.
    pub ttl: Duration,
    /// The note the previous holder left when it released the resource (see
    /// [`Claims::release_with_note`]); `None` if it left none, or its lease expired.
    pub note: Option<String>,
}

/// An agent's handle on the claims of one space (one lease bucket). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Claims {
    store: Arc<dyn LeaseStore>,
    agent: AgentId,
}

impl Claims {
    /// Claims in `store`, made as `agent`.
    pub fn new(store: Arc<dyn LeaseStore>, agent: AgentId) -> Self {
        Self { store, agent }
    }

    /// The agent these claims are made as.
    pub fn agent(&self) -> &AgentId {
        &self.agent
    }

    /// Claims `resource` for `ttl` (10 ms to 24 h). Fails with [`ClaimError::Held`] while
    /// another lease on it (this agent's included) has not expired.
    pub async fn claim(&self, resource: &str, ttl: Duration) -> Result<Claim, ClaimError> {
        validate_resource(resource)?;
        validate_ttl(ttl)?;
        for _ in 0..MAX_ATTEMPTS {
            let current = self.store.get(resource).await?;
            let now = now_ms();
            let (expected, note) = match record::next(current.as_ref(), now) {
                Next::Held {
                    holder,
                    until_ms,
                    token,
                } => {
                    return Err(ClaimError::Held {
                        resource: resource.to_owned(),
                        holder,
                        until: from_ms(until_ms),
                        token,
                    })
                }
                Next::Create => (None, None),
                Next::Take { expected, note } => (Some(expected), note),
            };
            let rec = self.record(Op::Claim, now, now + millis(ttl), ttl, None);
            let written = match expected {
                None => self.store.create(resource, rec.encode()).await,
                Some(rev) => self.store.update(resource, rec.encode(), rev).await,
            };
            match written {
                Ok(token) => {
                    tracing::debug!(resource, token, agent = %self.agent, "claimed");
                    return Ok(self.claim_of(resource, token, &rec, note));
                }
                // Someone else wrote it first: look again.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ClaimError::Contended {
            resource: resource.to_owned(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Extends the lease by its ttl from now, returning the claim with its new expiry and
    /// token. Fails with [`ClaimError::Lapsed`] if the lease has expired or the resource has
    /// moved on; renew well before the expiry (say at a third of the ttl).
    pub async fn renew(&self, claim: &Claim) -> Result<Claim, ClaimError> {
        let now = now_ms();
        self.check_live(claim, now).await?;
        let rec = Record {
            since_ms: crate::lease::clock::to_ms(claim.since),
            ..self.record(Op::Renew, now, now + millis(claim.ttl), claim.ttl, None)
        };
        let token = self.write_over(claim, &rec).await?;
        tracing::debug!(resource = %claim.resource, token, "renewed");
        Ok(self.claim_of(&claim.resource, token, &rec, None))
    }

    /// Releases the lease, so the resource is free at once. Fails with
    /// [`ClaimError::Lapsed`] if the lease had already lapsed.
    pub async fn release(&self, claim: Claim) -> Result<(), ClaimError> {
        self.release_inner(claim, None).await
    }

    /// Releases the lease, leaving `note` (up to 4 KiB) for the next holder: it arrives as
    /// [`Claim::note`] of the next claim and in the released [`ClaimEvent`]. A worker can
    /// hand over where it got to, or which document heads hold its result.
    pub async fn release_with_note(&self, claim: Claim, note: &str) -> Result<(), ClaimError> {
        if note.len() > MAX_NOTE_LEN {
            return Err(ClaimError::NoteTooLong {
                len: note.len(),
                max: MAX_NOTE_LEN,
            });
        }
        self.release_inner(claim, Some(note.to_owned())).await
    }

    async fn release_inner(&self, claim: Claim, note: Option<String>) -> Result<(), ClaimError> {
        let now = now_ms();
        self.check_live(&claim, now).await?;
        let since = crate::lease::clock::to_ms(claim.since);
        let rec = Record {
            since_ms: since,
            ..self.record(Op::Release, now, now, claim.ttl, note)
        };
        let token = self.write_over(&claim, &rec).await?;
        tracing::debug!(resource = %claim.resource, token, "released");
        Ok(())
    }

    /// The lease currently held on `resource`, if any (a released or expired one is none).
    pub async fn current(&self, resource: &str) -> Result<Option<Claim>, ClaimError> {
        validate_resource(resource)?;
        let Some(v) = self.store.get(resource).await? else {
            return Ok(None);
        };
        Ok(Record::decode(&v)
            .filter(|r| r.held_at(now_ms()))
            .map(|r| self.claim_of(resource, v.revision, &r, None)))
    }

    /// Watches every claim of the space: the latest state of each resource, then every
    /// claim, renewal, release and expiry as it happens. See [`ClaimWatch`].
    pub async fn watch(&self) -> Result<ClaimWatch, ClaimError> {
        Ok(watch::spawn(self.store.watch("").await?))
    }

    fn record(
        &self,
        op: Op,
        now: u64,
        expires: u64,
        ttl: Duration,
        note: Option<String>,
    ) -> Record {
        Record {
            op,
            holder: self.agent.clone(),
            since_ms: now,
            expires_ms: expires,
            ttl_ms: millis(ttl),
            note,
        }
    }

    fn claim_of(&self, resource: &str, token: u64, rec: &Record, note: Option<String>) -> Claim {
        Claim {
            resource: resource.to_owned(),
            holder: rec.holder.clone(),
            token,
            since: from_ms(rec.since_ms),
            expires: from_ms(rec.expires_ms),
            ttl: Duration::from_millis(rec.ttl_ms),
            note,
        }
    }

    /// Refuses to act on a lease whose expiry has passed on this agent's clock.
    async fn check_live(&self, claim: &Claim, now: u64) -> Result<(), ClaimError> {
        validate_resource(&claim.resource)?;
        if now >= crate::lease::clock::to_ms(claim.expires) {
            return Err(self.lapsed(claim).await);
        }
        Ok(())
    }

    /// Writes `rec` over the claim's own version; a lost compare-and-set means the lease
    /// lapsed.
    async fn write_over(&self, claim: &Claim, rec: &Record) -> Result<u64, ClaimError> {
        match self
            .store
            .update(&claim.resource, rec.encode(), claim.token)
            .await
        {
            Ok(token) => Ok(token),
            Err(StoreError::Conflict { .. }) => Err(self.lapsed(claim).await),
            Err(e) => Err(e.into()),
        }
    }

    /// The lapsed error for `claim`, naming the current holder when it can be read.
    async fn lapsed(&self, claim: &Claim) -> ClaimError {
        let current = self.store.get(&claim.resource).await.ok().flatten();
        let holder = record::holder(current.as_ref(), now_ms());
        tracing::info!(resource = %claim.resource, token = claim.token, ?holder, "lease lapsed");
        ClaimError::Lapsed {
            resource: claim.resource.clone(),
            token: claim.token,
            holder,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
