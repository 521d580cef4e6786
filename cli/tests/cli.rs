//! The `blackboard` command, run as a user would.

use std::process::{Command, Output};

/// The `blackboard` command, with no `NATS_URL` or `NATS_CREDS` from the test's own
/// environment: each test says where the board is.
fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_blackboard"));
    command.env_remove("NATS_URL").env_remove("NATS_CREDS");
    command
}

fn blackboard(args: &[&str]) -> Output {
    command()
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
        stderr.contains("cannot connect to NATS at nats://127.0.0.1:1"),
        "{stderr}"
    );
}

// ---- History verbs --------------------------------------------------------------------

mod history {
    use blackboard_client::automerge::transaction::Transactable;
    use blackboard_client::automerge::{ObjType, ROOT};
    use blackboard_client::Options;
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

    /// The command line of `verb` on document `doc` of `space` on the server at `url`:
    /// the verb, the document, then the rest.
    fn on(url: &str, space: &str, doc: &str, verb: &[&str]) -> Vec<String> {
        let mut all: Vec<String> = vec![verb[0].to_owned(), doc.to_owned()];
        all.extend(verb[1..].iter().map(|a| a.to_string()));
        all.extend(["--nats", url, "--space", space].map(String::from));
        all
    }

    /// Runs a verb on team/plan on the server at `url`, expects success, returns stdout.
    async fn ok(url: &str, args: &[&str]) -> String {
        let all = on(url, "team", "plan", args);
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
        let dir = tempfile::tempdir()?;
        let open = |agent: &str| {
            let options = Options::new(agent).map(|o| o.store(dir.path().join(agent)));
            async move {
                let board = options?.connect(url).await?;
                anyhow::Ok(board.doc("team", "plan")?.replica().clone())
            }
        };
        let (alice, bob) = (open("alice").await?, open("bob").await?);
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
        // blame --text: only the runs, each with its bounds and writer.
        let runs: Value =
            serde_json::from_str(&ok(&url, &["blame", "/notes", "--text", "--json"]).await)
                .unwrap();
        let runs: Vec<(u64, u64, &str, &str)> = runs
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["start"].as_u64().unwrap(),
                    r["end"].as_u64().unwrap(),
                    r["agent"].as_str().unwrap(),
                    r["text"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(runs, [(0, 5, "alice", "hello"), (5, 11, "bob", " (bob)")]);
        let runs_table = ok(&url, &["blame", "/notes", "--text"]).await;
        assert!(
            runs_table.contains("END") && runs_table.contains("\" (bob)\""),
            "{runs_table}"
        );

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
        let nats = |args: &[&str], space: &str, doc: &str| on(&url, space, doc, args);
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

    let out = blackboard(&["history", "board", "--store", store, "--limit", "1"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("agent-0") && stdout.contains("set up the board"),
        "{stdout}"
    );

    // Another process holding the store: the command says so.
    let held = sled::open(dir.path()).unwrap();
    let out = blackboard(&["show", "board", "--store", store]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by another process"), "{stderr}");
    drop(held);

    let out = blackboard(&["history", "board", "--store", "/nonexistent/blackboard"]);
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
            &["show", "board", "--store", "x", "--at", "yesterday"][..],
            "\"yesterday\" is not a position",
        ),
        (
            &["history", "board", "--store", "x", "--frobnicate"][..],
            "--frobnicate",
        ),
        (&["history", "--store", "x"][..], "<DOC>"),
        (&["blame", "board", "--store", "x"][..], "<PATH>"),
        (
            &["blame", "board", "--store", "x", "no-slash"][..],
            "<PATH>",
        ),
        (&["diff", "board", "--store", "x", "1"][..], "<TO>"),
        (
            &["history", "board", "--store", "x", "--path", "/a/b*"][..],
            "--path",
        ),
        (
            &["history", "board"][..],
            "give --nats URL (or set NATS_URL) or --store DIR",
        ),
        (
            &["history", "board", "--store", "x", "--creds", "a.creds"][..],
            "--creds is for a NATS server",
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

// ---- Document verbs: ls, get, put, watch ----------------------------------------------

mod documents {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::process::{Child, Command, Output, Stdio};
    use std::sync::Arc;
    use std::time::Duration;

    use blackboard_client::{Options, Replica};
    use serde_json::{json, Value};

    use super::text;

    /// The command line of a verb on space `team` of the server at `url`.
    fn on(url: &str, args: &[&str]) -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--nats", url, "--space", "team"].map(String::from));
        all
    }

    /// Runs the command off the async runtime, with `stdin` as its input.
    async fn run_with_input(args: Vec<String>, stdin: Option<&str>) -> Output {
        let stdin = stdin.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let mut child = super::command()
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the blackboard binary runs");
            let mut input = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).unwrap();
            }
            drop(input);
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap()
    }

    async fn run(args: Vec<String>) -> Output {
        run_with_input(args, None).await
    }

    /// Runs a verb, expects success, returns stdout.
    async fn ok(args: Vec<String>) -> String {
        let out = run(args.clone()).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
        stdout
    }

    /// Runs a verb, expects exit status `code`, returns stderr.
    async fn fails(args: Vec<String>, code: i32) -> String {
        let out = run(args.clone()).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {stdout}\n{stderr}"
        );
        assert!(stdout.is_empty(), "{args:?} printed {stdout}");
        stderr
    }

    fn json(stdout: &str) -> Value {
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    fn json_lines(stdout: &str) -> Vec<Value> {
        stdout.lines().map(json).collect()
    }

    /// A replica of team/`doc` writing as `agent` through the SDK, not the CLI.
    async fn sdk_writer(url: &str, dir: &std::path::Path, doc: &str, agent: &str) -> Replica {
        let board = Options::new(agent)
            .unwrap()
            .store(dir.join(agent))
            .connect(url)
            .await
            .unwrap();
        board.doc("team", doc).unwrap().replica().clone()
    }

    #[tokio::test]
    async fn put_then_get_round_trips_values_and_ls_counts_each_documents_events() {
        let server = blackboard_tests::NatsServer::start().await.unwrap();
        let url = server.url();

        // An object, on a server that has never heard of the space: put creates it.
        let task = r#"{"title": "write docs", "status": "open", "estimate": 3}"#;
        let put = json(&ok(on(&url, &["put", "plan", "/tasks/t1", task, "--json"])).await);
        assert_eq!(put["path"], "/tasks/t1");
        assert_eq!(
            put["value"],
            json!({"title": "write docs", "status": "open", "estimate": 3})
        );
        // Sequences 1 and 2 are the creations of /tasks and /tasks/t1 (the container recipe).
        assert_eq!(put["seq"], 3);
        assert_eq!(put["agent"], "cli");
        assert_eq!(put["hash"].as_str().unwrap().len(), 64);
        // A string, as another agent, with a reason; then a number.
        let done = [
            "put",
            "plan",
            "/tasks/t1/status",
            r#""done""#,
            "--as",
            "alice",
        ];
        let mut done = on(&url, &done);
        done.extend(["--message", "shipped it", "--json"].map(String::from));
        let put = json(&ok(done).await);
        assert_eq!((&put["seq"], &put["agent"]), (&json!(4), &json!("alice")));
        assert_eq!(put["message"], "shipped it");
        let readable = ok(on(&url, &["put", "plan", "/count", "42"])).await;
        assert!(
            readable.contains("seq") && readable.contains('5'),
            "{readable}"
        );
        assert!(
            readable.contains("/count") && readable.contains("42"),
            "{readable}"
        );
        ok(on(&url, &["put", "notes", "/text", r#""hello""#])).await;

        // get: the whole document (pretty by default), or one value.
        let plan = ok(on(&url, &["get", "plan"])).await;
        assert!(plan.lines().count() > 1, "pretty-printed: {plan}");
        let expected = json!({
            "tasks": {"t1": {"title": "write docs", "status": "done", "estimate": 3}},
            "count": 42
        });
        assert_eq!(json(&plan), expected);
        let compact = ok(on(&url, &["get", "plan", "--json"])).await;
        assert_eq!(compact.lines().count(), 1, "{compact}");
        assert_eq!(json(&compact), expected);
        assert_eq!(
            ok(on(&url, &["get", "plan", "/tasks/t1/status", "--json"])).await,
            "\"done\"\n"
        );
        assert_eq!(json(&ok(on(&url, &["get", "plan", "/count"])).await), 42);
        assert_eq!(
            json(&ok(on(&url, &["get", "plan", "/tasks/t1"])).await)["estimate"],
            3
        );
        // Time travel, as `show` does it.
        let then = ok(on(&url, &["get", "plan", "/tasks/t1/status", "--at", "3"])).await;
        assert_eq!(json(&then), "open");

        // The writer and message are on the log.
        let mut history = on(&url, &["history", "plan", "--json"]);
        history.extend(["--agent", "alice"].map(String::from));
        let alice = json_lines(&ok(history).await);
        assert_eq!(alice.len(), 1);
        assert_eq!(alice[0]["message"], "shipped it");

        // Another agent, writing through the engine, is visible to get.
        let dir = tempfile::tempdir().unwrap();
        let bob = sdk_writer(&url, dir.path(), "plan", "bob").await;
        bob.sync().await.unwrap(); // caught up, so /tasks/t2 lands in the same /tasks map
        bob.put("/tasks/t2", json!({"title": "review", "status": "open"}))
            .await
            .unwrap();
        bob.flush().await.unwrap();
        let t2 = ok(on(&url, &["get", "plan", "/tasks/t2/title", "--json"])).await;
        assert_eq!(t2, "\"review\"\n");

        // ls: each document with its event count (bob's put is two events: the creation of
        // the map /tasks/t2 by the container recipe, then the write).
        let listed = json_lines(&ok(on(&url, &["ls", "--json"])).await);
        assert_eq!(
            listed,
            [
                json!({"space": "team", "document": "notes", "events": 1}),
                json!({"space": "team", "document": "plan", "events": 7}),
            ]
        );
        let table = ok(on(&url, &["ls"])).await;
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["DOCUMENT", "EVENTS"],
                vec!["notes", "1"],
                vec!["plan", "7"]
            ]
        );
        // A space nobody wrote to is empty, not an error, and is not created by looking.
        let nobody = |verb: &[&str]| {
            let mut all: Vec<String> = verb.iter().map(|a| a.to_string()).collect();
            all.extend(["--nats", &url, "--space", "nobody"].map(String::from));
            all
        };
        let out = run(nobody(&["ls"])).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(stdout, "");
        assert!(stderr.contains("no documents in space nobody"), "{stderr}");
        let stderr = fails(nobody(&["get", "plan"]), 1).await;
        assert!(stderr.contains("unknown space nobody"), "{stderr}");
        let client = async_nats::connect(&url).await.unwrap();
        let stream = blackboard_client::schemas::subject::stream_name(&"nobody".parse().unwrap());
        let looked_up = async_nats::jetstream::new(client).get_stream(&stream).await;
        assert!(looked_up.is_err(), "ls or get created {stream}");
    }

    #[tokio::test]
    async fn put_reads_the_value_from_stdin_with_a_dash() {
        let server = blackboard_tests::NatsServer::start().await.unwrap();
        let url = server.url();
        let value = r#"{"owner": "alice", "tags": ["a", "b"]}"#;
        let out = run_with_input(on(&url, &["put", "plan", "/meta", "-"]), Some(value)).await;
        assert!(out.status.success(), "{:?}", text(&out));
        let meta = json(&ok(on(&url, &["get", "plan", "/meta"])).await);
        assert_eq!(meta, json!({"owner": "alice", "tags": ["a", "b"]}));
    }

    #[test]
    fn put_get_and_ls_work_on_an_embedded_store_which_put_creates() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("data");
        let store = store.to_str().unwrap();
        let cmd = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--store", store, "--space", "team"]);
            let out = super::blackboard(&all);
            let (stdout, stderr) = text(&out);
            assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
            stdout
        };
        let put = json(&cmd(&[
            "put",
            "plan",
            "/tasks/t1/status",
            r#""open""#,
            "--json",
        ]));
        // Sequences 1 and 2 are the creations of /tasks and /tasks/t1 (the container recipe).
        assert_eq!(put["seq"], 3);
        cmd(&[
            "put",
            "plan",
            "/tasks/t1/status",
            r#""done""#,
            "--as",
            "alice",
        ]);
        assert_eq!(
            json(&cmd(&["get", "plan"])),
            json!({"tasks": {"t1": {"status": "done"}}})
        );
        assert_eq!(
            cmd(&["ls", "--json"]),
            "{\"space\":\"team\",\"document\":\"plan\",\"events\":4}\n"
        );
        let history = cmd(&["history", "plan", "--json"]);
        let agents: Vec<Value> = json_lines(&history)
            .iter()
            .map(|e| e["agent"].clone())
            .collect();
        assert_eq!(agents, ["cli", "cli", "cli", "alice"]);
    }

    /// A `blackboard watch` child process that has said it is listening.
    struct Watcher {
        child: Child,
        /// The rest of its stderr, collected by a thread until it exits.
        stderr: std::thread::JoinHandle<String>,
    }

    impl Watcher {
        /// Starts `blackboard watch` and waits until it says (on stderr) that it is
        /// listening: every change made after this returns reaches it.
        fn start(args: Vec<String>) -> Watcher {
            let mut child = super::command()
                .args(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the blackboard binary runs");
            let mut stderr = BufReader::new(child.stderr.take().unwrap());
            let mut seen = String::new();
            loop {
                let mut line = String::new();
                let n = stderr.read_line(&mut line).unwrap();
                seen.push_str(&line);
                if n == 0 {
                    let status = child.wait().unwrap();
                    panic!("watch exited ({status}) before listening: {seen}");
                }
                if line.starts_with("watching ") {
                    break;
                }
            }
            let stderr = std::thread::spawn(move || {
                let mut rest = seen;
                let _ = stderr.read_to_string(&mut rest);
                rest
            });
            Watcher { child, stderr }
        }

        /// Waits (off the runtime, at most a minute) for the process to exit; returns its
        /// exit status, stdout and stderr.
        async fn finish(mut self) -> (std::process::ExitStatus, String, String) {
            let mut stdout = self.child.stdout.take().unwrap();
            let child = Arc::new(std::sync::Mutex::new(self.child));
            let waiting = child.clone();
            let waited = tokio::time::timeout(
                Duration::from_secs(60),
                tokio::task::spawn_blocking(move || {
                    let mut out = String::new();
                    stdout.read_to_string(&mut out).unwrap();
                    (waiting.lock().unwrap().wait().unwrap(), out)
                }),
            )
            .await;
            let (status, out) = match waited {
                Ok(done) => done.unwrap(),
                Err(_) => {
                    let _ = child.lock().unwrap().kill();
                    panic!("watch did not exit within a minute");
                }
            };
            let err = self.stderr.join().unwrap();
            (status, out, err)
        }
    }

    #[tokio::test]
    async fn watch_prints_exactly_the_matching_changes_in_order_then_exits_after_count() {
        let server = blackboard_tests::NatsServer::start().await.unwrap();
        let url = server.url();
        // Something before the watch starts: not reported (the watch starts now).
        ok(on(
            &url,
            &["put", "plan", "/tasks/t0", r#"{"status": "old"}"#],
        ))
        .await;

        let args = on(
            &url,
            &["watch", "plan", "/tasks/**", "--json", "--count", "5"],
        );
        let watcher = tokio::task::spawn_blocking(move || Watcher::start(args))
            .await
            .unwrap();
        // Matching and non-matching changes, from the CLI and from an engine replica.
        let dir = tempfile::tempdir().unwrap();
        let bob = sdk_writer(&url, dir.path(), "plan", "bob").await;
        ok(on(
            &url,
            &["put", "plan", "/tasks/t1", r#"{"status": "open"}"#],
        ))
        .await;
        ok(on(&url, &["put", "plan", "/notes", r#""not a task""#])).await;
        ok(on(
            &url,
            &[
                "put",
                "plan",
                "/tasks/t1/status",
                r#""done""#,
                "--as",
                "alice",
                "--message",
                "finished",
            ],
        ))
        .await;
        ok(on(&url, &["put", "other", "/tasks/t9", "1"])).await; // another document
                                                                 // Bob catches up first, so his task lands in the same /tasks map.
        bob.sync().await.unwrap();
        bob.put("/owner", json!("bob")).await.unwrap();
        bob.put("/tasks/t2/status", json!("open")).await.unwrap();
        bob.flush().await.unwrap();

        let (status, stdout, stderr) = watcher.finish().await;
        assert!(status.success(), "{status}: {stdout}\n{stderr}");
        let events = json_lines(&stdout);
        let seen: Vec<(&str, u64, Vec<&str>)> = events
            .iter()
            .map(|e| {
                let paths = e["patches"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["path"].as_str().unwrap())
                    .collect();
                (
                    e["agent"].as_str().unwrap(),
                    e["seq"].as_u64().unwrap(),
                    paths,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                // /tasks/t1 is created by the container recipe (its own event), then written.
                ("cli", 4, vec!["/tasks/t1"]),
                ("cli", 5, vec!["/tasks/t1/status"]),
                ("alice", 7, vec!["/tasks/t1/status"]),
                // Bob's SDK write creates /tasks/t2 by the container recipe, one event,
                // then writes into it.
                ("bob", 11, vec!["/tasks/t2"]),
                ("bob", 12, vec!["/tasks/t2/status"]),
            ]
        );
        assert_eq!(events[2]["message"], "finished");
        assert_eq!(
            events[2]["patches"][0],
            json!({"path": "/tasks/t1/status", "kind": "put", "value": "done"})
        );
        assert!(events[0]["time"].as_str().unwrap().ends_with('Z'));
    }

    #[tokio::test]
    async fn watch_of_a_document_without_events_waits_for_its_first_change() {
        let server = blackboard_tests::NatsServer::start().await.unwrap();
        let url = server.url();
        ok(on(&url, &["put", "plan", "/a", "1"])).await; // the space exists

        let args = on(&url, &["watch", "later", "--count", "1", "--json"]);
        let watcher = tokio::task::spawn_blocking(move || Watcher::start(args))
            .await
            .unwrap();
        ok(on(
            &url,
            &["put", "later", "/first", "true", "--as", "alice"],
        ))
        .await;
        let (status, stdout, stderr) = watcher.finish().await;
        assert!(status.success(), "{stdout}\n{stderr}");
        assert!(stderr.contains("team/later has no events yet"), "{stderr}");
        let event = json(&stdout);
        assert_eq!(
            (&event["seq"], &event["agent"]),
            (&json!(2), &json!("alice"))
        );
        assert_eq!(
            event["patches"],
            json!([{"path": "/first", "kind": "put", "value": true}])
        );
    }

    #[tokio::test]
    async fn watch_from_a_position_replays_the_history_in_readable_lines() {
        let server = blackboard_tests::NatsServer::start().await.unwrap();
        let url = server.url();
        ok(on(&url, &["put", "plan", "/status", r#""open""#])).await;
        ok(on(
            &url,
            &[
                "put",
                "plan",
                "/status",
                r#""done""#,
                "--as",
                "alice",
                "-m",
                "why not",
            ],
        ))
        .await;
        ok(on(&url, &["put", "plan", "/count", "1"])).await;

        let all = ok(on(&url, &["watch", "plan", "--from", "0", "--count", "3"])).await;
        let lines: Vec<Vec<&str>> = all.lines().map(|l| l.split("  ").collect()).collect();
        assert_eq!(
            lines,
            [
                vec!["1", "cli", "put", "/status", "\"open\""],
                vec!["2", "alice", "put", "/status", "\"done\"", "# why not"],
                vec!["3", "cli", "put", "/count", "1"],
            ]
        );
        let after = ok(on(
            &url,
            &[
                "watch", "plan", "/count", "--from", "1", "--count", "1", "--json",
            ],
        ))
        .await;
        assert_eq!(json(&after)["seq"], 3);
    }

    #[tokio::test]
    async fn watch_exits_quietly_when_its_reader_goes_away_or_it_is_terminated() {
        let server = blackboard_tests::NatsServer::start().await.unwrap();
        let url = server.url();
        ok(on(&url, &["put", "plan", "/n", "0"])).await;

        // The reader closes the pipe: the next change ends the watch, with status 0.
        let args = on(&url, &["watch", "plan"]);
        let mut watcher = tokio::task::spawn_blocking(move || Watcher::start(args))
            .await
            .unwrap();
        drop(watcher.child.stdout.take());
        ok(on(&url, &["put", "plan", "/n", "1"])).await;
        let status = tokio::task::spawn_blocking(move || watcher.child.wait().unwrap());
        let status = tokio::time::timeout(Duration::from_secs(60), status)
            .await
            .expect("watch exits once its reader is gone")
            .unwrap();
        assert_eq!(status.code(), Some(0));

        // SIGTERM ends it cleanly too.
        let args = on(&url, &["watch", "plan"]);
        let watcher = tokio::task::spawn_blocking(move || Watcher::start(args))
            .await
            .unwrap();
        let pid = watcher.child.id().to_string();
        let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(kill.success());
        let (status, stdout, stderr) = watcher.finish().await;
        assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    }

    #[tokio::test]
    async fn refused_writes_and_reads_name_what_was_wrong_and_change_nothing() {
        let server = blackboard_tests::NatsServer::start().await.unwrap();
        let url = server.url();
        ok(on(&url, &["put", "plan", "/tasks/t1/status", r#""open""#])).await;
        ok(on(&url, &["put", "plan", "/count", "1"])).await;
        let before = ok(on(&url, &["get", "plan", "--json"])).await;
        let events = || async { ok(on(&url, &["ls", "--json"])).await };
        let listed = events().await;

        // Usage errors (2): checked before anything is written.
        for (args, says) in [
            (
                on(&url, &["put", "plan", "/tasks/t1/status", "done"]),
                "not JSON",
            ),
            (
                on(&url, &["put", "plan", "/tasks/t1/status", "done"]),
                r#"a string needs quotes: '"done"'"#,
            ),
            (on(&url, &["put", "plan", "/tasks", "{"]), "<JSON>"),
            (
                on(&url, &["put", "plan", "tasks", "1"]),
                "must start with '/'",
            ),
            (
                on(&url, &["put", "plan", "/", "1"]),
                "must be a JSON object",
            ),
            (on(&url, &["put", "plan", "/x"]), "<JSON>"),
            (on(&url, &["get", "plan", "tasks"]), "[PATH]"),
            (on(&url, &["watch", "plan", "/tasks/t*"]), "[PATTERN]"),
            (on(&url, &["watch", "plan", "--count", "0"]), "--count"),
            (on(&url, &["get", "pl.an"]), "<DOC>"),
            (
                on(&url, &["get", "plan", "--at", "yesterday"]),
                "\"yesterday\" is not a position",
            ),
        ] {
            let stderr = fails(args.clone(), 2).await;
            assert!(
                stderr.contains(says),
                "{args:?} should say {says:?}: {stderr}"
            );
        }
        let out = run_with_input(on(&url, &["put", "plan", "/count", "-"]), Some("{oops")).await;
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("'-' (stdin)") && stderr.contains("not JSON"),
            "{stderr}"
        );

        // Runtime errors (1).
        for (args, says) in [
            (
                on(&url, &["get", "nothing"]),
                "unknown document team/nothing",
            ),
            (
                on(&url, &["get", "plan", "/missing"]),
                "nothing at /missing in team/plan",
            ),
            (
                on(&url, &["get", "plan", "/count/x"]),
                "/count is not a map or list",
            ),
            (
                on(&url, &["get", "plan", "--at", "9"]),
                "--at 9: the document's last event is at sequence 4",
            ),
            (
                on(&url, &["put", "plan", "/count/x", "1"]),
                "/count is not a map or list",
            ),
            (on(&url, &["watch", "plan", "--from", "9"]), "--from 9"),
        ] {
            let stderr = fails(args.clone(), 1).await;
            assert!(
                stderr.contains(says),
                "{args:?} should say {says:?}: {stderr}"
            );
        }
        // Nothing was written by any of them.
        assert_eq!(ok(on(&url, &["get", "plan", "--json"])).await, before);
        assert_eq!(events().await, listed);
    }

    #[test]
    fn document_verbs_refuse_bad_arguments_before_touching_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("never-created");
        let store = store.to_str().unwrap();
        for (args, says) in [
            (
                &["ls"][..],
                "give --nats URL (or set NATS_URL) or --store DIR",
            ),
            (
                &["get", "plan"][..],
                "give --nats URL (or set NATS_URL) or --store DIR",
            ),
            (
                &["put", "plan", "/a", "1"][..],
                "give --nats URL (or set NATS_URL) or --store DIR",
            ),
            (
                &["watch", "plan"][..],
                "give --nats URL (or set NATS_URL) or --store DIR",
            ),
            (
                &["ls", "--store", store, "--space", "a.b"][..],
                "contains '.'",
            ),
            (&["put", "--store", store, "a b", "/a", "1"][..], "<DOC>"),
            (
                &["put", "--store", store, "plan", "/a", "open"][..],
                "not JSON",
            ),
            (
                &["put", "--store", store, "plan", "a", "1"][..],
                "must start with '/'",
            ),
            (
                &["put", "--store", store, "plan", "/", "[1]"][..],
                "must be a JSON object",
            ),
            (
                &["put", "--store", store, "plan", "/a", "1", "--as", "a.b"][..],
                "--as",
            ),
            (&["get", "--store", store][..], "<DOC>"),
            (
                &["watch", "--store", store, "plan", "no-slash"][..],
                "[PATTERN]",
            ),
        ] {
            let out = super::blackboard(args);
            let (_, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(
                stderr.contains(says),
                "{args:?} should mention {says:?}: {stderr}"
            );
        }
        assert!(
            !std::path::Path::new(store).exists(),
            "a refused put created the store"
        );
        // Reading a store that does not exist does not create it either.
        let out = super::blackboard(&["get", "plan", "--store", store]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out).1.contains("no blackboard store"),
            "{:?}",
            text(&out)
        );
        assert!(!std::path::Path::new(store).exists());
    }

    #[tokio::test]
    async fn the_cli_reads_the_embedded_store_an_sdk_application_wrote() {
        let dir = tempfile::tempdir().unwrap();
        // An application on the SDK: its embedded board in DIR, written and closed.
        let board = Options::new("app")
            .unwrap()
            .store(dir.path())
            .embedded()
            .await
            .unwrap();
        let plan = board.doc("team", "plan").unwrap();
        plan.put_with_message("/greeting", json!("hello from the app"), "say hello")
            .await
            .unwrap();
        plan.flush().await.unwrap();
        drop(plan);
        board.close().await.unwrap();

        let store = dir.path().to_str().unwrap().to_owned();
        let on_store = |args: &[&str]| {
            let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            all.extend(["--store", &store, "--space", "team"].map(String::from));
            all
        };
        let greeting = ok(on_store(&["get", "plan", "/greeting", "--json"])).await;
        assert_eq!(greeting, "\"hello from the app\"\n");
        let listed = ok(on_store(&["ls", "--json"])).await;
        assert_eq!(
            json(&listed),
            json!({"space": "team", "document": "plan", "events": 1})
        );
        let history = json_lines(&ok(on_store(&["history", "plan", "--json"])).await);
        assert_eq!(history.len(), 1);
        assert_eq!(
            (&history[0]["agent"], &history[0]["message"]),
            (&json!("app"), &json!("say hello"))
        );

        // And the application reopens its store afterwards, with a CLI write in it.
        ok(on_store(&[
            "put",
            "plan",
            "/reply",
            r#""hello from the cli""#,
        ]))
        .await;
        let board = Options::new("app")
            .unwrap()
            .store(dir.path())
            .embedded()
            .await
            .unwrap();
        let plan = board.doc("team", "plan").unwrap();
        plan.sync().await.unwrap();
        assert_eq!(
            plan.get("/reply").unwrap(),
            Some(json!("hello from the cli"))
        );
    }

    /// Runs the command with `NATS_URL` set to `url`.
    async fn run_with_nats_url(args: &[&str], url: &str) -> Output {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || {
            super::command()
                .args(&args)
                .env("NATS_URL", url)
                .output()
                .expect("the blackboard binary runs")
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn nats_url_names_the_server_when_no_flag_does_and_a_store_alone_stays_embedded() {
        let server = blackboard_tests::NatsServer::start().await.unwrap();
        let url = server.url();
        let put = run_with_nats_url(&["put", "plan", "/x", "1", "--space", "team"], &url).await;
        assert!(put.status.success(), "{:?}", text(&put));
        // The write is on the server: --nats reads it back.
        let x = ok(on(&url, &["get", "plan", "/x", "--json"])).await;
        assert_eq!(x, "1\n");
        let get = run_with_nats_url(&["get", "plan", "/x", "--space", "team"], &url).await;
        assert_eq!(text(&get).0.trim(), "1", "{:?}", text(&get));

        // An explicit --store without --nats is the embedded log, whatever NATS_URL says.
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("local");
        let store = store.to_str().unwrap();
        let put = [
            "put", "plan", "/y", "2", "--space", "team", "--store", store,
        ];
        let out = run_with_nats_url(&put, &url).await;
        assert!(out.status.success(), "{:?}", text(&out));
        let local = ["get", "plan", "--json", "--space", "team", "--store", store];
        let out = run_with_nats_url(&local, &url).await;
        assert_eq!(json(&text(&out).0), json!({"y": 2}), "{:?}", text(&out));
        let on_server = ok(on(&url, &["get", "plan", "--json"])).await;
        assert_eq!(json(&on_server), json!({"x": 1}));
    }

    #[tokio::test]
    async fn watch_from_beginning_prints_the_whole_history_then_follows_live_changes() {
        let server = blackboard_tests::NatsServer::start().await.unwrap();
        let url = server.url();
        ok(on(&url, &["put", "plan", "/status", r#""open""#])).await;
        ok(on(&url, &["put", "plan", "/status", r#""doing""#])).await;

        let args = on(
            &url,
            &[
                "watch",
                "plan",
                "--from",
                "beginning",
                "--count",
                "3",
                "--json",
            ],
        );
        let watcher = tokio::task::spawn_blocking(move || Watcher::start(args))
            .await
            .unwrap();
        // Written after the watch listens: reported live, after the two from the history.
        ok(on(
            &url,
            &["put", "plan", "/status", r#""done""#, "--as", "alice"],
        ))
        .await;
        let (status, stdout, stderr) = watcher.finish().await;
        assert!(status.success(), "{stdout}\n{stderr}");
        assert!(stderr.contains("from the beginning"), "{stderr}");
        let seen: Vec<(u64, Value)> = json_lines(&stdout)
            .iter()
            .map(|e| (e["seq"].as_u64().unwrap(), e["patches"][0]["value"].clone()))
            .collect();
        assert_eq!(
            seen,
            [(1, json!("open")), (2, json!("doing")), (3, json!("done"))]
        );
    }
}

// ---- Truthful answers (issue 14 §2, §5, §7) -------------------------------------------

mod truthful {
    use serde_json::Value;

    use super::{command, text};

    /// Runs the command off the async runtime, with `env` set.
    async fn run(args: Vec<String>, env: &[(&str, &str)]) -> std::process::Output {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || {
            command()
                .args(&args)
                .envs(env)
                .output()
                .expect("the blackboard binary runs")
        })
        .await
        .unwrap()
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn a_put_the_log_cannot_acknowledge_exits_3_saying_it_is_written_and_is_published_later()
    {
        let mut server = blackboard_tests::NatsServer::start().await.unwrap();
        let url = server.url();
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let store = store.to_str().unwrap();
        server.stop().await;

        // With a store of its own the write goes to it while the server is down.
        let out = run(
            args(&[
                "put",
                "--nats",
                &url,
                "--store",
                store,
                "--space",
                "team",
                "--timeout",
                "2",
                "--json",
                "plan",
                "/k",
                "1",
            ]),
            &[],
        )
        .await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
        let report: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(report["acknowledged"], false, "{report}");
        assert_eq!(report["seq"], Value::Null, "{report}");
        assert!(report["hash"].is_string(), "{report}");
        assert!(
            stderr.contains("written (durable locally), not yet acknowledged"),
            "{stderr}"
        );

        // Without one, it needs the server: exit 1, and nothing was written.
        let out = run(
            args(&[
                "put",
                "--nats",
                &url,
                "--space",
                "team",
                "--timeout",
                "1",
                "plan",
                "/lost",
                "1",
            ]),
            &[],
        )
        .await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(stderr.contains("cannot connect to NATS"), "{stderr}");

        // Opening the store with the server up publishes the change: a fresh reader with
        // no store of its own reads it from the log.
        server.restart().await.unwrap();
        let out = run(
            args(&[
                "get", "--nats", &url, "--store", store, "--space", "team", "plan", "/k",
            ]),
            &[],
        )
        .await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let out = run(
            args(&["get", "--nats", &url, "--space", "team", "--json", "plan"]),
            &[],
        )
        .await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert_eq!(stdout.trim(), r#"{"k":1}"#, "{stderr}");

        // An acknowledged put exits 0 and says so.
        let out = run(
            args(&[
                "put", "--nats", &url, "--space", "team", "--json", "plan", "/k", "2",
            ]),
            &[],
        )
        .await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        let report: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(report["acknowledged"], true, "{report}");
        assert!(report["seq"].is_u64(), "{report}");
    }

    #[tokio::test]
    async fn get_reads_the_current_state_without_forking_and_logs_carry_no_colour_codes() {
        let server = blackboard_tests::NatsServer::start().await.unwrap();
        let url = server.url();
        for v in ["1", "2"] {
            let out = run(
                args(&["put", "--nats", &url, "--space", "team", "plan", "/k", v]),
                &[],
            )
            .await;
            assert!(out.status.success(), "{:?}", text(&out));
        }
        let debug = [("RUST_LOG", "blackboard_cli=debug,blackboard=debug")];
        let current = run(
            args(&["get", "--nats", &url, "--space", "team", "--json", "plan"]),
            &debug,
        )
        .await;
        let (stdout, stderr) = text(&current);
        assert!(current.status.success(), "{stdout}\n{stderr}");
        assert_eq!(stdout.trim(), r#"{"k":2}"#);
        assert!(!stderr.contains("forking"), "{stderr}");
        // Debug lines were written (to a pipe): none has an escape code.
        assert!(stderr.contains("DEBUG"), "{stderr}");
        assert!(!stderr.contains('\u{1b}'), "{stderr:?}");

        // An earlier position is a fork, and shows the earlier value.
        let earlier = run(
            args(&[
                "get", "--nats", &url, "--space", "team", "--json", "--at", "1", "plan",
            ]),
            &debug,
        )
        .await;
        let (stdout, stderr) = text(&earlier);
        assert!(earlier.status.success(), "{stdout}\n{stderr}");
        assert_eq!(stdout.trim(), r#"{"k":1}"#);
        assert!(stderr.contains("forking"), "{stderr}");

        // --at naming the current position reads it as it is.
        let latest = run(
            args(&[
                "show", "--nats", &url, "--space", "team", "--json", "--at", "2", "plan",
            ]),
            &debug,
        )
        .await;
        let (stdout, stderr) = text(&latest);
        assert!(latest.status.success(), "{stdout}\n{stderr}");
        assert_eq!(stdout.trim(), r#"{"k":2}"#);
        assert!(!stderr.contains("forking"), "{stderr}");
    }
}

#[test]
fn bench_and_the_board_verbs_show_nats_creds_and_key_in_the_same_words() {
    // Each flag's line of the short help (`-h`: one line a flag), spaced alike (the column
    // of the descriptions depends on the verb's other flags).
    let flags = |verb: &str| -> Vec<String> {
        let out = blackboard(&[verb, "-h"]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{verb}: {stdout}\n{stderr}");
        ["--nats <URL>", "--creds <FILE>", "--key <FILE>"]
            .iter()
            .map(|flag| {
                let line = stdout
                    .lines()
                    .find(|l| l.trim_start().starts_with(flag))
                    .unwrap_or_else(|| panic!("{verb} -h does not show {flag}:\n{stdout}"));
                line.split_whitespace().collect::<Vec<_>>().join(" ")
            })
            .collect()
    };
    let bench = flags("bench");
    for verb in ["put", "get", "watch", "history", "demo", "mcp"] {
        assert_eq!(flags(verb), bench, "{verb} and bench differ");
    }
    // The environment variables each reads, said in the help.
    for (line, var) in bench
        .iter()
        .zip(["$NATS_URL", "$NATS_CREDS", "$BLACKBOARD_KEY"])
    {
        assert!(line.contains(var), "{line}");
    }
}
