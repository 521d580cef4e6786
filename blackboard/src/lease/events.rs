//! The machinery shared by the claim and presence watches: a background task that turns the
//! lease store's versions into events, fires the deadlines a tracker asks for (a lease's
//! expiry, a member's heartbeat timeout), and hands the events to a stream.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::clock::now_ms;
use super::{StoreError, VersionStream, Versioned};

/// How many events the watch task may get ahead of the reader.
const BUFFER: usize = 256;

/// The pure state of a watch: what a new version means, and what time alone changes.
pub(crate) trait Tracker: Default + Send + 'static {
    /// The events it reports.
    type Event: Send + 'static;
    /// The event a new version means at `now_ms`, if any.
    fn apply(&mut self, v: &Versioned, now_ms: u64) -> Option<Self::Event>;
    /// The earliest deadline (milliseconds since the epoch) at which `expire` has work.
    fn next_deadline(&self) -> Option<u64>;
    /// The events of every deadline passed by `now_ms`.
    fn expire(&mut self, now_ms: u64) -> Vec<Self::Event>;
}

/// A stream of events made by a background task; dropping it stops the task. The first
/// error ends the stream.
#[derive(Debug)]
pub struct EventStream<T> {
    rx: mpsc::Receiver<T>,
    task: JoinHandle<()>,
}

impl<T> Drop for EventStream<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T> Stream for EventStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx)
    }
}

/// Runs a `K` tracker over `versions` in the background.
pub(crate) fn spawn<K, E>(versions: VersionStream) -> EventStream<Result<K::Event, E>>
where
    K: Tracker,
    E: From<StoreError> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(BUFFER);
    let task = tokio::spawn(run::<K, E>(versions, tx));
    EventStream { rx, task }
}

async fn run<K: Tracker, E: From<StoreError>>(
    mut versions: VersionStream,
    tx: mpsc::Sender<Result<K::Event, E>>,
) {
    let mut tracker = K::default();
    loop {
        let wait = tracker
            .next_deadline()
            .map(|ms| Duration::from_millis(ms.saturating_sub(now_ms())));
        let out: Vec<Result<K::Event, E>> = tokio::select! {
            v = versions.next() => match v {
                Some(Ok(v)) => tracker.apply(&v, now_ms()).into_iter().map(Ok).collect(),
                Some(Err(e)) => vec![Err(e.into())],
                None => return,
            },
            () = sleep_or_forever(wait) => tracker.expire(now_ms()).into_iter().map(Ok).collect(),
            () = tx.closed() => return,
        };
        for item in out {
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    }
}

async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
