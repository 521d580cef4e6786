//! `blackboard bench` run as a user would, against a real nats-server the test starts: it
//! prints a figure beside a baseline for every scenario and leaves nothing behind on the
//! server; it authenticates every connection (its watcher processes' too) with the key it
//! is given; and bad invocations fail clearly instead of hanging.

mod support;

use std::path::Path;
use std::process::Output;

use blackboard_tests::{NatsServer, Options};
use futures::TryStreamExt as _;
use support::{new_key, run};

/// `blackboard bench ARGS` in `dir`, with none of the test's own environment naming a server
/// or a key, run off the async runtime.
async fn bench(args: &[&str], dir: &Path) -> (Output, String, String) {
    let all: Vec<&str> = std::iter::once("bench")
        .chain(args.iter().copied())
        .collect();
    run(&all, dir).await
}

/// The table's rows as (scenario id, cells).
fn rows(stdout: &str) -> Vec<(u8, Vec<String>)> {
    stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| # "))
        .map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect();
            assert_eq!(cells.len(), 7, "not a table row: {line}");
            let id = cells[0]
                .parse()
                .unwrap_or_else(|_| panic!("bad id: {line}"));
            (id, cells)
        })
        .collect()
}

/// The names of every stream on the server (KV buckets and object stores are streams too).
async fn streams(server: &NatsServer) -> Vec<String> {
    let js = async_nats::jetstream::new(server.connect().await.unwrap());
    js.stream_names().try_collect().await.unwrap()
}

#[tokio::test]
async fn bench_prints_a_figure_beside_a_baseline_for_every_scenario_and_deletes_what_it_made() {
    let server = NatsServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let (out, stdout, stderr) = bench(&["--nats", &url, "--quick"], dir.path()).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let rows = rows(&stdout);
    let number = |s: &str| s.chars().any(|c| c.is_ascii_digit());
    for (id, cells) in &rows {
        assert_ne!(
            cells[6], "error",
            "scenario {id} failed: {cells:?}\n{stderr}"
        );
        if *id == 8 || *id == 12 {
            // The shipped binary keeps the system allocator (no heap figure) and does not
            // own the server (no restart): said so, naming the binary that measures them.
            assert_eq!(cells[2], "not measured", "{cells:?}");
            assert!(cells[3].contains("scenarios"), "{cells:?}");
        } else {
            assert!(
                number(&cells[2]) && number(&cells[3]) && number(&cells[4]),
                "scenario {id} printed no figures: {cells:?}\n{stderr}"
            );
        }
    }
    let seen: std::collections::BTreeSet<u8> = rows.iter().map(|(id, _)| *id).collect();
    assert_eq!(seen, (1..=12).collect(), "scenarios missing:\n{stdout}");
    // Watcher processes ran (scenario 6 spawns `blackboard bench --watch-child`).
    assert!(stdout.contains("watcher process"), "{stdout}");
    assert_eq!(
        streams(&server).await,
        Vec::<String>::new(),
        "left behind on the server"
    );
}

#[tokio::test]
async fn bench_with_a_key_authenticates_every_connection_its_watcher_processes_included() {
    let dir = tempfile::tempdir().unwrap();
    let public = new_key("bencher", dir.path()).await;
    // Connections without credentials are the `anon` user, who may not create streams: a
    // bench that connected anything without the key would fail.
    let config = format!(
        "authorization {{ users = [\n\
           {{ nkey: {public} }},\n\
           {{ user: anon, password: anon, permissions: {{ publish: {{ deny: [\"$JS.API.STREAM.CREATE.>\", \"$JS.API.CONSUMER.>\"] }} }} }}\n\
         ] }}\n\
         no_auth_user: anon\n"
    );
    let server = NatsServer::start_with(Options::config(config))
        .await
        .unwrap();
    let url = server.url();

    let (out, stdout, stderr) = bench(
        &[
            "--nats",
            &url,
            "--quick",
            "--only",
            "1,6",
            "--key",
            "bencher.nk",
        ],
        dir.path(),
    )
    .await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let rows = rows(&stdout);
    assert!(rows.iter().any(|(id, _)| *id == 6), "{stdout}");
    assert!(
        rows.iter().all(|(_, c)| c[6] != "error"),
        "{stdout}\n{stderr}"
    );

    // The same run without the key is refused by the server (the stream cannot be made).
    let (out, stdout, stderr) =
        bench(&["--nats", &url, "--quick", "--only", "3"], dir.path()).await;
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("error:"), "{stderr}");
}

#[tokio::test]
async fn bench_without_a_server_is_a_usage_error_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = bench(&["--quick"], dir.path()).await;
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("--nats"), "{stderr}");
}

#[tokio::test]
async fn bench_against_a_server_that_is_not_there_fails_naming_it() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let (out, stdout, stderr) = bench(&["--nats", &url, "--quick"], dir.path()).await;
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}

#[tokio::test]
async fn bench_where_the_user_may_not_create_streams_says_the_server_refused_naming_the_subject() {
    let dir = tempfile::tempdir().unwrap();
    // The only user may do anything but create a stream.
    let config = "authorization { users = [\n\
           { user: anon, password: anon, permissions: { publish: { deny: [\"$JS.API.STREAM.CREATE.>\"] } } }\n\
         ] }\n\
         no_auth_user: anon\n"
        .to_owned();
    let server = NatsServer::start_with(Options::config(config))
        .await
        .unwrap();
    let url = server.url();

    let (out, stdout, stderr) =
        bench(&["--nats", &url, "--quick", "--only", "3"], dir.path()).await;
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // The error itself names the refusal and the subject (the server's refusal is logged as
    // a warning too), not a timeout that hides it.
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(error.contains("refused access"), "{stderr}");
    assert!(error.contains("$JS.API.STREAM.CREATE.BB_bench"), "{stderr}");
    assert!(!error.contains("timed out"), "{stderr}");
    assert_eq!(streams(&server).await, Vec::<String>::new(), "{stderr}");
}
