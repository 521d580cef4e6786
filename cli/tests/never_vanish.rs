//! Concurrent writes through the command line never vanish from view: two `blackboard put`s
//! that create the same map at the same moment both stay visible, and concurrent values at
//! one key are all shown by `get --conflicts`.

use std::process::{Command, Output};

use blackboard_client::Options;
use serde_json::{json, Value};

fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_blackboard"));
    command.env_remove("NATS_URL").env_remove("NATS_CREDS");
    command
}

/// Runs the command off the async runtime and expects it to succeed; returns stdout.
async fn ok(args: Vec<String>) -> String {
    let out: Output = tokio::task::spawn_blocking(move || {
        command()
            .args(&args)
            .output()
            .expect("the blackboard binary runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout
}

fn args(url: &str, rest: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
    all.extend(["--nats", url, "--space", "team"].map(String::from));
    all
}

#[tokio::test]
async fn two_puts_started_at_once_into_a_new_map_both_stay_visible() {
    let server = blackboard_tests::NatsServer::start().await.unwrap();
    let url = server.url();
    // The document exists, the maps do not: each trial's two writers both create /m<i>.
    ok(args(&url, &["put", "plan", "/started", "true"])).await;
    for trial in 0..5 {
        let map = format!("/m{trial}");
        let a = ok(args(
            &url,
            &["put", "plan", &format!("{map}/a"), "1", "--as", "alice"],
        ));
        let b = ok(args(
            &url,
            &["put", "plan", &format!("{map}/b"), "2", "--as", "bob"],
        ));
        futures::future::join(a, b).await;
    }
    let doc: Value = serde_json::from_str(&ok(args(&url, &["get", "plan", "--json"])).await)
        .expect("get prints JSON");
    for trial in 0..5 {
        assert_eq!(
            doc[format!("m{trial}")],
            json!({"a": 1, "b": 2}),
            "trial {trial}: {doc}"
        );
    }
}

#[tokio::test]
async fn get_conflicts_names_every_concurrent_value_and_its_agent() {
    let mut server = blackboard_tests::NatsServer::start().await.unwrap();
    let url = server.url();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let alice = Options::new("alice")
        .unwrap()
        .store(dirs[0].path())
        .connect(&url)
        .await
        .unwrap();
    let bob = Options::new("bob")
        .unwrap()
        .store(dirs[1].path())
        .connect(&url)
        .await
        .unwrap();
    let a = alice.doc("team", "plan").unwrap();
    let b = bob.doc("team", "plan").unwrap();
    a.put("/title", json!("plan")).await.unwrap();
    a.flush().await.unwrap();
    b.wait_for(&a.heads()).await.unwrap();
    // With the log down neither sees the other's write: two concurrent replacements.
    server.stop().await;
    a.put_replace("/lead", json!({"name": "alice"}))
        .await
        .unwrap();
    b.put_replace("/lead", json!({"name": "bob"}))
        .await
        .unwrap();
    server.restart().await.unwrap();
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    a.wait_for(&b.heads()).await.unwrap();
    b.wait_for(&a.heads()).await.unwrap();
    alice.close().await.unwrap();
    bob.close().await.unwrap();

    let out = ok(args(
        &url,
        &["get", "plan", "/lead", "--conflicts", "--json"],
    ))
    .await;
    let values: Vec<Value> = serde_json::from_str(&out).expect("a JSON array");
    assert_eq!(values.len(), 2, "{out}");
    let mut agents: Vec<&str> = values
        .iter()
        .map(|v| v["agent"].as_str().expect("the writer is named"))
        .collect();
    agents.sort();
    assert_eq!(agents, ["alice", "bob"], "{out}");
    assert_eq!(
        values.iter().filter(|v| v["winner"] == json!(true)).count(),
        1,
        "exactly one value is the one shown: {out}"
    );
    for v in &values {
        assert_eq!(v["value"]["name"], v["agent"], "{out}");
    }
}
