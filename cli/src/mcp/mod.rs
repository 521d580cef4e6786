//! `blackboard mcp`: the board as a Model Context Protocol server, for AI agents.
//!
//! One server process is one agent (`--agent`) in one space (`--space`): every change it
//! makes carries that agent and the reason the model gave, as the event's message. It
//! speaks MCP over stdio by default (stdout is the protocol; logs go to stderr), or the
//! streamable HTTP transport with `--http ADDR`.
//!
//! - [`Board`]: the SDK board (opened through `Options`), its claims and presence, and
//!   waiting for the log around reads and writes;
//! - `args`: arguments checked against the tools' schemas, naming the argument;
//! - `depth`: messages nested too deep to parse answered naming the limit, on both
//!   transports;
//! - `keys`: idempotency keys, journaled in the store directory when there is one;
//! - `output`: the tools' output schemas;
//! - `prompts`: prompts for the common workflows (join, pick up a task, hand off);
//! - `tools`: the tools (read, write, wait, history, claims, presence);
//! - `stale`: the stale-read check of writes that pass `read_at`;
//! - `resources`: documents as `blackboard://SPACE/DOC` resources, with subscriptions;
//! - [`serve`]: the streamable HTTP transport, over a bound listener until a shutdown
//!   future resolves (the `http` feature).

mod args;
mod board;
mod depth;
mod error;
#[cfg(feature = "http")]
mod http;
mod keys;
mod output;
mod prompts;
mod resources;
mod server;
mod stale;
mod subscriptions;
mod tools;

use std::net::SocketAddr;

use anyhow::Context as _;
use blackboard_client::{AgentId, SpaceId};
use rmcp::ServiceExt as _;

#[cfg(feature = "http")]
use crate::access::{check_token, new_token, Access};
#[cfg(feature = "http")]
use crate::verbs::Usage;

pub use board::Board;
pub use error::ToolError;
#[cfg(feature = "http")]
pub use http::serve;
pub use server::Server;

use crate::connect::BoardArgs;

/// The environment variable the HTTP transport's token is read from when `--token` is not
/// given.
pub const TOKEN_ENV: &str = "BLACKBOARD_MCP_TOKEN";

/// The environment variable naming the model behind the agent, when `--model` is not given.
pub const MODEL_ENV: &str = "BLACKBOARD_MODEL";

/// `blackboard mcp`: serve the board to an MCP client as one agent.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The agent this server acts as: every change it makes is written by this agent.
    #[arg(long, value_name = "NAME")]
    pub agent: AgentId,
    /// The space whose documents the server serves.
    #[arg(long, default_value = "default")]
    pub space: SpaceId,
    /// Where the board is: --nats URL (or $NATS_URL) to share it with other agents, with
    /// --store DIR to keep this agent's replicas across restarts; --store DIR alone for a
    /// single agent on the embedded log in DIR (created if missing).
    #[command(flatten)]
    pub board: BoardArgs,
    /// Serve the streamable HTTP transport on this address (for example 127.0.0.1:8080,
    /// endpoint /mcp) instead of stdio. Every request must carry the token
    /// (`Authorization: Bearer TOKEN`): --token, $BLACKBOARD_MCP_TOKEN, --token-file, or a
    /// random one printed on stdout at start (loopback addresses only).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// With --http: the token clients must send (at least 16 characters of A-Z a-z 0-9 - . _ ~).
    #[arg(long, value_name = "TOKEN", env = TOKEN_ENV, hide_env_values = true,
          conflicts_with = "token_file")]
    pub token: Option<String>,
    /// With --http: read the token from this file (its first line).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// With --http: also accept requests whose Host is this name (`name` or `name:port`), for
    /// clients on other machines. localhost and IP addresses are always accepted.
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
    /// With --http: also accept requests from this web origin (`https://app.example`), as a
    /// browser sends it; other origins are refused with 403.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// The model behind this agent, declared (and signed) with every change it writes and
    /// shown by history and blame. A client may name it per call instead, in the tool
    /// call's `_meta` as `blackboard/model`.
    #[arg(long, value_name = "NAME", env = MODEL_ENV)]
    pub model: Option<String>,
    /// How long a read waits for the log to deliver a document's events, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

/// Runs the server until the client goes away (stdio) or the process is interrupted (HTTP).
pub async fn run(args: Args) -> anyhow::Result<()> {
    // Refuse a bad token or an unprotected public address before connecting to anything.
    let token = match args.http {
        Some(addr) => Some(http_token(&args, addr)?),
        None => None,
    };
    let board = Board::open(&args).await?;
    tracing::info!(agent = %args.agent, space = %args.space, "MCP server ready");
    let result = match (args.http, token) {
        (Some(addr), Some(token)) => serve_http(board.clone(), addr, token, &args).await,
        _ => {
            let service = Server::new(board.clone())
                .serve(depth::stdio())
                .await
                .context("starting the MCP session on stdio")?;
            service.waiting().await.context("the MCP session failed")?;
            Ok(())
        }
    };
    board.close().await;
    result
}

/// The HTTP transport's token: given (--token, $BLACKBOARD_MCP_TOKEN, --token-file) or
/// generated. A generated one is only for a loopback address: on an address other machines
/// reach, the operator chooses the token, knowingly.
#[derive(Debug)]
#[cfg_attr(not(feature = "http"), allow(dead_code))]
struct Token {
    value: String,
    generated: bool,
}

#[cfg(not(feature = "http"))]
fn http_token(_args: &Args, _addr: SocketAddr) -> anyhow::Result<Token> {
    // serve_http says what is missing.
    Ok(Token {
        value: String::new(),
        generated: false,
    })
}

#[cfg(feature = "http")]
fn http_token(args: &Args, addr: SocketAddr) -> anyhow::Result<Token> {
    let given = match (&args.token, &args.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                Usage(format!(
                    "--token-file {}: cannot read it: {e}",
                    file.display()
                ))
            })?;
            Some(text.lines().next().unwrap_or("").trim().to_owned())
        }
        (None, None) => None,
    };
    let token = match given {
        Some(value) => Token {
            value,
            generated: false,
        },
        None if addr.ip().is_loopback() => Token {
            value: new_token(),
            generated: true,
        },
        None => {
            return Err(Usage(format!(
                "--http {addr} is not a loopback address: other machines can reach it, so \
                 choose the token its clients must send with --token, ${TOKEN_ENV} or \
                 --token-file (and name this machine with --allow-host NAME if clients use a \
                 name rather than its IP address)"
            ))
            .into())
        }
    };
    check_token(&token.value).map_err(|Usage(e)| Usage(format!("--http's token: {e}")))?;
    Ok(token)
}

/// Listens on `addr` and serves HTTP until Ctrl-C or SIGTERM.
#[cfg(feature = "http")]
async fn serve_http(
    board: std::sync::Arc<Board>,
    addr: SocketAddr,
    token: Token,
    args: &Args,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    let access = Access::new(
        token.value,
        local,
        "send Authorization: Bearer TOKEN with the token `blackboard mcp` printed at start or \
         was given (--token, $BLACKBOARD_MCP_TOKEN, --token-file)",
    )?
    .allow_hosts(args.allow_hosts.iter().cloned())
    .allow_origins(args.allow_origins.iter().cloned());
    // On stdout, so a script can learn the port of `--http 127.0.0.1:0` and the token; a
    // token the operator chose is not repeated.
    if token.generated {
        println!(
            "blackboard mcp: serving MCP over HTTP at http://{local}/mcp with Authorization: \
             Bearer {}",
            access.token()
        );
    } else {
        println!("blackboard mcp: serving MCP over HTTP at http://{local}/mcp");
    }
    serve(board, listener, access, crate::shutdown::terminated())
        .await
        .context("serving HTTP")
}

#[cfg(not(feature = "http"))]
async fn serve_http(
    _board: std::sync::Arc<Board>,
    addr: SocketAddr,
    _token: Token,
    _args: &Args,
) -> anyhow::Result<()> {
    anyhow::bail!(
        "--http {addr}: this blackboard was built without the HTTP transport; rebuild with \
         `cargo install --path cli --features http` (or use stdio)"
    )
}
