//! The JetStream event log.
//!
//! One stream per space, `BB_<space>`, over the subjects `bb.<space>.>` (see
//! `blackboard_schemas::subject`). The stream is created on first use with file storage, the
//! configured replicas and duplicate window; an existing stream is verified instead, and a
//! configuration that would break the log's promises is an error, never silently changed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, object_store, stream};
use async_trait::async_trait;
use blackboard_schemas::{subject, DocumentId, SpaceId};
use bytes::Bytes;
use futures::StreamExt;

use super::{
    DocumentStream, DocumentSummary, Entry, EntryStream, Error, EventLog, Published, SnapshotInfo,
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
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(e.to_string())
}

impl JetStreamLog {
    /// A log over an existing NATS connection.
    pub fn new(client: async_nats::Client, config: Config) -> Self {
        let mut js = jetstream::new(client);
        js.set_timeout(config.ack_timeout);
        Self {
            inner: Arc::new(Inner {
                js,
                config,
                ready: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Creates the space's stream, or verifies the existing one. Called on first use of a
    /// space; callable ahead of time to surface configuration errors early.
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
            .inner
            .js
            .get_or_create_stream(config)
            .await
            .map_err(unavailable)?;
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
        let result = self.subscribe_once(space, document, from).await;
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

    async fn documents(&self, space: &SpaceId) -> Result<(u64, DocumentStream), Error> {
        let result = self.documents_once(space).await;
        if result.is_err() {
            self.forget(space);
        }
        result
    }

    async fn list(&self, space: &SpaceId) -> Result<Vec<DocumentSummary>, Error> {
        let stream = match self.inner.js.get_stream(subject::stream_name(space)).await {
            Ok(stream) => stream,
            Err(e) => {
                return match e.kind() {
                    jetstream::context::GetStreamErrorKind::JetStream(e)
                        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                    {
                        Ok(Vec::new())
                    }
                    _ => Err(unavailable(e)),
                }
            }
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
        let stream = self.ensure_stream(space).await?;
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
        let store = self.snapshots(space).await?;
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
        let store = self.snapshots(space).await?;
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
        let stream = self.ensure_stream(space).await?;
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
    /// The space's snapshot bucket, created on first use with the stream's storage and
    /// replicas.
    async fn snapshots(&self, space: &SpaceId) -> Result<object_store::ObjectStore, Error> {
        let bucket = subject::snapshot_bucket(space);
        match self.inner.js.get_object_store(&bucket).await {
            Ok(store) => Ok(store),
            Err(_) => self
                .inner
                .js
                .create_object_store(object_store::Config {
                    bucket,
                    description: Some(format!("Blackboard snapshots of space {space}")),
                    storage: stream::StorageType::File,
                    num_replicas: self.inner.config.replicas,
                    ..Default::default()
                })
                .await
                .map_err(unavailable),
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
            match self.inner.js.send_publish(subject.clone(), publish).await {
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
        let acks = futures::future::join_all(pending.into_iter().map(|p| async move {
            let ack = p?.await.map_err(unavailable)?;
            Ok(Published {
                seq: ack.sequence,
                duplicate: ack.duplicate,
            })
        }));
        acks.await
    }

    async fn documents_once(&self, space: &SpaceId) -> Result<(u64, DocumentStream), Error> {
        let mut stream = self.ensure_stream(space).await?;
        let last = stream
            .info()
            .await
            .map_err(unavailable)?
            .state
            .last_sequence;
        // The last message of every document's subject, then every new one; headers only,
        // since only the subject matters here.
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subject::space_changes(space),
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                headers_only: true,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let messages = consumer.messages().await.map_err(unavailable)?;
        let docs = messages.filter_map(|m| async move {
            match m {
                Ok(m) => subject::parse_changes(&m.subject).map(|(_, doc)| Ok(doc)),
                Err(e) => Some(Err(unavailable(e))),
            }
        });
        Ok((last, docs.boxed()))
    }

    async fn subscribe_once(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        from: u64,
    ) -> Result<EntryStream, Error> {
        let stream = match self.stream(space).await? {
            Some(s) => s,
            None => self
                .inner
                .js
                .get_stream(subject::stream_name(space))
                .await
                .map_err(unavailable)?,
        };
        // An ordered consumer: ephemeral, flow-controlled, and recreated by the client from
        // the last delivered sequence if it is lost, so delivery has no gaps or repeats.
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subject::changes(space, document),
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
            .map_err(unavailable)?;
        let messages = consumer.messages().await.map_err(unavailable)?;
        Ok(messages
            .map(|m| {
                let m = m.map_err(unavailable)?;
                let info = m
                    .info()
                    .map_err(|e| Error::Protocol(format!("message without stream info: {e}")))?;
                Ok(Entry {
                    seq: info.stream_sequence,
                    time_ms: (info.published.unix_timestamp_nanos() / 1_000_000) as i64,
                    payload: m.message.payload.clone(),
                })
            })
            .boxed())
    }
}
