//! The lease store: a small versioned key-value store with compare-and-set, the I/O edge that
//! claims and presence are built on.
//!
//! Every write gives the key a new **revision**, a number that only grows (per key, and in
//! practice per bucket). [`LeaseStore::update`] succeeds only when the key's current revision
//! is the expected one, and [`LeaseStore::create`] only when the key has no live value, so the
//! store itself (JetStream, or one sled compare-and-swap) decides races: of two writers that
//! read the same revision, exactly one wins. Two implementations keep the same contract:
//! - [`JetStreamLeases`]: one JetStream KV bucket per name (`BB_CLAIMS_<space>`, ...);
//! - [`EmbeddedLeases`]: sled trees with `compare_and_swap`, for the embedded board.
//!
//! Buckets are opened by name through [`LeaseBuckets`], which a board holds.

pub(crate) mod clock;
mod embedded;
pub(crate) mod events;
mod jetstream;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use embedded::EmbeddedLeases;
pub use events::EventStream;
pub use jetstream::JetStreamLeases;

/// One version of a key: its revision and its value (`None` when the key was deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The key.
    pub key: String,
    /// The revision of this version; it only grows.
    pub revision: u64,
    /// The value, or `None` for a deletion.
    pub value: Option<Bytes>,
}

/// A stream of versions: the latest version of every watched key, then every new one.
pub type VersionStream = BoxStream<'static, Result<Versioned, StoreError>>;

/// Errors from a lease store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-set lost: the key's revision was not the expected one (or, for a create,
    /// the key already had a value).
    #[error("key {key} was changed concurrently (expected revision {expected})")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the write expected (0 for a create).
        expected: u64,
    },
    /// The store cannot be reached right now (no connection, timeout).
    #[error("lease store unavailable: {0}")]
    Unavailable(String),
    /// A bucket exists under the expected name but cannot be used.
    #[error("lease bucket {bucket} cannot be used: {reason}")]
    Bucket {
        /// The bucket's name.
        bucket: String,
        /// Why.
        reason: String,
    },
    /// The embedded store's storage failed.
    #[error("lease storage failed: {0}")]
    Storage(#[from] sled::Error),
}

/// A versioned key-value bucket with compare-and-set. See the module docs for the contract.
#[async_trait]
pub trait LeaseStore: Send + Sync + fmt::Debug + 'static {
    /// The key's latest version, including a deletion; `None` if it was never written.
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;

    /// Writes `value` if the key has no live value (never written, or deleted); returns the
    /// new revision, or [`StoreError::Conflict`].
    async fn create(&self, key: &str, value: Bytes) -> Result<u64, StoreError>;

    /// Writes `value` if the key's latest revision is `expected`; returns the new revision,
    /// or [`StoreError::Conflict`].
    async fn update(&self, key: &str, value: Bytes, expected: u64) -> Result<u64, StoreError>;

    /// Writes `value` whatever the key holds; returns the new revision.
    async fn put(&self, key: &str, value: Bytes) -> Result<u64, StoreError>;

    /// Deletes the key (a deletion is itself a version, seen by watchers).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// The latest version of every live key starting with `prefix` (`""` for all), each key
    /// once.
    async fn entries(&self, prefix: &str) -> Result<Vec<Versioned>, StoreError>;

    /// Streams the latest version of every key starting with `prefix` (`""` for all, else a
    /// prefix ending in `.`), then every new version as it is written. A key's versions
    /// arrive in revision order.
    async fn watch(&self, prefix: &str) -> Result<VersionStream, StoreError>;
}

/// Opens lease buckets by name. A board holds one; claims and presence ask it for their
/// space's bucket.
#[async_trait]
pub trait LeaseBuckets: Send + Sync + fmt::Debug + 'static {
    /// Opens bucket `name` (`[A-Za-z0-9_-]+`), creating it if needed.
    async fn open(&self, name: &str) -> Result<Arc<dyn LeaseStore>, StoreError>;
}
