//! A space's roster from the SDK: publishing one signed with the board's key, and reading
//! the one in force (issue 15; the rules are in [`blackboard::trust`]).

use std::time::{SystemTime, UNIX_EPOCH};

use blackboard::log::Entry;
use blackboard::schemas::SpaceId;
use blackboard::trust::{Roster, RosterError, RosterEvent, RosterFold};

use crate::{Board, Error};

/// The roster in force in a space, as every replica that has read the whole log folds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterInForce {
    /// The roster.
    pub roster: Roster,
    /// The log position of the roster event that put it in force.
    pub position: u64,
    /// The roster events every replica ignored, with their positions and why (a non-admin's
    /// update, a bad signature, ...), oldest first.
    pub ignored: Vec<IgnoredRoster>,
}

/// A roster event on the log that every replica ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredRoster {
    /// Its log position.
    pub position: u64,
    /// Why it is ignored.
    pub reason: RosterError,
}

/// A roster body to publish: a validated [`Roster`], or its JSON text (the format of
/// [`blackboard::trust::roster`]), published as these exact bytes.
#[derive(Debug, Clone, Copy)]
pub enum RosterBody<'a> {
    /// A roster, serialized to the body's JSON.
    Roster(&'a Roster),
    /// A body's JSON text, checked before it is signed.
    Json(&'a str),
}

impl<'a> From<&'a Roster> for RosterBody<'a> {
    fn from(roster: &'a Roster) -> Self {
        RosterBody::Roster(roster)
    }
}

impl<'a> From<&'a str> for RosterBody<'a> {
    fn from(json: &'a str) -> Self {
        RosterBody::Json(json)
    }
}

impl<'a> From<&'a String> for RosterBody<'a> {
    fn from(json: &'a String) -> Self {
        RosterBody::Json(json)
    }
}

/// Folds a space's roster events in log order, as a replica does.
fn fold(
    space: &SpaceId,
    pinned: Option<Vec<String>>,
    events: &[Entry],
) -> (RosterFold, Vec<IgnoredRoster>) {
    let mut fold = RosterFold::new(space.clone(), pinned);
    let mut ignored = Vec::new();
    for e in events {
        if let Err(reason) = fold.apply(e.seq, &e.payload) {
            ignored.push(IgnoredRoster {
                position: e.seq,
                reason,
            });
        }
    }
    (fold, ignored)
}

impl Board {
    /// The roster events of `space` on the log now, folded.
    async fn fold_roster(
        &self,
        space: &SpaceId,
    ) -> Result<(RosterFold, Vec<IgnoredRoster>, u64), Error> {
        let events = self
            .log()
            .roster_events(space, u64::MAX)
            .await
            .map_err(blackboard::Error::from)?;
        let last = events.last().map_or(0, |e| e.seq);
        let (fold, ignored) = fold(space, self.pinned_admins(), &events);
        Ok((fold, ignored, last))
    }

    /// The roster in force in `space`: every roster event on the log now, folded in log
    /// order with this board's [`pinned_admins`](crate::Options::pinned_admins), as each
    /// replica folds them. `None`: the space is open (no valid roster), and any signed or
    /// unsigned change applies.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use blackboard_client::{schemas::nkeys::KeyPair, Options};
    /// # let dir = tempfile::tempdir()?;
    /// let admin = KeyPair::new_user();
    /// let public = admin.public_key();
    /// let board = Options::new("admin")?.key(admin)?.store(dir.path()).embedded().await?;
    /// assert!(board.roster("team").await?.is_none());
    /// let body = format!(r#"{{"admins":["{public}"],"agents":{{"alice":{{"keys":["{public}"],"write":["/tasks/**"]}}}}}}"#);
    /// board.publish_roster("team", &body).await?;
    /// let in_force = board.roster("team").await?.unwrap();
    /// assert!(in_force.roster.admins.contains(&public));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn roster(&self, space: &str) -> Result<Option<RosterInForce>, Error> {
        let space: SpaceId = space.parse()?;
        let (fold, ignored, _) = self.fold_roster(&space).await?;
        Ok(fold.current().map(|roster| RosterInForce {
            roster: (**roster).clone(),
            position: fold.since(),
            ignored,
        }))
    }

    /// Publishes `body` as the roster of `space`, signed with this board's key (which must
    /// be an admin's: of the roster in force, or, for a space's first roster, one of the
    /// body's own admins and a pinned key if the board pins any), and returns its log
    /// position once the log has it. It replaces the roster in force wholesale.
    ///
    /// Checked before anything is published, since every replica would ignore it: a body
    /// that is not a valid roster ([`Error::Roster`]), a board without a key
    /// ([`Error::RosterNeedsKey`]), a signer that is not an admin ([`Error::RosterRefused`]).
    /// The check reads the log now: an update another admin publishes at the same moment
    /// can still come first.
    pub async fn publish_roster<'a>(
        &self,
        space: &str,
        body: impl Into<RosterBody<'a>>,
    ) -> Result<u64, Error> {
        let space: SpaceId = space.parse()?;
        let body = match body.into() {
            RosterBody::Roster(r) => serde_json::to_string(r).map_err(|e| {
                Error::Roster(RosterError::Body(format!("cannot serialize it: {e}")))
            })?,
            RosterBody::Json(text) => text.to_owned(),
        };
        Roster::parse(&body)?;
        let key = self.key().ok_or(Error::RosterNeedsKey)?;
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let event = RosterEvent::sign(&space, time_ms, body, key)?;
        let bytes = event.encode();
        // The fold every replica makes, one event further: what they would make of it.
        let (mut fold, _, last) = self.fold_roster(&space).await?;
        fold.apply(last.saturating_add(1), &bytes)
            .map_err(|source| Error::RosterRefused {
                space: space.clone(),
                source,
            })?;
        // The signature is unique to this event, so a retried publish is deduplicated.
        let msg_id = format!("roster-{}", event.signature.as_deref().unwrap_or_default());
        let published = self
            .log()
            .publish_roster(&space, &msg_id, bytes.into())
            .await
            .map_err(blackboard::Error::from)?;
        Ok(published.seq)
    }
}

#[cfg(test)]
mod tests {
    use blackboard::schemas::nkeys::KeyPair;

    use crate::{Error, Options};

    fn body(admin: &str, alice: &str) -> String {
        serde_json::json!({
            "admins": [admin],
            "agents": {"alice": {"keys": [alice], "write": ["/tasks/**"]}},
        })
        .to_string()
    }

    #[tokio::test]
    async fn a_non_admins_roster_is_refused_before_publishing_and_the_admins_is_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, alice) = (KeyPair::new_user(), KeyPair::new_user().public_key());
        let (a, b) = (admin.public_key(), alice);
        let board = Options::new("admin")
            .unwrap()
            .key(admin)
            .unwrap()
            .store(dir.path())
            .embedded()
            .await
            .unwrap();
        let position = board.publish_roster("team", &body(&a, &b)).await.unwrap();
        let by_alice = board.as_agent("alice").unwrap();
        let in_force = by_alice.roster("team").await.unwrap().unwrap();
        assert_eq!(in_force.position, position);
        assert!(in_force.roster.may_write(&"alice".parse().unwrap()));

        // Signed by a key that is not an admin (the board's key signs for every agent of it,
        // so sign with a stranger through a board of its own over the same log).
        let stranger = crate::Board::with_log(
            "mallory".parse().unwrap(),
            board.log().clone(),
            sled::Config::new().temporary(true).open().unwrap(),
        )
        .with_settings(crate::board::Settings {
            stamp: blackboard::codec::Stamp {
                key: Some(std::sync::Arc::new(KeyPair::new_user())),
                provenance: None,
            },
            ..Default::default()
        });
        let err = stranger
            .publish_roster("team", &body(&b, &b))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::RosterRefused { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("not an admin of the roster in force"),
            "{err}"
        );
        let space = "team".parse().unwrap();
        let events = board.log().roster_events(&space, u64::MAX).await.unwrap();
        assert_eq!(events.len(), 1, "nothing was published");

        // No key at all: refused, naming the key.
        let keyless = crate::Board::with_log(
            "x".parse().unwrap(),
            board.log().clone(),
            sled::Config::new().temporary(true).open().unwrap(),
        );
        let err = keyless
            .publish_roster("team", &body(&a, &b))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::RosterNeedsKey), "{err}");
    }

    #[tokio::test]
    async fn pinned_admins_reach_every_replica_and_a_genesis_by_another_key_leaves_the_space_open()
    {
        let dir = tempfile::tempdir().unwrap();
        let (admin, pinned) = (KeyPair::new_user(), KeyPair::new_user());
        let a = admin.public_key();
        let board = Options::new("admin")
            .unwrap()
            .key(admin)
            .unwrap()
            .pinned_admins(vec![pinned.public_key()])
            .unwrap()
            .store(dir.path())
            .embedded()
            .await
            .unwrap();
        // Publishing checks the pin too: refused, nothing published.
        let err = board
            .publish_roster("team", &body(&a, &a))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a pinned admin key"), "{err}");
        // Published anyway (by a board that does not pin), the pinning board's replicas
        // and its roster() ignore it.
        let unpinned = crate::Board::with_log(
            "alice".parse().unwrap(),
            board.log().clone(),
            sled::Config::new().temporary(true).open().unwrap(),
        )
        .with_settings(crate::board::Settings {
            stamp: board.inner_stamp(),
            ..Default::default()
        });
        unpinned
            .publish_roster("team", &body(&a, &a))
            .await
            .unwrap();
        assert!(unpinned.roster("team").await.unwrap().is_some());
        assert!(board.roster("team").await.unwrap().is_none());
        let doc = board.doc("team", "plan").unwrap();
        assert_eq!(
            doc.replica().config().pinned_admins,
            Some(vec![pinned.public_key()])
        );
        // A change alice (listed, within her grants) writes after the roster event: once the
        // pinning replica holds it, it has read past the roster event and ignored it.
        let other = unpinned.doc("team", "plan").unwrap();
        let hash = other.put("/tasks/after", 1.into()).await.unwrap().unwrap();
        other.flush().await.unwrap();
        assert!(other.replica().roster().is_some());
        doc.wait_for(&[hash]).await.unwrap();
        assert!(doc.replica().roster().is_none());
        assert_eq!(doc.replica().stats().roster_events_ignored, 1);
    }
}
