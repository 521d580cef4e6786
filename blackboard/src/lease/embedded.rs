//! The embedded lease store: sled trees with compare-and-swap, for one process.
//!
//! Each bucket is a sled tree, `lease/<bucket>`. A key's value is its revision (u64,
//! big-endian), one byte (1 = a value, 0 = deleted) and the value. Revisions come from
//! `sled::Db::generate_id`, which is monotonic across restarts, and each write is one
//! `compare_and_swap` against the bytes just read, so of two racing writers exactly one wins.
//! Writes to a bucket are also serialized in-process so that watchers see them in order.
//! Every handle on the same database shares one fan-out (found through an id stored in the
//! database), so agents of one process built over the same `sled::Db` see each other's writes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;

use super::{LeaseBuckets, LeaseStore, StoreError, VersionStream, Versioned};

/// How many versions a watcher may fall behind before it re-reads the tree.
const FANOUT_CAPACITY: usize = 1024;

/// Fan-outs of every open database of this process, by the id stored in the database.
static REGISTRY: LazyLock<Mutex<HashMap<u128, Weak<Shared>>>> = LazyLock::new(Mutex::default);

/// Lease buckets in a sled database. Cheap to clone.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use blackboard::lease::{EmbeddedLeases, LeaseBuckets};
///
/// let dir = tempfile::tempdir()?;
/// let leases = EmbeddedLeases::new(sled::open(dir.path())?);
/// let bucket = leases.open("BB_CLAIMS_team").await?;
/// let first = bucket.create("task-1", "mine".into()).await?;
/// assert!(bucket.create("task-1", "yours".into()).await.is_err()); // already there
/// let second = bucket.update("task-1", "still mine".into(), first).await?;
/// assert!(second > first);
/// assert!(bucket.update("task-1", "stale".into(), first).await.is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct EmbeddedLeases {
    db: sled::Db,
    /// Found on first use (it needs the database).
    shared: Arc<OnceLock<Arc<Shared>>>,
}

#[derive(Debug, Default)]
struct Shared {
    buckets: Mutex<HashMap<String, Arc<Bucket>>>,
}

#[derive(Debug)]
struct Bucket {
    db: sled::Db,
    tree: sled::Tree,
    /// Serializes writes, so versions are broadcast in the order they were made.
    write: Mutex<()>,
    tx: broadcast::Sender<Versioned>,
}

impl EmbeddedLeases {
    /// Lease buckets in `db`. Handles on the same database share their watchers.
    pub fn new(db: sled::Db) -> Self {
        Self {
            db,
            shared: Arc::default(),
        }
    }

    /// The fan-out shared by every handle on this database.
    fn shared(&self) -> Result<&Arc<Shared>, StoreError> {
        if let Some(s) = self.shared.get() {
            return Ok(s);
        }
        let db = &self.db;
        let fresh: u128 = rand::random();
        let id = match db.compare_and_swap(
            "lease/instance",
            None as Option<&[u8]>,
            Some(&fresh.to_be_bytes()[..]),
        )? {
            Ok(()) => fresh,
            Err(e) => {
                let bytes = e.current.unwrap_or_default();
                let bytes: [u8; 16] =
                    bytes.as_ref().try_into().map_err(|_| StoreError::Bucket {
                        bucket: "lease/instance".to_owned(),
                        reason: "the instance id is not 16 bytes".to_owned(),
                    })?;
                u128::from_be_bytes(bytes)
            }
        };
        let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        registry.retain(|_, w| w.strong_count() > 0);
        let shared = match registry.get(&id).and_then(Weak::upgrade) {
            Some(shared) => shared,
            None => {
                let shared = Arc::new(Shared::default());
                registry.insert(id, Arc::downgrade(&shared));
                shared
            }
        };
        Ok(self.shared.get_or_init(|| shared))
    }
}

#[async_trait]
impl LeaseBuckets for EmbeddedLeases {
    async fn open(&self, name: &str) -> Result<Arc<dyn LeaseStore>, StoreError> {
        let mut buckets = self
            .shared()?
            .buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(b) = buckets.get(name) {
            return Ok(b.clone());
        }
        let bucket = Arc::new(Bucket {
            db: self.db.clone(),
            tree: self.db.open_tree(format!("lease/{name}"))?,
            write: Mutex::new(()),
            tx: broadcast::channel(FANOUT_CAPACITY).0,
        });
        buckets.insert(name.to_owned(), bucket.clone());
        Ok(bucket)
    }
}

fn encode(revision: u64, value: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + value.map_or(0, <[u8]>::len));
    out.extend_from_slice(&revision.to_be_bytes());
    out.push(u8::from(value.is_some()));
    out.extend_from_slice(value.unwrap_or_default());
    out
}

fn decode(key: &[u8], bytes: &[u8]) -> Versioned {
    let revision = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes);
    let live = bytes.get(8) == Some(&1);
    Versioned {
        key: String::from_utf8_lossy(key).into_owned(),
        revision,
        value: live.then(|| Bytes::copy_from_slice(bytes.get(9..).unwrap_or_default())),
    }
}

impl Bucket {
    /// Writes `value` (or a deletion) if `check` accepts the current version; returns the new
    /// revision.
    fn write(
        &self,
        key: &str,
        value: Option<&[u8]>,
        check: impl Fn(Option<&Versioned>) -> bool,
        expected: u64,
    ) -> Result<u64, StoreError> {
        let _serial = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.tree.get(key)?;
        let version = current.as_ref().map(|b| decode(key.as_bytes(), b));
        if !check(version.as_ref()) {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                expected,
            });
        }
        // Generated after reading, so it is larger than the revision just read.
        let revision = self.db.generate_id()? + 1;
        let new = encode(revision, value);
        if self
            .tree
            .compare_and_swap(key, current, Some(new))?
            .is_err()
        {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                expected,
            });
        }
        // No receivers is fine: nobody watches.
        let _ = self.tx.send(Versioned {
            key: key.to_owned(),
            revision,
            value: value.map(Bytes::copy_from_slice),
        });
        Ok(revision)
    }

    fn scan(&self, prefix: &str) -> Result<Vec<Versioned>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv?;
                Ok(decode(&k, &v))
            })
            .collect()
    }
}

#[async_trait]
impl LeaseStore for Bucket {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.tree.get(key)?.map(|b| decode(key.as_bytes(), &b)))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64, StoreError> {
        self.write(
            key,
            Some(&value),
            |v| v.is_none_or(|v| v.value.is_none()),
            0,
        )
    }

    async fn update(&self, key: &str, value: Bytes, expected: u64) -> Result<u64, StoreError> {
        self.write(
            key,
            Some(&value),
            |v| v.is_some_and(|v| v.revision == expected),
            expected,
        )
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<u64, StoreError> {
        self.write(key, Some(&value), |_| true, 0)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.write(key, None, |_| true, 0).map(drop)
    }

    async fn entries(&self, prefix: &str) -> Result<Vec<Versioned>, StoreError> {
        let mut all = self.scan(prefix)?;
        all.retain(|v| v.value.is_some());
        Ok(all)
    }

    async fn watch(&self, prefix: &str) -> Result<VersionStream, StoreError> {
        // Subscribe before reading, so nothing written in between is missed; versions seen
        // twice are dropped by revision.
        let rx = self.tx.subscribe();
        let state = WatchState {
            rx,
            backlog: self.scan(prefix)?.into(),
            seen: HashMap::new(),
            prefix: prefix.to_owned(),
            tree: self.tree.clone(),
        };
        Ok(Box::pin(futures::stream::unfold(state, next_version)))
    }
}

struct WatchState {
    rx: broadcast::Receiver<Versioned>,
    backlog: VecDeque<Versioned>,
    seen: HashMap<String, u64>,
    prefix: String,
    tree: sled::Tree,
}

async fn next_version(mut s: WatchState) -> Option<(Result<Versioned, StoreError>, WatchState)> {
    loop {
        while let Some(v) = s.backlog.pop_front() {
            let last = s.seen.entry(v.key.clone()).or_insert(0);
            if v.revision > *last {
                *last = v.revision;
                return Some((Ok(v), s));
            }
        }
        match s.rx.recv().await {
            Ok(v) if v.key.starts_with(&s.prefix) => s.backlog.push_back(v),
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Fell behind the fan-out: the tree has the latest version of every key.
                for kv in s.tree.scan_prefix(&s.prefix) {
                    match kv {
                        Ok((k, v)) => s.backlog.push_back(decode(&k, &v)),
                        Err(e) => return Some((Err(e.into()), s)),
                    }
                }
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}
