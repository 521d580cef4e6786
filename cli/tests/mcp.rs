//! `blackboard mcp`, driven by the real rmcp client over stdio against a real nats-server:
//! tools, positions, stale-read warnings, claims, subscriptions, two agents, bad input.

use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ReadResourceRequestParams,
    ResourceUpdatedNotificationParam, SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt as _};
use serde_json::{json, Value as Json};
use tokio::sync::mpsc;

/// Forwards every `notifications/resources/updated` to the test.
#[derive(Debug, Clone)]
struct Listener(mpsc::UnboundedSender<String>);

impl ClientHandler for Listener {
    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(params.uri);
    }
}

/// One agent: a `blackboard mcp` process and the client talking to it.
struct Agent {
    client: RunningService<RoleClient, Listener>,
    updates: mpsc::UnboundedReceiver<String>,
}

const SPACE: &str = "team";
const GUARD: Duration = Duration::from_secs(30);

async fn agent(url: &str, name: &str) -> Agent {
    agent_with(url, name, &[]).await
}

/// Like [`agent`], with more arguments for `blackboard mcp`.
async fn agent_with(url: &str, name: &str, more: &[&str]) -> Agent {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_blackboard"));
    cmd.env_remove("NATS_URL").env_remove("NATS_CREDS");
    cmd.args(["mcp", "--agent", name, "--space", SPACE, "--nats", url]);
    cmd.args(more);
    let transport = TokioChildProcess::new(cmd).expect("the blackboard binary starts");
    let (tx, updates) = mpsc::unbounded_channel();
    let client = tokio::time::timeout(GUARD, Listener(tx).serve(transport))
        .await
        .expect("the server initializes in time")
        .expect("the MCP session starts");
    Agent { client, updates }
}

impl Agent {
    async fn call(&self, tool: &str, args: Json) -> CallToolResult {
        let Json::Object(args) = args else {
            panic!("arguments must be an object")
        };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
        tokio::time::timeout(GUARD * 2, self.client.call_tool(params))
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

    async fn next_update(&mut self) -> String {
        tokio::time::timeout(GUARD, self.updates.recv())
            .await
            .expect("a resources/updated notification arrives in time")
            .expect("the session is open")
    }
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn seq(answer: &Json) -> u64 {
    answer["position"]["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("a position in {answer}"))
}

#[tokio::test]
async fn a_client_lists_the_tools_writes_and_reads_with_positions() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let planner = agent(&nats.url(), "planner").await;

    let tools = planner.client.list_all_tools().await.unwrap();
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "append",
            "blame",
            "claim",
            "delete",
            "diff",
            "history",
            "increment",
            "list_documents",
            "presence",
            "put",
            "read",
            "release",
            "renew",
            "splice_text",
            "wait_for_change",
        ]
    );
    let put = tools.iter().find(|t| t.name == "put").unwrap();
    let required = put.input_schema["required"].as_array().unwrap();
    assert!(required.contains(&json!("reason")), "{required:?}");

    let written = planner
        .ok(
            "put",
            json!({"document": "tasks", "path": "/t1", "value": {"title": "write the plan", "status": "open"},
                   "reason": "the first task"}),
        )
        .await;
    let after_put = seq(&written);
    assert!(after_put > 0, "{written}");
    planner
        .ok(
            "append",
            json!({"document": "tasks", "path": "/log", "value": "t1 created", "reason": "log it"}),
        )
        .await;
    planner
        .ok(
            "increment",
            json!({"document": "tasks", "path": "/stats/open", "reason": "one more open task"}),
        )
        .await;
    let spliced = planner
        .ok(
            "splice_text",
            json!({"document": "tasks", "path": "/notes", "insert": "hello", "reason": "notes"}),
        )
        .await;

    let read = planner.ok("read", json!({"document": "tasks"})).await;
    assert_eq!(
        read["value"],
        json!({"t1": {"title": "write the plan", "status": "open"}, "log": ["t1 created"],
               "stats": {"open": 1}, "notes": "hello"})
    );
    assert_eq!(seq(&read), seq(&spliced));
    let status = planner
        .ok("read", json!({"document": "tasks", "path": "/t1/status"}))
        .await;
    assert_eq!(status["value"], json!("open"));
    // A read at a past position sees the document as it was then.
    let past = planner
        .ok("read", json!({"document": "tasks", "at": after_put}))
        .await;
    assert_eq!(
        past["value"],
        json!({"t1": {"title": "write the plan", "status": "open"}})
    );
    assert_eq!(seq(&past), after_put);

    let listed = planner.ok("list_documents", json!({})).await;
    assert_eq!(listed["documents"][0]["document"], json!("tasks"));
    // Four writes, nine events: each container a write created (/t1, the /log list, the
    // /stats map and its counter, the /notes text) is an event of its own, the container
    // recipe's creation, with no reason.
    assert_eq!(listed["documents"][0]["events"], json!(9));

    let history = planner.ok("history", json!({"document": "tasks"})).await;
    let events = history["events"].as_array().unwrap();
    assert_eq!(events.len(), 9);
    assert_eq!(events[0]["agent"], json!("planner"));
    assert_eq!(events[0]["reason"], json!(null));
    assert_eq!(events[1]["agent"], json!("planner"));
    assert_eq!(events[1]["reason"], json!("the first task"));
    let blame = planner
        .ok("blame", json!({"document": "tasks", "path": "/t1/status"}))
        .await;
    assert_eq!(blame["blame"]["record"]["agent"], json!("planner"));
    let diff = planner
        .ok("diff", json!({"document": "tasks", "from": after_put}))
        .await;
    assert!(!diff["changes"].as_array().unwrap().is_empty(), "{diff}");

    let here = planner.ok("presence", json!({})).await;
    assert_eq!(here["members"][0]["agent"], json!("planner"), "{here}");
    planner.client.cancel().await.unwrap();
}

#[tokio::test]
async fn two_servers_see_each_others_writes_and_history_names_each_agent_with_its_reason() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let planner = agent(&nats.url(), "planner").await;
    let worker = agent(&nats.url(), "worker").await;

    planner
        .ok(
            "put",
            json!({"document": "tasks", "path": "/t1", "value": {"status": "open"},
                          "reason": "a task for the worker"}),
        )
        .await;
    // The worker's read after the planner's acknowledged write sees it.
    let read = worker
        .ok("read", json!({"document": "tasks", "path": "/t1/status"}))
        .await;
    assert_eq!(read["value"], json!("open"));
    worker
        .ok(
            "put",
            json!({"document": "tasks", "path": "/t1/status", "value": "done",
                          "reason": "finished t1", "read_at": seq(&read)}),
        )
        .await;
    let read = planner
        .ok("read", json!({"document": "tasks", "path": "/t1/status"}))
        .await;
    assert_eq!(read["value"], json!("done"));

    let history = planner.ok("history", json!({"document": "tasks"})).await;
    let who: Vec<(Json, Json)> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["agent"].clone(), e["reason"].clone()))
        .collect();
    assert_eq!(
        who,
        [
            // The creation of /t1 by the container recipe: an event with no reason.
            (json!("planner"), json!(null)),
            (json!("planner"), json!("a task for the worker")),
            (json!("worker"), json!("finished t1")),
        ]
    );
    let members = worker.ok("presence", json!({})).await;
    let agents: Vec<&Json> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["agent"])
        .collect();
    assert_eq!(agents, [&json!("planner"), &json!("worker")]);
}

#[tokio::test]
async fn a_first_write_below_an_existing_map_keeps_what_other_agents_wrote_there() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let planner = agent(&nats.url(), "planner").await;
    let worker = agent(&nats.url(), "worker").await;
    planner
        .ok(
            "put",
            json!({"document": "board", "path": "/tasks/t1", "value": {"status": "open"},
                   "reason": "the first task"}),
        )
        .await;
    // The worker has never touched the document: its first call is a write into the map the
    // planner made. Written without the planner's map, it would make a second `tasks` map,
    // and one of the two would hide the other's keys.
    worker
        .ok(
            "put",
            json!({"document": "board", "path": "/tasks/t2", "value": {"status": "open"},
                   "reason": "a second task"}),
        )
        .await;
    for who in [&planner, &worker] {
        let read = who.ok("read", json!({"document": "board"})).await;
        assert_eq!(
            read["value"],
            json!({"tasks": {"t1": {"status": "open"}, "t2": {"status": "open"}}})
        );
    }
}

#[tokio::test]
async fn a_write_with_an_old_read_at_warns_naming_the_other_agent_and_still_merges() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let planner = agent(&nats.url(), "planner").await;
    let worker = agent(&nats.url(), "worker").await;

    planner
        .ok(
            "put",
            json!({"document": "tasks", "path": "/t1", "value": {"status": "open", "owner": null},
                          "reason": "new task"}),
        )
        .await;
    let read = worker.ok("read", json!({"document": "tasks"})).await;
    let read_at = seq(&read);
    // While the worker thinks, the planner reassigns the task.
    planner
        .ok(
            "put",
            json!({"document": "tasks", "path": "/t1/owner", "value": "reviewer",
                          "reason": "the reviewer takes t1"}),
        )
        .await;

    // A write elsewhere is not stale.
    let unrelated = worker
        .ok(
            "put",
            json!({"document": "tasks", "path": "/t2", "value": {"status": "open"},
                          "reason": "another task", "read_at": read_at}),
        )
        .await;
    assert!(unrelated.get("warning").is_none(), "{unrelated}");

    let stale = worker
        .ok("put", json!({"document": "tasks", "path": "/t1", "value": {"status": "taken", "owner": "worker"},
                          "reason": "I take t1", "read_at": read_at}))
        .await;
    let warning = stale["warning"].as_str().expect("a stale-read warning");
    assert!(warning.contains("planner"), "{warning}");
    assert!(warning.contains("/t1/owner"), "{warning}");
    assert_eq!(stale["stale"][0]["agent"], json!("planner"));
    assert_eq!(stale["stale"][0]["paths"], json!(["/t1/owner"]));
    assert_eq!(stale["stale"][0]["reason"], json!("the reviewer takes t1"));
    // The write merged anyway.
    let now = planner
        .ok("read", json!({"document": "tasks", "path": "/t1/owner"}))
        .await;
    assert_eq!(now["value"], json!("worker"));
    // Reading again and writing with the fresh position: no warning.
    let fresh = worker
        .ok(
            "put",
            json!({"document": "tasks", "path": "/t1/status", "value": "doing",
                          "reason": "started", "read_at": seq(&now)}),
        )
        .await;
    assert!(fresh.get("warning").is_none(), "{fresh}");
}

#[tokio::test]
async fn a_claim_held_by_another_agent_is_a_tool_error_naming_the_holder() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let planner = agent(&nats.url(), "planner").await;
    let worker = agent(&nats.url(), "worker").await;

    let claim = planner
        .ok("claim", json!({"resource": "task-1", "ttl_seconds": 60}))
        .await;
    assert_eq!(claim["holder"], json!("planner"));
    let refused = worker.err("claim", json!({"resource": "task-1"})).await;
    assert!(refused.contains("held by planner until"), "{refused}");
    let not_mine = worker.err("renew", json!({"resource": "task-1"})).await;
    assert!(not_mine.contains("no claim on task-1"), "{not_mine}");

    planner.ok("renew", json!({"resource": "task-1"})).await;
    planner
        .ok(
            "release",
            json!({"resource": "task-1", "note": "half done"}),
        )
        .await;
    let taken = worker.ok("claim", json!({"resource": "task-1"})).await;
    assert_eq!(taken["holder"], json!("worker"));
    assert_eq!(taken["note_from_previous_holder"], json!("half done"));
}

#[tokio::test]
async fn a_subscribed_client_is_notified_of_another_agents_change_until_it_unsubscribes() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let mut planner = agent(&nats.url(), "planner").await;
    let worker = agent(&nats.url(), "worker").await;
    planner
        .ok(
            "put",
            json!({"document": "tasks", "path": "/t1", "value": "open", "reason": "seed"}),
        )
        .await;

    let resources = planner.client.list_all_resources().await.unwrap();
    let uri = format!("blackboard://{SPACE}/tasks");
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0].uri, uri);
    assert_eq!(resources[0].mime_type.as_deref(), Some("application/json"));
    let read = planner
        .client
        .read_resource(ReadResourceRequestParams::new(uri.clone()))
        .await
        .unwrap();
    let rmcp::model::ResourceContents::TextResourceContents { text, .. } = &read.contents[0] else {
        panic!("a text resource")
    };
    assert_eq!(
        serde_json::from_str::<Json>(text).unwrap(),
        json!({"t1": "open"})
    );

    #[allow(deprecated)]
    planner
        .client
        .subscribe(SubscribeRequestParams::new(uri.clone()))
        .await
        .unwrap();
    worker
        .ok(
            "put",
            json!({"document": "tasks", "path": "/t1", "value": "done", "reason": "finished"}),
        )
        .await;
    assert_eq!(planner.next_update().await, uri);

    #[allow(deprecated)]
    planner
        .client
        .unsubscribe(UnsubscribeRequestParams::new(uri.clone()))
        .await
        .unwrap();
    while planner.updates.try_recv().is_ok() {}
    worker
        .ok(
            "put",
            json!({"document": "tasks", "path": "/t2", "value": "open", "reason": "more"}),
        )
        .await;
    // The planner's read waits until its server has applied the worker's write, which is
    // when a live subscription would notify; none came by then. (A smoke check: the
    // notification and the read's answer are not strictly ordered.)
    planner
        .ok("read", json!({"document": "tasks", "path": "/t2"}))
        .await;
    assert!(
        planner.updates.try_recv().is_err(),
        "no update after unsubscribe"
    );

    let unknown = planner
        .client
        .read_resource(ReadResourceRequestParams::new(format!(
            "blackboard://{SPACE}/nobody"
        )))
        .await;
    assert!(
        unknown.is_err(),
        "reading an unknown document's resource fails"
    );
}

#[tokio::test]
async fn wait_for_change_returns_the_matching_events_or_says_nothing_changed() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let planner = agent(&nats.url(), "planner").await;
    let worker = agent(&nats.url(), "worker").await;
    let seeded = planner
        .ok("put", json!({"document": "tasks", "path": "/t1", "value": {"status": "open"}, "reason": "seed"}))
        .await;
    let since = seq(&seeded);

    let quiet = worker
        .ok(
            "wait_for_change",
            json!({"document": "tasks", "pattern": "/t1/**",
                                      "since": since, "timeout_seconds": 1}),
        )
        .await;
    assert_eq!(quiet["changed"], json!(false), "{quiet}");

    // An event already there before the wait is returned at once.
    planner
        .ok(
            "put",
            json!({"document": "tasks", "path": "/t1/status", "value": "done", "reason": "did it"}),
        )
        .await;
    let waited = worker
        .ok(
            "wait_for_change",
            json!({"document": "tasks", "pattern": "/t1/*",
                                      "since": since, "timeout_seconds": 30}),
        )
        .await;
    assert_eq!(waited["changed"], json!(true), "{waited}");
    assert_eq!(waited["events"][0]["agent"], json!("planner"));
    assert_eq!(waited["events"][0]["reason"], json!("did it"));

    // A long poll started before the change returns when it happens.
    let since = seq(&waited);
    let (answer, _) = tokio::join!(
        worker.ok(
            "wait_for_change",
            json!({"document": "tasks", "pattern": "/t9/**",
                                            "since": since, "timeout_seconds": 60})
        ),
        async {
            // Changes elsewhere do not end the wait; this one does.
            planner
                .ok(
                    "put",
                    json!({"document": "tasks", "path": "/t2", "value": 1, "reason": "other"}),
                )
                .await;
            planner
                .ok(
                    "put",
                    json!({"document": "tasks", "path": "/t9", "value": {"x": 1}, "reason": "t9"}),
                )
                .await;
        }
    );
    assert_eq!(answer["changed"], json!(true), "{answer}");
    let paths: Vec<&Json> = answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["paths"])
        .collect();
    // The creation of the map /t9 (the container recipe), then the write into it.
    assert_eq!(paths, [&json!(["/t9"]), &json!(["/t9/x"])]);
}

#[tokio::test]
async fn bad_input_is_a_tool_error_and_the_server_keeps_answering() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let planner = agent(&nats.url(), "planner").await;
    planner
        .ok(
            "put",
            json!({"document": "tasks", "path": "/t1", "value": "open", "reason": "seed"}),
        )
        .await;

    // Each refused call, and what its message must name.
    let refused = [
        ("read", json!({"document": "nobody"}), "unknown document"),
        ("history", json!({"document": "nobody"}), "unknown document"),
        (
            "read",
            json!({"document": "tasks", "path": "t1"}),
            "bad path",
        ),
        (
            "put",
            json!({"document": "tasks", "path": "no-slash", "value": 1, "reason": "x"}),
            "bad path",
        ),
        (
            "read",
            json!({"document": "bad name!"}),
            "bad document name",
        ),
        // The root is a map: only an object can be written there.
        (
            "put",
            json!({"document": "tasks", "path": "/", "value": [1, 2], "reason": "x"}),
            "root is a map",
        ),
        // Below a string there is nothing to write into.
        (
            "put",
            json!({"document": "tasks", "path": "/t1/x", "value": 1, "reason": "x"}),
            "not a map or list",
        ),
        (
            "increment",
            json!({"document": "tasks", "path": "/t1", "reason": "x"}),
            "not a counter",
        ),
        (
            "put",
            json!({"document": "tasks", "path": "/t2", "value": 1, "reason": "  "}),
            "reason",
        ),
        (
            "wait_for_change",
            json!({"document": "tasks", "pattern": "tasks/*", "timeout_seconds": 1}),
            "bad pattern",
        ),
        (
            "read",
            json!({"document": "tasks", "at": "yesterday"}),
            "not a position",
        ),
        // Arguments that do not fit the schema: rmcp answers with a tool error naming the field.
        ("put", json!({"document": "tasks"}), "missing field `path`"),
    ];
    for (tool, args, says) in refused {
        let e = planner.err(tool, args.clone()).await;
        assert!(e.contains(says), "{tool} {args}: {e}");
    }

    // Still answering, and nothing was written by the failed calls.
    let read = planner.ok("read", json!({"document": "tasks"})).await;
    assert_eq!(read["value"], json!({"t1": "open"}));
    let history = planner.ok("history", json!({"document": "tasks"})).await;
    assert_eq!(history["events"].as_array().unwrap().len(), 1);
}

#[cfg(feature = "http")]
/// One HTTP/1.1 POST of a JSON-RPC message to the streamable HTTP endpoint; returns the
/// response head and body (the server ends a POST's event stream after its answer).
async fn post(addr: &str, token: &str, session: Option<&str>, body: &Json) -> (String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let body = body.to_string();
    let mut request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(id) = session {
        request.push_str(&format!("Mcp-Session-Id: {id}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        response
    };
    let response = tokio::time::timeout(GUARD, exchange)
        .await
        .expect("the HTTP server answers in time");
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_owned(), body.to_owned())
}

#[cfg(feature = "http")]
/// Opens an MCP session over HTTP at `addr` (initialize, initialized) and calls `put` to
/// write "hello over HTTP" at /greeting of document notes.
async fn put_over_http(addr: &str, token: &str) {
    let (head, body) = post(
        addr,
        token,
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw-http", "version": "1"}}}),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.contains("\"serverInfo\""), "{body}");
    let session = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("mcp-session-id")
                .then(|| value.trim().to_owned())
        })
        .expect("a session id");
    let (head, _) = post(
        addr,
        token,
        Some(&session),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 202"), "{head}");
    let (_, body) = post(
        addr,
        token,
        Some(&session),
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "put", "arguments": {"document": "notes", "path": "/greeting",
            "value": "hello over HTTP", "reason": "trying the HTTP transport"}}}),
    )
    .await;
    assert!(body.contains("\"isError\":false"), "{body}");
}

#[cfg(feature = "http")]
#[tokio::test]
async fn the_http_transport_serves_tools_and_sigterm_stops_it_with_the_write_kept() {
    use tokio::io::AsyncBufReadExt as _;
    let store = tempfile::tempdir().unwrap();
    let dir = store.path().to_str().unwrap().to_owned();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_blackboard"))
        .env_remove("NATS_URL")
        .args(["mcp", "--agent", "web", "--space", SPACE, "--store", &dir])
        .args(["--http", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The server names its address (the port was picked by the OS) and the token it
    // generated once it listens.
    let mut lines = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let (addr, token) = tokio::time::timeout(GUARD, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, rest)) = line.split_once("at http://") {
                let (addr, token) = rest
                    .split_once("/mcp with Authorization: Bearer ")
                    .expect("the generated token");
                return (addr.to_owned(), token.trim().to_owned());
            }
        }
        panic!("the server exited before listening");
    })
    .await
    .expect("the server listens in time");

    put_over_http(&addr, &token).await;

    // SIGTERM is a clean stop: the process exits 0 and the embedded store holds the write.
    let pid = server.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(GUARD, server.wait())
        .await
        .expect("the server stops in time")
        .unwrap();
    assert!(status.success(), "{status}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_blackboard"))
        .env_remove("NATS_URL")
        .args([
            "get",
            "notes",
            "/greeting",
            "--json",
            "--space",
            SPACE,
            "--store",
            &dir,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "\"hello over HTTP\""
    );
}

#[cfg(feature = "http")]
#[tokio::test]
async fn serve_is_a_library_function_that_stops_when_its_shutdown_future_resolves() {
    use blackboard_cli::access::{new_token, Access};
    use blackboard_cli::connect::{BoardArgs, ServerArgs};
    use blackboard_cli::mcp::{serve, Args, Board};

    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let args = Args {
        agent: "host".parse().unwrap(),
        space: SPACE.parse().unwrap(),
        board: BoardArgs {
            server: ServerArgs {
                nats: Some(nats.url()),
                creds: None,
                key: None,
            },
            admin_keys: Vec::new(),
            store: None,
            replicas: 1,
        },
        http: None,
        token: None,
        token_file: None,
        allow_hosts: Vec::new(),
        allow_origins: Vec::new(),
        model: None,
        timeout: 30,
    };
    let board = Board::open(&args).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let access = Access::new(new_token(), listener.local_addr().unwrap(), "a test").unwrap();
    let token = access.token().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(board.clone(), listener, access, async {
        let _ = stopped.await;
    }));

    put_over_http(&addr, &token).await;
    stop.send(()).unwrap();
    tokio::time::timeout(GUARD, server)
        .await
        .expect("serve returns once its shutdown future resolves")
        .unwrap()
        .unwrap();
    // The write went through the board the caller handed in.
    let documents = board.list().await.unwrap();
    assert_eq!(documents.len(), 1, "{documents:?}");
    assert_eq!(
        (documents[0].document.as_str(), documents[0].events),
        ("notes", 1)
    );
    board.close().await;
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn replicas_apply_to_the_stream_and_the_lease_buckets_the_server_creates() {
    let cluster = blackboard_tests::NatsCluster::start(3).await.unwrap();
    let url = cluster.url(0);
    let planner = agent_with(&url, "planner", &["--replicas", "3"]).await;
    // A new R3 stream has no leader for a moment, and the engine reports that as the log
    // being unavailable: the tool says so and the model tries again, as this does.
    let mut attempts = 0;
    loop {
        let put = json!({"document": "tasks", "path": "/t1", "value": "open", "reason": "a task"});
        let r = planner.call("put", put).await;
        if r.is_error != Some(true) {
            break;
        }
        attempts += 1;
        assert!(attempts < 50, "put keeps failing: {}", text(&r));
        assert!(text(&r).contains("unavailable"), "{}", text(&r));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    planner.ok("claim", json!({"resource": "t1"})).await;

    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    for stream in ["BB_team", "KV_BB_CLAIMS_team", "KV_BB_PRESENCE_team"] {
        let info = js
            .get_stream(stream)
            .await
            .unwrap_or_else(|e| panic!("{stream}: {e}"))
            .info()
            .await
            .unwrap()
            .clone();
        assert_eq!(info.config.num_replicas, 3, "{stream}");
    }
}

#[tokio::test]
async fn two_agents_whose_first_writes_create_one_map_or_counter_at_once_keep_both() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let alice = agent(&nats.url(), "alice").await;
    let bob = agent(&nats.url(), "bob").await;
    // The document exists; the maps and counters the trials write into do not.
    alice
        .ok(
            "put",
            json!({"document": "tasks", "path": "/started", "value": true, "reason": "start"}),
        )
        .await;
    for trial in 0..5 {
        let map = format!("/m{trial}");
        let counter = format!("/c{trial}/n");
        tokio::join!(
            alice.ok(
                "put",
                json!({"document": "tasks", "path": format!("{map}/a"), "value": 1, "reason": "a"}),
            ),
            bob.ok(
                "put",
                json!({"document": "tasks", "path": format!("{map}/b"), "value": 2, "reason": "b"}),
            ),
        );
        tokio::join!(
            alice.ok(
                "increment",
                json!({"document": "tasks", "path": counter.clone(), "reason": "one"}),
            ),
            bob.ok(
                "increment",
                json!({"document": "tasks", "path": counter.clone(), "reason": "one"}),
            ),
        );
    }
    // Each read catches up with the log first, so both agents' writes are in it.
    for reader in [&alice, &bob] {
        let read = reader.ok("read", json!({"document": "tasks"})).await;
        for trial in 0..5 {
            assert_eq!(
                read["value"][format!("m{trial}")],
                json!({"a": 1, "b": 2}),
                "trial {trial}: {read}"
            );
            assert_eq!(
                read["value"][format!("c{trial}")],
                json!({"n": 2}),
                "trial {trial}: {read}"
            );
        }
    }
    alice.client.cancel().await.unwrap();
    bob.client.cancel().await.unwrap();
}

#[tokio::test]
async fn read_with_conflicts_names_every_concurrent_value_and_its_agent() {
    let mut nats = blackboard_tests::NatsServer::start().await.unwrap();
    let url = nats.url();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let open = |name: &'static str, dir: std::path::PathBuf| {
        let url = url.clone();
        async move {
            blackboard_client::Options::new(name)
                .unwrap()
                .store(dir)
                .connect(&url)
                .await
                .unwrap()
        }
    };
    let alice = open("alice", dirs[0].path().to_owned()).await;
    let bob = open("bob", dirs[1].path().to_owned()).await;
    let (a, b) = (
        alice.doc(SPACE, "tasks").unwrap(),
        bob.doc(SPACE, "tasks").unwrap(),
    );
    a.put("/title", json!("plan")).await.unwrap();
    a.flush().await.unwrap();
    b.wait_for(&a.heads()).await.unwrap();
    // With the log down neither sees the other's write: two concurrent values at /lead.
    nats.stop().await;
    a.put("/lead", json!("alice")).await.unwrap();
    b.put("/lead", json!("bob")).await.unwrap();
    nats.restart().await.unwrap();
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    alice.close().await.unwrap();
    bob.close().await.unwrap();

    let reader = agent(&url, "carol").await;
    let read = reader
        .ok(
            "read",
            json!({"document": "tasks", "path": "/lead", "conflicts": true}),
        )
        .await;
    let values = read["conflicts"].as_array().expect("a list of values");
    let mut seen: Vec<(String, String)> = values
        .iter()
        .map(|v| {
            (
                v["agent"].as_str().unwrap().to_owned(),
                v["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("alice".to_owned(), "alice".to_owned()),
            ("bob".to_owned(), "bob".to_owned())
        ],
        "{read}"
    );
    let shown: Vec<&Json> = values
        .iter()
        .filter(|v| v["winner"] == json!(true))
        .map(|v| &v["value"])
        .collect();
    assert_eq!(
        shown,
        [&read["value"]],
        "the value shown is the winner: {read}"
    );
    reader.client.cancel().await.unwrap();
}
