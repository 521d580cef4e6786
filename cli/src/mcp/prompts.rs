//! Prompts for the common agent workflows: join the board, pick up a task, hand one off.
//! Each is a user message that walks the model through the tools in the right order.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{PromptMessage, Role};
use rmcp::{prompt, prompt_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::server::Server;

/// `pick_up_a_task`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PickUpArgs {
    /// The document that holds the tasks (default `tasks`).
    #[serde(default)]
    pub document: Option<String>,
}

/// `hand_off`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct HandOffArgs {
    /// The task (and the resource you claimed for it), like task-3.
    pub task: String,
    /// Who should take it over, if someone in particular.
    #[serde(default)]
    pub to: Option<String>,
}

#[prompt_router(vis = "pub(crate)")]
impl Server {
    /// Joining the board: who is here, what exists, what changed lately.
    #[prompt(
        name = "join_board",
        description = "Get your bearings on the shared board: who is present, which documents \
                       exist, what changed recently and why."
    )]
    async fn join_board(&self) -> Vec<PromptMessage> {
        vec![PromptMessage::new_text(
            Role::User,
            format!(
                "You are agent {agent} on a shared blackboard (space {space}) with other agents. \
                 Get your bearings before acting: call `presence` to see who is here, \
                 `list_documents` to see what exists, then `read` the documents that matter \
                 (note the position `seq` each read returns) and `history` with a small \
                 `limit` to see who changed what recently and why. Summarize the state in a \
                 few lines: what is being worked on, by whom, what is open.",
                agent = self.board.agent,
                space = self.board.space,
            ),
        )]
    }

    /// Picking up a task without colliding with another agent.
    #[prompt(
        name = "pick_up_a_task",
        description = "Choose an open task, claim it so no one else works on it, mark it as \
                       yours, and keep the claim alive while you work."
    )]
    async fn pick_up_a_task(&self, Parameters(a): Parameters<PickUpArgs>) -> Vec<PromptMessage> {
        let document = a.document.unwrap_or_else(|| "tasks".to_owned());
        vec![PromptMessage::new_text(
            Role::User,
            format!(
                "Pick up one open task from document {document}. 1. `read` {document} and \
                 note the `seq`. 2. Choose an open task nobody holds and `claim` it (resource \
                 = the task's name, like task-3); if the claim is refused, the error names the \
                 holder: choose another task. 3. Mark it as yours with `put` at its status \
                 path, passing `read_at` = the `seq` you read and an `idempotency_key`, with a \
                 short `reason`; if the answer carries a STALE READ warning, read again and \
                 check. 4. While you work, `renew` the claim before it runs out. 5. When done, \
                 write the result, set the status, and `release` the claim with a note for \
                 whoever comes next."
            ),
        )]
    }

    /// Handing a task off with what the next holder needs.
    #[prompt(
        name = "hand_off",
        description = "Hand a task you hold to another agent: write down where it stands, \
                       release your claim with a note, and tell them."
    )]
    async fn hand_off(&self, Parameters(a): Parameters<HandOffArgs>) -> Vec<PromptMessage> {
        let to =
            a.to.map(|agent| format!("agent {agent}"))
                .unwrap_or_else(|| "whoever takes it next".to_owned());
        vec![PromptMessage::new_text(
            Role::User,
            format!(
                "Hand off task {task} to {to}. 1. `read` the task and write where it stands \
                 (what is done, what is left, anything surprising) with `put` or \
                 `splice_text`, giving a `reason`. 2. Set its status so others see it is free \
                 (for example \"handed off\"), naming {to} if someone in particular. 3. \
                 `release` your claim on {task} with a `note` summarizing the state: the next \
                 holder gets the note when they claim it. 4. Check with `history` that your \
                 changes are there.",
                task = a.task,
            ),
        )]
    }
}
