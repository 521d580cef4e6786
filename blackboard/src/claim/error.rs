//! Errors from claims.

use std::time::{Duration, SystemTime};

use blackboard_schemas::AgentId;

use crate::lease::clock::Utc;
use crate::lease::StoreError;

/// Errors from [`Claims`](super::Claims). The outcomes callers branch on come first:
/// [`Held`](Self::Held) (someone else has it) and [`Lapsed`](Self::Lapsed) (you no longer have
/// it).
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The resource is held by another lease that has not expired.
    #[error("{resource} is held by {holder} until {} (token {token})", Utc(*.until))]
    Held {
        /// The resource.
        resource: String,
        /// Who holds it.
        holder: AgentId,
        /// When that lease runs out unless it is renewed.
        until: SystemTime,
        /// That lease's fencing token.
        token: u64,
    },
    /// The caller's lease ran out, or the resource moved on (it was claimed after the lease
    /// expired): renewing or releasing it is refused. Whatever the caller did since the lease
    /// lapsed was not protected by it.
    #[error("the lease on {resource} (token {token}) has lapsed; {}", now_held_by(.holder))]
    Lapsed {
        /// The resource.
        resource: String,
        /// The lapsed lease's fencing token.
        token: u64,
        /// Who holds the resource now, if anyone does.
        holder: Option<AgentId>,
    },
    /// A resource name was empty, too long or had characters a key cannot have.
    #[error("invalid resource name {resource:?}: {reason}")]
    InvalidResource {
        /// The name given.
        resource: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A lease duration was zero, too short or absurdly long.
    #[error("invalid lease ttl {ttl:?}: {reason}")]
    InvalidTtl {
        /// The duration given.
        ttl: Duration,
        /// What is wrong with it.
        reason: String,
    },
    /// A release note was longer than a lease record may carry.
    #[error("release note of {len} bytes exceeds the limit of {max} bytes")]
    NoteTooLong {
        /// The note's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The resource changed hands so many times during one claim that it gave up.
    #[error("gave up claiming {resource}: it changed {attempts} times while claiming")]
    Contended {
        /// The resource.
        resource: String,
        /// How many compare-and-set attempts were lost.
        attempts: usize,
    },
    /// The lease store failed (unreachable, storage error).
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn now_held_by(holder: &Option<AgentId>) -> String {
    match holder {
        Some(h) => format!("it is held by {h} now"),
        None => "nobody holds it now".to_owned(),
    }
}
