//! The live event stream: the space's changes, claims and presence, each watched once by a
//! background task and fanned out to every open page as server-sent events.
//!
//! Events (the SSE `event:` names; `data:` is JSON):
//! - `change`: one change to a document of the space (the SDK's `ChangeEvent`: document,
//!   seq, agent, time, message, patches with conflicts spelled out);
//! - `claims`: every claim held now (sent on connect and after each claim event);
//! - `presence`: the agents present in the space now (the same);
//! - `rejections`: the changes the space's roster rejected since the ui started, newest
//!   last (the last [`KEPT_REJECTIONS`]; sent on connect and after each rejection);
//! - `ready`: sent once after the first `claims` and `presence`, so the page knows it is
//!   subscribed and can read what it shows without missing a change;
//! - `resync`: this page fell behind and missed events; it reads everything again.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use blackboard_client::{
    format_time, Board, ChangeEvent, ClaimEvent, ClaimEventKind, Member, PresenceEvent, SpaceId,
    WatchOptions,
};
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

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
    /// When its writer says it was made (RFC 3339).
    pub time: String,
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
            time: format_time(event.time_ms),
            change: event.change.to_string(),
        })
    }
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
    rejected: Arc<Mutex<VecDeque<Rejection>>>,
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
    /// Starts the three watches of `space`. The claims and presence buckets are opened here,
    /// so a board that cannot reach them fails now rather than in the page.
    pub async fn start(board: &Board, space: &SpaceId) -> anyhow::Result<Hub> {
        let (tx, _) = broadcast::channel(BACKLOG);
        let claims = Arc::new(Mutex::new(BTreeMap::new()));
        let present = Arc::new(Mutex::new(BTreeMap::new()));
        let rejected = Arc::new(Mutex::new(VecDeque::new()));
        let claim_handle = board.claims(space.as_str()).await?;
        let presence_handle = board.presence(space.as_str(), None).await?;
        let tasks = vec![
            tokio::spawn(changes(
                board.clone(),
                space.clone(),
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

    /// The rejected changes seen since the hub started (the last [`KEPT_REJECTIONS`]),
    /// oldest first.
    pub fn rejections(&self) -> Vec<Rejection> {
        lock(&self.rejected).iter().cloned().collect()
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
async fn changes(
    board: Board,
    space: SpaceId,
    rejected: Arc<Mutex<VecDeque<Rejection>>>,
    tx: broadcast::Sender<Note>,
) {
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
                                let now: Vec<Rejection> = {
                                    let mut kept = lock(&rejected);
                                    if kept.len() >= KEPT_REJECTIONS {
                                        kept.pop_front();
                                    }
                                    kept.push_back(rejection);
                                    kept.iter().cloned().collect()
                                };
                                let _ = tx.send(Note::json("rejections", &now));
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
