//! `blackboard keys` and `--key`, run as a user would: a key made by `keys new` lets `put`
//! into a server that knows agents as nkey users, and its change verifies on the stream.

use std::path::Path;
use std::process::{Command, Output};

use blackboard_client::schemas::{subject, Envelope, SpaceId};

/// The `blackboard` command with none of the test's own environment saying where the board
/// is or which key to use.
fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_blackboard"));
    command
        .env_remove("NATS_URL")
        .env_remove("NATS_CREDS")
        .env_remove("BLACKBOARD_KEY");
    command
}

fn run(args: &[&str], dir: &Path) -> Output {
    command()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the blackboard binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs `keys new NAME` in `dir`, expects success, returns the public key printed.
fn new_key(name: &str, dir: &Path) -> String {
    let out = run(&["keys", "new", name], dir);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let public = stdout.trim().to_owned();
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the public key on stdout: {stdout}"
    );
    assert!(public.starts_with('U') && public.len() == 56, "{public}");
    public
}

#[test]
fn keys_new_writes_a_seed_only_its_owner_can_read_prints_the_public_key_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let public = new_key("alice", dir.path());
    let file = dir.path().join("alice.nk");
    let seed = std::fs::read_to_string(&file).unwrap();
    assert!(seed.starts_with("SU"), "a user seed: {seed}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }

    let shown = run(&["keys", "show", "alice.nk"], dir.path());
    assert!(shown.status.success(), "{:?}", text(&shown));
    assert_eq!(text(&shown).0.trim(), public);

    let again = run(&["keys", "new", "alice"], dir.path());
    let (_, stderr) = text(&again);
    assert_eq!(again.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("alice.nk already exists"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        seed,
        "the seed is kept"
    );

    let out = dir.path().join("elsewhere.nk");
    let made = run(
        &["keys", "new", "bob", "--out", out.to_str().unwrap()],
        dir.path(),
    );
    assert!(made.status.success(), "{:?}", text(&made));
    assert!(out.is_file() && !dir.path().join("bob.nk").exists());
}

#[tokio::test]
async fn put_with_a_key_into_a_server_with_nkey_users_works_and_its_event_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let public = new_key("writer", dir.path());
    let config = format!(
        "authorization {{ users = [ {{ nkey: {public} }}, {{ user: admin, password: admin }} ] }}\n\
         no_auth_user: admin\n"
    );
    let server =
        blackboard_tests::NatsServer::start_with(blackboard_tests::Options::config(config))
            .await
            .unwrap();
    let url = server.url();
    let cwd = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        run(
            &[
                "put",
                "plan",
                "/status",
                "\"done\"",
                "--nats",
                &url,
                "--space",
                "team",
                "--as",
                "writer",
                "--key",
                "writer.nk",
            ],
            &cwd,
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));

    // Every event on the stream, read with async-nats, verifies against the key.
    let js = async_nats::jetstream::new(server.connect().await.unwrap());
    let space: SpaceId = "team".parse().unwrap();
    let mut stream = js.get_stream(subject::stream_name(&space)).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    assert!(last >= 1);
    for seq in 1..=last {
        let message = stream.get_raw_message(seq).await.unwrap();
        let envelope = Envelope::decode(&message.payload).unwrap();
        assert_eq!(envelope.verify(), Ok(public.as_str()), "event {seq}");
    }

    // `history --json` says so too (read through the server's no-auth user, no key).
    let url = server.url();
    let cwd = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        run(
            &[
                "history", "plan", "--json", "--nats", &url, "--space", "team",
            ],
            &cwd,
        )
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, last);
    for line in &lines {
        assert_eq!(line["signer"], public.as_str(), "{line}");
        assert_eq!(line["verified"], true, "{line}");
    }
}

#[tokio::test]
async fn put_with_a_key_the_server_does_not_know_fails_at_once_naming_authorization() {
    let dir = tempfile::tempdir().unwrap();
    let known = new_key("known", dir.path());
    new_key("stranger", dir.path());
    let config = format!(
        "authorization {{ users = [ {{ nkey: {known} }}, {{ user: admin, password: admin }} ] }}\n\
         no_auth_user: admin\n"
    );
    let server =
        blackboard_tests::NatsServer::start_with(blackboard_tests::Options::config(config))
            .await
            .unwrap();
    let url = server.url();
    let cwd = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        command()
            .args([
                "put",
                "plan",
                "/status",
                "\"x\"",
                "--nats",
                &url,
                "--space",
                "team",
                "--timeout",
                "60",
            ])
            .env("BLACKBOARD_KEY", "stranger.nk")
            .current_dir(&cwd)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.to_lowercase().contains("authorization"),
        "the error names the authorization failure: {stderr}"
    );
}
