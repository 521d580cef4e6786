//! The streamable HTTP transport (`--http ADDR`): not built in this version.

use std::net::SocketAddr;
use std::sync::Arc;

use super::board::Board;

pub async fn serve(_board: Arc<Board>, addr: SocketAddr) -> anyhow::Result<()> {
    anyhow::bail!("--http {addr}: the HTTP transport is not built in yet; use stdio")
}
