//! A headless chromium driven through chromedriver (Debian's chromium and chromium-driver,
//! which `scripts/test` installs when missing), for the web view's browser tests. Each test
//! file adds its own `impl Browser` with what it does on the page.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context as _};
use fantoccini::{Client, ClientBuilder};
use serde_json::json;

/// chromedriver on a free port and a headless chromium session through it.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver leads its own process group, which the chromium it started is in: a
        // test that failed before closing its session leaves no browser behind.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Starts chromedriver on `port` and waits for it to say it is listening.
fn start_driver(port: u16) -> anyhow::Result<Child> {
    let mut driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context(
            "starting chromedriver: install Debian's chromium and chromium-driver \
             (scripts/test does when chromedriver is missing)",
        )?;
    let stdout = driver.stdout.take().context("chromedriver's stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if line.contains("started successfully") {
            return Ok(driver);
        }
    }
    let _ = driver.kill();
    bail!("chromedriver exited without starting")
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless chromium session.
    pub async fn start() -> anyhow::Result<Browser> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let driver = tokio::task::spawn_blocking(move || start_driver(port)).await??;
        let profile = tempfile::tempdir()?;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    // Without these chromium keeps calling home, which floods a closed network.
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1400,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .context("opening a chromium session through chromedriver")?;
        Ok(Browser {
            client,
            driver,
            _profile: profile,
        })
    }
}
