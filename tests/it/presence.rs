//! Presence on a real JetStream server: joined, left, and silence reported within the bound.

use std::time::{Duration, Instant};

use blackboard_client::{LeftReason, PresenceConfig, PresenceError, PresenceEvent};
use blackboard_tests::{temp_dir, NatsServer};
use futures::StreamExt;

use crate::{nats_board, within};

#[tokio::test]
async fn an_agent_that_stops_heartbeating_is_reported_left_within_the_configured_bound() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let (d1, d2, d3) = (temp_dir(), temp_dir(), temp_dir());
    let observer = nats_board(&server, "observer", d1.path()).await.unwrap();
    let crashy = nats_board(&server, "crashy", d2.path()).await.unwrap();
    let polite = nats_board(&server, "polite", d3.path()).await.unwrap();
    let config = PresenceConfig {
        heartbeat: Duration::from_millis(200),
        timeout: Duration::from_millis(700),
    };
    let here = observer
        .presence_with("team", Some("plan"), config)
        .await
        .unwrap();
    assert!(within("members of an empty bucket", here.members())
        .await
        .unwrap()
        .is_empty());
    let mut events = here.watch().await.unwrap();

    let crashy_in = crashy
        .presence_with("team", Some("plan"), config)
        .await
        .unwrap()
        .join(Some("drafting"))
        .await
        .unwrap();
    let polite_in = polite
        .presence_with("team", Some("plan"), config)
        .await
        .unwrap()
        .join(None)
        .await
        .unwrap();
    // Presence on the space is a different place.
    let _elsewhere = polite
        .presence("team", None)
        .await
        .unwrap()
        .join(None)
        .await
        .unwrap();
    let mut joined = Vec::new();
    within("two joins", async {
        while joined.len() < 2 {
            if let PresenceEvent::Joined(m) = events.next().await.unwrap().unwrap() {
                joined.push((m.agent.to_string(), m.status));
            }
        }
    })
    .await;
    joined.sort();
    assert_eq!(
        joined,
        [
            ("crashy".to_owned(), Some("drafting".to_owned())),
            ("polite".to_owned(), None)
        ]
    );
    // Heartbeats keep both present past the timeout.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let members: Vec<String> = here
        .members()
        .await
        .unwrap()
        .iter()
        .map(|m| m.agent.to_string())
        .collect();
    assert_eq!(members, ["crashy", "polite"]);

    // An explicit leave is reported at once.
    polite_in.leave().await.unwrap();
    let e = within("the leave", events.next()).await.unwrap().unwrap();
    assert!(
        matches!(&e, PresenceEvent::Left { member, reason: LeftReason::Left } if member.agent.as_str() == "polite"),
        "{e:?}"
    );

    // A crash: the heartbeats stop, the record stays. Reported within the timeout (plus
    // scheduling slack), counted from the last heartbeat, which is before the crash.
    let crashed = Instant::now();
    drop(crashy_in);
    let e = within("the timeout", events.next()).await.unwrap().unwrap();
    let after = crashed.elapsed();
    assert!(
        matches!(&e, PresenceEvent::Left { member, reason: LeftReason::TimedOut } if member.agent.as_str() == "crashy"),
        "{e:?}"
    );
    assert!(
        after <= config.timeout + Duration::from_millis(500),
        "reported {after:?} after the crash, the bound is {:?}",
        config.timeout
    );
    assert!(here.members().await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_presence_configs_and_status_lines_are_refused() {
    let dir = temp_dir();
    let board = blackboard_client::Options::new("a")
        .unwrap()
        .store(dir.path())
        .embedded()
        .await
        .unwrap();
    for (heartbeat, timeout) in [(0, 100), (100, 100), (100, 50), (1_000_000, 2_000_000)] {
        let config = PresenceConfig {
            heartbeat: Duration::from_millis(heartbeat),
            timeout: Duration::from_millis(timeout),
        };
        let err = board.presence_with("team", None, config).await.unwrap_err();
        assert!(err.to_string().contains("invalid presence config"), "{err}");
    }
    let here = board.presence("team", Some("plan")).await.unwrap();
    let err = here.join(Some(&"s".repeat(2000))).await.unwrap_err();
    assert!(
        matches!(err, PresenceError::StatusTooLong { len: 2000, .. }),
        "{err}"
    );
    assert!(board.presence("team", Some("no.dots")).await.is_err());
}
