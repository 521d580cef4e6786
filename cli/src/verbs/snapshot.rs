//! `blackboard snapshot`: write a snapshot of the document to the log, and trim below it.

use std::io::Write as _;

use blackboard_client::DocumentId;

use super::open::{self, LogArgs, Mode};

/// Options of `blackboard snapshot`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    log: LogArgs,
    /// The document.
    #[arg(value_name = "DOC")]
    doc: DocumentId,
    /// Also remove the document's events below the snapshot from the log. History, show,
    /// diff and blame keep working: the snapshot carries the whole history.
    #[arg(long)]
    trim: bool,
    /// The answer as one JSON object.
    #[arg(long)]
    json: bool,
}

/// What `--json` prints.
#[derive(Debug, serde::Serialize)]
struct Report {
    seq: u64,
    size: u64,
    trimmed_through: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    removed: Option<u64>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let opened = open::open_doc(&args.log, &args.doc, Mode::Existing).await?;
    let (info, removed) = if args.trim {
        let t = opened.replica.trim().await?;
        (t.snapshot, Some(t.removed))
    } else {
        (opened.replica.snapshot().await?, None)
    };
    let report = Report {
        seq: info.seq,
        size: info.size,
        trimmed_through: info.trimmed_through,
        removed,
    };
    let mut out = super::stdout();
    if args.json {
        super::json_line(&mut out, &report)?;
    } else {
        writeln!(out, "seq              {}", report.seq)?;
        writeln!(out, "size             {} bytes", report.size)?;
        writeln!(out, "trimmed_through  {}", report.trimmed_through)?;
        if let Some(n) = removed {
            writeln!(out, "removed          {n} events")?;
        }
    }
    out.flush()?;
    opened.close().await
}
