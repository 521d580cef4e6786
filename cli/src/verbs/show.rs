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
    // The current state is read from the replica as it is. Forking the document at some
    // heads replays its whole history (118 s and 725 MiB at 50k events, issue 14 §5), so
    // it is done only for a position that is not the current one.
    let current = opened.position();
    let (position, view) = match at {
        None => (current, None),
        Some(at) => {
            let position = open::resolve(opened, "--at", &at)?;
            if position.heads == current.heads {
                (position, None)
            } else {
                tracing::debug!(seq = position.seq, "forking the document at the position");
                let view = opened.replica.at(&at)?;
                (view.position().clone(), Some(view))
            }
        }
    };
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
    let found = match (path, &view) {
        (None, Some(view)) => Ok(Some(view.to_json())),
        (None, None) => Ok(Some(opened.replica.to_json())),
        (Some(path), Some(view)) => view.get(&path.to_string()).map_err(anyhow::Error::from),
        (Some(path), None) => opened
            .replica
            .get(&path.to_string())
            .map_err(anyhow::Error::from),
    }
    .with_context(|| match path {
        Some(path) => format!("reading {path} of {}", opened.name()),
        None => format!("reading {}", opened.name()),
    })?;
    let value = match (found, path) {
        (Some(v), _) => v,
        (None, Some(path)) => bail!(
            "nothing at {path} in {} at sequence {}",
            opened.name(),
            position.seq
        ),
        (None, None) => serde_json::Value::Null,
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
