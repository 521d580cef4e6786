//! `blackboard blame`: who wrote the value at a path, and for text who wrote each run.

use std::io::Write as _;

use anyhow::bail;
use blackboard_client::automerge::ChangeHash;
use blackboard_client::{format_time, DocumentId, Path, Record, TextRun};

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
    /// The answer as one JSON object (with --text, the runs as one JSON array).
    #[arg(long)]
    json: bool,
    /// Only who wrote each run of characters of the text at the path (`start end agent
    /// seq hash message text`); an error when the value there is not a text.
    #[arg(long)]
    text: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let opened = open::open_doc(&args.log, &args.doc, Mode::Existing).await?;
    if args.text {
        let Some(runs) = opened.replica.blame_text(&args.path.to_string())? else {
            bail!(
                "no text at {} in {}/{}",
                args.path,
                args.log.space,
                args.doc
            );
        };
        let mut out = super::stdout();
        if args.json {
            super::json_line(&mut out, &runs)?;
        } else {
            runs_table(&runs).write(&mut out)?;
        }
        out.flush()?;
        return opened.close().await;
    }
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
        if let Some(runs) = opened.replica.blame_text(&args.path.to_string())? {
            writeln!(out)?;
            runs_table(&runs).write(&mut out)?;
        }
    }
    out.flush()?;
    opened.close().await
}

/// Who wrote each run of characters: one row per run.
fn runs_table(runs: &[TextRun]) -> Table {
    let mut table = Table::new(&["start", "end", "agent", "seq", "hash", "message", "text"]);
    for r in runs {
        table.row(vec![
            r.start.to_string(),
            r.end.to_string(),
            r.agent
                .as_ref()
                .map_or_else(|| "(not on the log yet)".into(), ToString::to_string),
            r.seq.map_or("-".into(), |s| s.to_string()),
            short(&r.change),
            r.message.clone().unwrap_or_else(|| "-".into()),
            serde_json::to_string(&r.text).unwrap_or_default(),
        ]);
    }
    table
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
