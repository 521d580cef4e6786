//! Scenarios 2, 3 and 11: write throughput (pipelined, and each write awaiting its ack)
//! against raw publishes, and what the on-disk store costs.

use std::path::Path as FsPath;
use std::time::Instant;

use blackboard::replica::{Config, Durability, Replica};

use super::ctx::{open_in, within, Ctx};
use super::raw::raw_publish;
use super::table::{mib, per_s, rate, Row};
use super::{value, RAW_WINDOW};

pub(super) async fn pipelined_writes(
    replica: &Replica,
    n: usize,
    writers: usize,
) -> anyhow::Result<(f64, usize)> {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let r = replica.clone();
        let count = n / writers + usize::from(w < n % writers);
        tasks.push(tokio::spawn(async move {
            let path = format!("/w{w}");
            for i in 0..count {
                r.put(&path, value(i)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        within("the writers", t).await???;
    }
    within("the acknowledgements", replica.flush()).await??;
    let took = start.elapsed();
    let bytes = replica.read(|core| {
        core.automerge()
            .get_changes(&[])
            .iter()
            .map(|c| c.raw_bytes().len())
            .sum()
    });
    Ok((rate(n, took), bytes))
}

pub(super) fn dir_size(path: &FsPath) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// The configuration of scenario 2's target row: writes return once the log has them, and
/// queued writes share a change.
fn log_coalesced(c: &mut Config) {
    c.durability = Durability::Log;
    c.coalesce_writes = true;
}

/// Scenario 2's writes on a fresh replica of `document` with its configuration `tune`d.
async fn pipelined_with(
    ctx: &mut Ctx,
    document: &str,
    tune: impl FnOnce(&mut Config),
) -> anyhow::Result<f64> {
    let (n, writers) = (ctx.sizes.pipelined, ctx.sizes.writers);
    let (replica, _db) = ctx.replica_with(document, "w", tune).await?;
    let (rate, _) = pipelined_writes(&replica, n, writers).await?;
    note!(
        "{document}: {} events published for {n} puts",
        replica.stats().published
    );
    replica.close().await?;
    Ok(rate)
}

pub(super) async fn s2_throughput(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let (n, writers) = (ctx.sizes.pipelined, ctx.sizes.writers);
    let ours = pipelined_with(ctx, "throughput", |_| {}).await?;
    let log_durable =
        pipelined_with(ctx, "throughput-log", |c| c.durability = Durability::Log).await?;
    let grouped = pipelined_with(ctx, "throughput-log-grouped", log_coalesced).await?;
    let grouped_local =
        pipelined_with(ctx, "throughput-grouped", |c| c.coalesce_writes = true).await?;
    let raw = raw_publish(ctx, "throughput", n, RAW_WINDOW).await?;
    note!(
        "this project ({writers} writer tasks, {n} puts, until all acknowledged): {}",
        per_s(ours)
    );
    note!(
        "this project, Durability::Log (each put returns once the log acknowledged it): {}",
        per_s(log_durable)
    );
    note!(
        "this project, Durability::Log and coalesce_writes (queued puts share a change): {}",
        per_s(grouped)
    );
    note!(
        "this project, the default durability and coalesce_writes: {}",
        per_s(grouped_local)
    );
    note!(
        "raw pipelined publish ({RAW_WINDOW} in flight, {} B): {}",
        ctx.payload_len,
        per_s(raw)
    );
    ctx.throughput_js = Some(ours);
    let floor = automerge_alone(n, writers)?;
    note!(
        "automerge alone, the same {n} puts as transactions on one thread, each change \
         encoded: {}",
        per_s(floor)
    );
    let grouped_ratio = grouped / raw;
    let row =
        |what: String, ours: f64| Row::new("2", what).figures(per_s(ours), per_s(raw), ours / raw);
    Ok(vec![
        row(
            format!(
                "write throughput, one document, {writers} concurrent writers, \
                 Durability::Log and coalesce_writes (queued puts share a change)"
            ),
            grouped,
        )
        .at_least("≥ 0.5×", grouped_ratio, 0.5),
        row(
            "… Durability::Log, one change per put (returns once the log has it)".into(),
            log_durable,
        ),
        row(
            "… the default, Durability::Local (returns once fsynced locally)".into(),
            ours,
        ),
        row(
            "… the default durability and coalesce_writes".into(),
            grouped_local,
        ),
        // What the document layer alone allows one change per put: no write path making a
        // change per put can beat it.
        row(
            "… automerge alone making the same puts, a change each (no store, no log)".into(),
            floor,
        ),
    ])
}

/// The same puts as scenario 2 (key `w{i % writers}`, the same values) as plain automerge
/// transactions, each change encoded as a write must be to be published: the ceiling the
/// document layer sets on any write path.
fn automerge_alone(n: usize, writers: usize) -> anyhow::Result<f64> {
    use blackboard::automerge::{transaction::Transactable, Automerge, ROOT};
    let mut doc = Automerge::new();
    let start = Instant::now();
    let mut bytes = 0;
    for i in 0..n {
        let mut tx = doc.transaction();
        let serde_json::Value::String(v) = value(i) else {
            anyhow::bail!("the bench's values are strings");
        };
        tx.put(ROOT, format!("w{}", i % writers.max(1)), v)?;
        tx.commit();
        bytes += doc
            .get_last_local_change()
            .map_or(0, |c| c.raw_bytes().len());
    }
    let took = start.elapsed();
    anyhow::ensure!(bytes > 0, "automerge made no changes");
    Ok(rate(n, took))
}

/// Scenario 3's puts, one at a time, on a fresh replica of `document` with its
/// configuration `tune`d to `Durability::Log`: a put returns once acknowledged, so no flush
/// is needed. Returns the rate.
async fn log_acknowledged_puts(
    ctx: &mut Ctx,
    document: &str,
    tune: impl FnOnce(&mut Config),
) -> anyhow::Result<f64> {
    let n = ctx.sizes.awaited;
    let (replica, _db) = ctx.replica_with(document, "w", tune).await?;
    let start = Instant::now();
    for i in 0..n {
        within("an acknowledged put", replica.put("/live", value(i))).await??;
    }
    let took = start.elapsed();
    replica.close().await?;
    Ok(rate(n, took))
}

pub(super) async fn s3_awaited(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let n = ctx.sizes.awaited;
    let (replica, _db) = ctx.replica("awaited", "w").await?;
    let start = Instant::now();
    for i in 0..n {
        replica.put("/live", value(i)).await?;
        within("an acknowledgement", replica.flush()).await??;
    }
    let ours = rate(n, start.elapsed());
    replica.close().await?;
    let log_durable =
        log_acknowledged_puts(ctx, "awaited-log", |c| c.durability = Durability::Log).await?;
    // One writer has nothing to group: what the queue costs it.
    let grouped = log_acknowledged_puts(ctx, "awaited-log-grouped", log_coalesced).await?;
    let raw = raw_publish(ctx, "awaited", n, 1).await?;
    note!(
        "this project (put, then flush until acknowledged, {n} times): {}",
        per_s(ours)
    );
    note!(
        "this project, Durability::Log (put until acknowledged, {n} times): {}",
        per_s(log_durable)
    );
    note!("raw publish awaiting each ack: {}", per_s(raw));
    let (ratio, log_ratio) = (ours / raw, log_durable / raw);
    Ok(vec![
        Row::new("3", "writes each awaiting its ack (rate), Durability::Log")
            .figures(per_s(log_durable), per_s(raw), log_ratio)
            .at_least("≥ 0.8×", log_ratio, 0.8),
        Row::new("3", "… the default, Durability::Local: put, then flush").figures(
            per_s(ours),
            per_s(raw),
            ratio,
        ),
        Row::new(
            "3",
            "… Durability::Log and coalesce_writes (one writer: nothing to group)",
        )
        .figures(per_s(grouped), per_s(raw), grouped / raw),
    ])
}

/// What scenario 11 measures for one durability mode.
struct Persistence {
    /// Writes per second with the store on disk, and on tmpfs.
    disk_rate: f64,
    mem_rate: f64,
    /// Bytes of the store on disk after the writes, and of the changes written.
    on_disk: u64,
    change_bytes: usize,
}

/// Scenario 2's writes with the replica's sled on disk and on tmpfs (where fsync costs
/// nothing): the difference is what the on-disk store costs.
async fn persistence(ctx: &mut Ctx, durability: Durability) -> anyhow::Result<Persistence> {
    let (n, writers) = (ctx.sizes.pipelined, ctx.sizes.writers);
    let name = match durability {
        Durability::Local => "persist",
        Durability::Log => "persist-log",
    };
    let disk_dir = ctx.store_dir("disk");
    let mut config = ctx.config(&format!("{name}-disk"), "w");
    config.durability = durability;
    let (replica, db) = open_in(ctx.js_log().await?, &disk_dir, config.clone())?;
    let (disk_rate, change_bytes) = pipelined_writes(&replica, n, writers).await?;
    // Under `Durability::Log` the changes are stored as they come back: all of them.
    within("the writes to come back", replica.sync()).await??;
    replica.close().await?;
    db.flush()?;
    drop(db);
    let on_disk = dir_size(&disk_dir)?;
    let shm = FsPath::new("/dev/shm");
    let tmpfs = if shm.is_dir() {
        tempfile::tempdir_in(shm)?
    } else {
        tempfile::tempdir()?
    };
    config.document = ctx.doc_id(&format!("{name}-tmpfs"));
    let (replica, _db) = open_in(ctx.js_log().await?, tmpfs.path(), config)?;
    let (mem_rate, _) = pipelined_writes(&replica, n, writers).await?;
    replica.close().await?;
    note!(
        "{durability:?}, {writers} writers, {n} puts: sled on disk {} vs sled on tmpfs{} {}",
        per_s(disk_rate),
        if shm.is_dir() {
            ""
        } else {
            " (no /dev/shm: same disk!)"
        },
        per_s(mem_rate)
    );
    note!(
        "{durability:?}: store after {n} writes: {on_disk} B on disk for {change_bytes} B of \
         changes"
    );
    Ok(Persistence {
        disk_rate,
        mem_rate,
        on_disk,
        change_bytes,
    })
}

pub(super) async fn s11_persistence(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let n = ctx.sizes.pipelined;
    let local = persistence(ctx, Durability::Local).await?;
    let log = persistence(ctx, Durability::Log).await?;
    let lost = |p: &Persistence| 1.0 - p.disk_rate / p.mem_rate;
    let bytes_ratio = |p: &Persistence| p.on_disk as f64 / p.change_bytes.max(1) as f64;
    let rows = |p: &Persistence, mode: &str| {
        [
            Row::new(
                "11",
                format!(
                    "persistence{mode}: throughput lost to sled on disk ({:.0}%)",
                    lost(p) * 100.0
                ),
            )
            .figures(per_s(p.disk_rate), per_s(p.mem_rate), 1.0 - lost(p)),
            Row::new(
                "11",
                format!("persistence{mode}: bytes on disk after {n} writes"),
            )
            .figures(
                mib(p.on_disk as usize),
                format!("{} of changes", mib(p.change_bytes)),
                bytes_ratio(p),
            ),
        ]
    };
    let [lost_row, bytes_row] = rows(&local, "");
    let mut out = vec![
        lost_row.at_least("≤ 10% lost (≥ 0.9×)", 1.0 - lost(&local), 0.9),
        bytes_row.at_most("≤ 3×", bytes_ratio(&local), 3.0),
    ];
    // Reported beside the default: what the store costs a user who picks `Durability::Log`.
    out.extend(rows(&log, ", Durability::Log"));
    Ok(out)
}

// ---------------------------------------------------------------------------------------
