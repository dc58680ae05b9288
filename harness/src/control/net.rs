//! A fresh bridge network per run, with its own /24 subnet so that every node has a static,
//! predictable address (partitions are iptables rules by source address).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::Docker;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::ListNetworksOptions;

use super::{ControlError, DockerContext, RUN_LABEL};

/// A /24 subnet `10.a.b.0/24` style address block: base address of the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet(pub Ipv4Addr);

impl Subnet {
    /// The `n`-th host address (1 is the gateway).
    pub fn host(self, n: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.0.octets();
        Ipv4Addr::new(a, b, c, n)
    }

    /// CIDR notation.
    pub fn cidr(self) -> String {
        format!("{}/24", self.0)
    }

    /// Whether this block overlaps a CIDR string such as `172.17.0.0/16` (unparseable: assume yes).
    pub(crate) fn overlaps(self, cidr: &str) -> bool {
        let Some((addr, len)) = cidr.split_once('/') else {
            return true;
        };
        let (Ok(addr), Ok(len)) = (addr.parse::<Ipv4Addr>(), len.parse::<u32>()) else {
            // IPv6 subnets cannot overlap an IPv4 block.
            return !cidr.contains(':');
        };
        let len = len.min(24);
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        (u32::from(addr) & mask) == (u32::from(self.0) & mask)
    }
}

/// Candidate blocks: 172.29.0.0/24 .. 172.29.255.0/24, starting at a place derived from the run id
/// so that concurrent runs rarely try the same block first.
pub(crate) fn candidates(run_id: &str) -> impl Iterator<Item = Subnet> {
    let start = run_id
        .bytes()
        .fold(0u8, |h, b| h.wrapping_mul(31).wrapping_add(b));
    (0..=255u8).map(move |i| Subnet(Ipv4Addr::new(172, 29, start.wrapping_add(i), 0)))
}

/// Creates the run's bridge network, trying free /24 blocks of 172.29.0.0/16 until the engine
/// accepts one.
pub(crate) async fn create_network(
    docker: &Docker,
    run_id: &str,
    name: &str,
) -> Result<Subnet, ControlError> {
    create_in(docker, run_id, name, "bridge", candidates(run_id)).await
}

/// Creates a network of `driver` named `name` with the run's label in the first of `blocks`
/// that no network of the engine overlaps and the engine accepts (an overlay network is also
/// attachable, so that plain containers join it).
pub(crate) async fn create_in(
    docker: &Docker,
    run_id: &str,
    name: &str,
    driver: &str,
    blocks: impl Iterator<Item = Subnet>,
) -> Result<Subnet, ControlError> {
    let existing = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .ctx(|| "listing networks".into())?;
    let used: Vec<String> = existing
        .iter()
        .filter_map(|n| n.ipam.as_ref()?.config.as_ref())
        .flatten()
        .filter_map(|c| c.subnet.clone())
        .collect();
    let mut last_err = None;
    for subnet in blocks
        .filter(|s| !used.iter().any(|u| s.overlaps(u)))
        .take(8)
    {
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some(driver.into()),
            attachable: (driver == "overlay").then_some(true),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.cidr()),
                    gateway: Some(subnet.host(1).to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            labels: Some(HashMap::from([(RUN_LABEL.to_string(), run_id.to_string())])),
            ..Default::default()
        };
        match docker.create_network(request).await {
            Ok(_) => return Ok(subnet),
            // Another run (or something else) took the block between listing and creating.
            Err(e) if e.to_string().contains("overlap") => last_err = Some(e),
            Err(e) => return Err(e).ctx(|| format!("creating network {name}")),
        }
    }
    match last_err {
        Some(e) => Err(e).ctx(|| format!("creating network {name}: no free /24 block")),
        None => Err(ControlError::Io {
            what: format!("creating network {name}"),
            source: std::io::Error::other("every candidate /24 block is in use"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_decided_by_the_shorter_prefix() {
        let s = Subnet(Ipv4Addr::new(172, 29, 7, 0));
        assert!(s.overlaps("172.29.7.0/24"));
        assert!(s.overlaps("172.29.0.0/16"));
        assert!(s.overlaps("172.16.0.0/12"));
        assert!(!s.overlaps("172.29.8.0/24"));
        assert!(!s.overlaps("172.17.0.0/16"));
        assert!(!s.overlaps("fd00::/64"));
        assert!(s.overlaps("garbage"));
    }

    #[test]
    fn candidates_cover_every_block_once_and_depend_on_the_run() {
        let all: std::collections::HashSet<_> = candidates("run-a").map(|s| s.0).collect();
        assert_eq!(all.len(), 256);
        assert_ne!(candidates("run-a").next(), candidates("run-b").next());
        assert_eq!(
            Subnet(Ipv4Addr::new(172, 29, 3, 0)).host(11),
            Ipv4Addr::new(172, 29, 3, 11)
        );
    }
}
