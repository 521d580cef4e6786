//! The live event stream: the space's changes, claims and presence, each watched once by a
//! background task and fanned out to every open page as server-sent events.
//!
//! Events (the SSE `event:` names; `data:` is JSON):
//! - `change`: one change to a document of the space (the SDK's `ChangeEvent`: document,
//!   seq, agent, time, message, patches with conflicts spelled out);
//! - `claims`: every claim held now (sent on connect and after each claim event);
//! - `presence`: the agents present in the space now (the same);
//! - `rejections`: the changes the space's roster rejected, oldest first (the last
//!   [`KEPT_REJECTIONS`]; sent on connect and after each rejection): those the replicas
//!   of the space's documents rejected while reading the log, so also those published
//!   before the ui started, and each one rejected since;
//! - `ready`: sent once after the first `claims` and `presence`, so the page knows it is
//!   subscribed and can read what it shows without missing a change;
//! - `resync`: this page fell behind and missed events; it reads everything again.
//!
//! Presence on one document has its own stream ([`doc_presence`]): the page follows the
//! document it shows, not the whole space.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Path as UrlPath, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use blackboard_client::{
    format_time, Board, ChangeEvent, ClaimEvent, ClaimEventKind, DocumentId, Member, PresenceEvent,
    SpaceId, WatchOptions,
};
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::api::ApiError;
use super::Site;

/// How many events a slow page may fall behind before it is told to resync.
const BACKLOG: usize = 1024;
/// The pause before a watch that failed or ended is started again.
const RESTART: Duration = Duration::from_secs(1);
/// How many rejected changes the hub remembers for pages that open later.
pub const KEPT_REJECTIONS: usize = 200;

/// One server-sent event: its name and JSON data.
#[derive(Debug, Clone)]
pub struct Note {
    /// The SSE event name.
    pub kind: &'static str,
    /// The JSON data.
    pub data: String,
}

impl Note {
    fn json(kind: &'static str, value: &impl Serialize) -> Note {
        Note {
            kind,
            data: serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()),
        }
    }
}

/// A claim held now, as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HeldClaim {
    /// The resource claimed.
    pub resource: String,
    /// Who holds it.
    pub holder: String,
    /// The fencing token of the holder's last write.
    pub token: u64,
    /// When the lease runs out unless renewed (RFC 3339).
    pub expires: String,
    /// The same, in milliseconds since the epoch.
    pub expires_ms: i64,
}

/// An agent present in the space, as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Present {
    /// The agent.
    pub agent: String,
    /// Since when (RFC 3339).
    pub since: String,
    /// Its last heartbeat (RFC 3339).
    pub last_heartbeat: String,
    /// Its status line, if any.
    pub status: Option<String>,
}

/// A change the space's roster rejected, as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    /// The document it was for.
    pub document: String,
    /// Its log position.
    pub seq: Option<u64>,
    /// The agent its envelope names (not necessarily who wrote it: that is the point).
    pub agent: String,
    /// When its writer says it was made (RFC 3339), when known (a change rejected while
    /// the replica caught up with the log is listed without it).
    pub time: Option<String>,
    /// Why the roster rejected it.
    pub reason: String,
    /// The change's hash.
    pub change: String,
}

impl Rejection {
    /// The page's view of a rejected change event; `None` for an accepted one.
    pub fn of(event: &ChangeEvent) -> Option<Rejection> {
        Some(Rejection {
            reason: event.rejected.clone()?,
            document: event.document.to_string(),
            seq: event.seq,
            agent: event.agent.to_string(),
            time: Some(format_time(event.time_ms)),
            change: event.change.to_string(),
        })
    }

    /// Where it sits in the list: by log position, then document.
    fn key(&self) -> (u64, String) {
        (self.seq.unwrap_or(0), self.document.clone())
    }
}

/// The rejected changes known, by (position, document): the live ones and those the
/// replicas rejected before, each once.
type Rejected = Arc<Mutex<BTreeMap<(u64, String), Rejection>>>;

/// Adds `found` to `kept` (keeping the last [`KEPT_REJECTIONS`]); the list, oldest first,
/// when it changed.
fn keep(kept: &Rejected, found: impl IntoIterator<Item = Rejection>) -> Option<Vec<Rejection>> {
    let mut kept = lock(kept);
    let mut changed = false;
    for r in found {
        // The first one listed stays: a live one carries the writer's time, which the
        // replica's record of the same rejection does not.
        if let std::collections::btree_map::Entry::Vacant(place) = kept.entry(r.key()) {
            place.insert(r);
            changed = true;
        }
    }
    while kept.len() > KEPT_REJECTIONS {
        kept.pop_first();
    }
    changed.then(|| kept.values().cloned().collect())
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Present {
    /// The page's view of `member`.
    pub fn of(member: &Member) -> Present {
        Present {
            agent: member.agent.to_string(),
            since: format_time(millis(member.since)),
            last_heartbeat: format_time(millis(member.last_heartbeat)),
            status: member.status.clone(),
        }
    }
}

/// The watches' state and the fan-out to the pages.
#[derive(Debug)]
pub struct Hub {
    tx: broadcast::Sender<Note>,
    claims: Arc<Mutex<BTreeMap<String, HeldClaim>>>,
    present: Arc<Mutex<BTreeMap<String, Present>>>,
    rejected: Rejected,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    /// Starts the three watches of `space`, and the reading of what its documents' replicas
    /// rejected before (each document's read waits at most `timeout` for the log). The
    /// claims and presence buckets are opened here, so a board that cannot reach them fails
    /// now rather than in the page.
    pub async fn start(board: &Board, space: &SpaceId, timeout: Duration) -> anyhow::Result<Hub> {
        let (tx, _) = broadcast::channel(BACKLOG);
        let claims = Arc::new(Mutex::new(BTreeMap::new()));
        let present = Arc::new(Mutex::new(BTreeMap::new()));
        let rejected: Rejected = Arc::new(Mutex::new(BTreeMap::new()));
        let claim_handle = board.claims(space.as_str()).await?;
        let presence_handle = board.presence(space.as_str(), None).await?;
        let tasks = vec![
            tokio::spawn(changes(
                board.clone(),
                space.clone(),
                rejected.clone(),
                tx.clone(),
            )),
            tokio::spawn(rejected_before(
                board.clone(),
                space.clone(),
                timeout,
                rejected.clone(),
                tx.clone(),
            )),
            tokio::spawn(watch_claims(claim_handle, claims.clone(), tx.clone())),
            tokio::spawn(watch_presence(presence_handle, present.clone(), tx.clone())),
        ];
        let (stop, _) = watch::channel(false);
        Ok(Hub {
            tx,
            claims,
            present,
            rejected,
            stop,
            tasks,
        })
    }

    /// Ends every open event stream and the watches.
    pub fn stop(&self) {
        self.stop.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
    }

    /// The claims held now.
    pub fn claims(&self) -> Vec<HeldClaim> {
        lock(&self.claims).values().cloned().collect()
    }

    /// The agents present in the space now.
    pub fn present(&self) -> Vec<Present> {
        lock(&self.present).values().cloned().collect()
    }

    /// The rejected changes known (the last [`KEPT_REJECTIONS`]), oldest first.
    pub fn rejections(&self) -> Vec<Rejection> {
        lock(&self.rejected).values().cloned().collect()
    }

    /// A page's stream: the current claims, presence and rejections, `ready`, then every event as it
    /// happens, until the hub stops.
    fn subscribe(&self) -> impl Stream<Item = Note> + Send + 'static {
        // Subscribed before the snapshot is taken, so nothing falls between the two.
        let rx = self.tx.subscribe();
        let stop = self.stop.subscribe();
        let first = vec![
            Note::json("claims", &self.claims()),
            Note::json("presence", &self.present()),
            Note::json("rejections", &self.rejections()),
            Note::json("ready", &serde_json::json!({})),
        ];
        let live = futures::stream::unfold((rx, stop), |(mut rx, mut stop)| async move {
            if *stop.borrow() {
                return None;
            }
            let next = tokio::select! {
                next = rx.recv() => next,
                _ = stop.wait_for(|stopped| *stopped) => return None,
            };
            let note = match next {
                Ok(note) => note,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Note::json("resync", &serde_json::json!({ "missed": missed }))
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((note, (rx, stop)))
        });
        futures::stream::iter(first).chain(live)
    }
}

/// `GET /api/events`: the live event stream.
pub async fn stream(
    State(site): State<Arc<Site>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let notes = site
        .hub
        .subscribe()
        .map(|n| Ok(Event::default().event(n.kind).data(n.data)));
    Sse::new(notes).keep_alive(KeepAlive::default())
}

/// Every change to every document of the space, from now on, and every change its roster
/// rejects (kept in `rejected` and sent as `rejections`). A watch that ends or fails is
/// started again; the pages are told to resync, since changes may have been missed.
async fn changes(board: Board, space: SpaceId, rejected: Rejected, tx: broadcast::Sender<Note>) {
    let options = WatchOptions {
        rejections: true,
        ..WatchOptions::default()
    };
    loop {
        match board
            .watch_space(space.as_str(), "/**", options.clone())
            .await
        {
            Ok(mut watch) => {
                while let Some(item) = watch.next().await {
                    match item {
                        Ok(event) => match Rejection::of(&event) {
                            Some(rejection) => {
                                if let Some(now) = keep(&rejected, [rejection]) {
                                    let _ = tx.send(Note::json("rejections", &now));
                                }
                            }
                            None => {
                                let _ = tx.send(Note::json("change", &event));
                            }
                        },
                        Err(e) => {
                            tracing::warn!(%space, error = %e, "the space watch fell behind");
                            let _ = tx.send(Note::json(
                                "resync",
                                &serde_json::json!({ "reason": e.to_string() }),
                            ));
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(%space, error = %e, "cannot watch the space"),
        }
        tokio::time::sleep(RESTART).await;
        let _ = tx.send(Note::json(
            "resync",
            &serde_json::json!({ "reason": "watch restarted" }),
        ));
    }
}

/// The changes the space's roster rejected before the ui started: each document's replica
/// reads its log (from the start, in a fresh store) and remembers what it rejected
/// ([`blackboard_client::Replica::untrusted`]). Runs beside the live watch, which reports
/// the ones after; [`keep`] lists each once.
async fn rejected_before(
    board: Board,
    space: SpaceId,
    timeout: Duration,
    rejected: Rejected,
    tx: broadcast::Sender<Note>,
) {
    let listed = match board.list_documents(space.as_str()).await {
        Ok(listed) => listed,
        Err(e) => {
            tracing::warn!(%space, error = %e, "cannot list the documents for their rejected changes");
            return;
        }
    };
    for summary in listed {
        let document = summary.document;
        let doc = match board.doc(space.as_str(), document.as_str()) {
            Ok(doc) => doc,
            Err(e) => {
                tracing::warn!(%space, %document, error = %e, "cannot open the document");
                continue;
            }
        };
        match tokio::time::timeout(timeout, doc.sync()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(%space, %document, error = %e, "cannot read the document's log")
            }
            Err(_) => {
                tracing::warn!(%space, %document, ?timeout, "the document's log was not read in time; its earlier rejected changes may be missing")
            }
        }
        let found = doc
            .replica()
            .untrusted()
            .iter()
            // Rejected while the replica read the log: the envelope's time is not kept.
            .map(|r| Rejection {
                document: document.to_string(),
                seq: Some(r.seq),
                agent: r.agent.to_string(),
                time: None,
                reason: r.reason.to_string(),
                change: r.change_hash.to_string(),
            })
            .collect::<Vec<_>>();
        if let Some(now) = keep(&rejected, found) {
            let _ = tx.send(Note::json("rejections", &now));
        }
    }
}

/// `GET /api/doc/{doc}/presence`: the agents present on one document, as an event stream:
/// `presence` (the members now, as [`Present`]) on connect and after each arrival or
/// departure, from a watch of that document's presence. Ends when the hub stops.
pub async fn doc_presence(
    State(site): State<Arc<Site>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let id: DocumentId = name
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("document {name:?}: {e}")))?;
    let presence = site
        .board
        .presence(site.space.as_str(), Some(id.as_str()))
        .await?;
    // Watched before the members are read, so nobody arriving in between is missed; the
    // watch starts by naming everyone present, which the map takes in again.
    let watch = presence
        .watch()
        .await
        .map_err(blackboard_client::Error::from)?;
    let members = presence
        .members()
        .await
        .map_err(blackboard_client::Error::from)?;
    let present: BTreeMap<String, Present> = members
        .iter()
        .map(|m| (m.agent.to_string(), Present::of(m)))
        .collect();
    let first = Note::json("presence", &present.values().collect::<Vec<_>>());
    let stop = site.hub.stop.subscribe();
    let live = futures::stream::unfold(
        (watch, present, stop),
        |(mut watch, mut present, mut stop)| async move {
            loop {
                if *stop.borrow() {
                    return None;
                }
                let next = tokio::select! {
                    next = watch.next() => next?,
                    _ = stop.wait_for(|stopped| *stopped) => return None,
                };
                match next {
                    Ok(PresenceEvent::Joined(m)) => {
                        present.insert(m.agent.to_string(), Present::of(&m));
                    }
                    Ok(PresenceEvent::Left { member, .. }) => {
                        present.remove(member.agent.as_str());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "a document's presence watch failed");
                        continue;
                    }
                }
                let note = Note::json("presence", &present.values().collect::<Vec<_>>());
                return Some((note, (watch, present, stop)));
            }
        },
    );
    let notes = futures::stream::iter([first])
        .chain(live)
        .map(|n| Ok(Event::default().event(n.kind).data(n.data)));
    Ok(Sse::new(notes).keep_alive(KeepAlive::default()))
}

async fn watch_claims(
    claims: blackboard_client::Claims,
    held: Arc<Mutex<BTreeMap<String, HeldClaim>>>,
    tx: broadcast::Sender<Note>,
) {
    loop {
        match claims.watch().await {
            Ok(mut watch) => {
                // The watch starts with the latest state of every resource.
                lock(&held).clear();
                while let Some(item) = watch.next().await {
                    match item {
                        Ok(event) => {
                            apply_claim(&held, event);
                            let now: Vec<HeldClaim> = lock(&held).values().cloned().collect();
                            let _ = tx.send(Note::json("claims", &now));
                        }
                        Err(e) => tracing::warn!(error = %e, "the claim watch failed"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch the claims"),
        }
        tokio::time::sleep(RESTART).await;
    }
}

fn apply_claim(held: &Mutex<BTreeMap<String, HeldClaim>>, event: ClaimEvent) {
    let mut held = lock(held);
    match event.kind {
        ClaimEventKind::Claimed | ClaimEventKind::Renewed => {
            let expires_ms = millis(event.expires);
            held.insert(
                event.resource.clone(),
                HeldClaim {
                    resource: event.resource,
                    holder: event.holder.to_string(),
                    token: event.token,
                    expires: format_time(expires_ms),
                    expires_ms,
                },
            );
        }
        ClaimEventKind::Released | ClaimEventKind::Expired => {
            held.remove(&event.resource);
        }
    }
}

async fn watch_presence(
    presence: blackboard_client::Presence,
    present: Arc<Mutex<BTreeMap<String, Present>>>,
    tx: broadcast::Sender<Note>,
) {
    loop {
        match presence.watch().await {
            Ok(mut watch) => {
                // The watch starts with everyone present now.
                lock(&present).clear();
                while let Some(item) = watch.next().await {
                    match item {
                        Ok(PresenceEvent::Joined(m)) => {
                            lock(&present).insert(m.agent.to_string(), Present::of(&m));
                        }
                        Ok(PresenceEvent::Left { member, .. }) => {
                            lock(&present).remove(member.agent.as_str());
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the presence watch failed");
                            continue;
                        }
                    }
                    let now: Vec<Present> = lock(&present).values().cloned().collect();
                    let _ = tx.send(Note::json("presence", &now));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch presence"),
        }
        tokio::time::sleep(RESTART).await;
    }
}
