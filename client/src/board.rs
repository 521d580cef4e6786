//! The board: an agent's connection to the shared documents.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use blackboard::log::EventLog;
use blackboard::replica::{self, Replica};
use blackboard::schemas::{AgentId, DocumentId, SpaceId};

use crate::{Doc, Error};

/// An agent's handle on the blackboard. Cheap to clone.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use blackboard_client::Options;
/// use serde_json::json;
///
/// let dir = tempfile::tempdir()?;
/// let board = Options::new("writer")?.store(dir.path()).embedded().await?;
/// let doc = board.doc("team", "plan")?;
/// doc.put("/goal", json!("ship it")).await?;
/// assert_eq!(doc.get("/goal")?, Some(json!("ship it")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Board {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    agent: AgentId,
    log: Arc<dyn EventLog>,
    db: sled::Db,
    docs: Mutex<HashMap<(SpaceId, DocumentId), Replica>>,
}

impl Board {
    /// A board over any event log and an open sled database (for tests, or to share one
    /// embedded log between several agents of one process).
    pub fn with_log(agent: AgentId, log: Arc<dyn EventLog>, db: sled::Db) -> Self {
        Self {
            inner: Arc::new(Inner {
                agent,
                log,
                db,
                docs: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A board for another agent of this process, sharing this board's log connection and
    /// local store (each agent keeps its own replicas in it).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// let planner = blackboard_client::Options::new("planner")?.store(dir.path()).embedded().await?;
    /// let worker = planner.as_agent("worker")?;
    /// let hash = planner.doc("team", "tasks")?.put("/1", "todo".into()).await?.unwrap();
    /// let tasks = worker.doc("team", "tasks")?;
    /// tasks.wait_for(&[hash]).await?;
    /// assert_eq!(tasks.get("/1")?, Some("todo".into()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn as_agent(&self, agent: &str) -> Result<Board, Error> {
        Ok(Self::with_log(
            agent.parse()?,
            self.inner.log.clone(),
            self.inner.db.clone(),
        ))
    }

    /// The agent this board writes as.
    pub fn agent(&self) -> &AgentId {
        &self.inner.agent
    }

    /// Opens document `document` in `space`, resuming from local state if there is any.
    /// Opening the same document again returns a handle to the same replica.
    pub fn doc(&self, space: &str, document: &str) -> Result<Doc, Error> {
        let key = (space.parse::<SpaceId>()?, document.parse::<DocumentId>()?);
        let mut docs = self.inner.docs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = docs.get(&key) {
            return Ok(Doc::new(r.clone()));
        }
        let config = replica::Config::new(key.0.clone(), key.1.clone(), self.inner.agent.clone());
        let r = Replica::open(self.inner.log.clone(), &self.inner.db, config)?;
        docs.insert(key, r.clone());
        Ok(Doc::new(r))
    }

    /// Waits until every open document's local changes are acknowledged by the log, then
    /// closes them and makes local state durable.
    pub async fn close(self) -> Result<(), Error> {
        let docs: Vec<Replica> = self
            .inner
            .docs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, r)| r)
            .collect();
        for r in docs {
            r.close().await?;
        }
        self.inner
            .db
            .flush_async()
            .await
            .map_err(|e| blackboard::Error::from(blackboard::store::StoreError::from(e)))?;
        Ok(())
    }
}
