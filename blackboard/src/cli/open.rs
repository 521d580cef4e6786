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

/// The document a verb reads, and the log it lives on. The defaults name the document
/// `blackboard demo` writes.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("log").required(true).args(["nats", "store"])))]
pub struct Source {
    /// Space of the document.
    #[arg(long, default_value = "demo")]
    pub space: SpaceId,
    /// The document.
    #[arg(long, default_value = "board")]
    pub doc: DocumentId,
    /// Read the NATS JetStream server at this URL (for example nats://127.0.0.1:4222).
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// NATS credentials file, with --nats.
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub creds: Option<PathBuf>,
    /// Read the embedded log in this store directory (the one `blackboard demo --store DIR`
    /// wrote). Only one process can open a store at a time.
    #[arg(long, value_name = "DIR", conflicts_with = "nats")]
    pub store: Option<PathBuf>,
    /// The agent id this command uses (it names the writer of nothing: the history verbs
    /// only read, besides snapshots).
    #[arg(long = "as", value_name = "AGENT", default_value = "cli")]
    pub as_agent: AgentId,
    /// How long to wait for the log to deliver the document's events, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
}

/// A document opened for the history verbs: a replica in a temporary store (removed on
/// drop) that has applied every event the log held when it was opened.
#[derive(Debug)]
pub struct Opened {
    /// The replica.
    pub replica: Replica,
    /// The embedded log's database, flushed on [`close`](Self::close).
    log_db: Option<sled::Db>,
    /// Keeps the temporary store until the replica is gone (fields drop in order).
    _temp: tempfile::TempDir,
}

impl Opened {
    /// The replica's position now: the last event applied and the heads.
    pub fn position(&self) -> Position {
        self.replica.position()
    }

    /// Makes what this command wrote to an embedded log durable.
    pub async fn close(self) -> anyhow::Result<()> {
        if let Some(db) = &self.log_db {
            blackboard::store::flush_db(db)
                .await
                .context("flushing the store")?;
        }
        Ok(())
    }
}

/// Opens `src`'s document and waits until it has applied every event the log holds now.
/// An unknown space or a document without events is an error.
pub async fn open(src: &Source) -> anyhow::Result<Opened> {
    let temp = tempfile::Builder::new()
        .prefix("blackboard-cli-")
        .tempdir()
        .context("creating a temporary store directory")?;
    let replica_db = sled::open(temp.path()).context("opening the temporary store")?;
    let (log, log_db, place): (Arc<dyn EventLog>, _, String) = match (&src.nats, &src.store) {
        (Some(url), _) => {
            let log = connect(url, src.creds.as_deref(), &src.space).await?;
            (log, None, url.clone())
        }
        (None, Some(dir)) => {
            let db = open_store(dir)?;
            let log = Arc::new(EmbeddedLog::open(db.clone())?);
            (log, Some(db), format!("the store {}", dir.display()))
        }
        (None, None) => bail!("give --nats URL or --store DIR"),
    };
    let mut config = Config::new(src.space.clone(), src.doc.clone(), src.as_agent.clone());
    config.snapshots = SnapshotPolicy::manual();
    let replica = Replica::open(log.clone(), &replica_db, config)?;
    let timeout = Duration::from_secs(src.timeout);
    let caught_up = async {
        let last = replica.sync().await?;
        // After a trim the log may hold no event of the document at all: the snapshot's
        // position is then the one to reach.
        let snapshot = log.snapshot_info(&src.space, &src.doc).await?;
        let target = last.max(snapshot.map_or(0, |s| s.seq));
        replica.wait_for_position(target).await?;
        anyhow::Ok(target)
    };
    tokio::time::timeout(timeout, caught_up)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "timed out after {} s waiting for {} to deliver {}/{} (raise --timeout)",
                src.timeout,
                place,
                src.space,
                src.doc
            )
        })?
        .with_context(|| format!("reading {}/{} from {place}", src.space, src.doc))?;
    let position = replica.position();
    if position.seq == 0 && position.heads.is_empty() {
        bail!(
            "unknown document {}/{}: {place} holds no events for it",
            src.space,
            src.doc
        );
    }
    Ok(Opened {
        replica,
        log_db,
        _temp: temp,
    })
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
/// laid it out.
fn open_store(dir: &FsPath) -> anyhow::Result<sled::Db> {
    let path = dir.join("replicas");
    if !path.is_dir() {
        bail!(
            "no blackboard store in {}: {} does not exist (`blackboard demo --store DIR` \
             writes one there)",
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

/// Connects to NATS and checks that the space's stream exists, so that reading an unknown
/// space does not create one.
async fn connect(
    url: &str,
    creds: Option<&FsPath>,
    space: &SpaceId,
) -> anyhow::Result<Arc<dyn EventLog>> {
    use async_nats::jetstream::{context::GetStreamErrorKind, ErrorCode};

    let client = connect_nats(url, creds, "blackboard-cli").await?;
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
