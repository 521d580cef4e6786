//! Scenario 9: the embedded log against JetStream.

use std::sync::Arc;

use blackboard::log::{EmbeddedLog, EventLog};
use blackboard::replica::Durability;

use super::ctx::Ctx;
use super::propagation::propagation;
use super::table::{per_s, us, Row};
use super::throughput::pipelined_writes;

pub(super) async fn s9_embedded(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let history = ctx.sizes.history;
    let dir = ctx.store_dir("embedded");
    let db = blackboard::store::open_db(&dir)?;
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(db.clone())?);
    // Two agents of one process on one embedded log; each replica gets its own sled
    // database for its state, as on JetStream.
    let dirs = (ctx.store_dir("s9a"), ctx.store_dir("s9b"));
    let lat = propagation(
        ctx,
        (log.clone(), log.clone()),
        dirs,
        ("propagation", Durability::Local),
        history,
    )
    .await?;
    let wdir = ctx.store_dir("s9w");
    let (replica, _rdb) = ctx
        .replica_in(log.clone(), &wdir, "throughput", "w")
        .await?;
    let (n, writers) = (ctx.sizes.pipelined, ctx.sizes.writers);
    let (tput, _) = pipelined_writes(&replica, n, writers).await?;
    replica.close().await?;
    note!("embedded log, propagation (history {history}): {lat}");
    note!("embedded log, {writers} writers: {}", per_s(tput));
    let mut rows = Vec::new();
    match ctx.propagation_js {
        Some(js) => {
            let ratio = lat.p50.as_secs_f64() / js.p50.as_secs_f64();
            rows.push(
                Row::new(
                    "9",
                    format!(
                        "embedded log: propagation p50 (p99 {}) vs JetStream",
                        us(lat.p99)
                    ),
                )
                .figures(us(lat.p50), us(js.p50), ratio),
            );
        }
        None => rows.push(Row {
            ours: us(lat.p50),
            baseline: "(scenario 1 not run)".into(),
            ..Row::new("9", "embedded log: propagation p50")
        }),
    }
    match ctx.throughput_js {
        Some(js) => {
            let ratio = tput / js;
            rows.push(
                Row::new("9", "embedded log: write throughput vs JetStream").figures(
                    per_s(tput),
                    per_s(js),
                    ratio,
                ),
            );
        }
        None => rows.push(Row {
            ours: per_s(tput),
            baseline: "(scenario 2 not run)".into(),
            ..Row::new("9", "embedded log: write throughput")
        }),
    }
    Ok(rows)
}
