//! The streamable HTTP transport (`--http ADDR`, endpoint `/mcp`), built with the `http`
//! cargo feature. Each HTTP session gets its own [`Server`] over the shared board.

use std::net::SocketAddr;
use std::sync::Arc;

use super::board::Board;

#[cfg(feature = "http")]
pub async fn serve(board: Arc<Board>, addr: SocketAddr) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };

    use super::Server;

    let service: StreamableHttpService<Server, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(Server::new(board.clone())),
        Arc::default(),
        StreamableHttpServerConfig::default(),
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    // On stderr, so a script can learn the port of `--http 127.0.0.1:0`.
    eprintln!("blackboard mcp: serving MCP over HTTP at http://{local}/mcp");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await
        .context("serving HTTP")
}

/// Resolves on Ctrl-C or SIGTERM (how service managers stop a server), so `run` closes the
/// board and flushes an embedded store before the process exits.
#[cfg(feature = "http")]
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(not(feature = "http"))]
pub async fn serve(_board: Arc<Board>, addr: SocketAddr) -> anyhow::Result<()> {
    anyhow::bail!(
        "--http {addr}: this blackboard was built without the HTTP transport; rebuild with \
         `cargo install --path blackboard --features http` (or use stdio)"
    )
}
