//! The `blackboard` command, run as a user would.

use std::process::{Command, Output};

fn blackboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blackboard"))
        .args(args)
        .output()
        .expect("the blackboard binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The printed heads of every agent, one line each.
fn heads_lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("agent-"))
        .map(|l| l.split_once(" heads ").expect("a heads line").1.to_owned())
        .collect()
}

#[test]
fn demo_on_the_embedded_log_converges_and_prints_equal_heads() {
    let out = blackboard(&["demo", "--agents", "4", "--rounds", "5"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("converged: 4 agents"), "{stdout}");
    let heads = heads_lines(&stdout);
    assert_eq!(heads.len(), 4);
    assert!(heads.iter().all(|h| h == &heads[0]), "{heads:?}");
    assert!(stdout.contains("\"edits\": 20"), "{stdout}");
}

#[tokio::test]
async fn demo_against_a_real_nats_server_converges() {
    let server = blackboard_tests::NatsServer::start().await.unwrap();
    let url = server.url();
    let out = tokio::task::spawn_blocking(move || {
        blackboard(&["demo", "--nats", &url, "--agents", "3", "--rounds", "5"])
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("converged: 3 agents"), "{stdout}");
    assert_eq!(heads_lines(&stdout).len(), 3);
}

#[test]
fn bad_arguments_are_refused_with_a_message_naming_them() {
    for (args, says) in [
        (&["demo", "--agents", "0"][..], "--agents"),
        (&["demo", "--space", "a.b"][..], "contains '.'"),
        (&["demo", "--creds", "x.creds"][..], "--nats"),
        (&["demo", "--rounds", "lots"][..], "--rounds"),
        (&["dance"][..], "unrecognized subcommand"),
    ] {
        let out = blackboard(args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(says),
            "{args:?} should mention {says:?}: {stderr}"
        );
    }
}

#[test]
fn an_unreachable_nats_server_is_a_clear_error() {
    // Port 1 on loopback: nothing listens there.
    let out = blackboard(&["demo", "--nats", "nats://127.0.0.1:1"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("connecting to NATS at nats://127.0.0.1:1"),
        "{stderr}"
    );
}

// ---- History verbs --------------------------------------------------------------------

mod history {
    use std::sync::Arc;

    use blackboard::automerge::transaction::Transactable;
    use blackboard::automerge::{ObjType, ROOT};
    use blackboard::log::{EventLog, JetStreamConfig, JetStreamLog};
    use blackboard::replica::{Config, Replica};
    use serde_json::{json, Value};

    use super::{blackboard, text};

    /// Runs the command off the async runtime (the test's own NATS connection keeps going).
    async fn run(args: Vec<String>) -> std::process::Output {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            blackboard(&args)
        })
        .await
        .unwrap()
    }

    /// Runs a verb against the server at `url`, expects success, returns stdout.
    async fn ok(url: &str, args: &[&str]) -> String {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--nats", url, "--space", "team", "--doc", "plan"].map(String::from));
        let out = run(all).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
        stdout
    }

    fn json_lines(stdout: &str) -> Vec<Value> {
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Four events on team/plan, one writer at a time so their sequences are 1 to 4:
    /// alice opens the task and makes the notes, bob finishes it, alice writes "hello",
    /// bob appends " (bob)".
    async fn write_history(url: &str) -> anyhow::Result<()> {
        let client = async_nats::connect(url).await?;
        let log: Arc<dyn EventLog> =
            Arc::new(JetStreamLog::new(client, JetStreamConfig::default()));
        let dir = tempfile::tempdir()?;
        let db = sled::open(dir.path())?;
        let open = |agent: &str| {
            let config = Config::new("team".parse()?, "plan".parse()?, agent.parse()?);
            anyhow::Ok(Replica::open(log.clone(), &db, config)?)
        };
        let (alice, bob) = (open("alice")?, open("bob")?);
        alice
            .change_with_message(Some("open the task"), |tx| {
                tx.put(ROOT, "status", "open")?;
                tx.put_object(ROOT, "notes", ObjType::Text).map(|_| ())
            })
            .await?;
        alice.flush().await?;
        bob.wait_for(&alice.heads()).await?;
        bob.change_with_message(Some("finish the task"), |tx| tx.put(ROOT, "status", "done"))
            .await?;
        bob.flush().await?;
        alice.wait_for(&bob.heads()).await?;
        alice.splice_text("/notes", 0, 0, "hello").await?;
        alice.flush().await?;
        bob.wait_for(&alice.heads()).await?;
        bob.splice_text("/notes", 5, 0, " (bob)").await?;
        bob.flush().await?;
        Ok(())
    }

    #[tokio::test]
    async fn history_show_diff_blame_snapshot_and_replay_tell_the_story_written() {
        let server = blackboard_tests::NatsServer::start().await.unwrap();
        let url = server.url();
        write_history(&url).await.unwrap();

        // history: every event, in order, with its writer and message.
        let events = json_lines(&ok(&url, &["history", "--json"]).await);
        let who: Vec<(&str, Option<&str>, u64)> = events
            .iter()
            .map(|e| {
                let seq = e["seq"].as_u64().unwrap();
                (e["agent"].as_str().unwrap(), e["message"].as_str(), seq)
            })
            .collect();
        assert_eq!(
            who,
            [
                ("alice", Some("open the task"), 1),
                ("bob", Some("finish the task"), 2),
                ("alice", None, 3),
                ("bob", None, 4)
            ]
        );
        assert!(events[0]["logged"].as_str().unwrap().ends_with('Z'));
        assert_eq!(events[1]["paths"], json!(["/status"]));
        // Filters: by agent, by path pattern, by position, by count.
        let bobs = json_lines(&ok(&url, &["history", "--json", "--agent", "bob"]).await);
        assert_eq!(bobs.len(), 2);
        let status = json_lines(&ok(&url, &["history", "--json", "--path", "/status"]).await);
        assert_eq!(status.len(), 2);
        let window =
            json_lines(&ok(&url, &["history", "--json", "--after", "1", "--limit", "2"]).await);
        assert_eq!(window.iter().map(|e| &e["seq"]).collect::<Vec<_>>(), [2, 3]);
        // The table names the same things.
        let table = ok(&url, &["history"]).await;
        assert!(table.starts_with("SEQ"), "{table}");
        assert!(table.contains("finish the task"), "{table}");

        // show: the document as it was.
        let at1: Value =
            serde_json::from_str(&ok(&url, &["show", "--at", "1", "--json"]).await).unwrap();
        assert_eq!(at1, json!({"status": "open", "notes": ""}));
        let at2 = ok(&url, &["show", "--at", "2", "/status"]).await;
        assert_eq!(at2.trim(), "\"done\"");
        let now: Value = serde_json::from_str(&ok(&url, &["show"]).await).unwrap();
        assert_eq!(now, json!({"status": "done", "notes": "hello (bob)"}));

        // diff: what changed between two positions.
        let diff = json_lines(&ok(&url, &["diff", "1", "2", "--json"]).await);
        assert_eq!(
            diff,
            [json!({"path": "/status", "kind": "put", "value": "done"})]
        );
        let diff_table = ok(&url, &["diff", "0", "4"]).await;
        assert!(diff_table.contains("/notes"), "{diff_table}");

        // blame: the writer and message of a value, and of each run of text.
        let blame: Value =
            serde_json::from_str(&ok(&url, &["blame", "/status", "--json"]).await).unwrap();
        assert_eq!(blame["record"]["agent"], "bob");
        assert_eq!(blame["record"]["message"], "finish the task");
        let notes: Value =
            serde_json::from_str(&ok(&url, &["blame", "/notes", "--json"]).await).unwrap();
        let spans: Vec<(&str, &str)> = notes["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let agent = s["record"]["agent"].as_str().unwrap();
                (agent, s["text"].as_str().unwrap())
            })
            .collect();
        assert_eq!(spans, [("alice", "hello"), ("bob", " (bob)")]);
        let blame_table = ok(&url, &["blame", "/status"]).await;
        assert!(blame_table.contains("bob") && blame_table.contains("finish the task"));

        // replay: deterministic, one line per event.
        let replay = ok(&url, &["replay", "--json"]).await;
        assert_eq!(json_lines(&replay).len(), 4);
        assert_eq!(replay, ok(&url, &["replay", "--json"]).await);
        let from2 = ok(&url, &["replay", "--from", "2"]).await;
        assert_eq!(from2.lines().count(), 2, "{from2}");

        // snapshot, then trim: history survives.
        let snap: Value = serde_json::from_str(&ok(&url, &["snapshot", "--json"]).await).unwrap();
        assert_eq!(snap["seq"], 4);
        assert_eq!(snap["trimmed_through"], 0);
        assert!(snap["size"].as_u64().unwrap() > 0);
        let trim: Value =
            serde_json::from_str(&ok(&url, &["snapshot", "--trim", "--json"]).await).unwrap();
        assert_eq!(trim["trimmed_through"], 4);
        assert_eq!(trim["removed"], 4);
        assert_eq!(json_lines(&ok(&url, &["history", "--json"]).await), events);
        assert_eq!(ok(&url, &["replay", "--json"]).await, replay);
        let at1_after: Value =
            serde_json::from_str(&ok(&url, &["show", "--at", "1", "--json"]).await).unwrap();
        assert_eq!(at1_after, at1);
    }

    #[tokio::test]
    async fn unknown_spaces_documents_paths_and_positions_are_clear_errors() {
        let server = blackboard_tests::NatsServer::start().await.unwrap();
        let url = server.url();
        write_history(&url).await.unwrap();
        let nats = |args: &[&str], space: &str, doc: &str| {
            let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            all.extend(["--nats", &url, "--space", space, "--doc", doc].map(String::from));
            all
        };
        for (args, says) in [
            (nats(&["history"], "nobody", "plan"), "unknown space nobody"),
            (
                nats(&["history"], "team", "nothing"),
                "unknown document team/nothing",
            ),
            (
                nats(&["blame", "/missing"], "team", "plan"),
                "nothing at /missing",
            ),
            (
                nats(&["show", "/missing"], "team", "plan"),
                "nothing at /missing",
            ),
            (
                nats(&["show", "--at", "99"], "team", "plan"),
                "--at 99: the document's last event is at sequence 4",
            ),
            (
                nats(&["history", "--after", "7"], "team", "plan"),
                "--after 7",
            ),
        ] {
            let out = run(args.clone()).await;
            let (_, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
            assert!(
                stderr.contains(says),
                "{args:?} should say {says:?}: {stderr}"
            );
        }
    }
}

#[test]
fn history_verbs_read_the_embedded_log_of_a_demo_store_and_say_when_it_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let out = blackboard(&["demo", "--store", store, "--agents", "2", "--rounds", "1"]);
    assert!(out.status.success(), "{:?}", text(&out));

    let out = blackboard(&["history", "--store", store, "--limit", "1"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("agent-0") && stdout.contains("set up the board"),
        "{stdout}"
    );

    // Another process holding the store: the command says so.
    let held = sled::open(dir.path().join("replicas")).unwrap();
    let out = blackboard(&["show", "--store", store]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by another process"), "{stderr}");
    drop(held);

    let out = blackboard(&["history", "--store", "/nonexistent/blackboard"]);
    assert!(
        text(&out).1.contains("no blackboard store"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn bad_history_arguments_are_refused_with_a_message_naming_them() {
    for (args, says) in [
        (
            &["show", "--store", "x", "--at", "yesterday"][..],
            "\"yesterday\" is not a position",
        ),
        (
            &["history", "--store", "x", "--frobnicate"][..],
            "--frobnicate",
        ),
        (&["blame", "--store", "x"][..], "<PATH>"),
        (&["blame", "--store", "x", "no-slash"][..], "<PATH>"),
        (&["diff", "--store", "x", "1"][..], "<TO>"),
        (
            &["history", "--store", "x", "--path", "/a/b*"][..],
            "--path",
        ),
        (&["history"][..], "--nats <URL>|--store <DIR>"),
        (
            &["history", "--store", "x", "--nats", "nats://h"][..],
            "cannot be used with",
        ),
    ] {
        let out = blackboard(args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(says),
            "{args:?} should mention {says:?}: {stderr}"
        );
    }
}
