//! NATS permissions (issue 15 §5): a server that allows an agent exactly the subjects in
//! `docs/nats-permissions.conf` and denies everything else. A writer can do everything an
//! agent does (write, read, watch, claim, presence, snapshot) with no permission violation
//! in the server's log; wrong credentials fail at once; a read-only agent's write fails for
//! good, naming the permission, and leaves nothing to retry, while its reads and watches
//! work.

use std::path::Path;
use std::time::{Duration, Instant};

use blackboard_client::{Board, Error, Options};
use blackboard_tests::{temp_dir, NatsServer};
use futures::StreamExt;
use serde_json::json;

use crate::within;

/// The documented configuration, exactly as in `docs/`, plus `no_auth_user` for the
/// harness's readiness probe (the operator user of the file; never in production).
fn config() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/nats-permissions.conf");
    let text = std::fs::read_to_string(path).expect("docs/nats-permissions.conf");
    text + "\nno_auth_user: admin\n"
}

async fn server() -> NatsServer {
    NatsServer::start_with(blackboard_tests::Options::config(config()))
        .await
        .unwrap()
}

/// The server's URL with a user and password in it.
fn url(server: &NatsServer, user: &str, password: &str) -> String {
    format!("nats://{user}:{password}@127.0.0.1:{}", server.port())
}

async fn board(server: &NatsServer, user: &str, password: &str, dir: &Path) -> Board {
    Options::new(user)
        .unwrap()
        .store(dir)
        .connect(&url(server, user, password))
        .await
        .unwrap()
}

/// The permission violations the server logged (`... - Publish Violation - Subject "..."`).
fn violations(server: &NatsServer) -> Vec<String> {
    std::fs::read_to_string(server.log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("[ERR]") && l.contains("Violation"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_with_the_documented_permissions_writes_reads_watches_claims_and_snapshots() {
    blackboard_tests::init_tracing();
    let server = server().await;
    let (wdir, rdir) = (temp_dir(), temp_dir());
    let writer = board(&server, "planner", "planner-secret", wdir.path()).await;
    let reader = board(&server, "reader", "reader-secret", rdir.path()).await;

    // A reader waiting on a space nobody has written to yet.
    let rdoc = reader.doc("team", "plan").unwrap();
    let mut changes = rdoc.watch("/**").unwrap();

    let wdoc = writer.doc("team", "plan").unwrap();
    wdoc.put("/tasks/t1", json!({"title": "docs"}))
        .await
        .unwrap();
    within("the writer's flush", wdoc.flush()).await.unwrap();
    let seq = within("the writer's sync", wdoc.sync()).await.unwrap();
    assert!(seq >= 1);

    // The reader's watch and reads see it.
    let event = within("the reader's watch", changes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.agent.as_str(), "planner");
    within("the reader's sync", rdoc.sync()).await.unwrap();
    within("the reader to read it", rdoc.wait_for(&wdoc.heads()))
        .await
        .unwrap();
    assert_eq!(rdoc.get("/tasks/t1/title").unwrap(), Some(json!("docs")));
    assert_eq!(reader.list_documents("team").await.unwrap().len(), 1);

    // Claims and presence, for both.
    let wclaims = writer.claims("team").await.unwrap();
    let rclaims = reader.claims("team").await.unwrap();
    let claim = wclaims.claim("t1", Duration::from_secs(30)).await.unwrap();
    assert!(rclaims.claim("t1", Duration::from_secs(30)).await.is_err());
    wclaims.release(claim).await.unwrap();
    let rclaim = rclaims.claim("t1", Duration::from_secs(30)).await.unwrap();
    rclaims.release(rclaim).await.unwrap();
    let here = reader.presence("team", Some("plan")).await.unwrap();
    let me = here.join(Some("reading")).await.unwrap();
    let there = writer.presence("team", Some("plan")).await.unwrap();
    let members = there.members().await.unwrap();
    assert!(members.iter().any(|m| m.agent.as_str() == "reader"));
    me.leave().await.unwrap();

    // A snapshot, and a fresh reader starting from it.
    let info = within("the snapshot", wdoc.snapshot()).await.unwrap();
    assert!(info.seq >= seq);
    let fresh_dir = temp_dir();
    let fresh = board(&server, "reader", "reader-secret", fresh_dir.path()).await;
    let fdoc = fresh.doc("team", "plan").unwrap();
    within("the fresh reader's sync", fdoc.sync())
        .await
        .unwrap();
    assert_eq!(fdoc.get("/tasks/t1/title").unwrap(), Some(json!("docs")));
    assert_eq!(fdoc.stats().snapshot_loaded, Some(info.seq));

    assert_eq!(
        violations(&server),
        Vec::<String>::new(),
        "nothing was refused"
    );
}

#[tokio::test]
async fn a_wrong_password_fails_connect_at_once_saying_the_server_refused_the_credentials() {
    blackboard_tests::init_tracing();
    let server = server().await;
    let dir = temp_dir();
    let started = Instant::now();
    let err = Options::new("planner")
        .unwrap()
        .store(dir.path())
        .connect(&url(&server, "planner", "wrong"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused after {:?}, not at once",
        started.elapsed()
    );
    assert!(
        matches!(
            &err,
            Error::Connect {
                source: blackboard::log::Error::Credentials(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("refused the credentials")
            && err.to_string().contains("authorization violation"),
        "{err}"
    );
    assert!(
        !err.to_string().contains("wrong"),
        "the password is not shown: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_agents_write_fails_for_good_naming_the_permission_and_nothing_is_retried() {
    blackboard_tests::init_tracing();
    let server = server().await;
    let (wdir, rdir) = (temp_dir(), temp_dir());
    let writer = board(&server, "planner", "planner-secret", wdir.path()).await;
    let wdoc = writer.doc("team", "plan").unwrap();
    wdoc.put("/k", json!("from planner")).await.unwrap();
    within("the writer's flush", wdoc.flush()).await.unwrap();

    let reader = board(&server, "reader", "reader-secret", rdir.path()).await;
    let rdoc = reader.doc("team", "plan").unwrap();
    within("the reader's sync", rdoc.sync()).await.unwrap();
    assert_eq!(rdoc.get("/k").unwrap(), Some(json!("from planner")));

    // The write is made locally, then refused by the server: flush names the permission.
    rdoc.put("/mine", json!(1)).await.unwrap();
    let err = within("the refusal", rdoc.flush()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Permissions Violation for Publish") && text.contains("bb.team.doc.plan.ch"),
        "the error names the refused permission: {text}"
    );
    assert!(text.contains("never be published"), "{text}");
    assert_eq!(rdoc.pending(), 0, "nothing left in the outbox");
    assert_eq!(rdoc.stats().refused, 1);
    assert_eq!(rdoc.stats().published, 0);

    // Further writes fail at once and change nothing.
    let before = rdoc.to_json();
    let err = rdoc.put("/again", json!(2)).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Engine(blackboard::Error::WriteDenied(reason))
                if reason.contains("bb.team.doc.plan.ch")
        ),
        "{err:?}"
    );
    assert_eq!(rdoc.to_json(), before, "the refused write changed nothing");
    assert_eq!(rdoc.pending(), 0);

    // Reads and watches keep working.
    let mut changes = rdoc.watch("/k").unwrap();
    wdoc.put("/k", json!("later")).await.unwrap();
    let event = within("the reader's watch", changes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.agent.as_str(), "planner");
    within("the reader to follow", rdoc.wait_for(&wdoc.heads()))
        .await
        .unwrap();
    assert_eq!(rdoc.get("/k").unwrap(), Some(json!("later")));
    drop((changes, rdoc));
    reader.close().await.unwrap();
    let refused_so_far = violations(&server).len();
    assert!(
        refused_so_far >= 1,
        "the server logged the refusal: {}",
        std::fs::read_to_string(server.log_path()).unwrap_or_default()
    );

    // After a restart nothing is queued, nothing is published, nothing is refused again.
    let reader = board(&server, "reader", "reader-secret", rdir.path()).await;
    let rdoc = reader.doc("team", "plan").unwrap();
    within("the reopened reader's sync", rdoc.sync())
        .await
        .unwrap();
    assert_eq!(
        rdoc.pending(),
        0,
        "the outbox is still empty after a restart"
    );
    within("the reopened reader's flush", rdoc.flush())
        .await
        .unwrap();
    assert_eq!(rdoc.stats().published, 0);
    // The writer's log is unchanged by the reader: only the writer's events are there.
    let last = within("the writer's sync", wdoc.sync()).await.unwrap();
    let history = wdoc.history(&Default::default()).unwrap();
    assert!(history.iter().all(|e| e.record.agent.as_str() == "planner"));
    assert!(history.iter().all(|e| e.record.seq <= last));
    assert_eq!(
        violations(&server).len(),
        refused_so_far,
        "no retry after restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_presence_in_a_space_the_permissions_do_not_cover_fail_naming_the_refused_subject(
) {
    blackboard_tests::init_tracing();
    let server = server().await;
    let dir = temp_dir();
    let writer = board(&server, "planner", "planner-secret", dir.path()).await;
    // The documented permissions cover the space `team` only.
    // The error names the refused subject, not a timeout.
    let names_refused = |err: String, bucket: &str| {
        let subject = format!("$JS.API.STREAM.INFO.KV_BB_{bucket}_other");
        assert!(
            err.contains("Permissions Violation") && err.contains(&subject),
            "{err}"
        );
    };
    let err = within("the refused claims bucket", writer.claims("other")).await;
    names_refused(err.unwrap_err().to_string(), "CLAIMS");
    let presence = writer.presence("other", Some("plan"));
    let err = within("the refused presence bucket", presence).await;
    names_refused(err.unwrap_err().to_string(), "PRESENCE");
    // The space the permissions cover still works on the same connection.
    let claims = within("claims in team", writer.claims("team"))
        .await
        .unwrap();
    let claim = claims.claim("t1", Duration::from_secs(30)).await.unwrap();
    claims.release(claim).await.unwrap();
}
