//! Blackboard engine.
pub mod codec;
pub mod doc;
mod error;
pub mod log;
pub mod replica;
pub mod store;

pub use automerge;
pub use blackboard_schemas as schemas;
pub use error::Error;
pub use replica::Replica;
