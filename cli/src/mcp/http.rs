//! The streamable HTTP transport (`--http ADDR`, endpoint `/mcp`), built with the `http`
//! cargo feature. Each HTTP session gets its own [`Server`] over the shared board; every
//! request passes the access guard ([`crate::access`]) first: the bearer token, the Host and
//! the Origin.

use std::future::Future;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::{depth, Board, Server};
use crate::access::{self, Access};

/// Serves MCP's streamable HTTP transport at `/mcp` on `listener` (already bound, so the
/// caller picks the address and learns a port chosen by the OS) until `shutdown` resolves,
/// then lets the open requests finish. Every request must pass `access` (build it with the
/// listener's address). Each HTTP session is a [`Server`] over `board`. The caller closes
/// the board afterwards.
///
/// ```no_run
/// # async fn f(board: std::sync::Arc<blackboard_cli::mcp::Board>) -> anyhow::Result<()> {
/// use blackboard_cli::access::{new_token, Access};
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let access = Access::new(new_token(), listener.local_addr()?, "send Authorization: Bearer TOKEN")?;
/// println!("token: {}", access.token());
/// blackboard_cli::mcp::serve(board.clone(), listener, access, async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await?;
/// board.close().await;
/// # Ok(()) }
/// ```
pub async fn serve(
    board: Arc<Board>,
    listener: tokio::net::TcpListener,
    access: Access,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The guard checks Host and Origin (with the names --allow-host and --allow-origin add);
    // rmcp's own loopback-only Host list would refuse them again.
    // Sessions for the revisions with an `initialize` handshake (2025-11-25 and before), as
    // before; rmcp serves 2026-07-28 requests statelessly whatever this says.
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .disable_allowed_hosts()
        .disable_allowed_origins();
    let listening = board.clone();
    let service: StreamableHttpService<Server, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(Server::new(board.clone())),
        Arc::default(),
        config,
    );
    let router = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(middleware::from_fn(session_ended))
        .layer(middleware::from_fn(too_deep))
        .layer(middleware::from_fn_with_state(
            Arc::new(access),
            access::guard,
        ));
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Open `subscriptions/listen` streams end with their final result, so the
            // graceful shutdown does not wait on them forever.
            listening.stop_listening();
        })
        .await
}

/// A DELETE that ended a session is answered 204 No Content, not rmcp's 202: the
/// specification does not name a status, and clients (the Python SDK) treat anything but
/// 200, 204 or 405 as a failure to end the session and log it.
async fn session_ended(request: Request, next: Next) -> Response {
    let delete = request.method() == Method::DELETE;
    let mut response = next.run(request).await;
    if delete && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}

/// The largest request body read: rmcp's own limit.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// A POST whose JSON nests deeper than JSON parsing allows is answered with a JSON-RPC
/// error naming the limit (see [`super::depth`]), not rmcp's 415.
async fn too_deep(request: Request, next: Next) -> Response {
    use axum::response::IntoResponse as _;
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body could not be read within {MAX_BODY} bytes: {e}\n"),
            )
                .into_response()
        }
    };
    let (depth, id) = depth::scan(&bytes);
    if depth > depth::MAX_MESSAGE_DEPTH {
        tracing::warn!(depth, "refused a message nested too deep");
        return (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            depth::refusal(depth, id.as_deref()),
        )
            .into_response();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}
