//! Presence: who is on a document or a space right now.
//!
//! An agent [`join`](Presence::join)s a place (a space, or one document of it) with an
//! optional status line and gets a [`Membership`], which heartbeats in the background. Anyone
//! can list the [`members`](Presence::members) (agent, since when, last heartbeat, status) or
//! [`watch`](Presence::watch) `Joined` and `Left` events. An agent leaves explicitly
//! ([`Membership::leave`]), or by going silent: when its last heartbeat is older than its
//! timeout (by default three heartbeat intervals) it is reported as left, so a crashed agent
//! disappears within a bounded time.
//!
//! Records live in the space's presence bucket (`BB_PRESENCE_<space>`), under
//! `space.<agent>` or `doc.<document>.<agent>`. Each record carries its own timeout, so every
//! observer applies the bound the member promised. Heartbeat times are the member's wall
//! clock, compared with the observer's: clocks must agree to well within the timeout.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use blackboard::lease::{EmbeddedLeases, LeaseBuckets};
//! use blackboard::presence::{Config, Presence};
//!
//! let dir = tempfile::tempdir()?;
//! let bucket = EmbeddedLeases::new(sled::open(dir.path())?).open("BB_PRESENCE_team").await?;
//! let on_plan = Presence::new(bucket, "alice".parse()?, Some("plan".parse()?), Config::default())?;
//! let me = on_plan.join(Some("reviewing")).await?;
//! let members = on_plan.members().await?;
//! assert_eq!(members[0].agent.as_str(), "alice");
//! assert_eq!(members[0].status.as_deref(), Some("reviewing"));
//! me.leave().await?;
//! assert!(on_plan.members().await?.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod error;
mod membership;
mod watch;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use blackboard_schemas::{AgentId, DocumentId};
use serde::{Deserialize, Serialize};

pub use error::PresenceError;
pub use membership::Membership;
pub use watch::{LeftReason, PresenceEvent, PresenceWatch};

use crate::lease::clock::{from_ms, now_ms};
use crate::lease::{LeaseStore, Versioned};

/// The longest status line.
pub const MAX_STATUS_LEN: usize = 1024;

/// How often members heartbeat, and how long silence means gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How often a member refreshes its record (default 2 s; 10 ms to 10 min).
    pub heartbeat: Duration,
    /// How long after its last heartbeat a member counts as gone (default 6 s, three
    /// heartbeats; more than `heartbeat`, at most 1 h).
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(2),
            timeout: Duration::from_secs(6),
        }
    }
}

impl Config {
    /// A config heartbeating every `heartbeat`, gone after three missed heartbeats.
    pub fn heartbeat(heartbeat: Duration) -> Self {
        Self {
            heartbeat,
            timeout: heartbeat * 3,
        }
    }

    fn validate(&self) -> Result<(), PresenceError> {
        let reason = if self.heartbeat < Duration::from_millis(10) {
            "the heartbeat interval is shorter than 10 ms"
        } else if self.heartbeat > Duration::from_secs(600) {
            "the heartbeat interval is longer than 10 minutes"
        } else if self.timeout <= self.heartbeat {
            "the timeout must be longer than the heartbeat interval"
        } else if self.timeout > Duration::from_secs(3600) {
            "the timeout is longer than an hour"
        } else {
            return Ok(());
        };
        Err(PresenceError::InvalidConfig {
            heartbeat: self.heartbeat,
            timeout: self.timeout,
            reason,
        })
    }
}

/// One agent present on a place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The agent.
    pub agent: AgentId,
    /// When it joined.
    pub since: SystemTime,
    /// Its last heartbeat.
    pub last_heartbeat: SystemTime,
    /// Its status line, if it set one.
    pub status: Option<String>,
}

/// A presence record, stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub agent: AgentId,
    pub since_ms: u64,
    pub heartbeat_ms: u64,
    pub timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl Record {
    fn decode(v: &Versioned) -> Option<Record> {
        serde_json::from_slice(v.value.as_ref()?)
            .inspect_err(|e| tracing::warn!(key = %v.key, error = %e, "ignoring a malformed presence record"))
            .ok()
    }

    fn encode(&self) -> bytes::Bytes {
        serde_json::to_vec(self)
            .expect("a record always serializes")
            .into()
    }

    /// When this member counts as gone unless it heartbeats again.
    fn deadline_ms(&self) -> u64 {
        self.heartbeat_ms.saturating_add(self.timeout_ms)
    }

    fn member(&self) -> Member {
        Member {
            agent: self.agent.clone(),
            since: from_ms(self.since_ms),
            last_heartbeat: from_ms(self.heartbeat_ms),
            status: self.status.clone(),
        }
    }
}

/// An agent's handle on the presence of one place: a space, or a document of it. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Presence {
    store: Arc<dyn LeaseStore>,
    agent: AgentId,
    prefix: String,
    config: Config,
}

impl Presence {
    /// Presence on `document` (or on the whole space for `None`) in `store`, the space's
    /// presence bucket, as `agent`.
    pub fn new(
        store: Arc<dyn LeaseStore>,
        agent: AgentId,
        document: Option<DocumentId>,
        config: Config,
    ) -> Result<Self, PresenceError> {
        config.validate()?;
        let prefix = match document {
            Some(d) => format!("doc.{d}."),
            None => "space.".to_owned(),
        };
        Ok(Self {
            store,
            agent,
            prefix,
            config,
        })
    }

    /// Joins the place with an optional status line, and heartbeats until the membership is
    /// left or dropped.
    pub async fn join(&self, status: Option<&str>) -> Result<Membership, PresenceError> {
        check_status(status)?;
        let now = now_ms();
        let record = Record {
            agent: self.agent.clone(),
            since_ms: now,
            heartbeat_ms: now,
            timeout_ms: u64::try_from(self.config.timeout.as_millis()).unwrap_or(u64::MAX),
            status: status.map(str::to_owned),
        };
        let key = format!("{}{}", self.prefix, self.agent);
        self.store.put(&key, record.encode()).await?;
        tracing::debug!(%key, "joined");
        Ok(Membership::start(
            self.store.clone(),
            key,
            record,
            self.config.heartbeat,
        ))
    }

    /// The members present now: those whose last heartbeat is within their timeout.
    pub async fn members(&self) -> Result<Vec<Member>, PresenceError> {
        let now = now_ms();
        let mut members: Vec<Member> = self
            .store
            .entries(&self.prefix)
            .await?
            .iter()
            .filter_map(Record::decode)
            .filter(|r| r.deadline_ms() > now)
            .map(|r| r.member())
            .collect();
        members.sort_by(|a, b| a.agent.cmp(&b.agent));
        Ok(members)
    }

    /// Watches the place: `Joined` for every member present now, then `Joined` and `Left` as
    /// agents come and go. See [`PresenceWatch`].
    pub async fn watch(&self) -> Result<PresenceWatch, PresenceError> {
        Ok(watch::spawn(self.store.watch(&self.prefix).await?))
    }
}

fn check_status(status: Option<&str>) -> Result<(), PresenceError> {
    match status {
        Some(s) if s.len() > MAX_STATUS_LEN => Err(PresenceError::StatusTooLong {
            len: s.len(),
            max: MAX_STATUS_LEN,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_checked() {
        Config::default().validate().unwrap();
        Config::heartbeat(Duration::from_millis(100))
            .validate()
            .unwrap();
        for bad in [
            Config::heartbeat(Duration::ZERO),
            Config {
                heartbeat: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
            },
            Config::heartbeat(Duration::from_secs(3600)),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
