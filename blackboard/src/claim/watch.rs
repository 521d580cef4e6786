//! The claim watch: claimed, renewed and released events from the lease store's watch, and
//! expired events derived from a timer per live lease.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use blackboard_schemas::AgentId;

use super::record::{Op, Record};
use super::ClaimError;
use crate::lease::clock::from_ms;
use crate::lease::events::{self, EventStream};
use crate::lease::{VersionStream, Versioned};

/// What happened to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClaimEventKind {
    /// An agent claimed the resource.
    Claimed,
    /// The holder extended its lease.
    Renewed,
    /// The holder released the resource; it is free.
    Released,
    /// The lease ran out without being renewed or released; the resource is free.
    Expired,
}

/// One change to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimEvent {
    /// The resource.
    pub resource: String,
    /// What happened.
    pub kind: ClaimEventKind,
    /// The agent that holds (or held) the lease.
    pub holder: AgentId,
    /// The fencing token of the write reported (for `Expired`, of the lease that expired).
    pub token: u64,
    /// The lease's expiry (for `Released`, the time of the release).
    pub expires: SystemTime,
    /// For `Released`, the note the holder left, if any.
    pub note: Option<String>,
}

/// A stream of [`ClaimEvent`]s over every resource of a space: first the latest state of
/// each resource (a live lease as `Claimed` or `Renewed`, a released one as `Released`, and
/// an expired one as its last write followed by `Expired`), then each change as it happens.
/// `Expired` is reported by this watch's timer when a lease's expiry passes with no newer
/// write, so an idle agent learns that work is free without polling. Dropping the watch stops
/// it.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use blackboard::claim::{ClaimEventKind, Claims};
/// use blackboard::lease::{EmbeddedLeases, LeaseBuckets};
/// use futures::StreamExt;
///
/// let dir = tempfile::tempdir()?;
/// let bucket = EmbeddedLeases::new(sled::open(dir.path())?).open("BB_CLAIMS_team").await?;
/// let claims = Claims::new(bucket, "alice".parse()?);
/// let mut events = claims.watch().await?;
/// claims.claim("task-1", Duration::from_millis(50)).await?;
/// assert_eq!(events.next().await.unwrap()?.kind, ClaimEventKind::Claimed);
/// assert_eq!(events.next().await.unwrap()?.kind, ClaimEventKind::Expired); // 50 ms later
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub type ClaimWatch = EventStream<Result<ClaimEvent, ClaimError>>;

pub(crate) fn spawn(versions: VersionStream) -> ClaimWatch {
    events::spawn::<Tracker, ClaimError>(versions)
}

/// The watch's state, without I/O: the live lease of each resource and when each expires.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// The latest held lease per resource (its event), until it is replaced or expires.
    live: HashMap<String, ClaimEvent>,
    /// (expiry in ms, resource, token) of each live lease.
    deadlines: BTreeSet<(u64, String, u64)>,
}

impl events::Tracker for Tracker {
    type Event = ClaimEvent;

    /// The event for a new version, if it is a lease record.
    fn apply(&mut self, v: &Versioned, _now_ms: u64) -> Option<ClaimEvent> {
        if let Some(old) = self.live.remove(&v.key) {
            self.deadlines.remove(&(
                crate::lease::clock::to_ms(old.expires),
                old.resource,
                old.token,
            ));
        }
        let r = Record::decode(v)?;
        let kind = match r.op {
            Op::Claim => ClaimEventKind::Claimed,
            Op::Renew => ClaimEventKind::Renewed,
            Op::Release => ClaimEventKind::Released,
        };
        let event = ClaimEvent {
            resource: v.key.clone(),
            kind,
            holder: r.holder,
            token: v.revision,
            expires: from_ms(r.expires_ms),
            note: r.note,
        };
        if r.op != Op::Release {
            self.deadlines
                .insert((r.expires_ms, v.key.clone(), v.revision));
            self.live.insert(v.key.clone(), event.clone());
        }
        Some(event)
    }

    /// The earliest expiry still to report.
    fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|d| d.0)
    }

    /// `Expired` events for every lease whose expiry is at or before `now_ms`.
    fn expire(&mut self, now_ms: u64) -> Vec<ClaimEvent> {
        let mut out = Vec::new();
        while let Some(first) = self.deadlines.first() {
            if first.0 > now_ms {
                break;
            }
            let (_, resource, _) = self.deadlines.pop_first().expect("not empty");
            if let Some(mut event) = self.live.remove(&resource) {
                event.kind = ClaimEventKind::Expired;
                event.note = None;
                out.push(event);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::events::Tracker as _;

    fn version(key: &str, revision: u64, op: Op, expires_ms: u64) -> Versioned {
        let r = Record {
            op,
            holder: "w1".parse().unwrap(),
            since_ms: 0,
            expires_ms,
            ttl_ms: 10,
            note: None,
        };
        Versioned {
            key: key.into(),
            revision,
            value: Some(r.encode()),
        }
    }

    #[test]
    fn a_lease_not_renewed_expires_at_its_expiry_and_only_once() {
        let mut t = Tracker::default();
        assert_eq!(
            t.apply(&version("a", 1, Op::Claim, 100), 0).unwrap().kind,
            ClaimEventKind::Claimed
        );
        assert_eq!(t.next_deadline(), Some(100));
        assert!(t.expire(99).is_empty());
        let expired = t.expire(100);
        assert_eq!(expired.len(), 1);
        assert_eq!(
            (expired[0].kind, expired[0].token),
            (ClaimEventKind::Expired, 1)
        );
        assert!(t.expire(1_000).is_empty());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn a_renewal_or_release_cancels_the_pending_expiry() {
        let mut t = Tracker::default();
        t.apply(&version("a", 1, Op::Claim, 100), 0);
        assert_eq!(
            t.apply(&version("a", 2, Op::Renew, 200), 0).unwrap().kind,
            ClaimEventKind::Renewed
        );
        assert!(t.expire(150).is_empty());
        assert_eq!(
            t.apply(&version("a", 3, Op::Release, 160), 0).unwrap().kind,
            ClaimEventKind::Released
        );
        assert!(t.expire(10_000).is_empty());
    }
}
