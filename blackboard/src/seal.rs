//! The store's seal: a small file beside the sled database that remembers how far the store
//! had got the last time it was made durable, so that opening can tell when sled came back
//! with less.
//!
//! Why a file outside sled: sled checks a CRC on every record it reads back, but when its
//! files are truncated or damaged it recovers *up to* the first bad record and carries on, so
//! a store can open cleanly without the writes after that point (issue 14 §1: an agent
//! started with 17 to 388 acknowledged writes gone and said nothing). Whatever remembers
//! those writes must not be lost with them.
//!
//! The seal holds, per replica tree, the highest outbox id ever written (`written`), the
//! highest acknowledged and removed (`acked`) and the position (`position`), and per embedded
//! log space, its last position (`last`). It is written after every fsync of the database,
//! with the marks taken *before* that fsync, so it never claims more than sled had made
//! durable. It is overwritten in place, from its first byte, without an fsync of its own
//! (padded with newlines to the length it had, so a shorter text leaves no old bytes after
//! it): after a crash it may be behind (which only weakens detection, never raises a false
//! alarm) or torn, and it carries a checksum so a torn one is ignored with a warning.
//!
//! In place, not a temporary file renamed over the old one: on ext4 a rename over a file
//! writes the new file's data out first (`auto_da_alloc`), and while the database's own
//! fsync is under way that cost 350 to 400 µs per flush, nearly doubling the time a `put`
//! takes to return (BENCHMARKS.md). A write into the page cache costs about a microsecond.
//!
//! Text, so a person can read it:
//!
//! ```text
//! blackboard-seal 1
//! r replica/agent/space/doc written=12 acked=9 position=40
//! l space last=40
//! sum 0123456789abcdef
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::warn;

/// The seal's file name, in the store directory.
pub const FILE: &str = "blackboard.seal";

const HEADER: &str = "blackboard-seal 1";

/// The key in sled's default tree that ties an open database to its seal (a random tag
/// written at every open; never read from disk across opens).
const TAG_KEY: &[u8] = b"\0blackboard/seal-tag";

/// How far a replica's tree had got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaMarks {
    /// The highest outbox id ever written (every local change gets the next one).
    pub written: u64,
    /// The highest outbox id acknowledged by the log and removed.
    pub acked: u64,
    /// The last applied log position.
    pub position: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Marks {
    replicas: BTreeMap<String, ReplicaMarks>,
    /// Embedded log spaces: their last position.
    logs: BTreeMap<String, u64>,
}

/// What a seal names: each replica tree with its marks, and each embedded-log space with its
/// last position.
pub(crate) type Found = (Vec<(String, ReplicaMarks)>, Vec<(String, u64)>);

/// The seal of one open store directory.
#[derive(Debug)]
pub struct Seal {
    path: PathBuf,
    /// What the file said when the store was opened (`None`: no usable seal).
    found: Option<Marks>,
    /// What the next write records.
    now: Mutex<Marks>,
    /// The file, once opened for writing: writes of the file go through it, one at a time.
    file: Mutex<Option<std::fs::File>>,
}

/// The seals of the databases opened in this process, by tag. Held strongly (sled gives no
/// way to learn that a database was closed), one per store directory: reopening a directory
/// replaces its entry, so this grows only with the number of directories opened.
fn registry() -> &'static Mutex<BTreeMap<u64, Arc<Seal>>> {
    static REGISTRY: OnceLock<Mutex<BTreeMap<u64, Arc<Seal>>>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

/// A 64-bit FNV-1a checksum: enough to tell a torn or edited file.
fn checksum(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn encode(m: &Marks) -> String {
    let mut out = format!("{HEADER}\n");
    for (tree, r) in &m.replicas {
        out.push_str(&format!(
            "r {tree} written={} acked={} position={}\n",
            r.written, r.acked, r.position
        ));
    }
    for (space, last) in &m.logs {
        out.push_str(&format!("l {space} last={last}\n"));
    }
    let sum = checksum(&out);
    out.push_str(&format!("sum {sum:016x}\n"));
    out
}

fn field(part: Option<&str>, name: &str) -> Option<u64> {
    part?.strip_prefix(name)?.strip_prefix('=')?.parse().ok()
}

fn decode(text: &str) -> Result<Marks, String> {
    let body_end = text
        .rfind("sum ")
        .ok_or("it has no checksum line (torn or not a seal)")?;
    let (body, sum) = text.split_at(body_end);
    let sum = u64::from_str_radix(sum.trim_start_matches("sum ").trim(), 16)
        .map_err(|_| "its checksum line is unreadable")?;
    if checksum(body) != sum {
        return Err("its checksum does not match (torn or edited)".into());
    }
    let mut lines = body.lines();
    if lines.next() != Some(HEADER) {
        return Err("it does not start with the seal header".into());
    }
    let mut m = Marks::default();
    for line in lines {
        let mut parts = line.split(' ');
        let bad = || format!("unreadable line {line:?}");
        match parts.next() {
            Some("r") => {
                let tree = parts.next().ok_or_else(bad)?.to_owned();
                let marks = ReplicaMarks {
                    written: field(parts.next(), "written").ok_or_else(bad)?,
                    acked: field(parts.next(), "acked").ok_or_else(bad)?,
                    position: field(parts.next(), "position").ok_or_else(bad)?,
                };
                m.replicas.insert(tree, marks);
            }
            Some("l") => {
                let space = parts.next().ok_or_else(bad)?.to_owned();
                m.logs
                    .insert(space, field(parts.next(), "last").ok_or_else(bad)?);
            }
            _ => return Err(bad()),
        }
    }
    Ok(m)
}

impl Seal {
    /// Reads the seal of the store in `dir` (before sled opens it). A missing seal is a store
    /// written before seals existed, or a new one: nothing to check against.
    pub(crate) fn read(dir: &Path) -> Seal {
        let path = dir.join(FILE);
        let found = match std::fs::read_to_string(&path) {
            Ok(text) => match decode(&text) {
                Ok(m) => Some(m),
                Err(why) => {
                    warn!(
                        seal = %path.display(), %why,
                        "the store's seal is unusable, so this opening cannot check whether the \
                         store lost writes; it is rewritten at the next write"
                    );
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                warn!(seal = %path.display(), error = %e, "cannot read the store's seal");
                None
            }
        };
        Seal {
            path,
            now: Mutex::new(found.clone().unwrap_or_default()),
            found,
            file: Mutex::new(None),
        }
    }

    /// Ties this seal to the open database `db`, so stores opened on `db` find it.
    pub(crate) fn attach(self, db: &sled::Db) -> Result<Arc<Seal>, sled::Error> {
        let tag = rand::random::<u64>();
        db.insert(TAG_KEY, &tag.to_be_bytes())?;
        let seal = Arc::new(self);
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        reg.retain(|_, s| s.path != seal.path);
        reg.insert(tag, seal.clone());
        Ok(seal)
    }

    /// The seal of the open database `db`, if it was opened with `store::open_db` and is
    /// still open.
    pub(crate) fn of(db: &sled::Db) -> Option<Arc<Seal>> {
        let tag = db.get(TAG_KEY).ok()??;
        let tag = u64::from_be_bytes(tag.as_ref().try_into().ok()?);
        let reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        reg.get(&tag).cloned()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the seal said of replica tree `tree` when the store was opened.
    pub(crate) fn found_replica(&self, tree: &str) -> Option<ReplicaMarks> {
        self.found.as_ref()?.replicas.get(tree).copied()
    }

    /// Every replica tree and log space the seal named when the store was opened.
    pub(crate) fn found_all(&self) -> Found {
        match &self.found {
            Some(m) => (
                m.replicas.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                m.logs.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        }
    }

    /// Sets the marks of replica tree `tree` for the next write (the marks of a loss that
    /// was reported replace the old ones, so it is reported once).
    pub(crate) fn set_replica(&self, tree: &str, marks: ReplicaMarks) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        now.replicas.insert(tree.to_owned(), marks);
    }

    /// Sets the last position of the embedded log of `space` for the next write.
    pub(crate) fn set_log(&self, space: &str, last: u64) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        now.logs.insert(space.to_owned(), last);
    }

    /// What the marks are now, to write once the fsync that covers them is done.
    pub(crate) fn snapshot(&self) -> String {
        encode(&self.now.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Writes `text` (from [`snapshot`](Self::snapshot), taken before an fsync that has
    /// completed) as the seal. A failure is logged: the store itself is fine, only the next
    /// check is weaker.
    pub(crate) fn write(&self, text: &str) {
        use std::io::{Seek as _, SeekFrom, Write as _};
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let result = (|| {
            let f = match file.as_mut() {
                Some(f) => f,
                None => file.insert(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&self.path)?,
                ),
            };
            // Padded to the file's length as it is now, whoever wrote it last.
            let len = usize::try_from(f.metadata()?.len()).unwrap_or(usize::MAX);
            let mut bytes = text.as_bytes().to_vec();
            if len > bytes.len() + 64 * 1024 {
                // Not a seal this process wrote (or one of very many replicas): cut it, once,
                // rather than pad to its length.
                f.set_len(bytes.len() as u64)?;
            } else {
                bytes.resize(bytes.len().max(len), b'\n');
            }
            f.seek(SeekFrom::Start(0))?;
            f.write_all(&bytes)
        })();
        if let Err(e) = result {
            // Opened again at the next write.
            *file = None;
            warn!(seal = %self.path.display(), error = %e, "cannot write the store's seal");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_written_in_place_reads_back_the_last_marks_when_it_shrinks_or_grows() {
        let dir = tempfile::tempdir().unwrap();
        let seal = Seal::read(dir.path());
        for (tree, written) in [("replica/a/s/d", 1), ("replica/b/s/d", 2)] {
            let marks = ReplicaMarks {
                written,
                ..Default::default()
            };
            seal.set_replica(tree, marks);
        }
        seal.write(&seal.snapshot());
        // Fewer and shorter lines: the old text's tail must not be read as part of it.
        *seal.now.lock().unwrap() = Marks::default();
        seal.set_replica("r", ReplicaMarks::default());
        let short = seal.snapshot();
        seal.write(&short);
        let read = Seal::read(dir.path());
        let (replicas, logs) = read.found_all();
        assert_eq!(replicas, vec![("r".to_owned(), ReplicaMarks::default())]);
        assert!(logs.is_empty());
        // And longer again.
        seal.set_replica(
            "replica/c/space/document",
            ReplicaMarks {
                written: 9,
                acked: 9,
                position: 3,
            },
        );
        seal.write(&seal.snapshot());
        let read = Seal::read(dir.path());
        assert_eq!(read.found_all().0.len(), 2);
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(text.starts_with(HEADER), "{text}");
    }

    #[test]
    fn a_seal_round_trips_and_a_torn_or_edited_one_is_refused() {
        let mut m = Marks::default();
        m.replicas.insert(
            "replica/a/s/d".into(),
            ReplicaMarks {
                written: 12,
                acked: 9,
                position: 40,
            },
        );
        m.logs.insert("s".into(), 40);
        let text = encode(&m);
        assert_eq!(decode(&text).unwrap(), m);
        for n in 0..text.len() - 1 {
            assert!(decode(&text[..n]).is_err(), "prefix of {n} bytes");
        }
        let edited = text.replace("written=12", "written=13");
        assert!(decode(&edited).unwrap_err().contains("checksum"));
    }
}
