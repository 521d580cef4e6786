//! The raw JetStream baselines: what the wire gives without the engine.

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::anyhow;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt;

use super::ctx::Ctx;
use super::table::{rate, Lat};

/// The raw baselines' stream, created on the main connection (a refusal is named at once).
pub(super) async fn raw_stream(ctx: &Ctx) -> anyhow::Result<stream::Stream> {
    let js = jetstream::new(ctx.main.clone());
    let create = js.get_or_create_stream(stream::Config {
        name: ctx.raw_stream.clone(),
        subjects: vec![format!("{}.>", ctx.raw_prefix)],
        storage: stream::StorageType::File,
        num_replicas: ctx.jetstream.replicas,
        ..Default::default()
    });
    ctx.created_on_main("the raw baseline stream", create).await
}

/// Raw publish on one connection → ordered consumer on another; one message at a time.
pub(super) async fn raw_propagation(ctx: &Ctx, name: &str, samples: usize) -> anyhow::Result<Lat> {
    let stream = raw_stream(ctx).await?;
    let subject = ctx.raw_subject(name);
    let reader = jetstream::new(ctx.connect().await?);
    let consumer = reader
        .get_stream(&ctx.raw_stream)
        .await?
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subject.clone(),
            deliver_policy: consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await?;
    drop(stream);
    let mut messages = consumer.messages().await?;
    let writer = jetstream::new(ctx.connect().await?);
    let payload = Bytes::from(vec![b'x'; ctx.payload_len]);
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples + 10 {
        let t0 = Instant::now();
        let ack = writer.publish(subject.clone(), payload.clone()).await?;
        let received = async {
            let m = messages
                .next()
                .await
                .ok_or_else(|| anyhow!("consumer ended"))??;
            anyhow::Ok((m, t0.elapsed()))
        };
        let (ack, received) = tokio::join!(ack, received);
        ack?;
        let (_, took) = received?;
        if i >= 10 {
            lat.push(took);
        }
    }
    Lat::of(lat)
}

/// Raw publishes of `n` messages with up to `window` acknowledgements outstanding.
pub(super) async fn raw_publish(
    ctx: &Ctx,
    name: &str,
    n: usize,
    window: usize,
) -> anyhow::Result<f64> {
    raw_stream(ctx).await?;
    let subject = ctx.raw_subject(name);
    let js = jetstream::new(ctx.connect().await?);
    let payload = Bytes::from(vec![b'x'; ctx.payload_len]);
    let start = Instant::now();
    let mut in_flight = VecDeque::with_capacity(window);
    for _ in 0..n {
        if in_flight.len() >= window {
            let ack: jetstream::context::PublishAckFuture =
                in_flight.pop_front().expect("a publish in flight");
            ack.await?;
        }
        in_flight.push_back(js.publish(subject.clone(), payload.clone()).await?);
    }
    for ack in in_flight {
        ack.await?;
    }
    Ok(rate(n, start.elapsed()))
}

// ---------------------------------------------------------------------------------------
// Shared measurements of this project.
