//! `blackboard mcp` speaking the 2026-07-28 revision of MCP alongside 2025-11-25, against the
//! real binary and a real nats-server: over stdio through rmcp's client in each revision's
//! lifecycle (`server/discover` and per-request `_meta`, or `initialize`), and over HTTP as
//! raw requests (rmcp's HTTP client is not built here): tool calls without a session,
//! another agent's write heard through `subscriptions/listen`, a listen cancelled (its
//! watches stop), an unsupported version answered with the supported ones, and the access
//! guard kept.

use std::process::Stdio;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ProtocolVersion, ServerNotification, SubscriptionFilter,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt as _, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::RoleClient;
use serde_json::{json, Value as Json};
#[cfg(feature = "http")]
use tokio::io::AsyncReadExt as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;

const SPACE: &str = "team";
const GUARD: Duration = Duration::from_secs(60);
/// The log line the server writes when a listen ends and its watches stop.
const LISTEN_ENDED: &str = "listen ended";
/// Logs at info for the listen's start and end, warnings for the rest.
const LOG: &str = "warn,blackboard_cli::mcp::resources=info";

/// The lines a server writes on stderr, read as they come (so the pipe never fills).
struct Stderr(mpsc::UnboundedReceiver<String>);

impl Stderr {
    fn follow(stderr: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self(rx)
    }

    /// Waits for a line containing `text`; returns it.
    async fn wait_for(&mut self, text: &str) -> String {
        let found = async {
            while let Some(line) = self.0.recv().await {
                if line.contains(text) {
                    return line;
                }
            }
            panic!("the server's stderr ended before a line with {text:?}")
        };
        tokio::time::timeout(GUARD, found)
            .await
            .unwrap_or_else(|_| panic!("a line with {text:?} in time"))
    }
}

/// A `blackboard mcp` process over stdio and rmcp's client, in `lifecycle`.
struct Agent {
    client: RunningService<RoleClient, ()>,
    stderr: Stderr,
}

async fn agent(url: &str, name: &str, lifecycle: ClientLifecycleMode) -> Agent {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_blackboard"));
    cmd.env_remove("NATS_URL")
        .env_remove("NATS_CREDS")
        .env("RUST_LOG", LOG);
    cmd.args(["mcp", "--agent", name, "--space", SPACE, "--nats", url]);
    let (transport, stderr) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::piped())
        .spawn()
        .expect("the blackboard binary starts");
    let stderr = Stderr::follow(stderr.expect("stderr is piped"));
    let client = tokio::time::timeout(GUARD, ().serve_with_lifecycle(transport, lifecycle))
        .await
        .expect("the client starts in time")
        .expect("the server answers the client's lifecycle");
    Agent { client, stderr }
}

fn modern() -> ClientLifecycleMode {
    ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    }
}

impl Agent {
    async fn ok(&self, tool: &str, args: Json) -> Json {
        let Json::Object(args) = args else {
            panic!("arguments must be an object")
        };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
        let r: CallToolResult = tokio::time::timeout(GUARD, self.client.call_tool(params))
            .await
            .unwrap_or_else(|_| panic!("{tool} answers in time"))
            .unwrap_or_else(|e| panic!("{tool} is a well-formed call: {e}"));
        assert_ne!(r.is_error, Some(true), "{tool} failed: {:?}", r.content);
        r.structured_content
            .unwrap_or_else(|| panic!("{tool} answers with JSON"))
    }
}

fn uri(doc: &str) -> String {
    format!("blackboard://{SPACE}/{doc}")
}

#[tokio::test]
async fn a_2026_07_28_client_calls_tools_without_initialize_and_hears_another_agents_writes_through_listen(
) {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let mut alice = agent(&nats.url(), "alice", modern()).await;
    // A 2025-11-25 client on the same board keeps its `initialize` handshake.
    let bob = agent(&nats.url(), "bob", ClientLifecycleMode::Initialize).await;
    assert_eq!(
        bob.client.peer_info().map(|i| i.protocol_version.clone()),
        Some(ProtocolVersion::V_2025_11_25)
    );

    // Tools answer a client that never initialized (every request carries its `_meta`).
    let tools = alice.client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "put"), "{tools:?}");
    alice
        .ok(
            "put",
            json!({"document": "tasks", "path": "/t1", "value": "open", "reason": "plan"}),
        )
        .await;

    // One listen: the tasks document, and documents that appear. A URI of another space is
    // left out of the acknowledgment.
    let requested = SubscriptionFilter::builder()
        .resources_list_changed()
        .resource_subscriptions([uri("tasks"), "blackboard://elsewhere/tasks".to_owned()])
        .build();
    let mut listen = tokio::time::timeout(GUARD, alice.client.listen(requested))
        .await
        .expect("the listen is acknowledged in time")
        .expect("the server accepts subscriptions/listen");
    assert_eq!(
        listen.acknowledged().resource_subscriptions,
        Some(vec![uri("tasks")])
    );
    assert_eq!(listen.acknowledged().resources_list_changed, Some(true));

    // Bob changes the tasks (after reading them, so his write follows alice's rather than
    // racing it) and starts a new document: alice hears both on the listen.
    bob.ok("read", json!({"document": "tasks"})).await;
    bob.ok(
        "put",
        json!({"document": "tasks", "path": "/t1", "value": "taken", "reason": "mine"}),
    )
    .await;
    bob.ok(
        "put",
        json!({"document": "notes", "path": "/n", "value": "hi", "reason": "start notes"}),
    )
    .await;
    let (mut updated, mut listed) = (false, false);
    while !(updated && listed) {
        let next = tokio::time::timeout(GUARD, listen.next())
            .await
            .expect("a notification arrives in time")
            .expect("a well-formed notification")
            .expect("the listen is open");
        match next {
            ServerNotification::ResourceUpdatedNotification(n) => {
                assert_eq!(n.params.uri, uri("tasks"));
                updated = true;
            }
            ServerNotification::ResourceListChangedNotification(_) => listed = true,
            other => panic!("not a change notification: {other:?}"),
        }
    }

    // Cancelling the listen ends it on the server: its watches stop.
    alice.stderr.wait_for("listening").await;
    listen.cancel().await.unwrap();
    alice.stderr.wait_for(LISTEN_ENDED).await;
    // The session goes on.
    let read = alice
        .ok("read", json!({"document": "tasks", "path": "/t1"}))
        .await;
    assert_eq!(read["value"], json!("taken"));
}

#[tokio::test]
async fn a_2025_11_25_session_is_refused_subscriptions_listen_and_keeps_resources_subscribe() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let bob = agent(&nats.url(), "bob", ClientLifecycleMode::Initialize).await;
    let refused = bob
        .client
        .listen(
            SubscriptionFilter::builder()
                .resource_subscriptions([uri("tasks")])
                .build(),
        )
        .await;
    let refused = refused.expect_err("a legacy session has no listen");
    assert!(
        refused.to_string().contains("-32601"),
        "method not found: {refused}"
    );
    #[allow(deprecated)] // legacy-only, which is the point
    bob.client
        .subscribe(rmcp::model::SubscribeRequestParams::new(uri("tasks")))
        .await
        .expect("resources/subscribe as before");
}

#[tokio::test]
async fn a_request_with_incomplete_metadata_or_an_unsupported_version_is_answered_as_the_spec_says_over_stdio(
) {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_blackboard"))
        .env_remove("NATS_URL")
        .args([
            "mcp",
            "--agent",
            "old",
            "--space",
            SPACE,
            "--nats",
            &nats.url(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut exchange = async |request: Json| {
        stdin
            .write_all(format!("{request}\n").as_bytes())
            .await
            .unwrap();
        let line = tokio::time::timeout(GUARD, stdout.next_line())
            .await
            .expect("an answer in time")
            .unwrap()
            .expect("a line");
        serde_json::from_str::<Json>(&line).unwrap()
    };
    // The metadata 2026-07-28 requires on every request, incomplete: named.
    let mut partial = meta("2026-07-28");
    partial
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/clientCapabilities");
    let answer = exchange(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
                                 "params": {"_meta": partial}}))
    .await;
    assert_eq!(answer["error"]["code"], json!(-32602), "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("clientCapabilities"), "{answer}");
    // A version it does not speak.
    let answer = exchange(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list",
                                 "params": {"_meta": meta("1900-01-01")}}))
    .await;
    assert_unsupported(&answer);
}

/// The spec's answer to an unsupported version: `UnsupportedProtocolVersionError`
/// (-32022) naming the requested version and listing the supported ones.
fn assert_unsupported(answer: &Json) {
    assert_eq!(answer["error"]["code"], json!(-32022), "{answer}");
    assert_eq!(
        answer["error"]["data"]["requested"],
        json!("1900-01-01"),
        "{answer}"
    );
    let supported = answer["error"]["data"]["supported"].as_array().unwrap();
    assert!(supported.contains(&json!("2026-07-28")), "{answer}");
    assert!(supported.contains(&json!("2025-11-25")), "{answer}");
}

fn meta(version: &str) -> Json {
    json!({
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

// ---- raw HTTP -------------------------------------------------------------------------

/// A `blackboard mcp --http` process: its address, the token it printed, its stderr.
#[cfg(feature = "http")]
struct Served {
    process: tokio::process::Child,
    addr: String,
    token: String,
    stderr: Stderr,
}

#[cfg(feature = "http")]
async fn serve(nats: &str) -> Served {
    let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_blackboard"))
        .env_remove("NATS_URL")
        .env_remove("BLACKBOARD_MCP_TOKEN")
        .env("RUST_LOG", LOG)
        .args(["mcp", "--agent", "web", "--space", SPACE, "--nats", nats])
        .args(["--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = Stderr::follow(process.stderr.take().unwrap());
    let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(GUARD, lines.next_line())
        .await
        .expect("the server listens in time")
        .unwrap()
        .expect("the server prints its address");
    let rest = line.split_once("at http://").unwrap().1;
    let (addr, token) = rest
        .split_once("/mcp with Authorization: Bearer ")
        .unwrap_or_else(|| panic!("a generated token in {line:?}"));
    Served {
        process,
        addr: addr.to_owned(),
        token: token.trim().to_owned(),
        stderr,
    }
}

/// An HTTP response being read: status and head, then its body as it comes (chunked or
/// not), as SSE events or one JSON object.
#[cfg(feature = "http")]
struct Response {
    status: u16,
    head: String,
    reader: BufReader<tokio::net::TcpStream>,
    chunked: bool,
    /// Body bytes read but not yet taken as an event.
    pending: Vec<u8>,
    ended: bool,
}

#[cfg(feature = "http")]
impl Response {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    /// Reads more of the body into `pending`; false at its end.
    async fn fill(&mut self) -> bool {
        if self.ended {
            return false;
        }
        if !self.chunked {
            let mut rest = Vec::new();
            self.reader.read_to_end(&mut rest).await.unwrap();
            self.pending.extend(rest);
            self.ended = true;
            return true;
        }
        let mut size = String::new();
        if self.reader.read_line(&mut size).await.unwrap() == 0 {
            self.ended = true;
            return false;
        }
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16)
            .unwrap_or_else(|_| panic!("a chunk size, not {size:?}"));
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk).await.unwrap();
        chunk.truncate(size);
        self.pending.extend(chunk);
        if size == 0 {
            self.ended = true;
        }
        true
    }

    /// The next JSON-RPC message of the body: the next SSE event's data, or the JSON body;
    /// `None` at the end of the body.
    async fn next_message(&mut self) -> Option<Json> {
        let sse = self
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"));
        loop {
            if !sse {
                if self.ended || !self.fill().await {
                    let body = std::mem::take(&mut self.pending);
                    return (!body.is_empty()).then(|| serde_json::from_slice(&body).unwrap());
                }
                continue;
            }
            let text = String::from_utf8_lossy(&self.pending).replace("\r\n", "\n");
            if let Some(end) = text.find("\n\n") {
                let event = text[..end].to_owned();
                self.pending = text.as_bytes()[end + 2..].to_vec();
                let data: String = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue; // a keep-alive or priming event
                }
                return Some(serde_json::from_str(&data).unwrap());
            }
            if !self.fill().await {
                return None;
            }
        }
    }
}

/// POSTs `body` to `/mcp` with the 2026-07-28 headers the body implies (`Mcp-Method`,
/// `Mcp-Name`, `MCP-Protocol-Version`) plus `headers`; returns the response once its head
/// is read.
#[cfg(feature = "http")]
async fn post(served: &Served, headers: &[(&str, &str)], body: &Json) -> Response {
    post_with(served, headers, body, None).await
}

/// Like [`post`], with `Mcp-Name: name` whatever the body names.
#[cfg(feature = "http")]
async fn post_with(
    served: &Served,
    headers: &[(&str, &str)],
    body: &Json,
    name: Option<&str>,
) -> Response {
    let body_text = body.to_string();
    let method = body["method"].as_str().unwrap_or_default();
    let mut text = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nConnection: close\r\n\
         Content-Length: {}\r\nMcp-Method: {method}\r\n",
        served.addr,
        body_text.len()
    );
    if let Some(version) =
        body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"].as_str()
    {
        text.push_str(&format!("MCP-Protocol-Version: {version}\r\n"));
    }
    if let Some(name) = name.or(body["params"]["name"].as_str()) {
        text.push_str(&format!("Mcp-Name: {name}\r\n"));
    }
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(&body_text);
    let mut stream = tokio::net::TcpStream::connect(&served.addr).await.unwrap();
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let read_head = async {
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap() == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
    };
    tokio::time::timeout(GUARD, read_head)
        .await
        .expect("the HTTP server answers in time");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status in {head}"));
    let mut response = Response {
        status,
        head,
        reader,
        chunked: false,
        pending: Vec::new(),
        ended: false,
    };
    response.chunked = response
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    response
}

/// A 2026-07-28 request: `params` with the per-request `_meta`.
#[cfg(feature = "http")]
fn request(id: u64, method: &str, mut params: Json) -> Json {
    params["_meta"] = meta("2026-07-28");
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

#[cfg(feature = "http")]
async fn message(response: &mut Response) -> Json {
    tokio::time::timeout(GUARD, response.next_message())
        .await
        .expect("a message in time")
        .expect("the body holds a message")
}

#[cfg(feature = "http")]
#[tokio::test]
async fn over_http_a_2026_07_28_client_needs_no_session_and_its_listen_stream_carries_writes_until_closed(
) {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let mut served = serve(&nats.url()).await;
    let bearer = format!("Bearer {}", served.token);
    let auth = [("Authorization", bearer.as_str())];
    let put = |id: u64, value: &str| {
        request(
            id,
            "tools/call",
            json!({"name": "put", "arguments": {"document": "tasks", "path": "/t1",
                   "value": value, "reason": "plan"}}),
        )
    };

    // The access guard comes first, whatever the revision: no token, 401; a foreign
    // Origin, 403.
    assert_eq!(post(&served, &[], &put(1, "open")).await.status, 401);
    let foreign = [auth[0], ("Origin", "https://evil.example")];
    assert_eq!(post(&served, &foreign, &put(1, "open")).await.status, 403);

    // The headers must say what the body says: a tool call naming another tool is refused.
    let mut mismatch = put(1, "open");
    mismatch["params"]["name"] = json!("read");
    let mut refused = post_with(&served, &auth, &mismatch, Some("put")).await;
    assert_eq!(refused.status, 400, "{}", refused.head);
    let error = message(&mut refused).await;
    assert_eq!(
        error["error"]["code"],
        json!(-32020),
        "HeaderMismatch: {error}"
    );

    // A tool call with no initialize and no session: answered, and no session is made.
    let mut answer = post(&served, &auth, &put(1, "open")).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.header("mcp-session-id"), None, "{}", answer.head);
    let result = message(&mut answer).await;
    assert_eq!(result["id"], json!(1), "{result}");
    assert_eq!(
        result["result"]["resultType"],
        json!("complete"),
        "{result}"
    );
    assert_eq!(result["result"]["isError"], json!(false), "{result}");

    // A listen on the tasks: acknowledged on its own stream, which then carries another
    // request's write.
    let listen_request = request(
        2,
        "subscriptions/listen",
        json!({"notifications": {"resourceSubscriptions": [uri("tasks")]}}),
    );
    let mut listen = post(&served, &auth, &listen_request).await;
    assert_eq!(listen.status, 200, "{}", listen.head);
    let ack = message(&mut listen).await;
    assert_eq!(
        ack["method"],
        json!("notifications/subscriptions/acknowledged"),
        "{ack}"
    );
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"],
        json!([uri("tasks")]),
        "{ack}"
    );
    served.stderr.wait_for("listening").await;
    let mut written = post(&served, &auth, &put(3, "taken")).await;
    assert_eq!(message(&mut written).await["id"], json!(3));
    let updated = message(&mut listen).await;
    assert_eq!(
        updated["method"],
        json!("notifications/resources/updated"),
        "{updated}"
    );
    assert_eq!(updated["params"]["uri"], json!(uri("tasks")), "{updated}");
    assert_eq!(
        updated["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        json!(2),
        "tagged with the listen's id: {updated}"
    );

    // Closing the stream cancels the listen: its watch stops.
    drop(listen);
    served.stderr.wait_for(LISTEN_ENDED).await;

    // An unsupported version: 400 and the supported versions.
    let mut old = request(4, "tools/list", json!({}));
    old["params"]["_meta"] = meta("1900-01-01");
    let mut refused = post(&served, &auth, &old).await;
    assert_eq!(refused.status, 400, "{}", refused.head);
    assert_unsupported(&message(&mut refused).await);

    served.process.kill().await.unwrap();
}

#[cfg(feature = "http")]
#[tokio::test]
async fn over_http_a_listen_open_at_sigterm_ends_with_its_final_result_and_the_server_exits() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let mut served = serve(&nats.url()).await;
    let bearer = format!("Bearer {}", served.token);
    let listen_request = request(
        7,
        "subscriptions/listen",
        json!({"notifications": {"resourcesListChanged": true}}),
    );
    let mut listen = post(&served, &[("Authorization", &bearer)], &listen_request).await;
    assert_eq!(listen.status, 200, "{}", listen.head);
    message(&mut listen).await; // the acknowledgment
    served.stderr.wait_for("listening").await;

    let pid = served.process.id().unwrap();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let last = message(&mut listen).await;
    assert_eq!(last["id"], json!(7), "the listen's final result: {last}");
    assert_eq!(last["result"]["resultType"], json!("complete"), "{last}");
    let status = tokio::time::timeout(GUARD, served.process.wait())
        .await
        .expect("the server exits in time")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[cfg(feature = "http")]
#[tokio::test]
async fn over_http_a_long_wait_in_2026_07_28_sends_its_progress_on_its_own_stream() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let mut served = serve(&nats.url()).await;
    let bearer = format!("Bearer {}", served.token);
    let mut wait = request(
        5,
        "tools/call",
        json!({"name": "wait_for_change", "arguments": {"document": "tasks",
               "timeout_seconds": 7}}),
    );
    wait["params"]["_meta"]["progressToken"] = json!("wait-1");
    let mut answer = post(&served, &[("Authorization", &bearer)], &wait).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    // Progress first (every 5 s), on this request's stream, then its result.
    let progress = message(&mut answer).await;
    assert_eq!(
        progress["method"],
        json!("notifications/progress"),
        "{progress}"
    );
    assert_eq!(
        progress["params"]["progressToken"],
        json!("wait-1"),
        "{progress}"
    );
    let result = message(&mut answer).await;
    assert_eq!(result["id"], json!(5), "{result}");
    assert_eq!(
        result["result"]["structuredContent"]["changed"],
        json!(false),
        "{result}"
    );
    served.process.kill().await.unwrap();
}
