//! The `blackboard` command, built on the SDK (`blackboard-client`): the `demo`, the
//! document and history verbs, and `blackboard mcp`, the Model Context Protocol server.
//!
//! The binary (`main.rs`) is a thin clap and tracing shell over this library:
//! - [`access`]: the guard of the HTTP servers (`ui`, `mcp --http`): a bearer token and
//!   the Host and Origin checks (the `http` feature);
//! - [`connect`]: the flags every command shares (`--nats`, `--creds`, `--key`, `--store`,
//!   `--replicas`, with `NATS_URL`, `NATS_CREDS` and `BLACKBOARD_KEY`) and opening the
//!   board they name through the SDK's `Options`;
//! - [`verbs`]: `ls`, `get`, `put`, `watch`, `history`, `show`, `diff`, `blame`,
//!   `snapshot`, `replay`;
//! - [`bench`]: `blackboard bench`, the benchmark scenarios against a NATS deployment,
//!   each beside a raw baseline from the same run;
//! - [`demo`]: several agents editing one document at once;
//! - [`ui`]: `blackboard ui`, a live web view of a space (the `http` feature), with
//!   [`ui::serve`];
//! - [`mcp`]: the MCP server, with [`mcp::serve`], the streamable HTTP transport as a
//!   function of a bound listener and a shutdown future.
//!
//! The commands return `anyhow` errors, as binaries do: this library is the binary's body,
//! not an API for other crates (use `blackboard-client`). The MCP server's pieces
//! ([`mcp::Board`], [`mcp::Server`], [`mcp::serve`]) are the exception, so a program can host
//! the server itself.

#[cfg(feature = "http")]
pub mod access;
pub mod bench;
pub mod connect;
pub mod demo;
pub mod mcp;
#[cfg(feature = "http")]
pub mod shutdown;
#[cfg(feature = "http")]
pub mod ui;
pub mod verbs;
