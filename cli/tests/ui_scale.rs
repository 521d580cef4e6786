//! `blackboard ui` on a large document, measured (issue 18): a 1k-event document as the
//! baseline and a 100k-event one, in one run, opened in a real browser (headless chromium
//! through chromedriver) against a real nats-server. It prints a table; BENCHMARKS.md
//! ("Web view on a 100k-event document") holds the numbers and this command:
//!
//! ```text
//! cargo test -p blackboard-cli --test ui_scale -- --ignored --nocapture
//! ```
//!
//! `BLACKBOARD_UI_SCALE=1000,100000` sets the sizes (events of the measured document).
//! A measurement, not a timed assertion: it fails only when the page does not show what it
//! should.

#![cfg(feature = "http")]

mod support;

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use blackboard::codec;
use blackboard::doc::{json, DocCore, Path};
use blackboard::log::{EventLog, JetStreamLog};
use blackboard::schemas::{AgentId, DocumentId, SpaceId};
use blackboard_cli::ui;
use blackboard_client::Options;
use blackboard_tests::NatsServer;
use fantoccini::Locator;
use serde_json::{json, Value};
use support::browser::Browser;
use support::site::Served;

/// The space measured.
const SPACE: &str = "scale";
/// How long the page may take to show something; a step that takes longer is reported as
/// such (and the steps after it are skipped), not as a failure.
const LOAD: Duration = Duration::from_secs(180);
/// How long the ui's replica may take to read the document's log.
const CATCH_UP: Duration = Duration::from_secs(1200);
/// Distinct keys the events write, so the document stays small while its history grows.
const KEYS: usize = 100;
/// How often each API answer is timed (the median is reported).
const SAMPLES: usize = 5;

/// A document of `n` events written in-process and published in batches: event `i` puts a
/// 100-character string at `/k{i % 100}`, in the name of one of four agents, with a message.
async fn publish_history(
    log: &JetStreamLog,
    space: &SpaceId,
    document: &DocumentId,
    n: usize,
) -> anyhow::Result<()> {
    let agents: Vec<AgentId> = (0..4)
        .map(|a| format!("agent-{a}").parse())
        .collect::<Result<_, _>>()?;
    let paths: Vec<Path> = (0..KEYS)
        .map(|k| format!("/k{k}").parse())
        .collect::<Result<_, _>>()?;
    let mut core = DocCore::new();
    let start_ms = 1_700_000_000_000_i64;
    let mut batch = Vec::with_capacity(1024);
    for i in 0..n {
        let time = start_ms + i64::try_from(i)?;
        let message = format!("step {i}");
        let value = json!(format!("{i:010}-{}", "x".repeat(89)));
        let ((), change) = core.transact(time, Some(message.clone()), |tx| {
            json::put(tx, &paths[i % KEYS], &value)
        })?;
        let change = change.context("a put changed nothing")?;
        let envelope = codec::encode_event(
            space,
            document,
            &agents[i % agents.len()],
            &change,
            time,
            Some(message),
        );
        batch.push((change.hash.to_string(), envelope.encode().into()));
        if batch.len() == 1024 || i + 1 == n {
            for published in log
                .publish_batch(space, document, std::mem::take(&mut batch))
                .await
            {
                published.context("publishing a history event")?;
            }
        }
    }
    Ok(())
}

impl Browser {
    /// A browser whose page loads and scripts may take up to `LOAD` (a 100k-event page).
    async fn start_patient() -> anyhow::Result<Browser> {
        let browser = Browser::start().await?;
        browser
            .client
            .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
                Some(LOAD),
                Some(LOAD),
                None,
            ))
            .await?;
        Ok(browser)
    }

    async fn wait_for(&self, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
        self.client
            .wait()
            .at_most(LOAD)
            .every(Duration::from_millis(20))
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("waiting for {css}"))
    }

    /// Fetches `path` from the page `SAMPLES` times: the median time in ms and the size in
    /// bytes of the answer.
    async fn fetch(&self, path: &str) -> anyhow::Result<(f64, usize)> {
        let script = r#"
            const [path, samples, done] = arguments;
            const token = new URLSearchParams(location.search).get("token");
            const url = path + (path.includes("?") ? "&" : "?") + "token=" + token;
            (async () => {
              const times = [];
              let size = 0;
              for (let i = 0; i < samples; i++) {
                const t = performance.now();
                const r = await fetch(url);
                const body = await r.text();
                times.push(performance.now() - t);
                if (!r.ok) { done({ error: r.status + " " + body }); return; }
                size = body.length;
              }
              times.sort((a, b) => a - b);
              done({ ms: times[Math.floor(times.length / 2)], size });
            })();
        "#;
        let answer = self
            .client
            .execute_async(script, vec![json!(path), json!(SAMPLES)])
            .await?;
        if let Some(e) = answer.get("error") {
            bail!("{path}: {e}");
        }
        let ms = answer["ms"].as_f64().context("a time")?;
        let size = answer["size"].as_u64().context("a size")?;
        Ok((ms, usize::try_from(size)?))
    }
}

/// The server process's resident memory now and at its peak, in MiB (Linux).
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One row of the table: what was measured and its value per size.
type Row = (String, Vec<String>);

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn kib(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// The page's steps on the document `name` of `n` events, opened at `url`.
async fn page(
    browser: &Browser,
    url: &str,
    n: usize,
    name: &str,
    put: &mut impl FnMut(&str, String),
) -> anyhow::Result<()> {
    // The first page load: the server has the document, the browser nothing.
    let t = Instant::now();
    browser.client.goto(url).await?;
    browser.wait_for("#tree [data-path]").await?;
    put("first open, tree shown", ms(t.elapsed()));
    browser.wait_for("#timeline li[data-seq]").await?;
    put("first open, first timeline page shown", ms(t.elapsed()));
    // The same page opened again.
    browser.client.goto("about:blank").await?;
    let t = Instant::now();
    browser.client.goto(url).await?;
    browser.wait_for("#tree [data-path]").await?;
    browser.wait_for("#timeline li[data-seq]").await?;
    put(
        "open again, tree and first timeline page shown",
        ms(t.elapsed()),
    );

    // Paging the timeline in the page.
    let t = Instant::now();
    browser
        .wait_for("#older:not([hidden])")
        .await?
        .click()
        .await?;
    let last = browser.wait_for("#timeline li:nth-child(100)").await?;
    put("'Older events': second page shown", ms(t.elapsed()));
    // Choosing the oldest event shown.
    let seq = last.attr("data-seq").await?.context("an event's seq")?;
    let t = Instant::now();
    last.click().await?;
    browser
        .wait_for(&format!(r#"#at-json[data-seq="{seq}"]"#))
        .await?;
    put(
        "choose an event of page 2: document there and diff shown",
        ms(t.elapsed()),
    );
    // Blame from the tree.
    let t = Instant::now();
    browser
        .wait_for(r#"#tree [data-path="/k7"] .key"#)
        .await?
        .click()
        .await?;
    browser
        .wait_for(r#"#blame .blamed[data-path="/k7"]"#)
        .await?;
    put("blame of /k7 from the tree shown", ms(t.elapsed()));

    // The API answers the page reads: median time and size.
    let doc = format!("/api/doc/{name}");
    let timeline: Value = browser
        .client
        .execute_async(
            r#"const [u, done] = arguments;
                   const token = new URLSearchParams(location.search).get("token");
                   fetch(u + "?limit=50&token=" + token).then(r => r.json()).then(done);"#,
            vec![json!(format!("{doc}/timeline"))],
        )
        .await?;
    let newest = timeline["events"][0]["seq"]
        .as_u64()
        .context("a newest event")?;
    let first_seq = newest.saturating_sub(u64::try_from(n)?) + 1;
    let middle = first_seq + u64::try_from(n / 2)?;
    for (label, path) in [
        ("GET /api/documents".to_owned(), "/api/documents".to_owned()),
        (format!("GET {}", "/api/doc/D (tree)"), doc.clone()),
        (
            "GET timeline, newest page (50)".to_owned(),
            format!("{doc}/timeline?limit=50"),
        ),
        (
            "GET timeline, page in the middle".to_owned(),
            format!("{doc}/timeline?limit=50&before={middle}"),
        ),
        (
            "GET timeline, oldest page".to_owned(),
            format!("{doc}/timeline?limit=50&before={}", first_seq + 50),
        ),
        (
            "GET at, the newest event".to_owned(),
            format!("{doc}/at/{newest}"),
        ),
        (
            "GET at, an event in the middle".to_owned(),
            format!("{doc}/at/{middle}"),
        ),
        (
            "GET at, the first event".to_owned(),
            format!("{doc}/at/{first_seq}"),
        ),
        ("GET blame /k7".to_owned(), format!("{doc}/blame?path=/k7")),
    ] {
        let (time, size) = browser.fetch(&path).await?;
        put(&label, format!("{time:.0} ms, {}", kib(size)));
    }
    Ok(())
}

/// Measures the page on a document of `n` events, in column `col` of `rows`.
async fn measure(
    server: &NatsServer,
    log: &JetStreamLog,
    n: usize,
    col: usize,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let mut put = |name: &str, value: String| {
        let row = match rows.iter_mut().find(|(r, _)| r == name) {
            Some(row) => row,
            None => {
                rows.push((name.to_owned(), Vec::new()));
                rows.last_mut().expect("just pushed")
            }
        };
        row.1.resize(col + 1, String::new());
        row.1[col] = value;
    };
    let space: SpaceId = SPACE.parse()?;
    let name = format!("doc-{n}");
    let document: DocumentId = name.parse()?;
    let t = Instant::now();
    publish_history(log, &space, &document, n).await?;
    put("history built and published (not the ui)", ms(t.elapsed()));

    let dir = tempfile::tempdir()?;
    let viewer = Options::new("ui")?
        .store(dir.path())
        .connect(&server.url())
        .await?;
    let site = ui::Site::start(
        viewer.clone(),
        SPACE.parse()?,
        ui::new_token(),
        Duration::from_secs(600),
    )
    .await?;
    let served = Served::start(site.clone()).await?;
    let addr = served.addr;
    // The ui's replica reads the document's log first (the engine's catch-up, not the
    // page's cost); the page is measured on a server that has the document.
    let t = Instant::now();
    let doc = viewer.doc(SPACE, &name)?;
    tokio::time::timeout(CATCH_UP, doc.sync())
        .await
        .context("the ui's replica did not catch up")??;
    put(
        "the ui's replica reads the log (catch-up, once)",
        ms(t.elapsed()),
    );
    let (rss, _) = memory();
    put(
        "test process RSS after the catch-up (server in it)",
        format!("{rss:.0} MiB"),
    );

    let url = format!("http://{addr}/?token={}#doc={name}", site.token());
    let browser = Browser::start_patient().await?;
    if let Err(e) = page(&browser, &url, n, &name, &mut put).await {
        eprintln!("{n} events: {e:#}");
        put("stopped at", format!("{e}"));
    }

    let (rss, peak) = memory();
    put(
        "test process memory (server in it): RSS / peak",
        format!("{rss:.0} / {peak:.0} MiB"),
    );

    browser.client.clone().close().await?;
    drop(browser);
    served.stop(Duration::from_secs(30)).await?;
    site.close();
    viewer.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (minutes): cargo test -p blackboard-cli --test ui_scale -- --ignored --nocapture"]
async fn the_web_view_on_a_100k_event_document_measured_against_1k() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::var("BLACKBOARD_UI_SCALE")
        .unwrap_or_else(|_| "1000,100000".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .context("BLACKBOARD_UI_SCALE: sizes separated by commas")?;
    let server = NatsServer::start().await?;
    let log = JetStreamLog::new(server.connect().await?, Default::default());
    let mut rows: Vec<Row> = Vec::new();
    for (col, n) in sizes.iter().enumerate() {
        eprintln!("measuring a {n}-event document");
        measure(&server, &log, *n, col, &mut rows).await?;
    }
    let head: Vec<String> = sizes.iter().map(|n| format!("{n} events")).collect();
    println!("\n| measured | {} |", head.join(" | "));
    println!("|---|{}", "---|".repeat(sizes.len()));
    for (name, values) in &rows {
        println!("| {name} | {} |", values.join(" | "));
    }
    Ok(())
}
