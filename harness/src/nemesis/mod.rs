//! Nemesis: the faults Faultline injects into a running cluster (partitions, kills, pauses, clock
//! skew, packet loss and delay), their seeded schedule, and undoing them (Jepsen's `nemesis`).
//!
//! Outcomes are data: every start and stop returns [`NemesisOp`]s carrying an [`Outcome`]
//! (`installed`, `skipped` with a reason, or `indeterminate` with a reason), which the runner
//! writes to the history as `"process":"nemesis"` ops. An `Err` ([`NemesisError`]) means only that
//! the Docker engine no longer answers.
//!
//! The pieces: [`spec`] (the workload's `[nemesis]` table and `--nemesis`), [`grudge`] (partitions
//! as pure data), [`schedule`] (the seeded timeline), [`clock`] (libfaketime files), and
//! [`Nemesis`], which applies actions and heals.
//!
//! This module must never touch iptables rules outside its own `FAULTLINE` chain (it only adds
//! the jump to it from `INPUT`, once), never flush or delete anyone else's chains or qdiscs
//! outside the node containers of its own run, and never restart a node it did not kill.
//!
//! How the runner uses it:
//! ```ignore
//! let mut nemesis = Nemesis::new(&spec, seed, node_names);
//! for (at, action) in nemesis.schedule(main_phase) {
//!     sleep_until(start + at).await;
//!     let ctx = NemesisContext { cluster: &cluster, clock_dir: &dir, leader: current_leader(), clock_supported: Ok(()) };
//!     for op in nemesis.apply(&action, &ctx).await? { history.nemesis(op) }
//! }
//! for op in nemesis.heal_all(&ctx).await? { history.nemesis(op) }
//! ```

pub mod clock;
pub mod figure8;
pub mod grudge;
pub mod member;
pub mod revote;
pub mod schedule;
pub mod script;
pub mod spec;
pub mod storage;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use futures_util::future::join_all;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::control::{Cluster, ControlError, ExecOutput};

pub use clock::{
    CLOCK_FILE_NAME, CLOCK_MOUNT, FAKETIME_LIB, clock_bind, clock_env, format_offset,
    node_clock_dir, prepare_clock_dir, read_offset, write_offset,
};
pub use grudge::{Grudge, grudge_of};
pub use schedule::{Action, ClockPlan, Fault, Targets};
pub use spec::{
    ClockKind, CorruptKind, FaultKind, Faults, InvalidSpec, KillTarget, MemberOp, NemesisSpec,
    PartitionKind, PauseTarget, Script, UnknownName,
};

/// Faultline's own iptables chain in each node's network namespace, jumped to from `INPUT`.
pub const CHAIN: &str = "FAULTLINE";

/// The longest a single Docker call (exec, kill, pause, ...) may take before its step is reported
/// indeterminate. A paused container cannot exec; Docker refuses at once, so this bounds hangs.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// What became of a fault's start or stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It took effect on every node it targets (for a stop: the fault is undone).
    Installed,
    /// It was not attempted, for this reason (e.g. no leader known, the kernel lacks netem).
    Skipped(String),
    /// It may or may not have taken effect (a timeout, a node that was down), for this reason.
    Indeterminate(String),
}

impl Outcome {
    /// `installed`, `skipped` or `indeterminate`, as written in the history.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Installed => "installed",
            Outcome::Skipped(_) => "skipped",
            Outcome::Indeterminate(_) => "indeterminate",
        }
    }

    /// The reason, unless installed.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Installed => None,
            Outcome::Skipped(r) | Outcome::Indeterminate(r) => Some(r),
        }
    }

    /// Installed when every node's step succeeded; otherwise indeterminate, naming each failure.
    fn of_steps(steps: &[(String, Result<(), String>)]) -> Outcome {
        let failures: Vec<String> = steps
            .iter()
            .filter_map(|(node, r)| r.as_ref().err().map(|e| format!("{node}: {e}")))
            .collect();
        if failures.is_empty() {
            Outcome::Installed
        } else {
            Outcome::Indeterminate(failures.join("; "))
        }
    }
}

/// One nemesis op for the history. The runner adds `index`, `time`, `"process":"nemesis"` and
/// `"type":"info"`; `value` already holds `"outcome"` (and `"reason"` unless installed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NemesisOp {
    /// `start-partition`/`stop-partition`, `kill`/`restart`, `pause`/`resume`,
    /// `start-clock`/`stop-clock`, `start-loss`/`stop-loss`, `start-delay`/`stop-delay`.
    pub f: String,
    /// What was done, to which nodes, and its outcome.
    pub value: Value,
    /// The outcome again, typed (not serialized: it is inside `value`).
    #[serde(skip)]
    pub outcome: Outcome,
}

impl NemesisOp {
    /// The invocation line of a step that takes a while (a membership change): no outcome yet.
    pub fn invoke(f: &str, value: Value) -> Self {
        Self {
            f: f.to_string(),
            value,
            outcome: Outcome::Indeterminate("in progress".into()),
        }
    }

    /// An op that was not attempted, for this reason.
    pub fn skipped(f: &str, value: Value, reason: &str) -> Self {
        Self::new(f, value, Outcome::Skipped(reason.to_string()))
    }

    fn new(f: &str, value: Value, outcome: Outcome) -> Self {
        let mut map = match value {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        map.insert("outcome".into(), outcome.as_str().into());
        if let Some(r) = outcome.reason() {
            map.insert("reason".into(), r.into());
        }
        Self {
            f: f.to_string(),
            value: Value::Object(map),
            outcome,
        }
    }
}

/// The harness can no longer talk to Docker; the run cannot continue.
#[derive(Debug, thiserror::Error)]
pub enum NemesisError {
    /// A Docker call failed and the engine no longer answers a ping.
    #[error("the Docker engine stopped answering while {what}: {reason}")]
    DockerUnreachable {
        /// What the nemesis was doing.
        what: String,
        /// The error of the failed call.
        reason: String,
    },
}

/// What the nemesis needs from the running cluster at the moment it applies an action.
pub struct NemesisContext<'a> {
    /// The run's containers.
    pub cluster: &'a Cluster,
    /// The host folder holding each node's clock folder (see [`prepare_clock_dir`]).
    pub clock_dir: &'a Path,
    /// The current leader as reported by the nodes' `/status`, when known.
    pub leader: Option<String>,
    /// `Err(reason)` when the node binary ignores libfaketime (static or Go, e.g. etcd).
    pub clock_supported: Result<(), String>,
}

/// The outcome of one node's step: `Ok(Err(reason))` is a failed step, `Err` a dead engine.
type StepResult<T> = Result<Result<T, String>, NemesisError>;

/// Runs a Docker call with [`OP_TIMEOUT`]. A failure is the step's (indeterminate) unless the
/// engine stopped answering altogether.
async fn bounded<T>(
    cluster: &Cluster,
    what: &str,
    call: impl Future<Output = Result<T, ControlError>>,
) -> StepResult<T> {
    match tokio::time::timeout(OP_TIMEOUT, call).await {
        Err(_) => Ok(Err(format!(
            "{what}: no answer within {} s",
            OP_TIMEOUT.as_secs()
        ))),
        Ok(Ok(v)) => Ok(Ok(v)),
        Ok(Err(e)) => {
            let alive = cluster.engines_answer().await;
            if alive {
                Ok(Err(format!("{what}: {e}")))
            } else {
                Err(NemesisError::DockerUnreachable {
                    what: what.to_string(),
                    reason: e.to_string(),
                })
            }
        }
    }
}

/// Whether an exec failed only because the container is between an exit and the engine's
/// restart of it (Docker answers 409 "is not running", then "is restarting").
fn between_exit_and_restart(error: &str) -> bool {
    error.contains("409") && (error.contains("is restarting") || error.contains("is not running"))
}

/// How often an exec into a node that Docker is restarting is tried again.
const RESTART_POLL: Duration = Duration::from_millis(100);

/// Runs a shell script in a node; a non-zero exit is a failed step carrying stderr. A node
/// that exited at a raftkv failpoint and that the engine is restarting is tried again until it
/// runs, within [`OP_TIMEOUT`]: its fresh network namespace then gets the rules, rather than a
/// partition that one side of it never sees.
async fn sh(cluster: &Cluster, node: &str, what: &str, script: &str) -> StepResult<ExecOutput> {
    let deadline = tokio::time::Instant::now() + OP_TIMEOUT;
    let out = loop {
        let out = bounded(cluster, what, cluster.exec(node, &["sh", "-c", script])).await?;
        match &out {
            Err(e)
                if between_exit_and_restart(e)
                    && tokio::time::Instant::now() + RESTART_POLL < deadline
                    && cluster.coming_back(node).await =>
            {
                tokio::time::sleep(RESTART_POLL).await;
            }
            _ => break out,
        }
    };
    Ok(out.and_then(|o| {
        if o.code == 0 {
            Ok(o)
        } else {
            Err(format!(
                "{what}: exit {}: {}",
                o.code,
                o.stderr.trim().lines().last().unwrap_or("")
            ))
        }
    }))
}

/// Runs one step per node concurrently, giving each node's result in node order.
async fn per_node<F, Fut>(
    nodes: &[String],
    step: F,
) -> Result<Vec<(String, Result<(), String>)>, NemesisError>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = StepResult<()>>,
{
    let results = join_all(nodes.iter().map(|n| step(n.clone()))).await;
    nodes
        .iter()
        .cloned()
        .zip(results)
        .map(|(n, r)| r.map(|r| (n, r)))
        .collect()
}

/// Creates [`CHAIN`] and the jump to it from `INPUT`, both only when missing, then appends the rules.
fn install_script(rules: &[String]) -> String {
    let mut s = format!(
        "iptables -w 5 -N {CHAIN} 2>/dev/null; \
         (iptables -w 5 -C INPUT -j {CHAIN} 2>/dev/null || iptables -w 5 -I INPUT 1 -j {CHAIN})"
    );
    for r in rules {
        s.push_str(&format!(" && iptables -w 5 -A {CHAIN} {r}"));
    }
    s
}

/// Deletes each rule from [`CHAIN`]; a rule or chain already gone (the node restarted, so its
/// network namespace is new) counts as deleted.
fn remove_script(rules: &[String]) -> String {
    let mut s = String::from("rc=0; ");
    for r in rules {
        s.push_str(&format!(
            "out=$(iptables -w 5 -D {CHAIN} {r} 2>&1) || case \"$out\" in \
             *'matching rule'*|*'No chain'*) ;; *) echo \"$out\" >&2; rc=1;; esac; "
        ));
    }
    s.push_str("exit $rc");
    s
}

/// The iptables rules that install `grudge`, per node; or a `Skipped` outcome naming the
/// nodes the grudge mentions that the cluster does not have.
fn drop_rules(
    grudge: &Grudge,
    cluster: &Cluster,
) -> Result<BTreeMap<String, Vec<String>>, Outcome> {
    let mut rules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for (node, dropped) in grudge {
        for d in dropped {
            match cluster.node(d) {
                Some(h) => rules.entry(node.clone()).or_default().push(drop_from(h.ip)),
                None => unknown.push(d.clone()),
            }
        }
    }
    if unknown.is_empty() {
        Ok(rules)
    } else {
        Err(Outcome::Skipped(format!(
            "unknown nodes in the grudge: {}",
            unknown.join(", ")
        )))
    }
}

/// Empties [`CHAIN`] (and nothing else); a missing chain is already empty.
fn flush_script() -> String {
    format!(
        "out=$(iptables -w 5 -F {CHAIN} 2>&1) || case \"$out\" in \
         *'No chain'*) ;; *) echo \"$out\" >&2; exit 1;; esac"
    )
}

fn drop_from(ip: impl std::fmt::Display) -> String {
    format!("-s {ip} -j DROP")
}

fn loss_rule(p: f64) -> String {
    format!("-m statistic --mode random --probability {p} -j DROP")
}

/// The tc error that means the kernel lacks `sch_netem`.
fn netem_missing(stderr: &str) -> bool {
    stderr.contains("qdisc kind is unknown") || stderr.contains("No such file or directory")
}

/// An active partition: what to remove at the stop.
#[derive(Debug, Clone)]
struct ActivePartition {
    kind: PartitionKind,
    grudge: Grudge,
}

/// Applies scheduled actions to a cluster and heals it; remembers what is active so that every
/// stop undoes exactly its start. At most one fault of each family is active at a time: a start
/// of an active family is reported `Skipped`.
pub struct Nemesis {
    spec: NemesisSpec,
    seed: u64,
    nodes: Vec<String>,
    partition: Option<ActivePartition>,
    loss: Option<(Vec<String>, f64)>,
    /// Nodes whose `FAULTLINE` chain may hold rules.
    chain_dirty: BTreeSet<String>,
    killed: BTreeSet<String>,
    paused: BTreeSet<String>,
    /// Nodes whose faultfs may hold a stall.
    stalled: BTreeSet<String>,
    /// Nodes whose clock file may hold a non-zero offset.
    skewed: BTreeSet<String>,
    strobe: Option<(String, tokio::task::JoinHandle<()>)>,
    delayed: BTreeSet<String>,
    /// The netem probe's answer, once known.
    netem: Option<Result<(), String>>,
}

impl Drop for Nemesis {
    fn drop(&mut self) {
        if let Some((_, task)) = self.strobe.take() {
            task.abort();
        }
    }
}

impl Nemesis {
    /// A nemesis for these nodes (names as in the cluster), drawing from `seed`.
    pub fn new(spec: &NemesisSpec, seed: u64, nodes: Vec<String>) -> Self {
        Self {
            spec: spec.clone(),
            seed,
            nodes,
            partition: None,
            loss: None,
            chain_dirty: BTreeSet::new(),
            killed: BTreeSet::new(),
            paused: BTreeSet::new(),
            stalled: BTreeSet::new(),
            skewed: BTreeSet::new(),
            strobe: None,
            delayed: BTreeSet::new(),
            netem: None,
        }
    }

    /// The cluster's members are now `nodes` (the `member` fault changed them): faults from now
    /// on target these, and every node that left is forgotten (see [`Nemesis::forget`]).
    pub fn sync_members(&mut self, nodes: &[String]) {
        let left: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| !nodes.contains(n))
            .cloned()
            .collect();
        for n in &left {
            self.forget(n);
        }
        self.nodes = nodes.to_vec();
    }

    /// The current members.
    pub fn members(&self) -> &[String] {
        &self.nodes
    }

    /// Nodes another fault holds down, paused or stalled: the `member` fault leaves them be.
    pub fn held(&self) -> Vec<String> {
        self.killed
            .iter()
            .chain(&self.paused)
            .chain(&self.stalled)
            .cloned()
            .collect()
    }

    /// `node` left the cluster and its container is stopped: nothing is undone inside it any
    /// more (rules that drop its packets in other nodes are still removed at the stop).
    fn forget(&mut self, node: &str) {
        if let Some(p) = &mut self.partition {
            p.grudge.remove(node);
        }
        self.chain_dirty.remove(node);
        self.killed.remove(node);
        self.paused.remove(node);
        self.stalled.remove(node);
        self.skewed.remove(node);
        self.delayed.remove(node);
        if let Some((nodes, _)) = &mut self.loss {
            nodes.retain(|n| n != node);
        }
        self.nodes.retain(|n| n != node);
    }

    /// The seeded schedule for a main phase of this length (see [`schedule::schedule`]).
    pub fn schedule(&self, main_phase: Duration) -> Vec<(Duration, Action)> {
        schedule::schedule(&self.spec, self.seed, &self.nodes, main_phase)
    }

    /// What is active now, one short label each (for the progress bar), e.g.
    /// `partition:majorities-ring`, `kill:n2`.
    pub fn active(&self) -> Vec<String> {
        let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
        let mut out = Vec::new();
        if let Some(p) = &self.partition {
            out.push(format!("partition:{}", p.kind));
        }
        if !self.killed.is_empty() {
            out.push(format!("kill:{}", join(&self.killed)));
        }
        if !self.paused.is_empty() {
            out.push(format!("pause:{}", join(&self.paused)));
        }
        if !self.stalled.is_empty() {
            out.push(format!("stall:{}", join(&self.stalled)));
        }
        if let Some((node, _)) = &self.strobe {
            out.push(format!("clock-strobe:{node}"));
        } else if !self.skewed.is_empty() {
            out.push(format!("clock:{}", join(&self.skewed)));
        }
        if let Some((nodes, _)) = &self.loss {
            out.push(format!("loss:{}", nodes.join(",")));
        }
        if !self.delayed.is_empty() {
            out.push(format!("delay:{}", join(&self.delayed)));
        }
        out
    }

    /// Whether netem works here: probed once (add a netem qdisc on a node's `eth0`, then remove
    /// it) and remembered. `Err` carries the reason a delay is skipped. Call it at setup to
    /// report it early; [`Nemesis::apply`] probes on the first delay otherwise.
    ///
    /// # Errors
    /// [`NemesisError`] only when Docker stopped answering.
    pub async fn probe_netem(
        &mut self,
        ctx: &NemesisContext<'_>,
    ) -> Result<Result<(), String>, NemesisError> {
        if let Some(known) = &self.netem {
            return Ok(known.clone());
        }
        let Some(node) = self
            .nodes
            .iter()
            .find(|n| !self.killed.contains(*n) && !self.paused.contains(*n))
            .cloned()
        else {
            return Ok(Err("no running node to probe netem on".into()));
        };
        let what = format!("probing netem on {node}");
        let add = bounded(
            ctx.cluster,
            &what,
            ctx.cluster.exec(
                &node,
                &[
                    "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "1ms",
                ],
            ),
        )
        .await?;
        let answer = match add {
            // Could not ask (the node is down): do not remember, try again next time.
            Err(e) => return Ok(Err(format!("could not probe netem: {e}"))),
            Ok(o) if o.code == 0 => {
                let del = sh(ctx.cluster, &node, &what, "tc qdisc del dev eth0 root").await?;
                match del {
                    Ok(_) => Ok(()),
                    Err(e) => Err(format!("the netem probe could not remove its qdisc: {e}")),
                }
            }
            Ok(o) if netem_missing(&o.stderr) => Err(format!(
                "the kernel has no sch_netem: tc said {:?}",
                o.stderr.trim()
            )),
            Ok(o) => Err(format!(
                "the netem probe failed: tc said {:?}",
                o.stderr.trim()
            )),
        };
        self.netem = Some(answer.clone());
        Ok(answer)
    }

    /// Applies one scheduled action and returns its history ops (one per action, with its
    /// outcome). Each Docker call is bounded by [`OP_TIMEOUT`]; nodes are handled concurrently.
    ///
    /// # Errors
    /// [`NemesisError`] only when Docker stopped answering; every fault outcome is data.
    pub async fn apply(
        &mut self,
        action: &Action,
        ctx: &NemesisContext<'_>,
    ) -> Result<Vec<NemesisOp>, NemesisError> {
        let op = match action {
            Action::Start(Fault::Partition { kind, order })
                if self.spec.handover && self.partition.is_some() =>
            {
                return self.hand_over(*kind, order, ctx).await;
            }
            Action::Start(Fault::Partition { kind, order }) => {
                self.start_partition(*kind, order, ctx).await?
            }
            Action::Stop(FaultKind::Partition) => self.stop_partition(ctx).await?,
            Action::Start(Fault::Kill { target, nodes }) => {
                self.start_kill("kill", target.as_str(), nodes, ctx).await?
            }
            Action::Stop(FaultKind::Kill) => self.stop_kill("restart", ctx).await?,
            // On faultfs a SIGKILL takes faultfs's cache with it: a power failure.
            Action::Start(Fault::Power { target, nodes }) => {
                self.start_kill("start-power", target.as_str(), nodes, ctx)
                    .await?
            }
            Action::Stop(FaultKind::Power) => self.stop_kill("stop-power", ctx).await?,
            Action::Start(Fault::Corrupt { node, kind, seed }) => {
                self.start_corrupt(node, *kind, *seed, ctx).await?
            }
            Action::Stop(FaultKind::Corrupt) => self.stop_kill("stop-corrupt", ctx).await?,
            Action::Start(Fault::Pause { target, nodes }) => {
                self.start_pause(target.as_str(), nodes, ctx).await?
            }
            Action::Stop(FaultKind::Pause) => self.stop_pause(ctx).await?,
            Action::Start(Fault::Stall { target, nodes }) => {
                self.start_stall(target.as_str(), nodes, ctx).await?
            }
            Action::Stop(FaultKind::Stall) => self.stop_stall(ctx).await?,
            Action::Start(Fault::Clock(plan)) => self.start_clock(plan, ctx).await,
            Action::Stop(FaultKind::Clock) => self.stop_clock(ctx).await,
            Action::Start(Fault::Loss { nodes, probability }) => {
                self.start_loss(nodes, *probability, ctx).await?
            }
            Action::Stop(FaultKind::Loss) => self.stop_loss(ctx).await?,
            Action::Start(Fault::Delay {
                nodes,
                delay_ms,
                jitter_ms,
            }) => self.start_delay(nodes, *delay_ms, *jitter_ms, ctx).await?,
            Action::Stop(FaultKind::Delay) => self.stop_delay(ctx).await?,
            // The runner applies membership changes (`member::Members`): they change its view.
            Action::Start(Fault::Member { .. }) | Action::Stop(FaultKind::Member) => {
                NemesisOp::new(
                    "member",
                    json!({}),
                    Outcome::Skipped("membership changes are applied by the runner".into()),
                )
            }
        };
        Ok(vec![op])
    }

    /// Undoes everything that may be active: unpauses, restarts killed nodes, flushes the
    /// `FAULTLINE` chains, removes netem, stops strobes and resets clocks. One op per family that
    /// had something to undo; nothing when nothing is active, so calling it twice is safe. What
    /// failed stays remembered, so a second call retries it.
    ///
    /// # Errors
    /// [`NemesisError`] only when Docker stopped answering.
    pub async fn heal_all(
        &mut self,
        ctx: &NemesisContext<'_>,
    ) -> Result<Vec<NemesisOp>, NemesisError> {
        let mut ops = Vec::new();
        if !self.paused.is_empty() {
            ops.push(self.stop_pause(ctx).await?);
        }
        if !self.stalled.is_empty() {
            ops.push(self.stop_stall(ctx).await?);
        }
        if !self.killed.is_empty() {
            ops.push(self.stop_kill("restart", ctx).await?);
        }
        let mut dirty = self.chain_dirty.clone();
        if let Some(p) = &self.partition {
            dirty.extend(involved(&p.grudge));
        }
        if let Some((nodes, _)) = &self.loss {
            dirty.extend(nodes.iter().cloned());
        }
        if !dirty.is_empty() {
            let nodes: Vec<String> = dirty.into_iter().collect();
            let cluster = ctx.cluster;
            let script = flush_script();
            let steps = per_node(&nodes, |n| {
                let script = script.clone();
                async move {
                    let what = format!("flushing {CHAIN} in {n}");
                    Ok(sh(cluster, &n, &what, &script).await?.map(|_| ()))
                }
            })
            .await?;
            for (n, r) in &steps {
                if r.is_ok() {
                    self.chain_dirty.remove(n);
                }
            }
            let outcome = Outcome::of_steps(&steps);
            let loss = self.loss.take();
            let partition = self.partition.take();
            if let Some(p) = &partition {
                ops.push(NemesisOp::new(
                    "stop-partition",
                    json!({"kind": p.kind, "nodes": nodes, "heal": true}),
                    outcome.clone(),
                ));
            }
            if let Some((lossy, _)) = &loss {
                ops.push(NemesisOp::new(
                    "stop-loss",
                    json!({"nodes": lossy, "heal": true}),
                    outcome.clone(),
                ));
            }
            if partition.is_none() && loss.is_none() {
                // Rules left behind by an earlier stop that did not complete.
                ops.push(NemesisOp::new(
                    "stop-partition",
                    json!({"kind": "leftover", "nodes": nodes, "heal": true}),
                    outcome,
                ));
            }
        }
        if !self.delayed.is_empty() {
            ops.push(self.stop_delay(ctx).await?);
        }
        if self.strobe.is_some() || !self.skewed.is_empty() {
            ops.push(self.stop_clock(ctx).await);
        }
        Ok(ops)
    }

    /// The nodes a kill, pause or stall (`f`) hits, or the op that skips it: when a fault of its
    /// family is already active (`busy` says so), or its targets cannot be resolved.
    fn targets_or_skip(
        &self,
        f: &str,
        busy: Option<&str>,
        target: &str,
        nodes: &Targets,
        leader: Option<&str>,
    ) -> Result<Vec<String>, NemesisOp> {
        let skip =
            |reason: String| NemesisOp::new(f, json!({"target": target}), Outcome::Skipped(reason));
        if let Some(reason) = busy {
            return Err(skip(reason.into()));
        }
        self.resolve(nodes, leader).map_err(skip)
    }

    /// The nodes a kill or pause hits, given the current leader.
    fn resolve(&self, nodes: &Targets, leader: Option<&str>) -> Result<Vec<String>, String> {
        match nodes {
            Targets::Nodes(v) => Ok(v.clone()),
            Targets::Leader => match leader {
                None => Err("no leader known".into()),
                Some(l) if !self.nodes.iter().any(|n| n == l) => {
                    Err(format!("the leader {l} is not a node of this cluster"))
                }
                Some(l) => Ok(vec![l.to_string()]),
            },
        }
    }

    async fn start_partition(
        &mut self,
        kind: PartitionKind,
        order: &[String],
        ctx: &NemesisContext<'_>,
    ) -> Result<NemesisOp, NemesisError> {
        let f = "start-partition";
        if let Some(p) = &self.partition {
            return Ok(NemesisOp::new(
                f,
                json!({"kind": kind}),
                Outcome::Skipped(format!("a partition ({}) is already active", p.kind)),
            ));
        }
        let Some(grudge) = grudge_of(kind, order, ctx.leader.as_deref()) else {
            return Ok(NemesisOp::new(
                f,
                json!({"kind": kind}),
                Outcome::Skipped("no leader known".into()),
            ));
        };
        if let Some(l) = ctx.leader.as_ref()
            && kind == PartitionKind::IsolateLeader
            && !self.nodes.contains(l)
        {
            return Ok(NemesisOp::new(
                f,
                json!({"kind": kind}),
                Outcome::Skipped(format!("the leader {l} is not a node of this cluster")),
            ));
        }
        let value = json!({"kind": kind, "grudge": grudge});
        let rules = match drop_rules(&grudge, ctx.cluster) {
            Ok(rules) => rules,
            Err(skipped) => return Ok(NemesisOp::new(f, value, skipped)),
        };
        let targets: Vec<String> = rules.keys().cloned().collect();
        self.chain_dirty.extend(targets.iter().cloned());
        let cluster = ctx.cluster;
        let rules = &rules;
        let steps = per_node(&targets, |n| async move {
            let what = format!("installing the partition in {n}");
            Ok(sh(cluster, &n, &what, &install_script(&rules[&n]))
                .await?
                .map(|_| ()))
        })
        .await?;
        self.partition = Some(ActivePartition { kind, grudge });
        Ok(NemesisOp::new(f, value, Outcome::of_steps(&steps)))
    }

    /// Installs the active partition's rules for `node` again, after the node restarted (a
    /// container that starts again gets a fresh network namespace, without them): a
    /// `reinstall-partition` op, or `None` when no partition is active or it has no rules for
    /// `node`. A node still restarting after a failpoint exit is waited for (see `sh`).
    ///
    /// # Errors
    /// [`NemesisError`] only when Docker stopped answering.
    pub async fn reinstall_partition(
        &mut self,
        node: &str,
        ctx: &NemesisContext<'_>,
    ) -> Result<Option<NemesisOp>, NemesisError> {
        let Some(p) = &self.partition else {
            return Ok(None);
        };
        let Ok(rules) = drop_rules(&p.grudge, ctx.cluster) else {
            return Ok(None);
        };
        let Some(rules) = rules.get(node) else {
            return Ok(None);
        };
        let value = json!({"kind": p.kind, "node": node});
        self.chain_dirty.insert(node.to_string());
        let what = format!("installing the partition in {node} again");
        let step = sh(ctx.cluster, node, &what, &install_script(rules))
            .await?
            .map(|_| ());
        let steps = [(node.to_string(), step)];
        Ok(Some(NemesisOp::new(
            "reinstall-partition",
            value,
            Outcome::of_steps(&steps),
        )))
    }

    /// `isolate-leader-on-crash`: `crashed` exited at a failpoint; isolates the leader of the
    /// moment (a `start-partition` of kind `isolate-leader` whose value names the crash). The
    /// caller stops it after the spec's seconds with [`Action::Stop`] of partitions. Skipped
    /// when a partition is active, no leader is known, or the leader is the crashed node.
    ///
    /// # Errors
    /// [`NemesisError`] only when Docker stopped answering.
    pub async fn isolate_leader_after_crash(
        &mut self,
        crashed: &str,
        ctx: &NemesisContext<'_>,
    ) -> Result<NemesisOp, NemesisError> {
        let kind = PartitionKind::IsolateLeader;
        let mut op = match ctx.leader.as_deref() {
            Some(l) if l == crashed => NemesisOp::new(
                "start-partition",
                json!({"kind": kind}),
                Outcome::Skipped(format!("the leader {l} is the node that crashed")),
            ),
            _ => {
                let order = self.nodes.clone();
                self.start_partition(kind, &order, ctx).await?
            }
        };
        if let Value::Object(m) = &mut op.value {
            m.insert("after-crash".into(), json!(crashed));
        }
        Ok(op)
    }

    /// With `handover`: replaces the active partition by a new one of `kind` in one step per
    /// node (flush the chain, install the new rules), so that no packet passes between the two.
    /// Records a `stop-partition` of the old one (`"handover": true`) and a `start-partition`
    /// of the new one, both with the step's outcome; a new partition that cannot be drawn (no
    /// leader known) leaves the old one in place.
    async fn hand_over(
        &mut self,
        kind: PartitionKind,
        order: &[String],
        ctx: &NemesisContext<'_>,
    ) -> Result<Vec<NemesisOp>, NemesisError> {
        let f = "start-partition";
        let Some(grudge) = grudge_of(kind, order, ctx.leader.as_deref()) else {
            return Ok(vec![NemesisOp::new(
                f,
                json!({"kind": kind}),
                Outcome::Skipped("no leader known (the active partition stays)".into()),
            )]);
        };
        let rules = match drop_rules(&grudge, ctx.cluster) {
            Ok(rules) => rules,
            Err(skipped) => {
                let value = json!({"kind": kind, "grudge": grudge});
                return Ok(vec![NemesisOp::new(f, value, skipped)]);
            }
        };
        let Some(old) = self.partition.take() else {
            unreachable!("hand_over is only called with a partition active");
        };
        let targets: Vec<String> = old
            .grudge
            .keys()
            .chain(rules.keys())
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.chain_dirty.extend(targets.iter().cloned());
        let cluster = ctx.cluster;
        let rules = &rules;
        let steps = per_node(&targets, |n| async move {
            let what = format!("replacing the partition in {n}");
            let script = match rules.get(&n) {
                Some(r) => format!("{} && {}", flush_script(), install_script(r)),
                None => flush_script(),
            };
            Ok(sh(cluster, &n, &what, &script).await?.map(|_| ()))
        })
        .await?;
        let outcome = Outcome::of_steps(&steps);
        let stop = NemesisOp::new(
            "stop-partition",
            json!({"kind": old.kind, "nodes": targets, "handover": true}),
            outcome.clone(),
        );
        let start = NemesisOp::new(f, json!({"kind": kind, "grudge": grudge}), outcome);
        self.partition = Some(ActivePartition { kind, grudge });
        Ok(vec![stop, start])
    }

    async fn stop_partition(
        &mut self,
        ctx: &NemesisContext<'_>,
    ) -> Result<NemesisOp, NemesisError> {
        let f = "stop-partition";
        let Some(p) = self.partition.take() else {
            return Ok(NemesisOp::new(
                f,
                json!({}),
                Outcome::Skipped("no partition is active".into()),
            ));
        };
        let mut rules: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (node, dropped) in &p.grudge {
            let r = rules.entry(node.clone()).or_default();
            r.extend(
                dropped
                    .iter()
                    .filter_map(|d| ctx.cluster.node(d))
                    .map(|h| drop_from(h.ip)),
            );
        }
        let targets: Vec<String> = rules.keys().cloned().collect();
        let cluster = ctx.cluster;
        let rules = &rules;
        let steps = per_node(&targets, |n| async move {
            let what = format!("removing the partition in {n}");
            Ok(sh(cluster, &n, &what, &remove_script(&rules[&n]))
                .await?
                .map(|_| ()))
        })
        .await?;
        let lossy = self
            .loss
            .as_ref()
            .map(|(n, _)| n.clone())
            .unwrap_or_default();
        for (n, r) in &steps {
            if r.is_ok() && !lossy.contains(n) {
                self.chain_dirty.remove(n);
            }
        }
        Ok(NemesisOp::new(
            f,
            json!({"kind": p.kind, "nodes": targets}),
            Outcome::of_steps(&steps),
        ))
    }

    /// SIGKILLs the targets (a `kill`, or a `start-power`: on faultfs the same signal is a power
    /// failure); the stop starts them again.
    async fn start_kill(
        &mut self,
        f: &str,
        target: &str,
        nodes: &Targets,
        ctx: &NemesisContext<'_>,
    ) -> Result<NemesisOp, NemesisError> {
        let busy =
            (!self.killed.is_empty()).then_some("a node is already down (kill, power, corrupt)");
        let nodes = match self.targets_or_skip(f, busy, target, nodes, ctx.leader.as_deref()) {
            Ok(n) => n,
            Err(skipped) => return Ok(skipped),
        };
        let cluster = ctx.cluster;
        let steps = per_node(&nodes, |n| async move {
            bounded(
                cluster,
                &format!("killing {n}"),
                cluster.kill(&n, "SIGKILL"),
            )
            .await
        })
        .await?;
        // Remember every target, killed or not: the restart checks each one's state.
        self.killed.extend(nodes.iter().cloned());
        for (n, r) in &steps {
            if r.is_ok() {
                // A restarted container gets a fresh network namespace, without our rules.
                self.chain_dirty.remove(n);
                self.delayed.remove(n);
            }
        }
        Ok(NemesisOp::new(
            f,
            json!({"target": target, "nodes": nodes}),
            Outcome::of_steps(&steps),
        ))
    }

    /// Starts every node a kill, power failure or corruption left down (`f` names the stop).
    async fn stop_kill(
        &mut self,
        f: &str,
        ctx: &NemesisContext<'_>,
    ) -> Result<NemesisOp, NemesisError> {
        if self.killed.is_empty() {
            return Ok(NemesisOp::new(
                f,
                json!({}),
                Outcome::Skipped("no node is killed".into()),
            ));
        }
        let nodes: Vec<String> = self.killed.iter().cloned().collect();
        let cluster = ctx.cluster;
        // A restarted container has a fresh network namespace: an active partition's rules for
        // it go in again right after its start.
        let rules = self
            .partition
            .as_ref()
            .and_then(|p| drop_rules(&p.grudge, cluster).ok())
            .unwrap_or_default();
        self.chain_dirty
            .extend(nodes.iter().filter(|n| rules.contains_key(*n)).cloned());
        let rules = &rules;
        let steps = per_node(&nodes, |n| async move {
            let state = bounded(cluster, &format!("inspecting {n}"), cluster.state(&n)).await?;
            match state {
                Err(e) => return Ok(Err(e)),
                Ok(s) if s == "running" || s == "paused" => return Ok(Ok(())),
                Ok(_) => {}
            }
            if let Err(e) = bounded(cluster, &format!("starting {n}"), cluster.start(&n)).await? {
                return Ok(Err(e));
            }
            match rules.get(&n) {
                Some(r) => {
                    let what = format!("installing the active partition in restarted {n}");
                    Ok(sh(cluster, &n, &what, &install_script(r))
                        .await?
                        .map(|_| ()))
                }
                None => Ok(Ok(())),
            }
        })
        .await?;
        for (n, r) in &steps {
            if r.is_ok() {
                self.killed.remove(n);
            }
        }
        Ok(NemesisOp::new(
            f,
            json!({"nodes": nodes}),
            Outcome::of_steps(&steps),
        ))
    }

    /// Kills `node` (of the corruptible minority), damages its data files from a helper
    /// container on its volume (`faultfs corrupt`), and leaves it down until the stop.
    async fn start_corrupt(
        &mut self,
        node: &str,
        kind: CorruptKind,
        seed: u64,
        ctx: &NemesisContext<'_>,
    ) -> Result<NemesisOp, NemesisError> {
        let f = "start-corrupt";
        let value = json!({"node": node, "kind": kind, "seed": seed});
        if !self.nodes.iter().any(|n| n == node) {
            return Ok(NemesisOp::new(
                f,
                value,
                Outcome::Skipped(format!("{node} is no longer a member")),
            ));
        }
        if !self.killed.is_empty() {
            return Ok(NemesisOp::new(
                f,
                value,
                Outcome::Skipped("a node is already down (kill, power, corrupt)".into()),
            ));
        }
        let cluster = ctx.cluster;
        // A node that refused to start after an earlier corruption is down already: its files
        // are damaged further without a kill.
        let state = bounded(cluster, &format!("inspecting {node}"), cluster.state(node)).await?;
        let down = matches!(&state, Ok(s) if s == "exited" || s == "created" || s == "dead");
        if !down {
            let killed = bounded(
                cluster,
                &format!("killing {node}"),
                cluster.kill(node, "SIGKILL"),
            )
            .await?;
            if let Err(e) = killed {
                self.killed.insert(node.to_string());
                return Ok(NemesisOp::new(f, value, Outcome::Indeterminate(e)));
            }
        }
        self.killed.insert(node.to_string());
        self.chain_dirty.remove(node);
        self.delayed.remove(node);
        let (outcome, report) = storage::corrupt(cluster, node, kind, seed, &self.spec).await?;
        let mut value = value;
        value["report"] = report;
        Ok(NemesisOp::new(f, value, outcome))
    }

    async fn start_pause(
        &mut self,
        target: &str,
        nodes: &Targets,
        ctx: &NemesisContext<'_>,
    ) -> Result<NemesisOp, NemesisError> {
        let f = "pause";
        let busy = (!self.paused.is_empty()).then_some("a pause is already active");
        let nodes = match self.targets_or_skip(f, busy, target, nodes, ctx.leader.as_deref()) {
            Ok(n) => n,
            Err(skipped) => return Ok(skipped),
        };
        let cluster = ctx.cluster;
        let steps = per_node(&nodes, |n| async move {
            bounded(cluster, &format!("pausing {n}"), cluster.pause(&n)).await
        })
        .await?;
        self.paused.extend(nodes.iter().cloned());
        Ok(NemesisOp::new(
            f,
            json!({"target": target, "nodes": nodes}),
            Outcome::of_steps(&steps),
        ))
    }

    async fn stop_pause(&mut self, ctx: &NemesisContext<'_>) -> Result<NemesisOp, NemesisError> {
        let f = "resume";
        if self.paused.is_empty() {
            return Ok(NemesisOp::new(
                f,
                json!({}),
                Outcome::Skipped("no node is paused".into()),
            ));
        }
        let nodes: Vec<String> = self.paused.iter().cloned().collect();
        let cluster = ctx.cluster;
        let steps = per_node(&nodes, |n| async move {
            let state = bounded(cluster, &format!("inspecting {n}"), cluster.state(&n)).await?;
            match state {
                Err(e) => Ok(Err(e)),
                Ok(s) if s == "paused" => {
                    bounded(cluster, &format!("unpausing {n}"), cluster.unpause(&n)).await
                }
                // Not frozen (the pause never took, or someone else restarted it).
                Ok(_) => Ok(Ok(())),
            }
        })
        .await?;
        for (n, r) in &steps {
            if r.is_ok() {
                self.paused.remove(n);
            }
        }
        Ok(NemesisOp::new(
            f,
            json!({"nodes": nodes}),
            Outcome::of_steps(&steps),
        ))
    }

    async fn start_stall(
        &mut self,
        target: &str,
        nodes: &Targets,
        ctx: &NemesisContext<'_>,
    ) -> Result<NemesisOp, NemesisError> {
        let f = "start-stall";
        let busy = (!self.stalled.is_empty()).then_some("a stall is already active");
        let nodes = match self.targets_or_skip(f, busy, target, nodes, ctx.leader.as_deref()) {
            Ok(n) => n,
            Err(skipped) => return Ok(skipped),
        };
        let [cmd, ms] = storage::stall_args();
        let args = [cmd.as_str(), ms.as_str()];
        let answers = join_all(nodes.iter().map(|n| storage::ctl(ctx.cluster, n, &args))).await;
        let mut steps = Vec::new();
        let mut missing = Vec::new();
        for (n, a) in nodes.iter().zip(answers) {
            match a? {
                Ok(storage::Answer::NoFaultfs(why)) => missing.push(why),
                Ok(storage::Answer::Done(_)) => {
                    self.stalled.insert(n.clone());
                    steps.push((n.clone(), Ok(())));
                }
                Err(e) => {
                    // It may have taken: release it at the stop.
                    self.stalled.insert(n.clone());
                    steps.push((n.clone(), Err(e)));
                }
            }
        }
        let outcome = if steps.is_empty() {
            Outcome::Skipped(missing.join("; "))
        } else {
            Outcome::of_steps(&steps)
        };
        Ok(NemesisOp::new(
            f,
            json!({"target": target, "nodes": nodes, "bound-ms": storage::STALL_BOUND_MS}),
            outcome,
        ))
    }

    async fn stop_stall(&mut self, ctx: &NemesisContext<'_>) -> Result<NemesisOp, NemesisError> {
        let f = "stop-stall";
        if self.stalled.is_empty() {
            return Ok(NemesisOp::new(
                f,
                json!({}),
                Outcome::Skipped("no node is stalled".into()),
            ));
        }
        let nodes: Vec<String> = self.stalled.iter().cloned().collect();
        let cluster = ctx.cluster;
        let steps = per_node(&nodes, |n| async move {
            // A node killed and restarted meanwhile has a fresh faultfs, with no stall.
            Ok(storage::ctl(cluster, &n, &["unstall"]).await?.map(|_| ()))
        })
        .await?;
        for (n, r) in &steps {
            if r.is_ok() {
                self.stalled.remove(n);
            }
        }
        Ok(NemesisOp::new(
            f,
            json!({"nodes": nodes}),
            Outcome::of_steps(&steps),
        ))
    }

    async fn start_clock(&mut self, plan: &ClockPlan, ctx: &NemesisContext<'_>) -> NemesisOp {
        let f = "start-clock";
        let (kind, value) = match plan {
            ClockPlan::Bump { offsets } => {
                let shown: BTreeMap<&String, String> = offsets
                    .iter()
                    .map(|(n, s)| (n, format_offset(*s)))
                    .collect();
                ("bump", json!({"kind": "bump", "offsets": shown}))
            }
            ClockPlan::Strobe {
                node,
                delta,
                period_ms,
            } => (
                "strobe",
                json!({"kind": "strobe", "node": node,
                       "offsets": [format_offset(0), format_offset(*delta)], "period-ms": period_ms}),
            ),
            ClockPlan::Reset => ("reset", json!({"kind": "reset"})),
        };
        if let Err(reason) = &ctx.clock_supported {
            return NemesisOp::new(f, value, Outcome::Skipped(reason.clone()));
        }
        let dir = ctx.clock_dir;
        let outcome = match plan {
            ClockPlan::Bump { offsets } => {
                let steps: Vec<(String, Result<(), String>)> = offsets
                    .iter()
                    .map(|(n, s)| {
                        self.skewed.insert(n.clone());
                        (
                            n.clone(),
                            write_offset(dir, n, *s).map_err(|e| e.to_string()),
                        )
                    })
                    .collect();
                Outcome::of_steps(&steps)
            }
            ClockPlan::Strobe {
                node,
                delta,
                period_ms,
            } => {
                if let Some((busy, _)) = &self.strobe {
                    Outcome::Skipped(format!("the clock of {busy} is already strobing"))
                } else if !node_clock_dir(dir, node).is_dir() {
                    Outcome::Indeterminate(format!("{node}: no clock folder"))
                } else {
                    self.skewed.insert(node.clone());
                    let task = clock::spawn_strobe(
                        dir.to_path_buf(),
                        node.clone(),
                        *delta,
                        Duration::from_millis(*period_ms),
                    );
                    self.strobe = Some((node.clone(), task));
                    Outcome::Installed
                }
            }
            ClockPlan::Reset => self.reset_clocks(dir).await,
        };
        tracing::debug!("clock {kind}: {}", outcome.as_str());
        NemesisOp::new(f, value, outcome)
    }

    /// Stops any strobe and writes `+0s` for every node.
    async fn reset_clocks(&mut self, dir: &Path) -> Outcome {
        if let Some((_, task)) = self.strobe.take() {
            task.abort();
            // The strobe may be writing on another worker right now; wait until it has stopped
            // so that the reset is the last write.
            let _ = task.await;
        }
        let steps: Vec<(String, Result<(), String>)> = self
            .nodes
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    write_offset(dir, n, 0).map_err(|e| e.to_string()),
                )
            })
            .collect();
        for (n, r) in &steps {
            if r.is_ok() {
                self.skewed.remove(n);
            }
        }
        Outcome::of_steps(&steps)
    }

    async fn stop_clock(&mut self, ctx: &NemesisContext<'_>) -> NemesisOp {
        let f = "stop-clock";
        if let Err(reason) = &ctx.clock_supported {
            return NemesisOp::new(f, json!({}), Outcome::Skipped(reason.clone()));
        }
        let had: Vec<String> = self.skewed.iter().cloned().collect();
        let outcome = self.reset_clocks(ctx.clock_dir).await;
        NemesisOp::new(f, json!({"kind": "reset", "nodes": had}), outcome)
    }

    async fn start_loss(
        &mut self,
        nodes: &[String],
        probability: f64,
        ctx: &NemesisContext<'_>,
    ) -> Result<NemesisOp, NemesisError> {
        let f = "start-loss";
        let value = json!({"nodes": nodes, "probability": probability});
        if self.loss.is_some() {
            return Ok(NemesisOp::new(
                f,
                value,
                Outcome::Skipped("packet loss is already active".into()),
            ));
        }
        self.chain_dirty.extend(nodes.iter().cloned());
        let cluster = ctx.cluster;
        let script = install_script(&[loss_rule(probability)]);
        let script = &script;
        let steps = per_node(nodes, |n| async move {
            let what = format!("installing packet loss in {n}");
            Ok(sh(cluster, &n, &what, script).await?.map(|_| ()))
        })
        .await?;
        self.loss = Some((nodes.to_vec(), probability));
        Ok(NemesisOp::new(f, value, Outcome::of_steps(&steps)))
    }

    async fn stop_loss(&mut self, ctx: &NemesisContext<'_>) -> Result<NemesisOp, NemesisError> {
        let f = "stop-loss";
        let Some((nodes, p)) = self.loss.take() else {
            return Ok(NemesisOp::new(
                f,
                json!({}),
                Outcome::Skipped("no packet loss is active".into()),
            ));
        };
        let cluster = ctx.cluster;
        let script = remove_script(&[loss_rule(p)]);
        let script = &script;
        let steps = per_node(&nodes, |n| async move {
            let what = format!("removing packet loss in {n}");
            Ok(sh(cluster, &n, &what, script).await?.map(|_| ()))
        })
        .await?;
        let partitioned: BTreeSet<String> = self
            .partition
            .as_ref()
            .map(|p| involved(&p.grudge))
            .unwrap_or_default();
        for (n, r) in &steps {
            if r.is_ok() && !partitioned.contains(n) {
                self.chain_dirty.remove(n);
            }
        }
        Ok(NemesisOp::new(
            f,
            json!({"nodes": nodes}),
            Outcome::of_steps(&steps),
        ))
    }

    async fn start_delay(
        &mut self,
        nodes: &[String],
        delay_ms: u64,
        jitter_ms: u64,
        ctx: &NemesisContext<'_>,
    ) -> Result<NemesisOp, NemesisError> {
        let f = "start-delay";
        let value = json!({"nodes": nodes, "delay-ms": delay_ms, "jitter-ms": jitter_ms});
        if !self.delayed.is_empty() {
            return Ok(NemesisOp::new(
                f,
                value,
                Outcome::Skipped("a delay is already active".into()),
            ));
        }
        if let Err(reason) = self.probe_netem(ctx).await? {
            return Ok(NemesisOp::new(f, value, Outcome::Skipped(reason)));
        }
        let cluster = ctx.cluster;
        let script =
            format!("tc qdisc replace dev eth0 root netem delay {delay_ms}ms {jitter_ms}ms");
        let script = &script;
        self.delayed.extend(nodes.iter().cloned());
        let steps = per_node(nodes, |n| async move {
            let what = format!("adding netem delay in {n}");
            Ok(sh(cluster, &n, &what, script).await?.map(|_| ()))
        })
        .await?;
        Ok(NemesisOp::new(f, value, Outcome::of_steps(&steps)))
    }

    async fn stop_delay(&mut self, ctx: &NemesisContext<'_>) -> Result<NemesisOp, NemesisError> {
        let f = "stop-delay";
        if self.delayed.is_empty() {
            let reason = match &self.netem {
                Some(Err(r)) => r.clone(),
                _ => "no delay is active".into(),
            };
            return Ok(NemesisOp::new(f, json!({}), Outcome::Skipped(reason)));
        }
        let nodes: Vec<String> = self.delayed.iter().cloned().collect();
        let cluster = ctx.cluster;
        // "handle of zero": no root qdisc any more (e.g. the node restarted).
        let script = "out=$(tc qdisc del dev eth0 root 2>&1) || case \"$out\" in \
                      *'handle of zero'*|*'No such file'*) ;; *) echo \"$out\" >&2; exit 1;; esac";
        let steps = per_node(&nodes, |n| async move {
            let what = format!("removing netem delay in {n}");
            Ok(sh(cluster, &n, &what, script).await?.map(|_| ()))
        })
        .await?;
        for (n, r) in &steps {
            if r.is_ok() {
                self.delayed.remove(n);
            }
        }
        Ok(NemesisOp::new(
            f,
            json!({"nodes": nodes}),
            Outcome::of_steps(&steps),
        ))
    }
}

/// Every node a grudge names, on either side.
fn involved(g: &Grudge) -> BTreeSet<String> {
    g.iter()
        .flat_map(|(n, d)| std::iter::once(n.clone()).chain(d.iter().cloned()))
        .collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn only_an_exec_refused_for_a_stopped_or_restarting_container_is_tried_again() {
        let refused = |state| {
            format!(
                "n2: running `sh`: Docker responded with status code 409: Container abc is {state}"
            )
        };
        assert!(between_exit_and_restart(&refused("not running")));
        assert!(between_exit_and_restart(&refused(
            "restarting, wait until the container is running"
        )));
        assert!(!between_exit_and_restart(&refused("paused")));
        assert!(!between_exit_and_restart(
            "n2: exit 1: iptables: No chain/target/match by that name."
        ));
    }
    use super::*;

    #[test]
    fn ops_carry_their_outcome_and_reason_in_the_value() {
        let op = NemesisOp::new(
            "start-partition",
            json!({"kind": PartitionKind::MajoritiesRing, "grudge": {"n1": ["n3", "n4"]}}),
            Outcome::Installed,
        );
        assert_eq!(
            serde_json::to_value(&op).unwrap(),
            json!({"f": "start-partition", "value": {
                "kind": "majorities-ring", "grudge": {"n1": ["n3", "n4"]}, "outcome": "installed"}})
        );
        let op = NemesisOp::new(
            "start-delay",
            json!({}),
            Outcome::Skipped("no netem".into()),
        );
        assert_eq!(op.value["outcome"], "skipped");
        assert_eq!(op.value["reason"], "no netem");
    }

    #[test]
    fn one_failed_node_makes_the_step_indeterminate() {
        let ok = ("n1".to_string(), Ok(()));
        let bad = ("n2".to_string(), Err("container is paused".to_string()));
        assert_eq!(
            Outcome::of_steps(std::slice::from_ref(&ok)),
            Outcome::Installed
        );
        assert_eq!(
            Outcome::of_steps(&[ok, bad]),
            Outcome::Indeterminate("n2: container is paused".into())
        );
    }

    #[test]
    fn scripts_touch_only_the_faultline_chain() {
        let install = install_script(&[drop_from("10.0.0.2")]);
        assert!(install.contains("-C INPUT -j FAULTLINE"), "{install}");
        assert!(
            install.contains("-A FAULTLINE -s 10.0.0.2 -j DROP"),
            "{install}"
        );
        for s in [install, remove_script(&[loss_rule(0.2)]), flush_script()] {
            for word in s.split_whitespace() {
                if ["-A", "-D", "-F", "-I", "-N"].contains(&word) {
                    let chain = s
                        .split(word)
                        .nth(1)
                        .unwrap()
                        .split_whitespace()
                        .next()
                        .unwrap();
                    assert!(
                        chain == CHAIN || (word == "-I" && chain == "INPUT"),
                        "{word} {chain} in {s}"
                    );
                }
            }
        }
    }

    #[test]
    fn leader_targets_resolve_only_to_a_known_node() {
        let nem = Nemesis::new(
            &NemesisSpec::default(),
            1,
            vec!["n1".into(), "n2".into(), "n3".into()],
        );
        let leader = Targets::Leader;
        assert_eq!(nem.resolve(&leader, Some("n2")), Ok(vec!["n2".to_string()]));
        assert!(
            nem.resolve(&leader, None)
                .unwrap_err()
                .contains("no leader")
        );
        assert!(nem.resolve(&leader, Some("n9")).unwrap_err().contains("n9"));
        let drawn = Targets::Nodes(vec!["n3".into()]);
        assert_eq!(nem.resolve(&drawn, Some("n2")), Ok(vec!["n3".to_string()]));
    }
}
