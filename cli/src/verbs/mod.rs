//! The verbs of the `blackboard` command besides `demo`:
//! - the document verbs `ls`, `get`, `put` and `watch`: list a space's documents, read a
//!   document or one value, write a value, follow changes as they happen;
//! - the history verbs `history`, `show`, `diff`, `blame`, `snapshot` and `replay`;
//! - `keys`: make an agent's key pair, show a seed file's public key;
//! - `roster`: show a space's roster in force, publish a new one signed by an admin;
//! - `auth`: print a nats-server authorization block for a space from its roster.
//!
//! Each opens the board through the SDK ([`crate::connect`]) and one document on it
//! ([`open`]), brings the document up to date with the log, and answers. Over NATS the
//! replica lives in a temporary store unless `--store` names one, so a verb leaves nothing
//! behind but what it writes to the log (a `put`, a snapshot, a trim); on an embedded store
//! the verb's replica (agent `cli`, or `--as`) is kept in that store, like any agent's.
//!
//! Output: readable text on stdout by default, `--json` for machines; progress and
//! position lines go to stderr. Exit codes: 0 done, 1 failed (nothing was written;
//! including an unknown document or nothing at a path), 2 bad arguments ([`Usage`]), 3
//! written but not yet acknowledged ([`NotAcknowledged`]: the change is durable in the
//! local store, the log has not confirmed it), 4 answered from a damaged store that lost
//! data for good ([`StoreLost`]: the answer lacks it; stderr says what).

pub mod auth;
pub mod blame;
pub mod diff;
pub mod get;
pub mod history;
pub mod keys;
pub mod ls;
pub mod open;
pub mod patches;
pub mod put;
pub mod replay;
pub mod roster;
pub mod show;
pub mod snapshot;
pub mod table;
pub mod watch;

use std::io::{self, BufWriter, StdoutLock, Write};

use blackboard_client::automerge::ChangeHash;

/// Buffered, locked stdout. A closed pipe (`blackboard history | head`) is not an error;
/// see [`is_broken_pipe`].
pub fn stdout() -> BufWriter<StdoutLock<'static>> {
    BufWriter::new(io::stdout().lock())
}

/// Whether `e` is a write to a reader that went away, which ends the command quietly.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// A change's signature status for a table: `U…` (the first 8 characters of the verified
/// signer), `unsigned`, or `INVALID (signer …)`; JSON output carries the whole key and the
/// reason (`signer`, `verified`, `signature_error`).
pub fn signed(signature: &blackboard_client::Signature) -> String {
    use blackboard_client::Signature;
    match signature {
        Signature::Unsigned => "unsigned".into(),
        Signature::Verified(key) => format!("{}…", key.get(..8).unwrap_or(key)),
        Signature::Invalid { signer, .. } => match signer {
            Some(key) => format!("INVALID ({}…)", key.get(..8).unwrap_or(key)),
            None => "INVALID".into(),
        },
    }
}

/// A bad argument found after clap parsed the command line (say, JSON read from stdin
/// that does not parse): the command exits with status 2, as for clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// A write that was made and is durable in the local store, but that the log has not
/// acknowledged (yet): the command exits with status 3, not 1, because 1 means nothing
/// was written. The message says where the change is and what happens to it.
#[derive(Debug, thiserror::Error)]
#[error("written (durable locally), not yet acknowledged by the log: {0}")]
pub struct NotAcknowledged(pub String);

/// The exit status of a [`NotAcknowledged`] write.
pub const EXIT_NOT_ACKNOWLEDGED: u8 = 3;

/// Whether `e` is a [`NotAcknowledged`] write.
pub fn is_not_acknowledged(e: &anyhow::Error) -> bool {
    e.downcast_ref::<NotAcknowledged>().is_some()
}

/// A reading command answered from a store that was found, when opened, to have lost data
/// for good (writes that had returned Ok and were never acknowledged, or events of an
/// embedded log, which had no other copy): the answer is printed, then the command exits
/// with status 4 ([`EXIT_STORE_LOST`]) naming what is gone, never 0 as if it were whole.
#[derive(Debug, thiserror::Error)]
#[error("the answer above lacks what the damaged local store lost: {0}")]
pub struct StoreLost(pub String);

/// The exit status of a [`StoreLost`] answer.
pub const EXIT_STORE_LOST: u8 = 4;

/// Whether `e` is a [`StoreLost`] answer.
pub fn is_store_lost(e: &anyhow::Error) -> bool {
    e.downcast_ref::<StoreLost>().is_some()
}

/// Whether `e` is a [`Usage`] error.
pub fn is_usage(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Usage>().is_some()
}

/// Writes `value` as one line of compact JSON.
pub fn json_line(out: &mut impl Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// The first 12 hex digits of a change hash, as `git log --oneline` shortens.
pub fn short(h: &ChangeHash) -> String {
    h.to_string()[..12].to_owned()
}

/// Heads, shortened and comma-separated; `-` for none.
pub fn short_heads(heads: &[ChangeHash]) -> String {
    if heads.is_empty() {
        return "-".to_owned();
    }
    heads.iter().map(short).collect::<Vec<_>>().join(",")
}
