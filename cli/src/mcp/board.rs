//! The server's board: the log and lease connections, and one live replica per document,
//! opened on demand and kept.

use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use blackboard::claim::{Claim, Claims};
use blackboard::lease::{EmbeddedLeases, JetStreamLeases, LeaseBuckets};
use blackboard::log::{EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog};
use blackboard::presence::{self, Membership, Presence};
use blackboard::replica::{Config, Position};
use blackboard::schemas::{subject, AgentId, DocumentId, SpaceId};
use blackboard::Replica;
use tokio::sync::Mutex;

use super::tools::ToolError;
use super::Args;

/// The log, the lease buckets, the replicas' database, the embedded log's database (with
/// --store) and the temporary directory of the replicas (without --data).
type Connections = (
    Arc<dyn EventLog>,
    Arc<dyn LeaseBuckets>,
    sled::Db,
    Option<sled::Db>,
    Option<tempfile::TempDir>,
);

/// Everything one server (one agent in one space) shares between its sessions.
#[derive(Debug)]
pub struct Board {
    pub agent: AgentId,
    pub space: SpaceId,
    pub log: Arc<dyn EventLog>,
    pub claims: Claims,
    pub presence: Presence,
    /// How long a read waits for the log.
    pub timeout: Duration,
    db: sled::Db,
    /// The embedded log's database (with --store), flushed on close.
    log_db: Option<sled::Db>,
    docs: Mutex<HashMap<DocumentId, Replica>>,
    /// The claims this agent holds, by resource, for renew and release.
    pub held: Mutex<HashMap<String, Claim>>,
    membership: Mutex<Option<Membership>>,
    /// The temporary replica store, removed when the board goes (fields drop in order).
    _temp: Option<tempfile::TempDir>,
}

impl Board {
    /// Connects to the log named by `args`, joins the space's presence as the agent.
    pub async fn open(args: &Args) -> anyhow::Result<Arc<Board>> {
        let (log, leases, db, log_db, temp): Connections = match (&args.nats, &args.store) {
            (Some(url), _) => {
                let client = crate::cli::open::connect_nats(
                    url,
                    args.creds.as_deref(),
                    &format!("blackboard-mcp:{}", args.agent),
                )
                .await?;
                let (db, temp) = match &args.data {
                    Some(dir) => (open_db(dir)?, None),
                    None => {
                        let temp = tempfile::Builder::new()
                            .prefix("blackboard-mcp-")
                            .tempdir()
                            .context("creating a temporary replica store")?;
                        (open_db(temp.path())?, Some(temp))
                    }
                };
                let leases = Arc::new(JetStreamLeases::new(client.clone(), 1));
                let log = Arc::new(JetStreamLog::new(client, JetStreamConfig::default()));
                (log, leases, db, None, temp)
            }
            (None, Some(dir)) => {
                // The same layout and errors as the CLI's `--store`.
                let db = crate::cli::open::open_store(dir, true)?;
                let log = Arc::new(EmbeddedLog::open(db.clone())?);
                let leases = Arc::new(EmbeddedLeases::new(db.clone()));
                (log, leases, db.clone(), Some(db), None)
            }
            (None, None) => anyhow::bail!("give --nats URL or --store DIR"),
        };
        let claims_bucket = leases
            .open(&subject::claims_bucket(&args.space))
            .await
            .context("opening the space's claims")?;
        let presence_bucket = leases
            .open(&subject::presence_bucket(&args.space))
            .await
            .context("opening the space's presence")?;
        let presence = Presence::new(
            presence_bucket,
            args.agent.clone(),
            None,
            presence::Config::default(),
        )?;
        let membership = presence
            .join(Some("connected over MCP"))
            .await
            .context("joining the space's presence")?;
        Ok(Arc::new(Board {
            agent: args.agent.clone(),
            space: args.space.clone(),
            claims: Claims::new(claims_bucket, args.agent.clone()),
            presence,
            log,
            timeout: Duration::from_secs(args.timeout),
            db,
            log_db,
            docs: Mutex::default(),
            held: Mutex::default(),
            membership: Mutex::new(Some(membership)),
            _temp: temp,
        }))
    }

    /// The replica of `name`, opened (and kept, following the log) on first use. Opening
    /// creates nothing on the log.
    pub async fn replica(&self, name: &str) -> Result<Replica, ToolError> {
        let id: DocumentId = name
            .parse()
            .map_err(|e| ToolError::new(format!("bad document name {name:?}: {e}")))?;
        let mut docs = self.docs.lock().await;
        if let Some(r) = docs.get(&id) {
            return Ok(r.clone());
        }
        let config = Config::new(self.space.clone(), id.clone(), self.agent.clone());
        let replica = Replica::open(self.log.clone(), &self.db, config)
            .map_err(|e| ToolError::new(format!("opening document {name}: {e}")))?;
        docs.insert(id, replica.clone());
        Ok(replica)
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

    /// Waits for this agent's changes to reach the log, then catches up, so the position
    /// returned covers them.
    pub async fn settle(&self, replica: &Replica) -> Result<Position, ToolError> {
        match tokio::time::timeout(self.timeout, replica.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(ToolError::new(format!(
                    "the change was made locally but the log refused it: {e}"
                )))
            }
            Err(_) => {
                return Err(ToolError::new(format!(
                    "the change was made and is queued, but the log did not acknowledge it \
                     within {} s; it will be published when the log is reachable",
                    self.timeout.as_secs()
                )))
            }
        }
        self.catch_up(replica).await
    }

    /// Leaves presence, closes the replicas, flushes local state.
    pub async fn close(&self) {
        if let Some(m) = self.membership.lock().await.take() {
            // Bounded: with the log gone, others see this agent leave by its timeout anyway.
            match tokio::time::timeout(Duration::from_secs(2), m.leave()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::info!(error = %e, "could not leave presence"),
                Err(_) => tracing::info!("leaving presence timed out"),
            }
        }
        let docs: Vec<Replica> = self.docs.lock().await.drain().map(|(_, r)| r).collect();
        for r in docs {
            if let Err(e) = r.close().await {
                tracing::warn!(error = %e, "closing a replica");
            }
        }
        if let Some(db) = &self.log_db {
            if let Err(e) = blackboard::store::flush_db(db).await {
                tracing::warn!(error = %e, "flushing the store");
            }
        }
    }
}

fn open_db(dir: &FsPath) -> anyhow::Result<sled::Db> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    sled::open(dir).with_context(|| {
        format!(
            "opening {} (only one process can open a store at a time)",
            dir.display()
        )
    })
}
