//! `blackboard roster`: a space's roster (issue 15; the rules are in `blackboard::trust`).
//! `roster show` prints the roster in force, as every replica folds it from the log;
//! `roster set FILE --key ADMIN.nk` publishes the body in FILE, signed with the admin's key,
//! after checking that every replica would adopt it (a non-admin's roster is refused here,
//! before anything is published).
//!
//! The body (FILE, and what `show` prints, so one can be edited into the other):
//!
//! ```text
//! {"admins":["U..."],
//!  "agents":{"alice":{"keys":["U..."],"write":["/tasks/**","/notes/{agent}/**"]},
//!            "auditor":{"keys":["U..."],"write":[]}}}
//! ```

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

use super::open::{LogArgs, Mode};

/// The `roster` subcommands.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the roster in force in --space as JSON (the body format `roster set` reads),
    /// or `open space` when it has none (every change applies, signed or not). Stderr
    /// says since which position, and names roster events every replica ignored.
    Show {
        #[command(flatten)]
        log: LogArgs,
    },
    /// Publish the roster body in FILE for --space, signed with --key (an admin's: of the
    /// roster in force, or for the space's first roster one of the body's own admins). It
    /// replaces the roster in force wholesale. Refused before publishing, naming why, when
    /// every replica would ignore it.
    Set {
        /// The roster body (JSON: admins, agents with their keys and write grants).
        file: PathBuf,
        #[command(flatten)]
        log: LogArgs,
    },
}

/// Runs `blackboard roster`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Show { log } => show(log).await,
        Command::Set { file, log } => set(file, log).await,
    }
}

async fn show(args: LogArgs) -> anyhow::Result<()> {
    let board = args.connect(Mode::Listing).await?;
    let space = &args.space;
    let place = board.place();
    let in_force = args
        .within(
            format_args!("{place} to read the roster of {space}"),
            async {
                board
                    .board
                    .roster(space.as_str())
                    .await
                    .with_context(|| format!("reading the roster of space {space} on {place}"))
            },
        )
        .await?;
    let mut out = super::stdout();
    match in_force {
        None => {
            writeln!(out, "open space")?;
            eprintln!("space {space} on {place} has no roster in force: every change applies");
        }
        Some(in_force) => {
            serde_json::to_writer_pretty(&mut out, &in_force.roster)?;
            writeln!(out)?;
            eprintln!(
                "roster of space {space} in force since position {}",
                in_force.position
            );
            for ignored in &in_force.ignored {
                eprintln!(
                    "ignored by every replica: the roster event at position {}: {}",
                    ignored.position, ignored.reason
                );
            }
        }
    }
    out.flush()?;
    board.close().await
}

async fn set(file: PathBuf, args: LogArgs) -> anyhow::Result<()> {
    let Some(key) = args.board.key_file() else {
        return Err(super::Usage(format!(
            "roster set signs the roster: give the admin's seed file with --key FILE (or set {})",
            crate::connect::BLACKBOARD_KEY
        ))
        .into());
    };
    let body = std::fs::read_to_string(&file)
        .with_context(|| format!("reading the roster body {}", file.display()))?;
    // A bad body is named with its file before anything is opened.
    blackboard_client::Roster::parse(&body).with_context(|| format!("{}", file.display()))?;
    let board = args.connect(Mode::Listing).await?;
    let space = &args.space;
    let place = board.place();
    let position = args
        .within(
            format_args!("{place} to publish the roster of {space}"),
            async {
                board
                    .board
                    .publish_roster(space.as_str(), &body)
                    .await
                    .with_context(|| {
                        format!(
                            "publishing {} as the roster of space {space} on {place}, signed by {}",
                            file.display(),
                            key.display()
                        )
                    })
            },
        )
        .await?;
    println!("published the roster of space {space} at position {position}");
    board.close().await
}
