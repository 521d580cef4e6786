//! Errors from presence.

use std::time::Duration;

use crate::lease::StoreError;

/// Errors from [`Presence`](super::Presence) and [`Membership`](super::Membership).
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    /// The heartbeat interval or timeout is out of bounds.
    #[error("invalid presence config (heartbeat {heartbeat:?}, timeout {timeout:?}): {reason}")]
    InvalidConfig {
        /// The heartbeat interval given.
        heartbeat: Duration,
        /// The timeout given.
        timeout: Duration,
        /// What is wrong.
        reason: &'static str,
    },
    /// A status line was too long.
    #[error("status line of {len} bytes exceeds the limit of {max} bytes")]
    StatusTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The lease store failed (unreachable, storage error).
    #[error(transparent)]
    Store(#[from] StoreError),
}
