//! The routes, behind the access guard ([`crate::access`]), and [`serve`].

use std::future::Future;
use std::sync::Arc;

use axum::middleware;
use axum::routing::get;
use axum::Router;

use crate::access::{self, Access};

use super::{api, assets, events, Site};

/// Serves the page and its API for `site` on `listener` (already bound, so the caller picks
/// the address and learns a port chosen by the OS) until `shutdown` resolves; then ends the
/// open event streams and lets the other requests finish. Every request must carry the
/// site's token. The caller closes the board afterwards.
///
/// ```no_run
/// # async fn f(board: blackboard_client::Board) -> anyhow::Result<()> {
/// use std::time::Duration;
/// use blackboard_cli::ui;
///
/// let site = ui::Site::start(board, "team".parse()?, ui::new_token(), Duration::from_secs(10)).await?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// println!("http://{}/?token={}", listener.local_addr()?, site.token());
/// ui::serve(site, listener, async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn serve(
    site: Arc<Site>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_allowing(site, listener, Allowed::default(), shutdown).await
}

/// The names and web origins a server accepts besides its own address (`--allow-host`,
/// `--allow-origin`; see [`crate::access`]).
#[derive(Debug, Clone, Default)]
pub struct Allowed {
    /// `Host` names (`name` for any port, or `name:port`).
    pub hosts: Vec<String>,
    /// Web origins (`scheme://host[:port]`).
    pub origins: Vec<String>,
}

/// [`serve`], also accepting requests whose `Host` or `Origin` is in `allowed`: for pages
/// opened from other machines by a name.
pub async fn serve_allowing(
    site: Arc<Site>,
    listener: tokio::net::TcpListener,
    allowed: Allowed,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let access = Access::new(
        site.token().to_owned(),
        addr,
        "open the URL `blackboard ui` printed (it ends in ?token=...), or send \
         Authorization: Bearer TOKEN",
    )
    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.0))?
    .accept_query_token()
    .allow_hosts(allowed.hosts)
    .allow_origins(allowed.origins);
    let router = Router::new()
        .route("/", get(assets::index))
        .route("/api/events", get(events::stream))
        .route("/api/documents", get(api::documents))
        .route("/api/presence", get(api::presence))
        .route("/api/doc/{doc}", get(api::document))
        .route("/api/doc/{doc}/timeline", get(api::timeline))
        .route("/api/doc/{doc}/at/{seq}", get(api::at))
        .route("/api/doc/{doc}/diff", get(api::diff))
        .route("/api/doc/{doc}/blame", get(api::blame))
        .route("/api/doc/{doc}/presence", get(events::doc_presence))
        .layer(middleware::from_fn_with_state(
            Arc::new(access),
            access::guard,
        ))
        .with_state(site.clone());
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Event streams never end by themselves; graceful shutdown would wait forever.
            site.close();
        })
        .await
}
