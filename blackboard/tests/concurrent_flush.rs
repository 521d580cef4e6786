//! Many writers flushing one sled database at once all get their flush back.
//!
//! sled 0.34's own `flush_async` loses wake-ups under exactly this load (spacejam/sled#1308),
//! and the stuck flush blocks the runtime's worker threads too, so a tokio timeout never
//! fires: with it, this test hangs in its first round. `store::flush_db` must not. The
//! workload runs on its own runtime and thread, watched from this one, so a hang fails the
//! test instead of stalling the suite.

use std::sync::mpsc;
use std::time::Duration;

use blackboard::store::flush_db;

const TASKS: u32 = 50;
const WRITES: u32 = 20;
const ROUNDS: usize = 5;

/// One round: `TASKS` tasks each insert and flush `WRITES` times; returns the key count.
async fn round() -> usize {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                for j in 0..WRITES {
                    db.insert([i as u8, j as u8], vec![0u8; 100]).unwrap();
                    flush_db(&db).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    db.len()
}

#[test]
fn fifty_tasks_inserting_and_flushing_one_database_all_finish() {
    let (done, rounds) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        for _ in 0..ROUNDS {
            let _ = done.send(rt.block_on(round()));
        }
    });
    for r in 0..ROUNDS {
        // A guard against the hang this test exists for, not a timing assertion: a round
        // takes well under a second.
        let keys = rounds
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("round {r}: a flush never returned ({e})"));
        assert_eq!(keys, (TASKS * WRITES) as usize, "every write is there");
    }
}
