//! The tools' error: a failure the model should read, carried through the board's helpers
//! and out of transactions.

use blackboard_client::{DocError, EngineError};

/// A failure the model should read: becomes a tool result with `isError: true`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

impl ToolError {
    /// A tool error saying `msg`.
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

impl From<EngineError> for ToolError {
    fn from(e: EngineError) -> Self {
        match e {
            // A tool's own error, carried out of a transaction: itself again.
            EngineError::Aborted(inner) => match inner.downcast::<ToolError>() {
                Ok(tool) => *tool,
                Err(other) => Self(other.to_string()),
            },
            e => Self(e.to_string()),
        }
    }
}

/// A tool error inside a transaction aborts it: the engine carries it out unchanged as
/// [`EngineError::Aborted`], and `ToolError::from` takes it back.
impl From<ToolError> for EngineError {
    fn from(e: ToolError) -> Self {
        EngineError::Aborted(Box::new(e))
    }
}

impl From<DocError> for ToolError {
    fn from(e: DocError) -> Self {
        Self(e.to_string())
    }
}
