//! Helpers shared by the Docker tests.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
};
use faultline::control::{Images, NodeBinary, RUN_LABEL};

/// A run id no other test or run uses.
pub fn unique_run_id(name: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    let suffix = RandomState::new().hash_one(std::time::SystemTime::now()) & 0xffff;
    format!("test-{name}-{}-{suffix}", std::process::id())
}

/// Builds (or finds) the base and raftkv images (`targets/raftkv.toml`), as `faultline run`
/// would.
pub async fn node_image(docker: &Docker) -> String {
    let images = Images::new(docker.clone(), false);
    let root = faultline::workspace::root();
    let raftkv = faultline::target::load(&faultline::target::dir(&root), "raftkv")
        .expect("targets/raftkv.toml");
    let faultfs = NodeBinary::workspace_faultfs(&root)
        .await
        .expect("build faultfs");
    images
        .ensure_target(&raftkv, None, &faultfs, false)
        .await
        .expect("node image")
        .name
}

/// Counts the containers, volumes and networks that carry the run's label.
pub async fn objects_of_run(docker: &Docker, run_id: &str) -> (usize, usize, usize) {
    let filters = HashMap::from([("label".to_string(), vec![format!("{RUN_LABEL}={run_id}")])]);
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap();
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap()
        .volumes
        .unwrap_or_default();
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap();
    (containers.len(), volumes.len(), networks.len())
}

/// Held by every test that runs containers, so that they run one at a time: on a 2-core machine,
/// two clusters at once starve each other and turn timing into flakiness.
static SLOT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for the Docker slot (async tests).
pub async fn docker_slot() -> tokio::sync::MutexGuard<'static, ()> {
    SLOT.lock().await
}

/// Waits for the Docker slot (tests outside a runtime).
pub fn docker_slot_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    SLOT.blocking_lock()
}

/// Runs the workload file `name` with `change` applied and `seed`, in a temporary results folder
/// (returned with the outcome, so the run's folder stays readable), and checks that the run left
/// nothing in Docker. A raftkv run tests `FAULTLINE_TEST_NODE_BIN` when it is set.
pub async fn run_workload(
    name: &str,
    seed: u64,
    change: impl FnOnce(&mut faultline::workload::Workload),
) -> (faultline::runner::RunOutcome, tempfile::TempDir) {
    let dir = faultline::workspace::root().join("workloads");
    let mut w = faultline::workload::load(&dir, name).unwrap();
    change(&mut w);
    let node_bin = (w.target == faultline::workload::Target::Raftkv)
        .then(|| std::env::var_os("FAULTLINE_TEST_NODE_BIN").map(Into::into))
        .flatten();
    let results = tempfile::tempdir().unwrap();
    println!("{name}: seed {seed}");
    let outcome = faultline::runner::run(faultline::runner::RunOptions {
        reproduce: format!("test {name} seed {seed}"),
        workload: w,
        seed,
        node_bin,
        label: Some("test".into()),
        results: results.path().to_path_buf(),
        progress: false,
        engines: None,
    })
    .await
    .unwrap();
    let docker = faultline::control::connect().await.unwrap();
    assert_eq!(
        objects_of_run(&docker, &outcome.run_id).await,
        (0, 0, 0),
        "{name} left Docker objects behind"
    );
    (outcome, results)
}

/// Reads a JSON-lines file (a history, `status.jsonl`) as values.
pub fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
