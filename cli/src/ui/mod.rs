//! `blackboard ui`: a live web view of one space of the board, for the people who run a team
//! of agents: its documents, each document's JSON tree with the changes highlighted as they
//! arrive (agent and message), the timeline of events with the document as it was at each
//! one and the diff to the one before, blame for a path, who is present and which claims
//! are held, and the changes the space's roster rejected (listed with their reasons, and
//! marked in the timeline).
//!
//! One file per job:
//! - [`server`]: the routes behind the access guard shared with `blackboard mcp --http`
//!   ([`crate::access`]: a bearer token, and a DNS-rebinding guard on the Host and Origin
//!   headers) and [`serve`];
//! - [`events`]: the live event stream (server-sent events): the space's changes (the
//!   rejected ones too), its claims and its presence, watched once and fanned out to every
//!   open page;
//! - [`api`]: the JSON API the page reads (documents, a document, its timeline, `at`, diff,
//!   blame, presence);
//! - [`at`]: the diff between two positions, read in place rather than from a second fork
//!   of the document;
//! - [`assets`]: the page, hand-written HTML, CSS and JavaScript embedded in the binary.

pub mod api;
pub mod assets;
pub mod at;
pub mod events;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use blackboard_client::{AgentId, SpaceId};

use crate::connect::{self, BoardArgs, Missing};

use crate::access::check_token;
pub use crate::access::new_token;
pub use server::{serve, serve_allowing, Allowed};

/// The environment variable the access token is read from when `--token` is not given.
pub const TOKEN_ENV: &str = "BLACKBOARD_UI_TOKEN";

/// `blackboard ui`: serve a live web view of a space.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where the board is: --nats URL (or $NATS_URL), or --store DIR for the embedded log in
    /// DIR (which only one process can open at a time).
    #[command(flatten)]
    pub board: BoardArgs,
    /// The space to show.
    #[arg(long, default_value = "demo")]
    pub space: SpaceId,
    /// The address to listen on. Loopback by default: the page shows everything on the
    /// board to whoever holds the token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// The access token every request must carry (`?token=` or `Authorization: Bearer`).
    /// Default: $BLACKBOARD_UI_TOKEN, or a random one, printed in the page's URL.
    #[arg(long, value_name = "TOKEN", env = TOKEN_ENV, hide_env_values = true)]
    pub token: Option<String>,
    /// Also accept requests whose Host is this name (`name` or `name:port`), for browsers on
    /// other machines (with --addr on a public address). localhost and IP addresses are
    /// always accepted; other names are refused with 403 (DNS rebinding).
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
    /// Also accept requests from this web origin (`https://app.example`), as a browser sends
    /// it; other origins are refused with 403.
    #[arg(long = "allow-origin", value_name = "URL")]
    pub allow_origins: Vec<String>,
    /// How long a read waits for the log to deliver a document's events, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

/// The space as the page sees it: the SDK board (one live replica per document), the space's
/// watches fanned out to the open pages, and the access token. Start it with
/// [`Site::start`], serve it with [`serve`], then [`Site::close`] it.
#[derive(Debug)]
pub struct Site {
    board: blackboard_client::Board,
    space: SpaceId,
    token: String,
    timeout: Duration,
    hub: events::Hub,
}

impl Site {
    /// Starts watching `space` on `board` (its changes, claims and presence) for the pages
    /// that will open. `token` is what every request must carry; see [`new_token`].
    pub async fn start(
        board: blackboard_client::Board,
        space: SpaceId,
        token: String,
        timeout: Duration,
    ) -> anyhow::Result<Arc<Site>> {
        check_token(&token)?;
        let hub = events::Hub::start(&board, &space, timeout).await?;
        Ok(Arc::new(Site {
            board,
            space,
            token,
            timeout,
            hub,
        }))
    }

    /// The token requests must carry.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The space shown.
    pub fn space(&self) -> &SpaceId {
        &self.space
    }

    /// Stops the watches and ends the open event streams, so a graceful shutdown does not
    /// wait for pages that never hang up.
    pub fn close(&self) {
        self.hub.stop();
    }
}

/// Serves the page until Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let token = match &args.token {
        Some(t) => t.clone(),
        None => new_token(),
    };
    check_token(&token)?;
    let log = args.board.required_log()?;
    let agent: AgentId = "ui".parse().context("the ui's agent id")?;
    let connected = connect::open(&args.board, log, &agent, Missing::Refuse, "ui", |o| o).await?;
    let site = Site::start(
        connected.board.clone(),
        args.space.clone(),
        token,
        Duration::from_secs(args.timeout),
    )
    .await
    .with_context(|| format!("watching space {} on {}", args.space, connected.place()))?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("listening on {}", args.addr))?;
    let local = listener.local_addr()?;
    // On stdout, so a script can read the URL (and the port of --addr 127.0.0.1:0).
    println!("blackboard ui: http://{local}/?token={}", site.token());
    let allowed = Allowed {
        hosts: args.allow_hosts.clone(),
        origins: args.allow_origins.clone(),
    };
    let result = serve_allowing(
        site.clone(),
        listener,
        allowed,
        crate::shutdown::terminated(),
    )
    .await
    .context("serving HTTP");
    site.close();
    connected.close().await?;
    result
}
