//! The JSON API the page reads. Every read of a document first waits until its replica has
//! every event the log holds (bounded by the site's timeout), so the page shows the log, not
//! a replica that is still catching up.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use blackboard_client::{touched_paths, At, Doc, DocumentId, Patch, Record};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::events::Present;
use super::Site;

/// The most events one timeline page holds.
const MAX_PAGE: usize = 500;

/// Why an API request failed; the page shows the message.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request named something malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The request named something that is not there.
    #[error("{0}")]
    NotFound(String),
    /// The log did not deliver in time.
    #[error("{0}")]
    Timeout(String),
    /// The board failed.
    #[error(transparent)]
    Board(#[from] blackboard_client::Error),
    /// Reading the document failed.
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Board(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

type Answer<T> = Result<Json<T>, ApiError>;

impl Site {
    /// The document `name`, caught up with the log.
    async fn doc(&self, name: &str) -> Result<Doc, ApiError> {
        let id: DocumentId = name
            .parse()
            .map_err(|e| ApiError::BadRequest(format!("document {name:?}: {e}")))?;
        let doc = self.board.doc(self.space.as_str(), id.as_str())?;
        match tokio::time::timeout(self.timeout, doc.sync()).await {
            Ok(done) => {
                done?;
            }
            Err(_) => {
                return Err(ApiError::Timeout(format!(
                    "the log did not deliver {}/{name} within {:?}",
                    self.space, self.timeout
                )))
            }
        }
        Ok(doc)
    }
}

/// A document of the space in the list.
#[derive(Debug, Serialize)]
pub struct Listed {
    /// Its id.
    pub document: String,
    /// How many events the log holds for it.
    pub events: u64,
    /// Its last change this server has applied, if any.
    pub last: Option<Record>,
}

/// `GET /api/documents`: the space's documents, with event counts and their last change.
pub async fn documents(State(site): State<Arc<Site>>) -> Answer<Value> {
    let listed = site.board.list_documents(site.space.as_str()).await?;
    let mut out = Vec::with_capacity(listed.len());
    for summary in listed {
        // The space watch keeps a replica of every document open, so this reads memory.
        let doc = site
            .board
            .doc(site.space.as_str(), summary.document.as_str())?;
        out.push(Listed {
            document: summary.document.to_string(),
            events: summary.events,
            last: last_event(&doc)?,
        });
    }
    Ok(Json(json!({
        "space": site.space.to_string(),
        "documents": out,
    })))
}

/// The last event `doc`'s replica has applied: one read of the position index.
fn last_event(doc: &Doc) -> Result<Option<Record>, ApiError> {
    let seq = doc.position().seq;
    Ok(doc
        .replica()
        .records(seq.saturating_sub(1), seq)
        .map_err(blackboard_client::Error::from)?
        .pop())
}

/// One event of the timeline: what the log says about it and the paths it touched.
#[derive(Debug, Serialize)]
pub struct TimelineEvent {
    /// The record.
    #[serde(flatten)]
    pub record: Record,
    /// The paths the change touched.
    pub paths: Vec<String>,
}

impl TimelineEvent {
    fn of(doc: &Doc, record: Record) -> TimelineEvent {
        let paths = doc.read(|core| touched_paths(core, &record.hash));
        TimelineEvent {
            record,
            paths: paths.iter().map(ToString::to_string).collect(),
        }
    }
}

/// The events of `doc` at positions in `after..=until` (the position index, no more).
fn records(doc: &Doc, after: u64, until: u64) -> Result<Vec<Record>, ApiError> {
    Ok(doc
        .replica()
        .records(after, until)
        .map_err(blackboard_client::Error::from)?)
}

/// `GET /api/doc/{doc}`: the document now, and every path holding concurrent values with
/// each value and its writer (`conflicts: [{path, values: [{value, winner, agent, seq}]}]`).
pub async fn document(
    State(site): State<Arc<Site>>,
    UrlPath(name): UrlPath<String>,
) -> Answer<Value> {
    let doc = site.doc(&name).await?;
    let conflicts: Vec<Value> = doc
        .all_conflicts()?
        .into_iter()
        .map(|(path, values)| json!({ "path": path, "values": values }))
        .collect();
    Ok(Json(json!({
        "document": name,
        "seq": doc.position().seq,
        "json": doc.to_json(),
        "conflicts": conflicts,
    })))
}

/// A timeline page's bounds.
#[derive(Debug, Deserialize)]
pub struct Page {
    /// Only events before this position (exclusive); the newest when absent.
    pub before: Option<u64>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<usize>,
}

/// `GET /api/doc/{doc}/timeline?before=SEQ&limit=N`: a page of events, newest first,
/// `next`, the `before` of the page after it (`null` at the first event), and `rejected`,
/// the changes the space's roster rejected within the page's positions (newest first; those
/// this site's replica saw, see `Replica::untrusted`).
///
/// A page is read from the position index alone, in a window of positions below `before`
/// that grows until it holds enough events (positions are the space's, shared by its
/// documents, so a window may hold few): a page of a long history costs about a page, not
/// the history.
pub async fn timeline(
    State(site): State<Arc<Site>>,
    UrlPath(name): UrlPath<String>,
    Query(page): Query<Page>,
) -> Answer<Value> {
    let doc = site.doc(&name).await?;
    let limit = page.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let position = doc.position().seq;
    let top = match page.before {
        Some(b) => b.saturating_sub(1).min(position),
        None => position,
    };
    let mut span = u64::try_from(limit).unwrap_or(u64::MAX).saturating_mul(4);
    let found = loop {
        let floor = top.saturating_sub(span);
        let found = records(&doc, floor, top)?;
        if found.len() > limit || floor == 0 {
            break found;
        }
        span = span.saturating_mul(4);
    };
    // One more than a page was read when there is one: that says whether a next page exists.
    let more = found.len() > limit;
    let newest: Vec<TimelineEvent> = found
        .into_iter()
        .rev()
        .take(limit)
        .map(|r| TimelineEvent::of(&doc, r))
        .collect();
    let next = if more {
        newest.last().map(|e| e.record.seq)
    } else {
        None
    };
    // The changes the roster rejected between this page's oldest event and its top, so the
    // page can show them in place, marked: they are in the log but not in the history.
    let bottom = next.unwrap_or(0);
    let rejected: Vec<Value> = doc
        .replica()
        .untrusted()
        .into_iter()
        .filter(|r| r.seq > bottom && r.seq <= top)
        .rev()
        .map(|r| {
            json!({
                "seq": r.seq,
                "agent": r.agent.to_string(),
                "change": r.change_hash.to_string(),
                "reason": r.reason.to_string(),
            })
        })
        .collect();
    Ok(Json(
        json!({ "events": newest, "next": next, "rejected": rejected }),
    ))
}

/// `GET /api/doc/{doc}/at/{seq}`: the document as it was right after the event at `seq`, the
/// event, and the diff from the moment before it.
pub async fn at(
    State(site): State<Arc<Site>>,
    UrlPath((name, seq)): UrlPath<(String, u64)>,
) -> Answer<Value> {
    let doc = site.doc(&name).await?;
    if seq == 0 || seq > doc.position().seq {
        return Err(ApiError::NotFound(format!(
            "{name} has no event at position {seq}"
        )));
    }
    let event = records(&doc, seq - 1, seq)?
        .pop()
        .map(|r| TimelineEvent::of(&doc, r));
    // At most one fork, for the document there; the diff is read in place (see
    // `super::at`). At the document's own heads (the newest event, the one a live view
    // clicks most) the document there is the document itself: no fork at all.
    let (after, before) = (doc.resolve(&At::Seq(seq))?, doc.resolve(&At::Seq(seq - 1))?);
    let (before, after) = (&before.heads, &after.heads);
    // Checked under the same lock as the reads, so a change arriving between does not
    // make the document itself stand for an older position.
    let newest = doc
        .read(|core| {
            (core.heads() == *after).then(|| {
                super::at::guarded("diffing two positions", || {
                    let am = core.automerge();
                    (
                        core.to_json(),
                        blackboard_client::diff_reading(am, before, after, am),
                    )
                })
            })
        })
        .transpose()
        .map_err(ApiError::Internal)?;
    let (view, diff) = match newest {
        Some(both) => both,
        None => {
            let view = doc.at(&At::Heads(after.clone()))?;
            let diff = doc
                .read(|core| {
                    super::at::guarded("diffing two positions", || {
                        blackboard_client::diff_reading(
                            core.automerge(),
                            before,
                            after,
                            view.doc().automerge(),
                        )
                    })
                })
                .map_err(ApiError::Internal)?;
            (view.to_json(), diff)
        }
    };
    Ok(Json(json!({
        "seq": seq,
        "event": event,
        "json": view,
        "diff": diff,
    })))
}

/// A diff's two ends.
#[derive(Debug, Deserialize)]
pub struct Range {
    /// From here (a position, a time or heads).
    pub from: String,
    /// To here.
    pub to: String,
}

/// `GET /api/doc/{doc}/diff?from=A&to=B`: the patches from `from` to `to`.
pub async fn diff(
    State(site): State<Arc<Site>>,
    UrlPath(name): UrlPath<String>,
    Query(range): Query<Range>,
) -> Answer<Value> {
    let parse = |s: &str| {
        s.parse::<At>()
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    };
    let (from, to) = (parse(&range.from)?, parse(&range.to)?);
    let doc = site.doc(&name).await?;
    let patches: Vec<Patch> = doc.diff(&from, &to)?;
    Ok(Json(
        json!({ "from": range.from, "to": range.to, "diff": patches }),
    ))
}

/// Which path to blame.
#[derive(Debug, Deserialize)]
pub struct BlamePath {
    /// The path (`/tasks/7/status`).
    pub path: String,
}

/// `GET /api/doc/{doc}/blame?path=P`: who wrote the value at `path`, when and why; for a
/// text also `runs`, who wrote each run of characters (`{start, end, text, change, agent,
/// seq, message}`, see `Doc::blame_text`).
pub async fn blame(
    State(site): State<Arc<Site>>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<BlamePath>,
) -> Answer<Value> {
    let doc = site.doc(&name).await?;
    let Some(blame) = doc.blame(&q.path)? else {
        return Err(ApiError::NotFound(format!(
            "{name} has no value at {}",
            q.path
        )));
    };
    let mut answer = serde_json::to_value(&blame).unwrap_or(Value::Null);
    if let (Some(runs), Some(fields)) = (doc.blame_text(&q.path)?, answer.as_object_mut()) {
        // The runs say the same as the spans, with the writer spelled out.
        fields.remove("spans");
        fields.insert(
            "runs".into(),
            serde_json::to_value(runs).unwrap_or(Value::Null),
        );
    }
    Ok(Json(answer))
}

/// Whose presence to list.
#[derive(Debug, Deserialize)]
pub struct Place {
    /// A document; the whole space when absent.
    pub doc: Option<String>,
}

/// `GET /api/presence?doc=D`: the agents present on a document (or in the space) now.
pub async fn presence(State(site): State<Arc<Site>>, Query(place): Query<Place>) -> Answer<Value> {
    let Some(name) = place.doc else {
        return Ok(Json(json!({ "members": site.hub.present() })));
    };
    let id: DocumentId = name
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("document {name:?}: {e}")))?;
    let members = site
        .board
        .presence(site.space.as_str(), Some(id.as_str()))
        .await?
        .members()
        .await
        .map_err(blackboard_client::Error::from)?;
    let members: Vec<Present> = members.iter().map(Present::of).collect();
    Ok(Json(json!({ "document": name, "members": members })))
}
