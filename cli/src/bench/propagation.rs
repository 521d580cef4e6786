//! Scenarios 1 and 7: how long a change takes from one agent's put to another's watch,
//! against a raw JetStream publish → consumer and a NATS KV put → watch.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use async_nats::jetstream::{self, stream};
use blackboard::log::EventLog;
use blackboard::replica::Durability;
use blackboard::watch::Options as WatchOptions;
use bytes::Bytes;
use futures::StreamExt;

use super::ctx::{build_history, next_event, open_in, publish_events, within, Ctx};
use super::raw::raw_propagation;
use super::stages;
use super::table::{mib, us, Lat, Row};
use super::throughput::dir_size;
use super::value;

/// Agent A writes `/live` (its writes waiting for `durability`), agent B (its own log
/// handle) receives the watch event; the document first gets `history` events. Returns the
/// latencies.
pub(super) async fn propagation(
    ctx: &mut Ctx,
    logs: (Arc<dyn EventLog>, Arc<dyn EventLog>),
    dirs: (PathBuf, PathBuf),
    (document, durability): (&str, Durability),
    history: usize,
) -> anyhow::Result<Lat> {
    let doc_id = ctx.doc_id(document);
    let mut last = 0;
    if history > 0 {
        let h = build_history(&ctx.space, &doc_id, history, ctx.sizes.keys)?;
        last = publish_events(logs.0.as_ref(), &ctx.space, &doc_id, &h.events).await?;
    }
    let mut config = ctx.config(document, "a");
    config.durability = durability;
    let (a, _db_a) = open_in(logs.0, &dirs.0, config)?;
    let (b, _db_b) = ctx.replica_in(logs.1, &dirs.1, document, "b").await?;
    within("the history", async {
        a.wait_for_position(last).await?;
        b.wait_for_position(last).await
    })
    .await??;
    let mut watch = b.watch("/live".parse()?, WatchOptions::default())?;
    let samples = ctx.sizes.samples;
    let mut lat = Vec::with_capacity(samples);
    let mut puts = Vec::with_capacity(samples);
    // With `--stages`: when each sample began, for the table of stages.
    let mut starts = Vec::new();
    for i in 0..samples + 10 {
        let t0 = Instant::now();
        if i == 10 {
            stages::take();
        }
        if i >= 10 && stages::recording() {
            starts.push(t0);
        }
        let put = async {
            a.put("/live", value(i)).await?;
            stages::mark("bench: put returned");
            anyhow::Ok(t0.elapsed())
        };
        let received = async {
            next_event(&mut watch).await?;
            stages::mark("bench: B's watch has the event");
            anyhow::Ok(t0.elapsed())
        };
        let (put, received) =
            within("a watch event", async { tokio::join!(put, received) }).await?;
        let (put, received) = (put?, received?);
        if i >= 10 {
            lat.push(received);
            puts.push(put);
        }
    }
    if stages::recording() {
        eprint!("{}", stages::table(&starts, stages::take()));
    }
    let returned = match durability {
        Durability::Local => "the change durable in A's store",
        Durability::Log => "the change acknowledged by the log",
    };
    note!("  (put returned, {returned}: {})", Lat::of(puts)?);
    a.flush().await?;
    a.close().await?;
    b.close().await?;
    // Both stores hold the same history; B also watched. Said so a store that grows out of
    // proportion shows in every run.
    let (size_a, size_b) = (dir_size(&dirs.0)?, dir_size(&dirs.1)?);
    note!(
        "  (stores on disk after {history} events and the samples: A {}, B {})",
        mib(size_a as usize),
        mib(size_b as usize)
    );
    Lat::of(lat)
}

/// `writers` tasks share `n` puts on one replica; returns changes per second until every
pub(super) async fn s1_propagation(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let history = ctx.sizes.history;
    let logs = (ctx.js_log().await?, ctx.js_log().await?);
    let dirs = (ctx.store_dir("s1a"), ctx.store_dir("s1b"));
    let ours = propagation(ctx, logs, dirs, ("propagation", Durability::Local), history).await?;
    let logs = (ctx.js_log().await?, ctx.js_log().await?);
    let dirs = (ctx.store_dir("s1a-log"), ctx.store_dir("s1b-log"));
    let log_durable = ("propagation-log", Durability::Log);
    let ours_log = propagation(ctx, logs, dirs, log_durable, history).await?;
    let raw = raw_propagation(ctx, "propagation", ctx.sizes.samples).await?;
    note!("this project (history {history}): {ours}");
    note!("this project, A's writes under Durability::Log: {ours_log}");
    note!(
        "raw JetStream publish → ordered consumer ({} B): {raw}",
        ctx.payload_len
    );
    ctx.propagation_js = Some(ours);
    let r50 = ours.p50.as_secs_f64() / raw.p50.as_secs_f64();
    let r99 = ours.p99.as_secs_f64() / raw.p99.as_secs_f64();
    Ok(vec![
        Row::new(
            "1",
            format!("propagation p50, A put → B watch, {history} events of history"),
        )
        .figures(us(ours.p50), us(raw.p50), r50)
        // The targets of the performance issue's second pass (the first asked 1.5× and 2×).
        .at_most("≤ 2×", r50, 2.0),
        Row::new("1", "propagation p99")
            .figures(us(ours.p99), us(raw.p99), r99)
            .at_most("≤ 3×", r99, 3.0),
        Row::new(
            "1",
            format!(
                "… A's writes under Durability::Log, p50 (p99 {})",
                us(ours_log.p99)
            ),
        )
        .figures(
            us(ours_log.p50),
            us(raw.p50),
            ours_log.p50.as_secs_f64() / raw.p50.as_secs_f64(),
        ),
    ])
}
pub(super) async fn s7_kv(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let samples = ctx.sizes.samples;
    let bucket = format!("{}_kv", ctx.raw_stream.to_lowercase());
    let main = jetstream::new(ctx.main.clone());
    let create = main.create_key_value(jetstream::kv::Config {
        bucket: bucket.clone(),
        history: 1,
        storage: stream::StorageType::File,
        num_replicas: ctx.jetstream.replicas,
        ..Default::default()
    });
    ctx.created_on_main("the NATS KV baseline bucket", create)
        .await?;
    let kv = jetstream::new(ctx.connect().await?)
        .get_key_value(&bucket)
        .await?;
    let watcher = jetstream::new(ctx.connect().await?)
        .get_key_value(&bucket)
        .await?;
    let mut watch = watcher.watch("k").await?;
    let payload = Bytes::from(vec![b'x'; ctx.payload_len]);
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples + 10 {
        let t0 = Instant::now();
        let put = kv.put("k", payload.clone());
        let received = async {
            watch
                .next()
                .await
                .ok_or_else(|| anyhow!("KV watch ended"))??;
            anyhow::Ok(t0.elapsed())
        };
        let (put, received) =
            within("a KV watch event", async { tokio::join!(put, received) }).await?;
        put?;
        let took = received?;
        if i >= 10 {
            lat.push(took);
        }
    }
    let kv_lat = Lat::of(lat)?;
    let logs = (ctx.js_log().await?, ctx.js_log().await?);
    let dirs = (ctx.store_dir("s7a"), ctx.store_dir("s7b"));
    let ours = propagation(ctx, logs, dirs, ("kvlike", Durability::Local), 0).await?;
    note!(
        "NATS KV put → KV watch, one key ({} B): {kv_lat}",
        ctx.payload_len
    );
    note!("this project, put /live → watch /live, fresh document: {ours}");
    let r50 = ours.p50.as_secs_f64() / kv_lat.p50.as_secs_f64();
    let r99 = ours.p99.as_secs_f64() / kv_lat.p99.as_secs_f64();
    Ok(vec![
        Row::new(
            "7",
            "change → watch on one field vs NATS KV put → watch, p50",
        )
        .figures(us(ours.p50), us(kv_lat.p50), r50),
        Row::new("7", "… p99").figures(us(ours.p99), us(kv_lat.p99), r99),
    ])
}
