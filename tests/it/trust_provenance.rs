//! Per-write provenance (issue 15 §7): a write through `Doc::with_provenance` declares its
//! own model and tool call over the board's default, signed with the change; another
//! agent's replica, reading the log, shows it in history, blame and watch events, verified.

use blackboard_client::{HistoryFilter, Options, Provenance};
use blackboard_tests::{temp_dir, NatsServer};
use futures::StreamExt as _;
use nkeys::KeyPair;
use serde_json::json;

use crate::within;

#[tokio::test]
async fn a_write_s_own_provenance_is_signed_with_it_and_history_blame_and_watches_elsewhere_show_it(
) {
    let server = NatsServer::start().await.unwrap();
    let dir = temp_dir();
    let key = KeyPair::new_user();
    let signer = key.public_key();
    let writer = Options::new("alice")
        .unwrap()
        .store(dir.path().join("alice"))
        .key(key)
        .unwrap()
        .provenance(Provenance {
            on_behalf_of: Some("carol".into()),
            model: Some("board-default-model".into()),
            tool_call: None,
        })
        .connect(&server.url())
        .await
        .unwrap();
    let reader = Options::new("reader")
        .unwrap()
        .store(dir.path().join("reader"))
        .connect(&server.url())
        .await
        .unwrap();
    let plan = writer.doc("team", "plan").unwrap();
    let seen = reader.doc("team", "plan").unwrap();
    let mut watch = seen.watch("/**").unwrap();

    // One write with its own model and tool call; one with the board's default only.
    let call = Provenance {
        on_behalf_of: None,
        model: Some("per-write-model".into()),
        tool_call: Some("put#42".into()),
    };
    let own = plan
        .with_provenance(call)
        .put("/goal", json!("ship"))
        .await
        .unwrap()
        .unwrap();
    let plain = plan.put("/owner", json!("alice")).await.unwrap().unwrap();
    plan.flush().await.unwrap();
    within("the reader", seen.wait_for(&plan.heads()))
        .await
        .unwrap();

    let merged = Provenance {
        on_behalf_of: Some("carol".into()),
        model: Some("per-write-model".into()),
        tool_call: Some("put#42".into()),
    };
    let default = Provenance {
        on_behalf_of: Some("carol".into()),
        model: Some("board-default-model".into()),
        tool_call: None,
    };
    // History: each change with its own provenance, signed by alice's key and verified.
    let events = seen.history(&HistoryFilter::default()).unwrap();
    let of = |hash| {
        events
            .iter()
            .find(|e| e.record.hash == hash)
            .unwrap_or_else(|| panic!("{hash} in history: {events:#?}"))
    };
    assert_eq!(of(own).record.provenance.as_ref(), Some(&merged));
    assert_eq!(of(plain).record.provenance.as_ref(), Some(&default));
    for hash in [own, plain] {
        let r = &of(hash).record;
        assert!(r.signature.is_verified(), "{r:?}");
        assert_eq!(r.signature.signer(), Some(signer.as_str()), "{r:?}");
    }
    // Blame: the change behind each value, with its provenance.
    let blame = seen.blame("/goal").unwrap().unwrap();
    assert_eq!(blame.record.unwrap().provenance, Some(merged.clone()));
    let blame = seen.blame("/owner").unwrap().unwrap();
    assert_eq!(blame.record.unwrap().provenance, Some(default.clone()));
    // Watch events on the other replica carry it too.
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let event = within("the watch", watch.next()).await.unwrap().unwrap();
        if event.change == own || event.change == plain {
            heard.push((event.change, event.provenance.clone()));
        }
    }
    assert!(heard.contains(&(own, Some(merged))), "{heard:?}");
    assert!(heard.contains(&(plain, Some(default))), "{heard:?}");
}
