//! Agent keys and signed changes (issue 15 §1, §2, §7, the nkey half of §5): an agent with a
//! key signs every event it publishes (container creations included), every replica reports
//! each change's signature status and provenance in history, blame and watch events, and a
//! server that knows agents as nkey users lets a keyed agent in and refuses an unknown key
//! at once, naming the authorization failure.

use blackboard::schemas::nkeys::KeyPair;
use blackboard::schemas::{subject, Envelope, SpaceId};
use blackboard_client::{
    Error, HistoryFilter, Options, Provenance, Signature, Start, WatchOptions,
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
    let alice = Options::new("alice")
        .unwrap()
        .store(alice_dir.path())
        .key(key)
        .unwrap()
        .provenance(provenance.clone())
        .connect(&server.url())
        .await
        .unwrap();
    let bob = Options::new("bob")
        .unwrap()
        .store(bob_dir.path())
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
    for env in &signed {
        assert_eq!(env.verify(), Ok(public.as_str()), "{env:?}");
        assert_eq!(env.provenance.as_ref(), Some(&provenance));
    }
    assert_eq!(unsigned.len(), 1);
    assert_eq!(unsigned[0].signer, None);
    assert_eq!(unsigned[0].signature, None);

    // A third agent, with no key, reads the history: the status travels with the changes.
    let reader = Options::new("reader")
        .unwrap()
        .store(reader_dir.path())
        .connect(&server.url())
        .await
        .unwrap();
    let r = reader.doc(SPACE, DOC).unwrap();
    within("the reader to sync", r.sync()).await.unwrap();
    let history = r.history(&HistoryFilter::default()).unwrap();
    assert_eq!(history.len(), envelopes.len());
    for event in &history {
        let record = &event.record;
        if record.agent.as_str() == "alice" {
            assert_eq!(record.signature, Signature::Verified(public.clone()));
            assert_eq!(record.provenance.as_ref(), Some(&provenance));
        } else {
            assert_eq!(record.signature, Signature::Unsigned);
            assert_eq!(record.provenance, None);
        }
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
        if event.agent.as_str() == "alice" {
            assert_eq!(event.signature, Signature::Verified(public.clone()));
            assert_eq!(event.provenance.as_ref(), Some(&provenance));
        } else {
            assert_eq!(event.signature, Signature::Unsigned);
        }
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
    let alice = Options::new("alice")
        .unwrap()
        .store(dir.path())
        .key(key)
        .unwrap()
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
    for env in &envelopes {
        assert_eq!(env.verify(), Ok(public.as_str()));
    }

    let other = tempdir().unwrap();
    let err = within(
        "the refusal",
        Options::new("mallory")
            .unwrap()
            .store(other.path())
            .key(KeyPair::new_user())
            .unwrap()
            .connect(&server.url()),
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

#[tokio::test]
async fn a_key_file_readable_by_others_or_without_a_user_seed_is_refused_naming_the_file() {
    let dir = tempdir().unwrap();
    let open = dir.path().join("open.nk");
    std::fs::write(&open, format!("{}\n", KeyPair::new_user().seed().unwrap())).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Options::new("a").unwrap().key_file(&open).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("open.nk") && text.contains("chmod 600"),
            "{text}"
        );
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let options = Options::new("a").unwrap().key_file(&open).unwrap();
    assert!(options.public_key().unwrap().starts_with('U'));

    let account = dir.path().join("account.nk");
    std::fs::write(&account, KeyPair::new_account().seed().unwrap()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&account, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let text = Options::new("a")
        .unwrap()
        .key_file(&account)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("account.nk") && text.contains("user seed"),
        "{text}"
    );
    let missing = dir.path().join("missing.nk");
    let text = Options::new("a")
        .unwrap()
        .key_file(&missing)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("missing.nk") && text.contains("cannot read"),
        "{text}"
    );
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
    let alice = Options::new("alice")
        .unwrap()
        .store(dir.path())
        .key(key)
        .unwrap()
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
    for env in &envelopes {
        assert_eq!(env.verify(), Ok(public.as_str()), "{env:?}");
    }
}
