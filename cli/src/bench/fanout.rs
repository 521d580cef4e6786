//! Scenario 6: fan-out to many watchers: replicas in one process, watches on one replica,
//! and watchers as processes of their own (this program started with `--watch-child`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use blackboard::log::{EventLog, JetStreamConfig};
use blackboard::replica::{Config, Replica, SnapshotPolicy};
use blackboard::watch::Options as WatchOptions;
use futures::StreamExt;

use super::ctx::{js_log, nats_options, within, Ctx};
use super::table::{us, Lat, Row};
use super::{value, Args};

pub(super) async fn s6_fanout(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let samples = ctx.sizes.fanout_samples;
    let mut rows = Vec::new();
    let mut one: Option<Lat> = None;
    for watchers in [1usize, 10, 100] {
        let document = format!("fanout{watchers}");
        let (writer, _db) = ctx.replica(&document, "writer").await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let mut held = Vec::new();
        let mut tasks = Vec::new();
        for w in 0..watchers {
            let (r, db) = ctx.replica(&document, &format!("watcher{w}")).await?;
            let mut watch = r.watch("/live".parse()?, WatchOptions::default())?;
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(Ok(_)) = watch.next().await {
                    if tx.send(Instant::now()).is_err() {
                        break;
                    }
                }
            }));
            held.push((r, db));
        }
        let mut lat = Vec::with_capacity(samples * watchers);
        for i in 0..samples + 10 {
            let t0 = Instant::now();
            writer.put("/live", value(i)).await?;
            for _ in 0..watchers {
                let at = within("the watchers", rx.recv())
                    .await?
                    .ok_or_else(|| anyhow!("a watcher stopped"))?;
                if i >= 10 {
                    lat.push(at - t0);
                }
            }
        }
        for t in &tasks {
            t.abort();
        }
        writer.close().await?;
        for (r, _db) in held {
            r.close().await?;
        }
        let lat = Lat::of(lat)?;
        note!("{watchers} watchers, each its own connection and replica: {lat}");
        let target = (watchers == 100).then_some(("≤ 5× the 1-watcher p99", 5.0));
        rows.push(against_first(
            &mut one,
            lat,
            format!("fan-out p99, {watchers} watcher(s) (p50 {})", us(lat.p50)),
            target,
        ));
    }
    rows.extend(s6_watches_on_one_replica(ctx).await?);
    rows.extend(s6_watcher_processes(ctx).await?);
    Ok(rows)
}

/// 100 watches on one replica against one watch: what a watch costs once the replica has
/// the change (p99 of the time until every watch has the event).
pub(super) async fn s6_watches_on_one_replica(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let samples = ctx.sizes.watch_samples;
    let mut rows = Vec::new();
    let mut one: Option<Lat> = None;
    for watches in [1usize, 100] {
        let document = format!("watches{watches}");
        let (writer, _wdb) = ctx.replica(&document, "writer").await?;
        let (reader, _rdb) = ctx.replica(&document, "reader").await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let mut tasks = Vec::new();
        for _ in 0..watches {
            let mut watch = reader.watch("/live".parse()?, WatchOptions::default())?;
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(Ok(_)) = watch.next().await {
                    if tx.send(Instant::now()).is_err() {
                        break;
                    }
                }
            }));
        }
        let mut lat = Vec::with_capacity(samples);
        for i in 0..samples + 10 {
            let t0 = Instant::now();
            writer.put("/live", value(i)).await?;
            let mut last = t0;
            for _ in 0..watches {
                let at = within("the watches", rx.recv())
                    .await?
                    .ok_or_else(|| anyhow!("a watch stopped"))?;
                last = last.max(at);
            }
            if i >= 10 {
                lat.push(last - t0);
            }
        }
        for t in &tasks {
            t.abort();
        }
        writer.close().await?;
        reader.close().await?;
        let lat = Lat::of(lat)?;
        note!("{watches} watch(es) on one replica, until the last has the event: {lat}");
        let target = (watches == 100).then_some(("≤ 1.2× one watch", 1.2));
        rows.push(against_first(
            &mut one,
            lat,
            format!(
                "{watches} watch(es) on one replica, p99 until the last has it (p50 {})",
                us(lat.p50)
            ),
            target,
        ));
    }
    Ok(rows)
}

/// Fan-out with each watcher in a process of its own (this binary, `--watch-child`), as
/// agents are deployed: each its own connection, store and replica. A watcher prints the
/// wall-clock time at which its watch yielded; the latency is that minus the time the
/// writer started its put (one machine, one clock).
pub(super) async fn s6_watcher_processes(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    use tokio::io::AsyncBufReadExt as _;

    let samples = ctx.sizes.fanout_samples;
    let counts: &[usize] = if ctx.quick { &[1, 3] } else { &[1, 10, 100] };
    let exe = std::env::current_exe().context("the bench's own path")?;
    let mut rows = Vec::new();
    let mut one: Option<Lat> = None;
    for &watchers in counts {
        let document = format!("procs{watchers}");
        let (writer, _db) = ctx.replica(&document, "writer").await?;
        // The document exists before the watchers start, so each can catch up first.
        writer.put("/live", value(0)).await?;
        writer.flush().await?;
        let mut children = Vec::with_capacity(watchers);
        for w in 0..watchers {
            let store = ctx.store_dir(&format!("proc{w}"));
            let mut child = tokio::process::Command::new(&exe)
                .args(&ctx.setup.child_prefix)
                .arg("--watch-child")
                .args([
                    ctx.url.as_str(),
                    ctx.space.as_str(),
                    document.as_str(),
                    &store.display().to_string(),
                    &format!("watcher{w}"),
                ])
                .args(&ctx.child_flags)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("starting a watcher process")?;
            let out = child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("the watcher's stdout"))?;
            children.push((child, tokio::io::BufReader::new(out).lines()));
        }
        for (_, lines) in &mut children {
            let line = within("a watcher process to start", lines.next_line()).await??;
            if line.as_deref() != Some("ready") {
                bail!("a watcher process said {line:?} instead of ready");
            }
        }
        let mut lat = Vec::with_capacity(samples * watchers);
        for i in 1..=samples + 10 {
            let t0 = wall_ns()?;
            writer.put("/live", value(i)).await?;
            for (_, lines) in &mut children {
                let line = within("a watcher process", lines.next_line())
                    .await??
                    .ok_or_else(|| anyhow!("a watcher process stopped"))?;
                let at: u128 = line
                    .parse()
                    .with_context(|| format!("a watcher's time {line:?}"))?;
                if i > 10 {
                    lat.push(Duration::from_nanos(at.saturating_sub(t0) as u64));
                }
            }
        }
        for (mut child, _) in children {
            let _ = child.kill().await;
        }
        writer.close().await?;
        let lat = Lat::of(lat)?;
        note!("{watchers} watcher process(es): {lat}");
        let target = (watchers == 100).then_some(("≤ 5× the 1-process p99", 5.0));
        rows.push(against_first(
            &mut one,
            lat,
            format!(
                "fan-out p99, {watchers} watcher process(es) (p50 {})",
                us(lat.p50)
            ),
            target,
        ));
    }
    Ok(rows)
}

/// Nanoseconds since the Unix epoch, the clock watcher processes report in.
pub(super) fn wall_ns() -> anyhow::Result<u128> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos())
}

/// One watcher process of scenario 6: opens a replica of the document, catches up, watches
/// `/live`, says `ready`, then prints the wall-clock time of every event its watch yields.
///
/// `args` are the run's flags (how to connect); `child` the five values of `--watch-child`.
pub async fn watch_child(args: &Args, child: Vec<String>) -> anyhow::Result<()> {
    use std::io::Write as _;

    let [url, space, document, store, name] = <[String; 5]>::try_from(child)
        .map_err(|a| anyhow!("--watch-child takes 5 values, got {}", a.len()))?;
    let log: Arc<dyn EventLog> = Arc::new(
        js_log(
            &nats_options(args)?,
            &url,
            &JetStreamConfig {
                replicas: usize::from(args.replicas),
                ..JetStreamConfig::default()
            },
        )
        .await?,
    );
    let db = blackboard::store::open_db(store.as_ref())
        .with_context(|| format!("open the store at {store}"))?;
    let mut config = Config::new(space.parse()?, document.parse()?, name.parse()?);
    config.snapshots = SnapshotPolicy::manual();
    let replica = Replica::open(log, &db, config)?;
    replica.sync().await?;
    let mut watch = replica.watch("/live".parse()?, WatchOptions::default())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    while let Some(Ok(_)) = watch.next().await {
        writeln!(out, "{}", wall_ns()?)?;
        out.flush()?;
    }
    Ok(())
}

/// Scenario 6's row for one count: its p99 against the first count's (kept in `first`), with
/// `target` (its text, and the bound on the ratio) checked when given.
fn against_first(
    first: &mut Option<Lat>,
    lat: Lat,
    scenario: String,
    target: Option<(&str, f64)>,
) -> Row {
    let base = *first.get_or_insert(lat);
    let ratio = lat.p99.as_secs_f64() / base.p99.as_secs_f64();
    let row = Row::new("6", scenario).figures(us(lat.p99), us(base.p99), ratio);
    match target {
        Some((text, bound)) => row.at_most(text, ratio, bound),
        None => row,
    }
}
