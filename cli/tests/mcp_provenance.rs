//! Provenance of the MCP server's writes (issue 15 §7), through the rmcp client against the
//! real binary and a real nats-server: every write tool records its tool call (the tool and
//! the JSON-RPC request id) and the model (`--model`, or the call's `_meta` under
//! `blackboard/model`), signed with the change, and `history --json` and `blame --json`
//! show them with the signer; and the `history` tool lists a change the space's roster
//! rejected among the honest ones, under `rejected` with its reason.

mod support;

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
/// Calls `tool` and checks it succeeded; its structured answer (`null` if none).
async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &str,
    args: Json,
    meta: Option<Json>,
) -> Json {
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
    r.structured_content.unwrap_or(Json::Null)
}

/// Runs `blackboard ARGS` against the server; stdout.
async fn cli(url: &str, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--nats", url, "--space", "team"]);
    let (out, stdout, stderr) = support::run(&all, &std::env::temp_dir()).await;
    assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
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
    let answer = call(&client, "history", json!({"document": "plan"}), None).await;
    let events = answer["events"].clone();
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

/// Publishes straight to the space's stream, as a hostile writer would, a change to `plan`
/// in alice's name writing /forged, signed by `key`. Returns its log position.
async fn publish_forgery(
    server: &blackboard_tests::NatsServer,
    key: &blackboard::schemas::nkeys::KeyPair,
) -> u64 {
    use blackboard::codec::encode_event;
    use blackboard::doc::{DocCore, Edit};
    use blackboard::log::{EventLog, JetStreamLog};
    use blackboard::schemas::{AgentId, DocumentId, SpaceId};

    let (space, plan): (SpaceId, DocumentId) = ("team".parse().unwrap(), "plan".parse().unwrap());
    let alice: AgentId = "alice".parse().unwrap();
    // Written on an empty document: it merges with whatever the document holds.
    let edited = DocCore::new()
        .edit(
            1,
            None,
            false,
            &[Edit::put("/forged".parse().unwrap(), json!("forged"))],
        )
        .unwrap();
    let change = edited.change.expect("the forged edit made a change");
    let mut envelope = encode_event(&space, &plan, &alice, &change, 1, None);
    envelope.sign(key).unwrap();
    let log = JetStreamLog::new(server.connect().await.unwrap(), Default::default());
    log.publish(&space, &plan, "forged-1", envelope.encode().into())
        .await
        .unwrap()
        .seq
}

#[tokio::test]
async fn the_history_tool_lists_a_change_the_roster_rejected_with_its_reason_between_the_honest_ones(
) {
    let server = blackboard_tests::NatsServer::start().await.unwrap();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let admin = support::new_key("admin", dir.path()).await;
    let alice = support::new_key("alice", dir.path()).await;
    // The roster lists alice's key, not mallory's.
    let mallory = blackboard::schemas::nkeys::KeyPair::new_user();
    let roster = dir.path().join("roster.json");
    let body = json!({
        "admins": [admin],
        "agents": {"alice": {"keys": [alice], "write": ["/**"]}},
    });
    std::fs::write(&roster, body.to_string()).unwrap();
    let admin_key = dir.path().join("admin.nk");
    cli(
        &url,
        &[
            "roster",
            "set",
            roster.to_str().unwrap(),
            "--key",
            admin_key.to_str().unwrap(),
        ],
    )
    .await;

    let client = agent(&url, &dir.path().join("alice.nk"), "a-model").await;
    let put = |path: &str, value: Json| json!({"document": "plan", "path": path, "value": value, "reason": "testing"});
    call(&client, "put", put("/goal", json!("ship")), None).await;
    let forged = publish_forgery(&server, &mallory).await;
    call(&client, "put", put("/done", json!(true)), None).await;

    let content = call(&client, "history", json!({"document": "plan"}), None).await;
    client.cancel().await.unwrap();
    let events = content["events"].as_array().expect("events");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs.len(), 3, "{content}");
    assert!(seqs[0] < forged && forged < seqs[2], "{content}");

    // The forgery, in its place: rejected, saying why, and touching no path.
    let rejected = &events[1];
    assert_eq!(rejected["seq"], json!(forged), "{rejected}");
    assert_eq!(rejected["agent"], json!("alice"), "{rejected}");
    let reason = rejected["rejected"]
        .as_str()
        .unwrap_or_else(|| panic!("{rejected}"));
    assert!(
        reason.contains(&format!(
            "key {} is not a key of agent alice",
            mallory.public_key()
        )),
        "{reason}"
    );
    assert_eq!(rejected["paths"], json!([]), "{rejected}");

    // The honest changes around it, as usual: signed by alice's key, verified, their paths.
    for (event, path) in [(&events[0], "/goal"), (&events[2], "/done")] {
        assert!(event.get("rejected").is_none(), "{event}");
        assert_eq!(event["agent"], json!("alice"), "{event}");
        assert_eq!(event["signer"], json!(alice), "{event}");
        assert_eq!(event["verified"], json!(true), "{event}");
        assert_eq!(event["paths"], json!([path]), "{event}");
        assert_eq!(event["reason"], json!("testing"), "{event}");
    }
}
