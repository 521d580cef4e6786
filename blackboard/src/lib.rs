//! The Blackboard engine: leaderless shared documents over an event log.
//!
//! Agents share named documents (automerge CRDTs) in spaces. Every change is an event on a log
//! (NATS JetStream, or an embedded sled log for one process); every agent's [`Replica`]
//! applies the events it sees, and automerge merges concurrent changes the same way on every
//! replica. Most users want the SDK, `blackboard-client`; this crate is what it is built on.
//!
//! The layers, from the inside out:
//! - [`doc`]: the document core, pure (no I/O): automerge, JSON views, paths;
//! - [`codec`]: the one decoder for events from the network;
//! - [`trust`]: a space's roster, write grants and the verdict on each change, pure;
//! - [`apply`]: the causal apply step, pure: decode, hold back, apply, attribute, patches;
//! - [`log`]: the [`log::EventLog`] trait and its JetStream and embedded implementations;
//! - [`store`]: a replica's sled tree (document, position index, outbox), and opening a
//!   store directory checked against its [`seal`] (what it had made durable);
//! - [`watch`]: path-scoped, resumable streams of change events;
//! - [`history`]: the position index, history queries and snapshots;
//! - [`replica`]: the replica that ties them together;
//! - [`lease`], [`claim`], [`presence`]: coordination without a manager: leases on named
//!   resources (compare-and-set on JetStream KV or sled, fencing tokens, expiry) and who is
//!   present where.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use blackboard::{log::EmbeddedLog, replica::Config, Replica};
//! use serde_json::json;
//!
//! let dir = tempfile::tempdir()?;
//! let db = sled::open(dir.path())?;
//! let log = Arc::new(EmbeddedLog::open(db.clone())?);
//! let alice = Replica::open(log.clone(), &db, Config::new("team".parse()?, "plan".parse()?, "alice".parse()?))?;
//! let bob = Replica::open(log, &db, Config::new("team".parse()?, "plan".parse()?, "bob".parse()?))?;
//!
//! alice.put("/owner", json!("alice")).await?;
//! bob.put("/owner", json!("bob")).await?; // a concurrent write to the same key
//! alice.flush().await?;
//! bob.flush().await?;
//! alice.wait_for(&bob.heads()).await?;
//! bob.wait_for(&alice.heads()).await?;
//! assert_eq!(alice.heads(), bob.heads());
//! assert_eq!(alice.get("/owner")?, bob.get("/owner")?); // the same winner on both
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

#![warn(missing_docs)]

pub mod apply;
/// Marks a step of a change's way through the engine (writer, outbox, log, follower) with a
/// `TRACE` event of target `blackboard::stage`, for `scenarios --stages` (BENCHMARKS.md).
/// Without a subscriber asking for them, each costs a callsite check.
macro_rules! stage {
    ($agent:expr, $stage:literal) => {
        tracing::trace!(target: "blackboard::stage", agent = %$agent, stage = $stage)
    };
    ($stage:literal) => {
        tracing::trace!(target: "blackboard::stage", stage = $stage)
    };
}

mod backoff;
pub mod claim;
pub mod codec;
pub mod doc;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod history;
pub mod lease;
pub mod log;
mod position;
pub mod presence;
pub mod replica;
pub mod seal;
pub mod store;
pub mod trust;
pub mod watch;

pub use automerge;
pub use blackboard_schemas as schemas;
pub use error::Error;
pub use replica::Replica;

/// The engine's module graph has no cycle: each module uses only modules below it.
#[cfg(test)]
mod layers {
    use std::path::Path;

    /// The engine's modules, lowest first. A module may use only those before it.
    const LAYERS: &[&str] = &[
        "position", "backoff", "seal", "doc", "codec", "trust", "log", "apply", "watch", "history",
        "store", "error", "replica",
    ];

    /// The modules named by `crate::...` paths in the code of `path` (a file, or a folder
    /// taken whole), comments left out. `crate::Error` and `crate::Replica` are re-exports
    /// of `error` and `replica`.
    fn uses(path: &Path, out: &mut Vec<(String, String)>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                uses(&entry.unwrap().path(), out);
            }
            return;
        }
        let text = std::fs::read_to_string(path).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let module = match name.as_str() {
                    "Error" => "error".to_owned(),
                    "Replica" => "replica".to_owned(),
                    _ => name,
                };
                out.push((module, format!("{}: {}", path.display(), line.trim())));
            }
        }
    }

    #[test]
    fn no_engine_module_uses_a_module_above_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut upward = Vec::new();
        for (level, module) in LAYERS.iter().enumerate() {
            let dir = src.join(module);
            let path = if dir.is_dir() {
                dir
            } else {
                src.join(format!("{module}.rs"))
            };
            let mut found = Vec::new();
            uses(&path, &mut found);
            for (used, line) in found {
                let above = LAYERS
                    .iter()
                    .position(|m| *m == used)
                    .is_some_and(|l| l >= level && used != *module);
                if above {
                    upward.push(format!("{module} uses {used}: {line}"));
                }
            }
        }
        assert!(upward.is_empty(), "upward uses:\n{}", upward.join("\n"));
    }
}
