//! Watching a whole space: one stream over every document's watch.

use std::collections::HashSet;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use blackboard::log::DocumentStream;
use blackboard::replica::Position;
use blackboard::schemas::SpaceId;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tracing::warn;

use crate::{Board, ChangeEvent, Pattern, Start, WatchError, WatchOptions};

/// The events of every document in a space, merged. Each document's events keep their order;
/// documents interleave as their changes arrive. A [`WatchError::Lagged`] item names the
/// document that fell behind; the other documents go on. Dropping the stream stops it.
#[derive(Debug)]
pub struct SpaceWatch {
    rx: mpsc::Receiver<Result<ChangeEvent, WatchError>>,
    task: JoinHandle<()>,
}

impl Drop for SpaceWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream for SpaceWatch {
    type Item = Result<ChangeEvent, WatchError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

pub(crate) fn spawn(
    board: Board,
    space: SpaceId,
    pattern: Pattern,
    options: WatchOptions,
    now: u64,
    documents: DocumentStream,
) -> SpaceWatch {
    let (tx, rx) = mpsc::channel(options.buffer.max(1));
    let task = tokio::spawn(run(board, space, pattern, options, now, documents, tx));
    SpaceWatch { rx, task }
}

type Tx = mpsc::Sender<Result<ChangeEvent, WatchError>>;

async fn run(
    board: Board,
    space: SpaceId,
    pattern: Pattern,
    options: WatchOptions,
    now: u64,
    mut documents: DocumentStream,
    tx: Tx,
) {
    // Positions are shared by the space's documents, so a space-wide start is a sequence.
    let start = match &options.start {
        Start::Now => Start::After(Position {
            seq: now,
            heads: Vec::new(),
        }),
        Start::Beginning => Start::Beginning,
        Start::After(p) => Start::After(Position {
            seq: p.seq,
            heads: Vec::new(),
        }),
    };
    let mut seen = HashSet::new();
    let mut forwarders = JoinSet::new();
    loop {
        let next = tokio::select! {
            d = documents.next() => d,
            _ = tx.closed() => return,
        };
        match next {
            Some(Ok(document)) => {
                if !seen.insert(document.clone()) {
                    continue;
                }
                let watch = board
                    .doc(space.as_str(), document.as_str())
                    .and_then(|doc| {
                        doc.replica()
                            .watch(
                                pattern.clone(),
                                WatchOptions {
                                    start: start.clone(),
                                    ..options.clone()
                                },
                            )
                            .map_err(crate::Error::from)
                    });
                match watch {
                    Ok(mut watch) => {
                        let tx = tx.clone();
                        forwarders.spawn(async move {
                            while let Some(item) = watch.next().await {
                                if tx.send(item).await.is_err() {
                                    return;
                                }
                            }
                        });
                    }
                    Err(e) => {
                        let failed = WatchError::Failed {
                            document,
                            reason: e.to_string(),
                        };
                        if tx.send(Err(failed)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            other => {
                if tx.is_closed() {
                    return;
                }
                match other {
                    Some(Err(e)) => warn!(%space, error = %e, "space discovery failed; retrying"),
                    _ => warn!(%space, "space discovery ended; restarting it"),
                }
                // A pause before asking the log again, so an outage is not a busy loop.
                tokio::time::sleep(Duration::from_millis(500)).await;
                match board.log().documents(&space).await {
                    Ok((_, docs)) => documents = docs,
                    Err(e) => warn!(%space, error = %e, "cannot list the space's documents"),
                }
            }
        }
    }
}
