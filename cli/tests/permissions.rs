//! The `blackboard` command against a server with the documented permissions
//! (`docs/nats-permissions.conf`): a read-only agent's `put` fails at once, naming the
//! refused permission and saying the change will not be published; its `get` works; a
//! wrong password fails at once saying the server refused the credentials; and a snapshot
//! whose bucket the server will not create fails at once naming the refused subject.

use std::process::Output;
use std::time::{Duration, Instant};

use blackboard_tests::NatsServer;

/// The documented configuration plus `no_auth_user` for the harness's readiness probe.
fn config() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/nats-permissions.conf");
    std::fs::read_to_string(path).expect("docs/nats-permissions.conf") + "\nno_auth_user: admin\n"
}

/// Runs `blackboard VERB team/plan ARGS` as `user` on the server.
async fn run(server: &NatsServer, user: &str, password: &str, args: &[&str]) -> Output {
    let url = format!("nats://{user}:{password}@127.0.0.1:{}", server.port());
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_blackboard"));
    command
        .env_remove("NATS_URL")
        .env_remove("NATS_CREDS")
        .args(args)
        .args(["--nats", &url, "--space", "team", "--timeout", "30"]);
    command.output().await.expect("the blackboard binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_agents_put_fails_at_once_naming_the_permission_and_its_get_works() {
    let server = NatsServer::start_with(blackboard_tests::Options::config(config()))
        .await
        .unwrap();
    let put = run(
        &server,
        "planner",
        "planner-secret",
        &["put", "plan", "/k", r#""from planner""#, "--as", "planner"],
    )
    .await;
    assert_eq!(put.status.code(), Some(0), "{}", text(&put));

    let started = Instant::now();
    let refused = run(
        &server,
        "reader",
        "reader-secret",
        &["put", "plan", "/k", r#""from reader""#, "--as", "reader"],
    )
    .await;
    let out = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "refused, not 0 or 3: {out}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "refused after {:?}, not at once (--timeout is 30 s): {out}",
        started.elapsed()
    );
    assert!(
        out.contains("Publish Violation") || out.contains("Permissions Violation for Publish"),
        "names the refused permission: {out}"
    );
    assert!(out.contains("bb.team.doc.plan.ch"), "{out}");
    assert!(out.contains("never be published"), "{out}");

    let get = run(
        &server,
        "reader",
        "reader-secret",
        &["get", "plan", "/k", "--json"],
    )
    .await;
    assert_eq!(get.status.code(), Some(0), "{}", text(&get));
    assert_eq!(
        String::from_utf8_lossy(&get.stdout).trim(),
        r#""from planner""#,
        "the reader's write is nowhere: {}",
        text(&get)
    );
}

#[tokio::test]
async fn a_wrong_password_fails_at_once_saying_the_server_refused_the_credentials() {
    let server = NatsServer::start_with(blackboard_tests::Options::config(config()))
        .await
        .unwrap();
    let started = Instant::now();
    let get = run(&server, "reader", "wrong", &["get", "plan"]).await;
    let out = text(&get);
    assert_eq!(get.status.code(), Some(1), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused after {:?}, not at once: {out}",
        started.elapsed()
    );
    assert!(
        out.contains("refused the credentials") && out.contains("authorization violation"),
        "{out}"
    );
}

#[tokio::test]
async fn a_snapshot_the_server_may_not_store_fails_at_once_naming_the_refused_subject() {
    // The only user may publish changes but not create the space's snapshot bucket.
    let config = "authorization { users = [\n\
           { user: anon, password: anon, permissions: { publish: { deny: [\"$JS.API.STREAM.CREATE.OBJ_BB_SNAP_team\"] } } }\n\
         ] }\n\
         no_auth_user: anon\n"
        .to_owned();
    let server = NatsServer::start_with(blackboard_tests::Options::config(config))
        .await
        .unwrap();
    let put = run(&server, "anon", "anon", &["put", "plan", "/k", "1"]).await;
    assert_eq!(put.status.code(), Some(0), "{}", text(&put));

    let refused = run(&server, "anon", "anon", &["snapshot", "plan"]).await;
    let out = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{out}");
    // The error itself names the refusal and the bucket's stream (the server's refusal is
    // logged as a warning too), not a timeout that hides it.
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {out}"));
    assert!(error.contains("refused access"), "{out}");
    assert!(
        error.contains("$JS.API.STREAM.CREATE.OBJ_BB_SNAP_team"),
        "{out}"
    );
    assert!(!error.contains("timed out"), "{out}");
}
