//! `blackboard mcp --http`'s access guard, against the real binary over raw HTTP/1.1 with a
//! real nats-server: the bearer token (401 with `WWW-Authenticate: Bearer`), the Origin and
//! Host checks (403), a public address refused without a chosen token, `--allow-host`, and
//! a DELETE that ends a session answered 204.

#![cfg(feature = "http")]

use std::time::Duration;

use serde_json::{json, Value as Json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

const GUARD: Duration = Duration::from_secs(30);

/// A `blackboard mcp --http` process and what it printed: its address and token.
struct Served {
    process: tokio::process::Child,
    addr: String,
    /// The token it printed, when it generated one.
    printed_token: Option<String>,
}

async fn serve(nats: &str, more: &[&str]) -> Served {
    let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_blackboard"))
        .env_remove("NATS_URL")
        .env_remove("BLACKBOARD_MCP_TOKEN")
        .args(["mcp", "--agent", "web", "--space", "team", "--nats", nats])
        .args(more)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(process.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(GUARD, lines.next_line())
        .await
        .expect("the server listens in time")
        .unwrap()
        .expect("the server prints its address before it exits");
    let rest = line
        .split_once("at http://")
        .unwrap_or_else(|| panic!("an address in {line:?}"))
        .1;
    let (addr, token) = match rest.split_once("/mcp with Authorization: Bearer ") {
        Some((addr, token)) => (addr.to_owned(), Some(token.trim().to_owned())),
        None => (rest.trim().trim_end_matches("/mcp").to_owned(), None),
    };
    Served {
        process,
        addr,
        printed_token: token,
    }
}

/// An HTTP answer: status, head, body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// One HTTP/1.1 request to `/mcp` at `addr` with `headers` (Host defaults to `addr`).
async fn request(
    addr: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: Option<&Json>,
) -> Answer {
    let body = body.map(Json::to_string).unwrap_or_default();
    let mut text = format!("{method} /mcp HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        text.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!(
        "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(text.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        response
    };
    let response = tokio::time::timeout(GUARD, exchange)
        .await
        .expect("the HTTP server answers in time");
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status in {head}"));
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn initialize() -> Json {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw-http", "version": "1"}}})
}

#[tokio::test]
async fn requests_without_the_printed_token_get_401_with_a_bearer_challenge_and_with_it_are_served()
{
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let served = serve(&nats.url(), &["--http", "127.0.0.1:0"]).await;
    let token = served
        .printed_token
        .clone()
        .expect("a generated token is printed once on stdout");
    let addr = &served.addr;

    let none = request(addr, "POST", &[], Some(&initialize())).await;
    assert_eq!(none.status, 401, "{}", none.head);
    assert_eq!(none.header("www-authenticate").as_deref(), Some("Bearer"));
    assert!(none.body.contains("Authorization: Bearer"), "{}", none.body);

    let wrong = format!("Bearer {}", "0".repeat(token.len()));
    let wrong = request(
        addr,
        "POST",
        &[("Authorization", &wrong)],
        Some(&initialize()),
    )
    .await;
    assert_eq!(wrong.status, 401, "{}", wrong.head);
    assert_eq!(wrong.header("www-authenticate").as_deref(), Some("Bearer"));

    // The token in the URL is not accepted here: URLs end up in logs.
    let bearer = format!("Bearer {token}");
    let ok = request(
        addr,
        "POST",
        &[("Authorization", &bearer)],
        Some(&initialize()),
    )
    .await;
    assert_eq!(ok.status, 200, "{}\n{}", ok.head, ok.body);
    assert!(ok.body.contains("\"serverInfo\""), "{}", ok.body);
    assert!(ok.header("mcp-session-id").is_some(), "{}", ok.head);
}

#[tokio::test]
async fn a_foreign_origin_or_host_gets_403_even_with_the_token() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let token = "a-chosen-token-of-20-chars";
    let served = serve(&nats.url(), &["--http", "127.0.0.1:0", "--token", token]).await;
    assert_eq!(served.printed_token, None, "a chosen token is not printed");
    let addr = &served.addr;
    let bearer = format!("Bearer {token}");

    let evil = request(
        addr,
        "POST",
        &[
            ("Authorization", &bearer),
            ("Origin", "http://evil.example.com"),
        ],
        Some(&initialize()),
    )
    .await;
    assert_eq!(evil.status, 403, "{}", evil.head);
    assert!(evil.body.contains("evil.example.com"), "{}", evil.body);

    // A page of another site whose name resolves to this machine (DNS rebinding).
    let port = addr.rsplit(':').next().unwrap();
    let rebound = format!("evil.example.com:{port}");
    let rebound = request(
        addr,
        "POST",
        &[("Authorization", &bearer), ("Host", &rebound)],
        Some(&initialize()),
    )
    .await;
    assert_eq!(rebound.status, 403, "{}", rebound.head);

    // The server's own origin (a page it served, or a local tool) is fine.
    let own = format!("http://localhost:{port}");
    let own = request(
        addr,
        "POST",
        &[("Authorization", &bearer), ("Origin", &own)],
        Some(&initialize()),
    )
    .await;
    assert_eq!(own.status, 200, "{}\n{}", own.head, own.body);
}

#[tokio::test]
async fn a_public_address_without_a_chosen_token_is_refused_at_start() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_blackboard"))
        .env_remove("NATS_URL")
        .env_remove("BLACKBOARD_MCP_TOKEN")
        // No nats-server is needed: the refusal comes before connecting.
        .args(["mcp", "--agent", "web", "--nats", "nats://127.0.0.1:1"])
        .args(["--http", "0.0.0.0:0"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    assert!(stderr.contains("--token"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing served");

    let short = tokio::process::Command::new(env!("CARGO_BIN_EXE_blackboard"))
        .env_remove("NATS_URL")
        .args(["mcp", "--agent", "web", "--nats", "nats://127.0.0.1:1"])
        .args(["--http", "127.0.0.1:0", "--token", "short"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert_eq!(short.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("at least 16 characters"), "{stderr}");
}

#[tokio::test]
async fn a_public_address_with_a_token_file_serves_allowed_host_names() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let token = "token-from-a-file-0123456789";
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let served = serve(
        &nats.url(),
        &[
            "--http",
            "0.0.0.0:0",
            "--token-file",
            file.to_str().unwrap(),
            "--allow-host",
            "board.example",
        ],
    )
    .await;
    let port = served.addr.rsplit(':').next().unwrap().to_owned();
    let local = format!("127.0.0.1:{port}");
    let bearer = format!("Bearer {token}");
    for host in [format!("board.example:{port}"), local.clone()] {
        let ok = request(
            &local,
            "POST",
            &[("Authorization", &bearer), ("Host", &host)],
            Some(&initialize()),
        )
        .await;
        assert_eq!(ok.status, 200, "Host {host}: {}\n{}", ok.head, ok.body);
    }
    let other = format!("other.example:{port}");
    let refused = request(
        &local,
        "POST",
        &[("Authorization", &bearer), ("Host", &other)],
        Some(&initialize()),
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.head);
}

#[tokio::test]
async fn a_delete_that_ends_the_session_is_answered_204_and_the_session_is_gone() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let served = serve(&nats.url(), &["--http", "127.0.0.1:0"]).await;
    let bearer = format!("Bearer {}", served.printed_token.clone().unwrap());
    let addr = &served.addr;
    let init = request(
        addr,
        "POST",
        &[("Authorization", &bearer)],
        Some(&initialize()),
    )
    .await;
    let session = init.header("mcp-session-id").expect("a session id");
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Mcp-Session-Id", session.as_str()),
        ("MCP-Protocol-Version", "2025-11-25"),
    ];
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let answer = request(addr, "POST", &headers, Some(&initialized)).await;
    assert_eq!(answer.status, 202, "{}", answer.head);

    let ended = request(addr, "DELETE", &headers, None).await;
    assert_eq!(ended.status, 204, "{}", ended.head);
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let after = request(addr, "POST", &headers, Some(&list)).await;
    assert_eq!(after.status, 404, "the session is gone: {}", after.head);
    drop(served.process);
}

#[tokio::test]
async fn a_request_nested_too_deep_to_parse_gets_a_json_rpc_error_naming_the_limit() {
    let nats = blackboard_tests::NatsServer::start().await.unwrap();
    let served = serve(&nats.url(), &["--http", "127.0.0.1:0"]).await;
    let bearer = format!("Bearer {}", served.printed_token.clone().unwrap());
    let mut deep = json!("bottom");
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let call = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": "put", "arguments": {"document": "d", "path": "/deep", "value": deep,
        "reason": "too deep"}}});
    let answer = request(
        &served.addr,
        "POST",
        &[("Authorization", &bearer)],
        Some(&call),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    let body: Json = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["id"], json!(9), "{body}");
    let says = body["error"]["message"].as_str().unwrap();
    assert!(says.contains("at most 100 levels"), "{says}");
}
