//! Code shared by the examples and driven by the integration tests.
//!
//! [`tasks`] is the task board's worker loop, used by `examples/task_board.rs` and by
//! `tests/it/task_board.rs` (which kills a worker mid-task).

pub mod tasks;
