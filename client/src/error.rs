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
    /// The agent's key is unusable: an unreadable or unsafe seed file, not a user seed, or
    /// a key that cannot sign.
    #[error("{}{reason}", path.as_ref().map(|p| format!("agent key file {}: ", p.display())).unwrap_or_else(|| "agent key: ".into()))]
    Key {
        /// The seed file, when the key was read from one.
        path: Option<PathBuf>,
        /// What is wrong with it.
        reason: String,
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
    /// The local store is damaged: sled cannot open it (or panicked trying). Nothing was
    /// changed. The message says what the store's seal knew only it held (writes the log had
    /// not acknowledged; for an embedded store, the log itself) and how to recover: move the
    /// directory aside and open again, and a new store rebuilds from the log what the log
    /// has. A store that opens but lost data is opened instead, with the loss logged and in
    /// `Replica::stats().store_loss`.
    #[error(transparent)]
    DamagedStore(blackboard::store::StoreError),
    /// The local store was written by a newer version of Blackboard, in a store format this
    /// version does not read ([`blackboard::store::STORE_FORMAT`]). Nothing was read or
    /// changed; the message names both formats and how to go on.
    #[error(transparent)]
    NewerStore(blackboard::store::StoreError),
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
    /// A roster body, or a pinned admin key, is not valid (see [`blackboard::trust`]).
    #[error(transparent)]
    Roster(#[from] blackboard::trust::RosterError),
    /// Publishing a roster needs the admin's key, and the board has none.
    #[error("publishing a roster needs an admin's key: open the board with Options::key or key_file (the CLI's --key)")]
    RosterNeedsKey,
    /// Every replica would ignore this roster (its signer is not an admin), so it was not
    /// published.
    #[error("every replica would ignore this roster for space {space}, so nothing was published: {source}")]
    RosterRefused {
        /// The space.
        space: blackboard::schemas::SpaceId,
        /// Why the replicas would ignore it.
        source: blackboard::trust::RosterError,
    },
    /// An engine operation failed (bad path, storage, log).
    #[error(transparent)]
    Engine(#[from] blackboard::Error),
}

impl Error {
    /// The error of opening the store at `path`: sled's own errors (a lock, permissions) as
    /// [`Error::Store`], a later version's store as [`Error::NewerStore`], damage as
    /// [`Error::DamagedStore`].
    pub(crate) fn opening_store(path: PathBuf, e: blackboard::store::StoreError) -> Self {
        match e {
            blackboard::store::StoreError::Sled(source) => Error::Store { path, source },
            e @ blackboard::store::StoreError::NewerFormat { .. } => Error::NewerStore(e),
            e => Error::DamagedStore(e),
        }
    }
}
