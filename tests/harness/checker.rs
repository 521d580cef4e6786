//! Accounting for every written change in the fault tests.
//!
//! Every change a fault test writes carries a unique **tag**: it sets `/tags/<tag>` to `true`
//! in one map all the agents share, and records the tag as the change's message. The agents
//! create `/tags` concurrently, each before seeing the others' writes; the container recipe
//! makes that one map (an earlier version of the engine made one map per agent, and all but
//! one agent's first tags vanished from view). A writer remembers each tag whose
//! write returned Ok (acknowledged). The [`check`] then accounts for every acknowledged tag:
//! is its event on the stream (read straight from JetStream and decoded with
//! `codec::decode_event`, the replicas' own decoder), and does every replica hold it?

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::Context as _;
use blackboard::doc::containers;
use blackboard::log::{EventLog, JetStreamConfig, JetStreamLog};
use blackboard::schemas::{DocumentId, SpaceId};
use blackboard_client::Doc;
use futures::StreamExt;
use serde_json::{json, Value as Json};

/// The map every tag is a key of.
pub const TAGS: &str = "tags";

/// Writes one tagged change to `doc`: `/tags/<tag>` = `true`, with `tag` as its message.
/// Returns once the change is durable locally (see `Doc::put`).
///
/// # Errors
///
/// When the write fails; the tag is then not acknowledged.
pub async fn write_tag(doc: &Doc, tag: &str) -> Result<(), blackboard_client::Error> {
    doc.put_with_message(&format!("/{TAGS}/{tag}"), json!(true), tag)
        .await?;
    Ok(())
}

/// The tags a replica's document holds.
pub fn replica_tags(document: &Json) -> BTreeSet<String> {
    document[TAGS]
        .as_object()
        .map(|tags| tags.keys().cloned().collect())
        .unwrap_or_default()
}

/// What the stream holds for one document: each event's position and tag, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamRead {
    /// `(stream sequence, tag)` of every tagged event.
    pub events: Vec<(u64, String)>,
    /// Events without a tag (or that did not decode), container creations left out.
    pub untagged: usize,
    /// Container creations (the container recipe's changes, such as the one making `/tags`).
    pub creations: usize,
}

impl StreamRead {
    /// How many events carry each tag.
    pub fn counts(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for (_, tag) in &self.events {
            *counts.entry(tag.as_str()).or_default() += 1;
        }
        counts
    }

    /// The tags on the stream.
    pub fn tags(&self) -> BTreeSet<String> {
        self.events.iter().map(|(_, t)| t.clone()).collect()
    }

    /// The same read without the event at `seq`: what a reader sees if the log lost it.
    pub fn without(&self, seq: u64) -> StreamRead {
        StreamRead {
            events: self
                .events
                .iter()
                .filter(|(s, _)| *s != seq)
                .cloned()
                .collect(),
            untagged: self.untagged,
            creations: self.creations,
        }
    }
}

/// Reads every event of `space`/`document` from the stream, through `client`, up to the
/// last one there now.
///
/// # Errors
///
/// When the log cannot be read or an event's stream subscription fails.
pub async fn read_stream(
    client: async_nats::Client,
    space: &str,
    document: &str,
) -> anyhow::Result<StreamRead> {
    let space: SpaceId = space.parse().context("space id")?;
    let document: DocumentId = document.parse().context("document id")?;
    let log = JetStreamLog::new(client, JetStreamConfig::default());
    let last = log.last_seq(&space, &document).await?;
    let mut read = StreamRead::default();
    if last == 0 {
        return Ok(read);
    }
    let mut entries = log.subscribe(&space, &document, 1).await?;
    while let Some(entry) = entries.next().await {
        let entry = entry?;
        match blackboard::codec::decode_event(&space, &document, &entry.payload) {
            Ok(event) => match event.envelope.message {
                Some(tag) => read.events.push((entry.seq, tag)),
                None if containers::generation_of(event.change.actor_id()).is_some() => {
                    read.creations += 1
                }
                None => read.untagged += 1,
            },
            Err(_) => read.untagged += 1,
        }
        if entry.seq >= last {
            break;
        }
    }
    Ok(read)
}

/// The outcome of [`check`]: every acknowledged tag that is missing somewhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// How many tags were acknowledged.
    pub acknowledged: usize,
    /// How many tagged events the stream holds (re-publishes the log did not drop count
    /// more than once).
    pub stream_events: usize,
    /// Tagged events beyond the first of their tag.
    pub duplicates: usize,
    /// Acknowledged tags with no event on the stream.
    pub missing_on_stream: BTreeSet<String>,
    /// For each replica (by name), the acknowledged tags it does not hold.
    pub missing_in: BTreeMap<String, BTreeSet<String>>,
}

impl Report {
    /// Every acknowledged tag missing from the stream or from any replica.
    pub fn lost(&self) -> BTreeSet<String> {
        let mut lost = self.missing_on_stream.clone();
        for missing in self.missing_in.values() {
            lost.extend(missing.iter().cloned());
        }
        lost
    }

    /// Whether every acknowledged tag is on the stream and in every replica.
    pub fn is_clean(&self) -> bool {
        self.lost().is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} acknowledged, {} tagged events on the stream ({} duplicates), lost: {}",
            self.acknowledged,
            self.stream_events,
            self.duplicates,
            self.lost().len()
        )?;
        if !self.missing_on_stream.is_empty() {
            write!(f, "; not on the stream: {:?}", self.missing_on_stream)?;
        }
        for (name, missing) in &self.missing_in {
            if !missing.is_empty() {
                write!(f, "; not in {name}: {missing:?}")?;
            }
        }
        Ok(())
    }
}

/// Accounts for every tag in `acknowledged`: is it on the `stream`, and in each of the
/// `replicas` (name and the tags it holds)?
pub fn check(
    acknowledged: &BTreeSet<String>,
    stream: &StreamRead,
    replicas: &[(String, BTreeSet<String>)],
) -> Report {
    let on_stream = stream.tags();
    Report {
        acknowledged: acknowledged.len(),
        stream_events: stream.events.len(),
        duplicates: stream.events.len() - on_stream.len(),
        missing_on_stream: acknowledged.difference(&on_stream).cloned().collect(),
        missing_in: replicas
            .iter()
            .map(|(name, held)| {
                (
                    name.clone(),
                    acknowledged.difference(held).cloned().collect(),
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(tags: &[&str]) -> BTreeSet<String> {
        tags.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn the_checker_names_each_missing_tag_where_it_is_missing() {
        let stream = StreamRead {
            events: vec![(1, "a".into()), (2, "b".into()), (3, "b".into())],
            untagged: 0,
            creations: 0,
        };
        let replicas = vec![
            ("r1".to_owned(), set(&["a", "b", "c"])),
            ("r2".to_owned(), set(&["a"])),
        ];
        let report = check(&set(&["a", "b", "c"]), &stream, &replicas);
        assert_eq!(report.missing_on_stream, set(&["c"]));
        assert_eq!(report.missing_in["r1"], set(&[]));
        assert_eq!(report.missing_in["r2"], set(&["b", "c"]));
        assert_eq!(report.duplicates, 1);
        assert_eq!(report.lost(), set(&["b", "c"]));
        assert!(!report.is_clean());

        let report = check(&set(&["a", "b"]), &stream.without(3), &replicas[..1]);
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.duplicates, 0);
    }

    #[test]
    fn replica_tags_reads_the_tag_map() {
        let doc = json!({"tags": {"x": true, "y": true}, "other": 1});
        assert_eq!(replica_tags(&doc), set(&["x", "y"]));
        assert_eq!(replica_tags(&json!({})), set(&[]));
    }
}
