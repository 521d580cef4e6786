//! `blackboard auth` run as an operator would (issue 15 §5): the authorization block it
//! prints from a roster is the configuration of a real nats-server, on which the admin's
//! key publishes the roster, a writer's key writes with no permission violation, a
//! read-only agent's write is refused by the server (nothing reaches the stream), and a key
//! the roster does not list cannot connect. Printed from the roster on the log, it is the
//! same block.

mod support;

use std::path::Path;

use blackboard_tests::{NatsServer, Options as ServerOptions};
use support::{run, stream_messages};

async fn ok(args: &[&str], dir: &Path) -> String {
    let (out, stdout, stderr) = run(args, dir).await;
    assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
    stdout
}

#[tokio::test]
async fn a_server_started_with_the_printed_block_lets_a_writer_write_and_refuses_the_read_only_agent(
) {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let mut public = std::collections::HashMap::new();
    for name in ["admin", "alice", "auditor", "stranger"] {
        let key = ok(&["keys", "new", name], cwd).await.trim().to_owned();
        public.insert(name, key);
    }
    let roster = serde_json::json!({
        "admins": [public["admin"]],
        "agents": {
            "alice": {"keys": [public["alice"]], "write": ["/tasks/**"]},
            "auditor": {"keys": [public["auditor"]], "write": []},
        }
    });
    std::fs::write(cwd.join("roster.json"), roster.to_string()).unwrap();
    let block = ok(&["auth", "roster.json", "--space", "team"], cwd).await;
    assert!(
        block.contains(&format!("nkey: {}", public["alice"])),
        "{block}"
    );
    assert!(!block.contains(&public["stranger"]));

    // The printed block, plus an operator user the test harness probes the server as.
    let config = with_operator(&block);
    let server = NatsServer::start_with(ServerOptions::config(config))
        .await
        .unwrap();
    let url = server.url();
    let on = |args: &[&str], key: &str| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--nats", &url, "--space", "team", "--key"].map(String::from));
        all.push(format!("{key}.nk"));
        if !args.starts_with(&["roster"]) {
            all.extend(["--as".to_owned(), key.to_owned()]);
        }
        all
    };
    let run_as = |args: &[&str], key: &str| {
        let all = on(args, key);
        async move {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            run(&refs, cwd).await
        }
    };

    // The admin's key publishes the roster (its own nkey user may).
    let (out, stdout, stderr) = run_as(&["roster", "set", "roster.json"], "admin").await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The writer writes.
    let (out, stdout, stderr) = run_as(&["put", "plan", "/tasks/a", "1"], "alice").await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let (out, stdout, stderr) = run_as(&["get", "plan", "/tasks/a"], "alice").await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "1");
    let before = stream_messages(&server, "team").await;

    // The read-only agent's write: refused by the server, clearly, and nothing reaches the
    // stream. (Its own replica refuses it first when it has read the roster; with its
    // roster check bypassed, the server is the one that refuses.)
    let (out, stdout, stderr) = run_as(&["put", "plan", "/tasks/b", "2"], "auditor").await;
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("may not write") || stderr.contains("Permissions Violation"),
        "{stderr}"
    );
    // It reads, though.
    let (out, stdout, stderr) = run_as(&["get", "plan", "/tasks/a"], "auditor").await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // A key the roster does not list cannot connect.
    let (out, _, stderr) = run_as(&["get", "plan", "/tasks/a"], "stranger").await;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.to_lowercase().contains("authorization"), "{stderr}");
    assert_eq!(stream_messages(&server, "team").await, before);

    // The writer and the admin worked without a single permission violation.
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    for line in log.lines().filter(|l| l.contains("Violation")) {
        assert!(!line.contains(&public["alice"]), "{line}");
        assert!(!line.contains(&public["admin"]), "{line}");
    }

    // Printed from the roster on the log, it is the same block.
    let (out, from_log, stderr) = run(&["auth", "--space", "team", "--nats", &url], cwd).await;
    assert!(out.status.success(), "{from_log}\n{stderr}");
    assert_eq!(from_log, block);
}

#[tokio::test]
async fn the_server_refuses_a_read_only_agent_s_publish_even_past_its_own_roster_check() {
    // Without the roster on the log, the read-only agent's replica has nothing to check its
    // write against: the server's permissions are the only guard, and they hold.
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let admin = ok(&["keys", "new", "admin"], cwd).await.trim().to_owned();
    let auditor = ok(&["keys", "new", "auditor"], cwd).await.trim().to_owned();
    let roster = serde_json::json!({
        "admins": [admin],
        "agents": {"auditor": {"keys": [auditor], "write": []}}
    });
    std::fs::write(cwd.join("roster.json"), roster.to_string()).unwrap();
    let block = ok(&["auth", "roster.json", "--space", "team"], cwd).await;
    let config = with_operator(&block);
    let server = NatsServer::start_with(ServerOptions::config(config))
        .await
        .unwrap();
    let url = server.url();
    // The operator makes the space's stream, as one would ahead of time.
    let (out, stdout, stderr) = run(
        &["put", "plan", "/x", "1", "--space", "team", "--nats", &url],
        cwd,
    )
    .await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let before = stream_messages(&server, "team").await;
    let (out, stdout, stderr) = run(
        &[
            "put",
            "plan",
            "/y",
            "2",
            "--space",
            "team",
            "--nats",
            &url,
            "--key",
            "auditor.nk",
        ],
        cwd,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("Permissions Violation"), "{stderr}");
    assert!(stderr.contains("bb.team.doc.plan.ch"), "{stderr}");
    assert_eq!(stream_messages(&server, "team").await, before);
}

/// `block` (an `authorization` block printed by `blackboard auth`) plus an operator user the
/// test harness probes the server as, and which the tests use to prepare the space.
fn with_operator(block: &str) -> String {
    block.replace(
        "  users = [\n",
        "  users = [\n    { user: operator, password: operator }\n",
    ) + "no_auth_user: operator\n"
}
