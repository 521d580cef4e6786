//! The MCP second pass (issue 17), each through the rmcp client against the real binary
//! and a real nats-server: a write made while the log restarts is answered (never an error)
//! and a keyed retry is not applied twice; put's merge and replace; positions ahead of the
//! document refused; arguments and unknown tools named; the depth limit; re-claiming your
//! own claim; titles and annotations.

use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt as _};
use serde_json::{json, Value as Json};

const SPACE: &str = "team";
const GUARD: Duration = Duration::from_secs(60);

/// One agent: a `blackboard mcp` process and the client talking to it.
struct Agent {
    client: RunningService<RoleClient, ()>,
}

/// `blackboard mcp` as agent `name` on the space, with none of the test's own environment
/// naming a server.
fn mcp_command(url: &str, name: &str, more: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_blackboard"));
    cmd.env_remove("NATS_URL").env_remove("NATS_CREDS");
    cmd.args(["mcp", "--agent", name, "--space", SPACE, "--nats", url]);
    cmd.args(more);
    cmd
}

async fn agent(url: &str, name: &str, more: &[&str]) -> Agent {
    agent_and_pid(url, name, more).await.0
}

impl Agent {
    async fn call(&self, tool: &str, args: Json) -> CallToolResult {
        let Json::Object(args) = args else {
            panic!("arguments must be an object")
        };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
        tokio::time::timeout(GUARD, self.client.call_tool(params))
            .await
            .unwrap_or_else(|_| panic!("{tool} answers in time"))
            .unwrap_or_else(|e| panic!("{tool} is a well-formed call: {e}"))
    }

    /// Calls `tool` and returns its JSON answer, failing the test on a tool error.
    async fn ok(&self, tool: &str, args: Json) -> Json {
        let r = self.call(tool, args).await;
        assert_ne!(r.is_error, Some(true), "{tool} failed: {}", text(&r));
        let t = text(&r);
        r.structured_content
            .unwrap_or_else(|| panic!("{tool} answers with JSON: {t}"))
    }

    /// Calls `tool` expecting a tool error; returns its message.
    async fn err(&self, tool: &str, args: Json) -> String {
        let r = self.call(tool, args).await;
        assert_eq!(r.is_error, Some(true), "{tool} should fail: {}", text(&r));
        text(&r)
    }
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_write_made_while_the_log_restarts_is_answered_and_a_keyed_retry_is_not_applied_twice() {
    let mut nats = blackboard_tests::NatsServer::start().await.unwrap();
    let alice = agent(&nats.url(), "alice", &["--timeout", "8"]).await;
    alice
        .ok(
            "increment",
            json!({"document": "stats", "path": "/done", "reason": "the first task done"}),
        )
        .await;

    // The log goes away in the middle of the next write: the write is made locally, so
    // the answer says so and is not an error a model would "try again" on.
    nats.stop().await;
    let args = json!({"document": "stats", "path": "/done", "reason": "the second task done",
                      "idempotency_key": "task-2-done"});
    let first = alice.ok("increment", args.clone()).await;
    assert_eq!(first["acknowledged"], json!(false), "{first}");
    assert_eq!(first["value"], json!(2), "{first}");
    assert!(
        first["status"]
            .as_str()
            .unwrap()
            .contains("durable locally"),
        "{first}"
    );
    nats.restart().await.unwrap();

    // The model retries, as it might after a lost answer: the same key is answered from
    // the first call and nothing is written again.
    let retry = alice.ok("increment", args).await;
    assert_eq!(retry["replayed"], json!(true), "{retry}");
    assert_eq!(retry["change"], first["change"], "{retry}");
    // The same key for a different write is refused, naming the key.
    let reused = alice
        .err(
            "increment",
            json!({"document": "stats", "path": "/done", "by": 5, "reason": "more",
                   "idempotency_key": "task-2-done"}),
        )
        .await;
    assert!(reused.contains("task-2-done"), "{reused}");

    // A later write waits for the log, which then holds the queued one too.
    let later = alice
        .ok(
            "put",
            json!({"document": "stats", "path": "/note", "value": "log back", "reason": "check"}),
        )
        .await;
    assert_eq!(later["acknowledged"], json!(true), "{later}");
    let bob = agent(&nats.url(), "bob", &[]).await;
    let read = bob
        .ok("read", json!({"document": "stats", "path": "/done"}))
        .await;
    assert_eq!(read["value"], json!(2), "counted once: {read}");
}

/// Kills the server with process id `pid` with SIGKILL: no chance to save anything.
fn kill9(pid: u32) {
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

/// Like [`agent`], and the server's process id, to kill it.
async fn agent_and_pid(url: &str, name: &str, more: &[&str]) -> (Agent, u32) {
    let cmd = mcp_command(url, name, more);
    let transport = TokioChildProcess::new(cmd).expect("the blackboard binary starts");
    let pid = transport.id().expect("the server runs");
    let client = tokio::time::timeout(GUARD, ().serve(transport))
        .await
        .expect("the server initializes in time")
        .expect("the MCP session starts");
    (Agent { client }, pid)
}

#[tokio::test]
async fn a_keyed_retry_after_the_server_is_killed_and_restarted_on_its_store_is_replayed() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let store = tempfile::tempdir().unwrap();
    let store_arg = store.path().to_str().unwrap();
    let (alice, pid) = agent_and_pid(&nats.url(), "alice", &["--store", store_arg]).await;
    let args = json!({"document": "stats", "path": "/done", "reason": "task 7 done",
                      "idempotency_key": "task-7-done"});
    let first = alice.ok("increment", args.clone()).await;
    assert_eq!(first["value"], json!(1), "{first}");

    // The server dies without a chance to save anything (SIGKILL), and starts again on the
    // same store.
    kill9(pid);
    drop(alice);
    let (alice, _) = agent_and_pid(&nats.url(), "alice", &["--store", store_arg]).await;

    let retry = alice.ok("increment", args).await;
    assert_eq!(retry["replayed"], json!(true), "{retry}");
    assert_eq!(retry["change"], first["change"], "{retry}");
    // The same key for another write is still refused after the restart.
    let reused = alice
        .err(
            "increment",
            json!({"document": "stats", "path": "/done", "by": 3, "reason": "more",
                   "idempotency_key": "task-7-done"}),
        )
        .await;
    assert!(reused.contains("different write"), "{reused}");
    let bob = agent(&nats.url(), "bob", &[]).await;
    let read = bob
        .ok("read", json!({"document": "stats", "path": "/done"}))
        .await;
    assert_eq!(read["value"], json!(1), "counted once: {read}");
}

#[tokio::test]
async fn a_keyed_write_whose_answer_was_not_recorded_before_a_crash_is_refused_not_made_again() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let store = tempfile::tempdir().unwrap();
    let store_arg = store.path().to_str().unwrap();
    let (alice, pid) = agent_and_pid(&nats.url(), "alice", &["--store", store_arg]).await;
    let args = json!({"document": "stats", "path": "/done", "reason": "task 8 done",
                      "idempotency_key": "task-8-done"});
    alice.ok("increment", args.clone()).await;
    kill9(pid);
    drop(alice);
    // The crash came between the write and the record of its answer: the journal ends with
    // the key's first line (written before the write), not its answer.
    let journal = store.path().join(format!("mcp-keys-{SPACE}.jsonl"));
    let text = std::fs::read_to_string(&journal).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "the key, then its answer: {text}");
    assert!(!lines[0].contains("\"answer\""), "{text}");
    std::fs::write(&journal, format!("{}\n", lines[0])).unwrap();

    let (alice, _) = agent_and_pid(&nats.url(), "alice", &["--store", store_arg]).await;
    let refused = alice.err("increment", args).await;
    assert!(
        refused.contains("may or may not have been made"),
        "{refused}"
    );
    let read = alice
        .ok("read", json!({"document": "stats", "path": "/done"}))
        .await;
    assert_eq!(read["value"], json!(1), "not made twice: {read}");
}

#[tokio::test]
async fn put_merges_objects_says_when_nothing_changed_and_replace_replaces() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let alice = agent(&nats.url(), "alice", &[]).await;
    let put = |path: &str, value: Json, more: Json| {
        let mut args = json!({"document": "d", "path": path, "value": value, "reason": "test"});
        args.as_object_mut()
            .unwrap()
            .extend(more.as_object().unwrap().clone());
        args
    };
    alice
        .ok("put", put("/", json!({"a": 1, "m": {"x": 1}}), json!({})))
        .await;
    let nothing = alice.ok("put", put("/", json!({}), json!({}))).await;
    let note = nothing["note"].as_str().unwrap();
    assert!(note.contains("merged"), "{note}");
    assert!(!note.contains("already held this"), "{note}");
    alice.ok("put", put("/m", json!({"y": 2}), json!({}))).await;
    let read = alice.ok("read", json!({"document": "d"})).await;
    assert_eq!(read["value"], json!({"a": 1, "m": {"x": 1, "y": 2}}));
    alice
        .ok("put", put("/m", json!({"z": 3}), json!({"replace": true})))
        .await;
    let read = alice.ok("read", json!({"document": "d"})).await;
    assert_eq!(read["value"], json!({"a": 1, "m": {"z": 3}}));
    let e = alice
        .err("put", put("/", json!({}), json!({"replace": true})))
        .await;
    assert!(e.contains("not for /"), "{e}");

    let tools = alice.client.list_all_tools().await.unwrap();
    let described = tools.iter().find(|t| t.name == "put").unwrap();
    let description = described.description.as_deref().unwrap();
    assert!(description.contains("merged key by key"), "{description}");
    assert!(description.contains("100 levels"), "{description}");
}

#[tokio::test]
async fn positions_ahead_of_the_document_are_refused_naming_the_argument() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let alice = agent(&nats.url(), "alice", &[]).await;
    let written = alice
        .ok(
            "put",
            json!({"document": "d", "path": "/a", "value": 1, "reason": "start"}),
        )
        .await;
    let now = written["position"]["seq"].as_u64().unwrap();
    let ahead = now + 100;
    let e = alice
        .err("read", json!({"document": "d", "at": ahead}))
        .await;
    assert!(e.contains("argument `at`") && e.contains("ahead"), "{e}");
    let e = alice
        .err(
            "wait_for_change",
            json!({"document": "d", "since": ahead, "timeout_seconds": 1}),
        )
        .await;
    assert!(e.contains("argument `since`") && e.contains("ahead"), "{e}");
    let e = alice
        .err(
            "put",
            json!({"document": "d", "path": "/a", "value": 2, "reason": "x", "read_at": ahead}),
        )
        .await;
    assert!(
        e.contains("argument `read_at`") && e.contains("nothing was written"),
        "{e}"
    );
    let read = alice.ok("read", json!({"document": "d"})).await;
    assert_eq!(read["value"], json!({"a": 1}));
}

#[tokio::test]
async fn wrong_argument_types_name_the_argument_and_an_unknown_tool_is_named() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let alice = agent(&nats.url(), "alice", &[]).await;
    alice
        .ok(
            "put",
            json!({"document": "d", "path": "/a", "value": 1, "reason": "start"}),
        )
        .await;
    let cases = [
        (
            "put",
            json!({"document": "d", "path": "/a", "value": 1, "reason": "x", "read_at": "abc"}),
            "argument `read_at` of put",
        ),
        (
            "increment",
            json!({"document": "d", "path": "/n", "reason": "x", "by": "two"}),
            "argument `by` of increment",
        ),
        (
            "splice_text",
            json!({"document": "d", "path": "/t", "reason": "x", "position": -1}),
            "argument `position` of splice_text",
        ),
        (
            "read",
            json!({"document": 7}),
            "argument `document` of read",
        ),
        (
            "history",
            json!({"document": "d", "limit": "all"}),
            "argument `limit` of history",
        ),
    ];
    for (tool, args, says) in cases {
        let e = alice.err(tool, args.clone()).await;
        assert!(e.contains(says), "{tool} {args}: {e}");
    }
    let Json::Object(args) = json!({}) else {
        unreachable!()
    };
    let unknown = alice
        .client
        .call_tool(CallToolRequestParams::new("frobnicate").with_arguments(args))
        .await
        .expect_err("an unknown tool is refused");
    let unknown = unknown.to_string();
    assert!(unknown.contains("frobnicate"), "{unknown}");
    assert!(unknown.contains("wait_for_change"), "{unknown}");
}

#[tokio::test]
async fn a_value_nested_deeper_than_the_limit_is_refused_naming_the_limit() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let alice = agent(&nats.url(), "alice", &[]).await;
    // Deeper than the tools' limit, shallow enough to parse: the tool refuses it.
    let mut deep = json!("bottom");
    for _ in 0..103 {
        deep = json!([deep]);
    }
    let e = alice
        .err(
            "put",
            json!({"document": "d", "path": "/deep", "value": deep, "reason": "too deep"}),
        )
        .await;
    assert!(e.contains("at most 100 levels"), "{e}");
    // Still answering, and nothing was written.
    let listed = alice.ok("list_documents", json!({})).await;
    assert_eq!(listed["documents"], json!([]));
}

#[tokio::test]
async fn claiming_again_what_you_hold_renews_it_and_another_server_with_your_name_is_told() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let bob = agent(&nats.url(), "bob", &[]).await;
    let first = bob
        .ok("claim", json!({"resource": "task-3", "ttl_seconds": 30}))
        .await;
    let again = bob
        .ok("claim", json!({"resource": "task-3", "ttl_seconds": 30}))
        .await;
    assert_eq!(again["renewed"], json!(true), "{again}");
    assert_eq!(again["holder"], json!("bob"));
    assert!(again["expires"].as_str() >= first["expires"].as_str());

    let twin = agent(&nats.url(), "bob", &[]).await;
    let e = twin.err("claim", json!({"resource": "task-3"})).await;
    assert!(e.contains("another session"), "{e}");
    assert!(e.contains("--agent"), "{e}");
}

#[tokio::test]
async fn every_tool_has_a_title_and_annotations_that_tell_reads_from_writes() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let alice = agent(&nats.url(), "alice", &[]).await;
    let tools = alice.client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 15);
    for tool in &tools {
        let hints = serde_json::to_value(tool.annotations.as_ref().unwrap()).unwrap();
        assert!(tool.title.is_some(), "{} has a title", tool.name);
        let output = tool.output_schema.as_ref().expect("an output schema");
        assert_eq!(output["type"], json!("object"), "{}", tool.name);
        assert_eq!(hints["openWorldHint"], json!(false), "{}", tool.name);
        let read_only = [
            "list_documents",
            "read",
            "wait_for_change",
            "history",
            "diff",
            "blame",
            "presence",
        ]
        .contains(&tool.name.as_ref());
        assert_eq!(hints["readOnlyHint"], json!(read_only), "{}", tool.name);
    }
    let hint = |name: &str, key: &str| {
        let tool = tools.iter().find(|t| t.name == name).unwrap();
        serde_json::to_value(tool.annotations.as_ref().unwrap()).unwrap()[key].clone()
    };
    assert_eq!(hint("delete", "destructiveHint"), json!(true));
    assert_eq!(hint("append", "destructiveHint"), json!(false));
    assert_eq!(hint("put", "idempotentHint"), json!(true));
    assert_eq!(hint("increment", "idempotentHint"), json!(false));

    // A real answer has every field its output schema requires.
    let written = alice
        .ok(
            "put",
            json!({"document": "d", "path": "/a", "value": 1, "reason": "schema"}),
        )
        .await;
    let put = tools.iter().find(|t| t.name == "put").unwrap();
    for field in put.output_schema.as_ref().unwrap()["required"]
        .as_array()
        .unwrap()
    {
        assert!(
            written.get(field.as_str().unwrap()).is_some(),
            "{field} in {written}"
        );
    }
}

#[tokio::test]
async fn a_message_nested_too_deep_to_parse_gets_an_error_naming_the_limit_over_stdio() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let alice = agent(&nats.url(), "alice", &[]).await;
    let mut deep = json!("bottom");
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let Json::Object(args) =
        json!({"document": "d", "path": "/deep", "value": deep, "reason": "too deep"})
    else {
        unreachable!()
    };
    let refused = tokio::time::timeout(
        GUARD,
        alice
            .client
            .call_tool(CallToolRequestParams::new("put").with_arguments(args)),
    )
    .await
    .expect("a too-deep request is answered")
    .expect_err("a too-deep request is refused");
    let refused = refused.to_string();
    assert!(refused.contains("at most 100 levels"), "{refused}");
    // The session goes on.
    let listed = alice.ok("list_documents", json!({})).await;
    assert_eq!(listed["documents"], json!([]));
}

#[tokio::test]
async fn a_second_server_with_an_agent_name_already_present_is_warned_at_start() {
    use tokio::io::AsyncBufReadExt as _;
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let _bob = agent(&nats.url(), "bob", &[]).await;
    let mut twin = mcp_command(&nats.url(), "bob", &[])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(twin.stderr.take().unwrap()).lines();
    let warning = tokio::time::timeout(GUARD, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("warning") {
                return line;
            }
        }
        panic!("the server exited without a warning");
    })
    .await
    .expect("the warning comes at start");
    assert!(
        warning.contains("agent bob is already present"),
        "{warning}"
    );
    assert!(warning.contains("--agent"), "{warning}");
}

/// Forwards every `notifications/progress` to the test.
#[derive(Debug, Clone)]
struct Progress(tokio::sync::mpsc::UnboundedSender<rmcp::model::ProgressNotificationParam>);

impl rmcp::ClientHandler for Progress {
    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(params);
    }
}

#[tokio::test]
async fn a_long_wait_with_a_progress_token_sends_progress_notifications() {
    use rmcp::model::{NumberOrString, ProgressToken, RequestMetaObject};
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let alice = agent(&nats.url(), "alice", &[]).await;
    alice
        .ok(
            "put",
            json!({"document": "d", "path": "/a", "value": 1, "reason": "start"}),
        )
        .await;
    let cmd = mcp_command(&nats.url(), "bob", &[]);
    let (tx, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let bob = Progress(tx)
        .serve(TokioChildProcess::new(cmd).unwrap())
        .await
        .unwrap();
    let Json::Object(args) = json!({"document": "d", "timeout_seconds": 6}) else {
        unreachable!()
    };
    let token = ProgressToken(NumberOrString::String("wait-1".into()));
    let mut params = CallToolRequestParams::new("wait_for_change").with_arguments(args);
    params.meta = Some(RequestMetaObject::with_progress_token(token));
    let answer = tokio::time::timeout(GUARD, bob.call_tool(params))
        .await
        .expect("the wait ends by its timeout")
        .unwrap();
    assert_eq!(answer.structured_content.unwrap()["changed"], json!(false));
    let note = progress
        .try_recv()
        .expect("a progress notification during the wait");
    // (rmcp's client puts a progress token of its own numbering in the request.)
    assert_eq!(note.total, Some(6.0));
    assert!(
        note.message.as_deref().unwrap_or("").contains("waited"),
        "{note:?}"
    );
}

/// Forwards every `notifications/resources/list_changed` to the test.
#[derive(Debug, Clone)]
struct ListChanged(tokio::sync::mpsc::UnboundedSender<()>);

impl rmcp::ClientHandler for ListChanged {
    async fn on_resource_list_changed(
        &self,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(());
    }
}

#[tokio::test]
async fn documents_are_a_resource_template_and_a_new_document_is_announced() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let cmd = mcp_command(&nats.url(), "alice", &[]);
    let (tx, mut changed) = tokio::sync::mpsc::unbounded_channel();
    let alice = ListChanged(tx)
        .serve(TokioChildProcess::new(cmd).unwrap())
        .await
        .unwrap();
    let capabilities = alice.peer_info().unwrap().capabilities.clone();
    let resources = capabilities.resources.unwrap();
    assert_eq!(resources.list_changed, Some(true));
    let templates = alice.list_all_resource_templates().await.unwrap();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].uri_template, "blackboard://team/{document}");

    let bob = agent(&nats.url(), "bob", &[]).await;
    bob.ok(
        "put",
        json!({"document": "fresh", "path": "/a", "value": 1, "reason": "a new document"}),
    )
    .await;
    tokio::time::timeout(GUARD, changed.recv())
        .await
        .expect("the new document is announced")
        .expect("the session is open");
    let listed = alice.list_all_resources().await.unwrap();
    assert!(
        listed.iter().any(|r| r.uri == "blackboard://team/fresh"),
        "{listed:?}"
    );
}

#[tokio::test]
async fn finding_new_documents_does_not_open_every_document_of_the_space() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let bob = agent(&nats.url(), "bob", &[]).await;
    for n in 0..20 {
        bob.ok(
            "put",
            json!({"document": format!("d{n}"), "path": "/n", "value": n, "reason": "fill"}),
        )
        .await;
    }
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url()).await.unwrap());
    let consumers = || async {
        js.get_stream("BB_team")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .consumer_count
    };
    let before = consumers().await;

    // Alice's server announces a new document once it has gone through the space's names,
    // existing documents first.
    let cmd = mcp_command(&nats.url(), "alice", &[]);
    let (tx, mut changed) = tokio::sync::mpsc::unbounded_channel();
    let _alice = ListChanged(tx)
        .serve(TokioChildProcess::new(cmd).unwrap())
        .await
        .unwrap();
    bob.ok(
        "put",
        json!({"document": "fresh", "path": "/a", "value": 1, "reason": "a new document"}),
    )
    .await;
    tokio::time::timeout(GUARD, changed.recv())
        .await
        .expect("the new document is announced")
        .expect("the session is open");

    // It did so by name: a few subscriptions (names, and bob's new document), not one
    // replica following each of the 21 documents.
    let after = consumers().await;
    assert!(
        after <= before + 4,
        "{before} consumers before alice's server, {after} after"
    );
}

#[tokio::test]
async fn prompts_walk_an_agent_through_joining_picking_up_and_handing_off() {
    use rmcp::model::GetPromptRequestParams;
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let alice = agent(&nats.url(), "alice", &[]).await;
    let prompts = alice.client.list_all_prompts().await.unwrap();
    let mut names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["hand_off", "join_board", "pick_up_a_task"]);
    let Json::Object(args) = json!({"task": "task-3", "to": "bob"}) else {
        unreachable!()
    };
    let hand_off = alice
        .client
        .get_prompt(GetPromptRequestParams::new("hand_off").with_arguments(args))
        .await
        .unwrap();
    let text = serde_json::to_string(&hand_off.messages).unwrap();
    assert!(
        text.contains("task-3") && text.contains("agent bob"),
        "{text}"
    );
    assert!(text.contains("`release`"), "{text}");
}
