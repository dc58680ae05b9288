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
        match docker.remove_network(&id).await {
            Ok(()) => out.networks.push(name),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).ctx(|| format!("removing network {name}")),
        }
    }
    Ok(out)
}

/// Tears a run down when dropped: on a normal end, an early return, an error or a panic. Call
/// [`RunGuard::disarm`] after an explicit, successful teardown.
///
/// The clean-up runs on its own thread with its own runtime and its own connection to the engine,
/// because a guard may be dropped while the caller's runtime is unwinding or shutting down.
pub struct RunGuard {
    run_id: Option<String>,
}

impl RunGuard {
    /// A guard for the run with this id.
    pub fn new(run_id: &str) -> Self {
        Self {
            run_id: Some(run_id.to_string()),
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
        let worker = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let docker = super::connect().await?;
                clean(&docker, Some(&run_id))
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
