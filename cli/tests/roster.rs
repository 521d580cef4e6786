//! `blackboard roster` run as a user would, against a real nats-server: an admin publishes a
//! space's roster, an agent with a listed key writes through `put --key` and the change
//! applies, an agent with an unlisted key is refused at once with the reason, `roster show`
//! prints the roster in force, and a non-admin's `roster set` fails clearly and publishes
//! nothing.
mod support;

use support::{new_key, run, stream_messages};

#[tokio::test]
async fn an_admin_sets_the_roster_listed_agents_write_unlisted_ones_are_refused_and_non_admins_cannot_change_it(
) {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let admin = new_key("admin", cwd).await;
    let alice = new_key("alice", cwd).await;
    let mallory = new_key("mallory", cwd).await;
    let server = blackboard_tests::NatsServer::start().await.unwrap();
    let url = server.url();
    let on = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--nats", &url, "--space", "team"].map(String::from));
        all
    };
    let call = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, cwd).await
    };

    // Before any roster: an open space.
    let (out, stdout, stderr) = call(on(&["roster", "show"])).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "open space");

    // The admin publishes the roster.
    let body = serde_json::json!({
        "admins": [admin],
        "agents": {"alice": {"keys": [alice], "write": ["/tasks/**"]}},
    });
    std::fs::write(cwd.join("roster.json"), body.to_string()).unwrap();
    let (out, stdout, stderr) =
        call(on(&["roster", "set", "roster.json", "--key", "admin.nk"])).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("published the roster of space team at position 1"),
        "{stdout}"
    );

    // `roster show` prints it, in the body format `roster set` reads.
    let (out, stdout, stderr) = call(on(&["roster", "show"])).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let shown: serde_json::Value = serde_json::from_str(&stdout).expect(&stdout);
    assert_eq!(shown, body);
    assert!(stderr.contains("in force since position 1"), "{stderr}");

    // Alice, with her listed key, writes inside her grants: it applies, as a fresh reader
    // (which judges every change against the roster) sees.
    let (out, stdout, stderr) = call(on(&[
        "put",
        "plan",
        "/tasks/1",
        "\"write docs\"",
        "--as",
        "alice",
        "--key",
        "alice.nk",
    ]))
    .await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let (out, stdout, stderr) = call(on(&["get", "plan", "/tasks/1"])).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "\"write docs\"");
    let written = stream_messages(&server, "team").await;

    // Mallory's key is listed for nobody: refused at once, with the reason, nothing written.
    let (out, stdout, stderr) = call(on(&[
        "put",
        "plan",
        "/tasks/2",
        "\"forged\"",
        "--as",
        "mallory",
        "--key",
        "mallory.nk",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("roster refuses this write")
            && stderr.contains(&format!("key {mallory} is not a key of agent mallory")),
        "{stderr}"
    );
    // Writing as alice with mallory's key is refused the same way.
    let (out, _, stderr) = call(on(&[
        "put",
        "plan",
        "/tasks/2",
        "\"forged\"",
        "--as",
        "alice",
        "--key",
        "mallory.nk",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not a key of agent alice"), "{stderr}");
    // Alice outside her grants is refused too.
    let (out, _, stderr) = call(on(&[
        "put", "plan", "/notes/x", "1", "--as", "alice", "--key", "alice.nk",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("outside alice's grants"), "{stderr}");
    assert_eq!(stream_messages(&server, "team").await, written);

    // A non-admin (alice, a listed agent) cannot change the roster, even naming herself
    // admin: refused before publishing, and the roster in force stays.
    let coup = serde_json::json!({
        "admins": [alice],
        "agents": {"alice": {"keys": [alice], "write": ["/**"]}},
    });
    std::fs::write(cwd.join("coup.json"), coup.to_string()).unwrap();
    let (out, stdout, stderr) =
        call(on(&["roster", "set", "coup.json", "--key", "alice.nk"])).await;
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("nothing was published")
            && stderr.contains(&format!(
                "signed by {alice}, which is not an admin of the roster in force"
            )),
        "{stderr}"
    );
    assert_eq!(stream_messages(&server, "team").await, written);
    let (_, stdout, _) = call(on(&["roster", "show"])).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap(),
        body
    );

    // A reader pinning another admin key ignores this genesis: to it the space is open.
    let (out, stdout, stderr) = call(on(&["roster", "show", "--admin-key", &mallory])).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "open space");
    assert!(stderr.contains("no roster in force"), "{stderr}");
}

#[tokio::test]
async fn roster_set_without_a_key_or_with_a_bad_body_fails_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(cwd.join("empty.json"), r#"{"admins":[]}"#).unwrap();
    let (out, _, stderr) = run(
        &[
            "roster",
            "set",
            "empty.json",
            "--nats",
            "nats://127.0.0.1:1",
        ],
        cwd,
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--key"), "{stderr}");
    new_key("admin", cwd).await;
    let (out, _, stderr) = run(
        &[
            "roster",
            "set",
            "empty.json",
            "--key",
            "admin.nk",
            "--nats",
            "nats://127.0.0.1:1",
        ],
        cwd,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("empty.json") && stderr.contains("roster lists no admins"),
        "{stderr}"
    );
}
