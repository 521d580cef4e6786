//! The page: hand-written HTML, CSS and JavaScript, embedded in the binary (no CDN, no
//! build step). The CSS and JavaScript are inlined into the one HTML response, so the page
//! is a single request that carries the token; the script reads the token from the page's
//! URL for the API and the event stream.

use axum::http::header;
use axum::response::IntoResponse;

const HTML: &str = include_str!("assets/index.html");
const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// The page, with its style and script inlined.
pub fn page() -> String {
    HTML.replacen("/*APP_CSS*/", CSS, 1)
        .replacen("/*APP_JS*/", JS, 1)
}

/// `GET /`: the page. Not cached (it changes with the binary), and its URL, which holds the
/// token, is not sent as a referrer anywhere.
pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src 'self' data:",
            ),
        ],
        page(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_inlines_its_style_and_script() {
        let page = super::page();
        assert!(!page.contains("/*APP_CSS*/") && !page.contains("/*APP_JS*/"));
        assert!(page.contains("EventSource"));
    }
}
