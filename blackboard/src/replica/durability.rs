//! When a local write returns, and what has it by then.

/// What a local write (`put`, `edit`, `change`, ...) waits for before it returns.
///
/// - [`Local`](Self::Local), the default: the change is on this machine's disk (sled,
///   fsynced) and in the outbox. It survives a crash of this process even while the log is
///   unreachable, and is published when the log can be reached; [`flush`] waits for that.
///   Every write costs a sled batch and an fsync here.
/// - [`Log`](Self::Log): the log has acknowledged the change. Nothing is written to local
///   disk on the way: the change waits in memory until the log acknowledges it, and is
///   stored locally when it comes back from the log, with the other events read. For agents
///   that write a lot at once: many concurrent writers share each publish round trip, with
///   no local fsync per write. The change is then as durable as the log makes it (in a
///   cluster, on a quorum of servers; with JetStream's default `sync_interval`, fsynced
///   within two minutes).
///
/// What each mode answers when something goes wrong:
///
/// | | `Local` | `Log` |
/// |---|---|---|
/// | the write returned `Ok` | on local disk, queued for the log | on the log |
/// | the log is unreachable | returns `Ok` at once | keeps waiting (bound it with `tokio::time::timeout`; the change stays queued in memory) |
/// | the log refuses the change for good | `Ok`, then [`flush`] reports the refusal; the change stays in this replica's document, unpublished | returns the refusal, as [`flush`] would; the change stays in this replica's document, unpublished |
/// | the process crashes before the log acknowledged | the change is published at the next opening | the change is lost, and no caller was told it was saved |
/// | [`close`] before the log acknowledged | published at the next opening | the waiting write returns [`Error::ClosedUnacknowledged`]: the change was moved to the local outbox, and is published at the next opening |
///
/// A write refused before it is made (too large, untrusted, unsigned) changes nothing in
/// either mode.
///
/// [`flush`]: super::Replica::flush
/// [`close`]: super::Replica::close
/// [`Error::ClosedUnacknowledged`]: crate::Error::ClosedUnacknowledged
///
/// ```
/// use blackboard::replica::{Config, Durability};
///
/// let mut config = Config::new("team".parse()?, "plan".parse()?, "me".parse()?);
/// assert_eq!(config.durability, Durability::Local);
/// config.durability = Durability::Log;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// A write returns once the change is fsynced to local disk and queued for the log.
    #[default]
    Local,
    /// A write returns once the log has acknowledged the change; nothing is written to
    /// local disk before that.
    Log,
}
