//! Systems under test (Jepsen's `DB`): how to start a cluster of them in containers, when it is
//! ready, and which node leads. Every target file (raftkv, etcd, NATS, a user's own) is a
//! [`TargetDb`]; Galera has its own (`crate::galera`).
//!
//! A `Db` only describes nodes; `control` starts and stops the containers, and the nemesis kills,
//! pauses and partitions them without the `Db`'s help.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{
    EtcdClient, EtcdGatewayClient, ExecClient, HttpClient, NatsClient, NodeClient, Probe,
    RaftkvClient, Revisions, Status,
};
use crate::control::{Cluster, NodeSpec};
use crate::nemesis::{clock_bind, clock_env};
use crate::pki::RunPki;
use crate::target::{ProtocolName, TargetFile};
use crate::workload::{EtcdApi, Workload};

/// A system under test.
pub trait Db: Send + Sync {
    /// Short name, e.g. `raftkv`.
    fn name(&self) -> &str;
    /// The container of node `i` (0-based) of `n`; `clock_dir` is the host folder whose `<node>/`
    /// subfolders hold each node's clock file.
    /// The clients' TLS when the run uses mutual TLS (`tls = true`).
    fn client_tls(&self) -> Option<Arc<crate::pki::ClientTls>> {
        None
    }
    /// `Err` when the node's certificates (`tls = true`) cannot be made.
    fn node_spec(
        &self,
        cluster: &Cluster,
        i: usize,
        n: usize,
        clock_dir: &Path,
    ) -> Result<NodeSpec, String>;
    /// The container of node `i` joining the running cluster whose members (with it) are
    /// `members` (node indices), for the `member` fault's `add`; `Err` says why this system's
    /// nodes cannot join.
    fn join_spec(
        &self,
        cluster: &Cluster,
        i: usize,
        members: &[usize],
        clock_dir: &Path,
    ) -> Result<NodeSpec, String> {
        let _ = (cluster, i, members, clock_dir);
        Err(self.join_supported().err().unwrap_or_default())
    }
    /// The port of this name (`client`, `peer`) the nodes listen on, when the system names it.
    fn port(&self, name: &str) -> Option<u16> {
        let _ = name;
        None
    }
    /// `Ok` when nodes can be added to and removed from a running cluster (the `member` fault),
    /// else why not.
    fn join_supported(&self) -> Result<(), String> {
        Err(format!(
            "{} has no membership changes in Faultline",
            self.name()
        ))
    }
    /// A client of node `i` of the cluster.
    fn client(&self, http: &HttpClient, cluster: &Cluster, i: usize) -> NodeClient;
    /// `Ok` when clock faults reach the nodes (libfaketime), else why not.
    fn clock_supported(&self) -> Result<(), String>;
    /// The node's log and snapshot files, as globs relative to its data directory: what the
    /// `corrupt` fault damages unless the workload names others.
    fn data_files(&self) -> Vec<String>;
    /// Whether one node leads, so readiness waits for a leader and leader-aimed faults have a
    /// target (an exec target without a `[leader]` probe has none).
    fn has_leader(&self) -> bool {
        true
    }
}

/// Node names: `n1`, `n2`, ...
pub fn node_name(i: usize) -> String {
    format!("n{}", i + 1)
}

/// The index of a node name (`n3` -> 2), the inverse of [`node_name`].
pub fn node_index(name: &str) -> Option<usize> {
    name.strip_prefix('n')?
        .parse::<usize>()
        .ok()?
        .checked_sub(1)
}

/// A system under test described by a target file (`targets/<name>.toml`): raftkv, etcd, NATS,
/// or a user's own system. The node's command comes from the file's template; the protocol (the
/// Rust that remains) says how clients talk to it.
#[derive(Debug, Clone)]
pub struct TargetDb {
    /// The target file.
    pub target: TargetFile,
    /// The node image.
    pub image: String,
    /// Planted bugs (`--bug`), passed through the file's `bug-args`.
    pub bugs: Vec<String>,
    /// Extra arguments for every node (`[node] args` of the workload).
    pub args: Vec<String>,
    /// The data directory is on faultfs (storage faults: stalled fsyncs, lost unsynced writes).
    pub faultfs: bool,
    /// etcd: reads with `serializable: true` (served by any member, maybe stale).
    pub serializable_reads: bool,
    /// etcd: which client API the clients speak.
    pub api: EtcdApi,
    /// NATS: revisions seen by every client of the run (a cas needs its `from`'s revision).
    pub revisions: Revisions,
    /// exec: where each node's clients write their stderr (`clients/<node>.log`).
    pub client_logs: Option<PathBuf>,
    /// The run's PKI when it runs over mutual TLS (`tls = true`).
    pub tls: Option<Arc<RunPki>>,
}

impl TargetDb {
    /// A system of `target` from `image`, as the workload configures it.
    pub fn new(target: TargetFile, image: String, w: &Workload) -> Self {
        Self {
            target,
            image,
            bugs: w.node.bugs.clone(),
            args: w.node.args.clone(),
            faultfs: w.uses_faultfs(),
            serializable_reads: w.node.serializable_reads,
            api: w.node.etcd_client,
            revisions: Revisions::default(),
            client_logs: None,
            tls: None,
        }
    }

    /// Runs the nodes over mutual TLS with `pki`'s certificates (the target file's `tls-args`).
    ///
    /// # Errors
    /// When the target file has no `tls-args`.
    pub fn use_tls(&mut self, pki: Arc<RunPki>) -> Result<(), String> {
        if self.target.node.tls_args.is_none() {
            return Err(format!(
                "targets/{}.toml has no `[node] tls-args`: it does not say how its nodes run over mutual TLS",
                self.target.name
            ));
        }
        self.tls = Some(pki);
        Ok(())
    }

    /// Node `i`'s command line, expanded from the target file, with bugs and extra arguments.
    pub fn command(&self, cluster: &Cluster, i: usize, n: usize) -> Vec<String> {
        self.member_command(cluster, i, &(0..n).collect::<Vec<_>>(), false)
    }

    /// Node `i`'s command line when the members are `members` (node indices, `i` among them),
    /// with the file's `join-args` when it is `joining` a running cluster.
    pub fn member_command(
        &self,
        cluster: &Cluster,
        i: usize,
        members: &[usize],
        joining: bool,
    ) -> Vec<String> {
        let members: Vec<(usize, Ipv4Addr)> = members
            .iter()
            .map(|&j| (j, cluster.address_of(j)))
            .collect();
        let vars = self.target.member_vars(
            i,
            cluster.address_of(i),
            &members,
            joining,
            self.tls.is_some(),
            cluster.run_id(),
        );
        let mut cmd = vars.expand_all(&self.target.node.command);
        if let Some(bug_args) = &self.target.node.bug_args {
            for bug in &self.bugs {
                let mut v = vars.clone();
                v.set("bug", bug);
                cmd.extend(v.expand_all(bug_args));
            }
        }
        if joining {
            cmd.extend(vars.expand_all(self.target.node.join_args.as_deref().unwrap_or_default()));
        }
        if self.tls.is_some() {
            cmd.extend(vars.expand_all(self.target.node.tls_args.as_deref().unwrap_or_default()));
        }
        cmd.extend(self.args.iter().cloned());
        cmd
    }

    /// The container of node `i` with this command line (and its certificates mounted when
    /// the run uses TLS).
    fn spec_of(
        &self,
        mut cmd: Vec<String>,
        cluster: &Cluster,
        i: usize,
        clock_dir: &Path,
    ) -> Result<NodeSpec, String> {
        let program = cmd.remove(0);
        let name = node_name(i);
        let data_dir = self.target.node.data_dir.clone();
        let clock = self.clock_supported().is_ok();
        let entrypoint = if self.faultfs {
            faultfs_entrypoint(&data_dir, &program)
        } else {
            vec![program]
        };
        let mut binds = Vec::new();
        if clock {
            binds.push(clock_bind(clock_dir, &name));
        }
        if let Some(pki) = &self.tls {
            binds.push(
                pki.bind(
                    &name,
                    cluster.address_of(i),
                    cluster.reached_at(&name, i).as_deref(),
                )
                .map_err(|e| format!("the certificates of {name}: {e:#}"))?,
            );
        }
        Ok(NodeSpec {
            binds,
            env: if clock { clock_env() } else { Vec::new() },
            name,
            image: self.image.clone(),
            entrypoint: Some(entrypoint),
            // raftkv's failpoints exit the node on purpose; it comes back at once.
            restart_on_failure: self.target.client.protocol == ProtocolName::Raftkv
                && arms_failpoints(&cmd),
            cmd,
            data_dir,
            fuse: self.faultfs,
            ports: self.target.node.ports.values().copied().collect(),
        })
    }

    /// Where the built-in clients of `node` dial its client port.
    fn client_addr(&self, node: &crate::control::NodeHandle) -> String {
        node.addr(self.target.port(&self.target.client.port))
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

impl Db for TargetDb {
    fn name(&self) -> &str {
        &self.target.name
    }

    fn client_tls(&self) -> Option<Arc<crate::pki::ClientTls>> {
        self.tls.as_ref().map(|p| p.client())
    }

    fn node_spec(
        &self,
        cluster: &Cluster,
        i: usize,
        n: usize,
        clock_dir: &Path,
    ) -> Result<NodeSpec, String> {
        self.spec_of(self.command(cluster, i, n), cluster, i, clock_dir)
    }

    fn join_spec(
        &self,
        cluster: &Cluster,
        i: usize,
        members: &[usize],
        clock_dir: &Path,
    ) -> Result<NodeSpec, String> {
        self.join_supported()?;
        let cmd = self.member_command(cluster, i, members, true);
        self.spec_of(cmd, cluster, i, clock_dir)
    }

    fn port(&self, name: &str) -> Option<u16> {
        self.target.node.ports.get(name).copied()
    }

    fn join_supported(&self) -> Result<(), String> {
        let t = &self.target.name;
        if !matches!(
            self.target.client.protocol,
            ProtocolName::Raftkv | ProtocolName::Etcd | ProtocolName::Nats
        ) {
            return Err(format!(
                "target {t}: membership changes are made through raftkv's, etcd's or NATS's API, and its protocol is none of them"
            ));
        }
        if self.target.node.join_args.is_none() {
            return Err(format!(
                "targets/{t}.toml has no `[node] join-args`: it does not say how a node joins a running cluster"
            ));
        }
        Ok(())
    }

    fn client(&self, http: &HttpClient, cluster: &Cluster, i: usize) -> NodeClient {
        let node = &cluster.nodes()[i];
        let ips: Vec<Ipv4Addr> = cluster.nodes().iter().map(|n| n.ip).collect();
        let vars = self.target.vars(i, &ips, cluster.run_id());
        let client = match self.target.client.protocol {
            ProtocolName::Raftkv => {
                NodeClient::Raftkv(RaftkvClient::new(http.clone(), &self.client_addr(node)))
            }
            ProtocolName::Etcd => match self.api {
                EtcdApi::Grpc => NodeClient::Etcd(
                    EtcdClient::new(
                        &self.client_addr(node),
                        http.timeout(),
                        self.serializable_reads,
                    )
                    .with_tls(http.tls().cloned()),
                ),
                EtcdApi::Gateway => NodeClient::EtcdGateway(EtcdGatewayClient::new(
                    http.clone(),
                    &self.client_addr(node),
                    self.serializable_reads,
                )),
            },
            ProtocolName::Nats => NodeClient::Nats(NatsClient::new(
                &node.name,
                (
                    &node.addr(crate::client::nats::CLIENT_PORT),
                    &node.addr(crate::client::nats::MONITOR_PORT),
                ),
                http,
                NATS_BUCKET,
                NATS_QUEUE,
                self.revisions.clone(),
            )),
            ProtocolName::Exec => {
                let mut client_vars = vars.clone();
                client_vars.set("op_timeout", &http.timeout().as_secs_f64().to_string());
                NodeClient::Exec(ExecClient::new(
                    client_vars.expand_all(&self.target.client.command),
                    crate::workspace::root(),
                    http.timeout(),
                    self.client_logs
                        .as_ref()
                        .map(|d| d.join(format!("{}.log", node.name))),
                ))
            }
        };
        if self.target.ready.is_none() && self.target.leader.is_none() {
            return client;
        }
        let probe = Probe::new(&self.target, cluster, i, &vars, http);
        NodeClient::Probed(Box::new(client), std::sync::Arc::new(probe))
    }

    fn clock_supported(&self) -> Result<(), String> {
        self.target.node.clock.supported(&self.target.name)
    }

    fn data_files(&self) -> Vec<String> {
        self.target.node.data_files.clone()
    }

    fn has_leader(&self) -> bool {
        self.target.leader.is_some() || self.target.client.protocol != ProtocolName::Exec
    }
}

/// The KV bucket of NATS register workloads.
pub const NATS_BUCKET: &str = "faultline";
/// The stream of the NATS queue workload.
pub const NATS_QUEUE: &str = "queue";

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

/// Waits until every node answers `/status` and, when the system has one (`needs_leader`), one
/// of them leads; returns the leader.
///
/// # Errors
/// After `timeout`, what each node last said.
pub async fn await_ready(
    clients: &[(String, NodeClient)],
    timeout: Duration,
    needs_leader: bool,
) -> Result<Option<String>, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let all = statuses(clients).await;
        let answered = all.iter().all(|(_, s)| s.is_ok());
        if answered && let Some(leader) = leader_of(&all) {
            return Ok(Some(leader));
        }
        if answered && !needs_leader {
            return Ok(None);
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
        .enumerate()
        .map(|(i, n)| (n.name.clone(), db.client(http, cluster, i)))
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
            ..Default::default()
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
