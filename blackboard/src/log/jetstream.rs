//! The JetStream event log.
//!
//! One stream per space, `BB_<space>`, over the subjects `bb.<space>.>` (see
//! `blackboard_schemas::subject`). The stream is created on first use with file storage, the
//! configured replicas and duplicate window; an existing stream is verified instead, and a
//! configuration that would break the log's promises is an error, never silently changed.
//! Only publishing creates the stream (and `put_snapshot` the snapshot bucket): reads of a
//! space that has none answer "nothing yet" (see the contract in [`super`]). A subscription
//! to such a space waits for the stream-created advisory (`$JS.EVENT.ADVISORY.STREAM.
//! CREATED.<stream>`), checking again every few seconds in case advisories are not
//! delivered, then goes live from the start.
//!
//! Errors are classified as async-nats does (each call has its own error kind): timeouts,
//! a lost connection and "no responders" are [`Error::Unavailable`] (transient: the callers
//! that retry do); JetStream API errors are [`Error::Refused`] unless the server says it is
//! temporarily unavailable (503, cluster or raft trouble); and a permissions violation the
//! server reports on the connection (a log opened with [`JetStreamLog::connect`] hears
//! them) fails the call at once as [`Error::Denied`], where it would otherwise wait out the
//! acknowledgement timeout and be retried forever.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, object_store, stream};
use async_trait::async_trait;
use blackboard_schemas::{subject, DocumentId, SpaceId};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::broadcast;

use super::{
    DocumentStream, DocumentSummary, Entry, EntryStream, Error, EventLog, Published, SnapshotInfo,
    Topic,
};

/// How the JetStream log sets up its streams.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long the server remembers a message id to drop re-publishes. The outbox may
    /// re-publish after a reconnect, so this should outlast a typical outage.
    pub duplicate_window: Duration,
    /// Stream replicas: 1 on a single server, 3 or 5 on a cluster.
    pub replicas: usize,
    /// How long to wait for a publish acknowledgement before reporting the log unavailable.
    pub ack_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            duplicate_window: Duration::from_secs(10 * 60),
            replicas: 1,
            ack_timeout: Duration::from_secs(5),
        }
    }
}

/// The JetStream event log. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JetStreamLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    js: jetstream::Context,
    config: Config,
    /// Spaces whose stream has been created or verified by this process.
    ready: Mutex<HashSet<SpaceId>>,
    /// The permissions violations and refused credentials the server reports on the
    /// connection (only for a log opened with [`JetStreamLog::connect`]; nothing is ever
    /// sent otherwise).
    refusals: Refusals,
    /// How many times the connection has (re)connected, as heard from the connection's events
    /// (only for a log opened with [`JetStreamLog::connect`]). A subscription ends when this
    /// moves, so its reader resubscribes at once after a server restart instead of waiting for
    /// the client to notice that the server-side consumer is gone.
    connects: tokio::sync::watch::Sender<u64>,
}

/// What a server says out of band on a connection: permissions violations and refused
/// credentials. A JetStream API request the server refuses is otherwise only a timeout, five
/// seconds later and indistinguishable from a slow server. Cheap to clone; from
/// [`JetStreamLog::refusals`] (a log made with [`JetStreamLog::new`] hears nothing, so its
/// guard never fires).
///
/// ```no_run
/// # async fn f(log: blackboard::log::JetStreamLog) -> Result<(), Box<dyn std::error::Error>> {
/// let refusals = log.refusals();
/// let client = log.client();
/// // A refused request fails at once, naming the server's reason.
/// let reply = refusals
///     .guard("$JS.API.INFO", client.request("$JS.API.INFO", "".into()))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Refusals {
    /// The permissions violations the server reports.
    violations: broadcast::Sender<String>,
    /// Why the server refused the connection's credentials on the last attempt, until a
    /// connection succeeds.
    credentials: tokio::sync::watch::Sender<Option<String>>,
}

impl Refusals {
    /// Runs `call`, ending it with [`Error::Denied`] as soon as the server reports a
    /// permissions violation naming `subject` while it runs, and with
    /// [`Error::Credentials`] while the server refuses the connection's credentials.
    pub async fn guard<T>(&self, subject: &str, call: impl Future<Output = T>) -> Result<T, Error> {
        let mut violations = self.violations.subscribe();
        let mut credentials = self.credentials.subscribe();
        let refused = async {
            let refused = credentials
                .wait_for(Option::is_some)
                .await
                .map(|message| message.clone().unwrap_or_default());
            match refused {
                Ok(message) => message,
                // `new` logs never report refusals.
                Err(_) => std::future::pending().await,
            }
        };
        let denied = async {
            loop {
                match violations.recv().await {
                    Ok(message) if violates(&message, subject) => return message,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    // `new` logs never report violations.
                    Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                }
            }
        };
        tokio::select! {
            result = call => Ok(result),
            message = denied => Err(Error::Denied(message)),
            message = refused => Err(Error::Credentials(message)),
        }
    }
}

/// How long [`JetStreamLog::connect`] waits for the first connection attempt's outcome, so
/// that credentials the server refuses fail it at once; an unreachable server does not fail
/// it (the connection is retried in the background).
const FIRST_ATTEMPT_WAIT: Duration = Duration::from_secs(2);

/// `url` with the password of any `user:password@` in it replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let host_start = rest.find('/').unwrap_or(rest.len());
    match rest[..host_start].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Whether a connection error (async-nats's `ConnectErrorKind` as text) says the server
/// refused the credentials rather than could not be reached.
fn refuses_credentials(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("authorization violation") || message.contains("failed signing nonce")
}

/// How often a subscription to a space without a stream checks again, in case the
/// stream-created advisory is not delivered (no permission to subscribe to it, say).
const STREAM_RECHECK: Duration = Duration::from_secs(2);

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(e.to_string())
}

/// Classifies an error answer of the JetStream API: the server being temporarily unable
/// (503, no cluster leader, raft trouble, a stream not there yet) is transient; anything
/// else (bad configuration, limits, names) is the server refusing, for good.
fn api(e: &jetstream::Error) -> Error {
    use jetstream::ErrorCode as C;
    let transient = e.code() == 503
        || e.code() == 408
        || [
            C::CLUSTER_NOT_AVAILABLE,
            C::CLUSTER_INCOMPLETE,
            C::CLUSTER_NO_PEERS,
            C::RAFT_GENERAL,
            C::STREAM_NOT_FOUND,
        ]
        .contains(&e.error_code());
    if transient {
        unavailable(e)
    } else {
        Error::Refused(e.to_string())
    }
}

fn create_stream_error(e: jetstream::context::CreateStreamError) -> Error {
    use jetstream::context::CreateStreamErrorKind as K;
    match e.kind() {
        K::JetStream(js) => api(&js),
        K::TimedOut | K::Response | K::JetStreamUnavailable | K::NotFound => unavailable(e),
        K::EmptyStreamName | K::InvalidStreamName | K::DomainAndExternalSet | K::ResponseParse => {
            Error::Refused(e.to_string())
        }
    }
}

fn get_stream_error(e: jetstream::context::GetStreamError) -> Error {
    use jetstream::context::GetStreamErrorKind as K;
    match e.kind() {
        K::JetStream(js) => api(&js),
        K::Request => unavailable(e),
        K::EmptyName | K::InvalidStreamName => Error::Refused(e.to_string()),
    }
}

fn consumer_error(e: stream::ConsumerError) -> Error {
    use stream::ConsumerErrorKind as K;
    match e.kind() {
        K::JetStream(js) => api(&js),
        K::TimedOut | K::Request | K::Other => unavailable(e),
        K::InvalidConsumerType | K::InvalidName => Error::Refused(e.to_string()),
    }
}

/// Whether the server's error message is a permissions violation concerning `subject`
/// (`Permissions Violation for Publish to "bb.team.doc.plan.ch"`).
fn violates(message: &str, subject: &str) -> bool {
    message
        .to_ascii_lowercase()
        .contains("permissions violation")
        && message.contains(subject)
}

impl JetStreamLog {
    /// A log over an existing NATS connection.
    ///
    /// A permissions violation on this connection is reported by the server out of band;
    /// a log made here cannot hear it, so a refused publish fails only when its
    /// acknowledgement times out (as [`Error::Unavailable`]). Nor can it hear reconnects:
    /// after a server restart its subscriptions notice the lost consumer only once the
    /// client has missed heartbeats, about 15 s later, where a log made by
    /// [`connect`](Self::connect) resubscribes at once. [`connect`](Self::connect) hears both.
    pub fn new(client: async_nats::Client, config: Config) -> Self {
        Self::with_events(
            client,
            config,
            broadcast::channel(16).0,
            tokio::sync::watch::channel(0).0,
            tokio::sync::watch::channel(None).0,
        )
    }

    fn with_events(
        client: async_nats::Client,
        config: Config,
        violations: broadcast::Sender<String>,
        connects: tokio::sync::watch::Sender<u64>,
        credentials: tokio::sync::watch::Sender<Option<String>>,
    ) -> Self {
        let mut js = jetstream::new(client);
        js.set_timeout(config.ack_timeout);
        Self {
            inner: Arc::new(Inner {
                js,
                config,
                ready: Mutex::new(HashSet::new()),
                refusals: Refusals {
                    violations,
                    credentials,
                },
                connects,
            }),
        }
    }

    /// The NATS connection the log uses (for the lease buckets, say).
    pub fn client(&self) -> async_nats::Client {
        self.inner.js.client()
    }

    /// Whether the connection to the server is up right now.
    pub fn is_connected(&self) -> bool {
        self.client().connection_state() == async_nats::connection::State::Connected
    }

    /// Waits until the connection to the server is up (at once if it is). A log opened with
    /// [`connect`](Self::connect) is woken by the connection's events; one made with
    /// [`new`](Self::new) cannot hear them and looks again every 100 ms.
    pub async fn connected(&self) {
        let mut connects = self.inner.connects.subscribe();
        loop {
            connects.borrow_and_update();
            if self.is_connected() {
                return;
            }
            // The event comes after the client's state changed, so nothing is missed
            // between the look above and this wait.
            let _ = tokio::time::timeout(Duration::from_millis(100), connects.changed()).await;
        }
    }

    /// Connects to `url` with `options` and opens the log on that connection. The log
    /// listens to the connection's events (replacing any event callback in `options`; the
    /// events are logged with `tracing`), so a permissions violation fails the call it
    /// concerns at once as [`Error::Denied`]. Credentials the server refuses on the first
    /// attempt fail this at once with [`Error::Credentials`] (it waits up to two seconds
    /// for that attempt's outcome); refused on a later reconnect, they fail every publish
    /// with it until a connection succeeds. An unreachable server is `Unavailable` (or, with
    /// `retry_on_initial_connect`, not an error: the connection is retried in the
    /// background).
    pub async fn connect(
        url: &str,
        options: async_nats::ConnectOptions,
        config: Config,
    ) -> Result<Self, Error> {
        let violations = broadcast::channel(16).0;
        let connects = tokio::sync::watch::channel(0u64).0;
        let credentials = tokio::sync::watch::channel(None::<String>).0;
        // Counts the outcomes of connection attempts, for the wait on the first one below.
        let attempts = tokio::sync::watch::channel(0u64).0;
        let tx = violations.clone();
        let reconnected = connects.clone();
        let refused = credentials.clone();
        let attempted = attempts.clone();
        let options = options.event_callback(move |event| {
            let tx = tx.clone();
            let reconnected = reconnected.clone();
            let refused = refused.clone();
            let attempted = attempted.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::debug!("connected to the NATS server");
                        refused.send_replace(None);
                        reconnected.send_modify(|n| *n += 1);
                        attempted.send_modify(|n| *n += 1);
                    }
                    async_nats::Event::ClientError(async_nats::ClientError::Other(message))
                        if refuses_credentials(&message) =>
                    {
                        tracing::error!(%message, "the NATS server refused the credentials");
                        refused.send_replace(Some(message));
                        attempted.send_modify(|n| *n += 1);
                    }
                    async_nats::Event::ClientError(async_nats::ClientError::Other(message)) => {
                        tracing::debug!(%message, "a NATS connection attempt failed");
                        attempted.send_modify(|n| *n += 1);
                    }
                    async_nats::Event::ServerError(async_nats::ServerError::Other(message))
                        if message.to_ascii_lowercase().contains("violation") =>
                    {
                        tracing::warn!(%message, "the NATS server refused an operation");
                        let _ = tx.send(message);
                    }
                    event => tracing::debug!(%event, "NATS connection event"),
                }
            }
        });
        let shown = redact_url(url);
        let client = options.connect(url).await.map_err(|e| {
            use async_nats::ConnectErrorKind as K;
            let url = &shown;
            match e.kind() {
                K::AuthorizationViolation | K::Authentication => {
                    Error::Credentials(format!("connecting to {url}: {e}"))
                }
                _ => unavailable(format!("connecting to {url}: {e}")),
            }
        })?;
        let url = redact_url(url);
        // With `retry_on_initial_connect` the client is returned before it has connected:
        // wait for the first attempt, so refused credentials fail here, at once, instead of
        // leaving an agent retrying a password that will never work.
        let mut outcome = attempts.subscribe();
        let _ = tokio::time::timeout(FIRST_ATTEMPT_WAIT, outcome.wait_for(|n| *n > 0)).await;
        if let Some(message) = credentials.borrow().clone() {
            return Err(Error::Credentials(format!(
                "connecting to {url}: {message}"
            )));
        }
        Ok(Self::with_events(
            client,
            config,
            violations,
            connects,
            credentials,
        ))
    }

    /// Runs `call`, failing it with [`Error::Denied`] as soon as the server reports a
    /// permissions violation about `subject` while it runs, and with [`Error::Credentials`]
    /// while the server refuses the connection's credentials.
    async fn guarded<T>(
        &self,
        subject: &str,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        self.inner.refusals.guard(subject, call).await?
    }

    /// What the server says out of band on this log's connection, for guarding other
    /// requests made on it (the lease buckets' own JetStream API requests).
    pub fn refusals(&self) -> Refusals {
        self.inner.refusals.clone()
    }

    /// The space's stream if it exists; `None` when nobody has published to the space.
    /// Creates nothing.
    async fn existing_stream(&self, space: &SpaceId) -> Result<Option<stream::Stream>, Error> {
        match self.inner.js.get_stream(subject::stream_name(space)).await {
            Ok(stream) => Ok(Some(stream)),
            Err(e) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(get_stream_error(e)),
            },
        }
    }

    /// The space's stream, waiting until it exists: for the stream-created advisory, and
    /// checking again every [`STREAM_RECHECK`] in case the advisory does not come.
    async fn stream_when_created(&self, space: &SpaceId) -> Result<stream::Stream, Error> {
        let name = subject::stream_name(space);
        let client = self.inner.js.client();
        // Subscribed before checking, so a stream created in between is not missed.
        let mut created = client
            .subscribe(format!("$JS.EVENT.ADVISORY.STREAM.CREATED.{name}"))
            .await
            .map_err(unavailable)?;
        loop {
            if let Some(stream) = self.existing_stream(space).await? {
                return Ok(stream);
            }
            let _ = tokio::time::timeout(STREAM_RECHECK, created.next()).await;
        }
    }

    /// Creates the space's stream, or verifies the existing one. Called on the first publish
    /// to a space; callable ahead of time to surface configuration errors early.
    pub async fn ensure_stream(&self, space: &SpaceId) -> Result<stream::Stream, Error> {
        let name = subject::stream_name(space);
        let wanted = subject::space_wildcard(space);
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![wanted.clone()],
            storage: stream::StorageType::File,
            num_replicas: self.inner.config.replicas,
            duplicate_window: self.inner.config.duplicate_window,
            description: Some(format!("Blackboard events of space {space}")),
            ..Default::default()
        };
        let mut stream = self
            .guarded("$JS.API", async {
                self.inner
                    .js
                    .get_or_create_stream(config)
                    .await
                    .map_err(create_stream_error)
            })
            .await?;
        let info = stream.info().await.map_err(unavailable)?;
        let have = &info.config;
        let covers = have.subjects.iter().any(|s| s == &wanted);
        let reason = if !covers {
            Some(format!(
                "its subjects {:?} do not include {wanted}",
                have.subjects
            ))
        } else if have.storage != stream::StorageType::File {
            Some("it uses memory storage; events must be on disk".to_owned())
        } else if have.duplicate_window.is_zero() {
            Some("it has no duplicate window; re-publishes would be duplicated".to_owned())
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::StreamMismatch {
                stream: name,
                reason,
            });
        }
        Ok(stream)
    }

    /// Forgets that a space's stream was verified, so the next call checks (and if need be
    /// recreates) it: after an error the stream may have been deleted or the server replaced.
    fn forget(&self, space: &SpaceId) {
        self.inner
            .ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(space);
    }

    async fn stream(&self, space: &SpaceId) -> Result<Option<stream::Stream>, Error> {
        let known = self
            .inner
            .ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(space);
        if known {
            return Ok(None);
        }
        let stream = self.ensure_stream(space).await?;
        self.inner
            .ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(space.clone());
        Ok(Some(stream))
    }
}

#[async_trait]
impl EventLog for JetStreamLog {
    async fn subscribe(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        from: u64,
    ) -> Result<EntryStream, Error> {
        let result = self.subscribe_once(space, document, from, false).await;
        if result.is_err() {
            self.forget(space);
        }
        result
    }

    async fn publish_batch(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        batch: Vec<(String, Bytes)>,
    ) -> Vec<Result<Published, Error>> {
        let results = self.publish_batch_once(space, document, batch).await;
        if results.iter().any(Result::is_err) {
            self.forget(space);
        }
        results
    }

    async fn publish_roster(
        &self,
        space: &SpaceId,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<Published, Error> {
        let result = async {
            self.stream(space).await?;
            let subject = super::roster_subject(space);
            let batch = vec![(msg_id.to_owned(), payload)];
            let mut results = self
                .guarded(&subject, self.send_batch(&subject, batch))
                .await?;
            results.pop().unwrap_or(Err(Error::Closed))
        }
        .await;
        if result.is_err() {
            self.forget(space);
        }
        result
    }

    async fn subscribe_with_roster(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        from: u64,
    ) -> Result<EntryStream, Error> {
        let result = self.subscribe_once(space, document, from, true).await;
        if result.is_err() {
            self.forget(space);
        }
        result
    }

    async fn roster_events(&self, space: &SpaceId, below: u64) -> Result<Vec<Entry>, Error> {
        let Some(stream) = self.existing_stream(space).await? else {
            return Ok(Vec::new());
        };
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: super::roster_subject(space),
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(consumer_error)?;
        // What the stream holds on the subject now; later ones are past `below` anyway.
        let pending = consumer.cached_info().num_pending;
        let mut messages = consumer.messages().await.map_err(unavailable)?;
        let mut out = Vec::new();
        for _ in 0..pending {
            // The server said these are there: a long silence is an outage, not an end.
            let next = tokio::time::timeout(Duration::from_secs(30), messages.next());
            let Ok(Some(m)) = next.await else {
                return Err(Error::Unavailable(
                    "the roster's consumer stopped before delivering what the stream holds".into(),
                ));
            };
            let entry = to_entry(m.map_err(unavailable)?, Topic::Roster)?;
            if entry.seq >= below {
                break;
            }
            out.push(entry);
        }
        Ok(out)
    }

    async fn documents(&self, space: &SpaceId) -> Result<(u64, DocumentStream), Error> {
        let result = self.documents_once(space).await;
        if result.is_err() {
            self.forget(space);
        }
        result
    }

    async fn list(&self, space: &SpaceId) -> Result<Vec<DocumentSummary>, Error> {
        let Some(stream) = self.existing_stream(space).await? else {
            return Ok(Vec::new());
        };
        // The server counts the messages of each subject; one subject per document.
        let mut subjects = stream
            .info_with_subjects(subject::space_changes(space))
            .await
            .map_err(unavailable)?;
        let mut documents = Vec::new();
        while let Some(item) = subjects.next().await {
            let (name, count) = item.map_err(unavailable)?;
            if let Some((_, document)) = subject::parse_changes(&name) {
                documents.push(DocumentSummary {
                    document,
                    events: count as u64,
                });
            }
        }
        documents.sort_by(|a, b| a.document.cmp(&b.document));
        Ok(documents)
    }

    async fn last_seq(&self, space: &SpaceId, document: &DocumentId) -> Result<u64, Error> {
        let Some(stream) = self.existing_stream(space).await? else {
            return Ok(0);
        };
        match stream
            .get_last_raw_message_by_subject(&subject::changes(space, document))
            .await
        {
            Ok(m) => Ok(m.sequence),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn put_snapshot(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        info: SnapshotInfo,
        bytes: Bytes,
    ) -> Result<(), Error> {
        let store = self.snapshots(space).await?;
        let meta = object_store::ObjectMetadata {
            name: document.to_string(),
            description: Some(format!(
                "snapshot of {space}/{document} through {}",
                info.seq
            )),
            metadata: [
                ("seq".to_owned(), info.seq.to_string()),
                (
                    "trimmed_through".to_owned(),
                    info.trimmed_through.to_string(),
                ),
            ]
            .into(),
            ..Default::default()
        };
        store
            .put(meta, &mut bytes.as_ref())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn snapshot_info(
        &self,
        space: &SpaceId,
        document: &DocumentId,
    ) -> Result<Option<SnapshotInfo>, Error> {
        let Some(store) = self.existing_snapshots(space).await? else {
            return Ok(None);
        };
        match store.info(document.as_str()).await {
            Ok(info) => snapshot_info(&info).map(Some),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get_snapshot(
        &self,
        space: &SpaceId,
        document: &DocumentId,
    ) -> Result<Option<(SnapshotInfo, Bytes)>, Error> {
        use tokio::io::AsyncReadExt;
        let Some(store) = self.existing_snapshots(space).await? else {
            return Ok(None);
        };
        let mut object = match store.get(document.as_str()).await {
            Ok(o) => o,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        let info = snapshot_info(object.info())?;
        let mut bytes = Vec::with_capacity(info.size as usize);
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| unavailable(format!("reading snapshot of {space}/{document}: {e}")))?;
        Ok(Some((info, bytes.into())))
    }

    async fn trim(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        through: u64,
    ) -> Result<u64, Error> {
        let Some(stream) = self.existing_stream(space).await? else {
            return Ok(0);
        };
        // Purging with a sequence removes the subject's messages *below* it.
        let purged = stream
            .purge()
            .filter(subject::changes(space, document))
            .sequence(through.saturating_add(1))
            .await
            .map_err(unavailable)?;
        Ok(purged.purged)
    }
}

/// Reads the position metadata `put_snapshot` writes on a snapshot object.
fn snapshot_info(info: &object_store::ObjectInfo) -> Result<SnapshotInfo, Error> {
    let field = |name: &str| -> Result<u64, Error> {
        info.metadata
            .get(name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                Error::Protocol(format!(
                    "snapshot object {} in {} has no valid {name} metadata",
                    info.name, info.bucket
                ))
            })
    };
    Ok(SnapshotInfo {
        seq: field("seq")?,
        trimmed_through: field("trimmed_through")?,
        size: info.size as u64,
    })
}

impl JetStreamLog {
    /// The space's snapshot bucket if it exists; `None` when no snapshot was ever stored in
    /// the space. Creates nothing.
    async fn existing_snapshots(
        &self,
        space: &SpaceId,
    ) -> Result<Option<object_store::ObjectStore>, Error> {
        let bucket = subject::snapshot_bucket(space);
        // The bucket is the stream OBJ_<bucket>: ask for it, which tells "not there" apart
        // from other failures (`get_object_store` does not).
        match self.inner.js.get_stream(format!("OBJ_{bucket}")).await {
            Ok(_) => {}
            Err(e) => {
                return match e.kind() {
                    jetstream::context::GetStreamErrorKind::JetStream(js)
                        if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                    {
                        Ok(None)
                    }
                    _ => Err(get_stream_error(e)),
                }
            }
        }
        self.inner
            .js
            .get_object_store(&bucket)
            .await
            .map(Some)
            .map_err(unavailable)
    }

    /// The space's snapshot bucket, created on first use with the stream's storage and
    /// replicas. A server that refuses to create it fails this at once as [`Error::Denied`]
    /// (as [`ensure_stream`](Self::ensure_stream) does), naming the refused subject.
    async fn snapshots(&self, space: &SpaceId) -> Result<object_store::ObjectStore, Error> {
        let bucket = subject::snapshot_bucket(space);
        match self.inner.js.get_object_store(&bucket).await {
            Ok(store) => Ok(store),
            Err(_) => {
                // The bucket is the stream OBJ_<bucket>; creating it is this API request.
                let create = format!("$JS.API.STREAM.CREATE.OBJ_{bucket}");
                let config = object_store::Config {
                    bucket,
                    description: Some(format!("Blackboard snapshots of space {space}")),
                    storage: stream::StorageType::File,
                    num_replicas: self.inner.config.replicas,
                    ..Default::default()
                };
                self.guarded(&create, async {
                    self.inner
                        .js
                        .create_object_store(config)
                        .await
                        .map_err(unavailable)
                })
                .await
            }
        }
    }

    /// Sends every publish in order on the one connection (NATS keeps a connection's order,
    /// so the stream does too), then awaits the acknowledgements together: a batch costs
    /// about one round trip. After a failed send nothing more is sent.
    async fn publish_batch_once(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        batch: Vec<(String, Bytes)>,
    ) -> Vec<Result<Published, Error>> {
        let n = batch.len();
        if let Err(e) = self.stream(space).await {
            return super::failed_batch(e, n);
        }
        let subject = subject::changes(space, document);
        let sent = self.guarded(&subject, self.send_batch(&subject, batch));
        match sent.await {
            Ok(results) => results,
            Err(e) => super::failed_batch(e, n),
        }
    }

    /// Sends the publishes of a batch and awaits their acknowledgements. Fails as a whole
    /// only when the server reports a permissions violation (see [`guarded`](Self::guarded)).
    async fn send_batch(
        &self,
        subject: &str,
        batch: Vec<(String, Bytes)>,
    ) -> Result<Vec<Result<Published, Error>>, Error> {
        let n = batch.len();
        let mut pending = Vec::with_capacity(n);
        let mut failed: Option<String> = None;
        for (msg_id, payload) in batch {
            if let Some(reason) = &failed {
                pending.push(Err(super::not_sent(reason)));
                continue;
            }
            let len = payload.len();
            if len > blackboard_schemas::MAX_ENVELOPE_BYTES {
                pending.push(Err(Error::TooLarge {
                    len,
                    max: blackboard_schemas::MAX_ENVELOPE_BYTES,
                }));
                continue;
            }
            let publish = jetstream::message::PublishMessage::build()
                .payload(payload)
                .message_id(msg_id);
            match self
                .inner
                .js
                .send_publish(subject.to_owned(), publish)
                .await
            {
                Ok(ack) => pending.push(Ok(ack)),
                Err(e) => {
                    failed = Some(e.to_string());
                    pending.push(Err(match e.kind() {
                        jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
                            Error::TooLarge {
                                len,
                                max: blackboard_schemas::MAX_ENVELOPE_BYTES,
                            }
                        }
                        _ => unavailable(e),
                    }));
                }
            }
        }
        stage!("log: published, awaiting acks");
        let acks = futures::future::join_all(pending.into_iter().map(|p| async move {
            let ack = p?.await.map_err(unavailable)?;
            Ok(Published {
                seq: ack.sequence,
                duplicate: ack.duplicate,
            })
        }));
        Ok(acks.await)
    }

    async fn documents_once(&self, space: &SpaceId) -> Result<(u64, DocumentStream), Error> {
        let Some(mut stream) = self.existing_stream(space).await? else {
            // Nobody has published to the space: nothing yet, and every document once the
            // stream is created.
            let log = self.clone();
            let space = space.clone();
            let later = futures::stream::once(async move {
                let stream = log.stream_when_created(&space).await?;
                log.document_names(&space, stream).await
            })
            .try_flatten();
            return Ok((0, later.boxed()));
        };
        let last = stream
            .info()
            .await
            .map_err(unavailable)?
            .state
            .last_sequence;
        Ok((last, self.document_names(space, stream).await?))
    }

    /// The last message of every document's subject, then every new one; headers only,
    /// since only the subject matters here.
    async fn document_names(
        &self,
        space: &SpaceId,
        stream: stream::Stream,
    ) -> Result<DocumentStream, Error> {
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subject::space_changes(space),
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                headers_only: true,
                ..Default::default()
            })
            .await
            .map_err(consumer_error)?;
        let messages = consumer.messages().await.map_err(unavailable)?;
        let docs = messages.filter_map(|m| async move {
            match m {
                Ok(m) => subject::parse_changes(&m.subject).map(|(_, doc)| Ok(doc)),
                Err(e) => Some(Err(unavailable(e))),
            }
        });
        Ok(docs.boxed())
    }

    async fn subscribe_once(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        from: u64,
        roster: bool,
    ) -> Result<EntryStream, Error> {
        let Some(stream) = self.existing_stream(space).await? else {
            // Nobody has published to the space: nothing yet, then live from the start
            // once the stream is created.
            let log = self.clone();
            let (space, document) = (space.clone(), document.clone());
            let later = futures::stream::once(async move {
                let stream = log.stream_when_created(&space).await?;
                log.entries(&space, &document, stream, from, roster).await
            })
            .try_flatten();
            return Ok(later.boxed());
        };
        self.entries(space, document, stream, from, roster).await
    }

    /// `document`'s entries from position `from` on (with `roster`, the space's roster
    /// events too: one consumer filtering both subjects delivers them in stream order).
    async fn entries(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        stream: stream::Stream,
        from: u64,
        roster: bool,
    ) -> Result<EntryStream, Error> {
        let changes = subject::changes(space, document);
        let (filter_subject, filter_subjects) = match roster {
            false => (changes, Vec::new()),
            true => (String::new(), vec![changes, super::roster_subject(space)]),
        };
        let roster_subject = super::roster_subject(space);
        // An ordered consumer: ephemeral, flow-controlled, and recreated by the client from
        // the last delivered sequence if it is lost, so delivery has no gaps or repeats.
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject,
                filter_subjects,
                deliver_policy: if from <= 1 {
                    consumer::DeliverPolicy::All
                } else {
                    consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: from,
                    }
                },
                ..Default::default()
            })
            .await
            .map_err(consumer_error)?;
        let messages = consumer.messages().await.map_err(unavailable)?;
        // After a reconnect the server may have lost the consumer (a restart loses every
        // ephemeral one); the client would notice only after missing heartbeats and retrying
        // for about 15 s. Ending the stream on reconnect makes the reader resubscribe from
        // its own position at once; a consumer that survived costs one resubscription.
        let mut connects = self.inner.connects.subscribe();
        let reconnected = async move {
            if connects.changed().await.is_err() {
                // The log is gone; the stream ends with the connection anyway.
                std::future::pending::<()>().await;
            }
        };
        Ok(messages
            .take_until(reconnected)
            .map(move |m| {
                let m = m.map_err(unavailable)?;
                let topic = match m.subject.as_str() == roster_subject {
                    true => Topic::Roster,
                    false => Topic::Change,
                };
                to_entry(m, topic)
            })
            .boxed())
    }
}

/// A message of an ordered consumer as an entry.
fn to_entry(m: jetstream::Message, topic: Topic) -> Result<Entry, Error> {
    let info = m
        .info()
        .map_err(|e| Error::Protocol(format!("message without stream info: {e}")))?;
    Ok(Entry {
        topic,
        seq: info.stream_sequence,
        time_ms: (info.published.unix_timestamp_nanos() / 1_000_000) as i64,
        payload: m.message.payload.clone(),
    })
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn a_password_in_a_url_is_never_shown() {
        assert_eq!(
            redact_url("nats://reader:secret@127.0.0.1:4222"),
            "nats://reader:***@127.0.0.1:4222"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact_url("nats://token@host"), "nats://token@host");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
