//! The board: an agent's connection to the shared documents.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use blackboard::codec::Stamp;
use blackboard::lease::{EmbeddedLeases, LeaseBuckets};
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
    /// What every replica of the board is opened with.
    settings: Settings,
    /// Where claims and presence keep their leases (JetStream KV, or sled).
    leases: Arc<dyn LeaseBuckets>,
    /// Open replicas, shared by every board over the same store: two replicas on one sled
    /// tree would hand out the same outbox slots.
    docs: Arc<Mutex<HashMap<ReplicaKey, Replica>>>,
    /// The JetStream log of a board opened with [`Options::connect`](crate::Options::connect):
    /// its connection's state, and questions the event log does not answer (does a space's
    /// stream exist?).
    nats: Option<blackboard::log::JetStreamLog>,
}

type ReplicaKey = (AgentId, SpaceId, DocumentId);

/// What [`Options`](crate::Options) sets on every replica a board opens (`None`: the
/// replica's default).
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    pub(crate) watch_capacity: Option<usize>,
    pub(crate) snapshots: Option<blackboard::replica::SnapshotPolicy>,
    pub(crate) durability: replica::Durability,
    /// The agent's key and default provenance, stamped on every envelope its replicas build.
    pub(crate) stamp: Stamp,
    /// The admin keys a space's first roster must be signed by, given to every replica
    /// ([`Options::pinned_admins`](crate::Options::pinned_admins)).
    pub(crate) pinned_admins: Option<Vec<String>>,
    /// [`Options::coalesce_writes`](crate::Options::coalesce_writes).
    pub(crate) coalesce_writes: bool,
}

impl Settings {
    /// `config` with these settings.
    fn apply(&self, config: &mut replica::Config) {
        if let Some(n) = self.watch_capacity {
            config.watch_capacity = n;
        }
        if let Some(p) = &self.snapshots {
            config.snapshots = p.clone();
        }
        config.durability = self.durability;
        config.stamp = self.stamp.clone();
        config.pinned_admins = self.pinned_admins.clone();
        config.coalesce_writes = self.coalesce_writes;
    }
}

impl Board {
    /// A board over any event log and an open sled database (for tests, or to share one
    /// embedded log between several agents of one process). Its claims and presence live in
    /// the same database ([`EmbeddedLeases`]); see [`with_leases`](Self::with_leases).
    pub fn with_log(agent: AgentId, log: Arc<dyn EventLog>, db: sled::Db) -> Self {
        let leases = Arc::new(EmbeddedLeases::new(db.clone()));
        Self {
            inner: Arc::new(Inner {
                agent,
                log,
                db,
                settings: Settings::default(),
                leases,
                docs: Arc::default(),
                nats: None,
            }),
        }
    }

    /// This board with its claims and presence kept in `leases` (for example
    /// [`JetStreamLeases`](blackboard::lease::JetStreamLeases) beside a JetStream log).
    pub fn with_leases(self, leases: Arc<dyn LeaseBuckets>) -> Self {
        let inner = Inner {
            agent: self.inner.agent.clone(),
            log: self.inner.log.clone(),
            db: self.inner.db.clone(),
            settings: self.inner.settings.clone(),
            leases,
            docs: self.inner.docs.clone(),
            nats: self.inner.nats.clone(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// A board for another agent of this process, sharing this board's log connection and
    /// local store (each agent keeps its own replicas in it). It signs with this board's key
    /// (the connection's identity), if it has one: a space's roster accepts those changes
    /// only if it lists that key for `agent`.
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
        Ok(Self {
            inner: Arc::new(Inner {
                agent: agent.parse()?,
                log: self.inner.log.clone(),
                db: self.inner.db.clone(),
                settings: self.inner.settings.clone(),
                leases: self.inner.leases.clone(),
                docs: self.inner.docs.clone(),
                nats: self.inner.nats.clone(),
            }),
        })
    }

    /// The documents of `space` that have events on the log, in name order, each with how
    /// many events the log holds for it. A space nobody wrote to has none.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use blackboard_client::Options;
    /// # let dir = tempfile::tempdir()?;
    /// let board = Options::new("planner")?.store(dir.path()).embedded().await?;
    /// let tasks = board.doc("team", "tasks")?;
    /// tasks.put("/title", serde_json::json!("write the plan")).await?;
    /// tasks.flush().await?;
    /// let listed = board.list_documents("team").await?;
    /// assert_eq!(listed[0].document.as_str(), "tasks");
    /// assert_eq!(listed[0].events, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn list_documents(&self, space: &str) -> Result<Vec<crate::DocumentSummary>, Error> {
        let space: SpaceId = space.parse()?;
        Ok(self
            .inner
            .log
            .list(&space)
            .await
            .map_err(blackboard::Error::from)?)
    }

    /// Watches every document of `space`, present and future, for changes under `pattern`.
    /// Each document is opened as it is discovered; `options` apply to each (a durable name
    /// keeps one position per document). [`Start::Now`](crate::Start::Now) means the
    /// space's position when this is called; [`Start::After`](crate::Start::After) takes
    /// only the position's sequence, since heads belong to one document.
    pub async fn watch_space(
        &self,
        space: &str,
        pattern: &str,
        options: crate::WatchOptions,
    ) -> Result<crate::SpaceWatch, Error> {
        let space: SpaceId = space.parse()?;
        let pattern: crate::Pattern = pattern.parse()?;
        let (now, documents) = self
            .inner
            .log
            .documents(&space)
            .await
            .map_err(blackboard::Error::from)?;
        Ok(crate::space_watch::spawn(
            self.clone(),
            space,
            pattern,
            options,
            now,
            documents,
        ))
    }

    /// The documents of `space` by name, as they come: every document that has events now,
    /// then each document again whenever an event arrives for it (so repeats are normal),
    /// with the space's last position when this is called. No document is opened: this is
    /// one headers-only subscription however many documents the space holds, where
    /// [`watch_space`](Self::watch_space) opens and follows every one. For noticing new
    /// documents.
    pub async fn document_names(
        &self,
        space: &str,
    ) -> Result<
        (
            u64,
            futures::stream::BoxStream<'static, Result<DocumentId, Error>>,
        ),
        Error,
    > {
        use futures::StreamExt as _;
        let space: SpaceId = space.parse()?;
        let (now, names) = self
            .inner
            .log
            .documents(&space)
            .await
            .map_err(blackboard::Error::from)?;
        let names = names.map(|name| name.map_err(|e| Error::from(blackboard::Error::from(e))));
        Ok((now, names.boxed()))
    }

    /// The claims of `space`: leases on named resources, so that one agent at a time works
    /// on each. Made as this board's agent. See [`Claims`](crate::Claims).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use blackboard_client::{ClaimError, Options};
    /// # let dir = tempfile::tempdir()?;
    /// let board = Options::new("w1")?.store(dir.path()).embedded().await?;
    /// let claims = board.claims("team").await?;
    /// let claim = claims.claim("task-7", Duration::from_secs(10)).await?; // holder, token, expiry
    /// let other = board.as_agent("w2")?.claims("team").await?;
    /// assert!(matches!(other.claim("task-7", Duration::from_secs(10)).await, Err(ClaimError::Held { .. })));
    /// let claim = claims.renew(&claim).await?;
    /// claims.release(claim).await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn claims(&self, space: &str) -> Result<crate::Claims, Error> {
        let space: SpaceId = space.parse()?;
        let bucket = self
            .inner
            .leases
            .open(&blackboard::schemas::subject::claims_bucket(&space))
            .await
            .map_err(blackboard::claim::ClaimError::from)?;
        Ok(crate::Claims::new(bucket, self.inner.agent.clone()))
    }

    /// Presence on `document` of `space` (or on the whole space for `None`), with the default
    /// heartbeat (2 s) and timeout (6 s). See [`Presence`](crate::Presence).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// let board = blackboard_client::Options::new("w1")?.store(dir.path()).embedded().await?;
    /// let here = board.presence("team", Some("plan")).await?;
    /// let me = here.join(Some("reviewing")).await?; // heartbeats until left or dropped
    /// assert_eq!(here.members().await?[0].agent.as_str(), "w1");
    /// me.leave().await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn presence(
        &self,
        space: &str,
        document: Option<&str>,
    ) -> Result<crate::Presence, Error> {
        self.presence_with(space, document, crate::PresenceConfig::default())
            .await
    }

    /// Like [`presence`](Self::presence), with another heartbeat interval and timeout.
    pub async fn presence_with(
        &self,
        space: &str,
        document: Option<&str>,
        config: crate::PresenceConfig,
    ) -> Result<crate::Presence, Error> {
        let space: SpaceId = space.parse()?;
        let document = document.map(str::parse::<DocumentId>).transpose()?;
        let bucket = self
            .inner
            .leases
            .open(&blackboard::schemas::subject::presence_bucket(&space))
            .await
            .map_err(blackboard::presence::PresenceError::from)?;
        Ok(crate::Presence::new(
            bucket,
            self.inner.agent.clone(),
            document,
            config,
        )?)
    }

    pub(crate) fn with_settings(self, settings: Settings) -> Self {
        let inner = Inner {
            agent: self.inner.agent.clone(),
            log: self.inner.log.clone(),
            db: self.inner.db.clone(),
            settings,
            leases: self.inner.leases.clone(),
            docs: self.inner.docs.clone(),
            nats: self.inner.nats.clone(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// This board with `log`, the JetStream log whose connection its leases use too.
    pub(crate) fn with_nats(self, log: blackboard::log::JetStreamLog) -> Self {
        let inner = Inner {
            agent: self.inner.agent.clone(),
            log: self.inner.log.clone(),
            db: self.inner.db.clone(),
            settings: self.inner.settings.clone(),
            leases: self.inner.leases.clone(),
            docs: self.inner.docs.clone(),
            nats: Some(log),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Whether `space` exists on the log, found out without creating it: over JetStream,
    /// whether the space's stream is there (someone wrote to the space, or created it); the
    /// embedded log has every space (one nobody wrote to is empty). A reader that must not
    /// leave a stream behind asks this before opening a document.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// let board = blackboard_client::Options::new("reader")?.store(dir.path()).embedded().await?;
    /// assert!(board.space_exists("team").await?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn space_exists(&self, space: &str) -> Result<bool, Error> {
        use async_nats::jetstream::{context::GetStreamErrorKind, ErrorCode};

        let space: SpaceId = space.parse()?;
        let Some(log) = &self.inner.nats else {
            return Ok(true);
        };
        let stream = blackboard::schemas::subject::stream_name(&space);
        match async_nats::jetstream::new(log.client())
            .get_stream(&stream)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(false)
                }
                _ => Err(Error::Stream { stream, source: e }),
            },
        }
    }

    /// Whether the board reaches its log now: over NATS, whether the connection to the
    /// server is up (it is made and remade in the background); an embedded board always
    /// does. Writes never need it: they are kept in the local store until published.
    pub fn is_connected(&self) -> bool {
        self.inner
            .nats
            .as_ref()
            .is_none_or(|log| log.is_connected())
    }

    /// Waits until [`is_connected`](Self::is_connected) holds (at once if it does); bound it
    /// with `tokio::time::timeout`.
    pub async fn connected(&self) {
        if let Some(log) = &self.inner.nats {
            log.connected().await;
        }
    }

    pub(crate) fn log(&self) -> &Arc<dyn EventLog> {
        &self.inner.log
    }

    /// The agent's key, if the board has one.
    pub(crate) fn key(&self) -> Option<&blackboard::schemas::nkeys::KeyPair> {
        self.inner.settings.stamp.key.as_deref()
    }

    /// The board's stamp (key and provenance), for tests that build a second board.
    #[cfg(test)]
    pub(crate) fn inner_stamp(&self) -> Stamp {
        self.inner.settings.stamp.clone()
    }

    /// The admin keys a space's first roster must be signed by (`None`: not pinned).
    pub fn pinned_admins(&self) -> Option<Vec<String>> {
        self.inner.settings.pinned_admins.clone()
    }

    /// The agent this board writes as.
    pub fn agent(&self) -> &AgentId {
        &self.inner.agent
    }

    /// Opens document `document` in `space`, resuming from local state if there is any.
    /// Opening the same document again returns a handle to the same replica.
    pub fn doc(&self, space: &str, document: &str) -> Result<Doc, Error> {
        let key = (
            self.inner.agent.clone(),
            space.parse::<SpaceId>()?,
            document.parse::<DocumentId>()?,
        );
        let mut docs = self.inner.docs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = docs.get(&key) {
            return Ok(Doc::new(r.clone()));
        }
        let mut config = replica::Config::new(key.1.clone(), key.2.clone(), key.0.clone());
        self.inner.settings.apply(&mut config);
        let r = Replica::open(self.inner.log.clone(), &self.inner.db, config)?;
        docs.insert(key, r.clone());
        Ok(Doc::new(r))
    }

    /// Opens every document of this agent whose store holds writes the log has not
    /// acknowledged, so they are published now rather than when the document is next opened
    /// (an agent restarted during an outage may never open that document again). Called when
    /// the board opens; a document that cannot be opened is reported and left for the caller
    /// to meet when it opens it.
    pub(crate) fn open_unpublished(&self) {
        let pending = match blackboard::store::unpublished(&self.inner.db, &self.inner.agent) {
            Ok(pending) => pending,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the documents with unpublished writes");
                return;
            }
        };
        for (space, document) in pending {
            match self.doc(space.as_str(), document.as_str()) {
                Ok(_) => tracing::info!(
                    %space, %document,
                    "opened to publish the writes its store holds for the log"
                ),
                Err(e) => tracing::warn!(
                    %space, %document, error = %e,
                    "cannot open this document to publish its unpublished writes"
                ),
            }
        }
    }

    /// Closes this agent's open documents and makes local state durable. Changes the log has
    /// not acknowledged stay in the outbox and are published when the store is next opened;
    /// call [`Doc::flush`] first to wait for them instead.
    pub async fn close(self) -> Result<(), Error> {
        let docs: Vec<Replica> = {
            let mut all = self.inner.docs.lock().unwrap_or_else(|p| p.into_inner());
            let mine: Vec<ReplicaKey> = all
                .keys()
                .filter(|k| k.0 == self.inner.agent)
                .cloned()
                .collect();
            mine.iter().filter_map(|k| all.remove(k)).collect()
        };
        for r in docs {
            r.close().await?;
        }
        blackboard::store::flush_db(&self.inner.db)
            .await
            .map_err(|e| blackboard::Error::from(blackboard::store::StoreError::from(e)))?;
        Ok(())
    }
}
