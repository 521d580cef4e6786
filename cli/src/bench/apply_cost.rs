//! Scenario 10: what applying one remote change costs as the history grows.

use std::time::Instant;

use anyhow::{anyhow, bail};
use blackboard::doc::{json, DocCore, Path};

use super::ctx::{build_history, Ctx};
use super::table::{us, Lat, Row};
use super::value;

pub(super) async fn s10_apply_cost(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let sizes = ctx.sizes.apply_histories;
    let m = ctx.sizes.apply_samples;
    let max = *sizes.iter().max().expect("sizes");
    let doc_id = ctx.doc_id("apply");
    let h = build_history(&ctx.space, &doc_id, max, 100)?;
    let mut rows = Vec::new();
    let mut first: Option<Lat> = None;
    for size in sizes {
        // A second agent's replica at `size` events makes `m` changes; a replica at the same
        // history applies them one at a time, as remote events.
        let prefix = || h.changes[..size].iter().map(Vec::as_slice);
        let (mut writer, errors) = DocCore::load(None, prefix())?;
        if !errors.is_empty() {
            bail!("history did not load: {:?}", errors[0]);
        }
        let path: Path = "/remote".parse()?;
        let mut remote = Vec::with_capacity(m);
        for i in 0..m {
            let ((), local) = writer.transact(0, None, |tx| json::put(tx, &path, &value(i)))?;
            remote.push(local.ok_or_else(|| anyhow!("a put changed nothing"))?.bytes);
        }
        let (mut reader, _) = DocCore::load(None, prefix())?;
        let mut lat = Vec::with_capacity(m);
        for bytes in &remote {
            let start = Instant::now();
            reader.apply_bytes(bytes)?;
            lat.push(start.elapsed());
        }
        let lat = Lat::of(lat)?;
        note!("DocCore::apply_bytes of one remote change at {size} events of history: {lat}");
        let base = *first.get_or_insert(lat);
        let ratio = lat.p50.as_secs_f64() / base.p50.as_secs_f64();
        let row = Row::new(
            "10",
            format!(
                "apply one remote change at {size} events (p99 {})",
                us(lat.p99)
            ),
        )
        .figures(us(lat.p50), us(base.p50), ratio);
        rows.push(if size == max {
            row.at_most(&format!("p50 ≤ 2× the {} figure", sizes[0]), ratio, 2.0)
        } else {
            row
        });
    }
    Ok(rows)
}
