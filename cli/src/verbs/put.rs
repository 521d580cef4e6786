//! `blackboard put`: write a JSON value at a path, and wait until the log has it.

use std::io::{Read as _, Write as _};

use anyhow::Context as _;
use blackboard_client::{AgentId, DocumentId, Edit, Path, PutMode, SpaceId};
use serde_json::Value as Json;

use super::open::{self, LogArgs, Mode};
use super::table::Table;
use super::Usage;

/// Options of `blackboard put`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    blackboard put --nats nats://127.0.0.1:4222 plan /tasks/t1 '{\"title\": \"docs\", \"status\": \"open\"}'\n  \
    blackboard put --nats nats://127.0.0.1:4222 plan /tasks/t1/status '\"done\"' --message 'shipped'\n  \
    jq -n '{owner: \"alice\"}' | blackboard put --store ./data plan /meta -")]
pub struct Args {
    #[command(flatten)]
    log: LogArgs,
    /// The document (created by its first write).
    #[arg(value_name = "DOC")]
    doc: DocumentId,
    /// Where to write, like JSON Pointer: /tasks/t1/status. Missing maps on the way are
    /// created; `-` as the last segment of a list path appends. `/` writes the keys of a
    /// JSON object into the document's top level.
    #[arg(value_name = "PATH")]
    path: Path,
    /// The value, as JSON: 42, true, null, "done" (with the quotes, so '"done"' in a
    /// shell), [1, 2], {"status": "open"}. `-` reads it from stdin.
    #[arg(value_name = "JSON", value_parser = parse_value, allow_hyphen_values = true)]
    value: ValueArg,
    /// Why: a message recorded with the change (`blackboard history` shows it).
    #[arg(long, short, value_name = "WHY")]
    message: Option<String>,
    /// Replace the map at PATH with the JSON object instead of merging the object's keys
    /// into it (the default, so keys other agents wrote there stay). Two agents replacing
    /// one map at the same time conflict: `get --conflicts` shows both.
    #[arg(long)]
    replace: bool,
    /// The answer as one JSON object: space, document, path, value, seq, hash, agent,
    /// message.
    #[arg(long)]
    json: bool,
}

/// The `JSON` argument: a value, or `-` for stdin.
#[derive(Debug, Clone)]
enum ValueArg {
    Value(Json),
    Stdin,
}

fn parse_value(s: &str) -> Result<ValueArg, String> {
    if s == "-" {
        return Ok(ValueArg::Stdin);
    }
    parse_json(s).map(ValueArg::Value)
}

/// Parses a JSON value, with a hint for the usual mistake: a bare word meant as a string.
fn parse_json(s: &str) -> Result<Json, String> {
    serde_json::from_str(s).map_err(|e| {
        // Text starting with a letter that is not JSON was probably meant as a string.
        let word = s.trim_start().starts_with(|c: char| c.is_alphabetic())
            && s.trim().len() <= 60
            && !s.trim().contains('\n');
        let hint = if word {
            format!(" (a string needs quotes: '\"{}\"')", s.trim())
        } else {
            String::new()
        };
        format!("not JSON: {e}{hint}")
    })
}

/// Whether the log acknowledged the write, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ack {
    Yes,
    No(String),
    /// The log refused the change for good (a permission the server denies): it will
    /// never be published, so the command fails (exit 1) and keeps no store for it.
    Refused(String),
}

/// What was written, as `--json` prints it.
#[derive(Debug, serde::Serialize)]
struct Report<'a> {
    space: &'a SpaceId,
    document: &'a DocumentId,
    #[serde(serialize_with = "display")]
    path: &'a Path,
    value: &'a Json,
    /// Whether the log acknowledged the change (true when there was nothing to write).
    acknowledged: bool,
    /// Where the change waits to be published, when the log did not acknowledge it.
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<String>,
    /// The change's position on the log; `None` when the write changed nothing or the log
    /// has not acknowledged it.
    seq: Option<u64>,
    /// The change's hash; `None` when the write changed nothing.
    hash: Option<String>,
    agent: &'a AgentId,
    message: Option<&'a str>,
}

fn display<S: serde::Serializer>(p: &&Path, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(p)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    // Every argument is checked before anything is opened, so a bad one writes nothing.
    let value = match args.value {
        ValueArg::Value(v) => v,
        ValueArg::Stdin => read_stdin()?,
    };
    if args.path.is_root() && !value.is_object() {
        return Err(Usage(format!(
            "invalid value for '<JSON>': the document's top level (PATH /) is a map, so the \
             value written there must be a JSON object, not {value}"
        ))
        .into());
    }
    let opened = open::open_doc(&args.log, &args.doc, Mode::Create).await?;
    let name = opened.name();
    let mode = if args.replace {
        PutMode::Replace
    } else {
        PutMode::Merge
    };
    let edit = Edit::Put {
        path: args.path.clone(),
        value: value.clone(),
        mode,
    };
    let hash = opened
        .replica
        .edit(args.message.as_deref(), &[edit])
        .await
        .map(|written| written.hash)
        .with_context(|| format!("writing {} of {name}", args.path))?;
    // A change is durable in the store from here on: whatever happens next, the answer says
    // it was written, and separately whether the log acknowledged it.
    let mut acked = Ack::Yes;
    let seq = match &hash {
        None => None,
        Some(hash) => {
            let place = opened.place();
            let timeout = args.log.timeout();
            match tokio::time::timeout(timeout, opened.replica.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) if opened.replica.stats().refused > 0 => {
                    acked = Ack::Refused(format!(
                        "{place} refused change {hash} of {name} for good, so it will never \
                         be published and no other agent sees it: {e}"
                    ))
                }
                Ok(Err(e)) => acked = Ack::No(format!("{place} refuses it: {e}")),
                Err(_) => {
                    acked = Ack::No(format!(
                        "{place} did not acknowledge it within {} s",
                        timeout.as_secs()
                    ))
                }
            }
            if acked == Ack::Yes {
                // Read the change back from the log, to learn its position; it is there
                // already, so failing to learn it does not make the write fail.
                match tokio::time::timeout(timeout, opened.replica.sync()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        eprintln!("the log acknowledged the change; its position is unknown: {e}")
                    }
                    Err(_) => eprintln!(
                        "the log acknowledged the change; its position is unknown (not read \
                         back within {} s)",
                        timeout.as_secs()
                    ),
                }
            }
            opened.replica.record_of(hash)?.map(|r| r.seq)
        }
    };
    if let Ack::Refused(why) = acked {
        opened.close().await?;
        anyhow::bail!(why);
    }
    let mut opened = opened;
    let kept = match acked {
        Ack::No(_) => opened.board.keep_store(),
        Ack::Yes | Ack::Refused(_) => None,
    };
    let store = kept.clone().or_else(|| args.log.board.store.clone());
    let report = Report {
        acknowledged: acked == Ack::Yes,
        store: match acked {
            Ack::No(_) => store.as_ref().map(|p| p.display().to_string()),
            Ack::Yes | Ack::Refused(_) => None,
        },
        space: &args.log.space,
        document: &args.doc,
        path: &args.path,
        value: &value,
        seq,
        hash: hash.map(|h| h.to_string()),
        agent: &args.log.as_agent,
        message: args.message.as_deref(),
    };
    let mut out = super::stdout();
    if args.json {
        super::json_line(&mut out, &report)?;
    } else {
        let mut table = Table::headless(2);
        let row = |k: &str, v: String| vec![k.to_owned(), v];
        table.row(row("document", name.clone()));
        table.row(row("path", args.path.to_string()));
        table.row(row("value", serde_json::to_string(&value)?));
        match (&report.seq, &report.hash) {
            (Some(seq), Some(hash)) => {
                table.row(row("seq", seq.to_string()));
                table.row(row("hash", hash.clone()));
            }
            (None, Some(hash)) => table.row(row("hash", hash.clone())),
            _ => table.row(row(
                "changed",
                "nothing (the value was already there)".into(),
            )),
        }
        if let Ack::No(_) = &acked {
            let place = match &report.store {
                Some(dir) => format!("written to the local store {dir}"),
                None => "written to the local store".to_owned(),
            };
            table.row(row("acknowledged", format!("no ({place})")));
        }
        table.row(row("agent", args.log.as_agent.to_string()));
        if let Some(m) = &args.message {
            table.row(row("message", m.clone()));
        }
        table.write(&mut out)?;
    }
    out.flush()?;
    opened.close().await?;
    match acked {
        Ack::Yes | Ack::Refused(_) => Ok(()),
        Ack::No(why) => {
            let dir = store.map_or_else(String::new, |d| {
                format!(
                    "; it is kept in {} and published when that store is next opened with \
                     the server up (for example `blackboard get --nats URL --store {} --as {} \
                     --space {} {}`)",
                    d.display(),
                    d.display(),
                    args.log.as_agent,
                    args.log.space,
                    args.doc
                )
            });
            Err(super::NotAcknowledged(format!("{why}{dir}")).into())
        }
    }
}

/// Reads the value from stdin; a value that does not parse is a usage error (exit 2).
fn read_stdin() -> anyhow::Result<Json> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the value from stdin")?;
    parse_json(&text)
        .map_err(|e| Usage(format!("invalid value '-' (stdin) for '<JSON>': {e}")).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_json_and_a_bare_word_gets_a_hint() {
        assert!(matches!(parse_value("-"), Ok(ValueArg::Stdin)));
        assert!(matches!(parse_value("-5"), Ok(ValueArg::Value(v)) if v == -5));
        assert!(matches!(parse_value(r#"{"a": [1]}"#), Ok(ValueArg::Value(v)) if v["a"][0] == 1));
        let e = parse_value("done").unwrap_err();
        assert!(e.contains("not JSON") && e.contains(r#"'"done"'"#), "{e}");
        let e = parse_value("{").unwrap_err();
        assert!(e.contains("not JSON") && !e.contains("quotes"), "{e}");
    }
}
