//! A cluster of real `nats-server` processes on loopback, for tests of node loss.

use std::net::{Ipv4Addr, TcpListener};

use anyhow::{bail, Context as _};

use crate::nats::{LaunchError, NatsServer, Options, START_ATTEMPTS};

/// A NATS cluster of `n` JetStream servers on loopback, private to one test.
///
/// Each node has its own client, monitoring and route ports, its own store
/// (`sync_interval: always`) and a `server_name` of `n<i>`; the nodes route to
/// each other as cluster `blackboard-test`, so JetStream runs clustered and an
/// R3 stream keeps a copy on every node of a three-node cluster. Nodes can be
/// [`kill`](Self::kill)ed (SIGKILL) and [`restart`](Self::restart)ed on the same
/// ports and store. Dropping the cluster kills every node.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` nodes and waits until each answers a JetStream request (which needs
    /// the cluster's meta leader, so the cluster has formed).
    ///
    /// # Errors
    ///
    /// When `n` is zero, `nats-server` is missing, ports cannot be found, or a node is
    /// not ready in time (the error includes that node's log).
    pub async fn start(n: usize) -> anyhow::Result<NatsCluster> {
        NatsCluster::start_with(n, Options::default()).await
    }

    /// Starts `n` nodes as [`start`](Self::start) does, each with `options` (say,
    /// [`Options::default_sync`] for the benchmarks, which measure the server as deployed).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn start_with(n: usize, options: Options) -> anyhow::Result<NatsCluster> {
        if n == 0 {
            bail!("a cluster needs at least one node");
        }
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            // Another process may take one of the chosen ports before its node binds it
            // (tests run in parallel): then every node is stopped and new ports chosen.
            match NatsCluster::launch(n, &options).await {
                Ok(cluster) => return Ok(cluster),
                Err(LaunchError::AddrInUse(err)) => last_err = Some(err),
                Err(LaunchError::Other(err)) => return Err(err),
            }
        }
        Err(last_err
            .unwrap_or_else(|| anyhow::anyhow!("no launch attempted"))
            .context(format!(
                "the cluster's nodes could not bind free ports after {START_ATTEMPTS} attempts"
            )))
    }

    /// One attempt at [`start_with`](Self::start_with) on newly chosen ports. The nodes
    /// started are killed when it fails (dropped).
    async fn launch(n: usize, options: &Options) -> Result<NatsCluster, LaunchError> {
        // Hold every port while choosing, so the 3n ports are distinct.
        let listeners = (0..3 * n)
            .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0"))
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(LaunchError::Other)?;
        let ports = listeners
            .iter()
            .map(|l| Ok(l.local_addr()?.port()))
            .collect::<anyhow::Result<Vec<u16>>>()
            .map_err(LaunchError::Other)?;
        drop(listeners);
        let route_ports = &ports[2 * n..];
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let mut node = NatsServer::prepare_with(options, &cluster_text(i, route_ports))
                .map_err(LaunchError::Other)?;
            node.set_ports(ports[i], ports[n + i]);
            nodes.push(node);
        }
        let mut offsets = Vec::with_capacity(n);
        for node in &mut nodes {
            offsets.push(node.spawn()?);
        }
        // The nodes only become ready together (JetStream needs a quorum), so wait for
        // them concurrently.
        let ready = futures::future::join_all(
            nodes
                .iter_mut()
                .zip(offsets)
                .map(|(node, offset)| node.wait_ready(offset)),
        )
        .await;
        for (i, result) in ready.into_iter().enumerate() {
            result.map_err(|e| e.context(format!("start cluster node n{i}")))?;
        }
        Ok(NatsCluster { nodes })
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes (never, once started).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    /// The client URL of node `i`. Clients learn the other nodes from it and fail over
    /// to them when node `i` goes away.
    pub fn url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// Node `i`'s `server_name`, as the server reports it (say, as a stream's leader).
    pub fn name(i: usize) -> String {
        format!("n{i}")
    }

    /// Kills node `i` with SIGKILL and waits for it to exit.
    pub async fn kill(&mut self, i: usize) {
        self.nodes[i].kill().await;
    }

    /// Starts node `i` again on the same ports and store and waits until it is ready.
    ///
    /// # Errors
    ///
    /// When the node exits or is not ready in time.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes[i]
            .restart()
            .await
            .with_context(|| format!("restart cluster node n{i}"))
    }
}

/// The configuration of node `i` beyond JetStream: its name and its routes to all nodes
/// (a route to itself is ignored by the server).
fn cluster_text(i: usize, route_ports: &[u16]) -> String {
    let routes = route_ports
        .iter()
        .map(|p| format!("    nats-route://127.0.0.1:{p}\n"))
        .collect::<String>();
    format!(
        "server_name: n{i}\n\
         cluster {{\n  name: blackboard-test\n  listen: 127.0.0.1:{}\n  routes: [\n{routes}  ]\n}}\n",
        route_ports[i]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_is_named_and_routes_to_every_node() {
        let text = cluster_text(1, &[7001, 7002, 7003]);
        assert!(text.contains("server_name: n1"), "{text}");
        assert!(text.contains("listen: 127.0.0.1:7002"), "{text}");
        for p in [7001, 7002, 7003] {
            assert!(
                text.contains(&format!("nats-route://127.0.0.1:{p}")),
                "{text}"
            );
        }
    }
}
