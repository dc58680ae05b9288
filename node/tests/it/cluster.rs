//! Test support: real `raftkv` processes on loopback, and a tiny blocking HTTP client.
//!
//! Every process is SIGKILLed when its [`Proc`] drops; every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A free port on `ip` (bound then released), never one this test process handed out before:
/// the kernel may give a just-released port again, and a node whose peer and client addresses
/// collide cannot start.
pub fn free_addr(ip: &str) -> SocketAddr {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let addr = TcpListener::bind(format!("{ip}:0"))
            .unwrap()
            .local_addr()
            .unwrap();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(addr.port()) {
            return addr;
        }
    }
}

/// One HTTP exchange: status and JSON body (Null if the body is not JSON).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
}

/// A blocking HTTP/1.1 request with `Connection: close`. Err on connect/IO failure or timeout.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> std::io::Result<Resp> {
    let sock: SocketAddr = addr.parse().unwrap();
    let mut s = TcpStream::connect_timeout(&sock, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}",
        payload.len()
    );
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok(Resp {
        status,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    })
}

/// A running (or stopped) node.
pub struct Proc {
    pub id: u64,
    pub peer: SocketAddr,
    pub client: SocketAddr,
    pub dir: PathBuf,
    pub log: PathBuf,
    pub extra: Vec<String>,
    pub peers_arg: String,
    child: Option<Child>,
}

impl Proc {
    pub fn client(&self) -> String {
        self.client.to_string()
    }

    pub fn addrs(&self) -> String {
        format!("{}/{}", self.peer, self.client)
    }

    /// Fast timeouts for tests, unless the test's extra flags set them.
    fn defaults(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (flag, value) in [
            ("--election-timeout", "300"),
            ("--heartbeat-interval", "50"),
            ("--log-level", "info"),
        ] {
            if !self.extra.iter().any(|e| e == flag) {
                out.extend([flag, value]);
            }
        }
        out
    }

    /// Starts the process (again), appending to its log file.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_raftkv"))
            .args(["--id", &self.id.to_string(), "--peers", &self.peers_arg])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(self.defaults())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn raftkv");
        self.child = Some(child);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Waits (bounded) for the process to exit by itself; returns its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Some(st) = c.try_wait().unwrap()
            {
                self.child = None;
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn status(&self) -> Option<Value> {
        http(
            &self.client(),
            "GET",
            "/status",
            None,
            Duration::from_millis(500),
        )
        .ok()
        .map(|r| r.body)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of processes sharing one temp directory.
pub struct Cluster {
    pub nodes: Vec<Proc>,
    pub tmp: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes with ids 1..=n on 127.0.0.1..=127.0.0.n.
    pub fn start(n: u64, extra: &[&str]) -> Cluster {
        Self::start_each(n, |_, _| extra.iter().map(|s| s.to_string()).collect())
    }

    /// Starts `n` nodes with ids 1..=n on 127.0.0.1..=127.0.0.n, node `id` with the extra
    /// flags `extra(id, the cluster's folder)`.
    pub fn start_each(n: u64, extra: impl Fn(u64, &Path) -> Vec<String>) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let mut p = Self::make(&tmp, id, &[]);
            p.extra = extra(id, tmp.path());
            nodes.push(p);
        }
        let peers_arg = nodes
            .iter()
            .map(|p| format!("{}={}", p.id, p.addrs()))
            .collect::<Vec<_>>()
            .join(",");
        for p in &mut nodes {
            p.peers_arg = peers_arg.clone();
            p.start();
        }
        Cluster { nodes, tmp }
    }

    fn make(tmp: &tempfile::TempDir, id: u64, extra: &[&str]) -> Proc {
        let ip = format!("127.0.0.{id}");
        Proc {
            id,
            peer: free_addr(&ip),
            client: free_addr(&ip),
            dir: tmp.path().join(format!("n{id}")),
            log: tmp.path().join(format!("n{id}.log")),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            peers_arg: String::new(),
            child: None,
        }
    }

    /// Adds a stopped node that will start with `--join` (its --peers: everyone plus itself).
    pub fn add_joiner(&mut self, id: u64) -> usize {
        let mut p = Self::make(&self.tmp, id, &[]);
        p.extra.push("--join".into());
        let mut all: Vec<String> = self
            .nodes
            .iter()
            .map(|q| format!("{}={}", q.id, q.addrs()))
            .collect();
        all.push(format!("{}={}", p.id, p.addrs()));
        p.peers_arg = all.join(",");
        self.nodes.push(p);
        self.nodes.len() - 1
    }

    pub fn node(&self, id: u64) -> &Proc {
        self.nodes.iter().find(|p| p.id == id).unwrap()
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Proc {
        self.nodes.iter_mut().find(|p| p.id == id).unwrap()
    }

    /// Waits until the running nodes agree on one leader (bounded); returns its id.
    pub fn wait_leader(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let statuses: Vec<Value> = self
                .nodes
                .iter()
                .filter(|p| p.running())
                .filter_map(|p| p.status())
                .collect();
            let leaders: Vec<&Value> = statuses.iter().filter(|s| s["role"] == "leader").collect();
            if leaders.len() == 1 {
                let id = leaders[0]["id"].as_u64().unwrap();
                let term = &leaders[0]["term"];
                let agree = statuses
                    .iter()
                    .filter(|s| s["role"] != "learner")
                    .all(|s| s["leader"].as_u64() == Some(id) && &s["term"] == term);
                if agree && statuses.len() == self.nodes.iter().filter(|p| p.running()).count() {
                    return id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {within:?}: {statuses:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn running_clients(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|p| p.running())
            .map(|p| p.client())
            .collect()
    }

    /// The last lines of every node's log, for assertion messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in &self.nodes {
            let text = p.log_text();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out.push_str(&format!("--- node {} ---\n{}\n", p.id, tail.join("\n")));
        }
        out
    }
}

/// Retries a request on `addrs` (round robin) until it gets a response that `done` accepts, or
/// the deadline passes. Only for requests that are safe to repeat (reads, status, idempotent).
pub fn retry(
    addrs: &[String],
    method: &str,
    path: &str,
    body: Option<&Value>,
    within: Duration,
    done: impl Fn(&Resp) -> bool,
) -> Resp {
    let deadline = Instant::now() + within;
    let mut i = 0;
    loop {
        let a = &addrs[i % addrs.len()];
        i += 1;
        if let Ok(r) = http(a, method, path, body, Duration::from_secs(3)) {
            if done(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "{method} {path}: last answer {r:?}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "{method} {path}: no acceptable answer within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A linearizable read through `addrs`, retried until it succeeds.
pub fn read(addrs: &[String], key: &str) -> Value {
    retry(
        addrs,
        "GET",
        &format!("/kv/{key}"),
        None,
        Duration::from_secs(20),
        |r| r.status == 200,
    )
    .body["value"]
        .clone()
}

pub fn put_body(v: Value) -> Value {
    json!({ "value": v })
}

/// Runs `f(writer_index)` on `n` threads and collects the results.
pub fn parallel<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = std::sync::Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let f = f.clone();
            std::thread::spawn(move || f(i))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The last WAL segment of a node's data dir.
pub fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    segs.pop().expect("a WAL segment")
}
