//! `blackboard ls`: the documents of a space.

use std::io::Write as _;

use anyhow::Context as _;
use blackboard_client::{DocumentId, SpaceId};

use super::open::{LogArgs, Mode};
use super::table::Table;

/// Options of `blackboard ls`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    log: LogArgs,
    /// One JSON object per document and line (JSON Lines): space, document, events.
    #[arg(long)]
    json: bool,
}

/// One document, as `--json` prints it.
#[derive(Debug, serde::Serialize)]
struct Line<'a> {
    space: &'a SpaceId,
    document: &'a DocumentId,
    events: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let board = args.log.connect(Mode::Listing).await?;
    let space = &args.log.space;
    let place = board.place();
    let documents = args
        .log
        .within(format_args!("{place} to list space {space}"), async {
            board
                .board
                .list_documents(space.as_str())
                .await
                .with_context(|| format!("listing space {space} on {place}"))
        })
        .await?;
    let mut out = super::stdout();
    if documents.is_empty() {
        eprintln!("no documents in space {space} on {place}");
    } else if args.json {
        for d in &documents {
            let line = Line {
                space,
                document: &d.document,
                events: d.events,
            };
            super::json_line(&mut out, &line)?;
        }
    } else {
        let mut table = Table::new(&["document", "events"]);
        for d in &documents {
            table.row(vec![d.document.to_string(), d.events.to_string()]);
        }
        table.write(&mut out)?;
    }
    out.flush()?;
    board.close().await
}
