//! An agent process for the fault tests: it writes tagged changes and says which ones were
//! acknowledged, so a test can kill it with SIGKILL mid-write and account for each one.
//!
//! ```text
//! fault_agent <nats-url> <store-dir> <agent> <space> <doc> <run> [<count>]
//! ```
//!
//! It opens the document on its store (resuming whatever a previous run left in the
//! outbox) and writes tags `<agent>-<run>-<n>`, n = 0, 1, ..., printing `ack <tag>` on
//! stdout (flushed) after each write returned Ok. Without `count` it writes until killed.
//! With `count` it writes that many, then waits for the log to acknowledge everything
//! (`Doc::flush`), prints `flushed` and exits.

use std::io::Write as _;

use anyhow::Context as _;
use blackboard_client::Options;
use blackboard_tests::checker::write_tag;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, store, agent, space, document, run, rest @ ..] = args.as_slice() else {
        anyhow::bail!(
            "usage: fault_agent <nats-url> <store-dir> <agent> <space> <doc> <run> [<count>]"
        );
    };
    let count: Option<u64> = rest
        .first()
        .map(|c| c.parse())
        .transpose()
        .context("count")?;
    let board = Options::new(agent)?.store(store).connect(url).await?;
    let doc = board.doc(space, document)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    let mut n = 0;
    while count.is_none_or(|c| n < c) {
        let tag = format!("{agent}-{run}-{n}");
        write_tag(&doc, &tag).await?;
        writeln!(stdout, "ack {tag}")?;
        stdout.flush()?;
        n += 1;
    }
    doc.flush().await?;
    writeln!(stdout, "flushed")?;
    stdout.flush()?;
    board.close().await?;
    Ok(())
}
