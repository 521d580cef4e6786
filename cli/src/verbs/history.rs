//! `blackboard history`: who changed what, when and why.

use std::io::Write as _;

use blackboard_client::{
    format_time, AgentId, At, DocumentId, HistoryEvent, HistoryFilter as Filter, Pattern,
};

use super::open::{self, LogArgs, Mode};
use super::table::Table;

/// Options of `blackboard history`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    log: LogArgs,
    /// The document.
    #[arg(value_name = "DOC")]
    doc: DocumentId,
    /// Only events after this position: a stream sequence (42), a time
    /// (2026-11-24T10:00:00Z) or heads (hex hashes, comma-separated).
    #[arg(long, value_name = "POS")]
    after: Option<At>,
    /// Only events up to this position (inclusive).
    #[arg(long, value_name = "POS")]
    until: Option<At>,
    /// Only events written by this agent.
    #[arg(long, value_name = "AGENT")]
    agent: Option<AgentId>,
    /// Only events that touched a path matching this pattern (`*` is one segment, `**` any
    /// depth), as a watch matches it: /tasks/*/status, /tasks/**.
    #[arg(long, value_name = "PATTERN")]
    path: Option<Pattern>,
    /// At most this many events (the earliest ones).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// One JSON object per event and line (JSON Lines), for jq and other programs.
    #[arg(long)]
    json: bool,
}

/// An event with its log time spelled out, for `--json`.
#[derive(serde::Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    event: &'a HistoryEvent,
    logged: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let opened = open::open_doc(&args.log, &args.doc, Mode::Existing).await?;
    // Resolve the bounds here, so a bad one names its flag.
    if let Some(at) = &args.after {
        open::resolve(&opened, "--after", at)?;
    }
    if let Some(at) = &args.until {
        open::resolve(&opened, "--until", at)?;
    }
    let filter = Filter {
        after: args.after,
        until: args.until,
        agent: args.agent,
        path: args.path,
        limit: args.limit,
    };
    // Rejected changes are listed where they sit, with why (they changed nothing).
    let events = opened.replica.history_with_rejections(&filter)?;
    let mut out = super::stdout();
    if args.json {
        for e in &events {
            let logged = format_time(e.record.logged_ms);
            super::json_line(&mut out, &Line { event: e, logged })?;
        }
    } else {
        let mut table = Table::new(&[
            "seq", "logged", "agent", "signed", "hash", "message", "paths",
        ]);
        for e in &events {
            let r = &e.record;
            let paths: Vec<String> = e.paths.iter().map(ToString::to_string).collect();
            table.row(vec![
                r.seq.to_string(),
                format_time(r.logged_ms),
                r.agent.to_string(),
                super::signed(&r.signature),
                super::short(&r.hash),
                match &e.rejected {
                    Some(reason) => format!("REJECTED: {reason}"),
                    None => r.message.clone().unwrap_or_else(|| "-".to_owned()),
                },
                paths.join(" "),
            ]);
        }
        if table.is_empty() {
            eprintln!("no events match");
        } else {
            table.write(&mut out)?;
        }
    }
    out.flush()?;
    opened.close().await
}
