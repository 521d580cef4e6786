//! The position index on disk, in runs, and its hash → position map in memory.
//!
//! A run (`I` + the position of its first record, u64 big-endian) holds the [`Record`]s of
//! consecutive applied events, encoded one after another in position order. Runs never
//! overlap: every record of a run comes before every record of the next one. The follow loop
//! writes one run per applied batch, so a catch-up of 100k events writes about 400 keys
//! instead of 200k (a record key and a hash key per event, which cost about 10 µs each in
//! sled and were a quarter of a catch-up).
//!
//! Looking a change up by hash, which the follow loop does for each duplicate (a replica's
//! own change coming back from the log), goes through [`Positions`], a map built from the
//! runs the first time it is needed and kept up to date by every commit afterwards.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::history::Record;

/// The first byte of a run's key.
pub(super) const RUN: u8 = b'I';

/// The most records a run written in one go (a snapshot's, or a migration's) holds, so that
/// reading one record never decodes more than this many.
pub(super) const RUN_MAX: usize = 1024;

/// The key of the run whose first record is at `seq`.
pub(super) fn run_key(seq: u64) -> [u8; 9] {
    let mut k = [RUN; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The records of a run, in order.
pub(super) fn decode_run(mut v: &[u8]) -> Result<Vec<Record>, crate::history::HistoryError> {
    let mut out = Vec::new();
    while !v.is_empty() {
        let (record, rest) = Record::decode(v)?;
        out.push(record);
        v = rest;
    }
    Ok(out)
}

/// A run being written: the encoded records and what to add to [`Positions`] once they are
/// committed.
#[derive(Debug, Default)]
pub(super) struct RunBuf {
    /// The position of the first record, and the encoded records.
    pub(super) run: Option<(u64, Vec<u8>)>,
    /// (change hash, position) of each record.
    pub(super) indexed: Vec<([u8; 32], u64)>,
}

impl RunBuf {
    /// Appends `record` (which must come after every record already in the run).
    pub(super) fn push(&mut self, record: &Record) {
        let (_, out) = self
            .run
            .get_or_insert_with(|| (record.seq, Vec::with_capacity(128)));
        record.encode_into(out);
        self.indexed.push((record.hash.0, record.seq));
    }

    /// Adds the run to `batch`.
    pub(super) fn write(&mut self, batch: &mut sled::Batch) {
        if let Some((seq, run)) = self.run.take() {
            batch.insert(&run_key(seq)[..], run);
        }
    }
}

/// Change hash → the position it is indexed at, for every indexed change; `None` until first
/// needed (a replica that never looks a change up by hash never pays for building it).
#[derive(Debug, Default)]
pub(super) struct Positions {
    map: Mutex<Option<HashMap<[u8; 32], u64>>>,
}

impl Positions {
    /// The position of `hash`, building the map with `build` if it is not built yet.
    pub(super) fn get<E>(
        &self,
        hash: &[u8; 32],
        build: impl FnOnce() -> Result<HashMap<[u8; 32], u64>, E>,
    ) -> Result<Option<u64>, E> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.is_none() {
            *map = Some(build()?);
        }
        Ok(map.as_ref().and_then(|m| m.get(hash).copied()))
    }

    /// Whether the map has been built.
    #[cfg(test)]
    pub(super) fn built(&self) -> bool {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Records newly committed index entries (if the map is built; otherwise building it
    /// will read them from disk). A change keeps the first position it was indexed at.
    pub(super) fn note(&self, indexed: &[([u8; 32], u64)]) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(map) = map.as_mut() {
            for (hash, seq) in indexed {
                map.entry(*hash).or_insert(*seq);
            }
        }
    }
}
