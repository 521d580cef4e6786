//! `blackboard show`: the document (or one value) as it was at a position.

use std::io::Write as _;

use anyhow::{bail, Context as _};
use blackboard_client::{format_time, At, DocumentId, Path};

use super::open::{self, LogArgs, Mode, Opened};

/// Options of `blackboard show`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    log: LogArgs,
    /// The document.
    #[arg(value_name = "DOC")]
    doc: DocumentId,
    /// The position: a stream sequence (42), a time (2026-11-24T10:00:00Z) or heads (hex
    /// hashes, comma-separated). Default: the latest.
    #[arg(long, value_name = "POS")]
    at: Option<At>,
    /// Only the value at this path (/tasks/7/status); default: the whole document.
    path: Option<Path>,
    /// Compact JSON on one line instead of pretty-printed.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let opened = open::open_doc(&args.log, &args.doc, Mode::Existing).await?;
    print_value(&opened, args.at, args.path.as_ref(), args.json, true)?;
    opened.close().await
}

/// Prints the document (or the value at `path`) as it was at `at` (default: now), pretty
/// or, with `json`, on one line. With `announce`, the position goes to stderr first.
/// Shared by `show` and `get`.
pub fn print_value(
    opened: &Opened,
    at: Option<At>,
    path: Option<&Path>,
    json: bool,
    announce: bool,
) -> anyhow::Result<()> {
    let at = at.unwrap_or(At::Seq(opened.position().seq));
    open::resolve(opened, "--at", &at)?;
    let view = opened.replica.at(&at)?;
    let position = view.position();
    if announce {
        let logged = match opened
            .replica
            .records(position.seq.saturating_sub(1), position.seq)?
            .first()
        {
            Some(r) if r.seq == position.seq => {
                format!(" (logged {})", format_time(r.logged_ms))
            }
            _ => String::new(),
        };
        // The position goes to stderr, so stdout is the JSON alone (for jq).
        eprintln!(
            "at sequence {}{logged}, heads {}",
            position.seq,
            super::short_heads(&position.heads)
        );
    }
    let value = match path {
        None => view.to_json(),
        Some(path) => match view
            .get(&path.to_string())
            .with_context(|| format!("reading {path} of {}", opened.name()))?
        {
            Some(v) => v,
            None => bail!(
                "nothing at {path} in {} at sequence {}",
                opened.name(),
                position.seq
            ),
        },
    };
    let mut out = super::stdout();
    if json {
        super::json_line(&mut out, &value)?;
    } else {
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}
