//! Agent keys and signed changes (issue 15 §1, §2, §7, the nkey half of §5): an agent with a
//! key signs every event it publishes (container creations included), every replica reports
//! each change's signature status and provenance in history, blame and watch events, and a
//! server that knows agents as nkey users lets a keyed agent in and refuses an unknown key
//! at once, naming the authorization failure.

use std::path::Path;

use blackboard::schemas::nkeys::KeyPair;
use blackboard::schemas::{subject, Envelope, SpaceId};
use blackboard_client::{
    AgentId, Error, HistoryFilter, Options, Provenance, Signature, Start, WatchOptions,
};
use blackboard_tests::NatsServer;
use blackboard_tests::Options as ServerOptions;
use futures::StreamExt as _;
use tempfile::tempdir;

use crate::within;

const SPACE: &str = "trust";
const DOC: &str = "plan";

/// Every event of the space's stream, read with async-nats straight from JetStream (not
/// through the engine's decoder), as envelopes.
async fn raw_envelopes(server: &NatsServer) -> Vec<Envelope> {
    let client = server.connect().await.unwrap();
    let js = async_nats::jetstream::new(client);
    let space: SpaceId = SPACE.parse().unwrap();
    let mut stream = js.get_stream(subject::stream_name(&space)).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let message = stream.get_raw_message(seq).await.unwrap();
        out.push(Envelope::decode(&message.payload).unwrap());
    }
    out
}

/// Every envelope is signed by `public` and verifies.
fn assert_signed_by<'a>(envelopes: impl IntoIterator<Item = &'a Envelope>, public: &str) {
    for env in envelopes {
        assert_eq!(env.verify(), Ok(public), "{env:?}");
    }
}

/// The options of agent `name` with its store in `dir`, signing with `key` if given.
fn agent(name: &str, dir: &Path, key: Option<KeyPair>) -> Options {
    let options = Options::new(name).unwrap().store(dir);
    match key {
        Some(key) => options.key(key).unwrap(),
        None => options,
    }
}

#[tokio::test]
async fn every_event_of_an_agent_with_a_key_verifies_and_names_its_key_and_replicas_report_it() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let key = KeyPair::new_user();
    let public = key.public_key();
    let provenance = Provenance {
        on_behalf_of: Some("carol".into()),
        model: Some("model-x".into()),
        tool_call: Some("put#1".into()),
    };
    let (alice_dir, bob_dir, reader_dir) =
        (tempdir().unwrap(), tempdir().unwrap(), tempdir().unwrap());
    let alice = agent("alice", alice_dir.path(), Some(key))
        .provenance(provenance.clone())
        .connect(&server.url())
        .await
        .unwrap();
    let bob = agent("bob", bob_dir.path(), None)
        .connect(&server.url())
        .await
        .unwrap();

    let a = alice.doc(SPACE, DOC).unwrap();
    // A nested path: the container recipe makes creation changes before the write.
    let written = a
        .edit(
            Some("first task"),
            &[blackboard_client::Edit::put(
                "/tasks/t1/title".parse().unwrap(),
                "write the spec".into(),
            )],
        )
        .await
        .unwrap();
    assert!(
        !written.created.is_empty(),
        "the recipe created the maps on the way"
    );
    a.put("/tasks/t1/owner", "alice".into()).await.unwrap();
    within("alice's changes on the log", a.flush())
        .await
        .unwrap();
    let b = bob.doc(SPACE, DOC).unwrap();
    let bob_hash = b.put("/note", "unsigned".into()).await.unwrap().unwrap();
    within("bob's change on the log", b.flush()).await.unwrap();

    let envelopes = raw_envelopes(&server).await;
    let (signed, unsigned): (Vec<_>, Vec<_>) =
        envelopes.iter().partition(|e| e.agent.as_str() == "alice");
    assert_eq!(signed.len(), written.created.len() + 2, "{envelopes:?}");
    assert_signed_by(signed.iter().copied(), &public);
    for env in &signed {
        assert_eq!(env.provenance.as_ref(), Some(&provenance));
    }
    assert_eq!(unsigned.len(), 1);
    assert_eq!(unsigned[0].signer, None);
    assert_eq!(unsigned[0].signature, None);

    // A third agent, with no key, reads the history: the status travels with the changes.
    let reader = agent("reader", reader_dir.path(), None)
        .connect(&server.url())
        .await
        .unwrap();
    let r = reader.doc(SPACE, DOC).unwrap();
    within("the reader to sync", r.sync()).await.unwrap();
    let history = r.history(&HistoryFilter::default()).unwrap();
    assert_eq!(history.len(), envelopes.len());
    // What every replica reports of a change, by its agent: alice's verify as her key and
    // carry her provenance; bob's are unsigned and carry none.
    let expected = |agent: &AgentId| match agent.as_str() {
        "alice" => (Signature::Verified(public.clone()), Some(&provenance)),
        _ => (Signature::Unsigned, None),
    };
    for event in &history {
        let record = &event.record;
        let reported = (record.signature.clone(), record.provenance.as_ref());
        assert_eq!(reported, expected(&record.agent), "{record:?}");
    }
    let json = serde_json::to_value(&history[0]).unwrap();
    assert_eq!(json["signer"], public.as_str(), "{json}");
    assert_eq!(json["verified"], true, "{json}");

    let blame = r.blame("/tasks/t1/title").unwrap().unwrap();
    let record = blame.record.unwrap();
    assert_eq!(record.signature, Signature::Verified(public.clone()));
    assert_eq!(record.message.as_deref(), Some("first task"));
    let blame = r.blame("/note").unwrap().unwrap();
    assert_eq!(blame.record.unwrap().signature, Signature::Unsigned);

    // A watch from the beginning reports the same.
    let mut watch = r
        .watch_with(
            "/**",
            WatchOptions {
                start: Start::Beginning,
                ..WatchOptions::default()
            },
        )
        .unwrap();
    loop {
        let event = within("a change event", watch.next())
            .await
            .unwrap()
            .unwrap();
        let reported = (event.signature.clone(), event.provenance.as_ref());
        assert_eq!(reported, expected(&event.agent), "{event:?}");
        if event.change == bob_hash {
            break;
        }
    }
}

/// A server that knows `alice` as an nkey user; `admin` (password) is for the harness's
/// own probes.
fn nkey_users(alice: &str) -> String {
    format!(
        r#"
authorization {{
  users = [
    {{ nkey: {alice} }}
    {{ user: admin, password: admin }}
  ]
}}
no_auth_user: admin
"#
    )
}

#[tokio::test]
async fn a_server_with_nkey_users_lets_the_agents_key_in_and_refuses_an_unknown_key_naming_authorization(
) {
    blackboard_tests::init_tracing();
    let key = KeyPair::new_user();
    let public = key.public_key();
    let server = NatsServer::start_with(ServerOptions::config(nkey_users(&public)))
        .await
        .unwrap();

    let dir = tempdir().unwrap();
    let alice = agent("alice", dir.path(), Some(key))
        .connect(&server.url())
        .await
        .unwrap();
    let doc = alice.doc(SPACE, DOC).unwrap();
    doc.put("/status", "in".into()).await.unwrap();
    within("alice's change on the log", doc.flush())
        .await
        .unwrap();
    let envelopes = raw_envelopes(&server).await;
    assert!(!envelopes.is_empty());
    assert_signed_by(&envelopes, &public);

    let other = tempdir().unwrap();
    let err = within(
        "the refusal",
        agent("mallory", other.path(), Some(KeyPair::new_user())).connect(&server.url()),
    )
    .await
    .expect_err("an unknown key is refused");
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
        err.to_string().to_lowercase().contains("authorization"),
        "the error names the authorization failure: {err}"
    );
}

/// Sets a file's permission bits (only Unix has them).
#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `Options::key_file` refuses `path`, its error naming the file and saying `why`.
fn assert_key_file_refused(path: &Path, why: &str) {
    let text = Options::new("a")
        .unwrap()
        .key_file(path)
        .unwrap_err()
        .to_string();
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(text.contains(name) && text.contains(why), "{text}");
}

#[tokio::test]
async fn a_key_file_readable_by_others_or_without_a_user_seed_is_refused_naming_the_file() {
    let dir = tempdir().unwrap();
    let open = dir.path().join("open.nk");
    std::fs::write(&open, format!("{}\n", KeyPair::new_user().seed().unwrap())).unwrap();
    #[cfg(unix)]
    {
        chmod(&open, 0o644);
        assert_key_file_refused(&open, "chmod 600");
        chmod(&open, 0o600);
    }
    let options = Options::new("a").unwrap().key_file(&open).unwrap();
    assert!(options.public_key().unwrap().starts_with('U'));

    let account = dir.path().join("account.nk");
    std::fs::write(&account, KeyPair::new_account().seed().unwrap()).unwrap();
    #[cfg(unix)]
    chmod(&account, 0o600);
    assert_key_file_refused(&account, "user seed");
    assert_key_file_refused(&dir.path().join("missing.nk"), "cannot read");
}

#[tokio::test]
async fn changes_signed_while_the_server_is_down_are_published_later_with_their_signatures() {
    blackboard_tests::init_tracing();
    let mut server = NatsServer::start().await.unwrap();
    let key = KeyPair::new_user();
    let public = key.public_key();
    let dir = tempdir().unwrap();
    server.stop().await;
    // The board opens with the server down and writes into its outbox.
    let alice = agent("alice", dir.path(), Some(key))
        .connect(&server.url())
        .await
        .unwrap();
    assert!(!alice.is_connected());
    let doc = alice.doc(SPACE, DOC).unwrap();
    doc.put("/offline/note", "written while down".into())
        .await
        .unwrap();
    assert!(doc.pending() > 0, "the changes wait in the outbox");
    server.restart().await.unwrap();
    within("the outbox to drain", doc.flush()).await.unwrap();
    let envelopes = raw_envelopes(&server).await;
    assert!(
        envelopes.len() >= 2,
        "creations and the write: {envelopes:?}"
    );
    assert_signed_by(&envelopes, &public);
}
