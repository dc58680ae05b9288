//! One run's cluster: a fresh network, and one container per node with a static address, a data
//! volume, `CAP_NET_ADMIN` (for iptables faults inside the node's own network namespace) and the
//! run label. Teardown removes everything with the run's label, so it also catches objects whose
//! handles were lost halfway through a failed start.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointIpamConfig, EndpointSettings, HostConfig,
    NetworkingConfig, PortBinding, VolumeCreateRequest,
};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use futures_util::StreamExt;

use super::engines::{Engine, Engines, NetworkKind, host_ports, slots};
use super::net::{Subnet, create_network};
use super::{ControlError, DockerContext, Leftovers, RUN_LABEL};

/// The label naming the engine (an entry of the engines file) a container runs on.
pub const ENGINE_LABEL: &str = "faultline.engine";

/// What to run in one node's container.
#[derive(Debug, Clone, Default)]
pub struct NodeSpec {
    /// Node name within the run, e.g. `n1` (also the container's hostname).
    pub name: String,
    /// Image to run.
    pub image: String,
    /// Replaces the image's entrypoint when set.
    pub entrypoint: Option<Vec<String>>,
    /// Arguments (the command after the entrypoint).
    pub cmd: Vec<String>,
    /// Environment, `KEY=value`.
    pub env: Vec<String>,
    /// Bind mounts, `host:container[:ro]`.
    pub binds: Vec<String>,
    /// Where the node's data volume is mounted inside the container.
    pub data_dir: String,
    /// Start the node again at once whenever its process exits at a raftkv failpoint (exit
    /// code [`FAILPOINT_EXIT`]), while [`Cluster::restart_failpoint_exits`] runs. For nodes
    /// armed with failpoints, which exit as a crash would; a `docker kill` by the nemesis
    /// (exit 137) is left alone. Docker's own `on-failure` policy is not used: it waits 100 ms
    /// before the first restart and doubles the wait at each one (reset only after 10 s of
    /// running), so a node that crashed a few times stayed down for seconds.
    pub restart_on_failure: bool,
    /// The container may mount FUSE filesystems: it gets `/dev/fuse` and `CAP_SYS_ADMIN`, as a
    /// node whose data directory is on faultfs (the storage-fault filesystem) needs.
    pub fuse: bool,
    /// The node's ports the harness dials (published on the engine's host when the cluster
    /// publishes: see [`Engines::publishes`]).
    pub ports: Vec<u16>,
}

/// A started node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    /// Node name within the run.
    pub name: String,
    /// Docker container name.
    pub container: String,
    /// Static address on the run's network.
    pub ip: Ipv4Addr,
    /// Started again when it exits at a failpoint (`NodeSpec::restart_on_failure`).
    pub restart_on_failure: bool,
    /// The node's image.
    pub image: String,
    /// Its data volume, and where the node mounts it.
    pub volume: String,
    /// Where the data volume is mounted inside the node.
    pub data_dir: String,
    /// The engine it runs on (an index into the cluster's engines).
    pub engine: usize,
    /// That engine's name.
    pub engine_name: String,
    /// Where the harness reaches each of its ports when they are published on the engine's
    /// host (the engine's address and the host port); empty when it dials the node's own
    /// address.
    pub published: BTreeMap<u16, (String, u16)>,
}

impl NodeHandle {
    /// Where the harness dials the node's `port`: the node's own address on a local bridge,
    /// else the port published on its engine's host.
    pub fn endpoint(&self, port: u16) -> (String, u16) {
        self.published
            .get(&port)
            .cloned()
            .unwrap_or_else(|| (self.ip.to_string(), port))
    }

    /// [`NodeHandle::endpoint`] as `host:port`.
    pub fn addr(&self, port: u16) -> String {
        let (host, port) = self.endpoint(port);
        format!("{host}:{port}")
    }
}

/// The result of a command run inside a node.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// Exit code (`-1` when the engine did not report one).
    pub code: i64,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// A run's network and containers.
pub struct Cluster {
    engines: Engines,
    run_id: String,
    network: String,
    subnet: Subnet,
    /// Every node started in this run, in order (a node removed by a membership change stays,
    /// stopped, so that its log is collected and its address never reused).
    nodes: std::sync::RwLock<Vec<NodeHandle>>,
    /// Held while a node is being started: its address is the next free one.
    starting: tokio::sync::Mutex<()>,
}

/// raftkv's exit code when a failpoint fired (`raftkv::server::failpoint::EXIT_CODE`).
pub const FAILPOINT_EXIT: i32 = 86;

/// First host number given to nodes: `.11`, `.12`, ... (`.1` is the gateway, i.e. the host).
const FIRST_NODE_HOST: u8 = 11;

impl Cluster {
    /// Creates the run's bridge network on the local engine `docker` (no containers yet).
    ///
    /// # Errors
    /// When the engine refuses or no free subnet is found.
    pub async fn create(docker: &Docker, run_id: &str) -> Result<Self, ControlError> {
        Self::create_on(&Engines::of_local(docker.clone()), run_id).await
    }

    /// Creates the run's network on these engines: a bridge on the one engine, or an attachable
    /// Swarm overlay made on the first engine (a swarm manager) that every engine's containers
    /// join.
    ///
    /// # Errors
    /// When an engine refuses or no free subnet is found.
    pub async fn create_on(engines: &Engines, run_id: &str) -> Result<Self, ControlError> {
        let network = format!("fl-{run_id}");
        let first = &engines.list[0];
        let subnet = match engines.network() {
            NetworkKind::Bridge => create_network(&first.docker, run_id, &network).await?,
            NetworkKind::Overlay => super::swarm::create_overlay(first, run_id, &network).await?,
        };
        Ok(Self {
            engines: engines.clone(),
            run_id: run_id.to_string(),
            network,
            subnet,
            nodes: std::sync::RwLock::new(Vec::new()),
            starting: tokio::sync::Mutex::new(()),
        })
    }

    /// The run id (the value of the run label on every object).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The Docker network's name.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The address node number `i` (0-based) gets, known before the node starts so that peers'
    /// command lines can name each other.
    pub fn address_of(&self, i: usize) -> Ipv4Addr {
        let host = u8::try_from(i)
            .ok()
            .and_then(|i| i.checked_add(FIRST_NODE_HOST))
            .expect("at most 240 nodes");
        self.subnet.host(host)
    }

    /// Where the harness will reach node `name` (index `i`) when not at its own address: its
    /// engine's host, when that engine publishes the nodes' ports.
    pub fn reached_at(&self, name: &str, i: usize) -> Option<String> {
        let e = self.engines.place(name, i);
        self.engines
            .publishes(e)
            .then(|| self.engines.list[e].spec.reach_address())
    }

    /// The address of the host as seen from the nodes (the bridge's gateway).
    pub fn gateway(&self) -> Ipv4Addr {
        self.subnet.host(1)
    }

    /// Nodes started so far, in order (removed members included).
    pub fn nodes(&self) -> Vec<NodeHandle> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many nodes were started so far: the index the next one gets.
    pub fn started(&self) -> usize {
        self.nodes.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Creates the node's volume and container at the next address and starts it. Also during a
    /// run (a node added by a membership change): starts are serialized, so each gets the next
    /// address.
    ///
    /// # Errors
    /// When the engine refuses any step; what was created stays labelled for teardown.
    pub async fn start_node(&self, spec: NodeSpec) -> Result<NodeHandle, ControlError> {
        let _one_at_a_time = self.starting.lock().await;
        let index = self.started();
        let ip = self.address_of(index);
        let engine_index = self.engines.place(&spec.name, index);
        let engine = &self.engines.list[engine_index];
        let docker = &engine.docker;
        let labels = HashMap::from([
            (RUN_LABEL.to_string(), self.run_id.clone()),
            ("faultline.node".to_string(), spec.name.clone()),
            (ENGINE_LABEL.to_string(), engine.name().to_string()),
        ]);
        let container = format!("fl-{}-{}", self.run_id, spec.name);
        let volume = format!("{container}-data");
        docker
            .create_volume(VolumeCreateRequest {
                name: Some(volume.clone()),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .ctx(|| format!("creating volume {volume} on engine {}", engine.name()))?;
        // Folders of the harness are bind-mounted where the engine sees them, else copied in.
        let (mut binds, copies): (Vec<String>, Vec<String>) = spec
            .binds
            .iter()
            .cloned()
            .partition(|b| engine.spec.shares() || !b.starts_with('/'));
        binds.push(format!("{volume}:{}", spec.data_dir));
        let publish = self.engines.publishes(engine_index);
        if publish && spec.ports.len() > usize::from(super::engines::PORTS_PER_NODE) {
            return Err(ControlError::Io {
                what: format!("publishing the ports of {}", spec.name),
                source: std::io::Error::other(format!(
                    "{} ports; at most {} are published per node",
                    spec.ports.len(),
                    super::engines::PORTS_PER_NODE
                )),
            });
        }
        let bind_ip = engine
            .spec
            .reach_address()
            .parse::<std::net::IpAddr>()
            .map_or_else(|_| "0.0.0.0".to_string(), |a| a.to_string());
        // The host ports to try, in order: 64 slots when publishing, else one try publishing
        // nothing.
        let mut tries = slots(&self.run_id, &spec.name)
            .map(|slot| host_ports(slot, &spec.ports))
            .take(if publish { 64 } else { 1 })
            .map(|ports| if publish { ports } else { BTreeMap::new() })
            .peekable();
        loop {
            let ports = tries.next().unwrap_or_default();
            let body = self.container_body(&spec, ip, &labels, &binds, &ports, &bind_ip);
            docker
                .create_container(
                    Some(
                        CreateContainerOptionsBuilder::default()
                            .name(&container)
                            .build(),
                    ),
                    body,
                )
                .await
                .ctx(|| {
                    format!(
                        "creating container {container} from {} on engine {}",
                        spec.image,
                        engine.name()
                    )
                })?;
            for dir in &copies {
                copy_into(engine, &container, dir).await?;
            }
            match docker
                .start_container(
                    &container,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
            {
                Ok(()) => {
                    let handle = NodeHandle {
                        name: spec.name,
                        container,
                        ip,
                        restart_on_failure: spec.restart_on_failure,
                        image: spec.image,
                        volume,
                        data_dir: spec.data_dir,
                        engine: engine_index,
                        engine_name: engine.name().to_string(),
                        published: ports
                            .iter()
                            .map(|(p, h)| (*p, (engine.spec.reach_address(), *h)))
                            .collect(),
                    };
                    self.nodes
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(handle.clone());
                    return Ok(handle);
                }
                // Another run (or another program) holds one of these host ports: the next slot.
                Err(e)
                    if publish
                        && tries.peek().is_some()
                        && (e.to_string().contains("port is already allocated")
                            || e.to_string().contains("address already in use")) =>
                {
                    docker
                        .remove_container(
                            &container,
                            Some(
                                bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                                    .force(true)
                                    .build(),
                            ),
                        )
                        .await
                        .ctx(|| format!("removing {container} to publish other ports"))?;
                }
                Err(e) => {
                    return Err(e).ctx(|| {
                        format!("starting container {container} on engine {}", engine.name())
                    });
                }
            }
        }
    }

    /// The container of one node: its address on the run's network, capabilities, mounts and,
    /// when `ports` is not empty, its ports published at those host ports on `bind_ip`.
    fn container_body(
        &self,
        spec: &NodeSpec,
        ip: Ipv4Addr,
        labels: &HashMap<String, String>,
        binds: &[String],
        ports: &BTreeMap<u16, u16>,
        bind_ip: &str,
    ) -> ContainerCreateBody {
        let endpoint = EndpointSettings {
            ipam_config: Some(EndpointIpamConfig {
                ipv4_address: Some(ip.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let port_bindings = (!ports.is_empty()).then(|| {
            ports
                .iter()
                .map(|(p, h)| {
                    (
                        format!("{p}/tcp"),
                        Some(vec![PortBinding {
                            host_ip: Some(bind_ip.to_string()),
                            host_port: Some(h.to_string()),
                        }]),
                    )
                })
                .collect()
        });
        ContainerCreateBody {
            hostname: Some(spec.name.clone()),
            image: Some(spec.image.clone()),
            entrypoint: spec.entrypoint.clone(),
            cmd: Some(spec.cmd.clone()),
            env: Some(spec.env.clone()),
            labels: Some(labels.clone()),
            exposed_ports: (!ports.is_empty())
                .then(|| ports.keys().map(|p| format!("{p}/tcp")).collect()),
            host_config: Some(HostConfig {
                cap_add: Some(if spec.fuse {
                    vec!["NET_ADMIN".into(), "SYS_ADMIN".into()]
                } else {
                    vec!["NET_ADMIN".into()]
                }),
                devices: spec.fuse.then(|| {
                    vec![DeviceMapping {
                        path_on_host: Some("/dev/fuse".into()),
                        path_in_container: Some("/dev/fuse".into()),
                        cgroup_permissions: Some("rwm".into()),
                    }]
                }),
                binds: Some(binds.to_vec()),
                network_mode: Some(self.network.clone()),
                port_bindings,
                init: Some(true),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(self.network.clone(), endpoint)])),
            }),
            ..Default::default()
        }
    }

    /// The handle of a node by name.
    pub fn node(&self, name: &str) -> Option<NodeHandle> {
        self.nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|n| n.name == name)
            .cloned()
    }

    /// Empties a stopped node's data volume (a disk replaced): every entry of its data
    /// directory is deleted from a helper container ([`Cluster::run_on_volume`]).
    ///
    /// # Errors
    /// When the node is unknown, the engine refuses, or the deletion fails.
    pub async fn wipe(&self, node: &str) -> Result<(), ControlError> {
        let data_dir = self.handle(node)?.data_dir;
        let script = format!("find '{data_dir}' -mindepth 1 -delete");
        let out = self.run_on_volume(node, &["sh", "-c", &script]).await?;
        if out.code == 0 {
            Ok(())
        } else {
            Err(ControlError::Io {
                what: format!("wiping the data of {node}"),
                source: std::io::Error::other(out.stderr.trim().to_string()),
            })
        }
    }

    /// Runs a command inside a node and collects its output and exit code.
    ///
    /// # Errors
    /// When the node is unknown or the engine refuses the exec.
    pub async fn exec(&self, node: &str, cmd: &[&str]) -> Result<ExecOutput, ControlError> {
        let (docker, container) = self.container_of(node)?;
        exec_in(&docker, &container, cmd).await
    }

    /// Runs `cmd` in a short-lived container of the node's image with the node's data volume
    /// mounted where the node mounts it, no network, and the run label (so teardown removes it
    /// even if this call is cut short); waits for it, removes it and returns its output. For
    /// work on a stopped node's files (the `corrupt` fault).
    ///
    /// # Errors
    /// When the node is unknown or the engine refuses a step.
    pub async fn run_on_volume(
        &self,
        node: &str,
        cmd: &[&str],
    ) -> Result<ExecOutput, ControlError> {
        let h = self.handle(node)?;
        let name = format!("{}-aux", h.container);
        let docker = &self.engines.list[h.engine].docker;
        let labels = HashMap::from([
            (RUN_LABEL.to_string(), self.run_id.clone()),
            (ENGINE_LABEL.to_string(), h.engine_name.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(h.image.clone()),
            entrypoint: Some(cmd.iter().map(|s| s.to_string()).collect()),
            cmd: Some(Vec::new()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{}:{}", h.volume, h.data_dir)]),
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await
            .ctx(|| format!("creating {name}"))?;
        let result = async {
            docker
                .start_container(
                    &name,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
                .ctx(|| format!("starting {name}"))?;
            let mut wait = docker.wait_container(
                &name,
                None::<bollard::query_parameters::WaitContainerOptions>,
            );
            let code = match wait.next().await {
                Some(Ok(r)) => r.status_code,
                // A non-zero exit arrives as an error carrying the code.
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                Some(Err(e)) => return Err(e).ctx(|| format!("waiting for {name}")),
                None => -1,
            };
            let opts = bollard::query_parameters::LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .build();
            let mut stream = docker.logs(&name, Some(opts));
            let (mut stdout, mut stderr) = (String::new(), String::new());
            while let Some(chunk) = stream.next().await {
                match chunk.ctx(|| format!("reading the output of {name}"))? {
                    bollard::container::LogOutput::StdErr { message } => {
                        stderr.push_str(&String::from_utf8_lossy(&message))
                    }
                    other => stdout.push_str(&String::from_utf8_lossy(&other.into_bytes())),
                }
            }
            Ok(ExecOutput {
                code,
                stdout,
                stderr,
            })
        }
        .await;
        let removed = docker
            .remove_container(
                &name,
                Some(
                    bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .build(),
                ),
            )
            .await
            .ctx(|| format!("removing {name}"));
        let out = result?;
        removed?;
        Ok(out)
    }

    /// The handle of a node of this run, or an error naming it.
    fn handle(&self, node: &str) -> Result<NodeHandle, ControlError> {
        self.node(node).ok_or_else(|| ControlError::Io {
            what: format!("node {node}"),
            source: std::io::Error::other("no such node in this run"),
        })
    }

    /// The engine a node runs on, and its container.
    fn container_of(&self, node: &str) -> Result<(Docker, String), ControlError> {
        let n = self.handle(node)?;
        Ok((self.engines.list[n.engine].docker.clone(), n.container))
    }

    /// Sends a signal to the node's main process (`SIGKILL` for a crash). The container stops
    /// when its process dies; its data volume stays.
    ///
    /// # Errors
    /// When the node is unknown or the engine refuses (e.g. the container is not running).
    pub async fn kill(&self, node: &str, signal: &str) -> Result<(), ControlError> {
        let (docker, c) = self.container_of(node)?;
        docker
            .kill_container(
                &c,
                Some(
                    bollard::query_parameters::KillContainerOptionsBuilder::default()
                        .signal(signal)
                        .build(),
                ),
            )
            .await
            .ctx(|| format!("sending {signal} to {c}"))
    }

    /// Starts a stopped node again (same container, same volume, same address).
    ///
    /// # Errors
    /// When the node is unknown or the engine refuses.
    pub async fn start(&self, node: &str) -> Result<(), ControlError> {
        let (docker, c) = self.container_of(node)?;
        docker
            .start_container(&c, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .ctx(|| format!("starting {c}"))
    }

    /// Freezes every process of the node (cgroup freezer, `docker pause`).
    ///
    /// # Errors
    /// When the node is unknown or the engine refuses (e.g. already paused).
    pub async fn pause(&self, node: &str) -> Result<(), ControlError> {
        let (docker, c) = self.container_of(node)?;
        docker
            .pause_container(&c)
            .await
            .ctx(|| format!("pausing {c}"))
    }

    /// Thaws a paused node.
    ///
    /// # Errors
    /// When the node is unknown or the engine refuses (e.g. not paused).
    pub async fn unpause(&self, node: &str) -> Result<(), ControlError> {
        let (docker, c) = self.container_of(node)?;
        docker
            .unpause_container(&c)
            .await
            .ctx(|| format!("unpausing {c}"))
    }

    /// The node's container state: `running`, `paused`, `exited`, ...
    ///
    /// # Errors
    /// When the node is unknown or the engine refuses.
    pub async fn state(&self, node: &str) -> Result<String, ControlError> {
        Ok(self
            .inspect(node)
            .await?
            .state
            .and_then(|s| s.status)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into()))
    }

    /// Whether the node is about to be started again: it has just exited at a raftkv
    /// failpoint ([`FAILPOINT_EXIT`]) and restarts on failure (the restarter starts it).
    /// False for a node the nemesis killed, or one the engine does not know.
    pub async fn coming_back(&self, node: &str) -> bool {
        if !self.node(node).is_some_and(|h| h.restart_on_failure) {
            return false;
        }
        let Ok(i) = self.inspect(node).await else {
            return false;
        };
        let state = i.state.unwrap_or_default();
        state.running != Some(true) && state.exit_code == Some(i64::from(FAILPOINT_EXIT))
    }

    /// The `die` events of this run's containers, from every engine, each with the engine it
    /// came from (filtered by the engine's label too, so two entries naming one daemon do not
    /// report each container twice).
    fn die_events(
        &self,
    ) -> impl futures_util::Stream<Item = (Docker, bollard::models::EventMessage)> + use<> {
        let streams = self.engines.list.iter().map(|e| {
            let filters = HashMap::from([
                ("type", vec!["container".to_string()]),
                ("event", vec!["die".to_string()]),
                (
                    "label",
                    vec![
                        format!("{RUN_LABEL}={}", self.run_id),
                        format!("{ENGINE_LABEL}={}", e.name()),
                    ],
                ),
            ]);
            let options = bollard::query_parameters::EventsOptionsBuilder::default()
                .filters(&filters)
                .build();
            let docker = e.docker.clone();
            e.docker
                .events(Some(options))
                .filter_map(move |ev| std::future::ready(ev.ok().map(|ev| (docker.clone(), ev))))
                .boxed()
        });
        futures_util::stream::select_all(streams)
    }

    /// Starts again, at once, every container of this run that exits at a raftkv failpoint
    /// (exit code [`FAILPOINT_EXIT`]; only nodes armed with failpoints, which have
    /// `restart_on_failure`, exit so), for as long as the returned future runs; the count of
    /// such restarts is shared through `restarts`. The engines' events are followed from the
    /// first poll, so the runner spawns it before it starts any node: a node may crash at its
    /// first election, before the last node is up. A start the engine refuses is logged and
    /// skipped.
    pub fn restart_failpoint_exits(
        &self,
        restarts: Arc<AtomicU64>,
    ) -> impl Future<Output = ()> + Send + 'static + use<> {
        let events = self.die_events();
        let code = FAILPOINT_EXIT.to_string();
        async move {
            let mut events = std::pin::pin!(events);
            while let Some((docker, ev)) = events.next().await {
                let Some(attrs) = ev.actor.and_then(|a| a.attributes) else {
                    continue;
                };
                let (Some(c), true) = (attrs.get("name"), attrs.get("exitCode") == Some(&code))
                else {
                    continue;
                };
                match docker
                    .start_container(c, None::<bollard::query_parameters::StartContainerOptions>)
                    .await
                {
                    Ok(()) => {
                        restarts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(container = %c, error = %e, "restarting a node that exited at a failpoint")
                    }
                }
            }
        }
    }

    async fn inspect(
        &self,
        node: &str,
    ) -> Result<bollard::models::ContainerInspectResponse, ControlError> {
        let (docker, c) = self.container_of(node)?;
        docker
            .inspect_container(
                &c,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .ctx(|| format!("inspecting {c}"))
    }

    /// The names of nodes whose process exits by itself with `code` (raftkv's failpoints exit
    /// with [`FAILPOINT_EXIT`]), as the engine reports them, from now on. A `docker kill`
    /// (exit 137) is not reported for another code. The stream ends if the engine closes it.
    pub fn exits_with(&self, code: i32) -> impl futures_util::Stream<Item = String> + use<> {
        let code = code.to_string();
        self.die_events().filter_map(move |(_, ev)| {
            let node = ev.actor.and_then(|a| a.attributes).and_then(|attrs| {
                (attrs.get("exitCode") == Some(&code))
                    .then(|| attrs.get("faultline.node").cloned())
                    .flatten()
            });
            std::future::ready(node)
        })
    }

    /// Everything the node's container has written to stdout and stderr so far (all its starts).
    ///
    /// # Errors
    /// When the node is unknown or the engine refuses.
    pub async fn logs(&self, node: &str) -> Result<Vec<u8>, ControlError> {
        let (docker, c) = self.container_of(node)?;
        let opts = bollard::query_parameters::LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .build();
        let mut stream = docker.logs(&c, Some(opts));
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.ctx(|| format!("reading logs of {c}"))?.into_bytes());
        }
        Ok(out)
    }

    /// Follows a node's output into `path` while the run goes on, across kills and restarts
    /// (Docker keeps one log per container, so each new follow starts from the beginning and the
    /// bytes already written are skipped). Ends when `stop` is cancelled.
    pub async fn stream_logs(
        &self,
        node: &str,
        path: &std::path::Path,
        stop: tokio_util::sync::CancellationToken,
    ) {
        use std::io::Write;
        let Ok((docker, c)) = self.container_of(node) else {
            return;
        };
        let Ok(mut file) = std::fs::File::create(path) else {
            return;
        };
        let mut written = 0usize;
        while !stop.is_cancelled() {
            let opts = bollard::query_parameters::LogsOptionsBuilder::default()
                .follow(true)
                .stdout(true)
                .stderr(true)
                .build();
            let mut stream = docker.logs(&c, Some(opts));
            let mut seen = 0usize;
            loop {
                let chunk = tokio::select! {
                    _ = stop.cancelled() => return,
                    chunk = stream.next() => chunk,
                };
                let Some(Ok(chunk)) = chunk else { break };
                let bytes = chunk.into_bytes();
                let skip = written.saturating_sub(seen).min(bytes.len());
                seen += bytes.len();
                if skip < bytes.len()
                    && file
                        .write_all(&bytes[skip..])
                        .and_then(|()| file.flush())
                        .is_ok()
                {
                    written += bytes.len() - skip;
                }
            }
            // The container stopped (killed by the nemesis); follow it again once it restarts.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            }
        }
    }

    /// The engine of node `name` (the first engine for a name not in this run).
    pub fn docker_of(&self, name: &str) -> &Docker {
        let i = self.node(name).map_or(0, |n| n.engine);
        &self.engines.list[i].docker
    }

    /// Whether every engine of the run answers a ping within 2 s.
    pub async fn engines_answer(&self) -> bool {
        let pings = self.engines.list.iter().map(|e| async {
            matches!(
                tokio::time::timeout(std::time::Duration::from_secs(2), e.docker.ping()).await,
                Ok(Ok(_))
            )
        });
        futures_util::future::join_all(pings)
            .await
            .into_iter()
            .all(|ok| ok)
    }

    /// The run's engines.
    pub fn engines(&self) -> &Engines {
        &self.engines
    }

    /// Removes every container, volume and network of this run.
    ///
    /// # Errors
    /// When the engine refuses a removal.
    pub async fn teardown(&self) -> Result<Leftovers, ControlError> {
        super::clean::clean_engines(&self.engines.list, Some(&self.run_id)).await
    }
}

/// Copies a folder of the harness into a created container, for an engine that does not see the
/// harness's files: `bind` is a bind mount, `host:container[:ro]`; the folder's files land at
/// the container path.
async fn copy_into(engine: &Engine, container: &str, bind: &str) -> Result<(), ControlError> {
    let mut parts = bind.splitn(3, ':');
    let (Some(host), Some(inside)) = (parts.next(), parts.next()) else {
        return Err(ControlError::Io {
            what: format!("copying {bind} into {container}"),
            source: std::io::Error::other("not a bind mount host:container"),
        });
    };
    let io = |source| ControlError::Io {
        what: format!("packing {host} for {container}"),
        source,
    };
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Complete);
    let path = std::path::Path::new(host);
    if path.is_dir() {
        tar.append_dir_all(inside.trim_start_matches('/'), path)
            .map_err(io)?;
    } else {
        tar.append_path_with_name(path, inside.trim_start_matches('/'))
            .map_err(io)?;
    }
    let bytes = tar.into_inner().map_err(io)?;
    engine
        .docker
        .upload_to_container(
            container,
            Some(
                bollard::query_parameters::UploadToContainerOptionsBuilder::default()
                    .path("/")
                    .build(),
            ),
            bollard::body_full(bytes.into()),
        )
        .await
        .ctx(|| {
            format!(
                "copying {host} into {container}:{inside} on engine {}",
                engine.name()
            )
        })
}

/// Runs a command in a container, returning its output and exit code.
pub(crate) async fn exec_in(
    docker: &Docker,
    container: &str,
    cmd: &[&str],
) -> Result<ExecOutput, ControlError> {
    let what = || format!("running `{}` in {container}", cmd.join(" "));
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            },
        )
        .await
        .ctx(what)?;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.ctx(what)?
    {
        while let Some(chunk) = output.next().await {
            match chunk.ctx(what)? {
                bollard::container::LogOutput::StdErr { message } => {
                    stderr.push_str(&String::from_utf8_lossy(&message))
                }
                other => stdout.push_str(&String::from_utf8_lossy(&other.into_bytes())),
            }
        }
    }
    let code = docker
        .inspect_exec(&exec.id)
        .await
        .ctx(what)?
        .exit_code
        .unwrap_or(-1);
    Ok(ExecOutput {
        code,
        stdout,
        stderr,
    })
}
