//! A space's roster: who may write as which agent, where, and who may change that.
//!
//! Roster events travel on the subject `bb.<space>.roster`, in the space's stream, so they
//! share one total order with the changes. An event is JSON:
//!
//! ```text
//! {"v":1,"space":"team","time_ms":1700000000000,"roster":"<the body, as JSON text>",
//!  "signer":"U...","signature":"<base64>"}
//! ```
//!
//! The body is carried as a string and signed as its exact UTF-8 bytes, so no two encoders
//! need to agree on JSON bytes. The signing input is
//! `Framer::new("blackboard-roster-v1") field(space) field(time_ms, 8 bytes big-endian)
//! field(signer) field(body)` (see [`blackboard_schemas::signature`]). The body:
//!
//! ```text
//! {"admins":["U..."],
//!  "agents":{"alice":{"keys":["U..."],"write":["/tasks/**","/notes/{agent}/**"]},
//!            "auditor":{"keys":["U..."],"write":[]}}}
//! ```
//!
//! An agent may also have `"snapshots": true`: snapshots signed by its keys are loaded like
//! an admin's (see `history::Snapshot` and ARCHITECTURE.md, "Trust").
//!
//! [`RosterFold`] folds a space's roster events in stream order: the first valid one (the
//! genesis) must be signed by one of its own admins (and by a pinned key, when the replica
//! pins admin keys); each later one must be signed by an admin of the roster in force, and
//! replaces it wholesale. An invalid event is ignored, with the reason as an error.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use blackboard_schemas::signature::{
    sign_detached, user_public_key, verify_detached, Framer, SignatureError,
};
use blackboard_schemas::{AgentId, SpaceId, MAX_ENVELOPE_BYTES};
use nkeys::KeyPair;
use serde::{Deserialize, Serialize};

use super::grants::{Grant, GrantError};

/// The domain-separation tag of a roster event's signing input.
pub const ROSTER_TAG: &[u8] = b"blackboard-roster-v1";

/// The roster event format version.
pub const ROSTER_VERSION: u32 = 1;

/// Why a roster event was ignored (or could not be made).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosterError {
    /// Larger than the envelope limit.
    #[error("roster event is {0} bytes, more than the limit of {MAX_ENVELOPE_BYTES}")]
    TooLarge(usize),
    /// Not a roster event's JSON.
    #[error("roster event is not valid: {0}")]
    Json(String),
    /// A version this code does not know.
    #[error("roster event has version {0}, this replica reads version {ROSTER_VERSION}")]
    Version(u32),
    /// The event names another space than the stream it is in.
    #[error("roster event is for space {found:?}, but arrived in space {expected}")]
    WrongSpace {
        /// The space the event names.
        found: String,
        /// The space it arrived in.
        expected: SpaceId,
    },
    /// The signature is missing or does not verify.
    #[error("roster event's signature: {0}")]
    Signature(SignatureError),
    /// The body is not a roster's JSON.
    #[error("roster body is not valid: {0}")]
    Body(String),
    /// The body lists no admin, so nobody could ever change it.
    #[error("roster lists no admins")]
    NoAdmins,
    /// A listed key is not an nkey user public key.
    #[error("roster lists {key:?} for {whom}, which is not an nkey user public key: {reason}")]
    BadKey {
        /// `admins` or the agent.
        whom: String,
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// An agent name is not a valid agent id.
    #[error("roster names agent {0:?}, which is not a valid agent id")]
    BadAgent(String),
    /// A grant pattern is malformed.
    #[error("roster gives agent {agent} a bad grant: {error}")]
    BadGrant {
        /// The agent.
        agent: String,
        /// What is wrong with the pattern.
        error: GrantError,
    },
    /// A genesis roster not signed by one of its own admins.
    #[error("the first roster is signed by {0}, which is not one of its own admins")]
    GenesisNotSelfSigned(String),
    /// A genesis roster not signed by a pinned admin key.
    #[error("the first roster is signed by {0}, which is not a pinned admin key")]
    NotPinned(String),
    /// A roster update not signed by an admin of the roster in force.
    #[error("roster update is signed by {0}, which is not an admin of the roster in force")]
    NotAdmin(String),
}

/// A roster event as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEvent {
    /// Format version ([`ROSTER_VERSION`]).
    pub v: u32,
    /// The space it governs.
    pub space: String,
    /// When it was signed, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The roster body, as JSON text, signed as these exact bytes.
    pub roster: String,
    /// The signer's public key (`U…`).
    pub signer: Option<String>,
    /// The signature, standard base64 of 64 bytes.
    pub signature: Option<String>,
}

/// The signing input of a roster event.
pub fn roster_signing_input(space: &str, time_ms: i64, signer: &str, body: &str) -> Vec<u8> {
    Framer::new(ROSTER_TAG)
        .field(space)
        .field(time_ms.to_be_bytes())
        .field(signer)
        .field(body)
        .finish()
}

impl RosterEvent {
    /// A roster event for `space` carrying `body`, signed by `key` (an admin's).
    pub fn sign(
        space: &SpaceId,
        time_ms: i64,
        body: String,
        key: &KeyPair,
    ) -> Result<Self, RosterError> {
        let signer = key.public_key();
        user_public_key(&signer).map_err(RosterError::Signature)?;
        let input = roster_signing_input(space.as_str(), time_ms, &signer, &body);
        let signature = sign_detached(key, &input).map_err(RosterError::Signature)?;
        Ok(Self {
            v: ROSTER_VERSION,
            space: space.to_string(),
            time_ms,
            roster: body,
            signer: Some(signer),
            signature: Some(signature),
        })
    }

    /// The event's bytes on the log.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings and integers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an event from the log. Checks its size, shape and version only. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, RosterError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(RosterError::TooLarge(bytes.len()));
        }
        let event: Self =
            serde_json::from_slice(bytes).map_err(|e| RosterError::Json(e.to_string()))?;
        if event.v != ROSTER_VERSION {
            return Err(RosterError::Version(event.v));
        }
        Ok(event)
    }

    /// Checks the signature, returning the signer.
    pub fn verify(&self) -> Result<&str, RosterError> {
        match (&self.signer, &self.signature) {
            (None, None) => Err(RosterError::Signature(SignatureError::Unsigned)),
            (Some(signer), Some(signature)) => {
                let input = roster_signing_input(&self.space, self.time_ms, signer, &self.roster);
                verify_detached(signer, &input, signature).map_err(RosterError::Signature)?;
                Ok(signer)
            }
            _ => Err(RosterError::Signature(SignatureError::Incomplete)),
        }
    }
}

/// The body's JSON, as written.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawBody {
    admins: Vec<String>,
    #[serde(default)]
    agents: BTreeMap<String, RawAgent>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    keys: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
    #[serde(default)]
    snapshots: bool,
}

/// What the roster says about one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentEntry {
    /// The public keys that may sign as this agent.
    pub keys: BTreeSet<String>,
    /// Where it may write; empty for a read-only agent.
    pub write: Vec<Grant>,
    /// Whether its keys may sign snapshots other replicas load (`"snapshots": true`; admins
    /// always may). A snapshot holds changes no replica judged one by one.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub snapshots: bool,
}

/// A validated roster body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Roster {
    /// The keys that may change the roster.
    pub admins: BTreeSet<String>,
    /// The agents, by id.
    pub agents: BTreeMap<AgentId, AgentEntry>,
}

fn check_key(whom: &str, key: &str) -> Result<(), RosterError> {
    user_public_key(key)
        .map(|_| ())
        .map_err(|e| RosterError::BadKey {
            whom: whom.to_owned(),
            key: key.to_owned(),
            reason: e.to_string(),
        })
}

impl Roster {
    /// Parses and checks a roster body.
    ///
    /// ```
    /// use blackboard::trust::Roster;
    /// let admin = nkeys::KeyPair::new_user().public_key();
    /// let body = format!(r#"{{"admins":["{admin}"],"agents":{{"alice":{{"keys":["{admin}"],"write":["/tasks/**"]}}}}}}"#);
    /// let roster = Roster::parse(&body).unwrap();
    /// assert!(roster.may_write(&"alice".parse().unwrap()));
    /// assert!(Roster::parse(r#"{"admins":[]}"#).is_err());
    /// ```
    pub fn parse(body: &str) -> Result<Self, RosterError> {
        let raw: RawBody =
            serde_json::from_str(body).map_err(|e| RosterError::Body(e.to_string()))?;
        if raw.admins.is_empty() {
            return Err(RosterError::NoAdmins);
        }
        for key in &raw.admins {
            check_key("admins", key)?;
        }
        let mut agents = BTreeMap::new();
        for (name, entry) in raw.agents {
            let id: AgentId = name
                .parse()
                .map_err(|_| RosterError::BadAgent(name.clone()))?;
            for key in &entry.keys {
                check_key(&name, key)?;
            }
            let write = entry
                .write
                .iter()
                .map(|g| {
                    g.parse::<Grant>().map_err(|error| RosterError::BadGrant {
                        agent: name.clone(),
                        error,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            agents.insert(
                id,
                AgentEntry {
                    keys: entry.keys.into_iter().collect(),
                    write,
                    snapshots: entry.snapshots,
                },
            );
        }
        Ok(Self {
            admins: raw.admins.into_iter().collect(),
            agents,
        })
    }

    /// Whether `agent` is listed with at least one write grant.
    pub fn may_write(&self, agent: &AgentId) -> bool {
        self.agents.get(agent).is_some_and(|e| !e.write.is_empty())
    }

    /// Whether a snapshot signed by `key` may be loaded: an admin's, or a key of an agent
    /// listed with `"snapshots": true`.
    pub fn may_snapshot(&self, key: &str) -> bool {
        self.admins.contains(key)
            || self
                .agents
                .values()
                .any(|e| e.snapshots && e.keys.contains(key))
    }

    /// Whether `key` is one of the keys listed for `agent`.
    pub fn is_key_of(&self, agent: &AgentId, key: &str) -> bool {
        self.agents.get(agent).is_some_and(|e| e.keys.contains(key))
    }
}

/// A space's roster events folded in stream order.
#[derive(Debug, Clone)]
pub struct RosterFold {
    space: SpaceId,
    pinned: Option<BTreeSet<String>>,
    current: Option<Arc<Roster>>,
    since: u64,
}

impl RosterFold {
    /// An open space (no roster yet). With `pinned` keys, only a genesis signed by one of
    /// them is adopted.
    pub fn new(space: SpaceId, pinned: Option<Vec<String>>) -> Self {
        Self {
            space,
            pinned: pinned.map(|p| p.into_iter().collect()),
            current: None,
            since: 0,
        }
    }

    /// The roster in force, or `None` while the space is open.
    pub fn current(&self) -> Option<&Arc<Roster>> {
        self.current.as_ref()
    }

    /// The position of the roster event in force (0 while the space is open).
    pub fn since(&self) -> u64 {
        self.since
    }

    /// Folds in the roster event at `position`: adopts it and returns the new roster, or
    /// returns why it was ignored (the roster in force then stays).
    pub fn apply(&mut self, position: u64, bytes: &[u8]) -> Result<Arc<Roster>, RosterError> {
        let event = RosterEvent::decode(bytes)?;
        if event.space != self.space.as_str() {
            return Err(RosterError::WrongSpace {
                found: event.space,
                expected: self.space.clone(),
            });
        }
        let signer = event.verify()?.to_owned();
        let roster = Roster::parse(&event.roster)?;
        match &self.current {
            None => {
                if !roster.admins.contains(&signer) {
                    return Err(RosterError::GenesisNotSelfSigned(signer));
                }
                if self.pinned.as_ref().is_some_and(|p| !p.contains(&signer)) {
                    return Err(RosterError::NotPinned(signer));
                }
            }
            Some(current) => {
                if !current.admins.contains(&signer) {
                    return Err(RosterError::NotAdmin(signer));
                }
            }
        }
        let roster = Arc::new(roster);
        self.current = Some(roster.clone());
        self.since = position;
        Ok(roster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn body(admin: &KeyPair, agents: &[(&str, &KeyPair, &[&str])]) -> String {
        let agents: serde_json::Map<String, serde_json::Value> = agents
            .iter()
            .map(|(name, key, write)| {
                (
                    name.to_string(),
                    serde_json::json!({"keys": [key.public_key()], "write": write}),
                )
            })
            .collect();
        serde_json::json!({"admins": [admin.public_key()], "agents": agents}).to_string()
    }

    fn space() -> SpaceId {
        "team".parse().unwrap()
    }

    #[test]
    fn a_signed_event_round_trips_and_verifies_and_a_changed_one_does_not() {
        let admin = KeyPair::new_user();
        let ev = RosterEvent::sign(&space(), 7, body(&admin, &[]), &admin).unwrap();
        let back = RosterEvent::decode(&ev.encode()).unwrap();
        assert_eq!(back, ev);
        assert_eq!(back.verify().unwrap(), admin.public_key());
        let mut bent = back.clone();
        bent.time_ms = 8;
        assert!(matches!(
            bent.verify(),
            Err(RosterError::Signature(SignatureError::DoesNotVerify(_)))
        ));
        let mut cut = back.clone();
        let sig = cut.signature.take().unwrap();
        cut.signature = Some(sig[..sig.len() - 8].to_owned());
        assert!(matches!(
            cut.verify(),
            Err(RosterError::Signature(SignatureError::BadEncoding(_)))
        ));
        cut.signature = None;
        assert!(matches!(
            cut.verify(),
            Err(RosterError::Signature(SignatureError::Incomplete))
        ));
    }

    #[test]
    fn decoding_never_panics_and_names_what_is_wrong() {
        assert!(matches!(
            RosterEvent::decode(b"not json"),
            Err(RosterError::Json(_))
        ));
        assert!(matches!(
            RosterEvent::decode(
                br#"{"v":2,"space":"s","time_ms":1,"roster":"{}","signer":null,"signature":null}"#
            ),
            Err(RosterError::Version(2))
        ));
        let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
        assert!(matches!(
            RosterEvent::decode(&big),
            Err(RosterError::TooLarge(_))
        ));
        for n in 0..64 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 % 251) as u8).collect();
            let _ = RosterEvent::decode(&bytes);
        }
    }

    #[test]
    fn bodies_are_checked_for_admins_keys_agents_and_grants() {
        let k = KeyPair::new_user().public_key();
        assert!(matches!(
            Roster::parse(r#"{"admins":[]}"#),
            Err(RosterError::NoAdmins)
        ));
        assert!(matches!(
            Roster::parse(r#"{"admins":["nope"]}"#),
            Err(RosterError::BadKey { .. })
        ));
        assert!(matches!(
            Roster::parse(&format!(
                r#"{{"admins":["{k}"],"agents":{{"bad name":{{"keys":[]}}}}}}"#
            )),
            Err(RosterError::BadAgent(_))
        ));
        assert!(matches!(
            Roster::parse(&format!(
                r#"{{"admins":["{k}"],"agents":{{"a":{{"keys":["{k}"],"write":["tasks"]}}}}}}"#
            )),
            Err(RosterError::BadGrant { .. })
        ));
        assert!(matches!(
            Roster::parse(&format!(r#"{{"admins":["{k}"],"agent":{{}}}}"#)),
            Err(RosterError::Body(_))
        ));
        let seed = KeyPair::new_user().seed().unwrap();
        assert!(
            matches!(
                Roster::parse(&format!(r#"{{"admins":["{seed}"]}}"#)),
                Err(RosterError::BadKey { .. })
            ),
            "a seed is not a public key"
        );
    }

    #[test]
    fn the_genesis_must_be_signed_by_one_of_its_own_admins_and_a_pinned_key() {
        let admin = KeyPair::new_user();
        let other = KeyPair::new_user();
        let mut fold = RosterFold::new(space(), None);
        let by_other = RosterEvent::sign(&space(), 1, body(&admin, &[]), &other).unwrap();
        assert_eq!(
            fold.apply(1, &by_other.encode()).unwrap_err(),
            RosterError::GenesisNotSelfSigned(other.public_key())
        );
        assert!(
            fold.current().is_none(),
            "an ignored genesis leaves the space open"
        );

        let mut pinned = RosterFold::new(space(), Some(vec![other.public_key()]));
        let self_signed = RosterEvent::sign(&space(), 1, body(&admin, &[]), &admin).unwrap();
        assert_eq!(
            pinned.apply(1, &self_signed.encode()).unwrap_err(),
            RosterError::NotPinned(admin.public_key())
        );
        let good = RosterEvent::sign(&space(), 1, body(&other, &[]), &other).unwrap();
        pinned.apply(2, &good.encode()).unwrap();
        assert_eq!(pinned.since(), 2);
    }

    #[test]
    fn later_rosters_must_be_signed_by_an_admin_in_force_and_replace_it_wholesale() {
        let admin = KeyPair::new_user();
        let alice = KeyPair::new_user();
        let mallory = KeyPair::new_user();
        let mut fold = RosterFold::new(space(), None);
        let genesis = body(&admin, &[("alice", &alice, &["/**"])]);
        fold.apply(
            1,
            &RosterEvent::sign(&space(), 1, genesis, &admin)
                .unwrap()
                .encode(),
        )
        .unwrap();
        // A non-admin (even a listed agent) may not change it, even naming itself admin.
        let coup = body(&mallory, &[("mallory", &mallory, &["/**"])]);
        let ev = RosterEvent::sign(&space(), 2, coup, &mallory).unwrap();
        assert_eq!(
            fold.apply(2, &ev.encode()).unwrap_err(),
            RosterError::NotAdmin(mallory.public_key())
        );
        let ev = RosterEvent::sign(&space(), 2, body(&admin, &[]), &alice).unwrap();
        assert!(matches!(
            fold.apply(3, &ev.encode()),
            Err(RosterError::NotAdmin(_))
        ));
        assert!(fold.current().unwrap().may_write(&"alice".parse().unwrap()));
        // The admin's update replaces everything: alice is gone.
        let ev = RosterEvent::sign(&space(), 3, body(&admin, &[]), &admin).unwrap();
        fold.apply(4, &ev.encode()).unwrap();
        assert!(!fold.current().unwrap().may_write(&"alice".parse().unwrap()));
        assert_eq!(fold.since(), 4);
    }

    #[test]
    fn an_event_for_another_space_is_ignored_even_when_validly_signed() {
        let admin = KeyPair::new_user();
        let ev =
            RosterEvent::sign(&"elsewhere".parse().unwrap(), 1, body(&admin, &[]), &admin).unwrap();
        let mut fold = RosterFold::new(space(), None);
        assert!(matches!(
            fold.apply(1, &ev.encode()),
            Err(RosterError::WrongSpace { .. })
        ));
        // Rewriting the space breaks the signature.
        let mut moved = ev;
        moved.space = "team".into();
        assert!(matches!(
            fold.apply(1, &moved.encode()),
            Err(RosterError::Signature(_))
        ));
    }

    #[test]
    fn read_only_agents_and_keys_are_told_apart() {
        let admin = KeyPair::new_user();
        let a = KeyPair::new_user();
        let r = Roster::parse(&body(
            &admin,
            &[("auditor", &a, &[]), ("w", &admin, &["/x"])],
        ))
        .unwrap();
        let auditor: AgentId = "auditor".parse().unwrap();
        assert!(!r.may_write(&auditor));
        assert!(r.is_key_of(&auditor, &a.public_key()));
        assert!(!r.is_key_of(&auditor, &admin.public_key()));
        assert!(!r.may_write(&"nobody".parse().unwrap()));
    }
}
