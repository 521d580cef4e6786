//! `blackboard get`: a document, or the value at a path, as JSON.

use blackboard_client::{At, DocumentId, Path};

use std::io::Write as _;

use super::open::{self, LogArgs, Mode};

/// Options of `blackboard get`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    log: LogArgs,
    /// The document.
    #[arg(value_name = "DOC")]
    doc: DocumentId,
    /// Only the value at this path (/tasks/t1/status); default: the whole document.
    #[arg(value_name = "PATH")]
    path: Option<Path>,
    /// The document as it was at this position: a stream sequence (42), a time
    /// (2026-11-24T10:00:00Z) or heads (hex hashes, comma-separated). Default: now.
    #[arg(long, value_name = "POS")]
    at: Option<At>,
    /// Every value concurrent writers left at PATH (automerge keeps them all and shows one),
    /// each with whether it is the one shown, the agent that wrote it, its change and log
    /// position: a JSON array.
    #[arg(long, conflicts_with = "at")]
    conflicts: bool,
    /// Compact JSON on one line instead of pretty-printed.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let opened = open::open_doc(&args.log, &args.doc, Mode::Existing).await?;
    if args.conflicts {
        let Some(path) = args.path.clone() else {
            opened.close().await?;
            return Err(super::Usage(
                "--conflicts needs a PATH: the key whose concurrent values to show".into(),
            )
            .into());
        };
        let doc = opened
            .board
            .board
            .doc(args.log.space.as_str(), args.doc.as_str())?;
        let values = doc.conflicts(&path.to_string())?;
        let mut out = std::io::stdout().lock();
        if args.json {
            serde_json::to_writer(&mut out, &values)?;
        } else {
            serde_json::to_writer_pretty(&mut out, &values)?;
        }
        writeln!(out)?;
        drop(out);
        return opened.close().await;
    }
    // With --at, the position goes to stderr as `show` prints it; stdout is the JSON alone.
    let announce = args.at.is_some();
    super::show::print_value(&opened, args.at, args.path.as_ref(), args.json, announce)?;
    opened.close().await
}
