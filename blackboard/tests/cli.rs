//! The `blackboard` command, run as a user would.

use std::process::{Command, Output};

fn blackboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blackboard"))
        .args(args)
        .output()
        .expect("the blackboard binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The printed heads of every agent, one line each.
fn heads_lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("agent-"))
        .map(|l| l.split_once(" heads ").expect("a heads line").1.to_owned())
        .collect()
}

#[test]
fn demo_on_the_embedded_log_converges_and_prints_equal_heads() {
    let out = blackboard(&["demo", "--agents", "4", "--rounds", "5"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("converged: 4 agents"), "{stdout}");
    let heads = heads_lines(&stdout);
    assert_eq!(heads.len(), 4);
    assert!(heads.iter().all(|h| h == &heads[0]), "{heads:?}");
    assert!(stdout.contains("\"edits\": 20"), "{stdout}");
}

#[tokio::test]
async fn demo_against_a_real_nats_server_converges() {
    let server = blackboard_tests::NatsServer::start().await.unwrap();
    let url = server.url();
    let out = tokio::task::spawn_blocking(move || {
        blackboard(&["demo", "--nats", &url, "--agents", "3", "--rounds", "5"])
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("converged: 3 agents"), "{stdout}");
    assert_eq!(heads_lines(&stdout).len(), 3);
}

#[test]
fn bad_arguments_are_refused_with_a_message_naming_them() {
    for (args, says) in [
        (&["demo", "--agents", "0"][..], "--agents"),
        (&["demo", "--space", "a.b"][..], "contains '.'"),
        (&["demo", "--creds", "x.creds"][..], "--nats"),
        (&["demo", "--rounds", "lots"][..], "--rounds"),
        (&["dance"][..], "unrecognized subcommand"),
    ] {
        let out = blackboard(args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(says),
            "{args:?} should mention {says:?}: {stderr}"
        );
    }
}

#[test]
fn an_unreachable_nats_server_is_a_clear_error() {
    // Port 1 on loopback: nothing listens there.
    let out = blackboard(&["demo", "--nats", "nats://127.0.0.1:1"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("connecting to NATS at nats://127.0.0.1:1"),
        "{stderr}"
    );
}
