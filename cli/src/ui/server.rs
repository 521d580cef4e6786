//! The routes, the access guard, and [`serve`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

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
    let addr = listener.local_addr()?;
    let guard = Arc::new(Guard {
        site: site.clone(),
        addr,
    });
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
        .layer(middleware::from_fn_with_state(guard, check))
        .with_state(site.clone());
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Event streams never end by themselves; graceful shutdown would wait forever.
            site.close();
        })
        .await
}

/// What the guard checks a request against.
#[derive(Debug)]
struct Guard {
    site: Arc<Site>,
    addr: SocketAddr,
}

impl Guard {
    /// Whether `host` (a Host header, or an Origin without its scheme) names this server:
    /// its bound address, or `localhost` with its port. A page from another site that
    /// resolves its own name to 127.0.0.1 (DNS rebinding) sends its own name here.
    fn is_me(&self, host: &str) -> bool {
        let port = self.addr.port();
        host == self.addr.to_string()
            || host == format!("localhost:{port}")
            || (self.addr.ip().is_unspecified() && host.ends_with(&format!(":{port}")))
    }
}

/// The token a request carries: `Authorization: Bearer TOKEN`, or `?token=TOKEN` (the page's
/// URL, and the event stream, which browsers open without headers).
fn token_of<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.or_else(|| {
        query?
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
    })
}

/// Lets a request with the token through. Without it, a request is refused: 403 when its
/// Host or Origin names another site (a DNS-rebinding attempt), 401 otherwise.
async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if token_of(headers, request.uri().query()).is_some_and(|t| guard.site.token_matches(t)) {
        return next.run(request).await;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(|o| o.strip_prefix("http://").unwrap_or(o));
    let foreign = host.is_some_and(|h| !guard.is_me(h)) || origin.is_some_and(|o| !guard.is_me(o));
    if foreign {
        tracing::warn!(?host, ?origin, "refused a request for another host");
        return (
            StatusCode::FORBIDDEN,
            "refused: this request's Host or Origin is not this server's address, and it \
             carries no valid token\n",
        )
            .into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a token is needed: open the URL `blackboard ui` printed (it ends in ?token=...), or \
         send Authorization: Bearer TOKEN\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_the_bearer_header_or_the_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(token_of(&headers, Some("a=1&token=abc")), Some("abc"));
        assert_eq!(token_of(&headers, Some("a=1")), None);
        headers.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(token_of(&headers, None), Some("xyz"));
    }
}
