//! The web view's site served on a free loopback port, as `blackboard ui` serves it, for the
//! browser tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use blackboard_cli::ui;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server of one site.
pub struct Served {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<std::io::Result<()>>,
}

impl Served {
    /// Serves `site` on a free loopback port.
    pub async fn start(site: Arc<ui::Site>) -> anyhow::Result<Served> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(ui::serve(site, listener, async {
            let _ = stopped.await;
        }));
        Ok(Served {
            addr,
            stop: Some(stop),
            served,
        })
    }

    /// Stops the server; it must end within `within`, although a page may still have its
    /// event stream open.
    pub async fn stop(mut self, within: Duration) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(within, &mut self.served)
            .await
            .context("the server did not stop with a page open")???;
        Ok(())
    }
}
