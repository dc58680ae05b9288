//! Systems under test (Jepsen's `DB`): how to start a cluster of them in containers, when it is
//! ready, and which node leads: raftkv, and etcd (Debian's `etcd-server`) through the same trait.
//!
//! A `Db` only describes nodes; `control` starts and stops the containers, and the nemesis kills,
//! pauses and partitions them without the `Db`'s help.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::client::{
    EtcdClient, EtcdGatewayClient, HttpClient, NatsClient, NodeClient, RaftkvClient, Revisions,
    Status,
};
use crate::control::{Cluster, ETCD, NATS, NodeSpec};
use crate::nemesis::{clock_bind, clock_env};
use crate::workload::EtcdApi;

/// A system under test.
pub trait Db: Send + Sync {
    /// Short name, e.g. `raftkv`.
    fn name(&self) -> &str;
    /// The container of node `i` (0-based) of `n`; `clock_dir` is the host folder whose `<node>/`
    /// subfolders hold each node's clock file.
    fn node_spec(&self, cluster: &Cluster, i: usize, n: usize, clock_dir: &Path) -> NodeSpec;
    /// A client of the node `node` at this address.
    fn client(&self, http: &HttpClient, node: &str, ip: Ipv4Addr) -> NodeClient;
    /// `Ok` when clock faults reach the nodes (libfaketime), else why not.
    fn clock_supported(&self) -> Result<(), String>;
    /// The node's log and snapshot files, as globs relative to its data directory: what the
    /// `corrupt` fault damages unless the workload names others.
    fn data_files(&self) -> Vec<String>;
}

/// Node names: `n1`, `n2`, ...
pub fn node_name(i: usize) -> String {
    format!("n{}", i + 1)
}

/// raftkv in containers built from `faultline/raftkv:*`.
#[derive(Debug, Clone)]
pub struct Raftkv {
    /// The node image.
    pub image: String,
    /// Planted bugs (`--bug`).
    pub bugs: Vec<String>,
    /// Extra arguments for every node.
    pub args: Vec<String>,
    /// The data directory is on faultfs (storage faults: stalled fsyncs, lost unsynced writes).
    pub faultfs: bool,
}

/// A node of a packaged Go binary (etcd, NATS): data in `/data` (on faultfs when asked, the
/// binary then started by `faultfs run`), no clock file (libfaketime cannot reach a Go binary,
/// see `clock_supported`), never restarted by the engine.
fn packaged_node_spec(
    name: String,
    image: &str,
    binary: &str,
    cmd: Vec<String>,
    faultfs: bool,
) -> NodeSpec {
    NodeSpec {
        binds: Vec::new(),
        env: Vec::new(),
        name,
        image: image.to_string(),
        entrypoint: faultfs.then(|| faultfs_entrypoint("/data", binary)),
        cmd,
        data_dir: "/data".into(),
        restart_on_failure: false,
        fuse: faultfs,
    }
}

/// The entrypoint of a node whose data directory `data_dir` is on faultfs: faultfs mounts itself
/// over the directory in place, runs `binary` (with the container's command as its arguments)
/// as its child, and exits with the child's code, so the mount lives exactly as long as the node.
pub fn faultfs_entrypoint(data_dir: &str, binary: &str) -> Vec<String> {
    [
        "/usr/local/bin/faultfs",
        "run",
        "--backing",
        data_dir,
        "--mount",
        data_dir,
        "--",
        binary,
    ]
    .map(String::from)
    .to_vec()
}

/// raftkv's write-ahead log segments and snapshots under its data directory.
pub const RAFTKV_DATA_FILES: [&str; 2] = ["wal/wal-*.log", "snap/snap-*.snap"];

/// etcd's WAL, snapshots and bbolt database under its data directory (`/data/etcd`).
pub const ETCD_DATA_FILES: [&str; 3] = [
    "etcd/member/wal/*.wal",
    "etcd/member/snap/*.snap",
    "etcd/member/snap/db",
];

/// raftkv's HTTP API port inside each container.
pub const RAFTKV_CLIENT_PORT: u16 = 2379;
/// raftkv's peer transport port inside each container.
pub const RAFTKV_PEER_PORT: u16 = 2380;

impl Db for Raftkv {
    fn name(&self) -> &str {
        "raftkv"
    }

    fn node_spec(&self, cluster: &Cluster, i: usize, n: usize, clock_dir: &Path) -> NodeSpec {
        let peers: Vec<String> = (0..n)
            .map(|j| {
                let ip = cluster.address_of(j);
                format!(
                    "{}={ip}:{RAFTKV_PEER_PORT}/{ip}:{RAFTKV_CLIENT_PORT}",
                    j + 1
                )
            })
            .collect();
        let ip = cluster.address_of(i);
        let mut cmd = vec![
            "--id".into(),
            (i + 1).to_string(),
            "--peers".into(),
            peers.join(","),
            "--client-addr".into(),
            format!("0.0.0.0:{RAFTKV_CLIENT_PORT}"),
            "--peer-addr".into(),
            format!("{ip}:{RAFTKV_PEER_PORT}"),
            "--data-dir".into(),
            "/data".into(),
        ];
        for bug in &self.bugs {
            cmd.extend(["--bug".to_string(), bug.clone()]);
        }
        cmd.extend(self.args.iter().cloned());
        let name = node_name(i);
        NodeSpec {
            binds: vec![clock_bind(clock_dir, &name)],
            env: clock_env(),
            name,
            image: self.image.clone(),
            entrypoint: self
                .faultfs
                .then(|| faultfs_entrypoint("/data", "/usr/local/bin/raftkv")),
            restart_on_failure: arms_failpoints(&cmd),
            cmd,
            data_dir: "/data".into(),
            fuse: self.faultfs,
        }
    }

    fn client(&self, http: &HttpClient, _node: &str, ip: Ipv4Addr) -> NodeClient {
        NodeClient::Raftkv(RaftkvClient::new(
            http.clone(),
            &format!("{ip}:{RAFTKV_CLIENT_PORT}"),
        ))
    }

    fn clock_supported(&self) -> Result<(), String> {
        Ok(())
    }

    fn data_files(&self) -> Vec<String> {
        RAFTKV_DATA_FILES.map(String::from).to_vec()
    }
}

/// etcd in containers built from `faultline/etcd:*`: a static cluster, every member named after
/// its node (`n1`, ...) and listed in `--initial-cluster` with its fixed address.
#[derive(Debug, Clone)]
pub struct Etcd {
    /// The etcd image.
    pub image: String,
    /// Reads with `serializable: true`: served by any member from its local state, maybe stale.
    pub serializable_reads: bool,
    /// Which of etcd's client APIs the clients speak.
    pub api: EtcdApi,
    /// The data directory is on faultfs (storage faults: stalled fsyncs, lost unsynced writes).
    pub faultfs: bool,
    /// Extra arguments for every member.
    pub args: Vec<String>,
}

/// etcd's client port.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// etcd's peer port.
pub const ETCD_PEER_PORT: u16 = 2380;

impl Db for Etcd {
    fn name(&self) -> &str {
        "etcd"
    }

    fn node_spec(&self, cluster: &Cluster, i: usize, n: usize, _clock_dir: &Path) -> NodeSpec {
        let initial: Vec<String> = (0..n)
            .map(|j| {
                format!(
                    "{}=http://{}:{ETCD_PEER_PORT}",
                    node_name(j),
                    cluster.address_of(j)
                )
            })
            .collect();
        let ip = cluster.address_of(i);
        let name = node_name(i);
        let mut cmd: Vec<String> = vec![
            "--name".into(),
            name.clone(),
            // A subfolder, so etcd creates it with the 0700 mode it insists on.
            "--data-dir".into(),
            "/data/etcd".into(),
            "--listen-client-urls".into(),
            format!("http://0.0.0.0:{ETCD_CLIENT_PORT}"),
            "--advertise-client-urls".into(),
            format!("http://{ip}:{ETCD_CLIENT_PORT}"),
            "--listen-peer-urls".into(),
            format!("http://{ip}:{ETCD_PEER_PORT}"),
            "--initial-advertise-peer-urls".into(),
            format!("http://{ip}:{ETCD_PEER_PORT}"),
            "--initial-cluster".into(),
            initial.join(","),
            "--initial-cluster-state".into(),
            "new".into(),
            "--initial-cluster-token".into(),
            cluster.run_id().to_string(),
        ];
        cmd.extend(self.args.iter().cloned());
        packaged_node_spec(name, &self.image, &ETCD.installed(), cmd, self.faultfs)
    }

    fn client(&self, http: &HttpClient, _node: &str, ip: Ipv4Addr) -> NodeClient {
        let addr = format!("{ip}:{ETCD_CLIENT_PORT}");
        match self.api {
            EtcdApi::Grpc => NodeClient::Etcd(EtcdClient::new(
                &addr,
                http.timeout(),
                self.serializable_reads,
            )),
            EtcdApi::Gateway => NodeClient::EtcdGateway(EtcdGatewayClient::new(
                http.clone(),
                &addr,
                self.serializable_reads,
            )),
        }
    }

    fn clock_supported(&self) -> Result<(), String> {
        Err(
            "etcd is a Go binary: it reads the clock without libc, so libfaketime cannot reach it"
                .into(),
        )
    }

    fn data_files(&self) -> Vec<String> {
        ETCD_DATA_FILES.map(String::from).to_vec()
    }
}

/// NATS JetStream in containers built from `faultline/nats:*`: a static cluster, every server
/// named after its node (`--name n1`), routes to every peer, JetStream's store in the node's
/// volume, monitoring on 8222. The configuration is given as flags (the package's default
/// configuration file binds 127.0.0.1 and is not used).
#[derive(Debug, Clone)]
pub struct Nats {
    /// The NATS image.
    pub image: String,
    /// Extra arguments for every server.
    pub args: Vec<String>,
    /// The data directory is on faultfs.
    pub faultfs: bool,
    /// The KV bucket of the register workloads.
    pub bucket: String,
    /// The stream of the queue workload.
    pub queue: String,
    /// Revisions seen by every client of the run (a cas needs its `from`'s revision).
    pub revisions: Revisions,
}

/// The KV bucket of NATS register workloads.
pub const NATS_BUCKET: &str = "faultline";
/// The stream of the NATS queue workload.
pub const NATS_QUEUE: &str = "queue";

/// NATS's cluster name, shared by every server of a run.
pub const NATS_CLUSTER: &str = "faultline";

impl Db for Nats {
    fn name(&self) -> &str {
        "nats"
    }

    fn node_spec(&self, cluster: &Cluster, i: usize, n: usize, _clock_dir: &Path) -> NodeSpec {
        use crate::client::{
            NATS_CLIENT_PORT as CLIENT_PORT, NATS_CLUSTER_PORT as CLUSTER_PORT,
            NATS_MONITOR_PORT as MONITOR_PORT,
        };
        let routes: Vec<String> = (0..n)
            .map(|j| format!("nats://{}:{CLUSTER_PORT}", cluster.address_of(j)))
            .collect();
        let name = node_name(i);
        let mut cmd: Vec<String> = vec![
            "--name".into(),
            name.clone(),
            "--addr".into(),
            "0.0.0.0".into(),
            "--port".into(),
            CLIENT_PORT.to_string(),
            "--http_port".into(),
            MONITOR_PORT.to_string(),
            "--cluster_name".into(),
            NATS_CLUSTER.into(),
            "--cluster".into(),
            format!("nats://0.0.0.0:{CLUSTER_PORT}"),
            "--cluster_advertise".into(),
            format!("{}:{CLUSTER_PORT}", cluster.address_of(i)),
            "--routes".into(),
            routes.join(","),
            "--jetstream".into(),
            "--store_dir".into(),
            "/data/js".into(),
        ];
        cmd.extend(self.args.iter().cloned());
        packaged_node_spec(name, &self.image, &NATS.installed(), cmd, self.faultfs)
    }

    fn client(&self, http: &HttpClient, node: &str, ip: Ipv4Addr) -> NodeClient {
        NodeClient::Nats(NatsClient::new(
            node,
            ip,
            http,
            &self.bucket,
            &self.queue,
            self.revisions.clone(),
        ))
    }

    fn clock_supported(&self) -> Result<(), String> {
        Err(
            "nats-server is a Go binary: it reads the clock without libc, so libfaketime cannot reach it"
                .into(),
        )
    }

    fn data_files(&self) -> Vec<String> {
        NATS_DATA_FILES.map(String::from).to_vec()
    }
}

/// JetStream's message blocks under the data directory (`/data/js`), Jepsen's corruption target.
pub const NATS_DATA_FILES: [&str; 1] = ["js/jetstream/**/*.blk"];

/// What every node said on `/status`, for readiness, the leader, and the leader timeline.
pub async fn statuses(clients: &[(String, NodeClient)]) -> Vec<(String, Result<Status, String>)> {
    let polls = clients
        .iter()
        .map(|(name, c)| async move { (name.clone(), c.status().await) });
    futures_util::future::join_all(polls).await
}

/// The leader by the nodes' own account: a node that says it leads, in the highest term any
/// leader claims (an old leader cut off by a partition may still believe it leads).
pub fn leader_of(statuses: &[(String, Result<Status, String>)]) -> Option<String> {
    statuses
        .iter()
        .filter_map(|(name, s)| {
            s.as_ref()
                .ok()
                .filter(|s| s.role == "leader")
                .map(|s| (s.term, name))
        })
        .max()
        .map(|(_, name)| name.clone())
}

/// Waits until every node answers `/status` and one of them leads; returns the leader.
///
/// # Errors
/// After `timeout`, what each node last said.
pub async fn await_ready(
    clients: &[(String, NodeClient)],
    timeout: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let all = statuses(clients).await;
        let answered = all.iter().all(|(_, s)| s.is_ok());
        if answered && let Some(leader) = leader_of(&all) {
            return Ok(leader);
        }
        if Instant::now() >= deadline {
            let detail: Vec<String> = all
                .iter()
                .map(|(n, s)| match s {
                    Ok(s) => format!("{n}: {} in term {}, leader {:?}", s.role, s.term, s.leader),
                    Err(e) => format!("{n}: {e}"),
                })
                .collect();
            return Err(format!(
                "no leader after {:.0} s; {}",
                timeout.as_secs_f64(),
                detail.join("; ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Clients for every node of a cluster.
pub fn clients_for(db: &dyn Db, cluster: &Cluster, http: &HttpClient) -> Vec<(String, NodeClient)> {
    cluster
        .nodes()
        .iter()
        .map(|n| (n.name.clone(), db.client(http, &n.name, n.ip)))
        .collect()
}

/// Whether a raftkv command line can make the node exit at a failpoint: armed at start
/// (`--failpoint`) or over HTTP (`--failpoint-api`, as the nemesis scripts do).
fn arms_failpoints(cmd: &[String]) -> bool {
    cmd.iter()
        .any(|a| a == "--failpoint" || a == "--failpoint-api")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_armed_at_start_or_over_http_come_back_after_a_failpoint_exit() {
        let args = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(arms_failpoints(&args(&[
            "--id",
            "1",
            "--failpoint",
            "after-vote"
        ])));
        assert!(arms_failpoints(&args(&[
            "--failpoint-api",
            "--pre-vote",
            "false"
        ])));
        assert!(!arms_failpoints(&args(&[
            "--id",
            "1",
            "--bug",
            "forget-vote"
        ])));
        // A value that merely looks like the flag is not the flag.
        assert!(!arms_failpoints(&args(&["--data-dir", "/failpoint"])));
    }

    fn status(role: &str, term: u64) -> Result<Status, String> {
        Ok(Status {
            id: 1,
            role: role.into(),
            term,
            leader: None,
            commit: 0,
            applied: 0,
        })
    }

    #[test]
    fn the_leader_is_the_one_claiming_the_highest_term() {
        let all = vec![
            ("n1".to_string(), status("leader", 3)),
            ("n2".to_string(), status("leader", 5)),
            ("n3".to_string(), Err("down".into())),
        ];
        assert_eq!(leader_of(&all).as_deref(), Some("n2"));
        let none = vec![
            ("n1".to_string(), status("follower", 3)),
            ("n2".to_string(), status("candidate", 4)),
        ];
        assert_eq!(leader_of(&none), None);
    }
}
