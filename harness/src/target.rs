//! Target files: one system under test per `targets/<name>.toml`, so a user's own system needs a
//! file and no Rust.
//!
//! A target file says how the image is made (Debian packages unpacked or installed, local files,
//! a cargo package of this workspace), the node's command line as a template, its ports,
//! readiness, an optional leader probe, whether clock faults reach it, what `corrupt` damages,
//! and which client protocol the harness speaks to it (`raftkv`, `etcd`, `nats`, or `exec`: any
//! program speaking JSON lines, see `docs/exec-protocol.md`). raftkv, etcd and NATS are target
//! files too; MariaDB Galera is still wired in Rust (`galera`: SQL sessions, its own entrypoint).
//!
//! A bad file gets an error naming the file, the line and the field, as workloads do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::workload::Target as Protocol;

/// A system under test, as written in `targets/<name>.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TargetFile {
    /// The file's stem; not written in the file.
    #[serde(skip)]
    pub name: String,
    /// The folder of the file: local `files` are relative to it.
    #[serde(skip)]
    pub dir: PathBuf,
    /// One sentence: what the system is.
    pub description: String,
    /// How the image is made.
    pub image: ImageSpec,
    /// How a node runs.
    pub node: NodeTemplate,
    /// When a node is ready; absent: when the protocol's own status answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<Ready>,
    /// Which node leads; absent: the protocol's own status (raftkv, etcd, nats), or no leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderProbe>,
    /// How clients talk to it.
    pub client: ClientSpec,
}

/// `[image]`: what goes into the node image on top of Faultline's base image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageSpec {
    /// Debian packages unpacked (`dpkg-deb -x`) into `/` without their dependencies: for static
    /// binaries such as Go programs.
    #[serde(default)]
    pub unpack: Vec<String>,
    /// Debian packages installed with every dependency apt says they need.
    #[serde(default)]
    pub install: Vec<String>,
    /// Local files or folders copied in (the user's build); `from` relative to the target file.
    #[serde(default)]
    pub files: Vec<FileCopy>,
    /// A package of this workspace built with `cargo build --release` and copied to `binary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cargo: Option<String>,
    /// The node's program in the image: its sha256 goes into `run.json`, `--build PATH`
    /// replaces it, faultfs runs it for storage faults.
    pub binary: String,
}

/// A local file or folder copied into the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileCopy {
    /// On the host, relative to the target file's folder (or absolute).
    pub from: String,
    /// In the image (absolute).
    pub to: String,
    /// Permission bits of a file, e.g. `0o755`; default: the host file's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// `[node]`: the node's command line and what the faults need to know of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeTemplate {
    /// The command line, each argument a template (see [`Vars`]).
    pub command: Vec<String>,
    /// The node's data directory, on its own volume (and on faultfs for storage faults).
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    /// Named ports, e.g. `{ client = 2379, peer = 2380 }`: `{client_port}` in templates.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// One peer's entry in `{peers}`, evaluated with that peer's variables.
    #[serde(default = "default_peer")]
    pub peer: String,
    /// What joins the entries of `{peers}`.
    #[serde(default = "default_separator")]
    pub peers_separator: String,
    /// How a planted bug (`--bug NAME`) reaches each node (`{bug}`); absent: no bugs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bug_args: Option<Vec<String>>,
    /// Arguments added to the command of a node that joins a running cluster (the `member`
    /// fault's `add`), e.g. raftkv's `["--join"]`; absent: nodes of this target cannot join, so
    /// the `member` fault is refused for it. `{cluster_state}` is `new` at boot and `existing`
    /// for a joining node, and `{peers}`/`{initial_cluster}` name the members of the moment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_args: Option<Vec<String>>,
    /// Arguments added to every node's command when the run uses mutual TLS (`tls = true`),
    /// e.g. raftkv's `["--tls-dir", "{tls_dir}"]`: `{tls_dir}` holds `ca.pem`, `node.pem` and
    /// `node-key.pem`, and `{scheme}` is `https` (else `http`). Absent: the target cannot run
    /// over TLS, and `tls = true` is refused for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_args: Option<Vec<String>>,
    /// Whether clock faults reach the program (libfaketime reaches dynamically linked C, C++
    /// and Rust programs, not Go): `true`, or a sentence saying why not.
    #[serde(default)]
    pub clock: Clock,
    /// What the `corrupt` fault damages: globs relative to the data directory.
    #[serde(default)]
    pub data_files: Vec<String>,
}

fn default_data_dir() -> String {
    "/data".into()
}
fn default_peer() -> String {
    "{ip}".into()
}
fn default_separator() -> String {
    ",".into()
}

/// Whether clock faults reach a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Clock {
    /// `clock = true` (libfaketime is preloaded into every node) or `false`.
    Flag(bool),
    /// `clock = "why not"`.
    Unsupported(String),
}

impl Default for Clock {
    fn default() -> Self {
        Clock::Flag(false)
    }
}

impl Clock {
    /// `Ok` when clock faults reach the nodes, else why not.
    pub fn supported(&self, target: &str) -> Result<(), String> {
        match self {
            Clock::Flag(true) => Ok(()),
            Clock::Flag(false) => Err(format!(
                "targets/{target}.toml does not say clock faults reach it (`[node] clock = true`)"
            )),
            Clock::Unsupported(why) => Err(why.clone()),
        }
    }
}

/// `[ready]`: when a node is ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Ready {
    /// A port name: ready when it accepts a TCP connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// Ready when this path answers 2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    /// Ready when this command, run in the node's container, exits 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

/// An HTTP request to a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpProbe {
    /// A port name of `[node] ports`.
    pub port: String,
    /// The path, e.g. `/health`.
    pub path: String,
    /// Leader probes: a JSON pointer into the answer, e.g. `/role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Leader probes: the node leads when the value there equals this (a string, or a JSON
    /// value's text, e.g. `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
}

/// `[leader]`: how to tell whether a node leads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LeaderProbe {
    /// A command run in the node's container; it leads when the first line of its output
    /// equals `equals` (a template: `"{ip}"` for a command that prints the leader's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// With `command`: what the first line says on the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// An HTTP path, a JSON pointer and the value that means "I lead".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
}

/// `[client]`: the client protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClientSpec {
    /// `raftkv`, `etcd`, `nats` or `exec`.
    pub protocol: ProtocolName,
    /// The port the built-in clients talk to.
    #[serde(default = "default_client_port")]
    pub port: String,
    /// `exec` only: the client command, started once per worker on the host, in the project
    /// folder; templates with the variables of the node the worker is bound to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

fn default_client_port() -> String {
    "client".into()
}

/// The protocols a target file may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProtocolName {
    /// raftkv's HTTP API.
    Raftkv,
    /// etcd's v3 API (gRPC, or the JSON gateway with the workload's `node.etcd-client`).
    Etcd,
    /// NATS JetStream (KV registers, queue streams).
    Nats,
    /// Any program speaking the exec protocol on stdin/stdout.
    Exec,
}

impl ProtocolName {
    /// The workload-side protocol family.
    pub fn protocol(self) -> Protocol {
        match self {
            ProtocolName::Raftkv => Protocol::Raftkv,
            ProtocolName::Etcd => Protocol::Etcd,
            ProtocolName::Nats => Protocol::Nats,
            ProtocolName::Exec => Protocol::Exec,
        }
    }
}

/// A target file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// No file of that name.
    #[error("no target named '{name}' in {dir} (known: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// Where we looked.
        dir: String,
        /// The names that exist.
        known: String,
    },
    /// Not valid TOML, a wrong field, or a value outside what is allowed.
    #[error("{file}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong, with the line and the field.
        message: String,
    },
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Targets built into the harness without a file (their Rust module says how they run).
pub const BUILT_IN: &[(&str, &str)] = &[(
    "galera",
    "MariaDB 10.11 with Galera 4 from Debian's packages, over SQL (harness/src/galera.rs)",
)];

/// The folder of target files in a project folder.
pub fn dir(root: &Path) -> PathBuf {
    root.join("targets")
}

/// Names of the target files in `dir`, sorted.
pub fn list(dir: &Path) -> Vec<String> {
    crate::workload::list(dir)
}

/// Reads `dir/<name>.toml`, or a path to a TOML file.
///
/// # Errors
/// [`TargetError`] naming the file, line and field.
pub fn load(dir: &Path, name: &str) -> Result<TargetFile, TargetError> {
    let path = if name.ends_with(".toml") {
        PathBuf::from(name)
    } else {
        dir.join(format!("{name}.toml"))
    };
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut known = list(dir);
            known.extend(BUILT_IN.iter().map(|(n, _)| n.to_string()));
            return Err(TargetError::Unknown {
                name: name.to_string(),
                dir: dir.display().to_string(),
                known: known.join(", "),
            });
        }
        Err(source) => return Err(TargetError::Io { file, source }),
    };
    let mut t = parse(&text, &file)?;
    t.name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name)
        .to_string();
    t.dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(t)
}

/// Parses and validates a target file's text; `file` names it in errors.
///
/// # Errors
/// [`TargetError::Invalid`] with the line and the field.
pub fn parse(text: &str, file: &str) -> Result<TargetFile, TargetError> {
    let t: TargetFile = toml::from_str(text).map_err(|e| TargetError::Invalid {
        file: file.to_string(),
        message: crate::workload::parse_message(text, &e),
    })?;
    t.validate(text)
        .map_err(|(field, needle, message)| TargetError::Invalid {
            file: file.to_string(),
            message: match line_of(text, &field, needle.as_deref()) {
                Some(line) => format!("line {line}: field `{field}`: {message}"),
                None => format!("field `{field}`: {message}"),
            },
        })?;
    Ok(t)
}

/// The line of a field's value in `text`: the first line with both the field's key and
/// `needle`, else the first with `needle`, else the key's (or the table's) line.
pub(crate) fn line_of(text: &str, field: &str, needle: Option<&str>) -> Option<usize> {
    let key = field.rsplit('.').next().unwrap_or(field);
    let find = |wanted: &[&str]| {
        text.lines()
            .position(|l| {
                let code = l.split('#').next().unwrap_or("");
                wanted.iter().all(|w| code.contains(w))
            })
            .map(|i| i + 1)
    };
    let key_eq = format!("{key} =");
    if let Some(n) = needle
        && let Some(line) = find(&[&key_eq, n]).or_else(|| find(&[n]))
    {
        return Some(line);
    }
    find(&[&key_eq]).or_else(|| find(&[&format!("[{field}]")]))
}

/// A validation failure: the field, a piece of text to find its line by, and what is wrong.
type Bad = (String, Option<String>, String);

impl TargetFile {
    fn validate(&self, _text: &str) -> Result<(), Bad> {
        let bad = |field: &str, needle: Option<&str>, message: String| -> Result<(), Bad> {
            Err((field.to_string(), needle.map(String::from), message))
        };
        let node = &self.node;
        if node.command.is_empty() {
            return bad("node.command", None, "needs at least the program".into());
        }
        if !self.image.binary.starts_with('/') {
            return bad(
                "image.binary",
                Some(&self.image.binary),
                format!(
                    "'{}' must be an absolute path in the image",
                    self.image.binary
                ),
            );
        }
        if !node.data_dir.starts_with('/') {
            return bad(
                "node.data-dir",
                Some(&node.data_dir),
                "must be an absolute path".into(),
            );
        }
        if self.image.unpack.is_empty()
            && self.image.install.is_empty()
            && self.image.files.is_empty()
            && self.image.cargo.is_none()
        {
            return bad(
                "image",
                None,
                "says nothing goes into the image: name Debian packages (`unpack`, `install`), local `files` or a `cargo` package".into(),
            );
        }
        for f in &self.image.files {
            if !f.to.starts_with('/') {
                return bad(
                    "image.files",
                    Some(&f.to),
                    format!("`to = \"{}\"` must be an absolute path in the image", f.to),
                );
            }
        }
        for (name, port) in &node.ports {
            if *port == 0 {
                return bad("node.ports", Some(name), format!("port `{name}` is 0"));
            }
        }
        let port_names: Vec<&str> = node.ports.keys().map(String::as_str).collect();
        let known_port = |field: &str, port: &str| -> Result<(), Bad> {
            if node.ports.contains_key(port) {
                Ok(())
            } else {
                bad(
                    field,
                    Some(&format!("\"{port}\"")),
                    format!(
                        "no port named '{port}' in `[node] ports` (known: {})",
                        if port_names.is_empty() {
                            "none".to_string()
                        } else {
                            port_names.join(", ")
                        }
                    ),
                )
            }
        };
        // Every template must name only variables that exist.
        let vars = Vars::example(self);
        let check = |field: &str, template: &str, vars: &Vars| -> Result<(), Bad> {
            vars.expand(template)
                .map(|_| ())
                .map_err(|e| (field.to_string(), Some(template.to_string()), e))
        };
        for arg in &node.command {
            check("node.command", arg, &vars)?;
        }
        check("node.peer", &node.peer, &vars)?;
        if let Some(args) = &node.bug_args {
            let mut with_bug = vars.clone();
            with_bug.set("bug", "x");
            for a in args {
                check("node.bug-args", a, &with_bug)?;
            }
        }
        for a in node.join_args.iter().flatten() {
            check("node.join-args", a, &vars)?;
        }
        for a in node.tls_args.iter().flatten() {
            check("node.tls-args", a, &vars)?;
        }
        match (&self.ready, self.client.protocol) {
            (None, ProtocolName::Exec) => {
                return bad(
                    "ready",
                    None,
                    "an exec target needs `[ready]` (`tcp = \"PORT\"` or `http = { port, path }`): the harness cannot ask an exec client for status".into(),
                );
            }
            (Some(r), _) => match (&r.tcp, &r.http, &r.command) {
                (Some(p), None, None) => known_port("ready.tcp", p)?,
                (None, Some(h), None) => known_port("ready.http.port", &h.port)?,
                (None, None, Some(c)) if !c.is_empty() => {
                    for a in c {
                        check("ready.command", a, &vars)?;
                    }
                }
                _ => {
                    return bad(
                        "ready",
                        None,
                        "give exactly one of `tcp` (a port name), `http` (`{ port, path }`) or `command` (run in the node's container; ready when it exits 0)".into(),
                    );
                }
            },
            (None, _) => {}
        }
        if let Some(l) = &self.leader {
            match (&l.command, &l.http) {
                (Some(cmd), None) => {
                    if cmd.is_empty() {
                        return bad("leader.command", None, "needs at least the program".into());
                    }
                    for a in cmd {
                        check("leader.command", a, &vars)?;
                    }
                    match &l.equals {
                        None => {
                            return bad(
                                "leader.equals",
                                None,
                                "`command` needs `equals`: what the first line of its output says on the leader".into(),
                            );
                        }
                        Some(e) => check("leader.equals", e, &vars)?,
                    }
                }
                (None, Some(h)) => {
                    known_port("leader.http.port", &h.port)?;
                    if h.pointer.is_none() || h.equals.is_none() {
                        return bad(
                            "leader.http",
                            None,
                            "needs `pointer` (a JSON pointer into the answer) and `equals`".into(),
                        );
                    }
                }
                _ => {
                    return bad(
                        "leader",
                        None,
                        "give exactly one of `command` (with `equals`) or `http`".into(),
                    );
                }
            }
        }
        if self.client.protocol == ProtocolName::Exec {
            if self.client.command.is_empty() {
                return bad(
                    "client.command",
                    None,
                    "the exec protocol needs the client's command".into(),
                );
            }
            let mut client_vars = vars.clone();
            client_vars.set("op_timeout", "2");
            for a in &self.client.command {
                check("client.command", a, &client_vars)?;
            }
        } else {
            if !self.client.command.is_empty() {
                return bad(
                    "client.command",
                    None,
                    "only the exec protocol runs a client command".into(),
                );
            }
            known_port("client.port", &self.client.port)?;
        }
        Ok(())
    }

    /// The port of `name` (validated to exist for the ports the file names).
    pub fn port(&self, name: &str) -> u16 {
        self.node.ports.get(name).copied().unwrap_or(0)
    }

    /// The variables of node `i` of `ips` (the cluster's addresses, in node order), every node a
    /// member from the start.
    pub fn vars(&self, i: usize, ips: &[std::net::Ipv4Addr], run_id: &str) -> Vars {
        let members: Vec<(usize, std::net::Ipv4Addr)> = ips.iter().copied().enumerate().collect();
        self.member_vars(i, ips[i], &members, false, false, run_id)
    }

    /// The variables of node `i` at `ip` when the cluster's members are `members` (node index and
    /// address, in node order; `{peers}`, `{initial_cluster}` and `{ips}` list them), `joining` a
    /// running cluster or not (`{cluster_state}`: `existing` or `new`), over mutual TLS or not
    /// (`{scheme}`: `https` or `http`).
    pub fn member_vars(
        &self,
        i: usize,
        ip: std::net::Ipv4Addr,
        members: &[(usize, std::net::Ipv4Addr)],
        joining: bool,
        tls: bool,
        run_id: &str,
    ) -> Vars {
        let mut v = Vars::node(self, i, ip, run_id);
        let scheme = if tls { "https" } else { "http" };
        v.set("scheme", scheme);
        let peer = |&(j, ip): &(usize, std::net::Ipv4Addr)| {
            Vars::node(self, j, ip, run_id)
                .expand(&self.node.peer)
                .unwrap_or_default()
        };
        let peers: Vec<String> = members.iter().map(peer).collect();
        v.set("peers", &peers.join(&self.node.peers_separator));
        let peer_port = self.node.ports.get("peer").copied().unwrap_or(0);
        let initial: Vec<String> = members
            .iter()
            .map(|(j, ip)| format!("{}={scheme}://{ip}:{peer_port}", crate::db::node_name(*j)))
            .collect();
        v.set("initial_cluster", &initial.join(","));
        let all: Vec<String> = members.iter().map(|(_, ip)| ip.to_string()).collect();
        v.set("ips", &all.join(","));
        v.set("cluster_state", if joining { "existing" } else { "new" });
        v
    }

    /// One line for `faultline targets`.
    pub fn summary(&self) -> String {
        let mut what = Vec::new();
        if !self.image.unpack.is_empty() {
            what.push(format!("unpacks {}", self.image.unpack.join(" ")));
        }
        if !self.image.install.is_empty() {
            what.push(format!("installs {}", self.image.install.join(" ")));
        }
        if let Some(c) = &self.image.cargo {
            what.push(format!("cargo package {c}"));
        }
        if !self.image.files.is_empty() {
            what.push(format!("{} local files", self.image.files.len()));
        }
        format!(
            "protocol {}; {}",
            serde_json::to_value(self.client.protocol)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            what.join(", ")
        )
    }
}

/// Template variables: `{name}` in a template is replaced by its value. A node has `{id}`,
/// `{name}`, `{ip}`, `{<port>_port}` for each named port, `{peers}`, `{initial_cluster}`,
/// `{ips}`, `{cluster_state}` (`new`, or `existing` for a node joining a running cluster),
/// `{data_dir}`, `{binary}`, `{run_id}`, `{target_dir}`, `{scheme}` (`https` over mutual TLS,
/// else `http`) and `{tls_dir}` (the node's certificates); an exec client command also
/// `{op_timeout}` (seconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vars(BTreeMap<String, String>);

impl Vars {
    fn node(t: &TargetFile, i: usize, ip: std::net::Ipv4Addr, run_id: &str) -> Vars {
        let mut v = Vars::default();
        v.set("id", &(i + 1).to_string());
        v.set("name", &crate::db::node_name(i));
        v.set("ip", &ip.to_string());
        v.set("data_dir", &t.node.data_dir);
        v.set("binary", &t.image.binary);
        v.set("run_id", run_id);
        v.set("target_dir", &t.dir.display().to_string());
        v.set("scheme", "http");
        v.set("tls_dir", crate::pki::NODE_TLS_DIR);
        for (name, port) in &t.node.ports {
            v.set(&format!("{name}_port"), &port.to_string());
        }
        v
    }

    /// Every variable a node template may use, with stand-in values (for validation).
    fn example(t: &TargetFile) -> Vars {
        let mut v = Vars::node(t, 0, std::net::Ipv4Addr::new(10, 0, 0, 2), "run");
        for k in ["peers", "initial_cluster", "ips", "cluster_state"] {
            v.set(k, "x");
        }
        v
    }

    /// Sets one variable.
    pub fn set(&mut self, name: &str, value: &str) {
        self.0.insert(name.to_string(), value.to_string());
    }

    /// Every template of `args` expanded, for templates checked when the file was read (every
    /// variable they name exists; one that does not is kept as written).
    pub fn expand_all(&self, args: &[String]) -> Vec<String> {
        args.iter()
            .map(|a| self.expand(a).unwrap_or_else(|_| a.clone()))
            .collect()
    }

    /// The template with every `{name}` replaced; `{{` and `}}` are literal braces.
    ///
    /// # Errors
    /// An unknown variable or an unclosed brace, with the variables there are.
    pub fn expand(&self, template: &str) -> Result<String, String> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(i) = rest.find(['{', '}']) {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                out.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err(format!(
                    "'{template}': a lone '}}' (write '}}}}' for a brace)"
                ));
            }
            let Some(end) = tail.find('}') else {
                return Err(format!("'{template}': '{{' is not closed"));
            };
            let name = &tail[1..end];
            match self.0.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    let known: Vec<String> = self.0.keys().map(|k| format!("{{{k}}}")).collect();
                    return Err(format!(
                        "'{template}': no variable {{{name}}} (known: {})",
                        known.join(", ")
                    ));
                }
            }
            rest = &tail[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        crate::workspace::root()
    }

    #[test]
    fn every_shipped_target_file_loads() {
        let names = list(&dir(&root()));
        for n in ["raftkv", "etcd", "nats"] {
            assert!(names.contains(&n.to_string()), "{names:?}");
        }
        for n in &names {
            load(&dir(&root()), n).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn raftkv_and_etcd_files_give_the_command_lines_the_harness_always_used() {
        let ips: Vec<std::net::Ipv4Addr> = (2..5)
            .map(|i| std::net::Ipv4Addr::new(10, 9, 0, i))
            .collect();
        let raftkv = load(&dir(&root()), "raftkv").unwrap();
        let v = raftkv.vars(1, &ips, "run-x");
        let cmd: Vec<String> = raftkv
            .node
            .command
            .iter()
            .map(|a| v.expand(a).unwrap())
            .collect();
        assert_eq!(
            cmd,
            [
                "/usr/local/bin/raftkv",
                "--id",
                "2",
                "--peers",
                "1=10.9.0.2:2380/10.9.0.2:2379,2=10.9.0.3:2380/10.9.0.3:2379,3=10.9.0.4:2380/10.9.0.4:2379",
                "--client-addr",
                "0.0.0.0:2379",
                "--peer-addr",
                "10.9.0.3:2380",
                "--data-dir",
                "/data",
            ]
        );
        let etcd = load(&dir(&root()), "etcd").unwrap();
        let v = etcd.vars(0, &ips, "run-x");
        let cmd: Vec<String> = etcd
            .node
            .command
            .iter()
            .map(|a| v.expand(a).unwrap())
            .collect();
        let at = |flag: &str| cmd[cmd.iter().position(|a| a == flag).unwrap() + 1].clone();
        assert_eq!(cmd[0], "/usr/bin/etcd");
        assert_eq!(at("--name"), "n1");
        assert_eq!(
            at("--initial-cluster"),
            "n1=http://10.9.0.2:2380,n2=http://10.9.0.3:2380,n3=http://10.9.0.4:2380"
        );
        assert_eq!(at("--advertise-client-urls"), "http://10.9.0.2:2379");
        assert_eq!(at("--initial-cluster-token"), "run-x");
        assert_eq!(at("--data-dir"), "/data/etcd");
        assert!(etcd.node.clock.supported("etcd").is_err());
        assert!(raftkv.node.clock.supported("raftkv").is_ok());
    }

    #[test]
    fn templates_expand_and_refuse_unknown_variables() {
        let mut v = Vars::default();
        v.set("ip", "10.0.0.2");
        v.set("client_port", "2379");
        assert_eq!(v.expand("{ip}:{client_port}").unwrap(), "10.0.0.2:2379");
        assert_eq!(v.expand("{{x}} {ip}").unwrap(), "{x} 10.0.0.2");
        let e = v.expand("{ipp}").unwrap_err();
        assert!(e.contains("no variable {ipp}") && e.contains("{ip}"), "{e}");
        assert!(v.expand("{ip").unwrap_err().contains("not closed"));
        assert!(v.expand("a}b").unwrap_err().contains("lone"));
    }

    const GOOD: &str = r#"description = "a test system"

[image]
install = ["redis-server"]
binary = "/usr/bin/redis-server"

[node]
command = ["{binary}", "--port", "{client_port}"]
ports = { client = 6379 }
clock = true

[ready]
tcp = "client"

[client]
protocol = "exec"
command = ["python3", "client.py", "{ips}"]
"#;

    fn err(text: &str) -> String {
        parse(text, "targets/x.toml").unwrap_err().to_string()
    }

    #[test]
    fn a_good_exec_target_parses() {
        let t = parse(GOOD, "targets/x.toml").unwrap();
        assert_eq!(t.client.protocol, ProtocolName::Exec);
        assert_eq!(t.port("client"), 6379);
        assert_eq!(t.node.data_dir, "/data");
    }

    #[test]
    fn bad_target_files_are_named_with_their_line_and_field() {
        // An unknown field (toml's own error, with its line).
        let e = err(&GOOD.replace("clock = true", "clock = true\nclocks = 1"));
        assert!(e.starts_with("targets/x.toml: line 11"), "{e}");
        // An unknown template variable: the line of the template.
        let e = err(&GOOD.replace("{client_port}", "{clientport}"));
        assert!(
            e.starts_with("targets/x.toml: line 8: field `node.command`"),
            "{e}"
        );
        assert!(e.contains("no variable {clientport}"), "{e}");
        // An unknown port name.
        let e = err(&GOOD.replace("tcp = \"client\"", "tcp = \"clinet\""));
        assert!(
            e.starts_with("targets/x.toml: line 13: field `ready.tcp`"),
            "{e}"
        );
        assert!(e.contains("known: client"), "{e}");
        // An unknown protocol.
        let e = err(&GOOD.replace("protocol = \"exec\"", "protocol = \"redis\""));
        assert!(e.contains("line 16"), "{e}");
        // An exec target without readiness.
        let e = err(&GOOD.replace("[ready]\ntcp = \"client\"\n", ""));
        assert!(e.contains("field `ready`"), "{e}");
        // A leader command without `equals`.
        let e = err(&format!("{GOOD}\n[leader]\ncommand = [\"role\"]\n"));
        assert!(e.contains("field `leader.equals`"), "{e}");
        // A relative binary.
        let e = err(&GOOD.replace("\"/usr/bin/redis-server\"", "\"redis-server\""));
        assert!(
            e.starts_with("targets/x.toml: line 5: field `image.binary`"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_target_names_the_known_ones() {
        let e = load(&dir(&root()), "nosuch").unwrap_err().to_string();
        assert!(e.contains("no target named 'nosuch'"), "{e}");
        assert!(e.contains("raftkv") && e.contains("galera"), "{e}");
    }
}
