//! Where a verb's document comes from: the options every verb shares, and opening the
//! document on a replica that has caught up with the log.

use std::time::Duration;

use anyhow::{bail, Context as _};
use blackboard_client::{
    schemas::subject, AgentId, At, DocumentId, Position, Replica, SnapshotPolicy, SpaceId,
};

use crate::connect::{self, BoardArgs, Connected, Missing};

/// The log a verb reads or writes, and the space in it: the options every verb shares.
/// The default space is the one `blackboard demo` writes.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Space of the documents.
    #[arg(long, default_value = "demo")]
    pub space: SpaceId,
    #[command(flatten)]
    pub board: BoardArgs,
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

    /// Opens the board these flags name, as `--as`. Unless `mode` is [`Mode::Create`], an
    /// unknown space (no stream on the server) or a missing store directory is an error and
    /// nothing is created.
    pub async fn connect(&self, mode: Mode) -> anyhow::Result<Connected> {
        let connected = self.open_board(mode).await?;
        self.check_space(&connected, mode).await?;
        Ok(connected)
    }

    /// Opens the board, waiting for the server unless `mode` may write offline; checks
    /// nothing about the space.
    async fn open_board(&self, mode: Mode) -> anyhow::Result<Connected> {
        let log = self.board.required_log()?;
        let place = log.place();
        let missing = match mode {
            Mode::Create => Missing::Create,
            _ => Missing::Refuse,
        };
        // A verb's replica writes no snapshots of its own: only `snapshot` does, on demand.
        let open = connect::open(&self.board, log, &self.as_agent, missing, "cli", |o| {
            o.snapshots(SnapshotPolicy::manual())
        });
        // The errors name the URL or the store already.
        let connected = self.within(format_args!("{place}"), open).await?;
        // The SDK connects in the background. A write into a store the user keeps goes
        // ahead without the server (it is published later); everything else needs it.
        let offline_ok = mode == Mode::Create && self.board.store.is_some();
        if !offline_ok {
            connected
                .reachable(self.timeout().min(CONNECT_WAIT))
                .await?;
        } else if connected
            .reachable(self.timeout().min(OFFLINE_WAIT))
            .await
            .is_err()
        {
            // Not an error: the write goes to the store (see `open_doc`).
            tracing::debug!("not connected; writing offline");
        }
        Ok(connected)
    }

    /// Fails when the space must exist (`mode` reads an existing one) and does not.
    async fn check_space(&self, connected: &Connected, mode: Mode) -> anyhow::Result<()> {
        if matches!(mode, Mode::Existing | Mode::MayBeEmpty) {
            let place = connected.place();
            let space = &self.space;
            let exists = self
                .within(format_args!("{place} to look up space {space}"), async {
                    Ok(connected.board.space_exists(space.as_str()).await?)
                })
                .await?;
            if !exists {
                bail!(
                    "unknown space {space}: {place} has no stream {}",
                    subject::stream_name(space)
                );
            }
        }
        Ok(())
    }
}

/// How long a command that needs the server waits for the connection (at most; less with a
/// shorter `--timeout`) before saying it cannot connect.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// How long a write into a kept store waits for the connection before it writes offline:
/// the connection is made in the background, and a write should land on top of the log's
/// state when the server is there.
const OFFLINE_WAIT: Duration = Duration::from_secs(2);

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

/// A document opened for a verb: a replica (in the `--store` directory, or a temporary one
/// removed on close) that has applied every event the log held when it was opened.
#[derive(Debug)]
pub struct Opened {
    /// The replica.
    pub replica: Replica,
    /// The board it was opened on.
    pub board: Connected,
    /// What the store lost for good, as found when it was opened (writes that had returned
    /// Ok, events of an embedded log): a reading command must not end as if it had shown
    /// everything ([`close`](Self::close) fails with [`super::StoreLost`]).
    lost: Vec<String>,
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

    /// Where the log is, for messages.
    pub fn place(&self) -> String {
        self.board.place()
    }

    /// Closes the board, making what this command wrote to a store durable. When the store
    /// was found to have lost data for good and the command only read, fails with
    /// [`super::StoreLost`] (exit 4) after its output.
    pub async fn close(self) -> anyhow::Result<()> {
        drop(self.replica);
        self.board.close().await?;
        if self.lost.is_empty() {
            Ok(())
        } else {
            Err(super::StoreLost(self.lost.join("; ")).into())
        }
    }
}

/// Opens `doc` on the log `args` name and waits until it has applied every event the log
/// holds now. What may be missing depends on `mode`.
pub async fn open_doc(args: &LogArgs, doc: &DocumentId, mode: Mode) -> anyhow::Result<Opened> {
    let board = args.open_board(mode).await?;
    let losses = args.board.store.as_deref().map(Losses::of);
    let lost = match losses {
        Some(losses) => losses.found(mode),
        None => Vec::new(),
    };
    let space = &args.space;
    let replica = board
        .board
        .doc(space.as_str(), doc.as_str())?
        .replica()
        .clone();
    let place = board.place();
    // Changes an earlier command left unacknowledged in this store (`put`'s exit 3) are
    // published first (they may create the space); a reader waits for them too, so "open
    // the store again" is enough to publish them.
    if replica.pending() > 0 && board.board.is_connected() {
        let published = args
            .within(
                format_args!("{place} to acknowledge earlier changes"),
                async { Ok(replica.flush().await?) },
            )
            .await;
        match published {
            Ok(()) => eprintln!("published the changes this store held for {space}/{doc}"),
            Err(e) => eprintln!(
                "the changes this store holds for {space}/{doc} are still not acknowledged: \
                 {e:#}"
            ),
        }
    }
    args.check_space(&board, mode).await?;
    if mode == Mode::Create && !board.board.is_connected() {
        // Only with a kept store (see `LogArgs::connect`): the write goes to the store now,
        // on top of what the replica has, and to the log when it is reachable.
        eprintln!(
            "not connected to {place}: writing to the local store only; the change is \
             published when a command opens this store while the server is up"
        );
        return Ok(Opened {
            replica,
            board,
            lost,
        });
    }
    // `sync` reaches the newer of the log's last event and the snapshot's position: after a
    // trim the log may hold no event of the document at all.
    args.within(format_args!("{place} to deliver {space}/{doc}"), async {
        replica
            .sync()
            .await
            .with_context(|| format!("reading {space}/{doc} from {place}"))
    })
    .await?;
    let opened = Opened {
        replica,
        board,
        lost,
    };
    if mode == Mode::Existing && opened.is_empty() {
        bail!("unknown document {space}/{doc}: {place} holds no events for it");
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

/// A position to start from: `beginning` (or 0), or any [`At`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromArg {
    /// The beginning of the document's history.
    Beginning,
    /// After this position.
    After(At),
}

impl std::str::FromStr for FromArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "beginning" => Ok(FromArg::Beginning),
            _ => match s.parse::<At>().map_err(|e| e.to_string())? {
                At::Seq(0) => Ok(FromArg::Beginning),
                at => Ok(FromArg::After(at)),
            },
        }
    }
}

impl FromArg {
    /// The position as an [`At`]: the beginning is sequence 0.
    pub fn at(&self) -> At {
        match self {
            FromArg::Beginning => At::Seq(0),
            FromArg::After(at) => at.clone(),
        }
    }
}

/// What a kept store has lost, from its `blackboard.losses` record: the engine appends
/// there what a damaged store lacked against its seal, on the opening that finds it. Every
/// later answer from the store lacks it too, so every reading command says so until the
/// user removes the record.
struct Losses {
    path: std::path::PathBuf,
}

impl Losses {
    fn of(dir: &std::path::Path) -> Losses {
        Losses {
            path: dir.join("blackboard.losses"),
        }
    }

    /// Says on stderr what the store has lost, and returns what is gone for good (for a
    /// reading `mode`; a write reports through its own exit status). Positions read from
    /// the log again are recovered, not lost.
    fn found(self, mode: Mode) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        let mut lost = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // `<time> <what>`.
            let (when, what) = line.split_once(' ').unwrap_or(("", line));
            let for_good = what.contains("are lost") || what.contains("lost events");
            if for_good {
                eprintln!(
                    "store damaged (found {when}, recorded in {}; remove that file once the \
                     loss is accepted): {what}",
                    self.path.display()
                );
                if mode != Mode::Create {
                    lost.push(what.to_owned());
                }
            }
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_is_the_beginning_or_a_position() {
        assert_eq!("beginning".parse::<FromArg>(), Ok(FromArg::Beginning));
        assert_eq!("0".parse::<FromArg>(), Ok(FromArg::Beginning));
        assert_eq!("7".parse::<FromArg>(), Ok(FromArg::After(At::Seq(7))));
        assert!("yesterday"
            .parse::<FromArg>()
            .unwrap_err()
            .contains("yesterday"));
    }
}
