//! The `member` fault: membership changes while the clients run (Jepsen's membership nemesis).
//!
//! `remove` takes a voter out through the system's own API and, once the cluster no longer
//! lists it, stops its container and wipes its data; `add` starts a fresh node (the next name
//! and address, an empty data volume) that joins the running cluster as a learner and is
//! promoted once it caught up; `replace` is a `remove` and then an `add` (a disk replaced: the
//! new node has nothing of the old). The voters never drop below a majority of the original
//! cluster nor grow above `member-max`.
//!
//! raftkv changes members with `POST /admin/members` (its server adds a learner, waits for it
//! to catch up and promotes it); etcd with `MemberAdd` (as a learner), `MemberPromote` (retried
//! while etcd says the learner is behind) and `MemberRemove`, the new member started with
//! `--initial-cluster-state existing` and the members of the moment in `--initial-cluster`.
//!
//! The harness's view follows the cluster: [`LiveView`] holds the clients of the current
//! members, which the workers, the status poller, the other faults and the final reads use.
//! A change whose answer never came is checked against the member list the cluster gives
//! afterwards, and the view follows that list.
//!
//! Each step is two history lines: an `invoke` of `member` when it begins and an `info` with
//! its outcome (`installed`, `skipped` with the reason, `indeterminate`) and the members after
//! it, so a change's duration is an interval of the report's fault timeline.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::json;

use super::{NemesisOp, Outcome, spec::MemberOp};
use crate::client::{
    EtcdClient, HttpClient, MetaView, NatsClient, NodeClient, RaftkvClient, StreamReplicas,
};
use crate::control::Cluster;
use crate::db::{Db, node_index, node_name};

/// The clients of the cluster's current members, shared by everything that talks to nodes.
/// Each change bumps a generation, so a worker notices and picks its node again.
pub struct LiveView {
    clients: RwLock<Arc<Vec<(String, NodeClient)>>>,
    status: RwLock<Arc<Vec<(String, NodeClient)>>>,
    generation: AtomicU64,
}

impl LiveView {
    /// A view of these members: the workers' clients and the status poller's.
    pub fn new(clients: Vec<(String, NodeClient)>, status: Vec<(String, NodeClient)>) -> Self {
        Self {
            clients: RwLock::new(Arc::new(clients)),
            status: RwLock::new(Arc::new(status)),
            generation: AtomicU64::new(0),
        }
    }

    /// The members' clients (operation timeout).
    pub fn clients(&self) -> Arc<Vec<(String, NodeClient)>> {
        self.clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The members' status clients (short timeout).
    pub fn status_clients(&self) -> Arc<Vec<(String, NodeClient)>> {
        self.status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The members' names, in node order.
    pub fn names(&self) -> Vec<String> {
        self.clients().iter().map(|(n, _)| n.clone()).collect()
    }

    /// The members' `index`-th client (modulo their number), with the generation it belongs
    /// to: a worker's node, to pick again when [`Self::generation`] moves on. `None` when there
    /// are no members.
    pub fn pick(&self, index: usize) -> Option<(u64, (String, NodeClient))> {
        let generation = self.generation();
        let clients = self.clients();
        (!clients.is_empty()).then(|| (generation, clients[index % clients.len()].clone()))
    }

    /// How many times the members changed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn set(&self, clients: Vec<(String, NodeClient)>, status: Vec<(String, NodeClient)>) {
        *self.clients.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(clients);
        *self.status.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(status);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// The smallest number of voters the `member` fault leaves: a majority of the original size.
pub fn min_voters(original: usize) -> usize {
    original / 2 + 1
}

/// The membership changes possible at `voters` voters, of those configured, in their order.
pub fn feasible(ops: &[MemberOp], voters: usize, original: usize, max: usize) -> Vec<MemberOp> {
    ops.iter()
        .copied()
        .filter(|op| match op {
            MemberOp::Remove | MemberOp::Replace => voters > min_voters(original),
            MemberOp::Add => voters < max,
        })
        .collect()
}

/// What the cluster says its members are (node indices).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberList {
    /// Voters.
    pub voters: Vec<usize>,
    /// Learners (added, not promoted).
    pub learners: Vec<usize>,
}

/// A change's answer: applied, refused (definitely not applied), or unknown.
enum Answer {
    Applied,
    Refused(String),
    Unknown(String),
}

/// The `member` fault's state and what it needs: the system, the containers, clients with the
/// right timeouts, and the live view it keeps current.
pub struct Members<'a> {
    db: &'a dyn Db,
    cluster: &'a Cluster,
    clock_dir: &'a Path,
    http: HttpClient,
    status_http: HttpClient,
    admin_http: HttpClient,
    view: Arc<LiveView>,
    ops: Vec<MemberOp>,
    original: usize,
    max: usize,
    timeout: Duration,
    /// The voters as the harness knows them (node indices, in order).
    live: Vec<usize>,
    /// Nodes stopped and wiped (removed, or not added).
    gone: Vec<usize>,
}

/// One step's two history lines go through this: `(invoke, op)`.
pub type Record<'r> = dyn FnMut(bool, &NemesisOp) -> anyhow::Result<()> + Send + 'r;

impl<'a> Members<'a> {
    /// The fault over a cluster whose `original` nodes are all voters.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: &'a dyn Db,
        cluster: &'a Cluster,
        clock_dir: &'a Path,
        http: HttpClient,
        status_http: HttpClient,
        view: Arc<LiveView>,
        spec: &super::NemesisSpec,
        original: usize,
    ) -> Self {
        let timeout = Duration::from_secs_f64(spec.member_timeout);
        Self {
            db,
            cluster,
            clock_dir,
            admin_http: http.with_timeout(timeout),
            http,
            status_http,
            view,
            ops: spec.member_ops.clone(),
            original,
            max: spec.member_max.unwrap_or(original + 2).max(original),
            timeout,
            live: (0..original).collect(),
            gone: Vec::new(),
        }
    }

    /// The current voters' names.
    pub fn names(&self) -> Vec<String> {
        self.live.iter().map(|&i| node_name(i)).collect()
    }

    /// Applies one drawn change. `down` are nodes another fault holds down or paused (never
    /// removed: their state is that fault's), `leader` the leader of the moment. The live view
    /// follows at once (a node that left is out of it before its container stops).
    ///
    /// # Errors
    /// Only when the history cannot be written.
    pub async fn apply(
        &mut self,
        pick: u64,
        down: &[String],
        leader: Option<&str>,
        record: &mut Record<'_>,
    ) -> anyhow::Result<()> {
        let options = feasible(&self.ops, self.live.len(), self.original, self.max);
        if options.is_empty() {
            let op = NemesisOp::new(
                "member",
                json!({"members": self.names()}),
                Outcome::Skipped(format!(
                    "no configured change fits {} voters (at least {}, at most {})",
                    self.live.len(),
                    min_voters(self.original),
                    self.max
                )),
            );
            record(false, &op)?;
            return Ok(());
        }
        let op = options[(pick % options.len() as u64) as usize];
        let victims: Vec<usize> = self
            .live
            .iter()
            .copied()
            .filter(|&i| !down.contains(&node_name(i)))
            .collect();
        let victim =
            (!victims.is_empty()).then(|| victims[((pick >> 16) % victims.len() as u64) as usize]);
        match (op, victim) {
            (MemberOp::Add, _) => self.add(false, record).await?,
            (_, None) => {
                let op = NemesisOp::new(
                    "member",
                    json!({"op": op.as_str(), "members": self.names()}),
                    Outcome::Skipped("every voter is down or paused by another fault".into()),
                );
                record(false, &op)?;
            }
            (MemberOp::Remove, Some(v)) => {
                self.remove(v, false, leader, record).await?;
            }
            (MemberOp::Replace, Some(v)) => {
                if self.remove(v, true, leader, record).await? {
                    self.add(true, record).await?;
                } else {
                    let op = NemesisOp::new(
                        "member",
                        json!({"op": "add", "replace": true, "members": self.names()}),
                        Outcome::Skipped(format!(
                            "{} is still a member: its replacement is not added",
                            node_name(v)
                        )),
                    );
                    record(false, &op)?;
                }
            }
        }
        Ok(())
    }

    /// Removes voter `v`; true when it left the cluster (then its container is stopped and its
    /// data wiped).
    async fn remove(
        &mut self,
        v: usize,
        replace: bool,
        leader: Option<&str>,
        record: &mut Record<'_>,
    ) -> anyhow::Result<bool> {
        let name = node_name(v);
        let mut value = json!({"op": "remove", "node": name});
        if replace {
            value["replace"] = json!(true);
        }
        record(true, &NemesisOp::invoke("member", value.clone()))?;
        let answer = self.change(v, false, leader).await;
        let (left, mut outcome) = match answer {
            Answer::Applied => (true, Outcome::Installed),
            Answer::Refused(why) => (false, Outcome::Skipped(format!("refused: {why}"))),
            Answer::Unknown(why) => match self.member_list().await {
                Ok(list) if !list.voters.contains(&v) && !list.learners.contains(&v) => (
                    true,
                    Outcome::Indeterminate(format!("{why}; the member list no longer has it")),
                ),
                Ok(_) => (
                    false,
                    Outcome::Indeterminate(format!("{why}; the member list still has it")),
                ),
                Err(e) => (
                    false,
                    Outcome::Indeterminate(format!("{why}; no member list either: {e}")),
                ),
            },
        };
        if left {
            self.live.retain(|&i| i != v);
            self.refresh_view();
            if let Err(e) = self.decommission(&name).await {
                outcome = Outcome::Indeterminate(format!(
                    "{}removed, but stopping or wiping {name} failed: {e}",
                    outcome
                        .reason()
                        .map(|r| format!("{r}; "))
                        .unwrap_or_default()
                ));
            }
        }
        value["members"] = json!(self.names());
        record(false, &NemesisOp::new("member", value, outcome))?;
        Ok(left)
    }

    /// Starts a fresh node and joins it; it becomes a live member when promoted (or when the
    /// member list says it is a voter after an unknown answer).
    async fn add(&mut self, replace: bool, record: &mut Record<'_>) -> anyhow::Result<()> {
        let i = self.cluster.started();
        let name = node_name(i);
        let mut value = json!({"op": "add", "node": name});
        if replace {
            value["replace"] = json!(true);
        }
        record(true, &NemesisOp::invoke("member", value.clone()))?;
        let outcome = self.join(i).await;
        let outcome = match outcome {
            Ok(()) => {
                self.admit(i);
                Outcome::Installed
            }
            Err(why) => {
                // Whatever the cluster says now decides whether the node stays.
                match self.member_list().await {
                    Ok(list) if list.voters.contains(&i) => {
                        self.admit(i);
                        Outcome::Indeterminate(format!("{why}; the member list has it as a voter"))
                    }
                    Ok(list) => {
                        let mut why = why;
                        if list.learners.contains(&i) {
                            // A learner left behind: take it out again, or it stays a member
                            // the harness does not follow.
                            match self.change(i, false, None).await {
                                Answer::Applied => why.push_str("; its learner was removed"),
                                Answer::Refused(e) | Answer::Unknown(e) => {
                                    why.push_str(&format!("; removing its learner failed: {e}"))
                                }
                            }
                        }
                        if self.cluster.node(&name).is_some()
                            && let Err(e) = self.decommission(&name).await
                        {
                            why.push_str(&format!("; stopping it failed: {e}"));
                        }
                        Outcome::Skipped(format!("not added: {why}"))
                    }
                    Err(e) => Outcome::Indeterminate(format!("{why}; no member list: {e}")),
                }
            }
        };
        value["members"] = json!(self.names());
        record(false, &NemesisOp::new("member", value, outcome))?;
        Ok(())
    }

    /// Node `i` is a voter now: a live member the view follows.
    fn admit(&mut self, i: usize) {
        self.live.push(i);
        self.live.sort_unstable();
        self.refresh_view();
    }

    /// Starts node `i` joining the current voters and makes it a voter.
    async fn join(&mut self, i: usize) -> Result<(), String> {
        let name = node_name(i);
        let ip = self.cluster.address_of(i);
        let mut members = self.live.clone();
        members.push(i);
        crate::nemesis::prepare_clock_dir(self.clock_dir, std::slice::from_ref(&name))
            .map_err(|e| format!("preparing the clock folder of {name}: {e}"))?;
        let spec = self
            .db
            .join_spec(self.cluster, i, &members, self.clock_dir)?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let first = self.live.first().copied().unwrap_or(0);
        if let Some(etcd) = self.admin(first).etcd().cloned() {
            // etcd: the member is added (as a learner) before it starts.
            let peer = format!("{}://{ip}:{}", self.http.scheme(), self.port("peer"));
            // A refused or failed `MemberAdd` leaves the list as it was, or (unknown answer) is
            // found in it afterwards by the caller.
            let id = etcd
                .member_add_learner(&peer)
                .await
                .map_err(|e| format!("MemberAdd: {e}"))?;
            self.cluster
                .start_node(spec)
                .await
                .map_err(|e| format!("starting {name}: {e}"))?;
            return promote_etcd(&etcd, id, deadline).await;
        }
        self.cluster
            .start_node(spec)
            .await
            .map_err(|e| format!("starting {name}: {e}"))?;
        match self.change(i, true, None).await {
            Answer::Applied => Ok(()),
            Answer::Refused(e) => Err(format!("refused: {e}")),
            Answer::Unknown(e) => Err(e),
        }
    }

    /// The target's port of this name (`peer`, `client`).
    fn port(&self, name: &str) -> u16 {
        self.db.port(name).unwrap_or(0)
    }

    /// Stops a node that left and wipes its data (its container stays, stopped, for its log).
    async fn decommission(&mut self, name: &str) -> Result<(), String> {
        if let Some(i) = node_index(name) {
            self.gone.push(i);
        }
        match tokio::time::timeout(super::OP_TIMEOUT, self.cluster.kill(name, "SIGKILL")).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // Already stopped is fine: anything else is a failure.
                let state = self.cluster.state(name).await.map_err(|e| e.to_string())?;
                if state == "running" || state == "paused" {
                    return Err(format!("killing {name}: {e}"));
                }
            }
            Err(_) => return Err(format!("killing {name}: no answer")),
        }
        tokio::time::timeout(Duration::from_secs(30), self.cluster.wipe(name))
            .await
            .map_err(|_| format!("wiping {name}: no answer within 30 s"))?
            .map_err(|e| format!("wiping {name}: {e}"))
    }

    /// Rebuilds the live view's clients for the current voters.
    fn refresh_view(&self) {
        let make = |http: &HttpClient| -> Vec<(String, NodeClient)> {
            self.live
                .iter()
                .map(|&i| (node_name(i), self.db.client(http, self.cluster, i)))
                .collect()
        };
        self.view.set(make(&self.http), make(&self.status_http));
    }

    /// A client of node `j` with the long timeout membership changes need.
    fn admin(&self, j: usize) -> NodeClient {
        self.db.client(&self.admin_http, self.cluster, j)
    }

    /// Adds (`add`) or removes node `i` through the system's API, asking the leader first and
    /// the other live members while they cannot be reached.
    async fn change(&self, i: usize, add: bool, leader: Option<&str>) -> Answer {
        let mut order: Vec<usize> = Vec::new();
        if let Some(l) = leader.and_then(|l| self.live.iter().copied().find(|&j| node_name(j) == l))
        {
            order.push(l);
        }
        let rest: Vec<usize> = self
            .live
            .iter()
            .copied()
            .filter(|j| !order.contains(j))
            .collect();
        order.extend(rest);
        let mut last = String::from("no live member to ask");
        for j in order {
            let client = self.admin(j);
            if let Some(raftkv) = client.raftkv() {
                let addr = (self.port("peer"), self.port("client"));
                match raftkv_change(raftkv, self.cluster, i, add, addr).await {
                    Err((true, e)) if e.contains("connect") => {
                        last = format!("{}: {e}", node_name(j))
                    }
                    Err((true, e)) => return Answer::Refused(e),
                    Err((false, e)) => return Answer::Unknown(format!("{}: {e}", node_name(j))),
                    Ok(()) => return Answer::Applied,
                }
            } else if let Some(etcd) = client.etcd() {
                match etcd_remove(etcd, self.cluster, i).await {
                    Err(e) if e.definite && e.reason.starts_with("connect") => {
                        last = format!("{}: {e}", node_name(j))
                    }
                    Err(e) if e.definite || etcd_refused(&e.reason) => {
                        return Answer::Refused(e.reason);
                    }
                    Err(e) => return Answer::Unknown(format!("{}: {e}", node_name(j))),
                    Ok(()) => return Answer::Applied,
                }
            } else if let Some(nats) = client.nats() {
                if add {
                    // A NATS server joins by itself: the meta leader adds it once it is routed;
                    // it is done when the stream has all its replicas current again (a new
                    // server fills the place a removal left).
                    return match self.await_meta(i, true).await {
                        Answer::Applied => self.await_stream().await,
                        other => other,
                    };
                }
                // As an operator would: take a server away only while the stream has every
                // replica current, so what it acknowledged stays on a majority of them.
                match self.nats_stream().await {
                    Ok(r) if r.healthy() => {}
                    Ok(r) => {
                        return Answer::Refused(format!(
                            "the stream is not healthy: {}",
                            describe_replicas(&r)
                        ));
                    }
                    Err(e) => return Answer::Refused(e),
                }
                match nats.server_remove(&node_name(i)).await {
                    Err((true, e)) if e.starts_with("connect") => {
                        last = format!("{}: {e}", node_name(j))
                    }
                    Err((true, e)) => return Answer::Refused(e),
                    Err((false, e)) => return Answer::Unknown(format!("{}: {e}", node_name(j))),
                    // Success is the leader's proposal: applied once its peer list follows.
                    Ok(()) => return self.await_meta(i, false).await,
                }
            } else {
                return Answer::Refused(format!(
                    "{}'s client has no membership API (raftkv, etcd over gRPC, NATS)",
                    self.db.name()
                ));
            }
        }
        Answer::Refused(last)
    }

    /// NATS: the workload's stream as its leader (one of the live members) sees it.
    async fn nats_stream(&self) -> Result<StreamReplicas, String> {
        let mut errors = Vec::new();
        for &j in &self.live {
            let client = self.db.client(&self.status_http, self.cluster, j);
            let Some(n) = client.nats() else { continue };
            match n.stream_replicas().await {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(e) => errors.push(format!("{}: {e}", node_name(j))),
            }
        }
        Err(format!(
            "no member leads the workload's stream{}",
            if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join("; "))
            }
        ))
    }

    /// NATS: waits until the stream has every replica current, polling every 250 ms until the
    /// change timeout.
    async fn await_stream(&self) -> Answer {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let healthy = poll_until(deadline, NATS_POLL, || async {
            match self.nats_stream().await {
                Ok(r) if r.healthy() => Ok(()),
                Ok(r) => Err(describe_replicas(&r)),
                Err(e) => Err(e),
            }
        });
        match healthy.await {
            Ok(()) => Answer::Applied,
            Err(last) => Answer::Unknown(format!(
                "in the meta group, but the stream was not healthy after {:.0} s ({last})",
                self.timeout.as_secs_f64()
            )),
        }
    }

    /// NATS: waits until the meta leader lists node `i` as a peer (`present`) or no longer does,
    /// polling every 250 ms until the change timeout.
    async fn await_meta(&self, i: usize, present: bool) -> Answer {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let listed = poll_until(deadline, NATS_POLL, || async {
            match self.member_list().await {
                Ok(list) if (list.voters.contains(&i) || list.learners.contains(&i)) == present => {
                    Ok(())
                }
                Ok(list) => {
                    let names: Vec<String> = list.voters.iter().map(|&j| node_name(j)).collect();
                    Err(format!("the meta leader's peers: {}", names.join(", ")))
                }
                Err(e) => Err(e),
            }
        });
        let Err(last) = listed.await else {
            return Answer::Applied;
        };
        let name = node_name(i);
        let what = if present {
            format!("{name} was not in the meta group")
        } else {
            format!("the removal of {name} was answered, but it was still in the meta group")
        };
        Answer::Unknown(format!(
            "{what} after {:.0} s ({last})",
            self.timeout.as_secs_f64()
        ))
    }

    /// The `member-list` op that ends a run with membership changes: the members the harness
    /// ends with and the voters each of them reports (those that answer). The checker holds the
    /// voters to the acknowledged changes (`faultline_checker::membership`).
    ///
    /// `sizes` is how many voters each member counts: the length of its voters, or, for a NATS
    /// server that does not lead the meta group (only the leader lists the peers), the group's
    /// size it says (`cluster_size`). Members of one group that disagree on its size after the
    /// heal have drifted apart.
    pub async fn final_list(&self) -> NemesisOp {
        let mut voters = serde_json::Map::new();
        let mut sizes = serde_json::Map::new();
        let mut errors = Vec::new();
        for &j in &self.live {
            let client = self.db.client(&self.status_http, self.cluster, j);
            // A NATS server's one view of the meta group gives its voters (the meta leader's)
            // or only how many it counts.
            let (listed, count) = match client.nats() {
                Some(n) => match n.meta().await {
                    Ok(meta) => {
                        let count = meta.size;
                        (nats_list(meta), Some(count))
                    }
                    Err(e) => (Err(e), None),
                },
                None => (self.list_of(j).await, None),
            };
            match (listed, count) {
                (Ok(list), _) => {
                    let names: Vec<String> = list.voters.iter().map(|&i| node_name(i)).collect();
                    sizes.insert(node_name(j), json!(names.len()));
                    voters.insert(node_name(j), json!(names));
                }
                (Err(_), Some(count)) => {
                    sizes.insert(node_name(j), json!(count));
                }
                (Err(e), None) => errors.push(format!("{}: {e}", node_name(j))),
            }
        }
        let outcome = if voters.is_empty() {
            Outcome::Indeterminate(format!(
                "no member listed its voters: {}",
                errors.join("; ")
            ))
        } else {
            Outcome::Installed
        };
        NemesisOp::new(
            "member-list",
            json!({"members": self.names(), "voters": voters, "sizes": sizes, "errors": errors}),
            outcome,
        )
    }

    /// The members as node `j` says (raftkv: its own configuration; etcd: `MemberList`).
    async fn list_of(&self, j: usize) -> Result<MemberList, String> {
        let client = self.db.client(&self.status_http, self.cluster, j);
        if let Some(r) = client.raftkv() {
            raftkv_members(r).await
        } else if let Some(e) = client.etcd() {
            etcd_members(e, self.cluster).await
        } else if let Some(n) = client.nats() {
            nats_members(n).await
        } else {
            Err("no membership API".into())
        }
    }

    /// The members as the first live member that answers says; then, if none does, as a
    /// node started for an addition that the harness has not admitted says (newest first: a
    /// NATS meta group may elect a server whose addition was still unconfirmed, and only its
    /// leader lists the peers).
    pub async fn member_list(&self) -> Result<MemberList, String> {
        let mut last = String::from("no live member to ask");
        let pending = (0..self.cluster.started())
            .rev()
            .filter(|j| !self.live.contains(j) && !self.gone.contains(j));
        for j in self.live.iter().copied().chain(pending) {
            match self.list_of(j).await {
                Ok(list) => return Ok(list),
                Err(e) => last = format!("{}: {e}", node_name(j)),
            }
        }
        Err(last)
    }
}

/// raftkv: `POST /admin/members` for node `i` (id `i + 1`).
async fn raftkv_change(
    client: &RaftkvClient,
    cluster: &Cluster,
    i: usize,
    add: bool,
    (peer, client_port): (u16, u16),
) -> Result<(), (bool, String)> {
    let id = i as u64 + 1;
    let body = if add {
        let ip = cluster.address_of(i);
        json!({"add": id, "addr": format!("{ip}:{peer}/{ip}:{client_port}")})
    } else {
        json!({"remove": id})
    };
    client.change_members(body).await
}

/// raftkv's voters and learners from a node's `/status` (the leader's view when asked there;
/// a follower's is at most one change behind).
async fn raftkv_members(client: &RaftkvClient) -> Result<MemberList, String> {
    let s = client.status().await?;
    let idx = |ids: &[u64]| ids.iter().map(|&id| id as usize - 1).collect::<Vec<_>>();
    Ok(MemberList {
        voters: idx(&s.members),
        learners: idx(&s.learners),
    })
}

/// `3 replicas wanted; n2 (leader) current, n4 behind`.
fn describe_replicas(r: &StreamReplicas) -> String {
    let peers: Vec<String> = r
        .peers
        .iter()
        .enumerate()
        .map(|(k, (n, current))| {
            format!(
                "{n}{} {}",
                if k == 0 { " (leader)" } else { "" },
                if *current { "current" } else { "behind" }
            )
        })
        .collect();
    format!("{} replicas wanted; {}", r.configured, peers.join(", "))
}

/// NATS: the meta group's peers, when this server leads it (only the meta leader lists them);
/// a peer that is not one of the harness's nodes (a name it does not know) is left out.
async fn nats_members(client: &NatsClient) -> Result<MemberList, String> {
    nats_list(client.meta().await?)
}

/// The member list of a NATS server's view of the meta group (only the leader's has one).
fn nats_list(meta: MetaView) -> Result<MemberList, String> {
    let Some(peers) = meta.peers else {
        return Err(format!(
            "not the meta leader, which lists the peers (it names {}; it counts {} peers)",
            meta.leader.as_deref().unwrap_or("none"),
            meta.size
        ));
    };
    let mut voters: Vec<usize> = peers.iter().filter_map(|p| node_index(p)).collect();
    voters.sort_unstable();
    Ok(MemberList {
        voters,
        learners: Vec::new(),
    })
}

/// The node index whose address is in an etcd member's peer URLs.
fn etcd_index(cluster: &Cluster, peer_urls: &[String]) -> Option<usize> {
    cluster.nodes().iter().position(|n| {
        let host = format!("//{}:", n.ip);
        peer_urls.iter().any(|u| u.contains(&host))
    })
}

async fn etcd_members(client: &EtcdClient, cluster: &Cluster) -> Result<MemberList, String> {
    let members = client.member_list().await.map_err(|e| e.reason)?;
    let mut list = MemberList::default();
    for m in members {
        if let Some(i) = etcd_index(cluster, &m.peer_urls) {
            if m.learner {
                list.learners.push(i);
            } else {
                list.voters.push(i);
            }
        }
    }
    list.voters.sort_unstable();
    list.learners.sort_unstable();
    Ok(list)
}

/// etcd: `MemberRemove` of the member whose peer URL is node `i`'s.
async fn etcd_remove(
    client: &EtcdClient,
    cluster: &Cluster,
    i: usize,
) -> Result<(), crate::client::CallError> {
    let members = client.member_list().await?;
    let Some(m) = members
        .iter()
        .find(|m| etcd_index(cluster, &m.peer_urls) == Some(i))
    else {
        return Err(crate::client::CallError {
            reason: format!("{} is not in the member list", node_name(i)),
            definite: true,
        });
    };
    client.member_remove(m.id).await
}

/// etcd's answers that refuse a membership change before anything is proposed: its strict
/// reconfiguration check (`--strict-reconfig-check`, on by default) and the learner rules.
fn etcd_refused(reason: &str) -> bool {
    [
        "unhealthy cluster",
        "not enough started members",
        "member not found",
        "in sync with leader",
        "too many learner members",
        "Peer URLs already exists",
    ]
    .iter()
    .any(|r| reason.contains(r))
}

/// etcd: `MemberPromote` every 0.5 s until the learner is in sync (etcd refuses before) or the
/// deadline.
async fn promote_etcd(
    client: &EtcdClient,
    id: u64,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    poll_until(deadline, Duration::from_millis(500), || async {
        client.member_promote(id).await.map_err(|e| {
            tracing::debug!(error = %e, "promotion refused");
            e.to_string()
        })
    })
    .await
    .map_err(|e| format!("MemberPromote: {e}"))
}

/// How often the NATS waits look again.
const NATS_POLL: Duration = Duration::from_millis(250);

/// Calls `step` every `every` until it answers `Ok` or the next call would come after
/// `deadline`; `Err` is its last answer.
async fn poll_until<F, Fut>(
    deadline: tokio::time::Instant,
    every: Duration,
    mut step: F,
) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    loop {
        let last = match step().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if tokio::time::Instant::now() + every >= deadline {
            return Err(last);
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_keep_a_majority_of_the_original_size_and_stay_under_the_maximum() {
        let all = MemberOp::ALL;
        assert_eq!(min_voters(3), 2);
        assert_eq!(min_voters(5), 3);
        assert_eq!(min_voters(4), 3);
        // Three of three, at most five: everything.
        assert_eq!(feasible(all, 3, 3, 5), all.to_vec());
        // Two of three: only growth.
        assert_eq!(feasible(all, 2, 3, 5), vec![MemberOp::Add]);
        // Five of three, at most five: only shrinking or replacing.
        assert_eq!(
            feasible(all, 5, 3, 5),
            vec![MemberOp::Remove, MemberOp::Replace]
        );
        // Nothing fits: at the minimum with only removals configured.
        assert!(feasible(&[MemberOp::Remove], 2, 3, 5).is_empty());
    }
}
