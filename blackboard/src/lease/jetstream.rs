//! The JetStream lease store: one KV bucket per name.
//!
//! Buckets keep the last 16 versions per key in file storage: a watch that falls behind still
//! sees each version unless a key changed 16 times meanwhile (with history 1, a quick claim,
//! renew, release would replace versions before a busy watcher read them). A revision is the
//! KV entry's stream sequence, so it grows with every write to the bucket; `create` and
//! `update` use the server's expected-last-subject-sequence check, so the server decides
//! every race.
//!
//! A bucket is created only when the server says it does not exist: a timeout is
//! [`StoreError::Unavailable`] (transient) and a JetStream refusal [`StoreError::Bucket`]
//! (permanent), never a reason to try creating it. A permissions violation the connection's
//! log hears (buckets made with [`JetStreamLeases::hearing`], as the SDK makes them) is a
//! [`StoreError::Bucket`] too, at once, naming the refused subject.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::{self, kv};

/// Versions kept per key, so that a lagging watch does not miss quick successive writes.
const HISTORY: i64 = 16;
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::{LeaseBuckets, LeaseStore, StoreError, VersionStream, Versioned};
use crate::log::{JetStreamLog, Refusals};

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Lease buckets in JetStream KV. Cheap to clone.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use blackboard::lease::{JetStreamLeases, LeaseBuckets};
///
/// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let leases = JetStreamLeases::new(client, 1);
/// let bucket = leases.open("BB_CLAIMS_team").await?; // created on first use
/// let revision = bucket.create("task-1", "mine".into()).await?;
/// bucket.update("task-1", "still mine".into(), revision).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct JetStreamLeases {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    js: jetstream::Context,
    replicas: usize,
    /// The connection's refusals, when its log hears them (see [`JetStreamLeases::hearing`]).
    refusals: Option<Refusals>,
    open: Mutex<HashMap<String, Arc<KvBucket>>>,
}

impl JetStreamLeases {
    /// Lease buckets over an existing connection, created with `replicas` replicas. A bucket
    /// the server's permissions refuse fails only when its request times out (five seconds,
    /// [`StoreError::Unavailable`]); [`hearing`](Self::hearing) names the refusal at once.
    pub fn new(client: async_nats::Client, replicas: usize) -> Self {
        Self::with(client, replicas, None)
    }

    /// Lease buckets on `log`'s connection, whose refusals `log` hears: a bucket the server's
    /// permissions refuse fails at once with [`StoreError::Bucket`] naming the refused
    /// subject, instead of after a five-second timeout as [`StoreError::Unavailable`].
    pub fn hearing(log: &JetStreamLog, replicas: usize) -> Self {
        Self::with(log.client(), replicas, Some(log.refusals()))
    }

    fn with(client: async_nats::Client, replicas: usize, refusals: Option<Refusals>) -> Self {
        let mut js = jetstream::new(client);
        js.set_timeout(Duration::from_secs(5));
        Self {
            inner: Arc::new(Inner {
                js,
                replicas: replicas.max(1),
                refusals,
                open: Mutex::default(),
            }),
        }
    }

    /// Runs the JetStream API request `call` to `subject` about bucket `name`; a refusal the
    /// connection hears ends it as a [`StoreError::Bucket`] naming the server's reason.
    async fn guarded<T>(
        &self,
        name: &str,
        subject: &str,
        call: impl std::future::Future<Output = T>,
    ) -> Result<T, StoreError> {
        let Some(refusals) = &self.inner.refusals else {
            return Ok(call.await);
        };
        refusals
            .guard(subject, call)
            .await
            .map_err(|refused| StoreError::Bucket {
                bucket: name.to_owned(),
                reason: refused.to_string(),
            })
    }
}

#[async_trait]
impl LeaseBuckets for JetStreamLeases {
    async fn open(&self, name: &str) -> Result<Arc<dyn LeaseStore>, StoreError> {
        if let Some(b) = self
            .inner
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(b.clone());
        }
        let js = &self.inner.js;
        // The bucket is the stream KV_<name>. Asking for the stream tells "not there yet"
        // (create it) apart from a timeout (transient) or a refusal (permanent): only the
        // first may create anything.
        let info = format!("$JS.API.STREAM.INFO.KV_{name}");
        let exists = match self
            .guarded(name, &info, js.get_stream(format!("KV_{name}")))
            .await?
        {
            Ok(_) => true,
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    false
                }
                GetStreamErrorKind::JetStream(js) if js.code() != 503 => {
                    return Err(StoreError::Bucket {
                        bucket: name.to_owned(),
                        reason: js.to_string(),
                    })
                }
                _ => return Err(unavailable(e)),
            },
        };
        let store = if exists {
            js.get_key_value(name).await.map_err(unavailable)?
        } else {
            let config = kv::Config {
                bucket: name.to_owned(),
                description: "Blackboard leases".to_owned(),
                history: HISTORY,
                storage: jetstream::stream::StorageType::File,
                num_replicas: self.inner.replicas,
                ..Default::default()
            };
            let create = format!("$JS.API.STREAM.CREATE.KV_{name}");
            match self
                .guarded(name, &create, js.create_key_value(config))
                .await?
            {
                Ok(store) => store,
                // Another agent may have created it in between.
                Err(create) => js
                    .get_key_value(name)
                    .await
                    .map_err(|_| StoreError::Bucket {
                        bucket: name.to_owned(),
                        reason: create.to_string(),
                    })?,
            }
        };
        let bucket = Arc::new(KvBucket { store });
        self.inner
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), bucket.clone());
        Ok(bucket)
    }
}

/// One KV bucket.
#[derive(Debug)]
struct KvBucket {
    store: kv::Store,
}

fn version(entry: kv::Entry) -> Versioned {
    let live = entry.operation == kv::Operation::Put;
    Versioned {
        key: entry.key,
        revision: entry.revision,
        value: live.then_some(entry.value),
    }
}

fn update_error(key: &str, expected: u64, e: kv::UpdateError) -> StoreError {
    match e.kind() {
        kv::UpdateErrorKind::WrongLastRevision => StoreError::Conflict {
            key: key.to_owned(),
            expected,
        },
        _ => unavailable(e),
    }
}

#[async_trait]
impl LeaseStore for KvBucket {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self
            .store
            .entry(key)
            .await
            .map_err(unavailable)?
            .map(version))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64, StoreError> {
        self.store
            .create(key, value)
            .await
            .map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => StoreError::Conflict {
                    key: key.to_owned(),
                    expected: 0,
                },
                _ => unavailable(e),
            })
    }

    async fn update(&self, key: &str, value: Bytes, expected: u64) -> Result<u64, StoreError> {
        self.store
            .update(key, value, expected)
            .await
            .map_err(|e| update_error(key, expected, e))
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<u64, StoreError> {
        self.store.put(key, value).await.map_err(unavailable)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.store
            .delete(key)
            .await
            .map_err(|e| update_error(key, 0, e))
    }

    async fn entries(&self, prefix: &str) -> Result<Vec<Versioned>, StoreError> {
        // A set: the key listing is a consumer over the bucket's last message per key, and
        // a put landing while it runs (a heartbeat, a renew) is delivered too, so a key can
        // be listed twice.
        let keys: std::collections::BTreeSet<String> = self
            .store
            .keys()
            .await
            .map_err(unavailable)?
            .try_filter(|k| futures::future::ready(k.starts_with(prefix)))
            .try_collect()
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(v) = self.get(&key).await? {
                if v.value.is_some() {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    async fn watch(&self, prefix: &str) -> Result<VersionStream, StoreError> {
        let watch = self
            .store
            .watch_with_history(format!("{prefix}>"))
            .await
            .map_err(unavailable)?;
        Ok(watch
            .map(|entry| entry.map(version).map_err(unavailable))
            .boxed())
    }
}
