//! Removes what runs left behind: containers, volumes and networks carrying Faultline's run label.
//! Teardown of one run is the same operation restricted to that run's id.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder,
};

use super::{ControlError, DockerContext, RUN_LABEL, is_not_found};

/// What a clean-up found and removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    /// Container names removed.
    pub containers: Vec<String>,
    /// Volume names removed.
    pub volumes: Vec<String>,
    /// Network names removed.
    pub networks: Vec<String>,
}

impl Leftovers {
    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.volumes.is_empty() && self.networks.is_empty()
    }
}

/// Removes every container, volume and network with Faultline's run label; only those of `run_id`
/// when given. Containers go first (they hold the volumes and the network).
///
/// # Errors
/// When Docker refuses a listing or a removal (an object already gone is not an error).
pub async fn clean(docker: &Docker, run_id: Option<&str>) -> Result<Leftovers, ControlError> {
    let label = match run_id {
        Some(id) => format!("{RUN_LABEL}={id}"),
        None => RUN_LABEL.to_string(),
    };
    let filters = HashMap::from([("label".to_string(), vec![label.clone()])]);
    let mut out = Leftovers::default();

    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .ctx(|| format!("listing containers labelled {label}"))?;
    for c in containers {
        let Some(id) = c.id else { continue };
        let name = c
            .names
            .and_then(|n| n.into_iter().next())
            .unwrap_or_else(|| id.clone());
        // A paused container cannot be killed by removal on every engine; unpause first.
        let _ = docker.unpause_container(&id).await;
        match docker
            .remove_container(
                &id,
                Some(
                    RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await
        {
            Ok(()) => out
                .containers
                .push(name.trim_start_matches('/').to_string()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).ctx(|| format!("removing container {name}")),
        }
    }

    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .ctx(|| format!("listing volumes labelled {label}"))?;
    for v in volumes.volumes.unwrap_or_default() {
        match docker
            .remove_volume(
                &v.name,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
        {
            Ok(()) => out.volumes.push(v.name),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).ctx(|| format!("removing volume {}", v.name)),
        }
    }

    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .ctx(|| format!("listing networks labelled {label}"))?;
    for n in networks {
        let Some(name) = n.name else { continue };
        // By id: the engine may hold two networks of one name (created at the same moment),
        // and then refuses the name as ambiguous.
        let id = n.id.unwrap_or_else(|| name.clone());
        let swarm = n.scope.as_deref() == Some("swarm");
        let mut tries = 0;
        loop {
            match docker.remove_network(&id).await {
                Ok(()) => {
                    out.networks.push(name.clone());
                    if swarm {
                        gone(docker, &id).await;
                    }
                }
                Err(e) if is_not_found(&e) => {}
                // A swarm worker sees the overlay network but only a manager removes it (the
                // manager's engine is cleaned too).
                Err(e) if swarm && e.to_string().contains("manager") => {}
                // An overlay network may still count the endpoints of containers just removed.
                Err(e) if swarm && tries < 10 && e.to_string().contains("active endpoints") => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => return Err(e).ctx(|| format!("removing network {name}")),
            }
            break;
        }
    }
    Ok(out)
}

/// Waits (at most 10 s) until a removed swarm network no longer lists: the manager removes it a
/// moment after it said yes.
async fn gone(docker: &Docker, id: &str) {
    for _ in 0..40 {
        match docker
            .inspect_network(id, None::<bollard::query_parameters::InspectNetworkOptions>)
            .await
        {
            Err(e) if is_not_found(&e) => return,
            _ => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

/// [`clean`] on every engine of a run: the containers on each first, then the networks (an
/// overlay network is removed on the first engine, its manager, once no engine has containers on
/// it). Two entries naming one daemon are cleaned once each; the second finds nothing.
///
/// # Errors
/// The first refusal; the other engines are still cleaned.
pub async fn clean_engines(
    engines: &[super::Engine],
    run_id: Option<&str>,
) -> Result<Leftovers, ControlError> {
    let mut out = Leftovers::default();
    let mut first_err = None;
    // The first engine last: it holds the overlay network the others' containers use.
    for e in engines.iter().skip(1).chain(engines.first()) {
        match clean(&e.docker, run_id).await {
            Ok(l) => {
                out.containers.extend(l.containers);
                out.volumes.extend(l.volumes);
                out.networks.extend(l.networks);
            }
            Err(err) => {
                first_err.get_or_insert(ControlError::Io {
                    what: format!("cleaning engine {}", e.name()),
                    source: std::io::Error::other(err.to_string()),
                });
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Tears a run down when dropped: on a normal end, an early return, an error or a panic. Call
/// [`RunGuard::disarm`] after an explicit, successful teardown.
///
/// The clean-up runs on its own thread with its own runtime and its own connection to the engine,
/// because a guard may be dropped while the caller's runtime is unwinding or shutting down.
pub struct RunGuard {
    run_id: Option<String>,
    engines: super::EnginesFile,
}

impl RunGuard {
    /// A guard for the run with this id on the local engine.
    pub fn new(run_id: &str) -> Self {
        Self::on(run_id, super::EnginesFile::local())
    }

    /// A guard for the run with this id on these engines (each is cleaned).
    pub fn on(run_id: &str, engines: super::EnginesFile) -> Self {
        Self {
            run_id: Some(run_id.to_string()),
            engines,
        }
    }

    /// Do not clean up on drop (it was done already).
    pub fn disarm(&mut self) {
        self.run_id = None;
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let Some(run_id) = self.run_id.take() else {
            return;
        };
        let file = self.engines.clone();
        let worker = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let engines = super::Engines::connect(&file).await?;
                clean_engines(&engines.list, Some(&run_id))
                    .await
                    .map_err(anyhow::Error::from)
            })
            .map_err(|e: anyhow::Error| std::io::Error::other(format!("{e:#}")))
            .map(|_| ())
        });
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("faultline: teardown failed ({e}); run `faultline clean`"),
            Err(_) => eprintln!("faultline: teardown panicked; run `faultline clean`"),
        }
    }
}
