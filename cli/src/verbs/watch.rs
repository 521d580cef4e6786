//! `blackboard watch`: print each change to a document as it happens.

use std::io::Write;

use anyhow::Context as _;
use blackboard_client::automerge::ChangeHash;
use blackboard_client::{
    format_time, AgentId, ChangeEvent, DocumentId, Patch, PatchOp, Pattern, Position, Start,
    WatchError, WatchOptions as Options,
};
use futures::StreamExt as _;

use super::open::{self, FromArg, LogArgs, Mode};
use super::patches;

/// Options of `blackboard watch`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    blackboard watch --nats nats://127.0.0.1:4222 plan '/tasks/*/status'\n  \
    blackboard watch --nats nats://127.0.0.1:4222 plan --from beginning --count 10 --json | jq .agent")]
pub struct Args {
    #[command(flatten)]
    log: LogArgs,
    /// The document. It may have no events yet: the watch waits for the first.
    #[arg(value_name = "DOC")]
    doc: DocumentId,
    /// Only changes at paths matching this pattern (`*` is one segment, `**` any depth):
    /// /tasks/*/status, /tasks/**. Replacing or deleting something above a match counts
    /// (deleting /tasks/7 changes /tasks/7/status).
    #[arg(value_name = "PATTERN", default_value = "/**")]
    pattern: Pattern,
    /// Start after this position instead of now: `beginning` (or 0: the whole history
    /// first, then live), a stream sequence (42), a time (2026-11-24T10:00:00Z) or heads
    /// (hex hashes, comma-separated).
    #[arg(long, value_name = "POS")]
    from: Option<FromArg>,
    /// Exit after this many changes.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// One JSON object per change and line (JSON Lines): seq, agent, time, message,
    /// patches (path, kind, value) and the position to resume after.
    #[arg(long)]
    json: bool,
}

/// A change, as `--json` prints it.
#[derive(serde::Serialize)]
struct Line<'a> {
    /// The change's log position (`null` only for a change not yet on the log).
    seq: Option<u64>,
    agent: &'a AgentId,
    /// The writer's time, RFC 3339.
    time: String,
    time_ms: i64,
    message: Option<&'a str>,
    /// The change's hash.
    change: &'a ChangeHash,
    /// What it did at the watched paths: path, kind, value.
    patches: &'a [Patch],
    /// Where the watch stands after it: `--from` this `seq` resumes with the next change.
    position: &'a Position,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let opened = open::open_doc(&args.log, &args.doc, Mode::MayBeEmpty).await?;
    let name = opened.name();
    if opened.is_empty() {
        eprintln!("{name} has no events yet; waiting for its first change");
    }
    let (start, since) = match &args.from {
        None => (
            Start::Now,
            format!("after sequence {}", opened.position().seq),
        ),
        Some(FromArg::Beginning) => (Start::Beginning, "from the beginning".to_owned()),
        Some(FromArg::After(at)) => {
            let position = open::resolve(&opened, "--from", at)?;
            let since = format!("after sequence {}", position.seq);
            (Start::After(position), since)
        }
    };
    let stop = interrupted()?;
    tokio::pin!(stop);
    let mut watch = opened
        .replica
        .watch(args.pattern.clone(), Options::start(start))?;
    // Listening from here on: scripts (and the tests) wait for this line.
    eprintln!("watching {name} {} {since}", args.pattern);
    let mut out = super::stdout();
    let mut seen = 0;
    while args.count.is_none_or(|n| seen < n) {
        let item = tokio::select! {
            item = watch.next() => item,
            () = &mut stop => break,
        };
        match item {
            Some(Ok(event)) => {
                write_event(&mut out, &event, args.json)?;
                // Whoever reads the pipe sees each change as it happens.
                out.flush()?;
                seen += 1;
            }
            Some(Err(WatchError::Lagged { resume_after, .. })) => {
                // This command fell behind (a slow reader): carry on after the last change
                // printed, with nothing lost.
                tracing::debug!(seq = resume_after.seq, "watch lagged; resuming");
                let options = Options::start(Start::After(resume_after));
                watch = opened.replica.watch(args.pattern.clone(), options)?;
            }
            Some(Err(e)) => return Err(e).with_context(|| format!("watching {name}")),
            None => anyhow::bail!("the watch of {name} ended unexpectedly"),
        }
    }
    drop(watch);
    opened.close().await
}

/// Writes one change: a JSON line, or one readable line per patch (sequence, agent, kind,
/// path, value; the message after the first).
fn write_event(out: &mut impl Write, event: &ChangeEvent, json: bool) -> anyhow::Result<()> {
    if json {
        let line = Line {
            seq: event.seq,
            agent: &event.agent,
            time: format_time(event.time_ms),
            time_ms: event.time_ms,
            message: event.message.as_deref(),
            change: &event.change,
            patches: &event.patches,
            position: &event.position,
        };
        return super::json_line(out, &line);
    }
    let seq = event.seq.map_or_else(|| "-".to_owned(), |s| s.to_string());
    for (i, p) in readable_patches(&event.patches).into_iter().enumerate() {
        let mut line = format!(
            "{seq}  {}  {}  {}  {}",
            event.agent,
            patches::kind(&p.op),
            p.path,
            patches::describe(&p.op)
        );
        if let (0, Some(message)) = (i, &event.message) {
            line.push_str("  # ");
            line.push_str(message);
        }
        // One change stays on its lines, whatever its text holds.
        writeln!(out, "{}", line.replace('\r', "\\r").replace('\n', "\\n"))?;
    }
    Ok(())
}

/// The patches worth a line for a person: writing an object reports a put of the object
/// and one of each value inside it, and the object's JSON already says it all.
fn readable_patches(all: &[Patch]) -> Vec<&Patch> {
    let mut shown: Vec<&Patch> = Vec::new();
    for p in all {
        let covered = shown.iter().any(|q| {
            matches!(q.op, PatchOp::Put { .. })
                && q.path.segments().len() < p.path.segments().len()
                && p.path.segments().starts_with(q.path.segments())
        });
        if !covered {
            shown.push(p);
        }
    }
    shown
}

/// A future that resolves on Ctrl-C or SIGTERM, the usual ways to end a watch (which then
/// exits 0). The handlers are installed by this call, before the watch says it listens, so
/// a signal sent right after that line cannot kill the process instead.
fn interrupted() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            // Without a handler the default one ends the process, which is as good.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(path: &str, value: serde_json::Value) -> Patch {
        Patch {
            path: path.parse().unwrap(),
            op: PatchOp::Put { value },
        }
    }

    #[test]
    fn a_written_object_reads_as_one_line_not_one_per_value_inside_it() {
        let all = [
            put("/tasks", json!({"t1": {"status": "open"}})),
            put("/tasks/t1", json!({"status": "open"})),
            put("/tasks/t1/status", json!("open")),
            put("/tasks2", json!(1)), // not below /tasks: kept
        ];
        let shown: Vec<String> = readable_patches(&all)
            .iter()
            .map(|p| p.path.to_string())
            .collect();
        assert_eq!(shown, ["/tasks", "/tasks2"]);
    }
}
