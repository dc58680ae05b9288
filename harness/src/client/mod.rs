//! Clients: how one process talks to one node of the system under test, and how every answer
//! becomes a completion.
//!
//! The rule that matters: an operation that might have taken effect is never reported `Fail`.
//! A completion is `Ok` (took effect), `Fail` (definitely did not) or `Info` (may or may not have;
//! every timeout is `Info`). Only a read may turn an indeterminate answer into `Fail`, because a
//! read changes nothing (Jepsen does the same).

mod etcd;
mod etcd_gateway;
mod exec;
mod galera;
mod http;
pub(crate) mod nats;
mod probe;
mod raftkv;

pub use etcd::{CallError, EtcdClient, KeepAlive, classify_error, event_json};
pub use etcd_gateway::EtcdGatewayClient;
pub use exec::ExecClient;
pub use galera::{GALERA_PORT, GaleraClient, GaleraSession};
pub use http::{HttpClient, HttpError};
pub use nats::{
    CLIENT_PORT as NATS_CLIENT_PORT, CLUSTER_PORT as NATS_CLUSTER_PORT, DRAIN_STALL, Drained,
    MONITOR_PORT as NATS_MONITOR_PORT, MetaView, NatsClient, Revisions, StreamReplicas,
};
pub use probe::Probe;
pub use raftkv::{FailpointsView, RaftkvClient, Status};

use crate::generator::Op;

use serde_json::Value;

/// The outcome of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// It took effect; the value is what a read returned, or the invocation's value.
    Ok(Value),
    /// It definitely did not take effect; the reason.
    Fail(String),
    /// Unknown whether it took effect; the reason.
    Info(String),
}

impl Completion {
    /// The history's `type` for this completion.
    pub fn kind(&self) -> &'static str {
        match self {
            Completion::Ok(_) => "ok",
            Completion::Fail(_) => "fail",
            Completion::Info(_) => "info",
        }
    }
}

/// A client of whichever system is under test, so the runner drives raftkv and etcd alike.
#[derive(Clone)]
pub enum NodeClient {
    /// raftkv's HTTP API.
    Raftkv(RaftkvClient),
    /// etcd's v3 gRPC API.
    Etcd(EtcdClient),
    /// etcd's v3 JSON gateway (registers only).
    EtcdGateway(EtcdGatewayClient),
    /// NATS JetStream (KV registers, the queue stream).
    Nats(NatsClient),
    /// MariaDB Galera Cluster over SQL (transactions, bank).
    Galera(GaleraClient),
    /// A program of the user's speaking the exec protocol (`docs/exec-protocol.md`).
    Exec(ExecClient),
    /// A client whose status comes from its target file's `[ready]` and `[leader]` probes.
    Probed(Box<NodeClient>, std::sync::Arc<Probe>),
}

impl NodeClient {
    /// Invokes one operation and classifies the answer.
    pub async fn invoke(&self, op: &Op) -> Completion {
        match self {
            NodeClient::Raftkv(c) => c.invoke(op).await,
            NodeClient::Etcd(c) => c.invoke(op).await,
            NodeClient::EtcdGateway(c) => c.invoke(op).await,
            NodeClient::Nats(c) => c.invoke(op).await,
            NodeClient::Galera(c) => c.invoke(op).await,
            NodeClient::Exec(c) => c.invoke(op).await,
            NodeClient::Probed(c, _) => Box::pin(c.invoke(op)).await,
        }
    }

    /// The raftkv client, when the system under test is raftkv.
    pub fn raftkv(&self) -> Option<&RaftkvClient> {
        match self {
            NodeClient::Raftkv(c) => Some(c),
            NodeClient::Probed(c, _) => c.raftkv(),
            _ => None,
        }
    }

    /// Every client of a cluster as the kind `pick` selects, by node name; an error saying
    /// `needs` when one is of another kind (the workload does not fit the target).
    ///
    /// # Errors
    /// When `pick` refuses a client.
    pub fn all_as<T: Clone>(
        clients: &[(String, NodeClient)],
        pick: impl Fn(&NodeClient) -> Option<&T>,
        needs: &str,
    ) -> anyhow::Result<Vec<(String, T)>> {
        clients
            .iter()
            .map(|(n, c)| {
                pick(c)
                    .cloned()
                    .map(|c| (n.clone(), c))
                    .ok_or_else(|| anyhow::anyhow!("{needs}"))
            })
            .collect()
    }

    /// The NATS client, when the system under test is NATS.
    pub fn nats(&self) -> Option<&NatsClient> {
        match self {
            NodeClient::Nats(c) => Some(c),
            NodeClient::Probed(c, _) => c.nats(),
            _ => None,
        }
    }

    /// The Galera client, when the system under test is Galera.
    pub fn galera(&self) -> Option<&GaleraClient> {
        match self {
            NodeClient::Galera(c) => Some(c),
            NodeClient::Probed(c, _) => c.galera(),
            _ => None,
        }
    }

    /// The etcd gRPC client, when the system under test is etcd reached over gRPC.
    pub fn etcd(&self) -> Option<&EtcdClient> {
        match self {
            NodeClient::Etcd(c) => Some(c),
            NodeClient::Probed(c, _) => c.etcd(),
            _ => None,
        }
    }

    /// The node's view of the cluster (role, term, leader).
    ///
    /// # Errors
    /// A description of what went wrong.
    pub async fn status(&self) -> Result<Status, String> {
        match self {
            NodeClient::Raftkv(c) => c.status().await,
            NodeClient::Etcd(c) => c.status().await,
            NodeClient::EtcdGateway(c) => c.status().await,
            NodeClient::Nats(c) => c.status().await,
            NodeClient::Galera(c) => c.status().await,
            NodeClient::Exec(c) => c.status().await,
            NodeClient::Probed(c, probe) => probe.status(c).await,
        }
    }
}
