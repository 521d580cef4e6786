//! How to open a board.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blackboard::lease::JetStreamLeases;
use blackboard::log::{EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog};
use blackboard::schemas::nkeys::{KeyPair, KeyPairType};
use blackboard::schemas::{AgentId, Provenance};

use crate::board::Settings;
use crate::{Board, Error};

/// Options for opening a [`Board`]: the agent's identity, where its local state lives, and how
/// to reach the log. Start with [`Options::new`], adjust, then call
/// [`connect`](Options::connect) (NATS JetStream) or [`embedded`](Options::embedded).
///
/// ```no_run
/// # async fn f() -> Result<(), blackboard_client::Error> {
/// use blackboard_client::Options;
///
/// let board = Options::new("planner")?
///     .store("./data/planner")
///     .credentials_file("planner.creds")
///     .connect("nats://localhost:4222")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    agent: AgentId,
    store: Option<PathBuf>,
    credentials: Option<PathBuf>,
    jetstream: JetStreamConfig,
    settings: Settings,
}

impl Options {
    /// Options for agent `agent` (1 to 64 of `[A-Za-z0-9_-]`).
    pub fn new(agent: &str) -> Result<Self, Error> {
        Ok(Self {
            agent: agent.parse()?,
            store: None,
            credentials: None,
            jetstream: JetStreamConfig::default(),
            settings: Settings::default(),
        })
    }

    /// The agent's nkey user key pair (with its seed): its NATS identity and the signer of
    /// its changes. With a key, every envelope the board's replicas publish is signed, and
    /// [`connect`](Self::connect) authenticates as this nkey user (unless a credentials file
    /// is given too, which then authenticates the connection). Fails for a key that cannot
    /// sign changes (not a user key, or no seed).
    ///
    /// ```
    /// use blackboard_client::{schemas::nkeys::KeyPair, Options};
    /// let options = Options::new("planner")?.key(KeyPair::new_user())?;
    /// assert!(Options::new("planner")?.key(KeyPair::new_account()).is_err());
    /// # Ok::<(), blackboard_client::Error>(())
    /// ```
    pub fn key(mut self, key: KeyPair) -> Result<Self, Error> {
        check_key(&key).map_err(|reason| Error::Key { path: None, reason })?;
        self.settings.stamp.key = Some(Arc::new(key));
        Ok(self)
    }

    /// Reads the agent's key from a seed file (`SU…`, as `blackboard keys new` writes it)
    /// and uses it as [`key`](Self::key) does. Fails, naming the file, when it cannot be
    /// read, does not hold a user seed, or (on Unix) can be read by its group or others.
    pub fn key_file(self, path: impl AsRef<Path>) -> Result<Self, Error> {
        let key = read_key_file(path.as_ref())?;
        self.key(key)
    }

    /// The provenance declared in every envelope this board writes: who the agent acts for,
    /// the model, the tool call. Signed with the change when the board has a key.
    pub fn provenance(mut self, provenance: Provenance) -> Self {
        self.settings.stamp.provenance = Some(provenance);
        self
    }

    /// Pins the admin keys (`U…`) a space's first roster must be signed by, for every
    /// replica this board opens and for [`Board::roster`]: without pinning, whoever
    /// publishes a space's first roster (signed by one of its own admins) founds its trust,
    /// so a forger who gets there first takes the space. Fails for a key that is not an
    /// nkey user public key.
    ///
    /// ```
    /// use blackboard_client::{schemas::nkeys::KeyPair, Options};
    /// let admin = KeyPair::new_user().public_key();
    /// let options = Options::new("planner")?.pinned_admins(vec![admin])?;
    /// assert!(Options::new("planner")?.pinned_admins(vec!["nope".into()]).is_err());
    /// # Ok::<(), blackboard_client::Error>(())
    /// ```
    pub fn pinned_admins(mut self, keys: Vec<String>) -> Result<Self, Error> {
        for key in &keys {
            blackboard::schemas::signature::user_public_key(key).map_err(|e| {
                Error::Roster(blackboard::trust::RosterError::BadKey {
                    whom: "the pinned admins".into(),
                    key: key.clone(),
                    reason: e.to_string(),
                })
            })?;
        }
        self.settings.pinned_admins = Some(keys);
        Ok(self)
    }

    /// The public key (`U…`) of the agent's key, if it has one.
    pub fn public_key(&self) -> Option<String> {
        self.settings.stamp.key.as_ref().map(|k| k.public_key())
    }

    /// The directory of the agent's local store (sled). Defaults to `.blackboard/<agent>` in
    /// the current directory. Reopening the same directory resumes where the agent left off.
    pub fn store(mut self, dir: impl Into<PathBuf>) -> Self {
        self.store = Some(dir.into());
        self
    }

    /// A NATS credentials (`.creds`) file to authenticate with.
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials = Some(path.into());
        self
    }

    /// How streams are created (replicas, duplicate window, ack timeout). The replicas
    /// apply to the space's claims and presence buckets too.
    pub fn jetstream(mut self, config: JetStreamConfig) -> Self {
        self.jetstream = config;
        self
    }

    /// How many servers keep each stream and lease bucket this board creates: 1 (the
    /// default) on a single server, 3 or 5 on a cluster. Existing streams keep theirs.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.jetstream.replicas = replicas.max(1);
        self
    }

    /// The store directory: the one given to [`store`](Self::store), or the default.
    fn store_dir(&self) -> PathBuf {
        self.store
            .clone()
            .unwrap_or_else(|| Path::new(".blackboard").join(self.agent.as_str()))
    }

    /// How many change events a live watcher may fall behind its document before it is told
    /// it lags (default 1024). Memory for watchers is bounded by this, per document.
    pub fn watch_capacity(mut self, events: usize) -> Self {
        self.settings.watch_capacity = Some(events.max(1));
        self
    }

    /// When this agent's replicas write snapshots of their documents to the log (default:
    /// every 10,000 new events or 10 minutes, skipping when another agent wrote a recent
    /// one; no trimming). New replicas start from the newest snapshot instead of reading
    /// the whole history.
    pub fn snapshots(mut self, policy: blackboard::replica::SnapshotPolicy) -> Self {
        self.settings.snapshots = Some(policy);
        self
    }

    /// What a write waits for before it returns (default [`Durability::Local`]: the
    /// change is fsynced to local disk and queued for the log). [`Durability::Log`] waits
    /// for the log's acknowledgement instead and writes nothing to local disk on the way:
    /// many concurrent writers then share each publish round trip, and a write that
    /// returned is on the log, while one the log never acknowledged is lost in a crash.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use blackboard_client::{Durability, Options};
    /// # let dir = tempfile::tempdir()?;
    /// let board = Options::new("bulk-loader")?
    ///     .store(dir.path())
    ///     .durability(Durability::Log)
    ///     .embedded()
    ///     .await?;
    /// let doc = board.doc("team", "facts")?;
    /// doc.put("/1", "on the log when this returns".into()).await?;
    /// assert_eq!(doc.pending(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// [`Durability::Local`]: blackboard::replica::Durability::Local
    /// [`Durability::Log`]: blackboard::replica::Durability::Log
    pub fn durability(mut self, durability: blackboard::replica::Durability) -> Self {
        self.settings.durability = durability;
        self
    }

    /// Lets concurrent writes to one document share a change (default: off, one change per
    /// write). While one write holds the document, the writes that arrive meanwhile wait;
    /// the next round makes as many as fit in one change and one event, and each caller
    /// still gets its own answer. Writes share a change only when their message and
    /// provenance are equal and their paths do not overlap, so every value written appears
    /// in the history; a write that fails fails alone. With many writers in one process
    /// this multiplies throughput (each change's envelope, publish, read-back and storage
    /// is paid once per round); the cost is that a round is one event, so history and
    /// watchers see its writes together. See
    /// [`Config::coalesce_writes`](blackboard::replica::Config::coalesce_writes).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use blackboard_client::Options;
    /// # let dir = tempfile::tempdir()?;
    /// let board = Options::new("crawler")?
    ///     .store(dir.path())
    ///     .coalesce_writes(true)
    ///     .embedded()
    ///     .await?;
    /// let doc = board.doc("team", "pages")?;
    /// let writes = (0..8).map(|i| {
    ///     let doc = doc.clone();
    ///     tokio::spawn(async move { doc.put(&format!("/page{i}"), i.into()).await })
    /// });
    /// for w in writes {
    ///     assert!(w.await??.is_some()); // each write's answer names the change holding it
    /// }
    /// assert_eq!(doc.get("/page7")?, Some(7.into()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn coalesce_writes(mut self, on: bool) -> Self {
        self.settings.coalesce_writes = on;
        self
    }

    fn board(self, log: Arc<dyn EventLog>, db: sled::Db) -> Board {
        Board::with_log(self.agent, log, db).with_settings(self.settings)
    }

    fn open_db(&self) -> Result<sled::Db, Error> {
        let path = self.store_dir();
        // Guarded and checked against the store's seal (damage is an error, never a panic).
        blackboard::store::open_db(&path).map_err(|e| Error::opening_store(path, e))
    }

    /// Opens the board on NATS JetStream at `url`, whether or not the server can be reached
    /// now: the local store is opened first, and the connection is made (and remade after
    /// any outage) in the background. Until it is up, writes are made and kept durably in
    /// the store and published as soon as the server answers; reads see the local replica.
    /// [`Board::is_connected`] says whether the connection is up, and [`Board::connected`]
    /// waits for it.
    ///
    /// Fails only for what the server cannot fix: a store that cannot be opened, an
    /// unreadable credentials file, a URL that is not one, and credentials or a key the
    /// server refuses ([`Error::Connect`] with `log::Error::Credentials`, at once: the first
    /// connection attempt is awaited for up to two seconds; retrying would not help).
    pub async fn connect(self, url: &str) -> Result<Board, Error> {
        // Credentials first: an unreadable file is an error before anything is opened.
        let nats = self.nats_options(url).await?;
        let db = self.open_db()?;
        let log = JetStreamLog::connect(url, nats, self.jetstream.clone())
            .await
            .map_err(|source| Error::Connect {
                url: blackboard::log::redact_url(url),
                source,
            })?;
        let leases = JetStreamLeases::hearing(&log, self.jetstream.replicas);
        let board = self
            .board(Arc::new(log.clone()), db)
            .with_leases(Arc::new(leases))
            .with_nats(log);
        board.open_unpublished();
        Ok(board)
    }

    /// The connection's options: its name, reconnection, and who it authenticates as (a user
    /// and password in the URL, a credentials file, or the agent's nkey).
    pub async fn nats_options(&self, url: &str) -> Result<async_nats::ConnectOptions, Error> {
        let mut nats = async_nats::ConnectOptions::new()
            .name(format!("blackboard:{}", self.agent))
            .retry_on_initial_connect()
            .reconnect_delay_callback(reconnect_delay);
        // A user and password in the URL (`nats://reader:secret@host:4222`): async-nats
        // 0.51 reads the host from it but not them.
        if let Ok(addr) = url.parse::<async_nats::ServerAddr>() {
            if let (Some(user), Some(password)) = (addr.username(), addr.password()) {
                nats = nats.user_and_password(user.to_owned(), password.to_owned());
            }
        }
        if let Some(path) = &self.credentials {
            nats = nats
                .credentials_file(path)
                .await
                .map_err(|source| Error::Credentials {
                    path: path.clone(),
                    source,
                })?;
        } else if let Some(key) = &self.settings.stamp.key {
            let seed = key.seed().map_err(|e| Error::Key {
                path: None,
                reason: e.to_string(),
            })?;
            nats = nats.nkey(seed);
        }
        Ok(nats)
    }

    /// Opens the board on the embedded log, stored with the agent's state: one process, no
    /// server.
    pub async fn embedded(self) -> Result<Board, Error> {
        let db = self.open_db()?;
        let log = EmbeddedLog::open(db.clone()).map_err(blackboard::Error::from)?;
        let board = self.board(Arc::new(log) as Arc<dyn EventLog>, db);
        board.open_unpublished();
        Ok(board)
    }
}

/// Why `key` cannot sign changes, if it cannot.
fn check_key(key: &KeyPair) -> Result<(), String> {
    if key.key_pair_type() != KeyPairType::User {
        return Err(format!(
            "the key is a {:?} key, not an nkey user key (its public key would start with U)",
            key.key_pair_type()
        ));
    }
    key.seed()
        .map(drop)
        .map_err(|_| "the key has no seed (a public key alone cannot sign)".to_owned())
}

/// Reads an nkey user seed file (see [`Options::key_file`]).
pub(crate) fn read_key_file(path: &Path) -> Result<KeyPair, Error> {
    let bad = |reason: String| Error::Key {
        path: Some(path.to_owned()),
        reason,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|e| bad(format!("cannot read it: {e}")))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "it is readable by others (mode {:o}); a seed is a secret: chmod 600 it",
                mode & 0o777
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let seed = text.trim();
    if !seed.starts_with("SU") {
        return Err(bad(
            "it does not hold an nkey user seed (one line starting with SU, as `blackboard keys new` writes)"
                .into(),
        ));
    }
    let key = KeyPair::from_seed(seed).map_err(|e| bad(format!("its seed is not valid: {e}")))?;
    check_key(&key).map_err(bad)?;
    Ok(key)
}

/// How long the client waits before its `attempts`th try to reach the server again: at
/// once, then 50 ms doubling up to 500 ms. async-nats's default grows to 4 s, which would
/// keep an agent offline for up to 4 s after the server is back; a try costs one TCP
/// connect.
fn reconnect_delay(attempts: usize) -> std::time::Duration {
    let exp = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(4);
    if attempts <= 1 {
        std::time::Duration::ZERO
    } else {
        std::time::Duration::from_millis((50u64 << exp).min(500))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_credentials_file_is_an_error_naming_the_file() {
        let err = Options::new("a")
            .unwrap()
            .credentials_file("/nonexistent/agent.creds")
            .connect("nats://127.0.0.1:1")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Credentials { .. }), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/agent.creds"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_still_opens_a_board_that_writes_locally() {
        let dir = tempfile::tempdir().unwrap();
        let board = Options::new("a")
            .unwrap()
            .store(dir.path())
            .connect("nats://127.0.0.1:1")
            .await
            .unwrap();
        assert!(!board.is_connected());
        let doc = board.doc("s", "d").unwrap();
        doc.put("/k", 1.into()).await.unwrap();
        assert_eq!(doc.get("/k").unwrap(), Some(1.into()));
        assert_eq!(doc.replica().pending(), 1);
    }

    #[test]
    fn reconnecting_waits_at_most_half_a_second() {
        assert_eq!(reconnect_delay(1), std::time::Duration::ZERO);
        assert_eq!(reconnect_delay(2), std::time::Duration::from_millis(100));
        assert!((1..100).all(|n| reconnect_delay(n) <= std::time::Duration::from_millis(500)));
    }

    #[test]
    fn a_bad_agent_name_is_refused() {
        let err = Options::new("bad name").unwrap_err();
        assert!(err.to_string().contains("agent id"), "{err}");
    }

    #[tokio::test]
    async fn a_store_held_by_another_board_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Options::new("a")
            .unwrap()
            .store(dir.path())
            .embedded()
            .await
            .unwrap();
        let err = Options::new("a")
            .unwrap()
            .store(dir.path())
            .embedded()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Store { .. }), "{err}");
    }

    #[tokio::test]
    async fn opening_a_document_twice_shares_one_replica_even_across_as_agent() {
        let dir = tempfile::tempdir().unwrap();
        let board = Options::new("a")
            .unwrap()
            .store(dir.path())
            .embedded()
            .await
            .unwrap();
        let same = board.as_agent("a").unwrap();
        let d1 = board.doc("s", "d").unwrap();
        let d2 = same.doc("s", "d").unwrap();
        d1.put("/k", 1.into()).await.unwrap();
        // No waiting: the second handle is the same replica, not a peer.
        assert_eq!(d2.get("/k").unwrap(), Some(1.into()));
    }
}
