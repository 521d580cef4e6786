//! The store's format number: which layout of keys and values a store directory holds.
//!
//! Kept under one key of sled's default tree. A version of Blackboard that changes what it
//! writes in a way an earlier version would misread (the outbox's spliced envelopes were
//! one such change: an earlier reader would publish the cut envelope as it stands) raises
//! [`STORE_FORMAT`]. A version refuses a store with a higher number than its own, naming
//! both, instead of misreading it. A store with no number (new, or written before formats
//! were recorded) is one this version reads, and gets this version's number.

use std::path::Path;

use super::StoreError;

/// The store format this version writes, and the highest it reads.
pub const STORE_FORMAT: u64 = 1;

/// The default tree's key holding the format number (u64, big-endian).
const KEY: &[u8] = b"blackboard/format";

/// Checks the format number of the store in `db` (directory `path`), and records this
/// version's when there is none. Reads and writes nothing else.
pub(super) fn check(db: &sled::Db, path: &Path) -> Result<(), StoreError> {
    let Some(found) = db.get(KEY)? else {
        db.insert(KEY, &STORE_FORMAT.to_be_bytes())?;
        return Ok(());
    };
    let found = <[u8; 8]>::try_from(&found[..])
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            tree: "(default)".into(),
            what: format!(
                "store format number: {} bytes where 8 were written",
                found.len()
            ),
        })?;
    if found > STORE_FORMAT {
        return Err(StoreError::NewerFormat {
            path: path.to_owned(),
            found,
            supported: STORE_FORMAT,
        });
    }
    Ok(())
}

#[cfg(test)]
pub(super) fn set(db: &sled::Db, value: &[u8]) {
    db.insert(KEY, value).unwrap();
}

#[cfg(test)]
pub(super) fn get(db: &sled::Db) -> Option<Vec<u8>> {
    db.get(KEY).unwrap().map(|v| v.to_vec())
}
