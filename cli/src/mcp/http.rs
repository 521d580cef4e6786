//! The streamable HTTP transport (`--http ADDR`, endpoint `/mcp`), built with the `http`
//! cargo feature. Each HTTP session gets its own [`Server`] over the shared board.

use std::future::Future;
use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::{Board, Server};

/// Serves MCP's streamable HTTP transport at `/mcp` on `listener` (already bound, so the
/// caller picks the address and learns a port chosen by the OS) until `shutdown` resolves,
/// then lets the open requests finish. Each HTTP session is a [`Server`] over `board`. The
/// caller closes the board afterwards.
///
/// ```no_run
/// # async fn f(board: std::sync::Arc<blackboard_cli::mcp::Board>) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// blackboard_cli::mcp::serve(board.clone(), listener, async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await?;
/// board.close().await;
/// # Ok(()) }
/// ```
pub async fn serve(
    board: Arc<Board>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service: StreamableHttpService<Server, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(Server::new(board.clone())),
        Arc::default(),
        StreamableHttpServerConfig::default(),
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
