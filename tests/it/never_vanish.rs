//! Concurrent writes never vanish from view (issue 13), through the SDK against a real
//! nats-server: agents that write offline, or all at once on an empty document, below the
//! same fresh paths keep every key, on every replica and in watch events.

use std::collections::BTreeSet;
use std::sync::Arc;

use blackboard_client::{Doc, PatchOp};
use blackboard_tests::{temp_dir, NatsServer};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Barrier;

use crate::{nats_board, within};

/// `n` agents, each on its own connection and store, on one document.
async fn agents(server: &NatsServer, n: usize, doc: &str) -> (Vec<Doc>, Vec<tempfile::TempDir>) {
    let dirs: Vec<_> = (0..n).map(|_| temp_dir()).collect();
    let mut docs = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let board = nats_board(server, &format!("agent-{i}"), dir.path())
            .await
            .unwrap();
        docs.push(board.doc("team", doc).unwrap());
    }
    (docs, dirs)
}

/// Flushes every agent's outbox, then brings every agent up to the log.
async fn settle(docs: &[Doc]) {
    for d in docs {
        within("the outbox to drain", d.flush()).await.unwrap();
    }
    for d in docs {
        within("a sync", d.sync()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_writing_below_the_same_fresh_paths_while_the_server_is_down_all_stay_visible() {
    blackboard_tests::init_tracing();
    let mut server = NatsServer::start().await.unwrap();
    for n in [2, 5] {
        let (docs, _dirs) = agents(&server, n, &format!("offline-{n}")).await;
        let mut watch = docs[0].watch("/**").unwrap();
        server.stop().await;
        for (i, d) in docs.iter().enumerate() {
            for depth in 1..=3 {
                let dir: String = (0..depth).map(|l| format!("/d{l}")).collect();
                d.put(&format!("{dir}/k{i}"), json!(i)).await.unwrap();
            }
            d.put("/tasks/t1", json!({ format!("by{i}"): i }))
                .await
                .unwrap();
            d.increment("/stats/runs", 1).await.unwrap();
            d.append("/log", json!(i)).await.unwrap();
        }
        server.restart().await.unwrap();
        settle(&docs).await;

        let first = docs[0].to_json();
        for d in &docs {
            assert_eq!(d.heads(), docs[0].heads());
            assert_eq!(d.to_json(), first);
        }
        for i in 0..n {
            assert_eq!(first["d0"][format!("k{i}")], json!(i), "{first}");
            assert_eq!(first["d0"]["d1"][format!("k{i}")], json!(i), "{first}");
            assert_eq!(
                first["d0"]["d1"]["d2"][format!("k{i}")],
                json!(i),
                "{first}"
            );
            assert_eq!(first["tasks"]["t1"][format!("by{i}")], json!(i), "{first}");
        }
        assert_eq!(
            first["stats"]["runs"],
            json!(n),
            "every first increment counted"
        );
        assert_eq!(first["log"].as_array().unwrap().len(), n);

        // Agent 0's watch reported every other agent's key too.
        let mut seen = BTreeSet::new();
        while seen.len() < n {
            let event = within("watch events", watch.next()).await.unwrap().unwrap();
            for patch in event.patches {
                let path = patch.path.to_string();
                if let Some(k) = path.strip_prefix("/d0/d1/d2/") {
                    seen.insert(k.to_owned());
                }
                if let (true, PatchOp::Put { value }) = (path == "/d0/d1/d2", &patch.op) {
                    for k in value.as_object().into_iter().flat_map(|m| m.keys()) {
                        seen.insert(k.clone());
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_starting_at_the_same_moment_on_an_empty_document_keep_every_key() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    const N: usize = 5;
    let (docs, _dirs) = agents(&server, N, "race").await;
    let start = Arc::new(Barrier::new(N));
    let writers: Vec<_> = docs
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, doc)| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                for r in 0..10 {
                    doc.put(&format!("/tasks/a{i}r{r}"), json!({"status": "open"}))
                        .await
                        .unwrap();
                }
                doc.increment("/done", 1).await.unwrap();
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    settle(&docs).await;
    for d in &docs {
        let tasks = d.get("/tasks").unwrap().unwrap();
        assert_eq!(tasks.as_object().unwrap().len(), N * 10, "{tasks}");
        assert_eq!(d.get("/done").unwrap(), Some(json!(N)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replacing_writes_are_all_readable_with_the_agent_that_wrote_each() {
    blackboard_tests::init_tracing();
    let mut server = NatsServer::start().await.unwrap();
    let (docs, _dirs) = agents(&server, 2, "replace").await;
    server.stop().await;
    for (i, d) in docs.iter().enumerate() {
        d.put_replace("/plan", json!({ "by": i })).await.unwrap();
    }
    // Before the exchange, each agent sees only its own value, attributed to itself.
    let own = docs[1].conflicts("/plan").unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].agent.as_ref().unwrap().as_str(), "agent-1");
    server.restart().await.unwrap();
    settle(&docs).await;
    for d in &docs {
        let all = d.conflicts("/plan").unwrap();
        let by: BTreeSet<(String, String)> = all
            .iter()
            .map(|c| (c.agent.as_ref().unwrap().to_string(), c.value.to_string()))
            .collect();
        assert_eq!(
            by,
            BTreeSet::from([
                ("agent-0".to_owned(), r#"{"by":0}"#.to_owned()),
                ("agent-1".to_owned(), r#"{"by":1}"#.to_owned()),
            ])
        );
        let winner = all.iter().find(|c| c.winner).unwrap();
        assert_eq!(d.get("/plan").unwrap(), Some(winner.value.clone()));
        assert!(all.iter().all(|c| c.seq.is_some()), "both are indexed");
    }
}
