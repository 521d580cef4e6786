//! What several of the binary's test files share: running `blackboard` as a user would, and
//! reading the space's stream. Each test file that needs it says `mod support;`, so not every
//! one uses every function.
#![allow(dead_code)]

pub mod browser;
pub mod site;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use blackboard_client::schemas::{subject, SpaceId};
use blackboard_tests::NatsServer;

/// The `blackboard` command with none of the test's own environment saying where the board
/// is or which key to use.
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_blackboard"));
    command
        .env_remove("NATS_URL")
        .env_remove("NATS_CREDS")
        .env_remove("BLACKBOARD_KEY");
    command
}

/// Runs `blackboard ARGS` in `dir` off the async runtime: (output, stdout, stderr).
pub async fn run(args: &[&str], dir: &Path) -> (Output, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let dir: PathBuf = dir.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        command()
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("the blackboard binary runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// `keys new NAME` in `dir`: the public key.
pub async fn new_key(name: &str, dir: &Path) -> String {
    let (out, stdout, stderr) = run(&["keys", "new", name], dir).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout.trim().to_owned()
}

/// How many messages the space's stream holds (roster events and changes).
pub async fn stream_messages(server: &NatsServer, space: &str) -> u64 {
    let js = async_nats::jetstream::new(server.connect().await.unwrap());
    let space: SpaceId = space.parse().unwrap();
    let mut stream = js.get_stream(subject::stream_name(&space)).await.unwrap();
    stream.info().await.unwrap().state.messages
}
