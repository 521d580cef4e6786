//! `blackboard keys` and `--key`, run as a user would: a key made by `keys new` lets `put`
//! into a server that knows agents as nkey users, and its change verifies on the stream.

mod support;

use std::path::Path;

use blackboard_client::schemas::{subject, Envelope, SpaceId};
use blackboard_tests::NatsServer;
use support::{command, run};

/// Runs `keys new NAME` in `dir`, expects success, returns the public key printed (the only
/// line on stdout).
async fn new_key(name: &str, dir: &Path) -> String {
    let public = support::new_key(name, dir).await;
    assert!(
        !public.contains('\n'),
        "only the public key on stdout: {public}"
    );
    assert!(public.starts_with('U') && public.len() == 56, "{public}");
    public
}

/// A server that knows `public` as an nkey user, and everyone else as `admin` (the harness's
/// probes, and readers without a key).
async fn nkey_server(public: &str) -> NatsServer {
    let config = format!(
        "authorization {{ users = [ {{ nkey: {public} }}, {{ user: admin, password: admin }} ] }}\n\
         no_auth_user: admin\n"
    );
    NatsServer::start_with(blackboard_tests::Options::config(config))
        .await
        .unwrap()
}

/// `put plan /status VALUE` into space `team` on the server at `url`, with `more` flags.
fn put<'a>(url: &'a str, value: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "put", "plan", "/status", value, "--nats", url, "--space", "team",
    ];
    args.extend_from_slice(more);
    args
}

#[tokio::test]
async fn keys_new_writes_a_seed_only_its_owner_can_read_prints_the_public_key_and_never_overwrites()
{
    let dir = tempfile::tempdir().unwrap();
    let public = new_key("alice", dir.path()).await;
    let file = dir.path().join("alice.nk");
    let seed = std::fs::read_to_string(&file).unwrap();
    assert!(seed.starts_with("SU"), "a user seed: {seed}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }

    let (shown, stdout, stderr) = run(&["keys", "show", "alice.nk"], dir.path()).await;
    assert!(shown.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), public);

    let (again, _, stderr) = run(&["keys", "new", "alice"], dir.path()).await;
    assert_eq!(again.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("alice.nk already exists"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        seed,
        "the seed is kept"
    );

    let out = dir.path().join("elsewhere.nk");
    let (made, stdout, stderr) = run(
        &["keys", "new", "bob", "--out", out.to_str().unwrap()],
        dir.path(),
    )
    .await;
    assert!(made.status.success(), "{stdout}\n{stderr}");
    assert!(out.is_file() && !dir.path().join("bob.nk").exists());
}

#[tokio::test]
async fn put_with_a_key_into_a_server_with_nkey_users_works_and_its_event_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let public = new_key("writer", dir.path()).await;
    let server = nkey_server(&public).await;
    let url = server.url();
    let args = put(&url, "\"done\"", &["--as", "writer", "--key", "writer.nk"]);
    let (out, stdout, stderr) = run(&args, dir.path()).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");

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
    let (out, stdout, stderr) = run(
        &[
            "history", "plan", "--json", "--nats", &url, "--space", "team",
        ],
        dir.path(),
    )
    .await;
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
    let known = new_key("known", dir.path()).await;
    new_key("stranger", dir.path()).await;
    let server = nkey_server(&known).await;
    let url = server.url();
    // The key named by the environment, not the flag.
    let args: Vec<String> = put(&url, "\"x\"", &["--timeout", "60"])
        .into_iter()
        .map(str::to_owned)
        .collect();
    let cwd = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        command()
            .args(&args)
            .env("BLACKBOARD_KEY", "stranger.nk")
            .current_dir(&cwd)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.to_lowercase().contains("authorization"),
        "the error names the authorization failure: {stderr}"
    );
}
