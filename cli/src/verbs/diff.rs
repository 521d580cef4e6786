//! `blackboard diff`: what changed between two positions.

use std::io::Write as _;

use blackboard_client::{At, DocumentId};

use super::open::{self, LogArgs, Mode};
use super::patches;
use super::table::Table;

/// Options of `blackboard diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    log: LogArgs,
    /// The document.
    #[arg(value_name = "DOC")]
    doc: DocumentId,
    /// From this position: a stream sequence (42), a time (2026-11-24T10:00:00Z) or heads
    /// (hex hashes, comma-separated).
    #[arg(value_name = "FROM")]
    from: At,
    /// To this position.
    #[arg(value_name = "TO")]
    to: At,
    /// One JSON object per patch and line (JSON Lines).
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let opened = open::open_doc(&args.log, &args.doc, Mode::Existing).await?;
    let from = open::resolve(&opened, "FROM", &args.from)?;
    let to = open::resolve(&opened, "TO", &args.to)?;
    let diff = opened
        .replica
        .diff(&At::Heads(from.heads.clone()), &At::Heads(to.heads.clone()))?;
    eprintln!(
        "from sequence {} to sequence {}: {} patches",
        from.seq,
        to.seq,
        diff.len()
    );
    let mut out = super::stdout();
    if args.json {
        for p in &diff {
            super::json_line(&mut out, p)?;
        }
    } else if !diff.is_empty() {
        let mut table = Table::new(&["path", "kind", "value"]);
        for p in &diff {
            table.row(vec![
                p.path.to_string(),
                patches::kind(&p.op).to_owned(),
                patches::describe(&p.op),
            ]);
        }
        table.write(&mut out)?;
    }
    out.flush()?;
    opened.close().await
}
