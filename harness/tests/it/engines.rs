//! Several engines on one machine: a single-node swarm (made here, and left afterwards) with the
//! run's overlay network, and two engine entries that name the same daemon (its socket, and a
//! loopback TCP listener in front of it), so that placement, published ports, image save/load
//! through the API and teardown per engine are exercised without a second host.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bollard::Docker;
use faultline::control::{Engine, EngineSpec, Engines, EnginesFile, load_image, save_image, swarm};
use futures_util::StreamExt;
use serde_json::Value;

use crate::run::run_on_engines_and_check_faults_bite;
use crate::util::{docker_slot, node_image, objects_of_run};

/// The local engine's socket path.
fn socket() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into())
}

/// A loopback TCP listener that forwards every connection to the engine's socket: a second
/// endpoint of the same daemon, as `tcp://127.0.0.1:PORT`. Counts the connections it carried.
struct TcpEndpoint {
    port: u16,
    connections: Arc<AtomicU64>,
    _task: tokio_util::task::AbortOnDropHandle<()>,
}

impl TcpEndpoint {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicU64::new(0));
        let counted = connections.clone();
        let path = socket();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::Relaxed);
                let path = path.clone();
                tokio::spawn(async move {
                    if let Ok(mut unix) = tokio::net::UnixStream::connect(&path).await {
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                    }
                });
            }
        });
        Self {
            port,
            connections,
            _task: tokio_util::task::AbortOnDropHandle::new(task),
        }
    }

    fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

/// A swarm made for the test when the engine was in none; left (with the bridge `swarm init`
/// made) when dropped, also after a failed assertion.
struct TestSwarm {
    made: bool,
}

impl TestSwarm {
    async fn init() -> Self {
        let local = Engines::local().await.unwrap();
        let before = swarm::status(&local).await.unwrap();
        let made = before.iter().any(|l| l.ends_with("not in a swarm"));
        if made {
            for line in swarm::init(&local).await.unwrap() {
                println!("swarm init: {line}");
            }
        } else {
            println!("swarm: the engine is in a swarm already ({before:?}); it stays");
        }
        Self { made }
    }
}

impl Drop for TestSwarm {
    fn drop(&mut self) {
        if !self.made {
            return;
        }
        let left = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let local = Engines::local().await.unwrap();
                swarm::leave(&local).await
            })
        })
        .join();
        match left {
            Ok(Ok(lines)) => lines.iter().for_each(|l| println!("swarm leave: {l}")),
            other => eprintln!("swarm leave failed: {other:?}; run `faultline swarm leave`"),
        }
    }
}

const PARTITION: &str = r#"faults = ["partition"]
partition-kinds = ["isolate-leader"]"#;

/// A short isolate-leader run on these engines, checked as every partition run is (valid, the
/// partition biting, nothing left); the run's id and its `run.json`, whose network is the overlay.
async fn overlay_partition_run(name: &str, seed: u64, engines: EnginesFile) -> (String, Value) {
    let (outcome, _results) = run_on_engines_and_check_faults_bite(
        name,
        PARTITION,
        ("start-partition", "stop-partition"),
        seed,
        Some(engines),
    )
    .await;
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(outcome.dir.path.join("run.json")).unwrap())
            .unwrap();
    assert_eq!(record["engines"]["network"], "overlay", "{record}");
    (outcome.run_id, record)
}

/// Whether a network named `name` exists on the engine.
async fn has_network(docker: &Docker, name: &str) -> bool {
    docker
        .inspect_network(
            name,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_overlay_runs_on_one_and_two_engine_endpoints_are_valid_and_leave_nothing() {
    let _slot = docker_slot().await;
    let docker = faultline::control::connect().await.unwrap();
    node_image(&docker).await;
    let gwbridge_before = has_network(&docker, "docker_gwbridge").await;
    let swarm = TestSwarm::init().await;
    let sock = format!("unix://{}", socket());

    // One engine, the run's nodes on an overlay network of the swarm.
    let one = EnginesFile::parse(
        &format!("network = \"overlay\"\n[[engine]]\nname = \"sock\"\nhost = \"{sock}\"\n"),
        "one.toml",
    )
    .unwrap();
    let (_, record) = overlay_partition_run("register-partition-overlay", 4, one).await;
    for n in record["nodes"].as_array().unwrap() {
        assert!(
            n["ip"].as_str().unwrap().starts_with("10.231."),
            "not on the overlay's block: {n}"
        );
        // Reached through the ports published on the engine's host, not the overlay address.
        let published = n["published"]["2379"].as_str().unwrap_or_default();
        assert!(published.starts_with("127.0.0.1:"), "{n}");
        assert_eq!(n["engine"], "sock");
    }

    // Two entries naming the same daemon: n1 on the socket, n2 round robin on TCP, n3 pinned to
    // TCP. Every container operation of n2 and n3 goes through the TCP endpoint.
    let tcp = TcpEndpoint::start().await;
    let two = EnginesFile::parse(
        &format!(
            "[[engine]]\nname = \"sock\"\nhost = \"{sock}\"\n\n[[engine]]\nname = \"tcp\"\nhost = \"tcp://127.0.0.1:{}\"\nnodes = [\"n3\"]\n",
            tcp.port
        ),
        "two.toml",
    )
    .unwrap();
    let (run_id, record) = overlay_partition_run("register-partition-two-engines", 5, two).await;
    let placed: Vec<(String, String)> = record["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["engine"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        placed,
        [("n1", "sock"), ("n2", "tcp"), ("n3", "tcp")].map(|(a, b)| (a.into(), b.into())),
        "placement"
    );
    let carried = tcp.connections();
    assert!(
        carried > 10,
        "the TCP endpoint carried {carried} connections: n2's and n3's operations did not go through it"
    );
    println!("the TCP endpoint carried {carried} connections");
    assert_eq!(objects_of_run(&docker, &run_id).await, (0, 0, 0));

    // Image loading through the API, both endpoints: a tiny image saved through the socket,
    // removed, and loaded through the TCP endpoint comes back with the same id.
    let sock_engine = Engine::connect(&EngineSpec {
        name: "sock".into(),
        host: sock.clone(),
        ..EngineSpec::local()
    })
    .await
    .unwrap();
    let tcp_engine = Engine::connect(&EngineSpec {
        name: "tcp".into(),
        host: format!("tcp://127.0.0.1:{}", tcp.port),
        ..EngineSpec::local()
    })
    .await
    .unwrap();
    let image = format!("faultline/copytest:{}", std::process::id());
    let id = tiny_image(&docker, &image).await;
    let saved: Vec<Result<bytes::Bytes, bollard::errors::Error>> =
        save_image(&sock_engine, &image).collect().await;
    assert!(saved.iter().all(Result::is_ok));
    docker
        .remove_image(
            &image,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .unwrap();
    assert!(!tcp_engine.has_image(&image).await.unwrap());
    load_image(&tcp_engine, futures_util::stream::iter(saved), &image)
        .await
        .unwrap();
    let loaded = docker.inspect_image(&image).await.unwrap().id.unwrap();
    docker
        .remove_image(
            &image,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .unwrap();
    assert_eq!(loaded, id, "the loaded image is another one");

    // Leaving the swarm removes what init made: no gateway bridge unless there was one before.
    let made = swarm.made;
    drop(swarm);
    if made {
        assert_eq!(
            has_network(&docker, "docker_gwbridge").await,
            gwbridge_before,
            "swarm leave left docker_gwbridge behind"
        );
        let info = docker.info().await.unwrap();
        assert_eq!(
            info.swarm
                .and_then(|s| s.local_node_state)
                .map(|s| s.to_string()),
            Some("inactive".to_string())
        );
    }
}

/// Imports a one-file image tagged `image`; returns its id.
async fn tiny_image(docker: &Docker, image: &str) -> String {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    let body = b"faultline\n";
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "hello", &body[..]).unwrap();
    let bytes = tar.into_inner().unwrap();
    let (repo, tag) = image.split_once(':').unwrap();
    let options = bollard::query_parameters::CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .build();
    let mut stream =
        docker.create_image(Some(options), Some(bollard::body_full(bytes.into())), None);
    while let Some(step) = stream.next().await {
        step.unwrap();
    }
    docker.inspect_image(image).await.unwrap().id.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_matrix_on_two_endpoints_runs_a_cell_on_each_and_gathers_them() {
    let _slot = docker_slot().await;
    let docker = faultline::control::connect().await.unwrap();
    node_image(&docker).await;
    let tcp = TcpEndpoint::start().await;
    let dir = tempfile::tempdir().unwrap();
    let engines = dir.path().join("engines.toml");
    std::fs::write(
        &engines,
        format!(
            "[[engine]]\nname = \"sock\"\nhost = \"unix://{}\"\n\n[[engine]]\nname = \"tcp\"\nhost = \"tcp://127.0.0.1:{}\"\n",
            socket(),
            tcp.port
        ),
    )
    .unwrap();
    let results = dir.path().join("results");
    // The CLI as a user runs it; the TCP endpoint lives in this process, so the child runs on
    // a blocking thread while this runtime serves it.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.args([
        "matrix",
        "--only",
        "matrix-raftkv-correct",
        "--seeds",
        "2",
        "--time-limit",
        "8",
        "--parallel",
        "2",
        "--engines",
    ])
    .arg(&engines)
    .arg("--results")
    .arg(&results)
    .env("FAULTLINE_HOME", faultline::workspace::root());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let matrix = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("matrix.json").is_file())
        .expect("a matrix folder");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(matrix.join("matrix.json")).unwrap())
            .unwrap();
    assert!(
        json["command"].as_str().unwrap().contains("--parallel 2"),
        "{json}"
    );
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{json}");
    let cells = rows[0]["cells"].as_array().unwrap();
    let mut seen: Vec<(u64, String, String)> = cells
        .iter()
        .map(|c| {
            (
                c["seed"].as_u64().unwrap(),
                c["verdict"].as_str().unwrap().to_string(),
                c["engine"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(seen.len(), 2, "{json}");
    assert!(
        seen.iter().all(|(_, v, _)| v == "valid"),
        "correct raftkv: {seen:?}"
    );
    let mut engines_used: Vec<&str> = seen.iter().map(|(_, _, e)| e.as_str()).collect();
    engines_used.sort_unstable();
    assert_eq!(engines_used, ["sock", "tcp"], "one cell on each engine");
    assert!(
        tcp.connections() > 0,
        "nothing went through the TCP endpoint"
    );
    assert!(matrix.join("matrix.html").is_file());
    println!("{stdout}");
}

/// A TLS listener in front of the engine's socket, as `dockerd --tlsverify` is: its own CA, a
/// server certificate for 127.0.0.1, client certificates required. The client's `ca.pem`,
/// `cert.pem` and `key.pem` are in `dir`, as Docker's TLS client files are.
struct TlsEndpoint {
    port: u16,
    dir: tempfile::TempDir,
    handshakes: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    _task: tokio_util::task::AbortOnDropHandle<()>,
}

impl TlsEndpoint {
    async fn start() -> Self {
        use faultline::pki::{Authority, Holder};
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let ca = Authority::new("test engine CA").unwrap();
        let server = ca
            .issue(
                &Holder::Node {
                    name: "engine".into(),
                    ip: "127.0.0.1".parse().unwrap(),
                    also: None,
                },
                false,
            )
            .unwrap();
        let client = ca
            .issue(
                &Holder::Client {
                    name: "harness".into(),
                },
                false,
            )
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
        std::fs::write(dir.path().join("cert.pem"), &client.cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &client.key_pem).unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (handshakes, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (ok, no) = (handshakes.clone(), refused.clone());
        let path = socket();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, path, ok, no) =
                    (acceptor.clone(), path.clone(), ok.clone(), no.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        no.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    ok.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut unix) = tokio::net::UnixStream::connect(&path).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut unix).await;
                    }
                });
            }
        });
        Self {
            port,
            dir,
            handshakes,
            refused,
            _task: tokio_util::task::AbortOnDropHandle::new(task),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_an_engine_over_tls_is_valid_and_another_cas_client_is_refused() {
    let _slot = docker_slot().await;
    let docker = faultline::control::connect().await.unwrap();
    node_image(&docker).await;
    let tls = TlsEndpoint::start().await;
    let host = format!("tcp://127.0.0.1:{}", tls.port);

    // A client that trusts the engine's CA but holds a certificate of another CA: the engine
    // refuses the handshake.
    let other = TlsEndpoint::start().await;
    let mixed = tempfile::tempdir().unwrap();
    std::fs::copy(tls.dir.path().join("ca.pem"), mixed.path().join("ca.pem")).unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(other.dir.path().join(f), mixed.path().join(f)).unwrap();
    }
    let refused = Engine::connect(&EngineSpec {
        name: "tls".into(),
        host: host.clone(),
        tls_dir: Some(mixed.path().to_path_buf()),
        ..EngineSpec::local()
    })
    .await
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(refused.contains("engine tls"), "{refused}");
    // The listener counts the refusal when its side of the handshake ends, which may be after
    // the client has given up: wait for it (bounded).
    for _ in 0..100 {
        if tls.refused.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        tls.refused.load(Ordering::Relaxed) > 0,
        "the engine refused no handshake; the client said: {refused}"
    );
    assert_eq!(tls.handshakes.load(Ordering::Relaxed), 0);

    // With its own client certificate, a whole run on that engine alone: a bridge network there,
    // and the nodes reached through ports published on its host (a remote engine's bridge is
    // not reachable from the harness).
    let file = EnginesFile::parse(
        &format!(
            "[[engine]]\nname = \"tls\"\nhost = \"{host}\"\ntls-dir = \"{}\"\n",
            tls.dir.path().display()
        ),
        "tls.toml",
    )
    .unwrap();
    let (outcome, _results) = run_on_engines_and_check_faults_bite(
        "register-partition-tls-engine",
        PARTITION,
        ("start-partition", "stop-partition"),
        6,
        Some(file),
    )
    .await;
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(outcome.dir.path.join("run.json")).unwrap())
            .unwrap();
    assert_eq!(record["engines"]["network"], "bridge", "{record}");
    for n in record["nodes"].as_array().unwrap() {
        assert_eq!(n["engine"], "tls", "{n}");
        let published = n["published"]["2379"].as_str().unwrap_or_default();
        assert!(published.starts_with("127.0.0.1:"), "{n}");
    }
    let handshakes = tls.handshakes.load(Ordering::Relaxed);
    assert!(
        handshakes > 10,
        "only {handshakes} TLS connections to the engine"
    );
    println!("the TLS engine accepted {handshakes} connections");
}
