//! Where the board is and who opens it: the flags every command shares (`--nats`,
//! `--creds`, `--key`, `--store`, `--replicas`), read together with `NATS_URL`,
//! `NATS_CREDS` and `BLACKBOARD_KEY`, and opening the board they name through the SDK's
//! [`Options`], the one way a board is opened.
//!
//! `--store DIR` means what [`Options::store`] means: the agent's store directory. Alone, the
//! board is the embedded log in it (so the CLI reads an SDK application's embedded store);
//! with a NATS server, it keeps the replicas there instead of in a temporary directory.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use blackboard_client::{AgentId, Board, Options};

use crate::verbs::Usage;

/// The environment variable a NATS URL is read from when `--nats` is not given (the `nats`
/// tool's own).
pub const NATS_URL: &str = "NATS_URL";
/// The environment variable a NATS credentials file is read from when `--creds` is not given.
pub const NATS_CREDS: &str = "NATS_CREDS";
/// The environment variable the agent's key file is read from when `--key` is not given.
pub const BLACKBOARD_KEY: &str = "BLACKBOARD_KEY";

/// The flags that say which NATS server to use and who connects to it (`--nats`, `--creds`,
/// `--key`), with the environment variables that fill them in: one declaration that every
/// command opening a board ([`BoardArgs`]) and `bench` flatten, so they read and describe
/// them alike.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerArgs {
    /// The NATS JetStream server (for example nats://127.0.0.1:4222). Default: $NATS_URL.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// NATS credentials file. Default: $NATS_CREDS.
    #[arg(long, value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// The agent's nkey seed file (`blackboard keys new` writes one): the changes a command
    /// writes are signed with it, and with a NATS server (and no --creds) its connections
    /// authenticate as that nkey user. Default: $BLACKBOARD_KEY.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

impl ServerArgs {
    /// The server's URL: `--nats`, or `NATS_URL`.
    pub fn url(&self) -> Option<String> {
        self.nats.clone().or_else(|| var(NATS_URL))
    }

    /// The credentials file: `--creds`, or `NATS_CREDS`.
    pub fn creds_file(&self) -> Option<PathBuf> {
        self.creds
            .clone()
            .or_else(|| var(NATS_CREDS).map(PathBuf::from))
    }

    /// The agent's key file: `--key`, or `BLACKBOARD_KEY`.
    pub fn key_file(&self) -> Option<PathBuf> {
        self.key
            .clone()
            .or_else(|| var(BLACKBOARD_KEY).map(PathBuf::from))
    }
}

/// The flags that say where the board is.
#[derive(Debug, Clone, clap::Args)]
pub struct BoardArgs {
    /// The NATS server and who connects to it.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Pins an admin key (`U…`, repeatable) a space's first roster must be signed by: a
    /// roster founded by any other key is ignored, as if the space were open (without it,
    /// whoever publishes the first roster founds the space's trust).
    #[arg(long = "admin-key", value_name = "U…")]
    pub admin_keys: Vec<String>,
    /// The store directory, as the SDK's `Options::store`. Without --nats: the board is the
    /// embedded log in it, even when $NATS_URL is set (an SDK application's `.embedded()`
    /// store; only one process can open it at a time). With --nats: the replicas are kept
    /// there (a temporary directory otherwise).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// How many servers keep each stream and lease bucket this command creates: 1 on a
    /// single server, 3 or 5 on a cluster. Existing ones keep theirs.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
}

/// The log the flags name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Log {
    /// A NATS JetStream server; replicas in `store`, or in a temporary directory.
    Nats {
        /// The server's URL.
        url: String,
        /// The credentials file, if any.
        creds: Option<PathBuf>,
        /// Where the replicas are kept.
        store: Option<PathBuf>,
    },
    /// The embedded log in the store directory `store`.
    Embedded {
        /// The store directory.
        store: PathBuf,
    },
}

impl Log {
    /// Where the log is, for messages: the URL, or "the store DIR".
    pub fn place(&self) -> String {
        match self {
            Log::Nats { url, .. } => url.clone(),
            Log::Embedded { store } => format!("the store {}", store.display()),
        }
    }
}

/// A variable of the environment, unless unset or empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl BoardArgs {
    /// The log these flags name, with `NATS_URL` and `NATS_CREDS` filling in absent flags;
    /// `None` when nothing names one. An explicit `--store` alone means the embedded log even
    /// when `NATS_URL` is set: the `nats` tool's users often have it exported.
    pub fn log(&self) -> Result<Option<Log>, Usage> {
        let server = &self.server;
        let log = match (&server.nats, &self.store) {
            (Some(url), store) => Some(Log::Nats {
                url: url.clone(),
                creds: server.creds_file(),
                store: store.clone(),
            }),
            (None, Some(store)) => Some(Log::Embedded {
                store: store.clone(),
            }),
            (None, None) => server.url().map(|url| Log::Nats {
                url,
                creds: server.creds_file(),
                store: None,
            }),
        };
        if server.creds.is_some() && !matches!(log, Some(Log::Nats { .. })) {
            return Err(Usage(format!(
                "--creds is for a NATS server: give --nats URL too (or set {NATS_URL}); \
                 --store alone is the embedded log"
            )));
        }
        Ok(log)
    }

    /// The agent's key file: `--key`, or `BLACKBOARD_KEY`.
    pub fn key_file(&self) -> Option<PathBuf> {
        self.server.key_file()
    }

    /// The log these flags name; naming none is a usage error.
    pub fn required_log(&self) -> Result<Log, Usage> {
        self.log()?.ok_or_else(|| {
            Usage(format!(
                "give --nats URL (or set {NATS_URL}) or --store DIR: where is the board?"
            ))
        })
    }

    /// The SDK options of `agent` with these flags' credentials and replicas, its store in
    /// `store`.
    pub fn options(
        &self,
        log: &Log,
        agent: &AgentId,
        store: &Path,
    ) -> Result<Options, blackboard_client::Error> {
        let mut options = Options::new(agent.as_str())?
            .store(store)
            .replicas(usize::from(self.replicas));
        if let Some(key) = self.key_file() {
            options = options.key_file(key)?;
        }
        if !self.admin_keys.is_empty() {
            options = options.pinned_admins(self.admin_keys.clone())?;
        }
        if let Log::Nats {
            creds: Some(creds), ..
        } = log
        {
            options = options.credentials_file(creds);
        }
        Ok(options)
    }
}

/// A board opened from the flags, and the temporary directory of its replicas (with NATS and
/// no `--store`), removed when this goes.
#[derive(Debug)]
pub struct Connected {
    /// The board.
    pub board: Board,
    /// The log it is on.
    pub log: Log,
    /// Removed after the board is gone (fields drop in order).
    _temp: Option<tempfile::TempDir>,
}

impl Connected {
    /// Where the log is, for messages.
    pub fn place(&self) -> String {
        self.log.place()
    }

    /// Fails unless the board reaches its log within `within`: the SDK connects in the
    /// background and would otherwise let a reader wait out its whole timeout against a
    /// server that is not there.
    pub async fn reachable(&self, within: std::time::Duration) -> anyhow::Result<()> {
        if tokio::time::timeout(within, self.board.connected())
            .await
            .is_err()
        {
            anyhow::bail!(
                "cannot connect to NATS at {}: no answer within {} s",
                self.place(),
                within.as_secs_f32()
            );
        }
        Ok(())
    }

    /// The temporary store of this board's replicas, kept on disk instead of removed when
    /// the board goes (it holds a change the log has not acknowledged), with a note in it
    /// saying so; `None` when the store is not a temporary one. The kept directory is never
    /// swept away (see [`sweep_leftovers`]).
    pub fn keep_store(&mut self) -> Option<PathBuf> {
        let dir = self._temp.take()?.keep();
        let note = "This store holds changes the log had not acknowledged when the command \
                    ended. Open it with --store to publish them (any blackboard command with \
                    --nats URL --store DIR does), then remove the directory.\n";
        if let Err(e) = std::fs::write(dir.join(KEPT), note) {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot mark the kept store");
        }
        Some(dir)
    }

    /// Closes the board: replicas closed, local state flushed.
    pub async fn close(self) -> anyhow::Result<()> {
        let place = self.place();
        self.board
            .close()
            .await
            .with_context(|| format!("closing the board on {place}"))
    }
}

/// What opening may find missing, and create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// A missing embedded store is an error; nothing is created.
    Refuse,
    /// A missing embedded store is created.
    Create,
}

/// Opens the board of `log` as `agent`, through the SDK's [`Options`] (`tune` adjusts them:
/// snapshots, watch capacity). The replicas of a NATS board live in the `--store` directory
/// or a temporary one named after `purpose`.
pub async fn open(
    args: &BoardArgs,
    log: Log,
    agent: &AgentId,
    missing: Missing,
    purpose: &str,
    tune: impl FnOnce(Options) -> Options,
) -> anyhow::Result<Connected> {
    match &log {
        Log::Nats { url, store, .. } => {
            let (dir, temp) = match store {
                Some(dir) => (dir.clone(), None),
                None => {
                    sweep_leftovers(&std::env::temp_dir());
                    // The process id in the name lets a later command tell a store whose
                    // process was killed (and could not remove it) from one in use.
                    let temp = tempfile::Builder::new()
                        .prefix(&format!("blackboard-{purpose}-{}-", std::process::id()))
                        .tempdir()
                        .context("creating a temporary replica store")?;
                    (temp.path().to_owned(), Some(temp))
                }
            };
            let board = tune(args.options(&log, agent, &dir)?)
                .connect(url)
                .await
                .map_err(|e| store_error(e, &dir))?;
            Ok(Connected {
                board,
                log,
                _temp: temp,
            })
        }
        Log::Embedded { store } => {
            if missing == Missing::Refuse && !is_store(store) {
                anyhow::bail!(
                    "no blackboard store in {}: there is no store database there (an SDK \
                     application's `.store(DIR).embedded()`, `blackboard demo --store DIR` and \
                     `blackboard put --store DIR` write one)",
                    store.display()
                );
            }
            let board = tune(args.options(&log, agent, store)?)
                .embedded()
                .await
                .map_err(|e| store_error(e, store))?;
            Ok(Connected {
                board,
                log,
                _temp: None,
            })
        }
    }
}

/// The file that marks a temporary store kept on purpose ([`Connected::keep_store`]).
const KEPT: &str = "UNPUBLISHED-CHANGES.txt";

/// Removes the temporary replica stores in `tmp` left behind by commands that were killed
/// (`blackboard-<purpose>-<pid>-*` whose process is gone), except those kept on purpose
/// because they hold unacknowledged changes. Only where `/proc` tells which processes
/// live (Linux); elsewhere nothing is removed. Failures are ignored: this is tidying up.
pub fn sweep_leftovers(tmp: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(leftover_pid) else {
            continue;
        };
        let dir = entry.path();
        let alive = Path::new("/proc").join(pid.to_string()).exists();
        if alive || dir.join(KEPT).exists() || !dir.is_dir() {
            continue;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => tracing::debug!(dir = %dir.display(), "removed a killed command's store"),
            Err(e) => tracing::debug!(dir = %dir.display(), error = %e, "cannot remove"),
        }
    }
}

/// The process id in a temporary store's name, `blackboard-<purpose>-<pid>-<random>`.
fn leftover_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("blackboard-")?;
    let mut parts = rest.splitn(3, '-');
    let (_purpose, pid, random) = (parts.next()?, parts.next()?, parts.next()?);
    if random.is_empty() {
        return None;
    }
    pid.parse().ok()
}

/// Whether `dir` holds a store (a sled database), so a reader does not create one by
/// looking.
pub fn is_store(dir: &Path) -> bool {
    dir.join("conf").is_file() && dir.join("db").is_file()
}

/// The SDK's error, with a lock on the store said plainly: that is the usual way opening a
/// store fails.
fn store_error(e: blackboard_client::Error, dir: &Path) -> anyhow::Error {
    if let blackboard_client::Error::Store { source, .. } = &e {
        let locked = matches!(source, sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock"));
        if locked {
            return anyhow::anyhow!(
                "the store {} is in use by another process: only one process can open a \
                 store at a time; stop it, or share the board over --nats",
                dir.display()
            );
        }
    }
    anyhow::Error::new(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(nats: Option<&str>, creds: Option<&str>, store: Option<&str>) -> BoardArgs {
        BoardArgs {
            server: ServerArgs {
                nats: nats.map(str::to_owned),
                creds: creds.map(PathBuf::from),
                key: None,
            },
            admin_keys: Vec::new(),
            store: store.map(PathBuf::from),
            replicas: 1,
        }
    }

    #[test]
    fn only_temporary_stores_of_dead_processes_are_swept_and_kept_ones_stay() {
        assert_eq!(leftover_pid("blackboard-cli-123-abc"), Some(123));
        assert_eq!(leftover_pid("blackboard-cli-abc"), None);
        assert_eq!(leftover_pid("other-cli-1-abc"), None);
        let tmp = tempfile::tempdir().unwrap();
        // A pid above the kernel's maximum (4194304) is never alive.
        let dead = tmp.path().join("blackboard-cli-99999999-x1");
        let kept = tmp.path().join("blackboard-cli-99999999-x2");
        let live = tmp
            .path()
            .join(format!("blackboard-cli-{}-x3", std::process::id()));
        for d in [&dead, &kept, &live] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("db"), b"x").unwrap();
        }
        std::fs::write(kept.join(KEPT), b"kept").unwrap();
        sweep_leftovers(tmp.path());
        assert!(!dead.exists());
        assert!(kept.exists() && live.exists());
    }

    #[test]
    fn flags_name_the_log_and_a_store_alone_is_the_embedded_log() {
        let nats = args(Some("nats://h:4222"), Some("a.creds"), Some("d")).log();
        assert_eq!(
            nats.unwrap(),
            Some(Log::Nats {
                url: "nats://h:4222".into(),
                creds: Some("a.creds".into()),
                store: Some("d".into()),
            })
        );
        let embedded = args(None, None, Some("d")).log().unwrap();
        assert_eq!(embedded, Some(Log::Embedded { store: "d".into() }));
        let e = args(None, Some("a.creds"), Some("d")).log().unwrap_err();
        assert!(e.0.contains("--creds") && e.0.contains("--nats"), "{}", e.0);
    }
}
