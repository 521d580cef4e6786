//! An agent process restarts: it reopens its store and resumes from its last position.

use blackboard_tests::{temp_dir, NatsServer};
use serde_json::json;

use crate::{nats_board, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_resumes_from_its_last_position_without_rereading_the_stream() {
    blackboard_tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let (a_dir, b_dir) = (temp_dir(), temp_dir());
    let b = nats_board(&server, "b", b_dir.path()).await.unwrap();
    let b_doc = b.doc("team", "plan").unwrap();

    let a = nats_board(&server, "a", a_dir.path()).await.unwrap();
    let a_doc = a.doc("team", "plan").unwrap();
    for i in 0..10 {
        a_doc.put(&format!("/a/{i}"), json!(i)).await.unwrap();
    }
    a_doc.flush().await.unwrap();
    // B writes a marker after all of A's events are on the stream; once A has applied it,
    // A's position is the end of the stream.
    within("b to see a", b_doc.wait_for(&a_doc.heads()))
        .await
        .unwrap();
    b_doc.put("/marker", json!(true)).await.unwrap();
    b_doc.flush().await.unwrap();
    within("a to see the marker", a_doc.wait_for(&b_doc.heads()))
        .await
        .unwrap();
    let before = a_doc.position();
    let first_run_reads = a_doc.stats().events_read;
    assert_eq!(
        first_run_reads, 12,
        "10 own events, the creation of /a (the container recipe's change) and the marker"
    );
    let json_before = a_doc.to_json();
    drop(a_doc);
    a.close().await.unwrap();

    // While A is away, B makes 5 more writes (6 changes: the first creates /b).
    for i in 0..5 {
        b_doc.put(&format!("/b/{i}"), json!(i)).await.unwrap();
    }
    b_doc.flush().await.unwrap();

    // A comes back on the same store.
    let a = nats_board(&server, "a", a_dir.path()).await.unwrap();
    let a_doc = a.doc("team", "plan").unwrap();
    // Its state is there before it hears anything from the server.
    assert_eq!(a_doc.get("/a/9").unwrap(), Some(json!(9)));
    assert_eq!(a_doc.stats().resumed_from, before.seq);
    within("a to catch up", a_doc.wait_for(&b_doc.heads()))
        .await
        .unwrap();
    let stats = a_doc.stats();
    // B's five writes and its creation of /b.
    assert_eq!(
        stats.events_read, 6,
        "only the events after its position were read"
    );
    assert_eq!(a_doc.position().seq, before.seq + 6);
    assert_eq!(a_doc.to_json(), b_doc.to_json());
    assert_ne!(a_doc.to_json(), json_before);
}
