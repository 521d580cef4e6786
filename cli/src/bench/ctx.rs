//! What every scenario shares: the run's connections, replicas and temporary stores, and
//! histories built in-process.

use std::future::Future;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use blackboard::codec;
use blackboard::doc::{json, DocCore, Path};
use blackboard::log::{EventLog, JetStreamConfig, JetStreamLog};
use blackboard::replica::{Config, Replica, SnapshotPolicy};
use blackboard::schemas::{AgentId, DocumentId, SpaceId};
use blackboard::watch::Watch;
use bytes::Bytes;
use futures::StreamExt;

use super::table::Lat;
use super::{value, Args, Setup, Sizes};

/// How the run's connections authenticate (`--creds`, `--key` or their variables), as the
/// SDK's options: the SDK builds every connection's options, so the bench authenticates
/// exactly as an agent does.
pub(super) fn nats_options(args: &Args) -> anyhow::Result<blackboard_client::Options> {
    let mut options = blackboard_client::Options::new("bench")?;
    if let Some(creds) = args.server.creds_file() {
        options = options.credentials_file(creds);
    } else if let Some(key) = args.server.key_file() {
        options = options
            .key_file(&key)
            .with_context(|| format!("the key file {}", key.display()))?;
    }
    Ok(options)
}

/// The flags a watcher process needs to connect as the run does.
pub(super) fn child_flags(args: &Args) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(creds) = &args.server.creds {
        flags.extend(["--creds".to_owned(), creds.display().to_string()]);
    }
    if let Some(key) = &args.server.key {
        flags.extend(["--key".to_owned(), key.display().to_string()]);
    }
    flags
}

/// A connection to `url` with `options`' authentication, once the server has answered (the
/// SDK's options retry the first connection for ever; a bench should fail instead): a
/// server that is not there, or that refuses the credentials, fails within ten seconds,
/// naming the URL.
pub(super) async fn connect(
    options: &blackboard_client::Options,
    url: &str,
) -> anyhow::Result<async_nats::Client> {
    let redacted = blackboard::log::redact_url(url);
    let nats = options
        .nats_options(url)
        .await
        .with_context(|| format!("connection options for {redacted}"))?;
    let client = async_nats::connect_with_options(url, nats)
        .await
        .with_context(|| format!("connect to {redacted}"))?;
    // A flush is a round trip: it returns once the connection is up and the server answered.
    tokio::time::timeout(Duration::from_secs(10), client.flush())
        .await
        .map_err(|_| {
            anyhow!(
                "no answer from {redacted} within 10 s: is the server there, and does it accept \
                 these credentials?"
            )
        })?
        .with_context(|| format!("connect to {redacted}"))?;
    Ok(client)
}

/// A JetStream log on a connection of its own to `url`, opened as the SDK opens one: with
/// `options`' connection options, through [`JetStreamLog::connect`], which listens to the
/// connection's events (a log over a bare client cannot hear reconnects, and would measure
/// recovery after a restart as the client's 15 s heartbeat timeout).
pub(super) async fn js_log(
    options: &blackboard_client::Options,
    url: &str,
    config: &JetStreamConfig,
) -> anyhow::Result<JetStreamLog> {
    let redacted = blackboard::log::redact_url(url);
    let nats = options
        .nats_options(url)
        .await
        .with_context(|| format!("connection options for {redacted}"))?;
    let log = JetStreamLog::connect(url, nats, config.clone())
        .await
        .with_context(|| format!("connect to {redacted}"))?;
    tokio::time::timeout(Duration::from_secs(10), log.connected())
        .await
        .map_err(|_| anyhow!("no connection to {redacted} within 10 s"))?;
    Ok(log)
}

/// What every scenario needs.
pub(super) struct Ctx {
    pub url: String,
    /// The SDK options every connection is made with (authentication).
    pub nats: blackboard_client::Options,
    /// The engine's JetStream settings (replicas of the streams it creates).
    pub jetstream: JetStreamConfig,
    pub setup: Setup,
    /// `--creds`/`--key`, passed on to watcher processes.
    pub child_flags: Vec<String>,
    pub sizes: Sizes,
    pub quick: bool,
    pub space: SpaceId,
    /// Temporary directory for sled stores (on `$TMPDIR`'s disk).
    pub dir: tempfile::TempDir,
    /// Raw baseline stream and subject prefix.
    pub raw_stream: String,
    pub raw_prefix: String,
    /// The JetStream log and client used to publish histories.
    pub main: async_nats::Client,
    pub log: Arc<JetStreamLog>,
    /// The size of one live event (the raw baselines publish payloads this long).
    pub payload_len: usize,
    /// Results shared between scenarios.
    pub propagation_js: Option<Lat>,
    pub throughput_js: Option<f64>,
    pub counter: usize,
    /// The replicas' snapshot policy (`--snapshots`).
    pub snapshots: SnapshotPolicy,
}

impl Ctx {
    pub fn doc_id(&self, name: &str) -> DocumentId {
        name.parse().expect("a valid document id")
    }

    /// A fresh directory for one sled database.
    pub fn store_dir(&mut self, name: &str) -> PathBuf {
        self.counter += 1;
        self.dir.path().join(format!("{}-{name}", self.counter))
    }

    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        connect(&self.nats, &self.url).await
    }

    /// Awaits `create`, a JetStream API request made on the main connection (whose refusals
    /// its log hears): a server that refuses it fails this at once, naming the refused
    /// request, instead of after a five-second timeout. `what` names it in errors.
    pub async fn created_on_main<T, E>(
        &self,
        what: &str,
        create: impl std::future::Future<Output = Result<T, E>>,
    ) -> anyhow::Result<T>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let created = self.log.refusals().guard("$JS.API.STREAM", create).await;
        created
            .with_context(|| format!("create {what}"))?
            .with_context(|| format!("create {what}"))
    }

    /// A JetStream log on a connection of its own, opened as the SDK opens one (its
    /// connection options, listening to the connection's events).
    pub async fn js_log(&self) -> anyhow::Result<Arc<dyn EventLog>> {
        Ok(Arc::new(
            js_log(&self.nats, &self.url, &self.jetstream).await?,
        ))
    }

    pub fn config(&self, document: &str, agent: &str) -> Config {
        let mut c = Config::new(
            self.space.clone(),
            self.doc_id(document),
            agent.parse().expect("a valid agent id"),
        );
        c.snapshots = self.snapshots.clone();
        c
    }

    /// A replica of `document` on `log`, with a sled database of its own under `dir`.
    pub async fn replica_in(
        &self,
        log: Arc<dyn EventLog>,
        dir: &FsPath,
        document: &str,
        agent: &str,
    ) -> anyhow::Result<(Replica, sled::Db)> {
        open_in(log, dir, self.config(document, agent))
    }

    /// A replica of `document` on its own connection and its own sled database.
    pub async fn replica(
        &mut self,
        document: &str,
        agent: &str,
    ) -> anyhow::Result<(Replica, sled::Db)> {
        self.replica_with(document, agent, |_| {}).await
    }

    /// [`replica`](Self::replica) with its configuration `tune`d (its writes' durability,
    /// coalescing).
    pub async fn replica_with(
        &mut self,
        document: &str,
        agent: &str,
        tune: impl FnOnce(&mut Config),
    ) -> anyhow::Result<(Replica, sled::Db)> {
        let dir = self.store_dir(agent);
        let log = self.js_log().await?;
        let mut config = self.config(document, agent);
        tune(&mut config);
        open_in(log, &dir, config)
    }

    pub fn raw_subject(&self, name: &str) -> String {
        format!("{}.{name}", self.raw_prefix)
    }
}

/// A replica opened with `config` on `log`, with a sled database of its own in `dir`.
pub(super) fn open_in(
    log: Arc<dyn EventLog>,
    dir: &FsPath,
    config: Config,
) -> anyhow::Result<(Replica, sled::Db)> {
    // As the SDK opens a store: with its seal, written after every fsync.
    let db = blackboard::store::open_db(dir)
        .with_context(|| format!("open the store at {}", dir.display()))?;
    let replica = Replica::open(log, &db, config)?;
    Ok((replica, db))
}

/// A document's history built in-process: `n` changes of the shape `Replica::put` makes
/// (`/k<i % keys>` = a 100-character string), by one agent, as events.
pub(super) struct History {
    pub changes: Vec<Vec<u8>>,
    pub events: Vec<(String, Bytes)>,
}

pub(super) fn build_history(
    space: &SpaceId,
    document: &DocumentId,
    n: usize,
    keys: usize,
) -> anyhow::Result<History> {
    let agent: AgentId = "seed".parse().expect("a valid agent id");
    let mut core = DocCore::new();
    let keys = keys.max(1);
    let paths: Vec<Path> = (0..keys)
        .map(|k| format!("/k{k}").parse().expect("a valid path"))
        .collect();
    let mut changes = Vec::with_capacity(n);
    let mut events = Vec::with_capacity(n);
    let time = 1_700_000_000_000;
    for i in 0..n {
        let ((), local) =
            core.transact(time, None, |tx| json::put(tx, &paths[i % keys], &value(i)))?;
        let local = local.ok_or_else(|| anyhow!("a put changed nothing"))?;
        let envelope = codec::encode_event(space, document, &agent, &local, time, None).encode();
        events.push((local.hash.to_string(), Bytes::from(envelope)));
        changes.push(local.bytes);
    }
    Ok(History { changes, events })
}

/// Publishes events to `log`, pipelined in batches; returns the position of the last one.
pub(super) async fn publish_events(
    log: &dyn EventLog,
    space: &SpaceId,
    document: &DocumentId,
    events: &[(String, Bytes)],
) -> anyhow::Result<u64> {
    let mut last = 0;
    for chunk in events.chunks(1024) {
        for result in log.publish_batch(space, document, chunk.to_vec()).await {
            last = result.context("publish a history event")?.seq;
        }
    }
    Ok(last)
}

/// Waits for `f` with a generous limit, so a stuck scenario fails instead of hanging.
pub(super) async fn within<T>(what: &str, f: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(600), f)
        .await
        .map_err(|_| anyhow!("timed out waiting for {what}"))
}

pub(super) async fn next_event(watch: &mut Watch) -> anyhow::Result<()> {
    match watch.next().await {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(e.into()),
        None => bail!("the watch ended"),
    }
}

// ---------------------------------------------------------------------------------------
// Raw JetStream baselines.
