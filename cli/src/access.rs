//! Who may talk to an HTTP server of this binary: one guard shared by `blackboard ui` and
//! `blackboard mcp --http`.
//!
//! A request passes when
//! 1. its `Host` names this server (DNS rebinding: a page of another site whose name
//!    resolves to this machine sends its own name): `localhost`, an IP address (a rebinding
//!    attacker's page is reached by a name, never by an IP literal), the bound address, or a
//!    name allowed with `--allow-host`; else 403;
//! 2. its `Origin`, when it has one (browsers send it), is this server or one allowed with
//!    `--allow-origin`, as the MCP specification requires ("If the Origin header is present
//!    and invalid, servers MUST respond with HTTP 403 Forbidden"); else 403;
//! 3. it carries the token: `Authorization: Bearer TOKEN` (or `?token=TOKEN` where the server
//!    allows it, for the ui's page and event stream, which browsers open without headers),
//!    compared in constant time; else 401 with `WWW-Authenticate: Bearer`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::verbs::Usage;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The `Host` header names another site, or is missing.
    #[error("refused: Host {0:?} is not this server's address (allow a name with --allow-host)")]
    ForeignHost(String),
    /// The `Origin` header names another site.
    #[error("refused: Origin {0:?} is not this server (allow a web origin with --allow-origin)")]
    ForeignOrigin(String),
    /// No token, or a wrong one.
    #[error("a token is needed: {0}")]
    Unauthorized(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = format!("{self}\n");
        match self {
            Refusal::ForeignHost(_) | Refusal::ForeignOrigin(_) => {
                (StatusCode::FORBIDDEN, body).into_response()
            }
            Refusal::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                body,
            )
                .into_response(),
        }
    }
}

/// The guard's settings: the token, the server's address and what else is allowed.
#[derive(Debug, Clone)]
pub struct Access {
    token: String,
    addr: SocketAddr,
    hosts: Vec<String>,
    origins: Vec<String>,
    query_token: bool,
    hint: String,
}

impl Access {
    /// Requests to the server bound at `addr` must carry `token` (see [`new_token`] and
    /// [`check_token`]). `hint` says, in a 401's body, where the token comes from.
    pub fn new(token: String, addr: SocketAddr, hint: impl Into<String>) -> Result<Self, Usage> {
        check_token(&token)?;
        Ok(Self {
            token,
            addr,
            hosts: Vec::new(),
            origins: Vec::new(),
            query_token: false,
            hint: hint.into(),
        })
    }

    /// Also accept these `Host` names (`name` for any port, or `name:port`), for clients on
    /// other machines that reach the server by a name.
    pub fn allow_hosts(mut self, hosts: impl IntoIterator<Item = String>) -> Self {
        self.hosts
            .extend(hosts.into_iter().map(|h| h.to_ascii_lowercase()));
        self
    }

    /// Also accept these web origins (`scheme://host[:port]`, as browsers send them).
    pub fn allow_origins(mut self, origins: impl IntoIterator<Item = String>) -> Self {
        self.origins.extend(
            origins
                .into_iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase()),
        );
        self
    }

    /// Also accept the token as `?token=` in the URL (for pages and event streams, which a
    /// browser opens without headers).
    pub fn accept_query_token(mut self) -> Self {
        self.query_token = true;
        self
    }

    /// The token requests must carry.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether `given` is the token, compared in constant time so the answer's timing does
    /// not tell how much of a guess was right.
    pub fn token_matches(&self, given: &str) -> bool {
        let (a, b) = (self.token.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Whether `authority` (a Host header's `host[:port]`) names this server.
    fn is_me(&self, authority: &str) -> bool {
        let authority = authority.to_ascii_lowercase();
        let (host, port) = split_authority(&authority);
        let port_ok = port.is_none_or(|p| p == self.addr.port());
        if self.hosts.iter().any(|h| *h == authority || *h == host) {
            return true;
        }
        if !port_ok {
            return false;
        }
        if host == "localhost" {
            return true;
        }
        // An IP literal cannot be a rebinding attacker's name. On an unspecified address
        // (0.0.0.0, ::) any of the machine's addresses reaches the server.
        match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => ip == self.addr.ip() || ip.is_loopback() || self.addr.ip().is_unspecified(),
            Err(_) => false,
        }
    }

    /// Whether `origin` (`scheme://host[:port]`, or `null`) is this server or allowed.
    fn origin_ok(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self.origins.contains(&origin) {
            return true;
        }
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        authority.is_some_and(|a| self.is_me(a))
    }

    /// The token a request carries.
    fn token_of<'a>(&self, headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        bearer.or_else(|| {
            if !self.query_token {
                return None;
            }
            query?
                .split('&')
                .find_map(|pair| pair.strip_prefix("token="))
        })
    }

    /// Checks a request's headers and query: `Ok` lets it through.
    pub fn check(&self, headers: &HeaderMap, query: Option<&str>) -> Result<(), Refusal> {
        let host = headers.get(header::HOST).map(|v| v.to_str().unwrap_or("?"));
        match host {
            Some(h) if self.is_me(h) => {}
            other => return Err(Refusal::ForeignHost(other.unwrap_or("").to_owned())),
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("?");
            if !self.origin_ok(origin) {
                return Err(Refusal::ForeignOrigin(origin.to_owned()));
            }
        }
        match self.token_of(headers, query) {
            Some(t) if self.token_matches(t) => Ok(()),
            Some(_) => Err(Refusal::Unauthorized(format!(
                "the one given is wrong; {}",
                self.hint
            ))),
            None => Err(Refusal::Unauthorized(self.hint.clone())),
        }
    }
}

/// `host[:port]` split, with IPv6 literals in brackets kept whole.
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    let colon = if authority.starts_with('[') {
        authority.find("]:").map(|i| i + 1)
    } else {
        authority.rfind(':')
    };
    match colon {
        Some(i) => match authority[i + 1..].parse() {
            Ok(port) => (&authority[..i], Some(port)),
            Err(_) => (authority, None),
        },
        None => (authority, None),
    }
}

/// The axum middleware: lets a request through [`Access::check`] or answers its refusal.
/// Use with `axum::middleware::from_fn_with_state(Arc<Access>, guard)`.
pub async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    match access.check(request.headers(), request.uri().query()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(%refusal, method = %request.method(), "refused a request");
            refusal.into_response()
        }
    }
}

/// A fresh random token: 32 hex digits (128 bits).
pub fn new_token() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A token must be long enough not to be guessed and travel in a URL or header unescaped.
pub fn check_token(token: &str) -> Result<(), Usage> {
    let url_safe = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if token.len() < 16 || !url_safe {
        return Err(Usage(format!(
            "the token must be at least 16 characters of A-Z a-z 0-9 - . _ ~; got {} \
             characters",
            token.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(addr: &str) -> Access {
        Access::new("0123456789abcdef0123".into(), addr.parse().unwrap(), "hint").unwrap()
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn tokens_are_random_url_safe_and_short_ones_are_refused() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(check_token(&a).is_ok());
        assert!(check_token("short").is_err());
        assert!(check_token("has spaces in it, 16+").is_err());
    }

    #[test]
    fn the_token_is_read_from_the_bearer_header_and_from_the_query_only_when_allowed() {
        let a = access("127.0.0.1:8080");
        let bearer = headers(&[
            (header::HOST, "127.0.0.1:8080"),
            (header::AUTHORIZATION, "Bearer 0123456789abcdef0123"),
        ]);
        assert_eq!(a.check(&bearer, None), Ok(()));
        let host = headers(&[(header::HOST, "localhost:8080")]);
        let query = Some("a=1&token=0123456789abcdef0123");
        assert!(matches!(
            a.check(&host, query),
            Err(Refusal::Unauthorized(_))
        ));
        assert_eq!(a.accept_query_token().check(&host, query), Ok(()));
    }

    #[test]
    fn foreign_hosts_and_origins_are_refused_even_with_the_token() {
        let a = access("127.0.0.1:8080");
        let with = |pairs: &[(header::HeaderName, &str)]| {
            let mut h = headers(pairs);
            h.insert(
                header::AUTHORIZATION,
                "Bearer 0123456789abcdef0123".parse().unwrap(),
            );
            a.check(&h, None)
        };
        assert!(matches!(
            with(&[(header::HOST, "evil.example:8080")]),
            Err(Refusal::ForeignHost(_))
        ));
        assert!(matches!(
            with(&[(header::HOST, "127.0.0.1:9999")]),
            Err(Refusal::ForeignHost(_))
        ));
        assert!(matches!(with(&[]), Err(Refusal::ForeignHost(_))));
        assert!(matches!(
            with(&[
                (header::HOST, "127.0.0.1:8080"),
                (header::ORIGIN, "http://evil.example.com")
            ]),
            Err(Refusal::ForeignOrigin(_))
        ));
        assert!(matches!(
            with(&[(header::HOST, "127.0.0.1:8080"), (header::ORIGIN, "null")]),
            Err(Refusal::ForeignOrigin(_))
        ));
        assert_eq!(
            with(&[
                (header::HOST, "[::1]:8080"),
                (header::ORIGIN, "http://localhost:8080")
            ]),
            Ok(())
        );
    }

    #[test]
    fn allowed_hosts_and_origins_and_any_ip_of_an_unspecified_address_pass() {
        let a = access("0.0.0.0:8080")
            .allow_hosts(["board.example".to_owned()])
            .allow_origins(["https://app.example/".to_owned()]);
        let token = (header::AUTHORIZATION, "Bearer 0123456789abcdef0123");
        for host in ["10.1.2.3:8080", "board.example", "Board.Example:8080"] {
            let h = headers(&[(header::HOST, host), token.clone()]);
            assert_eq!(a.check(&h, None), Ok(()), "{host}");
        }
        let h = headers(&[
            (header::HOST, "board.example:8080"),
            (header::ORIGIN, "https://app.example"),
            token.clone(),
        ]);
        assert_eq!(a.check(&h, None), Ok(()));
        let h = headers(&[(header::HOST, "other.example:8080"), token]);
        assert!(matches!(a.check(&h, None), Err(Refusal::ForeignHost(_))));
    }
}
