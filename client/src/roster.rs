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
