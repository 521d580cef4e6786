//! Idempotency keys: the answers of writes made with an `idempotency_key`, so a retry with
//! the same key is answered again instead of written twice.
//!
//! With a store directory (`--store DIR`) they are kept on disk too, in
//! `DIR/mcp-keys-SPACE.jsonl`, and survive a restart of the server (even a crash): a retry
//! after the restart is answered `replayed`. The file is a journal of JSON lines, fsynced
//! line by line: a key is written *before* its write is made and its answer after, so a
//! server killed between the two finds the key "interrupted" and refuses the retry (the
//! write may or may not have been made) rather than making it a second time. Without a
//! store, keys live in memory only and are forgotten when the server stops.
//!
//! Both are bounded: the latest [`CAPACITY`] keys, and none older than [`MAX_AGE`].

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::error::ToolError;

/// How many keys are remembered: enough for any retry that follows a lost answer, and a
/// bound on the memory (and disk) a client can make the server hold.
pub const CAPACITY: usize = 10_000;

/// How long a key is remembered: retries come within minutes; a day is plenty.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// A key: the document and the key the model chose.
type Id = (String, String);

/// What became of the write with a key, as far as this server knows.
#[derive(Debug, Clone, Default)]
pub enum State {
    /// Not seen (or forgotten): the next call with the key writes.
    #[default]
    Free,
    /// A write with this key was started before the server last stopped, and its answer
    /// was not recorded: it may or may not have been made.
    Interrupted {
        /// What the key was used for (see [`fingerprint`]).
        fingerprint: String,
    },
    /// The write was made, and this was its answer.
    Done {
        /// What the key was used for (see [`fingerprint`]).
        fingerprint: String,
        /// The first call's answer.
        answer: Json,
    },
}

/// One key's state, locked by the call that writes with it (so calls racing with one key
/// wait for the first).
pub type Slot = Arc<tokio::sync::Mutex<State>>;

/// What a write with a key is, in a few bytes: the tool, the document and a stable hash of
/// the edit (not the edit, which may carry a value of hundreds of kB). Stable across runs of
/// the server (FNV-1a, not std's randomly keyed hasher), since it is kept on disk.
pub fn fingerprint(tool: &str, document: &str, edit: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in edit.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{tool} on {document} (edit {hash:016x})")
}

/// The server's idempotency keys: in memory, and journaled when there is a store.
#[derive(Debug)]
pub struct Keys {
    slots: tokio::sync::Mutex<Slots>,
    journal: Option<Arc<std::sync::Mutex<Journal>>>,
}

#[derive(Debug, Default)]
struct Slots {
    /// Each key's slot, and when it was first used here (for [`MAX_AGE`]).
    by_id: HashMap<Id, (std::time::Instant, Slot)>,
    /// The keys in the order they were first used, to forget the oldest past [`CAPACITY`].
    order: VecDeque<(Id, std::time::Instant)>,
}

impl Keys {
    /// Keys kept in memory only.
    pub fn in_memory() -> Self {
        Self {
            slots: Default::default(),
            journal: None,
        }
    }

    /// Keys kept in memory and in the journal `DIR/mcp-keys-SPACE.jsonl`, whose keys (those
    /// within the bounds) are loaded now.
    pub fn journaled(dir: &Path, space: &str) -> Result<Self, ToolError> {
        let path = dir.join(format!("mcp-keys-{space}.jsonl"));
        let journal = Journal::open(path.clone()).map_err(|e| {
            ToolError::new(format!(
                "the idempotency keys in {}: {e} (move the file away to start without them)",
                path.display()
            ))
        })?;
        tracing::debug!(path = %path.display(), keys = journal.records.len(), "idempotency keys loaded");
        Ok(Self {
            slots: Default::default(),
            journal: Some(Arc::new(std::sync::Mutex::new(journal))),
        })
    }

    /// Whether keys survive a restart.
    pub fn durable(&self) -> bool {
        self.journal.is_some()
    }

    /// The slot of key `key` of `document`: its state as journaled before a restart, or
    /// free.
    pub async fn slot(&self, document: &str, key: &str) -> Slot {
        let id = (document.to_owned(), key.to_owned());
        let mut slots = self.slots.lock().await;
        match slots.by_id.get(&id) {
            Some((since, slot)) if since.elapsed() <= MAX_AGE => return slot.clone(),
            // Older than the bound: forgotten, as on disk.
            Some(_) => {
                slots.by_id.remove(&id);
            }
            None => {}
        }
        let state = match &self.journal {
            Some(journal) => lock(journal).state(&id),
            None => State::Free,
        };
        while slots.order.len() >= CAPACITY {
            let Some((oldest, since)) = slots.order.pop_front() else {
                break;
            };
            // Unless the key was forgotten for its age and used again since.
            if slots.by_id.get(&oldest).is_some_and(|(s, _)| *s == since) {
                slots.by_id.remove(&oldest);
            }
        }
        let now = std::time::Instant::now();
        let slot = Slot::new(tokio::sync::Mutex::new(state));
        slots.by_id.insert(id.clone(), (now, slot.clone()));
        slots.order.push_back((id, now));
        slot
    }

    /// Records that a write with `key` is about to be made, before it is made. An error
    /// means nothing is written.
    pub async fn begin(
        &self,
        document: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<(), ToolError> {
        self.append(document, key, Some((fingerprint, None))).await
    }

    /// Records the answer of the write made with `key`.
    pub async fn done(
        &self,
        document: &str,
        key: &str,
        fingerprint: &str,
        answer: &Json,
    ) -> Result<(), ToolError> {
        self.append(document, key, Some((fingerprint, Some(answer))))
            .await
    }

    /// Forgets `key`: its write failed and wrote nothing, so a retry may write.
    pub async fn forget(&self, document: &str, key: &str) -> Result<(), ToolError> {
        self.append(document, key, None).await
    }

    async fn append(
        &self,
        document: &str,
        key: &str,
        record: Option<(&str, Option<&Json>)>,
    ) -> Result<(), ToolError> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        let journal = journal.clone();
        let id = (document.to_owned(), key.to_owned());
        let record = record.map(|(fingerprint, answer)| Record {
            at: now_ms(),
            fingerprint: fingerprint.to_owned(),
            answer: answer.cloned(),
        });
        // An fsync: off the async workers.
        let path = lock(&journal).path.clone();
        tokio::task::spawn_blocking(move || lock(&journal).append(id, record))
            .await
            .map_err(|e| ToolError::new(format!("recording the idempotency key: {e}")))?
            .map_err(|e| {
                ToolError::new(format!(
                    "recording the idempotency key in {}: {e}",
                    path.display()
                ))
            })
    }
}

fn lock(journal: &std::sync::Mutex<Journal>) -> std::sync::MutexGuard<'_, Journal> {
    journal.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A key's record on disk: `answer` is absent while its write is being made.
#[derive(Debug, Clone)]
struct Record {
    at: u64,
    fingerprint: String,
    answer: Option<Json>,
}

/// One line of the journal: a key's record, or `forget`.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    document: String,
    key: String,
    at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answer: Option<Json>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    forget: bool,
}

/// The journal file and the records it holds (the latest line of each key wins).
#[derive(Debug)]
struct Journal {
    path: PathBuf,
    file: File,
    records: HashMap<Id, Record>,
    /// Lines in the file, to rewrite it when it holds many more than its records.
    lines: usize,
}

impl Journal {
    /// Reads the journal at `path` (missing: empty), keeps the records within the bounds,
    /// and rewrites it with only those. A line that does not parse (the last one, torn by a
    /// crash) is skipped with a warning.
    fn open(path: PathBuf) -> std::io::Result<Self> {
        let mut records = HashMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match serde_json::from_slice::<Line>(line) {
                        Ok(line) => {
                            let id = (line.document, line.key);
                            match (line.forget, line.fingerprint) {
                                (false, Some(fingerprint)) => {
                                    records.insert(
                                        id,
                                        Record {
                                            at: line.at,
                                            fingerprint,
                                            answer: line.answer,
                                        },
                                    );
                                }
                                _ => {
                                    records.remove(&id);
                                }
                            }
                        }
                        Err(e) => tracing::warn!(
                            path = %path.display(),
                            line = n + 1,
                            error = %e,
                            "skipped a damaged line of the idempotency keys"
                        ),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut journal = Journal {
            path,
            file,
            records,
            lines: 0,
        };
        journal.compact()?;
        Ok(journal)
    }

    /// The state of key `id` as recorded, if within the bounds.
    fn state(&self, id: &Id) -> State {
        match self.records.get(id) {
            Some(r) if now_ms().saturating_sub(r.at) <= MAX_AGE.as_millis() as u64 => {
                match &r.answer {
                    Some(answer) => State::Done {
                        fingerprint: r.fingerprint.clone(),
                        answer: answer.clone(),
                    },
                    None => State::Interrupted {
                        fingerprint: r.fingerprint.clone(),
                    },
                }
            }
            _ => State::Free,
        }
    }

    /// Appends a line for `id` (a record, or `None` to forget it) and syncs it to disk.
    fn append(&mut self, id: Id, record: Option<Record>) -> std::io::Result<()> {
        let line = Line {
            document: id.0.clone(),
            key: id.1.clone(),
            at: record.as_ref().map_or_else(now_ms, |r| r.at),
            fingerprint: record.as_ref().map(|r| r.fingerprint.clone()),
            answer: record.as_ref().and_then(|r| r.answer.clone()),
            forget: record.is_none(),
        };
        let mut bytes = serde_json::to_vec(&line)?;
        bytes.push(b'\n');
        self.file.write_all(&bytes)?;
        self.file.sync_data()?;
        self.lines += 1;
        match record {
            Some(record) => self.records.insert(id, record),
            None => self.records.remove(&id),
        };
        if self.lines > 2 * CAPACITY {
            self.compact()?;
        }
        Ok(())
    }

    /// Drops the records past the bounds (older than [`MAX_AGE`], beyond the newest
    /// [`CAPACITY`]) and rewrites the file with the rest: a new file, synced, renamed over
    /// the old one, so a crash leaves one or the other whole.
    fn compact(&mut self) -> std::io::Result<()> {
        let now = now_ms();
        let max_age = MAX_AGE.as_millis() as u64;
        self.records
            .retain(|_, r| now.saturating_sub(r.at) <= max_age);
        if self.records.len() > CAPACITY {
            let mut ats: Vec<u64> = self.records.values().map(|r| r.at).collect();
            ats.sort_unstable_by(|a, b| b.cmp(a));
            let cutoff = ats[CAPACITY - 1];
            self.records.retain(|_, r| r.at >= cutoff);
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        {
            let mut out = std::io::BufWriter::new(File::create(&tmp)?);
            for ((document, key), r) in &self.records {
                let line = Line {
                    document: document.clone(),
                    key: key.clone(),
                    at: r.at,
                    fingerprint: Some(r.fingerprint.clone()),
                    answer: r.answer.clone(),
                    forget: false,
                };
                serde_json::to_writer(&mut out, &line)?;
                out.write_all(b"\n")?;
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            // The rename itself, durable (directories cannot be opened on every platform).
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.lines = self.records.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(doc: &str, key: &str) -> Id {
        (doc.to_owned(), key.to_owned())
    }

    #[test]
    fn a_journal_reopened_finds_answers_interrupted_writes_and_not_forgotten_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.jsonl");
        let mut journal = Journal::open(path.clone()).unwrap();
        let record = |answer: Option<Json>| Record {
            at: now_ms(),
            fingerprint: "f".into(),
            answer,
        };
        journal.append(id("d", "done"), Some(record(None))).unwrap();
        journal
            .append(id("d", "done"), Some(record(Some(json!({"seq": 3})))))
            .unwrap();
        journal.append(id("d", "cut"), Some(record(None))).unwrap();
        journal
            .append(id("d", "failed"), Some(record(None)))
            .unwrap();
        journal.append(id("d", "failed"), None).unwrap();
        drop(journal);
        // A crash tore the last line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"document\":\"d\",\"ke").unwrap();
        drop(f);

        let journal = Journal::open(path).unwrap();
        assert!(matches!(
            journal.state(&id("d", "done")),
            State::Done { answer, .. } if answer == json!({"seq": 3})
        ));
        assert!(matches!(
            journal.state(&id("d", "cut")),
            State::Interrupted { .. }
        ));
        assert!(matches!(journal.state(&id("d", "failed")), State::Free));
        assert_eq!(journal.lines, 2, "rewritten with the live records only");
    }

    #[test]
    fn keys_older_than_the_age_bound_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.jsonl");
        let mut journal = Journal::open(path.clone()).unwrap();
        let old = now_ms() - MAX_AGE.as_millis() as u64 - 1000;
        journal
            .append(
                id("d", "old"),
                Some(Record {
                    at: old,
                    fingerprint: "f".into(),
                    answer: Some(json!(1)),
                }),
            )
            .unwrap();
        assert!(matches!(journal.state(&id("d", "old")), State::Free));
        drop(journal);
        let journal = Journal::open(path).unwrap();
        assert!(journal.records.is_empty());
    }

    #[test]
    fn the_fingerprint_is_stable_across_runs() {
        // A constant: the journal outlives the process that wrote it.
        assert_eq!(
            fingerprint("put", "d", "x"),
            "put on d (edit af63f54c86021707)"
        );
    }
}
