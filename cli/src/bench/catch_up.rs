//! Scenarios 4, 5 and 8 on one large document: catch-up of a new replica against
//! automerge, cold start from a snapshot against `Automerge::load`, and heap.

use std::time::Instant;

use anyhow::{anyhow, bail};
use async_nats::jetstream::{self, consumer};
use blackboard::automerge::{self, ReadDoc};
use blackboard::schemas::subject;
use futures::StreamExt;

use super::ctx::{build_history, publish_events, within, Ctx};
use super::table::{mib, per_s, rate, us, Row};

pub(super) async fn s4_5_8_catch_up(ctx: &mut Ctx, which: &[u8]) -> anyhow::Result<Vec<Row>> {
    let (n, tail) = (ctx.sizes.catch_up, ctx.sizes.tail);
    let document = "catchup";
    let doc_id = ctx.doc_id(document);
    let h = build_history(&ctx.space, &doc_id, n + tail, ctx.sizes.keys)?;
    let last = publish_events(ctx.log.as_ref(), &ctx.space, &doc_id, &h.events[..n]).await?;
    let mut rows = Vec::new();

    // Baseline: automerge applying the same changes in-process, one at a time (decode
    // included), as a replica does; its retained heap is scenario 8's baseline.
    // Without a heap counter (the shipped binary) the heap figures read 0 and scenario 8
    // says it was not measured.
    let heap = ctx.setup.heap.unwrap_or(|| 0);
    let heap0 = heap();
    let start = Instant::now();
    let mut am = automerge::Automerge::new();
    for bytes in &h.changes[..n] {
        let change = automerge::Change::from_bytes(bytes.clone())?;
        am.apply_changes([change])?;
    }
    let am_rate = rate(n, start.elapsed());
    let am_heap = heap().saturating_sub(heap0);
    let am_json = blackboard::doc::json::object_to_json(&am, &automerge::ROOT);
    drop(am);

    // The floor batching would give: automerge applying the same changes 256 at a time.
    // A follower that applied runs of changes in one call could go no faster than this.
    let start = Instant::now();
    let mut am = automerge::Automerge::new();
    for chunk in h.changes[..n].chunks(256) {
        let changes = chunk
            .iter()
            .map(|b| automerge::Change::from_bytes(b.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        am.apply_changes(changes)?;
    }
    let am_batched_rate = rate(n, start.elapsed());
    drop(am);

    // Baseline: a raw ordered consumer reading the document's events.
    let reader = jetstream::new(ctx.connect().await?);
    let start = Instant::now();
    let consumer = reader
        .get_stream(subject::stream_name(&ctx.space))
        .await?
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subject::changes(&ctx.space, &doc_id),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut read = 0;
    within("the raw consumer", async {
        while read < n {
            messages
                .next()
                .await
                .ok_or_else(|| anyhow!("consumer ended"))??;
            read += 1;
        }
        anyhow::Ok(())
    })
    .await??;
    let raw_rate = rate(n, start.elapsed());
    drop(messages);

    // This project: a new replica (own connection, empty store) catching up.
    let dir = ctx.store_dir("catchup");
    let heap1 = heap();
    let start = Instant::now();
    let log = ctx.js_log().await?;
    let (replica, db) = ctx.replica_in(log, &dir, document, "reader").await?;
    within("the catch-up", replica.wait_for_position(last)).await??;
    let ours_rate = rate(n, start.elapsed());
    let replica_heap = heap().saturating_sub(heap1);
    if replica.to_json() != am_json {
        bail!("the replica's document differs from automerge's");
    }
    note!(
        "this project: a new replica applies {n} events: {}",
        per_s(ours_rate)
    );
    note!(
        "automerge 0.6 applying the same changes one at a time: {}",
        per_s(am_rate)
    );
    note!(
        "automerge 0.6 applying the same changes 256 per call: {}",
        per_s(am_batched_rate)
    );
    note!(
        "raw ordered consumer reading the events: {}",
        per_s(raw_rate)
    );
    note!(
        "heap: replica (engine, sled, connection) {} vs automerge document {}",
        mib(replica_heap),
        mib(am_heap)
    );
    if which.contains(&4) {
        let ratio = ours_rate / am_rate;
        rows.push(
            Row::new(
                "4",
                format!(
                    "catch-up: a new replica applies {n} events (raw read {})",
                    per_s(raw_rate)
                ),
            )
            .figures(per_s(ours_rate), per_s(am_rate), ratio)
            .at_least("≥ 0.7× automerge", ratio, 0.7),
        );
        rows.push(
            Row::new(
                "4",
                "… automerge applying the same changes 256 per call (what batching could give)",
            )
            .figures(
                per_s(am_batched_rate),
                per_s(am_rate),
                am_batched_rate / am_rate,
            ),
        );
    }
    if which.contains(&8) && ctx.setup.heap.is_none() {
        rows.push(Row {
            ours: "not measured".into(),
            baseline: "(needs a counting allocator: run the workspace's `scenarios` binary)".into(),
            ..Row::new("8", "memory: replica heap")
        });
    } else if which.contains(&8) {
        let ratio = replica_heap as f64 / am_heap.max(1) as f64;
        rows.push(
            Row::new(
                "8",
                format!("memory: replica heap after {n} events (counting allocator)"),
            )
            .figures(mib(replica_heap), mib(am_heap), ratio)
            .at_most("≤ 1.5×", ratio, 1.5),
        );
    }
    if !which.contains(&5) {
        replica.close().await?;
        return Ok(rows);
    }

    // Scenario 5: snapshot at `last`, a tail of events after it, then a cold start.
    let info = within("the snapshot", replica.snapshot()).await??;
    replica.close().await?;
    drop(db);
    let last2 = publish_events(ctx.log.as_ref(), &ctx.space, &doc_id, &h.events[n..]).await?;
    let mut am = automerge::Automerge::new();
    am.apply_changes(
        h.changes
            .iter()
            .map(|b| automerge::Change::from_bytes(b.clone()))
            .collect::<Result<Vec<_>, _>>()?,
    )?;
    let saved = am.save();
    drop(am);
    let mut loads = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let doc = automerge::Automerge::load(&saved)?;
        loads.push(start.elapsed());
        if doc.length(automerge::ROOT) == 0 {
            bail!("loaded an empty document");
        }
    }
    loads.sort();
    let load = loads[1];
    let dir = ctx.store_dir("cold");
    let start = Instant::now();
    let log = ctx.js_log().await?;
    let (cold, _db) = ctx.replica_in(log, &dir, document, "cold").await?;
    within("the cold start", cold.wait_for_position(last2)).await??;
    let took = start.elapsed();
    let loaded = cold.stats().snapshot_loaded;
    cold.close().await?;
    if loaded != Some(info.seq) {
        bail!(
            "the cold replica did not start from the snapshot at {} ({loaded:?})",
            info.seq
        );
    }
    note!(
        "cold start from the snapshot at {} ({} B) + {tail} events: {}; automerge load of the saved document ({} B, median of 3): {}",
        info.seq, info.size, us(took), saved.len(), us(load)
    );
    let ratio = took.as_secs_f64() / load.as_secs_f64();
    rows.push(
        Row::new(
            "5",
            format!("cold start, {n} events: snapshot + {tail}-event tail"),
        )
        .figures(us(took), us(load), ratio)
        .at_most("≤ 1.5×", ratio, 1.5),
    );
    Ok(rows)
}
