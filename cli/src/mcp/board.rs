//! The server's board: the SDK board (opened through `Options`, like every command's), its
//! claims and presence, and waiting for the log around reads and writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use blackboard_client::{
    AgentId, Claim, Claims, DocumentSummary, Membership, Position, Presence, Replica, SpaceId,
};
use tokio::sync::Mutex;

use super::error::ToolError;
use super::keys::Keys;
use super::Args;
use crate::connect::{self, Connected, Missing};

/// What became of a write after [`Board::settle`]: it is made and durable in the local store
/// in every case.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The replica's position after the write (covering it).
    pub position: Position,
    /// Whether the log acknowledged the change.
    pub acknowledged: bool,
    /// What the caller should know: why it is not acknowledged, or why the position may be
    /// behind.
    pub note: Option<String>,
}

/// Everything one server (one agent in one space) shares between its sessions.
#[derive(Debug)]
pub struct Board {
    /// The agent the server acts as.
    pub agent: AgentId,
    /// The space it serves.
    pub space: SpaceId,
    /// The agent's claims in the space.
    pub claims: Claims,
    /// Presence in the space.
    pub presence: Presence,
    /// How long a read waits for the log.
    pub timeout: Duration,
    /// The SDK board, opened through `Options` (it keeps one replica per document, opened
    /// on first use and following the log).
    connected: Connected,
    /// The claims this agent holds, by resource, for renew and release.
    pub held: Mutex<HashMap<String, Claim>>,
    membership: Mutex<Option<Membership>>,
    /// The answers of writes made with an idempotency key, by document and key (kept in the
    /// store directory when there is one).
    pub keys: Keys,
    /// The names of documents that appear in the space while the server runs (for
    /// `notifications/resources/list_changed`).
    new_documents: tokio::sync::broadcast::Sender<String>,
    /// Set when the server stops, to end the `subscriptions/listen` streams (which would
    /// otherwise hold an HTTP server's graceful shutdown open).
    stopping: tokio::sync::watch::Sender<bool>,
    /// The watch that finds them.
    discovery: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Board {
    /// Opens the board `args` name through the SDK and joins the space's presence as the
    /// agent.
    pub async fn open(args: &Args) -> anyhow::Result<Arc<Board>> {
        let log = args.board.required_log()?;
        // The model is declared in every change's provenance (a call's `_meta` may override it).
        let declare = |o: blackboard_client::Options| match &args.model {
            Some(model) => o.provenance(blackboard_client::Provenance {
                model: Some(model.clone()),
                ..Default::default()
            }),
            None => o,
        };
        let connected = connect::open(
            &args.board,
            log,
            &args.agent,
            Missing::Create,
            "mcp",
            declare,
        )
        .await?;
        // The SDK connects in the background; joining presence below needs the server.
        connected
            .reachable(Duration::from_secs(args.timeout).min(Duration::from_secs(10)))
            .await?;
        let sdk = &connected.board;
        let claims = sdk
            .claims(args.space.as_str())
            .await
            .context("opening the space's claims")?;
        let presence = sdk
            .presence(args.space.as_str(), None)
            .await
            .context("opening the space's presence")?;
        // Two servers with one agent name share a presence entry and refuse each other's
        // claims: say so at start, where the operator reads it.
        match presence.members().await {
            Ok(members) if members.iter().any(|m| m.agent == args.agent) => {
                tracing::warn!(agent = %args.agent, "another server or client is present as this agent");
                eprintln!(
                    "blackboard mcp: warning: agent {} is already present in space {} (another \
                     server or client runs as {0}); the two share its presence and claims and \
                     refuse each other's claims: give each server its own --agent (if this \
                     agent's previous server was killed, its entry lapses by itself)",
                    args.agent, args.space
                );
            }
            Ok(_) => {}
            Err(e) => tracing::info!(error = %e, "could not read presence at start"),
        }
        let membership = presence
            .join(Some("connected over MCP"))
            .await
            .context("joining the space's presence")?;
        // With a store the keys survive a restart; without one there is nowhere to keep them.
        let keys = match &args.board.store {
            Some(dir) => Keys::journaled(dir, args.space.as_str())?,
            None => Keys::in_memory(),
        };
        let (new_documents, _) = tokio::sync::broadcast::channel(64);
        let discovery = tokio::spawn(discover(
            connected.board.clone(),
            args.space.clone(),
            new_documents.clone(),
        ));
        Ok(Arc::new(Board {
            agent: args.agent.clone(),
            space: args.space.clone(),
            claims,
            presence,
            timeout: Duration::from_secs(args.timeout),
            connected,
            held: Mutex::default(),
            membership: Mutex::new(Some(membership)),
            keys,
            new_documents,
            stopping: tokio::sync::watch::Sender::new(false),
            discovery: std::sync::Mutex::new(Some(discovery)),
        }))
    }

    /// The documents of the space that have events, with their event counts.
    pub async fn list(&self) -> Result<Vec<DocumentSummary>, blackboard_client::Error> {
        self.connected
            .board
            .list_documents(self.space.as_str())
            .await
    }

    /// Every value concurrent writers left at `path` of document `name`, each with the agent
    /// that wrote it and whether it is the one shown.
    pub fn conflicts(
        &self,
        name: &str,
        path: &str,
    ) -> Result<Vec<blackboard_client::Conflict>, ToolError> {
        let doc = self
            .connected
            .board
            .doc(self.space.as_str(), name)
            .map_err(|e| ToolError::new(format!("opening document {name}: {e}")))?;
        doc.conflicts(path)
            .map_err(|e| ToolError::new(format!("reading the values at {path} of {name}: {e}")))
    }

    /// The replica of `name`, opened (and kept, following the log) on first use.
    pub async fn replica(&self, name: &str) -> Result<Replica, ToolError> {
        let doc = self
            .connected
            .board
            .doc(self.space.as_str(), name)
            .map_err(|e| match e {
                blackboard_client::Error::Id(e) => {
                    ToolError::new(format!("bad document name {name:?}: {e}"))
                }
                e => ToolError::new(format!("opening document {name}: {e}")),
            })?;
        Ok(doc.replica().clone())
    }

    /// Waits until `replica` has applied every event the log holds for it now, so a read
    /// sees every write acknowledged before it; returns its position.
    pub async fn catch_up(&self, replica: &Replica) -> Result<Position, ToolError> {
        match tokio::time::timeout(self.timeout, replica.sync()).await {
            Ok(Ok(_)) => Ok(replica.position()),
            Ok(Err(e)) => Err(ToolError::new(format!(
                "could not read {} from the log: {e}",
                replica.config().document
            ))),
            Err(_) => Err(ToolError::new(format!(
                "timed out after {} s waiting for the log to deliver {}; try again",
                self.timeout.as_secs(),
                replica.config().document
            ))),
        }
    }

    /// The replica of an existing document, caught up with the log. A document nobody has
    /// written is an error, not an empty document.
    pub async fn existing(&self, name: &str) -> Result<(Replica, Position), ToolError> {
        let replica = self.replica(name).await?;
        let position = self.catch_up(&replica).await?;
        if position.seq == 0 && position.heads.is_empty() {
            return Err(ToolError::new(format!(
                "unknown document {name:?} in space {}: nobody has written it (list_documents \
                 shows the documents; a write creates one)",
                self.space
            )));
        }
        Ok((replica, position))
    }

    /// Waits (up to the timeout) for this agent's changes to reach the log, then catches
    /// up, so the position returned covers them. Never an error: the change is made and
    /// durable locally whatever the log does, and the answer says whether the log
    /// acknowledged it.
    pub async fn settle(&self, replica: &Replica) -> Settled {
        let secs = self.timeout.as_secs();
        let unacknowledged = match tokio::time::timeout(self.timeout, replica.flush()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!(
                "the log refuses it for now ({e}); it stays queued and publishing is retried"
            )),
            Err(_) => Some(format!(
                "the log did not acknowledge it within {secs} s; it stays queued and is \
                 published when the log is reachable (do not make it again)"
            )),
        };
        if let Some(note) = unacknowledged {
            return Settled {
                position: replica.position(),
                acknowledged: false,
                note: Some(note),
            };
        }
        match self.catch_up(replica).await {
            Ok(position) => Settled {
                position,
                acknowledged: true,
                note: None,
            },
            Err(e) => Settled {
                position: replica.position(),
                acknowledged: true,
                note: Some(format!(
                    "acknowledged by the log; the position shown may not include other \
                     agents' latest changes ({})",
                    e.0
                )),
            },
        }
    }

    /// The names of documents that appear in the space from now on.
    pub fn new_documents(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.new_documents.subscribe()
    }

    /// Ends every `subscriptions/listen` (each answered with its final result), as the
    /// server stops.
    pub fn stop_listening(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once [`Board::stop_listening`] was called.
    pub async fn stopping(&self) {
        let mut stopping = self.stopping.subscribe();
        // An error means the board is gone: stopping too.
        let _ = stopping.wait_for(|s| *s).await;
    }

    /// Leaves presence, closes the replicas, flushes local state.
    pub async fn close(&self) {
        self.stop_listening();
        if let Some(task) = self
            .discovery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
        if let Some(m) = self.membership.lock().await.take() {
            // Bounded: with the log gone, others see this agent leave by its timeout anyway.
            match tokio::time::timeout(Duration::from_secs(2), m.leave()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::info!(error = %e, "could not leave presence"),
                Err(_) => tracing::info!("leaving presence timed out"),
            }
        }
        // The SDK closes the replicas and flushes the store; the board stays usable by
        // sessions still finishing, which then find their replicas closed.
        if let Err(e) = self.connected.board.clone().close().await {
            tracing::warn!(error = %e, "closing the board");
        }
    }
}

/// Finds documents that were not there before in `space` and sends their names: by name
/// only (one headers-only subscription to the space), not by opening and following every
/// document, which with many documents cost a replica and two consumers each. A name stream
/// that ends or fails is started again after a pause.
async fn discover(
    board: blackboard_client::Board,
    space: SpaceId,
    found: tokio::sync::broadcast::Sender<String>,
) {
    use futures::StreamExt as _;
    let mut known: std::collections::HashSet<String> =
        match board.list_documents(space.as_str()).await {
            Ok(docs) => docs.iter().map(|d| d.document.to_string()).collect(),
            Err(e) => {
                tracing::info!(%space, error = %e, "cannot list the documents for discovery");
                Default::default()
            }
        };
    loop {
        match board.document_names(space.as_str()).await {
            Ok((_, mut names)) => {
                while let Some(name) = names.next().await {
                    match name {
                        Ok(name) => {
                            let name = name.to_string();
                            if known.insert(name.clone()) {
                                // No session listening is fine.
                                let _ = found.send(name);
                            }
                        }
                        Err(e) => {
                            tracing::info!(%space, error = %e, "document discovery failed; retrying");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::info!(%space, error = %e, "cannot watch the space for new documents")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
