//! Scenario 12: recovery after a server restart. The server is killed and started again on
//! the same port and store; from the moment it is ready, how long until a change put by one
//! replica reaches another replica's watch, beside how long until a raw JetStream publish
//! reaches an ordered consumer, each on connections made before the restart.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use async_nats::jetstream::{self, consumer};
use blackboard::watch::Options as WatchOptions;
use bytes::Bytes;
use futures::StreamExt;

use super::ctx::{next_event, within, Ctx};
use super::raw::raw_stream;
use super::table::{us, Lat, Row};
use super::value;

pub(super) async fn s12_recovery(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let Some(restart) = ctx.setup.restart.clone() else {
        return Ok(vec![Row {
            ours: "not measured".into(),
            baseline: "(needs a server the run started: the `scenarios` binary)".into(),
            ..Row::new("12", "recovery after a server restart")
        }]);
    };
    let rounds = if ctx.quick { 1 } else { 5 };
    let (a, _db_a) = ctx.replica("recovery", "a").await?;
    let (b, _db_b) = ctx.replica("recovery", "b").await?;
    let mut watch = b.watch("/live".parse()?, WatchOptions::default())?;
    a.put("/live", value(0)).await?;
    within("the first change at B", next_event(&mut watch)).await??;

    // The raw baseline's connections, made before the restarts too.
    raw_stream(ctx).await?;
    let subject = ctx.raw_subject("recovery");
    let reader = jetstream::new(ctx.connect().await?);
    let writer = jetstream::new(ctx.connect().await?);
    let payload = Bytes::from(vec![b'x'; ctx.payload_len]);

    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        restart().await?;
        let t0 = Instant::now();
        // Written at once (durable locally); published when A's connection is back.
        a.put("/live", value(round)).await?;
        within("B's watch after the restart", next_event(&mut watch)).await??;
        ours.push(t0.elapsed());

        restart().await?;
        let t0 = Instant::now();
        // The raw publisher retries until the server acknowledges, as an agent would.
        let seq = within("a raw publish after the restart", async {
            loop {
                if let Ok(ack) = writer.publish(subject.clone(), payload.clone()).await {
                    if let Ok(ack) = ack.await {
                        return ack.sequence;
                    }
                }
                // JetStream answers "no responders" until it is up again.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await?;
        // A restart loses every ephemeral consumer: the reader makes one from the
        // message's position, as the engine resubscribes from its own.
        within("the raw consumer after the restart", async {
            reader
                .get_stream(&ctx.raw_stream)
                .await?
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: subject.clone(),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: seq,
                    },
                    ..Default::default()
                })
                .await?
                .messages()
                .await?
                .next()
                .await
                .ok_or_else(|| anyhow!("the raw consumer ended"))??;
            anyhow::Ok(())
        })
        .await??;
        raw.push(t0.elapsed());
    }
    a.close().await?;
    b.close().await?;
    let (ours, raw) = (Lat::of(ours)?, Lat::of(raw)?);
    note!("this project, server ready → put at A → B's watch: {ours}");
    note!("raw JetStream, server ready → publish (retried until acked) → consumer: {raw}");
    let ratio = ours.p50.as_secs_f64() / raw.p50.as_secs_f64();
    Ok(vec![Row::new(
        "12",
        format!("recovery: server restart → next change at another replica, median of {rounds}"),
    )
    .figures(us(ours.p50), us(raw.p50), ratio)])
}
