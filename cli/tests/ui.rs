//! `blackboard ui` in a real browser: Debian's chromium, driven through chromedriver
//! (WebDriver) by fantoccini, against a real nats-server. `scripts/test` installs chromium
//! and chromium-driver when chromedriver is missing.
//!
//! With `BLACKBOARD_UI_SCREENSHOTS=docs/ui` (a directory, relative to the workspace root)
//! the tests save screenshots of the page there; the README shows them.

#![cfg(feature = "http")]

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use blackboard_cli::ui;
use blackboard_client::{At, Board, HistoryFilter, Options};
use blackboard_tests::NatsServer;
use fantoccini::Locator;
use serde_json::json;
use support::browser::Browser;
use support::site::Served;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The space the tests show.
const SPACE: &str = "team";
/// How long a WebDriver wait may take for something the page loads at once.
const LOAD: Duration = Duration::from_secs(10);

/// One browser at a time: each chromium takes a core while it starts, and the machine has
/// few.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A nats-server, a writer agent (alice) with two documents, and `blackboard ui`'s site
/// serving the space on a free loopback port.
struct Setup {
    server: NatsServer,
    alice: Board,
    site: Arc<ui::Site>,
    served: Served,
    _dirs: [tempfile::TempDir; 2],
}

/// The board before the ui starts: a nats-server and alice, who wrote `plan` and `notes`.
struct Before {
    server: NatsServer,
    alice: Board,
    alice_dir: tempfile::TempDir,
}

impl Before {
    /// alice writes `plan` (/goal twice, each with a message) and `notes`.
    async fn start() -> anyhow::Result<Before> {
        let server = NatsServer::start().await?;
        let alice_dir = tempfile::tempdir()?;
        let alice = Options::new("alice")?
            .store(alice_dir.path())
            .connect(&server.url())
            .await?;
        let plan = alice.doc(SPACE, "plan")?;
        plan.put_with_message("/goal", json!("ship v1"), "first idea")
            .await?;
        plan.put_with_message("/goal", json!("ship v2"), "rethought")
            .await?;
        plan.flush().await?;
        let notes = alice.doc(SPACE, "notes")?;
        notes.put("/todo", json!(["write the docs"])).await?;
        notes.flush().await?;
        Ok(Before {
            server,
            alice,
            alice_dir,
        })
    }

    /// Starts `blackboard ui`'s site on the board.
    async fn serve(self) -> anyhow::Result<Setup> {
        let Before {
            server,
            alice,
            alice_dir,
        } = self;
        let ui_dir = tempfile::tempdir()?;
        let viewer = Options::new("ui")?
            .store(ui_dir.path())
            .connect(&server.url())
            .await?;
        let site = ui::Site::start(
            viewer,
            SPACE.parse()?,
            ui::new_token(),
            Duration::from_secs(10),
        )
        .await?;
        let served = Served::start(site.clone()).await?;
        Ok(Setup {
            server,
            alice,
            site,
            served,
            _dirs: [alice_dir, ui_dir],
        })
    }
}

impl Setup {
    /// alice writes `plan` (/goal twice, each with a message) and `notes`, then the site
    /// starts.
    async fn start() -> anyhow::Result<Setup> {
        Before::start().await?.serve().await
    }

    /// The URL `blackboard ui` would print.
    fn page(&self) -> String {
        format!("http://{}/?token={}", self.served.addr, self.site.token())
    }

    /// Stops the server; it must end although a page still has its event stream open.
    async fn stop(self) -> anyhow::Result<()> {
        self.served.stop(LOAD).await
    }
}

impl Browser {
    /// Opens the page and waits until its event stream is live and a document is shown.
    async fn open(&self, url: &str) -> anyhow::Result<()> {
        self.client.goto(url).await?;
        self.client
            .wait()
            .at_most(LOAD)
            .for_element(Locator::Css("#status.live"))
            .await
            .context("the page's event stream did not go live")?;
        self.client
            .wait()
            .at_most(LOAD)
            .for_element(Locator::Css("#tree [data-path]"))
            .await
            .context("the page showed no document")?;
        Ok(())
    }

    /// Waits for the element `css` and returns its text.
    /// Types `path` into the blame box and asks for its blame.
    async fn blame(&self, path: &str) -> anyhow::Result<()> {
        let input = self.client.find(Locator::Css("#blame-path")).await?;
        input.clear().await?;
        input.send_keys(path).await?;
        self.client
            .find(Locator::Css("#blame-go"))
            .await?
            .click()
            .await?;
        Ok(())
    }

    /// The text of the first element matching `css`, waiting up to `within` for one. The
    /// page redraws parts of itself on live events, so an element found may be replaced
    /// before its text is read ("stale element reference"): then the new one is read.
    async fn text_of(&self, css: &str, within: Duration) -> anyhow::Result<String> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let element = self
                .client
                .wait()
                .at_most(left)
                .for_element(Locator::Css(css))
                .await
                .with_context(|| format!("waiting for {css}"))?;
            match element.text().await {
                Err(e) if e.is_stale_element_reference() && !left.is_zero() => continue,
                text => return Ok(text?),
            }
        }
    }

    /// Saves a screenshot as NAME.png when BLACKBOARD_UI_SCREENSHOTS names a directory.
    async fn screenshot(&self, name: &str) -> anyhow::Result<()> {
        let Some(dir) = std::env::var_os("BLACKBOARD_UI_SCREENSHOTS") else {
            return Ok(());
        };
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(dir);
        std::fs::create_dir_all(&dir)?;
        let png = self.client.screenshot().await?;
        std::fs::write(dir.join(format!("{name}.png")), png)?;
        Ok(())
    }

    async fn close(self) -> anyhow::Result<()> {
        self.client.clone().close().await?;
        Ok(())
    }
}

#[tokio::test]
async fn the_page_lists_the_documents_of_a_space() -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let setup = Setup::start().await?;
    let browser = Browser::start().await?;
    browser.open(&setup.page()).await?;
    let plan = browser
        .text_of(r#"#documents li[data-doc="plan"]"#, LOAD)
        .await?;
    assert!(plan.contains("2 events"), "{plan}");
    assert!(plan.contains("alice: rethought"), "{plan}");
    let notes = browser
        .text_of(r#"#documents li[data-doc="notes"]"#, LOAD)
        .await?;
    assert!(notes.contains("1 event"), "{notes}");
    browser.screenshot("documents").await?;
    browser.close().await?;
    setup.stop().await
}

#[tokio::test]
async fn a_put_from_another_process_appears_in_the_tree_within_a_second_highlighted_with_its_agent(
) -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let setup = Setup::start().await?;
    let browser = Browser::start().await?;
    browser.open(&format!("{}#doc=plan", setup.page())).await?;
    let url = setup.server.url();
    let put = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_blackboard"))
            .env_remove("NATS_URL")
            .env_remove("NATS_CREDS")
            .args(["put", "--nats", &url, "--space", SPACE, "--as", "bob"])
            .args([
                "--message",
                "picked it up",
                "plan",
                "/status",
                r#""reviewing""#,
            ])
            .output()
    })
    .await??;
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    // `put` returns once the log has the change: from then on the page has a second.
    let acknowledged = Instant::now();
    let changed = browser
        .text_of(
            r#"#tree [data-path="/status"].changed"#,
            Duration::from_secs(1),
        )
        .await?;
    let took = acknowledged.elapsed();
    assert!(changed.contains("reviewing"), "{changed}");
    assert!(changed.contains("bob: picked it up"), "{changed}");
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    browser.screenshot("live-change").await?;
    browser.close().await?;
    setup.stop().await
}

#[tokio::test]
async fn a_conflict_is_marked_in_the_tree_with_every_value_and_its_writer() -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let mut setup = Setup::start().await?;
    let bob_dir = tempfile::tempdir()?;
    let bob = Options::new("bob")?
        .store(bob_dir.path())
        .connect(&setup.server.url())
        .await?;
    let (a, b) = (setup.alice.doc(SPACE, "plan")?, bob.doc(SPACE, "plan")?);
    b.wait_for(&a.heads()).await?;
    // With the log down neither sees the other's write: two concurrent values at /lead.
    setup.server.stop().await;
    a.put("/lead", json!("alice")).await?;
    b.put("/lead", json!("bob")).await?;
    setup.server.restart().await?;
    a.flush().await?;
    b.flush().await?;
    bob.close().await?;

    let browser = Browser::start().await?;
    browser.open(&format!("{}#doc=plan", setup.page())).await?;
    let marked = browser
        .text_of(r#"#tree [data-path="/lead"].conflict"#, LOAD)
        .await?;
    assert!(marked.contains(r#""alice" by alice"#), "{marked}");
    assert!(marked.contains(r#""bob" by bob"#), "{marked}");
    assert_eq!(marked.matches(", shown").count(), 1, "{marked}");
    // Only the conflicted path is marked.
    let goal = browser
        .text_of(r#"#tree [data-path="/goal"]"#, LOAD)
        .await?;
    assert!(!goal.contains("conflict"), "{goal}");
    browser.screenshot("conflict").await?;
    browser.close().await?;
    setup.stop().await
}

#[tokio::test]
async fn choosing_an_older_event_in_the_timeline_shows_the_old_value_and_the_diff_names_the_changed_path(
) -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let setup = Setup::start().await?;
    let plan = setup.alice.doc(SPACE, "plan")?;
    plan.sync().await?;
    let events = plan.history(&HistoryFilter::default())?;
    let first = events[0].record.seq;
    assert_eq!(
        plan.at(&At::Seq(first))?.get("/goal")?,
        Some(json!("ship v1"))
    );

    let browser = Browser::start().await?;
    browser.open(&format!("{}#doc=plan", setup.page())).await?;
    browser
        .client
        .wait()
        .at_most(LOAD)
        .for_element(Locator::Css(&format!(
            r#"#timeline li[data-seq="{first}"]"#
        )))
        .await?
        .click()
        .await?;
    let old = browser
        .text_of(&format!(r#"#at-json[data-seq="{first}"]"#), LOAD)
        .await?;
    assert!(old.contains("ship v1"), "{old}");
    assert!(!old.contains("ship v2"), "{old}");
    let diff = browser.text_of("#diff", LOAD).await?;
    assert!(diff.contains("/goal"), "{diff}");
    browser
        .client
        .find(Locator::Css(r#"#diff li[data-path="/goal"]"#))
        .await
        .context("the diff has a line for /goal")?;
    browser.screenshot("timeline").await?;
    browser.close().await?;
    setup.stop().await
}

#[tokio::test]
async fn blame_on_a_path_names_the_agent_and_the_message() -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let setup = Setup::start().await?;
    let browser = Browser::start().await?;
    browser.open(&format!("{}#doc=plan", setup.page())).await?;
    browser.blame("/goal").await?;
    let blamed = browser
        .text_of(r#"#blame .blamed[data-path="/goal"]"#, LOAD)
        .await?;
    assert!(blamed.contains("alice"), "{blamed}");
    assert!(blamed.contains("rethought"), "{blamed}");
    browser.screenshot("blame").await?;
    browser.close().await?;
    setup.stop().await
}

#[tokio::test]
async fn a_claim_taken_through_the_sdk_appears_and_disappears_when_released() -> anyhow::Result<()>
{
    let _one = ONE_BROWSER.lock().await;
    let setup = Setup::start().await?;
    let browser = Browser::start().await?;
    browser.open(&setup.page()).await?;
    browser.text_of("#claims li.muted", LOAD).await?;

    let claims = setup.alice.claims(SPACE).await?;
    let claim = claims.claim("task-7", Duration::from_secs(60)).await?;
    let held = browser
        .text_of(r#"#claims li[data-resource="task-7"]"#, LOAD)
        .await?;
    assert!(held.contains("alice"), "{held}");
    assert!(held.contains(&format!("token {}", claim.token)), "{held}");
    browser.screenshot("claims").await?;

    claims.release(claim).await?;
    let none = browser.text_of("#claims li.muted", LOAD).await?;
    assert_eq!(none, "none held");
    assert!(browser
        .client
        .find(Locator::Css(r#"#claims li[data-resource="task-7"]"#))
        .await
        .is_err());
    browser.close().await?;
    setup.stop().await
}

/// A plain HTTP/1.1 GET: the status code and the headers and body.
async fn http_get(
    addr: std::net::SocketAddr,
    target: &str,
    host: &str,
) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    // The event stream never ends: its head is enough.
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(LOAD, stream.read(&mut buf)).await??;
        answer.extend_from_slice(&buf[..n]);
        if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {text:?}"))?;
    Ok((status, text))
}

#[tokio::test]
async fn without_the_token_the_page_and_the_event_stream_are_refused() -> anyhow::Result<()> {
    let setup = Setup::start().await?;
    let (addr, host) = (setup.served.addr, setup.served.addr.to_string());
    let token = setup.site.token().to_owned();
    for target in ["/", "/api/events", "/api/documents", "/api/doc/plan"] {
        let (status, _) = http_get(addr, target, &host).await?;
        assert_eq!(status, 401, "{target} without a token");
        let (status, _) = http_get(addr, &format!("{target}?token=not-the-token"), &host).await?;
        assert_eq!(status, 401, "{target} with a wrong token");
        // A page of another site whose name resolves to loopback (DNS rebinding).
        let (status, _) = http_get(addr, target, "evil.example:80").await?;
        assert_eq!(status, 403, "{target} for another host");
    }
    let (status, page) = http_get(addr, &format!("/?token={token}"), &host).await?;
    assert_eq!(status, 200, "{page}");
    let (status, events) = http_get(addr, &format!("/api/events?token={token}"), &host).await?;
    assert_eq!(status, 200, "{events}");
    assert!(events.contains("text/event-stream"), "{events}");
    setup.stop().await
}

/// Gives the space a roster signed by a new admin: alice, with the returned key, may write
/// anywhere. Published raw on the log, as an admin's tool would.
async fn publish_roster(
    server: &NatsServer,
) -> anyhow::Result<blackboard::schemas::nkeys::KeyPair> {
    use blackboard::log::{EventLog, JetStreamLog};
    use blackboard::schemas::nkeys::KeyPair;
    use blackboard::trust::RosterEvent;
    use blackboard_client::SpaceId;

    let space: SpaceId = SPACE.parse()?;
    let (admin, alice_key) = (KeyPair::new_user(), KeyPair::new_user());
    let roster = json!({
        "admins": [admin.public_key()],
        "agents": {"alice": {"keys": [alice_key.public_key()], "write": ["/**"]}},
    });
    let log = JetStreamLog::new(server.connect().await?, Default::default());
    let event = RosterEvent::sign(&space, 1, roster.to_string(), &admin)?;
    log.publish_roster(&space, "roster-1", event.encode().into())
        .await?;
    Ok(alice_key)
}

/// A forgery: a change to `plan` in alice's name, unsigned, writing /forged, published raw
/// on the log (built on alice's replica, as someone who read the document would). Returns
/// its log position.
async fn publish_forgery(server: &NatsServer, alice: &Board) -> anyhow::Result<u64> {
    use blackboard::codec::encode_event;
    use blackboard::doc::Edit;
    use blackboard::log::{EventLog, JetStreamLog};
    use blackboard_client::{AgentId, DocumentId, SpaceId};

    let (space, plan): (SpaceId, DocumentId) = (SPACE.parse()?, "plan".parse()?);
    let log = JetStreamLog::new(server.connect().await?, Default::default());
    let mut fork = alice
        .doc(SPACE, "plan")?
        .replica()
        .read(|core| core.fork_at(&core.heads()))?;
    let edited = fork.edit(
        1,
        None,
        false,
        &[Edit::put("/forged".parse()?, json!("forged"))],
    )?;
    let change = edited.change.context("the forged edit made a change")?;
    let agent: AgentId = "alice".parse()?;
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let envelope = encode_event(&space, &plan, &agent, &change, now_ms, None);
    Ok(log
        .publish(&space, &plan, "forged-1", envelope.encode().into())
        .await?
        .seq)
}

#[tokio::test]
async fn a_change_the_roster_rejects_is_listed_with_its_reason_and_marked_in_the_timeline_while_the_honest_change_applies(
) -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let setup = Setup::start().await?;
    let browser = Browser::start().await?;
    browser.open(&format!("{}#doc=plan", setup.page())).await?;
    browser.text_of("#rejected li.muted", LOAD).await?;

    let alice_key = publish_roster(&setup.server).await?;
    // The honest change: alice, signing with her key.
    let signed_dir = tempfile::tempdir()?;
    let signed = Options::new("alice")?
        .key(alice_key)?
        .store(signed_dir.path())
        .connect(&setup.server.url())
        .await?;
    let honest = signed.doc(SPACE, "plan")?;
    honest.sync().await?;
    honest.put("/status", json!("honest")).await?;
    honest.flush().await?;
    let forged = publish_forgery(&setup.server, &setup.alice).await?;

    let listed = browser
        .text_of(
            &format!(r#"#rejected li[data-doc="plan"][data-seq="{forged}"]"#),
            LOAD,
        )
        .await?;
    assert!(listed.contains("alice"), "{listed}");
    assert!(listed.contains("unsigned"), "{listed}");
    let marked = browser
        .text_of(
            &format!(r#"#timeline li.rejected[data-seq="{forged}"]"#),
            LOAD,
        )
        .await?;
    assert!(marked.contains("unsigned"), "{marked}");
    let applied = browser
        .text_of(r#"#tree [data-path="/status"]"#, LOAD)
        .await?;
    assert!(applied.contains("honest"), "{applied}");
    assert!(
        browser
            .client
            .find(Locator::Css(r#"#tree [data-path="/forged"]"#))
            .await
            .is_err(),
        "the forged value is not in the tree"
    );
    browser.screenshot("rejected").await?;
    browser.close().await?;
    signed.close().await?;
    setup.stop().await
}

#[tokio::test]
async fn a_forged_change_published_before_the_ui_started_is_listed_with_its_reason(
) -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let before = Before::start().await?;
    publish_roster(&before.server).await?;
    let forged = publish_forgery(&before.server, &before.alice).await?;
    // The ui starts after the forgery is on the log: no live event will tell it.
    let setup = before.serve().await?;
    let browser = Browser::start().await?;
    browser.open(&format!("{}#doc=plan", setup.page())).await?;
    let listed = browser
        .text_of(
            &format!(r#"#rejected li[data-doc="plan"][data-seq="{forged}"]"#),
            LOAD,
        )
        .await?;
    assert!(listed.contains("alice"), "{listed}");
    assert!(listed.contains("unsigned"), "{listed}");
    assert!(
        browser
            .client
            .find(Locator::Css(r#"#tree [data-path="/forged"]"#))
            .await
            .is_err(),
        "the forged value is not in the tree"
    );
    browser.close().await?;
    setup.stop().await
}

#[tokio::test]
async fn an_agent_opening_the_document_appears_on_its_presence_and_disappears_when_it_leaves(
) -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let setup = Setup::start().await?;
    let browser = Browser::start().await?;
    browser.open(&format!("{}#doc=plan", setup.page())).await?;
    // The document's presence stream has answered: nobody is on it.
    browser
        .text_of(r#"#doc-presence[data-doc="plan"] li.muted"#, LOAD)
        .await?;

    let bob_dir = tempfile::tempdir()?;
    let bob = Options::new("bob")?
        .store(bob_dir.path())
        .connect(&setup.server.url())
        .await?;
    let on_plan = bob.presence(SPACE, Some("plan")).await?;
    let here = on_plan.join(Some("reviewing the plan")).await?;
    let shown = browser
        .text_of(
            r#"#doc-presence[data-doc="plan"] li[data-agent="bob"]"#,
            LOAD,
        )
        .await?;
    assert!(shown.contains("reviewing the plan"), "{shown}");
    // bob is on the document, not in the space: the space's list does not name him, so
    // the document's list came from the document's own presence.
    assert!(browser
        .client
        .find(Locator::Css(r#"#presence li[data-agent="bob"]"#))
        .await
        .is_err());
    browser.screenshot("presence").await?;

    here.leave().await?;
    browser
        .text_of(r#"#doc-presence[data-doc="plan"] li.muted"#, LOAD)
        .await?;
    assert!(browser
        .client
        .find(Locator::Css(r#"#doc-presence li[data-agent="bob"]"#))
        .await
        .is_err());
    browser.close().await?;
    bob.close().await?;
    setup.stop().await
}

#[tokio::test]
async fn two_agents_editing_one_text_are_each_named_on_their_runs_of_characters_in_blame(
) -> anyhow::Result<()> {
    use blackboard::doc::Edit;

    let _one = ONE_BROWSER.lock().await;
    let setup = Setup::start().await?;
    let splice = |pos: usize, insert: &str| -> anyhow::Result<Edit> {
        Ok(Edit::SpliceText {
            path: "/draft".parse()?,
            pos,
            delete: 0,
            insert: insert.to_owned(),
        })
    };
    let alice = setup.alice.doc(SPACE, "plan")?;
    alice
        .edit(Some("first draft"), &[splice(0, "hello world")?])
        .await?;
    alice.flush().await?;
    let bob_dir = tempfile::tempdir()?;
    let bob_board = Options::new("bob")?
        .store(bob_dir.path())
        .connect(&setup.server.url())
        .await?;
    let bob = bob_board.doc(SPACE, "plan")?;
    bob.wait_for(&alice.heads()).await?;
    bob.edit(Some("make it bigger"), &[splice(6, "big ")?])
        .await?;
    bob.flush().await?;

    let browser = Browser::start().await?;
    browser.open(&format!("{}#doc=plan", setup.page())).await?;
    browser.blame("/draft").await?;
    let text = browser
        .text_of(r#"#blame .runs[data-path="/draft"]"#, LOAD)
        .await?;
    assert_eq!(text, "hello big world");
    let mut runs = Vec::new();
    for run in browser
        .client
        .find_all(Locator::Css("#blame .runs .run"))
        .await?
    {
        runs.push((
            run.attr("data-agent").await?.unwrap_or_default(),
            run.text().await?,
            run.attr("title").await?.unwrap_or_default(),
        ));
    }
    let agents: Vec<(&str, &str)> = runs
        .iter()
        .map(|(agent, text, _)| (agent.as_str(), text.as_str()))
        .collect();
    assert_eq!(
        agents,
        [("alice", "hello "), ("bob", "big "), ("alice", "world")],
        "{runs:?}"
    );
    // Hovering a run names its agent and message.
    assert!(runs[0].2.contains("alice: first draft"), "{runs:?}");
    assert!(runs[1].2.contains("bob: make it bigger"), "{runs:?}");
    browser.screenshot("text-blame").await?;
    browser.close().await?;
    bob_board.close().await?;
    setup.stop().await
}

/// `blackboard ui` run as the binary, on a free loopback port: the process and the URL it
/// printed.
struct UiProcess {
    child: Child,
    addr: std::net::SocketAddr,
    token: String,
}

impl Drop for UiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl UiProcess {
    fn start(nats: &str, extra: &[&str]) -> anyhow::Result<UiProcess> {
        let token = ui::new_token();
        let mut child = Command::new(env!("CARGO_BIN_EXE_blackboard"))
            .env_remove("NATS_URL")
            .env_remove("NATS_CREDS")
            .args([
                "ui",
                "--nats",
                nats,
                "--space",
                SPACE,
                "--addr",
                "127.0.0.1:0",
            ])
            .args(["--token", &token])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting blackboard ui")?;
        let stdout = child.stdout.take().context("blackboard ui's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("blackboard ui: http://")
            .and_then(|rest| rest.split('/').next())
            .with_context(|| format!("blackboard ui printed {line:?}"))?
            .parse()?;
        Ok(UiProcess { child, addr, token })
    }
}

#[tokio::test]
async fn a_host_allowed_with_allow_host_passes_and_another_name_is_refused_with_403(
) -> anyhow::Result<()> {
    let setup = Setup::start().await?;
    let url = setup.server.url();
    let process = tokio::task::spawn_blocking(move || {
        UiProcess::start(
            &url,
            &[
                "--allow-host",
                "board.example",
                "--allow-origin",
                "https://app.example",
            ],
        )
    })
    .await??;
    let (addr, port) = (process.addr, process.addr.port());
    let page = format!("/?token={}", process.token);
    let (status, answer) = http_get(addr, &page, &format!("board.example:{port}")).await?;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = http_get(addr, &page, &format!("other.example:{port}")).await?;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("other.example"), "{answer}");
    // Its own address still passes.
    let (status, answer) = http_get(addr, &page, &addr.to_string()).await?;
    assert_eq!(status, 200, "{answer}");
    drop(process);
    setup.stop().await
}
