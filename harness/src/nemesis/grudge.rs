//! Partitions as pure data: a grudge says, for each node, whose packets it drops. Every kind is a
//! function of a node order (the schedule shuffles it from the seed) and, for `isolate-leader`,
//! the leader's name. Nothing here talks to Docker.

use std::collections::{BTreeMap, BTreeSet};

use super::spec::PartitionKind;

/// For each node, the nodes whose packets it drops. Nodes with an empty set are left out.
pub type Grudge = BTreeMap<String, BTreeSet<String>>;

/// The size of a majority of `n` nodes.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Every node drops every node outside its own component.
pub fn complete_grudge(components: &[Vec<String>]) -> Grudge {
    let mut g = Grudge::new();
    for (i, comp) in components.iter().enumerate() {
        let others: BTreeSet<String> = components
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, c)| c.iter().cloned())
            .collect();
        if others.is_empty() {
            continue;
        }
        for node in comp {
            g.entry(node.clone()).or_default().extend(others.clone());
        }
    }
    g
}

/// Cuts the list in two, the first part smaller when the count is odd (Jepsen's `bisect`).
pub fn bisect(nodes: &[String]) -> (Vec<String>, Vec<String>) {
    let (a, b) = nodes.split_at(nodes.len() / 2);
    (a.to_vec(), b.to_vec())
}

/// Two halves that cannot hear each other.
pub fn halves(nodes: &[String]) -> Grudge {
    let (a, b) = bisect(nodes);
    complete_grudge(&[a, b])
}

/// `node` cannot hear anyone, and nobody hears it.
pub fn isolate(nodes: &[String], node: &str) -> Grudge {
    let rest: Vec<String> = nodes.iter().filter(|n| *n != node).cloned().collect();
    complete_grudge(&[vec![node.to_string()], rest])
}

/// Jepsen's `majorities-ring`: the nodes, in ring order, each see the window of a majority
/// centred on themselves and drop everyone else. Every node sees a majority (itself included)
/// and, for five nodes or more, no two nodes see the same one.
pub fn majorities_ring(ring: &[String]) -> Grudge {
    let n = ring.len();
    let m = majority(n);
    let mut g = Grudge::new();
    if n < 2 {
        return g;
    }
    for start in 0..n {
        let window: BTreeSet<String> = (0..m).map(|k| ring[(start + k) % n].clone()).collect();
        let centre = ring[(start + m / 2) % n].clone();
        let dropped: BTreeSet<String> = ring
            .iter()
            .filter(|x| !window.contains(*x))
            .cloned()
            .collect();
        if !dropped.is_empty() {
            g.insert(centre, dropped);
        }
    }
    g
}

/// Two halves that cannot hear each other, except that the first node of the larger half (the
/// bridge) still hears, and is heard by, everyone.
pub fn bridge(nodes: &[String]) -> Grudge {
    let (a, b) = bisect(nodes);
    let Some(bridge) = b.first().cloned() else {
        return Grudge::new();
    };
    let mut g = complete_grudge(&[a, b]);
    g.remove(&bridge);
    for dropped in g.values_mut() {
        dropped.remove(&bridge);
    }
    g.retain(|_, d| !d.is_empty());
    g
}

/// The first half drops packets from the second; the second still hears the first.
pub fn one_way(nodes: &[String]) -> Grudge {
    let (a, b) = bisect(nodes);
    let from: BTreeSet<String> = b.into_iter().collect();
    if from.is_empty() {
        return Grudge::new();
    }
    a.into_iter().map(|n| (n, from.clone())).collect()
}

/// The grudge of `kind` over `order` (already shuffled where the kind is random). `leader` is
/// needed only by `isolate-leader`; `None` there when no leader is known.
pub fn grudge_of(kind: PartitionKind, order: &[String], leader: Option<&str>) -> Option<Grudge> {
    Some(match kind {
        PartitionKind::Halves | PartitionKind::RandomHalves => halves(order),
        PartitionKind::MajoritiesRing => majorities_ring(order),
        PartitionKind::IsolateOne => isolate(order, order.first()?),
        PartitionKind::IsolateLeader => isolate(order, leader?),
        PartitionKind::Bridge => bridge(order),
        PartitionKind::OneWay => one_way(order),
    })
}

/// The nodes `node` still hears (itself included).
pub fn sees(nodes: &[String], grudge: &Grudge, node: &str) -> BTreeSet<String> {
    let dropped = grudge.get(node);
    nodes
        .iter()
        .filter(|n| dropped.is_none_or(|d| !d.contains(*n)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn set(xs: &[&str]) -> BTreeSet<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn majorities_ring_on_five_nodes_gives_each_node_its_own_majority() {
        let nodes = names(5);
        let g = majorities_ring(&nodes);
        let views: Vec<BTreeSet<String>> = nodes.iter().map(|n| sees(&nodes, &g, n)).collect();
        for (node, view) in nodes.iter().zip(&views) {
            assert_eq!(view.len(), 3, "{node} sees {view:?}");
            assert!(view.contains(node), "{node} must see itself");
        }
        let distinct: BTreeSet<_> = views.iter().collect();
        assert_eq!(distinct.len(), 5, "views must all differ: {views:?}");
        // Ring order n1..n5: n3 sees its neighbours.
        assert_eq!(views[2], set(&["n2", "n3", "n4"]));
    }

    #[test]
    fn majorities_ring_on_seven_nodes_sees_four() {
        let nodes = names(7);
        let g = majorities_ring(&nodes);
        for n in &nodes {
            assert_eq!(sees(&nodes, &g, n).len(), 4);
        }
    }

    #[test]
    fn bridge_node_sees_all_and_the_sides_do_not_see_each_other() {
        let nodes = names(5);
        let g = bridge(&nodes);
        // bisect: [n1 n2] [n3 n4 n5]; the bridge is n3.
        assert_eq!(sees(&nodes, &g, "n3"), set(&["n1", "n2", "n3", "n4", "n5"]));
        assert!(!g.contains_key("n3"));
        assert_eq!(sees(&nodes, &g, "n1"), set(&["n1", "n2", "n3"]));
        assert_eq!(sees(&nodes, &g, "n5"), set(&["n3", "n4", "n5"]));
        for d in g.values() {
            assert!(!d.contains("n3"), "nobody drops the bridge");
        }
    }

    #[test]
    fn halves_are_symmetric_and_cover_everyone() {
        let nodes = names(5);
        let g = halves(&nodes);
        assert_eq!(g["n1"], set(&["n3", "n4", "n5"]));
        assert_eq!(g["n4"], set(&["n1", "n2"]));
        for (a, dropped) in &g {
            for b in dropped {
                assert!(g[b].contains(a), "{a} drops {b} but not the reverse");
            }
        }
    }

    #[test]
    fn isolate_cuts_one_node_both_ways() {
        let nodes = names(3);
        let g = isolate(&nodes, "n2");
        assert_eq!(g["n2"], set(&["n1", "n3"]));
        assert_eq!(g["n1"], set(&["n2"]));
        assert_eq!(g["n3"], set(&["n2"]));
        assert_eq!(
            grudge_of(PartitionKind::IsolateLeader, &nodes, Some("n2")),
            Some(g)
        );
        assert_eq!(grudge_of(PartitionKind::IsolateLeader, &nodes, None), None);
    }

    #[test]
    fn one_way_drops_in_one_direction_only() {
        let nodes = names(5);
        let g = one_way(&nodes);
        assert_eq!(g.len(), 2);
        assert_eq!(g["n1"], set(&["n3", "n4", "n5"]));
        assert!(
            !g.contains_key("n3"),
            "the second half still hears the first"
        );
    }
}
