//! Workloads shared by Blackboard's benchmarks.
//!
//! The project pins automerge 0.6.1 because automerge 0.12 was seen to apply a single remote
//! change in time proportional to the document's whole history. A replica applies remote
//! changes exactly that way: one `apply_changes` call per event read from the log (see
//! `blackboard::doc::DocCore::apply`). This crate builds the same workloads against both
//! versions so that one benchmark run measures the baseline and the candidate side by side:
//!
//! * [`text_changes`]: a text document built from `n` sequential single-character inserts,
//!   each its own change, plus the change creating the text object.
//! * [`map_changes`]: `n` changes each putting one key (cycling over [`MAP_KEYS`] names) into
//!   the root map.
//!
//! The change bytes are produced once, with automerge 0.6.1 (the version every Blackboard
//! replica writes with), and the very same bytes are fed to both versions. [`v06`] and
//! [`v012`] expose the same functions for each version.

/// How many distinct keys the map workload cycles over.
pub const MAP_KEYS: usize = 100;

/// The name of the text object at the root of the text workload.
pub const TEXT_KEY: &str = "text";

/// The bytes of the changes of a text document built from `inserts` sequential
/// single-character inserts, in causal order; the first change creates the text object, so
/// there are `inserts + 1` changes.
pub fn text_changes(inserts: usize) -> Vec<Vec<u8>> {
    v06::text_changes(inserts)
}

/// The bytes of `puts` changes each putting one key of the root map, in causal order.
pub fn map_changes(puts: usize) -> Vec<Vec<u8>> {
    v06::map_changes(puts)
}

/// The character written by insert number `i` of the text workload.
pub fn text_char(i: usize) -> char {
    char::from(b'a' + (i % 26) as u8)
}

/// The text the text workload with `inserts` inserts ends with.
pub fn expected_text(inserts: usize) -> String {
    (0..inserts).map(text_char).collect()
}

/// The key written by put number `i` of the map workload.
pub fn map_key(i: usize) -> String {
    format!("key{:03}", i % MAP_KEYS)
}

macro_rules! versioned {
    ($(#[$attr:meta])* $name:ident, $krate:ident, $version:literal) => {
        $(#[$attr])*
        pub mod $name {
            use $krate::transaction::Transactable;
            use $krate::{Automerge, AutomergeError, Change, ObjType, ReadDoc, ROOT};

            /// The library's version, for labels.
            pub const VERSION: &str = $version;

            /// See [`crate::text_changes`]; built with this version.
            pub fn text_changes(inserts: usize) -> Vec<Vec<u8>> {
                let mut doc = Automerge::new();
                let mut tx = doc.transaction();
                let text = tx
                    .put_object(ROOT, crate::TEXT_KEY, ObjType::Text)
                    .expect("create the text object");
                tx.commit();
                let mut buf = [0u8; 4];
                for i in 0..inserts {
                    let mut tx = doc.transaction();
                    tx.splice_text(&text, i, 0, crate::text_char(i).encode_utf8(&mut buf))
                        .expect("insert a character");
                    tx.commit();
                }
                doc.get_changes(&[])
                    .iter()
                    .map(|c| c.raw_bytes().to_vec())
                    .collect()
            }

            /// See [`crate::map_changes`]; built with this version.
            pub fn map_changes(puts: usize) -> Vec<Vec<u8>> {
                let mut doc = Automerge::new();
                for i in 0..puts {
                    let mut tx = doc.transaction();
                    tx.put(ROOT, crate::map_key(i), i as i64)
                        .expect("put a key");
                    tx.commit();
                }
                doc.get_changes(&[])
                    .iter()
                    .map(|c| c.raw_bytes().to_vec())
                    .collect()
            }

            /// Decodes and applies `changes` into a fresh document, one `apply_changes` call
            /// per change, as a replica does with events read from the log.
            pub fn apply_one_at_a_time(changes: &[Vec<u8>]) -> Result<Automerge, AutomergeError> {
                let mut doc = Automerge::new();
                for bytes in changes {
                    let change = Change::from_bytes(bytes.clone())?;
                    doc.apply_changes([change])?;
                }
                Ok(doc)
            }

            /// Decodes `changes` and applies them into a fresh document in a single
            /// `apply_changes` call (for comparison: how a batch or a catch-up could go).
            pub fn apply_all_at_once(changes: &[Vec<u8>]) -> Result<Automerge, AutomergeError> {
                let decoded = changes
                    .iter()
                    .map(|bytes| Change::from_bytes(bytes.clone()))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut doc = Automerge::new();
                doc.apply_changes(decoded)?;
                Ok(doc)
            }

            /// The document's text object, as a string.
            pub fn text(doc: &Automerge) -> Option<String> {
                let (_, id) = doc.get(ROOT, crate::TEXT_KEY).ok()??;
                doc.text(&id).ok()
            }

            /// How many keys the document's root map has.
            pub fn root_keys(doc: &Automerge) -> usize {
                doc.keys(ROOT).count()
            }

            /// How many changes the document's history holds.
            pub fn history_len(doc: &Automerge) -> usize {
                doc.get_changes(&[]).len()
            }
        }
    };
}

versioned!(
    /// The workloads against automerge 0.6.1, the baseline.
    v06,
    automerge06,
    "0.6.1"
);
versioned!(
    /// The workloads against automerge 0.12, the candidate.
    v012,
    automerge012,
    "0.12"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_versions_apply_the_text_workload_one_at_a_time() {
        let changes = text_changes(50);
        assert_eq!(changes.len(), 51);
        let a = v06::apply_one_at_a_time(&changes).unwrap();
        let b = v012::apply_one_at_a_time(&changes).unwrap();
        assert_eq!(v06::text(&a).as_deref(), Some(expected_text(50).as_str()));
        assert_eq!(v012::text(&b).as_deref(), Some(expected_text(50).as_str()));
        assert_eq!(v06::history_len(&a), 51);
        assert_eq!(v012::history_len(&b), 51);
    }

    #[test]
    fn both_versions_apply_the_map_workload() {
        let changes = map_changes(250);
        assert_eq!(changes.len(), 250);
        for doc in [
            v06::root_keys(&v06::apply_one_at_a_time(&changes).unwrap()),
            v06::root_keys(&v06::apply_all_at_once(&changes).unwrap()),
            v012::root_keys(&v012::apply_one_at_a_time(&changes).unwrap()),
            v012::root_keys(&v012::apply_all_at_once(&changes).unwrap()),
        ] {
            assert_eq!(doc, MAP_KEYS);
        }
    }

    #[test]
    fn the_candidate_writes_the_same_workload() {
        let changes = v012::text_changes(20);
        let doc = v06::apply_one_at_a_time(&changes).unwrap();
        assert_eq!(v06::text(&doc), Some(expected_text(20)));
    }
}
