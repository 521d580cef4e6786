//! The verdict on one change: accepted (with its signature status) or rejected (with why).
//!
//! [`judge`] is a pure function of the roster in force at the change's stream position, the
//! envelope, the change's dependencies, the set of changes already rejected, and the paths the
//! change touches (resolved against the document holding its dependencies). Each of those is
//! the same on every replica that has read the stream up to the change, so every replica
//! reaches the same verdict (ARCHITECTURE.md, "Trust").

use std::collections::HashSet;

use automerge::ChangeHash;
use blackboard_schemas::{AgentId, Envelope};

use super::roster::Roster;
use crate::codec::Signature;
use crate::doc::touched::{Touch, TouchError, TouchKind, TouchedPath};

/// Why a change was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// The space has a roster and the envelope carries no signature.
    #[error("unsigned")]
    Unsigned,
    /// The signature does not check out (why, as [`Signature::Invalid`] says).
    #[error("{0}")]
    BadSignature(String),
    /// The signer is not a key the roster lists for the envelope's agent (an unknown or
    /// revoked key, or another agent's).
    #[error("key {key} is not a key of agent {agent}")]
    NotAgentsKey {
        /// The signer.
        key: String,
        /// The agent the envelope names.
        agent: AgentId,
    },
    /// The agent is not in the roster, or has no write grants.
    #[error("agent {0} may not write")]
    MayNotWrite(AgentId),
    /// The change touches a path outside the agent's grants.
    #[error("writes {path} outside {agent}'s grants [{}]", grants.join(", "))]
    OutsideGrants {
        /// The first such path.
        path: String,
        /// The agent.
        agent: AgentId,
        /// Its grants.
        grants: Vec<String>,
    },
    /// The change depends on a rejected change.
    #[error("depends on rejected change {0}")]
    DependsOnRejected(String),
    /// With a roster in force, a dependency the document does not hold when the change's
    /// turn comes: it is not before the change in the stream.
    #[error("depends on change {0}, which is not before it in the log")]
    NotBefore(String),
    /// Which paths the change touches could not be told.
    #[error("{0}")]
    Untellable(TouchError),
}

/// The verdict on one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Apply it.
    Accepted(Signature),
    /// Do not apply it.
    Rejected(Reason),
}

/// Judges a change. `roster` is the roster in force after every roster event before the
/// change's position (`None`: an open space, where every change is accepted); `signature`
/// its envelope's signature status, as the decoder found it (so it is checked once); `deps` its
/// dependencies; `rejected` the changes rejected so far; `touched` tells the paths it touches
/// (asked only when the rest allows the change, since it reads the document).
pub fn judge(
    roster: Option<&Roster>,
    envelope: &Envelope,
    signature: &Signature,
    deps: &[ChangeHash],
    rejected: &HashSet<ChangeHash>,
    touched: impl FnOnce() -> Result<Vec<Touch>, TouchError>,
) -> Verdict {
    let status = signature.clone();
    let dependency = || {
        deps.iter()
            .find(|d| rejected.contains(d))
            .map(|d| Reason::DependsOnRejected(d.to_string()))
    };
    let Some(roster) = roster else {
        return match dependency() {
            Some(reason) => Verdict::Rejected(reason),
            None => Verdict::Accepted(status),
        };
    };
    let agent = &envelope.agent;
    let signer = match &status {
        Signature::Unsigned => return Verdict::Rejected(Reason::Unsigned),
        Signature::Invalid { reason, .. } => {
            return Verdict::Rejected(Reason::BadSignature(reason.clone()))
        }
        Signature::Verified(k) => k,
    };
    if !roster.is_key_of(agent, signer) {
        return Verdict::Rejected(Reason::NotAgentsKey {
            key: signer.clone(),
            agent: agent.clone(),
        });
    }
    if !roster.may_write(agent) {
        return Verdict::Rejected(Reason::MayNotWrite(agent.clone()));
    }
    if let Some(reason) = dependency() {
        return Verdict::Rejected(reason);
    }
    let touched = match touched() {
        Ok(t) => t,
        Err(e) => return Verdict::Rejected(Reason::Untellable(e)),
    };
    if let Some(outside) = outside_grants(roster, agent, &touched) {
        let grants = roster
            .agents
            .get(agent)
            .map(|e| e.write.iter().map(|g| g.to_string()).collect())
            .unwrap_or_default();
        return Verdict::Rejected(Reason::OutsideGrants {
            path: outside.to_string(),
            agent: agent.clone(),
            grants,
        });
    }
    Verdict::Accepted(status)
}

/// The first touched path `agent`'s grants do not allow.
pub fn outside_grants<'a>(
    roster: &Roster,
    agent: &AgentId,
    touched: &'a [Touch],
) -> Option<&'a TouchedPath> {
    let grants = roster.agents.get(agent).map(|e| e.write.as_slice());
    let grants = grants.unwrap_or_default();
    let id = agent.as_str();
    touched
        .iter()
        .find(|t| {
            let inside = grants.iter().any(|g| g.matches(id, &t.path));
            let on_the_way =
                t.kind == TouchKind::MadeEmpty && grants.iter().any(|g| g.is_below(id, &t.path));
            !inside && !on_the_way
        })
        .map(|t| &t.path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::touched::Segment;
    use blackboard_schemas::{DocumentId, SpaceId, WIRE_VERSION};
    use nkeys::KeyPair;

    struct World {
        admin: KeyPair,
        alice: KeyPair,
        bob: KeyPair,
        auditor: KeyPair,
        roster: Roster,
    }

    fn world() -> World {
        let admin = KeyPair::new_user();
        let alice = KeyPair::new_user();
        let bob = KeyPair::new_user();
        let auditor = KeyPair::new_user();
        let body = serde_json::json!({
            "admins": [admin.public_key()],
            "agents": {
                "alice": {"keys": [alice.public_key()], "write": ["/tasks/**", "/notes/{agent}/**"]},
                "bob": {"keys": [bob.public_key()], "write": ["/notes/{agent}/**"]},
                "auditor": {"keys": [auditor.public_key()], "write": []},
            }
        });
        let roster = Roster::parse(&body.to_string()).unwrap();
        World {
            admin,
            alice,
            bob,
            auditor,
            roster,
        }
    }

    fn envelope(agent: &str, key: Option<&KeyPair>) -> Envelope {
        let mut env = Envelope {
            v: WIRE_VERSION,
            space: SpaceId::new("team").unwrap(),
            document: DocumentId::new("plan").unwrap(),
            agent: AgentId::new(agent).unwrap(),
            change_hash: "ab".repeat(32),
            time_ms: 1,
            message: None,
            provenance: None,
            signer: None,
            signature: None,
            change: vec![1],
        };
        if let Some(key) = key {
            env.sign(key).unwrap();
        }
        env
    }

    fn path(s: &str) -> TouchedPath {
        TouchedPath(
            s.split('/')
                .skip(1)
                .map(|x| match x {
                    "*" => Segment::Element,
                    k => Segment::Key(k.to_owned()),
                })
                .collect(),
        )
    }

    fn wrote(s: &str) -> Touch {
        Touch {
            path: path(s),
            kind: TouchKind::Written,
        }
    }

    fn made(s: &str) -> Touch {
        Touch {
            path: path(s),
            kind: TouchKind::MadeEmpty,
        }
    }

    fn run(w: &World, env: &Envelope, touches: Vec<Touch>) -> Verdict {
        judge(
            Some(&w.roster),
            env,
            &Signature::of(env),
            &[],
            &HashSet::new(),
            || Ok(touches),
        )
    }

    fn reason(v: Verdict) -> String {
        match v {
            Verdict::Rejected(r) => r.to_string(),
            Verdict::Accepted(s) => panic!("accepted ({s})"),
        }
    }

    #[test]
    fn an_honest_change_inside_its_grants_is_accepted_as_verified() {
        let w = world();
        let env = envelope("alice", Some(&w.alice));
        let v = run(
            &w,
            &env,
            vec![wrote("/tasks/*/title"), wrote("/notes/alice/x")],
        );
        assert_eq!(
            v,
            Verdict::Accepted(Signature::Verified(w.alice.public_key()))
        );
    }

    #[test]
    fn an_unsigned_change_is_rejected_as_unsigned() {
        let w = world();
        let v = run(&w, &envelope("alice", None), vec![wrote("/tasks")]);
        assert_eq!(reason(v), "unsigned");
    }

    #[test]
    fn a_signature_that_does_not_verify_is_rejected_with_the_signature_error() {
        let w = world();
        let mut env = envelope("alice", Some(&w.alice));
        env.message = Some("changed after signing".into());
        assert_eq!(
            run(&w, &env, vec![]),
            Verdict::Rejected(Reason::BadSignature(
                blackboard_schemas::SignatureError::DoesNotVerify(w.alice.public_key()).to_string()
            ))
        );
        let mut cut = envelope("alice", Some(&w.alice));
        let sig = cut.signature.clone().unwrap();
        cut.signature = Some(sig[..40].to_owned());
        assert!(reason(run(&w, &cut, vec![])).contains("base64 of 64 bytes"));
    }

    #[test]
    fn a_change_signed_by_another_agents_key_or_an_unknown_key_is_rejected_naming_both() {
        let w = world();
        let env = envelope("alice", Some(&w.bob));
        assert_eq!(
            reason(run(&w, &env, vec![wrote("/tasks")])),
            format!("key {} is not a key of agent alice", w.bob.public_key())
        );
        let stranger = KeyPair::new_user();
        let env = envelope("alice", Some(&stranger));
        assert!(reason(run(&w, &env, vec![])).contains(&stranger.public_key()));
        // The admin key is not an agent key either.
        let env = envelope("alice", Some(&w.admin));
        assert!(reason(run(&w, &env, vec![])).contains("is not a key of agent alice"));
    }

    #[test]
    fn a_read_only_agent_and_an_unlisted_agent_may_not_write() {
        let w = world();
        let env = envelope("auditor", Some(&w.auditor));
        assert_eq!(
            reason(run(&w, &env, vec![wrote("/tasks")])),
            "agent auditor may not write"
        );
        // An unlisted agent has no key either, so its key is refused first.
        let k = KeyPair::new_user();
        let env = envelope("carol", Some(&k));
        assert!(reason(run(&w, &env, vec![])).contains("is not a key of agent carol"));
    }

    #[test]
    fn a_write_outside_the_grants_is_rejected_naming_the_path_and_the_grants() {
        let w = world();
        let env = envelope("bob", Some(&w.bob));
        assert_eq!(
            reason(run(
                &w,
                &env,
                vec![wrote("/notes/bob/a"), wrote("/notes/alice/a")]
            )),
            "writes /notes/alice/a outside bob's grants [/notes/{agent}/**]"
        );
        let env = envelope("alice", Some(&w.alice));
        assert!(reason(run(&w, &env, vec![wrote("/notes")])).starts_with("writes /notes "));
    }

    #[test]
    fn recipe_containers_on_the_way_to_a_grant_are_allowed_but_not_elsewhere() {
        let w = world();
        let env = envelope("bob", Some(&w.bob));
        let v = run(&w, &env, vec![made("/notes"), made("/notes/bob")]);
        assert!(matches!(v, Verdict::Accepted(_)), "{v:?}");
        // An empty container elsewhere, or a non-recipe one on the way, is a write.
        assert!(reason(run(&w, &env, vec![made("/tasks")])).starts_with("writes /tasks "));
        assert!(reason(run(&w, &env, vec![wrote("/notes")])).starts_with("writes /notes "));
        assert!(reason(run(&w, &env, vec![made("/notes/alice")])).starts_with("writes"));
    }

    #[test]
    fn a_change_depending_on_a_rejected_change_is_rejected_naming_it() {
        let w = world();
        let env = envelope("alice", Some(&w.alice));
        let bad = ChangeHash([7; 32]);
        let rejected: HashSet<_> = [bad].into();
        let v = judge(
            Some(&w.roster),
            &env,
            &Signature::of(&env),
            &[bad],
            &rejected,
            || Ok(vec![]),
        );
        assert_eq!(reason(v), format!("depends on rejected change {bad}"));
        // In an open space too: the dependency will never be applied.
        let v = judge(None, &env, &Signature::of(&env), &[bad], &rejected, || {
            Ok(vec![])
        });
        assert!(matches!(v, Verdict::Rejected(Reason::DependsOnRejected(_))));
    }

    #[test]
    fn untellable_paths_are_a_rejection_naming_the_object() {
        let w = world();
        let env = envelope("alice", Some(&w.alice));
        let v = judge(
            Some(&w.roster),
            &env,
            &Signature::of(&env),
            &[],
            &HashSet::new(),
            || {
                Err(TouchError::UnknownObject {
                    change: "c".into(),
                    object: "1@ab".into(),
                })
            },
        );
        assert!(reason(v).contains("1@ab"));
    }

    #[test]
    fn an_open_space_accepts_everything_and_still_reports_the_signature_status() {
        let w = world();
        let judge_open = |env: &Envelope| {
            judge(
                None,
                env,
                &Signature::of(env),
                &[],
                &HashSet::new(),
                || -> Result<_, _> { panic!("an open space never reads paths") },
            )
        };
        assert_eq!(
            judge_open(&envelope("x", None)),
            Verdict::Accepted(Signature::Unsigned)
        );
        assert_eq!(
            judge_open(&envelope("alice", Some(&w.alice))),
            Verdict::Accepted(Signature::Verified(w.alice.public_key()))
        );
        let mut bent = envelope("alice", Some(&w.alice));
        bent.agent = AgentId::new("bob").unwrap();
        let v = judge_open(&bent);
        assert!(
            matches!(v, Verdict::Accepted(Signature::Invalid { .. })),
            "{v:?}"
        );
        let Verdict::Accepted(status) = v else {
            unreachable!()
        };
        assert!(status.to_string().starts_with("invalid: "));
    }

    #[test]
    fn a_signed_envelope_moved_to_another_document_or_space_or_agent_no_longer_verifies() {
        let w = world();
        let honest = envelope("alice", Some(&w.alice));
        let mut moved = honest.clone();
        moved.document = DocumentId::new("other").unwrap();
        assert!(reason(run(&w, &moved, vec![])).contains("does not verify"));
        let mut moved = honest.clone();
        moved.space = SpaceId::new("elsewhere").unwrap();
        assert!(reason(run(&w, &moved, vec![])).contains("does not verify"));
        let mut renamed = honest;
        renamed.agent = AgentId::new("bob").unwrap();
        assert!(reason(run(&w, &renamed, vec![])).contains("does not verify"));
    }

    #[test]
    fn a_revoked_key_is_rejected_once_the_new_roster_is_in_force() {
        let w = world();
        let new_key = KeyPair::new_user();
        let body = serde_json::json!({
            "admins": [w.admin.public_key()],
            "agents": {"alice": {"keys": [new_key.public_key()], "write": ["/**"]}}
        });
        let after = Roster::parse(&body.to_string()).unwrap();
        let env = envelope("alice", Some(&w.alice));
        assert!(matches!(run(&w, &env, vec![]), Verdict::Accepted(_)));
        let v = judge(
            Some(&after),
            &env,
            &Signature::of(&env),
            &[],
            &HashSet::new(),
            || Ok(vec![]),
        );
        assert!(reason(v).contains("is not a key of agent alice"));
    }
}
