//! The lease record (the value stored under a resource's key) and the pure decisions made
//! from it: whether a resource is free, held or lapsed. No I/O here.

use std::time::Duration;

use blackboard_schemas::AgentId;
use serde::{Deserialize, Serialize};

use super::ClaimError;
use crate::lease::Versioned;

/// The longest resource name.
pub const MAX_RESOURCE_LEN: usize = 256;
/// The shortest lease: shorter ones would lapse within a round trip.
pub const MIN_TTL: Duration = Duration::from_millis(10);
/// The longest lease: anything longer is a mistake, not a lease.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest release note.
pub const MAX_NOTE_LEN: usize = 4096;

/// What the last write to a resource did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Op {
    Claim,
    Renew,
    Release,
}

/// A lease record, stored as JSON: `{"op":"claim","holder":"w1","since_ms":..,"expires_ms":..,
/// "ttl_ms":..}`. For a release, `expires_ms` is the time of the release and `note` what the
/// holder left for the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub op: Op,
    pub holder: AgentId,
    pub since_ms: u64,
    pub expires_ms: u64,
    pub ttl_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Record {
    pub fn encode(&self) -> bytes::Bytes {
        serde_json::to_vec(self)
            .expect("a record always serializes")
            .into()
    }

    /// The record in a version, if it is one (a deletion or garbage is not).
    pub fn decode(v: &Versioned) -> Option<Record> {
        let bytes = v.value.as_ref()?;
        match serde_json::from_slice(bytes) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(key = %v.key, revision = v.revision, error = %e, "ignoring a malformed lease record");
                None
            }
        }
    }

    /// Whether this record is a lease that has not run out at `now_ms`.
    pub fn held_at(&self, now_ms: u64) -> bool {
        self.op != Op::Release && now_ms < self.expires_ms
    }
}

/// What a claim should do, given the resource's latest version.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing was ever written: create the key.
    Create,
    /// Free (released, expired, deleted or unreadable): update from this revision, passing on
    /// the releaser's note.
    Take { expected: u64, note: Option<String> },
    /// Someone holds it.
    Held {
        holder: AgentId,
        until_ms: u64,
        token: u64,
    },
}

pub(crate) fn next(current: Option<&Versioned>, now_ms: u64) -> Next {
    let Some(v) = current else {
        return Next::Create;
    };
    match Record::decode(v) {
        Some(r) if r.held_at(now_ms) => Next::Held {
            holder: r.holder,
            until_ms: r.expires_ms,
            token: v.revision,
        },
        Some(r) if r.op == Op::Release => Next::Take {
            expected: v.revision,
            note: r.note,
        },
        _ => Next::Take {
            expected: v.revision,
            note: None,
        },
    }
}

/// Who holds the resource according to `current`, if anyone.
pub(crate) fn holder(current: Option<&Versioned>, now_ms: u64) -> Option<AgentId> {
    let r = Record::decode(current?)?;
    r.held_at(now_ms).then_some(r.holder)
}

/// Checks a resource name: 1 to 256 of `[A-Za-z0-9_=/.-]`, not starting or ending with `.`,
/// with no empty `.`-separated part (the rules of a JetStream KV key, minus wildcards).
pub fn validate_resource(resource: &str) -> Result<(), ClaimError> {
    let bad = |reason| {
        Err(ClaimError::InvalidResource {
            resource: resource.to_owned(),
            reason,
        })
    };
    if resource.is_empty() {
        return bad("it is empty");
    }
    if resource.len() > MAX_RESOURCE_LEN {
        return bad("it is longer than 256 bytes");
    }
    if !resource
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_=/.-".contains(&b))
    {
        return bad("only ASCII letters, digits and _ = / . - are allowed");
    }
    if resource.starts_with('.') || resource.ends_with('.') || resource.contains("..") {
        return bad("it may not start or end with '.' or contain '..'");
    }
    Ok(())
}

/// Checks a lease duration: at least 10 ms, at most 24 hours.
pub fn validate_ttl(ttl: Duration) -> Result<(), ClaimError> {
    let reason = if ttl.is_zero() {
        "a lease must last longer than zero".to_owned()
    } else if ttl < MIN_TTL {
        format!("shorter than the minimum of {MIN_TTL:?}")
    } else if ttl > MAX_TTL {
        format!("longer than the maximum of {MAX_TTL:?} (24 h)")
    } else {
        return Ok(());
    };
    Err(ClaimError::InvalidTtl { ttl, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(revision: u64, r: &Record) -> Versioned {
        Versioned {
            key: "k".into(),
            revision,
            value: Some(r.encode()),
        }
    }

    fn record(op: Op, expires_ms: u64) -> Record {
        Record {
            op,
            holder: "w1".parse().unwrap(),
            since_ms: 0,
            expires_ms,
            ttl_ms: expires_ms,
            note: Some("n".into()),
        }
    }

    #[test]
    fn a_resource_never_written_is_created() {
        assert_eq!(next(None, 5), Next::Create);
    }

    #[test]
    fn a_live_lease_is_held_and_an_expired_one_is_taken_from_its_revision() {
        let v = version(7, &record(Op::Renew, 100));
        assert!(matches!(
            next(Some(&v), 99),
            Next::Held {
                token: 7,
                until_ms: 100,
                ..
            }
        ));
        assert_eq!(
            next(Some(&v), 100),
            Next::Take {
                expected: 7,
                note: None
            }
        );
        assert_eq!(holder(Some(&v), 99).unwrap().as_str(), "w1");
        assert_eq!(holder(Some(&v), 100), None);
    }

    #[test]
    fn a_released_resource_is_free_and_passes_on_the_note() {
        let v = version(9, &record(Op::Release, 1_000));
        assert_eq!(
            next(Some(&v), 1),
            Next::Take {
                expected: 9,
                note: Some("n".into())
            }
        );
    }

    #[test]
    fn a_deleted_or_garbage_value_is_free() {
        let deleted = Versioned {
            key: "k".into(),
            revision: 3,
            value: None,
        };
        let garbage = Versioned {
            value: Some("not json".into()),
            ..deleted.clone()
        };
        for v in [deleted, garbage] {
            assert_eq!(
                next(Some(&v), 1),
                Next::Take {
                    expected: 3,
                    note: None
                }
            );
        }
    }

    #[test]
    fn resource_names_are_checked_with_the_reason() {
        for ok in ["task-7", "a", "jobs/7.step_2=x", &"x".repeat(256)] {
            validate_resource(ok).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("has space", "allowed"),
            ("a*", "allowed"),
            ("a>", "allowed"),
            (".a", "'.'"),
            ("a.", "'.'"),
            ("a..b", "'..'"),
            ("ü", "allowed"),
            (&"x".repeat(257), "longer"),
        ] {
            let err = validate_resource(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn ttls_are_bounded() {
        validate_ttl(Duration::from_secs(1)).unwrap();
        validate_ttl(MAX_TTL).unwrap();
        for (bad, why) in [
            (Duration::ZERO, "zero"),
            (Duration::from_millis(1), "minimum"),
            (MAX_TTL + Duration::from_secs(1), "24 h"),
            (Duration::from_secs(u64::MAX), "24 h"),
        ] {
            let err = validate_ttl(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
