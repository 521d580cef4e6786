//! `blackboard replay`: run the document's events through a projection, one line per event.
//!
//! The built-in projection is the event log read as effects: for each event, the paths its
//! patches touched and how, plus a count of the distinct paths touched at the end. A replay
//! is deterministic, so running it twice prints the same lines.

use std::collections::BTreeSet;
use std::io::{IsTerminal as _, Write};

use blackboard_client::{format_time, At, DocumentId, Patch, Record, ReplayError, ReplayStep};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::open::{self, FromArg, LogArgs, Mode};
use super::patches;

/// Options of `blackboard replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    log: LogArgs,
    /// The document.
    #[arg(value_name = "DOC")]
    doc: DocumentId,
    /// Start after this position: `beginning` (the default), a stream sequence (42), a time
    /// (2026-11-24T10:00:00Z) or heads (hex hashes, comma-separated).
    #[arg(long, value_name = "POS")]
    from: Option<FromArg>,
    /// One JSON object per event and line (JSON Lines), with the full patches.
    #[arg(long)]
    json: bool,
}

/// One event of a replay, for `--json`.
#[derive(serde::Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    record: &'a Record,
    logged: String,
    patches: &'a [Patch],
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<&'a str>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let opened = open::open_doc(&args.log, &args.doc, Mode::Existing).await?;
    let from = args.from.map_or(At::Seq(0), |f| f.at());
    let start = open::resolve(&opened, "--from", &from)?;
    let end = opened.position();
    let total = opened.replica.records(start.seq, end.seq)?.len() as u64;
    let bar = progress(total);
    let to_terminal = std::io::stdout().is_terminal();
    let mut out = super::stdout();
    let (mut events, mut patch_count) = (0u64, 0usize);
    let mut touched = BTreeSet::new();
    let result = opened.replica.replay(&from, |step: ReplayStep<'_>| {
        events += 1;
        patch_count += step.patches.len();
        touched.extend(step.patches.iter().map(|p| p.path.clone()));
        let line = render(&step, args.json)?;
        // Lines to a terminal must not tear through the bar on the same screen.
        bar.suspend(|| -> std::io::Result<()> {
            writeln!(out, "{line}")?;
            if to_terminal {
                out.flush()?;
            }
            Ok(())
        })?;
        bar.inc(1);
        anyhow::Ok(())
    });
    bar.finish_and_clear();
    match result {
        Ok(()) => {}
        Err(ReplayError::Replica(e)) => return Err(e.into()),
        Err(ReplayError::Step(e)) => return Err(e),
    }
    out.flush()?;
    drop(out);
    eprintln!(
        "replayed {events} events after sequence {} up to {}: {patch_count} patches, {} paths",
        start.seq,
        end.seq,
        touched.len()
    );
    opened.close().await
}

/// One line for one event: seq, agent, and each patch's path and kind (or JSON).
fn render(step: &ReplayStep<'_>, json: bool) -> anyhow::Result<String> {
    let r = step.record;
    if json {
        return Ok(serde_json::to_string(&Line {
            record: r,
            logged: format_time(r.logged_ms),
            patches: step.patches,
            rejected: step.rejected,
        })?);
    }
    let effects: Vec<String> = step
        .patches
        .iter()
        .map(|p| format!("{} {}", p.path, patches::kind(&p.op)))
        .collect();
    let effects = match (step.rejected, effects.is_empty()) {
        (Some(reason), _) => format!("(rejected: {reason})"),
        (None, true) => "(held back: waits for an earlier change)".to_owned(),
        (None, false) => effects.join(", "),
    };
    Ok(format!("{:>6}  {:<16}  {effects}", r.seq, r.agent))
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
fn progress(total: u64) -> ProgressBar {
    let target = match std::io::stderr().is_terminal() {
        true => ProgressDrawTarget::stderr(),
        false => ProgressDrawTarget::hidden(),
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} events ({per_sec}, {eta} left)")
    {
        bar.set_style(style);
    }
    bar
}
