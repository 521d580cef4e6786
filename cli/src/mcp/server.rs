//! The MCP server handler: tools (see [`super::tools`]) and resources (see
//! [`super::resources`]) over one [`Board`].

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::handler::server::router::prompt::PromptRouter;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams, ProtocolVersion,
    ReadResourceRequestParams, ReadResourceResponse, ResourceTemplate, ServerCapabilities,
    ServerConfig, SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{prompt_handler, tool_handler, ErrorData, RoleServer, ServerHandler};
use tokio::sync::broadcast::error::RecvError;

use super::args;
use super::board::Board;
use super::subscriptions::Subscriptions;

/// One MCP session over the board. Cheap to clone; HTTP sessions each get one.
#[derive(Debug, Clone)]
pub struct Server {
    pub(crate) board: Arc<Board>,
    pub(crate) subscriptions: Subscriptions,
    tool_router: ToolRouter<Server>,
    prompt_router: PromptRouter<Server>,
}

impl Server {
    /// A session over `board`.
    pub fn new(board: Arc<Board>) -> Self {
        Self {
            board,
            subscriptions: Subscriptions::default(),
            tool_router: Self::tool_router(),
            prompt_router: Self::prompt_router(),
        }
    }
}

const INSTRUCTIONS: &str = "A shared blackboard: JSON documents that several agents read and \
write at once; concurrent changes merge. You act as one agent. Read with `read` (note the \
position `seq` it returns), write with put/delete/append/splice_text/increment giving a short \
`reason`, and pass the `seq` you read at as `read_at` so you are warned when another agent \
changed the same paths meanwhile. Use `wait_for_change` to wait for others, `claim` before \
working on a shared task, and `history`/`blame` to see who did what and why. Documents are \
also resources (blackboard://SPACE/DOC) you can subscribe to.";

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for Server {
    /// Names an unknown tool (and the known ones), and checks the arguments against the
    /// tool's schema first, so a wrong type or a too-deep value is answered naming the
    /// argument; then the tool runs.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(tool) = self.tool_router.get(&request.name) else {
            let mut known: Vec<String> = self
                .tool_router
                .list_all()
                .into_iter()
                .map(|t| t.name.to_string())
                .collect();
            known.sort();
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown tool {:?}; the tools are {}",
                    request.name,
                    known.join(", ")
                ),
                None,
            ));
        };
        if let Some(arguments) = &request.arguments {
            if let Err(msg) = args::check(&request.name, &tool.input_schema, arguments) {
                return Ok(CallToolResult::error(vec![ContentBlock::text(msg)]).into());
            }
        }
        let call = ToolCallContext::new(self, request, context);
        self.tool_router.call(call).await
    }

    /// Every revision up to 2026-07-28: the ones with an `initialize` handshake (2025-11-25
    /// and before), served as sessions, and 2026-07-28, served statelessly (each request
    /// carries its version, capabilities and client in `_meta`; `subscriptions/listen` in
    /// place of `resources/subscribe`). Pinned, so a newer rmcp does not claim a revision
    /// this server was not made for; another version is answered with
    /// `UnsupportedProtocolVersionError` listing these.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2026_07_28))
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_resources_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("blackboard", env!("CARGO_PKG_VERSION")))
        .with_instructions(format!(
            "{INSTRUCTIONS} You are agent {} in space {}.",
            self.board.agent, self.board.space
        ))
    }

    /// `subscriptions/listen` (2026-07-28): the documents of this space among the requested
    /// resources, and `resources/list_changed` when asked; the acknowledgment names what was
    /// accepted.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(self.acceptable(requested))
    }

    /// Runs one `subscriptions/listen` until the client cancels it (or closes its stream)
    /// or the server stops.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        self.listen_to(context).await
    }

    /// Tells the client when a document appears (`notifications/resources/list_changed`),
    /// for as long as the session lasts.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let mut found = self.board.new_documents();
        let peer = context.peer;
        tokio::spawn(async move {
            // A lagged receiver missed some names: the list changed all the same.
            while let Ok(_) | Err(RecvError::Lagged(_)) = found.recv().await {
                if peer.notify_resource_list_changed().await.is_err() {
                    // The session is gone.
                    break;
                }
            }
        });
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let template = ResourceTemplate::new(
            format!("blackboard://{}/{{document}}", self.board.space),
            "document",
        )
        .with_title("A document of the board")
        .with_description(format!(
            "A JSON document of space {}, by name (list_documents shows them); subscribe to \
             be told when any agent changes it",
            self.board.space
        ))
        .with_mime_type("application/json");
        Ok(ListResourceTemplatesResult::with_all_items(vec![template]))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.list_documents_as_resources().await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.read_document_resource(&request.uri)
            .await
            .map(Into::into)
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscribe_document(request.uri, context.peer).await
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions.remove(&request.uri);
        Ok(())
    }
}
