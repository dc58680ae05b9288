//! Docker Swarm, for runs whose nodes are on several engines: `faultline swarm init` makes the
//! first engine of an engines file a swarm manager and joins the others as workers; each run then
//! gets its own attachable overlay network with a fixed /24 ([`create_overlay`]), so static node
//! addresses work whichever host a node is on. `faultline swarm leave` undoes `init`.
//!
//! Swarm mode makes a bridge, `docker_gwbridge`, on every engine (the overlay's containers reach
//! the outside through it) and does not remove it when the engine leaves. `init` therefore makes
//! that bridge itself, with Faultline's label, where it does not exist yet, and `leave` removes it
//! only when it carries that label: nothing Faultline did not make is touched. The swarm `init`
//! makes carries the label too, and `leave` refuses a swarm without it.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::models::{
    LocalNodeState, NetworkCreateRequest, SwarmInitRequest, SwarmJoinRequest, SwarmSpec,
};
use bollard::query_parameters::LeaveSwarmOptionsBuilder;

use super::net::Subnet;
use super::{ControlError, DockerContext, Engine, Engines, is_not_found};

/// The label on the swarm and the `docker_gwbridge` bridges that `faultline swarm init` made.
pub const SWARM_LABEL: &str = "faultline.swarm";
/// Swarm's gateway bridge.
const GWBRIDGE: &str = "docker_gwbridge";
/// The port swarm managers listen on.
const SWARM_PORT: u16 = 2377;

fn refused(what: String, why: impl Into<String>) -> ControlError {
    ControlError::Io {
        what,
        source: std::io::Error::other(why.into()),
    }
}

/// What an engine says about its swarm membership.
struct Membership {
    node_id: String,
    cluster_id: String,
    active: bool,
    manager: bool,
}

async fn membership(e: &Engine) -> Result<Membership, ControlError> {
    let info = e
        .docker
        .info()
        .await
        .ctx(|| format!("asking engine {} about its swarm", e.name()))?;
    let swarm = info.swarm.unwrap_or_default();
    Ok(Membership {
        node_id: swarm.node_id.unwrap_or_default(),
        cluster_id: swarm.cluster.and_then(|c| c.id).unwrap_or_default(),
        active: swarm.local_node_state == Some(LocalNodeState::ACTIVE),
        manager: swarm.control_available == Some(true),
    })
}

/// Candidate overlay blocks: 10.231.0.0/24 .. 10.231.255.0/24, from a start derived from the run.
fn overlay_candidates(run_id: &str) -> impl Iterator<Item = Subnet> {
    super::net::candidates(run_id).map(|s| {
        let [_, _, c, _] = s.0.octets();
        Subnet(Ipv4Addr::new(10, 231, c, 0))
    })
}

/// Creates the run's attachable overlay network on `manager`, with a free /24 of 10.231.0.0/16.
///
/// # Errors
/// When the engine is not a swarm manager (with what to run), or refuses.
pub async fn create_overlay(
    manager: &Engine,
    run_id: &str,
    name: &str,
) -> Result<Subnet, ControlError> {
    let m = membership(manager).await?;
    if !m.manager {
        return Err(refused(
            format!("creating the overlay network {name}"),
            format!(
                "engine {} is not a swarm manager{}: run `faultline swarm init --engines FILE` (or `docker swarm init`) first",
                manager.name(),
                if m.active { " (it is a worker)" } else { "" }
            ),
        ));
    }
    super::net::create_in(
        &manager.docker,
        run_id,
        name,
        "overlay",
        overlay_candidates(run_id),
    )
    .await
}

/// Makes `docker_gwbridge` with Faultline's label where the engine has none (swarm would make an
/// unlabelled one). Returns whether it made it.
async fn ensure_gwbridge(e: &Engine) -> Result<bool, ControlError> {
    match e
        .docker
        .inspect_network(
            GWBRIDGE,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
    {
        Ok(_) => return Ok(false),
        Err(err) if is_not_found(&err) => {}
        Err(err) => return Err(err).ctx(|| format!("looking for {GWBRIDGE} on {}", e.name())),
    }
    let options = HashMap::from([
        (
            "com.docker.network.bridge.name".to_string(),
            GWBRIDGE.to_string(),
        ),
        (
            "com.docker.network.bridge.enable_icc".to_string(),
            "false".to_string(),
        ),
        (
            "com.docker.network.bridge.enable_ip_masquerade".to_string(),
            "true".to_string(),
        ),
    ]);
    e.docker
        .create_network(NetworkCreateRequest {
            name: GWBRIDGE.into(),
            driver: Some("bridge".into()),
            options: Some(options),
            labels: Some(HashMap::from([(SWARM_LABEL.to_string(), "1".to_string())])),
            ..Default::default()
        })
        .await
        .ctx(|| format!("creating {GWBRIDGE} on engine {}", e.name()))?;
    Ok(true)
}

/// Removes `docker_gwbridge` from an engine if Faultline made it; returns whether it did.
async fn remove_gwbridge(e: &Engine) -> Result<bool, ControlError> {
    let net = match e
        .docker
        .inspect_network(
            GWBRIDGE,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
    {
        Ok(n) => n,
        Err(err) if is_not_found(&err) => return Ok(false),
        Err(err) => return Err(err).ctx(|| format!("looking for {GWBRIDGE} on {}", e.name())),
    };
    if !net
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(SWARM_LABEL))
    {
        return Ok(false);
    }
    // The engine detaches its swarm endpoints from the bridge shortly after leaving.
    for _ in 0..20 {
        match e.docker.remove_network(GWBRIDGE).await {
            Ok(()) => return Ok(true),
            Err(err) if is_not_found(&err) => return Ok(false),
            Err(err) if err.to_string().contains("active endpoints") => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(err) => return Err(err).ctx(|| format!("removing {GWBRIDGE} on {}", e.name())),
        }
    }
    Err(refused(
        format!("removing {GWBRIDGE} on {}", e.name()),
        "it still has endpoints after 10 s",
    ))
}

/// Makes the first engine a swarm manager (advertising its `advertise-addr`) unless it already
/// is one, and joins every other engine as a worker; two entries naming one daemon join once.
/// Returns a line per engine saying what was done.
///
/// # Errors
/// When an engine is in another swarm, or refuses.
pub async fn init(engines: &Engines) -> Result<Vec<String>, ControlError> {
    let mut said = Vec::new();
    let manager = &engines.list[0];
    let mut m = membership(manager).await?;
    if m.active {
        if !m.manager {
            return Err(refused(
                format!("swarm init on engine {}", manager.name()),
                "it is a worker of a swarm; list a manager first",
            ));
        }
        said.push(format!(
            "{}: already a swarm manager (swarm {})",
            manager.name(),
            short(&m.cluster_id)
        ));
    } else {
        let made = ensure_gwbridge(manager).await?;
        let advertise = manager.spec.advertise();
        manager
            .docker
            .init_swarm(SwarmInitRequest {
                listen_addr: Some(format!("0.0.0.0:{SWARM_PORT}")),
                advertise_addr: Some(advertise.clone()),
                spec: Some(SwarmSpec {
                    labels: Some(HashMap::from([(SWARM_LABEL.to_string(), "1".to_string())])),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .ctx(|| format!("swarm init on engine {}", manager.name()))?;
        m = membership(manager).await?;
        said.push(format!(
            "{}: swarm manager, advertising {advertise}:{SWARM_PORT} (swarm {}){}",
            manager.name(),
            short(&m.cluster_id),
            if made {
                format!("; made {GWBRIDGE}")
            } else {
                String::new()
            }
        ));
    }
    let token = manager
        .docker
        .inspect_swarm()
        .await
        .ctx(|| format!("reading the join token of engine {}", manager.name()))?
        .join_tokens
        .and_then(|t| t.worker)
        .unwrap_or_default();
    for e in &engines.list[1..] {
        let w = membership(e).await?;
        if w.node_id == m.node_id && !w.node_id.is_empty() {
            said.push(format!(
                "{}: the same daemon as {}",
                e.name(),
                manager.name()
            ));
            continue;
        }
        if w.active {
            if w.cluster_id != m.cluster_id {
                return Err(refused(
                    format!("joining engine {} to the swarm", e.name()),
                    format!(
                        "it is in another swarm ({}); `docker swarm leave` there first",
                        short(&w.cluster_id)
                    ),
                ));
            }
            said.push(format!("{}: already in the swarm", e.name()));
            continue;
        }
        let made = ensure_gwbridge(e).await?;
        e.docker
            .join_swarm(SwarmJoinRequest {
                listen_addr: Some(format!("0.0.0.0:{SWARM_PORT}")),
                advertise_addr: Some(e.spec.advertise()),
                remote_addrs: Some(vec![format!("{}:{SWARM_PORT}", manager.spec.advertise())]),
                join_token: Some(token.clone()),
                ..Default::default()
            })
            .await
            .ctx(|| format!("joining engine {} to the swarm", e.name()))?;
        said.push(format!(
            "{}: joined as a worker{}",
            e.name(),
            if made {
                format!("; made {GWBRIDGE}")
            } else {
                String::new()
            }
        ));
    }
    Ok(said)
}

/// Undoes [`init`]: the workers leave, then the manager; the `docker_gwbridge` bridges Faultline
/// made are removed. A swarm `init` did not make is refused (leave it with `docker swarm leave`).
///
/// # Errors
/// When the swarm was not made by `faultline swarm init`, or an engine refuses.
pub async fn leave(engines: &Engines) -> Result<Vec<String>, ControlError> {
    let mut said = Vec::new();
    let manager = &engines.list[0];
    let m = membership(manager).await?;
    if !m.active {
        said.push(format!("{}: not in a swarm", manager.name()));
    } else {
        let swarm = manager
            .docker
            .inspect_swarm()
            .await
            .ctx(|| format!("inspecting the swarm of engine {}", manager.name()))?;
        let ours = swarm
            .spec
            .and_then(|s| s.labels)
            .is_some_and(|l| l.contains_key(SWARM_LABEL));
        if !ours {
            return Err(refused(
                format!("swarm leave on engine {}", manager.name()),
                "this swarm was not made by `faultline swarm init`; leave it with `docker swarm leave`",
            ));
        }
    }
    let mut seen = vec![m.node_id.clone()];
    for e in &engines.list[1..] {
        let w = membership(e).await?;
        if seen.contains(&w.node_id) && !w.node_id.is_empty() {
            continue;
        }
        seen.push(w.node_id.clone());
        leave_one(e, w.active && w.cluster_id == m.cluster_id, &mut said).await?;
    }
    leave_one(manager, m.active, &mut said).await?;
    Ok(said)
}

/// One engine's part of [`leave`]: it leaves the swarm (when `member`), then its
/// `docker_gwbridge` goes if Faultline made it; what was done is added to `said`.
async fn leave_one(e: &Engine, member: bool, said: &mut Vec<String>) -> Result<(), ControlError> {
    if member {
        e.docker
            .leave_swarm(Some(
                LeaveSwarmOptionsBuilder::default().force(true).build(),
            ))
            .await
            .ctx(|| format!("swarm leave on engine {}", e.name()))?;
        said.push(format!("{}: left the swarm", e.name()));
    }
    if remove_gwbridge(e).await? {
        said.push(format!("{}: removed {GWBRIDGE}", e.name()));
    }
    Ok(())
}

/// A line per engine: its swarm state.
///
/// # Errors
/// When an engine does not answer.
pub async fn status(engines: &Engines) -> Result<Vec<String>, ControlError> {
    let mut out = Vec::new();
    for e in &engines.list {
        let m = membership(e).await?;
        out.push(format!(
            "{}: {}",
            e.name(),
            match (m.active, m.manager) {
                (false, _) => "not in a swarm".to_string(),
                (true, true) => format!("manager of swarm {}", short(&m.cluster_id)),
                (true, false) => format!("worker of swarm {}", short(&m.cluster_id)),
            }
        ));
    }
    Ok(out)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_blocks_are_in_10_231_and_depend_on_the_run() {
        let a: Vec<Subnet> = overlay_candidates("run-a").collect();
        assert_eq!(a.len(), 256);
        assert!(a.iter().all(|s| s.0.octets()[..2] == [10, 231]));
        assert_ne!(a[0], overlay_candidates("run-b").next().unwrap());
    }
}
