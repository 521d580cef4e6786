//! Provenance of the MCP server's writes (issue 15 §7), through the rmcp client against the
//! real binary and a real nats-server: every write tool records its tool call (the tool and
//! the JSON-RPC request id) and the model (`--model`, or the call's `_meta` under
//! `blackboard/model`), signed with the change, and `history --json` and `blame --json`
//! show them with the signer.

use std::time::Duration;

use rmcp::model::{CallToolRequestParams, RequestMetaObject};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt as _};
use serde_json::{json, Value as Json};

const GUARD: Duration = Duration::from_secs(60);

async fn agent(url: &str, key: &std::path::Path, model: &str) -> RunningService<RoleClient, ()> {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_blackboard"));
    cmd.env_remove("NATS_URL")
        .env_remove("NATS_CREDS")
        .env_remove("BLACKBOARD_KEY")
        .env("BLACKBOARD_MODEL", model);
    cmd.args(["mcp", "--agent", "alice", "--space", "team", "--nats", url]);
    cmd.arg("--key").arg(key);
    let transport = TokioChildProcess::new(cmd).expect("the blackboard binary starts");
    tokio::time::timeout(GUARD, ().serve(transport))
        .await
        .expect("the server initializes in time")
        .expect("the MCP session starts")
}

/// Calls `tool` with `args` (and `_meta`, if any); fails the test on a tool error.
async fn call(client: &RunningService<RoleClient, ()>, tool: &str, args: Json, meta: Option<Json>) {
    let Json::Object(args) = args else {
        panic!("arguments must be an object")
    };
    let mut params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
    if let Some(Json::Object(meta)) = meta {
        params.meta = Some(RequestMetaObject(meta.into()));
    }
    let r = tokio::time::timeout(GUARD, client.call_tool(params))
        .await
        .unwrap_or_else(|_| panic!("{tool} answers in time"))
        .unwrap_or_else(|e| panic!("{tool} is a well-formed call: {e}"));
    assert_ne!(r.is_error, Some(true), "{tool} failed: {:?}", r.content);
}

/// Runs `blackboard ARGS` against the server; stdout.
async fn cli(url: &str, args: &[&str]) -> String {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(["--nats", url, "--space", "team"].map(String::from));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_blackboard"))
            .env_remove("NATS_URL")
            .env_remove("NATS_CREDS")
            .env_remove("BLACKBOARD_KEY")
            .args(&all)
            .output()
            .expect("the blackboard binary runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn every_mcp_write_records_its_tool_call_and_model_signed_and_history_and_blame_show_them() {
    let server = blackboard_tests::NatsServer::start().await.unwrap();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_blackboard"))
        .args(["keys", "new", "alice"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let public = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    let key = dir.path().join("alice.nk");
    let client = agent(&url, &key, "model-from-flag").await;
    let base = |path: &str| json!({"document": "plan", "path": path, "reason": "testing"});
    let mut put = base("/goal");
    put["value"] = json!("ship");
    call(&client, "put", put, None).await;
    let mut append = base("/log");
    append["value"] = json!("a");
    call(&client, "append", append, None).await;
    call(&client, "increment", base("/runs"), None).await;
    let mut splice = base("/text");
    splice["position"] = json!(0);
    splice["insert"] = json!("hi");
    call(&client, "splice_text", splice, None).await;
    // A client naming the model of one call in `_meta`.
    let mut put = base("/goal");
    put["value"] = json!("ship v2");
    call(
        &client,
        "put",
        put,
        Some(json!({"blackboard/model": "model-from-meta"})),
    )
    .await;
    call(&client, "delete", base("/runs"), None).await;

    // The MCP `history` tool says the same as the CLI below: signer, verified, provenance.
    let Json::Object(args) = json!({"document": "plan"}) else {
        unreachable!()
    };
    let answer = tokio::time::timeout(
        GUARD,
        client.call_tool(CallToolRequestParams::new("history").with_arguments(args)),
    )
    .await
    .expect("history answers in time")
    .expect("history is a well-formed call");
    let events = answer.structured_content.expect("a structured answer")["events"].clone();
    let events = events.as_array().expect("events");
    assert!(!events.is_empty());
    for e in events {
        assert_eq!(e["signer"], json!(public), "{e}");
        assert_eq!(e["verified"], json!(true), "{e}");
        assert!(e["provenance"]["tool_call"].as_str().is_some(), "{e}");
    }
    client.cancel().await.unwrap();

    let lines: Vec<Json> = cli(&url, &["history", "plan", "--json"])
        .await
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Each tool's own change (the containers it creates on the way carry the call too).
    let mut seen = Vec::new();
    for e in &lines {
        assert_eq!(e["verified"], json!(true), "{e}");
        assert_eq!(e["signer"], json!(public), "{e}");
        let p = &e["provenance"];
        let call = p["tool_call"].as_str().unwrap_or_else(|| panic!("{e}"));
        let (tool, id) = call.split_once('#').unwrap();
        assert!(!id.is_empty(), "{call}: the request id");
        let model = p["model"].as_str().unwrap();
        seen.push((tool.to_owned(), model.to_owned()));
    }
    for tool in ["put", "append", "increment", "splice_text", "delete"] {
        assert!(seen.iter().any(|(t, _)| t == tool), "{tool}: {seen:?}");
    }
    let models: Vec<&str> = seen.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(
        models.iter().filter(|m| **m == "model-from-meta").count(),
        1,
        "{seen:?}"
    );
    assert!(models
        .iter()
        .all(|m| *m == "model-from-flag" || *m == "model-from-meta"));
    // The two puts are different calls with different request ids.
    let puts: Vec<&str> = lines
        .iter()
        .filter_map(|e| e["provenance"]["tool_call"].as_str())
        .filter(|c| c.starts_with("put#"))
        .collect();
    let distinct: std::collections::BTreeSet<&&str> = puts.iter().collect();
    assert_eq!(distinct.len(), 2, "{puts:?}");

    // blame names the call and the model behind the current value.
    let blame: Json = serde_json::from_str(
        cli(&url, &["blame", "plan", "/goal", "--json"])
            .await
            .trim(),
    )
    .unwrap();
    let record = &blame["record"];
    assert_eq!(
        record["provenance"]["model"],
        json!("model-from-meta"),
        "{blame}"
    );
    assert!(
        record["provenance"]["tool_call"]
            .as_str()
            .unwrap()
            .starts_with("put#"),
        "{blame}"
    );
    assert_eq!(record["verified"], json!(true), "{blame}");
}
