//! Claims with leases on a real JetStream server: races, lapses, events, bad input.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use blackboard_client::{Board, Claim, ClaimError, ClaimEventKind, Claims, Options};
use blackboard_tests::{temp_dir, NatsServer};
use futures::StreamExt;

use crate::{nats_board, within};

const RESOURCES: usize = 1000;
const AGENTS: usize = 10;

/// Every agent tries to claim every resource (each starting at its own offset); returns the
/// claims each agent won.
async fn race(all: &[Claims]) -> Vec<Vec<Claim>> {
    let runs = all.iter().enumerate().map(|(i, claims)| {
        let claims = claims.clone();
        tokio::spawn(async move {
            let mut won = Vec::new();
            for k in 0..RESOURCES {
                let r = (k + i * RESOURCES / AGENTS) % RESOURCES;
                match claims
                    .claim(&format!("r-{r}"), Duration::from_secs(60))
                    .await
                {
                    Ok(claim) => won.push(claim),
                    Err(ClaimError::Held { .. }) => {}
                    Err(e) => panic!("{} claiming r-{r}: {e}", claims.agent()),
                }
            }
            won
        })
    });
    let mut out = Vec::new();
    for run in runs {
        out.push(run.await.unwrap());
    }
    out
}

/// Checks that each resource was won exactly once; returns resource -> (agent, token).
fn one_winner_each(won: &[Vec<Claim>]) -> HashMap<String, (String, u64)> {
    let mut holders: HashMap<String, (String, u64)> = HashMap::new();
    for claim in won.iter().flatten() {
        if let Some(first) = holders.insert(
            claim.resource.clone(),
            (claim.holder.to_string(), claim.token),
        ) {
            panic!(
                "{} won by both {} (token {}) and {} (token {})",
                claim.resource, first.0, first.1, claim.holder, claim.token
            );
        }
    }
    assert_eq!(holders.len(), RESOURCES, "every resource has a holder");
    holders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_agents_racing_for_a_thousand_resources_each_get_one_holder_with_growing_tokens() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let dirs: Vec<_> = (0..AGENTS).map(|_| temp_dir()).collect();
    let mut all = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let board = nats_board(&server, &format!("agent-{i}"), dir.path())
            .await
            .unwrap();
        all.push(board.claims("race").await.unwrap());
    }

    let started = Instant::now();
    let first = within("the first race", race(&all)).await;
    let holders = one_winner_each(&first);
    // What the store says agrees with what the winners were told.
    for r in (0..RESOURCES).step_by(97) {
        let name = format!("r-{r}");
        let now = all[0].current(&name).await.unwrap().expect("held");
        assert_eq!((now.holder.to_string(), now.token), holders[&name].clone());
    }

    // Every holder releases; the next race gives every resource a new holder whose fencing
    // token is larger than the previous holder's.
    for (claims, won) in all.iter().zip(&first) {
        for claim in won {
            claims.release(claim.clone()).await.unwrap();
        }
    }
    let second = within("the second race", race(&all)).await;
    let next = one_winner_each(&second);
    for (resource, (agent, token)) in &next {
        let (before, old) = &holders[resource];
        assert!(
            token > old,
            "{resource}: {agent}'s token {token} is not above {before}'s {old}"
        );
    }
    tracing::info!(elapsed = ?started.elapsed(), "two races of {AGENTS} agents over {RESOURCES} resources");
}

#[tokio::test]
async fn a_holder_that_stops_renewing_loses_the_resource_and_its_renew_reports_the_lapse() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let (da, db) = (temp_dir(), temp_dir());
    let a = nats_board(&server, "a", da.path()).await.unwrap();
    let b = nats_board(&server, "b", db.path()).await.unwrap();
    let (ca, cb) = (
        a.claims("crash").await.unwrap(),
        b.claims("crash").await.unwrap(),
    );
    let mut events = cb.watch().await.unwrap();

    let ttl = Duration::from_secs(1);
    let claim = ca.claim("job", ttl).await.unwrap();
    let claim = ca.renew(&claim).await.unwrap(); // a renews once, then "crashes"
    match cb.claim("job", ttl).await {
        Err(e @ ClaimError::Held { .. }) => {
            let text = e.to_string();
            assert!(text.contains("job is held by a until"), "{text}");
        }
        other => panic!("expected held, got {other:?}"),
    }

    // b learns that the lease expired from its watch, with no polling, and takes over.
    within("the expiry", async {
        loop {
            let e = events.next().await.unwrap().unwrap();
            if e.kind == ClaimEventKind::Expired && e.resource == "job" {
                assert_eq!((e.holder.as_str(), e.token), ("a", claim.token));
                break;
            }
        }
    })
    .await;
    let taken = cb.claim("job", ttl).await.unwrap();
    assert!(taken.token > claim.token);

    // a's next renew and release fail, naming the new holder.
    for result in [
        ca.renew(&claim).await.map(drop),
        ca.release(claim.clone()).await,
    ] {
        match result {
            Err(ClaimError::Lapsed {
                resource,
                token,
                holder,
            }) => {
                assert_eq!((resource.as_str(), token), ("job", claim.token));
                assert_eq!(holder.unwrap().as_str(), "b");
            }
            other => panic!("expected lapsed, got {other:?}"),
        }
    }
    // The new holder is unaffected.
    cb.release(cb.renew(&taken).await.unwrap()).await.unwrap();
}

#[tokio::test]
async fn the_claim_watch_reports_claimed_renewed_released_and_expired() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let dir = temp_dir();
    let board = nats_board(&server, "w", dir.path()).await.unwrap();
    let claims = board.claims("events").await.unwrap();
    let mut events = claims.watch().await.unwrap();

    let c = claims.claim("x", Duration::from_secs(30)).await.unwrap();
    let c = claims.renew(&c).await.unwrap();
    claims.release_with_note(c, "all done").await.unwrap();
    let short = claims.claim("x", Duration::from_millis(300)).await.unwrap();

    let mut seen = Vec::new();
    within("four events", async {
        while seen.len() < 5 {
            let e = events.next().await.unwrap().unwrap();
            seen.push((e.kind, e.token, e.note));
        }
    })
    .await;
    let kinds: Vec<_> = seen.iter().map(|s| s.0).collect();
    assert_eq!(
        kinds,
        [
            ClaimEventKind::Claimed,
            ClaimEventKind::Renewed,
            ClaimEventKind::Released,
            ClaimEventKind::Claimed,
            ClaimEventKind::Expired
        ]
    );
    assert_eq!(seen[2].2.as_deref(), Some("all done"));
    assert_eq!(
        short.note.as_deref(),
        Some("all done"),
        "the note reaches the next holder"
    );
    assert_eq!(seen[4].1, short.token);
    let tokens: Vec<u64> = seen[..4].iter().map(|s| s.1).collect();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
}

async fn embedded_claims() -> (tempfile::TempDir, Board, Claims) {
    let dir = temp_dir();
    let board = Options::new("a")
        .unwrap()
        .store(dir.path())
        .embedded()
        .await
        .unwrap();
    let claims = board.claims("team").await.unwrap();
    (dir, board, claims)
}

#[tokio::test]
async fn bad_resource_names_and_ttls_are_refused_with_errors_naming_them() {
    let (_dir, board, claims) = embedded_claims().await;
    let long = "x".repeat(257);
    for bad in [
        "",
        "has space",
        "a*",
        "a.>",
        ".hidden",
        "end.",
        "a..b",
        "ünï",
        &long,
    ] {
        let err = claims.claim(bad, Duration::from_secs(1)).await.unwrap_err();
        assert!(
            matches!(err, ClaimError::InvalidResource { .. }),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
    for (ttl, why) in [
        (Duration::ZERO, "longer than zero"),
        (Duration::from_millis(1), "minimum"),
        (Duration::from_secs(25 * 3600), "24 h"),
        (Duration::MAX, "24 h"),
    ] {
        let err = claims.claim("ok", ttl).await.unwrap_err();
        assert!(
            matches!(err, ClaimError::InvalidTtl { .. }),
            "{ttl:?}: {err}"
        );
        assert!(err.to_string().contains(why), "{err}");
    }
    let err = claims
        .release_with_note(
            claims.claim("ok", Duration::from_secs(5)).await.unwrap(),
            &"n".repeat(5000),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClaimError::NoteTooLong { len: 5000, .. }),
        "{err}"
    );
    let err = board.claims("bad space").await.unwrap_err();
    assert!(err.to_string().contains("bad space"), "{err}");
}

#[tokio::test]
async fn embedded_claims_keep_the_same_promises() {
    let (_dir, board, a) = embedded_claims().await;
    let b = board.as_agent("b").unwrap().claims("team").await.unwrap();
    let claim = a.claim("r", Duration::from_millis(200)).await.unwrap();
    assert!(matches!(
        b.claim("r", Duration::from_secs(1)).await,
        Err(ClaimError::Held { .. })
    ));
    let mut events = b.watch().await.unwrap();
    within("the expiry", async {
        while events.next().await.unwrap().unwrap().kind != ClaimEventKind::Expired {}
    })
    .await;
    // Lapsed even though nobody took it: the lease ran out.
    match a.renew(&claim).await {
        Err(ClaimError::Lapsed { holder: None, .. }) => {}
        other => panic!("expected lapsed with no holder, got {other:?}"),
    }
    let taken = b.claim("r", Duration::from_secs(1)).await.unwrap();
    assert!(taken.token > claim.token);
    b.release(taken.clone()).await.unwrap();
    let again = a.claim("r", Duration::from_secs(1)).await.unwrap();
    assert!(
        again.token > taken.token,
        "tokens only grow across release and reclaim"
    );
}

/// The listing behind `Presence::members` and claim listings: each live key once, even while
/// another connection keeps writing the keys (the KV key listing is a consumer that also
/// delivers puts landing during it; presence heartbeats are such puts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_bucket_lists_each_key_once_while_its_keys_are_rewritten() {
    use blackboard::lease::{JetStreamLeases, LeaseBuckets as _};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let server = NatsServer::start().await.unwrap();
    let bucket = JetStreamLeases::new(server.connect().await.unwrap(), 1)
        .open("BB_TEST_LISTING")
        .await
        .unwrap();
    let keys: Vec<String> = (0..20).map(|i| format!("k.{i:02}")).collect();
    for k in &keys {
        bucket.put(k, "v".into()).await.unwrap();
    }
    // Another connection rewrites every key, over and over, until the listing is done.
    let writer = JetStreamLeases::new(server.connect().await.unwrap(), 1)
        .open("BB_TEST_LISTING")
        .await
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let rewrites = tokio::spawn({
        let (keys, done) = (keys.clone(), done.clone());
        async move {
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                for k in &keys {
                    writer.put(k, n.to_string().into()).await.unwrap();
                    n += 1;
                }
            }
            n
        }
    });
    for _ in 0..30 {
        let mut listed: Vec<String> = within("a listing", bucket.entries("k."))
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.key)
            .collect();
        listed.sort();
        assert_eq!(listed, keys);
    }
    done.store(true, Ordering::Relaxed);
    let n = within("the writer", rewrites).await.unwrap();
    assert!(n > 0, "the keys were rewritten during the listings");
}
