//! The presence watch: joined from new records, left from deletions and from a timer on
//! each member's last heartbeat.

use std::collections::{BTreeSet, HashMap};

use super::{Member, PresenceError, Record};
use crate::lease::events::{self, EventStream};
use crate::lease::{VersionStream, Versioned};

/// Why a member left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeftReason {
    /// It left explicitly.
    Left,
    /// It stopped heartbeating: its last heartbeat is older than its timeout.
    TimedOut,
}

/// An agent arrived or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceEvent {
    /// The agent is present (it joined, or came back after timing out).
    Joined(Member),
    /// The agent is gone.
    Left {
        /// The member as last seen.
        member: Member,
        /// Why.
        reason: LeftReason,
    },
}

/// A stream of [`PresenceEvent`]s for one place: `Joined` for each member present when the
/// watch starts, then `Joined` and `Left` as agents come and go. A member that stops
/// heartbeating is reported `Left` with [`LeftReason::TimedOut`] when its last heartbeat plus
/// its timeout has passed. Dropping the watch stops it.
pub type PresenceWatch = EventStream<Result<PresenceEvent, PresenceError>>;

pub(crate) fn spawn(versions: VersionStream) -> PresenceWatch {
    events::spawn::<Tracker, PresenceError>(versions)
}

/// The watch's state, without I/O: the present members and their deadlines.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    present: HashMap<String, Record>,
    /// (deadline in ms, key) of each present member.
    deadlines: BTreeSet<(u64, String)>,
}

impl events::Tracker for Tracker {
    type Event = PresenceEvent;

    /// The event a new version means at `now_ms`, if any (a heartbeat means none).
    fn apply(&mut self, v: &Versioned, now_ms: u64) -> Option<PresenceEvent> {
        let before = self.present.remove(&v.key);
        if let Some(old) = &before {
            self.deadlines.remove(&(old.deadline_ms(), v.key.clone()));
        }
        let record = v.value.as_ref().and_then(|_| Record::decode(v));
        match (before, record) {
            (before, Some(r)) if r.deadline_ms() > now_ms => {
                let event = before.is_none().then(|| PresenceEvent::Joined(r.member()));
                self.deadlines.insert((r.deadline_ms(), v.key.clone()));
                self.present.insert(v.key.clone(), r);
                event
            }
            // A stale record (a member that went silent before we looked).
            (Some(old), Some(_)) => Some(PresenceEvent::Left {
                member: old.member(),
                reason: LeftReason::TimedOut,
            }),
            (Some(old), None) => Some(PresenceEvent::Left {
                member: old.member(),
                reason: LeftReason::Left,
            }),
            (None, _) => None,
        }
    }

    /// The earliest deadline still to check.
    fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|d| d.0)
    }

    /// `Left` events for every member whose deadline is at or before `now_ms`.
    fn expire(&mut self, now_ms: u64) -> Vec<PresenceEvent> {
        let mut out = Vec::new();
        while self.deadlines.first().is_some_and(|d| d.0 <= now_ms) {
            let (_, key) = self.deadlines.pop_first().expect("not empty");
            if let Some(r) = self.present.remove(&key) {
                out.push(PresenceEvent::Left {
                    member: r.member(),
                    reason: LeftReason::TimedOut,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::events::Tracker as _;

    fn beat(key: &str, heartbeat_ms: u64) -> Versioned {
        let r = Record {
            agent: "a".parse().unwrap(),
            since_ms: 0,
            heartbeat_ms,
            timeout_ms: 30,
            status: None,
        };
        Versioned {
            key: key.into(),
            revision: heartbeat_ms + 1,
            value: Some(r.encode()),
        }
    }

    #[test]
    fn heartbeats_keep_a_member_and_silence_past_its_timeout_removes_it() {
        let mut t = Tracker::default();
        assert!(matches!(
            t.apply(&beat("k", 0), 0),
            Some(PresenceEvent::Joined(_))
        ));
        assert_eq!(t.apply(&beat("k", 10), 10), None);
        assert_eq!(t.next_deadline(), Some(40));
        assert!(t.expire(39).is_empty());
        let left = t.expire(40);
        assert!(matches!(
            left.as_slice(),
            [PresenceEvent::Left {
                reason: LeftReason::TimedOut,
                ..
            }]
        ));
        // Back again after timing out.
        assert!(matches!(
            t.apply(&beat("k", 50), 50),
            Some(PresenceEvent::Joined(_))
        ));
    }

    #[test]
    fn a_deletion_is_an_explicit_leave_and_stale_records_are_not_members() {
        let mut t = Tracker::default();
        assert_eq!(t.apply(&beat("stale", 0), 100), None);
        t.apply(&beat("k", 100), 100);
        let gone = Versioned {
            key: "k".into(),
            revision: 500,
            value: None,
        };
        assert!(matches!(
            t.apply(&gone, 101),
            Some(PresenceEvent::Left {
                reason: LeftReason::Left,
                ..
            })
        ));
        assert_eq!(t.next_deadline(), None);
    }
}
