//! The embedded event log: sled on disk plus in-process fan-out.
//!
//! One sled tree per space, `log/<space>`, holds these keys:
//! - `s`: the space's last position (u64, big-endian);
//! - `t`: the time of the last append (i64 milliseconds, big-endian);
//! - `e` + document + `0x00` + position: an event: the append time (i64 milliseconds,
//!   big-endian), then the payload;
//! - `n` + document: the document's snapshot: its position and trim floor (two u64,
//!   big-endian), then the snapshot bytes;
//! - `m` + message id: the position of the event published with that id (deduplication; kept
//!   forever, where JetStream keeps a time window);
//! - `d` + document: the position of the document's last event (to list a space's documents);
//! - `r` + position: a roster event: the append time, then the payload.
//!
//! A publish writes its keys in one atomic batch and fsyncs before it returns, which is the
//! same promise JetStream makes with `sync_interval: always`. Publishes to a space are
//! serialized, so positions are handed out and broadcast in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use blackboard_schemas::{DocumentId, SpaceId};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::{
    DocumentStream, DocumentSummary, Entry, EntryStream, Error, EventLog, Published, SnapshotInfo,
    Topic,
};

/// How many live events a subscriber may fall behind before it re-reads from disk.
const FANOUT_CAPACITY: usize = 1024;
/// How many entries a subscription buffers before the reader must catch up.
const SUBSCRIPTION_BUFFER: usize = 256;

/// The embedded log. Cheap to clone; clones share the same database and fan-out.
///
/// ```
/// # tokio_test_block_on(async {
/// use blackboard::log::{EmbeddedLog, EventLog};
/// use futures::StreamExt;
///
/// let dir = tempfile::tempdir()?;
/// let log = EmbeddedLog::open(sled::open(dir.path())?)?;
/// let (space, doc) = ("team".parse()?, "plan".parse()?);
/// let ack = log.publish(&space, &doc, "id-1", "hello".into()).await?;
/// let mut events = log.subscribe(&space, &doc, 1).await?;
/// assert_eq!(events.next().await.unwrap()?.seq, ack.seq);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Runtime::new().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: sled::Db,
    /// The store's seal (when the database was opened with `store::open_db`): each
    /// append records the space's last position in it, so a store that comes back from
    /// damage with fewer events says so (this log is their only copy).
    seal: Option<Arc<crate::seal::Seal>>,
    spaces: Mutex<HashMap<SpaceId, Arc<Space>>>,
}

#[derive(Debug)]
struct Space {
    tree: sled::Tree,
    /// Serializes publishes, so positions are assigned and broadcast in order.
    publish: tokio::sync::Mutex<()>,
    /// Every append: its document (`None` for a roster event) and the entry.
    fanout: broadcast::Sender<(Option<DocumentId>, Entry)>,
    /// The time of the last append (milliseconds since the epoch).
    last_time: std::sync::atomic::AtomicI64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn snapshot_key(doc: &DocumentId) -> Vec<u8> {
    let mut k = vec![b'n'];
    k.extend_from_slice(doc.as_str().as_bytes());
    k
}

/// Splits a stored event into its append time and payload.
fn decode_event(seq: u64, v: &[u8], topic: Topic) -> Result<Entry, Error> {
    let (time, payload) = v
        .split_at_checked(8)
        .ok_or_else(|| Error::Protocol(format!("stored event {seq} is shorter than its header")))?;
    Ok(Entry {
        topic,
        seq,
        time_ms: i64::from_be_bytes(time.try_into().unwrap_or_default()),
        payload: Bytes::copy_from_slice(payload),
    })
}

fn event_prefix(doc: &DocumentId) -> Vec<u8> {
    let mut k = Vec::with_capacity(doc.as_str().len() + 10);
    k.push(b'e');
    k.extend_from_slice(doc.as_str().as_bytes());
    k.push(0);
    k
}

fn event_key(doc: &DocumentId, seq: u64) -> Vec<u8> {
    let mut k = event_prefix(doc);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn roster_key(seq: u64) -> Vec<u8> {
    let mut k = vec![b'r'];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn decode_seq(bytes: &[u8]) -> Result<u64, Error> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        Error::Protocol(format!("stored position has {} bytes, not 8", bytes.len()))
    })?;
    Ok(u64::from_be_bytes(arr))
}

impl EmbeddedLog {
    /// Opens the log in `db` (which may also hold other trees, such as replicas').
    pub fn open(db: sled::Db) -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::new(Inner {
                seal: crate::seal::Seal::of(&db),
                db,
                spaces: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Appends a batch in order: one atomic sled batch, one fsync, then the fan-out.
    async fn append(
        &self,
        space: &SpaceId,
        document: Option<&DocumentId>,
        items: Vec<(String, Bytes)>,
    ) -> Result<Vec<Result<Published, Error>>, Error> {
        let s = self.space(space)?;
        let _serial = s.publish.lock().await;
        let mut last = match s.tree.get(b"s")? {
            Some(v) => decode_seq(&v)?,
            None => 0,
        };
        let mut batch = sled::Batch::default();
        // Never behind the last append, so the log's clock does not go backwards.
        let time_ms = now_ms().max(s.last_time.load(std::sync::atomic::Ordering::Relaxed));
        let mut fresh: HashMap<String, u64> = HashMap::new();
        let mut appended = Vec::new();
        let mut results = Vec::with_capacity(items.len());
        for (msg_id, payload) in items {
            if payload.len() > blackboard_schemas::MAX_ENVELOPE_BYTES {
                results.push(Err(Error::TooLarge {
                    len: payload.len(),
                    max: blackboard_schemas::MAX_ENVELOPE_BYTES,
                }));
                continue;
            }
            let mut dedup_key = vec![b'm'];
            dedup_key.extend_from_slice(msg_id.as_bytes());
            let known = match fresh.get(&msg_id) {
                Some(seq) => Some(*seq),
                None => s
                    .tree
                    .get(&dedup_key)?
                    .map(|v| decode_seq(&v))
                    .transpose()?,
            };
            if let Some(seq) = known {
                results.push(Ok(Published {
                    seq,
                    duplicate: true,
                }));
                continue;
            }
            last += 1;
            batch.insert(dedup_key, &last.to_be_bytes());
            let mut value = Vec::with_capacity(8 + payload.len());
            value.extend_from_slice(&time_ms.to_be_bytes());
            value.extend_from_slice(&payload);
            match document {
                Some(document) => batch.insert(event_key(document, last), value),
                None => batch.insert(roster_key(last), value),
            }
            fresh.insert(msg_id, last);
            appended.push(Entry {
                topic: match document {
                    Some(_) => Topic::Change,
                    None => Topic::Roster,
                },
                seq: last,
                time_ms,
                payload,
            });
            results.push(Ok(Published {
                seq: last,
                duplicate: false,
            }));
        }
        if !appended.is_empty() {
            batch.insert(b"s".as_slice(), &last.to_be_bytes());
            batch.insert(b"t".as_slice(), &time_ms.to_be_bytes());
            if let Some(document) = document {
                let mut doc_key = vec![b'd'];
                doc_key.extend_from_slice(document.as_str().as_bytes());
                batch.insert(doc_key, &last.to_be_bytes());
            }
            s.tree.apply_batch(batch)?;
            let seal = self.inner.seal.as_ref().map(|seal| {
                seal.set_log(space.as_str(), last);
                (seal, seal.snapshot())
            });
            super::flush_db(&self.inner.db).await?;
            if let Some((seal, text)) = seal {
                seal.write(&text);
            }
            s.last_time
                .store(time_ms, std::sync::atomic::Ordering::Relaxed);
        }
        for entry in appended {
            // Nobody listening is fine: subscribers read from disk first.
            let _ = s.fanout.send((document.cloned(), entry));
        }
        Ok(results)
    }

    /// A document's events from `from` on (with its space's roster events when `roster`),
    /// read from disk then followed live: what `subscribe` and `subscribe_with_roster` return.
    fn follow(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        from: u64,
        roster: bool,
    ) -> Result<EntryStream, Error> {
        let s = self.space(space)?;
        // Listen before reading the disk: an event published meanwhile is then seen at least
        // once, and positions already delivered are skipped.
        let live = s.fanout.subscribe();
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let feed = feed(
            Arc::downgrade(&s),
            document.clone(),
            roster,
            from.max(1),
            live,
            tx,
        );
        tokio::spawn(feed);
        Ok(ReceiverStream::new(rx).boxed())
    }

    fn space(&self, space: &SpaceId) -> Result<Arc<Space>, Error> {
        let mut spaces = self
            .inner
            .spaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(s) = spaces.get(space) {
            return Ok(s.clone());
        }
        let tree = self.inner.db.open_tree(format!("log/{space}"))?;
        // The last append's time, so a clock set back does not make the log's time go back.
        let last_time = match tree.get(b"t")? {
            Some(v) => decode_seq(&v)? as i64,
            None => 0,
        };
        let s = Arc::new(Space {
            tree,
            publish: tokio::sync::Mutex::new(()),
            fanout: broadcast::channel(FANOUT_CAPACITY).0,
            last_time: last_time.into(),
        });
        spaces.insert(space.clone(), s.clone());
        Ok(s)
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn publish_batch(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        batch: Vec<(String, Bytes)>,
    ) -> Vec<Result<Published, Error>> {
        let n = batch.len();
        match self.append(space, Some(document), batch).await {
            Ok(results) => results,
            Err(e) => super::failed_batch(e, n),
        }
    }

    async fn publish_roster(
        &self,
        space: &SpaceId,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<Published, Error> {
        let mut results = self
            .append(space, None, vec![(msg_id.to_owned(), payload)])
            .await?;
        results.pop().unwrap_or(Err(Error::Closed))
    }

    async fn subscribe_with_roster(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        from: u64,
    ) -> Result<EntryStream, Error> {
        self.follow(space, document, from, true)
    }

    async fn roster_events(&self, space: &SpaceId, below: u64) -> Result<Vec<Entry>, Error> {
        let s = self.space(space)?;
        let mut out = Vec::new();
        for item in s.tree.range(roster_key(0)..roster_key(below.max(1))) {
            let (k, v) = item?;
            out.push(decode_event(decode_seq(&k[1..])?, &v, Topic::Roster)?);
        }
        Ok(out)
    }

    async fn subscribe(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        from: u64,
    ) -> Result<EntryStream, Error> {
        self.follow(space, document, from, false)
    }

    async fn last_seq(&self, space: &SpaceId, document: &DocumentId) -> Result<u64, Error> {
        let s = self.space(space)?;
        let mut doc_key = vec![b'd'];
        doc_key.extend_from_slice(document.as_str().as_bytes());
        match s.tree.get(doc_key)? {
            Some(v) => decode_seq(&v),
            None => Ok(0),
        }
    }

    async fn put_snapshot(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        info: SnapshotInfo,
        bytes: Bytes,
    ) -> Result<(), Error> {
        let s = self.space(space)?;
        let mut value = Vec::with_capacity(16 + bytes.len());
        value.extend_from_slice(&info.seq.to_be_bytes());
        value.extend_from_slice(&info.trimmed_through.to_be_bytes());
        value.extend_from_slice(&bytes);
        s.tree.insert(snapshot_key(document), value)?;
        super::flush_db(&self.inner.db).await?;
        Ok(())
    }

    async fn snapshot_info(
        &self,
        space: &SpaceId,
        document: &DocumentId,
    ) -> Result<Option<SnapshotInfo>, Error> {
        Ok(self.get_snapshot(space, document).await?.map(|(i, _)| i))
    }

    async fn get_snapshot(
        &self,
        space: &SpaceId,
        document: &DocumentId,
    ) -> Result<Option<(SnapshotInfo, Bytes)>, Error> {
        let s = self.space(space)?;
        let Some(v) = s.tree.get(snapshot_key(document))? else {
            return Ok(None);
        };
        if v.len() < 16 {
            return Err(Error::Protocol(format!(
                "stored snapshot of {document} is shorter than its header"
            )));
        }
        let info = SnapshotInfo {
            seq: decode_seq(&v[..8])?,
            trimmed_through: decode_seq(&v[8..16])?,
            size: (v.len() - 16) as u64,
        };
        Ok(Some((info, Bytes::copy_from_slice(&v[16..]))))
    }

    async fn trim(
        &self,
        space: &SpaceId,
        document: &DocumentId,
        through: u64,
    ) -> Result<u64, Error> {
        let s = self.space(space)?;
        let _serial = s.publish.lock().await;
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for key in s
            .tree
            .range(event_key(document, 0)..=event_key(document, through))
            .keys()
        {
            batch.remove(key?);
            n += 1;
        }
        s.tree.apply_batch(batch)?;
        super::flush_db(&self.inner.db).await?;
        Ok(n)
    }

    async fn list(&self, space: &SpaceId) -> Result<Vec<DocumentSummary>, Error> {
        let s = self.space(space)?;
        let mut documents = Vec::new();
        for item in s.tree.scan_prefix(b"d") {
            let (key, _) = item?;
            let Some(document) = std::str::from_utf8(&key[1..])
                .ok()
                .and_then(|name| name.parse::<DocumentId>().ok())
            else {
                return Err(Error::Protocol(format!(
                    "the embedded log's document key {key:?} does not name a document"
                )));
            };
            let events = s.tree.scan_prefix(event_prefix(&document)).count() as u64;
            if events > 0 {
                documents.push(DocumentSummary { document, events });
            }
        }
        // Keys sort by bytes, which is name order.
        Ok(documents)
    }

    async fn documents(&self, space: &SpaceId) -> Result<(u64, DocumentStream), Error> {
        let s = self.space(space)?;
        let live = s.fanout.subscribe();
        let last = match s.tree.get(b"s")? {
            Some(v) => decode_seq(&v)?,
            None => 0,
        };
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        tokio::spawn(feed_documents(Arc::downgrade(&s), live, tx));
        Ok((last, ReceiverStream::new(rx).boxed()))
    }
}

/// What a feed gets from the fan-out.
enum Live {
    /// An event was published.
    Event(Option<DocumentId>, Entry),
    /// The feed fell behind the fan-out: re-read the disk.
    Lagged,
    /// The log is gone.
    Closed,
    /// The subscriber dropped its stream.
    Unsubscribed,
}

/// The next thing the fan-out has for a feed whose subscriber listens on `tx`.
async fn next_live<T>(
    live: &mut broadcast::Receiver<(Option<DocumentId>, Entry)>,
    tx: &mpsc::Sender<T>,
) -> Live {
    tokio::select! {
        r = live.recv() => match r {
            Ok((doc, entry)) => Live::Event(doc, entry),
            Err(broadcast::error::RecvError::Lagged(_)) => Live::Lagged,
            Err(broadcast::error::RecvError::Closed) => Live::Closed,
        },
        _ = tx.closed() => Live::Unsubscribed,
    }
}

/// Lists the documents on disk, then follows the fan-out; lists again after a lag.
async fn feed_documents(
    s: Weak<Space>,
    mut live: broadcast::Receiver<(Option<DocumentId>, Entry)>,
    tx: mpsc::Sender<Result<DocumentId, Error>>,
) {
    loop {
        // Held only while reading the disk (see `feed`).
        let Some(s) = s.upgrade() else {
            return;
        };
        for key in s.tree.scan_prefix(b"d").keys() {
            let doc = key.map_err(Error::from).and_then(|k| {
                std::str::from_utf8(&k[1..])
                    .ok()
                    .and_then(|d| d.parse::<DocumentId>().ok())
                    .ok_or_else(|| Error::Protocol("unreadable document key".into()))
            });
            if tx.send(doc).await.is_err() {
                return;
            }
        }
        drop(s);
        loop {
            match next_live(&mut live, &tx).await {
                Live::Event(None, _) => {}
                Live::Event(Some(doc), _) => {
                    if tx.send(Ok(doc)).await.is_err() {
                        return;
                    }
                }
                Live::Lagged => break,
                Live::Closed | Live::Unsubscribed => return,
            }
        }
    }
}

/// Delivers stored events from `next`, then live ones; falls back to the disk whenever the
/// live channel overflowed. With `roster`, the space's roster events too, merged in position
/// order. Ends when the subscriber is dropped.
async fn feed(
    s: Weak<Space>,
    doc: DocumentId,
    roster: bool,
    mut next: u64,
    mut live: broadcast::Receiver<(Option<DocumentId>, Entry)>,
    tx: mpsc::Sender<Result<Entry, Error>>,
) {
    let prefix = event_prefix(&doc);
    loop {
        // The space (and so the sled database) is held only while reading the disk: a feed
        // waiting on the fan-out must not keep the database open after its log is dropped,
        // or reopening the same directory right after a close finds it locked.
        let Some(s) = s.upgrade() else {
            return;
        };
        // Catch up from disk: the document's events and (maybe) the roster's, merged, up to
        // the last position now (an append writes it in the same batch as its event, so
        // everything up to it is on disk); later ones come from the fan-out, in order. Without
        // the bound, one iterator could see an append the other missed.
        let last = match s.tree.get(b"s").map_err(Error::from).and_then(|v| match v {
            Some(v) => decode_seq(&v),
            None => Ok(0),
        }) {
            Ok(last) => last,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let changes = s
            .tree
            .range(event_key(&doc, next)..)
            .take_while(|item| item.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .map(|item| {
                let (k, v) = item?;
                decode_event(decode_seq(&k[prefix.len()..])?, &v, Topic::Change)
            })
            .take_while(|e| e.as_ref().map_or(true, |e| e.seq <= last));
        let rosters = s
            .tree
            .range(roster_key(next)..roster_key(u64::MAX))
            .filter(|_| roster)
            .map(|item| {
                let (k, v) = item?;
                decode_event(decode_seq(&k[1..])?, &v, Topic::Roster)
            })
            .take_while(|e| e.as_ref().map_or(true, |e| e.seq <= last));
        let mut changes = changes.peekable();
        let mut rosters = rosters.peekable();
        loop {
            let take_roster = match (changes.peek(), rosters.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(Ok(c)), Some(Ok(r))) => r.seq < c.seq,
                (Some(Err(_)), _) => false,
                (_, Some(Err(_))) => true,
            };
            let entry = match take_roster {
                true => rosters.next(),
                false => changes.next(),
            };
            match entry {
                Some(Ok(e)) => {
                    next = e.seq + 1;
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                None => break,
            }
        }
        drop(s);
        // Then follow the fan-out until it overflows.
        loop {
            match next_live(&mut live, &tx).await {
                Live::Event(d, e)
                    if (d.as_ref() == Some(&doc) || (roster && d.is_none())) && e.seq >= next =>
                {
                    next = e.seq + 1;
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
                Live::Event(..) => {}
                Live::Lagged => break,
                Live::Closed => {
                    let _ = tx.send(Err(Error::Closed)).await;
                    return;
                }
                Live::Unsubscribed => return,
            }
        }
    }
}
