//! The tools: what a model can do with the board. Every answer is JSON; failures a model
//! can act on (unknown document, bad path, a claim held by someone else) are tool errors
//! with a message saying what to do, never protocol errors.

use std::time::{Duration, SystemTime};

use blackboard_client::Provenance;
use blackboard_client::{
    At, ClaimError, Edit, HistoryEvent, HistoryFilter as Filter, Path, Pattern, Position, PutMode,
    Start, WatchOptions as Options,
};
use futures::StreamExt as _;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ProgressNotificationParam};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::error::ToolError;
use super::keys::{self, State};
use super::output;
use super::server::Server;
use super::stale;

type ToolResult = Result<CallToolResult, rmcp::ErrorData>;

/// How often a long `wait_for_change` tells a client that sent a progress token that it is
/// still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

fn answer(r: Result<Json, ToolError>) -> ToolResult {
    Ok(match r {
        Ok(v) => CallToolResult::structured(v),
        Err(ToolError(msg)) => CallToolResult::error(vec![ContentBlock::text(msg)]),
    })
}

fn position_json(p: &Position) -> Json {
    json!({
        "seq": p.seq,
        "heads": p.heads.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

fn parse_path(path: &str) -> Result<Path, ToolError> {
    path.parse().map_err(|e| {
        ToolError::new(format!(
            "bad path {path:?}: {e} (paths look like /tasks/3/status; / is the whole document)"
        ))
    })
}

fn parse_pattern(pattern: &str) -> Result<Pattern, ToolError> {
    pattern.parse().map_err(|e| {
        ToolError::new(format!(
            "bad pattern {pattern:?}: {e} (patterns look like /tasks/*/status or /tasks/**)"
        ))
    })
}

/// A position in a document's history, as a model may write it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PositionArg {
    /// A log position (the `seq` of a position this server returned).
    Seq(u64),
    /// A log position as digits, an RFC 3339 time (2026-11-24T10:00:00Z), or heads (64-hex
    /// change hashes, comma-separated).
    Text(String),
}

impl PositionArg {
    fn to_at(&self) -> Result<At, ToolError> {
        match self {
            PositionArg::Seq(n) => Ok(At::Seq(*n)),
            PositionArg::Text(s) => s.parse().map_err(|e| ToolError::new(format!("{e}"))),
        }
    }
}

fn history_json(events: &[HistoryEvent]) -> Json {
    Json::Array(
        events
            .iter()
            .map(|e| {
                let mut event = json!({
                    "seq": e.record.seq,
                    "agent": e.record.agent.to_string(),
                    "reason": e.record.message,
                    "time": blackboard_client::format_time(e.record.time_ms),
                    "paths": e.paths.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "change": e.record.hash.to_string(),
                });
                // Who signed it (`signer`, `verified`, `signature_error`), as the CLI's
                // `history --json` says it.
                if let Ok(Json::Object(signature)) = serde_json::to_value(&e.record.signature) {
                    event.as_object_mut().expect("an object").extend(signature);
                }
                if let Some(provenance) = &e.record.provenance {
                    event["provenance"] = json!(provenance);
                }
                if let Some(reason) = &e.rejected {
                    event["rejected"] = json!(reason);
                }
                event
            })
            .collect(),
    )
}

fn utc(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

// ---- inputs ----------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
pub struct NoArgs {}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadArgs {
    /// The document's name, as list_documents shows it.
    pub document: String,
    /// What to read: a path like /tasks/3 (default /, the whole document).
    #[serde(default)]
    pub path: Option<String>,
    /// Read the document as it was at this past position instead of now: a position `seq`
    /// from an earlier answer, or an RFC 3339 time.
    #[serde(default)]
    pub at: Option<PositionArg>,
    /// Also list every value concurrent writers left at `path` (automerge keeps them all and
    /// shows one), each with the agent that wrote it and whether it is the one shown. Not
    /// with `at`.
    #[serde(default)]
    pub conflicts: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct PutArgs {
    /// The document to write (created by the first write).
    pub document: String,
    /// Where to write, like /tasks/3/status (segments separated by /; ~1 for a / and ~0 for
    /// a ~ inside a key); missing maps on the way are created. In a list, an index replaces
    /// that element and /- appends. / is the whole document (an object is merged into it).
    pub path: String,
    /// The JSON value to write (any JSON: object, array, string, number, boolean, null),
    /// nesting at most 100 levels; about 780 kB at most once encoded.
    pub value: Json,
    /// Write an object as a fresh map replacing the one at `path` (keys it does not name are
    /// removed) instead of merging into it (the default). Not at /.
    #[serde(default)]
    pub replace: bool,
    /// Why you are making this change, in a short sentence; recorded in the history.
    pub reason: String,
    /// The `seq` of the position you read before deciding this write (from an earlier answer;
    /// not ahead of the document). The answer then warns if another agent changed any path
    /// you write since.
    #[serde(default)]
    pub read_at: Option<u64>,
    /// Optional: a key you choose for this write (like a UUID). If you call again with the
    /// same key, for example after an answer that timed out, you get the first call's answer
    /// and the write is not made twice. Remembered for a day, up to the latest 10000 keys;
    /// across restarts of this server only if it was started with a store (--store).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeleteArgs {
    /// The document.
    pub document: String,
    /// What to delete, like /tasks/3 (a map key or list index; not /).
    pub path: String,
    /// Why, in a short sentence; recorded in the history.
    pub reason: String,
    /// The `seq` of the position you read before deciding; see put.
    #[serde(default)]
    pub read_at: Option<u64>,
    /// Optional: a key you choose for this write (like a UUID). If you call again with the
    /// same key, for example after an answer that timed out, you get the first call's answer
    /// and the write is not made twice. Remembered for a day, up to the latest 10000 keys;
    /// across restarts of this server only if it was started with a store (--store).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AppendArgs {
    /// The document.
    pub document: String,
    /// The list to append to, like /log; created (as a one-element list) if nothing is there.
    pub path: String,
    /// The JSON value to append.
    pub value: Json,
    /// Why, in a short sentence; recorded in the history.
    pub reason: String,
    /// The `seq` of the position you read before deciding; see put.
    #[serde(default)]
    pub read_at: Option<u64>,
    /// Optional: a key you choose for this write (like a UUID). If you call again with the
    /// same key, for example after an answer that timed out, you get the first call's answer
    /// and the write is not made twice. Remembered for a day, up to the latest 10000 keys;
    /// across restarts of this server only if it was started with a store (--store).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SpliceArgs {
    /// The document.
    pub document: String,
    /// The text to edit, like /notes; created (empty) if nothing is there. Concurrent edits
    /// of one text by several agents all survive.
    pub path: String,
    /// Where to edit, in characters from the start (past the end means at the end).
    #[serde(default)]
    pub position: usize,
    /// How many characters to delete there first.
    #[serde(default)]
    pub delete: usize,
    /// The text to insert there.
    #[serde(default)]
    pub insert: String,
    /// Why, in a short sentence; recorded in the history.
    pub reason: String,
    /// The `seq` of the position you read before deciding; see put.
    #[serde(default)]
    pub read_at: Option<u64>,
    /// Optional: a key you choose for this write (like a UUID). If you call again with the
    /// same key, for example after an answer that timed out, you get the first call's answer
    /// and the write is not made twice. Remembered for a day, up to the latest 10000 keys;
    /// across restarts of this server only if it was started with a store (--store).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct IncrementArgs {
    /// The document.
    pub document: String,
    /// The counter, like /stats/done; created at 0 if nothing is there. Concurrent increments
    /// add up (unlike reading a number and writing it back).
    pub path: String,
    /// How much to add (negative to subtract; default 1).
    #[serde(default = "one")]
    pub by: i64,
    /// Why, in a short sentence; recorded in the history.
    pub reason: String,
    /// The `seq` of the position you read before deciding; see put.
    #[serde(default)]
    pub read_at: Option<u64>,
    /// Optional: a key you choose for this write (like a UUID). If you call again with the
    /// same key, for example after an answer that timed out, you get the first call's answer
    /// and the write is not made twice. Remembered for a day, up to the latest 10000 keys;
    /// across restarts of this server only if it was started with a store (--store).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WaitArgs {
    /// The document to watch.
    pub document: String,
    /// Which paths: a path pattern where * is one segment and ** any number, like
    /// /tasks/*/status or /tasks/** (default /**, everything).
    #[serde(default)]
    pub pattern: Option<String>,
    /// Changes after this position `seq` (from an earlier answer); default: only changes
    /// from now on.
    #[serde(default)]
    pub since: Option<u64>,
    /// How long to wait, in seconds (default 30, at most 600).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct HistoryArgs {
    /// The document.
    pub document: String,
    /// Only events after this position.
    #[serde(default)]
    pub after: Option<PositionArg>,
    /// Only events up to this position.
    #[serde(default)]
    pub until: Option<PositionArg>,
    /// Only events by this agent.
    #[serde(default)]
    pub agent: Option<String>,
    /// Only events that touched paths matching this pattern (like /tasks/**).
    #[serde(default)]
    pub pattern: Option<String>,
    /// At most this many events, the latest ones (default 50).
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DiffArgs {
    /// The document.
    pub document: String,
    /// From this position.
    pub from: PositionArg,
    /// To this position (default: now).
    #[serde(default)]
    pub to: Option<PositionArg>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct BlameArgs {
    /// The document.
    pub document: String,
    /// The path whose value to explain, like /tasks/3/status.
    pub path: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ClaimArgs {
    /// What to claim: a name agents agree on, like task-3 (letters, digits, - _ . /).
    pub resource: String,
    /// How long the claim lasts unless renewed, in seconds (default 60).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RenewArgs {
    /// A resource you claimed earlier in this session.
    pub resource: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReleaseArgs {
    /// A resource you claimed earlier in this session.
    pub resource: String,
    /// A note for the next holder (what you did, what is left).
    #[serde(default)]
    pub note: Option<String>,
}

/// The `_meta` key of a tool call in which a client may name the model behind it. The MCP
/// specification has no convention for this; the prefix is Blackboard's own (not one the
/// specification reserves).
pub const MODEL_META: &str = "blackboard/model";

/// The provenance of a write made by tool call `context`: the tool and the JSON-RPC request
/// id, and the model if the call's `_meta` names one (otherwise `--model`'s, declared
/// board-wide).
fn call_provenance(tool: &str, context: &RequestContext<RoleServer>) -> Provenance {
    let model = context.meta.get(MODEL_META).and_then(Json::as_str);
    Provenance {
        on_behalf_of: None,
        model: model.map(str::to_owned),
        tool_call: Some(format!("{tool}#{}", context.id)),
    }
}

// ---- the tools -------------------------------------------------------------------------

/// The refusal of a key already used for another write.
fn reused(key: &str, made_by: &str) -> ToolError {
    ToolError::new(format!(
        "idempotency_key {key:?} was used for a different write ({made_by}); choose a new key \
         for a new write"
    ))
}

impl Server {
    /// A write with an optional idempotency key: the first call with a key makes the write
    /// ([`Server::write_once`]) and its answer is kept; a later call with the same key and the
    /// same edit gets that answer again without writing. Calls racing with one key wait for
    /// the first. A call that failed wrote nothing, so its key stays free for a retry.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        tool: &str,
        document: &str,
        reason: &str,
        read_at: Option<u64>,
        key: Option<&str>,
        written: Path,
        edit: Edit,
        call: Provenance,
    ) -> Result<Json, ToolError> {
        let Some(key) = key else {
            return self
                .write_once(document, reason, read_at, written, edit, call)
                .await;
        };
        if key.is_empty() || key.len() > 200 {
            return Err(ToolError::new(format!(
                "argument `idempotency_key` of {tool}: 1 to 200 characters (like a UUID); got {}",
                key.len()
            )));
        }
        let fingerprint = keys::fingerprint(tool, document, &format!("{edit:?}"));
        let keys = &self.board.keys;
        let slot = keys.slot(document, key).await;
        // Held until this call is answered: a call racing with the same key waits for it.
        let mut state = slot.lock().await;
        match &*state {
            State::Free => {}
            State::Done {
                fingerprint: made_by,
                answer,
            } => {
                if *made_by != fingerprint {
                    return Err(reused(key, made_by));
                }
                let mut again = answer.clone();
                again["replayed"] = json!(true);
                again["note"] = json!(
                    "answered from the first call with this idempotency_key: that write was \
                     made once and is not made again (read the document for its state now)"
                );
                return Ok(again);
            }
            State::Interrupted {
                fingerprint: made_by,
            } => {
                if *made_by != fingerprint {
                    return Err(reused(key, made_by));
                }
                return Err(ToolError::new(format!(
                    "idempotency_key {key:?}: a write with this key was started before this \
                     server stopped, and its answer was lost; it may or may not have been \
                     made, so it is not made again. Read {document} to see whether it is \
                     there, and write with a new key if it is not (nothing was written now)"
                )));
            }
        }
        // On disk before the write, so a server killed during it knows of it when it starts
        // again (see `keys`).
        keys.begin(document, key, &fingerprint).await?;
        match self
            .write_once(document, reason, read_at, written, edit, call)
            .await
        {
            Ok(mut answer) => {
                if let Err(e) = keys.done(document, key, &fingerprint, &answer).await {
                    // The write is made: say what is not remembered, do not fail.
                    let lost = format!(
                        "{e}: a retry with this key after a restart of this server is refused \
                         rather than answered"
                    );
                    answer["warning"] = json!(match answer["warning"].as_str() {
                        Some(stale) => format!("{stale}; {lost}"),
                        None => lost,
                    });
                }
                *state = State::Done {
                    fingerprint,
                    answer: answer.clone(),
                };
                Ok(answer)
            }
            Err(e) => {
                // Nothing was written: the key stays free for a retry.
                if let Err(forget) = keys.forget(document, key).await {
                    tracing::warn!(error = %forget, "could not free an idempotency key");
                }
                Err(e)
            }
        }
    }

    /// Makes `edit` with `reason` as its message, waits for the log, and checks for stale
    /// reads when `read_at` is given. Containers the edit creates on its way are made by the
    /// container recipe, so agents creating the same map (or list, counter, text) at the same
    /// moment share it: no catch-up is needed before writing.
    async fn write_once(
        &self,
        document: &str,
        reason: &str,
        read_at: Option<u64>,
        written: Path,
        edit: Edit,
        call: Provenance,
    ) -> Result<Json, ToolError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ToolError::new(
                "give a reason: a short sentence saying why you make this change",
            ));
        }
        let board = &self.board;
        let replica = board.replica(document).await?;
        if let Some(read_at) = read_at {
            if read_at > replica.position().seq {
                // Perhaps this replica is behind: only a position past the log's is refused.
                let now = board.catch_up(&replica).await?;
                if read_at > now.seq {
                    return Err(ToolError::new(format!(
                        "argument `read_at`: position {read_at} is ahead of {document}, which \
                         is at position {}; pass the `seq` of an answer you read (nothing \
                         was written)",
                        now.seq
                    )));
                }
            }
        }
        let is_put = matches!(edit, Edit::Put { .. });
        let done = replica
            .with_provenance(call)
            .edit(Some(reason), &[edit])
            .await?;
        let hash = done.hash;
        // From here on the change is made: the answer is never an error, and says
        // separately whether the log has acknowledged it.
        let settled = board.settle(&replica).await;
        let mut out = json!({
            "document": document,
            "change": hash.map(|h| h.to_string()),
            "position": position_json(&settled.position),
            "acknowledged": settled.acknowledged,
        });
        if let Some(value) = done.counters.first() {
            out["value"] = json!(value);
        }
        if !settled.acknowledged {
            out["status"] = json!("written (durable locally), not yet acknowledged by the log");
        }
        if let Some(note) = &settled.note {
            out["note"] = json!(note);
        }
        if hash.is_none() {
            out["note"] = json!(if is_put {
                "nothing changed: every value written was already there. An object is merged \
                 into the map at its path (keys it does not name stay, so an empty object \
                 changes nothing); use delete to remove a key, or replace: true to replace \
                 the map"
            } else {
                "nothing changed: the document already held this"
            });
        }
        if let Some(read_at) = read_at {
            // The write is made: a failed check is said, not returned as an error.
            match stale::check(&replica, read_at, &[written], &board.agent) {
                Ok(changes) if !changes.is_empty() => {
                    out["warning"] = json!(stale::warning(read_at, &changes));
                    out["stale"] = serde_json::to_value(&changes).unwrap_or(Json::Null);
                }
                Ok(_) => {}
                Err(e) => out["warning"] = json!(format!("could not check for stale reads: {e}")),
            }
        }
        Ok(out)
    }

    async fn wait_inner(
        &self,
        a: WaitArgs,
        context: RequestContext<RoleServer>,
    ) -> Result<Json, ToolError> {
        let pattern = parse_pattern(a.pattern.as_deref().unwrap_or("/**"))?;
        let timeout = Duration::from_secs(a.timeout_seconds.unwrap_or(30).clamp(0, 600));
        let board = &self.board;
        let replica = board.replica(&a.document).await?;
        // Listen first, then look at what is already there: nothing falls in between.
        let mut live = replica.watch(pattern.clone(), Options::start(Start::Now))?;
        let now = board.catch_up(&replica).await?;
        let since = a.since.unwrap_or(now.seq);
        if since > now.seq {
            return Err(ToolError::new(format!(
                "argument `since`: position {since} is ahead of {}, which is at position {}; \
                 pass the `seq` of an earlier answer, or leave it out to wait from now",
                a.document, now.seq
            )));
        }
        let matching =
            |replica: &blackboard_client::Replica| -> Result<Vec<HistoryEvent>, ToolError> {
                let events = replica.history(&Filter {
                    path: Some(pattern.clone()),
                    ..Filter::default()
                })?;
                Ok(events
                    .into_iter()
                    .filter(|e| e.record.seq > since)
                    .collect())
            };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut events = matching(&replica)?;
        // A change the watch reports may not match after all (a change of this agent's
        // that the log already held): keep waiting until one does or the time is up.
        // A client that sent a progress token hears from a long wait every few seconds, so
        // it does not time the request out (clients give up after 60 s of silence).
        let progress = context.meta.get_progress_token();
        let started = tokio::time::Instant::now();
        let mut ticks = tokio::time::interval_at(started + PROGRESS_EVERY, PROGRESS_EVERY);
        while events.is_empty() {
            tokio::select! {
                next = tokio::time::timeout_at(deadline, live.next()) => match next {
                    Ok(Some(_)) => {
                        // Report from the log's history, so every event has its position.
                        board.catch_up(&replica).await?;
                        events = matching(&replica)?;
                    }
                    Ok(None) => return Err(ToolError::new("the document was closed")),
                    Err(_) => break,
                },
                _ = ticks.tick(), if progress.is_some() => {
                    if let Some(token) = &progress {
                        let waited = started.elapsed().as_secs();
                        let mut note = ProgressNotificationParam::new(token.clone(), waited as f64);
                        note.total = Some(timeout.as_secs() as f64);
                        note.message = Some(format!(
                            "waited {waited} s of {} s for a change matching {pattern}",
                            timeout.as_secs()
                        ));
                        if let Err(e) = context.peer.notify_progress(note).await {
                            tracing::debug!(error = %e, "could not send a progress notification");
                        }
                    }
                }
            }
        }
        let position = replica.position();
        if events.is_empty() {
            return Ok(json!({
                "changed": false,
                "message": format!("nothing matching {pattern} changed after position {since} \
                                    within {} s; call again to keep waiting", timeout.as_secs()),
                "position": position_json(&position),
            }));
        }
        Ok(json!({
            "changed": true,
            "events": history_json(&events),
            "position": position_json(&position),
        }))
    }
}

#[tool_router(vis = "pub(crate)")]
impl Server {
    /// Lists the documents of this board's space, with how many events each has.
    #[tool(
        title = "List documents",
        description = "List the documents of the shared board (this server's space), with how many \
                       change events each has. Start here to see what exists.",
        output_schema = output::documents(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_documents(&self, Parameters(_): Parameters<NoArgs>) -> ToolResult {
        answer(
            async {
                let docs =
                    self.board.list().await.map_err(|e| {
                        ToolError::new(format!("could not list the documents: {e}"))
                    })?;
                Ok(json!({
                    "space": self.board.space.to_string(),
                    "documents": docs.iter().map(|d| json!({
                        "document": d.document.to_string(),
                        "events": d.events,
                        "uri": format!("blackboard://{}/{}", self.board.space, d.document),
                    })).collect::<Vec<_>>(),
                }))
            }
            .await,
        )
    }

    #[tool(
        title = "Read a document",
        description = "Read a document, or the value at one path in it, as JSON. Returns the \
                       value and the position (`seq`) it was read at: pass that `seq` as \
                       `read_at` when you write based on what you read, and as `since` to \
                       wait_for_change. With `at`, reads the document as it was at a past \
                       position. With `conflicts: true`, also lists every value concurrent \
                       writers left at the path, with who wrote each.",
        output_schema = output::read(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn read(&self, Parameters(a): Parameters<ReadArgs>) -> ToolResult {
        answer(
            async {
                let path = parse_path(a.path.as_deref().unwrap_or("/"))?;
                let (replica, now) = self.board.existing(&a.document).await?;
                let (value, position) = match &a.at {
                    Some(at) => {
                        let at = at
                            .to_at()
                            .map_err(|e| ToolError::new(format!("argument `at` of read: {e}")))?;
                        if let At::Seq(seq) = at {
                            if seq > now.seq {
                                return Err(ToolError::new(format!(
                                    "argument `at`: position {seq} is ahead of {}, which is at \
                                     position {}; pass the `seq` of an earlier answer",
                                    a.document, now.seq
                                )));
                            }
                        }
                        let view = replica.at(&at)?;
                        (view.doc().get(&path)?, view.position().clone())
                    }
                    None => (replica.read(|d| d.get(&path))?, now),
                };
                let Some(value) = value else {
                    return Err(ToolError::new(format!(
                        "nothing at {path} in {} (at position {}); read / to see what is there",
                        a.document, position.seq
                    )));
                };
                let mut out = json!({
                    "document": a.document,
                    "path": path.to_string(),
                    "value": value,
                    "position": position_json(&position),
                });
                if a.conflicts {
                    if a.at.is_some() {
                        return Err(ToolError::new(
                            "conflicts are read now, not at a past position: drop `at`",
                        ));
                    }
                    let values = self.board.conflicts(&a.document, &path.to_string())?;
                    out["conflicts"] = serde_json::to_value(values).unwrap_or(Json::Null);
                }
                Ok(out)
            }
            .await,
        )
    }

    #[tool(
        title = "Write a value",
        description = "Write a JSON value at a path of a document (creating the document and \
                       missing maps on the way). An object is merged key by key, at every \
                       depth, into a map already at the path: keys it does not name stay (at \
                       / too, the whole document); pass `replace: true` to replace the map \
                       instead, and use delete to remove a key. Any other value replaces what \
                       is there. Values nest at most 100 levels, about 780 kB at most. Give a \
                       short `reason`; it is recorded in the history. Pass `read_at` (the \
                       `seq` you read at) to be warned if another agent changed this path \
                       since you read it, and an `idempotency_key` to make a retry safe.",
        output_schema = output::write(),
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn put(
        &self,
        Parameters(a): Parameters<PutArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        answer(
            async {
                let path = parse_path(&a.path)?;
                if a.replace && path.is_root() {
                    return Err(ToolError::new(
                        "replace: true is not for /: the whole document cannot be replaced; \
                         delete its keys instead",
                    ));
                }
                let edit = Edit::Put {
                    path: path.clone(),
                    value: a.value,
                    mode: if a.replace {
                        PutMode::Replace
                    } else {
                        PutMode::Merge
                    },
                };
                self.write(
                    "put",
                    &a.document,
                    &a.reason,
                    a.read_at,
                    a.idempotency_key.as_deref(),
                    path,
                    edit,
                    call_provenance("put", &context),
                )
                .await
            }
            .await,
        )
    }

    #[tool(
        title = "Delete a value",
        description = "Delete the value at a path of a document (a map key or a list element). \
                       Give a short `reason`; pass `read_at` to be warned about changes since \
                       your read.",
        output_schema = output::write(),
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn delete(
        &self,
        Parameters(a): Parameters<DeleteArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        answer(
            async {
                let path = parse_path(&a.path)?;
                self.board.existing(&a.document).await?;
                let edit = Edit::Delete { path: path.clone() };
                self.write(
                    "delete",
                    &a.document,
                    &a.reason,
                    a.read_at,
                    a.idempotency_key.as_deref(),
                    path,
                    edit,
                    call_provenance("delete", &context),
                )
                .await
            }
            .await,
        )
    }

    #[tool(
        title = "Append to a list",
        description = "Append a JSON value to the list at a path (creating the list if nothing \
                       is there). Appends by several agents all survive. Give a short `reason`.",
        output_schema = output::write(),
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn append(
        &self,
        Parameters(a): Parameters<AppendArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        answer(
            async {
                let path = parse_path(&a.path)?;
                let edit = Edit::Append {
                    path: path.clone(),
                    value: a.value,
                };
                self.write(
                    "append",
                    &a.document,
                    &a.reason,
                    a.read_at,
                    a.idempotency_key.as_deref(),
                    path,
                    edit,
                    call_provenance("append", &context),
                )
                .await
            }
            .await,
        )
    }

    #[tool(
        title = "Edit text",
        description = "Edit the text at a path: at character `position`, delete `delete` \
                       characters and insert `insert` (creating the text if nothing is there). \
                       Concurrent edits by several agents all survive. Give a short `reason`.",
        output_schema = output::write(),
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn splice_text(
        &self,
        Parameters(a): Parameters<SpliceArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        answer(
            async {
                let path = parse_path(&a.path)?;
                let delete =
                    isize::try_from(a.delete).map_err(|_| ToolError::new("delete is too large"))?;
                let edit = Edit::SpliceText {
                    path: path.clone(),
                    pos: a.position,
                    delete,
                    insert: a.insert,
                };
                self.write(
                    "splice_text",
                    &a.document,
                    &a.reason,
                    a.read_at,
                    a.idempotency_key.as_deref(),
                    path,
                    edit,
                    call_provenance("splice_text", &context),
                )
                .await
            }
            .await,
        )
    }

    #[tool(
        title = "Add to a counter",
        description = "Add `by` (default 1) to the counter at a path, creating it at 0 if \
                       nothing is there. Concurrent increments add up. Give a short `reason`.",
        output_schema = output::write(),
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn increment(
        &self,
        Parameters(a): Parameters<IncrementArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        answer(
            async {
                let path = parse_path(&a.path)?;
                let edit = Edit::Increment {
                    path: path.clone(),
                    by: a.by,
                };
                self.write(
                    "increment",
                    &a.document,
                    &a.reason,
                    a.read_at,
                    a.idempotency_key.as_deref(),
                    path,
                    edit,
                    call_provenance("increment", &context),
                )
                .await
            }
            .await,
        )
    }

    #[tool(
        title = "Wait for a change",
        description = "Wait until a document changes at paths matching `pattern` after position \
                       `since`, or until `timeout_seconds` pass. Returns the matching events \
                       (who, why, which paths, position) as soon as there are any, or says that \
                       nothing changed. Use it instead of polling read. Sends a progress \
                       notification every 5 s when the call carries a progress token.",
        output_schema = output::wait(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn wait_for_change(
        &self,
        Parameters(a): Parameters<WaitArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        answer(self.wait_inner(a, context).await)
    }

    #[tool(
        title = "Change history",
        description = "List a document's change events, oldest first: position, agent, reason, \
                       time, the paths each touched, who signed it and who acted through the \
                       agent (provenance). Changes the space's roster rejected are listed too, \
                       with `rejected` saying why (they changed nothing). Filter by positions, \
                       agent and path pattern; returns the latest `limit` (default 50).",
        output_schema = output::history(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn history(&self, Parameters(a): Parameters<HistoryArgs>) -> ToolResult {
        answer(
            async {
                let (replica, position) = self.board.existing(&a.document).await?;
                let filter =
                    Filter {
                        after: a.after.as_ref().map(PositionArg::to_at).transpose()?,
                        until: a.until.as_ref().map(PositionArg::to_at).transpose()?,
                        agent: match &a.agent {
                            Some(s) => Some(s.parse().map_err(|e| {
                                ToolError::new(format!("bad agent name {s:?}: {e}"))
                            })?),
                            None => None,
                        },
                        path: a.pattern.as_deref().map(parse_pattern).transpose()?,
                        limit: None,
                    };
                let events = replica.history_with_rejections(&filter)?;
                let limit = a.limit.unwrap_or(50).max(1);
                let skip = events.len().saturating_sub(limit);
                Ok(json!({
                    "document": a.document,
                    "events": history_json(&events[skip..]),
                    "omitted_earlier": skip,
                    "position": position_json(&position),
                }))
            }
            .await,
        )
    }

    #[tool(
        title = "Changes between positions",
        description = "List what changed in a document between two positions (`to` defaults \
                       to now): one entry per path, with the operation and new value.",
        output_schema = output::diff(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn diff(&self, Parameters(a): Parameters<DiffArgs>) -> ToolResult {
        answer(
            async {
                let (replica, position) = self.board.existing(&a.document).await?;
                let from = a.from.to_at()?;
                let to = match &a.to {
                    Some(t) => t.to_at()?,
                    None => At::Seq(position.seq),
                };
                let patches = replica.diff(&from, &to)?;
                Ok(json!({
                    "document": a.document,
                    "from": from.to_string(),
                    "to": to.to_string(),
                    "changes": patches,
                    "position": position_json(&position),
                }))
            }
            .await,
        )
    }

    #[tool(
        title = "Who wrote a value",
        description = "Tell who wrote the current value at a path: the agent, its reason and \
                       position (for text, who wrote each run of characters).",
        output_schema = output::blame(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn blame(&self, Parameters(a): Parameters<BlameArgs>) -> ToolResult {
        answer(
            async {
                let path = parse_path(&a.path)?;
                let (replica, position) = self.board.existing(&a.document).await?;
                let Some(blame) = replica.blame(&path.to_string())? else {
                    return Err(ToolError::new(format!(
                        "nothing at {path} in {}",
                        a.document
                    )));
                };
                Ok(json!({
                    "document": a.document,
                    "blame": blame,
                    "position": position_json(&position),
                }))
            }
            .await,
        )
    }

    #[tool(
        title = "Claim a resource",
        description = "Claim a resource (like task-3) so that you alone work on it, for \
                       `ttl_seconds` (default 60). Fails, naming the holder and until when, \
                       if another agent holds it. Claiming again what you hold renews it. \
                       Renew before it runs out; release when done.",
        output_schema = output::claim(),
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn claim(&self, Parameters(a): Parameters<ClaimArgs>) -> ToolResult {
        answer(
            async {
                let ttl = Duration::from_secs(a.ttl_seconds.unwrap_or(60));
                let mut held = self.board.held.lock().await;
                if let Some(mine) = held.get(&a.resource).cloned() {
                    // Claiming again what this session holds renews it: not a refusal.
                    match self.board.claims.renew(&mine).await {
                        Ok(renewed) => {
                            let mut out = claim_json(&renewed);
                            out["renewed"] = json!(true);
                            out["note"] = json!("you already held this claim: it is renewed");
                            held.insert(a.resource.clone(), renewed);
                            return Ok(out);
                        }
                        // Lapsed: claim it afresh below (someone else may have it now).
                        Err(ClaimError::Lapsed { .. }) => {
                            held.remove(&a.resource);
                        }
                        Err(e) => return Err(claim_error(e, &self.board.agent)),
                    }
                }
                let claim = self
                    .board
                    .claims
                    .claim(&a.resource, ttl)
                    .await
                    .map_err(|e| claim_error(e, &self.board.agent))?;
                let out = claim_json(&claim);
                held.insert(a.resource.clone(), claim);
                Ok(out)
            }
            .await,
        )
    }

    #[tool(
        title = "Renew a claim",
        description = "Renew a claim you hold, extending it by its duration from now. Fails if \
                       it has lapsed (then someone else may have it).",
        output_schema = output::claim(),
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn renew(&self, Parameters(a): Parameters<RenewArgs>) -> ToolResult {
        answer(
            async {
                let mut held = self.board.held.lock().await;
                let Some(claim) = held.get(&a.resource).cloned() else {
                    return Err(not_held(&a.resource));
                };
                match self.board.claims.renew(&claim).await {
                    Ok(renewed) => {
                        let out = claim_json(&renewed);
                        held.insert(a.resource.clone(), renewed);
                        Ok(out)
                    }
                    Err(e) => {
                        if matches!(e, ClaimError::Lapsed { .. }) {
                            held.remove(&a.resource);
                        }
                        Err(claim_error(e, &self.board.agent))
                    }
                }
            }
            .await,
        )
    }

    #[tool(
        title = "Release a claim",
        description = "Release a claim you hold, optionally leaving a note for the next holder.",
        output_schema = output::release(),
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn release(&self, Parameters(a): Parameters<ReleaseArgs>) -> ToolResult {
        answer(
            async {
                let mut held = self.board.held.lock().await;
                let Some(claim) = held.remove(&a.resource) else {
                    return Err(not_held(&a.resource));
                };
                let result = match &a.note {
                    Some(note) => self.board.claims.release_with_note(claim, note).await,
                    None => self.board.claims.release(claim).await,
                };
                result.map_err(|e| claim_error(e, &self.board.agent))?;
                Ok(json!({"resource": a.resource, "released": true}))
            }
            .await,
        )
    }

    #[tool(
        title = "Agents present",
        description = "List the agents present on this board's space now (this server is one \
                       of them), with since when and their status.",
        output_schema = output::presence(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn presence(&self, Parameters(_): Parameters<NoArgs>) -> ToolResult {
        answer(
            async {
                let members = self
                    .board
                    .presence
                    .members()
                    .await
                    .map_err(|e| ToolError::new(format!("could not read presence: {e}")))?;
                Ok(json!({
                    "space": self.board.space.to_string(),
                    "you": self.board.agent.to_string(),
                    "members": members.iter().map(|m| json!({
                        "agent": m.agent.to_string(),
                        "since": utc(m.since),
                        "last_heartbeat": utc(m.last_heartbeat),
                        "status": m.status,
                    })).collect::<Vec<_>>(),
                }))
            }
            .await,
        )
    }
}

fn not_held(resource: &str) -> ToolError {
    ToolError::new(format!(
        "you hold no claim on {resource} in this session: claim it first"
    ))
}

fn claim_error(e: ClaimError, me: &blackboard_client::AgentId) -> ToolError {
    match e {
        ClaimError::Held {
            resource,
            holder,
            until,
            ..
        } if holder == *me => ToolError::new(format!(
            "{resource} is held until {} by your agent name {holder}, but from another \
             session: another server or client runs as agent {holder} too. Give each server \
             its own --agent, or wait until then",
            utc(until)
        )),
        ClaimError::Held {
            resource,
            holder,
            until,
            ..
        } => ToolError::new(format!(
            "{resource} is held by {holder} until {}: work on something else, or wait and \
             claim it again after that",
            utc(until)
        )),
        other => ToolError::new(other.to_string()),
    }
}

fn claim_json(c: &blackboard_client::Claim) -> Json {
    json!({
        "resource": c.resource,
        "holder": c.holder.to_string(),
        "token": c.token,
        "since": utc(c.since),
        "expires": utc(c.expires),
        "ttl_seconds": c.ttl.as_secs_f64(),
        "note_from_previous_holder": c.note,
    })
}
