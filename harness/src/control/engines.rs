//! Docker engines as configuration: `--engines FILE` lists the engines a run (or a matrix) may
//! use, and where each node goes. One engine on the local socket with a bridge network is what a
//! run uses without the file, exactly as before.
//!
//! ```toml
//! network = "overlay"            # "bridge" (one engine only) or "overlay" (a Swarm network)
//!
//! [[engine]]
//! name = "a"
//! host = "unix:///var/run/docker.sock"
//! advertise-addr = "10.0.0.1"    # the address other hosts reach this one at (swarm init)
//!
//! [[engine]]
//! name = "b"
//! host = "tcp://10.0.0.2:2376"
//! tls-dir = "/home/me/.docker/b" # ca.pem, cert.pem, key.pem, as `docker --tlsverify` uses
//! nodes = ["n3"]                 # pinned here; the other nodes go round robin
//! ```
//!
//! How the harness reaches a node's ports: on a bridge network of an engine on the local socket,
//! at the node's own address, as always. Otherwise (an overlay network, or an engine over TCP,
//! whose bridge is on another host) every port of the node is published on its engine's host at a
//! fixed host port (so it stays the same when the nemesis kills and restarts the node), and the
//! harness dials `address:port`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bollard::{API_DEFAULT_VERSION, Docker};
use futures_util::StreamExt;
use serde::Deserialize;

use super::{ControlError, DockerContext, is_not_found};

/// How long one request to an engine may take (an image export of a few hundred MB included).
const REQUEST_TIMEOUT_S: u64 = 900;

/// The network a run's nodes share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkKind {
    /// A bridge network on the one engine (today's default).
    Bridge,
    /// An attachable Swarm overlay network, made on the first engine (a swarm manager).
    Overlay,
}

impl NetworkKind {
    /// `bridge` or `overlay`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Overlay => "overlay",
        }
    }
}

/// One `[[engine]]` entry.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EngineSpec {
    /// A short name, unique in the file (containers carry it as `faultline.engine`).
    pub name: String,
    /// `unix:///var/run/docker.sock` or `tcp://HOST:PORT`.
    pub host: String,
    /// A folder with `ca.pem`, `cert.pem` and `key.pem` (Docker's TLS client files): the engine is
    /// reached over HTTPS with that client certificate. Only for `tcp://`.
    #[serde(default)]
    pub tls_dir: Option<PathBuf>,
    /// Where the harness reaches ports published on this engine's host [default: the host of
    /// `tcp://HOST:PORT`, or 127.0.0.1 for the local socket].
    #[serde(default)]
    pub address: Option<String>,
    /// The address the other engines reach this one at, for `faultline swarm init` [default: the
    /// host of `tcp://HOST:PORT`, or 127.0.0.1 for the local socket].
    #[serde(default)]
    pub advertise_addr: Option<String>,
    /// Nodes pinned to this engine (`n1`, `n2`, ...).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Whether the engine sees the harness's files, so that bind mounts of the harness's folders
    /// work [default: true for the local socket, false for TCP]. When false, the folders a node
    /// would mount (its certificates, its clock file) are copied into the container before it
    /// starts, and faults that write into them during the run (clock) are refused.
    #[serde(default)]
    pub shares_files: Option<bool>,
}

impl EngineSpec {
    /// The engine on the local socket (`DOCKER_HOST` when set), as a run without `--engines` uses.
    pub fn local() -> Self {
        Self::local_at(std::env::var("DOCKER_HOST").ok())
    }

    /// The engine a run without `--engines` uses when `DOCKER_HOST` is `docker_host`: the local
    /// socket by default; a `DOCKER_HOST` on this machine's loopback shares the harness's files.
    fn local_at(docker_host: Option<String>) -> Self {
        let host = docker_host.unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let mut spec = Self {
            name: "local".into(),
            host,
            tls_dir: None,
            address: None,
            advertise_addr: None,
            nodes: Vec::new(),
            shares_files: None,
        };
        if spec.tcp_host().is_some_and(|h| {
            h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
        }) {
            spec.shares_files = Some(true);
        }
        spec
    }

    fn is_unix(&self) -> bool {
        self.host.starts_with("unix://")
    }

    /// The host part of a `tcp://HOST:PORT` address.
    fn tcp_host(&self) -> Option<&str> {
        let rest = self.host.strip_prefix("tcp://")?;
        Some(match rest.rsplit_once(':') {
            Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
            None => rest,
        })
    }

    /// Where published ports of this engine are reached.
    pub fn reach_address(&self) -> String {
        self.address
            .clone()
            .or_else(|| self.tcp_host().map(str::to_string))
            .unwrap_or_else(|| "127.0.0.1".into())
    }

    /// The address other engines reach this one at.
    pub fn advertise(&self) -> String {
        self.advertise_addr
            .clone()
            .or_else(|| self.tcp_host().map(str::to_string))
            .unwrap_or_else(|| "127.0.0.1".into())
    }

    /// Whether bind mounts of the harness's folders work on this engine.
    pub fn shares(&self) -> bool {
        self.shares_files.unwrap_or_else(|| self.is_unix())
    }
}

/// An engines file: the engines, and the network their nodes share.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EnginesFile {
    /// The network [default: bridge with one engine, overlay with several].
    #[serde(default)]
    pub network: Option<NetworkKind>,
    /// The engines, in order: the first builds the images and holds the overlay network.
    #[serde(rename = "engine", default)]
    pub engines: Vec<EngineSpec>,
    /// Where the file was read from (for messages).
    #[serde(skip)]
    pub file: Option<PathBuf>,
    /// Where images are built when not on the first engine (a matrix cell on another engine
    /// still has its images built on the file's first engine).
    #[serde(skip)]
    pub build: Option<EngineSpec>,
}

impl EnginesFile {
    /// The local engine alone, on a bridge network: a run without `--engines`.
    pub fn local() -> Self {
        Self {
            network: Some(NetworkKind::Bridge),
            engines: vec![EngineSpec::local()],
            file: None,
            build: None,
        }
    }

    /// Reads and validates an engines file.
    ///
    /// # Errors
    /// Naming the file, the line and the field.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{file}: cannot read it: {e}"))?;
        let mut f = Self::parse(&text, &file)?;
        f.file = Some(path.to_path_buf());
        Ok(f)
    }

    /// Parses and validates the text of an engines file; `file` names it in errors.
    ///
    /// # Errors
    /// Naming the file, the line and the field.
    pub fn parse(text: &str, file: &str) -> anyhow::Result<Self> {
        let f: Self = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{file}: {}", crate::workload::parse_message(text, &e)))?;
        f.validate().map_err(|(field, needle, message)| {
            match crate::target::line_of(text, field, needle.as_deref()) {
                Some(line) => anyhow::anyhow!("{file}: line {line}: field `{field}`: {message}"),
                None => anyhow::anyhow!("{file}: field `{field}`: {message}"),
            }
        })?;
        Ok(f)
    }

    fn validate(&self) -> Result<(), (&'static str, Option<String>, String)> {
        if self.engines.is_empty() {
            return Err(("engine", None, "no `[[engine]]` is listed".into()));
        }
        let mut names = std::collections::HashSet::new();
        let mut pinned = HashMap::new();
        for e in &self.engines {
            if e.name.is_empty()
                || !e
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err((
                    "engine.name",
                    Some(format!("\"{}\"", e.name)),
                    format!("'{}': letters, digits, '-' and '_' only, not empty", e.name),
                ));
            }
            if !names.insert(e.name.clone()) {
                return Err((
                    "engine.name",
                    Some(format!("\"{}\"", e.name)),
                    format!("'{}' is listed twice", e.name),
                ));
            }
            if !(e.is_unix() || e.tcp_host().is_some_and(|h| !h.is_empty())) {
                return Err((
                    "engine.host",
                    Some(e.host.clone()),
                    format!(
                        "'{}': expected unix:///PATH or tcp://HOST:PORT (engine {})",
                        e.host, e.name
                    ),
                ));
            }
            if let Some(d) = &e.tls_dir {
                let needle = Some(d.display().to_string());
                if e.is_unix() {
                    return Err((
                        "engine.tls-dir",
                        needle,
                        format!("engine {}: TLS is for tcp:// engines", e.name),
                    ));
                }
                for f in ["ca.pem", "cert.pem", "key.pem"] {
                    if !d.join(f).is_file() {
                        return Err((
                            "engine.tls-dir",
                            needle,
                            format!("engine {}: no {f} in {}", e.name, d.display()),
                        ));
                    }
                }
            }
            for n in &e.nodes {
                let ok = n
                    .strip_prefix('n')
                    .and_then(|i| i.parse::<usize>().ok())
                    .is_some_and(|i| i >= 1);
                if !ok {
                    return Err((
                        "engine.nodes",
                        Some(format!("\"{n}\"")),
                        format!("'{n}' is not a node name (n1, n2, ...)"),
                    ));
                }
                if let Some(other) = pinned.insert(n.clone(), e.name.clone()) {
                    return Err((
                        "engine.nodes",
                        Some(format!("\"{n}\"")),
                        format!("{n} is pinned to both {other} and {}", e.name),
                    ));
                }
            }
        }
        if self.engines.len() > 1 && self.network == Some(NetworkKind::Bridge) {
            return Err((
                "network",
                Some("bridge".into()),
                "a bridge network does not span engines: with several engines the network is \"overlay\" (run `faultline swarm init` first)".into(),
            ));
        }
        Ok(())
    }

    /// The network the nodes share.
    pub fn network(&self) -> NetworkKind {
        self.network.unwrap_or(if self.engines.len() > 1 {
            NetworkKind::Overlay
        } else {
            NetworkKind::Bridge
        })
    }

    /// The same file with only engine `i`, on a bridge network (a matrix cell); images are
    /// still built on the first engine.
    pub fn only(&self, i: usize) -> Self {
        let mut e = self.engines[i].clone();
        e.nodes.clear();
        Self {
            network: Some(NetworkKind::Bridge),
            engines: vec![e],
            file: self.file.clone(),
            build: (i > 0).then(|| self.engines[0].clone()),
        }
    }
}

/// A connected engine.
#[derive(Clone)]
pub struct Engine {
    /// Its entry.
    pub spec: EngineSpec,
    /// The connection.
    pub docker: Docker,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.spec.name)
            .field("host", &self.spec.host)
            .finish()
    }
}

impl Engine {
    /// Connects to the engine and agrees on an API version with it.
    ///
    /// # Errors
    /// [`ControlError::NoEngine`] naming the engine and its address.
    pub async fn connect(spec: &EngineSpec) -> Result<Self, ControlError> {
        let no_engine = |e: bollard::errors::Error| ControlError::NoEngine {
            addr: format!("{} (engine {})", spec.host, spec.name),
            reason: e.to_string(),
        };
        let docker = if let Some(path) = spec.host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, REQUEST_TIMEOUT_S, API_DEFAULT_VERSION)
        } else if let Some(d) = &spec.tls_dir {
            Docker::connect_with_ssl(
                &spec.host,
                &d.join("key.pem"),
                &d.join("cert.pem"),
                &d.join("ca.pem"),
                REQUEST_TIMEOUT_S,
                API_DEFAULT_VERSION,
            )
        } else {
            Docker::connect_with_http(&spec.host, REQUEST_TIMEOUT_S, API_DEFAULT_VERSION)
        }
        .map_err(no_engine)?;
        let docker = docker.negotiate_version().await.map_err(no_engine)?;
        docker.ping().await.map_err(no_engine)?;
        Ok(Self {
            spec: spec.clone(),
            docker,
        })
    }

    /// The engine's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The engine's own id (two entries may name one daemon: the same id).
    ///
    /// # Errors
    /// When the engine does not answer.
    pub async fn daemon_id(&self) -> Result<String, ControlError> {
        let info = self
            .docker
            .info()
            .await
            .ctx(|| format!("asking engine {} who it is", self.name()))?;
        Ok(info.id.unwrap_or_default())
    }

    /// Whether this engine has the image.
    ///
    /// # Errors
    /// When the engine refuses the question.
    pub async fn has_image(&self, image: &str) -> Result<bool, ControlError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e).ctx(|| format!("looking for {image} on engine {}", self.name())),
        }
    }
}

/// The engines of a run: connected, with the network kind and the engine images are built on.
#[derive(Clone, Debug)]
pub struct Engines {
    /// The file they came from (or [`EnginesFile::local`]); the teardown guard reconnects from it.
    pub file: EnginesFile,
    /// The engines nodes run on.
    pub list: Vec<Engine>,
    /// Where images are built; they are copied from here to every engine in `list` that lacks
    /// them.
    pub build: Engine,
}

/// One image copy at a time in this process (parallel matrix cells may want the same image on
/// the same engine).
static COPYING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Engines {
    /// Connects to every engine of the file; images are built on the first.
    ///
    /// # Errors
    /// The first engine that does not answer.
    pub async fn connect(file: &EnginesFile) -> Result<Self, ControlError> {
        let mut list = Vec::new();
        for spec in &file.engines {
            list.push(Engine::connect(spec).await?);
        }
        let build = match &file.build {
            Some(spec) => Engine::connect(spec).await?,
            None => list[0].clone(),
        };
        Ok(Self {
            file: file.clone(),
            list,
            build,
        })
    }

    /// The local engine alone, on a connection already made.
    pub fn of_local(docker: Docker) -> Self {
        let e = Engine {
            spec: EngineSpec::local(),
            docker,
        };
        Self {
            file: EnginesFile::local(),
            list: vec![e.clone()],
            build: e,
        }
    }

    /// The local engine alone (a run without `--engines`), connected.
    ///
    /// # Errors
    /// When it does not answer.
    pub async fn local() -> Result<Self, ControlError> {
        Self::connect(&EnginesFile::local()).await
    }

    /// The network kind.
    pub fn network(&self) -> NetworkKind {
        self.file.network()
    }

    /// The engine node `name` (0-based index `i`) runs on: the one it is pinned to, else round
    /// robin by index.
    pub fn place(&self, name: &str, i: usize) -> usize {
        self.list
            .iter()
            .position(|e| e.spec.nodes.iter().any(|n| n == name))
            .unwrap_or(i % self.list.len())
    }

    /// Whether the harness reaches nodes of engine `i` through published ports (not at the
    /// node's own address).
    pub fn publishes(&self, i: usize) -> bool {
        self.network() == NetworkKind::Overlay || !self.list[i].spec.is_unix()
    }

    /// Makes sure every engine has `image`, copying it from the build engine (`docker save` there,
    /// `docker load` here, streamed through the API: no registry) where it is missing. Returns
    /// the engines it was copied to.
    ///
    /// # Errors
    /// When an engine refuses the export or the load.
    pub async fn distribute(&self, image: &str) -> Result<Vec<String>, ControlError> {
        let mut copied = Vec::new();
        for e in &self.list {
            let _one = COPYING.lock().await;
            if e.has_image(image).await? {
                continue;
            }
            copy_image(&self.build, e, image).await?;
            copied.push(e.name().to_string());
        }
        Ok(copied)
    }
}

/// Streams `image` from one engine's `docker save` into another's `docker load`, and checks that
/// it arrived.
///
/// # Errors
/// When either engine refuses, or the image is not there afterwards.
pub async fn copy_image(from: &Engine, to: &Engine, image: &str) -> Result<(), ControlError> {
    load_image(to, save_image(from, image), image)
        .await
        .map_err(|e| ControlError::Build {
            tag: image.to_string(),
            reason: format!(
                "copying it from engine {} to engine {}: {e}",
                from.name(),
                to.name()
            ),
        })
}

/// `docker save IMAGE` on an engine, as a stream of tar bytes.
pub fn save_image(
    from: &Engine,
    image: &str,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, bollard::errors::Error>> + use<> {
    from.docker.export_image(image)
}

/// `docker load` of a saved image's tar stream on an engine; checks that `image` is there
/// afterwards.
///
/// # Errors
/// When the engine refuses the load or does not list `image` after it.
pub async fn load_image<S, E>(to: &Engine, tar: S, image: &str) -> Result<(), ControlError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let what = || format!("loading {image} into engine {}", to.name());
    let mut load = to.docker.import_image_stream(
        bollard::query_parameters::ImportImageOptionsBuilder::default()
            .quiet(true)
            .build(),
        tar,
        None,
    );
    while let Some(step) = load.next().await {
        let step = step.ctx(what)?;
        if let Some(err) = step.error_detail.and_then(|d| d.message) {
            return Err(ControlError::Build {
                tag: image.to_string(),
                reason: format!("{}: {err}", what()),
            });
        }
    }
    if !to.has_image(image).await? {
        return Err(ControlError::Build {
            tag: image.to_string(),
            reason: format!("{}: the engine loaded it but does not list it", what()),
        });
    }
    Ok(())
}

/// The ports of one node published on its engine's host: host port
/// `FIRST_HOST_PORT + 4 * slot + k` for the node's `k`-th port. A slot is tried per node, from a
/// place derived from the run and the node, until the engine accepts it.
pub const FIRST_HOST_PORT: u16 = 20000;
/// Host ports per node (at most this many of a target's ports are published).
pub const PORTS_PER_NODE: u16 = 4;
/// Slots: host ports 20000 .. 32767, below Linux's ephemeral range.
const SLOTS: u16 = (32768 - FIRST_HOST_PORT) / PORTS_PER_NODE;

/// The host ports of `slot` for `ports` (in order).
pub fn host_ports(slot: u16, ports: &[u16]) -> BTreeMap<u16, u16> {
    ports
        .iter()
        .enumerate()
        .map(|(k, &p)| {
            (
                p,
                FIRST_HOST_PORT + (slot % SLOTS) * PORTS_PER_NODE + k as u16,
            )
        })
        .collect()
}

/// The slots to try for a node, in order: every slot once, from a start derived from the run
/// and the node so that concurrent runs rarely collide.
pub fn slots(run_id: &str, node: &str) -> impl Iterator<Item = u16> + use<> {
    let start = run_id
        .bytes()
        .chain(node.bytes())
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let start = (start % u32::from(SLOTS)) as u16;
    (0..SLOTS).map(move |i| (start + i) % SLOTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<EnginesFile> {
        EnginesFile::parse(text, "engines.toml")
    }

    #[test]
    fn a_two_engine_file_places_pinned_nodes_and_the_rest_round_robin() {
        let f = parse(
            r#"
[[engine]]
name = "a"
host = "unix:///var/run/docker.sock"

[[engine]]
name = "b"
host = "tcp://10.0.0.2:2375"
nodes = ["n1"]
"#,
        )
        .unwrap();
        assert_eq!(f.network(), NetworkKind::Overlay);
        assert_eq!(f.engines[1].reach_address(), "10.0.0.2");
        assert_eq!(f.engines[0].reach_address(), "127.0.0.1");
        assert_eq!(f.engines[1].advertise(), "10.0.0.2");
        assert!(f.engines[0].shares());
        assert!(!f.engines[1].shares());
        let only = f.only(1);
        assert_eq!(only.network(), NetworkKind::Bridge);
        assert!(only.engines[0].nodes.is_empty());
        assert_eq!(only.engines[0].name, "b");
    }

    #[test]
    fn the_default_engine_follows_docker_host_and_a_loopback_one_shares_files() {
        let socket = EngineSpec::local_at(None);
        assert_eq!(socket.host, "unix:///var/run/docker.sock");
        assert!(socket.shares());
        let loopback = EngineSpec::local_at(Some("tcp://127.0.0.1:2375".into()));
        assert!(loopback.shares());
        assert_eq!(loopback.reach_address(), "127.0.0.1");
        assert!(EngineSpec::local_at(Some("tcp://localhost:2375".into())).shares());
        let remote = EngineSpec::local_at(Some("tcp://10.0.0.5:2376".into()));
        assert!(!remote.shares());
        assert_eq!(remote.reach_address(), "10.0.0.5");
    }

    #[test]
    fn bad_files_are_named_with_line_and_field() {
        let cases = [
            (
                "network = \"overlay\"\n",
                "field `engine`: no `[[engine]]` is listed",
            ),
            (
                "[[engine]]\nname = \"a\"\nhost = \"http://x\"\n",
                "line 3: field `engine.host`: 'http://x': expected",
            ),
            (
                "[[engine]]\nname = \"a\"\nhost = \"unix:///s\"\n[[engine]]\nname = \"a\"\nhost = \"tcp://h:1\"\n",
                "field `engine.name`: 'a' is listed twice",
            ),
            (
                "network = \"bridge\"\n[[engine]]\nname = \"a\"\nhost = \"unix:///s\"\n[[engine]]\nname = \"b\"\nhost = \"tcp://h:1\"\n",
                "line 1: field `network`: a bridge network does not span engines",
            ),
            (
                "[[engine]]\nname = \"a\"\nhost = \"unix:///s\"\nnodes = [\"x1\"]\n",
                "line 4: field `engine.nodes`: 'x1' is not a node name",
            ),
            (
                "[[engine]]\nname = \"a\"\nhost = \"unix:///s\"\nport = 3\n",
                "line 4: unknown field `port`",
            ),
            (
                "[[engine]]\nname = \"a\"\nhost = \"tcp://h:2376\"\ntls-dir = \"/nonexistent\"\n",
                "line 4: field `engine.tls-dir`: engine a: no ca.pem in /nonexistent",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.starts_with("engines.toml: "), "{err}");
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_example_engines_files_read_and_say_what_is_missing() {
        let dir = crate::workspace::root().join("examples/engines");
        let local = EnginesFile::load(&dir.join("local-swarm.toml")).unwrap();
        assert_eq!(local.network(), NetworkKind::Overlay);
        assert_eq!(local.engines.len(), 1);
        // The two-host example names a TLS folder of a machine that is not this one.
        let err = EnginesFile::load(&dir.join("two-hosts.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("field `engine.tls-dir`: engine b: no ca.pem in /home/me/.docker/b"),
            "{err}"
        );
    }

    #[test]
    fn published_ports_are_fixed_per_slot_and_slots_cover_the_range_once() {
        let p = host_ports(3, &[2379, 2380]);
        assert_eq!(p[&2379], 20012);
        assert_eq!(p[&2380], 20013);
        let all: std::collections::HashSet<u16> = slots("run", "n1").collect();
        assert_eq!(all.len(), usize::from(SLOTS));
        assert!(
            all.iter()
                .all(|&s| host_ports(s, &[1, 2, 3, 4]).values().all(|&h| h < 32768))
        );
        assert_ne!(slots("run", "n1").next(), slots("run", "n2").next());
    }
}
