//! Where a verb's document comes from: the options every verb shares, and opening the
//! document on a throwaway replica that has caught up with the log.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use blackboard::history::At;
use blackboard::log::{EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog};
use blackboard::replica::{Config, Position, SnapshotPolicy};
use blackboard::schemas::{subject, AgentId, DocumentId, SpaceId};
use blackboard::Replica;

/// The log a verb reads or writes, and the space in it: the options every verb shares.
/// The default space is the one `blackboard demo` writes.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("log").required(true).args(["nats", "store"])))]
pub struct LogArgs {
    /// Space of the documents.
    #[arg(long, default_value = "demo")]
    pub space: SpaceId,
    /// Use the NATS JetStream server at this URL (for example nats://127.0.0.1:4222).
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// NATS credentials file, with --nats.
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub creds: Option<PathBuf>,
    /// Use the embedded log in this store directory (the one `blackboard demo --store DIR`
    /// wrote; `put` creates it). Only one process can open a store at a time.
    #[arg(long, value_name = "DIR", conflicts_with = "nats")]
    pub store: Option<PathBuf>,
    /// The agent id this command acts as: the writer `put` records (the reading verbs
    /// write nothing, besides `snapshot`).
    #[arg(long = "as", value_name = "AGENT", default_value = "cli")]
    pub as_agent: AgentId,
    /// How long to wait for the log (to deliver the document's events, to acknowledge a
    /// write), in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
}

impl LogArgs {
    /// The `--timeout` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// Runs `f`, failing after `--timeout` with an error naming what was awaited.
    pub async fn within<T>(
        &self,
        what: impl std::fmt::Display,
        f: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::time::timeout(self.timeout(), f).await.map_err(|_| {
            anyhow::anyhow!(
                "timed out after {} s waiting for {what} (raise --timeout)",
                self.timeout
            )
        })?
    }
}

/// The document a history verb reads (`--doc`), and its log. The defaults name the
/// document `blackboard demo` writes.
#[derive(Debug, Clone, clap::Args)]
pub struct Source {
    #[command(flatten)]
    pub log: LogArgs,
    /// The document.
    #[arg(long, default_value = "board")]
    pub doc: DocumentId,
}

/// What opening a document may find, and may create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The document must have events (the history verbs, `get`); nothing is created.
    Existing,
    /// The space must exist, the document may have no events yet (`watch`); nothing is
    /// created.
    MayBeEmpty,
    /// Anything missing is created on the first write: the space's stream, the store
    /// directory (`put`).
    Create,
    /// Only the log is opened, not a document; an unknown space is an empty one (`ls`).
    /// Nothing is created.
    Listing,
}

/// An event log opened from the command line's flags.
#[derive(Debug)]
pub struct Log {
    /// The log.
    pub log: Arc<dyn EventLog>,
    /// The embedded log's database, flushed on [`close`](Self::close).
    db: Option<sled::Db>,
    /// Where the log is, for messages: the URL or "the store DIR".
    pub place: String,
}

impl Log {
    /// Opens the log `args` name. Unless `mode` is [`Mode::Create`], an unknown space
    /// (no stream on the server) or a missing store directory is an error and nothing is
    /// created.
    pub async fn open(args: &LogArgs, mode: Mode) -> anyhow::Result<Log> {
        match (&args.nats, &args.store) {
            (Some(url), _) => {
                let check = matches!(mode, Mode::Existing | Mode::MayBeEmpty);
                let log = args
                    .within(
                        format_args!("NATS at {url}"),
                        connect(url, args.creds.as_deref(), &args.space, check),
                    )
                    .await?;
                Ok(Log {
                    log,
                    db: None,
                    place: url.clone(),
                })
            }
            (None, Some(dir)) => {
                let db = open_store(dir, mode == Mode::Create)?;
                let log = Arc::new(EmbeddedLog::open(db.clone())?);
                Ok(Log {
                    log,
                    db: Some(db),
                    place: format!("the store {}", dir.display()),
                })
            }
            (None, None) => bail!("give --nats URL or --store DIR"),
        }
    }

    /// Makes what this command wrote to an embedded log durable.
    pub async fn close(&self) -> anyhow::Result<()> {
        if let Some(db) = &self.db {
            blackboard::store::flush_db(db)
                .await
                .context("flushing the store")?;
        }
        Ok(())
    }
}

/// A document opened for a verb: a replica in a temporary store (removed on drop) that
/// has applied every event the log held when it was opened.
#[derive(Debug)]
pub struct Opened {
    /// The replica.
    pub replica: Replica,
    /// The log the replica follows.
    pub log: Log,
    /// Keeps the temporary store until the replica is gone (fields drop in order).
    _temp: tempfile::TempDir,
}

impl Opened {
    /// The replica's position now: the last event applied and the heads.
    pub fn position(&self) -> Position {
        self.replica.position()
    }

    /// Whether the document has no events (only possible with [`Mode::MayBeEmpty`] and
    /// [`Mode::Create`]).
    pub fn is_empty(&self) -> bool {
        let position = self.position();
        position.seq == 0 && position.heads.is_empty()
    }

    /// `space/document`, for messages.
    pub fn name(&self) -> String {
        let config = self.replica.config();
        format!("{}/{}", config.space, config.document)
    }

    /// Makes what this command wrote to an embedded log durable.
    pub async fn close(self) -> anyhow::Result<()> {
        self.log.close().await
    }
}

/// Opens a history verb's document and waits until it has applied every event the log
/// holds now. An unknown space or a document without events is an error.
pub async fn open(src: &Source) -> anyhow::Result<Opened> {
    open_doc(&src.log, &src.doc, Mode::Existing).await
}

/// Opens `doc` on the log `args` name and waits until it has applied every event the log
/// holds now. What may be missing depends on `mode`.
pub async fn open_doc(args: &LogArgs, doc: &DocumentId, mode: Mode) -> anyhow::Result<Opened> {
    let temp = tempfile::Builder::new()
        .prefix("blackboard-cli-")
        .tempdir()
        .context("creating a temporary store directory")?;
    let replica_db = sled::open(temp.path()).context("opening the temporary store")?;
    let log = Log::open(args, mode).await?;
    let mut config = Config::new(args.space.clone(), doc.clone(), args.as_agent.clone());
    config.snapshots = SnapshotPolicy::manual();
    let replica = Replica::open(log.log.clone(), &replica_db, config)?;
    let caught_up = async {
        let last = replica.sync().await?;
        // After a trim the log may hold no event of the document at all: the snapshot's
        // position is then the one to reach.
        let snapshot = log.log.snapshot_info(&args.space, doc).await?;
        let target = last.max(snapshot.map_or(0, |s| s.seq));
        replica.wait_for_position(target).await?;
        anyhow::Ok(target)
    };
    let place = &log.place;
    args.within(
        format_args!("{place} to deliver {}/{doc}", args.space),
        async {
            caught_up
                .await
                .with_context(|| format!("reading {}/{doc} from {place}", args.space))
        },
    )
    .await?;
    let opened = Opened {
        replica,
        log,
        _temp: temp,
    };
    if mode == Mode::Existing && opened.is_empty() {
        bail!(
            "unknown document {}/{doc}: {} holds no events for it",
            args.space,
            opened.log.place
        );
    }
    Ok(opened)
}

/// Turns the position given to `flag` into a position of the document, with an error that
/// names the flag.
pub fn resolve(opened: &Opened, flag: &str, at: &At) -> anyhow::Result<Position> {
    let last = opened.position().seq;
    if let At::Seq(n) = at {
        if *n > last {
            bail!("{flag} {n}: the document's last event is at sequence {last}");
        }
    }
    opened
        .replica
        .resolve(at)
        .with_context(|| format!("{flag} {at}"))
}

/// Opens the sled database of the store directory `dir`, as `blackboard demo --store`
/// laid it out; with `create`, makes it if missing.
pub(crate) fn open_store(dir: &FsPath, create: bool) -> anyhow::Result<sled::Db> {
    let path = dir.join("replicas");
    if !create && !path.is_dir() {
        bail!(
            "no blackboard store in {}: {} does not exist (`blackboard demo --store DIR` \
             and `blackboard put --store DIR` write one there)",
            dir.display(),
            path.display()
        );
    }
    sled::open(&path).map_err(|e| {
        let locked = matches!(&e, sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock"));
        if locked {
            anyhow::anyhow!(
                "the store {} is in use by another process: only one process can open a \
                 store at a time; stop it, or read the log over --nats",
                dir.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("opening the store {}", dir.display()))
        }
    })
}

/// Connects to NATS as `name`, with a credentials file if given; errors say which step
/// failed.
pub(crate) async fn connect_nats(
    url: &str,
    creds: Option<&FsPath>,
    name: &str,
) -> anyhow::Result<async_nats::Client> {
    let mut opts = async_nats::ConnectOptions::new().name(name);
    if let Some(path) = creds {
        opts = opts
            .credentials_file(path)
            .await
            .with_context(|| format!("reading credentials file {}", path.display()))?;
    }
    opts.connect(url)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))
}

/// Connects to NATS and, with `check`, checks that the space's stream exists, so that
/// reading an unknown space does not create one.
async fn connect(
    url: &str,
    creds: Option<&FsPath>,
    space: &SpaceId,
    check: bool,
) -> anyhow::Result<Arc<dyn EventLog>> {
    use async_nats::jetstream::{context::GetStreamErrorKind, ErrorCode};

    let client = connect_nats(url, creds, "blackboard-cli").await?;
    if !check {
        return Ok(Arc::new(JetStreamLog::new(
            client,
            JetStreamConfig::default(),
        )));
    }
    let stream = subject::stream_name(space);
    match async_nats::jetstream::new(client.clone())
        .get_stream(&stream)
        .await
    {
        Ok(_) => {}
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                bail!("unknown space {space}: {url} has no stream {stream}")
            }
            _ => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("looking up stream {stream} at {url}"))
            }
        },
    }
    Ok(Arc::new(JetStreamLog::new(
        client,
        JetStreamConfig::default(),
    )))
}
