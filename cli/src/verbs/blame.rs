//! `blackboard blame`: who wrote the value at a path, and for text who wrote each run.

use std::io::Write as _;

use anyhow::bail;
use blackboard_client::automerge::ChangeHash;
use blackboard_client::{format_time, DocumentId, Path, Record};

use super::open::{self, LogArgs, Mode};
use super::table::Table;

/// Options of `blackboard blame`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    log: LogArgs,
    /// The document.
    #[arg(value_name = "DOC")]
    doc: DocumentId,
    /// The path (/tasks/7/status; / for the whole document).
    path: Path,
    /// The answer as one JSON object.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let opened = open::open_doc(&args.log, &args.doc, Mode::Existing).await?;
    let Some(blame) = opened.replica.blame(&args.path.to_string())? else {
        bail!(
            "nothing at {} in {}/{}",
            args.path,
            args.log.space,
            args.doc
        );
    };
    let mut out = super::stdout();
    if args.json {
        super::json_line(&mut out, &blame)?;
    } else {
        let r = blame.record.as_ref();
        let mut table = Table::headless(2);
        table.row(vec!["path".into(), blame.path.to_string()]);
        table.row(vec!["agent".into(), agent(r)]);
        table.row(vec![
            "seq".into(),
            r.map_or("-".into(), |r| r.seq.to_string()),
        ]);
        table.row(vec![
            "logged".into(),
            r.map_or("-".into(), |r| format_time(r.logged_ms)),
        ]);
        table.row(vec!["message".into(), message(r)]);
        table.row(vec![
            "signed".into(),
            r.map_or("-".into(), |r| super::signed(&r.signature)),
        ]);
        table.row(vec!["hash".into(), blame.change.to_string()]);
        table.write(&mut out)?;
        if !blame.spans.is_empty() {
            writeln!(out)?;
            let mut spans = Table::new(&["start", "agent", "seq", "hash", "message", "text"]);
            for s in &blame.spans {
                let r = s.record.as_ref();
                spans.row(vec![
                    s.start.to_string(),
                    agent(r),
                    r.map_or("-".into(), |r| r.seq.to_string()),
                    short(&s.change),
                    message(r),
                    serde_json::to_string(&s.text)?,
                ]);
            }
            spans.write(&mut out)?;
        }
    }
    out.flush()?;
    opened.close().await
}

fn agent(r: Option<&Record>) -> String {
    r.map_or_else(|| "(not on the log yet)".into(), |r| r.agent.to_string())
}

fn message(r: Option<&Record>) -> String {
    r.and_then(|r| r.message.clone())
        .unwrap_or_else(|| "-".into())
}

fn short(h: &ChangeHash) -> String {
    super::short(h)
}
