//! One run's cluster: a fresh network, and one container per node with a static address, a data
//! volume, `CAP_NET_ADMIN` (for iptables faults inside the node's own network namespace) and the
//! run label. Teardown removes everything with the run's label, so it also catches objects whose
//! handles were lost halfway through a failed start.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointIpamConfig, EndpointSettings, HostConfig,
    NetworkingConfig, VolumeCreateRequest,
};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use futures_util::StreamExt;

use super::net::{Subnet, create_network};
use super::{ControlError, DockerContext, Leftovers, RUN_LABEL, clean};

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
    docker: Docker,
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
    /// Creates the run's network (no containers yet).
    ///
    /// # Errors
    /// When the engine refuses or no free subnet is found.
    pub async fn create(docker: &Docker, run_id: &str) -> Result<Self, ControlError> {
        let network = format!("fl-{run_id}");
        let subnet = create_network(docker, run_id, &network).await?;
        Ok(Self {
            docker: docker.clone(),
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
        let ip = self.address_of(self.started());
        let labels = HashMap::from([
            (RUN_LABEL.to_string(), self.run_id.clone()),
            ("faultline.node".to_string(), spec.name.clone()),
        ]);
        let container = format!("fl-{}-{}", self.run_id, spec.name);
        let volume = format!("{container}-data");
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(volume.clone()),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .ctx(|| format!("creating volume {volume}"))?;
        let mut binds = spec.binds.clone();
        binds.push(format!("{volume}:{}", spec.data_dir));
        let endpoint = EndpointSettings {
            ipam_config: Some(EndpointIpamConfig {
                ipv4_address: Some(ip.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            hostname: Some(spec.name.clone()),
            image: Some(spec.image.clone()),
            entrypoint: spec.entrypoint.clone(),
            cmd: Some(spec.cmd.clone()),
            env: Some(spec.env.clone()),
            labels: Some(labels),
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
                binds: Some(binds),
                network_mode: Some(self.network.clone()),
                init: Some(true),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(self.network.clone(), endpoint)])),
            }),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::default()
                        .name(&container)
                        .build(),
                ),
                body,
            )
            .await
            .ctx(|| format!("creating container {container} from {}", spec.image))?;
        self.docker
            .start_container(
                &container,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .ctx(|| format!("starting container {container}"))?;
        let handle = NodeHandle {
            name: spec.name,
            container,
            ip,
            restart_on_failure: spec.restart_on_failure,
            image: spec.image,
            volume,
            data_dir: spec.data_dir,
        };
        self.nodes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle.clone());
        Ok(handle)
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
        let data_dir = self
            .node(node)
            .map(|h| h.data_dir)
            .ok_or_else(|| ControlError::Io {
                what: format!("node {node}"),
                source: std::io::Error::other("no such node in this run"),
            })?;
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
        let container = self
            .node(node)
            .map(|n| n.container.clone())
            .ok_or_else(|| ControlError::Io {
                what: format!("exec in {node}"),
                source: std::io::Error::other("no such node"),
            })?;
        exec_in(&self.docker, &container, cmd).await
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
        let h = self.node(node).ok_or_else(|| ControlError::Io {
            what: format!("node {node}"),
            source: std::io::Error::other("no such node in this run"),
        })?;
        let name = format!("{}-aux", h.container);
        let labels = HashMap::from([(RUN_LABEL.to_string(), self.run_id.clone())]);
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
        self.docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await
            .ctx(|| format!("creating {name}"))?;
        let result = async {
            self.docker
                .start_container(
                    &name,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
                .ctx(|| format!("starting {name}"))?;
            let mut wait = self.docker.wait_container(
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
            let mut stream = self.docker.logs(&name, Some(opts));
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
        let removed = self
            .docker
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

    fn container_of(&self, node: &str) -> Result<String, ControlError> {
        self.node(node)
            .map(|n| n.container.clone())
            .ok_or_else(|| ControlError::Io {
                what: format!("node {node}"),
                source: std::io::Error::other("no such node in this run"),
            })
    }

    /// Sends a signal to the node's main process (`SIGKILL` for a crash). The container stops
    /// when its process dies; its data volume stays.
    ///
    /// # Errors
    /// When the node is unknown or the engine refuses (e.g. the container is not running).
    pub async fn kill(&self, node: &str, signal: &str) -> Result<(), ControlError> {
        let c = self.container_of(node)?;
        self.docker
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
        let c = self.container_of(node)?;
        self.docker
            .start_container(&c, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .ctx(|| format!("starting {c}"))
    }

    /// Freezes every process of the node (cgroup freezer, `docker pause`).
    ///
    /// # Errors
    /// When the node is unknown or the engine refuses (e.g. already paused).
    pub async fn pause(&self, node: &str) -> Result<(), ControlError> {
        let c = self.container_of(node)?;
        self.docker
            .pause_container(&c)
            .await
            .ctx(|| format!("pausing {c}"))
    }

    /// Thaws a paused node.
    ///
    /// # Errors
    /// When the node is unknown or the engine refuses (e.g. not paused).
    pub async fn unpause(&self, node: &str) -> Result<(), ControlError> {
        let c = self.container_of(node)?;
        self.docker
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

    /// The engine's `die` events of this run's containers.
    fn die_events(&self) -> bollard::query_parameters::EventsOptions {
        let filters = HashMap::from([
            ("type", vec!["container".to_string()]),
            ("event", vec!["die".to_string()]),
            ("label", vec![format!("{RUN_LABEL}={}", self.run_id)]),
        ]);
        bollard::query_parameters::EventsOptionsBuilder::default()
            .filters(&filters)
            .build()
    }

    /// Starts again, at once, every container of this run that exits at a raftkv failpoint
    /// (exit code [`FAILPOINT_EXIT`]; only nodes armed with failpoints, which have
    /// `restart_on_failure`, exit so), for as long as the returned future runs; the count of
    /// such restarts is shared through `restarts`. The engine's events are followed from the
    /// first poll, so the runner spawns it before it starts any node: a node may crash at its
    /// first election, before the last node is up. A start the engine refuses is logged and
    /// skipped.
    pub fn restart_failpoint_exits(
        &self,
        restarts: Arc<AtomicU64>,
    ) -> impl Future<Output = ()> + Send + 'static + use<> {
        let options = self.die_events();
        let docker = self.docker.clone();
        let code = FAILPOINT_EXIT.to_string();
        async move {
            let mut events = std::pin::pin!(docker.events(Some(options)));
            while let Some(ev) = events.next().await {
                let Some(attrs) = ev.ok().and_then(|ev| ev.actor?.attributes) else {
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
        let c = self.container_of(node)?;
        self.docker
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
        let options = self.die_events();
        let code = code.to_string();
        self.docker.events(Some(options)).filter_map(move |ev| {
            let node = ev.ok().and_then(|ev| {
                let attrs = ev.actor?.attributes?;
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
        let c = self.container_of(node)?;
        let opts = bollard::query_parameters::LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .build();
        let mut stream = self.docker.logs(&c, Some(opts));
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
        let Ok(c) = self.container_of(node) else {
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
            let mut stream = self.docker.logs(&c, Some(opts));
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

    /// The Docker client, for operations this type does not wrap.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Removes every container, volume and network of this run.
    ///
    /// # Errors
    /// When the engine refuses a removal.
    pub async fn teardown(&self) -> Result<Leftovers, ControlError> {
        clean(&self.docker, Some(&self.run_id)).await
    }
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
