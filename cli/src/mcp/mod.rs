//! `blackboard mcp`: the board as a Model Context Protocol server, for AI agents.
//!
//! One server process is one agent (`--agent`) in one space (`--space`): every change it
//! makes carries that agent and the reason the model gave, as the event's message. It
//! speaks MCP over stdio by default (stdout is the protocol; logs go to stderr), or the
//! streamable HTTP transport with `--http ADDR`.
//!
//! - [`board`]: the connection to the log and leases, the replicas it keeps per document;
//! - [`tools`]: the tools (read, write, wait, history, claims, presence);
//! - [`stale`]: the stale-read check of writes that pass `read_at`;
//! - [`resources`]: documents as `blackboard://SPACE/DOC` resources, with subscriptions.

mod board;
mod http;
mod resources;
mod server;
mod stale;
mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use blackboard::schemas::{AgentId, SpaceId};
use rmcp::ServiceExt as _;

pub use server::Server;

/// `blackboard mcp`: serve the board to an MCP client as one agent.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("log").required(true).args(["nats", "store"])))]
pub struct Args {
    /// The agent this server acts as: every change it makes is written by this agent.
    #[arg(long, value_name = "NAME")]
    pub agent: AgentId,
    /// The space whose documents the server serves.
    #[arg(long, default_value = "default")]
    pub space: SpaceId,
    /// Use the NATS JetStream server at this URL (for example nats://127.0.0.1:4222).
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// NATS credentials file, with --nats.
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub creds: Option<PathBuf>,
    /// Use the embedded log in this store directory (created if missing). Only one process
    /// can open a store at a time, so only one agent: use --nats to share a board.
    #[arg(long, value_name = "DIR", conflicts_with = "nats")]
    pub store: Option<PathBuf>,
    /// Keep this agent's replicas in DIR (with --nats), so a restart resumes instead of
    /// reading the documents again; a temporary directory by default.
    #[arg(long, value_name = "DIR", conflicts_with = "store")]
    pub data: Option<PathBuf>,
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
    let board = board::Board::open(&args).await?;
    tracing::info!(agent = %args.agent, space = %args.space, "MCP server ready");
    let result = match args.http {
        Some(addr) => http::serve(board.clone(), addr).await,
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
