//! Five agents on separate connections editing one document at the same time.

use std::collections::BTreeSet;
use std::sync::Arc;

use blackboard_client::automerge::transaction::Transactable;
use blackboard_client::automerge::{ObjType, ScalarValue, ROOT};
use blackboard_tests::{temp_dir, NatsServer};
use tokio::sync::Barrier;

use crate::{nats_board, within};

const AGENTS: usize = 5;
const ROUNDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_agents_writing_conflicting_keys_and_text_converge_to_identical_heads_and_json() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let dirs: Vec<_> = (0..AGENTS).map(|_| temp_dir()).collect();
    let mut docs = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let board = nats_board(&server, &format!("agent-{i}"), dir.path())
            .await
            .unwrap();
        docs.push(board.doc("team", "shared").unwrap());
    }

    // One agent lays out the shared text and counter; the others start from it.
    docs[0]
        .change(|tx| {
            tx.put_object(ROOT, "notes", ObjType::Text)?;
            tx.put(ROOT, "hits", ScalarValue::counter(0))
        })
        .await
        .unwrap();
    docs[0].flush().await.unwrap();
    let base = docs[0].heads();
    for d in &docs {
        within("the base layout", d.wait_for(&base)).await.unwrap();
    }

    let start = Arc::new(Barrier::new(AGENTS));
    let writers: Vec<_> = docs
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, doc)| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                for r in 0..ROUNDS {
                    doc.put("/status", format!("agent {i} round {r}").into())
                        .await
                        .unwrap();
                    doc.put(&format!("/k{}", r % 3), serde_json::json!(i * 100 + r))
                        .await
                        .unwrap();
                    doc.splice_text("/notes", 0, 0, &format!("[{i}.{r}]"))
                        .await
                        .unwrap();
                    doc.change(|tx| tx.increment(ROOT, "hits", 1))
                        .await
                        .unwrap();
                }
                doc.flush().await.unwrap();
                doc.heads()
            })
        })
        .collect();
    let mut all_heads = BTreeSet::new();
    for w in writers {
        all_heads.extend(within("a writer", w).await.unwrap());
    }
    let all_heads: Vec<_> = all_heads.into_iter().collect();
    for d in &docs {
        within("every agent's changes", d.wait_for(&all_heads))
            .await
            .unwrap();
    }

    let heads = docs[0].heads();
    let json = docs[0].to_json();
    for (i, d) in docs.iter().enumerate() {
        assert_eq!(d.heads(), heads, "agent {i} heads");
        assert_eq!(d.to_json(), json, "agent {i} JSON");
    }
    assert_eq!(
        json["hits"],
        serde_json::json!(AGENTS * ROUNDS),
        "no increment lost"
    );
    let notes = json["notes"].as_str().unwrap();
    for i in 0..AGENTS {
        for r in 0..ROUNDS {
            assert_eq!(
                notes.matches(&format!("[{i}.{r}]")).count(),
                1,
                "insert {i}.{r} kept once"
            );
        }
    }
    // The conflicting writes were resolved to one of the written values, the same everywhere.
    let status = json["status"].as_str().unwrap();
    assert!(status.starts_with("agent ") && status.ends_with(&format!("round {}", ROUNDS - 1)));
}
