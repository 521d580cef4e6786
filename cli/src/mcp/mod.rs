//! `blackboard mcp`: the board as a Model Context Protocol server, for AI agents.
//!
//! One server process is one agent (`--agent`) in one space (`--space`): every change it
//! makes carries that agent and the reason the model gave, as the event's message. It
//! speaks MCP over stdio by default (stdout is the protocol; logs go to stderr), or the
//! streamable HTTP transport with `--http ADDR`.
//!
//! - [`Board`]: the SDK board (opened through `Options`), its claims and presence, and
//!   waiting for the log around reads and writes;
//! - `tools`: the tools (read, write, wait, history, claims, presence);
//! - `stale`: the stale-read check of writes that pass `read_at`;
//! - `resources`: documents as `blackboard://SPACE/DOC` resources, with subscriptions;
//! - [`serve`]: the streamable HTTP transport, over a bound listener until a shutdown
//!   future resolves (the `http` feature).

mod board;
#[cfg(feature = "http")]
mod http;
mod resources;
mod server;
mod stale;
mod tools;

use std::net::SocketAddr;

use anyhow::Context as _;
use blackboard_client::{AgentId, SpaceId};
use rmcp::ServiceExt as _;

pub use board::Board;
#[cfg(feature = "http")]
pub use http::serve;
pub use server::Server;
pub use tools::ToolError;

use crate::connect::BoardArgs;

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
    /// endpoint /mcp) instead of stdio.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// How long a read waits for the log to deliver a document's events, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

/// Runs the server until the client goes away (stdio) or the process is interrupted (HTTP).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let board = Board::open(&args).await?;
    tracing::info!(agent = %args.agent, space = %args.space, "MCP server ready");
    let result = match args.http {
        Some(addr) => serve_http(board.clone(), addr).await,
        None => {
            let service = Server::new(board.clone())
                .serve(rmcp::transport::stdio())
                .await
                .context("starting the MCP session on stdio")?;
            service.waiting().await.context("the MCP session failed")?;
            Ok(())
        }
    };
    board.close().await;
    result
}

/// Listens on `addr` and serves HTTP until Ctrl-C or SIGTERM.
#[cfg(feature = "http")]
async fn serve_http(board: std::sync::Arc<Board>, addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    // On stderr, so a script can learn the port of `--http 127.0.0.1:0`.
    eprintln!("blackboard mcp: serving MCP over HTTP at http://{local}/mcp");
    serve(board, listener, crate::shutdown::terminated())
        .await
        .context("serving HTTP")
}

#[cfg(not(feature = "http"))]
async fn serve_http(_board: std::sync::Arc<Board>, addr: SocketAddr) -> anyhow::Result<()> {
    anyhow::bail!(
        "--http {addr}: this blackboard was built without the HTTP transport; rebuild with \
         `cargo install --path cli --features http` (or use stdio)"
    )
}
