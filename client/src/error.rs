//! The SDK's error type.

use std::path::PathBuf;

/// Errors from the agent SDK.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An id (agent, space, document) was not valid.
    #[error(transparent)]
    Id(#[from] blackboard::schemas::IdError),
    /// The connection to NATS could not be set up (a malformed URL; an unreachable server
    /// is not an error: [`Options::connect`](crate::Options::connect) connects in the
    /// background).
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        /// The URL tried.
        url: String,
        /// Why it failed.
        source: blackboard::log::Error,
    },
    /// The credentials file could not be read.
    #[error("cannot read NATS credentials file {path}: {source}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A space's stream could not be looked up on the NATS server.
    #[error("cannot look up stream {stream}: {source}")]
    Stream {
        /// The stream's name.
        stream: String,
        /// Why it failed.
        source: async_nats::jetstream::context::GetStreamError,
    },
    /// A watch pattern was malformed.
    #[error(transparent)]
    Pattern(#[from] blackboard::watch::PatternError),
    /// The local store could not be opened.
    #[error("cannot open the local store at {path}: {source}")]
    Store {
        /// The store's directory.
        path: PathBuf,
        /// Why it failed.
        source: sled::Error,
    },
    /// A value could not be converted to or from the requested type.
    #[error("value at {path} does not fit the requested type: {source}")]
    Type {
        /// The path read or written.
        path: String,
        /// The serde error.
        source: serde_json::Error,
    },
    /// A claim operation failed (held, lapsed, bad name or ttl, lease store).
    #[error(transparent)]
    Claim(#[from] blackboard::claim::ClaimError),
    /// A presence operation failed.
    #[error(transparent)]
    Presence(#[from] blackboard::presence::PresenceError),
    /// An engine operation failed (bad path, storage, log).
    #[error(transparent)]
    Engine(#[from] blackboard::Error),
}
